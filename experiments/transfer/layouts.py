"""Ask a base checkpoint the judge's evaluation pairs in its own wording or other layouts.

Zero-shot, no training: is the comparison there, and does it survive a change of layout?
  v1: the base's templates ("Which image shows <caption>?"; "Reply 1 / Reply 2");
  v2: the caption on a line of its own; replies labelled "Answer 1 / 2";
  v3: the judge's question without its reply format;
  v4: the judge's question with it.
Caption pairs only (defect pairs need another question). Run from a copy in runs/transfer:
  python layouts.py BASE_DIR DATASET_DIR v1
Result: docs/research/instruct-base.md (2026-12-07).
"""

import collections
import json
import sys
from pathlib import Path

import torch

from unireward.data.schema import read_records
from unireward.judge.examples import load_image
from unireward.judge.infer import generate_texts
from unireward.model import tiny

Q = '"'
DEFECTS = ("blur", "noise", "shuffled", "frozen")


def generation_question(variant: str, noun: str, caption: str) -> str:
    n = noun.lower()
    judge = f"Which {n} matches the caption better and looks better?"
    choices = (
        f"{Q}{noun} 1 is better{Q}, {Q}{noun} 2 is better{Q}, {Q}Both {n}s are equally good{Q}"
    )
    return {
        "v1": f"Which {n} shows {caption}?",
        "v2": f"Which {n} shows the caption?\nCaption: {caption}",
        "v3": f"{judge}\nCaption: {caption}",
        "v4": f"{judge} Reply with exactly one of: {choices}.\nCaption: {caption}",
    }[variant]


def understanding_question(variant: str, noun: str, question: str, a: str, b: str) -> str:
    n = noun.lower()
    judge = f"Question about the {n}: {question}\nWhich answer is better for this {n}?"
    choices = f"{Q}Answer 1 is better{Q}, {Q}Answer 2 is better{Q}"
    return {
        "v1": f"Question: {question}\nWhich reply is right?\nReply 1: {a}\nReply 2: {b}",
        "v2": f"Question: {question}\nWhich reply is right?\nAnswer 1: {a}\nAnswer 2: {b}",
        "v3": f"{judge}\nAnswer 1: {a}\nAnswer 2: {b}",
        "v4": f"{judge} Reply with exactly one of: {choices}.\nAnswer 1: {a}\nAnswer 2: {b}",
    }[variant]


def frames(item) -> list:
    return item if isinstance(item, list) else [item]


def main(model_dir: Path, root: Path, variant: str) -> None:
    torch.set_num_threads(1)
    model, processor = tiny.load_checkpoint(model_dir)
    prompts, keys = [], []
    for r in read_records(root):
        if r.mode != "pairwise" or r.split == "train" or r.label is None:
            continue
        preferred = r.label.split()[1]
        generation = r.task.endswith("generation")
        if preferred not in ("1", "2"):
            continue
        if generation and json.loads(r.meta).get("difference") in DEFECTS:
            continue
        noun = "Video" if r.task.startswith("video") else "Image"
        items = r.media if generation else r.media[:1]
        content = []
        for i, item in enumerate(items):
            content.append(
                {"type": "text", "text": f"{noun} {i + 1}:" if generation else f"{noun}:"}
            )
            content += [{"type": "image"}] * len(frames(item))
        if generation:
            text = generation_question(variant, noun, r.prompt)
        else:
            text = understanding_question(variant, noun, r.prompt, *r.responses)
        content.append({"type": "text", "text": text})
        images = [load_image(root, f) for item in items for f in frames(item)]
        prompts.append(([{"role": "user", "content": content}], images))
        label = "reply" if variant == "v1" else "answer"  # a base names the label it was shown
        want = f"{noun.lower()} {preferred}" if generation else f"{label} {preferred}"
        keys.append((r.task, want))
    answers = generate_texts(model, processor, prompts, max_new_tokens=8, batch_size=32)
    answers = [a.strip().lower() for a in answers]
    print(variant, collections.Counter(answers).most_common(5))
    und = [a for (t, _), a in zip(keys, answers, strict=True) if "understanding" in t]
    print(variant, "understanding:", collections.Counter(und).most_common(4))
    hits = collections.defaultdict(list)
    for (task, want), answer in zip(keys, answers, strict=True):
        hits[task].append(answer == want)
    print(variant, {k: round(sum(v) / len(v), 2) for k, v in hits.items()})


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3])
