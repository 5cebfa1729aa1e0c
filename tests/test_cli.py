"""The `unireward` CLI: one subcommand per stage with the stage's name, help that loads no
stage, one-line errors with exit code 2, and the base-vs-judge report table.

    .venv/bin/pytest tests/test_cli.py -q
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

import stage_table
from unireward.cli import app
from unireward.eval.report import format_comparison, split_metrics

STAGES = stage_table.CLI_STAGES
runner = CliRunner()


def test_help_lists_every_stage_by_its_name() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0, result.output
    for stage in (*STAGES, "report"):
        assert stage in result.output


@pytest.mark.parametrize("stage", STAGES)
def test_stage_help_names_params_profile_and_output(stage: str) -> None:
    result = runner.invoke(app, [stage, "--help"])
    assert result.exit_code == 0, result.output
    for option in ("--params", "--profile", "--output-dir"):
        assert option in result.output


def test_serve_without_an_api_key_exits_2_naming_the_variable(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("UNIREWARD_JUDGE_API_KEY", raising=False)
    root = Path(__file__).resolve().parents[1]
    result = runner.invoke(
        app,
        [
            "serve",
            "--model-dir",
            str(root / "models/base-tiny"),
            "--output-dir",
            str(tmp_path),
            "--params",
            str(root / "params.yaml"),
        ],
    )
    assert result.exit_code == 2, result.output
    assert "UNIREWARD_JUDGE_API_KEY" in result.output and "Traceback" not in result.output


def test_unknown_profile_exits_2_naming_it() -> None:
    result = runner.invoke(app, ["register", "--profile", "nonesuch"])
    assert result.exit_code == 2
    assert "unknown profile 'nonesuch'" in result.output
    assert "Traceback" not in result.output


def test_config_key_that_does_not_exist_exits_2_naming_it(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text("validate:\n  max_bad_fractoin: 0.1\n")
    result = runner.invoke(app, ["validate", "--params", str(params)])
    assert result.exit_code == 2
    assert "max_bad_fractoin" in result.output and "max_bad_fraction" in result.output


def test_missing_params_file_exits_2(tmp_path: Path) -> None:
    result = runner.invoke(app, ["ingest", "--params", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2
    assert "nope.yaml" in result.output


def test_missing_input_exits_2_naming_it(tmp_path: Path) -> None:
    result = runner.invoke(app, ["validate", "--dataset", str(tmp_path / "absent")])
    assert result.exit_code == 2
    assert "absent" in result.output


def _metrics(value: float) -> dict[str, float]:
    return {
        "image_generation/pairwise_diff": value,
        "image_generation/by/colour/pairwise_tau": 0.0,  # breakdowns stay out of the table
        "pairwise_diff_mean": value,
        "eval_unseen/image_generation/pairwise_diff": value / 2,
        "eval_unseen/pairwise_diff_mean": value / 2,
        "video_understanding/pointwise_spearman": math.nan,
    }


def test_split_metrics_sorts_flat_keys_into_splits() -> None:
    splits = split_metrics(_metrics(0.8), primary="eval_seen")
    assert splits["eval_seen"]["image_generation/pairwise_diff"] == 0.8
    assert splits["eval_seen"]["pairwise_diff_mean"] == 0.8
    assert splits["eval_unseen"] == {
        "image_generation/pairwise_diff": 0.4,
        "pairwise_diff_mean": 0.4,
    }


def test_format_comparison_shows_base_then_judge_per_split_and_task() -> None:
    lines = format_comparison(_metrics(0.5), _metrics(0.75)).splitlines()
    row = next(line for line in lines if line.startswith("eval_seen    image_generation"))
    assert "0.50 -> 0.75" in row
    unseen = next(line for line in lines if line.startswith("eval_unseen  image_generation"))
    assert "0.25 -> 0.38" in unseen
    spearman = next(line for line in lines if line.startswith("eval_seen    video_understanding"))
    assert spearman.rstrip().endswith("- ->    -")  # nan prints as missing, not as 'nan'
    assert sum(line.split()[1] == "mean" for line in lines[2:]) == 2


def test_report_command_and_unknown_task(tmp_path: Path) -> None:
    base, judge = tmp_path / "base.json", tmp_path / "judge.json"
    base.write_text(json.dumps(_metrics(0.5)).replace("NaN", "null"))
    judge.write_text(json.dumps(_metrics(0.75)).replace("NaN", "null"))
    ok = runner.invoke(app, ["report", "--base", str(base), "--judge", str(judge)])
    assert ok.exit_code == 0, ok.output
    assert "0.50 -> 0.75" in ok.output
    one = runner.invoke(
        app, ["report", "--base", str(base), "--judge", str(judge), "--task", "image_generation"]
    )
    assert one.exit_code == 0 and "video_generation" not in one.output
    bad = runner.invoke(
        app, ["report", "--base", str(base), "--judge", str(judge), "--task", "image_gen"]
    )
    assert bad.exit_code == 2 and "unknown task 'image_gen'" in bad.output
    missing = runner.invoke(
        app, ["report", "--base", str(tmp_path / "x.json"), "--judge", str(judge)]
    )
    assert missing.exit_code == 2 and "x.json" in missing.output


def test_build_pairs_judge_choice_is_checked(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[1]
    base = ["build_pairs", "--params", str(root / "params.yaml"), "--output-dir", str(tmp_path)]
    result = runner.invoke(app, [*base, "--judge", "gpt"])
    assert result.exit_code == 2 and "'gpt'" in result.output and "oracle" in result.output
    result = runner.invoke(app, base)  # judge: served, no checkpoint, no URL
    assert result.exit_code == 2 and "--judge-model" in result.output


def test_version_prints_the_installed_version() -> None:
    from importlib.metadata import version

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"unireward {version('unireward')}"


def test_ingest_flags_override_params(tmp_path: Path) -> None:
    """`ingest --source PATH --format FORMAT`: the flags win over params.yaml (whose source is
    shapes://), and a format that does not exist is one `error:` line and exit 2."""
    params = tmp_path / "params.yaml"
    params.write_text(
        'ingest: {source: "shapes://", tracking_uri: "null"}\nprofiles: {quick: {}}\n'
    )
    base = ["ingest", "--params", str(params)]
    bad = runner.invoke(app, [*base, "--source", str(tmp_path), "--format", "telepathy"])
    assert bad.exit_code == 2 and "error:" in bad.output and "telepathy" in bad.output
    assert "Traceback" not in bad.output
    data = tmp_path / "data.jsonl"
    turn = [{"from": "human", "value": "<image>\nQ"}, {"from": "gpt", "value": "A"}]
    data.write_text(json.dumps({"id": "a", "image": "x.png", "conversations": turn}) + "\n")
    out = tmp_path / "out"
    result = runner.invoke(
        app, [*base, "--source", str(data), "--format", "llava", "--output-dir", str(out)]
    )
    assert result.exit_code == 0, result.output
    lineage = json.loads((out / "lineage.json").read_text())
    assert lineage["files"] == {"data.jsonl": {"format": "llava", "records": 1}}
    assert lineage["generator"] is None  # not the shapes world of params.yaml


def test_max_steps_overrides_the_training_steps_of_every_trainer() -> None:
    """`--max-steps` reaches the config of each training stage (`train.max_steps`, GRPO's own
    `max_steps`) through the one adapter, and an impossible value is `error:` and exit 2."""
    import click
    import typer

    from unireward.cli import _stage
    from unireward.judge.unified_sft import UnifiedSftConfig
    from unireward.policy.dpo import DpoConfig
    from unireward.think.grpo import GrpoConfig

    for cls, stage in ((UnifiedSftConfig, "unified_sft"), (DpoConfig, "dpo")):
        config = _stage(
            cls, stage, "quick", Path("params.yaml"), overrides={"train.max_steps": 900}
        )
        assert config.train.max_steps == 900
    grpo = _stage(GrpoConfig, "grpo", "quick", Path("params.yaml"), overrides={"max_steps": 5})
    assert grpo.max_steps == 5
    with pytest.raises((typer.Exit, click.exceptions.Exit)):
        _stage(DpoConfig, "dpo", "quick", Path("params.yaml"), overrides={"train.nope": 1})
    for stage in ("pretrain_base", "unified_sft", "cold_start", "rs_sft", "grpo", "dpo"):
        assert "--max-steps" in runner.invoke(app, [stage, "--help"]).output
    bad = runner.invoke(app, ["dpo", "--max-steps", "-3", "--policy", "params.yaml"])
    assert bad.exit_code == 2 and "error: max_steps" in bad.output, bad.output
