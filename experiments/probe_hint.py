"""Probe: does a judge checkpoint compare what the caption curriculum shows it in words?

`unified_sft.caption_curriculum` first puts each item's scene in the prompt (`scene_hint`), then
anneals it away. This asks a checkpoint the same held-out pairs twice, with and without that
hint, and prints the pairwise accuracy (ties left out) and how often it answers "1" per task:
high with the hint and chance without = the comparison is learned on text but not on the image;
chance with both = not learned at all.

    .venv/bin/python experiments/probe_hint.py CHECKPOINT VALIDATED_DIR [PAIRS_PER_TASK] [SPLIT]

Measured (the full profile's eight task-modes on the tiny Qwen3-VL base, curriculum 5,000 /
5,000 steps; docs/research/judge-learnability.md): at 5,000 steps, with / without the hint,
image generation 0.77 / 0.40, video generation 0.75 / 0.47, image and video understanding 0.50
and 0.53 / 0.27 and 0.00 (60 pairs per task, ~12 s on one thread).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from unireward import contract
from unireward.data.schema import read_records
from unireward.judge.examples import prompt_messages, record_images, scene_hint
from unireward.judge.infer import generate_texts
from unireward.model.tiny import load_checkpoint
from unireward.tasks import TASKS, Mode


def main(checkpoint: Path, data: Path, per_task: int = 60, split: str = "eval_seen") -> None:
    torch.set_num_threads(1)
    model, processor = load_checkpoint(checkpoint)
    records = read_records(data)
    for task in TASKS:
        rows = [
            r
            for r in records
            if r.split == split
            and r.task == task.value
            and r.mode == Mode.PAIRWISE.value
            and r.label is not None
            and contract.label_to_preferred(task, r.label) in (1, 2)
            and scene_hint(r) is not None
        ][:per_task]
        if not rows:
            print(f"{task.value}: no labelled {split} pairs with a scene hint")
            continue
        cells = []
        for hinted in (False, True):
            prompts = [
                (prompt_messages(r, hint=scene_hint(r) if hinted else None), record_images(r, data))
                for r in rows
            ]
            texts = generate_texts(model, processor, prompts, max_new_tokens=12)
            verdicts = [contract.parse_pairwise(t, task).preferred for t in texts]
            right = sum(
                v == contract.label_to_preferred(task, r.label)
                for v, r in zip(verdicts, rows, strict=True)
            )
            ones = sum(v == 1 for v in verdicts)
            cells.append(
                f"{'hint' if hinted else 'plain'} {right / len(rows):.2f} (answers 1: {ones})"
            )
        print(f"{task.value:20s} {len(rows)} pairs  " + "  ".join(cells), flush=True)


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(
        Path(sys.argv[1]),
        Path(sys.argv[2]),
        int(sys.argv[3]) if len(sys.argv) > 3 else 60,
        sys.argv[4] if len(sys.argv) > 4 else "eval_seen",
    )
