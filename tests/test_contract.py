"""Tests for the judge contract: prompt builders, SFT targets and the strict answer parsers."""

from __future__ import annotations

import math

import pytest

from unireward.contract import (
    PairVerdict,
    PointScore,
    build_messages,
    format_score,
    label_to_preferred,
    parse_pairwise,
    parse_pointwise,
    preferred_to_label,
    split_cot,
    swap_label,
    target_text,
)
from unireward.tasks import (
    MODES,
    PAIR_ANSWERS,
    SCORE_RANGE,
    TASKS,
    TIE_ANSWERS,
    Mode,
    Task,
)

IG, IU, VG, VU = (
    Task.IMAGE_GENERATION,
    Task.IMAGE_UNDERSTANDING,
    Task.VIDEO_GENERATION,
    Task.VIDEO_UNDERSTANDING,
)
IMG1, IMG2 = PAIR_ANSWERS[IG]
VID1, VID2 = PAIR_ANSWERS[VG]
ANS1, ANS2 = PAIR_ANSWERS[IU]
IMG_TIE, VID_TIE = TIE_ANSWERS[IG], TIE_ANSWERS[VG]


def cot(answer: str, think: str = "Image 1: 3+2+3=8. Image 2: 2+2+2=6.") -> str:
    return f"<think>{think}</think><answer>{answer}</answer>"


def shape(task: Task, mode: Mode) -> tuple[int, list[str]]:
    """(n_items, responses) for a well-formed row of (task, mode), per data/schema.py."""
    if task.is_generation:
        return (2 if mode == Mode.PAIRWISE else 1), []
    return 1, (["yes", "no"] if mode == Mode.PAIRWISE else ["yes"])


# Every prompt the judge can get: CoT is pairwise only.
PROMPT_KINDS = [
    (t, m, c)
    for t in TASKS
    for m in MODES
    for c in (False, True)
    if not (c and m == Mode.POINTWISE)
]
ALL_LABELS = [
    (t, label) for t in TASKS for label in (*PAIR_ANSWERS[t], TIE_ANSWERS.get(t)) if label
]

# --------------------------------------------------------------------------- pairwise, direct

DIRECT_CASES = [
    # (text, task, expected preferred or None, substring of the reason)
    (IMG1, IG, 1, None),
    (IMG2, IG, 2, None),
    (IMG_TIE, IG, 0, None),
    (VID_TIE, VG, 0, None),
    (ANS2, IU, 2, None),
    (ANS1, VU, 1, None),
    ("Image 2 is better.", IG, 2, None),
    ("  image 1 IS BETTER  \n", IG, 1, None),
    ("After comparing, I find that Video 2 is better overall.", VG, 2, None),
    ("both images are equally good.", IG, 0, None),
    ("Image 1 is better. Indeed, Image 1 is better.", IG, 1, None),  # same verdict twice
    ("Image  1\nis better", IG, 1, None),  # whitespace inside the string
    ("Image 1 is better, no wait, Image 2 is better", IG, None, "conflicting"),
    ("Image 1 is better or both images are equally good", IG, None, "conflicting"),
    (cot(IMG2, think=f"not {IMG1}"), IG, None, "conflicting"),  # direct mode reads it all
    ("Video 1 is better", IG, None, "another task"),
    ("Image 1 is better", VG, None, "another task"),
    ("Image 1 is better", IU, None, "another task"),
    ("Answer 1 is better", IG, None, "another task"),
    ("Image 1 is better and Video 1 is better", IG, None, "Video 1 is better"),
    (IMG_TIE, IU, None, "ties exist only for generation"),
    (VID_TIE, VU, None, "ties exist only for generation"),
    (VID_TIE, IG, None, "another task"),
    ("Image 12 is better", IG, None, "no answer string"),
    ("Image 1 is betterment", IG, None, "no answer string"),
    ("The first image is better", IG, None, "no answer string"),
    ("1", IG, None, "no answer string"),
    ("", IG, None, "no answer string"),
    ("", IU, None, "no answer string"),
    ("asdf " * 20_000, IG, None, "no answer string"),
]


@pytest.mark.parametrize(("text", "task", "preferred", "reason"), DIRECT_CASES)
def test_parse_pairwise_direct(text: str, task: Task, preferred: int | None, reason: str | None):
    verdict = parse_pairwise(text, task)
    assert verdict.preferred == preferred
    assert verdict.ok == (preferred is not None)
    if reason is None:
        assert verdict.reason is None
    else:
        assert reason.lower() in verdict.reason.lower()


# --------------------------------------------------------------------------- pairwise, CoT

COT_CASES = [
    (cot(IMG1), IG, 1, None),
    (cot(IMG2), IG, 2, None),
    (cot(VID2), VG, 2, None),
    (cot(ANS1), VU, 1, None),
    ("\n <think>x</think>\n\n<answer> Answer 2 is better </answer>\n", IU, 2, None),
    (cot(IMG2 + "."), IG, 2, None),  # trailing period tolerated
    (cot(IMG2, think=f"At first {IMG1}, but no."), IG, 2, None),  # reasoning does not decide
    (cot(IMG1, think=f"{IMG_TIE}? No."), IG, 1, None),
    (cot(IMG_TIE), IG, None, "tie"),
    (cot(VID_TIE), VG, None, "tie"),
    (cot(IMG_TIE), IU, None, "ties exist only for generation"),
    (cot(VID1), IG, None, "another task"),
    (cot(ANS1), IG, None, "another task"),
    (cot("Image 1 is better because it is sharper"), IG, None, "not one of"),
    (cot("image 1 is better"), IG, None, "not one of"),  # the tag holds the exact string
    (cot(f"{IMG1}. {IMG2}"), IG, None, "not one of"),
    (cot(""), IG, None, "not one of"),
    (IMG1, IG, None, "missing <think>"),
    (f"<answer>{IMG1}</answer>", IG, None, "missing <think>"),
    (f"<think>ok</think>{IMG1}", IG, None, "missing <answer>"),
    (f"<think>ok</think><answer>{IMG1}", IG, None, "missing </answer>"),
    (f"<think>ok<answer>{IMG1}</answer>", IG, None, "missing </think>"),
    (cot(IMG1) + f"<answer>{IMG2}</answer>", IG, None, "duplicated <answer>"),
    (cot(IMG1) + f"<answer>{IMG1}</answer>", IG, None, "duplicated <answer>"),
    (f"<think>a</think><think>b</think><answer>{IMG1}</answer>", IG, None, "duplicated"),
    (f"<answer>{IMG1}</answer><think>ok</think>", IG, None, "text before <think>"),
    (f"So: <think>ok</think><answer>{IMG1}</answer>", IG, None, "text before <think>"),
    (f"<think>ok</think> so <answer>{IMG1}</answer>", IG, None, "between"),
    (cot(IMG1) + " Done.", IG, None, "text after"),
    (f"<think>a<answer>{IMG1}</answer></think>", IG, None, "out of order"),
    ("", IG, None, "missing"),
    ("x" * 100_000, IG, None, "missing"),
]


@pytest.mark.parametrize(("text", "task", "preferred", "reason"), COT_CASES)
def test_parse_pairwise_cot(text: str, task: Task, preferred: int | None, reason: str | None):
    verdict = parse_pairwise(text, task, cot=True)
    assert verdict.preferred == preferred
    if reason is None:
        assert verdict.reason is None
    else:
        assert reason.lower() in verdict.reason.lower()


def test_unparseable_reason_quotes_garbage_briefly():
    verdict = parse_pairwise(cot("y" * 10_000), IG, cot=True)
    assert not verdict.ok
    assert len(verdict.reason) < 300


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (cot(IMG1, think=" a "), ("a", IMG1)),
        ("  <think></think>  <answer>x</answer> \n", ("", "x")),
        ("<think>a</think>x<answer>b</answer>", None),
        ("<THINK>a</THINK><answer>b</answer>", None),
        ("<think>a</think><answer>b</answer>.", None),
        ("", None),
    ],
)
def test_split_cot(text: str, expected: tuple[str, str] | None):
    assert split_cot(text) == expected


# --------------------------------------------------------------------------- pointwise

POINT_CASES = [
    # (text, task, expected score or None, substring of the reason)
    ("Final Score: 4", IG, 4.0, None),
    ("The image is fine.\nFinal Score: 10", VG, 10.0, None),
    ("Final Score: 9", VG, 9.0, None),
    ("final score: 2.5", IG, 2.5, None),
    ("FINAL SCORE:3.", VU, 3.0, None),
    ("Final Score: 4/5", IG, 4.0, None),
    ("Final Score: 85/100", IU, 85.0, None),
    ("Final Score: 0", IU, 0.0, None),
    ("Final Score: 100", IU, 100.0, None),
    ("Final Score: **4**", IG, 4.0, None),
    ("Final Score: .5e", IU, None, "not followed by a number"),
    ("Final Score: 2\nOn reflection... Final Score: 3", IG, 3.0, None),  # the LAST one
    ("Final Score: 3 then Final Score: N/A", IG, None, "not followed by a number"),
    ("Final Score: four", IG, None, "not followed by a number"),
    ("Final Score:", IG, None, "not followed by a number"),
    ("Final Score: 1e1", VG, None, "not followed by a number"),
    ("Final Score: nan", IG, None, "not finite"),
    ("Final Score: NaN", IG, None, "not finite"),
    ("Final Score: inf", VG, None, "not finite"),
    ("Final Score: -inf", IU, None, "not finite"),
    ("Final Score: " + "9" * 400, IU, None, "outside"),
    ("Final Score: 6", IG, None, "outside"),
    ("Final Score: 0", IG, None, "outside"),
    ("Final Score: 11", VG, None, "outside"),
    ("Final Score: -1", IU, None, "outside"),
    ("Final Score: 100.5", IU, None, "outside"),
    ("Final Score: 10", VU, None, "outside"),
    ("Score: 4", IG, None, "no"),
    ("4", IG, None, "no"),
    ("", IG, None, "no"),
    ("Final Score 4", IG, None, "no"),
    ("zz " * 30_000, VG, None, "no"),
]


@pytest.mark.parametrize(("text", "task", "score", "reason"), POINT_CASES)
def test_parse_pointwise(text: str, task: Task, score: float | None, reason: str | None):
    result = parse_pointwise(text, task)
    assert result.score == score
    assert result.ok == (score is not None)
    if score is not None:
        assert isinstance(result.score, float)
        assert result.reason is None
    else:
        assert reason.lower() in result.reason.lower()


def test_scores_compare_as_numbers_not_strings():
    ten = parse_pointwise("Final Score: 10", VG).score
    nine = parse_pointwise("Final Score: 9", VG).score
    assert ten > nine  # "10" < "9" as strings: the published bug


# --------------------------------------------------------------------------- labels


@pytest.mark.parametrize(("task", "label"), ALL_LABELS)
def test_swap_label_twice_is_identity(task: Task, label: str):
    assert swap_label(task, swap_label(task, label)) == label


@pytest.mark.parametrize(
    ("task", "label", "swapped"),
    [(IG, IMG1, IMG2), (VG, VID2, VID1), (IU, ANS1, ANS2), (IG, IMG_TIE, IMG_TIE)],
)
def test_swap_label(task: Task, label: str, swapped: str):
    assert swap_label(task, label) == swapped


@pytest.mark.parametrize(("task", "label"), ALL_LABELS)
def test_label_preferred_round_trip(task: Task, label: str):
    assert preferred_to_label(task, label_to_preferred(task, label)) == label


@pytest.mark.parametrize(
    ("task", "label"),
    [(IG, "Image 1 is better."), (IG, "image 1 is better"), (IG, VID1), (IU, IMG_TIE), (VU, "")],
)
def test_label_to_preferred_rejects_non_contract_strings(task: Task, label: str):
    with pytest.raises(ValueError, match="expected exactly one of"):
        label_to_preferred(task, label)


@pytest.mark.parametrize(("task", "preferred"), [(IU, 0), (VU, 0), (IG, 3), (IG, -1)])
def test_preferred_to_label_rejects(task: Task, preferred: int):
    with pytest.raises(ValueError):
        preferred_to_label(task, preferred)


def test_task_must_be_a_task():
    with pytest.raises(TypeError, match="parse_task"):
        parse_pairwise(IMG1, "image_generation")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "make", [lambda: PairVerdict(None), lambda: PairVerdict(1, "x"), lambda: PairVerdict(3)]
)
def test_verdict_invariants(make):
    with pytest.raises(ValueError):
        make()


def test_point_score_invariants():
    with pytest.raises(ValueError):
        PointScore(None)
    with pytest.raises(ValueError):
        PointScore(3.0, "x")


# --------------------------------------------------------------------------- targets


@pytest.mark.parametrize(("task", "label"), ALL_LABELS)
def test_pairwise_target_round_trips(task: Task, label: str):
    text = target_text(task, Mode.PAIRWISE, label, None)
    assert text == label
    assert parse_pairwise(text, task) == PairVerdict(label_to_preferred(task, label))


@pytest.mark.parametrize(("task", "label"), [(t, s) for t in TASKS for s in PAIR_ANSWERS[t]])
def test_cot_target_round_trips(task: Task, label: str):
    text = target_text(task, Mode.PAIRWISE, label, None, cot=cot(label), use_cot=True)
    assert parse_pairwise(text, task, cot=True).preferred == label_to_preferred(task, label)


@pytest.mark.parametrize(
    ("score", "text"),
    [(4, "Final Score: 4"), (4.0, "Final Score: 4"), (2.5, "Final Score: 2.5"), (1.25, None)],
)
def test_pointwise_target_format(score: float, text: str | None):
    out = target_text(IG, Mode.POINTWISE, None, score)
    if text is not None:
        assert out == text
    assert parse_pointwise(out, IG).score == score


@pytest.mark.parametrize("task", TASKS)
def test_pointwise_target_round_trips_at_scale_ends(task: Task):
    for score in SCORE_RANGE[task]:
        assert parse_pointwise(target_text(task, Mode.POINTWISE, None, score), task).score == score


@pytest.mark.parametrize(("score", "text"), [(0.00001, "0.00001"), (100.0, "100"), (33.5, "33.5")])
def test_format_score_has_no_exponent(score: float, text: str):
    assert format_score(score) == text


@pytest.mark.parametrize(
    ("task", "mode", "label", "score", "kwargs", "match"),
    [
        (IG, Mode.PAIRWISE, "Image 1 is better.", None, {}, "expected exactly one of"),
        (IG, Mode.PAIRWISE, VID1, None, {}, "expected exactly one of"),
        (IU, Mode.PAIRWISE, IMG_TIE, None, {}, "expected exactly one of"),
        (IG, Mode.PAIRWISE, None, None, {}, "needs a label"),
        (IG, Mode.POINTWISE, None, None, {}, "needs a score"),
        (IG, Mode.POINTWISE, None, 6.0, {}, "outside"),
        (IG, Mode.POINTWISE, None, math.nan, {}, "outside"),
        (IU, Mode.POINTWISE, None, -0.5, {}, "outside"),
        (IG, Mode.PAIRWISE, IMG1, None, {"use_cot": True}, "needs the cot"),
        (IG, Mode.PAIRWISE, IMG1, None, {"use_cot": True, "cot": IMG1}, "malformed"),
        (IG, Mode.PAIRWISE, IMG1, None, {"use_cot": True, "cot": cot(IMG2)}, "disagrees"),
        (IG, Mode.PAIRWISE, IMG_TIE, None, {"use_cot": True, "cot": cot(IMG_TIE)}, "no tie"),
        (IG, Mode.POINTWISE, None, 3.0, {"use_cot": True, "cot": cot(IMG1)}, "pairwise"),
    ],
)
def test_target_text_validates(task, mode, label, score, kwargs, match):
    with pytest.raises(ValueError, match=match):
        target_text(task, mode, label, score, **kwargs)


# --------------------------------------------------------------------------- prompts


def _parts(messages: list[dict]) -> list[dict]:
    assert len(messages) == 1 and messages[0]["role"] == "user"
    return messages[0]["content"]


@pytest.mark.parametrize(("task", "mode", "use_cot"), PROMPT_KINDS)
def test_build_messages_image_count(task: Task, mode: Mode, use_cot: bool):
    n_items, responses = shape(task, mode)
    frames = 8 if task.is_video else 1
    parts = _parts(build_messages(task, mode, "a red circle", responses, n_items, frames, use_cot))
    assert sum(p["type"] == "image" for p in parts) == n_items * frames
    text = parts[-1]["text"]
    assert "a red circle" in text
    assert all(r in text for r in responses)


@pytest.mark.parametrize(("task", "mode", "use_cot"), PROMPT_KINDS)
def test_prompt_names_the_answer_format(task: Task, mode: Mode, use_cot: bool):
    n_items, responses = shape(task, mode)
    frames = 8 if task.is_video else 1
    text = _parts(build_messages(task, mode, "q", responses, n_items, frames, use_cot))[-1]["text"]
    if mode == Mode.POINTWISE:
        lo, hi = SCORE_RANGE[task]
        assert "Final Score: <number>" in text and f"from {lo:g} to {hi:g}" in text
        return
    assert all(f'"{s}"' in text for s in PAIR_ANSWERS[task])
    tie = TIE_ANSWERS.get(task)
    assert (tie is not None and f'"{tie}"' in text) == (task.is_generation and not use_cot)
    if use_cot:
        assert "<think></think>" in text and "<answer></answer>" in text
        dims = ("aesthetics", "authenticity") if task.is_generation else ("correctness", "clarity")
        assert all(d in text for d in dims)


def test_prompts_differ_per_task_and_mode():
    texts = set()
    for task, mode, use_cot in PROMPT_KINDS:
        n_items, responses = shape(task, mode)
        frames = 8 if task.is_video else 1
        text = _parts(build_messages(task, mode, "q", responses, n_items, frames, use_cot))[-1]
        assert len(text["text"].split()) < 60  # a tiny model trains on these: keep them short
        texts.add(text["text"])
    assert len(texts) == len(PROMPT_KINDS) == 12


@pytest.mark.parametrize(("task", "mode", "use_cot"), PROMPT_KINDS)
def test_direct_prompts_end_with_what_is_judged_cot_prompts_start_with_it(
    task: Task, mode: Mode, use_cot: bool
):
    # Direct: the candidates (or the caption) sit right before the verdict; the tiny judge
    # learns the comparison only in that layout (README "Direct judge layout").
    n_items, responses = shape(task, mode)
    frames = 8 if task.is_video else 1
    text = _parts(build_messages(task, mode, "a red circle", responses, n_items, frames, use_cot))
    text = text[-1]["text"]
    if task.is_generation:
        judged = "Caption: a red circle"
    elif mode == Mode.PAIRWISE:
        judged = "Answer 1: yes\nAnswer 2: no"
    else:
        judged = "Answer: yes"
    if use_cot:
        assert judged in text and text.index(judged) < text.index("<think>")
    else:
        assert text.endswith(judged)
        assert text.count(judged) == 1


@pytest.mark.parametrize(("task", "mode", "use_cot"), PROMPT_KINDS)
def test_a_hint_goes_before_the_instruction_and_changes_nothing_else(
    task: Task, mode: Mode, use_cot: bool
):
    n_items, responses = shape(task, mode)
    frames = 8 if task.is_video else 1
    plain = build_messages(task, mode, "q", responses, n_items, frames, use_cot)
    hinted = build_messages(task, mode, "q", responses, n_items, frames, use_cot, hint=" X. ")
    assert _parts(hinted)[:-1] == _parts(plain)[:-1]
    assert _parts(hinted)[-1]["text"] == "X.\n" + _parts(plain)[-1]["text"]


@pytest.mark.parametrize("hint", ["", "   ", 3])
def test_an_empty_or_non_text_hint_is_an_error(hint):
    with pytest.raises(ValueError, match="hint must be a non-empty string"):
        build_messages(IU, Mode.POINTWISE, "q", ["a"], 1, hint=hint)


def test_video_pair_layout_is_video1_frames_then_video2_frames():
    parts = _parts(build_messages(VG, Mode.PAIRWISE, "q", [], n_items=2, frames_per_item=8))
    kinds = [p["text"] if p["type"] == "text" else "img" for p in parts[:-1]]
    assert kinds == ["Video 1:", *["img"] * 8, "Video 2:", *["img"] * 8]


@pytest.mark.parametrize(
    ("task", "mode", "responses", "n_items", "frames", "use_cot", "match"),
    [
        (IU, Mode.PAIRWISE, ["only one"], 1, 1, False, "takes 2 response"),
        (IU, Mode.PAIRWISE, ["a", "b", "c"], 1, 1, False, "takes 2 response"),
        (VU, Mode.POINTWISE, [], 1, 8, False, "takes 1 response"),
        (IG, Mode.PAIRWISE, ["a", "b"], 2, 1, False, "takes 0 response"),
        (IG, Mode.PAIRWISE, [], 1, 1, False, "takes 2 visual"),
        (IU, Mode.PAIRWISE, ["a", "b"], 2, 1, False, "takes 1 visual"),
        (VG, Mode.POINTWISE, [], 2, 8, False, "takes 1 visual"),
        (IG, Mode.POINTWISE, [], 1, 8, False, "exactly 1"),
        (VG, Mode.PAIRWISE, [], 2, 0, False, "at least 1"),
        (IG, Mode.POINTWISE, [], 1, 1, True, "pairwise"),
    ],
)
def test_build_messages_rejects_wrong_shapes(
    task, mode, responses, n_items, frames, use_cot, match
):
    with pytest.raises(ValueError, match=match):
        build_messages(task, mode, "q", responses, n_items, frames, use_cot)


def test_build_messages_rejects_a_single_string_as_responses():
    with pytest.raises(TypeError):
        build_messages(IU, Mode.POINTWISE, "q", "an answer", 1)
