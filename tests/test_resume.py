"""Training is resumable: a real `unireward unified_sft` process killed mid-run continues from
its newest checkpoint when started again with the same output directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from loopback import sigkill_at_checkpoint


def _cmd(params: Path, model: Path, data: Path, out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "unireward.cli",
        "unified_sft",
        "--params",
        str(params),
        "--base-model",
        str(model),
        "--dataset",
        str(data),
        "--output-dir",
        str(out),
    ]


def test_killed_unified_sft_resumes_from_its_last_checkpoint(
    tiny_model_dir: Path, shapes_dataset: Path, tmp_path: Path
) -> None:
    params = tmp_path / "params.yaml"
    train = {"max_steps": 40, "batch_size": 2, "save_steps": 2, "logging_steps": 1}
    params.write_text(
        yaml.safe_dump(
            {"unified_sft": {"train": train, "tracking_uri": "null"}, "profiles": {"quick": {}}}
        )
    )
    out = tmp_path / "judge"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    killed_at = sigkill_at_checkpoint(
        _cmd(params, tiny_model_dir, shapes_dataset, out), out, 4, env
    )
    assert killed_at < 40 and not (out / "model.safetensors").exists()

    done = subprocess.run(
        _cmd(params, tiny_model_dir, shapes_dataset, out),
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    info = json.loads((out / "unireward.json").read_text())
    assert info["global_step"] == 40
    assert info["resumed_from"].endswith(f"checkpoint-{killed_at}")
    log = json.loads((out / "train_log.json").read_text())
    # The restored trainer state carries the log up to the checkpoint; the steps after it were
    # trained again. Every step appears exactly once.
    assert [h["step"] for h in log if "loss" in h] == list(range(1, 41))
