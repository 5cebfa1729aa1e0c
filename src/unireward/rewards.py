"""GRPO rewards for the CoT judge (UnifiedReward-Think stage 3), and the correctness predicate
that evaluation uses too (shared/STYLE.md rule 6: reward and metric are the same function).

Reward functions have TRL's signature `f(completions, **columns) -> list[float]`; the trainer
passes dataset columns (here `solution`, the exact contract answer string) as keyword arguments.
reward = format_reward + accuracy_reward, as published:

    >>> good = "<think>Image 1: 8/15, Image 2: 5/15.</think><answer>Image 1 is better</answer>"
    >>> format_reward([good, "Image 1 is better"])
    [1.0, 0.0]
    >>> accuracy_reward([good, good], solution=["Image 1 is better", "Image 2 is better"])
    [1.0, 0.0]

The accuracy reward is deliberately stricter than `contract.parse_pairwise(cot=True)`: the
stripped <answer> content must equal the solution exactly (no case folding, no trailing period),
so RL teaches the exact contract string.

Tests: tests/test_rewards.py.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from unireward.contract import split_cot
from unireward.tasks import ANSWER_CLOSE, ANSWER_OPEN, PAIR_ANSWERS, TIE_ANSWERS

# What a right verdict must also have for rejection sampling's filter and GRPO's accuracy
# reward (`check`): "verdict" = the answer only (the paper); "observation" = the <think>
# states what the items show (shapes-world ground truth: data.teacher.observations);
# "scores" = the per-item totals in the <think> agree with the verdict (any data).
CHECKS = ("verdict", "observation", "scores")
_ITEM = re.compile(r"\b(?:Image|Video|Answer) ([12]):")
_TOTAL = re.compile(r"\btotal (\d+(?:\.\d+)?)")

_SOLUTIONS = frozenset(
    [*(s for pair in PAIR_ANSWERS.values() for s in pair), *TIE_ANSWERS.values()]
)


def completion_text(completion: Any) -> str:
    """The text of one completion, plain or conversational.

    Plain: "…" -> "…". Conversational (TRL): [{"role": "assistant", "content": "…"}] -> the
    content of the last assistant message; content given as parts
    ([{"type": "text", "text": "…"}, …]) is joined from its text parts.
    """
    if isinstance(completion, str):
        return completion
    if not isinstance(completion, list):
        raise TypeError(f"a completion is a str or a list of messages, got {type(completion)}")
    for message in reversed(completion):
        if isinstance(message, dict) and message.get("role") == "assistant":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return "".join(p.get("text", "") for p in content if p.get("type") == "text")
            raise TypeError(f"assistant content must be a str or a list of parts: {content!r}")
    raise ValueError(f"conversational completion has no assistant message: {completion!r}")


def _answer_content(text: str) -> str | None:
    """Stripped content of the single <answer>..</answer> block, or None (absent, repeated)."""
    if text.count(ANSWER_OPEN) != 1 or text.count(ANSWER_CLOSE) != 1:
        return None
    start = text.index(ANSWER_OPEN) + len(ANSWER_OPEN)
    end = text.index(ANSWER_CLOSE)
    if end < start:
        return None
    return text[start:end].strip()


def is_correct(completion_text: str, solution: str) -> bool:
    """True iff the completion has exactly one <answer> block whose stripped content == solution.

    The one predicate behind both `accuracy_reward` and CoT accuracy in evaluation. `solution`
    must be a contract answer string (tasks.PAIR_ANSWERS / TIE_ANSWERS); a retyped or
    punctuated solution is a data bug and raises, rather than silently scoring 0 forever.
    """
    if solution not in _SOLUTIONS:
        raise ValueError(f"solution {solution!r} is not a contract answer string (see tasks.py)")
    if not isinstance(completion_text, str):
        raise TypeError(f"completion_text must be a str, got {type(completion_text).__name__}")
    return _answer_content(completion_text) == solution


def item_totals(think: str) -> dict[int, float]:
    """{item: total} from a CoT's per-item scores ("Image 1: ..., total 6. Image 2: ...,
    total 7."): the last total written in each item's segments."""
    parts = _ITEM.split(think)
    totals: dict[int, float] = {}
    for number, segment in zip(parts[1::2], parts[2::2], strict=True):
        found = _TOTAL.findall(segment)
        if found:
            totals[int(number)] = float(found[-1])
    return totals


def reasoning_ok(text: str, solution: str, check: str, observations: Sequence[str] = ()) -> bool:
    """The <think> backs the verdict `solution`, by `check` (CHECKS). "verdict" is always
    True; "observation" needs every sentence of `observations` in the <think>; "scores" needs
    two different per-item totals, the higher for the item `solution` prefers."""
    if check not in CHECKS:
        raise ValueError(f"check must be one of {CHECKS}, got {check!r}")
    if check == "verdict":
        return True
    parts = split_cot(text)
    if parts is None:
        return False
    think = parts[0]
    if check == "observation":
        if not observations:
            raise ValueError(
                "check: observation needs the item's ground-truth observations "
                "(shapes-world data); use check: scores for data without them"
            )
        return all(sentence in think for sentence in observations)
    totals = item_totals(think)
    if set(totals) != {1, 2} or totals[1] == totals[2]:
        return False
    preferred = [pair.index(solution) + 1 for pair in PAIR_ANSWERS.values() if solution in pair]
    if not preferred:
        raise ValueError(f"check: scores needs a pairwise verdict, got {solution!r}")
    return (totals[1] > totals[2]) == (preferred[0] == 1)


def format_reward(completions: list, **kwargs: Any) -> list[float]:
    """1.0 per completion that is exactly <think>..</think> then <answer>..</answer>, else 0.0.

    Leading/trailing whitespace and whitespace between the blocks are allowed; anything else
    outside them, a missing or repeated tag, or the wrong order scores 0.0.
    completions: [B] str or conversational -> [B] floats.
    """
    return [1.0 if split_cot(completion_text(c)) is not None else 0.0 for c in completions]


def accuracy_reward(
    completions: list,
    solution: list[str],
    check: list[str] | None = None,
    observations: list[Sequence[str]] | None = None,
    **kwargs: Any,
) -> list[float]:
    """1.0 per completion whose stripped <answer> content equals its solution, else 0.0.

    completions: [B], solution: [B] (the dataset column, one exact answer string per row)
    -> [B] floats. With the optional `check` / `observations` columns (grpo.check) a right
    answer also needs reasoning that backs it (`reasoning_ok`); without them, as published,
    the <think> block is not looked at (format_reward scores its form).
    """
    if len(completions) != len(solution):
        raise ValueError(f"{len(completions)} completions but {len(solution)} solutions")
    checks = check or ["verdict"] * len(solution)
    seen = observations or [()] * len(solution)
    out = []
    for c, s, k, o in zip(completions, solution, checks, seen, strict=True):
        text = completion_text(c)
        out.append(1.0 if is_correct(text, s) and reasoning_ok(text, s, k, o) else 0.0)
    return out
