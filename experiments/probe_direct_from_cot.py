"""Probe: does a direct answer become learnable once the model has learned perception-first CoT?

Starts from a checkpoint of the CoT probe (experiments/probe_cot_iu.py), trains a mix of direct
targets (fraction DIRECT_FRAC) and the same CoT targets on image-understanding pairwise, and
reports direct exact accuracy and CoT accuracy on eval_seen before and after.

    .venv/bin/python experiments/probe_direct_from_cot.py VALIDATED_DIR OUTPUT_DIR STEPS \
        DIRECT_FRAC COT_CHECKPOINT

Measured (COT_CHECKPOINT = the probe's checkpoint-2500, 1,000 steps, DIRECT_FRAC 0.5, batch 16,
lr 1e-3, 1 thread, 414 s of training): direct 0.00 -> 0.475 (chance), CoT 0.735 -> 0.68. The
perception the CoT learned does not make the one-token decision learnable in 1,000 steps.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
from probe_cot_iu import BASE, example_maker, image_understanding_pairs

from unireward.data.schema import Record, read_records
from unireward.judge.examples import prompt_messages, record_images
from unireward.judge.infer import generate_texts
from unireward.judge.unified_sft import expand
from unireward.model.tiny import load_checkpoint
from unireward.rewards import is_correct
from unireward.training import TrainParams, example_stream, restore_weights, train_sft


def evaluate(model, processor, rows: list[Record], root: Path) -> dict:
    def ask(cot: bool, tokens: int) -> list[str]:
        inputs = [(prompt_messages(r, cot=cot), record_images(r, root)) for r in rows]
        return generate_texts(model, processor, inputs, max_new_tokens=tokens)

    direct, cot = ask(False, 16), ask(True, 64)
    labels = [r.label for r in rows]
    exact = [t.strip() == y for t, y in zip(direct, labels, strict=True)]
    return {
        "direct_exact": float(np.mean(exact)),
        "cot": float(np.mean([is_correct(t, y) for t, y in zip(cot, labels, strict=True)])),
        "direct_samples": direct[:3],
    }


def main(root: Path, out: Path, steps: int, direct_frac: float, checkpoint: Path) -> dict:
    records = read_records(root)

    def select(split: str) -> list[Record]:
        return image_understanding_pairs(records, split)

    make = example_maker(expand(select("train"), True), root, direct_frac)

    model, processor = load_checkpoint(BASE)
    restore_weights(model, checkpoint)
    rows = select("eval_seen")
    result: dict = {"before": evaluate(model, processor, rows, root)}
    params = TrainParams(
        max_steps=steps,
        batch_size=16,
        learning_rate=1e-3,
        warmup_ratio=0.03,
        save_steps=steps,
        logging_steps=50,
    )
    start = time.time()
    train_sft(model, processor, example_stream(make), params, out)
    result["train_seconds"] = round(time.time() - start, 1)
    result["after"] = evaluate(model, processor, rows, root)
    (out / "result.json").write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    if len(sys.argv) != 6:
        sys.exit(__doc__)
    root, out, steps, frac, checkpoint = sys.argv[1:]
    result = main(Path(root), Path(out), int(steps), float(frac), Path(checkpoint))
    print(json.dumps(result, indent=1))
