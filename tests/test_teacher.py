"""Behaviour of the programmatic CoT teacher on shapes-world records.

Run: .venv/bin/pytest tests/test_teacher.py
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from unireward.data.schema import Record
from unireward.data.shapes import ShapesConfig, generate
from unireward.data.teacher import teacher_cot
from unireward.tasks import PAIR_ANSWERS, TIE_ANSWERS, Mode, Task

COT = re.compile(r"<think>(?P<think>[^<>]+)</think><answer>(?P<answer>[^<>]+)</answer>")


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> list[Record]:
    config = ShapesConfig(seed=1, train_per_task_mode=20, eval_per_task_mode=0)
    return generate(config, tmp_path_factory.mktemp("shapes"))


def _judgeable(records: list[Record]) -> list[Record]:
    return [r for r in records if r.mode == Mode.PAIRWISE and r.label not in TIE_ANSWERS.values()]


def test_error_free_teacher_parses_and_agrees_with_the_label(records: list[Record]) -> None:
    rng = np.random.default_rng(0)
    pairs = _judgeable(records)
    assert {r.task for r in pairs} == {t.value for t in Task}
    for r in pairs:
        match = COT.fullmatch(teacher_cot(r, rng, error_rate=0.0))
        assert match, r.id
        assert match["answer"] == r.label
        noun = r.label.split()[0]  # Image / Video / Answer
        totals = [int(t) for t in re.findall(r"total (\d+)", match["think"])]
        assert len(totals) == 2 and totals[PAIR_ANSWERS[Task(r.task)].index(r.label)] == max(totals)
        assert totals[0] != totals[1]
        assert match["think"].startswith(f"{noun} 1: ") and f" {noun} 2: " in match["think"]
        dims = (
            ("semantic consistency", "aesthetics", "authenticity")
            if Task(r.task).is_generation
            else ("semantic accuracy", "correctness", "clarity")
        )
        assert all(match["think"].count(d) == 2 for d in dims)


def test_error_rate_is_met_empirically_and_errors_stay_self_consistent(
    records: list[Record],
) -> None:
    rng = np.random.default_rng(42)
    pairs = _judgeable(records)
    wrong = 0
    for k in range(500):
        r = pairs[k % len(pairs)]
        match = COT.fullmatch(teacher_cot(r, rng, error_rate=0.2))
        assert match and match["answer"] in PAIR_ANSWERS[Task(r.task)]
        wrong += match["answer"] != r.label
        totals = [int(t) for t in re.findall(r"total (\d+)", match["think"])]
        assert totals[PAIR_ANSWERS[Task(r.task)].index(match["answer"])] == max(totals)
    assert 0.14 < wrong / 500 < 0.26
    assert all(COT.fullmatch(teacher_cot(r, rng, 1.0))["answer"] != r.label for r in pairs)


def test_teacher_is_deterministic_given_the_rng(records: list[Record]) -> None:
    pairs = _judgeable(records)
    a = [teacher_cot(r, np.random.default_rng(5), 0.5) for r in pairs]
    b = [teacher_cot(r, np.random.default_rng(5), 0.5) for r in pairs]
    assert a == b


def test_teacher_refuses_pointwise_and_tie_records(records: list[Record]) -> None:
    rng = np.random.default_rng(0)
    point = next(r for r in records if r.mode == Mode.POINTWISE)
    with pytest.raises(ValueError, match="pairwise records only"):
        teacher_cot(point, rng, 0.0)
    tie = next(r for r in records if r.label in TIE_ANSWERS.values())
    with pytest.raises(ValueError, match="tie"):
        teacher_cot(tie, rng, 0.0)
