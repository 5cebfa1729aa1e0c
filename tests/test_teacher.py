"""Behaviour of the programmatic CoT teacher on shapes-world records.

Run: .venv/bin/pytest tests/test_teacher.py
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from unireward.contract import parse_pointwise, split_cot
from unireward.data.schema import Record
from unireward.data.shapes import Scene, ShapesConfig, describe, generate
from unireward.data.teacher import STYLES, teacher_cot, teacher_point_cot
from unireward.tasks import PAIR_ANSWERS, TIE_ANSWERS, Mode, Task

SCORING = tuple(s for s in STYLES if s != "observation")  # the styles that write totals

COT = re.compile(r"<think>(?P<think>[^<>]+)</think><answer>(?P<answer>[^<>]+)</answer>")


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> list[Record]:
    config = ShapesConfig(seed=1, train_per_task_mode=20, eval_per_task_mode=0)
    return generate(config, tmp_path_factory.mktemp("shapes"))


def _judgeable(records: list[Record]) -> list[Record]:
    return [r for r in records if r.mode == Mode.PAIRWISE and r.label not in TIE_ANSWERS.values()]


def _dims(task: Task) -> tuple[str, ...]:
    if task.is_generation:
        return ("semantic consistency", "aesthetics", "authenticity")
    return ("semantic accuracy", "correctness", "clarity")


@pytest.mark.parametrize("style", SCORING)
def test_error_free_teacher_parses_and_agrees_with_the_label(
    records: list[Record], style: str
) -> None:
    rng = np.random.default_rng(0)
    pairs = _judgeable(records)
    assert {r.task for r in pairs} == {t.value for t in Task}
    for r in pairs:
        match = COT.fullmatch(teacher_cot(r, rng, error_rate=0.0, style=style))
        assert match, r.id
        assert match["answer"] == r.label
        totals = [int(t) for t in re.findall(r"total (\d+)", match["think"])]
        assert len(totals) == 2 and totals[PAIR_ANSWERS[Task(r.task)].index(r.label)] == max(totals)
        assert totals[0] != totals[1]
        assert all(match["think"].count(d) == 2 for d in _dims(Task(r.task)))


def test_perception_first_says_what_it_sees_before_it_scores(records: list[Record]) -> None:
    rng = np.random.default_rng(0)
    for r in _judgeable(records):
        think = COT.fullmatch(teacher_cot(r, rng, error_rate=0.0))["think"]
        meta, task = r.meta_dict, Task(r.task)
        first_score = think.index(_dims(task)[0])
        if task.is_generation:
            noun = r.label.split()[0]  # Image / Video
            for k, item in enumerate(meta["items"]):
                clean = "smooth" if task.is_video else "clean"
                word = {None: clean, "noise": "noisy", "blur": "blurry"}.get(
                    item["defect"], item["defect"]
                )
                seen = f"{noun} {k + 1}: I see {describe(Scene(**item))}, {word}."
                assert seen in think and think.index(seen) < first_score, think
            assert f"The caption asks for {r.prompt}." in think
        else:
            assert think.startswith(f"I see {meta['correct_answer']}. ")
            for k, response in enumerate(r.responses):
                assert think.index(f"Answer {k + 1} says {response}.") < first_score
        assert think.endswith("scores higher.")


def test_observation_style_is_what_it_sees_then_the_verdict(records: list[Record]) -> None:
    """The probe's target (experiments/probe_cot_iu.py), word for word, and its generation analogue:
    perception_first's observations, no scores, then the answer."""
    pairs = _judgeable(records)
    for r in pairs:
        full = COT.fullmatch(teacher_cot(r, np.random.default_rng(0), 0.0))["think"]
        text = teacher_cot(r, np.random.default_rng(0), 0.0, style="observation")
        match = COT.fullmatch(text)
        assert match and match["answer"] == r.label
        think, meta = match["think"], r.meta_dict
        assert "total" not in think and "scores higher" not in think and full.startswith(think)
        if Task(r.task).is_generation:
            assert think.endswith(f"The caption asks for {r.prompt}.")
        else:
            a, b = r.responses
            assert text == (
                f"<think>I see {meta['correct_answer']}. Answer 1 says {a}. Answer 2 says {b}."
                f"</think><answer>{r.label}</answer>"
            )
    # a wrong teacher stays self-consistent: what it says it sees is the wrong answer's claim
    rng, wrong = np.random.default_rng(7), 0
    for r in [r for r in pairs if not Task(r.task).is_generation]:
        match = COT.fullmatch(teacher_cot(r, rng, 1.0, style="observation"))
        assert match["answer"] != r.label
        k = PAIR_ANSWERS[Task(r.task)].index(match["answer"])
        wrong += match["think"].startswith(f"I see {r.responses[k]}.")
    assert wrong == len([r for r in pairs if not Task(r.task).is_generation])


def test_scores_style_is_the_earlier_verdict_first_text(records: list[Record]) -> None:
    r = next(r for r in _judgeable(records) if r.task == "image_understanding")
    think = COT.fullmatch(teacher_cot(r, np.random.default_rng(0), 0.0, style="scores"))["think"]
    assert think.startswith("Answer 1: semantic accuracy ") and "I see" not in think


@pytest.mark.parametrize("task", ["image_generation", "video_understanding"])
def test_pointwise_judgements_see_first_and_end_in_the_true_score(
    records: list[Record], task: str
) -> None:
    for r in [r for r in records if r.mode == Mode.POINTWISE and r.task == task]:
        parts = split_cot(teacher_point_cot(r))
        assert parts is not None and parts[0].startswith("I see ")
        assert parse_pointwise(parts[1], Task(task)).score == pytest.approx(r.score)


@pytest.mark.parametrize("style", SCORING)
def test_error_rate_is_met_empirically_and_errors_stay_self_consistent(
    records: list[Record], style: str
) -> None:
    rng = np.random.default_rng(42)
    pairs = _judgeable(records)
    wrong = 0
    for k in range(500):
        r = pairs[k % len(pairs)]
        match = COT.fullmatch(teacher_cot(r, rng, error_rate=0.2, style=style))
        assert match and match["answer"] in PAIR_ANSWERS[Task(r.task)]
        wrong += match["answer"] != r.label
        totals = [int(t) for t in re.findall(r"total (\d+)", match["think"])]
        assert totals[PAIR_ANSWERS[Task(r.task)].index(match["answer"])] == max(totals)
    assert 0.14 < wrong / 500 < 0.26
    assert all(
        COT.fullmatch(teacher_cot(r, rng, 1.0, style=style))["answer"] != r.label for r in pairs
    )


def test_teacher_is_deterministic_given_the_rng(records: list[Record]) -> None:
    pairs = _judgeable(records)
    a = [teacher_cot(r, np.random.default_rng(5), 0.5) for r in pairs]
    b = [teacher_cot(r, np.random.default_rng(5), 0.5) for r in pairs]
    assert a == b


def test_teacher_refuses_pointwise_and_tie_records(records: list[Record]) -> None:
    rng = np.random.default_rng(0)
    point = next(r for r in records if r.mode == Mode.POINTWISE)
    with pytest.raises(ValueError, match="teacher_point_cot"):
        teacher_cot(point, rng, 0.0)
    with pytest.raises(ValueError, match="unknown teacher style 'terse'"):
        teacher_cot(_judgeable(records)[0], rng, 0.0, style="terse")
    tie = next(r for r in records if r.label in TIE_ANSWERS.values())
    with pytest.raises(ValueError, match="tie"):
        teacher_cot(tie, rng, 0.0)
