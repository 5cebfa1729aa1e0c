"""Stage 1, `ingest`: bring a raw source into the canonical dataset layout, with lineage.

    unireward ingest --output-dir runs/ingest

Output (`output_dir/`): `records.parquet` in the canonical schema (`unireward.data.schema`), the
media it references, and `lineage.json`: the source URI, the DVC rev (requested and resolved),
a sha256 content hash over records.parquet and every media file, counts per split / task /
mode, rows in / out, and the generator config (shapes world) or the files and formats read.
The lineage is also logged to MLflow (params, metrics, `lineage.json` as an artifact).

Sources are picked by URI scheme from the literal dict `SOURCES`:

- `shapes://` generates the synthetic shapes world from `IngestConfig.shapes`;
- a local directory or file (or `file://` URI): a canonical dataset (records.parquet + media),
  or data files in a published format (`unireward.data.formats`, `IngestConfig.format`);
- `s3://bucket/prefix`: downloaded with boto3 (`unireward.data.remote`), then read as local;
- `dvc://path/in/repo`: a DVC-tracked path of `IngestConfig.dvc_repo` at `dvc_rev`.

Ingest normalises and copies; it does not judge rows (that is `validate`). Every source record
becomes one row: a record that cannot be read becomes a row whose meta holds `ingest_error`,
which validate quarantines with that reason. A canonical record whose media is missing or unsafe
is kept as is and the file is listed under `media_skipped`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from unireward.config import to_dict
from unireward.data import formats, remote
from unireward.data.media import file_sha256, resolve_media
from unireward.data.schema import RECORDS_FILE, SCHEMA, Record, read_records, write_records
from unireward.data.shapes import ShapesConfig, generate
from unireward.progress import progress
from unireward.tasks import parse_mode, parse_task
from unireward.tracking import Tracker, make_tracker

LINEAGE_FILE = "lineage.json"
_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://(.*)$", re.DOTALL)
_SKIPPED_EXAMPLES = 20  # lineage lists this many skipped media paths; the count is exact


@dataclass(frozen=True)
class IngestConfig:
    source: str = "shapes://"  # shapes://, a local path / file://, s3://bucket/prefix, dvc://path
    shapes: ShapesConfig = field(default_factory=ShapesConfig)
    format: str = "auto"  # "auto", "canonical" or a key of unireward.data.formats.FORMATS
    split: str = "train"  # split of source records that name none
    # Task and mode of conversation records that name none ("" = detect: the answer's verdict
    # string or Final Score, and whether the media are a video; docs/data.md). Both or neither.
    task: str = ""
    mode: str = ""
    video_frames: int = 8  # frames sampled per video file (the judge contract: 8)
    dvc_repo: str | None = None  # dvc:// sources: repo path or Git URL (None = this repo)
    dvc_rev: str | None = None  # dvc:// sources: branch / tag / commit (None = workspace)
    s3_max_attempts: int = 5  # s3:// sources: tries per request (botocore standard backoff)
    s3_read_timeout_s: float = 60.0  # s3:// sources: a response that stalls this long is retried
    tracking_uri: str | None = None  # None = local sqlite store; "null" = no tracking
    experiment: str = "unireward"

    def __post_init__(self) -> None:
        if not isinstance(self.source, str) or not self.source.strip():
            raise ValueError(f"ingest.source must be a non-empty string, got {self.source!r}")
        if not isinstance(self.shapes, ShapesConfig):
            raise ValueError(f"ingest.shapes must be a ShapesConfig mapping, got {self.shapes!r}")
        if not isinstance(self.experiment, str) or not self.experiment.strip():
            raise ValueError("ingest.experiment must be a non-empty MLflow experiment name")
        if self.format != "canonical":
            formats.check_format(self.format)
        if bool(self.task) != bool(self.mode):
            raise ValueError("ingest.task and ingest.mode go together: set both or neither")
        if self.task:
            parse_task(self.task)
            parse_mode(self.mode)
        if not isinstance(self.split, str) or not self.split.strip():
            raise ValueError(f"ingest.split must be a non-empty string, got {self.split!r}")
        for name in ("video_frames", "s3_max_attempts"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"ingest.{name} must be an integer >= 1, got {value!r}")
        timeout = self.s3_read_timeout_s
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
            raise ValueError(f"ingest.s3_read_timeout_s must be a number > 0, got {timeout!r}")
        for name in ("dvc_repo", "dvc_rev"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise ValueError(f"ingest.{name} must be null or a non-empty string")
        split_source(self.source)  # unknown schemes fail here, before any work


@dataclass
class IngestResult:
    output_dir: Path
    n_records: int
    lineage: dict[str, Any]


@dataclass
class _Ingested:
    """What a source reader leaves behind in output_dir, for the lineage."""

    records: list[Record]
    extra: dict[str, Any]


Reader = Callable[[IngestConfig, str, Path], _Ingested]


# --------------------------------------------------------------------------- sources


def _read_shapes(config: IngestConfig, location: str, output_dir: Path) -> _Ingested:
    if location.strip("/"):
        raise ValueError(
            f"shapes:// takes no path (got {config.source!r}); configure it with ingest.shapes"
        )
    records = generate(config.shapes, output_dir)
    return _Ingested(records, {"generator": {"name": "shapes-world", **to_dict(config.shapes)}})


def _read_local(config: IngestConfig, location: str, output_dir: Path) -> _Ingested:
    root = Path(location)  # checked by _check_local_root before output_dir was cleared
    return _read_path(config, root, output_dir, config.source)


def _read_path(config: IngestConfig, root: Path, output_dir: Path, uri: str) -> _Ingested:
    """A canonical dataset directory, or data files in a published format."""
    canonical = root.is_dir() and (root / RECORDS_FILE).is_file()
    if config.format == "canonical" or (config.format == "auto" and canonical):
        return _read_canonical(root, output_dir)
    records, extra = formats.read_source(
        root,
        output_dir,
        config.format,
        uri,
        config.split,
        config.video_frames,
        task=config.task,
        mode=config.mode,
    )
    write_records(records, output_dir)
    unreadable = sum(1 for r in records if "ingest_error" in json.loads(r.meta))
    return _Ingested(records, {**extra, "rows_unreadable": unreadable})


def _read_canonical(root: Path, output_dir: Path) -> _Ingested:
    try:
        records = read_records(root)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{root} holds no {RECORDS_FILE}: a canonical dataset is records.parquet + media "
            f"(see unireward/data/schema.py); for a published format set ingest.format"
        ) from None
    _copy_table(root / RECORDS_FILE, output_dir / RECORDS_FILE)
    linked, copied, skipped = copy_media(root, output_dir, media_paths(records))
    extra = {
        "format": "canonical",
        "media_linked": linked,
        "media_copied": copied,
        "media_skipped": len(skipped),
        "media_skipped_examples": skipped[:_SKIPPED_EXAMPLES],
    }
    return _Ingested(records, extra)


def _read_s3(config: IngestConfig, location: str, output_dir: Path) -> _Ingested:
    with tempfile.TemporaryDirectory(prefix="unireward-s3-") as tmp:
        staged = Path(tmp) / "source"
        facts = remote.download_s3(
            location, staged, config.s3_max_attempts, config.s3_read_timeout_s
        )
        root = next(staged.iterdir()) if _single_file(staged) else staged
        ingested = _read_path(config, root, output_dir, config.source)
    return _Ingested(ingested.records, {**ingested.extra, **facts})


def _read_dvc(config: IngestConfig, location: str, output_dir: Path) -> _Ingested:
    with tempfile.TemporaryDirectory(prefix="unireward-dvc-") as tmp:
        staged = Path(tmp) / "source"
        facts = remote.download_dvc(location, staged, config.dvc_repo, config.dvc_rev)
        root = next(staged.iterdir()) if _single_file(staged) else staged
        ingested = _read_path(config, root, output_dir, config.source)
    return _Ingested(ingested.records, {**ingested.extra, **facts})


def _single_file(staged: Path) -> bool:
    entries = list(staged.iterdir())
    return len(entries) == 1 and entries[0].is_file()


def _copy_table(src: Path, dst: Path) -> None:
    """Rewrite the records table in the canonical schema, or as read when its types differ.

    The cast makes the bytes (and so the content hash) match a dataset written by
    `write_records`; a table that does not cast is copied as is, because rows with wrong types
    must reach `validate` to be quarantined with a reason rather than crash ingest.
    """
    table = pq.read_table(src).select(SCHEMA.names)
    with contextlib.suppress(pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        table = table.cast(SCHEMA)  # on failure: kept as read, on purpose (see above)
    pq.write_table(table, dst)


def _check_local_root(root: Path, output_dir: Path) -> None:
    if not root.exists():
        raise FileNotFoundError(f"ingest source directory {root} does not exist")
    check_disjoint(root, output_dir)


def check_disjoint(source: Path, output_dir: Path) -> None:
    """Refuse an output directory that is, holds or lies inside the source (it gets cleared)."""
    src, out = source.resolve(), output_dir.resolve()
    if src == out or src.is_relative_to(out) or out.is_relative_to(src):
        raise ValueError(f"source {source} and output directory {output_dir} must not overlap")


# Scheme -> reader. Scheme-less sources are local paths ("file").
SOURCES: dict[str, Reader] = {
    "shapes": _read_shapes,
    "file": _read_local,
    "s3": _read_s3,
    "dvc": _read_dvc,
}


def split_source(source: str) -> tuple[str, str]:
    """(scheme, location) of a source URI; a bare path is ("file", path). Unknown -> ValueError."""
    match = _SCHEME_RE.match(source)
    scheme, location = (match.group(1).lower(), match.group(2)) if match else ("file", source)
    if scheme not in SOURCES:
        supported = ", ".join(f"{s}://" for s in SOURCES)
        raise ValueError(
            f"unsupported ingest source {source!r}: scheme {scheme!r} is not one of {supported} "
            f"(or a bare local path)"
        )
    return scheme, location


# --------------------------------------------------------------------------- files


def check_output_dir(output_dir: Path, marker: str) -> None:
    """A non-empty `output_dir` may be replaced only if it holds `marker` (our own earlier
    output); anything else is an error rather than a silent rmtree of user files."""
    if output_dir.is_dir() and any(output_dir.iterdir()) and not (output_dir / marker).is_file():
        raise FileExistsError(
            f"output directory {output_dir} is not empty and holds no {marker} from an "
            f"earlier run; pick an empty or new directory"
        )


def prepare_output_dir(output_dir: Path, marker: str, force: bool = False) -> None:
    """Make `output_dir` empty (`check_output_dir` first, unless `force`: a staging directory
    of our own that a killed run left behind)."""
    if not force:
        check_output_dir(output_dir, marker)
    if output_dir.exists():
        shutil.rmtree(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)


def link_or_copy(src: Path, dst: Path) -> bool:
    """Hardlink `src` to `dst` (same filesystem), else copy. True when linked."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
        return True
    except OSError:  # EXDEV (another filesystem), EPERM (no hardlinks there), ...
        shutil.copy2(src, dst)
        return False


def media_paths(records: Iterable[Record]) -> list[Any]:
    """Distinct media path values in first-seen order (values may be malformed; kept as is)."""
    seen: dict[Any, None] = {}
    for record in records:
        items = record.media if isinstance(record.media, list) else []
        for item in items:
            for rel in item if isinstance(item, list) else []:
                if isinstance(rel, str):
                    seen.setdefault(rel, None)
    return list(seen)


def copy_media(root: Path, output_dir: Path, rels: list[str]) -> tuple[int, int, list[str]]:
    """Link or copy each `root/rel` to `output_dir/rel`; unsafe or missing paths are skipped.

    Returns (linked, copied, skipped) with skipped as "'rel': why" strings.
    """
    linked = copied = 0
    skipped: list[str] = []
    done: set[str] = set()
    for rel in progress(rels, "ingest media", len(rels)):
        try:
            src = resolve_media(root, rel)
        except ValueError as err:  # absolute, `..` out, symlink out, NUL byte: validate says which
            skipped.append(f"{rel!r}: {err}")
            continue
        dest_rel = os.path.normpath(rel)
        if not src.is_file() or dest_rel.startswith(".."):
            skipped.append(f"{rel!r}: not a file inside the source")
            continue
        if dest_rel in done:  # "a/./x.png" and "a/x.png" are one file
            continue
        done.add(dest_rel)
        if link_or_copy(src, output_dir / dest_rel):
            linked += 1
        else:
            copied += 1
    return linked, copied, skipped


def content_hash(dataset_dir: Path, exclude: tuple[str, ...] = (LINEAGE_FILE,)) -> str:
    """sha256 over every file of the dataset (records.parquet + media), sorted by relative path;
    each file contributes its path and its own sha256, so renames change the hash too."""
    digest = hashlib.sha256()
    files = sorted(p for p in dataset_dir.rglob("*") if p.is_file() and p.name not in exclude)
    for path in progress(files, "content hash", len(files)):
        rel = path.relative_to(dataset_dir).as_posix()
        digest.update(rel.encode() + b"\0" + file_sha256(path).encode() + b"\n")
    return f"sha256:{digest.hexdigest()}"


# --------------------------------------------------------------------------- lineage


def _meta(record: Record) -> dict[str, Any]:
    """A record's meta as a mapping; {} where it is not one (validate quarantines those)."""
    try:
        meta = json.loads(record.meta or "{}")
    except (TypeError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def counts(records: Iterable[Record]) -> dict[str, dict[str, int]]:
    """Row counts per split, task, mode and split/task/mode (values str()-ed, sorted)."""
    by: dict[str, Counter[str]] = {
        k: Counter() for k in ("split", "task", "mode", "split/task/mode")
    }
    for r in records:
        split, task, mode = str(r.split), str(r.task), str(r.mode)
        by["split"][split] += 1
        by["task"][task] += 1
        by["mode"][mode] += 1
        by["split/task/mode"][f"{split}/{task}/{mode}"] += 1
        task_from = _meta(r).get("task_from")
        if task_from:  # conversation formats: the record's, the config's or a detected task
            by.setdefault("task_from", Counter())[f"{task_from}/{task}"] += 1
    return {k: dict(sorted(c.items())) for k, c in by.items()}


def _lineage(
    config: IngestConfig, scheme: str, output_dir: Path, ingested: _Ingested
) -> dict[str, Any]:
    rows_out = pq.read_metadata(output_dir / RECORDS_FILE).num_rows
    rows_in = len(ingested.records)
    if rows_in != rows_out:  # nothing is dropped at ingest; a mismatch is a bug here
        raise RuntimeError(f"ingest read {rows_in} rows but wrote {rows_out}")
    n_files = sum(1 for p in output_dir.rglob("*") if p.is_file()) - 1  # minus records.parquet
    return {
        "stage": "ingest",
        "source": config.source,
        "scheme": scheme,
        "dvc_rev": ingested.extra.get("dvc_rev_resolved", config.dvc_rev),
        "content_hash": content_hash(output_dir),
        "rows_in": rows_in,
        "rows_out": rows_out,
        "media_files": n_files,
        "counts": counts(ingested.records),
        "generator": None,
        **ingested.extra,
    }


def _log(tracker: Tracker, config: IngestConfig, lineage: Mapping[str, Any], path: Path) -> None:
    with tracker.start_run("ingest", tags={"stage": "ingest", "source": config.source}):
        tracker.log_params(
            {
                **to_dict(config),
                "content_hash": lineage["content_hash"],
                "scheme": lineage["scheme"],
                "dvc_rev_resolved": lineage["dvc_rev"],
            }
        )
        metrics = {"rows_in": lineage["rows_in"], "rows_out": lineage["rows_out"]}
        metrics["rows_unreadable"] = lineage.get("rows_unreadable", 0)
        metrics["media_files"] = lineage["media_files"]
        for kind in ("split", "task", "mode"):
            metrics.update({f"rows.{kind}.{k}": v for k, v in lineage["counts"][kind].items()})
        tracker.log_metrics(metrics)
        tracker.log_artifact(path)


# --------------------------------------------------------------------------- stage


def run(config: IngestConfig, output_dir: Path, tracker: Tracker | None = None) -> IngestResult:
    """Ingest `config.source` into `output_dir` (records.parquet + media + lineage.json).

    `output_dir` must be empty, new, or an earlier ingest output (which is replaced).
    `tracker` defaults to `make_tracker(config.tracking_uri, config.experiment)`.

    Written whole or not at all: the dataset is built in a sibling staging directory and
    renamed into place once complete, so a failure at any point (a remote that gives up, a full
    disk, a kill) leaves no `records.parquet` a later stage could take for a whole dataset, and
    an earlier ingest output in `output_dir` stays as it was until the new one replaces it.
    """
    output_dir = Path(output_dir)
    scheme, location = split_source(config.source)
    if scheme == "file":  # output_dir must not hold the source
        _check_local_root(Path(location), output_dir)
    check_output_dir(output_dir, LINEAGE_FILE)
    staging = output_dir.with_name(f".{output_dir.name}.partial")
    prepare_output_dir(staging, LINEAGE_FILE, force=True)
    try:
        ingested = SOURCES[scheme](config, location, staging)
        lineage = _lineage(config, scheme, staging, ingested)
        (staging / LINEAGE_FILE).write_text(json.dumps(lineage, indent=2, sort_keys=True) + "\n")
        prepare_output_dir(output_dir, LINEAGE_FILE)
        output_dir.rmdir()
        os.replace(staging, output_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    path = output_dir / LINEAGE_FILE
    _log(tracker or make_tracker(config.tracking_uri, config.experiment), config, lineage, path)
    return IngestResult(output_dir=output_dir, n_records=lineage["rows_out"], lineage=lineage)
