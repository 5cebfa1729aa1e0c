"""Stage 2, `validate`: check every row of a canonical dataset; quarantine the bad ones.

    unireward validate --dataset runs/ingest --output-dir runs/validate

Each row goes through `ROW_CHECKS`, a list of small functions `check(record, ctx) -> reason | None`
(schema shape per task/mode, contract labels, score ranges, frame counts, meta JSON, duplicate
ids, media safety and decodability). A row with any reason is quarantined, never dropped: its
FIRST reason goes to the `reason` column and all of them to `reasons`. Reasons read
"<category>: <detail>"; `ValidateResult.reasons` counts the category of each row's first reason.

Outputs in `output_dir/`:
- `records.parquet` + media: the valid rows, in input order, canonical schema, same media paths
  (hardlinked where the filesystem allows, else copied);
- `quarantine.parquet`: the bad rows (canonical columns, all nullable, + `reason`, `reasons`);
- `report.html`: a self-contained report (counts, reasons, a sample of quarantined rows);
- `validation.json`: the result.
Past `max_bad_fraction` every output is still written, then `ValidationFailed` is raised.

Media are opened with PIL only after the header size is checked against `max_image_pixels`
(decompression bombs), and each distinct path is checked once however many rows share it.
The great-expectations suites of the data-plane issue add to `ROW_CHECKS`; nothing else changes.
"""

from __future__ import annotations

import html
import json
import math
import os
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from unireward.config import to_dict
from unireward.contract import label_to_preferred
from unireward.data.ingest import (
    check_disjoint,
    copy_media,
    counts,
    media_paths,
    prepare_output_dir,
)
from unireward.data.schema import RECORDS_FILE, SCHEMA, Record, read_records, write_records
from unireward.judge.examples import resolve_media
from unireward.tasks import SCORE_RANGE, TIE_ANSWERS, Mode, Task

QUARANTINE_FILE = "quarantine.parquet"
REPORT_FILE = "report.html"
VALIDATION_FILE = "validation.json"
REPORT_SAMPLE = 50  # quarantined rows shown in report.html

# Quarantined rows may hold values of the wrong type or nulls: every column is nullable there.
QUARANTINE_SCHEMA = pa.schema(
    [f.with_nullable(True) for f in SCHEMA]
    + [pa.field("reason", pa.string()), pa.field("reasons", pa.list_(pa.string()))]
)
_STR_FIELDS = ("id", "task", "mode", "prompt", "split", "source", "meta")
_OPTIONAL_STR_FIELDS = ("label", "cot")


@dataclass(frozen=True)
class ValidateConfig:
    max_bad_fraction: float = 0.01  # fail the run past this fraction of quarantined rows
    check_media: bool = True  # open and decode every media file (else: path, existence, size)
    max_image_pixels: int = 4096 * 4096
    max_file_bytes: int = 20 * 1024 * 1024
    min_frames: int = 1  # per video item
    max_frames: int = 64

    def __post_init__(self) -> None:
        frac = self.max_bad_fraction
        if isinstance(frac, bool) or not isinstance(frac, int | float) or not 0 <= frac <= 1:
            raise ValueError(f"validate.max_bad_fraction must be in [0, 1], got {frac!r}")
        if not isinstance(self.check_media, bool):
            raise ValueError(
                f"validate.check_media must be true or false, got {self.check_media!r}"
            )
        for name in ("max_image_pixels", "max_file_bytes", "min_frames", "max_frames"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"validate.{name} must be an integer >= 1, got {value!r}")
        if self.min_frames > self.max_frames:
            raise ValueError(
                f"validate.min_frames ({self.min_frames}) must be <= max_frames ({self.max_frames})"
            )


@dataclass
class ValidateResult:
    n_in: int
    n_valid: int
    n_quarantined: int
    reasons: dict[str, int]  # category of each quarantined row's first reason -> rows
    output_dir: Path

    @property
    def bad_fraction(self) -> float:
        return self.n_quarantined / self.n_in if self.n_in else 0.0


class ValidationFailed(RuntimeError):
    """More rows were quarantined than `max_bad_fraction` allows; outputs are written."""

    def __init__(self, result: ValidateResult, max_bad_fraction: float) -> None:
        top = sorted(result.reasons.items(), key=lambda kv: (-kv[1], kv[0]))[:3]
        super().__init__(
            f"{result.n_quarantined}/{result.n_in} rows quarantined "
            f"({result.bad_fraction:.2%}) > max_bad_fraction {max_bad_fraction:.2%}; top reasons: "
            + ", ".join(f"{k} ({v})" for k, v in top)
            + f"; see {result.output_dir / REPORT_FILE}"
        )
        self.result = result


@dataclass
class _Context:
    config: ValidateConfig
    root: Path
    first_of: dict[str, Record]  # id -> the first row carrying it (by identity)
    media_cache: dict[str, str | None] = field(default_factory=dict)


Check = Callable[[Record, _Context], "str | None"]


# --------------------------------------------------------------------------- row checks


def check_types(r: Record, ctx: _Context) -> str | None:
    """Column types; the other checks assume them, so a failure here skips the rest."""
    for name in _STR_FIELDS:
        value = getattr(r, name)
        if not isinstance(value, str):
            return f"field type: {name} is {type(value).__name__}, expected a string"
    for name in _OPTIONAL_STR_FIELDS:
        value = getattr(r, name)
        if value is not None and not isinstance(value, str):
            return f"field type: {name} is {type(value).__name__}, expected a string or null"
    if not isinstance(r.responses, list) or not all(isinstance(s, str) for s in r.responses):
        return f"field type: responses must be a list of strings, got {r.responses!r:.80}"
    if not isinstance(r.media, list) or not all(
        isinstance(item, list) and all(isinstance(p, str) for p in item) for item in r.media
    ):
        return f"field type: media must be a list of lists of paths, got {r.media!r:.80}"
    if r.score is not None and (isinstance(r.score, bool) or not isinstance(r.score, int | float)):
        return f"field type: score is {type(r.score).__name__}, expected a number or null"
    return None


def _texts(r: Record) -> list[tuple[str, str]]:
    named = [(n, getattr(r, n)) for n in (*_STR_FIELDS, *_OPTIONAL_STR_FIELDS)]
    named += [(f"responses[{i}]", s) for i, s in enumerate(r.responses)]
    return [(n, v) for n, v in named if v is not None]


def check_text(r: Record, ctx: _Context) -> str | None:
    for name, value in _texts(r):
        if "\x00" in value:
            return f"invalid text: {name} contains a NUL character"
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return f"invalid text: {name} is not valid UTF-8 (lone surrogate)"
    return None


def _task(r: Record) -> Task | None:
    return Task(r.task) if r.task in Task._value2member_map_ else None


def _mode(r: Record) -> Mode | None:
    return Mode(r.mode) if r.mode in Mode._value2member_map_ else None


def check_task(r: Record, ctx: _Context) -> str | None:
    if _task(r) is None:
        return f"unknown task: {r.task!r}; expected one of {', '.join(t.value for t in Task)}"
    return None


def check_mode(r: Record, ctx: _Context) -> str | None:
    if _mode(r) is None:
        return f"unknown mode: {r.mode!r}; expected one of {', '.join(m.value for m in Mode)}"
    return None


def expected_shape(task: Task, mode: Mode) -> tuple[int, int]:
    """(visual items, responses) for a (task, mode), as in data/schema.py."""
    if task.is_generation:
        return (2 if mode == Mode.PAIRWISE else 1), 0
    return 1, (2 if mode == Mode.PAIRWISE else 1)


def check_shape(r: Record, ctx: _Context) -> str | None:
    task, mode = _task(r), _mode(r)
    if task is None or mode is None:
        return None
    items, responses = expected_shape(task, mode)
    if len(r.media) != items:
        return f"shape: {task.value} {mode.value} takes {items} visual item(s), got {len(r.media)}"
    if len(r.responses) != responses:
        return (
            f"shape: {task.value} {mode.value} takes {responses} response(s), "
            f"got {len(r.responses)}"
        )
    return None


def check_prompt(r: Record, ctx: _Context) -> str | None:
    return None if r.prompt.strip() else "empty prompt: the caption / question is blank"


def check_label(r: Record, ctx: _Context) -> str | None:
    task = _task(r)
    if task is None or _mode(r) != Mode.PAIRWISE:
        return None
    if r.label is None:
        return "missing label: a pairwise row needs its contract answer string"
    if r.label in TIE_ANSWERS.values() and not task.is_generation:
        return f"invalid label: tie {r.label!r} on {task.value} (ties exist only for generation)"
    try:
        label_to_preferred(task, r.label)
    except ValueError as err:
        return f"invalid label: {err}"
    return None


def check_score(r: Record, ctx: _Context) -> str | None:
    task = _task(r)
    if task is None or _mode(r) != Mode.POINTWISE:
        return None
    if r.score is None:
        return "missing score: a pointwise row needs a ground-truth score"
    if not math.isfinite(r.score):
        return f"score not finite: {r.score}"
    lo, hi = SCORE_RANGE[task]
    if not lo <= r.score <= hi:
        return f"score out of range: {r.score:g} outside the {task.value} scale [{lo:g}, {hi:g}]"
    return None


def check_frames(r: Record, ctx: _Context) -> str | None:
    task = _task(r)
    frames = sorted({len(item) for item in r.media})
    if task is None or not frames:
        return None
    if len(frames) > 1:
        return f"frames: visual items have different frame counts {frames}"
    n = frames[0]
    if not task.is_video and n != 1:
        return f"frames: image task with {n} frames per item (an image is exactly one frame)"
    lo, hi = ctx.config.min_frames, ctx.config.max_frames
    if task.is_video and not lo <= n <= hi:
        return f"frames: {n} frames per video, outside [min_frames {lo}, max_frames {hi}]"
    return None


def check_meta(r: Record, ctx: _Context) -> str | None:
    try:
        meta = json.loads(r.meta)
    except json.JSONDecodeError as err:
        return f"invalid meta: not JSON ({err})"
    if not isinstance(meta, dict):
        return f"invalid meta: JSON {type(meta).__name__}, expected an object"
    return None


def check_duplicate_id(r: Record, ctx: _Context) -> str | None:
    if ctx.first_of[r.id] is not r:  # identity: the first row with this id stays valid
        return f"duplicate id: {r.id!r} appeared earlier (first occurrence kept)"
    return None


def check_media(r: Record, ctx: _Context) -> str | None:
    for item in r.media:
        for rel in item:
            if rel not in ctx.media_cache:
                ctx.media_cache[rel] = media_reason(ctx.root, rel, ctx.config)
            if ctx.media_cache[rel] is not None:
                return ctx.media_cache[rel]
    return None


ROW_CHECKS: list[Check] = [
    check_types,  # must stay first: a failure skips the rest
    check_text,
    check_task,
    check_mode,
    check_shape,
    check_prompt,
    check_label,
    check_score,
    check_frames,
    check_meta,
    check_duplicate_id,
    check_media,
]


def row_reasons(r: Record, ctx: _Context) -> list[str]:
    """Every failing check's reason, in ROW_CHECKS order; [] for a valid row."""
    first = check_types(r, ctx)
    if first is not None:
        return [first]
    return [reason for check in ROW_CHECKS[1:] if (reason := check(r, ctx)) is not None]


# --------------------------------------------------------------------------- media


def media_reason(root: Path, rel: str, config: ValidateConfig) -> str | None:
    """Why media path `rel` (relative to `root`) is unusable, or None."""
    if "\x00" in rel:
        return f"media path invalid: {rel!r} contains a NUL character"
    try:
        path = resolve_media(root, rel)
    except ValueError:
        return _unsafe_path_reason(rel)
    if not path.exists():
        return f"media missing: {rel!r} not found under the dataset root"
    if not path.is_file():
        return f"media not a file: {rel!r}"
    size = path.stat().st_size
    if size == 0:
        return f"media empty: {rel!r} has zero bytes"
    if size > config.max_file_bytes:
        return f"media too large: {rel!r} has {size} bytes > max_file_bytes {config.max_file_bytes}"
    return _decode_reason(path, rel, config.max_image_pixels) if config.check_media else None


def _unsafe_path_reason(rel: str) -> str:
    if Path(rel).is_absolute():
        return f"media path absolute: {rel!r}; paths must be relative to the dataset root"
    if os.path.normpath(rel).split(os.sep)[0] == "..":
        return f"media path escapes root: {rel!r} climbs out of the dataset with '..'"
    return f"media symlink out of root: {rel!r} resolves outside the dataset"


def _decode_reason(path: Path, rel: str, max_pixels: int) -> str | None:
    try:
        with warnings.catch_warnings():
            # Our own limit is checked on the header below; PIL's warning adds nothing.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:  # lazy: reads the header only
                width, height = img.size
                if width * height > max_pixels:
                    return (
                        f"media too many pixels: {rel!r} is {width}x{height} "
                        f"> max_image_pixels {max_pixels}"
                    )
                img.verify()  # checksums; leaves the image unusable, hence the second open
            with Image.open(path) as img:
                img.load()
    except Image.DecompressionBombError as err:  # header past PIL's own hard limit
        return f"media too many pixels: {rel!r}: {err}"
    except Exception as err:  # decoders raise OSError, SyntaxError, struct.error, ...: all "bad"
        return f"media undecodable: {rel!r} ({type(err).__name__}: {err})"
    return None


# --------------------------------------------------------------------------- outputs


def _category(reason: str) -> str:
    return reason.split(":", 1)[0]


def _fit(name: str, value: Any) -> Any:
    """`value` as the quarantine column `name` can hold it (wrong types become repr strings)."""
    if name == "score":
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return float(value) if ok else None
    if name == "responses":
        ok = isinstance(value, list) and all(s is None or isinstance(s, str) for s in value)
        return value if ok else None
    if name == "media":
        ok = isinstance(value, list) and all(
            isinstance(i, list) and all(p is None or isinstance(p, str) for p in i) for i in value
        )
        return value if ok else None
    return value if value is None or isinstance(value, str) else repr(value)


def _write_quarantine(bad: list[tuple[Record, list[str]]], output_dir: Path) -> None:
    rows = [
        {**{k: _fit(k, v) for k, v in asdict(r).items()}, "reason": why[0], "reasons": why}
        for r, why in bad
    ]
    table = pa.Table.from_pylist(rows, schema=QUARANTINE_SCHEMA)
    pq.write_table(table, output_dir / QUARANTINE_FILE)


def _copy_valid_media(valid: list[Record], root: Path, output_dir: Path) -> None:
    _, _, skipped = copy_media(root, output_dir, media_paths(valid))
    if skipped:  # every path of a valid row passed media_reason; this would be a bug here
        raise RuntimeError(f"media of valid rows could not be copied: {skipped[:5]}")


def _check_accounting(result: ValidateResult, output_dir: Path) -> None:
    """n_in == n_valid + n_quarantined, in memory and in the files written."""
    on_disk = [pq.read_metadata(output_dir / f).num_rows for f in (RECORDS_FILE, QUARANTINE_FILE)]
    if result.n_in != result.n_valid + result.n_quarantined or on_disk != [
        result.n_valid,
        result.n_quarantined,
    ]:
        raise RuntimeError(
            f"validate lost rows: {result.n_in} in, {result.n_valid} valid + "
            f"{result.n_quarantined} quarantined; files hold {on_disk}"
        )


def _table(rows: list[tuple[str, ...]], head: tuple[str, ...]) -> str:
    esc = html.escape
    th = "".join(f"<th>{esc(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{th}</tr>{body}</table>"


def _report_html(
    result: ValidateResult,
    config: ValidateConfig,
    in_counts: dict[str, dict[str, int]],
    valid_counts: dict[str, dict[str, int]],
    bad: list[tuple[Record, list[str]]],
) -> str:
    passed = result.bad_fraction <= config.max_bad_fraction
    status = "PASSED" if passed else "FAILED"
    summary = [
        ("rows in", str(result.n_in)),
        ("valid", str(result.n_valid)),
        ("quarantined", str(result.n_quarantined)),
        ("bad fraction", f"{result.bad_fraction:.4%}"),
        ("max_bad_fraction", f"{config.max_bad_fraction:.4%}"),
    ]
    reasons = sorted(result.reasons.items(), key=lambda kv: (-kv[1], kv[0]))
    groups = in_counts["split/task/mode"]
    per_group = [
        (k, str(v), str(valid_counts["split/task/mode"].get(k, 0))) for k, v in groups.items()
    ]
    sample = [
        (str(r.id), str(r.split), str(r.task), str(r.mode), "; ".join(why))
        for r, why in bad[:REPORT_SAMPLE]
    ]
    style = (
        "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}"
        ".PASSED{color:#080}.FAILED{color:#b00}"
    )
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>validate report</title>"
        f"<style>{style}</style></head><body>"
        f"<h1>validate: <span class='{status}'>{status}</span></h1>"
        + _table(summary, ("", "rows"))
        + "<h2>Quarantine reasons (first reason per row)</h2>"
        + _table([(k, str(v)) for k, v in reasons], ("reason", "rows"))
        + "<h2>Rows per split / task / mode</h2>"
        + _table(per_group, ("split/task/mode", "in", "valid"))
        + f"<h2>Quarantined rows (first {min(len(bad), REPORT_SAMPLE)} of {len(bad)})</h2>"
        + _table(sample, ("id", "split", "task", "mode", "reasons"))
        + "</body></html>\n"
    )


def _write_outputs(
    config: ValidateConfig,
    records: list[Record],
    verdicts: list[list[str]],
    root: Path,
    output_dir: Path,
) -> ValidateResult:
    valid = [r for r, why in zip(records, verdicts, strict=True) if not why]
    bad = [(r, why) for r, why in zip(records, verdicts, strict=True) if why]
    reasons = Counter(_category(why[0]) for _, why in bad)
    result = ValidateResult(
        n_in=len(records),
        n_valid=len(valid),
        n_quarantined=len(bad),
        reasons=dict(sorted(reasons.items())),
        output_dir=output_dir,
    )
    write_records(valid, output_dir)
    _copy_valid_media(valid, root, output_dir)
    _write_quarantine(bad, output_dir)
    _check_accounting(result, output_dir)
    in_counts, valid_counts = counts(records), counts(valid)
    report = _report_html(result, config, in_counts, valid_counts, bad)
    (output_dir / REPORT_FILE).write_text(report, encoding="utf-8")
    summary = {
        **{k: v for k, v in asdict(result).items() if k != "output_dir"},
        "bad_fraction": result.bad_fraction,
        "passed": result.bad_fraction <= config.max_bad_fraction,
        "config": to_dict(config),
        "counts_in": in_counts,
        "counts_valid": valid_counts,
    }
    (output_dir / VALIDATION_FILE).write_text(json.dumps(summary, indent=2) + "\n")
    return result


# --------------------------------------------------------------------------- stage


def run(config: ValidateConfig, dataset_dir: Path, output_dir: Path) -> ValidateResult:
    """Validate the canonical dataset at `dataset_dir` into `output_dir` (see module docstring).

    Raises ValidationFailed (after writing every output) past `config.max_bad_fraction`;
    ValueError for an empty dataset or overlapping directories.
    """
    dataset_dir, output_dir = Path(dataset_dir), Path(output_dir)
    records = read_records(dataset_dir)
    if not records:
        raise ValueError(f"{dataset_dir / RECORDS_FILE} has no rows; nothing to validate")
    check_disjoint(dataset_dir, output_dir)
    prepare_output_dir(output_dir, VALIDATION_FILE)
    first_of: dict[str, Record] = {}
    for r in records:
        if isinstance(r.id, str):
            first_of.setdefault(r.id, r)
    ctx = _Context(config=config, root=dataset_dir, first_of=first_of)
    verdicts = [row_reasons(r, ctx) for r in records]
    result = _write_outputs(config, records, verdicts, dataset_dir, output_dir)
    if result.bad_fraction > config.max_bad_fraction:
        raise ValidationFailed(result, config.max_bad_fraction)
    return result
