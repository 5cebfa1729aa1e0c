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
    load_for_training,
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
    # Skills and their weights (shapes.PERCEPTION_MAKERS: perception and instruction skills,
    # e.g. shapes.INSTRUCT_MIX); empty = shapes.DEFAULT_PERCEPTION_MIX.
    mix: dict[str, float] = field(default_factory=dict)
    # Train on shapes.EXTRA_COLOURS too (every shape in each): shape must be seen to be named.
    # Held-out colour-shape combos stay out either way.
    extra_colours: bool = False
    # Every probe_steps (0 = never) answer probe_examples fresh questions per split and append
    # the per-skill accuracy to probe.jsonl in the output dir: the learning curve of a long run.
    probe_steps: int = 0
    probe_examples: int = 200
    # Continue from this checkpoint (its tokenizer and weights) instead of a random model: a
    # later curriculum phase. Empty = build the tokenizer and a random model.
    init_from: str = ""
    # Share of examples whose question comes before the items ("Which image shows ...?
    # Image 1: <image> Image 2: <image>") instead of after them. Instruct data has both; the
    # judge contract puts its candidates last, and a comparison with the question first can be
    # matched at the items' own tokens (docs/research/instruct-base.md).
    question_first: float = 0.0
    # Share of the examples that check a text against the items (which shows a caption,
    # verify, check an answer, same colour, ...) that also say in words what each item shows,
    # before the question: the comparison learned on text it can read, as unified_sft's caption
    # curriculum does for the judge. The probe scores without it (and, with it, apart).
    hint: float = 0.0

    def __post_init__(self) -> None:
        for name in ("question_first", "hint"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.mix:
            shapes.check_mix(self.mix)
        if self.model.image_size != self.shapes.image_size:
            raise ValueError(
                f"model.image_size {self.model.image_size} != shapes.image_size "
                f"{self.shapes.image_size}: the processor and the renderer must agree"
            )
        for name in ("eval_examples", "probe_steps", "probe_examples"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")

    @property
    def train_combos(self) -> tuple[tuple[str, str], ...]:
        return shapes.SEEN_COMBOS + (shapes.EXTRA_COMBOS if self.extra_colours else ())


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
    their targets, teacher CoT judgements and the base's questions and answers.

    The tokenizer (like a published one) covers all the text the models will read; the
    *training* corpus (`make` in `run`) holds none of the judge's prompts or answers."""
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
    combos = shapes.SEEN_COMBOS + shapes.EXTRA_COMBOS
    for mix in (shapes.DEFAULT_PERCEPTION_MIX, shapes.INSTRUCT_MIX):
        for _ in range(n_perception // 2):
            ex = shapes.perception_example(rng, small, combos, mix)
            texts.extend([ex.question, ex.answer])
    for task in Task:
        lo, hi = SCORE_RANGE[task]
        texts.extend(f"Final Score: {s}" for s in range(int(lo), int(hi) + 1))
    return texts


# --------------------------------------------------------------------------- examples


def perception_to_example(
    ex: shapes.PerceptionExample, question_first: bool = False, hint: bool = False
) -> dict[str, Any]:
    """The chat example of `ex`: the items, then the question (before them: `question_first`),
    the question preceded by the items' description where `hint` and the skill has one."""
    many = len(ex.items) > 1
    noun = "Video" if len(ex.items[0]) > 1 else "Image"
    content: list[dict[str, Any]] = []
    for i, item in enumerate(ex.items):
        content.append({"type": "text", "text": f"{noun} {i + 1}:" if many else f"{noun}:"})
        content.extend({"type": "image"} for _ in item)
    text = f"{ex.hint}\n{ex.question}" if hint and ex.hint else ex.question
    question = {"type": "text", "text": text}
    content = [question, *content] if question_first else [*content, question]
    return {
        "prompt": [{"role": "user", "content": content}],
        "completion": [{"role": "assistant", "content": [{"type": "text", "text": ex.answer}]}],
        "images": [frame for item in ex.items for frame in item],
    }


def corpus_example(config: PretrainBaseConfig, i: int) -> shapes.PerceptionExample:
    """The i-th example of the pretraining stream (deterministic in train.seed and i)."""
    rng = np.random.default_rng([config.train.seed, i])
    return shapes.perception_example(rng, config.shapes, config.train_combos, config.mix)


def _draw(config: PretrainBaseConfig, i: int, share: float, stream: int) -> bool:
    """A yes with probability `share` for the i-th example (a draw of its own `stream`, so the
    examples themselves do not depend on the share)."""
    if share in (0.0, 1.0):
        return share == 1.0
    return bool(np.random.default_rng([config.train.seed, i, stream]).random() < share)


def asks_first(config: PretrainBaseConfig, i: int) -> bool:
    """Whether the i-th example of the stream puts its question before the items."""
    return _draw(config, i, config.question_first, 1)


def gets_hint(config: PretrainBaseConfig, i: int) -> bool:
    """Whether the i-th example of the stream says what its items show (if its skill can)."""
    return _draw(config, i, config.hint, 2)


def perception_accuracy(
    model,
    processor,
    cfg: shapes.ShapesConfig,
    n: int,
    combos,
    seed: int,
    mix=None,
    question_first: float = 0.0,
    hint: bool = False,
):
    """Exact-match accuracy per question kind on `n` fresh examples from `combos`, in the
    layouts the stream uses (`question_first`), with the items described where `hint`.
    `all_compare` is every two-item question, `all_compare_question_first` / `_last` the same
    by layout."""
    from unireward.judge.infer import generate_texts

    rng = np.random.default_rng(seed)
    examples = [shapes.perception_example(rng, cfg, combos, mix) for _ in range(n)]
    first = rng.random(n) < question_first
    chats = [
        perception_to_example(x, q, hint) for x, q in zip(examples, first.tolist(), strict=True)
    ]
    prompts = [(c["prompt"], c["images"]) for c in chats]
    answers = generate_texts(model, processor, prompts, max_new_tokens=12, batch_size=32)
    hits: dict[str, list[bool]] = defaultdict(list)
    for ex, q_first, answer in zip(examples, first, answers, strict=True):
        hit = answer.strip().lower() == ex.answer.lower()
        hits[ex.kind].append(hit)
        hits["all"].append(hit)
        if len(ex.items) > 1:
            hits["all_compare"].append(hit)
            hits["all_compare_question_" + ("first" if q_first else "last")].append(hit)
    return {k: float(np.mean(v)) for k, v in sorted(hits.items())}


def measure(model, processor, config: PretrainBaseConfig, n: int, seed: int = 10_000):
    """Per-skill accuracy on `n` fresh examples of seen and of unseen world combos (world
    colours only: the extra colours are training material, not a test), without hints; with
    `hint` on, also with them on n // 4 examples (`seen_hinted/...`: is the comparison learned
    on text?)."""
    out: dict[str, float] = {}
    for k, (split, combos) in enumerate(
        (("seen", shapes.SEEN_COMBOS), ("unseen", shapes.UNSEEN_COMBOS)), start=1
    ):
        for hint, count in ((False, n), (True, n // 4 if config.hint else 0)):
            if not count:
                continue
            acc = perception_accuracy(
                model,
                processor,
                config.shapes,
                count,
                combos,
                seed + k,
                config.mix,
                config.question_first,
                hint,
            )
            name = f"{split}_hinted" if hint else split
            out.update({f"{name}/{kind}": v for kind, v in acc.items()})
    return out


def probe_callback(config: PretrainBaseConfig, processor, output_dir: Path):
    """A TrainerCallback appending {step, seconds, per-skill accuracy} to probe.jsonl every
    `probe_steps` (the file survives a resume: a killed run keeps its curve)."""
    import time

    from transformers import TrainerCallback

    class PerceptionProbe(TrainerCallback):
        def __init__(self) -> None:
            self.start = time.perf_counter()

        def on_step_end(self, args, state, control, model=None, **kwargs):
            if state.global_step % config.probe_steps:
                return
            acc = measure(model, processor, config, config.probe_examples, seed=20_000)
            row = {"step": state.global_step, "wall_s": round(time.perf_counter() - self.start)}
            with (output_dir / "probe.jsonl").open("a") as f:
                f.write(json.dumps({**row, **acc}) + "\n")

    return PerceptionProbe()


# --------------------------------------------------------------------------- stage


def run(config: PretrainBaseConfig, output_dir: Path) -> PretrainResult:
    """Build tokenizer + tiny model, train perception, measure it, save to `output_dir`."""
    from unireward.model.tiny import save_checkpoint

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    if config.init_from:
        model, processor = load_for_training(Path(config.init_from), config.train)
    else:
        tokenizer = train_tokenizer(tokenizer_corpus(config.shapes), config.model.vocab_size)
        processor = build_processor(tokenizer, config.model.image_size, config.model.family)
        model = build_model(config.model, tokenizer)

    def make(i: int) -> dict[str, Any]:
        return perception_to_example(
            corpus_example(config, i), asks_first(config, i), gets_hint(config, i)
        )

    stream = example_stream(make, shards=max(1, config.train.dataloader_workers))
    callbacks = [probe_callback(config, processor, output_dir)] if config.probe_steps else None
    outcome = train_sft(model, processor, stream, config.train, output_dir, callbacks)

    perception = {}
    if config.eval_examples:
        perception = measure(model, processor, config, config.eval_examples)
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
