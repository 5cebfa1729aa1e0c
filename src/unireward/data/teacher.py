"""Programmatic CoT teacher: writes `<think>..</think><answer>..</answer>` judgements from the
shapes world's ground truth (stands in for the strong teacher VLM of UnifiedReward-Think's cold
start; `unireward.think.teachers` puts it behind the same interface as an OpenAI-compatible VLM).

Usage::

    rng = np.random.default_rng(0)
    cot = teacher_cot(record, rng, error_rate=0.1)                    # perception first
    # <think>Image 1: I see a red circle at the top left, clean. Image 2: I see a blue circle
    # at the top left, noisy. The caption asks for a red circle at the top left. Image 1:
    # semantic consistency 3/3, aesthetics 2/2, authenticity 2/2, total 7. Image 2: semantic
    # consistency 2/3 (blue instead of red), aesthetics 0/2, authenticity 1/2, total 3.
    # Image 1 scores higher.</think><answer>Image 1 is better</answer>
    point = teacher_point_cot(record)   # pointwise: ...<answer>Final Score: 3.5</answer>

Three styles (`STYLES`):
- `perception_first` (default): first what the teacher *sees* in the media ("I see a red circle
  at the top left, noisy."; for understanding, what the image shows for the question, then what
  each answer says), then per-item scores, then the comparison. Measured on the tiny judge: it
  sits at chance answering directly (the decision-token loss stays flat at a symmetric saddle),
  but trained to state its observation first it reached 0.735 CoT accuracy on held-out seen
  combinations and 0.665 on unseen ones (image understanding pairwise; direct answers 0.50).
  The observation vocabulary is the one `pretrain_base` taught the base model (`describe()`,
  clean / noisy / blurry, smooth / shuffled / frozen), so the perception it learned is reused.
- `observation`: perception_first's observations only, then the verdict, with no scores ("I see
  a red circle. Answer 1 says a red circle. Answer 2 says a blue circle." then the answer; for
  generation, what each item shows and what the caption asks for). The ~40-token target of
  `experiments/probe_cot_iu.py`, which took the tiny judge *from the base* to 0.735 / 0.665 CoT
  accuracy on image understanding (cold_start `init: base`, profile `full`).
- `scores`: the earlier verdict-numbers-first text ("semantic accuracy 0/3 (says X, it is Y)");
  kept because the shipped base's tokenizer corpus was built from it (model/pretrain_base.py).

Dimensions (each item is scored, the totals are compared; the matching item always wins):
- generation: semantic consistency /n (one point per matching attribute), aesthetics /2 and
  authenticity /2 (lowered by the defect: noise, blur, shuffled or frozen frames);
- understanding: semantic accuracy /3 (share of the answer's claims that are true), correctness
  /2 (the answer is entirely right), clarity /1.

With probability `error_rate` the teacher errs the way a real VLM does, keeping its reasoning
self-consistent but its verdict wrong: for generation it mixes up the two items (what it says it
sees in image 1 is image 2); for understanding it mixes up what it sees with the wrong answer's
claim. The cold-start correctness filter (keep a CoT only if its answer equals the label) is
there to catch exactly these. Pointwise judgements (`teacher_point_cot`) are error-free.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from unireward.contract import format_score
from unireward.data.schema import Record
from unireward.data.shapes import Scene, answer_text, describe
from unireward.tasks import (
    ANSWER_CLOSE,
    ANSWER_OPEN,
    PAIR_ANSWERS,
    SCORE_PREFIX,
    THINK_CLOSE,
    THINK_OPEN,
    Mode,
    parse_mode,
    parse_task,
)

STYLES = ("perception_first", "observation", "scores")
OBSERVING = ("perception_first", "observation")  # the styles that say what they see first

# defect -> (aesthetics /2, authenticity /2, why). Any defect costs at least 1 point in total, so
# a defective render never ties the clean, matching one (3 + 2 + 2 = 7).
_DEFECT_MARKS: dict[str | None, tuple[int, int, str]] = {
    None: (2, 2, ""),
    "noise": (0, 1, "heavy noise"),
    "blur": (1, 1, "blurry"),
    "shuffled": (2, 0, "frames out of order"),
    "frozen": (1, 0, "motion stalls"),
}
# What the teacher says it sees: pretrain_base's quality words (shapes._IMAGE_QUALITY etc.).
_QUALITY_WORD: dict[str | None, tuple[str, str]] = {  # defect -> (image word, video word)
    None: ("clean", "smooth"),
    "noise": ("noisy", "noisy"),
    "blur": ("blurry", "blurry"),
    "shuffled": ("shuffled", "shuffled"),
    "frozen": ("frozen", "frozen"),
}

_ATTRIBUTE_ORDER = ("colour", "shape", "position", "motion")


def _mismatch(attr: str, got: str, want: str) -> str:
    if attr == "position":
        return f"at the {got} instead of the {want}"
    if attr == "motion":
        return f"moving {got} instead of {want}"
    return f"{got} instead of {want}"


def _check_style(style: str) -> None:
    if style not in STYLES:
        raise ValueError(f"unknown teacher style {style!r}; expected one of: {', '.join(STYLES)}")


def _generation_assessment(
    item: dict[str, Any], target: dict[str, Any], style: str
) -> tuple[str, int]:
    attrs = [a for a in _ATTRIBUTE_ORDER if target.get(a) is not None]
    wrong = [_mismatch(a, item[a], target[a]) for a in attrs if item[a] != target[a]]
    consistency = len(attrs) - len(wrong)
    aesthetics, authenticity, defect = _DEFECT_MARKS[item.get("defect")]
    total = consistency + aesthetics + authenticity
    if style == "perception_first":  # what it sees was said already: name only the mismatches
        why = f" ({'; '.join(wrong)})" if wrong else ""
        text = (
            f"semantic consistency {consistency}/{len(attrs)}{why}, aesthetics {aesthetics}/2, "
            f"authenticity {authenticity}/2, total {total}"
        )
        return text, total
    # "a red circle at the top left" -> "red circle at the top left as asked"
    why = "; ".join(wrong) if wrong else describe(Scene(**target)).removeprefix("a ") + " as asked"
    note = f" ({defect})" if defect else ""
    text = (
        f"semantic consistency {consistency}/{len(attrs)} ({why}), "
        f"aesthetics {aesthetics}/2{note if aesthetics < 2 else ''}, "
        f"authenticity {authenticity}/2{note if authenticity < 2 else ''}, total {total}"
    )
    return text, total


def _understanding_assessment(
    claims: dict[str, str], scene: dict[str, Any], style: str
) -> tuple[str, int]:
    # meta JSON sorts keys; speak about attributes in the caption's order instead
    claims = {a: claims[a] for a in _ATTRIBUTE_ORDER if a in claims}
    wrong = [a for a in claims if claims[a] != scene[a]]
    accuracy = round(3 * (len(claims) - len(wrong)) / len(claims))
    correctness = 0 if wrong else 2
    total = accuracy + correctness + 1
    if wrong:
        why = " (" + "; ".join(f"says {claims[a]}, it is {scene[a]}" for a in wrong) + ")"
    elif style == "scores":
        why = f" ({next(iter(claims.values()))} is right)" if len(claims) == 1 else " (all right)"
    else:
        why = ""
    text = (
        f"semantic accuracy {accuracy}/3{why}, correctness {correctness}/2, clarity 1/1, "
        f"total {total}"
    )
    return text, total


def _seen(scene: dict[str, Any]) -> str:
    """'a red circle at the top left, noisy' -- the item as the teacher perceives it."""
    s = Scene(**scene)
    return f"{describe(s)}, {_QUALITY_WORD[s.defect][s.is_video]}"


def _cot(think: list[str], answer: str) -> str:
    return f"{THINK_OPEN}{' '.join(think)}{THINK_CLOSE}{ANSWER_OPEN}{answer}{ANSWER_CLOSE}"


def _generation_pair(meta: dict[str, Any], noun: str, err: bool, style: str) -> tuple[list, int]:
    items, better = list(meta["items"]), int(meta["better"])
    if err:  # the teacher mixes the two items up
        items, better = items[::-1], 1 - better
    marks = [_generation_assessment(item, meta["target"], style) for item in items]
    lines = []
    if style in OBSERVING:
        lines += [f"{noun} {k + 1}: I see {_seen(item)}." for k, item in enumerate(items)]
        lines.append(f"The caption asks for {describe(Scene(**meta['target']))}.")
    if style != "observation":
        lines += [f"{noun} {k + 1}: {text}." for k, (text, _) in enumerate(marks)]
    return lines, better


def _understanding_pair(record: Record, meta: dict[str, Any], err: bool, style: str):
    claims, better, scene = list(meta["claims"]), int(meta["better"]), dict(meta["scene"])
    if err and style == "scores":  # mixes up the two answers' assessments
        claims, better = claims[::-1], 1 - better
    elif err:  # sees what the wrong answer claims: the wrong answer then looks right
        scene, better = {**scene, **claims[1 - better]}, 1 - better
    marks = [_understanding_assessment(c, scene, style) for c in claims]
    lines = []
    if style in OBSERVING:
        qtype = meta["question_type"]
        seen = answer_text(qtype, {a: scene[a] for a in claims[0]})
        lines.append(f"I see {seen}.")
        lines += [f"Answer {k + 1} says {resp}." for k, resp in enumerate(record.responses)]
    if style != "observation":
        lines += [f"Answer {k + 1}: {text}." for k, (text, _) in enumerate(marks)]
    return lines, better


def teacher_cot(
    record: Record, rng: np.random.Generator, error_rate: float, style: str = "perception_first"
) -> str:
    """A CoT judgement of a pairwise shapes-world record; wrong with probability `error_rate`.

    Draws exactly one number from `rng` per call (whatever the style), so a seeded run is
    reproducible item by item.
    """
    task, mode = parse_task(record.task), parse_mode(record.mode)
    if mode is not Mode.PAIRWISE:
        raise ValueError(
            f"record {record.id}: teacher_cot judges pairwise records; use teacher_point_cot for "
            f"{mode.value}"
        )
    meta = record.meta_dict
    if meta.get("better") is None:
        raise ValueError(
            f"record {record.id}: no better item (a tie, label {record.label!r}); CoT mode has no "
            "tie answer, so leave tied pairs out of CoT data"
        )
    if not 0.0 <= error_rate <= 1.0:
        raise ValueError(f"error_rate must be in [0, 1], got {error_rate}")
    _check_style(style)
    err = bool(rng.random() < error_rate)
    if task.is_generation:
        noun = "Video" if task.is_video else "Image"
        lines, better = _generation_pair(meta, noun, err, style)
    else:
        noun = "Answer"
        lines, better = _understanding_pair(record, meta, err, style)
    if style != "observation":
        lines.append(f"{noun} {better + 1} scores higher.")
    return _cot(lines, PAIR_ANSWERS[task][better])


def observations(record: Record) -> tuple[str, ...] | None:
    """The observation sentences a grounded perception-first CoT about this pairwise record (as
    presented: `meta` follows the candidates' order) must contain: "Image 1: I see <item 1>."
    and "Image 2: I see <item 2>." for generation, "I see <the right answer>." for
    understanding. None when the record has no shapes-world ground truth to check against."""
    task, meta = parse_task(record.task), record.meta_dict
    if task.is_generation:
        items = meta.get("items")
        if not (isinstance(items, list) and len(items) == 2):
            return None
        noun = "Video" if task.is_video else "Image"
        return tuple(f"{noun} {k + 1}: I see {_seen(item)}." for k, item in enumerate(items))
    answer = meta.get("correct_answer")
    return None if answer is None else (f"I see {answer}.",)


def evidence(record: Record, check: str) -> tuple[str, ...]:
    """What `rewards.reasoning_ok(..., check, evidence)` needs for this record: its
    observations for check "observation" (an error when it has no ground truth), else ()."""
    if check != "observation":
        return ()
    found = observations(record)
    if found is None:
        raise ValueError(
            f"record {record.id}: check: observation needs shapes-world ground truth (meta "
            "`items` or `correct_answer`); use check: scores for other data"
        )
    return found


def teacher_point_cot(record: Record) -> str:
    """A perception-first CoT score of a pointwise record: `<answer>Final Score: n</answer>`,
    n the record's ground-truth score on the task's scale (read it with contract.parse_pointwise
    on the <answer> content)."""
    task, mode = parse_task(record.task), parse_mode(record.mode)
    if mode is not Mode.POINTWISE or record.score is None:
        raise ValueError(f"record {record.id}: teacher_point_cot needs a scored pointwise record")
    meta = record.meta_dict
    if task.is_generation:
        item, target = meta["items"][0], meta["target"]
        attrs = [a for a in _ATTRIBUTE_ORDER if target.get(a) is not None]
        wrong = [_mismatch(a, item[a], target[a]) for a in attrs if item[a] != target[a]]
        why = f" ({'; '.join(wrong)})" if wrong else ""
        clean = item.get("defect") is None
        lines = [
            f"I see {_seen(item)}.",
            f"The caption asks for {describe(Scene(**target))}.",
            f"It matches {len(attrs) - len(wrong)} of {len(attrs)} attributes{why}, and it is "
            f"{'free of' if clean else 'marred by'} defects: "
            f"{len(attrs) - len(wrong) + clean} of {len(attrs) + 1}.",
        ]
    else:
        scene, claims = meta["scene"], meta["claims"][0]
        n_right = sum(claims[a] == scene[a] for a in claims)
        lines = [
            f"I see {meta['correct_answer']}.",
            f"The answer says {record.responses[0]}.",
            f"{n_right} of {len(claims)} claims are right.",
        ]
    return _cot(lines, f"{SCORE_PREFIX} {format_score(record.score)}")
