"""The resumable training loop of the generator stages (`gen_policy_sft`, `gen_dpo`): accelerate
does the placement and the state; this module fixes what both stages share.

- `GenTrainParams`: steps, batch, AdamW, warmup then cosine to 0, checkpoints, logging;
- `train_loop(accelerator, step_fn, params, output_dir)`: calls `step_fn(step)` (one optimizer
  step; a dict of floats back, "loss" among them) from the step the newest complete checkpoint
  left to `max_steps`; saves accelerate's state (weights, optimizer, lr schedule, RNG) every
  `save_steps` into `output_dir/checkpoints/step-N`, marked complete last, older ones removed;
  writes `train_log.jsonl` (the mean of each value over `logging_steps`), which a resume cuts
  back to its checkpoint so every step is logged once. A step's batch and noise must be a
  function of the step (both stages seed them by it), so a resumed run ends where an
  uninterrupted one does.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CHECKPOINTS = "checkpoints"
LOG = "train_log.jsonl"


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

    def optimizer(self, parameters):
        """AdamW and its schedule: linear warmup, then cosine to 0 at `max_steps`."""
        import torch

        optimizer = torch.optim.AdamW(
            parameters, lr=self.learning_rate, weight_decay=self.weight_decay
        )
        warmup, total = self.warmup_steps, self.max_steps

        def factor(step: int) -> float:
            ramp = min(1.0, (step + 1) / max(warmup, 1))
            return ramp * 0.5 * (1 + math.cos(math.pi * min(step, total) / total))

        return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


@dataclass
class LoopOutcome:
    global_step: int
    resumed_from: str | None
    seconds: float
    log: list[dict[str, float]]


def latest_checkpoint(output_dir: Path) -> Path | None:
    """The newest complete `checkpoints/step-N` (its `done` marker is written last)."""
    root = Path(output_dir) / CHECKPOINTS
    found = []
    for path in root.glob("step-*") if root.exists() else []:
        match = re.fullmatch(r"step-(\d+)", path.name)
        if match and (path / "done").exists():
            found.append((int(match.group(1)), path))
    return max(found)[1] if found else None


def read_log(path: Path) -> list[dict[str, float]]:
    if not path.exists():
        return []
    entries = []
    for line in path.read_text().splitlines():
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut short by a kill
            continue
    return entries


def save_state(accelerator, output_dir: Path, step: int) -> None:
    path = Path(output_dir) / CHECKPOINTS / f"step-{step}"
    accelerator.save_state(str(path), safe_serialization=True)
    (path / "done").write_text(str(step))
    for old in (Path(output_dir) / CHECKPOINTS).glob("step-*"):
        if old != path:
            shutil.rmtree(old, ignore_errors=True)


def discard_checkpoints(output_dir: Path) -> None:
    shutil.rmtree(Path(output_dir) / CHECKPOINTS, ignore_errors=True)


def train_loop(
    accelerator,
    step_fn: Callable[[int], dict[str, float]],
    params: GenTrainParams,
    output_dir: Path,
) -> LoopOutcome:
    """Run `step_fn` for every step not yet trained (see the module docstring)."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    log_file = output_dir / LOG
    resume = latest_checkpoint(output_dir)
    start, log = 0, []
    if resume is not None:
        accelerator.load_state(str(resume))
        start = int(resume.name.split("-")[1])
        log = [e for e in read_log(log_file) if e["step"] <= start]
        log_file.write_text("".join(json.dumps(e) + "\n" for e in log))
    else:
        log_file.unlink(missing_ok=True)  # an earlier, finished or abandoned run's
    began = time.perf_counter()
    window: dict[str, list[float]] = {}
    for step in range(start, params.max_steps):
        for key, value in step_fn(step).items():
            window.setdefault(key, []).append(float(value))
        done = step + 1
        if done % params.logging_steps == 0 or done == params.max_steps:
            entry = {"step": done, **{k: float(np.mean(v)) for k, v in window.items()}}
            log.append(entry)
            with log_file.open("a") as f:
                f.write(json.dumps(entry) + "\n")
            window = {}
        if done % params.save_steps == 0 and done < params.max_steps:
            save_state(accelerator, output_dir, done)
    return LoopOutcome(
        global_step=params.max_steps,
        resumed_from=str(resume) if resume else None,
        seconds=time.perf_counter() - began,
        log=log,
    )
