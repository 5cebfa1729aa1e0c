"""The frozen vision tower's outputs cached per image (unireward.model.vision_cache): the same
outputs as the tower, in any mix of new and cached items, for both Qwen-VL families; bounded;
refused where the tower is not a fixed function; off again after training."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from unireward.model.tiny import TinyModelConfig, build_tiny, load_checkpoint
from unireward.model.vision_cache import VisionCache, find_tower
from unireward.training import ScaleParams, TrainParams, freeze, train_sft

CORPUS = ["Image 1: a red circle at the top left. Which image is better?"] * 20


@pytest.fixture(scope="module", params=["qwen2_5_vl", "qwen3_vl"])
def frozen(request):
    size = 64 if request.param == "qwen3_vl" else 56
    model, processor = build_tiny(
        TinyModelConfig.preset("test", family=request.param, image_size=size), CORPUS
    )
    freeze(model, ScaleParams(freeze_vision=True, freeze_merger=True))
    return model, processor, size


def _pixels(processor, seeds: list[int], size: int):
    """Processor pixel rows and grids for one random image per seed (two sizes mixed)."""
    images = []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        width = size * 2 if seed % 2 else size
        images.append(Image.fromarray(rng.integers(0, 255, (size, width, 3), dtype=np.uint8)))
    out = processor.image_processor(images=images, return_tensors="pt")
    return out["pixel_values"], out["image_grid_thw"]


def _assert_same(got, want) -> None:
    assert type(got) is type(want)
    for key, value in want.items():
        if isinstance(value, torch.Tensor):
            torch.testing.assert_close(got[key], value, rtol=1e-5, atol=1e-5)
        else:
            assert len(got[key]) == len(value) > 0
            for a, b in zip(got[key], value, strict=True):
                torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_cached_outputs_equal_the_towers_in_any_mix_of_new_and_seen_items(frozen) -> None:
    model, processor, size = frozen
    tower = find_tower(model)
    first, grid_first = _pixels(processor, [0, 1, 2], size)
    mixed, grid_mixed = _pixels(processor, [2, 3, 0, 3], size)  # seen, new, seen, new again
    with torch.no_grad():
        want_first = tower(first, grid_thw=grid_first, return_dict=True)
        want_mixed = tower(mixed, grid_thw=grid_mixed, return_dict=True)
    cache = VisionCache.install(model, max_items=100)
    try:
        with torch.no_grad():
            _assert_same(tower(first, grid_thw=grid_first, return_dict=True), want_first)
            assert cache.stats() == {"hits": 0, "misses": 3, "items": 3}
            _assert_same(tower(mixed, grid_thw=grid_mixed, return_dict=True), want_mixed)
            # 2 and 0 come from the cache; 3 is new, encoded once though the batch has it twice
            assert cache.stats() == {"hits": 3, "misses": 3 + 1, "items": 4}
    finally:
        cache.remove()
    assert "forward" not in tower.__dict__, "the tower's own forward is back"


def test_the_model_forward_is_unchanged_and_the_cache_is_bounded(frozen, vl_inputs) -> None:
    model, processor, size = frozen
    inputs = vl_inputs(processor, n_images=2, size=size)
    with torch.no_grad():
        want = model(**inputs).logits
    cache = VisionCache.install(model, max_items=1)
    try:
        with torch.no_grad():
            for _ in range(2):
                torch.testing.assert_close(model(**inputs).logits, want, rtol=1e-5, atol=1e-5)
        assert cache.stats()["items"] == 1, "least recently used out past max_items"
    finally:
        VisionCache.uninstall(model)
    assert "forward" not in find_tower(model).__dict__


def test_refused_where_the_tower_is_not_a_fixed_function() -> None:
    model, _ = build_tiny(TinyModelConfig.preset("test"), CORPUS)
    with pytest.raises(ValueError, match="trainable"):
        VisionCache.install(model, max_items=10)
    freeze(model, ScaleParams(freeze_vision=True, freeze_merger=True))
    with pytest.raises(ValueError, match="max_items must be >= 1"):
        VisionCache.install(model, max_items=0)
    VisionCache.install(model, max_items=10)
    with pytest.raises(ValueError, match="already has a cache"):
        VisionCache.install(model, max_items=10)
    with pytest.raises(ValueError, match="no Qwen-VL vision tower"):
        VisionCache.install(torch.nn.Linear(2, 2), max_items=10)


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"scale": {"vision_cache_items": -1}}, "vision_cache_items must be >= 0"),
        ({"scale": {"vision_cache_items": 10, "freeze_vision": True}}, "needs freeze_vision"),
        (
            {
                "deepspeed": "configs/deepspeed/zero3.json",
                "scale": {"vision_cache_items": 10, "freeze_vision": True, "freeze_merger": True},
            },
            "ZeRO-3",
        ),
    ],
)
def test_settings_that_cannot_cache_are_errors(settings: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        scale = settings.get("scale")
        if isinstance(scale, dict):
            scale = ScaleParams(**scale)
        TrainParams(**{**settings, "scale": scale})


def _rows(processor, n: int = 8) -> list[dict]:
    """Image-understanding-like rows: 4 images, each in two rows (a pair and its swap)."""
    rng = np.random.default_rng(0)
    images = [
        Image.fromarray(rng.integers(0, 255, (56, 56, 3), dtype=np.uint8)) for _ in range(n // 2)
    ]
    return [
        {
            "prompt": [
                {
                    "role": "user",
                    "content": [{"type": "image"}, {"type": "text", "text": "Which is better?"}],
                }
            ],
            "completion": [
                {"role": "assistant", "content": [{"type": "text", "text": f"Image {i % 2 + 1}"}]}
            ],
            "images": [images[i // 2]],
        }
        for i in range(n)
    ]


def test_a_judge_trains_the_same_with_the_cache(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two epochs of 8 rows, with and without the cache: the same losses and weights; the
    saved weights keep their names and the tower its own forward."""
    from datasets import Dataset

    removed = []
    remove = VisionCache.remove
    monkeypatch.setattr(
        VisionCache, "remove", lambda self: (removed.append(self.stats()), remove(self))
    )

    losses, weights = {}, {}
    for items in (0, 1000):
        scale = ScaleParams(freeze_vision=True, freeze_merger=True, vision_cache_items=items)
        params = TrainParams(
            max_steps=4,
            batch_size=4,
            learning_rate=1e-2,
            lr_scheduler="constant",
            warmup_ratio=0.0,
            save_steps=10,
            logging_steps=1,
            scale=scale,
        )
        model, processor = load_checkpoint(tiny_model_dir)
        outcome = train_sft(
            model, processor, Dataset.from_list(_rows(processor)), params, tmp_path / str(items)
        )
        losses[items] = [e["loss"] for e in outcome.log_history if "loss" in e]
        weights[items] = {n: p.detach().clone() for n, p in model.named_parameters()}
        assert "forward" not in find_tower(model).__dict__
        assert all(p.requires_grad for p in model.parameters())
    assert len(losses[0]) == 4
    # 16 examples of 4 distinct images: each encoded once, the other 12 from the cache
    assert removed == [{"hits": 12, "misses": 4, "items": 4}]
    np.testing.assert_allclose(losses[1000], losses[0], rtol=1e-4)
    assert weights[1000].keys() == weights[0].keys()
    for name, value in weights[0].items():
        torch.testing.assert_close(weights[1000][name], value, rtol=1e-4, atol=1e-5)


def test_the_training_benchmark_runs_and_reports_both_settings(tmp_path: Path) -> None:
    """`make bench-train` at a toy size: both settings timed, the cache used."""
    import importlib.util

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location(
        "train_step_bench", root / "bench/train_step_bench.py"
    )
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "bench.json"
    report = bench.main(["--steps", "6", "--repeats", "1", "--records", "2", "--json", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(report))
    assert len(report["s_per_step"]["off"]) == len(report["s_per_step"]["on"]) == 1
    assert report["speedup_on_vs_off"] > 0
    [cache] = report["cache"]
    assert cache["hits"] > 0 and cache["misses"] > 0
