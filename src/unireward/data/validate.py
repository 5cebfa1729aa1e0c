"""Stage 2, `validate`: check every row of a canonical dataset; quarantine the bad ones.

    unireward validate --dataset runs/ingest --output-dir runs/validate

Two layers decide, and `ROW_CHECKS` lists the reasons in one fixed order:
- Python checks for what only code can see: column types, rows ingest could not read (their
  `ingest_error`), text encoding, the shape of a row for its task/mode, blank prompts, meta JSON,
  media path safety (inside the dataset root only) and what a media file is (size, pixels from
  the header, decodability, sha256; read once per distinct path, in parallel processes);
- great-expectations 1.x suites over tables of those facts (`unireward.data.expectations`):
  task / mode / label vocabulary, scores per task, frame counts, duplicate ids, duplicate media
  within a pair, file-size and pixel limits, decodability, train/eval leakage by media content
  (and by prompt when `prompt_leakage`), and the balance of which position is preferred.
A row with any reason is quarantined, never dropped: its FIRST reason goes to the `reason`
column and all of them to `reasons`. Reasons read "<category>: <detail>";
`ValidateResult.reasons` counts the category of each row's first reason.

Outputs in `output_dir/`:
- `records.parquet` + media: the valid rows, in input order, canonical schema, same media paths
  (hardlinked where the filesystem allows, else copied);
- `quarantine.parquet`: the bad rows (canonical columns, all nullable, + `reason`, `reasons`);
- `report.html`: a self-contained report (counts, reasons, expectations, quarantined rows);
- `validation.json`: the result.
Past `max_bad_fraction`, or when a table-level expectation fails (position balance), every
output is still written, then `ValidationFailed` is raised.

Media are opened with PIL only after the header size is checked against `max_image_pixels`
(decompression bombs). Accounting is exact: rows in == valid + quarantined, checked in memory
and against the files written.
"""

from __future__ import annotations

import hashlib
import html
import io
import json
import math
import os
import stat
import warnings
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from unireward.config import to_dict
from unireward.contract import label_to_preferred
from unireward.data import expectations
from unireward.data.ingest import (
    check_disjoint,
    copy_media,
    counts,
    media_paths,
    prepare_output_dir,
)
from unireward.data.media import resolve_inside
from unireward.data.schema import RECORDS_FILE, SCHEMA, Record, read_records, write_records
from unireward.progress import progress
from unireward.tasks import SCORE_RANGE, TIE_ANSWERS, Mode, Task

QUARANTINE_FILE = "quarantine.parquet"
REPORT_FILE = "report.html"
VALIDATION_FILE = "validation.json"
REPORT_SAMPLE = 50  # quarantined rows shown in report.html
_PARALLEL_MIN = 256  # distinct media files below which probing stays in this process

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
    train_split: str = "train"  # leakage: rows of other splits must not reuse its media
    prompt_leakage: bool = False  # also quarantine eval rows whose prompt occurs in train
    max_position_imbalance: float = 0.2  # |share of pairs preferring position 2 - 0.5| allowed
    min_pairs_for_balance: int = 50  # fewer non-tie pairwise rows: balance is not judged
    workers: int = 0  # processes probing media; 0 = one per CPU

    def __post_init__(self) -> None:
        for name in ("max_bad_fraction", "max_position_imbalance"):
            frac = getattr(self, name)
            if isinstance(frac, bool) or not isinstance(frac, int | float) or not 0 <= frac <= 1:
                raise ValueError(f"validate.{name} must be in [0, 1], got {frac!r}")
        for name in ("check_media", "prompt_leakage"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(
                    f"validate.{name} must be true or false, got {getattr(self, name)!r}"
                )
        for name in (
            "max_image_pixels",
            "max_file_bytes",
            "min_frames",
            "max_frames",
            "min_pairs_for_balance",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"validate.{name} must be an integer >= 1, got {value!r}")
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 0:
            raise ValueError(f"validate.workers must be an integer >= 0, got {self.workers!r}")
        if not isinstance(self.train_split, str) or not self.train_split:
            raise ValueError("validate.train_split must be a split name")
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
    table_checks: list[dict[str, Any]] = field(default_factory=list)  # GX table-level results

    @property
    def bad_fraction(self) -> float:
        return self.n_quarantined / self.n_in if self.n_in else 0.0

    def failed(self, config: ValidateConfig) -> bool:
        too_many = self.bad_fraction > config.max_bad_fraction
        return too_many or any(not c["success"] for c in self.table_checks)


class ValidationFailed(RuntimeError):
    """Too many rows quarantined, or a table-level expectation failed; outputs are written."""

    def __init__(self, result: ValidateResult, max_bad_fraction: float) -> None:
        top = sorted(result.reasons.items(), key=lambda kv: (-kv[1], kv[0]))[:3]
        failed = [c for c in result.table_checks if not c["success"]]
        what = (
            f"{result.n_quarantined}/{result.n_in} rows quarantined "
            f"({result.bad_fraction:.2%}) > max_bad_fraction {max_bad_fraction:.2%}; top reasons: "
            + ", ".join(f"{k} ({v})" for k, v in top)
            if result.bad_fraction > max_bad_fraction
            else "table-level expectations failed: "
            + ", ".join(f"{c['check']} (observed {c['observed']})" for c in failed)
        )
        super().__init__(f"{what}; see {result.output_dir / REPORT_FILE}")
        self.result = result


# --------------------------------------------------------------------------- media facts


@dataclass(frozen=True)
class MediaFacts:
    """What one media path is. `unsafe` (path outside the root, missing, not a file) is decided
    here; the limits (bytes, pixels, decodable) are decided by the media suite."""

    rel: str
    unsafe: str | None = None
    bytes: int | None = None
    width: int | None = None
    height: int | None = None
    pixels: float | None = None  # inf: past PIL's own bomb limit, header not even read
    decodable: bool | None = None  # None: not tried (too large, too many pixels, check off)
    error: str | None = None
    sha256: str | None = None


def probe_media(root: Path, rel: str, config: ValidateConfig) -> MediaFacts:
    """Read media path `rel` once: safety, size, sha256, header size, then a full decode."""
    path, unsafe = resolve_inside(root, rel)
    if path is None:
        return MediaFacts(rel, unsafe=unsafe)
    try:
        st = path.stat()
    except FileNotFoundError:
        return MediaFacts(rel, unsafe=f"media missing: {rel!r} not found under the dataset root")
    if not stat.S_ISREG(st.st_mode):
        return MediaFacts(rel, unsafe=f"media not a file: {rel!r}")
    size = st.st_size
    if size == 0 or size > config.max_file_bytes:
        return MediaFacts(rel, bytes=size)  # not read: the media suite rejects the size
    data = path.read_bytes()
    facts = MediaFacts(rel, bytes=size, sha256=hashlib.sha256(data).hexdigest())
    return _probe_image(facts, data, config)


def _probe_image(facts: MediaFacts, data: bytes, config: ValidateConfig) -> MediaFacts:
    from dataclasses import replace

    try:
        with warnings.catch_warnings():
            # Our own limit is checked on the header below; PIL's warning adds nothing.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:  # lazy: reads the header only
                width, height = img.size
                facts = replace(facts, width=width, height=height, pixels=float(width * height))
                if width * height > config.max_image_pixels or not config.check_media:
                    return facts
                img.verify()  # checksums; leaves the image unusable, hence the second open
            with Image.open(io.BytesIO(data)) as img:
                img.load()
    except Image.DecompressionBombError as err:  # header past PIL's own hard limit
        return replace(facts, pixels=math.inf, error=str(err))
    except Exception as err:  # decoders raise OSError, SyntaxError, struct.error, ...: all "bad"
        return replace(facts, decodable=False, error=f"{type(err).__name__}: {err}")
    return replace(facts, decodable=True)


def _probe_chunk(root: Path, rels: list[str], config: ValidateConfig) -> list[MediaFacts]:
    return [probe_media(root, rel, config) for rel in rels]


def probe_all(root: Path, rels: list[str], config: ValidateConfig) -> dict[str, MediaFacts]:
    """`probe_media` for every path; in `config.workers` processes when there are many."""
    workers = config.workers or os.cpu_count() or 1
    if workers == 1 or len(rels) < _PARALLEL_MIN:
        return {rel: probe_media(root, rel, config) for rel in progress(rels, "media", len(rels))}
    size = max(64, len(rels) // (workers * 8))
    chunks = [rels[i : i + size] for i in range(0, len(rels), size)]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        results = pool.map(_probe_chunk, [root] * len(chunks), chunks, [config] * len(chunks))
        return {f.rel: f for chunk in progress(results, "media", len(chunks)) for f in chunk}


def media_limit_reason(f: MediaFacts, failed: set[str], config: ValidateConfig) -> str | None:
    """The quarantine reason of a media path, given the media-suite checks it `failed`."""
    rel = f.rel
    if f.unsafe is not None:
        return f.unsafe
    if "bytes" in failed:
        if f.bytes == 0:
            return f"media empty: {rel!r} has zero bytes"
        return (
            f"media too large: {rel!r} has {f.bytes} bytes > max_file_bytes {config.max_file_bytes}"
        )
    if "pixels" in failed:
        if f.width is None:
            return f"media too many pixels: {rel!r}: {f.error}"
        return (
            f"media too many pixels: {rel!r} is {f.width}x{f.height} "
            f"> max_image_pixels {config.max_image_pixels}"
        )
    if "decodable" in failed:
        return f"media undecodable: {rel!r} ({f.error})"
    return None


def media_reason(root: Path, rel: str, config: ValidateConfig) -> str | None:
    """Why media path `rel` (relative to `root`) is unusable, or None (one path, one suite run)."""
    facts = probe_media(root, rel, config)
    if facts.unsafe is not None:
        return facts.unsafe
    frames = {"media": _media_frame([facts])}
    outcome = expectations.run_suites(frames, {"media": expectations.media_suite(config)})
    failed = {c for c, rows in outcome.rows.get("media", {}).items() if 0 in rows}
    return media_limit_reason(facts, failed, config)


# --------------------------------------------------------------------------- tables for GX


def _media_frame(safe: list[MediaFacts]) -> Any:
    """One row per media path that is safe to open (row i = safe[i])."""
    import pandas as pd

    return pd.DataFrame(
        {
            "rel": [f.rel for f in safe],
            "bytes": [float(f.bytes) if f.bytes is not None else math.nan for f in safe],
            "pixels": [f.pixels if f.pixels is not None else math.nan for f in safe],
            "decodable": pd.Series([f.decodable for f in safe], dtype=object),
        }
    )


def _item_hash(item: list[str], media: dict[str, MediaFacts]) -> str | None:
    hashes = [media[rel].sha256 if rel in media else None for rel in item]
    return None if any(h is None for h in hashes) else "+".join(hashes)  # type: ignore[arg-type]


def _nan(value: float | None) -> float:
    return math.nan if value is None else float(value)


def _score_unit(r: Record) -> float | None:
    task = _task(r)
    if task is None or r.mode != Mode.POINTWISE or r.score is None or math.isnan(r.score):
        return None
    lo, hi = SCORE_RANGE[task]
    return (r.score - lo) / (hi - lo)


def _frames(r: Record, video: bool) -> int | None:
    task, counts_ = _task(r), {len(item) for item in r.media}
    if task is None or task.is_video != video or len(counts_) != 1:
        return None  # unknown task, or items disagree (check_frames says so)
    return counts_.pop()


def _preferred_second(r: Record) -> float | None:
    task = _task(r)
    if task is None or r.mode != Mode.PAIRWISE or r.label is None:
        return None
    try:
        preferred = label_to_preferred(task, r.label)  # 1 first, 2 second, 0 tie
    except ValueError:
        return None  # an invalid label (the label expectation says so)
    return None if preferred == 0 else float(preferred == 2)


def _normalise_prompt(prompt: str) -> str:
    return " ".join(prompt.lower().split())


def build_tables(
    records: list[Record], rows: list[int], media: dict[str, MediaFacts], config: ValidateConfig
) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    """The GX tables (records, media, eval_media) and their suites; see expectations.py."""
    import pandas as pd

    sel = [records[i] for i in rows]
    pair = [r.media if len(r.media) == 2 else [None, None] for r in sel]
    table = pd.DataFrame(
        {
            "id": [r.id for r in sel],
            "task": [r.task for r in sel],
            "mode": [r.mode for r in sel],
            "label": [r.label for r in sel],
            "task_label": [
                f"{r.task}|{r.label}" if r.mode == Mode.PAIRWISE and r.label is not None else None
                for r in sel
            ],
            # float columns, NaN = null for GX: a NaN score counts as missing for the null
            # check (check_score then tells "not finite" from "missing" apart)
            "score": [_nan(r.score) for r in sel],
            "score_unit": [_nan(_score_unit(r)) for r in sel],
            "image_frames": [_nan(_frames(r, video=False)) for r in sel],
            "video_frames": [_nan(_frames(r, video=True)) for r in sel],
            "item1_hash": [_item_hash(p[0], media) if p[0] else None for p in pair],
            "item2_hash": [_item_hash(p[1], media) if p[1] else None for p in pair],
            "preferred_second": [_nan(_preferred_second(r)) for r in sel],
        },
        index=rows,
    )
    train = [r for r in sel if r.split == config.train_split]
    train_hashes = sorted(
        {
            media[p].sha256
            for r in train
            for it in r.media
            for p in it
            if p in media and media[p].sha256
        }
    )
    train_prompts = sorted({_normalise_prompt(r.prompt) for r in train})
    use = [
        (i, media[p].sha256, _normalise_prompt(r.prompt))
        for i, r in zip(rows, sel, strict=True)
        if r.split != config.train_split
        for it in r.media
        for p in it
        if p in media and media[p].sha256
    ]
    eval_media = pd.DataFrame(
        {
            "row": [u[0] for u in use],
            "sha256": [u[1] for u in use],
            "prompt_key": [u[2] for u in use],
        }
    )
    n_pairs = int(table["preferred_second"].notna().sum())
    safe = [f for f in media.values() if f.unsafe is None]
    frames = {"records": table, "media": _media_frame(safe), "eval_media": eval_media}
    suites = {
        "records": expectations.records_suite(config, n_pairs),
        "media": expectations.media_suite(config),
        "eval_media": expectations.eval_media_suite(train_hashes, train_prompts, config),
    }
    return frames, suites


# --------------------------------------------------------------------------- row checks


@dataclass
class _Context:
    config: ValidateConfig
    root: Path
    first_of: dict[str, int]  # id -> the row number of its first occurrence
    row_of: dict[int, int]  # id(record) -> row number
    flags: dict[str, set[int]] = field(default_factory=dict)  # records-suite check -> rows
    media_reasons: dict[str, str | None] = field(default_factory=dict)
    leaks: dict[int, list[str]] = field(default_factory=dict)  # row -> leakage checks failed

    def flagged(self, r: Record, check: str) -> bool:
        return self.row_of[id(r)] in self.flags.get(check, set())


Check = Callable[[Record, _Context], "str | None"]


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


def check_ingest(r: Record, ctx: _Context) -> str | None:
    """A source record ingest could not read carries why in meta["ingest_error"]."""
    try:
        meta = json.loads(r.meta)
    except json.JSONDecodeError:
        return None  # check_meta reports it
    error = meta.get("ingest_error") if isinstance(meta, dict) else None
    return str(error) if error else None


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
    if ctx.flagged(r, "task"):
        return f"unknown task: {r.task!r}; expected one of {', '.join(t.value for t in Task)}"
    return None


def check_mode(r: Record, ctx: _Context) -> str | None:
    if ctx.flagged(r, "mode"):
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
    if task is None or not ctx.flagged(r, "label"):
        return None
    if r.label is None:
        return "missing label: a pairwise row needs its contract answer string"
    if r.label in TIE_ANSWERS.values() and not task.is_generation:
        return f"invalid label: tie {r.label!r} on {task.value} (ties exist only for generation)"
    try:
        label_to_preferred(task, r.label)
    except ValueError as err:
        return f"invalid label: {err}"
    return f"invalid label: {r.label!r} on {task.value}"


def check_score(r: Record, ctx: _Context) -> str | None:
    task = _task(r)
    if task is None or not ctx.flagged(r, "score"):
        return None
    if r.score is None:
        return "missing score: a pointwise row needs a ground-truth score"
    if not math.isfinite(r.score):
        return f"score not finite: {r.score}"
    lo, hi = SCORE_RANGE[task]
    return f"score out of range: {r.score:g} outside the {task.value} scale [{lo:g}, {hi:g}]"


def check_frames(r: Record, ctx: _Context) -> str | None:
    task = _task(r)
    frames = sorted({len(item) for item in r.media})
    if task is None or not frames:
        return None
    if len(frames) > 1:
        return f"frames: visual items have different frame counts {frames}"
    if not ctx.flagged(r, "frames"):
        return None
    n = frames[0]
    if not task.is_video:
        return f"frames: image task with {n} frames per item (an image is exactly one frame)"
    lo, hi = ctx.config.min_frames, ctx.config.max_frames
    return f"frames: {n} frames per video, outside [min_frames {lo}, max_frames {hi}]"


def check_meta(r: Record, ctx: _Context) -> str | None:
    try:
        meta = json.loads(r.meta)
    except json.JSONDecodeError as err:
        return f"invalid meta: not JSON ({err})"
    if not isinstance(meta, dict):
        return f"invalid meta: JSON {type(meta).__name__}, expected an object"
    return None


def check_duplicate_id(r: Record, ctx: _Context) -> str | None:
    # GX flags every row of a repeated id; the first occurrence stays valid.
    if ctx.flagged(r, "duplicate id") and ctx.first_of[r.id] != ctx.row_of[id(r)]:
        return f"duplicate id: {r.id!r} appeared earlier (first occurrence kept)"
    return None


def check_media(r: Record, ctx: _Context) -> str | None:
    for item in r.media:
        for rel in item:
            if ctx.media_reasons.get(rel) is not None:
                return ctx.media_reasons[rel]
    return None


def check_duplicate_media(r: Record, ctx: _Context) -> str | None:
    if ctx.flagged(r, "duplicate media"):
        return "duplicate media: both items of the pair have the same content (sha256)"
    return None


def check_leakage(r: Record, ctx: _Context) -> str | None:
    found = ctx.leaks.get(ctx.row_of[id(r)], [])
    if "leakage media" in found:
        return f"leakage: {r.split} row reuses media content of the {ctx.config.train_split} split"
    if "leakage prompt" in found:
        return f"leakage: {r.split} row repeats a {ctx.config.train_split} prompt"
    return None


STRUCTURAL_CHECKS: list[Check] = [check_types, check_ingest]  # a failure skips the rest
ROW_CHECKS: list[Check] = [
    *STRUCTURAL_CHECKS,
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
    check_duplicate_media,
    check_leakage,
]


def structural_reason(r: Record, ctx: _Context) -> str | None:
    return next((why for check in STRUCTURAL_CHECKS if (why := check(r, ctx)) is not None), None)


def row_reasons(r: Record, ctx: _Context) -> list[str]:
    """Every failing check's reason, in ROW_CHECKS order; [] for a valid row."""
    first = structural_reason(r, ctx)
    if first is not None:
        return [first]
    rest = ROW_CHECKS[len(STRUCTURAL_CHECKS) :]
    return [reason for check in rest if (reason := check(r, ctx)) is not None]


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
    passed = not result.failed(config)
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
        + "<h2>Table-level expectations (great-expectations)</h2>"
        + _table(
            [
                (
                    c["table"],
                    c["check"],
                    c["expectation"],
                    json.dumps(c["kwargs"], default=str),
                    str(c["observed"]),
                    "pass" if c["success"] else "FAIL",
                )
                for c in result.table_checks
            ],
            ("table", "check", "expectation", "kwargs", "observed", "result"),
        )
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
    outcome: expectations.SuiteOutcome,
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
        table_checks=outcome.table_checks,
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
        "passed": not result.failed(config),
        "expectations_evaluated": outcome.evaluated,
        "rows_flagged_by_expectations": {
            f"{table}.{check}": len(rows)
            for table, checks in sorted(outcome.rows.items())
            for check, rows in sorted(checks.items())
        },
        "config": to_dict(config),
        "counts_in": in_counts,
        "counts_valid": valid_counts,
    }
    (output_dir / VALIDATION_FILE).write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return result


# --------------------------------------------------------------------------- stage


def _expectations(
    records: list[Record], ctx: _Context, rows: list[int]
) -> expectations.SuiteOutcome:
    """Probe the media of `rows`, run the GX suites, and fill ctx.flags / media_reasons / leaks."""
    rels = media_paths(records[i] for i in rows)
    media = probe_all(ctx.root, rels, ctx.config)
    frames, suites = build_tables(records, rows, media, ctx.config)
    outcome = expectations.run_suites(frames, suites)
    ctx.flags = outcome.rows.get("records", {})
    media_rels = list(frames["media"]["rel"])
    failed_by_rel: dict[str, set[str]] = {}
    for check, idx in outcome.rows.get("media", {}).items():
        for i in idx:
            failed_by_rel.setdefault(media_rels[i], set()).add(check)
    ctx.media_reasons = {
        rel: media_limit_reason(f, failed_by_rel.get(rel, set()), ctx.config)
        for rel, f in media.items()
    }
    use_rows = list(frames["eval_media"]["row"])
    for check, idx in outcome.rows.get("eval_media", {}).items():
        for i in idx:
            ctx.leaks.setdefault(use_rows[i], []).append(check)
    return outcome


def run(config: ValidateConfig, dataset_dir: Path, output_dir: Path) -> ValidateResult:
    """Validate the canonical dataset at `dataset_dir` into `output_dir` (see module docstring).

    Raises ValidationFailed (after writing every output) past `config.max_bad_fraction` or when
    a table-level expectation fails; ValueError for an empty dataset or overlapping directories.
    """
    dataset_dir, output_dir = Path(dataset_dir), Path(output_dir)
    records = read_records(dataset_dir)
    if not records:
        raise ValueError(f"{dataset_dir / RECORDS_FILE} has no rows; nothing to validate")
    check_disjoint(dataset_dir, output_dir)
    prepare_output_dir(output_dir, VALIDATION_FILE)
    first_of: dict[str, int] = {}
    for i, r in enumerate(records):
        if isinstance(r.id, str):
            first_of.setdefault(r.id, i)
    row_of = {id(r): i for i, r in enumerate(records)}
    ctx = _Context(config=config, root=dataset_dir, first_of=first_of, row_of=row_of)
    structural = [structural_reason(r, ctx) for r in records]
    outcome = _expectations(records, ctx, [i for i, why in enumerate(structural) if why is None])
    verdicts = [row_reasons(r, ctx) for r in records]
    result = _write_outputs(config, records, verdicts, dataset_dir, output_dir, outcome)
    if result.failed(config):
        raise ValidationFailed(result, config.max_bad_fraction)
    return result
