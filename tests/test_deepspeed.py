"""DeepSpeed ZeRO-3 on CPU: `grpo` and `rs_sft` as 2 processes (torchrun, gloo) with the shipped
configs/deepspeed/zero3.json. Each trains (parameters change), records world size 2 and ZeRO
stage 3, and writes one complete checkpoint gathered from the shards (every weight, loadable).

    make venv-deepspeed && .venv/bin/pytest -m slow tests/test_deepspeed.py -q

Slow (two processes of torch + DeepSpeed each, ~1 min) and needs the `deepspeed` extra, which
`make venv` leaves out (CI's fast suite does not need it); `make test-all` installs it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from grpo_pairs import TINY_GRPO
from loopback import free_port

pytestmark = pytest.mark.slow
pytest.importorskip("deepspeed", reason="the deepspeed extra: run `make venv-deepspeed`")

ROOT = Path(__file__).resolve().parents[1]
ZERO3 = ROOT / "configs" / "deepspeed" / "zero3.json"


def _torchrun(stage: str, params: Path, args: list[str]) -> None:
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        str(free_port()),
        "-m",
        "unireward.cli",
        stage,
        "--params",
        str(params),
        *args,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]


def _check_checkpoint(before_dir: Path, out: Path) -> dict:
    from transformers import AutoModelForImageTextToText

    _, loading = AutoModelForImageTextToText.from_pretrained(out, output_loading_info=True)
    assert not any(loading.values()), loading  # no missing, unexpected or mismatched weights
    before = load_file(before_dir / "model.safetensors")
    after = load_file(out / "model.safetensors")
    assert before.keys() == after.keys()
    assert all(before[k].shape == after[k].shape for k in before)  # gathered, not shards
    assert sum(not torch.equal(before[k], after[k]) for k in before) > len(before) // 2
    info = json.loads((out / "unireward.json").read_text())
    assert info["world_size"] == 2 and info["zero_stage"] == 3
    return info


def test_grpo_under_zero3_with_two_cpu_processes(
    format_judge: Path, grpo_cli_inputs: list[str], tmp_path: Path
) -> None:
    params = tmp_path / "params.yaml"
    grpo = {**TINY_GRPO, "max_steps": 3, "save_steps": 3, "beta": 0.04, "deepspeed": str(ZERO3)}
    params.write_text(yaml.safe_dump({"grpo": grpo, "profiles": {"quick": {}}}))
    out = tmp_path / "grpo"
    _torchrun("grpo", params, [*grpo_cli_inputs, "--output-dir", str(out)])
    info = _check_checkpoint(format_judge, out)
    assert info["global_step"] == 3 and len(info["reward_curve"]) == 3


def test_rs_sft_under_zero3_with_two_cpu_processes(
    tiny_model_dir: Path, shapes_dataset: Path, tmp_path: Path
) -> None:
    from test_rs_sft import _correct_set

    samples = _correct_set(shapes_dataset, tmp_path / "samples", 6)
    params = tmp_path / "params.yaml"
    train = {
        "max_steps": 3,
        "batch_size": 2,
        "save_steps": 3,
        "logging_steps": 1,
        "deepspeed": str(ZERO3),
    }
    params.write_text(
        yaml.safe_dump(
            {"rs_sft": {"train": train, "tracking_uri": "null"}, "profiles": {"quick": {}}}
        )
    )
    out = tmp_path / "rs"
    _torchrun(
        "rs_sft",
        params,
        [
            "--judge",
            str(tiny_model_dir),
            "--samples",
            str(samples),
            "--dataset",
            str(shapes_dataset),
            "--output-dir",
            str(out),
        ],
    )
    info = _check_checkpoint(tiny_model_dir, out)
    assert info["global_step"] == 3 and info["examples"] == 6
