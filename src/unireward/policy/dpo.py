"""Stage 12, `dpo`: TRL `DPOTrainer` on the policy with `build_pairs`' preference rows.

    unireward dpo --policy models/policy-tiny --pairs runs/build_pairs --output-dir runs/dpo

The rows are TRL's conversational preference format with images (`prompt`, `images`, `chosen`,
`rejected`); TRL's `DataCollatorForVisionPreference` tokenises and processes the images per
batch. The reference model is the policy as loaded from disk (a separate copy, frozen), so a
resumed run compares against the same reference as an uninterrupted one.

Resumable like the SFT stages: checkpoints every `save_steps` under `output_dir/checkpoints`; a
restarted run reloads the newest checkpoint's weights strictly (`training.restore_weights`: the
Trainer's own resume misses Qwen-VL's `visual.*` keys under transformers 5) and continues.

No pairs (e.g. a judge whose verdicts never survive the swap): the stage fails with that reason
unless `allow_empty: true`, which writes the policy unchanged and says so in `dpo.json`
(`trained: false`) -- the pipeline then reports "no change" instead of stopping.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unireward.config import to_dict
from unireward.training import (
    TrainParams,
    discard_checkpoints,
    disk_full_is_clear,
    finish_model,
    is_peft,
    latest_checkpoint,
    load_for_training,
    prepare_model,
    restore_adapter,
    restore_weights,
    trainer_arguments,
)


def _default_train() -> TrainParams:
    return TrainParams(
        max_steps=60,
        batch_size=8,
        learning_rate=5e-5,
        warmup_ratio=0.1,
        save_steps=30,
        logging_steps=10,
        lr_scheduler="constant_with_warmup",
    )


@dataclass(frozen=True)
class DpoConfig:
    # Published (UnifiedReward policy DPO): beta 0.1, lr 5e-7 for 7B models. The tiny policy
    # (2 M params, ~100 pairs, a minute of CPU) needs a far larger lr to move at all.
    beta: float = 0.1
    loss_type: str = "sigmoid"
    allow_empty: bool = False
    train: TrainParams = field(default_factory=_default_train)
    tracking_uri: str | None = None  # None = local sqlite store; "null" = no tracking
    experiment: str = "unireward"

    def __post_init__(self) -> None:
        if not self.beta > 0:
            raise ValueError(f"dpo.beta must be > 0 (published 0.1), got {self.beta}")
        if self.loss_type not in ("sigmoid", "ipo", "hinge", "robust"):
            raise ValueError(
                f"dpo.loss_type {self.loss_type!r}: use sigmoid (DPO), ipo, hinge or robust"
            )


@dataclass
class DpoResult:
    model_dir: Path
    trained: bool
    pairs: int
    global_step: int
    resumed_from: str | None
    final_loss: float | None
    seconds: float


def dpo_args(config: DpoConfig, output_dir: Path):
    from trl import DPOConfig

    return DPOConfig(
        **trainer_arguments(config.train, output_dir),
        beta=config.beta,
        loss_type=[config.loss_type],
        max_length=None,  # never truncate the image tokens away
    )


def _log_loss(history: list[dict[str, Any]]) -> float | None:
    losses = [h["loss"] for h in history if "loss" in h]
    return float(losses[-1]) if losses else None


def train_dpo(config: DpoConfig, policy_dir: Path, pairs, output_dir: Path, callbacks=None):
    """Train the policy with TRL DPO on `pairs` (a datasets.Dataset); resume if checkpointed."""
    import torch
    from trl import DPOTrainer

    torch.set_num_threads(config.train.threads)
    model, processor = load_for_training(policy_dir, config.train)
    trained = prepare_model(model, config.train.scale)
    # With LoRA the reference is the same model with its adapter off (TRL's peft path).
    ref_model = None if is_peft(trained) else load_for_training(policy_dir, config.train)[0]
    trainer = DPOTrainer(
        model=trained,
        ref_model=ref_model,
        args=dpo_args(config, output_dir),
        train_dataset=pairs,
        processing_class=processor,
        callbacks=callbacks,
    )
    resume = latest_checkpoint(output_dir)
    if resume is not None:
        if is_peft(trained):
            restore_adapter(trained, resume)
        else:
            restore_weights(model, resume)
        state = json.loads((resume / "trainer_state.json").read_text())
        if state["global_step"] >= config.train.max_steps:
            history = state["log_history"]
            return finish_model(trained), processor, state["global_step"], str(resume), history
    with disk_full_is_clear(output_dir):
        trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    return (
        finish_model(trained),
        processor,
        trainer.state.global_step,
        str(resume) if resume else None,
        list(trainer.state.log_history),
    )


def run(
    config: DpoConfig,
    policy_dir: Path,
    pairs_dir: Path,
    output_dir: Path,
    tags: dict[str, Any] | None = None,
    callbacks: list | None = None,
) -> DpoResult:
    from unireward.model.tiny import save_checkpoint
    from unireward.plots import log_training_curves
    from unireward.policy.build_pairs import load_pairs
    from unireward.tracking import make_tracker

    start = time.perf_counter()
    policy_dir, output_dir = Path(policy_dir), Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    pairs = load_pairs(Path(pairs_dir) / "pairs.parquet")
    record: dict[str, Any] = {
        "stage": "dpo",
        "config": to_dict(config),
        "policy": str(policy_dir),
        "pairs_dir": str(pairs_dir),
        "pairs": len(pairs),
    }
    if len(pairs) == 0:
        if not config.allow_empty:
            raise ValueError(
                f"{pairs_dir}/pairs.parquet has no preference pairs (see its stats.json: ties, "
                "chosen <= rejected); set dpo.allow_empty: true to pass the policy on unchanged"
            )
        for item in policy_dir.iterdir():  # the policy, unchanged, as this stage's model
            if item.is_file():
                shutil.copy2(item, output_dir / item.name)
        result = DpoResult(output_dir, False, 0, 0, None, None, time.perf_counter() - start)
        record.update(trained=False, reason="no preference pairs")
    else:
        model, processor, step, resumed, history = train_dpo(
            config, policy_dir, pairs, output_dir, callbacks
        )
        model.to("cpu")
        result = DpoResult(
            output_dir,
            True,
            len(pairs),
            step,
            resumed,
            _log_loss(history),
            time.perf_counter() - start,
        )
        record.update(trained=True, global_step=step, resumed_from=resumed, log_history=history)
        save_checkpoint(
            model,
            processor,
            output_dir,
            extra={k: v for k, v in record.items() if k != "log_history"},
        )
        discard_checkpoints(output_dir)
    (output_dir / "dpo.json").write_text(json.dumps(record, indent=2, default=str) + "\n")
    tracker = make_tracker(config.tracking_uri, config.experiment)
    with tracker.start_run("dpo", tags={"stage": "dpo", **(tags or {})}):
        tracker.log_params({"dpo": to_dict(config), "policy": str(policy_dir)})
        metrics = {
            "pairs": float(len(pairs)),
            "trained": float(result.trained),
            "global_step": float(result.global_step),
        }
        if result.final_loss is not None:
            metrics["final_loss"] = result.final_loss
        tracker.log_metrics(metrics)
        for h in record.get("log_history", []):
            tracker.log_metrics(
                {
                    f"train/{k}": float(v)
                    for k, v in h.items()
                    if isinstance(v, int | float) and k != "step"
                },
                step=h.get("step"),
            )
        log_training_curves(tracker, record.get("log_history", []), "dpo")
    return result
