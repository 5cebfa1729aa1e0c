"""Stage `evaluate_gen_policy`: the text-to-image policy before and after `gen_dpo`, on held-out
captions, seen and unseen colour-shape combinations.

    unireward evaluate_gen_policy --before models/gen-policy-tiny --after runs/gen_dpo \
        --output-dir runs/evaluate_gen_policy [--judge-model runs/unified_sft]

The independent measure is caption alignment against the world's ground truth
(`genpolicy.alignment`: the programmatic checker reads colour, shape and position off each
drawn image): per split, the share of images right on each attribute and on all three, before,
after and the difference. Both policies draw the same captions from the same noise. With a
judge (`--judge-model`, or `judge_url`), its mean pointwise score of the drawn images is a
second column, not an independent one (the pairs came from the same judge).

Writes `metrics.json` (`before/<split>/<attr>`, `after/...`, `delta/...`, and
`judge_score/...` with a judge), `samples.png` (a grid: each row one caption, before then after)
and `report.html` (the grid and the table: the Kubeflow HTML artifact); one MLflow run with
them.
"""

from __future__ import annotations

import base64
import io
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from unireward.config import to_dict
from unireward.data.shapes import describe
from unireward.genpolicy.alignment import SPLITS, caption_alignment, held_out_captions
from unireward.genpolicy.check import ATTRIBUTES
from unireward.policy.build_pairs import JudgeClientParams


@dataclass(frozen=True)
class EvaluateGenPolicyConfig:
    captions: int = 100  # per split
    seed: int = 1
    num_inference_steps: int = 20
    guidance_scale: float = 3.0
    grid_captions: int = 8
    judge_url: str = ""
    judge_image_size: int = 64
    client: JudgeClientParams = field(default_factory=JudgeClientParams)
    threads: int = 1
    tracking_uri: str | None = None
    experiment: str = "unireward"

    def __post_init__(self) -> None:
        if self.captions < 1 or self.num_inference_steps < 1 or self.grid_captions < 0:
            raise ValueError(
                "evaluate_gen_policy.captions >= 1, num_inference_steps >= 1, grid_captions >= 0"
            )


@dataclass
class EvaluateGenPolicyResult:
    output_dir: Path
    metrics: dict[str, float]
    seconds: float


def _grid(before, after, scenes, seed: int, config: EvaluateGenPolicyConfig):
    """Rows of (before, after) images for the first `grid_captions` seen captions."""
    from PIL import Image, ImageDraw

    scenes = scenes[: config.grid_captions]
    captions = [describe(s) for s in scenes]
    drawn = []
    for pipe in (before, after):
        generator = torch.Generator().manual_seed(seed)
        drawn.append(
            pipe(
                captions,
                num_inference_steps=config.num_inference_steps,
                guidance_scale=config.guidance_scale,
                generator=generator,
            )
        )
    cell, label = 64, 200
    grid = Image.new("RGB", (label + 2 * cell, max(1, len(scenes)) * cell), (255, 255, 255))
    draw = ImageDraw.Draw(grid)
    for row, caption in enumerate(captions):
        draw.text((4, row * cell + cell // 2 - 6), caption, fill=(0, 0, 0))
        for col in range(2):
            image = drawn[col][row].resize((cell, cell), Image.Resampling.NEAREST)
            grid.paste(image, (label + col * cell, row * cell))
    return grid


def judge_scores(pipe, scenes, config: EvaluateGenPolicyConfig, judge, seed: int) -> float:
    """The judge's mean pointwise score (normalised to [0, 1]) of what `pipe` draws."""
    from PIL import Image

    from unireward.serving.client import ScoreQuery
    from unireward.tasks import Task

    captions = [describe(s) for s in scenes]
    images = pipe(
        captions,
        num_inference_steps=config.num_inference_steps,
        guidance_scale=config.guidance_scale,
        generator=torch.Generator().manual_seed(seed),
    )
    size = (config.judge_image_size, config.judge_image_size)
    queries = [
        ScoreQuery(Task.IMAGE_GENERATION, c, i.resize(size, Image.Resampling.BILINEAR))
        for c, i in zip(captions, images, strict=True)
    ]
    values = [r.normalised for r in judge.score(queries) if r.normalised is not None]
    return sum(values) / len(values) if values else float("nan")


def run(
    config: EvaluateGenPolicyConfig,
    before_dir: Path,
    after_dir: Path,
    output_dir: Path,
    judge_model: Path | None = None,
    serve_config=None,
) -> EvaluateGenPolicyResult:
    import contextlib

    from unireward.genpolicy.model import load_pipeline
    from unireward.tracking import make_tracker

    start = time.perf_counter()
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(config.threads)
    before, after = load_pipeline(Path(before_dir)), load_pipeline(Path(after_dir))
    scenes = held_out_captions(config.captions, config.seed)
    metrics: dict[str, float] = {}
    for name, pipe in (("before", before), ("after", after)):
        measured = caption_alignment(
            pipe,
            scenes,
            seed=config.seed,
            num_inference_steps=config.num_inference_steps,
            guidance_scale=config.guidance_scale,
        )
        metrics.update({f"{name}/{k}": v for k, v in measured.items()})
    for split in SPLITS:
        for attr in (*ATTRIBUTES, "all"):
            key = f"{split}/{attr}"
            metrics[f"delta/{key}"] = metrics[f"after/{key}"] - metrics[f"before/{key}"]
    if judge_model is not None or config.judge_url:
        from unireward.policy.build_pairs import open_judge
        from unireward.serving.serve import ServeConfig

        judge_config = _JudgeAccess(config)
        with open_judge(
            judge_config, [], judge_model, serve_config or ServeConfig(), output_dir
        ) as (judge, _):
            for name, pipe in (("before", before), ("after", after)):
                for split, split_scenes in scenes.items():
                    metrics[f"judge_score/{name}/{split}"] = judge_scores(
                        pipe, split_scenes, config, judge, config.seed
                    )
    grid = _grid(before, after, scenes["eval_seen"], config.seed, config)
    grid.save(output_dir / "samples.png")
    (output_dir / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    (output_dir / "report.html").write_text(_report(metrics, grid))
    tracker = make_tracker(config.tracking_uri, config.experiment)
    with tracker.start_run("evaluate_gen_policy", tags={"stage": "evaluate_gen_policy"}):
        tracker.log_params(
            {
                "evaluate_gen_policy": to_dict(config),
                "before": str(before_dir),
                "after": str(after_dir),
            }
        )
        tracker.log_metrics(metrics)
        for name in ("metrics.json", "samples.png", "report.html"):
            tracker.log_artifact(output_dir / name)
    with contextlib.suppress(Exception):
        grid.close()
    return EvaluateGenPolicyResult(output_dir, metrics, time.perf_counter() - start)


@dataclass(frozen=True)
class _JudgeAccess:
    """What `build_pairs.open_judge` reads of a config, for the served judge."""

    config: EvaluateGenPolicyConfig
    judge: str = "served"

    @property
    def judge_url(self) -> str:
        return self.config.judge_url

    @property
    def client(self) -> JudgeClientParams:
        return self.config.client


def _report(metrics: dict[str, float], grid) -> str:
    buffer = io.BytesIO()
    grid.save(buffer, format="PNG")
    image = base64.b64encode(buffer.getvalue()).decode()
    rows = "".join(
        f"<tr><td>{split}</td><td>{attr}</td><td>{metrics[f'before/{split}/{attr}']:.2f}</td>"
        f"<td>{metrics[f'after/{split}/{attr}']:.2f}</td>"
        f"<td>{metrics[f'delta/{split}/{attr}']:+.2f}</td></tr>"
        for split in SPLITS
        for attr in (*ATTRIBUTES, "all")
    )
    return (
        "<html><body><h1>evaluate_gen_policy</h1><table border=1><tr><th>split</th>"
        "<th>attribute</th><th>before</th><th>after</th><th>delta</th></tr>"
        f"{rows}</table><h2>before | after</h2><img src='data:image/png;base64,{image}'>"
        "</body></html>"
    )
