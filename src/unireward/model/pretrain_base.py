"""Stage 0, `pretrain_base`: teach a tiny Qwen-VL to *see* the shapes world.

Production starts from a pretrained Qwen2.5-VL that already perceives images. A random tiny
model does not, and judging from scratch stays at chance (shared/ENVIRONMENT.md: 2,200+ steps
flat). This stage stands in for that pretraining: it builds the tokenizer on the project's own
prompt corpus, builds a random tiny Qwen2.5-VL, and trains it with TRL SFT on an endless stream
of shapes-world perception questions (describe an image / video, colour, shape, position,
motion, image and video quality, questions about one of two images). No judging task and no
contract answer string is in this data, so the base model can be measured as a judge before
judge training.

    unireward pretrain_base --output-dir models/base-tiny          # CPU, see README for time
    unireward pretrain_base --profile full --output-dir models/base-tiny

The output is the default base checkpoint of the embedded default (`models/base-tiny`), with
`perception.json` holding its measured per-attribute accuracy on held-out examples of seen and of
unseen colour-shape combinations.
"""

from __future__ import annotations

import json
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from unireward import contract
from unireward.config import to_dict
from unireward.data import shapes, teacher
from unireward.data.schema import Record
from unireward.model.tiny import TinyModelConfig, build_model, build_processor, train_tokenizer
from unireward.tasks import PAIR_ANSWERS, SCORE_RANGE, Mode, Task, parse_mode, parse_task
from unireward.training import (
    TrainOutcome,
    TrainParams,
    discard_checkpoints,
    example_stream,
    train_sft,
)


def _default_train() -> TrainParams:
    return TrainParams(max_steps=4000, batch_size=32, learning_rate=3e-3, warmup_ratio=0.05)


@dataclass(frozen=True)
class PretrainBaseConfig:
    model: TinyModelConfig = field(default_factory=TinyModelConfig)
    shapes: shapes.ShapesConfig = field(
        default_factory=lambda: shapes.ShapesConfig(frames=4, train_per_task_mode=0)
    )
    train: TrainParams = field(default_factory=_default_train)
    eval_examples: int = 400  # per split (seen / unseen combos), for the perception report
    # Perception skills and their weights (shapes.PERCEPTION_MAKERS); empty = the default mix.
    mix: dict[str, float] = field(default_factory=dict)
    # Continue from this checkpoint (its tokenizer and weights) instead of a random model: a
    # later curriculum phase. Empty = build the tokenizer and a random model.
    init_from: str = ""

    def __post_init__(self) -> None:
        if self.mix:
            shapes.check_mix(self.mix)
        if self.model.image_size != self.shapes.image_size:
            raise ValueError(
                f"model.image_size {self.model.image_size} != shapes.image_size "
                f"{self.shapes.image_size}: the processor and the renderer must agree"
            )
        if self.eval_examples < 0:
            raise ValueError(f"eval_examples must be >= 0, got {self.eval_examples}")


@dataclass
class PretrainResult:
    model_dir: Path
    perception: dict[str, float]
    train: TrainOutcome


# --------------------------------------------------------------------------- tokenizer corpus


def task_of(record: Record) -> Task:
    return parse_task(record.task)


def _record_texts(record: Record) -> list[str]:
    task, mode = parse_task(record.task), parse_mode(record.mode)
    texts = []
    for cot in (False, True) if mode == Mode.PAIRWISE else (False,):
        for part in contract.build_messages(
            task,
            mode,
            record.prompt,
            list(record.responses),
            len(record.media),
            len(record.media[0]),
            cot=cot,
        )[0]["content"]:
            if part["type"] == "text":
                texts.append(part["text"])
    texts.append(contract.target_text(task, mode, record.label, record.score))
    return texts


def tokenizer_corpus(cfg: shapes.ShapesConfig, n_perception: int = 2000) -> list[str]:
    """Text the tiny tokenizer is trained on: judge prompts of every task/mode (direct and CoT),
    their targets, teacher CoT judgements and perception questions and answers."""
    small = shapes.ShapesConfig(
        seed=cfg.seed + 7919,
        image_size=cfg.image_size,
        frames=4,
        train_per_task_mode=12,
        eval_per_task_mode=0,
    )
    texts: list[str] = []
    rng = np.random.default_rng(small.seed)
    with tempfile.TemporaryDirectory() as tmp:
        for record in shapes.generate(small, Path(tmp)):
            texts.extend(_record_texts(record))
            if record.mode == Mode.PAIRWISE and record.label in PAIR_ANSWERS[task_of(record)]:
                texts.append(teacher.teacher_cot(record, rng, error_rate=0.0, style="scores"))
    for _ in range(n_perception):
        ex = shapes.perception_example(rng, small)
        texts.extend([ex.question, ex.answer])
    for task in Task:
        lo, hi = SCORE_RANGE[task]
        texts.extend(f"Final Score: {s}" for s in range(int(lo), int(hi) + 1))
    return texts


# --------------------------------------------------------------------------- examples


def perception_to_example(ex: shapes.PerceptionExample) -> dict[str, Any]:
    many = len(ex.items) > 1
    noun = "Video" if len(ex.items[0]) > 1 else "Image"
    content: list[dict[str, Any]] = []
    for i, item in enumerate(ex.items):
        content.append({"type": "text", "text": f"{noun} {i + 1}:" if many else f"{noun}:"})
        content.extend({"type": "image"} for _ in item)
    content.append({"type": "text", "text": ex.question})
    return {
        "prompt": [{"role": "user", "content": content}],
        "completion": [{"role": "assistant", "content": [{"type": "text", "text": ex.answer}]}],
        "images": [frame for item in ex.items for frame in item],
    }


def question_kind(question: str) -> str:
    """Which perception skill a question tests (for the per-attribute report)."""
    q = question.lower()
    for prefix, kind in (
        ("question:", "check_answer"),
        ("does the image", "verify_image"),
        ("does the video", "verify_video"),
        ("which image shows", "which_image"),
        ("which video shows", "which_video"),
        ("what colour", "colour"),
        ("what shape", "shape"),
        ("where is", "position"),
        ("which way", "motion"),
        ("is the image", "image_quality"),
        ("is the motion", "video_quality"),
        ("describe image", "describe_one_of_two"),
        ("describe the video", "describe_video"),
        ("describe the image", "describe_image"),
    ):
        if q.startswith(prefix):
            return kind
    raise ValueError(f"no perception kind for question {question!r}")


def perception_accuracy(
    model, processor, cfg: shapes.ShapesConfig, n: int, combos, seed: int, mix=None
):
    """Exact-match accuracy per question kind on `n` fresh examples from `combos`."""
    from unireward.judge.infer import generate_texts

    rng = np.random.default_rng(seed)
    examples = [shapes.perception_example(rng, cfg, combos, mix) for _ in range(n)]
    prompts = [(e["prompt"], e["images"]) for e in map(perception_to_example, examples)]
    answers = generate_texts(model, processor, prompts, max_new_tokens=12, batch_size=32)
    hits: dict[str, list[bool]] = defaultdict(list)
    for ex, answer in zip(examples, answers, strict=True):
        hit = answer.strip().lower() == ex.answer.lower()
        hits[question_kind(ex.question)].append(hit)
        hits["all"].append(hit)
    return {k: float(np.mean(v)) for k, v in sorted(hits.items())}


# --------------------------------------------------------------------------- stage


def run(config: PretrainBaseConfig, output_dir: Path) -> PretrainResult:
    """Build tokenizer + tiny model, train perception, measure it, save to `output_dir`."""
    from unireward.model.tiny import load_checkpoint, save_checkpoint

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    if config.init_from:
        model, processor = load_checkpoint(Path(config.init_from))
    else:
        tokenizer = train_tokenizer(tokenizer_corpus(config.shapes), config.model.vocab_size)
        processor = build_processor(tokenizer, config.model.image_size, config.model.family)
        model = build_model(config.model, tokenizer)

    def make(i: int) -> dict[str, Any]:
        rng = np.random.default_rng([config.train.seed, i])
        return perception_to_example(shapes.perception_example(rng, config.shapes, mix=config.mix))

    stream = example_stream(make, shards=max(1, config.train.dataloader_workers))
    outcome = train_sft(model, processor, stream, config.train, output_dir)

    perception: dict[str, float] = {}
    if config.eval_examples:
        for split, combos, seed in (
            ("seen", shapes.SEEN_COMBOS, 10_001),
            ("unseen", shapes.UNSEEN_COMBOS, 10_002),
        ):
            acc = perception_accuracy(
                model, processor, config.shapes, config.eval_examples, combos, seed, config.mix
            )
            perception.update({f"{split}/{k}": v for k, v in acc.items()})
    model.to("cpu")
    save_checkpoint(
        model,
        processor,
        output_dir,
        extra={
            "stage": "pretrain_base",
            "config": to_dict(config),
            "perception": perception,
            "global_step": outcome.global_step,
            "train_seconds": round(outcome.train_seconds, 1),
        },
    )
    (output_dir / "perception.json").write_text(json.dumps(perception, indent=2))
    discard_checkpoints(output_dir)
    return PretrainResult(model_dir=output_dir, perception=perception, train=outcome)
