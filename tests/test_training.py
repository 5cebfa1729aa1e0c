"""train_sft resumes exactly: every weight (the vision tower included) comes back from the
checkpoint, and a run stopped at a checkpoint and resumed ends where an uninterrupted run ends."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import TrainerCallback

from unireward.data import shapes
from unireward.model.pretrain_base import perception_to_example
from unireward.model.tiny import load_checkpoint
from unireward.training import (
    TrainParams,
    example_stream,
    latest_checkpoint,
    resume_offset,
    train_sft,
)


def _make(i: int) -> dict:
    rng = np.random.default_rng([0, i])
    return perception_to_example(shapes.perception_example(rng, shapes.ShapesConfig(frames=4)))


class _StopAt(TrainerCallback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= self.step:
            control.should_training_stop = True
        return control


def _params(**kw) -> TrainParams:
    base = {"max_steps": 4, "batch_size": 2, "save_steps": 2, "learning_rate": 1e-2}
    return TrainParams(**{**base, **kw})


def _differing(a: torch.nn.Module, b: torch.nn.Module, atol: float = 0.0) -> list[str]:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    return [k for k in sa if not torch.allclose(sa[k], sb[k], rtol=0, atol=atol)]


@pytest.mark.parametrize(("stop_at", "workers"), [(2, 0), (4, 0), (2, 2)])
def test_a_resumed_run_ends_where_an_uninterrupted_one_does(
    tiny_model_dir: Path, tmp_path: Path, stop_at: int, workers: int
) -> None:
    params = _params(dataloader_workers=workers)
    shards = max(1, workers)
    straight, processor = load_checkpoint(tiny_model_dir)
    train_sft(straight, processor, example_stream(_make, shards), params, tmp_path / "a")

    first, _ = load_checkpoint(tiny_model_dir)
    stream = example_stream(_make, shards)
    train_sft(first, processor, stream, params, tmp_path / "b", [_StopAt(stop_at)])
    assert latest_checkpoint(tmp_path / "b").name == f"checkpoint-{stop_at}"

    # A fresh process would start from the base weights: so does the resumed model here.
    resumed, _ = load_checkpoint(tiny_model_dir)
    assert any("visual" in k for k in _differing(resumed, first))
    drawn: list[int] = []
    outcome = train_sft(
        resumed, processor, example_stream(_record(drawn), shards), params, tmp_path / "b"
    )
    assert outcome.resumed_from.endswith(f"checkpoint-{stop_at}")
    assert outcome.global_step == 4
    assert _differing(resumed, straight, atol=1e-6) == []
    if workers == 0:  # (workers draw in their own processes)
        # The resumed stream starts at the checkpoint's row: nothing trained on is rendered again.
        assert min(drawn) == stop_at * params.batch_size


def _record(drawn: list[int]):
    def make(i: int) -> dict:
        drawn.append(i)
        return _make(i)

    return make


@pytest.mark.parametrize(
    ("workers", "shards", "world", "step", "offset"),
    [
        (0, 1, "1", 6, 6 * 16),  # one stream, batch b = rows 16b .. 16b + 15
        (1, 1, "1", 6, 6 * 16),
        (2, 2, "1", 6, 3 * 16),  # each worker's shard has given 3 batches
        (2, 2, "1", 5, None),  # a fresh DataLoader restarts at worker 0: not the same order
        (2, 1, "1", 6, None),  # two workers on one shard: not our layout
        (0, 1, "2", 6, None),  # several processes: accelerate splits the batches
    ],
)
def test_resume_offset_is_exact_or_refused(
    monkeypatch: pytest.MonkeyPatch, workers: int, shards: int, world: str, step: int, offset
) -> None:
    monkeypatch.setenv("WORLD_SIZE", world)
    params = TrainParams(batch_size=16, dataloader_workers=workers)
    assert resume_offset(example_stream(_make, shards), params, step) == offset


def test_a_stream_starts_at_its_offset() -> None:
    drawn: list[int] = []
    rows = iter(example_stream(_record(drawn)).dataset(start=5))
    [next(rows) for _ in range(3)]
    assert drawn == [5, 6, 7]
    # Each shard starts at its own `start`-th row (one reader takes shard 0 first: 0, 2, 4, ...).
    drawn.clear()
    rows = iter(example_stream(_record(drawn), shards=2).dataset(start=3))
    [next(rows) for _ in range(3)]
    assert drawn == [6, 8, 10]
