"""rs_sft: SFT on rejection sampling's correct set changes the judge and writes its artifacts;
an empty correct set writes the judge unchanged with the reason; bad input is named.

    .venv/bin/pytest tests/test_rs_sft.py -q
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mlflow_store import logged_artifacts
from unireward.config import from_dict
from unireward.data.schema import read_records, write_records
from unireward.data.teacher import teacher_cot
from unireward.prompt_templates import PROMPTS_FILE, default_templates
from unireward.think.rs_sft import CORRECT, RsSftConfig, run
from unireward.tracking import default_tracking_uri
from unireward.training import CHECKPOINTS

TRAIN = {"max_steps": 4, "batch_size": 2, "save_steps": 2, "logging_steps": 1}


def _config(tracking_uri: str = "null") -> RsSftConfig:
    return from_dict(RsSftConfig, {"train": TRAIN, "tracking_uri": tracking_uri})


def _correct_set(dataset: Path, out: Path, n: int) -> Path:
    """A rejection_sample output dir whose correct set holds n right CoT judgements."""
    import numpy as np

    pairs = [
        r
        for r in read_records(dataset)
        if r.split == "train" and r.mode == "pairwise" and r.label and "equally" not in r.label
    ][:n]
    rows = [
        dataclasses.replace(r, id=f"{r.id}-rs0", cot=teacher_cot(r, np.random.default_rng(0), 0.0))
        for r in pairs
    ]
    write_records(rows, out / CORRECT)
    return out


def test_run_changes_parameters_and_writes_artifacts(
    tiny_model_dir: Path, shapes_dataset: Path, tmp_path: Path
) -> None:
    samples = _correct_set(shapes_dataset, tmp_path / "samples", 6)
    uri = default_tracking_uri(tmp_path / "store")
    result = run(_config(uri), tiny_model_dir, samples, shapes_dataset, tmp_path / "rs")
    before = load_file(tiny_model_dir / "model.safetensors")
    after = load_file(tmp_path / "rs" / "model.safetensors")
    assert sum(not torch.equal(before[k], after[k]) for k in before) > len(before) // 2
    info = json.loads((tmp_path / "rs" / "unireward.json").read_text())
    assert info["stage"] == "rs_sft" and info["global_step"] == result.train.global_step == 4
    assert info["examples"] == result.examples == 6 and info["skipped"] is None
    assert not (tmp_path / "rs" / CHECKPOINTS).exists()
    assert {"plots/train_curves.png", "train_log.json", PROMPTS_FILE} <= logged_artifacts(
        uri, "rs_sft"
    )
    assert (tmp_path / "rs" / PROMPTS_FILE).read_text() == default_templates().text


def test_an_empty_correct_set_writes_the_judge_unchanged(
    tiny_model_dir: Path, shapes_dataset: Path, tmp_path: Path
) -> None:
    write_records([], tmp_path / "samples" / CORRECT)
    result = run(_config(), tiny_model_dir, tmp_path / "samples", shapes_dataset, tmp_path / "rs")
    assert result.skipped and result.train.global_step == 0
    before = load_file(tiny_model_dir / "model.safetensors")
    after = load_file(tmp_path / "rs" / "model.safetensors")
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert json.loads((tmp_path / "rs" / "unireward.json").read_text())["skipped"]


def test_rows_without_cot_are_a_data_bug(
    tiny_model_dir: Path, shapes_dataset: Path, tmp_path: Path
) -> None:
    write_records(read_records(shapes_dataset)[:2], tmp_path / "samples" / CORRECT)
    with pytest.raises(ValueError, match="no CoT"):
        run(_config(), tiny_model_dir, tmp_path / "samples", shapes_dataset, tmp_path / "rs")


def test_missing_samples_dir_names_the_stage_to_run(
    tiny_model_dir: Path, shapes_dataset: Path, tmp_path: Path
) -> None:
    with pytest.raises(FileNotFoundError, match="unireward rejection_sample"):
        run(_config(), tiny_model_dir, tmp_path, shapes_dataset, tmp_path / "rs")
