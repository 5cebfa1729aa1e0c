"""The promotion gate, table-driven: margin on the primary metric, per-task regression, refusals."""

from __future__ import annotations

import math

import pytest

from unireward.registry.gate import promotion_decision

TASKS = ("t1", "t2")


def _m(primary: float, t1: float = 0.7, t2: float = 0.7) -> dict[str, float]:
    return {"acc": primary, "t1": t1, "t2": t2}


@pytest.mark.parametrize(
    ("challenger", "champion", "promote", "reason_part"),
    [
        (_m(0.5), None, True, "no current champion"),
        (_m(0.82), _m(0.80), True, "acc: 0.8200 vs champion 0.8000"),
        # exactly the margin passes despite 0.80 + 0.01 != 0.81 in floating point
        (_m(0.81), _m(0.80), True, "acc"),
        (_m(0.805), _m(0.80), False, "needs >= +0.0100: FAIL"),
        (_m(0.70), _m(0.80), False, "FAIL"),
        # primary improves but t2 drops 0.03 > 0.02
        (_m(0.90, t2=0.67), _m(0.80), False, "t2: 0.6700 vs champion 0.7000"),
        # a drop within max_regression passes
        (_m(0.90, t2=0.68), _m(0.80), True, "t2: 0.6800"),
        (_m(0.90, t1=math.nan), _m(0.80), False, "challenger t1 is nan"),
        ({"acc": 0.9, "t1": 0.7}, _m(0.80), False, "challenger has no metric 't2'"),
        ({"t1": 0.7, "t2": 0.7}, _m(0.80), False, "challenger has no metric 'acc'"),
        # even a first model needs usable metrics
        ({"acc": 0.9, "t1": 0.7}, None, False, "challenger has no metric 't2'"),
        (_m(math.nan), None, False, "challenger acc is nan"),
        # a task the champion was never measured on is not a regression
        (_m(0.90), {"acc": 0.8, "t1": 0.7}, True, "t2: champion has no value, not compared"),
        (_m(0.90), {"t1": 0.7, "t2": 0.7}, False, "champion has no usable acc"),
        (_m(0.90), {}, False, "champion has no usable acc"),
    ],
)
def test_promotion_decision(challenger, champion, promote, reason_part):
    decision = promotion_decision(
        challenger, champion, primary="acc", margin=0.01, per_task_keys=TASKS, max_regression=0.02
    )
    assert decision.promote is promote
    assert any(reason_part in r for r in decision.reasons), decision.reasons


def test_reasons_name_every_metric_compared():
    decision = promotion_decision(
        _m(0.9), _m(0.8), primary="acc", margin=0.01, per_task_keys=TASKS, max_regression=0.0
    )
    assert decision.promote
    for key in ("acc", "t1", "t2"):
        assert sum(r.startswith(f"{key}:") for r in decision.reasons) == 1


def test_default_max_regression_is_zero():
    decision = promotion_decision(
        _m(0.9, t1=0.699), _m(0.8), primary="acc", margin=0.0, per_task_keys=TASKS
    )
    assert not decision.promote


def test_primary_listed_among_per_task_keys_is_compared_once():
    decision = promotion_decision(
        _m(0.9), _m(0.8), primary="acc", margin=0.01, per_task_keys=("acc", *TASKS)
    )
    assert decision.promote
    assert sum(r.startswith("acc:") for r in decision.reasons) == 1


@pytest.mark.parametrize(
    ("challenger", "champion", "promote"),
    [
        (_m(0.50), None, False),  # a first judge at chance never becomes champion
        (_m(0.56), None, True),
        (_m(0.54), _m(0.40), False),  # better than a bad champion, still below the floor
        (_m(0.60), _m(0.40), True),
    ],
)
def test_min_primary_floor(challenger, champion, promote):
    decision = promotion_decision(
        challenger,
        champion,
        primary="acc",
        margin=0.01,
        per_task_keys=TASKS,
        max_regression=1.0,
        min_primary=0.55,
    )
    assert decision.promote is promote
    assert promote or any("below the floor" in r for r in decision.reasons)
