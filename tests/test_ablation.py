"""The `ablation` stage: one table across the evaluated judges (unified -> + cold start -> + RS ->
+ GRPO), read from evaluate's metrics.json files, written as markdown / JSON / PNG and one MLflow
run.

    .venv/bin/pytest tests/test_ablation.py -q
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from unireward.cli import app
from unireward.eval.ablation import (
    TASK_METRICS,
    AblationConfig,
    collect,
    format_ablation,
    parse_evaluations,
    run,
)
from unireward.tracking import default_tracking_uri

TASKS2 = ("image_generation", "video_understanding")


def _flat(diff: float, swap: float, fmt: float | None = None) -> dict[str, float]:
    """evaluate's flat keys for two tasks: eval_seen unprefixed, eval_unseen 0.1 lower.

    `fmt` given = a CoT-mode evaluation (format_valid per task and its mean)."""
    out: dict[str, float] = {}
    for prefix, shift in (("", 0.0), ("eval_unseen/", -0.1)):
        per_task = {"pairwise_diff": diff + shift, "swap_consistency": swap, "pairwise_tau": 0.1}
        if fmt is not None:
            per_task["format_valid"] = fmt
        for metric, value in per_task.items():
            for task in TASKS2:
                out[f"{prefix}{task}/{metric}"] = value
            out[f"{prefix}{metric}_mean"] = value
        out[f"{prefix}image_generation/by/colour/pairwise_tau"] = 0.9  # a breakdown: not a row
    return out


EVALUATIONS = {
    "judge": _flat(0.6, 0.8),
    "think": _flat(0.5, 0.4, fmt=1.0),
    "grpo": _flat(0.7, 0.3, fmt=0.75),
}


def _row(text: str, split: str, row: str) -> str:
    block = text.split(f"{split}: ")[1].split("\n\n")[1]  # the table after the title line
    return next(line for line in block.splitlines() if line.startswith(f"| {row} |"))


def test_one_table_per_split_with_tasks_and_mean_and_stages_in_order() -> None:
    text = format_ablation(EVALUATIONS)
    assert text.index("eval_seen: ") < text.index("eval_unseen: ")  # primary split first
    assert "| task | judge (direct) | think (CoT) | grpo (CoT) |" in text
    assert _row(text, "eval_seen", "image_generation") == (
        "| image_generation | 0.60 / - / 0.80 | 0.50 / 1.00 / 0.40 | 0.70 / 0.75 / 0.30 |"
    )
    assert _row(text, "eval_unseen", "mean") == (
        "| mean | 0.50 / - / 0.80 | 0.40 / 1.00 / 0.40 | 0.60 / 0.75 / 0.30 |"
    )
    # only tasks some stage was evaluated on, then mean; a breakdown key is not a row
    rows = [line.split(" | ")[0] for line in text.splitlines() if line.startswith("| ")]
    assert rows == ["| task", "| image_generation", "| video_understanding", "| mean"] * 2


def test_columns_follow_the_mapping_order_and_metrics_choose_the_cells() -> None:
    text = format_ablation(
        {"grpo": EVALUATIONS["grpo"], "judge": EVALUATIONS["judge"]}, metrics=("pairwise_tau",)
    )
    assert "| task | grpo (CoT) | judge (direct) |" in text
    assert _row(text, "eval_seen", "video_understanding") == "| video_understanding | 0.10 | 0.10 |"


def test_nan_and_absent_values_print_as_a_dash() -> None:
    judge = {**EVALUATIONS["judge"], "image_generation/pairwise_diff": math.nan}
    del judge["video_understanding/swap_consistency"]
    text = format_ablation({"judge": judge})
    assert _row(text, "eval_seen", "image_generation") == "| image_generation | - / - / 0.80 |"
    assert _row(text, "eval_seen", "video_understanding") == (
        "| video_understanding | 0.60 / - / - |"
    )


def test_collect_reads_what_evaluate_writes() -> None:
    from unireward.eval.evaluate import EvaluateConfig, compute_metrics

    # Four image-generation pairs per split, 3 right in both orders, CoT mode, format 0.5.
    rows = [
        {
            "split": split,
            "task": "image_generation",
            "mode": "pairwise",
            "breakdown": "colour",
            "label": y,
            "pred": p,
            "pred_swapped": 3 - p,
            "format_valid": 0.5,
            "correct": p == y,
        }
        for split in ("eval_seen", "eval_unseen")
        for y, p in ((1, 1), (2, 2), (1, 1), (2, 1))
    ]
    flat = compute_metrics(rows, EvaluateConfig(tasks=("image_generation",)))
    nested = collect({"think": flat}, TASK_METRICS)
    for split in ("eval_seen", "eval_unseen"):
        cells = nested[split]["image_generation"]["think"]
        assert cells["pairwise_diff"] == pytest.approx(0.75)
        assert cells["format_valid"] == pytest.approx(0.5)
        assert cells["swap_consistency"] == pytest.approx(1.0)
        assert nested[split]["mean"]["think"]["pairwise_diff"] == pytest.approx(0.75)
    # every per-task metric evaluate writes is one the ablation can show
    names = {
        k.split("/")[1] for k in flat if k.startswith("image_generation/") and k.count("/") == 1
    }
    assert names == set(TASK_METRICS) - {"pointwise_spearman", "pointwise_unparseable"}


def _write(tmp_path: Path, evaluations: dict[str, dict[str, float]]) -> dict[str, Path]:
    dirs = {}
    for stage, flat in evaluations.items():
        (tmp_path / stage).mkdir()
        (tmp_path / stage / "metrics.json").write_text(json.dumps(flat))
        dirs[stage] = tmp_path / stage
    return dirs


def test_run_writes_table_json_plot_and_one_mlflow_run(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    evaluations = {**EVALUATIONS, "judge": {**EVALUATIONS["judge"], "pairwise_diff_mean": math.nan}}
    dirs = _write(tmp_path, evaluations)
    config = AblationConfig(tracking_uri=default_tracking_uri(tmp_path / "store"))
    result = run(config, dirs, tmp_path / "out")

    assert result.stages == ("judge", "think", "grpo")
    assert result.table_path.read_text() == format_ablation(evaluations)
    summary = json.loads((tmp_path / "out" / "ablation.json").read_text())
    assert summary["modes"] == {"judge": "direct", "think": "cot", "grpo": "cot"}
    seen = summary["splits"]["eval_seen"]
    assert seen["video_understanding"]["grpo"] == {
        "pairwise_diff": 0.7,
        "format_valid": 0.75,
        "swap_consistency": 0.3,
    }
    assert seen["mean"]["judge"]["pairwise_diff"] is None  # nan -> null
    assert (tmp_path / "out" / "ablation.png").read_bytes()[:4] == b"\x89PNG"

    client = MlflowClient(config.tracking_uri)
    [tracked] = client.search_runs(
        [client.get_experiment_by_name("unireward").experiment_id],
        filter_string="tags.stage = 'ablation'",
    )
    assert tracked.info.run_name == "ablation" and tracked.info.run_id == result.run_id
    logged = tracked.data.metrics
    assert logged["grpo/eval_unseen/image_generation/pairwise_diff"] == pytest.approx(0.6)
    assert logged["think/eval_seen/mean/format_valid"] == 1.0
    assert "judge/eval_seen/image_generation/format_valid" not in logged  # direct mode
    assert "judge/eval_seen/mean/pairwise_diff" not in logged  # nan is not logged
    assert set(logged) == set(result.metrics)
    artifacts = {
        f.path for d in ("ablation", "plots") for f in client.list_artifacts(tracked.info.run_id, d)
    }
    assert {
        "ablation/ablation.md",
        "ablation/ablation.json",
        "ablation/report.html",
        "plots/ablation.png",
    } <= artifacts
    assert "ablation/ablation.png" not in artifacts  # the figure once, under plots/


def test_bad_inputs_fail_naming_the_problem(tmp_path: Path) -> None:
    config = AblationConfig(tracking_uri="null")
    with pytest.raises(ValueError, match="at least one evaluation"):
        run(config, {}, tmp_path / "out")
    (tmp_path / "think").mkdir()
    with pytest.raises(FileNotFoundError, match=r"'think'.*think/metrics.json"):
        run(config, {"think": tmp_path / "think"}, tmp_path / "out")
    with pytest.raises(ValueError, match="stage 'rs' twice"):
        parse_evaluations(["rs=a", "grpo=b", "rs=c"])
    with pytest.raises(ValueError, match="expected NAME=DIR"):
        parse_evaluations(["runs/evaluate/rs"])
    assert parse_evaluations(["rs=a", "grpo=b"]) == {"rs": Path("a"), "grpo": Path("b")}
    with pytest.raises(ValueError, match="pairwise_dif"):
        AblationConfig(metrics=("pairwise_dif",))


def test_cli_writes_the_table_and_refuses_a_duplicate_stage(tmp_path: Path) -> None:
    dirs = _write(tmp_path, EVALUATIONS)
    params = tmp_path / "params.yaml"
    params.write_text('ablation: {tracking_uri: "null"}\n')
    args = ["ablation", "--params", str(params), "--output-dir", str(tmp_path / "out")]
    evaluations = [a for stage, d in dirs.items() for a in ("--evaluation", f"{stage}={d}")]
    ok = CliRunner().invoke(app, [*args, *evaluations])
    assert ok.exit_code == 0, ok.output
    assert "| task | judge (direct) | think (CoT) | grpo (CoT) |" in ok.output
    assert (tmp_path / "out" / "ablation.md").is_file()
    twice = CliRunner().invoke(app, [*args, *evaluations, "--evaluation", f"judge={dirs['grpo']}"])
    assert twice.exit_code == 2 and "'judge' twice" in twice.output
