"""unified_sft with a share of the base's own instruct stream replayed in each batch.

Run from a copy in runs/transfer (its params.yaml profiles):
  python replay_sft.py PROFILE BASE_DIR DATASET_DIR OUTPUT_DIR SHARE
Result: docs/research/instruct-base.md (2026-12-07): 0.56 / 0.68 at share 0.3, no better.
"""

import sys
from pathlib import Path

import numpy as np
import torch

from unireward import config
from unireward.data.schema import read_records
from unireward.judge import unified_sft
from unireward.judge.examples import to_example
from unireward.model import pretrain_base
from unireward.model.tiny import save_checkpoint
from unireward.training import example_stream, load_for_training, train_sft

RESUME = Path("../../configs/base/phase3.yaml")  # the shipped base's later phases' mix


def main(profile: str, base: Path, data: Path, out: Path, share: float) -> None:
    torch.set_num_threads(1)
    cfg = config.load_stage_config(
        unified_sft.UnifiedSftConfig, "unified_sft", profile, Path("params.yaml")
    )
    base_cfg = config.load_stage_config(
        pretrain_base.PretrainBaseConfig, "pretrain_base", None, RESUME
    )
    rows = unified_sft.expand(unified_sft.select_records(read_records(data), cfg), True)
    model, processor = load_for_training(base, cfg.train)
    seed, n = cfg.train.seed, len(rows)

    def make(i: int) -> dict:
        if np.random.default_rng([seed, i, 7]).random() < share:
            ex = pretrain_base.corpus_example(base_cfg, 10_000_000 + i)
            return pretrain_base.perception_to_example(ex)
        epoch, pos = divmod(i, n)
        row = int(unified_sft.epoch_order([[k] for k in range(n)], seed, epoch)[pos])
        return to_example(rows[row], data)

    outcome = train_sft(model, processor, example_stream(make), cfg.train, out)
    model.to("cpu")
    extra = {"stage": "unified_sft", "replay": share}
    save_checkpoint(model, processor, out, extra=extra, state_dict=outcome.state_dict)


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4]), float(sys.argv[5]))
