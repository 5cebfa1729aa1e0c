"""dpo (stage 12): a real `unireward dpo` process SIGKILLed and resumed, and what an empty pair
set does.

    .venv/bin/pytest tests/test_dpo.py -q
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from loopback import sigkill_at_checkpoint, unireward_cmd

ROOT = Path(__file__).resolve().parents[1]
POLICY = ROOT / "models" / "policy-tiny"


# --------------------------------------------------------------------------- dpo


def _dpo_cmd(params: Path, pairs: Path, out: Path) -> list[str]:
    return unireward_cmd(
        "dpo", "--params", params, "--policy", POLICY, "--pairs", pairs, "--output-dir", out
    )


def test_killed_dpo_resumes_and_changes_the_policy(oracle_pairs: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    from mlflow_store import logged_artifacts
    from unireward.tracking import default_tracking_uri

    params = tmp_path / "params.yaml"
    uri = default_tracking_uri(tmp_path / "store")
    train = {
        "max_steps": 8,
        "batch_size": 2,
        "save_steps": 2,
        "logging_steps": 1,
        "learning_rate": 1e-3,
    }
    params.write_text(
        yaml.safe_dump({"dpo": {"train": train, "tracking_uri": uri}, "profiles": {"quick": {}}})
    )
    out = tmp_path / "dpo"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    killed_at = sigkill_at_checkpoint(_dpo_cmd(params, oracle_pairs, out), out, 4, env)
    assert killed_at < 8 and not (out / "dpo.json").exists()
    done = subprocess.run(
        _dpo_cmd(params, oracle_pairs, out), env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    record = json.loads((out / "dpo.json").read_text())
    assert record["trained"] and record["global_step"] == 8
    assert record["resumed_from"].endswith(f"checkpoint-{killed_at}")
    # the history restored from the checkpoint, continued: every step logged exactly once
    steps = [h["step"] for h in record["log_history"] if "loss" in h]
    assert steps == list(range(1, 9))
    before, after = load_file(POLICY / "model.safetensors"), load_file(out / "model.safetensors")
    assert any((before[k] != after[k]).any() for k in before)  # DPO moved the policy
    assert "plots/train_curves.png" in logged_artifacts(uri, "dpo")  # the run that finished


def test_dpo_without_pairs_fails_or_passes_the_policy_on(tmp_path: Path) -> None:
    from unireward.policy import dpo
    from unireward.policy.build_pairs import write_rows

    empty = tmp_path / "pairs"
    empty.mkdir()
    write_rows([], empty / "pairs.parquet")
    with pytest.raises(ValueError, match="no preference pairs"):
        dpo.run(dpo.DpoConfig(tracking_uri="null"), POLICY, empty, tmp_path / "a")
    result = dpo.run(
        dpo.DpoConfig(tracking_uri="null", allow_empty=True), POLICY, empty, tmp_path / "b"
    )
    assert (
        not result.trained
        and json.loads((tmp_path / "b" / "dpo.json").read_text())["reason"] == "no preference pairs"
    )
    assert (tmp_path / "b" / "model.safetensors").read_bytes() == (
        POLICY / "model.safetensors"
    ).read_bytes()
