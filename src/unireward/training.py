"""Shared SFT plumbing: TRL's SFTTrainer on (prompt, completion, images) rows, resumable.

Every SFT-style stage (`pretrain_base`, `unified_sft`, later `cold_start` and `rs_sft`) builds
its examples and calls `train_sft`. TRL does the training; this module only fixes the settings
all stages share:

- prompt-completion conversational rows with `completion_only_loss=True`: loss on the answer only;
- `skip_prepare_dataset`: the vision collator tokenises and processes images per batch;
- checkpoints every `save_steps` under `output_dir/checkpoints`, and a restarted run resumes from
  the newest one (the Trainer restores weights, optimizer, scheduler, RNG and the step; an
  `ExampleStream` of rows starts at the checkpoint's row rather than replaying the batches);
- no telemetry, no hub access, CPU unless a CUDA device is present and asked for.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unireward.progress import enabled as progress_enabled

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

CHECKPOINTS = "checkpoints"


@dataclass(frozen=True)
class TrainParams:
    """Optimisation settings shared by the SFT stages (a nested section in params.yaml)."""

    max_steps: int = 300
    batch_size: int = 16
    learning_rate: float = 1e-3
    lr_scheduler: str = "cosine"
    warmup_ratio: float = 0.05
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    save_steps: int = 100
    save_total_limit: int = 2
    logging_steps: int = 10
    seed: int = 0
    # One intra-op thread: for models this small every op is tiny, and two OpenMP threads wait on
    # each other at every op barrier. Measured on 2 cores with other work running: a judge SFT
    # step (batch 16) took 1.5-11 s with 2 threads and 0.25 s with 1.
    threads: int = 1
    device: str = "cpu"
    dataloader_workers: int = 0
    # A DeepSpeed JSON (configs/deepspeed/zero2.json, zero3.json); "" = none. Launch with
    # torchrun / accelerate for more than one process (on CPU the processes talk over gloo).
    deepspeed: str = ""

    def __post_init__(self) -> None:
        if self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {self.max_steps}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if not (0 < self.learning_rate < 1):
            raise ValueError(f"learning_rate must be in (0, 1), got {self.learning_rate}")
        if not (0 <= self.warmup_ratio < 1):
            raise ValueError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.device not in ("cpu", "cuda"):
            raise ValueError(f"device must be 'cpu' or 'cuda', got {self.device!r}")
        if self.save_steps < 1:
            raise ValueError(f"save_steps must be >= 1, got {self.save_steps}")


@dataclass
class TrainOutcome:
    global_step: int
    resumed_from: str | None
    log_history: list[dict[str, Any]] = field(default_factory=list)
    train_seconds: float = 0.0
    # Under DeepSpeed: the full weights gathered from every process (None elsewhere), to save
    # instead of the model's own (ZeRO-3 leaves each process a shard), and whether this
    # process is the one that writes.
    state_dict: dict[str, Any] | None = None
    is_main_process: bool = True
    world_size: int = 1
    zero_stage: int | None = None  # DeepSpeed ZeRO stage, None without DeepSpeed


def distributed_info(trainer) -> dict[str, Any]:
    """How a Trainer ran: processes, and the ZeRO stage when under DeepSpeed."""
    plugin = trainer.accelerator.state.deepspeed_plugin
    return {
        "world_size": trainer.accelerator.num_processes,
        "zero_stage": plugin.zero_stage if plugin is not None else None,
    }


def latest_checkpoint(output_dir: Path) -> Path | None:
    """Newest `checkpoint-N` directory under `output_dir/checkpoints`, if any."""
    root = output_dir / CHECKPOINTS
    if not root.is_dir():
        return None
    ckpts = [p for p in root.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()]
    # A checkpoint dir without trainer_state.json was cut short mid-save: skip it.
    ckpts = [p for p in ckpts if (p / "trainer_state.json").exists()]
    return max(ckpts, key=lambda p: int(p.name.split("-")[-1]), default=None)


def discard_checkpoints(output_dir: Path) -> None:
    """Remove `output_dir/checkpoints` once the final model is saved: they exist to resume a
    killed run, and would otherwise ride along in every model artifact."""
    import shutil

    shutil.rmtree(output_dir / CHECKPOINTS, ignore_errors=True)


@dataclass(frozen=True)
class ExampleStream:
    """An endless stream of `make(i)` rows, split into `shards` interleaved streams (shard s
    yields rows s, s + shards, ...) so DataLoader workers each render their own.

    Rows are a pure function of their index, so a resumed run can start each shard where the
    checkpoint left it (`dataset(start)`) instead of rendering and collating every batch it
    already trained on; with one worker the order is 0, 1, 2, ...
    """

    make: Callable[[int], dict[str, Any]]
    shards: int = 1

    def dataset(self, start: int = 0):
        """The stream as a datasets.IterableDataset, each shard from its `start`-th row on."""
        from datasets import IterableDataset

        make, shards = self.make, self.shards

        def gen(shard_ids: list[int], start: int) -> Iterator[dict[str, Any]]:
            k = start
            while True:
                for s in shard_ids:
                    yield make(s + shards * k)
                k += 1

        return IterableDataset.from_generator(
            gen, gen_kwargs={"shard_ids": list(range(shards)), "start": start}
        )

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.dataset())


def example_stream(make: Callable[[int], dict[str, Any]], shards: int = 1) -> ExampleStream:
    """`make(i)` rows as an `ExampleStream`, which `train_sft` resumes without replaying."""
    return ExampleStream(make, shards)


def resume_offset(stream: ExampleStream, params: TrainParams, global_step: int) -> int | None:
    """Rows each shard of `stream` had yielded after `global_step` batches, or None where that
    is not exact and the Trainer must replay the batches instead.

    Exact for one process whose DataLoader workers each own one shard (or no workers and one
    shard): then batch b is worker b % shards's (b // shards)-th batch of `batch_size` rows, and
    a fresh DataLoader starts again at worker 0, so the step must be a multiple of the shards.
    """
    workers = params.dataloader_workers
    one_process = int(os.environ.get("WORLD_SIZE", "1")) == 1 and not params.deepspeed
    layout = workers == stream.shards or (stream.shards == 1 and workers <= 1)
    if not (one_process and layout and global_step % stream.shards == 0):
        return None
    return global_step // stream.shards * params.batch_size


def restore_weights(model, checkpoint: Path) -> None:
    """Load every weight of `checkpoint` into `model`, strictly.

    Trainer's own resume loads the checkpoint's safetensors as a raw state dict, but transformers
    5 saves Qwen-VL's vision tower under its original key names (`visual.*`, not
    `model.visual.*`), so the Trainer silently leaves the vision tower as it was (measured:
    every vision weight missing, the resumed run training a reset tower). Loading through
    `from_pretrained` applies the key mapping; the Trainer's later partial load then only
    rewrites the language-model weights with the same values.
    """
    saved = type(model).from_pretrained(
        checkpoint, trust_remote_code=False, use_safetensors=True, dtype="float32"
    )
    model.load_state_dict(saved.state_dict(), strict=True)


def init_deepspeed_on_cpu(deepspeed: str, device: str) -> None:
    """DeepSpeed on CPU: start its communication layer over gloo before the Trainer does.

    With `use_cpu` accelerate sets up a gloo process group (MULTI_CPU) but skips DeepSpeed's own
    init, so `deepspeed.initialize` later sees a world of 1 while the Trainer sized the batch for
    the launcher's world (measured: "train_batch_size 4 != 2 * 1 * 1"). Initialising
    deepspeed.comm first makes both agree. A no-op without DeepSpeed or on CUDA.
    """
    import os

    if not deepspeed or device != "cpu" or int(os.environ.get("WORLD_SIZE", "1")) < 2:
        return
    import deepspeed as ds

    ds.init_distributed(dist_backend="gloo", auto_mpi_discovery=False)


def trainer_arguments(params: TrainParams, output_dir: Path) -> dict[str, Any]:
    """The transformers TrainingArguments every trainer here shares (TRL SFT, DPO, GRPO): steps
    and schedule, checkpoints under `output_dir/checkpoints` (what resuming reads), seeds, CPU
    or DeepSpeed (over gloo on CPU). Each stage adds its own (`SFTConfig(**these, ...)`)."""
    use_cpu = params.device == "cpu"
    return {
        "output_dir": str(output_dir / CHECKPOINTS),
        "max_steps": params.max_steps,
        "per_device_train_batch_size": params.batch_size,
        "learning_rate": params.learning_rate,
        "lr_scheduler_type": params.lr_scheduler,
        "warmup_steps": math.ceil(params.warmup_ratio * params.max_steps),
        "weight_decay": params.weight_decay,
        "max_grad_norm": params.max_grad_norm,
        "logging_steps": params.logging_steps,
        "save_strategy": "steps",
        "save_steps": params.save_steps,
        "save_total_limit": params.save_total_limit,
        "seed": params.seed,
        "data_seed": params.seed,
        "use_cpu": use_cpu,
        "bf16": False,
        "report_to": "none",
        "remove_unused_columns": False,
        "dataloader_num_workers": params.dataloader_workers,
        "disable_tqdm": not progress_enabled(),  # the Trainer's own bar, on a terminal only
        "save_only_model": False,  # keep optimizer + scheduler + RNG: a resume continues exactly
        "deepspeed": params.deepspeed or None,
        "ddp_backend": "gloo" if use_cpu and params.deepspeed else None,
    }


def train_sft(
    model,
    processor,
    train_dataset,
    params: TrainParams,
    output_dir: Path,
    callbacks: list | None = None,
) -> TrainOutcome:
    """Train `model` in place with TRL SFT; resume from the newest checkpoint in `output_dir`."""
    import time

    import torch
    from trl import SFTConfig, SFTTrainer

    torch.set_num_threads(params.threads)
    init_deepspeed_on_cpu(params.deepspeed, params.device)
    use_cpu = params.device == "cpu"
    if not use_cpu and not torch.cuda.is_available():
        raise RuntimeError("device='cuda' but no CUDA device is visible; set device: cpu")
    resume = latest_checkpoint(output_dir)
    state = json.loads((resume / "trainer_state.json").read_text()) if resume else None
    # The Trainer resumes an iterable dataset by drawing, collating and discarding every batch
    # it already trained on: resuming the full profile's judge at step 27,500 had not trained a
    # step after 10 minutes. An ExampleStream starts at the checkpoint's row instead.
    offset = None
    if isinstance(train_dataset, ExampleStream):
        offset = resume_offset(train_dataset, params, state["global_step"]) if state else 0
        train_dataset = train_dataset.dataset(offset or 0)
    args = SFTConfig(
        **trainer_arguments(params, output_dir),
        completion_only_loss=True,
        dataset_kwargs={"skip_prepare_dataset": True},
        max_length=None,
        ignore_data_skip=offset is not None and offset > 0,
    )
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=train_dataset,
        processing_class=processor,
        callbacks=callbacks,
    )
    if resume is not None:
        if not params.deepspeed:  # DeepSpeed restores its own (partitioned) weights
            restore_weights(model, resume)
        if state["global_step"] >= params.max_steps and not params.deepspeed:
            # Nothing left to train. (Trainer.train would still run one more step.)
            return TrainOutcome(
                global_step=state["global_step"],
                resumed_from=str(resume),
                log_history=state["log_history"],
            )
    start = time.perf_counter()
    trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    return TrainOutcome(
        global_step=trainer.state.global_step,
        resumed_from=str(resume) if resume else None,
        log_history=list(trainer.state.log_history),
        train_seconds=time.perf_counter() - start,
        # A collective: every process must ask (ZeRO-3 gathers the shards to the main one).
        state_dict=trainer.accelerator.get_state_dict(trainer.model_wrapped)
        if params.deepspeed
        else None,
        is_main_process=trainer.accelerator.is_main_process,
        **distributed_info(trainer),
    )
