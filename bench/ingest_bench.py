"""Benchmark: ingest + validate throughput on N image records against a naive decode loop.

    make bench-ingest                       # = python bench/ingest_bench.py (10,000 records)
    python bench/ingest_bench.py --records 2000 --repeats 3 --json bench-result.json

Builds a LLaVA-format source of N pointwise image-generation records, one distinct 128x128 JPEG
each (synthetic, seeded), then times, `--repeats` times each, in the same process:

- naive: a single-threaded loop that reads the JSON and opens and fully decodes every image
  with PIL (`Image.open(path).load()`), and nothing else: no safety, no checks, no output;
- pipeline: `ingest.run` (read + normalise, safe paths, hardlink media, parquet, content hash,
  lineage) then `validate.run` with full media checks (path safety, size, sha256, header pixel
  limit, PIL verify + full decode, the great-expectations suites, leakage, quarantine and report
  files), media probed in `validate.workers` processes (0 = one per CPU).

Prints records/s of each (median over repeats) and their ratio. great-expectations is imported
once before timing (a process pays ~4 s for it once; that is not per-record work).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from unireward.data import ingest, validate


def build_source(root: Path, n: int, size: int = 128, seed: int = 0) -> None:
    """N records, N distinct JPEGs (smooth gradients plus noise: JPEG-typical content)."""
    rng = np.random.default_rng(seed)
    (root / "img").mkdir(parents=True)
    yy, xx = np.mgrid[0:size, 0:size]
    rows = []
    for i in range(n):
        base = rng.integers(0, 256, 3)
        img = (base + 0.5 * xx[..., None] + 0.3 * yy[..., None]) % 256
        img = (img + rng.normal(0, 8, img.shape)).clip(0, 255).astype(np.uint8)
        rel = f"img/{i // 1000:03d}/{i:06d}.jpg"
        (root / rel).parent.mkdir(exist_ok=True)
        Image.fromarray(img).save(root / rel, quality=85)
        rows.append(
            {
                "id": f"b{i:06d}",
                "image": rel,
                "conversations": [
                    {"from": "human", "value": f"<image>\nCaption: gradient {i}"},
                    {"from": "gpt", "value": f"Final Score: {1 + i % 5}"},
                ],
            }
        )
    (root / "train.json").write_text(json.dumps(rows))


def naive(root: Path) -> int:
    """The baseline: read the JSON, decode every image, single thread."""
    rows = json.loads((root / "train.json").read_text())
    for row in rows:
        with Image.open(root / row["image"]) as img:
            img.load()
    return len(rows)


def pipeline(root: Path, work: Path, workers: int) -> tuple[int, float, float]:
    """ingest + validate; returns (rows valid, ingest seconds, validate seconds)."""
    for d in ("ingest", "validate"):
        shutil.rmtree(work / d, ignore_errors=True)
    t0 = time.perf_counter()
    ingest.run(ingest.IngestConfig(source=str(root), tracking_uri="null"), work / "ingest")
    t1 = time.perf_counter()
    config = validate.ValidateConfig(max_bad_fraction=0.0, workers=workers)
    result = validate.run(config, work / "ingest", work / "validate")
    t2 = time.perf_counter()
    return result.n_valid, t1 - t0, t2 - t1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=0, help="validate.workers (0 = per CPU)")
    parser.add_argument("--json", type=Path, default=None, help="also write results here")
    args = parser.parse_args(argv)

    import great_expectations  # noqa: F401  (warm import, see module docstring)

    with tempfile.TemporaryDirectory(prefix="unireward-bench-") as tmp:
        src, work = Path(tmp) / "src", Path(tmp) / "work"
        t = time.perf_counter()
        build_source(src, args.records)
        print(f"built {args.records} records in {time.perf_counter() - t:.1f} s", flush=True)
        naive_s, pipe_s, ingest_s, validate_s = [], [], [], []
        for rep in range(args.repeats):
            t = time.perf_counter()
            assert naive(src) == args.records
            naive_s.append(time.perf_counter() - t)
            n_valid, ti, tv = pipeline(src, work, args.workers)
            assert n_valid == args.records, f"{n_valid} valid of {args.records}"
            ingest_s.append(ti)
            validate_s.append(tv)
            pipe_s.append(ti + tv)
            print(
                f"repeat {rep + 1}: naive {naive_s[-1]:.2f} s, ingest {ti:.2f} s + "
                f"validate {tv:.2f} s = {ti + tv:.2f} s",
                flush=True,
            )
    n = args.records
    med = {
        k: statistics.median(v)
        for k, v in (
            ("naive", naive_s),
            ("pipeline", pipe_s),
            ("ingest", ingest_s),
            ("validate", validate_s),
        )
    }
    result = {
        "records": n,
        "repeats": args.repeats,
        "cpus": os.cpu_count(),
        "load_average_1m": os.getloadavg()[0],
        "naive_records_per_s": n / med["naive"],
        "pipeline_records_per_s": n / med["pipeline"],
        "ingest_records_per_s": n / med["ingest"],
        "validate_records_per_s": n / med["validate"],
        "ratio_pipeline_to_naive": med["naive"] / med["pipeline"],
        "seconds_median": med,
    }
    print(
        f"\n{n} image records, median of {args.repeats} ({os.cpu_count()} CPUs, "
        f"load {result['load_average_1m']:.1f}):\n"
        f"  naive single-thread decode : {result['naive_records_per_s']:8.0f} records/s\n"
        f"  ingest + validate (full)   : {result['pipeline_records_per_s']:8.0f} records/s "
        f"(ingest {result['ingest_records_per_s']:.0f}/s, "
        f"validate {result['validate_records_per_s']:.0f}/s)\n"
        f"  ratio pipeline / naive     : {result['ratio_pipeline_to_naive']:8.2f}"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
