"""Benchmark: unified_sft training steps per second with the frozen vision tower's outputs
cached (`scale.vision_cache_items`) against the same stage without the cache, in one run.

    make bench-train     # = python bench/train_step_bench.py --steps 400 --repeats 3 \
                         #       --json build/bench-train.json

- the stage: `unireward.judge.unified_sft.run` with params.yaml's `--profile` section (quick:
  the shipped base models/base-tiny, batch 4, vision tower and merger frozen, pairwise tasks,
  a DataLoader worker), `--steps` steps per run, tracking off;
- the data: a fresh shapes-world dataset of `--records` training rows per task and mode (the
  profile's image size and frames), so `--steps` steps see each row as many times as the
  quick profile's 4,000 steps see its 400 (~5 epochs with the swapped twins): the share of
  cached images is the quick run's;
- the measure: the Trainer's own wall time of `trainer.train()` (`train_seconds`; loading and
  saving are outside it), per step. The two settings alternate, `--repeats` times each;
  medians, the ratio, the cache's hits and misses, the machine's load average (other work on
  the cores slows both).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--records", type=int, default=40, help="training rows per task-mode")
    parser.add_argument("--cache-items", type=int, default=100_000)
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--base-model", default=str(ROOT / "models" / "base-tiny"))
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    from unireward.config import load_params, load_stage_config, stage_section
    from unireward.data.shapes import ShapesConfig, generate
    from unireward.judge import unified_sft
    from unireward.model import vision_cache

    config = load_stage_config(
        unified_sft.UnifiedSftConfig, "unified_sft", args.profile, ROOT / "params.yaml"
    )
    shapes = stage_section(load_params(ROOT / "params.yaml"), "ingest", args.profile)["shapes"]
    stats: list[dict] = []
    remove = vision_cache.VisionCache.remove

    def remove_and_count(self):
        stats.append(self.stats())
        remove(self)

    vision_cache.VisionCache.remove = remove_and_count
    results: dict[str, list[float]] = {"off": [], "on": []}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        generate(
            ShapesConfig(
                seed=shapes.get("seed", 1),
                image_size=shapes.get("image_size", 64),
                frames=shapes.get("frames", 4),
                train_per_task_mode=args.records,
                eval_per_task_mode=1,
            ),
            data,
        )
        for repeat in range(args.repeats):
            for name in ("off", "on"):
                items = args.cache_items if name == "on" else 0
                train = dataclasses.replace(
                    config.train,
                    max_steps=args.steps,
                    save_steps=args.steps,
                    scale=dataclasses.replace(config.train.scale, vision_cache_items=items),
                )
                run_config = dataclasses.replace(config, train=train, tracking_uri="null")
                out = Path(tmp) / f"{name}-{repeat}"
                result = unified_sft.run(run_config, Path(args.base_model), data, out)
                results[name].append(result.train.train_seconds / args.steps)
                print(
                    f"repeat {repeat} cache {name}: {results[name][-1] * 1000:.1f} ms/step",
                    flush=True,
                )
    off, on = statistics.median(results["off"]), statistics.median(results["on"])
    report = {
        "profile": args.profile,
        "steps": args.steps,
        "repeats": args.repeats,
        "records_per_task_mode": args.records,
        "batch_size": config.train.batch_size,
        "s_per_step": {"off": results["off"], "on": results["on"]},
        "median_s_per_step": {"off": off, "on": on},
        "speedup_on_vs_off": off / on,
        "cache": stats,
        "load_average": os.getloadavg(),
        "cpu_count": os.cpu_count(),
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    print(json.dumps(report, indent=1))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
