"""Training is resumable: a real `unireward unified_sft` process killed mid-run continues from
its newest checkpoint when started again with the same output directory."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from unireward.training import latest_checkpoint


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
    params.write_text(yaml.safe_dump({"unified_sft": {"train": train}, "profiles": {"quick": {}}}))
    out = tmp_path / "judge"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        _cmd(params, tiny_model_dir, shapes_dataset, out),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline:
            ckpt = latest_checkpoint(out)
            if ckpt is not None and int(ckpt.name.split("-")[1]) >= 4:
                break
            assert proc.poll() is None, "the run ended before it could be killed"
            time.sleep(0.2)
        else:
            raise AssertionError("no checkpoint appeared in time")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    killed_at = int(latest_checkpoint(out).name.split("-")[1])
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
