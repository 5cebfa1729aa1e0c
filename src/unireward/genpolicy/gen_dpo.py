"""Stage `gen_dpo`: Diffusion-DPO (Wallace et al., 2023) of the text-to-image policy on
`build_gen_pairs`' preference pairs.

    unireward gen_dpo --policy models/gen-policy-tiny --pairs runs/build_gen_pairs \
        --output-dir runs/gen_dpo

No maintained library implements it (TRL's DPO is for language models, diffusers ships it as a
research example script, `examples/research_projects/diffusion_dpo`), so the loss is a pure,
tested function here (`diffusion_dpo_loss`) in the shared resumable accelerate loop
(`genpolicy.loop`). Each step takes `batch_size` pairs (drawn by the step's seed), noises the
chosen and the rejected image with the *same* noise at the *same* timestep, and compares how
much better the policy denoises the chosen one than the rejected one (its prediction's
error against `pipe.target`) against the same margin
of the frozen reference (the policy as loaded). Only the transformer trains; the text encoder
stays as it was (the reference's). Resumable: a restarted run continues from the newest
`checkpoints/step-N`.

No pairs (a judge whose verdicts never survive the swap): an error, unless `allow_empty: true`,
which writes the policy unchanged with `gen_dpo.json` saying `trained: false`.
"""

from __future__ import annotations

import copy
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from unireward.config import to_dict
from unireward.genpolicy.loop import GenTrainParams, discard_checkpoints, train_loop


def _default_train() -> GenTrainParams:
    return GenTrainParams(
        max_steps=200,
        batch_size=16,
        learning_rate=1e-5,
        warmup_steps=10,
        save_steps=50,
        logging_steps=10,
    )


@dataclass(frozen=True)
class GenDpoConfig:
    # Diffusion-DPO's beta multiplies a difference of per-pixel MSEs, so it is large: the paper
    # and the diffusers example use 5000 for SD 1.5 / SDXL.
    beta: float = 5000.0
    # The chosen image's own denoising loss, added with this weight (TRL's `rpo_alpha` for
    # language-model DPO): the policy also imitates the chosen samples, so the preference
    # cannot be met by only making the rejected ones less likely. 0 = Diffusion-DPO as published.
    sft_weight: float = 0.0
    allow_empty: bool = False
    seed: int = 0
    train: GenTrainParams = field(default_factory=_default_train)
    tracking_uri: str | None = None
    experiment: str = "unireward"

    def __post_init__(self) -> None:
        if not self.beta > 0:
            raise ValueError(f"gen_dpo.beta must be > 0 (published 5000), got {self.beta}")
        if not self.sft_weight >= 0:
            raise ValueError(f"gen_dpo.sft_weight must be >= 0 (0 = off), got {self.sft_weight}")


@dataclass
class GenDpoResult:
    model_dir: Path
    trained: bool
    pairs: int
    global_step: int
    resumed_from: str | None
    seconds: float
    log: list[dict[str, float]]


def diffusion_dpo_loss(
    model_w: torch.Tensor,
    model_l: torch.Tensor,
    ref_w: torch.Tensor,
    ref_l: torch.Tensor,
    beta: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Diffusion-DPO's loss and its implicit accuracy.

    Args: each (B,): the mean squared error of the noise prediction on the chosen (`_w`) and
    rejected (`_l`) image of B pairs, by the policy (`model_`) and by the frozen reference
    (`ref_`), at the same noise and timestep per pair.

    Returns: the scalar loss -mean(log sigmoid(-beta/2 * ((model_w - model_l) - (ref_w -
    ref_l)))) -- lower when the policy denoises the chosen image better, relative to the
    rejected one, than the reference does -- and the share of pairs where that holds (> 0
    inside the sigmoid). At model == ref the loss is log 2.
    """
    if not (model_w.shape == model_l.shape == ref_w.shape == ref_l.shape) or model_w.ndim != 1:
        raise ValueError(
            "diffusion_dpo_loss takes four (B,) tensors of the same shape, got "
            f"{[tuple(t.shape) for t in (model_w, model_l, ref_w, ref_l)]}"
        )
    inside = -0.5 * beta * ((model_w - model_l) - (ref_w - ref_l))
    return -torch.nn.functional.logsigmoid(inside).mean(), (inside > 0).float().mean()


def load_pairs(pairs_dir: Path):
    """`build_gen_pairs`' rows, image paths made absolute; a missing file is an error."""
    import pandas as pd

    path = Path(pairs_dir) / "pairs.parquet"
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist (run build_gen_pairs first)")
    frame = pd.read_parquet(path)
    if len(frame) == 0:
        return frame
    missing = {"caption", "chosen", "rejected"} - set(frame.columns)
    if missing:
        raise ValueError(f"{path} lacks the columns {sorted(missing)}: not build_gen_pairs' pairs")
    for side in ("chosen", "rejected"):
        frame[side] = [str(Path(pairs_dir) / p) for p in frame[side]]
        absent = [p for p in frame[side] if not Path(p).is_file()]
        if absent:
            raise FileNotFoundError(f"{len(absent)} {side} images are missing, e.g. {absent[0]}")
    return frame


def run(config: GenDpoConfig, policy_dir: Path, pairs_dir: Path, output_dir: Path) -> GenDpoResult:
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from PIL import Image

    from unireward.genpolicy.model import load_pipeline, save_pipeline, to_tensor

    start = time.perf_counter()
    policy_dir, output_dir = Path(policy_dir), Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    pairs = load_pairs(Path(pairs_dir))
    record = {
        "stage": "gen_dpo",
        "config": to_dict(config),
        "policy": str(policy_dir),
        "pairs_dir": str(pairs_dir),
        "pairs": len(pairs),
    }
    if len(pairs) == 0:
        if not config.allow_empty:
            raise ValueError(
                f"{pairs_dir}/pairs.parquet has no preference pairs (see its stats.json: ties, "
                "chosen <= rejected); set gen_dpo.allow_empty: true to pass the policy on "
                "unchanged"
            )
        shutil.copytree(policy_dir, output_dir, dirs_exist_ok=True)
        record.update(trained=False, reason="no preference pairs")
        (output_dir / "gen_dpo.json").write_text(json.dumps(record, indent=1))
        return GenDpoResult(output_dir, False, 0, 0, None, time.perf_counter() - start, [])

    torch.set_num_threads(config.train.threads)
    set_seed(config.seed)
    pipe = load_pipeline(policy_dir)
    reference = copy.deepcopy(pipe.transformer).eval().requires_grad_(False)
    pipe.text_encoder.eval().requires_grad_(False)
    size = pipe.image_size
    captions = list(pairs["caption"])
    tokens = pipe.tokenize(captions)  # a caption the policy cannot encode fails here
    with torch.no_grad():
        text = pipe.encode(**tokens)
    chosen = to_tensor([Image.open(p) for p in pairs["chosen"]], size)
    rejected = to_tensor([Image.open(p) for p in pairs["rejected"]], size)
    optimizer, lr_schedule = config.train.optimizer(pipe.transformer.parameters())
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    transformer, optimizer, lr_schedule = accelerator.prepare(
        pipe.transformer, optimizer, lr_schedule
    )
    scheduler = pipe.scheduler
    n = len(pairs)

    def mse(model, noisy, steps, text_b, mask_b, target) -> torch.Tensor:
        predicted = model(
            noisy,
            encoder_hidden_states=text_b,
            encoder_attention_mask=mask_b,
            timestep=steps,
            added_cond_kwargs={"resolution": None, "aspect_ratio": None},
        ).sample
        return ((predicted - target) ** 2).mean(dim=(1, 2, 3))

    def step(i: int) -> dict[str, float]:
        rng = np.random.default_rng([config.seed, i])
        index = torch.from_numpy(rng.choice(n, size=min(config.train.batch_size, n), replace=False))
        generator = torch.Generator().manual_seed(config.seed * 1_000_003 + i)
        noise = torch.randn(chosen[index].shape, generator=generator)
        steps = torch.randint(
            0, scheduler.config.num_train_timesteps, (len(index),), generator=generator
        )
        both = torch.cat(
            [
                scheduler.add_noise(chosen[index], noise, steps),
                scheduler.add_noise(rejected[index], noise, steps),
            ]
        )
        targets = torch.cat(
            [pipe.target(chosen[index], noise, steps), pipe.target(rejected[index], noise, steps)]
        )
        args = (
            both,
            steps.repeat(2),
            text[index].repeat(2, 1, 1),
            tokens["attention_mask"][index].repeat(2, 1),
            targets,
        )
        model_w, model_l = mse(transformer, *args).chunk(2)
        with torch.no_grad():
            ref_w, ref_l = mse(reference, *args).chunk(2)
        dpo_loss, accuracy = diffusion_dpo_loss(model_w, model_l, ref_w, ref_l, config.beta)
        loss = dpo_loss + config.sft_weight * model_w.mean()
        accelerator.backward(loss)
        accelerator.clip_grad_norm_(transformer.parameters(), config.train.max_grad_norm)
        optimizer.step()
        lr_schedule.step()
        optimizer.zero_grad()
        return {
            "loss": loss.item(),
            "dpo_loss": dpo_loss.item(),
            "implicit_accuracy": accuracy.item(),
            "chosen_mse": model_w.mean().item(),
            "rejected_mse": model_l.mean().item(),
            "lr": lr_schedule.get_last_lr()[0],
        }

    transformer.train()
    outcome = train_loop(accelerator, step, config.train, output_dir)
    transformer.eval()
    record.update(
        trained=True,
        global_step=outcome.global_step,
        resumed_from=outcome.resumed_from,
        train_seconds=round(outcome.seconds, 1),
    )
    save_pipeline(pipe, output_dir, record)
    (output_dir / "gen_dpo.json").write_text(json.dumps(record, indent=1))
    discard_checkpoints(output_dir)
    return GenDpoResult(
        output_dir,
        True,
        n,
        outcome.global_step,
        outcome.resumed_from,
        time.perf_counter() - start,
        outcome.log,
    )
