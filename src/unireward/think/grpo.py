"""Stage 7, `grpo`: TRL GRPO on the items the judge got wrong in rejection sampling, rewarded by
format + accuracy (UnifiedReward-Think, stage 3).

    unireward grpo --judge runs/rs_sft --samples runs/rejection_sample \
        --dataset runs/validate --output-dir runs/grpo
    accelerate launch --num_processes 2 --config_file configs/accelerate/cpu_2proc.yaml \
        -m unireward.cli grpo ... # with grpo.deepspeed: configs/deepspeed/zero3.json

TRL's `GRPOTrainer` does the RL. This module owns the data and the configuration:
- the prompt is the judge's CoT prompt (`judge.examples.prompt_messages(cot=True)`, images as
  `{"type": "image"}` placeholders in contract order plus an `images` column), and `solution`
  is the record's exact contract answer;
- rewards are the plain functions of `unireward.rewards`, picked from the literal `REWARDS`
  dict: `format_reward` (<think>..</think><answer>..</answer>) and `accuracy_reward`
  (`is_correct`, the same predicate evaluation uses); reward = format + accuracy;
- `num_generations` (group size), `beta` (KL), `learning_rate`, `temperature` and
  `max_completion_length` come from params.yaml; `prompts_per_step` prompts per device and step,
  so a step trains on prompts_per_step x num_generations completions per process;
- checkpoints every `save_steps` under `output_dir/checkpoints`; a restarted run resumes from the
  newest (weights restored through `from_pretrained`, see `training.restore_weights`);
- `deepspeed`: a DeepSpeed JSON (configs/deepspeed/zero2.json, zero3.json) handed to the
  Trainer; launch with accelerate or torchrun for more than one process.

Where it departs from the paper: the embedded default trains a 2M-parameter judge on CPU, so
the quick profile's group size, steps and completion length are tiny (published values are the
comments in params.yaml); `loss_type` defaults to "grpo" (the published sequence-mean loss)
rather than TRL's "dapo" default.

Prompts: `prompt_templates` ("" = the input judge's own prompts.yaml, else the default) words
the CoT prompts; the file is saved next to the output judge as prompts.yaml.

Outputs: the checkpoint (safetensors + unireward.json + prompts.yaml), `train_log.json` (TRL's
log history:
`reward`, `rewards/<name>/mean`, `kl`, ...), `reward_curve.png`. Tests: tests/test_grpo.py.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unireward.config import to_dict
from unireward.data.schema import Record, read_records
from unireward.data.teacher import evidence
from unireward.judge.unified_sft import expand
from unireward.prompt_templates import (
    PromptTemplates,
    describe,
    log_templates,
    resolve_templates,
    save_templates,
)
from unireward.rewards import CHECKS, accuracy_reward, format_reward
from unireward.training import (
    ScaleParams,
    TrainParams,
    discard_checkpoints,
    disk_full_is_clear,
    distributed_info,
    finish_model,
    is_peft,
    latest_checkpoint,
    load_for_training,
    prepare_model,
    restore_adapter,
    restore_weights,
    trainer_arguments,
)

HARD = "hard"  # rejection_sample's hard set, under its output directory
# The rewards GRPO optimises, summed with equal weight (DESIGN.md "GRPO rewards").
REWARDS = {"format": format_reward, "accuracy": accuracy_reward}


@dataclass(frozen=True)
class GrpoConfig:
    num_generations: int = 8  # group size; published: 8
    beta: float = 0.04  # KL coefficient; published: 0.04
    learning_rate: float = 1e-6  # published: 1e-6
    temperature: float = 1.0  # published: 1.0
    max_completion_length: int = 160  # the teacher's CoT judgements are 90-125 tokens
    prompts_per_step: int = 1  # per process and optimiser step
    max_steps: int = 100
    lr_scheduler: str = "constant"
    warmup_ratio: float = 0.0
    max_grad_norm: float = 1.0
    loss_type: str = "grpo"  # TRL: grpo | dapo | dr_grpo | bnpo | ...
    # Each hard pair also in the other order (label swapped), so the update cannot reward a
    # positional answer (unified_sft.expand; not in the published recipe).
    swap_augment: bool = False
    # The accuracy reward's check (rewards.CHECKS; as rejection_sample.check): "verdict" pays
    # a right answer (published); "observation" / "scores" pay it only with reasoning that
    # backs it (the dataset then carries `check` and `observations` columns).
    check: str = "verdict"
    save_steps: int = 50
    save_total_limit: int = 2
    logging_steps: int = 1
    seed: int = 0
    threads: int = 1  # see TrainParams.threads
    device: str = "cpu"
    deepspeed: str = ""  # path to a DeepSpeed JSON config; "" = plain DDP / single process
    scale: ScaleParams = field(default_factory=ScaleParams)  # as every stage's train.scale
    # A prompt template file; "" = the input judge's own prompts.yaml, else the default.
    prompt_templates: str = ""
    tracking_uri: str | None = None  # None = local sqlite store; "null" = no tracking
    experiment: str = "unireward"

    def __post_init__(self) -> None:
        if self.num_generations < 2:
            raise ValueError(
                f"num_generations must be >= 2 (GRPO's advantage is relative to the group), "
                f"got {self.num_generations}"
            )
        for name in ("max_completion_length", "prompts_per_step", "max_steps", "save_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"grpo.{name} must be >= 1, got {getattr(self, name)}")
        if self.beta < 0 or self.temperature <= 0 or not 0 < self.learning_rate < 1:
            raise ValueError("grpo needs beta >= 0, temperature > 0, learning_rate in (0, 1)")
        if self.check not in CHECKS:
            raise ValueError(f"grpo.check must be one of {CHECKS}, got {self.check!r}")
        if self.device not in ("cpu", "cuda"):
            raise ValueError(f"device must be 'cpu' or 'cuda', got {self.device!r}")


@dataclass
class GrpoResult:
    model_dir: Path
    prompts: int
    skipped: str | None
    global_step: int
    resumed_from: str | None
    reward_first: float  # mean reward of the first logged step (nan when skipped)
    reward_last: float
    log_history: list[dict[str, Any]]


# --------------------------------------------------------------------------- data


def grpo_rows(
    records: list[Record],
    root: Path,
    swap_augment: bool = False,
    check: str = "verdict",
    templates: PromptTemplates | None = None,
) -> list[dict[str, Any]]:
    """One row per hard item: `prompt` (CoT prompt in `templates`' words, image placeholders),
    `images`, `solution`; with `swap_augment` each item is followed by its twin in the other
    order; with a `check` other than "verdict" also `check` and `observations` (the accuracy
    reward's columns)."""
    from unireward.judge.examples import prompt_messages, record_images

    rows = []
    for r in expand(records, swap_augment):
        row = {
            "prompt": prompt_messages(r, cot=True, templates=templates),
            "images": record_images(r, root),
            "solution": r.label,
        }
        if check != "verdict":
            row.update(check=check, observations=list(evidence(r, check)))
        rows.append(row)
    return rows


def grpo_dataset(
    records: list[Record],
    root: Path,
    swap_augment: bool = False,
    check: str = "verdict",
    templates: PromptTemplates | None = None,
):
    """A map-style `datasets.Dataset` of `grpo_rows` (GRPO's sampler repeats each prompt)."""
    from datasets import Dataset

    return Dataset.from_list(grpo_rows(records, root, swap_augment, check, templates))


def load_hard_set(samples_dir: Path) -> list[Record]:
    path = Path(samples_dir) / HARD
    if not (path / "records.parquet").exists():
        raise FileNotFoundError(
            f"{path}/records.parquet not found: is {samples_dir} the output of "
            "`unireward rejection_sample`?"
        )
    return read_records(path)


# --------------------------------------------------------------------------- training


def grpo_args(config: GrpoConfig, output_dir: Path):
    from trl import GRPOConfig

    shared = TrainParams(
        max_steps=config.max_steps,
        batch_size=config.prompts_per_step * config.num_generations,
        learning_rate=config.learning_rate,
        lr_scheduler=config.lr_scheduler,
        warmup_ratio=config.warmup_ratio,
        max_grad_norm=config.max_grad_norm,
        save_steps=config.save_steps,
        save_total_limit=config.save_total_limit,
        logging_steps=config.logging_steps,
        seed=config.seed,
        threads=config.threads,
        device=config.device,
        deepspeed=config.deepspeed,
        scale=config.scale,
    )
    return GRPOConfig(
        **trainer_arguments(shared, output_dir),
        num_generations=config.num_generations,
        beta=config.beta,
        temperature=config.temperature,
        max_completion_length=config.max_completion_length,
        loss_type=config.loss_type,
    )


def train_grpo(model, processor, dataset, config: GrpoConfig, output_dir: Path, callbacks=None):
    """Train `model` in place, resuming from the newest checkpoint in `output_dir`.

    -> (global_step, log_history, the checkpoint resumed from or None, the trainer).
    """
    import torch
    from trl import GRPOTrainer

    from unireward.training import init_deepspeed_on_cpu

    torch.set_num_threads(config.threads)
    init_deepspeed_on_cpu(config.deepspeed, config.device)
    if config.device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device='cuda' but no CUDA device is visible; set device: cpu")
    trained = prepare_model(model, config.scale)
    trainer = GRPOTrainer(
        model=trained,
        reward_funcs=list(REWARDS.values()),
        args=grpo_args(config, output_dir),
        train_dataset=dataset,
        processing_class=processor,
        callbacks=callbacks,
    )
    resume = latest_checkpoint(output_dir)
    if resume is not None:
        state = json.loads((resume / "trainer_state.json").read_text())
        done = state["global_step"] >= config.max_steps
        if is_peft(trained):  # the Trainer loads the adapter itself when it resumes
            if done:
                restore_adapter(trained, resume)
        elif done or not config.deepspeed:  # DeepSpeed restores its own (partitioned) weights
            restore_weights(model, resume)
        if done:
            finish_model(trained)
            return state["global_step"], state["log_history"], str(resume), trainer
    with disk_full_is_clear(output_dir):
        trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    finish_model(trained)
    state = trainer.state
    return state.global_step, list(state.log_history), str(resume) if resume else None, trainer


def reward_curve(log_history: list[dict[str, Any]]) -> list[tuple[int, float]]:
    """(step, mean reward) of every logged GRPO step."""
    return [(int(h["step"]), float(h["reward"])) for h in log_history if "reward" in h]


def plot_curve(log_history: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3))
    for key, label in (
        ("reward", "reward"),
        *((f"rewards/{n}/mean", n) for n in ("format_reward", "accuracy_reward")),
    ):
        points = [(h["step"], h[key]) for h in log_history if key in h]
        if points:
            ax.plot(*zip(*points, strict=True), label=label)
    ax.set_xlabel("step")
    ax.set_ylabel("mean reward")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# --------------------------------------------------------------------------- the stage


def run(
    config: GrpoConfig,
    judge_dir: Path,
    samples_dir: Path,
    dataset_dir: Path,
    output_dir: Path,
    callbacks: list | None = None,
) -> GrpoResult:
    from unireward.model.tiny import save_checkpoint

    output_dir = Path(output_dir)
    hard = load_hard_set(samples_dir)
    templates = resolve_templates(config.prompt_templates, Path(judge_dir))
    model, processor = load_for_training(Path(judge_dir), TrainParams(scale=config.scale))
    skipped = None if hard else "no hard items in the rejection-sampling set"
    step, history, resumed, trainer, seconds = 0, [], None, None, 0.0
    if not skipped:
        start = time.perf_counter()
        dataset = grpo_dataset(
            hard, Path(dataset_dir), config.swap_augment, config.check, templates
        )
        step, history, resumed, trainer = train_grpo(
            model, processor, dataset, config, output_dir, callbacks
        )
        seconds = time.perf_counter() - start
    curve = reward_curve(history)
    info = {
        "stage": "grpo",
        "judge": str(judge_dir),
        "samples": str(samples_dir),
        "config": to_dict(config),
        "prompts": len(hard),
        "skipped": skipped,
        "global_step": step,
        "resumed_from": resumed,
        "train_seconds": round(seconds, 1),
        "reward_curve": curve,
        "prompt_templates": describe(templates),
        **(distributed_info(trainer) if trainer is not None else {}),
    }
    state_dict, main = None, True
    if trainer is not None and config.deepspeed and not config.scale.lora.r:
        # A collective: every process asks, ZeRO-3 gathers the shards to the main process.
        state_dict = trainer.accelerator.get_state_dict(trainer.model_wrapped)
        main = trainer.accelerator.is_main_process
    if main:
        model.to("cpu")
        save_checkpoint(model, processor, output_dir, extra=info, state_dict=state_dict)
        save_templates(templates, output_dir)
        (output_dir / "train_log.json").write_text(json.dumps(history, indent=1))
        if curve:
            plot_curve(history, output_dir / "reward_curve.png")
        discard_checkpoints(output_dir)
        _track(config, history, len(hard), skipped, output_dir, templates)
    nan = float("nan")
    return GrpoResult(
        model_dir=output_dir,
        prompts=len(hard),
        skipped=skipped,
        global_step=step,
        resumed_from=resumed,
        reward_first=curve[0][1] if curve else nan,
        reward_last=curve[-1][1] if curve else nan,
        log_history=history,
    )


def _track(
    config: GrpoConfig,
    history: list,
    prompts: int,
    skipped,
    output_dir: Path,
    templates: PromptTemplates,
) -> None:
    from unireward.plots import log_training_curves
    from unireward.tracking import make_tracker

    tracker = make_tracker(config.tracking_uri, config.experiment)
    with tracker.start_run("grpo", tags={"stage": "grpo", "skipped": str(bool(skipped))}):
        tracker.log_params({"grpo": to_dict(config)})
        log_templates(tracker, templates)
        tracker.log_metrics({"prompts": float(prompts)})
        keys = {
            "reward": "reward",
            "kl": "kl",
            "rewards/format_reward/mean": "format_reward",
            "rewards/accuracy_reward/mean": "accuracy_reward",
            "loss": "train_loss",
        }
        for entry in history:
            if "step" in entry:
                metrics = {v: float(entry[k]) for k, v in keys.items() if k in entry}
                if metrics:
                    tracker.log_metrics(metrics, step=int(entry["step"]))
        tracker.log_artifact(output_dir / "train_log.json")
        if (output_dir / "reward_curve.png").exists():
            tracker.log_artifact(output_dir / "reward_curve.png")
        log_training_curves(tracker, history, "grpo")
