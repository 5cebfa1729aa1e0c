"""What a generated shapes-world image shows, read off its pixels: the independent measure of a
text-to-image policy's caption alignment (issue 22), the judge's scores being the other, not
independent, one.

    from unireward.genpolicy.check import read_image, alignment
    seen = read_image(image)            # Reading(colour="red", shape="circle", position=...)
    alignment(seen, scene)              # {"colour": 1.0, "shape": 0.0, "position": 1.0, "all": 0.0}

How each attribute is read, on the image's own pixels at any size:
- the foreground: pixels more than `FOREGROUND` (per channel) away from the world's dark
  background; its largest connected region is the shape (specks of noise are left out);
  a region under `MIN_AREA` of the image is nothing drawn (every attribute wrong);
- colour: the region's median RGB, nearest of the world's colours (`shapes.COLOUR_RGB`);
- position: the quadrant of the region's centroid;
- shape, from the region's moments (the rendered shapes' own geometry, `shapes._shape_mask`):
  a square fills its bounding box (extent ~1), a circle fills pi/4 of it, a triangle points up
  (its centroid sits a sixth of its height below the box centre), a cross fills ~0.56 with its
  centroid at the centre.
Tested on rendered scenes of every colour, shape and position at the sizes the policies use
(tests/test_gen_check.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from unireward.data.shapes import BACKGROUND_RGB, COLOUR_RGB, POSITIONS, Scene

FOREGROUND = 48  # per-channel distance from the background that counts as drawn
MIN_AREA = 0.01  # share of the image below which nothing is drawn
ATTRIBUTES = ("colour", "shape", "position")


@dataclass(frozen=True)
class Reading:
    """What an image shows (None: nothing drawn), and the shape features it was read from."""

    colour: str | None
    shape: str | None
    position: str | None
    area: float = 0.0  # the region's share of the image
    extent: float = 0.0  # region area / bounding-box area
    drop: float = 0.0  # (centroid row - box centre row) / box height


def _largest_region(mask: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    labels, count = ndimage.label(mask)
    if count <= 1:
        return mask
    sizes = ndimage.sum_labels(mask, labels, index=np.arange(1, count + 1))
    return labels == (int(np.argmax(sizes)) + 1)


def classify_shape(extent: float, drop: float) -> str:
    """The shape of a region from its extent and its centroid's drop (see the module doc)."""
    if extent >= 0.9:
        return "square"
    if drop >= 0.08:
        return "triangle"
    if extent >= 0.67:
        return "circle"
    return "cross"


def read_image(image: Image.Image | np.ndarray) -> Reading:
    """Read colour, shape and position off `image` (RGB; any size)."""
    arr = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"expected an RGB image (H, W, 3), got an array of shape {arr.shape}")
    pixels = arr.astype(np.int16)
    drawn = (np.abs(pixels - np.array(BACKGROUND_RGB, np.int16)) > FOREGROUND).any(axis=2)
    height, width = drawn.shape
    if drawn.sum() < MIN_AREA * height * width:
        return Reading(None, None, None)
    region = _largest_region(drawn)
    area = float(region.sum())
    if area < MIN_AREA * height * width:
        return Reading(None, None, None, area=area / (height * width))
    ys, xs = np.nonzero(region)
    median = np.median(pixels[region], axis=0)
    names = list(COLOUR_RGB)
    palette = np.array([COLOUR_RGB[n] for n in names], np.float32)
    colour = names[int(np.argmin(((palette - median) ** 2).sum(axis=1)))]
    cy, cx = ys.mean() + 0.5, xs.mean() + 0.5
    vertical = "bottom" if cy >= height / 2 else "top"
    horizontal = "right" if cx >= width / 2 else "left"
    position = f"{vertical} {horizontal}"
    assert position in POSITIONS
    box_h, box_w = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
    extent = area / float(box_h * box_w)
    drop = (cy - (ys.min() + box_h / 2)) / box_h
    return Reading(
        colour,
        classify_shape(extent, drop),
        position,
        area=area / (height * width),
        extent=extent,
        drop=drop,
    )


def alignment(reading: Reading, scene: Scene) -> dict[str, float]:
    """1.0 / 0.0 per attribute the caption's `scene` names, and "all" (every one right)."""
    if scene.position is None:
        raise ValueError(f"an image caption has a position, got {scene}")
    out = {name: float(getattr(reading, name) == getattr(scene, name)) for name in ATTRIBUTES}
    out["all"] = float(all(out[name] for name in ATTRIBUTES))
    return out
