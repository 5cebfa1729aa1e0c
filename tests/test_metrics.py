"""Evaluation math: tau/diff accuracy, swap consistency, Spearman, on hand-computed tables."""

from __future__ import annotations

import math

import pytest

from unireward.eval.metrics import mirror, pairwise_accuracy, spearman, swap_consistency

NAN = math.nan


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b)


@pytest.mark.parametrize(
    ("preds", "labels", "tau", "diff", "n_diff", "unparseable", "tie"),
    [
        # docstring example: tie label dropped, tie prediction dropped, None counted wrong
        ([1, 2, 0, None, 1], [1, 1, 1, 2, 0], 1 / 5, 1 / 3, 3, 1 / 5, 1 / 5),
        ([1, 2, 1, 2], [1, 2, 1, 2], 1.0, 1.0, 4, 0.0, 0.0),
        ([2, 1, 2, 1], [1, 2, 1, 2], 0.0, 0.0, 4, 0.0, 0.0),
        # a correctly predicted tie counts for tau, is outside diff
        ([0, 1], [0, 2], 1 / 2, 0.0, 1, 0.0, 1 / 2),
        # all labels ties: diff undefined
        ([0, 1, None], [0, 0, 0], 1 / 3, NAN, 0, 1 / 3, 1 / 3),
        # judge answers tie everywhere: tau 0 on non-tie labels, diff undefined
        ([0, 0, 0], [1, 2, 1], 0.0, NAN, 0, 0.0, 1.0),
        # all unparseable: wrong for both, still in the diff denominator
        ([None, None], [1, 2], 0.0, 0.0, 2, 1.0, 0.0),
        ([], [], NAN, NAN, 0, NAN, NAN),
    ],
)
def test_pairwise_accuracy(preds, labels, tau, diff, n_diff, unparseable, tie):
    got = pairwise_accuracy(preds, labels)
    assert got.n == len(preds)
    assert got.n_diff == n_diff
    assert _same(got.tau, tau)
    assert _same(got.diff, diff)
    assert _same(got.unparseable_rate, unparseable)
    assert _same(got.tie_rate, tie)


@pytest.mark.parametrize(
    ("preds", "labels", "match"),
    [
        ([1], [1, 2], "pair them"),
        ([3], [1], r"preds\[0\] = 3"),
        ([1], [None], r"labels\[0\] = None"),
        ([True], [1], r"preds\[0\] = True"),
    ],
)
def test_pairwise_accuracy_rejects_bad_input(preds, labels, match):
    with pytest.raises(ValueError, match=match):
        pairwise_accuracy(preds, labels)


@pytest.mark.parametrize(
    ("preds", "swapped", "expected"),
    [
        ([1, 2, 0, 1, None], [2, 1, 0, 1, 2], 3 / 5),
        ([1, 2], [2, 1], 1.0),
        ([1, 2], [1, 2], 0.0),  # positional bias: always picks the same slot
        ([0, 0], [0, 1], 1 / 2),
        ([None, None], [None, None], 0.0),
        ([1], [None], 0.0),
        ([], [], NAN),
    ],
)
def test_swap_consistency(preds, swapped, expected):
    assert _same(swap_consistency(preds, swapped), expected)


def test_swap_consistency_rejects_unequal_lengths():
    with pytest.raises(ValueError, match="pair them"):
        swap_consistency([1, 2], [2])


@pytest.mark.parametrize(("pred", "expected"), [(1, 2), (2, 1), (0, 0), (None, None)])
def test_mirror(pred, expected):
    assert mirror(pred) == expected


@pytest.mark.parametrize(
    ("pred", "truth", "rho", "unparseable"),
    [
        # docstring example: ranks [1,2,4,3] vs [1,2,3,4] -> 1 - 6*2/(4*15) = 0.8
        ([1.0, 2.0, None, 4.0, 3.0], [0.1, 0.2, 0.3, 0.3, 0.4], 0.8, 1 / 5),
        ([1.0, 2.0, 3.0], [10.0, 20.0, 30.0], 1.0, 0.0),
        ([3.0, 2.0, 1.0], [10.0, 20.0, 30.0], -1.0, 0.0),
        ([1.0, 2.0, None], [1.0, 2.0, 3.0], NAN, 1 / 3),  # 2 valid < 3
        ([5.0, 5.0, 5.0, 5.0], [1.0, 2.0, 3.0, 4.0], NAN, 0.0),  # constant prediction
        ([1.0, 2.0, 3.0], [7.0, 7.0, 7.0], NAN, 0.0),  # constant truth
        ([None, NAN, None], [1.0, 2.0, 3.0], NAN, 1.0),  # nan counts as unparseable
        ([], [], NAN, NAN),
    ],
)
def test_spearman(pred, truth, rho, unparseable):
    got = spearman(pred, truth)
    assert got.n == len(pred)
    assert _same(got.rho, rho)
    assert _same(got.unparseable_rate, unparseable)


def test_spearman_rejects_unequal_lengths():
    with pytest.raises(ValueError, match="pair them"):
        spearman([1.0], [1.0, 2.0])
