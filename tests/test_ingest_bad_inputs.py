"""Bad-input corpus through `ingest` then `validate`, in the published formats (LLaVA JSONL and
ShareGPT JSONL): each malformed record or media file ends as exactly one quarantine row whose
first reason names it; nothing crashes a stage and nothing is lost (rows in = valid +
quarantined, by id)."""

from __future__ import annotations

import io
import json
import os
import struct
import zlib
from pathlib import Path

import av
import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from unireward.data import ingest, validate
from unireward.data.schema import read_records

IMG_PAIR_Q = "<image>\n<image>\nCaption: a red square"


def png(rgb=(255, 0, 0), size=16) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), rgb).save(buf, format="PNG")
    return buf.getvalue()


def png_header(width: int, height: int) -> bytes:
    """A small PNG whose IHDR claims width x height (see tests/test_validate.py)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def jpeg(size=64) -> bytes:
    buf = io.BytesIO()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def make_media(root: Path) -> None:
    m = root / "m"
    m.mkdir(parents=True)
    (m / "red.png").write_bytes(png((255, 0, 0)))
    (m / "blue.png").write_bytes(png((0, 0, 255)))
    (m / "green.png").write_bytes(png((0, 160, 0)))
    (m / "cut.jpg").write_bytes(jpeg()[:300])
    (m / "empty.png").write_bytes(b"")
    (m / "bomb.png").write_bytes(png_header(30000, 30000))
    (m / "big.png").write_bytes(png_header(5000, 5000))
    (m / "text.png").write_text("this is not an image")
    rng = np.random.default_rng(1)
    noise = Image.fromarray(rng.integers(0, 255, (300, 300, 3), dtype=np.uint8))
    noise.save(m / "heavy.png")  # ~270 kB of noise > max_file_bytes below
    (m / "dir.png").mkdir()
    (root.parent / "outside.png").write_bytes(png((9, 9, 9)))
    os.symlink(root.parent / "outside.png", m / "link.png")
    with av.open(str(m / "zero.mp4"), "w") as container:  # a video container with no frames
        stream = container.add_stream("mpeg4", rate=8)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        container.start_encoding()
    (m / "junk.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 100)


def llava(rid, images, answer="Image 1 is better", human=IMG_PAIR_Q, **extra):
    conv = [{"from": "human", "value": human}, {"from": "gpt", "value": answer}]
    return {"id": rid, "images": images, "conversations": conv, **extra}


GOOD = ["m/red.png", "m/blue.png"]

# (id, the JSONL line of data.jsonl, substring of the first quarantine reason)
CASES: list[tuple[str, object, str]] = [
    ("data.jsonl:1", b'{"id": "broken", "images": [', "invalid JSON"),
    ("data.jsonl:2", b"[1, 2, 3]", "malformed record: a list"),
    ("no-conv", {"id": "no-conv", "images": GOOD}, "missing field: 'conversations'"),
    (
        "no-gpt",
        {"id": "no-gpt", "images": GOOD, "conversations": [{"from": "human", "value": IMG_PAIR_Q}]},
        "missing field: 'conversations' needs a human turn and a gpt turn",
    ),
    ("wrong-answer", llava("wrong-answer", GOOD, "Image 3 is better"), "invalid answer"),
    (
        "score-range",
        llava("score-range", ["m/red.png"], "Final Score: 9", "<image>Caption: x"),
        "score out of range: 9 outside the image_generation scale [1, 5]",
    ),
    (
        "score-nan",
        llava("score-nan", ["m/red.png"], "Final Score: nan", "<image>Caption: x"),
        "score not finite: nan",
    ),
    (
        "score-word",
        llava("score-word", ["m/red.png"], "Final Score: great", "<image>Caption: x"),
        "invalid answer: Final Score: 'great' is not a number",
    ),
    (
        "tie-understanding",
        llava(
            "tie-understanding",
            ["m/red.png"],
            "Both images are equally good",
            "<image>Question: colour?\nAnswer 1: red\nAnswer 2: blue",
            task="image_understanding",
            mode="pairwise",
        ),
        "invalid label: tie",
    ),
    (
        "unknown-task",
        llava("unknown-task", GOOD, task="audio_generation", mode="pairwise"),
        "malformed record: ValueError",
    ),
    ("traversal", llava("traversal", ["../outside.png", "m/blue.png"]), "media path escapes root"),
    ("absolute", llava("absolute", ["/etc/passwd", "m/blue.png"]), "media path absolute"),
    ("symlink", llava("symlink", ["m/link.png", "m/blue.png"]), "media symlink out of root"),
    ("missing-file", llava("missing-file", ["m/gone.png", "m/blue.png"]), "media missing"),
    ("directory", llava("directory", ["m/dir.png", "m/blue.png"]), "media not a file"),
    ("not-a-path", llava("not-a-path", [5, "m/blue.png"]), "media reference invalid"),
    ("zero-byte", llava("zero-byte", ["m/empty.png", "m/blue.png"]), "media empty"),
    ("truncated-jpeg", llava("truncated-jpeg", ["m/cut.jpg", "m/blue.png"]), "media undecodable"),
    ("text-as-png", llava("text-as-png", ["m/text.png", "m/blue.png"]), "media undecodable"),
    ("bomb", llava("bomb", ["m/bomb.png", "m/blue.png"]), "media too many pixels"),
    (
        "over-limit",
        llava("over-limit", ["m/big.png", "m/blue.png"]),
        "media too many pixels: 'm/big.png' is 5000x5000",
    ),
    ("too-large", llava("too-large", ["m/heavy.png", "m/blue.png"]), "media too large"),
    (
        "zero-frame-video",
        llava("zero-frame-video", [], "Final Score: 3", "<video>Caption: x", video="m/zero.mp4"),
        "video empty",
    ),
    (
        "junk-video",
        llava("junk-video", [], "Final Score: 3", "<video>Caption: x", video="m/junk.mp4"),
        "video undecodable",
    ),
    (
        "mixed-format",
        {
            "id": "mixed-format",
            "images": GOOD,
            "messages": [
                {"role": "user", "content": "<image><image>Caption: a red square"},
                {"role": "assistant", "content": "Image 1 is better"},
            ],
        },
        "mixed formats: record looks like sharegpt, the file is llava",
    ),
    (
        "non-utf8",
        b'{"id": "non-utf8", "images": ["m/red.png", "m/blue.png"], "conversations": ['
        b'{"from": "human", "value": "Caption: caf\xe9 \xff"}, '
        b'{"from": "gpt", "value": "Image 1 is better"}]}',
        "invalid text: prompt is not valid UTF-8",
    ),
    (
        "nul-text",
        llava("nul-text", GOOD, human="Caption: a red\x00square"),
        "invalid text: prompt contains a NUL character",
    ),
    ("blank-prompt", llava("blank-prompt", GOOD, human="<image>\n<image>\n  "), "empty prompt"),
    (
        "three-images-one-pair",
        llava("three-images-one-pair", [*GOOD, "m/green.png"]),
        "shape: image_generation pairwise takes 2 visual item(s), got 1",
    ),
    (
        "same-image-twice",
        llava("same-image-twice", ["m/green.png", "m/green.png"]),
        "duplicate media",
    ),
    ("good-1", llava("good-1", GOOD), "duplicate id"),  # the second "good-1" (first stays valid)
    ("leak", llava("leak", ["m/red.png", "m/green.png"], split="eval_seen"), "leakage"),
]
GOOD_ROWS = [
    llava("good-1", GOOD),
    llava("good-2", ["m/blue.png", "m/red.png"], "Image 2 is better."),
    llava("good-3", ["m/green.png"], "Final Score: 4", "<image>Caption: a green square"),
]
SHAREGPT = [  # a second file, another format: one good record, one with misaligned tags
    {
        "id": "sg-good",
        "images": ["m/blue.png", "m/green.png"],
        "messages": [
            {"role": "user", "content": "<image><image>Caption: blue"},
            {"role": "assistant", "content": "Image 1 is better"},
        ],
    },
    {
        "id": "sg-tags",
        "images": ["m/blue.png"],
        "messages": [
            {"role": "user", "content": "<image><image>Caption: blue"},
            {"role": "assistant", "content": "Image 1 is better"},
        ],
    },
]
SHAREGPT_BAD = {"sg-tags": "placeholders: 2 <image> tag(s) in the user message but 1 entr(ies)"}
GENAI = [  # a third file, a benchmark layout: one good record, one whose prompt is a number
    {
        "id": "gb-good",
        "prompt": "a red square",
        "left_image": "m/red.png",
        "right_image": "m/green.png",
        "vote_type": "leftvote",
    },
    {
        "id": "gb-number",
        "prompt": 5,
        "left_image": "m/red.png",
        "right_image": "m/green.png",
        "vote_type": "leftvote",
    },
]
GENAI_BAD = {"gb-number": "field type: prompt is int, expected text"}


def _line(value: object) -> bytes:
    return value if isinstance(value, bytes) else json.dumps(value).encode()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    base = tmp_path_factory.mktemp("corpus")
    src = base / "src"
    make_media(src)
    # CASES first: the first rows are unreadable, so format detection must look past them.
    lines = [_line(v) for _, v, _ in CASES[:2]] + [_line(r) for r in GOOD_ROWS]
    lines += [_line(v) for _, v, _ in CASES[2:]]
    (src / "data.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    (src / "sharegpt.jsonl").write_text("\n".join(json.dumps(r) for r in SHAREGPT) + "\n")
    (src / "genai.json").write_text(json.dumps(GENAI))
    ing = ingest.run(ingest.IngestConfig(source=str(src), tracking_uri="null"), base / "ds")
    config = validate.ValidateConfig(max_bad_fraction=1.0, max_file_bytes=200_000)
    result = validate.run(config, base / "ds", base / "valid")
    quarantine = pq.read_table(base / "valid" / validate.QUARANTINE_FILE).to_pylist()
    return ing, result, quarantine, read_records(base / "valid")


def test_corpus_has_at_least_25_kinds():
    assert len({reason.split(":")[0] for _, _, reason in CASES}) >= 18
    assert len(CASES) + len(SHAREGPT_BAD) + len(GENAI_BAD) >= 25


@pytest.mark.parametrize(
    "rid,reason",
    [(c[0], c[2]) for c in CASES] + list(SHAREGPT_BAD.items()) + list(GENAI_BAD.items()),
)
def test_each_bad_record_is_quarantined_with_its_reason(corpus, rid, reason):
    _, _, quarantine, _ = corpus
    rows = [q for q in quarantine if q["id"] == rid]
    assert len(rows) == 1, [q["reason"] for q in rows]
    assert reason in rows[0]["reason"], rows[0]["reasons"]


def test_nothing_is_lost_and_good_rows_stay_valid(corpus):
    ing, result, quarantine, valid = corpus
    n_in = len(CASES) + len(GOOD_ROWS) + len(SHAREGPT) + len(GENAI)
    assert ing.lineage["rows_in"] == ing.lineage["rows_out"] == n_in
    assert ing.lineage["rows_unreadable"] > 0
    assert result.n_in == n_in == result.n_valid + result.n_quarantined
    assert sorted(r.id for r in valid) == ["gb-good", "good-1", "good-2", "good-3", "sg-good"]
    n_bad = len(CASES) + len(SHAREGPT_BAD) + len(GENAI_BAD)
    assert result.n_quarantined == n_bad == len(quarantine)
    assert ing.lineage["files"] == {
        "data.jsonl": {"format": "llava", "records": len(CASES) + len(GOOD_ROWS)},
        "genai.json": {"format": "genai_bench_image", "records": 2},
        "sharegpt.jsonl": {"format": "sharegpt", "records": 2},
    }


def test_unsafe_media_never_reaches_the_output(corpus):
    ing, _, _, _ = corpus
    out = ing.output_dir
    assert not (out / "m" / "link.png").exists()  # the symlink out was not followed
    files = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert not any(".." in f for f in files)


def test_whole_file_problems_are_clear_errors(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "data.json").write_text('[{"id": 1,')
    with pytest.raises(ValueError, match=r"data\.json: not valid JSON .*use \.jsonl"):
        ingest.run(ingest.IngestConfig(source=str(src), tracking_uri="null"), tmp_path / "o")
    (src / "data.json").write_text('[{"foo": 1}]')
    with pytest.raises(ValueError, match="cannot detect the format"):
        ingest.run(ingest.IngestConfig(source=str(src), tracking_uri="null"), tmp_path / "o")
