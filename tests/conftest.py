"""Shared fixtures: a tiny random judge checkpoint and a tiny shapes-world dataset, built once
per session (no downloads: the tokenizer is trained here, the weights are random)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from grpo_pairs import IMG1, IMG2, image_generation_pairs

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


# --------------------------------------------------------------------------- GRPO fixtures


@pytest.fixture(scope="session")
def format_judge(tiny_model_dir: Path, shapes_dataset: Path, tmp_path_factory) -> Path:
    """The tiny judge after 100 SFT steps on short well-formed CoTs with random verdicts."""
    from unireward.judge.unified_sft import record_stream
    from unireward.model.tiny import load_checkpoint, save_checkpoint
    from unireward.training import TrainParams, train_sft

    rows = [
        dataclasses.replace(
            r, id=f"{r.id}-{k}", label=k, cot=f"<think>x</think><answer>{k}</answer>"
        )
        for r in image_generation_pairs(shapes_dataset)
        for k in (IMG1, IMG2)
    ]
    out = tmp_path_factory.mktemp("format_judge")
    model, processor = load_checkpoint(tiny_model_dir)
    params = TrainParams(
        max_steps=100,
        batch_size=8,
        learning_rate=1e-2,
        warmup_ratio=0.0,
        save_steps=1000,
        logging_steps=50,
    )
    train_sft(
        model, processor, record_stream(rows, shapes_dataset, 0, cot=True), params, out / "work"
    )
    return save_checkpoint(model, processor, out / "judge")


@pytest.fixture(scope="session")
def easy_samples(shapes_dataset: Path, tmp_path_factory) -> Path:
    """A rejection_sample output whose hard set is the pairs with solution "Image 1 is better"."""
    from unireward.data.schema import write_records
    from unireward.think.grpo import HARD

    out = tmp_path_factory.mktemp("samples")
    hard = [r for r in image_generation_pairs(shapes_dataset) if r.label == IMG1]
    assert len(hard) == 2
    write_records(hard, out / HARD)
    return out


@pytest.fixture
def grpo_cli_inputs(format_judge: Path, easy_samples: Path, shapes_dataset: Path) -> list[str]:
    """`unireward grpo`'s input options for the format judge on the easy hard set."""
    return [
        *("--judge", str(format_judge)),
        *("--samples", str(easy_samples)),
        *("--dataset", str(shapes_dataset)),
    ]


@pytest.fixture(scope="session")
def oracle_pairs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """build_pairs with the shapes oracle on the shipped policy (tests/test_build_pairs.py checks
    its rows; tests/test_dpo.py trains on them)."""
    from unireward.policy.build_pairs import BuildPairsConfig, run

    policy = Path(__file__).resolve().parents[1] / "models" / "policy-tiny"
    from unireward.tracking import default_tracking_uri

    out = tmp_path_factory.mktemp("pairs")
    uri = default_tracking_uri(out / "store")  # tests/test_build_pairs.py reads its run
    cfg = BuildPairsConfig(judge="oracle", prompts=24, samples=6, tracking_uri=uri)
    result = run(cfg, policy, out)
    assert result.kept >= 4, result.stats  # the shipped policy's samples disagree often
    return out


# Property tests (hypothesis): reproducible in CI, a wider random search on request.
from hypothesis import settings  # noqa: E402

settings.register_profile("ci", max_examples=200, derandomize=True, database=None, deadline=None)
settings.register_profile("explore", max_examples=5000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
