"""Canonical records -> judge conversations (what SFT trains on and what inference asks).

One row schema in, one example schema out: `{"prompt": [user message], "completion":
[assistant message], "images": [PIL images in placeholder order]}`, the prompt-completion
conversational format TRL's vision collator takes. The prompt layout and answer strings come
from `unireward.contract`, the wording from the `templates` given (a checked
`prompt_templates.PromptTemplates`; None = the project's default file); media paths are
resolved inside the dataset root only.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from PIL import Image

from unireward import contract
from unireward.data.media import resolve_media
from unireward.data.schema import Record
from unireward.prompt_templates import PromptTemplates
from unireward.tasks import Mode, Task, parse_mode, parse_task


def load_image(root: Path, rel: str) -> Image.Image:
    path = resolve_media(root, rel)
    if not path.exists():
        raise FileNotFoundError(f"media file {rel!r} not found under {root}")
    with Image.open(path) as img:
        return img.convert("RGB")


def swap_record(record: Record) -> Record:
    """The same pairwise item with its two candidates in the other order (label swapped).

    Ground truth in `meta` that follows the candidates' order (the shapes world's per-item
    `items` or per-answer `claims`, and the index `better`) is swapped with them.
    """
    task, mode = parse_task(record.task), parse_mode(record.mode)
    if mode != Mode.PAIRWISE or record.label is None:
        raise ValueError(f"record {record.id}: only labelled pairwise records can be swapped")
    label = contract.swap_label(task, record.label)
    meta = record.meta_dict
    key = "items" if task.is_generation else "claims"
    if isinstance(meta.get(key), list) and len(meta[key]) == 2:
        meta[key] = list(reversed(meta[key]))
    if meta.get("better") in (0, 1):
        meta["better"] = 1 - meta["better"]
    swapped = dataclasses.replace(record, label=label, meta=json.dumps(meta, sort_keys=True))
    if task.is_generation:
        return dataclasses.replace(swapped, media=list(reversed(record.media)))
    return dataclasses.replace(swapped, responses=list(reversed(record.responses)))


_DEFECT_WORDS = {
    "noise": "noisy",
    "blur": "blurry",
    "shuffled": "frames shuffled",
    "frozen": "frozen",
}


def scene_hint(record: Record) -> str | None:
    """What each visual item shows, in words, from the record's ground truth; None if unknown.

    "The image shows a red circle at the top left." / "Video 1 shows a red circle moving left,
    frozen. Video 2 shows ...": the text unified_sft's caption curriculum puts in the prompt
    (`contract.build_messages(hint=...)`) and anneals away. Shapes-world records carry the
    scenes in `meta` (`scene`, or `items` for generation tasks); on other data a captioner would
    write them, and records without them are trained on without a hint.
    """
    from unireward.data.shapes import Scene, describe

    task = parse_task(record.task)
    meta = record.meta_dict
    scenes = meta.get("items") if task.is_generation else [meta.get("scene")]
    if not scenes or not all(isinstance(s, dict) for s in scenes):
        return None
    if len(scenes) != len(record.media):
        raise ValueError(
            f"record {record.id}: meta describes {len(scenes)} item(s), media has "
            f"{len(record.media)}"
        )
    noun = "Video" if task.is_video else "Image"
    parts = []
    for i, fields in enumerate(scenes):
        try:
            scene = Scene(**fields)
        except (TypeError, ValueError) as err:
            raise ValueError(
                f"record {record.id}: meta item {i + 1} is not a scene: {err}"
            ) from err
        text = describe(scene)
        if scene.defect is not None:
            text += f", {_DEFECT_WORDS[scene.defect]}"
        name = f"{noun} {i + 1}" if len(scenes) > 1 else f"The {noun.lower()}"
        parts.append(f"{name} shows {text}.")
    return " ".join(parts)


def prompt_messages(
    record: Record,
    cot: bool = False,
    hint: str | None = None,
    templates: PromptTemplates | None = None,
) -> list[dict[str, Any]]:
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
        hint=hint,
        templates=templates,
    )


def record_images(record: Record, root: Path) -> list[Image.Image]:
    """All frames of all visual items, in placeholder order."""
    return [load_image(root, rel) for item in record.media for rel in item]


def to_example(
    record: Record,
    root: Path,
    cot: bool = False,
    hint: str | None = None,
    templates: PromptTemplates | None = None,
) -> dict[str, Any]:
    """A training example: prompt (`templates`' wording, with `hint` before the instruction, if
    given), answer-only (or CoT) completion and images."""
    task, mode = parse_task(record.task), parse_mode(record.mode)
    target = contract.target_text(
        task, mode, record.label, record.score, cot=record.cot, use_cot=cot
    )
    return {
        "prompt": prompt_messages(record, cot=cot, hint=hint, templates=templates),
        "completion": [{"role": "assistant", "content": [{"type": "text", "text": target}]}],
        "images": record_images(record, root),
    }


def task_of(record: Record) -> Task:
    return parse_task(record.task)
