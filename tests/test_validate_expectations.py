"""Stage 2 `validate`, the great-expectations suites: table-level position balance fails the run,
leakage by media content and (opt-in) by prompt quarantines eval rows, and the suites' verdicts
are what validation.json and report.html show."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from unireward.contract import label_to_preferred
from unireward.data.schema import read_records, write_records
from unireward.data.shapes import ShapesConfig, generate
from unireward.data.validate import (
    QUARANTINE_FILE,
    REPORT_FILE,
    VALIDATION_FILE,
    ValidateConfig,
    ValidationFailed,
    run,
)
from unireward.judge.examples import swap_record
from unireward.tasks import Task


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    """Enough pairwise rows (>= min_pairs_for_balance) for the balance to be judged."""
    root = tmp_path_factory.mktemp("shapes") / "ds"
    cfg = ShapesConfig(seed=5, frames=4, train_per_task_mode=14, eval_per_task_mode=2)
    generate(cfg, root)
    return root


def _pairs(records) -> list[int]:
    """1 = position 2 preferred, 0 = position 1, for non-tie pairwise rows."""
    out = []
    for r in records:
        if r.mode == "pairwise" and "equally" not in r.label:
            out.append(int(label_to_preferred(Task(r.task), r.label) == 2))
    return out


def test_balanced_shapes_data_passes_with_balance_judged(shapes, tmp_path):
    result = run(ValidateConfig(max_bad_fraction=0.0), shapes, tmp_path / "v")
    assert result.n_quarantined == 0
    (balance,) = [c for c in result.table_checks if c["check"] == "position balance"]
    pairs = _pairs(read_records(shapes))
    assert len(pairs) >= 50
    assert balance["success"] and balance["observed"] == pytest.approx(sum(pairs) / len(pairs))
    summary = json.loads((tmp_path / "v" / VALIDATION_FILE).read_text())
    assert summary["passed"] and summary["expectations_evaluated"] >= 15


def test_all_pairs_preferring_one_position_fail_the_run(shapes, tmp_path):
    root = tmp_path / "d"
    shutil.copytree(shapes, root)
    records = read_records(root)
    flipped = [
        swap_record(r) if r.mode == "pairwise" and r.label.endswith("2 is better") else r
        for r in records
    ]
    assert sum(_pairs(flipped)) == 0  # every non-tie pair now prefers position 1
    write_records(flipped, root)
    with pytest.raises(ValidationFailed, match="table-level expectations failed: position balance"):
        run(ValidateConfig(max_bad_fraction=0.0), root, tmp_path / "v")
    out = tmp_path / "v"
    assert pq.read_metadata(out / QUARANTINE_FILE).num_rows == 0  # no row is to blame
    assert json.loads((out / VALIDATION_FILE).read_text())["passed"] is False
    report = (out / REPORT_FILE).read_text()
    assert "FAILED" in report and "expect_column_mean_to_be_between" in report
    # a looser tolerance accepts the same data
    run(ValidateConfig(max_bad_fraction=0.0, max_position_imbalance=0.5), root, tmp_path / "v2")


def test_leakage_by_media_and_by_prompt(shapes, tmp_path):
    root = tmp_path / "d"
    shutil.copytree(shapes, root)
    records = read_records(root)
    train = next(r for r in records if r.split == "train" and r.task == "image_understanding")
    i = next(
        i
        for i, r in enumerate(records)
        if r.split == "eval_seen" and (r.task, r.mode) == (train.task, train.mode)
    )
    records[i] = dataclasses.replace(records[i], media=train.media)  # eval reuses train media
    write_records(records, root)

    result = run(ValidateConfig(max_bad_fraction=1.0), root, tmp_path / "v")
    (row,) = pq.read_table(tmp_path / "v" / QUARANTINE_FILE).to_pylist()
    assert row["id"] == records[i].id
    assert row["reason"] == "leakage: eval_seen row reuses media content of the train split"
    assert result.reasons == {"leakage": 1}

    # By prompt (opt-in): the shapes world's templated prompts repeat across splits by design.
    train_prompts = {r.prompt for r in records if r.split == "train"}
    repeats = {r.id for r in records if r.split != "train" and r.prompt in train_prompts}
    result = run(ValidateConfig(max_bad_fraction=1.0, prompt_leakage=True), root, tmp_path / "p")
    quarantined = pq.read_table(tmp_path / "p" / QUARANTINE_FILE).to_pylist()
    assert repeats and {q["id"] for q in quarantined} == repeats | {records[i].id}
    assert all(q["reason"].startswith("leakage: ") for q in quarantined)
