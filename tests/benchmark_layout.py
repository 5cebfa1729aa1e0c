"""A small directory in each public benchmark's layout (what `data/formats.py` reads), built
from shapes-world-like images and clips, for `evaluate --benchmark` tests:

    make_benchmark_dir(root) -> root with
      genai_bench_image.jsonl  GenAI-Bench image: prompt, left_image / right_image, vote_type
      genai_bench_video.json   GenAI-Bench video: left_video / right_video (mp4), vote_type
      videogen.csv             VideoGen-RewardBench: prompt, path_A, path_B, Overall (A/B/same)
      vl_rewardbench.parquet   VL-RewardBench: id, query, response [2], image (HF bytes),
                               human_ranking; ids give the categories (RLAIF / mathverse / ...)

`pythonpath = ["tests"]` makes it importable as `benchmark_layout`.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 60), "blue": (40, 60, 220)}
GENAI_VOTES = ("leftvote", "rightvote", "tievote", "bothbad_vote", "rightvote", "leftvote")
VL_IDS = ("RLAIF-V_0", "RLHF-V_1", "mathverse_2", "mmmu_pro_3", "wildvision-battle_4", "vlf_5")


def _png(rgb, size: int = 56) -> Image.Image:
    rng = np.random.default_rng(sum(rgb))
    noise = rng.integers(0, 30, (size, size, 3))
    return Image.fromarray(np.clip(np.array(rgb) + noise, 0, 255).astype(np.uint8))


def _clip(path: Path, level: int, n_frames: int = 10) -> None:
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=8)
        stream.width, stream.height, stream.pix_fmt = 56, 56, "yuv420p"
        for i in range(n_frames):
            frame = np.full((56, 56, 3), (level + 9 * i) % 255, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def make_benchmark_dir(root: Path) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    root.mkdir(parents=True, exist_ok=True)
    (root / "img").mkdir(exist_ok=True)
    for name, rgb in COLOURS.items():
        _png(rgb).save(root / "img" / f"{name}.png")
    names = list(COLOURS)
    with (root / "genai_bench_image.jsonl").open("w") as fh:
        for i, vote in enumerate(GENAI_VOTES):
            left, right = names[i % 3], names[(i + 1) % 3]
            record = {
                "id": f"gi{i}",
                "prompt": f"a {left} circle at the top left",
                "left_image": f"img/{left}.png",
                "right_image": f"img/{right}.png",
                "vote_type": vote,
            }
            fh.write(json.dumps(record) + "\n")
    for i in range(3):
        _clip(root / "vid" / f"clip{i}.mp4", level=60 * i)
    genai_video = [
        {
            "id": f"gv{i}",
            "prompt": "a square moving right",
            "left_video": f"vid/clip{i}.mp4",
            "right_video": f"vid/clip{(i + 1) % 3}.mp4",
            "vote_type": vote,
        }
        for i, vote in enumerate(("leftvote", "tievote", "rightvote"))
    ]
    (root / "genai_bench_video.json").write_text(json.dumps(genai_video))
    with (root / "videogen.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["prompt", "path_A", "path_B", "A_model", "B_model", "Overall"])
        for i, overall in enumerate(("A", "B", "same")):
            paths = [f"vid/clip{i}.mp4", f"vid/clip{(i + 2) % 3}.mp4"]
            writer.writerow(["a circle moving up", *paths, "a", "b", overall])
    images = []
    for i in range(len(VL_IDS)):
        buf = io.BytesIO()
        _png(COLOURS[names[i % 3]]).save(buf, format="PNG")
        images.append({"bytes": buf.getvalue(), "path": f"q{i}.png"})
    table = {
        "id": list(VL_IDS),
        "query": ["What colour is the shape?"] * len(VL_IDS),
        "response": [[names[i % 3], names[(i + 1) % 3]] for i in range(len(VL_IDS))],
        "image": images,
        "human_ranking": [[0, 1] if i % 2 == 0 else [1, 0] for i in range(len(VL_IDS))],
    }
    pq.write_table(pa.table(table), root / "vl_rewardbench.parquet")
    return root


# Per benchmark: items in the fixture and, for the tie benchmarks, items with a decided label.
SIZES = {
    "GenAI-Bench-Image": (6, 4),
    "GenAI-Bench-Video": (3, 2),
    "VideoGen-RewardBench": (3, 2),
    "VL-RewardBench": (6, 6),
}
