"""Stage `ablation`: the UnifiedReward-Think ablation table across the evaluated judges.

    unireward ablation --evaluation judge=runs/evaluate/judge \
        --evaluation think=runs/evaluate/think --evaluation rs=runs/evaluate/rs \
        --evaluation grpo=runs/evaluate/grpo --output-dir runs/ablation

The paper's table shape: unified judge -> + cold start -> + rejection sampling -> + GRPO, per
task and held-out split. Each `--evaluation NAME=DIR` is an `evaluate` output directory; their
order is the column order. Nothing is re-scored: the cells are read from each directory's
`metrics.json` (evaluate's flat keys, sorted into splits by `report.split_metrics`).

A column is headed with the mode its evaluation ran in, read from the metrics (CoT mode writes
`format_valid`): in the DAG the unified judge is scored directly and the Think judges in CoT
mode, so its diff accuracy is a direct verdict's and its format-valid cells are `-`.

Writes `ablation.md` (one markdown table per split: rows = task + mean, columns = stages, cells
"diff / format-valid / swap" for the default `metrics`), `ablation.json` (the same numbers
nested, null where absent), `ablation.png` (the first metric per task and stage, one panel per
split, chance at 0.5), `report.html` (plot and tables: the Kubeflow HTML artifact), and logs
one MLflow run `ablation` with metrics `<stage>/<split>/<task>/<metric>`, the directory
(`ablation/`, less the PNG) and the plot, once, as `plots/ablation.png`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unireward.config import to_dict
from unireward.eval.report import split_metrics
from unireward.tasks import TASKS

# The per-task metrics evaluate writes (unireward.eval.evaluate.score_split; tests keep the two
# in step). All but the two `*_unparseable` also have a `<metric>_mean` aggregate.
TASK_METRICS = (
    "pairwise_tau",
    "pairwise_diff",
    "pairwise_unparseable",
    "swap_consistency",
    "format_valid",
    "cot_accuracy",
    "pointwise_spearman",
    "pointwise_unparseable",
)
MEAN = "mean"
DEFAULT_METRICS = ("pairwise_diff", "format_valid", "swap_consistency")
# Metrics per split, per row (task or "mean"), per stage: {split: {row: {stage: {metric: v}}}}.
Nested = dict[str, dict[str, dict[str, dict[str, float]]]]


@dataclass(frozen=True)
class AblationConfig:
    # Cell contents, in order; the first is also the plotted metric.
    metrics: tuple[str, ...] = DEFAULT_METRICS
    primary_split: str = "eval_seen"  # evaluate's primary_split: its unprefixed keys
    tracking_uri: str | None = None  # None = $MLFLOW_TRACKING_URI or local sqlite; "null" = none
    experiment: str = "unireward"

    def __post_init__(self) -> None:
        if not self.metrics:
            raise ValueError("ablation.metrics is empty: name at least one, e.g. pairwise_diff")
        unknown = [m for m in self.metrics if m not in TASK_METRICS]
        if unknown:
            raise ValueError(
                f"ablation.metrics {unknown} are not evaluate metrics; choose from "
                f"{', '.join(TASK_METRICS)}"
            )
        if not self.primary_split:
            raise ValueError("ablation.primary_split must name evaluate's primary_split")


@dataclass(frozen=True)
class AblationResult:
    output_dir: Path
    table_path: Path  # ablation.md
    stages: tuple[str, ...]
    run_id: str | None
    metrics: dict[str, float]  # what went to MLflow: <stage>/<split>/<task>/<metric>


def parse_evaluations(specs: Iterable[str]) -> dict[str, Path]:
    """`["judge=runs/evaluate/judge", ...]` -> ordered `{stage: dir}` (the CLI's --evaluation)."""
    out: dict[str, Path] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        name = name.strip()
        if not sep or not name or not path:
            raise ValueError(
                f"--evaluation {spec!r}: expected NAME=DIR, e.g. grpo=runs/evaluate/grpo"
            )
        if name in out:
            raise ValueError(f"--evaluation names stage {name!r} twice; each column needs one name")
        out[name] = Path(path)
    return out


def is_cot(metrics: Mapping[str, float]) -> bool:
    """Whether an evaluation ran pairwise in CoT mode (only CoT mode writes format_valid)."""
    return any(key.endswith("/format_valid") or key == "format_valid_mean" for key in metrics)


def collect(
    evaluations: Mapping[str, Mapping[str, float]],
    metrics: tuple[str, ...],
    primary: str = "eval_seen",
) -> Nested:
    """`{split: {row: {stage: {metric: value}}}}` from evaluate's flat metrics per stage (pure).

    Rows are the tasks any stage has a metric for (in TASKS order) and "mean" (evaluate's
    `<metric>_mean`); a metric a stage did not write is left out, not set to nan.

    >>> nested = collect({"judge": {"image_generation/pairwise_diff": 0.6}}, ("pairwise_diff",))
    >>> nested["eval_seen"]["image_generation"]["judge"]
    {'pairwise_diff': 0.6}
    """
    by_stage = {stage: split_metrics(flat, primary) for stage, flat in evaluations.items()}
    splits = {s for parts in by_stage.values() for s in parts}
    out: Nested = {}
    for split in sorted(splits, key=lambda s: (s != primary, s)):
        rows: dict[str, dict[str, dict[str, float]]] = {}
        for row in (*TASKS, MEAN):
            cells = {}
            for stage, parts in by_stage.items():
                values = parts.get(split, {})
                keys = {m: f"{m}_mean" if row == MEAN else f"{row}/{m}" for m in metrics}
                found = {m: values[k] for m, k in keys.items() if k in values}
                if found:
                    cells[stage] = found
            if cells:
                rows[str(row)] = cells
        out[split] = rows
    return out


def _cell(values: Mapping[str, float], metrics: tuple[str, ...]) -> str:
    def one(m: str) -> str:
        v = values.get(m)
        return "-" if v is None or math.isnan(v) else f"{v:.2f}"

    return " / ".join(one(m) for m in metrics)


def format_ablation(
    evaluations: Mapping[str, Mapping[str, float]],
    metrics: tuple[str, ...] = DEFAULT_METRICS,
    primary: str = "eval_seen",
) -> str:
    """One markdown table per split: rows = task + mean, columns = stages in the given order,
    cells = `metrics` joined by " / " (`-` where a stage has no value, e.g. format_valid of a
    judge evaluated in direct mode). Columns are headed `stage (CoT)` or `stage (direct)`.
    """
    nested = collect(evaluations, metrics, primary)
    stages = list(evaluations)
    header = [f"{s} ({'CoT' if is_cot(evaluations[s]) else 'direct'})" for s in stages]
    blocks = []
    for split, rows in nested.items():
        lines = [
            f"{split}: {' / '.join(metrics)} ({' → '.join(stages)})",
            "",
            "| task | " + " | ".join(header) + " |",
            "|---|" + "---|" * len(stages),
        ]
        for row, cells in rows.items():
            values = [_cell(cells.get(s, {}), metrics) for s in stages]
            lines.append(f"| {row} | " + " | ".join(values) + " |")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


def flat_metrics(nested: Nested) -> dict[str, float]:
    """`{"<stage>/<split>/<row>/<metric>": v}` without nan (MLflow's keys for the table)."""
    return {
        f"{stage}/{split}/{row}/{metric}": value
        for split, rows in nested.items()
        for row, cells in rows.items()
        for stage, values in cells.items()
        for metric, value in values.items()
        if not math.isnan(value)
    }


def figure(nested: Nested, stages: list[str], metric: str):
    """Grouped bars of `metric`: one group per row (task, mean), one bar per stage, per split."""
    import numpy as np

    from unireward.plots import pyplot

    plt = pyplot()

    splits = list(nested) or ["(none)"]
    fig, axes = plt.subplots(1, len(splits), figsize=(6 * len(splits), 3.8), squeeze=False)
    width = 0.8 / max(len(stages), 1)
    for ax, split in zip(axes[0], splits, strict=True):
        rows = list(nested.get(split, {}))
        x = np.arange(len(rows))
        for k, stage in enumerate(stages):
            vals = [nested[split][r].get(stage, {}).get(metric, math.nan) for r in rows]
            offset = (k - (len(stages) - 1) / 2) * width
            ax.bar(x + offset, np.nan_to_num(vals), width=width, label=stage)
        ax.axhline(0.5, color="grey", lw=0.8, ls="--")  # chance for a two-way verdict
        ax.set_xticks(x, [r.replace("_", "\n") for r in rows], fontsize=8)
        ax.set_ylim(0, 1.15)  # headroom for the legend above bars that reach 1
        ax.set_yticks(np.linspace(0, 1, 6))
        ax.set_title(f"{split}: {metric}")
    axes[0][0].legend(fontsize=8, loc="upper center", ncols=max(len(stages), 1))
    fig.tight_layout()
    return fig


def read_evaluations(evaluations: Mapping[str, Path]) -> dict[str, dict[str, float]]:
    """Each evaluation directory's metrics.json, in order; errors name the stage and the path."""
    from unireward.registry.register import load_metrics

    if not evaluations:
        raise ValueError("ablation needs at least one evaluation: --evaluation NAME=DIR")
    out: dict[str, dict[str, float]] = {}
    for stage, directory in evaluations.items():
        if not stage or "/" in stage:
            raise ValueError(f"stage name {stage!r} must be non-empty and without '/'")
        path = Path(directory) / "metrics.json"
        if not path.is_file():
            raise FileNotFoundError(
                f"evaluation {stage!r}: {path} not found (run `unireward evaluate "
                f"--output-dir {directory}` first)"
            )
        out[stage] = load_metrics(path)
    return out


def _jsonable(nested: Nested) -> dict[str, Any]:
    return {
        split: {
            row: {s: {m: None if math.isnan(v) else v for m, v in c.items()} for s, c in r.items()}
            for row, r in rows.items()
        }
        for split, rows in nested.items()
    }


def run(
    config: AblationConfig, evaluations: Mapping[str, Path], output_dir: Path
) -> AblationResult:
    from unireward import plots
    from unireward.tracking import make_tracker

    flat = read_evaluations(evaluations)
    stages = list(flat)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    nested = collect(flat, config.metrics, config.primary_split)
    table_path = output_dir / "ablation.md"
    table_path.write_text(format_ablation(flat, config.metrics, config.primary_split))
    summary = {
        "stages": stages,
        "modes": {s: "cot" if is_cot(flat[s]) else "direct" for s in stages},
        "metrics": list(config.metrics),
        "primary_split": config.primary_split,
        "evaluations": {s: str(evaluations[s]) for s in stages},
        "splits": _jsonable(nested),
    }
    (output_dir / "ablation.json").write_text(json.dumps(summary, indent=2))
    figs = {"ablation": figure(nested, stages, config.metrics[0])}
    figs["ablation"].savefig(output_dir / "ablation.png", dpi=100)
    report = plots.html_page("ablation: " + " -> ".join(stages), figs, notes=table_path.read_text())
    (output_dir / "report.html").write_text(report)
    logged = flat_metrics(nested)
    tracker = make_tracker(config.tracking_uri, config.experiment)
    with tracker.start_run("ablation", tags={"stage": "ablation", "stages": ",".join(stages)}):
        tracker.log_params({"ablation": to_dict(config), "evaluations": summary["evaluations"]})
        tracker.log_metrics(logged)
        plots.log_outputs(tracker, output_dir, "ablation", figs)
        run_id = tracker.run_id
    plots.close(figs)
    return AblationResult(output_dir, table_path, tuple(stages), run_id, logged)
