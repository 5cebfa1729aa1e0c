"""Caption alignment of a text-to-image policy, measured against the world's ground truth: the
policy draws each held-out caption, `check.read_image` reads what it drew, and each attribute is
right or wrong. Seen captions use the colour-shape combinations the policy trained on, unseen
ones the held-out `shapes.UNSEEN_COMBOS`.

    captions = held_out_captions(n=100, seed=1)          # {"eval_seen": [...], ...}
    metrics = caption_alignment(pipe, captions, seed=0)  # {"eval_seen/all": 0.41, ...}
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from unireward.data.shapes import POSITIONS, SEEN_COMBOS, UNSEEN_COMBOS, Scene, describe
from unireward.genpolicy.check import ATTRIBUTES, alignment, read_image

SPLITS = ("eval_seen", "eval_unseen")


def random_scenes(n: int, combos: Sequence[tuple[str, str]], rng: np.random.Generator):
    """`n` image scenes: a (colour, shape) of `combos` and a position, uniformly."""
    out = []
    for _ in range(n):
        colour, shape = combos[int(rng.integers(len(combos)))]
        out.append(Scene(shape, colour, position=POSITIONS[int(rng.integers(len(POSITIONS)))]))
    return out


def held_out_captions(n: int, seed: int) -> dict[str, list[Scene]]:
    """`n` scenes per split (seen, unseen combinations), from their own seed streams."""
    return {
        "eval_seen": random_scenes(n, SEEN_COMBOS, np.random.default_rng([seed, 1])),
        "eval_unseen": random_scenes(n, UNSEEN_COMBOS, np.random.default_rng([seed, 2])),
    }


def caption_alignment(
    pipe,
    scenes: dict[str, list[Scene]],
    seed: int = 0,
    batch_size: int = 32,
    num_inference_steps: int = 20,
    guidance_scale: float = 3.0,
) -> dict[str, float]:
    """Per split: the share of images right on each attribute and on all of them."""
    metrics: dict[str, float] = {}
    for split, split_scenes in scenes.items():
        totals = dict.fromkeys((*ATTRIBUTES, "all"), 0.0)
        for start in range(0, len(split_scenes), batch_size):
            batch = split_scenes[start : start + batch_size]
            generator = torch.Generator().manual_seed(seed + start)
            images = pipe(
                [describe(s) for s in batch],
                num_inference_steps=num_inference_steps,
                guidance_scale=guidance_scale,
                generator=generator,
            )
            for image, scene in zip(images, batch, strict=True):
                for key, value in alignment(read_image(image), scene).items():
                    totals[key] += value
        for key, value in totals.items():
            metrics[f"{split}/{key}"] = value / max(len(split_scenes), 1)
    return metrics
