"""grpo: TRL GRPO with the project's rewards on a tiny judge. It changes the parameters, its
logged mean reward rises on an easy hard set, it writes its artifacts, skips an empty hard set,
and a real `unireward grpo` process killed with SIGKILL resumes from its last checkpoint.

    .venv/bin/pytest tests/test_grpo.py -q

The tiny random judge never writes a well-formed CoT, so every reward would be 0 and GRPO's
advantages (reward minus the group mean) would be 0: no signal. The `format_judge` fixture
(conftest.py) first SFTs it for a few seconds on short well-formed CoTs with random verdicts, so
it writes the format and answers at chance; `easy_samples` is a hard set whose solution is always
"Image 1 is better": the reward can rise from ~1.5 (format) towards 2.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from grpo_pairs import IMG1, IMG2, TINY_GRPO, image_generation_pairs
from loopback import sigkill_at_checkpoint, unireward_cmd
from mlflow_store import logged_artifacts
from unireward.config import from_dict
from unireward.data.schema import write_records
from unireward.prompt_templates import PROMPTS_FILE, default_templates
from unireward.think.grpo import HARD, GrpoConfig, grpo_rows, reward_curve, run
from unireward.tracking import default_tracking_uri
from unireward.training import CHECKPOINTS


def _config(**kw) -> GrpoConfig:
    return from_dict(GrpoConfig, {**TINY_GRPO, "max_steps": 2, **kw})


def test_rows_carry_the_cot_prompt_images_and_exact_solution(shapes_dataset: Path) -> None:
    records = image_generation_pairs(shapes_dataset)[:2]
    rows = grpo_rows(records, shapes_dataset)
    for row, record in zip(rows, records, strict=True):
        parts = row["prompt"][0]["content"]
        assert sum(p["type"] == "image" for p in parts) == len(row["images"]) == 2
        assert "<think>" in parts[-1]["text"] and row["solution"] == record.label


def test_a_reasoning_check_adds_the_reward_columns(shapes_dataset: Path) -> None:
    from unireward.data.teacher import observations

    records = image_generation_pairs(shapes_dataset)[:2]
    assert all("check" not in row for row in grpo_rows(records, shapes_dataset))
    rows = grpo_rows(records, shapes_dataset, check="observation")
    for row, record in zip(rows, records, strict=True):
        assert row["check"] == "observation"
        assert row["observations"] == list(observations(record))
    assert {row["check"] for row in grpo_rows(records, shapes_dataset, check="scores")} == {
        "scores"
    }


def test_swap_augment_adds_each_pair_in_the_other_order(shapes_dataset: Path) -> None:
    records = image_generation_pairs(shapes_dataset)[:2]
    plain, both = grpo_rows(records, shapes_dataset), grpo_rows(records, shapes_dataset, True)
    assert len(both) == 2 * len(plain) and both[0]["solution"] == plain[0]["solution"]
    twin = both[1]
    assert {plain[0]["solution"], twin["solution"]} == {IMG1, IMG2}  # the label follows the swap
    first, second = (im.tobytes() for im in plain[0]["images"])
    assert [im.tobytes() for im in twin["images"]] == [second, first]


def test_grpo_changes_parameters_and_writes_artifacts(
    format_judge: Path, easy_samples: Path, shapes_dataset: Path, tmp_path: Path
) -> None:
    uri = default_tracking_uri(tmp_path / "store")
    config = _config(beta=0.04, tracking_uri=uri)
    out = tmp_path / "out"
    result = run(config, format_judge, easy_samples, shapes_dataset, out)
    before = load_file(format_judge / "model.safetensors")
    after = load_file(out / "model.safetensors")
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert len(changed) > len(before) // 2
    info = json.loads((out / "unireward.json").read_text())
    assert info["stage"] == "grpo" and info["global_step"] == result.global_step == 2
    assert info["prompts"] == 2 and info["skipped"] is None
    assert len(info["reward_curve"]) == 2
    log = json.loads((out / "train_log.json").read_text())
    assert all("rewards/format_reward/mean" in h for h in log if "reward" in h)
    assert (out / "reward_curve.png").stat().st_size > 0
    assert not (out / CHECKPOINTS).exists()
    logged = logged_artifacts(uri, "grpo")
    assert {"plots/train_curves.png", "reward_curve.png", "train_log.json", PROMPTS_FILE} <= logged
    assert (out / PROMPTS_FILE).read_text() == default_templates().text


def test_mean_reward_rises_on_an_easy_hard_set(
    format_judge: Path, easy_samples: Path, shapes_dataset: Path, tmp_path: Path
) -> None:
    config = _config(
        num_generations=8,
        prompts_per_step=2,
        max_steps=40,
        save_steps=100,
        learning_rate=3e-4,
        beta=0.0,
        max_completion_length=32,
    )
    result = run(config, format_judge, easy_samples, shapes_dataset, tmp_path)
    rewards = [r for _, r in reward_curve(result.log_history)]
    assert len(rewards) == 40
    first, last = sum(rewards[:10]) / 10, sum(rewards[-10:]) / 10
    print(
        f"GRPO mean reward: first 10 steps {first:.3f}, last 10 steps {last:.3f}; "
        f"curve {[round(r, 2) for r in rewards]}"
    )
    assert last > first + 0.15, (first, last, rewards)


def test_an_empty_hard_set_writes_the_judge_unchanged(
    format_judge: Path, shapes_dataset: Path, tmp_path: Path
) -> None:
    write_records([], tmp_path / "samples" / HARD)
    result = run(_config(), format_judge, tmp_path / "samples", shapes_dataset, tmp_path / "out")
    assert result.skipped and result.global_step == 0
    before = load_file(format_judge / "model.safetensors")
    after = load_file(tmp_path / "out" / "model.safetensors")
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_missing_samples_dir_names_the_stage_to_run(
    format_judge: Path, shapes_dataset: Path, tmp_path: Path
) -> None:
    with pytest.raises(FileNotFoundError, match="unireward rejection_sample"):
        run(_config(), format_judge, tmp_path, shapes_dataset, tmp_path / "out")


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        ("num_generations", 1, "num_generations must be >= 2"),
        ("beta", -0.1, "beta >= 0"),
        ("max_completion_length", 0, "max_completion_length"),
    ],
)
def test_config_errors(key, value, match) -> None:
    with pytest.raises(ValueError, match=match):
        _config(**{key: value})


# --------------------------------------------------------------------------- kill and resume


def test_a_sigkilled_grpo_process_resumes_from_its_last_checkpoint(
    grpo_cli_inputs: list[str], tmp_path: Path
) -> None:
    params = tmp_path / "params.yaml"
    grpo = {**TINY_GRPO, "max_steps": 30}
    params.write_text(yaml.safe_dump({"grpo": grpo, "profiles": {"quick": {}}}))
    out = tmp_path / "grpo"
    cmd = unireward_cmd("grpo", "--params", params, *grpo_cli_inputs, "--output-dir", out)
    killed_at = sigkill_at_checkpoint(cmd, out, 4, {**os.environ, "PYTHONUNBUFFERED": "1"})
    assert 4 <= killed_at < 30 and not (out / "model.safetensors").exists()

    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    info = json.loads((out / "unireward.json").read_text())
    assert info["global_step"] == 30
    assert info["resumed_from"].endswith(f"checkpoint-{killed_at}")
    # The log history came back with the checkpoint: every step once, none lost or repeated.
    steps = [s for s, _ in info["reward_curve"]]
    assert steps == list(range(1, 31))
