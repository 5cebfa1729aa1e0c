"""Property tests of the judge's answer parsers (issue 21, item 7): hypothesis feeds them any
text, answers hidden in noise, and conflicting answers.

The parsers' promises (contract.parse_pairwise / parse_pointwise docstrings):
- any str gives a verdict or "unparseable" with a reason, never an exception;
- a task's answer string embedded in noise (any case, any whitespace between its words, not glued
  to letters or digits) is found, and nothing else is;
- two different verdicts in one text are never read as one;
- CoT mode reads only the <answer> content of a well-formed <think>..</think><answer>..</answer>;
- the last "Final Score: <number>" on the task's scale is the score; off the scale, unparseable.

The examples are derandomized (the `ci` profile, tests/conftest.py) so a CI run is reproducible;
`HYPOTHESIS_PROFILE=explore` searches ~25x more, randomly.
"""

from __future__ import annotations

import math

from hypothesis import assume, given
from hypothesis import strategies as st

from unireward.contract import (
    answers_in,
    format_score,
    parse_pairwise,
    parse_pointwise,
    split_cot,
    swap_label,
)
from unireward.tasks import (
    ANSWER_CLOSE,
    ANSWER_OPEN,
    PAIR_ANSWERS,
    SCORE_PREFIX,
    SCORE_RANGE,
    TASKS,
    THINK_CLOSE,
    THINK_OPEN,
    TIE_ANSWERS,
    Task,
)

TAGS = (THINK_OPEN, THINK_CLOSE, ANSWER_OPEN, ANSWER_CLOSE)
tasks = st.sampled_from(TASKS)
# Any text, including the parsers' own vocabulary, so the search also builds near-misses.
vocabulary = st.sampled_from(
    [*TAGS, SCORE_PREFIX, "Image", "Video", "Answer", "1", "2", "is", "better", "Both", "equally"]
)
any_text = st.one_of(
    st.text(max_size=300),
    st.lists(st.one_of(vocabulary, st.text(max_size=8)), max_size=30).map(" ".join),
)


def _no_contract_words(text: str) -> bool:
    lowered = text.lower()
    return not answers_in(text) and not any(t in text for t in TAGS) and "score" not in lowered


# Noise: any text with no answer string, tag or score line in it (unicode, control characters).
noise = st.text(max_size=80).filter(_no_contract_words)
# What may stand between noise and an answer string: the parser wants it not glued to
# letters or digits.
separator = st.text(alphabet=" \n\t.,;:!?()[]\"'-*", min_size=1, max_size=4)


@st.composite
def spelled(draw: st.DrawFn, answer: str) -> str:
    """`answer` in any case with any whitespace run between its words (the parser allows both)."""
    words = [
        "".join(c.upper() if draw(st.booleans()) else c.lower() for c in word)
        for word in answer.split()
    ]
    gaps = draw(st.lists(st.sampled_from([" ", "  ", "\n", "\t", " \n "]), min_size=len(words)))
    return "".join(w + g for w, g in zip(words, gaps, strict=False)).rstrip()


@st.composite
def embedded(draw: st.DrawFn, answer: str) -> str:
    return draw(noise) + draw(separator) + draw(spelled(answer)) + draw(separator) + draw(noise)


def _direct_labels(task: Task) -> tuple[str, ...]:
    return (*PAIR_ANSWERS[task], *([TIE_ANSWERS[task]] if task in TIE_ANSWERS else []))


def _expected(task: Task, label: str) -> int:
    return 0 if label == TIE_ANSWERS.get(task) else PAIR_ANSWERS[task].index(label) + 1


@given(text=any_text, task=tasks, cot=st.booleans())
def test_any_text_gives_a_verdict_or_a_reason_and_never_raises(text, task, cot):
    verdict = parse_pairwise(text, task, cot=cot)
    assert verdict.ok != (verdict.reason is not None)
    assert verdict.preferred in (None, 0, 1, 2)
    if verdict.reason is not None:
        assert verdict.reason.strip() and len(verdict.reason) < 400  # quotes are cut short
    if cot:
        assert verdict.preferred != 0  # no tie in CoT
        assert verdict.ok <= (split_cot(text) is not None)
    score = parse_pointwise(text, task)
    assert score.ok != (score.reason is not None)
    if score.ok:
        lo, hi = SCORE_RANGE[task]
        assert math.isfinite(score.score) and lo <= score.score <= hi


@given(data=st.data(), task=tasks)
def test_an_answer_in_noise_is_found(data, task):
    label = data.draw(st.sampled_from(_direct_labels(task)))
    text = data.draw(embedded(label))
    verdict = parse_pairwise(text, task)
    assert verdict.preferred == _expected(task, label), (text, verdict)


@given(data=st.data(), task=tasks)
def test_the_same_answer_twice_is_one_verdict(data, task):
    label = data.draw(st.sampled_from(_direct_labels(task)))
    text = data.draw(embedded(label)) + " " + data.draw(embedded(label))
    assert parse_pairwise(text, task).preferred == _expected(task, label)


@given(data=st.data(), task=tasks)
def test_two_different_verdicts_are_never_one(data, task):
    first, second = data.draw(
        st.lists(st.sampled_from(_direct_labels(task)), min_size=2, max_size=2, unique=True)
    )
    text = data.draw(embedded(first)) + " " + data.draw(embedded(second))
    verdict = parse_pairwise(text, task)
    assert not verdict.ok and "conflicting" in verdict.reason, (text, verdict)


@given(data=st.data(), task=tasks)
def test_another_tasks_answer_is_never_this_tasks_verdict(data, task):
    foreign = [s for t in TASKS for s in _direct_labels(t) if s not in _direct_labels(task)]
    label = data.draw(st.sampled_from(foreign))
    verdict = parse_pairwise(data.draw(embedded(label)), task)
    assert not verdict.ok and "not a" in verdict.reason


@given(data=st.data(), task=tasks)
def test_cot_reads_only_the_answer_tag(data, task):
    label = data.draw(st.sampled_from(PAIR_ANSWERS[task]))
    other = swap_label(task, label)
    # The think part may say anything, even the other verdict; only <answer> decides.
    think = data.draw(noise) + data.draw(st.sampled_from(["", f" {other} "]))
    gap = st.text(alphabet=" \n\t", max_size=3)
    period = data.draw(st.sampled_from(["", "."]))
    text = (
        f"{data.draw(gap)}{THINK_OPEN}{think}{THINK_CLOSE}{data.draw(gap)}"
        f"{ANSWER_OPEN}{data.draw(gap)}{label}{period}{data.draw(gap)}{ANSWER_CLOSE}{data.draw(gap)}"
    )
    assert parse_pairwise(text, task, cot=True).preferred == _expected(task, label)
    # The same text with anything but whitespace outside the tags is not well-formed.
    outside = data.draw(st.text(min_size=1, max_size=20).filter(lambda s: s.strip()))
    assume(not any(t in outside for t in TAGS))
    assert not parse_pairwise(outside + text, task, cot=True).ok
    assert not parse_pairwise(text + outside, task, cot=True).ok


@given(data=st.data(), task=st.sampled_from(tuple(TIE_ANSWERS)))
def test_cot_never_takes_a_tie(data, task):
    think = data.draw(noise)
    text = f"{THINK_OPEN}{think}{THINK_CLOSE}{ANSWER_OPEN}{TIE_ANSWERS[task]}{ANSWER_CLOSE}"
    verdict = parse_pairwise(text, task, cot=True)
    assert not verdict.ok and "tie" in verdict.reason


@given(data=st.data(), task=tasks)
def test_the_last_score_on_the_scale_is_read(data, task):
    lo, hi = SCORE_RANGE[task]
    on_scale = st.floats(min_value=lo, max_value=hi, allow_nan=False).map(lambda x: round(x, 2))
    earlier, last = data.draw(on_scale), data.draw(on_scale)
    prefix, period = data.draw(spelled(SCORE_PREFIX)), data.draw(st.sampled_from(["", "."]))
    text = (
        f"{data.draw(noise)}\n{SCORE_PREFIX} {format_score(earlier)}\n{data.draw(noise)}"
        f"\n{prefix} {format_score(last)}{period}"
    )
    score = parse_pointwise(text, task)
    assert score.ok and math.isclose(score.score, float(format_score(last))), (text, score)


@given(data=st.data(), task=tasks)
def test_a_score_off_the_scale_is_never_clipped(data, task):
    lo, hi = SCORE_RANGE[task]
    off = data.draw(
        st.one_of(
            st.floats(min_value=-1e9, max_value=lo - 0.01),
            st.floats(min_value=hi + 0.01, max_value=1e9),
        )
    )
    text = f"{data.draw(noise)} {SCORE_PREFIX} {format_score(off)}"
    score = parse_pointwise(text, task)
    assert not score.ok and "outside" in score.reason, (text, score)
