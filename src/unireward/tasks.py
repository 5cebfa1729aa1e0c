"""The judge's vocabulary: the four tasks, the two modes, and the exact answer strings.

These strings are a compatibility contract with the released UnifiedReward checkpoints and the
RL code that parses them (see shared/DESIGN.md, "The judge contract"): never reword them.
Prompt builders and parsers live in `unireward.contract`; this module only names things.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TypeVar


class Task(StrEnum):
    IMAGE_GENERATION = "image_generation"
    IMAGE_UNDERSTANDING = "image_understanding"
    VIDEO_GENERATION = "video_generation"
    VIDEO_UNDERSTANDING = "video_understanding"

    @property
    def is_video(self) -> bool:
        return self in (Task.VIDEO_GENERATION, Task.VIDEO_UNDERSTANDING)

    @property
    def is_generation(self) -> bool:
        return self in (Task.IMAGE_GENERATION, Task.VIDEO_GENERATION)


class Mode(StrEnum):
    PAIRWISE = "pairwise"
    POINTWISE = "pointwise"


TASKS: tuple[Task, ...] = tuple(Task)
MODES: tuple[Mode, ...] = tuple(Mode)

# Pairwise verdicts, index 0 = first item better, index 1 = second item better.
PAIR_ANSWERS: dict[Task, tuple[str, str]] = {
    Task.IMAGE_GENERATION: ("Image 1 is better", "Image 2 is better"),
    Task.VIDEO_GENERATION: ("Video 1 is better", "Video 2 is better"),
    Task.IMAGE_UNDERSTANDING: ("Answer 1 is better", "Answer 2 is better"),
    Task.VIDEO_UNDERSTANDING: ("Answer 1 is better", "Answer 2 is better"),
}

# Ties exist only for generation tasks, and only in direct (non-CoT) mode.
TIE_ANSWERS: dict[Task, str] = {
    Task.IMAGE_GENERATION: "Both images are equally good",
    Task.VIDEO_GENERATION: "Both videos are equally good",
}

# Native pointwise scales of the published prompts (inclusive). Scores are normalised to [0, 1]
# internally with `normalise_score`; raw scores are never compared across tasks or as strings.
SCORE_RANGE: dict[Task, tuple[float, float]] = {
    Task.IMAGE_GENERATION: (1.0, 5.0),
    Task.IMAGE_UNDERSTANDING: (0.0, 100.0),
    Task.VIDEO_GENERATION: (1.0, 10.0),
    Task.VIDEO_UNDERSTANDING: (1.0, 5.0),
}

# The published DPO sifting prompt scores image generation on 1-10 instead of 1-5.
SIFTING_SCORE_RANGE: tuple[float, float] = (1.0, 10.0)

SCORE_PREFIX = "Final Score:"
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"


E = TypeVar("E", bound=StrEnum)


def _parse(kind: type[E], noun: str, name: str) -> E:
    """The `kind` member named `name`, with an error that lists the valid names."""
    try:
        return kind(name)
    except ValueError:
        valid = ", ".join(member.value for member in kind)
        raise ValueError(f"unknown {noun} {name!r}; expected one of: {valid}") from None


def parse_task(name: str) -> Task:
    """Task from its name, with an error that lists the valid names."""
    return _parse(Task, "task", name)


def parse_mode(name: str) -> Mode:
    return _parse(Mode, "mode", name)


def normalise_score(task: Task, score: float) -> float:
    """Map a score on the task's native scale to [0, 1]; out-of-range scores are an error."""
    lo, hi = SCORE_RANGE[task]
    if not lo <= score <= hi:
        raise ValueError(f"score {score} outside the {task.value} scale [{lo:g}, {hi:g}]")
    return (score - lo) / (hi - lo)
