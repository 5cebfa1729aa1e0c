"""Stage 3, `unified_sft`: UnifiedReward — one judge for 4 tasks x {pairwise, pointwise}.

TRL SFT from the base VLM on the validated dataset's `train` split, answer-only targets (the
exact contract strings, or `Final Score: n`). Pairwise rows are shown in both orders
(`swap_augment`), so the judge cannot learn a positional prior and swap consistency is
trained for, not hoped for.

The caption curriculum (`caption_curriculum`) first shows the judge, in words, what each visual
item shows (`judge.examples.scene_hint`), so it learns the comparison on text it can read, then
anneals the words away so the same comparison has to be made on the image. Measured on image
understanding (experiments/probe_direct_caption.py; README, "The saddle is in the comparison"):
without it the direct judge stayed at 0.60 / 0.56 (seen / unseen) after 2,500 steps, with it
0.72 / 0.64 after 3,000 and 0.89 / 0.77 after 11,000. Mixing task-modes adds their step counts:
the full profile's eight stay at chance after 8,000 steps (README, judge section).

    unireward unified_sft --base-model models/base-tiny --dataset runs/validate \
        --output-dir runs/unified_sft [--profile full]

Prompts: `prompt_templates` (a template file, "" = the base model's own prompts.yaml if it has
one, else the project's default; `unireward.prompt_templates`) words every example; the file is
saved next to the judge as prompts.yaml, so inference asks it in the words it learned.

Resumable: killed and restarted with the same output dir, training continues from the newest
checkpoint in `output_dir/checkpoints`.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from unireward.config import to_dict
from unireward.data.schema import Record, read_records
from unireward.judge.examples import scene_hint, swap_record, to_example
from unireward.prompt_templates import (
    PromptTemplates,
    describe,
    log_templates,
    resolve_templates,
    save_templates,
)
from unireward.tasks import MODES, TASKS, Mode, parse_mode, parse_task
from unireward.training import (
    TrainOutcome,
    TrainParams,
    discard_checkpoints,
    example_stream,
    load_for_training,
    train_sft,
)


def _default_train() -> TrainParams:
    return TrainParams(max_steps=600, batch_size=16, learning_rate=1e-3, warmup_ratio=0.05)


@dataclass(frozen=True)
class CaptionCurriculum:
    """Steps [0, hold_steps): every example carries its scene hint; the next anneal_steps: the
    share falls linearly to 0; after that: none. hold_steps = anneal_steps = 0 turns it off.
    A step is `batch_size` examples of the stream (one process)."""

    hold_steps: int = 0
    anneal_steps: int = 0

    def __post_init__(self) -> None:
        for name in ("hold_steps", "anneal_steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(
                    f"caption_curriculum.{name} must be an integer >= 0, got {value!r}"
                )

    @property
    def active(self) -> bool:
        return self.hold_steps + self.anneal_steps > 0

    def share(self, step: int) -> float:
        """The share of examples that carry the hint at optimizer step `step` (0-based)."""
        if step < self.hold_steps:
            return 1.0
        if step < self.hold_steps + self.anneal_steps:
            return 1.0 - (step - self.hold_steps) / self.anneal_steps
        return 0.0


@dataclass(frozen=True)
class TaskCurriculum:
    """Which groups of rows the judge trains on, step by step. A group is a task (both its
    modes) or one `task/mode`. Stage k (steps [k * stage_steps, (k + 1) * stage_steps)) adds
    `order[k]` to the stream; the newest group takes `newest_share` of the examples and the
    groups already in split the rest evenly, so an earlier task stays in the stream (blocks
    that replace each other forget: docs/research/instruct-base.md). After the last stage
    every group in `order` has an even share. Groups not named are never trained on; an empty
    `order` turns it off (every selected row, one shuffled stream)."""

    order: tuple[str, ...] = ()
    stage_steps: int = 0
    newest_share: float = 0.5

    def __post_init__(self) -> None:
        if not self.order:
            return
        if isinstance(self.stage_steps, bool) or not isinstance(self.stage_steps, int):
            raise ValueError(
                f"task_curriculum.stage_steps must be an integer, got {self.stage_steps!r}"
            )
        if self.stage_steps < 1:
            raise ValueError(f"task_curriculum.stage_steps must be >= 1, got {self.stage_steps}")
        if not 0.0 < self.newest_share <= 1.0:
            raise ValueError(
                f"task_curriculum.newest_share must be in (0, 1], got {self.newest_share!r}"
            )
        for group in self.order:
            task, _, mode = group.partition("/")
            parse_task(task)  # raises with the valid names
            if mode:
                parse_mode(mode)
        if len(set(self.order)) != len(self.order):
            raise ValueError(f"task_curriculum.order names a group twice: {list(self.order)}")

    @property
    def active(self) -> bool:
        return bool(self.order)

    @property
    def end(self) -> int:
        """The first step at which every group is in the stream."""
        return (len(self.order) - 1) * self.stage_steps

    def weights(self, step: int) -> list[float]:
        """The share of each group of `order` at optimizer step `step` (0-based)."""
        n = len(self.order)
        stage = step // self.stage_steps
        if stage >= n:
            return [1.0 / n] * n
        if stage == 0:
            return [1.0] + [0.0] * (n - 1)
        rest = (1.0 - self.newest_share) / stage
        return [rest] * stage + [self.newest_share] + [0.0] * (n - stage - 1)

    def groups(self, rows: list[Record]) -> list[list[int]]:
        """Indices of `rows` in each group of `order`; a group without rows is an error."""
        out = []
        for group in self.order:
            task, _, mode = group.partition("/")
            members = [
                i for i, r in enumerate(rows) if r.task == task and (not mode or r.mode == mode)
            ]
            if not members:
                raise ValueError(
                    f"task_curriculum group {group!r} has no training rows (unified_sft.tasks / "
                    "modes leave it out, or the dataset has none)"
                )
            out.append(members)
        return out


@dataclass(frozen=True)
class UnifiedSftConfig:
    train: TrainParams = field(default_factory=_default_train)
    tasks: tuple[str, ...] = tuple(t.value for t in TASKS)
    modes: tuple[str, ...] = tuple(m.value for m in MODES)
    split: str = "train"
    swap_augment: bool = True
    # A pairwise row and its swapped twin stay next to each other in the shuffled stream, so
    # (but for a pair split by a batch boundary) each batch shows both orders of its pairs.
    paired_swaps: bool = False
    caption_curriculum: CaptionCurriculum = field(default_factory=CaptionCurriculum)
    task_curriculum: TaskCurriculum = field(default_factory=TaskCurriculum)
    # A prompt template file; "" = the base model's own prompts.yaml, else the project's default.
    prompt_templates: str = ""
    tracking_uri: str | None = None  # None = $MLFLOW_TRACKING_URI or local sqlite; "null" = none
    experiment: str = "unireward"

    def __post_init__(self) -> None:
        if self.paired_swaps and not self.swap_augment:
            raise ValueError("unified_sft.paired_swaps needs swap_augment: true (no twins)")
        end = self.caption_curriculum.hold_steps + self.caption_curriculum.anneal_steps
        if self.caption_curriculum.active and end >= self.train.max_steps:
            raise ValueError(
                f"caption_curriculum ends at step {end}, not before train.max_steps="
                f"{self.train.max_steps}: the judge must also train without hints"
            )
        for name in self.tasks:
            parse_task(name)  # raises with the valid names
        for name in self.modes:
            parse_mode(name)
        if not self.tasks or not self.modes:
            raise ValueError("unified_sft needs at least one task and one mode")
        if self.task_curriculum.active:
            if self.paired_swaps:
                raise ValueError("unified_sft.task_curriculum and paired_swaps cannot be combined")
            if self.task_curriculum.end >= self.train.max_steps:
                raise ValueError(
                    f"task_curriculum adds its last group at step {self.task_curriculum.end}, "
                    f"not before train.max_steps={self.train.max_steps}"
                )
            for group in self.task_curriculum.order:
                task, _, mode = group.partition("/")
                if task not in self.tasks or (mode and mode not in self.modes):
                    raise ValueError(
                        f"task_curriculum group {group!r} is not among unified_sft.tasks "
                        f"{list(self.tasks)} x modes {list(self.modes)}"
                    )


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


def twin_units(rows: list[Record]) -> list[list[int]]:
    """Indices of `rows` grouped into units: consecutive rows with the same id (a record and
    its swapped twin from `expand`) form one unit, every other row is a unit of its own."""
    units: list[list[int]] = []
    for i, r in enumerate(rows):
        if units and rows[units[-1][0]].id == r.id:
            units[-1].append(i)
        else:
            units.append([i])
    return units


def epoch_order(units: list[list[int]], seed: int, epoch: int) -> np.ndarray:
    """The row order of one epoch: `units` shuffled by (seed, epoch), each kept in one piece."""
    perm = np.random.default_rng([seed, epoch]).permutation(len(units))
    n = sum(len(u) for u in units)
    return np.fromiter((i for u in perm for i in units[u]), dtype=np.int64, count=n)


def curriculum_picker(
    rows: list[Record], tasks: TaskCurriculum, seed: int, batch_size: int
) -> Callable[[int], int]:
    """The row of `rows` that example i of a task-curriculum stream shows: its group is drawn
    by `tasks.weights(i // batch_size)`, then it takes position i of that group's own shuffled
    epochs, so each group's rows come round evenly. A pure function of i (resumable)."""
    groups = [np.asarray(g, dtype=np.int64) for g in tasks.groups(rows)]

    @functools.lru_cache(maxsize=2 * len(groups))
    def group_order(k: int, epoch: int) -> np.ndarray:
        perm = np.random.default_rng([seed + 10 + k, epoch]).permutation(len(groups[k]))
        return groups[k][perm]

    def pick(i: int) -> int:
        weights = tasks.weights(i // batch_size)
        k = int(np.random.default_rng([seed + 2, i]).choice(len(groups), p=weights))
        epoch, pos = divmod(i, len(groups[k]))
        return int(group_order(k, epoch)[pos])

    return pick


def record_stream(
    rows: list[Record],
    root: Path,
    seed: int,
    cot: bool = False,
    curriculum: CaptionCurriculum | None = None,
    batch_size: int = 1,
    paired: bool = False,
    templates: PromptTemplates | None = None,
    tasks: TaskCurriculum | None = None,
):
    """Endless shuffled epochs over `rows` as SFT examples; row i is a pure function of i.

    With `paired`, an epoch shuffles the `twin_units` of `rows`, so a record and its swapped
    twin are adjacent. With a `curriculum`, example i carries its row's scene hint with
    probability `curriculum.share(i // batch_size)` (rows without one are shown plain).
    With a task curriculum `tasks`, `curriculum_picker` chooses each example's row.
    `templates` words the prompts (None = the project's default)."""
    n = len(rows)
    hints = [scene_hint(r) for r in rows] if curriculum and curriculum.active else None
    if tasks is not None and tasks.active:
        if paired:
            raise ValueError("a task curriculum cannot keep swapped twins paired")
        pick = curriculum_picker(rows, tasks, seed, batch_size)
    else:
        units = twin_units(rows) if paired else [[i] for i in range(n)]
        order = functools.lru_cache(maxsize=2)(lambda epoch: epoch_order(units, seed, epoch))

        def pick(i: int) -> int:
            epoch, pos = divmod(i, n)
            return int(order(epoch)[pos])

    def make(i: int) -> dict[str, Any]:
        row = pick(i)
        hint = None
        if hints is not None and hints[row] is not None:
            share = curriculum.share(i // batch_size)
            if share > 0 and np.random.default_rng([seed + 1, i]).random() < share:
                hint = hints[row]
        return to_example(rows[row], root, cot=cot, hint=hint, templates=templates)

    return example_stream(make)


def run(
    config: UnifiedSftConfig, base_model_dir: Path, dataset_dir: Path, output_dir: Path
) -> SftResult:
    from unireward.model.tiny import save_checkpoint

    output_dir = Path(output_dir)
    templates = resolve_templates(config.prompt_templates, Path(base_model_dir))
    records = select_records(read_records(Path(dataset_dir)), config)
    rows = expand(records, config.swap_augment)
    model, processor = load_for_training(Path(base_model_dir), config.train)
    counts = {
        f"{t}/{m}": sum(1 for r in records if r.task == t and r.mode == m)
        for t in config.tasks
        for m in config.modes
    }
    hinted = (
        sum(scene_hint(r) is not None for r in records) if config.caption_curriculum.active else 0
    )
    if config.caption_curriculum.active and not hinted:
        raise ValueError(
            "caption_curriculum is on but no training record says what its items show (shapes-"
            "world `meta.scene` / `meta.items`); turn it off (hold_steps: 0, anneal_steps: 0)"
        )
    stream = record_stream(
        rows,
        Path(dataset_dir),
        config.train.seed,
        curriculum=config.caption_curriculum,
        batch_size=config.train.batch_size,
        paired=config.paired_swaps,
        templates=templates,
        tasks=config.task_curriculum,
    )
    outcome = train_sft(model, processor, stream, config.train, output_dir)
    if not outcome.is_main_process:  # several processes: the main one writes the outputs
        return SftResult(model_dir=output_dir, n_records=len(records), train=outcome)
    model.to("cpu")
    save_checkpoint(
        model,
        processor,
        output_dir,
        extra={
            "stage": "unified_sft",
            "base_model": str(base_model_dir),
            "dataset": str(dataset_dir),
            "config": to_dict(config),
            "records": counts,
            "records_with_hint": hinted,
            "prompt_templates": describe(templates),
            "global_step": outcome.global_step,
            "resumed_from": outcome.resumed_from,
            "train_seconds": round(outcome.train_seconds, 1),
            "world_size": outcome.world_size,
            "zero_stage": outcome.zero_stage,
        },
        state_dict=outcome.state_dict,
    )
    save_templates(templates, output_dir)
    (output_dir / "train_log.json").write_text(json.dumps(outcome.log_history, indent=1))
    discard_checkpoints(output_dir)
    _track(config, counts, outcome, output_dir, templates)
    return SftResult(model_dir=output_dir, n_records=len(records), train=outcome)


def _track(
    config: UnifiedSftConfig,
    counts: dict[str, int],
    outcome: TrainOutcome,
    output_dir: Path,
    templates: PromptTemplates,
) -> None:
    """One MLflow run `unified_sft`: params, records per task/mode, the loss per logged step,
    train_log.json, the prompt templates and `plots/train_curves.png`."""
    from unireward.plots import log_training_curves
    from unireward.tracking import make_tracker

    tracker = make_tracker(config.tracking_uri, config.experiment)
    with tracker.start_run("unified_sft", tags={"stage": "unified_sft"}):
        tracker.log_params({"unified_sft": to_dict(config)})
        log_templates(tracker, templates)
        tracker.log_metrics(
            {f"records/{k}": float(v) for k, v in counts.items()}
            | {"global_step": float(outcome.global_step), "train_seconds": outcome.train_seconds}
        )
        for entry in outcome.log_history:
            if "loss" in entry and "step" in entry:
                tracker.log_metrics({"train_loss": float(entry["loss"])}, step=int(entry["step"]))
        tracker.log_artifact(output_dir / "train_log.json")
        log_training_curves(tracker, outcome.log_history, "unified_sft")
