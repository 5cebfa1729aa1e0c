"""Stage 2 `validate`: good data passes whole; each kind of bad row is quarantined with its reason.

The bad-input table corrupts one row per case (each case its own row) of a small shapes dataset
and validates it once; every case must end as a quarantine row whose first reason names it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from unireward.config import from_dict, load_stage_config
from unireward.data import ingest
from unireward.data.schema import Record, read_records, write_records
from unireward.data.shapes import ShapesConfig
from unireward.data.validate import (
    QUARANTINE_FILE,
    REPORT_FILE,
    VALIDATION_FILE,
    ValidateConfig,
    ValidationFailed,
    media_reason,
    run,
)
from unireward.tasks import Task

PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"
SMALL = ShapesConfig(train_per_task_mode=3, eval_per_task_mode=2, frames=4)
OUTSIDE = "outside.png"  # a valid PNG next to (outside) the dataset root


def _chunk(kind: bytes, data: bytes) -> bytes:
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))


def png_header(width: int, height: int) -> bytes:
    """A small PNG whose IHDR claims width x height; its IDAT holds a few bytes, not the pixels
    (PIL reads the header up to the first IDAT, so the size is known without decoding)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")
    )


def _frame(r: Record) -> str:
    return r.media[0][0]


def _with_file(
    name: str, data: Callable[[Path, Record], bytes]
) -> Callable[[Record, Path], Record]:
    """Corruption: write `media/bad/<name>` and point the row's single image at it."""

    def corrupt(r: Record, root: Path) -> Record:
        path = root / "media" / "bad" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data(root, r))
        return dataclasses.replace(r, media=[[f"media/bad/{name}"]])

    return corrupt


def _symlink_out(r: Record, root: Path) -> Record:
    link = root / "media" / "bad" / "link.png"
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(root.parent / OUTSIDE)
    return dataclasses.replace(r, media=[["media/bad/link.png"]])


def _replace(**changes) -> Callable[[Record, Path], Record]:
    return lambda r, root: dataclasses.replace(r, **changes)


@dataclass(frozen=True)
class Case:
    name: str
    task: str
    mode: str
    corrupt: Callable[[Record, Path], Record]
    reason: str  # substring of the quarantined row's first reason


IG, IU, VG, VU = (t.value for t in Task)  # the task names, as records spell them
PAIR, POINT = "pairwise", "pointwise"
XSS = "<script>alert(1)</script>"

CASES = [
    Case("unknown task", IG, PAIR, _replace(task=XSS), "unknown task: '<script>"),
    Case("unknown mode", IG, POINT, _replace(mode="listwise"), "unknown mode: 'listwise'"),
    Case(
        "image label on a video task",
        VG,
        PAIR,
        _replace(label="image 1 is better!!"),
        "invalid label: 'image 1 is better!!' is not a video_generation answer",
    ),
    Case(
        "tie on an understanding task",
        IU,
        PAIR,
        _replace(label="Both images are equally good"),
        "invalid label: tie",
    ),
    Case("missing label", VU, PAIR, _replace(label=None), "missing label"),
    Case("score out of range", IG, POINT, _replace(score=7.0), "score out of range: 7 outside"),
    Case("NaN score", VG, POINT, _replace(score=math.nan), "score not finite: nan"),
    Case("missing score", IU, POINT, _replace(score=None), "missing score"),
    Case("missing file", IU, POINT, _replace(media=[["media/bad/gone.png"]]), "media missing"),
    Case("zero-byte file", IU, POINT, _with_file("empty.png", lambda root, r: b""), "media empty"),
    Case(
        "truncated PNG",
        IG,
        POINT,
        _with_file("cut.png", lambda root, r: (root / _frame(r)).read_bytes()[:200]),
        "media undecodable",
    ),
    Case(
        "path traversal",
        IU,
        PAIR,
        _replace(media=[[f"../{OUTSIDE}"]]),
        "media path escapes root",
    ),
    Case("absolute path", IU, PAIR, None, "media path absolute"),  # path filled in by the fixture
    Case("symlink out", IG, POINT, _symlink_out, "media symlink out of root"),
    Case(
        "30000x30000 header (PIL bomb limit)",
        IU,
        POINT,
        _with_file("bomb.png", lambda root, r: png_header(30000, 30000)),
        "media too many pixels",
    ),
    Case(
        "5000x5000 header (our limit)",
        IU,
        POINT,
        _with_file("big.png", lambda root, r: png_header(5000, 5000)),
        "media too many pixels: 'media/bad/big.png' is 5000x5000",
    ),
    Case("duplicate id", VG, POINT, None, "duplicate id"),  # id filled in by the fixture
    Case(
        "one item for a generation pair",
        IG,
        PAIR,
        lambda r, root: dataclasses.replace(r, media=r.media[:1]),
        "shape: image_generation pairwise takes 2 visual item(s), got 1",
    ),
    Case(
        "one response for an understanding pair",
        VU,
        PAIR,
        lambda r, root: dataclasses.replace(r, responses=r.responses[:1]),
        "shape: video_understanding pairwise takes 2 response(s), got 1",
    ),
    Case(
        "image task with 2 frames per item",
        IG,
        PAIR,
        lambda r, root: dataclasses.replace(r, media=[i * 2 for i in r.media]),
        "frames: image task with 2 frames",
    ),
    Case(
        "video items with different frame counts",
        VG,
        PAIR,
        lambda r, root: dataclasses.replace(r, media=[r.media[0], r.media[1][:-1]]),
        "frames: visual items have different frame counts [3, 4]",
    ),
    Case(
        "video over max_frames",
        VU,
        POINT,
        lambda r, root: dataclasses.replace(r, media=[r.media[0] * 17]),
        "frames: 68 frames per video, outside",
    ),
    Case("bad meta JSON", VU, POINT, _replace(meta="{not json"), "invalid meta: not JSON"),
    Case("meta not an object", VG, POINT, _replace(meta="[1, 2]"), "invalid meta: JSON list"),
    Case("blank prompt", VU, PAIR, _replace(prompt="  "), "empty prompt"),
    Case(
        "null response",
        IU,
        PAIR,
        lambda r, root: dataclasses.replace(r, responses=[None, r.responses[1]]),
        "field type: responses",
    ),
]


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("good") / "ingest"
    ingest.run(ingest.IngestConfig(shapes=SMALL, tracking_uri="null"), out)
    return out


def _build_bad_dataset(good: Path, root: Path) -> dict[str, str]:
    """Copy `good` to `root`, corrupt one row per case; returns case name -> row id."""
    shutil.copytree(good, root)
    records = read_records(root)
    (root.parent / OUTSIDE).write_bytes((root / _frame(records[0])).read_bytes())
    used: set[int] = {0}  # row 0 stays valid: the duplicate-id case reuses its id
    ids: dict[str, str] = {}
    for case in CASES:
        i = next(
            i
            for i, r in enumerate(records)
            if i not in used and (r.task, r.mode) == (case.task, case.mode)
        )
        used.add(i)
        r = records[i]
        if case.name == "absolute path":
            records[i] = dataclasses.replace(r, media=[[str((root.parent / OUTSIDE).resolve())]])
        elif case.name == "duplicate id":
            records[i] = dataclasses.replace(r, id=records[0].id)
        else:
            records[i] = case.corrupt(r, root)
        ids[case.name] = records[i].id
    write_records(records, root)
    return ids


@pytest.fixture(scope="module")
def bad(good, tmp_path_factory):
    base = tmp_path_factory.mktemp("bad")
    ids = _build_bad_dataset(good, base / "dataset")
    result = run(ValidateConfig(max_bad_fraction=0.5), base / "dataset", base / "validated")
    quarantine = pq.read_table(base / "validated" / QUARANTINE_FILE).to_pylist()
    return base, ids, result, quarantine


def test_good_shapes_dataset_passes_whole(good, tmp_path):
    result = run(ValidateConfig(max_bad_fraction=0.0), good, tmp_path / "v")
    n = len(read_records(good))
    assert (result.n_in, result.n_valid, result.n_quarantined) == (n, n, 0)
    assert result.reasons == {}
    assert read_records(tmp_path / "v") == read_records(good)
    assert pq.read_table(tmp_path / "v" / QUARANTINE_FILE).num_rows == 0
    summary = json.loads((tmp_path / "v" / VALIDATION_FILE).read_text())
    assert summary["passed"] and summary["n_valid"] == n
    # The validated output is itself a valid canonical dataset, media included.
    again = run(ValidateConfig(max_bad_fraction=0.0), tmp_path / "v", tmp_path / "v2")
    assert again.n_valid == n


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_bad_row_is_quarantined_with_its_reason(bad, case):
    _, ids, _, quarantine = bad
    rows = [q for q in quarantine if q["id"] == ids[case.name] and case.reason in q["reason"]]
    assert len(rows) == 1, [q["reason"] for q in quarantine if q["id"] == ids[case.name]]
    assert rows[0]["reasons"][0] == rows[0]["reason"]


def test_nothing_is_lost(bad):
    base, _, result, quarantine = bad
    n_in = len(read_records(base / "dataset"))
    valid = read_records(base / "validated")
    assert result.n_in == n_in == result.n_valid + result.n_quarantined
    assert (result.n_valid, result.n_quarantined) == (len(valid), len(quarantine))
    assert result.n_quarantined == len(CASES)
    assert sum(result.reasons.values()) == len(CASES)
    assert result.reasons["media too many pixels"] == 2
    # Each input row is, in order, the next valid row or the next quarantined one.
    inputs = read_records(base / "dataset")
    valid_left, bad_left = list(valid), list(quarantine)
    for r in inputs:
        if valid_left and r == valid_left[0]:
            valid_left.pop(0)
        else:
            assert bad_left and r.id == bad_left.pop(0)["id"]
    assert valid_left == bad_left == []
    assert inputs[0] == valid[0]  # the first of the duplicate ids stays valid
    for r in valid:
        assert all((base / "validated" / rel).is_file() for item in r.media for rel in item)
    assert not (base / "validated" / "media" / "bad").exists()  # no media of quarantined rows


def test_row_with_several_problems_lists_them_all(good, tmp_path):
    root = tmp_path / "d"
    shutil.copytree(good, root)
    records = read_records(root)
    pointwise = next(i for i, r in enumerate(records) if r.mode == POINT)
    records[pointwise] = dataclasses.replace(records[pointwise], score=None, meta="nope", prompt="")
    write_records(records, root)
    run(ValidateConfig(max_bad_fraction=1.0), root, tmp_path / "v")
    (row,) = pq.read_table(tmp_path / "v" / QUARANTINE_FILE).to_pylist()
    assert [r.split(":")[0] for r in row["reasons"]] == [
        "empty prompt",
        "missing score",
        "invalid meta",
    ]
    assert row["reason"] == row["reasons"][0]


def test_report_counts_and_escapes(bad):
    base, _, result, _ = bad
    report = (base / "validated" / REPORT_FILE).read_text()
    assert "<script>alert" not in report and "&lt;script&gt;alert(1)" in report
    assert f"<td>quarantined</td><td>{result.n_quarantined}</td>" in report
    assert "media too many pixels" in report and "train/image_generation/pairwise" in report


def test_past_threshold_raises_after_writing_outputs(bad, tmp_path):
    base, _, _, _ = bad
    out = tmp_path / "strict"
    with pytest.raises(
        ValidationFailed, match=r"quarantined \(\d+\.\d+%\) > max_bad_fraction"
    ) as e:
        run(ValidateConfig(), base / "dataset", out)
    assert e.value.result.n_quarantined == len(CASES)
    for name in ("records.parquet", QUARANTINE_FILE, REPORT_FILE, VALIDATION_FILE):
        assert (out / name).is_file()
    assert json.loads((out / VALIDATION_FILE).read_text())["passed"] is False
    assert "FAILED" in (out / REPORT_FILE).read_text()


def test_media_reason_checks_paths_without_decoding_when_asked(bad):
    base, *_ = bad
    root = base / "dataset"
    decode_off = ValidateConfig(check_media=False)
    assert media_reason(root, "media/bad/cut.png", decode_off) is None
    assert "undecodable" in media_reason(root, "media/bad/cut.png", ValidateConfig())
    assert "missing" in media_reason(root, "media/bad/gone.png", decode_off)
    small = ValidateConfig(max_file_bytes=10)
    assert "media too large" in media_reason(root, "media/bad/cut.png", small)


def test_output_dir_must_not_overlap_the_dataset(good):
    with pytest.raises(ValueError, match="must not overlap"):
        run(ValidateConfig(), good, good / "validated")


def test_config_rejects_unknown_keys_and_bad_values():
    with pytest.raises(ValueError, match="max_bad_fractoin"):
        from_dict(ValidateConfig, {"max_bad_fractoin": 0.1})
    with pytest.raises(ValueError, match="max_bad_fraction"):
        ValidateConfig(max_bad_fraction=1.5)
    with pytest.raises(ValueError, match="min_frames"):
        ValidateConfig(min_frames=9, max_frames=8)
    assert from_dict(ValidateConfig, {"max_bad_fraction": 0}).max_bad_fraction == 0.0
    assert load_stage_config(ValidateConfig, "validate", path=PARAMS).max_bad_fraction == 0.01
