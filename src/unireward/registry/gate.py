"""The promotion gate: does a newly registered judge replace the `champion`?

Pure decision over two metric dicts; the `register` stage (unireward.registry.register) reads
the metrics from MLflow and moves the alias. Rule (shared/DESIGN.md, stage 9): the challenger
must beat the champion on the primary metric by `margin`, and no per-task metric may drop by more
than `max_regression`. A metric the challenger lacks, or reports as nan, refuses promotion with
a reason; it never passes silently.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

# Absorbs float round-off in `champion + margin` (0.8 + 0.01 != 0.81 in binary floating point).
_EPS = 1e-9


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    reasons: tuple[str, ...]


def _usable(metrics: Mapping[str, float], key: str) -> float | None:
    value = metrics.get(key)
    if value is None or isinstance(value, bool):
        return None
    value = float(value)
    return None if math.isnan(value) else value


def _check_challenger(challenger: Mapping[str, float], keys: Sequence[str]) -> list[str]:
    problems = []
    for key in keys:
        if key not in challenger:
            problems.append(f"challenger has no metric {key!r}; refusing to promote")
        elif _usable(challenger, key) is None:
            problems.append(f"challenger {key} is {challenger[key]!r}; refusing to promote")
    return problems


def promotion_decision(
    challenger: Mapping[str, float],
    champion: Mapping[str, float] | None,
    *,
    primary: str,
    margin: float,
    per_task_keys: Sequence[str],
    max_regression: float = 0.0,
    min_primary: float = 0.0,
) -> GateDecision:
    """Decide whether `challenger` replaces `champion`, with one reason per metric compared.

    Promote iff challenger[primary] >= champion[primary] + margin and, for every key in
    per_task_keys, champion[key] - challenger[key] <= max_regression. With no champion the
    challenger is promoted, provided its own metrics are present and not nan (a first model with
    broken metrics must not become champion either), and the challenger's primary metric must
    reach `min_primary` in every case (e.g. 0.55 for a pairwise accuracy: above chance).
    A per-task key the champion lacks (a task
    added since) is not compared and says so; a champion without the primary metric cannot be
    beaten automatically and refuses.

    Example: challenger {"acc": 0.82, "t1": 0.70}, champion {"acc": 0.80, "t1": 0.71},
    margin 0.01, max_regression 0.02 -> promote (acc +0.020 >= 0.01; t1 -0.010 within 0.02).
    """
    keys = [primary, *(k for k in per_task_keys if k != primary)]
    reasons = _check_challenger(challenger, keys)
    value = _usable(challenger, primary)
    if value is not None and value < min_primary - _EPS:
        # A judge at chance must not become champion, not even the first one.
        reasons.append(f"{primary} {value:.4f} is below the floor {min_primary:.4f}; refusing")
    if champion is None:
        reasons.append("no current champion: a challenger that passes every check becomes champion")
        return GateDecision(promote=len(reasons) == 1, reasons=tuple(reasons))
    ok = not reasons

    new, old = _usable(challenger, primary), _usable(champion, primary)
    if old is None:
        ok = False
        reasons.append(f"champion has no usable {primary}; cannot compare, promote by hand")
    elif new is not None:
        passed = new - old >= margin - _EPS
        ok &= passed
        reasons.append(
            f"{primary}: {new:.4f} vs champion {old:.4f} ({new - old:+.4f}); needs >= "
            f"{margin:+.4f}: {'pass' if passed else 'FAIL'}"
        )

    for key in per_task_keys:
        if key == primary:
            continue
        new, old = _usable(challenger, key), _usable(champion, key)
        if old is None:
            reasons.append(f"{key}: champion has no value, not compared")
        elif new is not None:
            passed = old - new <= max_regression + _EPS
            ok &= passed
            reasons.append(
                f"{key}: {new:.4f} vs champion {old:.4f} ({new - old:+.4f}); may drop at most "
                f"{max_regression:.4f}: {'pass' if passed else 'FAIL'}"
            )
    return GateDecision(promote=ok, reasons=tuple(reasons))
