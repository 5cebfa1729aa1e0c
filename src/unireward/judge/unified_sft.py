"""Stage 3, `unified_sft`: UnifiedReward — one judge for 4 tasks x {pairwise, pointwise}.

TRL SFT from the base VLM on the validated dataset's `train` split, answer-only targets (the
exact contract strings, or `Final Score: n`). Pairwise rows are shown in both orders
(`swap_augment`), so the judge cannot learn a positional prior and swap consistency is
trained for, not hoped for.

    unireward unified_sft --base-model models/base-tiny --dataset runs/validate \
        --output-dir runs/unified_sft [--profile full]

Resumable: killed and restarted with the same output dir, training continues from the newest
checkpoint in `output_dir/checkpoints`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from unireward.config import to_dict
from unireward.data.schema import Record, read_records
from unireward.judge.examples import swap_record, to_example
from unireward.tasks import MODES, TASKS, Mode, parse_mode, parse_task
from unireward.training import (
    TrainOutcome,
    TrainParams,
    discard_checkpoints,
    example_stream,
    train_sft,
)


def _default_train() -> TrainParams:
    return TrainParams(max_steps=600, batch_size=16, learning_rate=1e-3, warmup_ratio=0.05)


@dataclass(frozen=True)
class UnifiedSftConfig:
    train: TrainParams = field(default_factory=_default_train)
    tasks: tuple[str, ...] = tuple(t.value for t in TASKS)
    modes: tuple[str, ...] = tuple(m.value for m in MODES)
    split: str = "train"
    swap_augment: bool = True

    def __post_init__(self) -> None:
        for name in self.tasks:
            parse_task(name)  # raises with the valid names
        for name in self.modes:
            parse_mode(name)
        if not self.tasks or not self.modes:
            raise ValueError("unified_sft needs at least one task and one mode")


@dataclass
class SftResult:
    model_dir: Path
    n_records: int
    train: TrainOutcome


def select_records(records: list[Record], config: UnifiedSftConfig) -> list[Record]:
    chosen = [
        r
        for r in records
        if r.split == config.split and r.task in config.tasks and r.mode in config.modes
    ]
    if not chosen:
        raise ValueError(
            f"no records with split={config.split!r}, tasks={list(config.tasks)}, "
            f"modes={list(config.modes)} in the dataset"
        )
    return chosen


def expand(records: list[Record], swap_augment: bool) -> list[Record]:
    """The training rows: each record, plus its swapped twin for labelled pairwise rows."""
    out: list[Record] = []
    for r in records:
        out.append(r)
        if swap_augment and r.mode == Mode.PAIRWISE and r.label is not None:
            out.append(swap_record(r))
    return out


def record_stream(rows: list[Record], root: Path, seed: int, cot: bool = False):
    """Endless shuffled epochs over `rows` as SFT examples; row i is a pure function of i."""
    n = len(rows)

    def make(i: int) -> dict[str, Any]:
        epoch, pos = divmod(i, n)
        order = np.random.default_rng([seed, epoch]).permutation(n)
        return to_example(rows[order[pos]], root, cot=cot)

    return example_stream(make)


def run(
    config: UnifiedSftConfig, base_model_dir: Path, dataset_dir: Path, output_dir: Path
) -> SftResult:
    from unireward.model.tiny import load_checkpoint, save_checkpoint

    output_dir = Path(output_dir)
    records = select_records(read_records(Path(dataset_dir)), config)
    rows = expand(records, config.swap_augment)
    model, processor = load_checkpoint(Path(base_model_dir))
    counts = {
        f"{t}/{m}": sum(1 for r in records if r.task == t and r.mode == m)
        for t in config.tasks
        for m in config.modes
    }
    outcome = train_sft(
        model,
        processor,
        record_stream(rows, Path(dataset_dir), config.train.seed),
        config.train,
        output_dir,
    )
    model.to("cpu")
    save_checkpoint(
        model,
        processor,
        output_dir,
        extra={
            "stage": "unified_sft",
            "base_model": str(base_model_dir),
            "config": to_dict(config),
            "records": counts,
            "global_step": outcome.global_step,
            "resumed_from": outcome.resumed_from,
            "train_seconds": round(outcome.train_seconds, 1),
        },
    )
    (output_dir / "train_log.json").write_text(json.dumps(outcome.log_history, indent=1))
    discard_checkpoints(output_dir)
    return SftResult(model_dir=output_dir, n_records=len(records), train=outcome)
