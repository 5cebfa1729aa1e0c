"""Canonical records -> judge conversations (what SFT trains on and what inference asks).

One row schema in, one example schema out: `{"prompt": [user message], "completion":
[assistant message], "images": [PIL images in placeholder order]}`, the prompt-completion
conversational format TRL's vision collator takes. The prompt wording and answer strings come
from `unireward.contract`; media paths are resolved inside the dataset root only.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from PIL import Image

from unireward import contract
from unireward.data.schema import Record
from unireward.tasks import Mode, Task, parse_mode, parse_task


def resolve_media(root: Path, rel: str) -> Path:
    """`root/rel`, refusing absolute paths, `..` and symlinks that leave `root`."""
    if Path(rel).is_absolute():
        raise ValueError(f"media path {rel!r} is absolute; paths must be relative to the dataset")
    root = root.resolve()
    path = (root / rel).resolve()
    if not path.is_relative_to(root):
        raise ValueError(f"media path {rel!r} escapes the dataset root {root}")
    return path


def load_image(root: Path, rel: str) -> Image.Image:
    path = resolve_media(root, rel)
    if not path.exists():
        raise FileNotFoundError(f"media file {rel!r} not found under {root}")
    with Image.open(path) as img:
        return img.convert("RGB")


def swap_record(record: Record) -> Record:
    """The same pairwise item with its two candidates in the other order (label swapped)."""
    task, mode = parse_task(record.task), parse_mode(record.mode)
    if mode != Mode.PAIRWISE or record.label is None:
        raise ValueError(f"record {record.id}: only labelled pairwise records can be swapped")
    label = contract.swap_label(task, record.label)
    if task.is_generation:
        return dataclasses.replace(record, media=list(reversed(record.media)), label=label)
    return dataclasses.replace(record, responses=list(reversed(record.responses)), label=label)


def prompt_messages(record: Record, cot: bool = False) -> list[dict[str, Any]]:
    task, mode = parse_task(record.task), parse_mode(record.mode)
    frames = {len(item) for item in record.media}
    if len(frames) != 1:
        raise ValueError(f"record {record.id}: visual items have different frame counts {frames}")
    return contract.build_messages(
        task,
        mode,
        record.prompt,
        list(record.responses),
        n_items=len(record.media),
        frames_per_item=frames.pop(),
        cot=cot,
    )


def record_images(record: Record, root: Path) -> list[Image.Image]:
    """All frames of all visual items, in placeholder order."""
    return [load_image(root, rel) for item in record.media for rel in item]


def to_example(record: Record, root: Path, cot: bool = False) -> dict[str, Any]:
    """A training example: prompt, answer-only (or CoT) completion and images."""
    task, mode = parse_task(record.task), parse_mode(record.mode)
    target = contract.target_text(
        task, mode, record.label, record.score, cot=record.cot, use_cot=cot
    )
    return {
        "prompt": prompt_messages(record, cot=cot),
        "completion": [{"role": "assistant", "content": [{"type": "text", "text": target}]}],
        "images": record_images(record, root),
    }


def task_of(record: Record) -> Task:
    return parse_task(record.task)
