"""Prompt templates as data (unireward.prompt_templates): the shipped file renders exactly the
prompts the shipped judges were trained on, a user's file changes the prompts, a file that does
not fit the answer parser is refused naming the file, the key and what is missing, and a
trained judge carries its templates to the stages that ask it.

    PYTHONPATH=src OMP_NUM_THREADS=1 .venv/bin/pytest tests/test_prompts.py -q
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import pytest
import yaml

from unireward import contract
from unireward.data.schema import read_records
from unireward.judge.examples import prompt_messages, to_example
from unireward.prompt_templates import (
    DEFAULT_SOURCE,
    KINDS,
    PROMPTS_FILE,
    check_template,
    default_templates,
    load_templates,
    log_templates,
    resolve_templates,
    save_templates,
)
from unireward.tasks import MODES, TASKS, Mode, Task
from unireward.tracking import NullTracker

# The messages of contract.build_messages as they were before the wording moved into
# prompts/default.yaml (generated from that code, 9af051f), for every (task, mode, cot), with and
# without a hint, and with a prompt full of braces and format characters.
GOLDEN = Path(__file__).parent / "data" / "golden_prompts.json"
DEFAULT_FILE = Path(contract.__file__).parent / "prompts" / "default.yaml"
IG, IU, VG = Task.IMAGE_GENERATION, Task.IMAGE_UNDERSTANDING, Task.VIDEO_GENERATION
GEN_ASK = "Which image matches the caption better and looks better?"


def _golden() -> list[dict]:
    return json.loads(GOLDEN.read_text())


def _user_file(tmp_path: Path, edit=None, version: str = "theirs-1", name="theirs.yaml") -> Path:
    """The default file as a mapping, changed by `edit(templates)`, written as a user's file."""
    data = yaml.safe_load(DEFAULT_FILE.read_text())
    data["version"] = version
    if edit is not None:
        edit(data["templates"])
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False, width=1000))
    return path


def _set(task: str, kind: str, text: str):
    def edit(templates: dict) -> None:
        templates[task][kind] = text

    return edit


def _instruction(templates=None, task=IG, mode=Mode.PAIRWISE, cot=False) -> str:
    n_items, responses = contract._expected_shape(task, mode)
    msgs = contract.build_messages(
        task, mode, "a red circle", ["a", "b"][:responses], n_items, templates=templates, cot=cot
    )
    return msgs[0]["content"][-1]["text"]


# --------------------------------------------------------------------------- the default file


def test_the_golden_set_covers_every_task_mode_and_cot() -> None:
    seen = {(c["task"], c["mode"], c["cot"]) for c in _golden()}
    want = {(t.value, m.value, c) for t in TASKS for m in MODES for c in (False, True)}
    assert seen == {k for k in want if not (k[1] == "pointwise" and k[2])}


@pytest.mark.parametrize(
    "case",
    _golden(),
    ids=[
        f"{c['task']}-{c['mode']}-{'cot' if c['cot'] else 'direct'}-{i}"
        for i, c in enumerate(_golden())
    ],
)
def test_the_default_templates_render_the_trained_prompts_byte_for_byte(case: dict) -> None:
    args = (
        Task(case["task"]),
        Mode(case["mode"]),
        case["prompt"],
        case["responses"],
        case["n_items"],
        case["frames_per_item"],
        case["cot"],
        case["hint"],
    )
    assert contract.build_messages(*args) == case["messages"]
    assert (
        contract.build_messages(*args, templates=load_templates(DEFAULT_FILE)) == case["messages"]
    )


def test_the_default_file_is_versioned_hashed_and_shipped_with_the_package() -> None:
    t = default_templates()
    assert t.version == "unireward-1" and t.source == DEFAULT_SOURCE
    assert t.text == DEFAULT_FILE.read_text()
    assert t.sha256 == hashlib.sha256(DEFAULT_FILE.read_bytes()).hexdigest()
    assert set(t.templates) == {f"{task.value}.{k}" for task in TASKS for k in KINDS}
    pyproject = (Path(__file__).parents[1] / "pyproject.toml").read_text()
    assert '"prompts/*.yaml"' in pyproject  # package data: a wheel carries the file


# --------------------------------------------------------------------------- a user's file


def test_a_user_file_changes_the_prompts_and_only_what_it_changes(
    tmp_path: Path, shapes_dataset: Path
) -> None:
    path = _user_file(
        tmp_path,
        _set("image_generation", "pairwise", "Caption: {caption}\nWhich picture fits? {choices}"),
    )
    theirs = load_templates(path)
    assert theirs.version == "theirs-1" and theirs.source == str(path)
    text = _instruction(theirs)
    assert text == (
        'Caption: a red circle\nWhich picture fits? "Image 1 is better", "Image 2 is better", '
        '"Both images are equally good"'
    )
    assert GEN_ASK in _instruction()  # the default is unchanged
    for task in TASKS:  # every other template renders as the default does
        for mode in MODES:
            for cot in (False, True) if mode == Mode.PAIRWISE else (False,):
                if (task, mode, cot) != (IG, Mode.PAIRWISE, False):
                    assert _instruction(theirs, task, mode, cot) == _instruction(
                        None, task, mode, cot
                    )
    # The item layout stays the contract's: markers and placeholders first, in order.
    n_items, _ = contract._expected_shape(IG, Mode.PAIRWISE)
    parts = contract.build_messages(IG, Mode.PAIRWISE, "x", [], n_items, templates=theirs)
    assert [p["type"] for p in parts[0]["content"]] == ["text", "image"] * 2 + ["text"]
    # ... and the training examples and inference prompts of a record follow the file.
    record = next(
        r
        for r in read_records(shapes_dataset)
        if r.task == IG.value and r.mode == Mode.PAIRWISE and r.split == "train"
    )
    example = to_example(record, shapes_dataset, templates=theirs)
    assert "Which picture fits?" in example["prompt"][0]["content"][-1]["text"]
    assert "Which picture fits?" not in prompt_messages(record)[0]["content"][-1]["text"]


def test_a_literal_scale_and_literal_answer_strings_are_accepted(tmp_path: Path) -> None:
    path = _user_file(
        tmp_path,
        lambda t: t["image_generation"].update(
            pointwise='Score 1 to 5. Write "Final Score: <n>".\nCaption: {caption}',
            pairwise='Say "Image 1 is better" or "Image 2 is better".\nCaption: {caption}',
        ),
    )
    theirs = load_templates(path)
    assert _instruction(theirs, IG, Mode.POINTWISE).startswith("Score 1 to 5.")
    assert "Say " in _instruction(theirs)


# --------------------------------------------------------------------------- refused files


@pytest.mark.parametrize(
    ("edit", "key", "says"),
    [
        # the brief's example: an answer instruction the parser does not read
        (
            _set("image_generation", "pairwise", "Answer: A/B\nCaption: {caption}"),
            "image_generation.pairwise",
            "'Image 1 is better', 'Image 2 is better'",
        ),
        (
            lambda t: t["video_generation"].pop("pointwise"),
            "video_generation.pointwise",
            "missing",
        ),
        (lambda t: t.pop("image_understanding"), "image_understanding", "missing"),
        (
            _set("image_understanding", "pairwise", "{prompt} {answer_1} {answer_2} {choices}"),
            "image_understanding.pairwise",
            "unknown placeholder(s) {prompt}",
        ),
        (
            _set("image_generation", "pointwise", "From {lo:g} to {hi}. Final Score: n {caption}"),
            "image_generation.pointwise",
            "format spec",
        ),
        (
            _set("image_generation", "pointwise", "Rate 1 to 10. Final Score: n\n{caption}"),
            "image_generation.pointwise",
            "scale 1-5",
        ),
        (
            _set("video_understanding", "pointwise", "{question} {answer} {lo}-{hi}. Score: n"),
            "video_understanding.pointwise",
            '"Final Score: <number>"',
        ),
        (
            _set("image_generation", "pairwise_cot", "{caption} Write one of {choices}."),
            "image_generation.pairwise_cot",
            "<think> </think> <answer> </answer>",
        ),
        (
            _set(
                "image_generation",
                "pairwise_cot",
                "{caption} <think></think> <answer>{choices} or Both images are equally good"
                "</answer>",
            ),
            "image_generation.pairwise_cot",
            "CoT has no tie",
        ),
        (
            _set("video_generation", "pairwise", "{caption} Image 1 is better? {choices}"),
            "video_generation.pairwise",
            "another task's answer",
        ),
        (
            _set("image_generation", "pairwise", "Which is better? {choices}"),
            "image_generation.pairwise",
            "missing {caption}",
        ),
        (
            _set("image_generation", "pairwise", "{caption} {choices"),
            "image_generation.pairwise",
            "does not parse",
        ),
        (lambda t: t.update(image_editing={}), "image_editing", "unknown task"),
    ],
)
def test_a_file_that_does_not_fit_the_parser_is_refused_naming_file_key_and_fix(
    tmp_path: Path, edit, key: str, says: str
) -> None:
    path = _user_file(tmp_path, edit)
    with pytest.raises(ValueError) as err:
        load_templates(path)
    message = str(err.value)
    assert str(path) in message and "do not fit the judge contract" in message
    line = next(line for line in message.splitlines() if key in line)
    assert says in line, message


def test_a_file_without_a_version_or_with_other_keys_is_refused(tmp_path: Path) -> None:
    data = yaml.safe_load(DEFAULT_FILE.read_text())
    del data["version"]
    data["notes"] = "x"
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ValueError, match=r"(?s)unknown top-level key.*notes.*`version` must"):
        load_templates(path)
    with pytest.raises(FileNotFoundError, match=r"nope\.yaml"):
        load_templates(tmp_path / "nope.yaml")


def test_every_default_template_passes_the_check_and_each_check_can_fail() -> None:
    t = default_templates()
    for key, template in t.templates.items():
        task, kind = key.split(".")
        assert check_template(Task(task), kind, template) == []
        assert check_template(Task(task), kind, "x") != []


# ------------------------------------------------------------------- which file a stage uses


def test_a_saved_models_templates_are_picked_up_and_an_explicit_file_wins(
    tmp_path: Path,
) -> None:
    model = tmp_path / "judge"
    assert resolve_templates("", model) is default_templates()  # no prompts.yaml: the default
    theirs = load_templates(
        _user_file(
            tmp_path,
            _set(
                "image_generation",
                "pairwise_cot",
                ("{caption} <think></think><answer></answer> one of {choices}"),
            ),
        )
    )
    save_templates(theirs, model)
    picked = resolve_templates("", model)
    assert picked.sha256 == theirs.sha256 and picked.source == str(model / PROMPTS_FILE)
    assert _instruction(picked, cot=True) == _instruction(theirs, cot=True)
    assert load_templates(model).sha256 == theirs.sha256  # a model directory names its file
    other = _user_file(tmp_path, version="other-1", name="other.yaml")
    with pytest.warns(UserWarning, match="not the .*prompts.yaml the model was trained with"):
        chosen = resolve_templates(str(other), model)
    assert chosen.version == "other-1"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the same file as the model's own: no warning
        assert resolve_templates(str(model / PROMPTS_FILE), model).version == "theirs-1"


def test_the_run_logs_the_file_its_version_and_hash() -> None:
    tracker = NullTracker()
    with tracker.start_run("x"):
        log_templates(tracker, default_templates())
    assert tracker.params["prompt_templates.version"] == "unireward-1"
    assert tracker.params["prompt_templates.sha256"] == default_templates().sha256
    assert tracker.texts[PROMPTS_FILE] == DEFAULT_FILE.read_text()


def test_the_think_stages_and_the_teacher_ask_in_the_given_words(
    tmp_path: Path, shapes_dataset: Path
) -> None:
    from unireward.think.grpo import grpo_rows
    from unireward.think.rejection_sample import grpo_record
    from unireward.think.teachers import openai_messages

    cot = (
        "{question}\n{answer_1} | {answer_2}\n"
        "Think in <think></think>, answer {choices} in <answer></answer>."
    )
    theirs = load_templates(_user_file(tmp_path, _set("image_understanding", "pairwise_cot", cot)))
    record = next(
        r
        for r in read_records(shapes_dataset)
        if r.task == IU.value and r.mode == Mode.PAIRWISE and r.split == "train"
    )
    want = f"{record.prompt}\n{record.responses[0]} | {record.responses[1]}\nThink in"
    assert grpo_rows([record], shapes_dataset, templates=theirs)[0]["prompt"][0]["content"][-1][
        "text"
    ].startswith(want)
    assert want in grpo_record(record, theirs)["problem"]
    assert openai_messages(record, shapes_dataset, theirs)[0]["content"][-1]["text"].startswith(
        want
    )
    assert want not in grpo_record(record)["problem"]  # the default words without templates


def test_a_trained_judge_carries_its_templates_into_evaluation(
    tiny_model_dir: Path, shapes_dataset: Path, tmp_path: Path
) -> None:
    """unified_sft trains on a user's file and saves it next to the judge; evaluate then asks
    that judge in the same words without being told, and both MLflow runs log the file."""
    from mlflow import MlflowClient

    from mlflow_store import logged_artifacts
    from unireward.config import from_dict
    from unireward.eval.evaluate import EvaluateConfig
    from unireward.eval.evaluate import run as evaluate
    from unireward.judge.unified_sft import UnifiedSftConfig
    from unireward.judge.unified_sft import run as unified_sft

    path = _user_file(
        tmp_path,
        _set("image_generation", "pointwise", "From {lo} to {hi}: Final Score: n {caption}"),
    )
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    train = {"max_steps": 2, "batch_size": 2, "save_steps": 2, "logging_steps": 1}
    cfg = from_dict(
        UnifiedSftConfig,
        {
            "train": train,
            "tracking_uri": uri,
            "prompt_templates": str(path),
            "tasks": ["image_generation"],
        },
    )
    unified_sft(cfg, tiny_model_dir, shapes_dataset, tmp_path / "judge")
    saved = tmp_path / "judge" / PROMPTS_FILE
    assert saved.read_text() == path.read_text()
    info = json.loads((tmp_path / "judge" / "unireward.json").read_text())
    assert info["prompt_templates"]["version"] == "theirs-1"

    ev = EvaluateConfig(
        max_per_task_mode=1, max_new_tokens=2, tasks=("image_generation",), tracking_uri=uri
    )
    evaluate(ev, tmp_path / "judge", shapes_dataset, tmp_path / "eval", name="theirs")
    client = MlflowClient(uri)
    runs = {
        r.info.run_name: r
        for e in client.search_experiments()
        for r in client.search_runs([e.experiment_id])
    }
    for name in ("unified_sft", "evaluate-theirs"):
        params = runs[name].data.params
        assert params["prompt_templates.version"] == "theirs-1", name
        assert params["prompt_templates.sha256"] == load_templates(path).sha256
        assert PROMPTS_FILE in logged_artifacts(uri, name)
    assert params["prompt_templates.source"] == str(saved)
