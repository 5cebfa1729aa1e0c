"""Shared fixtures: a tiny random judge checkpoint and a tiny shapes-world dataset, built once
per session (no downloads: the tokenizer is trained here, the weights are random)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

TINY_SHAPES = {"seed": 3, "frames": 4, "train_per_task_mode": 4, "eval_per_task_mode": 3}


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A `TinyModelConfig.preset("test")` Qwen2.5-VL with the project's tokenizer corpus."""
    from unireward.data.shapes import ShapesConfig
    from unireward.model.pretrain_base import tokenizer_corpus
    from unireward.model.tiny import TinyModelConfig, build_tiny, save_checkpoint

    cfg = TinyModelConfig.preset("test")
    model, processor = build_tiny(cfg, tokenizer_corpus(ShapesConfig(frames=4), 200))
    return save_checkpoint(model, processor, tmp_path_factory.mktemp("model") / "tiny")


@pytest.fixture(scope="session")
def shapes_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A canonical dataset with every (split, task, mode), a few records each."""
    from unireward.data.shapes import ShapesConfig, generate

    root = tmp_path_factory.mktemp("shapes")
    generate(ShapesConfig(**TINY_SHAPES), root)
    return root


@pytest.fixture(scope="session")
def vl_inputs():
    """`make(processor, n_images, size)`: processor inputs for `n_images` random images with
    per-image markers and a caption, rendered through the processor's chat template."""
    import numpy as np
    from PIL import Image

    def make(processor, n_images: int = 2, size: int = 56):
        content = []
        for i in range(n_images):
            content += [{"type": "text", "text": f"Image {i + 1}:"}, {"type": "image"}]
        content.append({"type": "text", "text": "Caption: a red circle at the top left"})
        text = processor.apply_chat_template(
            [{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False
        )
        rng = np.random.default_rng(0)
        images = [
            Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8))
            for _ in range(n_images)
        ]
        return processor(text=[text], images=images, return_tensors="pt")

    return make
