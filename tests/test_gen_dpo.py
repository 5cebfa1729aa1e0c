"""Diffusion-DPO of the text-to-image policy (unireward.genpolicy.gen_dpo): the loss as a pure
function, the stage on judged pairs of the shipped policy, no pairs, and kill-and-resume."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from loopback import sigkill_at_checkpoint
from unireward.genpolicy.gen_dpo import GenDpoConfig, diffusion_dpo_loss, run
from unireward.genpolicy.loop import GenTrainParams, latest_checkpoint

ROOT = Path(__file__).resolve().parents[1]
POLICY = ROOT / "models" / "gen-policy-tiny"


def test_the_loss_is_log_two_where_the_policy_is_its_reference() -> None:
    mse = torch.tensor([0.3, 0.5, 0.2])
    loss, accuracy = diffusion_dpo_loss(mse, mse + 0.1, mse, mse + 0.1, beta=100.0)
    assert math.isclose(loss.item(), math.log(2), rel_tol=1e-6) and accuracy.item() == 0.0


def test_the_loss_falls_as_the_policy_denoises_the_chosen_image_better() -> None:
    ref_w, ref_l = torch.tensor([0.5, 0.5]), torch.tensor([0.5, 0.5])
    model_w = torch.tensor([0.45, 0.49], requires_grad=True)
    model_l = torch.tensor([0.5, 0.5], requires_grad=True)
    loss, accuracy = diffusion_dpo_loss(model_w, model_l, ref_w, ref_l, beta=100.0)
    assert loss.item() < math.log(2) and accuracy.item() == 1.0
    loss.backward()
    # lower loss: push the chosen image's error down and the rejected one's up
    assert (model_w.grad > 0).all() and (model_l.grad < 0).all()
    worse, _ = diffusion_dpo_loss(model_l.detach(), model_w.detach(), ref_w, ref_l, beta=100.0)
    assert worse.item() > math.log(2)


def test_the_loss_wants_four_tensors_of_one_shape() -> None:
    with pytest.raises(ValueError, match="four \\(B,\\) tensors"):
        diffusion_dpo_loss(torch.zeros(2), torch.zeros(3), torch.zeros(2), torch.zeros(2), 1.0)
    with pytest.raises(ValueError, match="beta must be > 0"):
        GenDpoConfig(beta=0.0)
    with pytest.raises(ValueError, match="sft_weight must be >= 0"):
        GenDpoConfig(sft_weight=-1.0)


@pytest.fixture(scope="module")
def oracle_pairs(tmp_path_factory) -> Path:
    """Pairs of the shipped policy's drawings, ranked by the ground-truth checker."""
    from unireward.genpolicy.build_gen_pairs import BuildGenPairsConfig
    from unireward.genpolicy.build_gen_pairs import run as build

    out = tmp_path_factory.mktemp("pairs")
    config = BuildGenPairsConfig(
        judge="oracle", captions=16, samples=4, num_inference_steps=8, tracking_uri="null"
    )
    result = build(config, POLICY, out)
    assert result.kept >= 4, result.stats
    return out


def _train(**train) -> GenTrainParams:
    settings = {
        "max_steps": 12,
        "batch_size": 4,
        "learning_rate": 1e-4,
        "warmup_steps": 1,
        "save_steps": 4,
        "logging_steps": 2,
        **train,
    }
    return GenTrainParams(**settings)


def test_dpo_on_judged_pairs_trains_the_transformer_only(oracle_pairs: Path, tmp_path: Path):
    from safetensors.torch import load_file

    result = run(GenDpoConfig(train=_train(), tracking_uri="null"), POLICY, oracle_pairs, tmp_path)
    assert result.trained and result.global_step == 12
    info = json.loads((tmp_path / "gen_dpo.json").read_text())
    assert info["trained"] and info["pairs"] == len(pd.read_parquet(oracle_pairs / "pairs.parquet"))
    log = result.log
    assert log[-1]["implicit_accuracy"] > 0.5, "the policy prefers the chosen images"
    assert log[-1]["loss"] < math.log(2)
    for part, changed in (("transformer", True), ("text_encoder", False)):
        name = "diffusion_pytorch_model" if part == "transformer" else "model"
        a = load_file(str(POLICY / part / f"{name}.safetensors"))
        b = load_file(str(tmp_path / part / f"{name}.safetensors"))
        same = all(torch.equal(a[k], b[k]) for k in a)
        assert same is not changed, part
    assert not (tmp_path / "checkpoints").exists()


def test_the_sft_term_makes_the_policy_denoise_the_chosen_images_better(
    oracle_pairs: Path, tmp_path: Path
) -> None:
    """sft_weight adds the chosen images' own denoising loss: at the same seed (the same pairs,
    noise and timesteps each step), the chosen images' error ends lower than without it."""

    def chosen_mse(weight: float) -> float:
        config = GenDpoConfig(
            sft_weight=weight, train=_train(learning_rate=1e-3), tracking_uri="null"
        )
        log = run(config, POLICY, oracle_pairs, tmp_path / f"w{weight}").log
        assert all(row["loss"] >= row["dpo_loss"] for row in log)
        return float(np.mean([row["chosen_mse"] for row in log[-3:]]))

    assert chosen_mse(100.0) < chosen_mse(0.0)


def test_no_pairs_is_an_error_unless_allowed(oracle_pairs: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    pd.read_parquet(oracle_pairs / "pairs.parquet").iloc[:0].to_parquet(empty / "pairs.parquet")
    with pytest.raises(ValueError, match="no preference pairs"):
        run(GenDpoConfig(train=_train()), POLICY, empty, tmp_path / "a")
    result = run(GenDpoConfig(train=_train(), allow_empty=True), POLICY, empty, tmp_path / "b")
    assert not result.trained
    assert json.loads((tmp_path / "b" / "gen_dpo.json").read_text())["trained"] is False
    assert (tmp_path / "b" / "model_index.json").exists(), "the policy passes on unchanged"
    with pytest.raises(FileNotFoundError, match="run build_gen_pairs first"):
        run(GenDpoConfig(train=_train()), POLICY, tmp_path / "nowhere", tmp_path / "c")
    broken = tmp_path / "broken"
    shutil.copytree(oracle_pairs, broken)
    next(iter((broken / "media").glob("*_chosen.png"))).unlink()
    with pytest.raises(FileNotFoundError, match="chosen images are missing"):
        run(GenDpoConfig(train=_train()), POLICY, broken, tmp_path / "d")


def _cmd(params: Path, pairs: Path, out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "unireward.cli",
        "gen_dpo",
        "--params",
        str(params),
        "--policy",
        str(POLICY),
        "--pairs",
        str(pairs),
        "--output-dir",
        str(out),
    ]


def test_killed_gen_dpo_resumes_to_the_uninterrupted_weights(
    oracle_pairs: Path, tmp_path: Path
) -> None:
    from safetensors.torch import load_file

    params = tmp_path / "params.yaml"
    train = {
        "max_steps": 24,
        "batch_size": 4,
        "learning_rate": 1e-4,
        "warmup_steps": 1,
        "save_steps": 4,
        "logging_steps": 2,
    }
    params.write_text(
        yaml.safe_dump(
            {"gen_dpo": {"train": train, "tracking_uri": "null"}, "profiles": {"quick": {}}}
        )
    )
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    straight, out = tmp_path / "straight", tmp_path / "killed"
    assert (
        subprocess.run(_cmd(params, oracle_pairs, straight), env=env, timeout=300).returncode == 0
    )
    killed_at = sigkill_at_checkpoint(
        _cmd(params, oracle_pairs, out), out, 8, env, latest_checkpoint=latest_checkpoint
    )
    assert 8 <= killed_at < 24
    done = subprocess.run(
        _cmd(params, oracle_pairs, out), env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads((out / "gen_dpo.json").read_text())["resumed_from"].endswith(
        f"step-{killed_at}"
    )
    name = "transformer/diffusion_pytorch_model.safetensors"
    a, b = load_file(str(straight / name)), load_file(str(out / name))
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=1e-6)
