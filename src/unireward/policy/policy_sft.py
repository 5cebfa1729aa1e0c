"""Stage `policy_sft`: the embedded policy -- the base VLM briefly taught to answer shapes-world
questions *imperfectly*, so that preference alignment has room to improve it.

    unireward policy_sft --base-model models/base-tiny --output-dir models/policy-tiny
    make pretrain-policy                      # the same, into the shipped models/policy-tiny

Why not the base itself: measured on 300 held-out questions per split (`unireward
evaluate_policy --before models/base-tiny --after models/base-tiny`), the shipped base already
answers colour 1.00, position 1.00, shape 0.70 on seen combinations -- 10 points of room in one
attribute. A real policy's errors are systematic (it confuses some classes), not uniform noise,
so this stage teaches confusions: for the *confused* values of each attribute (the first half of
its value list: red, green, blue; circle, square; top left, top right) the training answer is the
next value in the list with probability `confusion_rate`, else the truth. At 0.6 the greedy
answer for those values flips while sampling still produces the right one ~40 % of the time,
which is what pair construction needs (a right and a wrong answer among the N samples).

Writes the checkpoint plus `policy.json` (its held-out accuracy per attribute). Resumable like
every SFT stage (`training.train_sft`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from unireward.config import to_dict
from unireward.data import shapes
from unireward.training import TrainOutcome, TrainParams, discard_checkpoints, example_stream

VALUES: dict[str, tuple[str, ...]] = {
    "colour": shapes.COLOURS,
    "shape": shapes.SHAPES,
    "position": shapes.POSITIONS,
}


def _default_train() -> TrainParams:
    return TrainParams(
        max_steps=200,
        batch_size=16,
        learning_rate=1e-3,
        warmup_ratio=0.05,
        save_steps=100,
        logging_steps=20,
    )


@dataclass(frozen=True)
class PolicySftConfig:
    confusion_rate: float = 0.6
    seed: int = 0
    image_size: int = 64  # the shipped base's image size (models/base-tiny)
    eval_questions: int = 300
    train: TrainParams = field(default_factory=_default_train)

    def __post_init__(self) -> None:
        if not 0 <= self.confusion_rate <= 1:
            raise ValueError(
                f"policy_sft.confusion_rate must be in [0, 1], got {self.confusion_rate}"
            )
        if self.eval_questions < 0:
            raise ValueError("policy_sft.eval_questions must be >= 0")


@dataclass
class PolicySftResult:
    model_dir: Path
    accuracy: dict[str, float]
    train: TrainOutcome


def confused(attribute: str, value: str) -> str | None:
    """The wrong answer a confused policy gives for `value`, or None if it is not confused.

    >>> confused("colour", "red"), confused("colour", "yellow"), confused("shape", "square")
    ('green', None, 'triangle')
    """
    values = VALUES[attribute]
    i = values.index(value)
    return values[i + 1] if i < len(values) // 2 else None


def training_row(i: int, config: PolicySftConfig) -> dict[str, Any]:
    """Training row `i` (pure function of i): a question, its image, the (maybe confused) answer."""
    from unireward.policy.questions import QUESTIONS, prompt_messages

    # Its own seed stream (7): never the streams make_questions draws train / eval questions from.
    rng = np.random.default_rng([config.train.seed, 7, i])
    colour, shape = shapes.SEEN_COMBOS[int(rng.integers(len(shapes.SEEN_COMBOS)))]
    scene = shapes.Scene(
        shape=shape,
        colour=colour,
        position=shapes.POSITIONS[int(rng.integers(len(shapes.POSITIONS)))],
    )
    attribute = ("colour", "shape", "position")[i % 3]
    truth = str(getattr(scene, attribute))
    wrong = confused(attribute, truth)
    answer = wrong if wrong is not None and rng.random() < config.confusion_rate else truth
    return {
        "prompt": prompt_messages(QUESTIONS[attribute]),
        "completion": [{"role": "assistant", "content": [{"type": "text", "text": answer}]}],
        "images": [shapes.render_image(scene, config.image_size, rng)],
    }


def run(config: PolicySftConfig, base_model: Path, output_dir: Path) -> PolicySftResult:
    from unireward.model.tiny import save_checkpoint
    from unireward.policy.evaluate_policy import answer_questions
    from unireward.policy.questions import accuracy, make_questions
    from unireward.training import load_for_training, train_sft

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    model, processor = load_for_training(Path(base_model), config.train)
    stream = example_stream(lambda i: training_row(i, config))
    outcome = train_sft(model, processor, stream, config.train, output_dir)
    acc: dict[str, float] = {}
    if config.eval_questions:
        for split in ("eval_seen", "eval_unseen"):
            qs = make_questions(config.seed + 1, config.eval_questions, split, config.image_size)
            answers = [a[0] for a in answer_questions(model, processor, qs)]
            acc.update({f"{split}/{k}": v for k, v in accuracy(answers, qs).items()})
    save_checkpoint(
        model,
        processor,
        output_dir,
        extra={
            "stage": "policy_sft",
            "config": to_dict(config),
            "base_model": str(base_model),
            "accuracy": acc,
            "global_step": outcome.global_step,
            "train_seconds": round(outcome.train_seconds, 1),
        },
    )
    (output_dir / "policy.json").write_text(json.dumps(acc, indent=2) + "\n")
    discard_checkpoints(output_dir)
    return PolicySftResult(output_dir, acc, outcome)
