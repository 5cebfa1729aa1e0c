"""Probe: is the direct-mode saddle in the comparison or in perception? And does a caption
curriculum carry a learned text comparison over to the image?

Image-understanding pairwise, direct targets (the contract's answer string only), from the shipped
base. The prompt's question is prefixed with the scene's ground-truth caption
("The image shows a white square at the bottom left. What shape is it?") with probability p:

    phase A (STEPS_A):  p = 1                -- the text-only control: the answer can be found by
                                                matching the caption against the two answers
    phase B (STEPS_B):  p from 1 down to 0   -- the caption is annealed away
    phase C (STEPS_C):  p = 0                -- the real direct judge (image only)

After each phase: direct exact accuracy on eval_seen and eval_unseen, with the caption and
without it, and swap consistency without it.

    .venv/bin/python experiments/probe_direct_caption.py VALIDATED_DIR OUTPUT_DIR \
        STEPS_A STEPS_B STEPS_C [BASE_DIR]

BASE_DIR defaults to the shipped base, models/base-tiny (or a checkpoint of an earlier run, to
continue it). PROBE_LR sets the learning rate (default 1e-3, constant after a 3 % warmup).
The prompt is the contract's direct prompt, which since cd526c3 ends with the two candidates.
The "contract layout" rows below were measured at 27ae8d8, where the candidates came before the
instruction and PROBE_LAYOUT=answers_last moved them after it (the layout the contract now has).

Run from the repository root. Writes OUTPUT_DIR/result.json.

Measured (batch 16, 1 thread, 200 + 200 eval pairs; README, judge section): with the contract's
layout the verdict stays at chance even with the caption (1e-3 and 3e-4, 1,500-2,150 steps);
with the candidates last and lr 3e-4 the captioned comparison reaches 0.72 / 0.68 (seen /
unseen) in 2,000 steps, and the real direct judge (no caption) 0.595 / 0.56 in 2,500 steps and
0.63 / 0.58 in 5,000, swap consistency ~0.22; with the caption curriculum (`1000 1000 1000`)
0.72 / 0.64 in 3,000 steps (swap consistency 0.47 / 0.39), continued without it 0.755 / 0.67 at
5,000, 0.81 / 0.715 at 8,000 and 0.89 / 0.77 at 11,000 (swap consistency 0.765 / 0.745).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from probe_cot_iu import BASE, image_understanding_pairs

from unireward.data.schema import Record, read_records
from unireward.data.shapes import Scene, describe
from unireward.judge.examples import prompt_messages, record_images, swap_record
from unireward.judge.infer import generate_texts
from unireward.judge.unified_sft import expand
from unireward.model.tiny import load_checkpoint
from unireward.training import TrainParams, example_stream, train_sft

LR = float(os.environ.get("PROBE_LR", "1e-3"))  # constant after a 3 % warmup


def with_caption(record: Record) -> Record:
    scene = Scene(**record.meta_dict["scene"])
    return dataclasses.replace(record, prompt=f"The image shows {describe(scene)}. {record.prompt}")


def example(record: Record, root: Path) -> dict:
    return {
        "prompt": prompt_messages(record),
        "completion": [{"role": "assistant", "content": [{"type": "text", "text": record.label}]}],
        "images": record_images(record, root),
    }


def maker(train: list[Record], root: Path, p, seed: int):
    """Example i of shuffled epochs over `train`, the caption kept with probability p(i)
    (i counts examples, not steps)."""
    n = len(train)

    def make(i: int) -> dict:
        epoch, pos = divmod(i, n)
        r = train[np.random.default_rng([seed, epoch]).permutation(n)[pos]]
        if np.random.default_rng([seed + 1, i]).random() < p(i):
            r = with_caption(r)
        return example(r, root)

    return make


def kind_of(record: Record) -> str:
    return record.meta_dict["question_type"]


def share(flags: list[bool]) -> float:
    return round(float(np.mean(flags)), 3)


def evaluate(model, processor, records: list[Record], root: Path) -> dict:
    out: dict = {}
    for split in ("eval_seen", "eval_unseen"):
        rows = image_understanding_pairs(records, split)

        def ask(rs: list[Record]) -> list[str]:
            inputs = [(prompt_messages(r), record_images(r, root)) for r in rs]
            return [t.strip() for t in generate_texts(model, processor, inputs, max_new_tokens=8)]

        twins = [swap_record(r) for r in rows]
        plain, swapped, captioned = ask(rows), ask(twins), ask([with_caption(r) for r in rows])
        valid = ("Answer 1 is better", "Answer 2 is better")
        out[split] = {
            "n": len(rows),
            "direct": share([t == r.label for t, r in zip(plain, rows, strict=True)]),
            "direct_with_caption": share(
                [t == r.label for t, r in zip(captioned, rows, strict=True)]
            ),
            # verdicts that mirror when the candidates are swapped
            "swap_consistency": share(
                [
                    t in valid and s in valid and (t == r.label) == (s == w.label)
                    for t, s, r, w in zip(plain, swapped, rows, twins, strict=True)
                ]
            ),
            "answers": {a: plain.count(a) for a in sorted(set(plain))},
            "by_question_type": {
                kind: share(
                    [t == r.label for t, r in zip(plain, rows, strict=True) if kind_of(r) == kind]
                )
                for kind in sorted({kind_of(r) for r in rows})
            },
        }
    return out


def main(root: Path, out: Path, steps: tuple[int, int, int], base: Path = BASE) -> dict:
    records = read_records(root)
    train = expand(image_understanding_pairs(records, "train"), True)
    model, processor = load_checkpoint(base)
    batch = 16
    schedules = {
        "A": lambda i: 1.0,
        "B": lambda i: max(0.0, 1.0 - i / (steps[1] * batch)),
        "C": lambda i: 0.0,
    }
    result: dict = {"base": str(base), "steps": dict(zip("ABC", steps, strict=True))}
    for phase, n in zip("ABC", steps, strict=True):
        if n == 0:
            continue
        params = TrainParams(
            max_steps=n,
            batch_size=batch,
            learning_rate=LR,
            lr_scheduler="constant_with_warmup",
            warmup_ratio=0.03,
            save_steps=n,
            logging_steps=50,
        )
        stream = example_stream(maker(train, root, schedules[phase], seed=ord(phase)))
        start = time.time()
        outcome = train_sft(model, processor, stream, params, out / phase)
        losses = [h["loss"] for h in outcome.log_history if "loss" in h]
        result[phase] = {
            "train_seconds": round(time.time() - start, 1),
            "loss_first_last": [losses[0], losses[-1]] if losses else None,
            "eval": evaluate(model, processor, records, root),
        }
        print(phase, json.dumps(result[phase]), flush=True)
        (out / "result.json").write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    if len(sys.argv) not in (6, 7):
        sys.exit(__doc__)
    root, out = Path(sys.argv[1]), Path(sys.argv[2])
    base = Path(sys.argv[6]) if len(sys.argv) == 7 else BASE
    main(root, out, tuple(int(a) for a in sys.argv[3:6]), base)
