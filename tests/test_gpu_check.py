"""bench/gpu_check.py on the CPU path (`--small`): every phase runs through the project's own
training path in its own subprocess and reports steps/s, tokens/s and MFU against
`--peak-tflops`; ZeRO-2 is skipped with its reason where CUDA is missing. (The full size wants
one H100: docs/production.md.)

    .venv/bin/pytest tests/test_gpu_check.py -q
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "bench" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_training_flops_counts_parameters_attention_and_patches() -> None:
    g = _gpu_check()
    assert g.training_flops(1_000, 0, 2, 8, [10, 20], 0) == 6 * 1000 * 30 + 12 * 2 * 8 * 500
    assert g.training_flops(0, 50, 1, 1, [], 4) == 6 * 50 * 4


@pytest.mark.timeout(300)
def test_small_check_runs_every_phase_on_cpu(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA machine runs the real check")
    out = tmp_path / "gpu-check.json"
    report = _gpu_check().main(["--small", "--peak-tflops", "0.5", "--json", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(report))
    sft = report["sft"]
    assert sft["device"] == "cpu" and sft["steps"] == 3
    assert sft["steps_per_s"] > 0 and sft["tokens_per_s"] > sft["steps_per_s"]
    assert sft["mfu"] == pytest.approx(sft["model_tflops_per_s"] / 0.5)
    assert "needs CUDA" in report["zero2"]["skipped"]
    assert report["grpo"]["steps"] == 2 and report["grpo"]["steps_per_s"] > 0
    assert sum(report["parameters"].values()) > 0 and report["small"]


def test_unknown_phase_is_refused() -> None:
    with pytest.raises(SystemExit):
        _gpu_check().parse(["--small", "--phases", "sft,zero4"])
