"""One process per GPU for a training stage, launched from inside its Kubeflow task.

A task on a node with N GPUs (`deploy.resources.<stage>.gpus`) runs its stage in N processes
under `torch.distributed.run` (torchrun), one per GPU, with the stage's DeepSpeed config (or
DDP) across them; with one GPU, or on CPU, the stage runs in the task's own process.

    from unireward import launch
    result = launch.run("unireward.judge.unified_sft", config, device=config.train.device,
                        base_model_dir=..., dataset_dir=..., output_dir=...)

The workers run `python -m unireward.launch SPEC`: the stage module's `run(config, **paths)`
with the config rebuilt from the spec (validated again, like params); rank 0 writes the stage's
result as JSON, which `run` hands back as attributes (`result.train.global_step`). A worker
that fails fails the task with torchrun's exit code; the stage's checkpoints make a retry
resume.

    with launch.work_dir(Path(judge.path), judge.uri) as work:
        result = launch.run(..., output_dir=work)

`work_dir` is where a training task writes: with UNIREWARD_CHECKPOINT_ROOT set (a PVC on a
cluster) a directory there keyed by the output artifact's URI, so a retried task resumes from
its last checkpoint; the finished model is then moved into the artifact.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any


def processes(device: str) -> int:
    """Processes a stage on `device` should run in: one per visible GPU, one on CPU, and one
    inside a worker that torchrun already started."""
    if device != "cuda" or "LOCAL_RANK" in os.environ:
        return 1
    import torch

    return max(1, torch.cuda.device_count())


def _plain(value: Any) -> Any:
    """A stage result as JSON-able data; weights (a gathered `state_dict`) are left out."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: _plain(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if f.name != "state_dict"
        }
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def _namespace(value: Any) -> Any:
    if isinstance(value, dict):
        return SimpleNamespace(**{k: _namespace(v) for k, v in value.items()})
    if isinstance(value, list):
        return [_namespace(v) for v in value]
    return value


def command(spec: Path, nproc: int) -> list[str]:
    """The torchrun command line for `nproc` workers of `spec` (one node, a free port)."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        "-m",
        "unireward.launch",
        str(spec),
    ]


def run(module: str, config: Any, device: str, nproc: int | None = None, **paths: Path) -> Any:
    """`<module>.run(config, **paths)`, in this process or in `nproc` (default: `processes`)."""
    nproc = processes(device) if nproc is None else nproc
    stage = importlib.import_module(module)
    if nproc <= 1:
        return stage.run(config, **paths)
    with tempfile.TemporaryDirectory(prefix="unireward-launch-") as tmp:
        spec = Path(tmp) / "spec.json"
        result = Path(tmp) / "result.json"
        spec.write_text(
            json.dumps(
                {
                    "module": module,
                    "config_class": type(config).__name__,
                    "config": dataclasses.asdict(config),
                    "paths": {name: str(path) for name, path in paths.items()},
                    "result": str(result),
                }
            )
        )
        done = subprocess.run(command(spec, nproc), check=False)
        if done.returncode != 0:
            raise RuntimeError(
                f"{module} failed in {nproc} processes (torchrun exit {done.returncode}); its "
                "checkpoints are kept: a retry resumes"
            )
        return _namespace(json.loads(result.read_text()))


@contextmanager
def work_dir(output: Path, uri: str) -> Iterator[Path]:
    """The directory a Kubeflow training task works in for its output artifact at `output`
    (URI `uri`): `output` itself, or with UNIREWARD_CHECKPOINT_ROOT set, a directory there keyed
    by the URI (a retry of the task finds its checkpoints), moved into `output` when the block
    ends without an error (after one, the checkpoints stay for the retry)."""
    root = os.environ.get("UNIREWARD_CHECKPOINT_ROOT")
    work = Path(root) / hashlib.sha256(uri.encode()).hexdigest()[:16] if root else output
    yield work
    if work != output:
        shutil.copytree(work, output, dirs_exist_ok=True)
        shutil.rmtree(work)


def worker(spec_path: Path) -> None:
    """One torchrun worker: the stage from the spec; rank 0 records the result."""
    from unireward.config import from_dict

    spec = json.loads(Path(spec_path).read_text())
    stage = importlib.import_module(spec["module"])
    config = from_dict(getattr(stage, spec["config_class"]), spec["config"], where=spec["module"])
    result = stage.run(config, **{name: Path(p) for name, p in spec["paths"].items()})
    if int(os.environ.get("RANK", "0")) == 0:
        Path(spec["result"]).write_text(json.dumps(_plain(result)))


if __name__ == "__main__":
    worker(Path(sys.argv[1]))
