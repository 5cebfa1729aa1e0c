"""Training is resumable: a real `unireward unified_sft` process killed mid-run continues from
its newest checkpoint when started again with the same output directory."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import yaml

from loopback import sigkill_at_checkpoint, unireward_cmd


def _params(tmp_path: Path, max_steps: int) -> Path:
    """A params.yaml for a tiny `unified_sft`: a checkpoint every 2 steps, no tracking."""
    params = tmp_path / "params.yaml"
    train = {"max_steps": max_steps, "batch_size": 2, "save_steps": 2, "logging_steps": 1}
    params.write_text(
        yaml.safe_dump(
            {"unified_sft": {"train": train, "tracking_uri": "null"}, "profiles": {"quick": {}}}
        )
    )
    return params


def _cmd(params: Path, model: Path, data: Path, out: Path) -> list[str]:
    return unireward_cmd(
        "unified_sft",
        *("--params", params, "--base-model", model, "--dataset", data, "--output-dir", out),
    )


def test_killed_unified_sft_resumes_from_its_last_checkpoint(
    tiny_model_dir: Path, shapes_dataset: Path, tmp_path: Path
) -> None:
    params = _params(tmp_path, max_steps=40)
    out = tmp_path / "judge"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    killed_at = sigkill_at_checkpoint(
        _cmd(params, tiny_model_dir, shapes_dataset, out), out, 4, env
    )
    assert killed_at < 40 and not (out / "model.safetensors").exists()

    done = _train(params, tiny_model_dir, shapes_dataset, out, env)
    assert done.returncode == 0, done.stderr[-2000:]
    info = json.loads((out / "unireward.json").read_text())
    assert info["global_step"] == 40
    assert info["resumed_from"].endswith(f"checkpoint-{killed_at}")
    log = json.loads((out / "train_log.json").read_text())
    # The restored trainer state carries the log up to the checkpoint; the steps after it were
    # trained again. Every step appears exactly once.
    assert [h["step"] for h in log if "loss" in h] == list(range(1, 41))


def _train(params: Path, model: Path, data: Path, out: Path, env) -> subprocess.CompletedProcess:
    """Run the stage to its end (or its error), output captured."""
    return subprocess.run(
        _cmd(params, model, data, out), env=env, capture_output=True, text=True, timeout=300
    )


def _step(checkpoint: Path | None) -> int:
    return 0 if checkpoint is None else int(checkpoint.name.split("-")[1])


def _weights(model_dir: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(model_dir / "model.safetensors"))


@pytest.mark.filterwarnings("ignore:skipping .*cut short")  # polled while a save is under way
def test_unified_sft_killed_at_ten_random_moments_ends_with_the_uninterrupted_weights(
    tiny_model_dir: Path, shapes_dataset: Path, tmp_path: Path
) -> None:
    """SIGKILL at random moments (start-up, training steps, checkpoint saves, rotation), ten
    times over one run: every restart resumes from the newest complete checkpoint, none is
    corrupt, and the final weights equal an uninterrupted run's (test_training's tolerance)."""
    import random
    import signal
    import time

    from unireward.training import CHECKPOINTS, checkpoint_complete, latest_checkpoint

    steps = 80
    params = _params(tmp_path, max_steps=steps)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    straight = tmp_path / "straight"
    started = time.monotonic()
    proc = subprocess.Popen(
        _cmd(params, tiny_model_dir, shapes_dataset, straight),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    while latest_checkpoint(straight) is None and proc.poll() is None:
        time.sleep(0.05)
    first_checkpoint = time.monotonic() - started  # start-up and two steps
    assert proc.wait(timeout=300) == 0
    training = time.monotonic() - started - first_checkpoint

    # Two lives die in start-up; the others a random time (up to two steps) after the run got
    # 1-3 checkpoints further than the last life did: mid-step, mid-save or mid-rotation.
    step_s = training / steps
    rng = random.Random(21)
    out = tmp_path / "killed"
    resumed_steps = [0]
    for life in range(10):
        proc = subprocess.Popen(
            _cmd(params, tiny_model_dir, shapes_dataset, out),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if life in (0, 5):
            time.sleep(rng.uniform(0, first_checkpoint / 2))
        else:
            target = resumed_steps[-1] + 2 * rng.randint(1, 3)
            while _step(latest_checkpoint(out)) < target and proc.poll() is None:
                time.sleep(0.02)
            time.sleep(rng.uniform(0, 2 * step_s))
        assert proc.poll() is None, f"the run ended before it was killed: {resumed_steps}"
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
        newest = latest_checkpoint(out)
        resumed_steps.append(_step(newest))
        # Every checkpoint that counts as complete loads: weights and trainer state.
        for ckpt in (out / CHECKPOINTS).glob("checkpoint-*") if newest else ():
            if checkpoint_complete(ckpt):
                assert _weights(ckpt)
                json.loads((ckpt / "trainer_state.json").read_text())
    assert not (out / "model.safetensors").exists()
    assert resumed_steps == sorted(resumed_steps) and resumed_steps[-1] < steps
    assert len(set(resumed_steps)) >= 8, resumed_steps  # most kills fell inside training

    done = _train(params, tiny_model_dir, shapes_dataset, out, env)
    assert done.returncode == 0, done.stderr[-2000:]
    info = json.loads((out / "unireward.json").read_text())
    assert info["global_step"] == steps
    assert info["resumed_from"].endswith(f"checkpoint-{resumed_steps[-1]}")
    a, b = _weights(straight), _weights(out)
    assert a.keys() == b.keys()
    assert [k for k in a if not torch.allclose(a[k], b[k], rtol=0, atol=1e-6)] == []


def test_a_checkpoint_counts_as_complete_only_with_its_state_and_its_weights(
    tmp_path: Path,
) -> None:
    """What a kill leaves, mid-save (no or a cut-short state file) or mid-rotation (files of an
    older checkpoint removed in any order: found by the test above under load, the state file
    left and the weights gone), is never taken for a checkpoint to resume from."""
    from unireward.training import CHECKPOINTS, checkpoint_complete, latest_checkpoint

    def make(step: int, state: str | None, files: dict[str, str]) -> Path:
        ckpt = tmp_path / CHECKPOINTS / f"checkpoint-{step}"
        ckpt.mkdir(parents=True)
        if state is not None:
            (ckpt / "trainer_state.json").write_text(state)
        for name, text in files.items():
            (ckpt / name).write_text(text)
        return ckpt

    good = json.dumps({"global_step": 2})
    index = json.dumps(
        {
            "weight_map": {
                "a": "model-00001-of-00002.safetensors",
                "b": "model-00002-of-00002.safetensors",
            }
        }
    )
    cases = {
        2: (good, {"model.safetensors": "w"}, True),
        4: (json.dumps({"global_step": 4}), {}, False),  # rotation removed the weights
        6: (json.dumps({"global_step": 6})[:9], {"model.safetensors": "w"}, False),  # cut short
        8: (None, {"model.safetensors": "w"}, False),  # the state is written last
        10: (json.dumps({"global_step": 9}), {"model.safetensors": "w"}, False),  # another step
        12: (
            json.dumps({"global_step": 12}),
            {"model.safetensors.index.json": index, "model-00001-of-00002.safetensors": "w"},
            False,
        ),
        14: (json.dumps({"global_step": 14}), {"adapter_model.safetensors": "w"}, True),
    }
    for step, (state, files, complete) in cases.items():
        assert checkpoint_complete(make(step, state, files)) is complete, step
    assert latest_checkpoint(tmp_path).name == "checkpoint-14"
    shutil.rmtree(tmp_path / CHECKPOINTS / "checkpoint-14")
    with pytest.warns(UserWarning, match="cut short"):
        assert latest_checkpoint(tmp_path).name == "checkpoint-2"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 9 MiB tmpfs: two checkpoints of the test model fit, the third does not."""
    mount = tmp_path / "small"
    mount.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=9m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {made.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_a_full_disk_during_a_checkpoint_save_is_a_clear_error_and_loses_nothing(
    tiny_model_dir: Path, shapes_dataset: Path, small_disk: Path, tmp_path: Path
) -> None:
    import shutil

    from unireward.training import CHECKPOINTS, checkpoint_complete, latest_checkpoint

    params = _params(tmp_path, max_steps=20)
    out = small_disk / "judge"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    full = _train(params, tiny_model_dir, shapes_dataset, out, env)
    assert full.returncode == 1, full.stderr[-2000:]
    newest = latest_checkpoint(out)
    assert newest is not None and newest.name != "checkpoint-20"
    [message] = [line for line in full.stderr.splitlines() if "failed:" in line]
    assert message.startswith(f"unified_sft failed: the disk holding {out} is full")
    assert f"The newest complete checkpoint is {newest.name};" in message
    assert "Traceback" not in full.stderr
    # The partial checkpoint is gone; the ones before it are whole.
    left = sorted((out / CHECKPOINTS).glob("checkpoint-*"))
    assert left and all(checkpoint_complete(p) for p in left)
    assert _weights(newest) and not (out / "model.safetensors").exists()

    # With space again (here: the same directory on a larger disk), the same command resumes.
    moved = tmp_path / "judge"
    shutil.copytree(out, moved)
    done = _train(params, tiny_model_dir, shapes_dataset, moved, env)
    assert done.returncode == 0, done.stderr[-2000:]
    info = json.loads((moved / "unireward.json").read_text())
    assert info["global_step"] == 20 and info["resumed_from"].endswith(newest.name)
