"""Stage 6, `rs_sft`: TRL SFT of the judge on its own correct CoT judgements from
`rejection_sample` (UnifiedReward-Think, stage 2, second half).

    unireward rs_sft --judge runs/cold_start --samples runs/rejection_sample \
        --dataset runs/validate --output-dir runs/rs_sft

The data path is cold_start's: `samples/correct/records.parquet` (canonical records with `cot`,
media relative to `dataset`) through `unified_sft.record_stream(cot=True)` into
`training.train_sft` (answer-only loss on the CoT target). Checkpoints every
`train.save_steps`; a restarted run continues from the newest one.

No correct sample at all (a judge that never writes a well-formed, right CoT, e.g. the quick
profile's 60-step cold start) leaves nothing to learn from: the stage then writes the input
judge unchanged with `skipped` set in unireward.json and the MLflow run, rather than failing
the DAG or training on nothing.
Prompts: `prompt_templates` ("" = the input judge's own prompts.yaml, else the default) words
the CoT prompts; the file is saved next to the output judge and logged with the run.
Tests: tests/test_rs_sft.py.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from unireward.config import to_dict
from unireward.data.schema import read_records
from unireward.prompt_templates import describe, log_templates, resolve_templates, save_templates
from unireward.training import (
    TrainOutcome,
    TrainParams,
    discard_checkpoints,
    load_for_training,
    train_sft,
)

CORRECT = "correct"  # rejection_sample's correct set, under its output directory


def _default_train() -> TrainParams:
    return TrainParams(max_steps=300, batch_size=16, learning_rate=1e-3, warmup_ratio=0.03)


@dataclass(frozen=True)
class RsSftConfig:
    train: TrainParams = field(default_factory=_default_train)
    # A prompt template file; "" = the input judge's own prompts.yaml, else the default.
    prompt_templates: str = ""
    tracking_uri: str | None = None  # None = local sqlite store; "null" = no tracking
    experiment: str = "unireward"


@dataclass
class RsSftResult:
    model_dir: Path
    examples: int
    skipped: str | None
    train: TrainOutcome


def run(
    config: RsSftConfig,
    judge_dir: Path,
    samples_dir: Path,
    dataset_dir: Path,
    output_dir: Path,
    callbacks: list | None = None,
) -> RsSftResult:
    from unireward.judge.unified_sft import record_stream
    from unireward.model.tiny import save_checkpoint
    from unireward.plots import log_training_curves
    from unireward.tracking import make_tracker

    output_dir = Path(output_dir)
    path = Path(samples_dir) / CORRECT
    if not (path / "records.parquet").exists():
        raise FileNotFoundError(
            f"{path}/records.parquet not found: is {samples_dir} the output "
            "of `unireward rejection_sample`?"
        )
    templates = resolve_templates(config.prompt_templates, Path(judge_dir))
    rows = read_records(path)
    missing = [r.id for r in rows if not r.cot]
    if missing:
        raise ValueError(f"{len(missing)} correct-set rows have no CoT, e.g. {missing[:3]}")
    model, processor = load_for_training(Path(judge_dir), config.train)
    skipped = None if rows else "no correct samples in the rejection-sampling set"
    if skipped:
        outcome = TrainOutcome(global_step=0, resumed_from=None)
    else:
        stream = record_stream(
            rows, Path(dataset_dir), config.train.seed, cot=True, templates=templates
        )
        outcome = train_sft(model, processor, stream, config.train, output_dir, callbacks)
        if not outcome.is_main_process:  # DeepSpeed: the main process writes the outputs
            return RsSftResult(output_dir, len(rows), None, outcome)
    model.to("cpu")
    info = {
        "stage": "rs_sft",
        "judge": str(judge_dir),
        "samples": str(samples_dir),
        "config": to_dict(config),
        "examples": len(rows),
        "skipped": skipped,
        "global_step": outcome.global_step,
        "resumed_from": outcome.resumed_from,
        "train_seconds": round(outcome.train_seconds, 1),
        "world_size": outcome.world_size,
        "zero_stage": outcome.zero_stage,
        "prompt_templates": describe(templates),
    }
    save_checkpoint(model, processor, output_dir, extra=info, state_dict=outcome.state_dict)
    save_templates(templates, output_dir)
    (output_dir / "train_log.json").write_text(json.dumps(outcome.log_history, indent=1))
    discard_checkpoints(output_dir)
    tracker = make_tracker(config.tracking_uri, config.experiment)
    with tracker.start_run("rs_sft", tags={"stage": "rs_sft", "skipped": str(bool(skipped))}):
        tracker.log_params({"rs_sft": to_dict(config)})
        log_templates(tracker, templates)
        tracker.log_metrics(
            {
                "examples": float(len(rows)),
                "global_step": float(outcome.global_step),
                "train_seconds": outcome.train_seconds,
            }
        )
        for entry in outcome.log_history:
            if "loss" in entry and "step" in entry:
                tracker.log_metrics({"train_loss": float(entry["loss"])}, step=int(entry["step"]))
        tracker.log_artifact(output_dir / "train_log.json")
        log_training_curves(tracker, outcome.log_history, "rs_sft")
    return RsSftResult(model_dir=output_dir, examples=len(rows), skipped=skipped, train=outcome)
