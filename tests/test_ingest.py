"""Stage 1 `ingest`: the shapes world and local canonical datasets, with lineage."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from unireward.config import from_dict, load_stage_config
from unireward.data.ingest import LINEAGE_FILE, IngestConfig, run
from unireward.data.schema import read_records, write_records
from unireward.data.shapes import ShapesConfig
from unireward.tracking import NullTracker

PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"
SMALL = ShapesConfig(train_per_task_mode=3, eval_per_task_mode=2, frames=4)
N_SMALL = 8 * (3 + 2 + 2)  # (task, mode) pairs x (train + eval_seen + eval_unseen)


def _config(**changes) -> IngestConfig:
    return IngestConfig(**{"shapes": SMALL, "tracking_uri": "null", **changes})


@pytest.fixture(scope="module")
def shapes_ingest(tmp_path_factory):
    tracker = NullTracker()
    out = tmp_path_factory.mktemp("ingest") / "out"
    return run(_config(), out, tracker=tracker), tracker


def test_shapes_ingest_writes_dataset_and_lineage(shapes_ingest):
    result, _ = shapes_ingest
    records = read_records(result.output_dir)
    assert result.n_records == len(records) == N_SMALL
    for record in records:
        for item in record.media:
            assert all((result.output_dir / rel).is_file() for rel in item)

    lineage = json.loads((result.output_dir / LINEAGE_FILE).read_text())
    assert lineage == result.lineage
    assert lineage["source"] == "shapes://" and lineage["dvc_rev"] is None
    assert lineage["rows_in"] == lineage["rows_out"] == N_SMALL
    assert lineage["content_hash"].startswith("sha256:")
    assert lineage["counts"]["split"] == {"eval_seen": 16, "eval_unseen": 16, "train": 24}
    assert set(lineage["counts"]["task"].values()) == {14}
    assert lineage["counts"]["mode"] == {"pairwise": 28, "pointwise": 28}
    assert lineage["counts"]["split/task/mode"]["train/video_generation/pairwise"] == 3
    assert lineage["generator"]["frames"] == 4 and lineage["generator"]["seed"] == 0
    n_media = len({rel for r in records for item in r.media for rel in item})
    assert lineage["media_files"] == n_media


def test_ingest_logs_lineage_to_tracker(shapes_ingest):
    result, tracker = shapes_ingest
    assert [name for name, _ in tracker.runs] == ["ingest"]
    assert tracker.params["source"] == "shapes://"
    assert tracker.params["shapes.frames"] == "4"
    assert tracker.params["content_hash"] == result.lineage["content_hash"]
    assert tracker.metrics["rows_out"] == [(None, float(N_SMALL))]
    assert tracker.metrics["rows.split.train"] == [(None, 24.0)]
    assert (str(result.output_dir / LINEAGE_FILE), None) in tracker.artifacts


def test_content_hash_is_stable_and_follows_the_seed(shapes_ingest, tmp_path):
    first, _ = shapes_ingest
    again = run(_config(), tmp_path / "again")
    assert again.lineage["content_hash"] == first.lineage["content_hash"]
    other_seed = run(_config(shapes=dataclasses.replace(SMALL, seed=1)), tmp_path / "seed1")
    assert other_seed.lineage["content_hash"] != first.lineage["content_hash"]
    # Re-running into an earlier ingest output replaces it.
    rerun = run(_config(), tmp_path / "seed1")
    assert rerun.lineage["content_hash"] == first.lineage["content_hash"]


def test_local_canonical_dataset_round_trips(shapes_ingest, tmp_path):
    first, _ = shapes_ingest
    result = run(_config(source=str(first.output_dir)), tmp_path / "local")
    assert result.lineage["scheme"] == "file"
    assert result.lineage["content_hash"] == first.lineage["content_hash"]
    assert (
        result.lineage["media_linked"] + result.lineage["media_copied"]
        == (first.lineage["media_files"])
    )
    assert result.lineage["media_skipped"] == 0
    assert read_records(result.output_dir) == read_records(first.output_dir)
    uri = run(_config(source=first.output_dir.resolve().as_uri()), tmp_path / "uri")
    assert uri.lineage["content_hash"] == first.lineage["content_hash"]


def test_local_source_keeps_rows_with_unusable_media(shapes_ingest, tmp_path):
    """Ingest does not judge rows: bad media paths are listed, the rows go on to validate."""
    first, _ = shapes_ingest
    src = tmp_path / "src"
    shutil.copytree(first.output_dir, src)
    records = read_records(src)
    records[0] = dataclasses.replace(records[0], media=[["../outside.png"], ["media/nope.png"]])
    write_records(records, src)
    result = run(_config(source=str(src)), tmp_path / "out")
    assert result.n_records == N_SMALL
    assert result.lineage["media_skipped"] == 2
    assert not (tmp_path / "outside.png").exists()


def test_local_source_that_is_not_a_canonical_dataset(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"records\.parquet"):
        run(_config(source=str(tmp_path / "empty")), tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        run(_config(source=str(tmp_path / "missing")), tmp_path / "out")
    (tmp_path / "file.json").write_text("{}")  # a data file, but not a list of records
    with pytest.raises(ValueError, match="expected a JSON list of records, got dict"):
        run(_config(source=str(tmp_path / "file.json")), tmp_path / "out")


@pytest.mark.parametrize("source", ["ftp://host/data", "gs://bucket/prefix", "hf://org/data"])
def test_unknown_scheme_lists_supported_ones(source, tmp_path):
    with pytest.raises(ValueError, match=r"shapes://, file://, s3://, dvc://"):
        run(_config(source=source), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_shapes_source_takes_no_path(tmp_path):
    with pytest.raises(ValueError, match="takes no path"):
        run(_config(source="shapes://somewhere"), tmp_path / "out")


def test_output_dir_must_be_fresh_or_an_earlier_ingest(shapes_ingest, tmp_path):
    first, _ = shapes_ingest
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not empty"):
        run(_config(), foreign)
    assert (foreign / "notes.txt").read_text() == "keep me"
    with pytest.raises(ValueError, match="must not overlap"):
        run(_config(source=str(first.output_dir)), first.output_dir)
    assert read_records(first.output_dir)  # source untouched


def test_config_loading():
    with pytest.raises(ValueError, match="sourse"):
        from_dict(IngestConfig, {"sourse": "shapes://"})
    nested = from_dict(IngestConfig, {"shapes": {"seed": 3}})
    assert nested.shapes == ShapesConfig(seed=3)
    with pytest.raises(ValueError, match="ftp"):
        IngestConfig(source="ftp://x")
    for profile in ("quick", "full"):
        config = load_stage_config(IngestConfig, "ingest", profile=profile, path=PARAMS)
        assert config.source == "shapes://"
