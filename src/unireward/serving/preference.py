"""Preference math over judge verdicts: swap-debiasing and group win rates. Pure functions.

A pairwise verdict is `contract.PairVerdict`: preferred 1 (first item), 2 (second), 0 (tie) or
None (unparseable, with a reason). Asking the judge both orders exposes positional bias (a judge
that always answers "Image 1 is better" agrees with itself in neither order):

    >>> fwd = PairVerdict(1)                      # asked (a, b): a is better
    >>> back = unswap(PairVerdict(2))             # asked (b, a): a is better -> 1 in (a, b) order
    >>> combine_swapped(fwd, back)
    PairVerdict(preferred=1, reason=None)
    >>> combine_swapped(PairVerdict(1), unswap(PairVerdict(1)))   # positional answer
    PairVerdict(preferred=0, reason=None)

Group win rates (the pairwise reward for N candidates of one prompt, e.g. GRPO for an image
generator): every pair (i, j), i < j, judged once; a win counts 1, a tie 1/2, a missing verdict
is left out of both candidates' denominators:

    >>> win_rates(3, {(0, 1): 1, (0, 2): 1, (1, 2): 0})
    [1.0, 0.25, 0.25]

Tests: tests/test_serving_client.py.
"""

from __future__ import annotations

from collections.abc import Mapping

from unireward.contract import PairVerdict

_MIRROR = {1: 2, 2: 1, 0: 0}


def unswap(verdict: PairVerdict) -> PairVerdict:
    """A verdict given on the swapped pair, expressed in the original order (1 <-> 2)."""
    if verdict.preferred is None:
        return verdict
    return PairVerdict(_MIRROR[verdict.preferred])


def combine_swapped(forward: PairVerdict, backward: PairVerdict) -> PairVerdict:
    """One verdict from both orders; `backward` is already in the forward order (`unswap`).

    Both parse and agree -> that verdict. Both parse and disagree -> 0: the judge has no
    preference that survives swapping, and reporting either side would be the positional guess
    the published pair construction made. Either unparseable -> unparseable, naming the order.
    """
    if forward.preferred is None:
        return PairVerdict(None, f"forward order: {forward.reason}")
    if backward.preferred is None:
        return PairVerdict(None, f"swapped order: {backward.reason}")
    if forward.preferred == backward.preferred:
        return forward
    return PairVerdict(0)


def disagree(forward: PairVerdict, backward: PairVerdict) -> bool | None:
    """True if both orders parse and differ (in the forward order), None if either is missing."""
    if forward.preferred is None or backward.preferred is None:
        return None
    return forward.preferred != backward.preferred


def win_rates(n: int, outcomes: Mapping[tuple[int, int], int | None]) -> list[float | None]:
    """Per-candidate win rate in [0, 1] from pairwise outcomes; None = no usable comparison.

    outcomes[(i, j)], 0 <= i < j < n: 1 = i preferred, 2 = j preferred, 0 = tie, None = no
    verdict (unparseable or failed). Pairs absent from `outcomes` are simply not compared.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    points = [0.0] * n
    counted = [0] * n
    for (i, j), outcome in outcomes.items():
        if not 0 <= i < j < n:
            raise ValueError(f"pair {(i, j)} is not (i, j) with 0 <= i < j < {n}")
        if outcome is None:
            continue
        if outcome not in (0, 1, 2):
            raise ValueError(f"outcome for {(i, j)} must be 0, 1, 2 or None, got {outcome!r}")
        points[i] += {1: 1.0, 2: 0.0, 0: 0.5}[outcome]
        points[j] += {1: 0.0, 2: 1.0, 0: 0.5}[outcome]
        counted[i] += 1
        counted[j] += 1
    return [p / c if c else None for p, c in zip(points, counted, strict=True)]
