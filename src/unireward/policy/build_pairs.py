"""Stage 11, `build_pairs`: DPO preference pairs for the policy, judged by the reward model.

    unireward build_pairs --policy models/policy-tiny --judge-model runs/unified_sft \
        --output-dir runs/build_pairs                     # starts and stops its own vLLM server
    unireward build_pairs --policy models/policy-tiny --judge-url http://127.0.0.1:8000/v1 ...
    unireward build_pairs --policy models/policy-tiny --judge oracle --output-dir runs/pairs_oracle

For each training question (`questions.make_questions(split="train")`) the policy samples
`samples` answers at `temperature` (published: N=10, T=0.7). Then `pairs.py`: distinct answers,
consecutive pairs judged pairwise (**pair ranking**; `swap: true` asks both orders and a verdict
that does not survive the swap is a tie), every distinct answer scored pointwise (**point
sifting**), chosen = best-scored winner, rejected = worst-scored loser, the prompt dropped when
chosen <= rejected. A tie or an unparseable verdict never picks a side: the pair is left out and
counted. `cot: true` asks the pairs in chain-of-thought mode (a UnifiedReward-Think judge);
`point_sift: false` asks no pointwise scores and ranks by pair wins instead (`pairs.win_counts`),
for a judge trained pairwise only (profile `cot_judge` in experiments/params.yaml sets both).

The served judge is asked in the words it was trained on: the checkpoint's own prompts.yaml
(else the project's default), or the file `prompt_templates` names (it wins over the
checkpoint's own; with `judge_url` it is the only way to name a remote judge's prompts). The
file goes to the MLflow run, its version/sha256 into every row's provenance.

The judge (`judge:` in params, `judges.py`): `served` = the trained judge behind vLLM through
`RewardClient` (this stage launches `serve.run` on the given checkpoint unless `--judge-url`
points at a running server; the key comes from `serve.api_key_env`, and a fresh random key is
made for a server this stage starts itself when the variable is unset), or `oracle` = the
shapes-world ground truth (`ShapesOracle`), to tell "DPO works" apart from "the judge is right".

Writes `pairs.parquet` (TRL preference rows: `prompt`, `images`, `chosen`, `rejected`, plus
`chosen_score`, `rejected_score` and provenance: question id, ground truth, judge, sample
counts), `quarantine.parquet` (rows the great-expectations suite rejected, with the reason),
`stats.json` (kept, dropped per reason, ties, unparseable verdicts, swap disagreements, and how
often the kept chosen answer is actually right) and `report.html` (the pair statistics as a
figure: the Kubeflow HTML artifact); the run in MLflow gets stats.json, report.html and
`plots/pair_stats.png`.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unireward.config import to_dict
from unireward.model.tiny import check_placement
from unireward.policy import pairs as P
from unireward.policy.questions import PolicyQuestion, image_key, is_correct, make_questions
from unireward.prompt_templates import (
    PromptTemplates,
    describe,
    log_templates,
    resolve_templates,
)
from unireward.serving.client import JudgeUnavailable

JUDGE_KINDS = ("served", "oracle")
REPORT = "report.html"
# What the stage writes; removed when it starts, so a failed run leaves none of an earlier one.
OUTPUTS = ("pairs.parquet", "pairs.parquet.partial", "quarantine.parquet", "stats.json", REPORT)


@dataclass(frozen=True)
class JudgeClientParams:
    """How the served judge is called (serving.client.ClientConfig minus URL and key)."""

    max_concurrency: int = 16
    timeout_s: float = 60.0
    max_retries: int = 4


@dataclass(frozen=True)
class BuildPairsConfig:
    judge: str = "served"  # served | oracle
    judge_url: str = ""  # a running judge server; "" = start one on the judge checkpoint
    prompts: int = 120  # training questions
    samples: int = 8  # N answers per question (published: 10)
    temperature: float = 1.0  # published: 0.7 (the tiny policy is near-greedy at 0.7)
    swap: bool = True  # ask every pair in both orders; disagreement = tie
    cot: bool = False  # ask pairs in chain-of-thought mode (a UnifiedReward-Think judge)
    # True: point sifting with the judge's pointwise scores (published). False: no scores are
    # asked; a candidate's score is its number of pairwise wins (pair ranking alone), for a
    # judge trained pairwise only.
    point_sift: bool = True
    # Judge requests that may still fail after the client's retries (a server that died or
    # cannot be reached). Past it the stage fails with `JudgeUnavailable` and writes no pairs:
    # a pair set built from the part of the verdicts that came back would look complete.
    max_request_errors: int = 0
    # In the DAG: which judge builds the pairs (policy.judge_choice): "best" = the judge whose
    # evaluation is highest on judge_metric, or one named: unified | think | rs | grpo. A Think
    # judge is asked in CoT mode and ranks by pair wins (cot, point_sift set for it). The CLI's
    # --judge-model names a checkpoint directly.
    judge_from: str = "best"
    judge_metric: str = "image_understanding/pairwise_diff"
    seed: int = 0
    image_size: int = 64  # the shipped base's image size (models/base-tiny)
    batch_size: int = 64
    max_new_tokens: int = 8
    threads: int = 1
    device: str = "cpu"  # "cuda" on a GPU node
    dtype: str = "float32"  # the weights\' dtype: "bfloat16" for a 7B model on GPUs
    client: JudgeClientParams = field(default_factory=JudgeClientParams)
    # The served judge's prompt template file; "" = the judge checkpoint's own prompts.yaml,
    # else the project's default (a file named here wins over the checkpoint's own).
    prompt_templates: str = ""
    tracking_uri: str | None = None  # None = local sqlite store; "null" = no tracking
    experiment: str = "unireward"

    def __post_init__(self) -> None:
        check_placement(self.device, self.dtype, "build_pairs")
        if self.judge not in JUDGE_KINDS:
            raise ValueError(f"build_pairs.judge must be one of {JUDGE_KINDS}, got {self.judge!r}")
        if self.judge_url and not self.judge_url.startswith(("http://", "https://")):
            raise ValueError(
                f"build_pairs.judge_url must be http(s)://host:port/v1, got {self.judge_url!r}"
            )
        from unireward.policy.judge_choice import JUDGE_FROM

        if self.judge_from not in JUDGE_FROM:
            raise ValueError(
                f"build_pairs.judge_from must be one of {JUDGE_FROM}, got {self.judge_from!r}"
            )
        if self.prompts < 1 or self.samples < 2:
            raise ValueError("build_pairs.prompts must be >= 1 and samples >= 2 (a pair needs two)")
        errors = self.max_request_errors
        if isinstance(errors, bool) or not isinstance(errors, int) or errors < 0:
            raise ValueError(
                f"build_pairs.max_request_errors must be an integer >= 0, got {errors!r}"
            )
        if not 0 < self.temperature <= 2:
            raise ValueError(
                f"build_pairs.temperature must be in (0, 2], got {self.temperature}: "
                "greedy sampling gives N identical answers"
            )


@dataclass
class BuildPairsResult:
    output_dir: Path
    kept: int
    stats: dict[str, float]
    seconds: float


# --------------------------------------------------------------------------- sampling


@dataclass
class Candidates:
    """One question, its distinct sampled answers and how often each was sampled."""

    question: PolicyQuestion
    texts: list[str]
    counts: list[int]


def sample_candidates(policy_dir: Path, config: BuildPairsConfig) -> list[Candidates]:
    import torch

    from unireward.model.tiny import load_checkpoint
    from unireward.policy.evaluate_policy import answer_questions

    torch.set_num_threads(config.threads)
    model, processor = load_checkpoint(Path(policy_dir), device=config.device, dtype=config.dtype)
    questions = make_questions(config.seed, config.prompts, "train", config.image_size)
    answers = answer_questions(
        model,
        processor,
        questions,
        samples=config.samples,
        temperature=config.temperature,
        seed=config.seed,
        batch_size=config.batch_size,
        max_new_tokens=config.max_new_tokens,
    )
    out = []
    for q, texts in zip(questions, answers, strict=True):
        distinct, counts = P.distinct([t for t in texts if t])  # an empty answer is no candidate
        out.append(Candidates(q, distinct, counts))
    return out


# --------------------------------------------------------------------------- judging


def judge_candidates(
    judge, cands: Sequence[Candidates], swap: bool, cot: bool = False, point_sift: bool = True
):
    """Pair verdicts and scores for every question: ([{(i, j): verdict}], [[score]], stats).
    Without `point_sift` the scores are the pair-win counts (`pairs.win_counts`)."""
    from unireward.serving.client import PairQuery, ScoreQuery
    from unireward.tasks import Task

    task = Task.IMAGE_UNDERSTANDING
    pair_index, pair_queries = [], []
    score_index, score_queries = [], []
    for k, c in enumerate(cands):
        for i, j in P.pair_up(len(c.texts)):
            pair_index.append((k, i, j))
            pair_queries.append(
                PairQuery(
                    task,
                    c.question.question,
                    (c.question.image,),
                    (c.texts[i], c.texts[j]),
                    cot=cot,
                )
            )
        if point_sift and len(c.texts) >= 2:
            for i, text in enumerate(c.texts):
                score_index.append((k, i))
                score_queries.append(ScoreQuery(task, c.question.question, c.question.image, text))
    judgements = judge.judge_pairs(pair_queries, swap=swap) if pair_queries else []
    scored = judge.score(score_queries) if score_queries else []
    verdicts, scores, counts = tally(
        [len(c.texts) for c in cands], pair_index, judgements, score_index, scored
    )
    if not point_sift:
        scores = [P.win_counts(v, len(c.texts)) for v, c in zip(verdicts, cands, strict=True)]
    return verdicts, scores, dict(counts)


def tally(
    sizes: Sequence[int],
    pair_index: Sequence[tuple[int, int, int]],
    judgements: Sequence[Any],
    score_index: Sequence[tuple[int, int]],
    scored: Sequence[Any],
) -> tuple[list[dict[tuple[int, int], int | None]], list[list[float | None]], dict[str, int]]:
    """The judge's answers per prompt: `verdicts[k][(i, j)]` (pair ranking), `scores[k][i]`
    (point sifting; None where not asked or unparseable) and the counts every pair builder
    reports (ties, unparseable verdicts and scores, swap disagreements, request errors).
    `sizes[k]` is prompt k's number of candidates; `pair_index` / `score_index` say which
    prompt and candidates each judgement / score belongs to (`build_gen_pairs` shares it)."""
    verdicts: list[dict[tuple[int, int], int | None]] = [{} for _ in sizes]
    scores: list[list[float | None]] = [[None] * n for n in sizes]
    counts: Counter[str] = Counter()
    for (k, i, j), jd in zip(pair_index, judgements, strict=True):
        verdicts[k][(i, j)] = jd.verdict.preferred
        counts["pairs_judged"] += 1
        counts["pair_ties"] += jd.verdict.preferred == 0
        counts["pair_unparseable"] += jd.verdict.preferred is None
        counts["swap_disagreements"] += bool(jd.disagree)
        counts["request_errors"] += jd.error is not None
    values = set()
    for (k, i), res in zip(score_index, scored, strict=True):
        scores[k][i] = res.score.score
        values.add(res.score.score)
        counts["scores_asked"] += 1
        counts["scores_unparseable"] += res.score.score is None
        counts["request_errors"] += res.error is not None
    # A judge that gives every answer the same score cannot sift: worth seeing at a glance.
    counts["score_distinct_values"] = len(values - {None})
    return verdicts, scores, dict(counts)


@contextlib.contextmanager
def open_judge(
    config: BuildPairsConfig,
    cands: Sequence[Candidates],
    judge_model: Path | None,
    serve_config,
    output_dir: Path,
    templates: PromptTemplates | None = None,
) -> Iterator[tuple[Any, dict[str, Any]]]:
    """The judge for `config.judge`, with provenance; a server this stage starts lives only for
    the `with` block. A served judge is asked in `templates`' words (None = the default)."""
    if config.judge == "oracle":
        from unireward.policy.judges import ShapesOracle

        truth = {image_key(c.question.question, c.question.image): c.question.answer for c in cands}
        yield ShapesOracle(truth), {"judge": "oracle"}
        return
    from unireward.serving import serve
    from unireward.serving.client import ClientConfig, RewardClient

    def client(url: str, key: str) -> RewardClient:
        return RewardClient(
            ClientConfig(
                base_url=url,
                api_key=key,
                model=serve_config.served_model_name,
                max_concurrency=config.client.max_concurrency,
                timeout_s=config.client.timeout_s,
                max_retries=config.client.max_retries,
                prompt_templates=templates,
            )
        )

    if config.judge_url:
        yield (
            client(config.judge_url, serve.api_key_from_env(serve_config)),
            {"judge": "served", "judge_url": config.judge_url},
        )
        return
    if judge_model is None:
        raise ValueError(
            "build_pairs with judge: served needs the judge checkpoint "
            "(--judge-model) or a running server (judge_url)"
        )
    with (
        _api_key(serve_config.api_key_env),
        serve.run(serve_config, output_dir / "serve", model_dir=Path(judge_model)) as server,
    ):
        yield (
            client(server.base_url, server.api_key),
            {"judge": "served", "judge_model": str(judge_model)},
        )


@contextlib.contextmanager
def _api_key(env: str) -> Iterator[None]:
    """A fresh random key for a server this stage starts, unless the environment has one."""
    if os.environ.get(env):
        yield
        return
    os.environ[env] = secrets.token_urlsafe(24)
    try:
        yield
    finally:
        os.environ.pop(env, None)


# --------------------------------------------------------------------------- rows


def preference_row(c: Candidates, d: P.PairDecision, provenance: dict[str, Any]) -> dict[str, Any]:
    """One TRL preference row (conversational prompt/chosen/rejected, images) + provenance."""
    from unireward.policy.questions import prompt_messages

    def said(text: str) -> list[dict[str, Any]]:
        return [{"role": "assistant", "content": [{"type": "text", "text": text}]}]

    assert d.chosen is not None and d.rejected is not None
    chosen, rejected = c.texts[d.chosen], c.texts[d.rejected]
    return {
        "prompt": prompt_messages(c.question.question),
        "images": [c.question.image],
        "chosen": said(chosen),
        "rejected": said(rejected),
        "chosen_score": d.chosen_score,
        "rejected_score": d.rejected_score,
        "qid": c.question.qid,
        "attribute": c.question.attribute,
        "truth": c.question.answer,
        "chosen_correct": is_correct(chosen, c.question.answer),
        "rejected_correct": is_correct(rejected, c.question.answer),
        "chosen_count": c.counts[d.chosen],
        "rejected_count": c.counts[d.rejected],
        "provenance": json.dumps(provenance, sort_keys=True),
    }


def validate_rows(rows: list[dict[str, Any]]) -> tuple[list[int], dict[int, str]]:
    """Great-expectations checks of the preference table: (good row numbers, {bad: reason})."""
    import great_expectations as gx
    import pandas as pd

    from unireward.data.expectations import run_suites

    e = gx.expectations
    frame = pd.DataFrame(
        {
            "chosen": [r["chosen"][0]["content"][0]["text"] for r in rows],
            "rejected": [r["rejected"][0]["content"][0]["text"] for r in rows],
            "margin": [r["chosen_score"] - r["rejected_score"] for r in rows],
            "n_images": [len(r["images"]) for r in rows],
            "chosen_len": [len(r["chosen"][0]["content"][0]["text"].strip()) for r in rows],
            "rejected_len": [len(r["rejected"][0]["content"][0]["text"].strip()) for r in rows],
        }
    )
    suite = [
        e.ExpectColumnValuesToBeBetween(
            column="margin",
            min_value=0,
            strict_min=True,
            meta={"check": "chosen_score_not_above_rejected"},
        ),
        e.ExpectColumnValuesToBeBetween(
            column="n_images", min_value=1, max_value=1, meta={"check": "not_one_image"}
        ),
        e.ExpectColumnValuesToBeBetween(
            column="chosen_len", min_value=1, meta={"check": "empty_chosen"}
        ),
        e.ExpectColumnValuesToBeBetween(
            column="rejected_len", min_value=1, meta={"check": "empty_rejected"}
        ),
    ]
    if frame.empty:
        return [], {}
    outcome = run_suites({"pairs": frame}, {"pairs": suite})
    bad: dict[int, str] = {}
    for check, idx in outcome.rows.get("pairs", {}).items():
        for i in idx:
            bad.setdefault(i, check)
    # GX 1.x has no "columns differ" expectation: this one is checked here.
    same = frame.index[frame["chosen"].str.strip() == frame["rejected"].str.strip()]
    for i in same:
        bad.setdefault(int(i), "chosen_equals_rejected")
    return [i for i in range(len(rows)) if i not in bad], bad


def write_rows(rows: list[dict[str, Any]], path: Path) -> None:
    """TRL rows as parquet; images as PNG bytes (datasets' Image feature reads them back)."""
    from datasets import Dataset, Features, Image, Value
    from datasets import List as DList

    msg = DList(
        {
            "role": Value("string"),
            "content": DList({"type": Value("string"), "text": Value("string")}),
        }
    )
    features = Features(
        {
            "prompt": msg,
            "images": DList(Image()),
            "chosen": msg,
            "rejected": msg,
            "chosen_score": Value("float64"),
            "rejected_score": Value("float64"),
            "qid": Value("string"),
            "attribute": Value("string"),
            "truth": Value("string"),
            "chosen_correct": Value("bool"),
            "rejected_correct": Value("bool"),
            "chosen_count": Value("int64"),
            "rejected_count": Value("int64"),
            "provenance": Value("string"),
        }
    )

    # A prompt's content mixes {"type": "image"} and {"type": "text", "text": ...}: one schema.
    def fill(messages):
        return [
            {
                "role": m["role"],
                "content": [{"type": p["type"], "text": p.get("text")} for p in m["content"]],
            }
            for m in messages
        ]

    rows = [{**r, "prompt": fill(r["prompt"])} for r in rows]
    ds = (
        Dataset.from_list(rows, features=features)
        if rows
        else Dataset.from_dict({k: [] for k in features}, features=features)
    )
    ds.to_parquet(str(path))


def load_pairs(path: Path):
    """`pairs.parquet` back as a datasets.Dataset (images as PIL), prompt parts cleaned."""
    import pyarrow.parquet as pq
    from datasets import Dataset

    if pq.read_metadata(str(path)).num_rows == 0:  # datasets refuses an empty parquet file
        return Dataset.from_list([])
    ds = Dataset.from_parquet(str(path))

    def clean(row):
        row["prompt"] = [
            {
                "role": m["role"],
                "content": [{k: v for k, v in p.items() if v is not None} for p in m["content"]],
            }
            for m in row["prompt"]
        ]
        return row

    return ds.map(clean)


# --------------------------------------------------------------------------- stage


def pair_statistics(
    cands: Sequence[Candidates],
    decisions: Sequence[P.PairDecision],
    judge_counts: dict[str, int],
    rows: Sequence[dict[str, Any]],
    quarantined: int,
) -> dict[str, float]:
    status = Counter(d.status for d in decisions)
    stats: dict[str, float] = {
        "prompts": len(cands),
        "distinct_answers_mean": sum(len(c.texts) for c in cands) / max(len(cands), 1),
        "prompts_with_right_answer": sum(
            any(is_correct(t, c.question.answer) for t in c.texts) for c in cands
        ),
        **{f"dropped_{s}": status[s] for s in P.STATUSES if s != "kept"},
        "decided_kept": status["kept"],
        "quarantined": quarantined,
        "kept": len(rows),
        **{
            k: judge_counts.get(k, 0)
            for k in (
                "pairs_judged",
                "pair_ties",
                "pair_unparseable",
                "swap_disagreements",
                "request_errors",
                "scores_asked",
                "scores_unparseable",
                "score_distinct_values",
            )
        },
    }
    if rows:
        stats["kept_chosen_correct"] = sum(r["chosen_correct"] for r in rows) / len(rows)
        stats["kept_rejected_correct"] = sum(r["rejected_correct"] for r in rows) / len(rows)
    return stats


def run(
    config: BuildPairsConfig,
    policy_dir: Path,
    output_dir: Path,
    judge_model: Path | None = None,
    serve_config=None,
    tags: dict[str, Any] | None = None,
) -> BuildPairsResult:
    import pandas as pd

    from unireward import plots
    from unireward.serving.serve import ServeConfig
    from unireward.tracking import make_tracker

    start = time.perf_counter()
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    for stale in OUTPUTS:  # an earlier run's pairs must not outlive a run that fails
        (output_dir / stale).unlink(missing_ok=True)
    serve_config = serve_config or ServeConfig()
    if config.judge == "served" and not config.judge_url and judge_model is None:
        raise ValueError(
            "build_pairs with judge: served needs the judge checkpoint "
            "(--judge-model) or a running server (judge_url); or use --judge oracle"
        )
    templates = None
    if config.judge == "served":  # before sampling: a bad template file fails at once
        own = None if config.judge_url else Path(judge_model)
        templates = resolve_templates(config.prompt_templates, own)
    cands = sample_candidates(Path(policy_dir), config)
    sampled_s = time.perf_counter() - start
    opened = open_judge(config, cands, judge_model, serve_config, output_dir, templates)
    with opened as (judge, source):
        judged_at = time.perf_counter()
        verdicts, scores, counts = judge_candidates(
            judge, cands, config.swap, config.cot, config.point_sift
        )
        judge_s = time.perf_counter() - judged_at
    if counts.get("request_errors", 0) > config.max_request_errors:
        asked = counts.get("pairs_judged", 0) + counts.get("scores_asked", 0)
        raise JudgeUnavailable(
            f"{counts['request_errors']} of {asked} "
            f"judge requests failed after {config.client.max_retries} retries each "
            f"(build_pairs.max_request_errors: {config.max_request_errors}); the judge server "
            f"died or cannot be reached ({source.get('judge_url') or source.get('judge_model')}). "
            "No pairs were written; run the stage again once the judge answers"
        )
    decisions = [P.select_pair(v, s) for v, s in zip(verdicts, scores, strict=True)]
    provenance = {
        **source,
        "policy": str(policy_dir),
        "samples": config.samples,
        "temperature": config.temperature,
        "swap": config.swap,
        "cot": config.cot,
        "scores": "pointwise" if config.point_sift else "pair_wins",
        "prompt_templates": describe(templates) if templates is not None else None,
    }
    rows = [
        preference_row(c, d, provenance)
        for c, d in zip(cands, decisions, strict=True)
        if d.status == "kept"
    ]
    good, bad = validate_rows(rows)
    pd.DataFrame(
        [{"qid": rows[i]["qid"], "reason": reason} for i, reason in bad.items()],
        columns=["qid", "reason"],
    ).to_parquet(output_dir / "quarantine.parquet")
    kept = [rows[i] for i in good]
    write_rows(kept, output_dir / "pairs.parquet.partial")
    os.replace(output_dir / "pairs.parquet.partial", output_dir / "pairs.parquet")
    stats = pair_statistics(cands, decisions, counts, kept, len(bad))
    stats.update(sample_seconds=round(sampled_s, 1), judge_seconds=round(judge_s, 1))
    (output_dir / "stats.json").write_text(json.dumps({**stats, **source}, indent=2) + "\n")
    asked, kept_by = (
        Counter(c.question.attribute for c in cands),
        Counter(r["attribute"] for r in kept),
    )
    figs = {"pair_stats": plots.pair_statistics(stats, asked, kept_by)}
    (output_dir / REPORT).write_text(plots.html_page("build_pairs", figs))
    tracker = make_tracker(config.tracking_uri, config.experiment)
    with tracker.start_run(
        f"build_pairs-{config.judge}",
        tags={"stage": "build_pairs", "judge": config.judge, **(tags or {})},
    ):
        tracker.log_params({"build_pairs": to_dict(config), "policy": str(policy_dir), **source})
        if templates is not None:
            log_templates(tracker, templates)
        tracker.log_metrics(stats)
        tracker.log_artifact(output_dir / "stats.json")
        tracker.log_artifact(output_dir / REPORT)
        plots.log_figures(tracker, figs)
    plots.close(figs)
    return BuildPairsResult(output_dir, len(kept), stats, time.perf_counter() - start)


def run_with_best_judge(
    config: BuildPairsConfig,
    policy_dir: Path,
    output_dir: Path,
    judges: dict[str, Path],
    evaluations: dict[str, Path],
    serve_config=None,
) -> tuple[BuildPairsResult, dict[str, Any]]:
    """`run` with the judge `judge_from` picks among the DAG's judges ({name: checkpoint},
    {name: evaluation dir}; policy.judge_choice), set up for it (a Think judge asks in CoT and
    ranks by pair wins); the choice and its reason go to judge_choice.json and the MLflow tags."""
    from unireward.policy import judge_choice

    choice = judge_choice.choose(
        judge_choice.read_evaluations(evaluations), config.judge_from, config.judge_metric
    )
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "judge_choice.json").write_text(json.dumps(choice, indent=2) + "\n")
    result = run(
        judge_choice.configure(config, choice["judge"]),
        policy_dir,
        output_dir,
        Path(judges[choice["judge"]]),
        serve_config,
        tags={"judge_from": choice["judge"]},
    )
    return result, choice
