"""Probe: does a perception-first chain of thought get the tiny judge off the direct-mode saddle?

Direct-mode judge SFT on the shipped base stays at chance: the answer token's loss sits at
ln 2 / 6 (the one decision token of a ~6-token answer, exactly at chance) from step 800 on, with
small gradients. This probe trains image-understanding pairwise only, from the shipped base,
with the target

    <think>I see {correct answer}. Answer 1 says {A}. Answer 2 says {B}.</think>
    <answer>{label}</answer>      (one line, no whitespace between the tags)

so the model first writes what it perceives, then copies the two answers, then decides, and
reports CoT accuracy (same `is_correct` as evaluate/GRPO) and how often the observation is right,
per question type, on eval_seen and eval_unseen.

    .venv/bin/python experiments/probe_cot_iu.py VALIDATED_DIR OUTPUT_DIR [STEPS]

Writes OUTPUT_DIR/judge (the trained judge, servable) and OUTPUT_DIR/result.json.
VALIDATED_DIR is a `validate` stage output (e.g. runs/kfp/<run>/validate/validated of a
`make pipeline-run`). Measured (2,500 steps, batch 16, lr 1e-3, 1 thread, 2 shared cores,
1,058 s of training): CoT accuracy 0.735 seen / 0.665 unseen, against 0.50 for direct answers.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from unireward.data.schema import Record, read_records
from unireward.judge.examples import prompt_messages, record_images
from unireward.judge.infer import generate_texts
from unireward.judge.unified_sft import expand
from unireward.model.tiny import load_checkpoint, save_checkpoint
from unireward.rewards import is_correct
from unireward.training import TrainParams, example_stream, train_sft

BASE = Path("models/base-tiny")


def target(record: Record) -> str:
    meta = record.meta_dict
    return (
        f"<think>I see {meta['correct_answer']}. Answer 1 says {record.responses[0]}. "
        f"Answer 2 says {record.responses[1]}.</think><answer>{record.label}</answer>"
    )


def image_understanding_pairs(records: list[Record], split: str) -> list[Record]:
    """The probes' data: image-understanding pairwise records of one split."""
    return [
        r
        for r in records
        if r.split == split and r.task == "image_understanding" and r.mode == "pairwise"
    ]


def example_maker(train: list[Record], root: Path, direct_frac: float = 0.0):
    """Example i of the probes' SFT stream: shuffled epochs over `train` (both orders); a
    direct-answer target with probability `direct_frac`, else the perception-first CoT target."""
    n = len(train)

    def make(i: int) -> dict:
        epoch, pos = divmod(i, n)
        r = train[np.random.default_rng([0, epoch]).permutation(n)[pos]]
        direct = direct_frac > 0 and np.random.default_rng([1, i]).random() < direct_frac
        text = r.label if direct else target(r)
        return {
            "prompt": prompt_messages(r, cot=not direct),
            "completion": [{"role": "assistant", "content": [{"type": "text", "text": text}]}],
            "images": record_images(r, root),
        }

    return make


def main(root: Path, out: Path, steps: int) -> dict:
    records = read_records(root)

    def select(split: str) -> list[Record]:
        return image_understanding_pairs(records, split)

    make = example_maker(expand(select("train"), True), root)

    model, processor = load_checkpoint(BASE)
    params = TrainParams(
        max_steps=steps,
        batch_size=16,
        learning_rate=1e-3,
        warmup_ratio=0.03,
        save_steps=500,
        logging_steps=50,
    )
    start = time.time()
    train_sft(model, processor, example_stream(make), params, out)
    result: dict = {"train_seconds": round(time.time() - start, 1)}
    # The trained judge, servable (safetensors only): experiments/policy_with_cot_judge.sh
    # serves it.
    save_checkpoint(model, processor, out / "judge", extra={"probe": "cot_iu", "steps": steps})
    for split in ("eval_seen", "eval_unseen"):
        rows = select(split)
        inputs = [(prompt_messages(r, cot=True), record_images(r, root)) for r in rows]
        texts = generate_texts(model, processor, inputs, max_new_tokens=64)
        right = [is_correct(t, r.label) for t, r in zip(texts, rows, strict=True)]
        pairs = list(zip(texts, rows, strict=True))
        seen = [f"I see {r.meta_dict['correct_answer']}." in t for t, r in pairs]
        by_type: dict[str, list[bool]] = {}
        for ok, r in zip(right, rows, strict=True):
            by_type.setdefault(r.meta_dict["question_type"], []).append(ok)
        result[split] = {
            "n": len(rows),
            "cot_accuracy": round(float(np.mean(right)), 3),
            "observation_right": round(float(np.mean(seen)), 3),
            "by_question_type": {k: round(float(np.mean(v)), 3) for k, v in by_type.items()},
        }
    (out / "result.json").write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    steps = int(sys.argv[3]) if len(sys.argv) == 4 else 2500
    print(json.dumps(main(Path(sys.argv[1]), Path(sys.argv[2]), steps), indent=1))
