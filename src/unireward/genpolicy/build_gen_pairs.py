"""Stage `build_gen_pairs`: Diffusion-DPO preference pairs for the text-to-image policy, judged
by the reward model in `image_generation` mode (UnifiedReward's generation half).

    unireward build_gen_pairs --policy models/gen-policy-tiny --judge-model runs/unified_sft \
        --output-dir runs/build_gen_pairs              # starts and stops its own vLLM server
    unireward build_gen_pairs ... --judge oracle       # ground truth ranks (the ceiling)
    unireward build_gen_pairs ... --judge random       # coin flips rank (the floor)

For each training caption (seen colour-shape combinations, `captions` of them, drawn from
`seed`) the policy draws `samples` images (DDIM, `num_inference_steps`, `guidance_scale`, the
noise seeded per caption). Then the same construction as `build_pairs` (`policy.pairs`): distinct
images, consecutive pairs judged pairwise (**pair ranking**; `swap: true` asks both orders and a
verdict that does not survive the swap is a tie), every distinct image scored pointwise (**point
sifting**; `point_sift: false` ranks by pair wins), chosen = best-scored winner, rejected =
worst-scored loser, the caption dropped when chosen <= rejected; every drop is counted by its
reason. The judge sees the images at `judge_image_size` (the policy draws at its own size; the
shapes-world judge was trained on 64 px renders).

The judges (`judge:`): `served` = the trained judge behind vLLM (`serving.client.RewardClient`,
as in `build_pairs`), `oracle` = the programmatic checker (`genpolicy.check`: the image with
more of the caption's attributes right wins, equal is a tie; its score is the count), `random`
= a seeded coin (verdicts and scores at random): the floor that says what pair construction
alone does.

Writes `media/*.png` (the chosen and rejected images, at the policy's size), `pairs.parquet`
(caption, chosen and rejected image paths, their scores, and provenance: caption id, ground
truth, judge, what the checker reads in each image), `stats.json` (kept, dropped per reason,
ties, unparseable verdicts, swap disagreements, and how often the kept chosen image is truly
more aligned than the rejected one, by the checker) and a run in MLflow with them. Fails with
a clear error, and writes no pairs, when the policy cannot encode a caption or the served judge
stops answering.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from unireward.config import to_dict
from unireward.data.shapes import SEEN_COMBOS, Scene, describe
from unireward.genpolicy.alignment import random_scenes
from unireward.genpolicy.check import ATTRIBUTES, alignment, read_image
from unireward.policy import pairs as P
from unireward.policy.build_pairs import JudgeClientParams, tally
from unireward.serving.client import JudgeUnavailable

JUDGE_KINDS = ("served", "oracle", "random")
OUTPUTS = ("pairs.parquet", "pairs.parquet.partial", "stats.json")


@dataclass(frozen=True)
class BuildGenPairsConfig:
    judge: str = "served"  # served | oracle | random
    judge_url: str = ""  # a running judge server; "" = start one on the judge checkpoint
    captions: int = 120  # training captions
    samples: int = 8  # N images per caption
    # Preference rows per kept caption: 1 = the paper's (best-scored winner, worst-scored
    # loser); more = also the other winner-loser pairs whose scores agree, widest margin first
    # (`policy.pairs.more_pairs`): more pairs from the same drawings.
    pairs_per_caption: int = 1
    num_inference_steps: int = 20
    guidance_scale: float = 3.0
    swap: bool = True
    cot: bool = False
    point_sift: bool = True
    max_request_errors: int = 0
    judge_image_size: int = 64
    seed: int = 0
    batch_size: int = 32
    threads: int = 1
    client: JudgeClientParams = field(default_factory=JudgeClientParams)
    prompt_templates: str = ""
    tracking_uri: str | None = None
    experiment: str = "unireward"

    def __post_init__(self) -> None:
        if self.judge not in JUDGE_KINDS:
            raise ValueError(
                f"build_gen_pairs.judge must be one of {JUDGE_KINDS}, got {self.judge!r}"
            )
        if self.judge_url and not self.judge_url.startswith(("http://", "https://")):
            raise ValueError(
                f"build_gen_pairs.judge_url must be http(s)://host:port/v1, got {self.judge_url!r}"
            )
        if self.captions < 1 or self.samples < 2 or self.pairs_per_caption < 1:
            raise ValueError(
                "build_gen_pairs.captions must be >= 1, samples >= 2 and pairs_per_caption >= 1"
            )
        if self.num_inference_steps < 1 or self.judge_image_size < 8:
            raise ValueError("build_gen_pairs.num_inference_steps >= 1, judge_image_size >= 8")


@dataclass
class GenCandidates:
    """One caption, its distinct drawn images and how often each was drawn."""

    cid: str
    scene: Scene
    images: list  # PIL, at the judge's size (what the judge sees)
    counts: list[int]
    drawn: list = field(default_factory=list)  # the same images at the policy's own size


@dataclass
class BuildGenPairsResult:
    output_dir: Path
    kept: int
    stats: dict[str, float]
    seconds: float


def training_captions(config: BuildGenPairsConfig) -> list[Scene]:
    """The captions pairs are built for: seen combinations, their own seed stream (never the
    held-out evaluation's, `alignment.held_out_captions`)."""
    return random_scenes(config.captions, SEEN_COMBOS, np.random.default_rng([config.seed, 7]))


def draw_candidates(pipe, config: BuildGenPairsConfig) -> list[GenCandidates]:
    """`samples` images per training caption, resized for the judge, identical ones merged."""
    import torch
    from PIL import Image

    torch.set_num_threads(config.threads)
    scenes = training_captions(config)
    captions = [describe(s) for s in scenes]
    pipe.tokenize(sorted(set(captions)))  # a caption the policy cannot encode fails here, first
    out = []
    per_call = max(1, config.batch_size // config.samples)
    for start in range(0, len(scenes), per_call):
        batch = scenes[start : start + per_call]
        prompts = [describe(s) for s in batch for _ in range(config.samples)]
        generator = torch.Generator().manual_seed(config.seed * 1_000_003 + start)
        images = pipe(
            prompts,
            num_inference_steps=config.num_inference_steps,
            guidance_scale=config.guidance_scale,
            generator=generator,
        )
        size = (config.judge_image_size, config.judge_image_size)
        for k, scene in enumerate(batch):
            drawn = images[k * config.samples : (k + 1) * config.samples]
            seen: dict[bytes, int] = {}
            distinct, counts, originals = [], [], []
            for image in drawn:
                key = image.tobytes()
                if key in seen:
                    counts[seen[key]] += 1
                    continue
                seen[key] = len(distinct)
                distinct.append(image.resize(size, Image.Resampling.BILINEAR))
                originals.append(image)
                counts.append(1)
            out.append(GenCandidates(f"cap{start + k:05d}", scene, distinct, counts, originals))
    return out


class GenOracle:
    """Ground truth by the programmatic checker: more of the caption's attributes right wins."""

    def __init__(self, scenes: dict[str, Scene]) -> None:
        self.scenes = scenes

    def right(self, caption: str, image) -> float:
        if caption not in self.scenes:
            raise KeyError(f"the oracle has no ground truth for caption {caption!r}")
        score = alignment(read_image(image), self.scenes[caption])
        return sum(score[a] for a in ATTRIBUTES)

    def judge_pairs(self, queries, swap: bool = False):
        from unireward.contract import PairVerdict
        from unireward.serving.client import PairJudgement

        out = []
        for q in queries:
            a, b = (self.right(q.prompt, m) for m in q.media)
            preferred = 0 if a == b else (1 if a > b else 2)
            verdict = PairVerdict(preferred=preferred)
            out.append(PairJudgement(verdict=verdict, forward=verdict, text=f"{a:g} vs {b:g}"))
        return out

    def score(self, queries):
        from unireward.contract import PointScore
        from unireward.serving.client import ScoreResult

        out = []
        for q in queries:
            value = 1.0 + self.right(q.prompt, q.media)  # 1-4 on the task's 1-5 scale
            out.append(ScoreResult(q.task, PointScore(score=value), str(value)))
        return out


class RandomJudge:
    """Coin flips: a verdict of 1 or 2 and a score anywhere on the scale, seeded."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng([seed, 11])

    def judge_pairs(self, queries, swap: bool = False):
        from unireward.contract import PairVerdict
        from unireward.serving.client import PairJudgement

        out = []
        for _ in queries:
            verdict = PairVerdict(preferred=int(self.rng.integers(1, 3)))
            out.append(PairJudgement(verdict=verdict, forward=verdict, text="random"))
        return out

    def score(self, queries):
        from unireward.contract import PointScore
        from unireward.serving.client import ScoreResult
        from unireward.tasks import SCORE_RANGE, Task

        lo, hi = SCORE_RANGE[Task.IMAGE_GENERATION]
        out = []
        for q in queries:
            value = float(self.rng.uniform(lo, hi))
            out.append(ScoreResult(q.task, PointScore(score=value), "random"))
        return out


def judge_candidates(judge, cands: Sequence[GenCandidates], config: BuildGenPairsConfig):
    """Pair verdicts and scores per caption, and the counts (as build_pairs.judge_candidates)."""
    from unireward.serving.client import PairQuery, ScoreQuery
    from unireward.tasks import Task

    task = Task.IMAGE_GENERATION
    pair_index, pair_queries, score_index, score_queries = [], [], [], []
    for k, c in enumerate(cands):
        caption = describe(c.scene)
        for i, j in P.pair_up(len(c.images)):
            pair_index.append((k, i, j))
            pair_queries.append(
                PairQuery(task, caption, (c.images[i], c.images[j]), cot=config.cot)
            )
        if config.point_sift and len(c.images) >= 2:
            for i, image in enumerate(c.images):
                score_index.append((k, i))
                score_queries.append(ScoreQuery(task, caption, image))
    judgements = judge.judge_pairs(pair_queries, swap=config.swap) if pair_queries else []
    scored = judge.score(score_queries) if score_queries else []
    verdicts, scores, counts = tally(
        [len(c.images) for c in cands], pair_index, judgements, score_index, scored
    )
    if not config.point_sift:
        scores = [P.win_counts(v, len(c.images)) for v, c in zip(verdicts, cands, strict=True)]
    return verdicts, scores, dict(counts)


def _pair_row(
    c: GenCandidates, n: int, chosen: int, rejected: int, scores, media: Path, output_dir: Path
) -> dict[str, Any]:
    """One preference row (its images saved under `media`), and whether the checker finds the
    chosen image truly more aligned than the rejected one."""
    paths = {}
    for side, index in (("chosen", chosen), ("rejected", rejected)):
        path = media / f"{c.cid}_{n:05d}_{side}.png"
        # Saved as drawn (the policy's size): gen_dpo trains on the policy's own samples, not on
        # a resized copy of them.
        c.drawn[index].save(path)
        paths[side] = str(path.relative_to(output_dir))
    right = [
        sum(alignment(read_image(c.images[i]), c.scene)[a] for a in ATTRIBUTES)
        for i in (chosen, rejected)
    ]
    truth = {"colour": c.scene.colour, "shape": c.scene.shape, "position": c.scene.position}
    return {
        "cid": c.cid,
        "caption": describe(c.scene),
        "chosen": paths["chosen"],
        "rejected": paths["rejected"],
        "chosen_score": float(scores[chosen]),
        "rejected_score": float(scores[rejected]),
        "truth": json.dumps(truth),
        "chosen_reads": json.dumps(_reading(c.images[chosen])),
        "rejected_reads": json.dumps(_reading(c.images[rejected])),
        "truly_better": right[0] > right[1],
    }


def _reading(image) -> dict[str, Any]:
    seen = read_image(image)
    return {"colour": seen.colour, "shape": seen.shape, "position": seen.position}


def run(
    config: BuildGenPairsConfig,
    policy_dir: Path,
    output_dir: Path,
    judge_model: Path | None = None,
    serve_config=None,
) -> BuildGenPairsResult:
    import pandas as pd

    from unireward.genpolicy.model import load_pipeline
    from unireward.policy.build_pairs import open_judge
    from unireward.prompt_templates import describe as describe_templates
    from unireward.prompt_templates import log_templates, resolve_templates
    from unireward.serving.serve import ServeConfig
    from unireward.tracking import make_tracker

    start = time.perf_counter()
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    for stale in OUTPUTS:
        (output_dir / stale).unlink(missing_ok=True)
    if config.judge == "served" and not config.judge_url and judge_model is None:
        raise ValueError(
            "build_gen_pairs with judge: served needs the judge checkpoint (--judge-model) or a "
            "running server (judge_url); or use --judge oracle / random"
        )
    templates = None
    if config.judge == "served":
        templates = resolve_templates(
            config.prompt_templates, None if config.judge_url else Path(judge_model)
        )
    pipe = load_pipeline(Path(policy_dir))
    cands = draw_candidates(pipe, config)
    drawn_s = time.perf_counter() - start
    judged_at = time.perf_counter()
    if config.judge == "served":
        with open_judge(
            config, [], judge_model, serve_config or ServeConfig(), output_dir, templates
        ) as (judge, source):
            verdicts, scores, counts = judge_candidates(judge, cands, config)
    else:
        source = {"judge": config.judge}
        judge = (
            GenOracle({describe(c.scene): c.scene for c in cands})
            if config.judge == "oracle"
            else RandomJudge(config.seed)
        )
        verdicts, scores, counts = judge_candidates(judge, cands, config)
    judge_s = time.perf_counter() - judged_at
    if counts.get("request_errors", 0) > config.max_request_errors:
        raise JudgeUnavailable(
            f"{counts['request_errors']} judge requests failed after "
            f"{config.client.max_retries} retries each (build_gen_pairs.max_request_errors: "
            f"{config.max_request_errors}); no pairs were written, run the stage again once "
            "the judge answers"
        )
    decisions = [P.select_pair(v, s) for v, s in zip(verdicts, scores, strict=True)]
    media = output_dir / "media"
    media.mkdir(exist_ok=True)
    rows, truly_better = [], 0
    provenance = {
        **source,
        "policy": str(policy_dir),
        "samples": config.samples,
        "pairs_per_caption": config.pairs_per_caption,
        "swap": config.swap,
        "scores": "pointwise" if config.point_sift else "pair_wins",
        "prompt_templates": describe_templates(templates) if templates is not None else None,
    }
    for c, v, sc, d in zip(cands, verdicts, scores, decisions, strict=True):
        for chosen, rejected in P.more_pairs(v, sc, d, config.pairs_per_caption):
            row = _pair_row(c, len(rows), chosen, rejected, sc, media, output_dir)
            truly_better += row.pop("truly_better")
            rows.append({**row, "provenance": json.dumps(provenance)})
    frame = pd.DataFrame(rows, columns=list(rows[0]) if rows else ["cid", "caption"])
    frame.to_parquet(output_dir / "pairs.parquet.partial")
    os.replace(output_dir / "pairs.parquet.partial", output_dir / "pairs.parquet")
    status = Counter(d.status for d in decisions)
    stats = {
        "captions": float(len(cands)),
        "kept": float(len(rows)),
        "captions_kept": float(len({row["cid"] for row in rows})),
        **{f"status/{s}": float(status.get(s, 0)) for s in P.STATUSES},
        **{k: float(v) for k, v in counts.items()},
        "distinct_images_mean": float(np.mean([len(c.images) for c in cands])),
        "chosen_truly_better": truly_better / len(rows) if rows else 0.0,
        "draw_seconds": round(drawn_s, 1),
        "judge_seconds": round(judge_s, 1),
    }
    (output_dir / "stats.json").write_text(json.dumps({**stats, **source}, indent=2) + "\n")
    tracker = make_tracker(config.tracking_uri, config.experiment)
    with tracker.start_run(
        f"build_gen_pairs-{config.judge}",
        tags={"stage": "build_gen_pairs", "judge": config.judge},
    ):
        tracker.log_params({"build_gen_pairs": to_dict(config), "policy": str(policy_dir)})
        if templates is not None:
            log_templates(tracker, templates)
        tracker.log_metrics(stats)
        tracker.log_artifact(output_dir / "stats.json")
    return BuildGenPairsResult(output_dir, len(rows), stats, time.perf_counter() - start)
