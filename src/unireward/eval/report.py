"""The base-vs-judge comparison table printed by `make pipeline-run` and `unireward report`.

Pure functions over evaluate's flat `metrics.json` keys; no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from unireward.tasks import TASKS

COLUMNS = (
    ("pairwise_diff", "pair diff"),
    ("pairwise_tau", "pair tau"),
    ("swap_consistency", "swap cons"),
    ("pointwise_spearman", "point rho"),
)


def split_metrics(metrics: Mapping[str, float], primary: str) -> dict[str, dict[str, float]]:
    """`{split: {"<task>/<metric>" or "<metric>_mean": v}}` from evaluate's flat keys.

    evaluate writes the primary split unprefixed (`<task>/<metric>`, `<metric>_mean`) and the
    others as `<split>/<task>/<metric>` and `<split>/<metric>_mean`; breakdowns are skipped.
    """
    out: dict[str, dict[str, float]] = {}
    for key, value in metrics.items():
        parts = key.split("/")
        if parts[0] in TASKS or (len(parts) == 1 and key.endswith("_mean")):
            split, rest = primary, parts
        elif len(parts) > 1 and (parts[1] in TASKS or len(parts) == 2):
            split, rest = parts[0], parts[1:]
        else:
            continue
        if (len(rest) == 2 and rest[0] in TASKS) or (len(rest) == 1 and rest[0].endswith("_mean")):
            out.setdefault(split, {})["/".join(rest)] = value
    return out


def _cell(value: float | None) -> str:
    return "   -" if value is None or math.isnan(value) else f"{value:4.2f}"


def format_comparison(
    base: Mapping[str, float],
    judge: Mapping[str, float],
    tasks: tuple[str, ...] = tuple(TASKS),
    primary: str = "eval_seen",
    names: tuple[str, str] = ("base", "judge"),
) -> str:
    """Per split and task: base -> judge for each headline metric, one row per task plus mean.

    `names` label the two sides in the header (e.g. ("judge", "think") for the cold start)."""
    by_split_base, by_split_judge = split_metrics(base, primary), split_metrics(judge, primary)
    splits = sorted(set(by_split_base) | set(by_split_judge), key=lambda s: (s != primary, s))
    header = f"{'split':<12} {'task':<20}" + "".join(f"  {title:>12}" for _, title in COLUMNS)
    lines = [header + f"   ({names[0]} -> {names[1]})", "-" * len(header)]
    for split in splits:
        b, j = by_split_base.get(split, {}), by_split_judge.get(split, {})
        rows = [(task, f"{task}/") for task in tasks]
        rows.append(("mean", ""))
        for label, prefix in rows:
            cells = []
            for key, _ in COLUMNS:
                name = f"{prefix}{key}" if prefix else f"{key}_mean"
                cells.append(f"  {_cell(b.get(name))} -> {_cell(j.get(name))}")
            lines.append(f"{split:<12} {label:<20}" + "".join(cells))
    return "\n".join(lines)
