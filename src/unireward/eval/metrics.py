"""Evaluation math for the judge: pairwise accuracy (tau / diff), swap consistency, Spearman.

Pure functions, no I/O. The `evaluate` stage parses the judge's answers into the integer verdicts
below and calls these per task and mode (see shared/DESIGN.md, "Evaluation protocol").

Verdict encoding, shared by predictions and labels:

    1    = the first item is better
    2    = the second item is better
    0    = tie ("Both images are equally good")
    None = the judge's answer could not be parsed (predictions only; never guessed)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from scipy import stats

FIRST, SECOND, TIE = 1, 2, 0
_VERDICTS = (FIRST, SECOND, TIE)


@dataclass(frozen=True)
class PairwiseAccuracy:
    """Pairwise accuracy two ways, plus how often the judge dodged.

    tau: correct / n over all pairs; a predicted tie on a non-tie pair and an unparseable
        answer are both wrong.
    diff: correct / n_diff over pairs whose label is not a tie and whose prediction is not a
        tie (unparseable answers stay in the denominator, as wrong); nan when n_diff == 0.
    unparseable_rate, tie_rate: fraction of all n predictions that were None / tie.
    """

    tau: float
    diff: float
    n: int
    n_diff: int
    unparseable_rate: float
    tie_rate: float


@dataclass(frozen=True)
class SpearmanResult:
    """Spearman rank correlation over parseable predictions.

    rho: nan when fewer than 3 valid pairs or either side is constant.
    n: number of pairs given (valid or not); unparseable_rate: fraction of them with no score.
    """

    rho: float
    n: int
    unparseable_rate: float


def _check_verdicts(values: Sequence[int | None], name: str, allow_none: bool) -> None:
    for i, v in enumerate(values):
        if v is None and allow_none:
            continue
        if isinstance(v, bool) or v not in _VERDICTS:
            allowed = "1, 2, 0" + (" or None" if allow_none else "")
            raise ValueError(f"{name}[{i}] = {v!r}; verdicts must be {allowed}")


def _check_lengths(a: Sequence, b: Sequence, a_name: str, b_name: str) -> None:
    if len(a) != len(b):
        raise ValueError(f"{a_name} has {len(a)} items but {b_name} has {len(b)}; pair them 1:1")


def mirror(pred: int | None) -> int | None:
    """The verdict for the same pair shown in the other order: 1 <-> 2; tie and None unchanged.

    Example: mirror(1) == 2, mirror(0) == 0, mirror(None) is None.
    """
    if pred == FIRST:
        return SECOND
    if pred == SECOND:
        return FIRST
    return pred


def pairwise_accuracy(preds: Sequence[int | None], labels: Sequence[int]) -> PairwiseAccuracy:
    """tau and diff accuracy of pairwise verdicts.

    Shapes: preds [N] of {1, 2, 0, None}, labels [N] of {1, 2, 0}.

    Worked example::

        preds  = [1, 2, 0, None, 1]
        labels = [1, 1, 1, 2,    0]
        tau:  correct only at index 0                      -> 1/5 = 0.2
        diff: drop index 4 (tie label) and index 2 (tie
              prediction); keep 0 (right), 1 (wrong),
              3 (unparseable = wrong)                      -> 1/3, n_diff = 3
        unparseable_rate = 1/5, tie_rate = 1/5

    Empty input gives nan for every rate (n = 0) rather than an exception, so a task with no
    eval items shows up as a visible nan instead of crashing the stage.
    """
    _check_lengths(preds, labels, "preds", "labels")
    _check_verdicts(preds, "preds", allow_none=True)
    _check_verdicts(labels, "labels", allow_none=False)
    n = len(preds)
    correct = sum(p == y for p, y in zip(preds, labels, strict=True))
    diff_pairs = [(p, y) for p, y in zip(preds, labels, strict=True) if y != TIE and p != TIE]
    n_diff = len(diff_pairs)
    diff_correct = sum(p == y for p, y in diff_pairs)
    return PairwiseAccuracy(
        tau=correct / n if n else math.nan,
        diff=diff_correct / n_diff if n_diff else math.nan,
        n=n,
        n_diff=n_diff,
        unparseable_rate=sum(p is None for p in preds) / n if n else math.nan,
        tie_rate=sum(p == TIE for p in preds) / n if n else math.nan,
    )


def swap_consistency(preds: Sequence[int | None], preds_swapped: Sequence[int | None]) -> float:
    """Fraction of pairs whose verdict on the swapped order mirrors the original verdict.

    Shapes: preds [N], preds_swapped [N] of {1, 2, 0, None}; preds_swapped[i] is the judge's
    verdict on pair i shown as (second, first). A None on either side is inconsistent.

    Worked example::

        preds         = [1, 2, 0, 1, None]
        preds_swapped = [2, 1, 0, 1, 2]
        consistent:     y  y  y  n  n      -> 3/5 = 0.6

    Returns nan for empty input.
    """
    _check_lengths(preds, preds_swapped, "preds", "preds_swapped")
    _check_verdicts(preds, "preds", allow_none=True)
    _check_verdicts(preds_swapped, "preds_swapped", allow_none=True)
    if not preds:
        return math.nan
    agree = sum(
        p is not None and s is not None and s == mirror(p)
        for p, s in zip(preds, preds_swapped, strict=True)
    )
    return agree / len(preds)


def spearman(pred: Sequence[float | None], truth: Sequence[float]) -> SpearmanResult:
    """Spearman rank correlation between pointwise scores and ground-truth scores.

    Shapes: pred [N] of float or None (unparseable), truth [N] of float. Unparseable
    predictions are left out of rho but counted in n and unparseable_rate.

    Worked example::

        pred  = [1.0, 2.0, None, 4.0, 3.0]
        truth = [0.1, 0.2, 0.3,  0.3, 0.4]
        rho over (1,.1) (2,.2) (4,.3) (3,.4): ranks [1,2,4,3] vs [1,2,3,4] -> rho = 0.8
        n = 5, unparseable_rate = 0.2

    rho is nan (never an exception) with fewer than 3 valid pairs or a constant side, since
    a correlation is undefined there; NaN predictions count as unparseable.
    """
    _check_lengths(pred, truth, "pred", "truth")
    n = len(pred)
    valid = [
        (float(p), float(t))
        for p, t in zip(pred, truth, strict=True)
        if p is not None and not math.isnan(p)
    ]
    unparseable_rate = (n - len(valid)) / n if n else math.nan
    xs = [p for p, _ in valid]
    ys = [t for _, t in valid]
    if len(valid) < 3 or len(set(xs)) < 2 or len(set(ys)) < 2:
        return SpearmanResult(rho=math.nan, n=n, unparseable_rate=unparseable_rate)
    rho = float(stats.spearmanr(xs, ys).statistic)
    return SpearmanResult(rho=rho, n=n, unparseable_rate=unparseable_rate)


@dataclass(frozen=True)
class BenchmarkAccuracy:
    """Pairwise accuracy as the public benchmarks' papers report it (GenAI-Bench,
    VideoGen-RewardBench; UnifiedReward's evaluation scripts).

    tau: correct / n over all pairs, ties included: a tie label is right only when the judge
        answers a tie, a tie answer on a non-tie pair is wrong (GenAI-Bench's tau, "w/ ties").
    diff: correct / n_diff over the pairs whose *label* is not a tie; a tie answer on one of
        them stays in, as wrong ("w/o ties"). Unlike `PairwiseAccuracy.diff`, which also
        leaves out the pairs the judge called a tie, so the two are not interchangeable.
    Unparseable answers are wrong in both (the published video script reads them as a tie).
    """

    tau: float
    diff: float
    n: int
    n_diff: int
    unparseable_rate: float


def benchmark_accuracy(preds: Sequence[int | None], labels: Sequence[int]) -> BenchmarkAccuracy:
    """tau and diff accuracy in the benchmarks' sense (see `BenchmarkAccuracy`).

    Shapes: preds [N] of {1, 2, 0, None}, labels [N] of {1, 2, 0}.

    Worked example::

        preds  = [1, 2, 0, None, 0]
        labels = [1, 1, 1, 2,    0]
        tau:  right at 0 and 4 (a tie on a tie)          -> 2/5 = 0.4
        diff: drop index 4 (tie label); keep 0 (right),
              1 (wrong), 2 (tie answer = wrong), 3 (wrong) -> 1/4, n_diff = 4
    """
    _check_lengths(preds, labels, "preds", "labels")
    _check_verdicts(preds, "preds", allow_none=True)
    _check_verdicts(labels, "labels", allow_none=False)
    n = len(preds)
    right = [p == y for p, y in zip(preds, labels, strict=True)]
    decided = [r for r, y in zip(right, labels, strict=True) if y != TIE]
    return BenchmarkAccuracy(
        tau=sum(right) / n if n else math.nan,
        diff=sum(decided) / len(decided) if decided else math.nan,
        n=n,
        n_diff=len(decided),
        unparseable_rate=sum(p is None for p in preds) / n if n else math.nan,
    )


@dataclass(frozen=True)
class MacroAccuracy:
    """overall: right / n over every item; macro: the mean of the per-group accuracies (each
    group counts once, whatever its size: VL-RewardBench's macro average); per_group."""

    overall: float
    macro: float
    per_group: dict[str, float]
    n: int


def macro_accuracy(right: Sequence[bool], groups: Sequence[str]) -> MacroAccuracy:
    """Overall and macro accuracy over groups (VL-RewardBench: general, hallucination,
    reasoning).

    Shapes: right [N] of bool, groups [N] of group names.

    Worked example::

        right  = [True, False, True, True]
        groups = ["a",  "a",   "b",  "b"]
        overall = 3/4; per_group a = 1/2, b = 2/2; macro = (0.5 + 1.0) / 2 = 0.75
    """
    _check_lengths(right, groups, "right", "groups")
    n = len(right)
    per_group: dict[str, list[bool]] = {}
    for r, g in zip(right, groups, strict=True):
        per_group.setdefault(g, []).append(bool(r))
    accuracy = {g: sum(v) / len(v) for g, v in sorted(per_group.items())}
    return MacroAccuracy(
        overall=sum(map(bool, right)) / n if n else math.nan,
        macro=sum(accuracy.values()) / len(accuracy) if accuracy else math.nan,
        per_group=accuracy,
        n=n,
    )
