"""Behaviour of the shapes world: determinism, ground truth visible in pixels, splits, scores.

Run: .venv/bin/pytest tests/test_shapes.py
"""

from __future__ import annotations

import itertools
import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from unireward.data.schema import RECORDS_FILE, Record, read_records
from unireward.data.shapes import (
    BACKGROUND_RGB,
    COLOUR_RGB,
    COLOURS,
    MOTIONS,
    POSITIONS,
    SEEN_COMBOS,
    SHAPES,
    UNSEEN_COMBOS,
    Scene,
    ShapesConfig,
    describe,
    generate,
    perception_example,
    render_image,
    render_video,
)
from unireward.tasks import MODES, PAIR_ANSWERS, SCORE_RANGE, TASKS, TIE_ANSWERS, Mode, Task

SMALL = ShapesConfig(seed=3, train_per_task_mode=24, eval_per_task_mode=8)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Record]]:
    root = tmp_path_factory.mktemp("shapes")
    return root, generate(SMALL, root)


def _pixels(root: Path, path: str) -> np.ndarray:
    return np.asarray(Image.open(root / path).convert("RGB"), dtype=np.float32)


def _foreground(pixels: np.ndarray) -> np.ndarray:
    return np.abs(pixels - np.array(BACKGROUND_RGB)).sum(axis=-1) > 90


def _read_scene(pixels: np.ndarray) -> tuple[str, str]:
    """(colour, quadrant) read back from a clean image: the quadrant holding the shape's pixels
    and the palette colour nearest to their mean."""
    fg = _foreground(pixels)
    half = pixels.shape[0] // 2
    counts = {
        "top left": fg[:half, :half].sum(),
        "top right": fg[:half, half:].sum(),
        "bottom left": fg[half:, :half].sum(),
        "bottom right": fg[half:, half:].sum(),
    }
    mean = pixels[fg].mean(axis=0)
    colour = min(COLOURS, key=lambda c: np.abs(mean - np.array(COLOUR_RGB[c])).sum())
    return colour, max(counts, key=counts.__getitem__)


def _centroid(pixels: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(_foreground(pixels))
    return np.array([xs.mean(), ys.mean()])


def test_same_seed_gives_identical_bytes_and_other_seed_differs(tmp_path: Path) -> None:
    config = ShapesConfig(seed=7, train_per_task_mode=3, eval_per_task_mode=1)
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    records_a, records_b = generate(config, a), generate(config, b)
    assert records_a == records_b
    assert (a / RECORDS_FILE).read_bytes() == (b / RECORDS_FILE).read_bytes()
    pngs = sorted(p.relative_to(a) for p in a.rglob("*.png"))
    assert len(pngs) == sum(len(item) for r in records_a for item in r.media)
    assert all((a / p).read_bytes() == (b / p).read_bytes() for p in pngs)

    records_c = generate(ShapesConfig(seed=8, train_per_task_mode=3, eval_per_task_mode=1), c)
    assert [r.prompt for r in records_c] != [r.prompt for r in records_a]
    assert sum((a / p).read_bytes() != (c / p).read_bytes() for p in pngs) > 0.9 * len(pngs)


def test_every_split_task_mode_has_the_configured_count(dataset) -> None:
    root, records = dataset
    counts = Counter((r.split, r.task, r.mode) for r in records)
    for split, n in (("train", 24), ("eval_seen", 8), ("eval_unseen", 8)):
        for task in TASKS:
            for mode in MODES:
                assert counts[split, task.value, mode.value] == n
    assert len({r.id for r in records}) == len(records)
    assert read_records(root) == records


def test_record_layout_and_media_files(dataset) -> None:
    root, records = dataset
    for r in records:
        task = Task(r.task)
        n_items = 2 if task.is_generation and r.mode == Mode.PAIRWISE else 1
        n_responses = 0 if task.is_generation else (2 if r.mode == Mode.PAIRWISE else 1)
        assert len(r.media) == n_items and len(r.responses) == n_responses
        assert (r.label is not None) == (r.mode == Mode.PAIRWISE)
        assert (r.score is not None) == (r.mode == Mode.POINTWISE)
        for item in r.media:
            assert len(item) == (SMALL.frames if task.is_video else 1)
            for path in item:
                assert not Path(path).is_absolute() and ".." not in path
                assert (root / path).is_file()
        assert json.loads(r.meta)["generator"] == "shapes-world"


def _combos_in(meta: dict) -> list[tuple[str, str]]:
    scenes = [meta.get("target"), meta.get("scene"), *meta.get("items", [])]
    scenes += [c for c in meta.get("claims", []) if "colour" in c and "shape" in c]
    return [(s["colour"], s["shape"]) for s in scenes if s]


def test_unseen_combos_appear_only_in_eval_unseen(dataset) -> None:
    _, records = dataset
    assert len(UNSEEN_COMBOS) == 6
    assert {c for c, _ in UNSEEN_COMBOS} == set(COLOURS)  # each colour keeps 3 seen shapes
    assert all(sum(s == shape for _, s in UNSEEN_COMBOS) <= 2 for shape in SHAPES)
    for r in records:
        meta = json.loads(r.meta)
        truth = meta.get("target") or meta["scene"]
        if r.split == "eval_unseen":
            assert (truth["colour"], truth["shape"]) in UNSEEN_COMBOS, r.id
        else:
            assert not set(_combos_in(meta)) & set(UNSEEN_COMBOS), r.id
            assert all(f"{c} {s}" not in r.prompt + " ".join(r.responses) for c, s in UNSEEN_COMBOS)


def test_clean_image_pixels_show_the_ground_truth(dataset) -> None:
    root, records = dataset
    checked = 0
    for r in records:
        if Task(r.task).is_video:
            continue
        meta = json.loads(r.meta)
        scenes = meta.get("items") or [meta["scene"]]
        for scene, item in zip(scenes, r.media, strict=True):
            if scene["defect"] is None:
                assert _read_scene(_pixels(root, item[0])) == (scene["colour"], scene["position"])
                checked += 1
    assert checked > 100


def test_generation_label_names_the_matching_item(dataset) -> None:
    root, records = dataset
    checked = 0
    for r in records:
        task = Task(r.task)
        if not task.is_generation or r.mode != Mode.PAIRWISE:
            continue
        meta = json.loads(r.meta)
        if r.label == TIE_ANSWERS[task]:
            assert meta["items"] == [meta["target"], meta["target"]]
            assert r.media[0] != r.media[1]
            continue
        better = PAIR_ANSWERS[task].index(r.label)
        checked += 1
        target, other = meta["items"][better], meta["items"][1 - better]
        assert target == meta["target"] and describe(Scene(**target)) == r.prompt
        if meta["difference"] in ("noise", "blur", "shuffled", "frozen"):
            assert other == {**target, "defect": meta["difference"]}
        else:
            assert [k for k in target if target[k] != other[k]] == [meta["difference"]]
        if task is Task.IMAGE_GENERATION:
            seen = [_read_scene(_pixels(root, item[0])) for item in r.media]
            assert seen[better] == (target["colour"], target["position"])
            if meta["difference"] in ("colour", "position"):
                assert seen[1 - better] != seen[better]
    assert checked > 60


def test_the_better_item_is_first_about_half_the_time(dataset) -> None:
    _, records = dataset
    firsts = [
        PAIR_ANSWERS[Task(r.task)].index(r.label) == 0
        for r in records
        if r.mode == Mode.PAIRWISE and r.label not in TIE_ANSWERS.values()
    ]
    assert len(firsts) > 140
    assert 0.38 < np.mean(firsts) < 0.62  # +-3 sigma of a fair coin


def test_tie_fraction_is_applied_per_split_and_task(dataset) -> None:
    _, records = dataset
    for split, n in (("train", 24), ("eval_seen", 8)):
        for task in (Task.IMAGE_GENERATION, Task.VIDEO_GENERATION):
            labels = [
                r.label for r in records if (r.split, r.task, r.mode) == (split, task, "pairwise")
            ]
            assert labels.count(TIE_ANSWERS[task]) == round(SMALL.tie_fraction * n)


def test_understanding_pairs_have_one_right_answer(dataset) -> None:
    _, records = dataset
    for r in records:
        if Task(r.task).is_generation or r.mode != Mode.PAIRWISE:
            continue
        meta = json.loads(r.meta)
        better = PAIR_ANSWERS[Task(r.task)].index(r.label)
        assert r.responses[better] == meta["correct_answer"]
        assert r.responses[1 - better] != meta["correct_answer"]


def test_pointwise_scores_are_graded_on_the_native_scale(dataset) -> None:
    _, records = dataset
    for task in TASKS:
        points = [r for r in records if r.task == task.value and r.mode == Mode.POINTWISE]
        lo, hi = SCORE_RANGE[task]
        scores = [r.score for r in points]
        assert all(lo <= s <= hi for s in scores)
        assert len(set(scores)) > 2
        assert min(scores) == lo and max(scores) == hi
        # monotone in the ground-truth quality
        key = "quality" if task.is_generation else "fraction_correct"
        pairs = sorted((json.loads(r.meta)[key], r.score) for r in points)
        assert [s for _, s in pairs] == sorted(s for _, s in pairs)


def test_videos_move_in_their_direction_and_defects_break_the_motion() -> None:
    rng = np.random.default_rng(0)
    unit = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}
    for motion in MOTIONS:
        frames = render_video(Scene("circle", "red", motion=motion), 56, 8, rng)
        assert len(frames) == 8
        steps = np.diff([_centroid(np.asarray(f, np.float32)) for f in frames], axis=0)
        assert (steps @ np.array(unit[motion]) > 2).all(), motion  # a few px every frame

        frozen = render_video(Scene("circle", "red", motion=motion, defect="frozen"), 56, 8, rng)
        same = sum(np.array_equal(a, b) for a, b in itertools.pairwise(frozen))
        assert len(frozen) == 8 and same >= 4

        shuffled = render_video(
            Scene("circle", "red", motion=motion, defect="shuffled"), 56, 8, rng
        )
        along = [_centroid(np.asarray(f, np.float32)) @ np.array(unit[motion]) for f in shuffled]
        assert (np.diff(along) > 0).any() and (np.diff(along) < 0).any()


def test_render_image_jitters_and_defects_change_pixels() -> None:
    rng = np.random.default_rng(0)
    scene = Scene("square", "blue", "bottom right")
    a, b = (np.asarray(render_image(scene, 56, rng), np.float32) for _ in range(2))
    assert not np.array_equal(a, b)
    noisy = np.asarray(render_image(Scene(**{**scene.__dict__, "defect": "noise"}), 56, rng))
    blurry = np.asarray(render_image(Scene(**{**scene.__dict__, "defect": "blur"}), 56, rng))
    assert noisy[:20, :20].std() > 4 * a[:20, :20].std()  # background corner
    assert _foreground(blurry.astype(np.float32)).sum() != _foreground(a).sum()
    assert render_image(scene, 112, rng).size == (112, 112)


def test_perception_examples_cover_the_mix_without_judging() -> None:
    rng = np.random.default_rng(0)
    config = ShapesConfig(frames=4)
    contract = {a for pair in PAIR_ANSWERS.values() for a in pair} | set(TIE_ANSWERS.values())
    questions = Counter()
    for _ in range(300):
        ex = perception_example(rng, config)
        assert not any(s in ex.question or s in ex.answer for s in contract)
        assert ex.answer and ex.items and all(len(item) in (1, 4) for item in ex.items)
        if ex.question.startswith("Describe") or ex.question.endswith("?"):
            questions[ex.question.split()[0]] += 1
        if ex.answer.startswith("a "):
            colour, shape = ex.answer.split()[1:3]
            assert (colour, shape) not in UNSEEN_COMBOS
        if "image 2" in ex.question or "image 1" in ex.question:
            assert len(ex.items) == 2
    assert sum(questions.values()) == 300
    seen_questions = {ex.question for ex in (perception_example(rng, config) for _ in range(300))}
    for q in (
        "Describe the image.",
        "Describe the video.",
        "Is the image clean, noisy or blurry?",
        "Is the motion smooth, shuffled or frozen?",
        "What colour is the shape in image 2?",
    ):
        assert q in seen_questions


def test_perception_respects_given_combos() -> None:
    rng = np.random.default_rng(1)
    for _ in range(100):
        ex = perception_example(rng, ShapesConfig(), combos=[("red", "triangle")])
        if ex.question.startswith("What colour"):
            assert ex.answer == "red"
        if ex.question.startswith("What shape"):
            assert ex.answer == "triangle"
        if ex.question.startswith("Describe"):
            assert ex.answer.startswith("a red triangle")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"image_size": 15}, "image_size"),
        ({"image_size": 57}, "image_size"),
        ({"frames": 2}, "frames"),
        ({"tie_fraction": 1.5}, "tie_fraction"),
        ({"teacher_error_rate": -0.1}, "teacher_error_rate"),
        ({"train_per_task_mode": -1}, "train_per_task_mode"),
        ({"eval_per_task_mode": 2.5}, "eval_per_task_mode"),
        ({"seed": -1}, "seed"),
    ],
)
def test_config_rejects_bad_values(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ShapesConfig(**kwargs)


def test_scene_rejects_unknown_names() -> None:
    with pytest.raises(ValueError, match="colour 'teal'"):
        Scene("circle", "teal", "top left")
    with pytest.raises(ValueError, match="shape"):
        Scene("hexagon", "red")
    with pytest.raises(ValueError, match="not both"):
        Scene("circle", "red", position="top left", motion="up")
    with pytest.raises(ValueError, match="defect"):
        Scene("circle", "red", position="top left", defect="frozen")
    with pytest.raises(ValueError, match="combo"):
        perception_example(np.random.default_rng(0), ShapesConfig(), combos=[])
    assert describe(Scene("cross", "white", motion="up")) == "a white cross moving up"
    assert describe(Scene("circle", "red", POSITIONS[0])) == "a red circle at the top left"


def _caption_colour_position(caption: str) -> tuple[str, str]:
    words = caption.rstrip("?").split()
    return words[words.index("a") + 1], " ".join(words[-2:])


def test_grounding_skills_answer_what_the_images_show() -> None:
    """verify / which / check_answer: the yes-no and image-k answers agree with the pixels
    (colour and quadrant read back from the rendered image; a shape-only miss cannot be read
    back this way, so those are only counted)."""
    config = ShapesConfig(frames=4)
    rng = np.random.default_rng(3)
    answers: Counter = Counter()
    checked = 0
    for name in ("verify_image", "which_image", "check_answer"):
        for _ in range(60):
            ex = perception_example(rng, config, mix={name: 1.0})
            answers[(name, ex.answer)] += 1
            scenes = [_read_scene(np.asarray(item[0], dtype=np.float32)) for item in ex.items]
            if name == "check_answer":
                question, claimed = ex.question.split(" Answer: ")
                claimed = claimed.removesuffix(". Is the answer right?")
                colour, quadrant = scenes[0]
                if question.endswith("What colour is the shape?"):
                    assert (claimed == colour) == (ex.answer == "yes")
                    checked += 1
                elif question.endswith("Where is the shape?"):
                    assert (claimed == quadrant) == (ex.answer == "yes")
                    checked += 1
                continue
            wanted = _caption_colour_position(ex.question.split(" shows ")[-1].split(" show ")[-1])
            if name == "verify_image":
                if ex.answer == "yes":
                    assert scenes[0] == wanted
                    checked += 1
            else:
                k = int(ex.answer.split()[-1]) - 1
                assert scenes[k] == wanted
                checked += 1
    assert checked > 100
    for name, yes, no in (
        ("verify_image", "yes", "no"),
        ("which_image", "image 1", "image 2"),
        ("check_answer", "yes", "no"),
    ):
        assert answers[(name, yes)] > 15 and answers[(name, no)] > 15, answers


def test_grounding_distractors_stay_inside_the_given_combos() -> None:
    """Held-out combos never appear as distractors when training draws from seen ones, and a
    combo set where some attribute cannot change (every unseen colour has one unseen shape)
    still yields examples instead of failing."""
    config = ShapesConfig(frames=4)
    two = [("red", "triangle"), ("blue", "triangle")]  # no shape change possible
    for combos in (two, UNSEEN_COMBOS, SEEN_COMBOS):
        rng = np.random.default_rng(4)
        colours = Counter()
        for _ in range(60):
            ex = perception_example(rng, config, combos, mix={"which_image": 1, "which_video": 1})
            assert ex.answer in {"image 1", "image 2", "video 1", "video 2"}
            if len(ex.items[0]) == 1:
                for item in ex.items:
                    colours[_read_scene(np.asarray(item[0], dtype=np.float32))[0]] += 1
        assert set(colours) <= {c for c, _ in combos}
    assert set(colours) == set(COLOURS)


def test_perception_mix_rejects_unknown_skills() -> None:
    with pytest.raises(ValueError, match=r"unknown perception skill.*'juggle'"):
        perception_example(np.random.default_rng(0), ShapesConfig(), mix={"juggle": 1.0})
    with pytest.raises(ValueError, match="positive sum"):
        perception_example(np.random.default_rng(0), ShapesConfig(), mix={"attribute": 0.0})


def _clean_pixels(pixels: np.ndarray) -> bool:
    """Neighbouring pixels differ little on average (noise makes every pixel jump: ~47 measured)
    but the edges are sharp (blur softens them: the largest step ~20, clean ~220)."""
    steps = np.abs(np.diff(pixels, axis=1))
    return bool(steps.mean() < 20 and steps.max() > 120)


def _parts(answer: str) -> set[str]:
    return set() if answer == "none" else set(answer.replace(",", "").replace(" and ", " ").split())


def _read(item: list) -> tuple[str, str]:
    return _read_scene(np.asarray(item[0], dtype=np.float32))


def test_instruction_skills_answer_what_the_images_show() -> None:
    """Each comparison / checking skill's answer agrees with the colour, quadrant and cleanness
    read back from its rendered images (shape-only questions cannot be read back this way: they
    are counted, not checked), and every answer value occurs (no constant answer)."""
    config = ShapesConfig(frames=4)
    rng = np.random.default_rng(5)
    answers: Counter = Counter()
    checked: Counter = Counter()
    for name in (
        "which_attr_image",
        "same_attr_image",
        "which_clean_image",
        "which_reply_image",
        "caption_parts_image",
        "reply_parts_image",
    ):
        for _ in range(80):
            ex = perception_example(rng, config, SEEN_COMBOS, mix={name: 1.0})
            answers[(name, ex.answer)] += 1
            if name == "which_clean_image":
                k = int(ex.answer.split()[-1]) - 1
                clean = [_clean_pixels(np.asarray(i[0], dtype=np.float32)) for i in ex.items]
                assert clean[k] and not clean[1 - k], ex.question
                checked[name] += 1
                continue
            if name == "which_attr_image":
                k = int(ex.answer.split()[-1]) - 1
                phrase = ex.question.removeprefix("Which image shows ").rstrip("?")
                read = [_read(item) for item in ex.items]
                if ex.kind == "which_colour":
                    colour = phrase.split()[1]
                    assert read[k][0] == colour != read[1 - k][0]
                elif ex.kind == "which_position":
                    where = phrase.removeprefix("a shape at the ")
                    assert read[k][1] == where != read[1 - k][1]
                else:
                    continue
            elif name == "same_attr_image":
                (c1, p1), (c2, p2) = (_read(item) for item in ex.items)
                if ex.kind == "same_colour":
                    assert (c1 == c2) == (ex.answer == "yes")
                elif ex.kind == "same_position":
                    assert (p1 == p2) == (ex.answer == "yes")
                else:
                    continue
            elif name == "which_reply_image":
                colour, quadrant = _read(ex.items[0])
                lines = ex.question.split("\n")
                replies = [line.split(": ", 1)[1] for line in lines[2:]]
                right = replies[int(ex.answer.split()[-1]) - 1]
                if lines[0].endswith("What colour is the shape?"):
                    assert right == colour
                elif lines[0].endswith("Where is the shape?"):
                    assert right == quadrant
                elif lines[0].endswith("Describe the shape."):
                    assert right.split()[1] == colour and right.endswith(quadrant)
                else:
                    continue
            else:
                colour, quadrant = _read(ex.items[0])
                if name == "caption_parts_image":
                    text = ex.question.removeprefix("Which parts of ").split(" fit the")[0]
                else:
                    text = ex.question.split("Reply: ")[1].split("\n")[0]
                parts = _parts(ex.answer)
                assert ("colour" in parts) == (text.split()[1] == colour), (text, ex.answer)
                assert ("position" in parts) == text.endswith(quadrant), (text, ex.answer)
            checked[name] += 1
    assert all(checked[name] >= 30 for name in checked) and len(checked) == 6, checked
    for name, values in (
        ("which_attr_image", ("image 1", "image 2")),
        ("same_attr_image", ("yes", "no")),
        ("which_clean_image", ("image 1", "image 2")),
        ("which_reply_image", ("reply 1", "reply 2")),
        ("caption_parts_image", ("none", "colour, shape and position")),
    ):
        assert all(answers[(name, v)] >= 5 for v in values), (name, answers)


def _picked(ex) -> int:
    """The 0-based item a `pick_*` answer names: a listed choice in its order, else "<noun> k"."""
    listed = re.findall(r'"([^"]+)"', ex.question)
    if listed:
        assert ex.answer in listed[:2], (ex.question, ex.answer)
        return listed.index(ex.answer)
    assert re.fullmatch(r"(image|video|reply|answer|option|candidate|response) [12]", ex.answer)
    return int(ex.answer[-1]) - 1


def test_varied_instructions_answer_what_the_images_show() -> None:
    """The `pick_*` skills ask in many wordings and reply formats; whatever the form, the named
    item is the clean one showing the caption (pick_image) or the reply that is right
    (pick_answer_image), both positions and several formats occur, and no question repeats
    one layout for every example."""
    config = ShapesConfig(frames=4)
    rng = np.random.default_rng(7)
    positions: Counter = Counter()
    forms: Counter = Counter()
    caption = re.compile(r"an? (\w+) \w+ at the (top left|top right|bottom left|bottom right)")
    for _ in range(120):
        ex = perception_example(rng, config, SEEN_COMBOS, mix={"pick_image": 1.0})
        k = _picked(ex)
        positions[("image", k)] += 1
        forms[ex.answer.replace("2", "1")] += 1
        colour, quadrant = caption.search(ex.question).groups()
        pixels = np.asarray(ex.items[k][0], dtype=np.float32)
        assert _clean_pixels(pixels), ex.question
        assert _read(ex.items[k]) == (colour, quadrant), ex.question
    for _ in range(120):
        ex = perception_example(rng, config, SEEN_COMBOS, mix={"pick_answer_image": 1.0})
        k = _picked(ex)
        positions[("reply", k)] += 1
        replies = re.findall(r"^\w+ [12]: (.+)$", ex.question, flags=re.M)
        colour, quadrant = _read(ex.items[0])
        if "What colour is the shape?" in ex.question:
            assert replies[k] == colour, ex.question
        elif "Where is the shape?" in ex.question:
            assert replies[k] == quadrant, ex.question
    assert all(positions[(kind, k)] >= 30 for kind in ("image", "reply") for k in (0, 1))
    assert len(forms) >= 6, forms
