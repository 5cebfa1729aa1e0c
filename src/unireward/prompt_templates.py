"""Prompt templates as versioned data: the project's file, or a user's, checked against the parser.

The instruction text of every judge prompt (what follows the visual items) comes from a YAML
file: `unireward/prompts/default.yaml` (the wording the shipped judges were trained on) or a
user's file with the same shape, e.g. the prompts a published checkpoint was trained on::

    version: my-checkpoint-v2
    templates:
      image_generation:
        pairwise: "Which image fits the caption better? Answer {choices}.\\nCaption: {caption}"
        pairwise_cot: ...
        pointwise: ...
      image_understanding: {pairwise: ..., pairwise_cot: ..., pointwise: ...}
      ...

    templates = load_templates("my_prompts.yaml")      # ValueError naming what does not fit
    contract.build_messages(task, mode, prompt, responses, n_items, templates=templates)

A file is refused (ValueError naming the file, the template key and what is missing) when it
would make the judge answer something the parser does not read: every task x {pairwise,
pairwise_cot, pointwise} must be there, only the fields below may appear, a pairwise template
must ask for the exact answer strings ({choices}, or each string of tasks.PAIR_ANSWERS written
out) and no other task's, a CoT one also for the <think>/<answer> tags and no tie, a pointwise
one for "Final Score:" on the task's scale (tasks.SCORE_RANGE).

Which file a stage uses (`resolve_templates`): the stage's `prompt_templates` setting when it
names one (an explicit choice wins, with a warning when the model was trained on another), else
the model's own `prompts.yaml` (a training stage saves the file it trained with next to the
weights), else the project's default. `log_templates` puts the file and its version/sha256 in
the stage's MLflow run. The item layout (markers, image placeholders, items first) stays in
`contract.build_messages`.
"""

from __future__ import annotations

import functools
import hashlib
import re
import string
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

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
    Mode,
    Task,
)

PROMPTS_FILE = "prompts.yaml"  # next to a trained judge's weights, like unireward.json
DEFAULT_SOURCE = "unireward/prompts/default.yaml"
KINDS = ("pairwise", "pairwise_cot", "pointwise")


def template_kind(mode: Mode, cot: bool) -> str:
    """The template for a (mode, cot): "pairwise", "pairwise_cot" or "pointwise"."""
    if cot and mode != Mode.PAIRWISE:
        raise ValueError(f"CoT prompts exist only for pairwise mode, not {mode.value}")
    return "pairwise_cot" if cot else mode.value


def fields_for(task: Task, kind: str) -> tuple[str, ...]:
    """The placeholders a template may use, what is judged first (those are all required).

    >>> fields_for(Task.IMAGE_UNDERSTANDING, "pointwise")
    ('question', 'answer', 'lo', 'hi')
    """
    judged = ("caption",) if task.is_generation else ("question",)
    if kind == "pointwise":
        return (*judged, *(() if task.is_generation else ("answer",)), "lo", "hi")
    return (*judged, *(() if task.is_generation else ("answer_1", "answer_2")), "choices")


@dataclass(frozen=True)
class PromptTemplates:
    """A checked template file. `templates` maps "task.kind" (e.g. "image_generation.pairwise")
    to its str.format template; `text` is the file exactly as read (what is saved next to a
    trained model and logged), `sha256` its digest, `source` where it was read from."""

    version: str
    sha256: str
    source: str
    text: str = field(repr=False)
    templates: Mapping[str, str] = field(repr=False)

    def template(self, task: Task, mode: Mode, cot: bool = False) -> str:
        return self.templates[f"{task.value}.{template_kind(mode, cot)}"]

    def render(self, task: Task, mode: Mode, cot: bool, values: Mapping[str, str]) -> str:
        """The instruction text: the (task, mode, cot) template with `values` filled in
        (extra values are ignored; the check at load made sure none is missing)."""
        return self.template(task, mode, cot).format_map(values)


# --------------------------------------------------------------------------- checks


def _placeholders(template: str) -> tuple[set[str], str]:
    """(field names, the literal text) of a str.format template; ValueError if it does not
    parse or a field carries a conversion or format spec."""
    names, literal = set(), []
    for text, name, spec, conversion in string.Formatter().parse(template):
        literal.append(text)
        if name is None:
            continue
        if spec or conversion:
            raise ValueError(f"{{{name}}} has a format spec or conversion; write the bare field")
        names.add(name)
    return names, "".join(literal)


def _number(value: float) -> re.Pattern[str]:
    """`value` as a number on its own: "5" in "1 to 5." but not in "15" or "5.5"."""
    return re.compile(rf"(?<![\d.]){re.escape(f'{value:g}')}(?!\d|\.\d)")


def _asks_for(labels: tuple[str, ...], names: set[str], literal: str) -> str | None:
    """Why the template does not ask for `labels`, or None when it does."""
    if "choices" in names:
        return None
    missing = [s for s in labels if s not in literal]
    if not missing:
        return None
    quoted = ", ".join(repr(s) for s in missing)
    return f"does not ask for the answer strings the parser reads: write {{choices}} or {quoted}"


def check_template(task: Task, kind: str, template: str) -> list[str]:
    """What is wrong with one template (empty when it fits the contract's parser)."""
    if not isinstance(template, str) or not template.strip():
        return ["is not a non-empty string"]
    try:
        names, literal = _placeholders(template)
    except ValueError as err:
        return [f"does not parse as a str.format template: {err}"]
    allowed = fields_for(task, kind)
    problems = []
    unknown = sorted(names - set(allowed))
    if unknown:
        problems.append(
            f"has unknown placeholder(s) {', '.join('{' + n + '}' for n in unknown)}; "
            f"allowed here: {', '.join('{' + n + '}' for n in allowed)} "
            "(a literal brace is {{ or }})"
        )
    judged = [n for n in allowed if n not in ("choices", "lo", "hi")]
    absent = [n for n in judged if n not in names]
    if absent:
        problems.append(
            f"does not show what is judged: missing {', '.join('{' + n + '}' for n in absent)}"
        )
    lowered = literal.lower()
    if kind == "pointwise":
        if SCORE_PREFIX not in literal:
            problems.append(f'does not ask for "{SCORE_PREFIX} <number>" (the parser reads it)')
        lo, hi = SCORE_RANGE[task]
        if not {"lo", "hi"} <= names and not (
            _number(lo).search(literal) and _number(hi).search(literal)
        ):
            problems.append(
                f"names neither {{lo}} and {{hi}} nor the scale {lo:g}-{hi:g} the parser "
                "accepts (tasks.SCORE_RANGE)"
            )
        return problems
    cot = kind == "pairwise_cot"
    labels = PAIR_ANSWERS[task]
    valid = {*labels, *(() if cot else (TIE_ANSWERS.get(task, ""),))} - {""}
    why = _asks_for(labels, names, literal)
    if why:
        problems.append(why)
    others = {s for pair in PAIR_ANSWERS.values() for s in pair} | set(TIE_ANSWERS.values())
    foreign = sorted(s for s in others - valid if s.lower() in lowered)
    for s in foreign:
        why = "CoT has no tie" if s == TIE_ANSWERS.get(task) else "another task's answer"
        problems.append(
            f"asks for {s!r}, which the {task.value} {'CoT ' if cot else ''}parser refuses ({why})"
        )
    if cot:
        tags = [t for t in (THINK_OPEN, THINK_CLOSE, ANSWER_OPEN, ANSWER_CLOSE) if t not in literal]
        if tags:
            problems.append(f"does not ask for the CoT tags {' '.join(tags)}")
    return problems


def parse_templates(text: str, source: str) -> PromptTemplates:
    """Check and build templates from a file's text; ValueError listing every problem."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ValueError(f"prompt templates {source}: not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ValueError(f"prompt templates {source}: expected a mapping with version, templates")
    problems: list[str] = []
    unknown = sorted(set(data) - {"version", "templates"})
    if unknown:
        problems.append(f"unknown top-level key(s) {unknown}; valid: version, templates")
    version = data.get("version")
    if isinstance(version, bool) or not isinstance(version, str | int) or not str(version):
        problems.append("`version` must be a non-empty string (it is logged with every run)")
    given = data.get("templates")
    if not isinstance(given, dict):
        problems.append("`templates` must map each task to its pairwise/pairwise_cot/pointwise")
        given = {}
    names = {t.value for t in TASKS}
    for task in sorted(set(given) - names):
        problems.append(f"unknown task {task!r}; expected {', '.join(sorted(names))}")
    templates: dict[str, str] = {}
    for task in TASKS:
        section = given.get(task.value)
        if not isinstance(section, dict):
            problems.append(f"{task.value}: missing (needs {', '.join(KINDS)})")
            continue
        for kind in sorted(set(section) - set(KINDS)):
            problems.append(f"{task.value}.{kind}: unknown template; expected {', '.join(KINDS)}")
        for kind in KINDS:
            if kind not in section:
                problems.append(f"{task.value}.{kind}: missing")
                continue
            found = check_template(task, kind, section[kind])
            problems += [f"{task.value}.{kind}: {p}" for p in found]
            templates[f"{task.value}.{kind}"] = section[kind]
    if problems:
        listed = "\n  - ".join(problems)
        raise ValueError(
            f"prompt templates {source} do not fit the judge contract:\n  - {listed}\n"
            f"(start from {DEFAULT_SOURCE}; its header lists the fields)"
        )
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return PromptTemplates(str(version), digest, source, text, MappingProxyType(templates))


# --------------------------------------------------------------------------- files


@functools.cache
def default_templates() -> PromptTemplates:
    """The project's templates (the wording the shipped judges were trained on)."""
    text = resources.files("unireward").joinpath("prompts/default.yaml").read_text("utf-8")
    return parse_templates(text, DEFAULT_SOURCE)


def load_templates(path: str | Path | None = None) -> PromptTemplates:
    """Templates from a file; None or "" = the project's default."""
    if path is None or str(path) == "":
        return default_templates()
    path = Path(path)
    if path.is_dir():
        path = path / PROMPTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"prompt templates file {path} not found")
    return parse_templates(path.read_text("utf-8"), str(path))


def resolve_templates(configured: str, model_dir: Path | None = None) -> PromptTemplates:
    """The templates a stage uses: `configured` (a path) when set, else `model_dir`'s own
    prompts.yaml when it has one, else the default. An explicit file wins over the model's
    own (evaluating a checkpoint with other prompts is a legitimate experiment), with a warning
    when they differ."""
    own = Path(model_dir) / PROMPTS_FILE if model_dir is not None else None
    if configured:
        chosen = load_templates(configured)
        if own is not None and own.is_file():
            theirs = load_templates(own)
            if theirs.sha256 != chosen.sha256:
                warnings.warn(
                    f"prompt_templates {configured} (version {chosen.version}) is not the "
                    f"{own} the model was trained with (version {theirs.version}); using "
                    f"{configured}",
                    stacklevel=2,
                )
        return chosen
    if own is not None and own.is_file():
        return load_templates(own)
    return default_templates()


def save_templates(templates: PromptTemplates, model_dir: Path) -> Path:
    """Write the file exactly as read next to a trained model (`model_dir/prompts.yaml`)."""
    path = Path(model_dir) / PROMPTS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(templates.text, encoding="utf-8")
    return path


def describe(templates: PromptTemplates) -> dict[str, Any]:
    """{version, sha256, source}: what unireward.json and MLflow params record."""
    return {"version": templates.version, "sha256": templates.sha256, "source": templates.source}


def log_templates(tracker, templates: PromptTemplates) -> None:
    """Into the active run: params `prompt_templates.version/sha256/source`, the file itself
    as the artifact prompts.yaml."""
    tracker.log_params({"prompt_templates": describe(templates)})
    tracker.log_text(templates.text, PROMPTS_FILE)
