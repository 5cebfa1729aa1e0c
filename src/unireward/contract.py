"""The judge contract: prompt builders, SFT targets and strict answer parsers.

The prompts' wording is data (`unireward.prompt_templates`: the project's
`prompts/default.yaml` or a user's file, checked against these parsers); the item layout and
the values the templates are filled with are here.

Everything that turns a record into what the judge reads, and what the judge writes back into a
verdict, lives here (shared/DESIGN.md, "The judge contract"). The answer strings themselves are
named in `unireward.tasks`; this module never retypes them.

Parsers are strict on purpose: a judgement that is missing, ambiguous or in another task's
vocabulary is reported as unparseable with a reason, never mapped to a positional default (the
published pair-construction code silently made item 1 "chosen" in that case).

    >>> parse_pairwise("I think Image 2 is better.", Task.IMAGE_GENERATION)
    PairVerdict(preferred=2, reason=None)
    >>> parse_pointwise("... Final Score: 4/5", Task.IMAGE_GENERATION)
    PointScore(score=4.0, reason=None)

Pure functions, no I/O (but reading the default template file once); tests:
tests/test_contract.py, tests/test_prompts.py.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from unireward.prompt_templates import PromptTemplates, default_templates
from unireward.tasks import (
    ANSWER_CLOSE,
    ANSWER_OPEN,
    PAIR_ANSWERS,
    SCORE_PREFIX,
    SCORE_RANGE,
    THINK_CLOSE,
    THINK_OPEN,
    TIE_ANSWERS,
    Mode,
    Task,
)

_QUOTE_LIMIT = 60  # reasons quote model text; keep them short even for very long garbage


@dataclass(frozen=True)
class PairVerdict:
    """A pairwise judgement: 1 = first item better, 2 = second, 0 = tie, None = unparseable."""

    preferred: int | None
    reason: str | None = None  # set iff preferred is None: why it could not be parsed

    def __post_init__(self) -> None:
        if self.preferred not in (None, 0, 1, 2):
            raise ValueError(f"preferred must be 0, 1, 2 or None, got {self.preferred!r}")
        if (self.preferred is None) != (self.reason is not None):
            raise ValueError("reason must be set exactly when preferred is None")

    @property
    def ok(self) -> bool:
        return self.preferred is not None


@dataclass(frozen=True)
class PointScore:
    """A pointwise judgement on the task's native scale (tasks.SCORE_RANGE); None = unparseable."""

    score: float | None
    reason: str | None = None

    def __post_init__(self) -> None:
        if (self.score is None) != (self.reason is not None):
            raise ValueError("reason must be set exactly when score is None")

    @property
    def ok(self) -> bool:
        return self.score is not None


# --------------------------------------------------------------------------- labels


def _check_task(task: Task) -> None:
    if not isinstance(task, Task):
        raise TypeError(f"task must be a Task, got {task!r}; use tasks.parse_task(name)")


def _check_mode(mode: Mode) -> None:
    if not isinstance(mode, Mode):
        raise TypeError(f"mode must be a Mode, got {mode!r}; use tasks.parse_mode(name)")


def _valid_labels(task: Task, allow_tie: bool) -> tuple[str, ...]:
    labels = PAIR_ANSWERS[task]
    if allow_tie and task in TIE_ANSWERS:
        labels = (*labels, TIE_ANSWERS[task])
    return labels


def label_to_preferred(task: Task, label: str) -> int:
    """Exact contract string -> 1 (first better), 2 (second better) or 0 (tie)."""
    _check_task(task)
    first, second = PAIR_ANSWERS[task]
    if label == first:
        return 1
    if label == second:
        return 2
    if label == TIE_ANSWERS.get(task):
        return 0
    valid = ", ".join(repr(s) for s in _valid_labels(task, allow_tie=True))
    raise ValueError(f"{label!r} is not a {task.value} answer; expected exactly one of: {valid}")


def preferred_to_label(task: Task, preferred: int) -> str:
    """1/2/0 -> the exact contract string; 0 only for generation tasks (they have a tie)."""
    _check_task(task)
    if preferred in (1, 2):
        return PAIR_ANSWERS[task][preferred - 1]
    if preferred == 0 and task in TIE_ANSWERS:
        return TIE_ANSWERS[task]
    allowed = "1, 2 or 0" if task in TIE_ANSWERS else "1 or 2 (no tie for understanding tasks)"
    raise ValueError(f"preferred must be {allowed} for {task.value}, got {preferred!r}")


def swap_label(task: Task, label: str) -> str:
    """The label after swapping the two items: 1 <-> 2, a tie stays a tie."""
    preferred = label_to_preferred(task, label)
    return preferred_to_label(task, {1: 2, 2: 1, 0: 0}[preferred])


# --------------------------------------------------------------------------- prompts


def _quoted_choices(labels: Sequence[str]) -> str:
    return ", ".join(f'"{s}"' for s in labels)


def _expected_shape(task: Task, mode: Mode) -> tuple[int, int]:
    """(visual items, responses) for a (task, mode); see data/schema.py."""
    n_items = 2 if task.is_generation and mode == Mode.PAIRWISE else 1
    if task.is_generation:
        return n_items, 0
    return n_items, 2 if mode == Mode.PAIRWISE else 1


def template_values(
    task: Task, mode: Mode, prompt: str, responses: Sequence[str], cot: bool
) -> dict[str, str]:
    """The values a template's fields take (prompt_templates.fields_for names them per key):
    {caption} or {question}, the answers, {choices} = the exact answer strings the parser
    accepts (no tie in CoT), {lo}/{hi} = the task's scale (tasks.SCORE_RANGE).

    >>> template_values(Task.IMAGE_GENERATION, Mode.POINTWISE, "a red circle", [], False)
    {'caption': 'a red circle', 'lo': '1', 'hi': '5'}
    """
    values = {"caption": prompt} if task.is_generation else {"question": prompt}
    if mode == Mode.POINTWISE:
        lo, hi = SCORE_RANGE[task]
        if not task.is_generation:
            values["answer"] = responses[0]
        return values | {"lo": f"{lo:g}", "hi": f"{hi:g}"}
    if not task.is_generation:
        values |= {"answer_1": responses[0], "answer_2": responses[1]}
    values["choices"] = _quoted_choices(_valid_labels(task, allow_tie=not cot))
    return values


def build_messages(
    task: Task,
    mode: Mode,
    prompt: str,
    responses: Sequence[str],
    n_items: int,
    frames_per_item: int = 1,
    cot: bool = False,
    hint: str | None = None,
    templates: PromptTemplates | None = None,
) -> list[dict]:
    """HF chat messages (one user turn) for the judge, in transformers' multimodal format.

    The content is, in order: for each visual item a text marker ("Image 1:", "Video 2:", or
    "Image:" / "Video:" for a single item) followed by `frames_per_item` image placeholders,
    then the instruction text: the (task, mode, cot) template of `templates` (a checked file,
    `prompt_templates.load_templates`; None = the project's default, whose direct prompts end
    with what is judged and whose CoT prompts state it first) filled with `template_values`.
    A pair of videos is all frames of video 1, then all of video 2.

    `hint` is training-only context put before the instruction: unified_sft's caption
    curriculum writes what each item shows there and anneals it away. Inference never sets it.

    Example (image generation, pairwise, direct):
        [{"role": "user", "content": [
            {"type": "text", "text": "Image 1:"}, {"type": "image"},
            {"type": "text", "text": "Image 2:"}, {"type": "image"},
            {"type": "text", "text": "Which image ... equally good\".\\nCaption: a red circle"}]}]

    Raises ValueError when the number of items, frames or responses does not fit the
    (task, mode), or when CoT is asked for pointwise scoring (CoT is pairwise only).
    """
    _check_task(task)
    _check_mode(mode)
    if isinstance(responses, str):
        raise TypeError("responses must be a sequence of strings, not one string")
    want_items, want_responses = _expected_shape(task, mode)
    where = f"{task.value} {mode.value}"
    if n_items != want_items:
        raise ValueError(f"{where} takes {want_items} visual item(s), got n_items={n_items}")
    if len(responses) != want_responses:
        raise ValueError(
            f"{where} takes {want_responses} response(s), got {len(responses)}"
            + (" (generation tasks judge the visual items, not text)" if task.is_generation else "")
        )
    if frames_per_item < 1 or (not task.is_video and frames_per_item != 1):
        need = "at least 1" if task.is_video else "exactly 1 (an image is one frame)"
        raise ValueError(f"{where} takes {need} frame(s) per item, got {frames_per_item}")
    if cot and mode != Mode.PAIRWISE:
        raise ValueError(f"CoT prompts exist only for pairwise mode, not {where}")
    if hint is not None and (not isinstance(hint, str) or not hint.strip()):
        raise ValueError(f"hint must be a non-empty string or None, got {hint!r}")

    noun = "Video" if task.is_video else "Image"
    # Items first, then the instruction: the layout the base model learned to see in
    # (pretrain_base asks its questions after the images). Measured: the shipped base answers
    # colour/shape/position questions 0.78 exact with the question after the images and 0.00
    # with the same question before them, and a judge trained text-first collapsed to a
    # constant answer. Change the layout only together with the perception pretraining.
    content: list[dict] = []
    for i in range(n_items):
        marker = f"{noun} {i + 1}:" if n_items > 1 else f"{noun}:"
        content.append({"type": "text", "text": marker})
        content.extend({"type": "image"} for _ in range(frames_per_item))
    templates = default_templates() if templates is None else templates
    text = templates.render(task, mode, cot, template_values(task, mode, prompt, responses, cot))
    if hint is not None:
        text = f"{hint.strip()}\n{text}"
    content.append({"type": "text", "text": text})
    return [{"role": "user", "content": content}]


# --------------------------------------------------------------------------- SFT targets


def format_score(score: float) -> str:
    """A score as the judge writes it: 4 not 4.0, 2.5 stays 2.5, never exponent notation."""
    if float(score).is_integer():
        return str(int(score))
    return format(Decimal(repr(float(score))), "f")


def target_text(
    task: Task,
    mode: Mode,
    label: str | None,
    score: float | None,
    cot: str | None = None,
    use_cot: bool = False,
) -> str:
    """The assistant answer used as SFT target.

    pairwise -> the label string exactly; pointwise -> "Final Score: <n>"; use_cot -> the CoT
    text, which must be well formed and whose <answer> must be the label (no tie).
    """
    _check_task(task)
    _check_mode(mode)
    if use_cot:
        return _cot_target(task, mode, label, cot)
    if mode == Mode.PAIRWISE:
        if label is None:
            raise ValueError(f"{task.value} pairwise target needs a label")
        label_to_preferred(task, label)  # validates, naming the valid strings
        return label
    if score is None:
        raise ValueError(f"{task.value} pointwise target needs a score")
    lo, hi = SCORE_RANGE[task]
    if not (math.isfinite(score) and lo <= score <= hi):
        raise ValueError(f"score {score} outside the {task.value} scale [{lo:g}, {hi:g}]")
    return f"{SCORE_PREFIX} {format_score(score)}"


def _cot_target(task: Task, mode: Mode, label: str | None, cot: str | None) -> str:
    if mode != Mode.PAIRWISE:
        raise ValueError(f"CoT targets exist only for pairwise mode, not {mode.value}")
    if cot is None:
        raise ValueError("use_cot=True needs the cot text")
    parts, why = _split_cot(cot)
    if parts is None:
        raise ValueError(f"cot target is malformed: {why}")
    answer = parts[1]
    if answer not in PAIR_ANSWERS[task]:
        valid = _quoted_choices(PAIR_ANSWERS[task])
        raise ValueError(f"cot <answer> {answer!r} is not one of {valid} (no tie in CoT)")
    if label is not None and answer != label:
        raise ValueError(f"cot <answer> {answer!r} disagrees with the label {label!r}")
    return cot


# --------------------------------------------------------------------------- parsers


def _quote(text: str) -> str:
    return repr(text if len(text) <= _QUOTE_LIMIT else text[:_QUOTE_LIMIT] + "...")


def _answer_pattern(answer: str) -> re.Pattern[str]:
    # Case-insensitive, any run of whitespace between words, not glued to letters/digits
    # (so "Image 1 is better" does not hide inside "Image 12 is better" or "...is betterness").
    words = r"\s+".join(re.escape(w) for w in answer.split())
    return re.compile(rf"(?<![A-Za-z0-9]){words}(?![A-Za-z0-9])", re.IGNORECASE)


_ALL_ANSWERS: tuple[str, ...] = tuple(
    dict.fromkeys([*(s for pair in PAIR_ANSWERS.values() for s in pair), *TIE_ANSWERS.values()])
)
_PATTERNS: dict[str, re.Pattern[str]] = {s: _answer_pattern(s) for s in _ALL_ANSWERS}


def _foreign_reason(task: Task, answers: Sequence[str]) -> str:
    quoted = ", ".join(repr(s) for s in answers)
    if any(s in TIE_ANSWERS.values() for s in answers) and task not in TIE_ANSWERS:
        return f"{quoted} is not a {task.value} answer (ties exist only for generation tasks)"
    return f"{quoted} is not a {task.value} answer (it belongs to another task)"


def _split_cot(text: str) -> tuple[tuple[str, str] | None, str | None]:
    """((think, answer), None) for well-formed CoT text, else (None, why)."""
    for tag in (THINK_OPEN, THINK_CLOSE, ANSWER_OPEN, ANSWER_CLOSE):
        count = text.count(tag)
        if count != 1:
            return None, f"{'missing' if count == 0 else 'duplicated'} {tag} tag"
    body = text.lstrip()
    if not body.startswith(THINK_OPEN):
        return None, f"text before {THINK_OPEN}"
    think_end = body.index(THINK_CLOSE)
    answer_start = body.index(ANSWER_OPEN)
    answer_end = body.index(ANSWER_CLOSE)
    if not think_end < answer_start < answer_end:
        return None, f"tags out of order; expected {THINK_OPEN}..{THINK_CLOSE}{ANSWER_OPEN}.."
    if body[think_end + len(THINK_CLOSE) : answer_start].strip():
        return None, f"text between {THINK_CLOSE} and {ANSWER_OPEN}"
    if body[answer_end + len(ANSWER_CLOSE) :].strip():
        return None, f"text after {ANSWER_CLOSE}"
    think = body[len(THINK_OPEN) : think_end].strip()
    answer = body[answer_start + len(ANSWER_OPEN) : answer_end].strip()
    return (think, answer), None


def split_cot(text: str) -> tuple[str, str] | None:
    """(think, answer), both stripped, if `text` is exactly <think>..</think><answer>..</answer>.

    Only whitespace is allowed before <think>, between </think> and <answer>, and after
    </answer>; each tag must occur exactly once (tags are case-sensitive). Else None.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    return _split_cot(text)[0]


def parse_pairwise(text: str, task: Task, cot: bool = False) -> PairVerdict:
    """Read a pairwise verdict; unparseable (with a reason) rather than a guess.

    Direct mode: the task's answer strings anywhere in the text (case-insensitive, trailing
    period and surrounding text tolerated); exactly one distinct verdict must occur, and no
    other task's answer string. A tie counts for generation tasks.
    CoT mode: only the <answer> content decides; stripped, with an optional trailing period, it
    must be exactly one of the task's two answer strings (no tie).
    """
    _check_task(task)
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    return _parse_cot(text, task) if cot else _parse_direct(text, task)


def answers_in(text: str) -> list[str]:
    """Every distinct answer string of the contract (any task, ties included) in `text`, as the
    direct parser finds them: case-insensitive, a trailing period and surrounding text allowed."""
    return [s for s in _ALL_ANSWERS if _PATTERNS[s].search(text)]


def _parse_direct(text: str, task: Task) -> PairVerdict:
    found = answers_in(text)
    valid = _valid_labels(task, allow_tie=True)
    foreign = [s for s in found if s not in valid]
    if foreign:
        return PairVerdict(None, _foreign_reason(task, foreign))
    if not found:
        return PairVerdict(
            None, f"no answer string found; expected one of {_quoted_choices(valid)}"
        )
    if len(found) > 1:  # found holds distinct strings, each a distinct verdict for this task
        return PairVerdict(None, f"conflicting answers: {_quoted_choices(found)}")
    return PairVerdict(label_to_preferred(task, found[0]))


def _parse_cot(text: str, task: Task) -> PairVerdict:
    parts, why = _split_cot(text)
    if parts is None:
        return PairVerdict(None, why)
    answer = parts[1]
    if answer.endswith("."):
        answer = answer[:-1].rstrip()
    if answer in PAIR_ANSWERS[task]:
        return PairVerdict(label_to_preferred(task, answer))
    if answer == TIE_ANSWERS.get(task):
        return PairVerdict(None, f"tie {answer!r} is not allowed in CoT mode")
    if answer in _ALL_ANSWERS:
        return PairVerdict(None, _foreign_reason(task, [answer]))
    valid = _quoted_choices(PAIR_ANSWERS[task])
    return PairVerdict(None, f"<answer> content {_quote(answer)} is not one of {valid}")


_SCORE_RE = re.compile(
    r"\s+".join(re.escape(w) for w in SCORE_PREFIX.rstrip(":").split()) + r"\s*:\s*(\S*)", re.I
)
_NUMBER_RE = re.compile(r"([+-]?(?:\d+(?:\.\d+)?|\.\d+))(?:/\d+(?:\.\d+)?)?")


def parse_pointwise(text: str, task: Task) -> PointScore:
    """Read the LAST "Final Score: <number>" (case-insensitive) as a float on the task's scale.

    "4", "2.5", "4/5" (the "/N" suffix is ignored) and a trailing period parse; a non-number,
    NaN/inf or a score outside tasks.SCORE_RANGE[task] is unparseable, never clipped.
    """
    _check_task(task)
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    matches = list(_SCORE_RE.finditer(text))
    if not matches:
        return PointScore(None, f'no "{SCORE_PREFIX} <number>" found')
    token = matches[-1].group(1).strip("*").rstrip(".,;")  # "**4**", "4." are fine
    number = _NUMBER_RE.fullmatch(token)
    if number is None:
        if token.lower().lstrip("+-") in ("nan", "inf", "infinity"):
            return PointScore(None, f"score {_quote(token)} is not finite")
        return PointScore(None, f"last {SCORE_PREFIX} is not followed by a number: {_quote(token)}")
    score = float(number.group(1))
    lo, hi = SCORE_RANGE[task]
    if not (math.isfinite(score) and lo <= score <= hi):  # finite check: "1" * 400 is inf
        return PointScore(
            None, f"score {_quote(token)} outside the {task.value} scale [{lo:g}, {hi:g}]"
        )
    return PointScore(score)
