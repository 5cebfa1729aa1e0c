"""Stage `gen_policy_sft`: the embedded text-to-image policy (`models/gen-policy-tiny`), a
diffusers pipeline (`genpolicy.model`) trained from scratch, briefly, on shapes-world captions,
so that it draws the right scene only part of the time and preference alignment has room.

    unireward gen_policy_sft --output-dir models/gen-policy-tiny
    make pretrain-gen-policy                  # the same, into the shipped directory

Each step renders `batch_size` fresh scenes of the seen colour-shape combinations at the policy's
size (`shapes.render_image`, clean), noises them at uniform DDPM timesteps and fits the velocity
(v-prediction MSE, the standard denoising loss); a caption is replaced by `[NULL]` with probability
`caption_dropout` (classifier-free guidance). Transformer and text encoder train together with
AdamW through accelerate. Resumable: `accelerate` state (weights, optimizer, scheduler, RNG) every
`save_steps` under `output_dir/checkpoints/step-N`, and a restart continues from the newest.
Writes the pipeline, `gen_policy.json` (held-out caption alignment, seen / unseen, per
attribute, `genpolicy.alignment`) and a model card's numbers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from unireward.config import to_dict
from unireward.data.shapes import SEEN_COMBOS, describe, render_image
from unireward.genpolicy.alignment import caption_alignment, held_out_captions, random_scenes
from unireward.genpolicy.loop import GenTrainParams, discard_checkpoints, train_loop
from unireward.genpolicy.model import (
    GenPolicyConfig,
    ShapesImagePipeline,
    build_pipeline,
    config_of,
    save_pipeline,
    to_tensor,
)


@dataclass(frozen=True)
class GenPolicySftConfig:
    model: GenPolicyConfig = field(default_factory=GenPolicyConfig)
    train: GenTrainParams = field(default_factory=GenTrainParams)
    caption_dropout: float = 0.1
    # The training renders' background noise (shapes.render_image; the judge's data has 4):
    # 0 = flat, so the policy's capacity goes to the shape, not to a noise texture.
    render_noise: float = 0.0
    # The text encoder's learning rate as a share of train.learning_rate; 0 = frozen (its random
    # initial features, as a pretrained encoder is frozen in Stable Diffusion / PixArt).
    text_encoder_lr_scale: float = 0.0
    seed: int = 0
    eval_captions: int = 100  # per split (seen, unseen)
    eval_seed: int = 1
    num_inference_steps: int = 20
    guidance_scale: float = 3.0

    def __post_init__(self) -> None:
        if not 0 <= self.caption_dropout < 1:
            raise ValueError(f"caption_dropout must be in [0, 1), got {self.caption_dropout}")
        if self.text_encoder_lr_scale < 0:
            raise ValueError(
                f"text_encoder_lr_scale must be >= 0, got {self.text_encoder_lr_scale}"
            )
        if self.eval_captions < 0 or self.num_inference_steps < 1:
            raise ValueError("eval_captions must be >= 0 and num_inference_steps >= 1")


@dataclass
class GenPolicySftResult:
    model_dir: Path
    global_step: int
    resumed_from: str | None
    train_seconds: float
    alignment: dict[str, float]
    losses: list[dict[str, float]]


def training_batch(
    pipe: ShapesImagePipeline, config: GenPolicySftConfig, step: int
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Step `step`'s images ([-1, 1]) and caption tokens: a pure function of (seed, step), so a
    resumed run sees the batches an uninterrupted one would have."""
    rng = np.random.default_rng([config.seed, step])
    scenes = random_scenes(config.train.batch_size, SEEN_COMBOS, rng)
    size = config.model.image_size
    images = [render_image(s, size, rng, noise=config.render_noise) for s in scenes]
    null = [pipe.tokenizer.convert_tokens_to_ids("[NULL]")]
    rows = []
    for scene in scenes:
        if rng.random() < config.caption_dropout:
            rows.append(null)
        else:
            rows.append(pipe.tokenizer(describe(scene), add_special_tokens=False)["input_ids"])
    return to_tensor(images, size), pipe.tokenize_ids(rows)


def denoising_loss(
    pipe: ShapesImagePipeline,
    images: torch.Tensor,
    tokens: dict[str, torch.Tensor],
    generator: torch.Generator,
) -> torch.Tensor:
    """The prediction's MSE against `pipe.target` (v-prediction by default) at uniform
    timesteps (the DDPM objective)."""
    scheduler = pipe.scheduler
    noise = torch.randn(images.shape, generator=generator)
    steps = torch.randint(
        0, scheduler.config.num_train_timesteps, (images.shape[0],), generator=generator
    )
    noisy = scheduler.add_noise(images, noise, steps)
    text = pipe.encode(**tokens)
    predicted = pipe.predict_noise(noisy, steps, text, tokens["attention_mask"])
    return torch.nn.functional.mse_loss(predicted, pipe.target(images, noise, steps))


def run(config: GenPolicySftConfig, output_dir: Path) -> GenPolicySftResult:
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    output_dir = Path(output_dir)
    torch.set_num_threads(config.train.threads)
    set_seed(config.seed)
    pipe = build_pipeline(config.model)
    modules = torch.nn.ModuleList([pipe.transformer, pipe.text_encoder])
    groups = [{"params": list(pipe.transformer.parameters())}]
    if config.text_encoder_lr_scale > 0:
        lr = config.train.learning_rate * config.text_encoder_lr_scale
        groups.append({"params": list(pipe.text_encoder.parameters()), "lr": lr})
    else:
        pipe.text_encoder.requires_grad_(False)
    optimizer, lr_schedule = config.train.optimizer(groups)
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    modules, optimizer, lr_schedule = accelerator.prepare(modules, optimizer, lr_schedule)

    def step(i: int) -> dict[str, float]:
        images, tokens = training_batch(pipe, config, i)
        # the noise and timesteps too are a function of (seed, step): a resume is exact
        generator = torch.Generator().manual_seed(config.seed * 1_000_003 + i)
        loss = denoising_loss(pipe, images, tokens, generator)
        accelerator.backward(loss)
        accelerator.clip_grad_norm_(modules.parameters(), config.train.max_grad_norm)
        optimizer.step()
        lr_schedule.step()
        optimizer.zero_grad()
        return {"loss": loss.item(), "lr": lr_schedule.get_last_lr()[0]}

    modules.train()
    outcome = train_loop(accelerator, step, config.train, output_dir)
    modules.eval()
    metrics = (
        caption_alignment(
            pipe,
            held_out_captions(config.eval_captions, config.eval_seed),
            seed=config.eval_seed,
            num_inference_steps=config.num_inference_steps,
            guidance_scale=config.guidance_scale,
        )
        if config.eval_captions
        else {}
    )
    save_pipeline(
        pipe,
        output_dir,
        {
            "stage": "gen_policy_sft",
            "config": to_dict(config),
            "model": config_of(pipe),
            "global_step": outcome.global_step,
            "resumed_from": outcome.resumed_from,
            "train_seconds": round(outcome.seconds, 1),
        },
    )
    (output_dir / "gen_policy.json").write_text(json.dumps(metrics, indent=1))
    discard_checkpoints(output_dir)
    return GenPolicySftResult(
        model_dir=output_dir,
        global_step=outcome.global_step,
        resumed_from=outcome.resumed_from,
        train_seconds=outcome.seconds,
        alignment=metrics,
        losses=outcome.log,
    )
