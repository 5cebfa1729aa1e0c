"""pretrain_base: perception data has no judging in it, every question kind is reported, and the
stage writes a loadable checkpoint with its perception report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from unireward.config import from_dict
from unireward.data.shapes import ShapesConfig, perception_example
from unireward.model.pretrain_base import (
    PretrainBaseConfig,
    perception_to_example,
    question_kind,
    run,
)
from unireward.model.tiny import load_checkpoint
from unireward.tasks import PAIR_ANSWERS, TIE_ANSWERS


def test_every_perception_question_has_a_kind_and_no_judge_answer() -> None:
    cfg = ShapesConfig(frames=4)
    rng = np.random.default_rng(0)
    judge_strings = {a for pair in PAIR_ANSWERS.values() for a in pair} | set(TIE_ANSWERS.values())
    kinds = set()
    for _ in range(300):
        ex = perception_to_example(perception_example(rng, cfg))
        question = ex["prompt"][0]["content"][-1]["text"]
        answer = ex["completion"][0]["content"][0]["text"]
        kinds.add(question_kind(question))
        assert answer not in judge_strings
        assert sum(p["type"] == "image" for p in ex["prompt"][0]["content"]) == len(ex["images"])
    assert kinds >= {"colour", "shape", "position", "motion", "describe_image", "describe_video"}


def test_run_writes_a_base_checkpoint_with_its_perception_report(tmp_path: Path) -> None:
    cfg = from_dict(
        PretrainBaseConfig,
        {
            "model": {
                "vocab_size": 512,
                "hidden_size": 64,
                "num_layers": 1,
                "num_kv_heads": 1,
                "intermediate_size": 64,
                "vision_depth": 1,
                "vision_hidden_size": 64,
                "vision_intermediate_size": 64,
            },
            "train": {"max_steps": 3, "batch_size": 2, "save_steps": 3},
            "eval_examples": 6,
        },
    )
    result = run(cfg, tmp_path / "base")
    report = json.loads((tmp_path / "base" / "perception.json").read_text())
    assert report == result.perception
    assert {"seen/all", "unseen/all"} <= report.keys()
    assert all(0.0 <= v <= 1.0 for v in report.values())
    model, processor = load_checkpoint(tmp_path / "base")
    assert model.config.text_config.num_hidden_layers == 1
    assert processor.tokenizer.eos_token == "<|im_end|>"
