"""unified_sft: trains the judge on every task and mode, writes a loadable checkpoint, and
refuses bad input with a message that names the problem."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from mlflow_store import logged_artifacts
from unireward.config import from_dict
from unireward.data.schema import read_records, write_records
from unireward.data.shapes import Scene, describe
from unireward.judge.examples import scene_hint, swap_record, to_example
from unireward.judge.unified_sft import (
    CaptionCurriculum,
    TaskCurriculum,
    UnifiedSftConfig,
    curriculum_picker,
    epoch_order,
    expand,
    record_stream,
    run,
    select_records,
    twin_units,
)
from unireward.tracking import default_tracking_uri
from unireward.training import CHECKPOINTS

TINY_TRAIN = {"max_steps": 4, "batch_size": 2, "save_steps": 2, "logging_steps": 1}


def test_run_changes_parameters_and_writes_the_judge(
    tiny_model_dir: Path, shapes_dataset: Path, tmp_path: Path
) -> None:
    uri = default_tracking_uri(tmp_path / "store")
    cfg = from_dict(UnifiedSftConfig, {"train": TINY_TRAIN, "tracking_uri": uri})
    result = run(cfg, tiny_model_dir, shapes_dataset, tmp_path / "judge")
    before = load_file(tiny_model_dir / "model.safetensors")
    after = load_file(tmp_path / "judge" / "model.safetensors")
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert len(changed) > len(before) // 2, "training should move most tensors"
    assert result.train.global_step == 4
    info = json.loads((tmp_path / "judge" / "unireward.json").read_text())
    assert info["stage"] == "unified_sft" and info["global_step"] == 4
    assert set(info["records"]) == {
        f"{t}/{m}"
        for t in (
            "image_generation",
            "image_understanding",
            "video_generation",
            "video_understanding",
        )
        for m in ("pairwise", "pointwise")
    }
    assert not (tmp_path / "judge" / CHECKPOINTS).exists(), "checkpoints are discarded at the end"
    losses = [
        h["loss"]
        for h in json.loads((tmp_path / "judge" / "train_log.json").read_text())
        if "loss" in h
    ]
    assert losses and all(loss == loss for loss in losses)
    assert {"plots/train_curves.png", "train_log.json"} <= logged_artifacts(uri, "unified_sft")


def test_swap_augmentation_doubles_pairwise_rows_with_mirrored_labels(shapes_dataset: Path) -> None:
    records = select_records(read_records(shapes_dataset), UnifiedSftConfig())
    rows = expand(records, swap_augment=True)
    pairwise = [r for r in records if r.mode == "pairwise"]
    assert len(rows) == len(records) + len(pairwise)
    for r in pairwise:
        twin = swap_record(r)
        assert swap_record(twin) == r
        if r.label.startswith("Both"):
            assert twin.label == r.label
        else:
            assert twin.label != r.label


def test_examples_target_only_the_answer(shapes_dataset: Path) -> None:
    record = next(
        r
        for r in read_records(shapes_dataset)
        if r.task == "video_generation" and r.mode == "pairwise"
    )
    ex = to_example(record, shapes_dataset)
    assert ex["completion"][0]["content"][0]["text"] == record.label
    placeholders = sum(p["type"] == "image" for p in ex["prompt"][0]["content"])
    assert placeholders == len(ex["images"]) == 2 * len(record.media[0])


def test_unknown_task_is_an_error_naming_it() -> None:
    with pytest.raises(ValueError, match=r"image_gen.*expected one of"):
        from_dict(UnifiedSftConfig, {"tasks": ["image_gen"]})
    with pytest.raises(ValueError, match="max_step"):
        from_dict(UnifiedSftConfig, {"train": {"max_step": 3}})


def test_missing_media_fails_with_the_file_named(
    tiny_model_dir: Path, shapes_dataset: Path, tmp_path: Path
) -> None:
    records = read_records(shapes_dataset)
    bad = dataclasses.replace(
        records[0], media=[["media/does-not-exist.png"]] * len(records[0].media)
    )
    root = tmp_path / "ds"
    write_records([bad], root)
    cfg = from_dict(
        UnifiedSftConfig, {"train": TINY_TRAIN, "tasks": [bad.task], "modes": [bad.mode]}
    )
    with pytest.raises(FileNotFoundError, match=r"does-not-exist\.png"):
        run(cfg, tiny_model_dir, root, tmp_path / "out")


def test_no_matching_records_is_an_error(shapes_dataset: Path) -> None:
    with pytest.raises(ValueError, match="no records with split='holdout'"):
        select_records(read_records(shapes_dataset), UnifiedSftConfig(split="holdout"))


# --------------------------------------------------------------------------- caption curriculum


def _prompt_text(example: dict) -> str:
    return example["prompt"][0]["content"][-1]["text"]


def test_swap_record_swaps_the_ground_truth_with_the_candidates(shapes_dataset: Path) -> None:
    records = [
        r
        for r in read_records(shapes_dataset)
        if r.mode == "pairwise" and r.meta_dict.get("better") is not None
    ]
    assert {r.task for r in records} == {
        "image_generation",
        "image_understanding",
        "video_generation",
        "video_understanding",
    }
    for r in records:
        meta, twin = r.meta_dict, swap_record(r).meta_dict
        key = "items" if r.task.endswith("generation") else "claims"
        assert twin[key] == list(reversed(meta[key]))
        assert twin["better"] == 1 - meta["better"]
        # The label still names the better item of the swapped record.
        assert swap_record(r).label.startswith(("Image 1", "Video 1", "Answer 1")) == (
            twin["better"] == 0
        )


def test_scene_hints_say_what_each_item_shows_in_the_presented_order(shapes_dataset: Path) -> None:
    records = read_records(shapes_dataset)
    kinds = set()
    for r in records:
        meta, hint = r.meta_dict, scene_hint(r)
        kinds.add((r.task, r.mode))
        if r.task.endswith("understanding"):
            noun = "video" if r.task.startswith("video") else "image"
            assert hint == f"The {noun} shows {describe(Scene(**meta['scene']))}."
            continue
        scenes = [Scene(**s) for s in meta["items"]]
        for i, scene in enumerate(scenes):
            assert describe(scene) in hint
            if len(scenes) == 2:
                assert f"{'Video' if scene.is_video else 'Image'} {i + 1} shows" in hint
        if r.mode == "pairwise":
            noun = "Video" if scenes[0].is_video else "Image"
            first, second = scene_hint(swap_record(r)).split(f". {noun} 2 shows ")
            assert first.startswith(f"{noun} 1 shows {describe(scenes[1])}")
            assert second.startswith(describe(scenes[0]))
    assert len(kinds) == 8


def test_scene_hints_name_defects_and_are_none_without_ground_truth(shapes_dataset: Path) -> None:
    records = read_records(shapes_dataset)
    defective = [
        r
        for r in records
        if r.task.endswith("generation") and any(i["defect"] for i in r.meta_dict["items"])
    ]
    assert defective
    words = ("noisy", "blurry", "frames shuffled", "frozen")
    assert all(any(w in scene_hint(r) for w in words) for r in defective)
    assert scene_hint(dataclasses.replace(records[0], meta="{}")) is None
    understanding = next(r for r in records if r.task == "image_understanding")
    for scene in ({"shape": "blob", "colour": "red"}, {"shape": "circle", "hue": "red"}):
        bad = dataclasses.replace(understanding, meta=json.dumps({"scene": scene}))
        with pytest.raises(ValueError, match=rf"{understanding.id}: meta item 1 is not a scene"):
            scene_hint(bad)


def test_curriculum_share_holds_anneals_and_ends() -> None:
    c = CaptionCurriculum(hold_steps=10, anneal_steps=4)
    assert [c.share(s) for s in (0, 9, 10, 11, 12, 13, 14, 100)] == [
        1.0,
        1.0,
        1.0,
        0.75,
        0.5,
        0.25,
        0.0,
        0.0,
    ]
    assert not CaptionCurriculum().active and CaptionCurriculum().share(0) == 0.0


@pytest.mark.parametrize(
    ("section", "match"),
    [
        ({"caption_curriculum": {"hold_steps": -1}}, "hold_steps must be an integer >= 0"),
        ({"caption_curriculum": {"anneal_steps": 1.5}}, "anneal_steps must be an integer"),
        (
            {
                "train": {"max_steps": 10},
                "caption_curriculum": {"hold_steps": 5, "anneal_steps": 5},
            },
            "ends at step 10, not before train.max_steps=10",
        ),
        ({"caption_curriculum": {"hold_step": 5}}, "hold_step"),
    ],
)
def test_bad_curriculum_settings_are_errors_naming_them(section: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        from_dict(UnifiedSftConfig, section, where="unified_sft")


def test_stream_hints_every_example_while_held_and_none_after(shapes_dataset: Path) -> None:
    records = select_records(read_records(shapes_dataset), UnifiedSftConfig())
    rows = expand(records, swap_augment=True)
    curriculum = CaptionCurriculum(hold_steps=3, anneal_steps=3)
    stream = iter(record_stream(rows, shapes_dataset, 0, curriculum=curriculum, batch_size=2))
    examples = [next(stream) for _ in range(16)]  # steps 0..7
    plain = iter(record_stream(rows, shapes_dataset, 0))
    for i, (ex, base) in enumerate(zip(examples, (next(plain) for _ in range(16)), strict=True)):
        text, base_text = _prompt_text(ex), _prompt_text(base)
        assert text.endswith(base_text), "the hint only adds a line in front"
        hinted = text != base_text
        if i < 6:  # steps 0-2: held
            assert hinted and " shows " in text.split("\n")[0]
        elif i >= 12:  # steps 6-7: over
            assert not hinted


def test_paired_epochs_keep_each_record_next_to_its_swapped_twin(shapes_dataset: Path) -> None:
    records = select_records(read_records(shapes_dataset), UnifiedSftConfig())
    rows = expand(records, swap_augment=True)
    units = twin_units(rows)
    twins = [u for u in units if len(u) == 2]
    assert len(twins) == sum(r.mode == "pairwise" for r in records) and len(units) == len(records)
    assert all(rows[a] == swap_record(rows[b]) for a, b in twins)
    orders = [epoch_order(units, 0, epoch) for epoch in (0, 1)]
    for order in orders:
        assert sorted(order.tolist()) == list(range(len(rows))), "an epoch is a permutation"
        position = {int(row): k for k, row in enumerate(order)}
        assert all(position[b] == position[a] + 1 for a, b in twins)
    assert not np.array_equal(*orders), "each epoch is shuffled anew"
    # Without pairing every row is its own unit: the same order as before the option existed.
    singles = [[i] for i in range(len(rows))]
    expected = np.random.default_rng([0, 3]).permutation(len(rows))
    assert np.array_equal(epoch_order(singles, 0, 3), expected)


def test_paired_stream_renders_rows_in_the_paired_order(shapes_dataset: Path) -> None:
    records = select_records(read_records(shapes_dataset), UnifiedSftConfig())
    rows = expand(records, swap_augment=True)
    order = epoch_order(twin_units(rows), 7, 0)
    stream = iter(record_stream(rows, shapes_dataset, 7, paired=True))
    for k in range(12):
        got, expected = next(stream), to_example(rows[int(order[k])], shapes_dataset)
        assert got["prompt"] == expected["prompt"]
        assert got["completion"] == expected["completion"]  # the twin has the other answer
        assert [np.asarray(i).tolist() for i in got["images"]] == [
            np.asarray(i).tolist() for i in expected["images"]
        ]


def test_task_curriculum_adds_one_group_per_stage_and_keeps_the_earlier_ones() -> None:
    c = TaskCurriculum(
        order=("image_generation", "video_understanding/pairwise", "video_generation"),
        stage_steps=10,
        newest_share=0.6,
    )
    assert c.weights(0) == c.weights(9) == [1.0, 0.0, 0.0]
    assert c.weights(10) == pytest.approx([0.4, 0.6, 0.0])
    assert c.weights(25) == pytest.approx([0.2, 0.2, 0.6])
    assert c.end == 20 and c.weights(30) == c.weights(1000) == pytest.approx([1 / 3] * 3)
    assert all(sum(c.weights(s)) == pytest.approx(1.0) for s in range(40))
    assert not TaskCurriculum().active


def test_task_curriculum_stream_draws_each_stage_from_its_groups(shapes_dataset: Path) -> None:
    records = select_records(read_records(shapes_dataset), UnifiedSftConfig())
    rows = expand(records, swap_augment=True)
    c = TaskCurriculum(order=("image_understanding", "video_generation/pairwise"), stage_steps=50)
    pick = curriculum_picker(rows, c, seed=3, batch_size=4)
    first = [rows[pick(i)] for i in range(200)]  # steps 0-49: the first group only
    assert {r.task for r in first} == {"image_understanding"}
    assert {r.mode for r in first} == {"pairwise", "pointwise"}, "a task is both its modes"
    later = [rows[pick(i)] for i in range(200, 2200)]
    groups = [(r.task, r.mode) for r in later]
    newest = sum(g == ("video_generation", "pairwise") for g in groups) / len(groups)
    assert 0.45 < newest < 0.55, newest
    assert set(groups) <= {("image_understanding", m) for m in ("pairwise", "pointwise")} | {
        ("video_generation", "pairwise")
    }
    # A group's rows come round evenly: one epoch of it shows each of its rows once.
    n = sum(r.task == "image_understanding" for r in rows)
    seen = [pick(i) for i in range(n)]
    assert len(set(seen)) == n, "the first stage's first epoch repeats no row"
    assert [pick(i) for i in range(50)] == [
        curriculum_picker(rows, c, seed=3, batch_size=4)(i) for i in range(50)
    ], "a pure function of the index (a resumed run sees the same stream)"


@pytest.mark.parametrize(
    ("section", "match"),
    [
        ({"task_curriculum": {"order": ["image_gen"], "stage_steps": 5}}, "image_gen"),
        ({"task_curriculum": {"order": ["image_generation/both"], "stage_steps": 5}}, "both"),
        ({"task_curriculum": {"order": ["image_generation"], "stage_steps": 0}}, ">= 1"),
        (
            {
                "task_curriculum": {
                    "order": ["image_generation"],
                    "stage_steps": 5,
                    "newest_share": 0,
                }
            },
            r"newest_share must be in \(0, 1\]",
        ),
        (
            {
                "task_curriculum": {
                    "order": ["image_generation", "image_generation"],
                    "stage_steps": 5,
                }
            },
            "names a group twice",
        ),
        (
            {
                "train": {"max_steps": 10},
                "task_curriculum": {
                    "order": ["image_generation", "video_generation"],
                    "stage_steps": 10,
                },
            },
            "adds its last group at step 10, not before train.max_steps=10",
        ),
        (
            {
                "tasks": ["image_generation"],
                "task_curriculum": {"order": ["video_generation"], "stage_steps": 5},
            },
            "'video_generation' is not among unified_sft.tasks",
        ),
        (
            {
                "paired_swaps": True,
                "task_curriculum": {"order": ["image_generation"], "stage_steps": 5},
            },
            "task_curriculum and paired_swaps",
        ),
    ],
)
def test_bad_task_curriculum_settings_are_errors_naming_them(section: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        from_dict(UnifiedSftConfig, section, where="unified_sft")


def test_paired_swaps_without_swap_augment_is_an_error() -> None:
    with pytest.raises(ValueError, match="paired_swaps needs swap_augment"):
        from_dict(UnifiedSftConfig, {"paired_swaps": True, "swap_augment": False})


def test_a_curriculum_on_data_without_scenes_is_an_error(
    tiny_model_dir: Path, shapes_dataset: Path, tmp_path: Path
) -> None:
    records = [dataclasses.replace(r, meta="{}") for r in read_records(shapes_dataset)]
    root = tmp_path / "ds"
    write_records(records, root)
    (root / "media").symlink_to(shapes_dataset / "media")
    cfg = from_dict(
        UnifiedSftConfig,
        {"train": TINY_TRAIN, "caption_curriculum": {"hold_steps": 1, "anneal_steps": 1}},
    )
    with pytest.raises(ValueError, match="no training record says what its items show"):
        run(cfg, tiny_model_dir, root, tmp_path / "out")


def test_run_with_the_curriculum_records_how_many_rows_had_a_hint(
    tiny_model_dir: Path, shapes_dataset: Path, tmp_path: Path
) -> None:
    cfg = from_dict(
        UnifiedSftConfig,
        {
            "train": TINY_TRAIN,
            "caption_curriculum": {"hold_steps": 1, "anneal_steps": 2},
            "tracking_uri": "null",
        },
    )
    result = run(cfg, tiny_model_dir, shapes_dataset, tmp_path / "judge")
    info = json.loads((tmp_path / "judge" / "unireward.json").read_text())
    assert info["records_with_hint"] == result.n_records > 0
    assert info["config"]["caption_curriculum"] == {"hold_steps": 1, "anneal_steps": 2}
