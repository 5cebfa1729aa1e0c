"""Benchmark: rejection-sampling throughput (sampled CoT judgements/s) of the four backends of
`unireward.think.rejection_sample`, same model, same prompts, one run on this machine.

    make bench-rs        # = python bench/rs_bench.py --items 8 --k 4 --repeats 3 \
                         #       --min-new-tokens 120
    python bench/rs_bench.py --items 8 --k 4 --repeats 3 --json build/bench-rs.json

- one: transformers `generate`, one prompt at a time (what the published inference scripts do);
- batched: transformers `generate`, `--batch-size` prompts per call (left padding);
- vllm: vLLM's CPU server from .venv-serve (`make serve-venv`), one chat request with `n=k` per
  item, `--concurrency` in flight. Server start-up is timed apart and not in the rate;
- vllm_offline: vLLM's offline engine from the same venv (`serving.offline`), every item of a
  repeat at once, `n=k` each; one engine per repeat, its start-up timed apart (`startup_s`).

`--min-new-tokens N` keeps every backend from ending a sample before N tokens: the shipped base
writes a few tokens and stops, so without it the rate is mostly prefill; `make bench-rs` asks
for 120 (a CoT judgement's length). The rate is judgements/s either way.

Each method samples k CoT judgements (temperature 1, at most `--max-new-tokens` tokens) for
`--items` labelled image-generation pairs of the shapes world, `--repeats` times; every repeat
gets its own never-seen pairs, so no cache answers from memory. The transformers methods run in
this process with one thread (faster than two here, README "Serving"); the vLLM server gets the
machine to itself while it runs. Medians and ratios vs `one` are printed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def build_items(n: int, root: Path):
    from unireward.data.schema import read_records
    from unireward.data.shapes import ShapesConfig, generate

    generate(ShapesConfig(seed=12, frames=4, train_per_task_mode=2 * n, eval_per_task_mode=0), root)
    pairs = [
        r
        for r in read_records(root)
        if r.task == "image_generation"
        and r.mode == "pairwise"
        and r.label
        and "equally" not in r.label
    ]
    assert len(pairs) >= n, f"{len(pairs)} labelled pairs generated, {n} wanted"
    return pairs[:n]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "base-tiny")
    parser.add_argument("--items", type=int, default=16, help="pairs per repeat")
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=160)
    parser.add_argument(
        "--min-new-tokens",
        type=int,
        default=0,
        help="no end token before this many (equal-length samples)",
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--methods", default="one,batched,vllm,vllm_offline")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    import torch

    from unireward.config import from_dict
    from unireward.think import rejection_sample as rs

    torch.set_num_threads(1)
    methods = args.methods.split(",")
    base = from_dict(
        rs.RejectionSampleConfig,
        {
            "k": args.k,
            "max_new_tokens": args.max_new_tokens,
            "batch_size": args.batch_size,
            "min_new_tokens": args.min_new_tokens,
            "vllm_max_concurrency": args.concurrency,
            "vllm_python": str(ROOT / ".venv-serve" / "bin" / "python"),
            "tracking_uri": "null",
        },
    )
    work = Path(tempfile.mkdtemp(prefix="rs-bench-"))
    items = build_items(args.items * args.repeats * len(methods), work / "data")
    chunks = iter([items[i : i + args.items] for i in range(0, len(items), args.items)])
    results: dict[str, dict] = {}

    def timed(method: str, sample) -> None:
        rates, tokens = [], []
        for _ in range(args.repeats):
            part = next(chunks)
            start = time.perf_counter()
            texts = sample(part)
            seconds = time.perf_counter() - start
            assert len(texts) == len(part) and all(len(t) == args.k for t in texts)
            rates.append(len(part) * args.k / seconds)
            tokens.append(sum(len(t) for ts in texts for t in ts))
        results[method] = {
            "judgements_per_s": statistics.median(rates),
            "repeats": rates,
            "chars_per_repeat": tokens,
        }
        print(
            f"{method:8s} {statistics.median(rates):8.2f} judgements/s  "
            f"(repeats {[round(r, 2) for r in rates]})",
            flush=True,
        )

    for method in ("one", "batched"):
        if method in methods:
            config = dataclasses.replace(base, backend=method)
            timed(
                method,
                lambda part, c=config: rs.sample_transformers(args.model, part, work / "data", c),
            )
    if "vllm" in methods:
        config = dataclasses.replace(base, backend="vllm")
        start = time.perf_counter()
        with rs.vllm_server(args.model, config, work / "vllm.log") as server:
            startup = time.perf_counter() - start
            print(f"vllm server ready in {startup:.1f} s (not in the rate)", flush=True)
            timed("vllm", lambda part: rs.sample_from_server(server, part, work / "data", config))
        results["vllm"]["startup_s"] = startup
    if "vllm_offline" in methods:
        from unireward.serving import offline

        config = dataclasses.replace(base, backend="vllm_offline")
        rates, chars, startups = [], [], []
        for rep in range(args.repeats):
            part = next(chunks)
            requests = rs.offline_requests(part, work / "data", config)
            result = offline.generate(
                args.model, requests, rs.offline_engine(config), work / f"offline-{rep}"
            )
            assert all(len(t) == args.k for t in result.texts)
            rates.append(len(part) * args.k / (result.prepare_s + result.generate_s))
            chars.append(sum(len(t) for ts in result.texts for t in ts))
            startups.append(result.load_s)
        results["vllm_offline"] = {
            "judgements_per_s": statistics.median(rates),
            "repeats": rates,
            "chars_per_repeat": chars,
            "startup_s": startups,
        }
        print(
            f"vllm_offline {statistics.median(rates):8.2f} judgements/s  "
            f"(repeats {[round(r, 2) for r in rates]}; engine start-up not in the rate)",
            flush=True,
        )

    if "one" in results:
        ref = results["one"]["judgements_per_s"]
        for r in results.values():
            r["ratio_vs_one"] = r["judgements_per_s"] / ref
        print(
            "ratios vs one-at-a-time: "
            + ", ".join(f"{m} {r['ratio_vs_one']:.2f}x" for m, r in results.items())
        )
    report = {
        "model": str(args.model),
        "items": args.items,
        "k": args.k,
        "max_new_tokens": args.max_new_tokens,
        "min_new_tokens": args.min_new_tokens,
        "repeats": args.repeats,
        "batch_size": args.batch_size,
        "concurrency": args.concurrency,
        "results": results,
    }
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
