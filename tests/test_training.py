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
from unireward.training import TrainParams, example_stream, latest_checkpoint, train_sft


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


@pytest.mark.parametrize("stop_at", [2, 4])
def test_a_resumed_run_ends_where_an_uninterrupted_one_does(
    tiny_model_dir: Path, tmp_path: Path, stop_at: int
) -> None:
    straight, processor = load_checkpoint(tiny_model_dir)
    train_sft(straight, processor, example_stream(_make), _params(), tmp_path / "a")

    first, _ = load_checkpoint(tiny_model_dir)
    train_sft(
        first, processor, example_stream(_make), _params(), tmp_path / "b", [_StopAt(stop_at)]
    )
    assert latest_checkpoint(tmp_path / "b").name == f"checkpoint-{stop_at}"

    # A fresh process would start from the base weights: so does the resumed model here.
    resumed, _ = load_checkpoint(tiny_model_dir)
    assert any("visual" in k for k in _differing(resumed, first))
    outcome = train_sft(resumed, processor, example_stream(_make), _params(), tmp_path / "b")
    assert outcome.resumed_from.endswith(f"checkpoint-{stop_at}")
    assert outcome.global_step == 4
    assert _differing(resumed, straight, atol=1e-6) == []
