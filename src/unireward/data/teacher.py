"""Programmatic CoT teacher: writes `<think>..</think><answer>..</answer>` judgements from the
shapes world's ground truth (stands in for the strong teacher VLM of UnifiedReward-Think's cold
start).

Usage::

    rng = np.random.default_rng(0)
    cot = teacher_cot(record, rng, error_rate=config.teacher_error_rate)
    # <think>Image 1: semantic consistency 3/3 (red circle at the top left as asked), aesthetics
    # 2/2, authenticity 2/2, total 7. Image 2: ... total 6. Image 1 scores higher.</think>
    # <answer>Image 1 is better</answer>   (no whitespace between the tags)

Dimensions (each item is scored, the totals are compared; the matching item always wins):
- generation: semantic consistency /3 (one point per matching attribute), aesthetics /2 and
  authenticity /2 (lowered by the defect: noise, blur, shuffled or frozen frames);
- understanding: semantic accuracy /3 (share of the answer's claims that are true), correctness
  /2 (the answer is entirely right), clarity /1.

With probability `error_rate` the teacher errs the way a real VLM does: it mixes up the two items,
so its reasoning stays self-consistent but its verdict is wrong. The cold-start correctness filter
(keep a CoT only if its answer equals the label) is there to catch exactly these.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from unireward.data.schema import Record
from unireward.data.shapes import Scene, describe
from unireward.tasks import (
    ANSWER_CLOSE,
    ANSWER_OPEN,
    PAIR_ANSWERS,
    THINK_CLOSE,
    THINK_OPEN,
    Mode,
    parse_mode,
    parse_task,
)

# defect -> (aesthetics /2, authenticity /2, why). Any defect costs at least 1 point in total, so
# a defective render never ties the clean, matching one (3 + 2 + 2 = 7).
_DEFECT_MARKS: dict[str | None, tuple[int, int, str]] = {
    None: (2, 2, ""),
    "noise": (0, 1, "heavy noise"),
    "blur": (1, 1, "blurry"),
    "shuffled": (2, 0, "frames out of order"),
    "frozen": (1, 0, "motion stalls"),
}


_ATTRIBUTE_ORDER = ("colour", "shape", "position", "motion")


def _mismatch(attr: str, got: str, want: str) -> str:
    if attr == "position":
        return f"at the {got} instead of the {want}"
    if attr == "motion":
        return f"moving {got} instead of {want}"
    return f"{got} instead of {want}"


def _generation_assessment(item: dict[str, Any], target: dict[str, Any]) -> tuple[str, int]:
    attrs = [a for a in _ATTRIBUTE_ORDER if target.get(a) is not None]
    wrong = [_mismatch(a, item[a], target[a]) for a in attrs if item[a] != target[a]]
    consistency = len(attrs) - len(wrong)
    # "a red circle at the top left" -> "red circle at the top left as asked"
    why = "; ".join(wrong) if wrong else describe(Scene(**target)).removeprefix("a ") + " as asked"
    aesthetics, authenticity, defect = _DEFECT_MARKS[item.get("defect")]
    note = f" ({defect})" if defect else ""
    total = consistency + aesthetics + authenticity
    text = (
        f"semantic consistency {consistency}/{len(attrs)} ({why}), "
        f"aesthetics {aesthetics}/2{note if aesthetics < 2 else ''}, "
        f"authenticity {authenticity}/2{note if authenticity < 2 else ''}, total {total}"
    )
    return text, total


def _understanding_assessment(claims: dict[str, str], scene: dict[str, Any]) -> tuple[str, int]:
    # meta JSON sorts keys; speak about attributes in the caption's order instead
    claims = {a: claims[a] for a in _ATTRIBUTE_ORDER if a in claims}
    wrong = [a for a in claims if claims[a] != scene[a]]
    accuracy = round(3 * (len(claims) - len(wrong)) / len(claims))
    if wrong:
        why = "; ".join(f"says {claims[a]}, it is {scene[a]}" for a in wrong)
    else:
        why = f"{next(iter(claims.values()))} is right" if len(claims) == 1 else "all right"
    correctness = 0 if wrong else 2
    total = accuracy + correctness + 1
    text = (
        f"semantic accuracy {accuracy}/3 ({why}), correctness {correctness}/2, clarity 1/1, "
        f"total {total}"
    )
    return text, total


def teacher_cot(record: Record, rng: np.random.Generator, error_rate: float) -> str:
    """A CoT judgement of a pairwise shapes-world record; wrong with probability `error_rate`."""
    task, mode = parse_task(record.task), parse_mode(record.mode)
    if mode is not Mode.PAIRWISE:
        raise ValueError(
            f"record {record.id}: the CoT teacher judges pairwise records only, got {mode.value}"
        )
    meta = record.meta_dict
    if meta.get("better") is None:
        raise ValueError(
            f"record {record.id}: no better item (a tie, label {record.label!r}); CoT mode has no "
            "tie answer, so leave tied pairs out of CoT data"
        )
    if not 0.0 <= error_rate <= 1.0:
        raise ValueError(f"error_rate must be in [0, 1], got {error_rate}")
    if task.is_generation:
        noun = "Video" if task.is_video else "Image"
        marks = [_generation_assessment(item, meta["target"]) for item in meta["items"]]
    else:
        noun = "Answer"
        marks = [_understanding_assessment(c, meta["scene"]) for c in meta["claims"]]
    better = int(meta["better"])
    if rng.random() < error_rate:  # the teacher mixes the two items up
        marks, better = marks[::-1], 1 - better
    lines = [f"{noun} {k + 1}: {text}." for k, (text, _) in enumerate(marks)]
    lines.append(f"{noun} {better + 1} scores higher.")
    answer = PAIR_ANSWERS[task][better]
    return f"{THINK_OPEN}{' '.join(lines)}{THINK_CLOSE}{ANSWER_OPEN}{answer}{ANSWER_CLOSE}"
