"""Tests for the GRPO rewards and the shared correctness predicate."""

from __future__ import annotations

import pytest

from unireward.contract import parse_pairwise
from unireward.rewards import accuracy_reward, completion_text, format_reward, is_correct
from unireward.tasks import PAIR_ANSWERS, TIE_ANSWERS, Task

IMG1, IMG2 = PAIR_ANSWERS[Task.IMAGE_GENERATION]
ANS1, _ = PAIR_ANSWERS[Task.IMAGE_UNDERSTANDING]
GOOD = f"<think>Image 1: 3+3+2=8. Image 2: 2+1+2=5.</think><answer>{IMG1}</answer>"

# (completion, solution, expected format reward, expected accuracy reward)
CASES = [
    (GOOD, IMG1, 1.0, 1.0),
    (GOOD, IMG2, 1.0, 0.0),
    (f"  \n{GOOD}\n ", IMG1, 1.0, 1.0),
    (f"<think>x</think>\n\n<answer>  {IMG1}\n</answer>", IMG1, 1.0, 1.0),
    (f"<think>{IMG2} at first glance</think><answer>{IMG1}</answer>", IMG1, 1.0, 1.0),
    (f"<think>{IMG1}</think><answer>{IMG2}</answer>", IMG1, 1.0, 0.0),
    (f"<think>x</think><answer>{IMG1}.</answer>", IMG1, 1.0, 0.0),  # exact string only
    ("<think>x</think><answer>image 1 is better</answer>", IMG1, 1.0, 0.0),
    (f"<think>x</think><answer>{IMG1} because</answer>", IMG1, 1.0, 0.0),
    (f"<answer>{IMG1}</answer>", IMG1, 0.0, 1.0),  # no reasoning: accuracy without format
    (f"<answer>{IMG1}</answer><think>x</think>", IMG1, 0.0, 1.0),
    (f"Sure! {GOOD}", IMG1, 0.0, 1.0),
    (f"{GOOD} Hope this helps.", IMG1, 0.0, 1.0),
    (f"<think>x</think> and so <answer>{IMG1}</answer>", IMG1, 0.0, 1.0),
    (f"{GOOD}<answer>{IMG1}</answer>", IMG1, 0.0, 0.0),  # two answer blocks
    (f"{GOOD}<answer>{IMG2}</answer>", IMG1, 0.0, 0.0),
    (f"<think>x</think><answer>{IMG1}", IMG1, 0.0, 0.0),
    (f"<think>x<answer>{IMG1}</answer>", IMG1, 0.0, 1.0),
    (f"</answer>{IMG1}<answer>", IMG1, 0.0, 0.0),
    (IMG1, IMG1, 0.0, 0.0),
    ("", IMG1, 0.0, 0.0),
    ("<think></think><answer></answer>", IMG1, 1.0, 0.0),
    (f"<think>x</think><answer>{TIE_ANSWERS[Task.IMAGE_GENERATION]}</answer>", IMG1, 1.0, 0.0),
    (f"<think>x</think><answer>{ANS1}</answer>", ANS1, 1.0, 1.0),
    ("garbage " * 20_000, ANS1, 0.0, 0.0),
]


@pytest.mark.parametrize(("completion", "solution", "fmt", "acc"), CASES)
def test_rewards_on_plain_completions(completion: str, solution: str, fmt: float, acc: float):
    assert format_reward([completion]) == [fmt]
    assert accuracy_reward([completion], solution=[solution]) == [acc]
    assert is_correct(completion, solution) == (acc == 1.0)


@pytest.mark.parametrize(("completion", "solution", "fmt", "acc"), CASES)
def test_rewards_on_conversational_completions(
    completion: str, solution: str, fmt: float, acc: float
):
    conversational = [{"role": "assistant", "content": completion}]
    assert format_reward([conversational]) == [fmt]
    assert accuracy_reward([conversational], solution=[solution]) == [acc]


def test_rewards_are_per_completion_in_order():
    completions = [GOOD, IMG1, f"<answer>{IMG2}</answer>"]
    solutions = [IMG1, IMG1, IMG2]
    assert format_reward(completions) == [1.0, 0.0, 0.0]
    assert accuracy_reward(completions, solution=solutions) == [1.0, 0.0, 1.0]


def test_rewards_accept_extra_trl_columns():
    extra = {"prompts": ["p"], "completion_ids": [[1, 2]], "trainer_state": None, "images": [[]]}
    assert format_reward([GOOD], **extra) == [1.0]
    assert accuracy_reward([GOOD], solution=[IMG1], **extra) == [1.0]


@pytest.mark.parametrize(
    ("completion", "text"),
    [
        ("plain", "plain"),
        ([{"role": "assistant", "content": "a"}], "a"),
        (
            [
                {"role": "assistant", "content": "old"},
                {"role": "user", "content": "again"},
                {"role": "assistant", "content": "new"},
                {"role": "user", "content": "trailing user turn"},
            ],
            "new",
        ),
        (
            [{"role": "assistant", "content": [{"type": "text", "text": "a"}, {"type": "image"}]}],
            "a",
        ),
    ],
)
def test_completion_text(completion, text: str):
    assert completion_text(completion) == text


@pytest.mark.parametrize(
    ("completion", "error"),
    [([{"role": "user", "content": "x"}], ValueError), ([], ValueError), (None, TypeError)],
)
def test_completion_text_rejects_wrong_shapes(completion, error):
    with pytest.raises(error):
        completion_text(completion)


@pytest.mark.parametrize("solution", ["Image 1 is better.", "image 1 is better", "1", ""])
def test_non_contract_solution_is_a_data_bug(solution: str):
    with pytest.raises(ValueError, match="not a contract answer string"):
        is_correct(GOOD, solution)


def test_accuracy_reward_length_mismatch():
    with pytest.raises(ValueError, match="2 completions but 1 solutions"):
        accuracy_reward([GOOD, GOOD], solution=[IMG1])


@pytest.mark.parametrize(("completion", "solution", "fmt", "acc"), CASES)
def test_full_reward_implies_parser_agrees(completion: str, solution: str, fmt: float, acc: float):
    # A completion with format and accuracy reward is one the evaluation parser reads the same way.
    if fmt == acc == 1.0:
        task = Task.IMAGE_UNDERSTANDING if solution == ANS1 else Task.IMAGE_GENERATION
        expected = PAIR_ANSWERS[task].index(solution) + 1
        assert parse_pairwise(completion, task, cot=True).preferred == expected


# --------------------------------------------------------------------------- reasoning checks


def _shapes_pairs():
    """One labelled shapes-world pair per task, with its teacher CoT (right) and the same CoT
    with the items' observations swapped (a lucky right verdict on a wrong observation)."""
    import tempfile
    from pathlib import Path

    import numpy as np

    from unireward.data import shapes, teacher
    from unireward.judge.examples import swap_record

    config = shapes.ShapesConfig(train_per_task_mode=6, eval_per_task_mode=1, frames=4)
    records = shapes.generate(config, Path(tempfile.mkdtemp()))
    out = {}
    for r in records:
        if r.mode == "pairwise" and r.meta_dict.get("better") is not None and r.task not in out:
            text = teacher.teacher_cot(r, np.random.default_rng(0), 0.0)
            out[r.task] = (r, text, swap_record(r))
    return out


def test_reasoning_checks_tell_grounded_cots_from_lucky_verdicts() -> None:
    from unireward.data.teacher import evidence
    from unireward.rewards import reasoning_ok

    pairs = _shapes_pairs()
    assert len(pairs) == 4
    for task, (record, text, swapped) in pairs.items():
        seen = evidence(record, "observation")
        assert reasoning_ok(text, record.label, "verdict")
        assert reasoning_ok(text, record.label, "observation", seen), task
        assert reasoning_ok(text, record.label, "scores"), task
        # the same CoT about the pair shown the other way round: its observations and item
        # totals now describe the wrong items, whatever its answer says
        mirrored = evidence(swapped, "observation")
        if task.endswith("generation"):
            assert not reasoning_ok(text, record.label, "observation", mirrored), task
        assert not reasoning_ok(text, swapped.label, "scores"), task
    # no per-item totals, no observation, or equal totals: not backed
    plain = "<think>I like it.</think><answer>Image 1 is better</answer>"
    assert not reasoning_ok(plain, "Image 1 is better", "scores")
    assert not reasoning_ok(plain, "Image 1 is better", "observation", ("Image 1: I see x.",))
    even = "<think>Image 1: total 5. Image 2: total 5.</think><answer>Image 1 is better</answer>"
    assert not reasoning_ok(even, "Image 1 is better", "scores")


def test_the_accuracy_reward_applies_the_check_columns() -> None:
    record, text, _ = _shapes_pairs()["image_understanding"]
    from unireward.data.teacher import evidence

    lucky = text.replace(f"I see {record.meta_dict['correct_answer']}.", "I see nothing.")
    both = [text, lucky]
    assert accuracy_reward(both, solution=[record.label] * 2) == [1.0, 1.0]  # as published
    grounded = accuracy_reward(
        both,
        solution=[record.label] * 2,
        check=["observation"] * 2,
        observations=[evidence(record, "observation")] * 2,
    )
    assert grounded == [1.0, 0.0]


def test_a_check_without_what_it_needs_is_a_clear_error() -> None:
    from unireward.data.schema import Record
    from unireward.data.teacher import evidence
    from unireward.rewards import reasoning_ok

    real = Record(
        id="r1",
        task="image_generation",
        mode="pairwise",
        prompt="a cat",
        media=[["a.png"], ["b.png"]],
        label="Image 1 is better",
    )
    with pytest.raises(ValueError, match="use check: scores"):
        evidence(real, "observation")
    assert evidence(real, "scores") == ()
    with pytest.raises(ValueError, match="check must be one of"):
        reasoning_ok("x", "Image 1 is better", "vibes")
