"""vLLM's offline engine (serving.offline) as evaluate's `vllm` backend and rejection_sample's
`vllm_offline` backend: greedy verdicts identical to batched `generate` on the same model and
prompts (a benchmark-layout fixture: images, 16-frame video pairs, answers), k samples per item,
and a missing venv or a failing engine reported with the fix. Each engine start takes ~40-70 s
on 2 cores.

    make serve-venv && .venv/bin/pytest tests/test_offline_engine.py -q
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from benchmark_layout import SIZES, make_benchmark_dir
from unireward.eval import benchmark
from unireward.eval.evaluate import EvaluateConfig
from unireward.serving import offline

ROOT = Path(__file__).resolve().parents[1]
BASE = ROOT / "models" / "base-tiny"  # head_dim 32: vLLM's CPU attention needs >= 32
VLLM_PYTHON = ROOT / ".venv-serve" / "bin" / "python"
needs_vllm = pytest.mark.skipif(
    not VLLM_PYTHON.exists(), reason="vLLM venv missing: run `make serve-venv` (make test does)"
)


def _config(**kw) -> EvaluateConfig:
    base = {"max_new_tokens": 8, "vllm_python": str(VLLM_PYTHON), "tracking_uri": "null"}
    return EvaluateConfig(**{**base, **kw})


@pytest.mark.integration  # starts vLLM's offline engine once (~60 s)
@pytest.mark.timeout(900)
@needs_vllm
def test_vllm_backend_gives_the_verdicts_of_batched_generate(tmp_path: Path) -> None:
    src = make_benchmark_dir(tmp_path / "src")
    results = {
        backend: benchmark.run(_config(backend=backend), BASE, src, tmp_path / backend)
        for backend in ("generate", "vllm")
    }
    rows = {b: pd.read_parquet(tmp_path / b / "predictions.parquet") for b in results}
    assert len(rows["vllm"]) == sum(n for n, _ in SIZES.values())
    for column in ("pred", "pred_swapped"):
        assert rows["vllm"][column].tolist() == rows["generate"][column].tolist(), column
    assert results["vllm"].table == results["generate"].table
    # the shipped base answers with words, not verdicts, mostly: the texts are compared too
    same = (rows["vllm"]["text"] == rows["generate"]["text"]).mean()
    assert same >= 0.9, f"generate and vLLM wrote the same text for only {same:.0%}"
    assert (tmp_path / "vllm" / offline.LOG_FILE).exists()


@pytest.mark.integration  # starts vLLM's offline engine once (~60 s)
@pytest.mark.timeout(900)
@needs_vllm
def test_rejection_sampling_offline_samples_k_per_item(shapes_dataset: Path, tmp_path) -> None:
    from test_rejection_sample import sample_k_per_item

    sample_k_per_item("vllm_offline", shapes_dataset, tmp_path)
    assert (tmp_path / offline.LOG_FILE).exists()


def test_a_missing_vllm_venv_names_the_fix(tiny_model_dir: Path, tmp_path: Path) -> None:
    config = _config(backend="vllm", vllm_python=str(tmp_path / "none" / "bin" / "python"))
    with pytest.raises(FileNotFoundError, match="make serve-venv"):
        benchmark.run(config, tiny_model_dir, tmp_path / "src", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_failing_engine_raises_with_its_log(tiny_model_dir: Path, tmp_path: Path) -> None:
    """A worker that exits non-zero (here: a stand-in interpreter) -> OfflineEngineError."""
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\necho 'engine failed to start: no such model' >&2\nexit 3\n")
    fake.chmod(0o755)
    params = offline.EngineParams(vllm_python=str(fake))
    with pytest.raises(offline.OfflineEngineError, match=r"code 3(.|\n)*no such model"):
        offline.generate(tiny_model_dir, [], params, tmp_path / "work")


def test_engine_settings_validate() -> None:
    with pytest.raises(ValueError, match="backend must be one of"):
        _config(backend="vllm-server")
    with pytest.raises(ValueError, match="kv_cache_gib"):
        _config(vllm_kv_cache_gib=0)
    kwargs = offline.engine_kwargs(_config().engine_params(), max_images=16)
    assert kwargs["trust_remote_code"] is False
    assert kwargs["limit_mm_per_prompt"] == {"image": 16, "video": 0}
    assert kwargs["dtype"] == "float32"  # evaluate's dtype: the weights generate sees
