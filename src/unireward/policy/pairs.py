"""Pair construction math (DESIGN "Pair construction"): pure functions, no judge, no I/O.

Per prompt: N sampled answers -> distinct answers (identical texts cannot be preferred to each
other, so they are not sent to the judge) -> consecutive pairs (0, 1), (2, 3), ... (an odd last
one is paired with the first) -> **pair ranking**: each pair's winner goes to the chosen list,
its loser to the rejected list; a tie or an unparseable verdict puts neither anywhere (never the
published positional default) -> **point sifting**: chosen = best-scored item of the chosen list,
rejected = worst-scored of the rejected list, scores compared as numbers -> drop the prompt when
chosen score <= rejected score.

    >>> pair_up(3)
    [(0, 1), (2, 0)]
    >>> d = select_pair({(0, 1): 1, (2, 0): 2}, [90.0, 10.0, 40.0])
    >>> (d.status, d.chosen, d.rejected, d.chosen_score, d.rejected_score)
    ('kept', 0, 1, 90.0, 10.0)
    >>> select_pair({(0, 1): 0}, [90.0, 10.0]).status      # a tie decides nothing
    'no_decided_pair'
    >>> select_pair({(0, 1): 2}, [90.0, 10.0]).status      # ranking and sifting disagree
    'chosen_not_better'

Tests: tests/test_build_pairs.py.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

# Why a prompt yields no pair, or that it yields one. Counted in build_pairs' statistics.
STATUSES = ("kept", "single_answer", "no_decided_pair", "unscored", "chosen_not_better")


def distinct(texts: Sequence[str]) -> tuple[list[str], list[int]]:
    """Distinct texts in order of first appearance, and how often each was sampled."""
    order: dict[str, int] = {}
    for t in texts:
        order[t] = order.get(t, 0) + 1
    return list(order), list(order.values())


def pair_up(n: int) -> list[tuple[int, int]]:
    """Indices of the pairs to judge among `n` distinct candidates (see module doc)."""
    pairs = [(i, i + 1) for i in range(0, n - 1, 2)]
    if n >= 3 and n % 2:
        pairs.append((n - 1, 0))
    return pairs


@dataclass(frozen=True)
class PairDecision:
    status: str  # one of STATUSES
    chosen: int | None = None
    rejected: int | None = None
    chosen_score: float | None = None
    rejected_score: float | None = None


def win_counts(verdicts: Mapping[tuple[int, int], int | None], n: int) -> list[float]:
    """How many judged pairs each of `n` candidates won (ties and unparseable verdicts count for
    no one): the scores of pair ranking alone, for a judge asked no pointwise scores
    (`build_pairs.point_sift: false`, e.g. a pairwise-only chain-of-thought judge).

    >>> win_counts({(0, 1): 2, (2, 0): 1, (3, 4): 0}, 5)    # 1 beats 0, 2 beats 0, 3 ties 4
    [0.0, 1.0, 1.0, 0.0, 0.0]
    """
    wins = [0.0] * n
    for (i, j), v in verdicts.items():
        if v in (1, 2):
            wins[i if v == 1 else j] += 1
    return wins


def select_pair(
    verdicts: Mapping[tuple[int, int], int | None], scores: Sequence[float | None]
) -> PairDecision:
    """Pair ranking then point sifting. verdicts[(i, j)]: 1 = i better, 2 = j better, 0 = tie,
    None = unparseable; scores[k]: candidate k's score (None = unparseable)."""
    if len(scores) < 2:
        return PairDecision("single_answer")
    chosen_list, rejected_list = [], []
    for (i, j), v in verdicts.items():
        if v in (1, 2):
            win, lose = (i, j) if v == 1 else (j, i)
            chosen_list.append(win)
            rejected_list.append(lose)
    if not chosen_list:
        return PairDecision("no_decided_pair")
    scored_c = [k for k in chosen_list if scores[k] is not None]
    scored_r = [k for k in rejected_list if scores[k] is not None]
    if not scored_c or not scored_r:
        return PairDecision("unscored")
    # max/min keep the first of equals: ties in score go to the earlier-judged pair, and a
    # chosen == rejected score is dropped below anyway.
    best = max(scored_c, key=lambda k: float(scores[k]))  # type: ignore[arg-type]
    worst = min(scored_r, key=lambda k: float(scores[k]))  # type: ignore[arg-type]
    c, r = float(scores[best]), float(scores[worst])  # type: ignore[arg-type]
    if c <= r or best == worst:
        return PairDecision("chosen_not_better", best, worst, c, r)
    return PairDecision("kept", best, worst, c, r)


def more_pairs(
    verdicts: Mapping[tuple[int, int], int | None],
    scores: Sequence[float | None],
    decision: PairDecision,
    k: int,
) -> list[tuple[int, int]]:
    """Up to `k` (chosen, rejected) pairs for one kept prompt: the decision's own pair first,
    then other pairs of a chosen-list item and a rejected-list item (as `select_pair` builds
    them) whose scores differ the same way, widest margin first, each item pair once. For many
    pairs from few samples (`build_gen_pairs.pairs_per_caption`); k = 1 is `select_pair`'s.

    >>> v = {(0, 1): 1, (2, 3): 1}
    >>> d = select_pair(v, [3.0, 1.0, 2.0, 0.0])
    >>> more_pairs(v, [3.0, 1.0, 2.0, 0.0], d, 4)
    [(0, 3), (0, 1), (2, 3), (2, 1)]
    """
    if decision.status != "kept" or k < 1:
        return []
    winners, losers = [], []
    for (i, j), v in verdicts.items():
        if v in (1, 2):
            win, lose = (i, j) if v == 1 else (j, i)
            winners.append(win) if win not in winners else None
            losers.append(lose) if lose not in losers else None
    first = (decision.chosen, decision.rejected)
    others = [
        (c, r)
        for c in winners
        for r in losers
        if c != r
        and (c, r) != first
        and scores[c] is not None
        and scores[r] is not None
        and float(scores[c]) > float(scores[r])  # type: ignore[arg-type]
    ]
    others.sort(key=lambda p: float(scores[p[0]]) - float(scores[p[1]]), reverse=True)  # type: ignore[arg-type]
    return [first, *others][:k]  # type: ignore[list-item]
