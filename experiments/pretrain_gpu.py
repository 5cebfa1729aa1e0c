"""Produce the shipped base checkpoint (`models/base-tiny`) on a lent CUDA GPU in a time budget.

The same `pretrain_base.run` as on CPU, with the `pretrain_base` section of params.yaml and
these changes: device cuda, a larger batch, DataLoader workers rendering the shapes world in
parallel, and `max_steps` sized from a short calibration run so the cosine schedule ends inside
`--budget-s`. How the shipped checkpoint was made is recorded in its `unireward.json`.

    python experiments/pretrain_gpu.py --budget-s 420 --batch-size 128 --output-dir $OUT/base-tiny
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import time
from pathlib import Path

from unireward.config import load_stage_config
from unireward.model.pretrain_base import PretrainBaseConfig, run


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--budget-s", type=float, required=True)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--workers", type=int, default=12)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--output-dir", type=Path, required=True)
    args = ap.parse_args()

    cfg = load_stage_config(PretrainBaseConfig, "pretrain_base", profile=None)
    train = dataclasses.replace(
        cfg.train,
        device="cuda",
        batch_size=args.batch_size,
        learning_rate=args.lr,
        dataloader_workers=args.workers,
        threads=4,
        logging_steps=100,
    )
    calib_steps = 60
    probe = dataclasses.replace(
        cfg,
        train=dataclasses.replace(train, max_steps=calib_steps, save_steps=10_000),
        eval_examples=0,
    )
    t0 = time.perf_counter()
    res = run(probe, Path("/tmp/calib"))
    per_step = res.train.train_seconds / calib_steps
    shutil.rmtree("/tmp/calib", ignore_errors=True)
    eval_reserve = 45.0
    steps = max(100, int((args.budget_s - (time.perf_counter() - t0) - eval_reserve) / per_step))
    print(json.dumps({"calibration_s_per_step": per_step, "max_steps": steps}), flush=True)
    final = dataclasses.replace(
        cfg, train=dataclasses.replace(train, max_steps=steps, save_steps=max(steps // 4, 1))
    )
    res = run(final, args.output_dir)
    shutil.rmtree(args.output_dir / "checkpoints", ignore_errors=True)
    info = json.loads((args.output_dir / "unireward.json").read_text())
    info["made_by"] = {
        "command": "python experiments/pretrain_gpu.py "
        + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k != "output_dir"
        ),
        "calibration_s_per_step": per_step,
    }
    (args.output_dir / "unireward.json").write_text(json.dumps(info, indent=2, sort_keys=True))
    print(
        json.dumps(
            {
                "perception": res.perception,
                "steps": res.train.global_step,
                "train_seconds": res.train.train_seconds,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
