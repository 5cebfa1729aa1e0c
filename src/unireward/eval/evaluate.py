"""Stage 8, `evaluate`: how good is a judge, per task and mode, on held-out splits.

Protocol (shared/DESIGN.md, "Evaluation protocol"):
- pairwise: the two candidates are swapped at random with a fixed seed, the judge answers in
  direct mode, the verdict is parsed by the contract parser (unparseable counts as wrong);
  **tau** counts predicted ties as wrong, **diff** leaves tied pairs out. Beyond the paper,
  every pair is also judged in the other order: **swap consistency** is how often the two
  verdicts mirror each other.
- pointwise: the parsed score's **Spearman** correlation with the ground-truth score.
- CoT mode (`cot: true`, for the Think judges): pairwise prompts ask for
  `<think>..</think><answer>..</answer>` and the judge generates up to `cot_max_new_tokens`;
  only the <answer> decides (contract.parse_pairwise(cot=True)). Adds per task the
  **format-valid rate** (rewards.format_reward over both orders) and **cot_accuracy**
  (rewards.is_correct, the GRPO accuracy reward, over non-tied pairs). Pointwise stays direct
  (the contract's CoT is pairwise only).
- breakdown by what differs between the candidates (an attribute or a defect) or by question type.
- backends (`backend`): `generate` (transformers, `batch_size` prompts per call) or `vllm`
  (vLLM's offline engine from `.venv-serve`, every prompt at once: `serving.offline`); greedy
  either way, the same verdicts on the same model. `make bench-eval` times the two.
- public benchmarks (`--benchmark DIR`: GenAI-Bench, VideoGen-RewardBench, VL-RewardBench in
  their published layouts) are scored in the papers' terms by `eval/benchmark.py`.
- the **hard split** (`--samples`, the DAG's `samples` input): given a `rejection_sample`
  output, its hard items (the training pairs the cold-start judge got wrong on every sample,
  GRPO's data) are scored as one more split, `hard`, so the Think ablation can show what RS and
  GRPO did on the items GRPO trained on (UnifiedReward-Think's hard split).

    unireward evaluate --model runs/unified_sft --dataset runs/validate --output-dir runs/eval
    unireward evaluate --model runs/cold_start --dataset runs/validate --output-dir runs/eval \
        --cot [--samples runs/rejection_sample]

Prompts: the model's own prompts.yaml (the words it was trained on, saved by every training
stage), or the project's default for a checkpoint without one; `prompt_templates` names another
file (it wins over the model's own, with a warning: e.g. a published checkpoint's prompts). The
file and its version/sha256 go to the MLflow run.

Writes `metrics.json` (flat {name: value}: `<task>/<metric>` for the primary split,
`<split>/<task>/<metric>` for the others, and `*_mean` aggregates), `predictions.parquet`
(every raw judge output with its parse), `metrics.png` (accuracy per task and split) and
`report.html` (that and accuracy per attribute: the Kubeflow HTML artifact); logs the metrics,
the directory (`evaluate/`, less its PNG: the figures are logged once) and the figures
(`plots/accuracy_by_task.png`, `plots/accuracy_by_attribute.png`) to MLflow.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from unireward import contract
from unireward.config import to_dict
from unireward.data.schema import Record, read_records
from unireward.eval import metrics as M
from unireward.judge.examples import prompt_messages, record_images, swap_record
from unireward.model.tiny import check_placement
from unireward.prompt_templates import PromptTemplates, log_templates, resolve_templates
from unireward.rewards import format_reward, is_correct
from unireward.tasks import TASKS, Mode, parse_mode, parse_task

PAIRWISE_KEYS = ("pairwise_tau", "pairwise_diff", "swap_consistency")
BACKENDS = ("generate", "vllm")
HARD_SPLIT = "hard"  # rejection sampling's hard items, scored with `samples_dir`
COT_KEYS = ("format_valid", "cot_accuracy")


@dataclass(frozen=True)
class EvaluateConfig:
    splits: tuple[str, ...] = ("eval_seen", "eval_unseen")
    primary_split: str = "eval_seen"
    tasks: tuple[str, ...] = tuple(t.value for t in TASKS)  # a judge trained on some tasks only
    batch_size: int = 32
    max_new_tokens: int = 12
    cot: bool = False  # pairwise in CoT mode: <think>..</think><answer>..</answer>
    cot_max_new_tokens: int = 160  # the programmatic teacher's CoT is 90-125 tokens
    # Pairwise records per (split, task) in CoT mode, 0 = as max_per_task_mode: a CoT verdict
    # costs ~10x the tokens of a direct one, so the quick profile scores CoT on a subset.
    cot_max_per_task_mode: int = 0
    swap_seed: int = 0
    max_per_task_mode: int = 0  # 0 = every record of the split
    threads: int = 1  # see TrainParams.threads
    device: str = "cpu"  # "cuda" on a GPU node
    dtype: str = "float32"  # the weights\' dtype: "bfloat16" for a 7B model on GPUs
    # A prompt template file; "" = the model's own prompts.yaml, else the project's default.
    # A file named here wins over the model's own (with a warning when they differ).
    prompt_templates: str = ""
    # generate: transformers `generate`, batch_size prompts at a time; vllm: vLLM's offline
    # engine from vllm_python's venv (`make serve-venv`) on every prompt at once, in `dtype`
    # (serving.offline). Greedy either way: the same verdicts on the same model.
    backend: str = "generate"
    vllm_python: str = ".venv-serve/bin/python"
    vllm_max_model_len: int = 4096
    vllm_max_num_seqs: int = 64
    vllm_kv_cache_gib: float = 1.0
    vllm_timeout_s: float = 1800.0  # engine start-up and every prompt
    tracking_uri: str | None = None  # None = local sqlite store; "null" = no tracking
    experiment: str = "unireward"

    def __post_init__(self) -> None:
        check_placement(self.device, self.dtype, "evaluate")
        if self.backend not in BACKENDS:
            raise ValueError(f"evaluate.backend must be one of {BACKENDS}, got {self.backend!r}")
        self.engine_params()  # the vllm_* settings validate there
        for name in self.tasks:
            parse_task(name)
        if not self.tasks:
            raise ValueError("evaluate.tasks is empty: name at least one task")
        if self.primary_split not in self.splits:
            raise ValueError(f"primary_split {self.primary_split!r} must be one of {self.splits}")
        if min(self.batch_size, self.max_new_tokens, self.cot_max_new_tokens) < 1:
            raise ValueError("batch_size, max_new_tokens and cot_max_new_tokens must be >= 1")
        if self.max_per_task_mode < 0 or self.cot_max_per_task_mode < 0:
            raise ValueError("max_per_task_mode and cot_max_per_task_mode must be >= 0")

    def engine_params(self):
        """The vllm backend's engine settings (serving.offline.EngineParams)."""
        from unireward.serving.offline import EngineParams

        return EngineParams(
            vllm_python=self.vllm_python,
            max_model_len=self.vllm_max_model_len,
            max_num_seqs=self.vllm_max_num_seqs,
            kv_cache_gib=self.vllm_kv_cache_gib,
            dtype=self.dtype,
            device=self.device,
            seed=self.swap_seed,
            timeout_s=self.vllm_timeout_s,
        )


@dataclass
class EvalResult:
    metrics: dict[str, float]
    output_dir: Path


def select(records: list[Record], config: EvaluateConfig) -> list[Record]:
    by_key: dict[tuple[str, str, str], list[Record]] = defaultdict(list)
    for r in records:
        if r.split in config.splits and r.task in config.tasks:
            by_key[(r.split, r.task, r.mode)].append(r)
    missing = [s for s in config.splits if not any(k[0] == s for k in by_key)]
    if missing:
        raise ValueError(f"dataset has no records for split(s) {missing}")
    out: list[Record] = []
    for key in sorted(by_key):
        limits = [config.max_per_task_mode]
        if config.cot and key[2] == Mode.PAIRWISE:
            limits.append(config.cot_max_per_task_mode)
        limit = min((n for n in limits if n), default=0)
        out.extend(by_key[key][:limit] if limit else by_key[key])
    return out


def hard_records(samples_dir: Path, config: EvaluateConfig) -> list[Record]:
    """rejection_sample's hard items (`samples_dir/hard`) of the configured tasks, as split
    `hard`. Their media paths are the input dataset's, like every record rejection_sample
    writes. An empty hard set is an empty list: no `hard` metrics."""
    from unireward.think.rejection_sample import HARD  # the hard set's directory name

    if config.primary_split == HARD_SPLIT or HARD_SPLIT in config.splits:
        raise ValueError(f"split name {HARD_SPLIT!r} is reserved for rejection sampling's items")
    return [
        dataclasses.replace(r, split=HARD_SPLIT)
        for r in read_records(Path(samples_dir) / HARD)
        if r.task in config.tasks and r.mode == Mode.PAIRWISE
    ]


def presented_order(records: list[Record], seed: int) -> list[Record]:
    """Each pairwise record, swapped with probability 1/2 under a fixed seed."""
    rng = np.random.default_rng(seed)
    out = []
    for r in records:
        flip = bool(rng.integers(2))
        out.append(swap_record(r) if flip and r.mode == Mode.PAIRWISE else r)
    return out


def _breakdown(record: Record) -> str:
    meta = record.meta_dict
    return str(meta.get("difference") or meta.get("question_type") or "all")


def score_split(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Per-task metrics from prediction rows of one split (pure; see `predict` for row fields)."""
    out: dict[str, float] = {}
    for task in TASKS:
        pair = [r for r in rows if r["task"] == task and r["mode"] == Mode.PAIRWISE]
        point = [r for r in rows if r["task"] == task and r["mode"] == Mode.POINTWISE]
        if pair:
            acc = M.pairwise_accuracy([r["pred"] for r in pair], [r["label"] for r in pair])
            out[f"{task}/pairwise_tau"] = acc.tau
            out[f"{task}/pairwise_diff"] = acc.diff
            out[f"{task}/pairwise_unparseable"] = acc.unparseable_rate
            out[f"{task}/swap_consistency"] = M.swap_consistency(
                [r["pred"] for r in pair], [r["pred_swapped"] for r in pair]
            )
            groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
            for r in pair:
                groups[r["breakdown"]].append(r)
            for name, group in sorted(groups.items()):
                sub = M.pairwise_accuracy([r["pred"] for r in group], [r["label"] for r in group])
                out[f"{task}/by/{name}/pairwise_tau"] = sub.tau
            if "format_valid" in pair[0]:
                out[f"{task}/format_valid"] = float(np.mean([r["format_valid"] for r in pair]))
                judged = [r["correct"] for r in pair if r["label"] != M.TIE]
                out[f"{task}/cot_accuracy"] = float(np.mean(judged)) if judged else math.nan
        if point:
            sp = M.spearman([r["score_pred"] for r in point], [r["score"] for r in point])
            out[f"{task}/pointwise_spearman"] = sp.rho
            out[f"{task}/pointwise_unparseable"] = sp.unparseable_rate
    for key in (*PAIRWISE_KEYS, *COT_KEYS, "pointwise_spearman"):
        values = [out[f"{t}/{key}"] for t in TASKS if f"{t}/{key}" in out]
        if values:
            # nan propagates on purpose: a task with no usable verdict must not look fine.
            out[f"{key}_mean"] = float(np.mean(values))
    return out


def generate_all(
    config: EvaluateConfig, model_dir: Path, jobs: list[tuple[Any, int]], log_dir: Path
) -> list[str]:
    """One greedy completion per (prompt, max_new_tokens) job, from the configured backend:
    transformers `generate` per budget in batches, or one vLLM offline engine for all of them
    (its log is copied to `log_dir`)."""
    if config.backend == "vllm":
        import shutil
        import tempfile

        from unireward.serving import offline

        requests = [offline.Request(prompt, max_tokens=budget) for prompt, budget in jobs]
        with tempfile.TemporaryDirectory(prefix="unireward-eval-vllm-") as work:
            try:
                result = offline.generate(model_dir, requests, config.engine_params(), Path(work))
            finally:
                log = Path(work) / offline.LOG_FILE
                if log.exists():
                    shutil.copy(log, Path(log_dir) / offline.LOG_FILE)
        return [texts[0] for texts in result.texts]
    import torch

    from unireward.judge.infer import generate_texts
    from unireward.model.tiny import load_checkpoint

    torch.set_num_threads(config.threads)
    model, processor = load_checkpoint(Path(model_dir), device=config.device, dtype=config.dtype)
    by_budget: dict[int, list[int]] = defaultdict(list)
    for index, (_, budget) in enumerate(jobs):
        by_budget[budget].append(index)
    texts: list[str] = [""] * len(jobs)
    for budget, indices in by_budget.items():
        batch = generate_texts(
            model,
            processor,
            [jobs[i][0] for i in indices],
            max_new_tokens=budget,
            batch_size=config.batch_size,
        )
        for i, text in zip(indices, batch, strict=True):
            texts[i] = text
    return texts


def predict(
    config: EvaluateConfig,
    model_dir: Path,
    records: list[Record],
    root: Path,
    log_dir: Path,
    templates: PromptTemplates | None = None,
) -> list[dict[str, Any]]:
    """Judge every record (pairwise ones in both orders), asked in `templates`' words (None =
    the default); one row per record, in order."""
    shown = presented_order(records, config.swap_seed)
    # ((messages, images), max_new_tokens) per job, keyed (record, order): CoT needs room.
    jobs: list[tuple[Any, int]] = []
    keys: list[tuple[int, int]] = []
    for i, r in enumerate(shown):
        pairwise = r.mode == Mode.PAIRWISE
        cot = config.cot and pairwise
        budget = config.cot_max_new_tokens if cot else config.max_new_tokens
        for j, v in enumerate([r, swap_record(r)] if pairwise else [r]):
            messages = prompt_messages(v, cot=cot, templates=templates)
            jobs.append(((messages, record_images(v, root)), budget))
            keys.append((i, j))
    outputs = dict(zip(keys, generate_all(config, model_dir, jobs, log_dir), strict=True))
    return [_row(r, outputs[(i, 0)], outputs.get((i, 1)), config.cot) for i, r in enumerate(shown)]


def _row(r: Record, text: str, text_swapped: str | None, cot: bool) -> dict[str, Any]:
    task, mode = parse_task(r.task), parse_mode(r.mode)
    row = {
        "id": r.id,
        "split": r.split,
        "task": task,
        "mode": mode,
        "breakdown": _breakdown(r),
        "text": text,
    }
    if mode == Mode.PAIRWISE:
        first = contract.parse_pairwise(text, task, cot=cot)
        second = contract.parse_pairwise(text_swapped, task, cot=cot)
        row.update(
            label=contract.label_to_preferred(task, r.label),
            pred=first.preferred,
            pred_swapped=second.preferred,
            text_swapped=text_swapped,
            reason=first.reason,
        )
        if cot:
            row.update(
                format_valid=float(np.mean(format_reward([text, text_swapped]))),
                correct=is_correct(text, r.label),
            )
    else:
        parsed = contract.parse_pointwise(text, task)
        row.update(score=r.score, score_pred=parsed.score, reason=parsed.reason)
    return row


def compute_metrics(rows: list[dict[str, Any]], config: EvaluateConfig) -> dict[str, float]:
    metrics: dict[str, float] = {}
    hard = [HARD_SPLIT] if any(r["split"] == HARD_SPLIT for r in rows) else []
    for split in (*config.splits, *hard):
        part = score_split([r for r in rows if r["split"] == split])
        prefix = "" if split == config.primary_split else f"{split}/"
        metrics.update({f"{prefix}{k}": v for k, v in part.items()})
    return metrics


def figures(metrics: dict[str, float], config: EvaluateConfig, name: str) -> dict[str, Any]:
    """The run's figures: accuracy per task (every split) and per attribute the candidates
    differ in (None without breakdowns); see unireward.plots."""
    from unireward import plots

    title = f"{name} ({'cot' if config.cot else 'direct'})"
    return {
        "accuracy_by_task": plots.accuracy_by_task(metrics, config.primary_split, title),
        "accuracy_by_attribute": plots.accuracy_by_attribute(metrics, config.primary_split, title),
    }


def run(
    config: EvaluateConfig,
    model_dir: Path,
    dataset_dir: Path,
    output_dir: Path,
    name: str = "judge",
    samples_dir: Path | None = None,
) -> EvalResult:
    import pandas as pd

    from unireward import plots
    from unireward.tracking import make_tracker

    if config.backend == "vllm":
        from unireward.serving.offline import require_vllm

        require_vllm(config.vllm_python, "evaluate")  # before anything: the fix is a make target
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    templates = resolve_templates(config.prompt_templates, Path(model_dir))
    records = select(read_records(Path(dataset_dir)), config)
    if samples_dir is not None:
        records += hard_records(samples_dir, config)
    rows = predict(config, Path(model_dir), records, Path(dataset_dir), output_dir, templates)
    metrics = compute_metrics(rows, config)
    (output_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True))
    pd.DataFrame(rows).to_parquet(output_dir / "predictions.parquet")
    figs = figures(metrics, config, name)
    figs["accuracy_by_task"].savefig(output_dir / "metrics.png", dpi=100)
    (output_dir / "report.html").write_text(plots.html_page(f"evaluate: {name}", figs))
    tracker = make_tracker(config.tracking_uri, config.experiment)
    tags = {"stage": "evaluate", "model": name, "mode": "cot" if config.cot else "direct"}
    with tracker.start_run(f"evaluate-{name}", tags=tags):
        paths = {"model_dir": str(model_dir), "samples_dir": str(samples_dir)}
        tracker.log_params({"evaluate": to_dict(config), **paths})
        log_templates(tracker, templates)
        tracker.log_metrics({k: v for k, v in metrics.items() if not math.isnan(v)})
        plots.log_outputs(tracker, output_dir, "evaluate", figs)
    plots.close(figs)
    return EvalResult(metrics=metrics, output_dir=output_dir)
