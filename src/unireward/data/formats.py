"""Readers for the published preference-data formats, normalised to canonical `Record`s.

    unireward ingest --output-dir runs/ingest     # with ingest.source a directory / file and
                                                  # ingest.format "auto" or one of FORMATS

A source directory holds data files (`.json` list, `.jsonl`, `.parquet`, `.csv`) and the media
they reference by relative path. Each record of a data file becomes exactly one row: a record
that cannot be read (bad JSON line, missing field, unsafe or broken media, a video with no
frames, invalid UTF-8, a record of another format, ...) becomes a row whose `meta` carries
`ingest_error` = "<category>: <detail>" and `validate` quarantines it with that reason. Only
whole-file problems (a `.json` that does not parse, an unknown format) are errors, with a
message that says what to fix. Nothing is dropped: rows out == records in.

Formats (`FORMATS`, picked by name or detected from the first record's keys):

- `llava`: UnifiedReward/LLaVA JSON, `conversations` (human/gpt) + `image`/`images`/`video`;
- `sharegpt`: LLaMA-Factory, `messages` (user/assistant) + `images`/`videos`, with
  `<image>`/`<video>` tags aligned with the lists;
- `grpo`: `{problem, solution, images}`, solution the exact answer (or `<answer>..</answer>`);
- `hf_table`: HF datasets / parquet, canonical columns with `images` (or `media`) holding HF
  Image values (`{"bytes", "path"}`), image bytes embedded;
- `genai_bench_image` / `genai_bench_video`: GenAI-Bench, `prompt`, `left_image`/`right_image`
  (or `left_video`/`right_video`), `vote_type` (leftvote / rightvote / tievote / bothbad_vote);
- `videogen_rewardbench`: VideoGen-RewardBench, `prompt`, `path_A`, `path_B`, `Overall` (A/B/same);
- `vl_rewardbench`: VL-RewardBench, `query`, `response` [2], `image`, `human_ranking`.

Task and mode of conversation formats come from the answer: "Image N is better" -> image
generation pairwise, "Video N is better" -> video generation pairwise, "Answer N is better" ->
understanding pairwise (image or video by the media), "Final Score: x" -> pointwise
(understanding when the prompt holds an "Answer:"/"Response:" section, else generation). A
record may name `task` / `mode` explicitly. The prompt text is the human turn without its
`<image>`/`<video>` tags; labelled sections "Caption:"/"Prompt:"/"Question:", "Answer 1:",
"Answer 2:", "Answer:"/"Response:" fill `prompt` and `responses` when present.

Media: `image` is one image; `images` with at most two entries is one image per entry and with
more is one video (frames in order; a video-generation pair of 2k frames is two videos of k);
`video` is a video file (decoded to 8 uniformly sampled frames) or a list of two for a pair.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from unireward.contract import answers_in, split_cot
from unireward.data.media import MediaError, MediaWriter
from unireward.data.schema import RECORDS_FILE, Record
from unireward.tasks import PAIR_ANSWERS, SCORE_PREFIX, TIE_ANSWERS, Mode, Task

DATA_SUFFIXES = (".json", ".jsonl", ".parquet", ".csv")
_RAW_LIMIT = 300  # characters of the raw record kept in meta of an unreadable row
_TAG_RE = re.compile(r"<(image|video)>")
_SECTION_RE = re.compile(
    r"^[ \t]*(text caption|caption|prompt|question|answer 1|answer 2|answer|response)[ \t]*:[ \t]*",
    re.I | re.M,
)
_SCORE_RE = re.compile(re.escape(SCORE_PREFIX.rstrip(":")) + r"\s*:\s*\**\s*([^\s*]+)", re.I)


class RecordError(ValueError):
    """A record that cannot be normalised; the message is its quarantine reason."""


@dataclass(frozen=True)
class Raw:
    """One record of a data file: its value, or why it could not even be parsed."""

    origin: str  # "file.jsonl:12" (1-based line) or "file.json:[3]" (0-based index)
    value: Any = None
    error: str | None = None


# --------------------------------------------------------------------------- files


def data_files(root: Path) -> list[Path]:
    """Data files under `root` (sorted); the canonical records.parquet is not one of them."""
    found = [
        p
        for p in root.rglob("*")
        if p.is_file() and p.suffix.lower() in DATA_SUFFIXES and p.name != RECORDS_FILE
    ]
    return sorted(found)


def _decode(data: bytes) -> str:
    """UTF-8 with invalid bytes kept as lone surrogates, so the bad field (not the whole file)
    is found and quarantined later (`_check_text`)."""
    return data.decode("utf-8", errors="surrogateescape")


def read_file(path: Path, root: Path) -> list[Raw]:
    """Every record of one data file. Whole-file problems raise ValueError naming the file."""
    name = path.relative_to(root).as_posix()
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return list(_jsonl(path, name))
    if suffix == ".json":
        try:
            data = json.loads(_decode(path.read_bytes()))
        except json.JSONDecodeError as err:
            raise ValueError(
                f"{name}: not valid JSON ({err}); a .json data file must be one JSON list of "
                f"records (use .jsonl for one record per line, where a bad line is quarantined)"
            ) from None
        if isinstance(data, dict) and isinstance(data.get("data"), list):
            data = data["data"]
        if not isinstance(data, list):
            raise ValueError(f"{name}: expected a JSON list of records, got {type(data).__name__}")
        return [Raw(f"{name}:[{i}]", v) for i, v in enumerate(data)]
    if suffix == ".parquet":
        try:
            rows = pq.read_table(path).to_pylist()
        except Exception as err:  # pyarrow raises ArrowInvalid, OSError, ... for a bad file
            raise ValueError(f"{name}: not a readable parquet file ({err})") from None
        return [Raw(f"{name}:[{i}]", v) for i, v in enumerate(rows)]
    if suffix == ".csv":
        text = _decode(path.read_bytes())
        rows = list(csv.DictReader(io.StringIO(text)))
        return [Raw(f"{name}:{i + 2}", _csv_row(v)) for i, v in enumerate(rows)]
    raise ValueError(f"{name}: unsupported data file type {suffix!r}; use one of {DATA_SUFFIXES}")


def _jsonl(path: Path, name: str) -> Iterator[Raw]:
    with path.open("rb") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                yield Raw(f"{name}:{lineno}", json.loads(_decode(line)))
            except json.JSONDecodeError as err:
                yield Raw(f"{name}:{lineno}", line[:_RAW_LIMIT], f"invalid JSON: {err}")


def _csv_row(row: dict[str, Any]) -> dict[str, Any]:
    """CSV cells are strings; JSON-looking cells (lists) are parsed so benchmarks keep lists."""
    out: dict[str, Any] = {}
    for key, value in row.items():
        if isinstance(value, str) and value[:1] in "[{":
            with contextlib.suppress(json.JSONDecodeError):  # "[draft] text" stays text
                value = json.loads(value)
        out[str(key)] = value
    return out


# --------------------------------------------------------------------------- text


def _strip_tags(text: str) -> str:
    return _TAG_RE.sub("", text).strip()


def parse_sections(text: str) -> tuple[str, list[str]]:
    """(prompt, responses) from a human turn with its media tags removed.

    Labelled sections win ("Caption:", "Question:", "Answer 1:", "Answer 2:", "Answer:");
    without labels the whole text is the prompt.

    >>> parse_sections("Question: how many?\\nAnswer 1: two\\nAnswer 2: three")
    ('how many?', ['two', 'three'])
    """
    text = _strip_tags(text)
    marks = list(_SECTION_RE.finditer(text))
    if not marks:
        return text, []
    sections: dict[str, str] = {}
    for m, nxt in zip(marks, [*marks[1:], None], strict=True):
        body = text[m.end() : nxt.start() if nxt else len(text)].strip()
        sections.setdefault(m.group(1).lower(), body)
    prompt = next(
        (sections[k] for k in ("text caption", "caption", "prompt", "question") if k in sections),
        text[: marks[0].start()].strip(),
    )
    if "answer 1" in sections or "answer 2" in sections:
        responses = [sections.get("answer 1", ""), sections.get("answer 2", "")]
    elif "answer" in sections or "response" in sections:
        responses = [sections.get("answer", sections.get("response", ""))]
    else:
        responses = []
    return prompt, responses


@dataclass(frozen=True)
class Verdict:
    """What a target answer says: the task family, mode, label or score, and CoT if any."""

    mode: Mode
    kind: str  # "image" / "video" (generation) or "answer" (understanding)
    label: str | None = None
    score: float | None = None
    cot: str | None = None


_ANSWER_KIND = {
    **{a: "image" for a in PAIR_ANSWERS[Task.IMAGE_GENERATION]},
    **{a: "video" for a in PAIR_ANSWERS[Task.VIDEO_GENERATION]},
    **{a: "answer" for a in PAIR_ANSWERS[Task.IMAGE_UNDERSTANDING]},
    TIE_ANSWERS[Task.IMAGE_GENERATION]: "image",
    TIE_ANSWERS[Task.VIDEO_GENERATION]: "video",
}


def parse_target(text: Any) -> Verdict:
    """The verdict in a target answer (direct, CoT, or `<answer>..</answer>` only)."""
    if not isinstance(text, str) or not text.strip():
        raise RecordError(f"missing field: the answer is {text!r:.60}, expected text")
    cot = None
    parts = split_cot(text)
    answer = text.strip()
    if parts is not None:
        cot, answer = text.strip(), parts[1]
    elif answer.startswith("<answer>") and answer.endswith("</answer>"):
        answer = answer[len("<answer>") : -len("</answer>")].strip()
    answer = answer.rstrip(".").strip()
    if answer in _ANSWER_KIND:
        return Verdict(Mode.PAIRWISE, _ANSWER_KIND[answer], label=answer, cot=cot)
    scores = _SCORE_RE.findall(answer)
    found = answers_in(answer) if not scores else []
    if len(found) == 1:  # the judge parser's tolerance: case, surrounding text
        return Verdict(Mode.PAIRWISE, _ANSWER_KIND[found[0]], label=found[0], cot=cot)
    if len(found) > 1:
        raise RecordError(f"invalid answer: conflicting verdicts {found} in {answer!r:.80}")
    if scores:
        token = scores[-1].strip("*").rstrip(".,;")
        try:
            score = float(token)
        except ValueError:
            msg = f"invalid answer: {SCORE_PREFIX} {token!r:.40} is not a number"
            raise RecordError(msg) from None
        return Verdict(Mode.POINTWISE, "", score=score, cot=cot)
    choices = ", ".join(repr(a) for a in _ANSWER_KIND)
    raise RecordError(
        f"invalid answer: {answer!r:.80} is neither a pairwise verdict ({choices}) "
        f"nor '{SCORE_PREFIX} <number>'"
    )


def _task_for(verdict: Verdict, video: bool, has_responses: bool) -> Task:
    if verdict.kind == "image":
        return Task.IMAGE_GENERATION
    if verdict.kind == "video":
        return Task.VIDEO_GENERATION
    understanding = verdict.kind == "answer" or has_responses
    if understanding:
        return Task.VIDEO_UNDERSTANDING if video else Task.IMAGE_UNDERSTANDING
    return Task.VIDEO_GENERATION if video else Task.IMAGE_GENERATION


# --------------------------------------------------------------------------- records


@dataclass
class _Ctx:
    media: MediaWriter
    source: str
    split: str
    fmt: str
    task: str = ""  # ingest.task / ingest.mode: what records that name none are ("" = detect)
    mode: str = ""


def _field(rec: dict[str, Any], *names: str) -> Any:
    for name in names:
        if name in rec and rec[name] is not None:
            return rec[name]
    raise RecordError(f"missing field: {' or '.join(repr(n) for n in names)}")


def _items_from_images(images: list[Any], task: Task, mode: Mode, ctx: _Ctx) -> list[list[str]]:
    """An `images` list: <= 2 entries are images, more are frames of one video (or, for a
    video-generation pair, two videos: first half video 1)."""
    if not isinstance(images, list) or not images:
        raise RecordError(f"missing field: 'images' must be a non-empty list, got {images!r:.60}")
    if len(images) <= 2 and not task.is_video:
        return [ctx.media.visual(v) for v in images]
    frames = [ctx.media.image(v) for v in images]
    if task == Task.VIDEO_GENERATION and mode == Mode.PAIRWISE:
        if len(frames) % 2:
            raise RecordError(f"frames: a video pair needs an even frame list, got {len(frames)}")
        half = len(frames) // 2
        return [frames[:half], frames[half:]]
    return [frames]


def _media_of(rec: dict[str, Any], task: Task, mode: Mode, ctx: _Ctx) -> list[list[str]]:
    if rec.get("video") is not None:
        videos = rec["video"] if isinstance(rec["video"], list) else [rec["video"]]
        return [ctx.media.video(v) for v in videos]
    if rec.get("videos"):
        return [ctx.media.video(v) for v in rec["videos"]]
    if rec.get("image") is not None:
        return [ctx.media.visual(rec["image"])]
    return _items_from_images(_field(rec, "images"), task, mode, ctx)


def _is_video(rec: dict[str, Any]) -> bool:
    images = rec.get("images")
    return bool(rec.get("video") or rec.get("videos")) or (
        isinstance(images, list) and len(images) > 2
    )


def _conversation(
    rec: dict[str, Any], ctx: _Ctx, prompt_text: Any, target: Any, kind: str
) -> Record:
    if not isinstance(prompt_text, str):
        raise RecordError(f"missing field: the {kind} turn has no text")
    prompt, responses = parse_sections(prompt_text)
    verdict = parse_target(target)
    # The task and mode: the record's own, else the source's (ingest.task / ingest.mode), else
    # detected from the answer (its verdict string or Final Score) and the media (video or not).
    if rec.get("task") and rec.get("mode"):
        task, mode, task_from = Task(rec["task"]), Mode(rec["mode"]), "record"
    elif ctx.task and ctx.mode:
        task, mode, task_from = Task(ctx.task), Mode(ctx.mode), "config"
    else:
        task, mode = _task_for(verdict, _is_video(rec), bool(responses)), verdict.mode
        task_from = "detected"
    if verdict.mode != mode:
        raise RecordError(
            f"invalid answer: a {verdict.mode.value} answer for a {mode.value} record "
            f"({task_from} task {task.value})"
        )
    media = _media_of(rec, task, mode, ctx)
    return _record(rec, ctx, task, mode, prompt, media, responses, verdict, task_from=task_from)


def _record(
    rec: dict[str, Any],
    ctx: _Ctx,
    task: Task,
    mode: Mode,
    prompt: str,
    media: list[list[str]],
    responses: list[str],
    verdict: Verdict,
    **meta: Any,
) -> Record:
    return Record(
        id="",  # set by the caller (it knows the origin)
        task=task.value,
        mode=mode.value,
        prompt=prompt,
        media=media,
        responses=responses,
        label=verdict.label,
        score=verdict.score,
        cot=verdict.cot,
        split=str(rec.get("split") or ctx.split),
        source=ctx.source,
        meta=json.dumps({"format": ctx.fmt, **meta}, ensure_ascii=False),
    )


def _pair_record(
    rec: dict[str, Any],
    ctx: _Ctx,
    task: Task,
    prompt: str,
    media: list[list[str]],
    responses: list[str],
    preferred: int | None,
    **meta: Any,
) -> Record:
    """A benchmark's pairwise row: the label is the exact answer for the `preferred` candidate
    (0 or 1), or the tie answer for None."""
    label = TIE_ANSWERS[task] if preferred is None else PAIR_ANSWERS[task][preferred]
    verdict = Verdict(Mode.PAIRWISE, "", label=label)
    return _record(rec, ctx, task, Mode.PAIRWISE, prompt, media, responses, verdict, **meta)


def read_llava(rec: dict[str, Any], ctx: _Ctx) -> Record:
    turns = _field(rec, "conversations")
    if not isinstance(turns, list) or not all(isinstance(t, dict) for t in turns):
        raise RecordError("missing field: 'conversations' must be a list of {from, value} turns")
    human = [t.get("value") for t in turns if t.get("from") in ("human", "user")]
    gpt = [t.get("value") for t in turns if t.get("from") in ("gpt", "assistant")]
    if not human or not gpt:
        raise RecordError("missing field: 'conversations' needs a human turn and a gpt turn")
    return _conversation(rec, ctx, human[0], gpt[-1], "human")


def read_sharegpt(rec: dict[str, Any], ctx: _Ctx) -> Record:
    messages = _field(rec, "messages")
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise RecordError("missing field: 'messages' must be a list of {role, content} messages")
    user = [m.get("content") for m in messages if m.get("role") == "user"]
    assistant = [m.get("content") for m in messages if m.get("role") == "assistant"]
    if not user or not assistant:
        raise RecordError("missing field: 'messages' needs a user and an assistant message")
    text = user[0] if isinstance(user[0], str) else ""
    for tag, key in (("image", "images"), ("video", "videos")):
        listed = rec.get(key) or []
        n_tags = text.count(f"<{tag}>")
        if n_tags != len(listed):
            raise RecordError(
                f"placeholders: {n_tags} <{tag}> tag(s) in the user message but "
                f"{len(listed)} entr(ies) in '{key}'"
            )
    return _conversation(rec, ctx, user[0], assistant[-1], "user")


def read_grpo(rec: dict[str, Any], ctx: _Ctx) -> Record:
    return _conversation(rec, ctx, _field(rec, "problem"), _field(rec, "solution"), "problem")


def read_hf_table(rec: dict[str, Any], ctx: _Ctx) -> Record:
    """Canonical columns with media as HF Image values: `media` (list of items, each a list of
    frames) or `images` (see `_items_from_images`)."""
    task, mode = Task(_field(rec, "task")), Mode(_field(rec, "mode"))
    if rec.get("media") is not None:
        media = [
            ctx.media.video(item) if len(item) > 1 else [ctx.media.image(item[0])]
            for item in _field(rec, "media")
        ]
    else:
        media = _items_from_images(_field(rec, "images"), task, mode, ctx)
    score = rec.get("score")
    verdict = Verdict(
        mode,
        "",
        label=rec.get("label"),
        score=None if score is None else float(score),
        cot=rec.get("cot"),
    )
    responses = list(rec.get("responses") or [])
    return _record(rec, ctx, task, mode, _field(rec, "prompt"), media, responses, verdict)


_GENAI_VOTES = {"leftvote": 0, "rightvote": 1, "tievote": None, "bothbad_vote": None}


def _genai(rec: dict[str, Any], ctx: _Ctx, task: Task, left: str, right: str) -> Record:
    vote = _field(rec, "vote_type")
    if vote not in _GENAI_VOTES:
        raise RecordError(f"invalid label: vote_type {vote!r:.40} not one of {list(_GENAI_VOTES)}")
    media = [ctx.media.visual(_field(rec, left)), ctx.media.visual(_field(rec, right))]
    models = {k: rec[k] for k in ("left_model", "right_model") if k in rec}
    return _pair_record(
        rec,
        ctx,
        task,
        _field(rec, "prompt"),
        media,
        [],
        _GENAI_VOTES[vote],
        vote_type=vote,
        **models,
    )


def read_genai_bench_image(rec: dict[str, Any], ctx: _Ctx) -> Record:
    return _genai(rec, ctx, Task.IMAGE_GENERATION, "left_image", "right_image")


def read_genai_bench_video(rec: dict[str, Any], ctx: _Ctx) -> Record:
    return _genai(rec, ctx, Task.VIDEO_GENERATION, "left_video", "right_video")


_OVERALL = {"A": 0, "B": 1, "same": None, "tie": None}


def read_videogen_rewardbench(rec: dict[str, Any], ctx: _Ctx) -> Record:
    overall = _field(rec, "Overall")
    if overall not in _OVERALL:
        raise RecordError(f"invalid label: Overall {overall!r:.40} not one of {list(_OVERALL)}")
    media = [ctx.media.visual(_field(rec, "path_A")), ctx.media.visual(_field(rec, "path_B"))]
    models = {k: rec[k] for k in ("A_model", "B_model") if k in rec}
    return _pair_record(
        rec,
        ctx,
        Task.VIDEO_GENERATION,
        _field(rec, "prompt"),
        media,
        [],
        _OVERALL[overall],
        **models,
    )


def read_vl_rewardbench(rec: dict[str, Any], ctx: _Ctx) -> Record:
    responses, ranking = _field(rec, "response"), _field(rec, "human_ranking")
    if not (isinstance(responses, list) and len(responses) == 2):
        raise RecordError(f"shape: 'response' must list 2 answers, got {responses!r:.60}")
    if not (isinstance(ranking, list) and len(ranking) == 2) or ranking[0] == ranking[1]:
        raise RecordError(
            f"invalid label: human_ranking {ranking!r:.40} must rank the 2 answers "
            f"(understanding tasks have no tie)"
        )
    return _pair_record(
        rec,
        ctx,
        Task.IMAGE_UNDERSTANDING,
        _field(rec, "query"),
        [ctx.media.visual(_field(rec, "image"))],
        [str(r) for r in responses],
        0 if ranking[0] < ranking[1] else 1,
    )


Reader = Callable[[dict[str, Any], _Ctx], Record]

# Format name -> (reader, keys that identify it; detection takes the first whose keys all occur).
FORMATS: dict[str, tuple[Reader, tuple[str, ...]]] = {
    "llava": (read_llava, ("conversations",)),
    "sharegpt": (read_sharegpt, ("messages",)),
    "grpo": (read_grpo, ("problem", "solution")),
    "genai_bench_image": (read_genai_bench_image, ("left_image", "right_image", "vote_type")),
    "genai_bench_video": (read_genai_bench_video, ("left_video", "right_video", "vote_type")),
    "videogen_rewardbench": (read_videogen_rewardbench, ("path_A", "path_B", "Overall")),
    "vl_rewardbench": (read_vl_rewardbench, ("query", "response", "human_ranking")),
    "hf_table": (read_hf_table, ("task", "mode", "prompt")),
}


def detect(value: Any) -> str | None:
    """The format whose identifying keys a record has, or None."""
    if not isinstance(value, dict):
        return None
    return next((n for n, (_, keys) in FORMATS.items() if all(k in value for k in keys)), None)


def check_format(name: str) -> None:
    if name != "auto" and name not in FORMATS:
        raise ValueError(
            f"unknown ingest format {name!r}; supported: auto, canonical, {', '.join(FORMATS)}"
        )


# --------------------------------------------------------------------------- driver


def _check_text(record: Record) -> Record:
    """Fields holding invalid UTF-8 (lone surrogates from `_decode`) are made printable and the
    row is marked, so parquet can hold it and validate quarantines it."""
    bad: list[str] = []

    def clean(name: str, value: Any) -> Any:
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                bad.append(name)
                return value.encode("utf-8", "backslashreplace").decode("utf-8")
        return value

    changes = {
        n: clean(n, getattr(record, n)) for n in ("id", "prompt", "label", "cot", "split", "meta")
    }
    changes["responses"] = [clean(f"responses[{i}]", s) for i, s in enumerate(record.responses)]
    if not bad:
        return record
    meta = json.loads(changes["meta"])
    meta.setdefault("ingest_error", f"invalid text: {bad[0]} is not valid UTF-8")
    changes["meta"] = json.dumps(meta, ensure_ascii=False)
    return Record(**{**record.__dict__, **changes})


def _field_type_error(r: Record) -> str | None:
    """A field whose value parquet's canonical schema cannot hold (e.g. a numeric prompt)."""
    for name in ("prompt", "split"):
        if not isinstance(getattr(r, name), str):
            return f"field type: {name} is {type(getattr(r, name)).__name__}, expected text"
    for name in ("label", "cot"):
        value = getattr(r, name)
        if value is not None and not isinstance(value, str):
            return f"field type: {name} is {type(value).__name__}, expected text or null"
    if not all(isinstance(s, str) for s in r.responses):
        return f"field type: responses must be text, got {r.responses!r:.60}"
    if r.score is not None and (isinstance(r.score, bool) or not isinstance(r.score, float)):
        return f"field type: score is {type(r.score).__name__}, expected a number or null"
    return None


def _error_row(raw: Raw, ctx: _Ctx, reason: str, record_id: str) -> Record:
    text = raw.value if isinstance(raw.value, str) else repr(raw.value)
    if isinstance(raw.value, bytes):
        text = raw.value.decode("utf-8", "backslashreplace")
    meta = {
        "format": ctx.fmt,
        "origin": raw.origin,
        "ingest_error": reason,
        "raw": text[:_RAW_LIMIT],
    }
    return Record(
        id=record_id,
        task="",
        mode="",
        prompt="",
        media=[],
        responses=[],
        split=ctx.split,
        source=ctx.source,
        meta=json.dumps(meta, ensure_ascii=False),
    )


def _record_id(raw: Raw, fmt: str) -> str:
    value = raw.value
    if isinstance(value, dict):
        rid = value.get("id", value.get("question_id"))
        if isinstance(rid, str | int) and not isinstance(rid, bool) and str(rid).strip():
            return str(rid)
    return raw.origin


def normalise(raw: Raw, fmt: str, ctx: _Ctx) -> Record:
    """One raw record -> one Record (an error row when it cannot be read; see module doc)."""
    rid = _record_id(raw, fmt)
    if raw.error is not None:
        return _check_text(_error_row(raw, ctx, raw.error, rid))
    if not isinstance(raw.value, dict):
        reason = f"malformed record: a {type(raw.value).__name__}, expected an object"
        return _check_text(_error_row(raw, ctx, reason, rid))
    found = detect(raw.value)
    if found is not None and found != fmt:
        reason = f"mixed formats: record looks like {found}, the file is {fmt}"
        return _check_text(_error_row(raw, ctx, reason, rid))
    try:
        record = FORMATS[fmt][0](raw.value, ctx)
    except (RecordError, MediaError) as err:
        return _check_text(_error_row(raw, ctx, str(err), rid))
    except (ValueError, TypeError, KeyError, AttributeError) as err:  # a field of the wrong kind
        reason = f"malformed record: {type(err).__name__}: {err}"
        return _check_text(_error_row(raw, ctx, reason, rid))
    wrong = _field_type_error(record)
    if wrong is not None:
        return _check_text(_error_row(raw, ctx, wrong, rid))
    meta = {**json.loads(record.meta), "origin": raw.origin}
    score = record.score
    if score is not None and isinstance(score, float) and math.isnan(score):
        meta.setdefault("note", "score is NaN in the source")
    return _check_text(
        Record(**{**record.__dict__, "id": rid, "meta": json.dumps(meta, ensure_ascii=False)})
    )


def file_format(raws: list[Raw], name: str, requested: str) -> str:
    """The format of a file: as requested, else detected from its first recognisable record."""
    if requested != "auto":
        return requested
    for raw in raws:
        found = detect(raw.value) if raw.error is None else None
        if found:
            return found
    supported = ", ".join(FORMATS)
    raise ValueError(
        f"{name}: cannot detect the format of any record; supported formats: {supported} "
        f"(set ingest.format to name one; see unireward/data/formats.py for their fields)"
    )


def read_source(
    root: Path,
    output_dir: Path,
    fmt: str,
    source: str,
    split: str,
    frames: int,
    task: str = "",
    mode: str = "",
) -> tuple[list[Record], dict[str, Any]]:
    """Every record of every data file under `root` (a directory) or of `root` (a file)."""
    check_format(fmt)
    base = root if root.is_dir() else root.parent
    files = data_files(root) if root.is_dir() else [root]
    if not files:
        raise FileNotFoundError(
            f"{root} holds no data files ({', '.join(DATA_SUFFIXES)}) and no {RECORDS_FILE}"
        )
    media = MediaWriter(base, output_dir, frames)
    records: list[Record] = []
    per_file: dict[str, dict[str, Any]] = {}
    for path in files:
        name = path.relative_to(base).as_posix()
        raws = read_file(path, base)
        found = file_format(raws, name, fmt)
        ctx = _Ctx(media=media, source=source, split=split, fmt=found, task=task, mode=mode)
        rows = [normalise(raw, found, ctx) for raw in raws]
        per_file[name] = {"format": found, "records": len(rows)}
        records.extend(rows)
    return records, {"files": per_file}
