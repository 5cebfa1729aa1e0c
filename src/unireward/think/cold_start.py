"""Stage 4, `cold_start`: distil CoT judgements from a teacher, keep the correct ones, and SFT
the unified judge on them (UnifiedReward-Think, stage 1).

    unireward cold_start --judge runs/unified_sft --dataset runs/validate \
        --output-dir runs/cold_start [--profile full]

1. **Distil.** Every labelled, non-tied pairwise record of `split` (per task, at most
   `max_items_per_task`) is shown to the teacher (`think.teachers`: the programmatic shapes-world
   teacher by default, or any OpenAI-compatible VLM), in both orders with `swap_augment` (the
   teacher judges the swapped pair afresh: a CoT cannot be swapped by text substitution), with
   at most `teacher.max_concurrency` requests in flight.
2. **Filter.** Each reply is one of: *kept* (well-formed and `rewards.is_correct`, the same
   predicate GRPO's accuracy reward and CoT evaluation use), *rejected* (well-formed, wrong
   verdict) or *failed* (no reply after retries, or malformed text), with the reason. Every item
   lands in `distill/teacher_outputs.jsonl`; nothing is dropped silently. Past
   `max_failed_fraction` failed items the stage raises `TeacherFailures` after writing them.
3. **SFT.** TRL SFT (training.train_sft) on the kept CoT targets (unified_sft's data path with
   cot=True), from the unified judge checkpoint (`init: judge`, the paper's recipe) or from the
   base model (`init: base`, `--base`). The tiny judge needs the second: a unified judge that
   sits at chance has learned to ignore the candidates' text, and cold start from it stays at
   chance, while the same SFT from the base with the teacher's `observation` style reaches
   ~0.7 CoT accuracy on image understanding (README "Think stages").

Prompts: `prompt_templates` (a template file; "" = the start checkpoint's own prompts.yaml, else
the project's default) words the CoT prompts the OpenAI teacher is sent and the judge is trained
on; the file is saved next to the judge as prompts.yaml and logged with the run.

Outputs in `output_dir`: the judge checkpoint (safetensors + unireward.json + prompts.yaml),
`train_log.json`,
and `distill/` (`teacher_outputs.jsonl`, `records.parquet` = the kept rows as canonical records
with `cot` set, media paths relative to the input dataset, `summary.json`).

Resumable: a restart with the same output dir reuses a completed distillation (no second bill
from a paid teacher) and continues training from the newest checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unireward import contract
from unireward.config import to_dict
from unireward.data.schema import Record, read_records, write_records
from unireward.judge.examples import swap_record
from unireward.plots import log_training_curves
from unireward.progress import progress
from unireward.prompt_templates import (
    PromptTemplates,
    default_templates,
    describe,
    log_templates,
    resolve_templates,
    save_templates,
)
from unireward.rewards import format_reward, is_correct
from unireward.tasks import TASKS, TIE_ANSWERS, Mode, parse_task
from unireward.think.teachers import Teacher, TeacherConfig, TeacherError, make_teacher
from unireward.training import (
    TrainOutcome,
    TrainParams,
    discard_checkpoints,
    load_for_training,
    train_sft,
)

DISTILL = "distill"
INITS = ("judge", "base")  # what the SFT starts from


def _default_train() -> TrainParams:
    return TrainParams(max_steps=300, batch_size=16, learning_rate=1e-3, warmup_ratio=0.03)


@dataclass(frozen=True)
class ColdStartConfig:
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    train: TrainParams = field(default_factory=_default_train)
    tasks: tuple[str, ...] = tuple(t.value for t in TASKS)
    split: str = "train"
    max_items_per_task: int = 0  # 0 = every judgeable pairwise record of the split
    swap_augment: bool = True
    max_failed_fraction: float = 0.05
    init: str = "judge"  # judge | base: the checkpoint the SFT starts from
    # A prompt template file; "" = the start checkpoint's own prompts.yaml, else the default.
    prompt_templates: str = ""
    tracking_uri: str | None = None  # None = local sqlite store; "null" = no tracking
    experiment: str = "unireward"

    def __post_init__(self) -> None:
        if self.init not in INITS:
            raise ValueError(
                f"cold_start init {self.init!r} unknown; expected one of {list(INITS)}"
            )
        for name in self.tasks:
            parse_task(name)  # raises with the valid names
        if not self.tasks:
            raise ValueError("cold_start needs at least one task")
        if self.max_items_per_task < 0:
            raise ValueError(f"max_items_per_task must be >= 0, got {self.max_items_per_task}")
        if not 0.0 <= self.max_failed_fraction <= 1.0:
            raise ValueError(
                f"max_failed_fraction must be in [0, 1], got {self.max_failed_fraction}"
            )


@dataclass(frozen=True)
class Outcome:
    """What became of one teacher call."""

    index: int
    id: str
    task: str
    status: str  # kept | rejected | failed
    reason: str | None
    text: str | None
    label: str


@dataclass
class Distillation:
    outcomes: list[Outcome]
    kept: list[Record]

    def summary(self) -> dict[str, Any]:
        n = len(self.outcomes)
        count = {
            s: sum(o.status == s for o in self.outcomes) for s in ("kept", "rejected", "failed")
        }
        answered = n - count["failed"]
        per_task = {
            t: {
                s: sum(o.status == s and o.task == t for o in self.outcomes)
                for s in ("kept", "rejected", "failed")
            }
            for t in sorted({o.task for o in self.outcomes})
        }
        return {
            "items": n,
            **count,
            "rejected_fraction": count["rejected"] / answered if answered else 0.0,
            "failed_fraction": count["failed"] / n if n else 0.0,
            "per_task": per_task,
        }


@dataclass
class ColdStartResult:
    model_dir: Path
    items: int
    kept: int
    rejected_fraction: float
    failed_fraction: float
    train: TrainOutcome


class TeacherFailures(RuntimeError):
    """More teacher items failed than `max_failed_fraction` allows; outputs are written."""


# --------------------------------------------------------------------------- distillation


def swap_view(record: Record) -> Record:
    """The pair in the other order under its own id, ground truth included (swap_record swaps
    `meta`'s items / claims and `better`; the programmatic teacher reads them)."""
    return dataclasses.replace(swap_record(record), id=f"{record.id}-swapped")


def select_items(records: list[Record], config: ColdStartConfig) -> list[Record]:
    """Labelled, non-tied pairwise records of the split and tasks (CoT has no tie answer)."""
    ties = set(TIE_ANSWERS.values())
    out: list[Record] = []
    for task in config.tasks:
        rows = [
            r
            for r in records
            if r.split == config.split
            and r.task == task
            and r.mode == Mode.PAIRWISE
            and r.label is not None
            and r.label not in ties
        ]
        out.extend(rows[: config.max_items_per_task] if config.max_items_per_task else rows)
    if not out:
        raise ValueError(
            f"no labelled pairwise records with split={config.split!r} and tasks "
            f"{list(config.tasks)} in the dataset"
        )
    views = [v for r in out for v in ([r, swap_view(r)] if config.swap_augment else [r])]
    return views


def classify(text: str, record: Record) -> tuple[str, str | None]:
    """(status, reason) of one teacher reply: the correctness filter."""
    if format_reward([text])[0] != 1.0:
        why = contract.parse_pairwise(text, parse_task(record.task), cot=True).reason
        return "failed", f"malformed: {why}"
    if is_correct(text, record.label):
        return "kept", None
    answer = contract.split_cot(text)[1]
    return "rejected", f"answer {answer!r} but the label is {record.label!r}"


def distill(
    teacher: Teacher, items: list[Record], root: Path, max_concurrency: int
) -> Distillation:
    """Ask the teacher about every item (at most `max_concurrency` in flight), then filter."""

    def ask(index: int) -> Outcome:
        record = items[index]
        try:
            text = teacher.judge(record, root, index)
        except TeacherError as err:
            status, reason, text = "failed", err.reason, None
        else:
            status, reason = classify(text, record)
        return Outcome(index, record.id, record.task, status, reason, text, record.label)

    with ThreadPoolExecutor(max_workers=max_concurrency) as pool:
        outcomes = list(progress(pool.map(ask, range(len(items))), "teacher", len(items)))
    kept = [dataclasses.replace(items[o.index], cot=o.text) for o in outcomes if o.status == "kept"]
    return Distillation(outcomes=outcomes, kept=kept)


def _provenance(
    config: ColdStartConfig, dataset_dir: Path, templates: PromptTemplates
) -> dict[str, Any]:
    """What a distillation depends on: a restart reuses one only if all of it is unchanged
    (the prompts too, for a teacher that reads them)."""
    prompts = {"prompts": templates.sha256} if config.teacher.kind == "openai" else {}
    return {
        "teacher": to_dict(config.teacher),
        "dataset": str(Path(dataset_dir).resolve()),
        **{k: getattr(config, k) for k in ("split", "max_items_per_task", "swap_augment")},
        "tasks": list(config.tasks),
        **prompts,
    }


def _write_distillation(
    result: Distillation, config: ColdStartConfig, provenance: dict, out: Path
) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    with (out / "teacher_outputs.jsonl").open("w") as fh:
        for o in result.outcomes:
            fh.write(json.dumps(dataclasses.asdict(o)) + "\n")
    if result.kept:
        write_records(result.kept, out)
    summary = {**result.summary(), "provenance": provenance}
    summary["passed"] = summary["failed_fraction"] <= config.max_failed_fraction
    (out / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True))
    return summary


def _reuse_distillation(provenance: dict, out: Path) -> tuple[dict, list[Record]] | None:
    """A completed distillation of an earlier attempt with the same provenance, if any."""
    path = out / "summary.json"
    if not path.exists():
        return None
    summary = json.loads(path.read_text())
    if not summary.get("passed") or summary.get("provenance") != provenance:
        return None
    return summary, read_records(out)


def run_distillation(
    config: ColdStartConfig,
    dataset_dir: Path,
    output_dir: Path,
    templates: PromptTemplates | None = None,
) -> tuple[dict, list[Record]]:
    templates = default_templates() if templates is None else templates
    out = Path(output_dir) / DISTILL
    provenance = _provenance(config, dataset_dir, templates)
    reused = _reuse_distillation(provenance, out)
    if reused is not None:
        return reused
    items = select_items(read_records(Path(dataset_dir)), config)
    teacher = make_teacher(config.teacher, templates)
    result = distill(teacher, items, Path(dataset_dir), config.teacher.max_concurrency)
    summary = _write_distillation(result, config, provenance, out)
    if not summary["passed"]:
        reasons: dict[str, int] = {}
        for o in result.outcomes:
            if o.status == "failed":
                reasons[o.reason] = reasons.get(o.reason, 0) + 1
        top = sorted(reasons.items(), key=lambda kv: -kv[1])[:3]
        raise TeacherFailures(
            f"{summary['failed']} of {summary['items']} teacher items failed "
            f"({summary['failed_fraction']:.1%} > max_failed_fraction "
            f"{config.max_failed_fraction:.1%}); top reasons: {top}; every item with its reason "
            f"is in {out / 'teacher_outputs.jsonl'}"
        )
    if not result.kept:
        raise ValueError(f"the teacher got no item right; see {out / 'teacher_outputs.jsonl'}")
    return summary, result.kept


# --------------------------------------------------------------------------- the stage


def start_checkpoint(config: ColdStartConfig, judge_dir: Path, base_dir: Path | None) -> Path:
    """The checkpoint the SFT starts from: the unified judge, or the base with `init: base`."""
    if config.init == "judge":
        return Path(judge_dir)
    if base_dir is None:
        raise ValueError("cold_start init: base needs the base model (--base, or base_model)")
    return Path(base_dir)


def run(
    config: ColdStartConfig,
    judge_dir: Path,
    dataset_dir: Path,
    output_dir: Path,
    callbacks: list | None = None,
    base_dir: Path | None = None,
) -> ColdStartResult:
    from unireward.judge.unified_sft import record_stream
    from unireward.model.tiny import save_checkpoint
    from unireward.tracking import make_tracker

    output_dir = Path(output_dir)
    start = start_checkpoint(config, judge_dir, base_dir)
    templates = resolve_templates(config.prompt_templates, start)
    summary, kept = run_distillation(config, dataset_dir, output_dir, templates)
    model, processor = load_for_training(start, config.train)
    outcome = train_sft(
        model,
        processor,
        record_stream(kept, Path(dataset_dir), config.train.seed, cot=True, templates=templates),
        config.train,
        output_dir,
        callbacks=callbacks,
    )
    model.to("cpu")
    info = {
        "stage": "cold_start",
        "judge": str(judge_dir),
        "started_from": str(start),
        "config": to_dict(config),
        "distillation": {k: v for k, v in summary.items() if k != "provenance"},
        "global_step": outcome.global_step,
        "resumed_from": outcome.resumed_from,
        "train_seconds": round(outcome.train_seconds, 1),
        "prompt_templates": describe(templates),
    }
    save_checkpoint(model, processor, output_dir, extra=info)
    save_templates(templates, output_dir)
    (output_dir / "train_log.json").write_text(json.dumps(outcome.log_history, indent=1))
    discard_checkpoints(output_dir)
    tracker = make_tracker(config.tracking_uri, config.experiment)
    _track(config, tracker, summary, outcome, output_dir, templates)
    return ColdStartResult(
        model_dir=output_dir,
        items=summary["items"],
        kept=summary["kept"],
        rejected_fraction=summary["rejected_fraction"],
        failed_fraction=summary["failed_fraction"],
        train=outcome,
    )


def _track(
    config, tracker, summary: dict, outcome: TrainOutcome, output_dir: Path, templates
) -> None:
    with tracker.start_run("cold_start", tags={"stage": "cold_start"}):
        tracker.log_params({"cold_start": to_dict(config)})
        log_templates(tracker, templates)
        tracker.log_metrics(
            {
                k: float(summary[k])
                for k in ("items", "kept", "rejected", "failed", "rejected_fraction")
            }
            | {"failed_fraction": float(summary["failed_fraction"])}
            | {"global_step": float(outcome.global_step), "train_seconds": outcome.train_seconds}
        )
        for entry in outcome.log_history:
            if "loss" in entry and "step" in entry:
                tracker.log_metrics({"train_loss": float(entry["loss"])}, step=int(entry["step"]))
        tracker.log_artifacts(output_dir / DISTILL, DISTILL)
        tracker.log_artifact(output_dir / "train_log.json")
        log_training_curves(tracker, outcome.log_history, "cold_start")
