"""Stage 1 `ingest` readers: a small fixture in each published format ingests to the canonical
rows a hand-written expectation says it should (round trip), and video becomes 8 frames."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import av
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from unireward.data import formats
from unireward.data.ingest import IngestConfig, run
from unireward.data.media import uniform_indices
from unireward.data.schema import read_records
from unireward.tasks import Task

COLOURS = {"red": (255, 0, 0), "blue": (0, 0, 255), "green": (0, 160, 0)}
N_CLIP = 20  # frames in the fixture clip; frame i has grey level 10 * i


def png_bytes(rgb, size=16) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), rgb).save(buf, format="PNG")
    return buf.getvalue()


def write_clip(path: Path, n_frames: int = N_CLIP) -> None:
    """An mpeg4 clip whose frame i is uniformly grey at level 10 * i (so order is checkable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=8)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for i in range(n_frames):
            frame = np.full((32, 32, 3), 10 * i, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def make_media(root: Path) -> None:
    for name, rgb in COLOURS.items():
        (root / "img").mkdir(parents=True, exist_ok=True)
        (root / "img" / f"{name}.png").write_bytes(png_bytes(rgb))
    write_clip(root / "vid" / "clip.mp4")
    write_clip(root / "vid" / "clip2.mp4", n_frames=12)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def frames_of(root: Path, rel: str) -> list[str]:
    return [f"media/_frames/{sha(root / rel)}/{i:02d}.png" for i in range(8)]


def ingest(src: Path, out: Path, **cfg):
    return run(IngestConfig(source=str(src), tracking_uri="null", **cfg), out)


def rows(out: Path) -> list[dict]:
    keep = ("id", "task", "mode", "prompt", "media", "responses", "label", "score", "cot", "split")
    result = []
    for r in read_records(out):
        meta = json.loads(r.meta)
        assert "ingest_error" not in meta, meta
        result.append({k: getattr(r, k) for k in keep} | {"format": meta["format"]})
    return result


def row(
    id,
    task,
    mode,
    prompt,
    media,
    fmt,
    responses=(),
    label=None,
    score=None,
    cot=None,
    split="train",
):
    return {
        "id": id,
        "task": task,
        "mode": mode,
        "prompt": prompt,
        "media": media,
        "responses": list(responses),
        "label": label,
        "score": score,
        "cot": cot,
        "split": split,
        "format": fmt,
    }


IG, IU, VG, VU = (t.value for t in Task)  # the task names, as records spell them
PAIR, POINT = "pairwise", "pointwise"
R, B, G = "img/red.png", "img/blue.png", "img/green.png"
COT = (
    "<think>Image 1: red matches. Image 2: blue does not.</think><answer>Image 1 is better</answer>"
)


def write_json(path: Path, data) -> None:
    path.write_text(json.dumps(data))


@pytest.fixture(scope="module")
def llava(tmp_path_factory):
    src = tmp_path_factory.mktemp("llava")
    make_media(src)
    human = "<image>\n<image>\nWhich image matches the caption?\nCaption: a red square"
    write_json(
        src / "train.json",
        [
            {
                "id": "p1",
                "images": [R, B],
                "conversations": [
                    {"from": "human", "value": human},
                    {"from": "gpt", "value": "Image 1 is better."},
                ],
            },
            {
                "id": "p2",
                "image": G,
                "conversations": [
                    {"from": "human", "value": "<image>\nScore this image for: a green square"},
                    {"from": "gpt", "value": "It is sharp.\nFinal Score: 4"},
                ],
            },
            {
                "id": "p3",
                "image": R,
                "conversations": [
                    {
                        "from": "human",
                        "value": "<image>\nQuestion: what colour?\nAnswer 1: red\nAnswer 2: blue",
                    },
                    {"from": "gpt", "value": "Answer 1 is better"},
                ],
            },
            {
                "id": "p4",
                "video": "vid/clip.mp4",
                "split": "eval_seen",
                "conversations": [
                    {"from": "human", "value": "<video>\nQuestion: does it brighten?\nAnswer: yes"},
                    {"from": "gpt", "value": "Final Score: 5"},
                ],
            },
            {
                "id": "p5",
                "images": [R, B, G, R, B, G],
                "conversations": [
                    {"from": "human", "value": "Caption: colours cycling"},
                    {"from": "gpt", "value": "Video 2 is better"},
                ],
            },
            {
                "id": "p6",
                "images": [R, B],
                "conversations": [
                    {"from": "human", "value": "<image><image>Caption: a red square"},
                    {"from": "gpt", "value": COT},
                ],
            },
        ],
    )
    out = tmp_path_factory.mktemp("out") / "ds"
    return src, ingest(src, out), out


def test_llava_round_trip(llava):
    src, result, out = llava
    assert rows(out) == [
        row("p1", IG, PAIR, "a red square", [[R], [B]], "llava", label="Image 1 is better"),
        row("p2", IG, POINT, "Score this image for: a green square", [[G]], "llava", score=4.0),
        row(
            "p3",
            IU,
            PAIR,
            "what colour?",
            [[R]],
            "llava",
            ["red", "blue"],
            label="Answer 1 is better",
        ),
        row(
            "p4",
            VU,
            POINT,
            "does it brighten?",
            [frames_of(src, "vid/clip.mp4")],
            "llava",
            ["yes"],
            score=5.0,
            split="eval_seen",
        ),
        row(
            "p5",
            VG,
            PAIR,
            "colours cycling",
            [[R, B, G], [R, B, G]],
            "llava",
            label="Video 2 is better",
        ),
        row(
            "p6", IG, PAIR, "a red square", [[R], [B]], "llava", label="Image 1 is better", cot=COT
        ),
    ]
    assert result.lineage["rows_in"] == result.lineage["rows_out"] == 6
    assert result.lineage["files"] == {"train.json": {"format": "llava", "records": 6}}
    assert result.lineage["rows_unreadable"] == 0
    for item in read_records(out)[0].media:  # media copied into the dataset, same bytes
        assert (out / item[0]).read_bytes() == (src / item[0]).read_bytes()


def test_video_becomes_8_uniform_frames_in_order(llava):
    _src, _, out = llava
    frames = read_records(out)[3].media[0]
    levels = [np.asarray(Image.open(out / f).convert("L")).mean() for f in frames]
    expected = [10 * i for i in uniform_indices(N_CLIP, 8)]
    assert uniform_indices(N_CLIP, 8) == [0, 3, 5, 8, 11, 14, 16, 19]
    assert np.allclose(levels, expected, atol=4), levels  # lossy codec: a few grey levels off


def test_sharegpt_round_trip(tmp_path):
    src = tmp_path / "src"
    make_media(src)
    lines = [
        {
            "messages": [
                {"role": "user", "content": "<image><image>Caption: a blue square"},
                {"role": "assistant", "content": "Image 2 is better"},
            ],
            "images": [R, B],
        },
        {
            "messages": [
                {"role": "user", "content": "<video><video>Caption: a fade"},
                {"role": "assistant", "content": "Both videos are equally good"},
            ],
            "videos": ["vid/clip.mp4", "vid/clip2.mp4"],
        },
    ]
    (src / "sft.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    ingest(src, tmp_path / "out")
    assert rows(tmp_path / "out") == [
        row(
            "sft.jsonl:1",
            IG,
            PAIR,
            "a blue square",
            [[R], [B]],
            "sharegpt",
            label="Image 2 is better",
        ),
        row(
            "sft.jsonl:2",
            VG,
            PAIR,
            "a fade",
            [frames_of(src, "vid/clip.mp4"), frames_of(src, "vid/clip2.mp4")],
            "sharegpt",
            label="Both videos are equally good",
        ),
    ]


def test_grpo_round_trip(tmp_path):
    src = tmp_path / "src"
    make_media(src)
    write_json(
        src / "grpo.json",
        [
            {
                "id": "g1",
                "problem": "<image><image>Caption: a green square",
                "images": [G, R],
                "solution": "<answer>Image 1 is better</answer>",
            },
            {
                "id": "g2",
                "problem": "<image>Question: shape?\nAnswer 1: square\nAnswer 2: circle",
                "images": [B],
                "solution": "Answer 2 is better",
            },
        ],
    )
    ingest(src, tmp_path / "out", split="rl")
    assert rows(tmp_path / "out") == [
        row(
            "g1",
            IG,
            PAIR,
            "a green square",
            [[G], [R]],
            "grpo",
            label="Image 1 is better",
            split="rl",
        ),
        row(
            "g2",
            IU,
            PAIR,
            "shape?",
            [[B]],
            "grpo",
            ["square", "circle"],
            label="Answer 2 is better",
            split="rl",
        ),
    ]


def test_hf_parquet_with_embedded_image_bytes(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    red, blue = png_bytes(COLOURS["red"]), png_bytes(COLOURS["blue"])
    image = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    table = pa.table(
        {
            "id": ["h1", "h2"],
            "task": [IG, IG],
            "mode": [PAIR, POINT],
            "prompt": ["a red square", "a blue square"],
            "images": pa.array(
                [
                    [{"bytes": red, "path": "a.png"}, {"bytes": blue, "path": "b.png"}],
                    [{"bytes": blue, "path": "b.png"}],
                ],
                pa.list_(image),
            ),
            "label": ["Image 1 is better", None],
            "score": [None, 2.5],
        }
    )
    pq.write_table(table, src / "train-00000.parquet")
    ingest(src, tmp_path / "out")
    blob = {
        k: f"media/_blobs/{hashlib.sha256(v).hexdigest()}.png"
        for k, v in (("red", red), ("blue", blue))
    }
    assert rows(tmp_path / "out") == [
        row(
            "h1",
            IG,
            PAIR,
            "a red square",
            [[blob["red"]], [blob["blue"]]],
            "hf_table",
            label="Image 1 is better",
        ),
        row("h2", IG, POINT, "a blue square", [[blob["blue"]]], "hf_table", score=2.5),
    ]
    assert (tmp_path / "out" / blob["red"]).read_bytes() == red


def test_benchmark_layouts(tmp_path):
    src = tmp_path / "src"
    make_media(src)
    red = png_bytes(COLOURS["red"])
    write_json(
        src / "genai_image.json",
        [
            {
                "id": "a",
                "prompt": "a red square",
                "left_image": R,
                "right_image": B,
                "vote_type": "rightvote",
                "left_model": "m1",
                "right_model": "m2",
            },
            {
                "id": "b",
                "prompt": "a red square",
                "left_image": {"bytes": None, "path": R},
                "right_image": G,
                "vote_type": "tievote",
            },
        ],
    )
    write_json(
        src / "genai_video.json",
        [
            {
                "id": "c",
                "prompt": "a fade",
                "left_video": "vid/clip.mp4",
                "right_video": "vid/clip2.mp4",
                "vote_type": "leftvote",
            },
        ],
    )
    (src / "videogen.csv").write_text(
        "prompt,path_A,path_B,A_model,B_model,Overall\na fade,vid/clip2.mp4,vid/clip.mp4,x,y,B\n"
    )
    pq.write_table(
        pa.table(
            {
                "id": ["v1"],
                "query": ["what colour?"],
                "response": [["red", "blue"]],
                "image": [{"bytes": red, "path": "q.png"}],
                "human_ranking": [[0, 1]],
            }
        ),
        src / "vl_reward.parquet",
    )
    ingest(src, tmp_path / "out")
    clip, clip2 = frames_of(src, "vid/clip.mp4"), frames_of(src, "vid/clip2.mp4")
    blob = f"media/_blobs/{hashlib.sha256(red).hexdigest()}.png"
    assert rows(tmp_path / "out") == [  # files in sorted order
        row(
            "a",
            IG,
            PAIR,
            "a red square",
            [[R], [B]],
            "genai_bench_image",
            label="Image 2 is better",
        ),
        row(
            "b",
            IG,
            PAIR,
            "a red square",
            [[R], [G]],
            "genai_bench_image",
            label="Both images are equally good",
        ),
        row("c", VG, PAIR, "a fade", [clip, clip2], "genai_bench_video", label="Video 1 is better"),
        row(
            "videogen.csv:2",
            VG,
            PAIR,
            "a fade",
            [clip2, clip],
            "videogen_rewardbench",
            label="Video 2 is better",
        ),
        row(
            "v1",
            IU,
            PAIR,
            "what colour?",
            [[blob]],
            "vl_rewardbench",
            ["red", "blue"],
            label="Answer 1 is better",
        ),
    ]


def test_format_can_be_named_and_unknown_is_a_clear_error(tmp_path):
    src = tmp_path / "src"
    make_media(src)
    write_json(
        src / "x.json",
        [{"problem": "Caption: a red square", "images": [R, B], "solution": "Image 1 is better"}],
    )
    ingest(src, tmp_path / "out", format="grpo")
    assert rows(tmp_path / "out")[0]["format"] == "grpo"
    with pytest.raises(ValueError, match="supported: auto, canonical, llava, sharegpt, grpo"):
        IngestConfig(source=str(src), format="alpaca")
    write_json(src / "x.json", [{"instruction": "hi", "output": "there"}])
    with pytest.raises(ValueError, match=r"cannot detect the format.*supported formats: llava"):
        ingest(src, tmp_path / "out2")


def test_parse_sections_and_target():
    assert formats.parse_sections("<image>\nplain prompt") == ("plain prompt", [])
    assert formats.parse_sections("Q\nQuestion: why?\nResponse: because") == ("why?", ["because"])
    verdict = formats.parse_target("**Final Score:** 3.5")
    assert (verdict.mode, verdict.score) == ("pointwise", 3.5)
    with pytest.raises(formats.RecordError, match="invalid answer: 'Image 3 is better'"):
        formats.parse_target("Image 3 is better")


def test_labels_are_read_with_the_judge_parsers_tolerance():
    for text in (
        "image 1 is better",
        "Image 1 is better, the square is red.",
        "  Image 1 is Better. ",
    ):
        verdict = formats.parse_target(text)
        assert (verdict.mode, verdict.label) == ("pairwise", "Image 1 is better"), text
    with pytest.raises(formats.RecordError, match="conflicting verdicts"):
        formats.parse_target("Image 1 is better? No: Image 2 is better")


def test_the_task_can_be_named_per_source_and_lineage_counts_how_it_was_decided(tmp_path):
    src = tmp_path / "src"
    make_media(src)
    # A pointwise score on one image with no answer section: detected as image generation; this
    # source is image-understanding data (the answer is in the question), so the user names it.
    record = {
        "image": R,
        "conversations": [
            {"from": "human", "value": "<image>\nIs 'red' the right colour? Rate it."},
            {"from": "gpt", "value": "Final Score: 4"},
        ],
    }
    own = {**record, "id": "own", "task": "video_understanding", "mode": "pointwise"}
    write_json(src / "train.json", [{**record, "id": "a"}, own])
    detected = tmp_path / "detected"
    ingest(src, detected)
    named = tmp_path / "named"
    result = ingest(src, named, task="image_understanding", mode="pointwise")
    tasks = {r.id: r.task for r in read_records(detected)}
    assert tasks == {"a": "image_generation", "own": "video_understanding"}
    assert {r.id: r.task for r in read_records(named)} == {
        "a": "image_understanding",
        "own": "video_understanding",  # a record's own task wins
    }
    assert result.lineage["counts"]["task_from"] == {
        "config/image_understanding": 1,
        "record/video_understanding": 1,
    }
    lineage = json.loads((detected / "lineage.json").read_text())
    assert lineage["counts"]["task_from"]["detected/image_generation"] == 1
    with pytest.raises(ValueError, match="set both or neither"):
        IngestConfig(task="image_understanding")
    with pytest.raises(ValueError, match="image_judging"):
        IngestConfig(task="image_judging", mode="pointwise")
    # a pairwise answer in a source named pointwise is an unreadable row, not a silent relabel
    write_json(
        src / "train.json",
        [
            {
                **record,
                "id": "b",
                "conversations": [
                    record["conversations"][0],
                    {"from": "gpt", "value": "Answer 1 is better"},
                ],
            }
        ],
    )
    bad = tmp_path / "bad"
    ingest(src, bad, task="image_understanding", mode="pointwise")
    [row] = read_records(bad)
    assert "pairwise answer for a pointwise record" in json.loads(row.meta)["ingest_error"]
