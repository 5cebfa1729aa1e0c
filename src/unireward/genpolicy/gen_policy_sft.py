"""Stage `gen_policy_sft`: the embedded text-to-image policy (`models/gen-policy-tiny`), a
diffusers pipeline (`genpolicy.model`) trained from scratch, briefly, on shapes-world captions,
so that it draws the right scene only part of the time and preference alignment has room.

    unireward gen_policy_sft --output-dir models/gen-policy-tiny
    make pretrain-gen-policy                  # the same, into the shipped directory

Each step renders `batch_size` fresh scenes of the seen colour-shape combinations at the policy's
size (`shapes.render_image`, clean), noises them at uniform DDPM timesteps and fits the noise
(epsilon MSE, the standard denoising loss); a caption is replaced by `[NULL]` with probability
`caption_dropout` (classifier-free guidance). Transformer and text encoder train together with
AdamW through accelerate. Resumable: `accelerate` state (weights, optimizer, scheduler, RNG) every
`save_steps` under `output_dir/checkpoints/step-N`, and a restart continues from the newest.
Writes the pipeline, `gen_policy.json` (held-out caption alignment, seen / unseen, per
attribute, `genpolicy.alignment`) and a model card's numbers.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from unireward.config import to_dict
from unireward.data.shapes import SEEN_COMBOS, describe, render_image
from unireward.genpolicy.alignment import caption_alignment, held_out_captions, random_scenes
from unireward.genpolicy.model import (
    GenPolicyConfig,
    ShapesImagePipeline,
    build_pipeline,
    config_of,
    save_pipeline,
    to_tensor,
)

CHECKPOINTS = "checkpoints"


@dataclass(frozen=True)
class GenTrainParams:
    max_steps: int = 3000
    batch_size: int = 32
    learning_rate: float = 1e-3
    warmup_steps: int = 100
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    save_steps: int = 250
    logging_steps: int = 50
    threads: int = 1

    def __post_init__(self) -> None:
        for name in ("max_steps", "batch_size", "save_steps", "logging_steps", "threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"train.{name} must be >= 1, got {getattr(self, name)}")
        if not 0 < self.learning_rate < 1:
            raise ValueError(f"train.learning_rate must be in (0, 1), got {self.learning_rate}")
        if self.warmup_steps < 0:
            raise ValueError(f"train.warmup_steps must be >= 0, got {self.warmup_steps}")


@dataclass(frozen=True)
class GenPolicySftConfig:
    model: GenPolicyConfig = field(default_factory=GenPolicyConfig)
    train: GenTrainParams = field(default_factory=GenTrainParams)
    caption_dropout: float = 0.1
    seed: int = 0
    eval_captions: int = 100  # per split (seen, unseen)
    eval_seed: int = 1
    num_inference_steps: int = 20
    guidance_scale: float = 3.0

    def __post_init__(self) -> None:
        if not 0 <= self.caption_dropout < 1:
            raise ValueError(f"caption_dropout must be in [0, 1), got {self.caption_dropout}")
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
    images = [render_image(s, size, rng) for s in scenes]
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
    """Epsilon MSE at uniform timesteps (the DDPM objective)."""
    scheduler = pipe.scheduler
    noise = torch.randn(images.shape, generator=generator)
    steps = torch.randint(
        0, scheduler.config.num_train_timesteps, (images.shape[0],), generator=generator
    )
    noisy = scheduler.add_noise(images, noise, steps)
    text = pipe.encode(**tokens)
    eps = pipe.predict_noise(noisy, steps, text, tokens["attention_mask"])
    return torch.nn.functional.mse_loss(eps, noise)


def latest_checkpoint(output_dir: Path) -> Path | None:
    """The newest complete `checkpoints/step-N` (its `done` marker written last)."""
    root = Path(output_dir) / CHECKPOINTS
    found = []
    for path in root.glob("step-*") if root.exists() else []:
        match = re.fullmatch(r"step-(\d+)", path.name)
        if match and (path / "done").exists():
            found.append((int(match.group(1)), path))
    return max(found)[1] if found else None


def run(config: GenPolicySftConfig, output_dir: Path) -> GenPolicySftResult:
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    output_dir = Path(output_dir)
    torch.set_num_threads(config.train.threads)
    set_seed(config.seed)
    pipe = build_pipeline(config.model)
    train = config.train
    modules = torch.nn.ModuleList([pipe.transformer, pipe.text_encoder])
    optimizer = torch.optim.AdamW(
        modules.parameters(), lr=train.learning_rate, weight_decay=train.weight_decay
    )
    warmup = train.warmup_steps
    lr_schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: (
            min(1.0, (s + 1) / max(warmup, 1))
            * 0.5
            * (1 + math.cos(math.pi * min(s, train.max_steps) / train.max_steps))
        ),
    )
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    modules, optimizer, lr_schedule = accelerator.prepare(modules, optimizer, lr_schedule)
    resume = latest_checkpoint(output_dir)
    start = 0
    log_file = output_dir / "train_log.jsonl"
    losses: list[dict[str, float]] = []
    if resume is not None:
        accelerator.load_state(str(resume))
        start = int(resume.name.split("-")[1])
        # the log up to the checkpoint; the steps after it are trained (and logged) again
        losses = [e for e in _read_log(log_file) if e["step"] <= start]
        log_file.write_text("".join(json.dumps(e) + "\n" for e in losses))
    elif log_file.exists():
        log_file.unlink()  # an earlier, finished or abandoned run's
    began = time.perf_counter()
    modules.train()
    window: list[float] = []
    for step in range(start, train.max_steps):
        images, tokens = training_batch(pipe, config, step)
        # the noise and timesteps too are a function of (seed, step): a resume is exact
        generator = torch.Generator().manual_seed(config.seed * 1_000_003 + step)
        loss = denoising_loss(pipe, images, tokens, generator)
        accelerator.backward(loss)
        accelerator.clip_grad_norm_(modules.parameters(), train.max_grad_norm)
        optimizer.step()
        lr_schedule.step()
        optimizer.zero_grad()
        window.append(loss.item())
        done = step + 1
        if done % train.logging_steps == 0 or done == train.max_steps:
            entry = {
                "step": done,
                "loss": float(np.mean(window)),
                "lr": lr_schedule.get_last_lr()[0],
            }
            losses.append(entry)
            output_dir.mkdir(parents=True, exist_ok=True)
            with log_file.open("a") as f:
                f.write(json.dumps(entry) + "\n")
            window = []
        if done % train.save_steps == 0 and done < train.max_steps:
            _save_state(accelerator, output_dir, done)
    seconds = time.perf_counter() - began
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
            "global_step": train.max_steps,
            "resumed_from": str(resume) if resume else None,
            "train_seconds": round(seconds, 1),
        },
    )
    (output_dir / "gen_policy.json").write_text(json.dumps(metrics, indent=1))
    shutil.rmtree(output_dir / CHECKPOINTS, ignore_errors=True)
    return GenPolicySftResult(
        model_dir=output_dir,
        global_step=train.max_steps,
        resumed_from=str(resume) if resume else None,
        train_seconds=seconds,
        alignment=metrics,
        losses=losses,
    )


def _read_log(path: Path) -> list[dict[str, float]]:
    if not path.exists():
        return []
    entries = []
    for line in path.read_text().splitlines():
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut short by a kill
            continue
    return entries


def _save_state(accelerator, output_dir: Path, step: int) -> None:
    """accelerate state into `step-N`, marked complete last; older ones removed."""
    path = output_dir / CHECKPOINTS / f"step-{step}"
    accelerator.save_state(str(path), safe_serialization=True)
    (path / "done").write_text(str(step))
    for old in (output_dir / CHECKPOINTS).glob("step-*"):
        if old != path:
            shutil.rmtree(old, ignore_errors=True)
