"""`unireward.launch`: a training stage in one process per GPU (torchrun) from inside its task.

On CPU the same path runs as 2 gloo processes (DDP): both train, the main one writes one
checkpoint and the result the component reads. No GPU needed.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from unireward import launch


def test_one_process_on_cpu_and_inside_a_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    assert launch.processes("cpu") == 1
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert launch.processes("cuda") == 1  # a worker never launches workers of its own


def test_the_command_is_torchrun_of_the_worker(tmp_path: Path) -> None:
    cmd = launch.command(tmp_path / "spec.json", 8)
    assert cmd[1:5] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=8"]
    assert cmd[-3:] == ["-m", "unireward.launch", str(tmp_path / "spec.json")]


def test_a_task_works_under_the_checkpoint_root_and_moves_the_model_out_when_done(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    out = tmp_path / "artifact"
    monkeypatch.delenv("UNIREWARD_CHECKPOINT_ROOT", raising=False)
    with launch.work_dir(out, "s3://bucket/run/judge") as work:
        assert work == out  # no PVC: the artifact itself
    monkeypatch.setenv("UNIREWARD_CHECKPOINT_ROOT", str(tmp_path / "pvc"))
    with pytest.raises(RuntimeError), launch.work_dir(out, "s3://bucket/run/judge") as work:
        (work / "checkpoint-1").mkdir(parents=True)
        raise RuntimeError("preempted")
    assert (work / "checkpoint-1").is_dir() and not out.exists()  # kept for the retry
    with launch.work_dir(out, "s3://bucket/run/judge") as retry:
        assert retry == work and retry.parent == tmp_path / "pvc"  # the retry finds it
        (retry / "model.safetensors").write_text("weights")
    assert (out / "model.safetensors").read_text() == "weights" and not work.exists()


def test_results_travel_as_data_without_weights() -> None:
    from unireward.judge.unified_sft import SftResult
    from unireward.training import TrainOutcome

    result = SftResult(
        Path("/x"), 3, TrainOutcome(global_step=5, resumed_from=None, state_dict={"w": object()})
    )
    back = launch._namespace(json.loads(json.dumps(launch._plain(result))))
    assert back.train.global_step == 5 and back.model_dir == "/x" and back.n_records == 3
    assert not hasattr(back.train, "state_dict")


def _config(steps: int):
    from unireward.judge.unified_sft import CaptionCurriculum, UnifiedSftConfig
    from unireward.training import TrainParams

    return UnifiedSftConfig(
        train=TrainParams(max_steps=steps, batch_size=2, save_steps=steps, logging_steps=1),
        caption_curriculum=CaptionCurriculum(hold_steps=0, anneal_steps=0),
        tracking_uri="null",
    )


def test_unified_sft_in_two_processes(
    tiny_model_dir: Path, shapes_dataset: Path, tmp_path: Path
) -> None:
    from unireward.config import from_dict
    from unireward.judge.unified_sft import UnifiedSftConfig
    from unireward.model.tiny import load_checkpoint

    config = from_dict(UnifiedSftConfig, dataclasses.asdict(_config(2)), where="unified_sft")
    out = tmp_path / "judge"
    result = launch.run(
        "unireward.judge.unified_sft",
        config,
        "cpu",
        nproc=2,
        base_model_dir=tiny_model_dir,
        dataset_dir=shapes_dataset,
        output_dir=out,
    )
    assert result.train.global_step == 2 and result.train.world_size == 2
    info = json.loads((out / "unireward.json").read_text())
    assert info["world_size"] == 2 and info["global_step"] == 2
    load_checkpoint(out)  # one complete checkpoint, written once


def test_a_failing_worker_fails_the_launch(tiny_model_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="torchrun exit"):
        launch.run(
            "unireward.judge.unified_sft",
            _config(1),
            "cpu",
            nproc=2,
            base_model_dir=tiny_model_dir,
            dataset_dir=tmp_path / "missing",
            output_dir=tmp_path / "judge",
        )
