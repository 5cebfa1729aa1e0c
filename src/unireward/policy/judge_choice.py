"""Which of the DAG's judges builds the preference pairs (`build_pairs.judge_from`).

The DAG trains four judges: the unified judge (direct answers) and the UnifiedReward-Think
chain's cold-start, rejection-sampling and GRPO judges (chain of thought). `build_pairs` takes
the one named in params, or with `judge_from: best` the one whose evaluation scores highest on
`judge_metric` (default: image-understanding pairwise accuracy on the seen held-out split, the
task the policy's answers are judged on). A Think judge is asked its pairs in CoT mode and
ranks candidates by pair wins (`cot: true, point_sift: false`): it is trained pairwise, in CoT,
and has no pointwise scores of its own.

Pure: no model, no I/O beyond reading the evaluations' metrics.json.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# In DAG order; a tie on the metric goes to the earlier (the cheaper to serve: direct answers).
JUDGES = ("unified", "think", "rs", "grpo")
THINK_JUDGES = frozenset({"think", "rs", "grpo"})
JUDGE_FROM = ("best", *JUDGES)


def choose(evaluations: Mapping[str, Mapping[str, float]], judge_from: str, metric: str) -> dict:
    """{"judge", "reason", "scores"}: the named judge, or the best scorer on `metric` among the
    judges whose evaluation has it (NaN = not measured, never chosen)."""
    if judge_from not in JUDGE_FROM:
        raise ValueError(f"build_pairs.judge_from must be one of {JUDGE_FROM}, got {judge_from!r}")
    scores = {}
    for name in JUDGES:
        value = (evaluations.get(name) or {}).get(metric)
        if value is not None and not math.isnan(float(value)):
            scores[name] = float(value)
    if judge_from != "best":
        if judge_from not in evaluations:
            raise ValueError(f"build_pairs.judge_from: {judge_from!r} has no evaluation")
        return {"judge": judge_from, "reason": "named in params", "scores": scores}
    if not scores:
        raise ValueError(
            f"build_pairs.judge_from: best, but no evaluation has {metric!r} "
            f"(metrics of {sorted(evaluations)}); name a judge or another judge_metric"
        )
    best = max(scores, key=lambda name: (scores[name], -JUDGES.index(name)))
    others = ", ".join(f"{n} {v:.3f}" for n, v in scores.items() if n != best) or "none"
    return {
        "judge": best,
        "reason": f"highest {metric}: {scores[best]:.3f} (others: {others})",
        "scores": scores,
    }


def configure(config: Any, judge: str) -> Any:
    """The build_pairs config for the chosen judge: CoT pairs ranked by pair wins for a Think
    judge, the config as given for the unified judge."""
    if judge in THINK_JUDGES:
        return dataclasses.replace(config, cot=True, point_sift=False)
    return config


def read_evaluations(paths: Mapping[str, Path]) -> dict[str, dict[str, float]]:
    return {name: json.loads((Path(p) / "metrics.json").read_text()) for name, p in paths.items()}
