"""What a user looks at instead of reading numbers: each stage's figures and its HTML report.

Every stage's MLflow run carries its figures as `plots/<name>.png` (`log_figures`), and the
Kubeflow components turn the same figures into an `Output[HTML]` page (`html_page`), so the
MLflow UI and the Kubeflow UI show one picture of a run::

    figures = {"train_curves": training_curves(outcome.log_history, "unified_sft")}
    log_figures(tracker, figures)                 # -> plots/train_curves.png in the run
    Path(report.path).write_text(html_page("unified_sft", figures))
    close(figures)

The builders are pure (numbers in, a matplotlib Figure out, None when there is nothing to
draw) and draw with the Agg backend: no display, no GUI toolkit, safe in a container. Importing
this module imports neither matplotlib nor mlflow.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from unireward.tasks import TASKS

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from unireward.tracking import Tracker

PLOTS_DIR = "plots"  # the artifact folder of every run's figures
CHANCE = 0.5  # a two-way verdict's accuracy by guessing

# Trainer log_history keys per panel of `training_curves` (TRL SFT / GRPO / DPO names).
CURVE_PANELS: dict[str, tuple[str, ...]] = {
    "loss": ("loss",),
    "reward": ("reward", "rewards/format_reward/mean", "rewards/accuracy_reward/mean", "kl"),
    "DPO rewards": ("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies"),
    "learning rate": ("learning_rate",),
}


def pyplot():
    """matplotlib.pyplot on the Agg backend."""
    import matplotlib

    matplotlib.use("Agg")  # before pyplot: headless everywhere
    import matplotlib.pyplot as plt

    return plt


def _nan0(values: Sequence[float]) -> list[float]:
    return [0.0 if v is None or math.isnan(v) else float(v) for v in values]


# --------------------------------------------------------------------------- training


def curve_points(log_history: Sequence[Mapping[str, Any]], key: str) -> list[tuple[int, float]]:
    """(step, value) of every log_history entry that has a finite number under `key`."""
    out = []
    for entry in log_history:
        value = entry.get(key)
        if "step" in entry and isinstance(value, int | float) and math.isfinite(value):
            out.append((int(entry["step"]), float(value)))
    return out


def training_curves(log_history: Sequence[Mapping[str, Any]], title: str) -> Figure | None:
    """One panel per `CURVE_PANELS` group that the log holds: loss, rewards, learning rate.

    `log_history` is the HF Trainer's (`trainer.state.log_history`, what `train_log.json`
    holds); entries without `step` or with non-numbers are skipped. None if nothing is logged
    (a skipped stage)."""
    panels = {
        name: {k: pts for k in keys if (pts := curve_points(log_history, k))}
        for name, keys in CURVE_PANELS.items()
    }
    panels = {name: curves for name, curves in panels.items() if curves}
    if not panels:
        return None
    plt = pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.2), squeeze=False)
    for ax, (name, curves) in zip(axes[0], panels.items(), strict=True):
        for key, points in curves.items():
            steps, values = zip(*points, strict=True)
            ax.plot(steps, values, marker="." if len(points) < 30 else None, label=key)
        ax.set_title(name)
        ax.set_xlabel("step")
        if len(curves) > 1:
            ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- judge evaluation


def accuracy_by_task(metrics: Mapping[str, float], primary_split: str, title: str) -> Figure:
    """Per split (one panel each), per task: pairwise diff, swap consistency, pointwise rho,
    and format-valid in CoT mode; from evaluate's flat metrics. Chance dashed at 0.5."""
    from unireward.eval.report import split_metrics

    by_split = split_metrics(metrics, primary_split) or {primary_split: {}}
    splits = sorted(by_split, key=lambda s: (s != primary_split, s))
    keys = ["pairwise_diff", "swap_consistency", "pointwise_spearman"]
    if any(k.endswith("/format_valid") for k in metrics):
        keys.append("format_valid")
    plt = pyplot()
    fig, axes = plt.subplots(1, len(splits), figsize=(6 * len(splits), 3.6), squeeze=False)
    width = 0.8 / len(keys)
    for ax, split in zip(axes[0], splits, strict=True):
        values = by_split[split]
        for k, key in enumerate(keys):
            heights = _nan0([values.get(f"{t}/{key}", math.nan) for t in TASKS])
            x = [i + (k - (len(keys) - 1) / 2) * width for i in range(len(TASKS))]
            ax.bar(x, heights, width=width, label=key)
        ax.axhline(CHANCE, color="grey", lw=0.8, ls="--")
        ax.set_xticks(range(len(TASKS)), [t.replace("_", "\n") for t in TASKS], fontsize=8)
        ax.set_ylim(0, 1.15)
        ax.set_title(split)
    axes[0][0].legend(fontsize=7, loc="upper center", ncols=len(keys))
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def attribute_accuracy(
    metrics: Mapping[str, float], primary_split: str
) -> dict[str, dict[str, dict[str, float]]]:
    """`{task: {breakdown: {split: tau}}}` from evaluate's `[<split>/]<task>/by/<name>/
    pairwise_tau` keys (the breakdown is the attribute or defect the two candidates differ in,
    or the question type).

    >>> attribute_accuracy({"image_generation/by/colour/pairwise_tau": 0.75,
    ...                     "eval_unseen/image_generation/by/colour/pairwise_tau": 0.5}, "s")
    {'image_generation': {'colour': {'s': 0.75, 'eval_unseen': 0.5}}}
    """
    out: dict[str, dict[str, dict[str, float]]] = {}
    for key, value in metrics.items():
        parts = key.split("/")
        if parts[-1] != "pairwise_tau" or "by" not in parts:
            continue
        if len(parts) == 4 and parts[0] in TASKS:
            split, task, name = primary_split, parts[0], parts[2]
        elif len(parts) == 5 and parts[1] in TASKS:
            split, task, name = parts[0], parts[1], parts[3]
        else:
            continue
        out.setdefault(task, {}).setdefault(name, {})[split] = value
    return out


def accuracy_by_attribute(
    metrics: Mapping[str, float], primary_split: str, title: str
) -> Figure | None:
    """Per task (one panel each), per attribute the candidates differ in: tau accuracy, one bar
    per split. None when the metrics hold no breakdown."""
    table = attribute_accuracy(metrics, primary_split)
    if not table:
        return None
    tasks = [t for t in TASKS if t in table]
    splits = sorted(
        {s for names in table.values() for cells in names.values() for s in cells},
        key=lambda s: (s != primary_split, s),
    )
    plt = pyplot()
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.5 * len(tasks), 3.8), squeeze=False)
    width = 0.8 / len(splits)
    for ax, task in zip(axes[0], tasks, strict=True):
        names = sorted(table[task])
        for k, split in enumerate(splits):
            heights = _nan0([table[task][n].get(split, math.nan) for n in names])
            y = [i + (k - (len(splits) - 1) / 2) * width for i in range(len(names))]
            ax.barh(y, heights, height=width, label=split)
        ax.axvline(CHANCE, color="grey", lw=0.8, ls="--")
        ax.set_yticks(range(len(names)), names, fontsize=8)
        ax.set_xlim(0, 1)
        ax.set_title(task, fontsize=9)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- policy alignment


def pair_statistics(
    stats: Mapping[str, float],
    asked: Mapping[str, int],
    kept: Mapping[str, int],
) -> Figure:
    """build_pairs at a glance: what happened to each prompt (kept or why dropped), what the
    judge did (pairs judged, ties, unparseable, verdicts flipped by swapping the order), and
    prompts asked vs pairs kept per question attribute (`asked`, `kept`)."""
    outcomes = {
        "kept": stats.get("kept", 0),
        **{k.removeprefix("dropped_"): v for k, v in stats.items() if k.startswith("dropped_")},
        "quarantined": stats.get("quarantined", 0),
    }
    judge_keys = ("pairs_judged", "pair_ties", "pair_unparseable", "swap_disagreements")
    judge = {k.removeprefix("pair_"): stats.get(k, 0) for k in judge_keys}
    judge["flipped (swap)"] = judge.pop("swap_disagreements")
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.6))
    for ax, (name, counts) in zip(axes[:2], (("prompts", outcomes), ("judge", judge)), strict=True):
        labels = list(counts)
        ax.barh(labels, [float(counts[k]) for k in labels])
        ax.invert_yaxis()
        ax.set_title(name)
        for i, label in enumerate(labels):
            ax.text(float(counts[label]), i, f" {counts[label]:g}", va="center", fontsize=8)
    attrs = sorted(set(asked) | set(kept))
    x = range(len(attrs))
    axes[2].bar([i - 0.2 for i in x], [asked.get(a, 0) for a in attrs], width=0.4, label="asked")
    axes[2].bar([i + 0.2 for i in x], [kept.get(a, 0) for a in attrs], width=0.4, label="kept")
    axes[2].set_xticks(list(x), attrs)
    axes[2].set_title("per attribute")
    axes[2].legend(fontsize=8)
    fig.suptitle(f"build_pairs: {stats.get('kept', 0):g} of {stats.get('prompts', 0):g} kept")
    fig.tight_layout()
    return fig


def policy_accuracy(metrics: Mapping[str, float]) -> Figure:
    """evaluate_policy: accuracy before vs after per split (one panel each) and attribute, from
    its `<before|after>/<split>/<attribute|mean>` metrics."""
    splits = sorted({k.split("/")[1] for k in metrics if k.startswith("before/")})
    plt = pyplot()
    fig, axes = plt.subplots(1, max(len(splits), 1), figsize=(5 * max(len(splits), 1), 3.4))
    axes = list(axes) if len(splits) > 1 else [axes]
    for ax, split in zip(axes, splits, strict=False):
        names = sorted(
            {k.split("/")[2] for k in metrics if k.startswith(f"before/{split}/")} - {"all"},
            key=lambda n: (n == "mean", n),
        )
        for k, side in enumerate(("before", "after")):
            heights = _nan0([metrics.get(f"{side}/{split}/{n}", math.nan) for n in names])
            ax.bar([i + (k - 0.5) * 0.4 for i in range(len(names))], heights, width=0.4, label=side)
        ax.set_xticks(range(len(names)), names)
        ax.set_ylim(0, 1.1)
        ax.set_title(split)
    axes[0].legend(fontsize=8)
    fig.suptitle("policy accuracy before -> after DPO")
    fig.tight_layout()
    return fig


def samples_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """An HTML table of policy samples: image (PNG bytes, optional), split, question, truth, the
    answer before and after, each marked right or wrong (`before_ok`, `after_ok`)."""

    def cell(text: Any, ok: bool | None = None) -> str:
        mark = "" if ok is None else (" &#10003;" if ok else " &#10007;")
        colour = "" if ok is None else f' style="color:{"#1a7f37" if ok else "#cf222e"}"'
        return f"<td{colour}>{html.escape(str(text))}{mark}</td>"

    head = "".join(
        f"<th>{h}</th>" for h in ("image", "split", "question", "truth", "before", "after")
    )
    body = []
    for r in rows:
        png = r.get("image_png")
        img = f'<img src="data:image/png;base64,{_b64(png)}" width="56">' if png else ""
        body.append(
            f"<tr><td>{img}</td>{cell(r['split'])}{cell(r['question'])}{cell(r['truth'])}"
            f"{cell(r['before'], r['before_ok'])}{cell(r['after'], r['after_ok'])}</tr>"
        )
    return f'<table class="samples"><tr>{head}</tr>{"".join(body)}</table>'


# --------------------------------------------------------------------------- output


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def png_bytes(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


_STYLE = (
    "body{font-family:sans-serif;margin:1em}img.plot{max-width:100%}"
    "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px}"
)


def html_page(
    title: str, figures: Mapping[str, Figure | None], body: str = "", notes: str = ""
) -> str:
    """A self-contained HTML page (figures inline as PNG): what a Kubeflow `Output[HTML]`
    artifact shows. `body` is trusted HTML (e.g. `samples_table`), `notes` plain text."""
    parts = [f"<h2>{html.escape(title)}</h2>"]
    if notes:
        parts.append(f"<pre>{html.escape(notes)}</pre>")
    for name, fig in figures.items():
        if fig is not None:
            src = f"data:image/png;base64,{_b64(png_bytes(fig))}"
            parts.append(f'<h3>{html.escape(name)}</h3><img class="plot" alt="{name}" src="{src}">')
    parts.append(body)
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body>{''.join(parts)}</body></html>\n"
    )


def artifact_names(figures: Mapping[str, Figure | None]) -> list[str]:
    """The artifact file of each figure that exists: `plots/<name>.png`."""
    return [f"{PLOTS_DIR}/{name}.png" for name, fig in figures.items() if fig is not None]


def log_figures(tracker: Tracker, figures: Mapping[str, Figure | None]) -> list[str]:
    """Log each figure (None ones are skipped) as `plots/<name>.png`; returns the names."""
    for name, fig in figures.items():
        if fig is not None:
            tracker.log_figure(fig, f"{PLOTS_DIR}/{name}.png")
    return artifact_names(figures)


def log_outputs(
    tracker: Tracker, output_dir: Path, artifact_path: str, figures: Mapping[str, Figure | None]
) -> list[str]:
    """A stage's output directory under `artifact_path` and its figures under `plots/`, each
    figure once: the PNG copies a stage writes beside its outputs (for DVC plots and the
    Kubeflow artifact) are not logged again. Returns the figures' artifact names."""
    for path in sorted(Path(output_dir).iterdir()):
        if path.is_dir():
            tracker.log_artifacts(path, f"{artifact_path}/{path.name}")
        elif path.suffix != ".png":
            tracker.log_artifact(path, artifact_path)
    return log_figures(tracker, figures)


def close(figures: Mapping[str, Figure | None]) -> None:
    """Free the figures (pyplot keeps every open figure alive until closed)."""
    if any(fig is not None for fig in figures.values()):
        plt = pyplot()
        for fig in figures.values():
            if fig is not None:
                plt.close(fig)


def log_training_curves(
    tracker: Tracker, log_history: Sequence[Mapping[str, Any]], title: str
) -> list[str]:
    """A training stage's figure, `plots/train_curves.png` (nothing when nothing was logged)."""
    figs = {"train_curves": training_curves(log_history, title)}
    try:
        return log_figures(tracker, figs)
    finally:
        close(figs)


def training_report(log_history: Sequence[Mapping[str, Any]], title: str, notes: str = "") -> str:
    """The HTML page of a training stage (its Kubeflow `Output[HTML]`): the training curves."""
    figs = {"train_curves": training_curves(log_history, title)}
    try:
        if figs["train_curves"] is None:
            notes = (notes + "\n" if notes else "") + "nothing was trained: no curves"
        return html_page(title, figs, notes=notes)
    finally:
        close(figs)


def checkpoint_log_history(model_dir: Path) -> list[dict[str, Any]]:
    """The Trainer log a training stage left beside its checkpoint: `train_log.json`
    (unified_sft, cold_start, rs_sft, grpo) or `dpo.json`'s `log_history`; [] without one."""
    import json

    log, record = Path(model_dir) / "train_log.json", Path(model_dir) / "dpo.json"
    if log.is_file():
        return json.loads(log.read_text())
    if record.is_file():
        return json.loads(record.read_text()).get("log_history", [])
    return []
