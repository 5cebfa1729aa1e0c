"""unified_sft: trains the judge on every task and mode, writes a loadable checkpoint, and
refuses bad input with a message that names the problem."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from unireward.config import from_dict
from unireward.data.schema import read_records, write_records
from unireward.judge.examples import swap_record, to_example
from unireward.judge.unified_sft import UnifiedSftConfig, expand, run, select_records
from unireward.training import CHECKPOINTS

TINY_TRAIN = {"max_steps": 4, "batch_size": 2, "save_steps": 2, "logging_steps": 1}


def test_run_changes_parameters_and_writes_the_judge(
    tiny_model_dir: Path, shapes_dataset: Path, tmp_path: Path
) -> None:
    cfg = from_dict(UnifiedSftConfig, {"train": TINY_TRAIN})
    result = run(cfg, tiny_model_dir, shapes_dataset, tmp_path / "judge")
    before = load_file(tiny_model_dir / "model.safetensors")
    after = load_file(tmp_path / "judge" / "model.safetensors")
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert len(changed) > len(before) // 2, "training should move most tensors"
    assert result.train.global_step == 4
    info = json.loads((tmp_path / "judge" / "unireward.json").read_text())
    assert info["stage"] == "unified_sft" and info["global_step"] == 4
    assert set(info["records"]) == {
        f"{t}/{m}"
        for t in (
            "image_generation",
            "image_understanding",
            "video_generation",
            "video_understanding",
        )
        for m in ("pairwise", "pointwise")
    }
    assert not (tmp_path / "judge" / CHECKPOINTS).exists(), "checkpoints are discarded at the end"
    losses = [
        h["loss"]
        for h in json.loads((tmp_path / "judge" / "train_log.json").read_text())
        if "loss" in h
    ]
    assert losses and all(loss == loss for loss in losses)


def test_swap_augmentation_doubles_pairwise_rows_with_mirrored_labels(shapes_dataset: Path) -> None:
    records = select_records(read_records(shapes_dataset), UnifiedSftConfig())
    rows = expand(records, swap_augment=True)
    pairwise = [r for r in records if r.mode == "pairwise"]
    assert len(rows) == len(records) + len(pairwise)
    for r in pairwise:
        twin = swap_record(r)
        assert swap_record(twin) == r
        if r.label.startswith("Both"):
            assert twin.label == r.label
        else:
            assert twin.label != r.label


def test_examples_target_only_the_answer(shapes_dataset: Path) -> None:
    record = next(
        r
        for r in read_records(shapes_dataset)
        if r.task == "video_generation" and r.mode == "pairwise"
    )
    ex = to_example(record, shapes_dataset)
    assert ex["completion"][0]["content"][0]["text"] == record.label
    placeholders = sum(p["type"] == "image" for p in ex["prompt"][0]["content"])
    assert placeholders == len(ex["images"]) == 2 * len(record.media[0])


def test_unknown_task_is_an_error_naming_it() -> None:
    with pytest.raises(ValueError, match=r"image_gen.*expected one of"):
        from_dict(UnifiedSftConfig, {"tasks": ["image_gen"]})
    with pytest.raises(ValueError, match="max_step"):
        from_dict(UnifiedSftConfig, {"train": {"max_step": 3}})


def test_missing_media_fails_with_the_file_named(
    tiny_model_dir: Path, shapes_dataset: Path, tmp_path: Path
) -> None:
    records = read_records(shapes_dataset)
    bad = dataclasses.replace(
        records[0], media=[["media/does-not-exist.png"]] * len(records[0].media)
    )
    root = tmp_path / "ds"
    write_records([bad], root)
    cfg = from_dict(
        UnifiedSftConfig, {"train": TINY_TRAIN, "tasks": [bad.task], "modes": [bad.mode]}
    )
    with pytest.raises(FileNotFoundError, match=r"does-not-exist\.png"):
        run(cfg, tiny_model_dir, root, tmp_path / "out")


def test_no_matching_records_is_an_error(shapes_dataset: Path) -> None:
    with pytest.raises(ValueError, match="no records with split='holdout'"):
        select_records(read_records(shapes_dataset), UnifiedSftConfig(split="holdout"))
