"""The labelled image-generation pairs the GRPO tests and fixtures (conftest.py) train on, and
the `grpo` settings of a tiny run (test_grpo.py, test_deepspeed.py).

`pythonpath = ["tests"]` makes it importable as `grpo_pairs`.
"""

from __future__ import annotations

from pathlib import Path

IMG1, IMG2 = "Image 1 is better", "Image 2 is better"

# A tiny GRPO run: 4 completions of at most 24 tokens per prompt, a checkpoint every 2 steps.
TINY_GRPO = {
    "num_generations": 4,
    "max_completion_length": 24,
    "save_steps": 2,
    "learning_rate": 1e-3,
    "tracking_uri": "null",
}


def image_generation_pairs(dataset: Path) -> list:
    """The labelled (non-tied) image-generation pairs of the train split."""
    from unireward.data.schema import read_records

    return [
        r
        for r in read_records(dataset)
        if r.split == "train"
        and r.task == "image_generation"
        and r.mode == "pairwise"
        and r.label in (IMG1, IMG2)
    ]
