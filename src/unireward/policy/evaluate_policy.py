"""Stage 13, `evaluate_policy`: the policy before and after DPO against shapes-world ground truth.

    unireward evaluate_policy --before models/policy-tiny --after runs/dpo \
        --output-dir runs/evaluate_policy

Both checkpoints answer the same held-out questions (`questions.make_questions`: fresh renders of
seen colour-shape combinations in `eval_seen`, held-out combinations in `eval_unseen`), greedily;
exact match per attribute (`questions.accuracy`). Writes `metrics.json`
(`<before|after>/<split>/<attribute|mean|all>` and `delta/<split>/mean`), `answers.parquet`
(every answer) and `report.html` (accuracy before/after as a figure and a table of sample
questions with both answers, the ones DPO changed first: the Kubeflow HTML artifact); logs the
metrics, the directory (`evaluate_policy/`) and `plots/policy_accuracy.png` to MLflow.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unireward.config import to_dict
from unireward.model.tiny import check_placement
from unireward.policy.questions import (
    POLICY_SPLITS,
    PolicyQuestion,
    accuracy,
    is_correct,
    make_questions,
    prompt_messages,
)

SAMPLES_PER_SPLIT = 8  # sample questions per split in report.html


@dataclass(frozen=True)
class EvaluatePolicyConfig:
    splits: tuple[str, ...] = ("eval_seen", "eval_unseen")
    questions_per_split: int = 300
    seed: int = 1
    image_size: int = 64  # the shipped base's image size (models/base-tiny)
    batch_size: int = 32
    max_new_tokens: int = 8  # answers are one or two words
    threads: int = 1
    device: str = "cpu"  # "cuda" on a GPU node
    dtype: str = "float32"  # the weights\' dtype: "bfloat16" for a 7B model on GPUs
    tracking_uri: str | None = None  # None = local sqlite store; "null" = no tracking
    experiment: str = "unireward"

    def __post_init__(self) -> None:
        check_placement(self.device, self.dtype, "evaluate_policy")
        unknown = [s for s in self.splits if s == "train" or s not in POLICY_SPLITS]
        if not self.splits or unknown:
            raise ValueError(
                f"evaluate_policy.splits must be held-out splits (eval_seen, eval_unseen), "
                f"got {list(self.splits)}"
            )
        if self.questions_per_split < 3:
            raise ValueError("evaluate_policy.questions_per_split must be >= 3 (one per attribute)")
        if self.batch_size < 1 or self.max_new_tokens < 1 or self.threads < 1:
            raise ValueError("evaluate_policy batch_size, max_new_tokens, threads must be >= 1")


@dataclass
class EvaluatePolicyResult:
    output_dir: Path
    metrics: dict[str, float]
    seconds: float


def answer_questions(
    model,
    processor,
    questions: Sequence[PolicyQuestion],
    *,
    samples: int = 1,
    temperature: float = 0.0,
    seed: int = 0,
    batch_size: int = 32,
    max_new_tokens: int = 8,
) -> list[list[str]]:
    """`samples` answers per question (greedy when temperature is 0), stripped."""
    from unireward.judge.infer import generate_texts

    prompts = [(prompt_messages(q.question), [q.image]) for q in questions for _ in range(samples)]
    texts = generate_texts(
        model,
        processor,
        prompts,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        do_sample=temperature > 0,
        temperature=temperature if temperature > 0 else 1.0,
        seed=seed,
    )
    texts = [t.strip() for t in texts]
    return [texts[i * samples : (i + 1) * samples] for i in range(len(questions))]


def score_policy(
    model_dir: Path, config: EvaluatePolicyConfig, questions: dict[str, list[PolicyQuestion]]
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Accuracy of one checkpoint per split (flat `<split>/<key>`) and its answer rows."""
    import torch

    from unireward.model.tiny import load_checkpoint

    torch.set_num_threads(config.threads)
    model, processor = load_checkpoint(Path(model_dir), device=config.device, dtype=config.dtype)
    metrics: dict[str, float] = {}
    rows: list[dict[str, Any]] = []
    for split, qs in questions.items():
        answers = [
            a[0]
            for a in answer_questions(
                model,
                processor,
                qs,
                batch_size=config.batch_size,
                max_new_tokens=config.max_new_tokens,
            )
        ]
        metrics.update({f"{split}/{k}": v for k, v in accuracy(answers, qs).items()})
        rows.extend(
            {"qid": q.qid, "split": split, "attribute": q.attribute, "truth": q.answer, "answer": a}
            for q, a in zip(qs, answers, strict=True)
        )
    return metrics, rows


def run(
    config: EvaluatePolicyConfig,
    before_dir: Path,
    after_dir: Path,
    output_dir: Path,
    tags: dict[str, Any] | None = None,
) -> EvaluatePolicyResult:
    import time

    import pandas as pd

    from unireward import plots
    from unireward.tracking import make_tracker

    start = time.perf_counter()
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    questions = {
        s: make_questions(config.seed, config.questions_per_split, s, config.image_size)
        for s in config.splits
    }
    metrics: dict[str, float] = {}
    frames = []
    for name, model_dir in (("before", before_dir), ("after", after_dir)):
        m, rows = score_policy(Path(model_dir), config, questions)
        metrics.update({f"{name}/{k}": v for k, v in m.items()})
        frames.append(pd.DataFrame(rows).assign(model=name))
    for split in config.splits:
        metrics[f"delta/{split}/mean"] = (
            metrics[f"after/{split}/mean"] - metrics[f"before/{split}/mean"]
        )
    answers = pd.concat(frames)
    answers.to_parquet(output_dir / "answers.parquet", index=False)
    (output_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    figs = {"policy_accuracy": plots.policy_accuracy(metrics)}
    table = plots.samples_table(sample_rows(answers.to_dict("records"), questions))
    report = plots.html_page("evaluate_policy", figs, body=f"<h3>samples</h3>{table}")
    (output_dir / "report.html").write_text(report)
    tracker = make_tracker(config.tracking_uri, config.experiment)
    with tracker.start_run("evaluate_policy", tags={"stage": "evaluate_policy", **(tags or {})}):
        tracker.log_params(
            {"evaluate_policy": to_dict(config), "before": str(before_dir), "after": str(after_dir)}
        )
        tracker.log_metrics({k: v for k, v in metrics.items() if not math.isnan(v)})
        plots.log_outputs(tracker, output_dir, "evaluate_policy", figs)
    plots.close(figs)
    return EvaluatePolicyResult(output_dir, metrics, time.perf_counter() - start)


def sample_rows(
    answers: list[dict[str, Any]],
    questions: dict[str, list[PolicyQuestion]],
    per_split: int = SAMPLES_PER_SPLIT,
) -> list[dict[str, Any]]:
    """Rows for `plots.samples_table`: per split up to `per_split` questions with the answer
    before and after, those whose correctness DPO changed first, then the rest in order.
    `answers` are answers.parquet's rows (qid, split, truth, answer, model)."""
    import io

    said = {(a["model"], a["split"], a["qid"]): a["answer"] for a in answers}
    out = []
    for split, qs in questions.items():
        rows = []
        for q in qs:
            before, after = said.get(("before", split, q.qid)), said.get(("after", split, q.qid))
            if before is None or after is None:
                continue
            ok = (is_correct(before, q.answer), is_correct(after, q.answer))
            rows.append((ok[0] == ok[1], q, before, after, ok))
        rows.sort(key=lambda r: r[0])  # stable: changed ones first, in question order
        for _, q, before, after, (before_ok, after_ok) in rows[:per_split]:
            png = io.BytesIO()
            q.image.save(png, format="PNG")
            out.append(
                {
                    "split": split,
                    "question": q.question,
                    "truth": q.answer,
                    "before": before,
                    "after": after,
                    "before_ok": before_ok,
                    "after_ok": after_ok,
                    "image_png": png.getvalue(),
                }
            )
    return out


def format_table(metrics: dict[str, float]) -> str:
    """Before -> after per split and attribute."""
    lines = [f"{'split':<12} {'attribute':<10} {'before':>7} {'after':>7} {'delta':>7}"]
    splits = sorted({k.split("/")[1] for k in metrics if k.startswith("before/")})
    for split in splits:
        for key in ("colour", "shape", "position", "mean"):
            b, a = metrics.get(f"before/{split}/{key}"), metrics.get(f"after/{split}/{key}")
            if b is None or a is None:
                continue
            lines.append(f"{split:<12} {key:<10} {b:>7.3f} {a:>7.3f} {a - b:>+7.3f}")
    return "\n".join(lines)
