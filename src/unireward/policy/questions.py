"""The policy's task: short answers to shapes-world questions about one image, with ground truth.

    from unireward.policy.questions import make_questions, accuracy
    qs = make_questions(seed=7, n=300, split="eval_seen", image_size=64)
    accuracy(["red", ...], qs)   # {"colour": .., "shape": .., "position": .., "mean": ..}

A question is one of the base model's perception questions ("What colour is the shape?",
"What shape is it?", "Where is the shape?"), asked about a fresh render, in the layout the base
was pretrained on: `Image:` <image> question (the question *after* the image; asked before it,
the shipped base answers 0.00, README). `train` and `eval_seen` draw seen (colour, shape)
combinations from different seed streams; `eval_unseen` the held-out ones (`UNSEEN_COMBOS`).

Everything here is pure: no model, no I/O. Tests: tests/test_evaluate_policy.py.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from unireward.data import shapes

ATTRIBUTES: tuple[str, ...] = ("colour", "shape", "position")
QUESTIONS: dict[str, str] = {
    "colour": "What colour is the shape?",
    "shape": "What shape is it?",
    "position": "Where is the shape?",
}
POLICY_SPLITS: dict[str, int] = {"train": 0, "eval_seen": 1, "eval_unseen": 2}


@dataclass(frozen=True)
class PolicyQuestion:
    qid: str
    split: str
    attribute: str
    question: str
    answer: str  # ground truth, lower case
    image: Image.Image
    scene: shapes.Scene


def make_questions(seed: int, n: int, split: str, image_size: int = 64) -> list[PolicyQuestion]:
    """`n` questions, attributes in turn (colour, shape, position, ...); each drawn from its own
    generator (seed, split, index), so question i does not depend on n."""
    if split not in POLICY_SPLITS:
        raise ValueError(f"unknown policy split {split!r}; expected one of {list(POLICY_SPLITS)}")
    combos = shapes.UNSEEN_COMBOS if split == "eval_unseen" else shapes.SEEN_COMBOS
    out = []
    for i in range(n):
        rng = np.random.default_rng([seed, POLICY_SPLITS[split], i])
        colour, shape = combos[int(rng.integers(len(combos)))]
        position = shapes.POSITIONS[int(rng.integers(len(shapes.POSITIONS)))]
        scene = shapes.Scene(shape=shape, colour=colour, position=position)
        attribute = ATTRIBUTES[i % len(ATTRIBUTES)]
        out.append(
            PolicyQuestion(
                qid=f"{split}-{seed}-{i}",
                split=split,
                attribute=attribute,
                question=QUESTIONS[attribute],
                answer=str(getattr(scene, attribute)),
                image=shapes.render_image(scene, image_size, rng),
                scene=scene,
            )
        )
    return out


def prompt_messages(question: str) -> list[dict[str, Any]]:
    """The policy's chat prompt (conversational, one image placeholder), as it was pretrained."""
    content = [
        {"type": "text", "text": "Image:"},
        {"type": "image"},
        {"type": "text", "text": question},
    ]
    return [{"role": "user", "content": content}]


def normalise_answer(text: str) -> str:
    """Lower case, surrounding whitespace and a trailing period removed."""
    return " ".join(text.strip().lower().rstrip(".").split())


def is_correct(answer: str, truth: str) -> bool:
    """Exact match after `normalise_answer` (the policy's metric and the oracle's reward)."""
    return normalise_answer(answer) == normalise_answer(truth)


def accuracy(answers: Sequence[str], questions: Sequence[PolicyQuestion]) -> dict[str, float]:
    """Exact-match accuracy per attribute plus `mean` (over attributes) and `all` (over items).

    >>> qs = [_q("colour", "red"), _q("shape", "square")]   # doctest: +SKIP
    >>> accuracy(["Red.", "circle"], qs)                      # doctest: +SKIP
    {'colour': 1.0, 'shape': 0.0, 'mean': 0.5, 'all': 0.5}
    """
    if len(answers) != len(questions):
        raise ValueError(f"{len(answers)} answers for {len(questions)} questions")
    if not questions:
        raise ValueError("accuracy of no questions is undefined")
    hits: dict[str, list[bool]] = defaultdict(list)
    for answer, q in zip(answers, questions, strict=True):
        hits[q.attribute].append(is_correct(answer, q.answer))
    per = {a: float(np.mean(hits[a])) for a in ATTRIBUTES if hits[a]}
    flat = [h for a in per for h in hits[a]]
    return {**per, "mean": float(np.mean(list(per.values()))), "all": float(np.mean(flat))}


def image_key(question: str, image: Image.Image) -> str:
    """Content key of (question, image): how the oracle finds a query's ground truth."""
    digest = hashlib.sha256(image.convert("RGB").tobytes()).hexdigest()[:24]
    return f"{normalise_answer(question)}|{digest}"
