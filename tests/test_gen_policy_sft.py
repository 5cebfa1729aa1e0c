"""The text-to-image policy (unireward.genpolicy): a diffusers pipeline built offline, saved as
safetensors and loaded back drawing the same images; captions it cannot encode are errors; its
training stage learns, writes what it measured, and a SIGKILLed run resumes to the weights an
uninterrupted one ends with."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from loopback import sigkill_at_checkpoint, unireward_cmd
from unireward.genpolicy.loop import latest_checkpoint
from unireward.genpolicy.model import (
    GenPolicyConfig,
    build_pipeline,
    caption_vocabulary,
    load_pipeline,
    save_pipeline,
)

TOY = {
    "image_size": 16,
    "patch_size": 4,
    "num_layers": 1,
    "num_heads": 2,
    "head_dim": 16,
    "text_hidden_size": 32,
    "text_layers": 1,
}
CAPTIONS = ["a red circle at the top left", "a blue cross at the bottom right"]


@pytest.fixture(scope="module")
def toy_pipe():
    return build_pipeline(GenPolicyConfig(**TOY))


def _draw(pipe, seed: int = 0) -> np.ndarray:
    images = pipe(CAPTIONS, num_inference_steps=3, generator=torch.Generator().manual_seed(seed))
    return np.stack([np.asarray(i) for i in images])


def test_saved_as_safetensors_and_loaded_back_it_draws_the_same(toy_pipe, tmp_path: Path) -> None:
    before = _draw(toy_pipe)
    assert before.shape == (2, 16, 16, 3)
    out = save_pipeline(toy_pipe, tmp_path / "policy", {"stage": "test"})
    files = [p.name for p in out.rglob("*") if p.is_file()]
    assert "model_index.json" in files and "diffusion_pytorch_model.safetensors" in files
    assert not [f for f in files if f.endswith((".bin", ".pt", ".pkl", ".ckpt"))]
    assert np.array_equal(_draw(load_pipeline(out)), before)
    assert not np.array_equal(_draw(toy_pipe, seed=1), before), "the seed draws the noise"


@pytest.mark.parametrize(
    "caption, message",
    [
        ("a red dragon at the top left", r"cannot encode: \['dragon'\]"),
        ("   ", "empty caption"),
        (" ".join(["red"] * 13), "longer than the policy's 12 words"),
    ],
)
def test_a_caption_it_cannot_encode_is_a_clear_error(toy_pipe, caption: str, message: str):
    with pytest.raises(ValueError, match=message):
        toy_pipe([caption], num_inference_steps=1)


def test_the_vocabulary_covers_every_caption_of_the_world() -> None:
    from unireward.data.shapes import (
        COLOURS,
        MOTIONS,
        POSITIONS,
        SHAPES,
        Scene,
        describe,
    )

    vocab = set(caption_vocabulary())
    for colour in COLOURS:
        for shape in SHAPES:
            for position in POSITIONS:
                assert set(describe(Scene(shape, colour, position=position)).split()) <= vocab
            for motion in MOTIONS:
                assert set(describe(Scene(shape, colour, motion=motion)).split()) <= vocab
    with pytest.raises(FileNotFoundError, match="not a saved policy"):
        load_pipeline(Path("/nonexistent"))


def _params(tmp_path: Path, max_steps: int, **train) -> Path:
    params = tmp_path / "params.yaml"
    section = {
        "model": TOY,
        "train": {
            "max_steps": max_steps,
            "batch_size": 8,
            "learning_rate": 3e-3,
            "warmup_steps": 2,
            "save_steps": 4,
            "logging_steps": 2,
            **train,
        },
        "eval_captions": 4,
        "num_inference_steps": 2,
    }
    params.write_text(yaml.safe_dump({"gen_policy_sft": section, "profiles": {"quick": {}}}))
    return params


def _cmd(params: Path, out: Path) -> list[str]:
    return unireward_cmd("gen_policy_sft", "--params", params, "--output-dir", out)


def _weights(out: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(out / "transformer" / "diffusion_pytorch_model.safetensors"))


def test_the_stage_learns_and_writes_what_it_measured(tmp_path: Path) -> None:
    params = _params(tmp_path, max_steps=40)
    out = tmp_path / "policy"
    done = subprocess.run(_cmd(params, out), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in log] == list(range(2, 41, 2))
    assert log[-1]["loss"] < 0.8 * log[0]["loss"], "the denoising loss falls"
    metrics = json.loads((out / "gen_policy.json").read_text())
    for split in ("eval_seen", "eval_unseen"):
        for key in ("colour", "shape", "position", "all"):
            assert 0.0 <= metrics[f"{split}/{key}"] <= 1.0
    info = json.loads((out / "unireward_gen.json").read_text())
    assert info["global_step"] == 40 and info["model"]["image_size"] == 16
    assert not (out / "checkpoints").exists(), "checkpoints go once the policy is saved"
    load_pipeline(out)


def test_killed_training_resumes_to_the_uninterrupted_weights(tmp_path: Path) -> None:
    params = _params(tmp_path, max_steps=24)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    straight = tmp_path / "straight"
    assert subprocess.run(_cmd(params, straight), env=env, timeout=300).returncode == 0

    out = tmp_path / "killed"
    killed_at = sigkill_at_checkpoint(
        _cmd(params, out), out, 8, env, latest_checkpoint=latest_checkpoint
    )
    assert 8 <= killed_at < 24 and not (out / "model_index.json").exists()
    done = subprocess.run(_cmd(params, out), env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    info = json.loads((out / "unireward_gen.json").read_text())
    assert info["resumed_from"].endswith(f"step-{killed_at}")
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in log] == list(range(2, 25, 2)), "every logged step once"
    a, b = _weights(straight), _weights(out)
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-4, atol=1e-5)
