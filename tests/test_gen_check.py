"""The programmatic caption checker of generated images (unireward.genpolicy.check), on rendered
shapes-world scenes: every colour, shape and position, at the policy's and the judge's sizes."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from PIL import Image

from unireward.data.shapes import BACKGROUND_RGB, COLOUR_RGB, POSITIONS, SHAPES, Scene, render_image
from unireward.genpolicy.check import alignment, read_image


@pytest.mark.parametrize("size", [32, 64])
def test_every_rendered_scene_is_read_right(size: int) -> None:
    wrong = []
    for i, (colour, shape, position) in enumerate(itertools.product(COLOUR_RGB, SHAPES, POSITIONS)):
        for repeat in range(3):
            scene = Scene(shape, colour, position=position)
            image = render_image(scene, size, np.random.default_rng([size, i, repeat]))
            score = alignment(read_image(image), scene)
            if score["all"] != 1.0:
                wrong.append((scene, read_image(image)))
    assert not wrong, wrong[:3]


def test_a_wrong_caption_scores_only_the_attributes_it_shares() -> None:
    image = render_image(Scene("circle", "red", "top left"), 64, np.random.default_rng(0))
    reading = read_image(image)
    score = alignment(reading, Scene("square", "red", "bottom left"))
    assert score == {"colour": 1.0, "shape": 0.0, "position": 0.0, "all": 0.0}


def test_nothing_drawn_is_wrong_on_every_attribute() -> None:
    blank = Image.new("RGB", (32, 32), BACKGROUND_RGB)
    reading = read_image(blank)
    assert (reading.colour, reading.shape, reading.position) == (None, None, None)
    assert alignment(reading, Scene("circle", "red", "top left"))["all"] == 0.0


def test_specks_of_noise_are_not_the_shape() -> None:
    rng = np.random.default_rng(1)
    arr = np.asarray(render_image(Scene("triangle", "blue", "bottom right"), 64, rng)).copy()
    arr[2, 2] = arr[5, 60] = (250, 250, 250)  # two white specks far from the shape
    reading = read_image(arr)
    assert (reading.colour, reading.shape, reading.position) == (
        "blue",
        "triangle",
        "bottom right",
    )


def test_bad_input_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="RGB image"):
        read_image(np.zeros((8, 8)))
    reading = read_image(Image.new("RGB", (8, 8)))
    with pytest.raises(ValueError, match="has a position"):
        alignment(reading, Scene("circle", "red", motion="left"))


def test_every_position_name_is_a_quadrant() -> None:
    assert set(POSITIONS) == {f"{v} {h}" for v in ("top", "bottom") for h in ("left", "right")}
    assert set(SHAPES) == {"circle", "square", "triangle", "cross"}
