"""`build_pairs` with the served judge: the stage starts the real vLLM CPU server on a judge
checkpoint (here the shipped base, a judge at chance), asks it through `RewardClient` for pair
verdicts in both orders and pointwise scores, and stops it. Slow: one vLLM start (~40-60 s).

    make serve-venv && .venv/bin/pytest tests/test_build_pairs_served.py -q -m slow
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from unireward.policy import pairs as P

ROOT = Path(__file__).resolve().parents[1]
VLLM_PYTHON = ROOT / ".venv-serve" / "bin" / "python"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.integration,
    pytest.mark.skipif(not VLLM_PYTHON.exists(), reason="run `make serve-venv` first"),
]


def _serve_config(key_env: str):
    from unireward.serving.serve import ServeConfig

    return ServeConfig(
        api_key_env=key_env,
        vllm_python=str(VLLM_PYTHON),
        max_num_seqs=16,
        max_images_per_prompt=4,
        max_image_pixels=112 * 112,
        startup_timeout_s=240,
    )


def test_build_pairs_serves_the_judge_and_counts_every_verdict(tmp_path: Path) -> None:
    from unireward.policy.build_pairs import BuildPairsConfig, load_pairs, run

    key_env = "UNIREWARD_TEST_PAIRS_KEY"
    os.environ.pop(key_env, None)  # the stage makes its own key for its own server
    serve_cfg = _serve_config(key_env)
    cfg = BuildPairsConfig(judge="served", prompts=12, samples=6, tracking_uri="null")
    result = run(
        cfg, ROOT / "models" / "policy-tiny", tmp_path, ROOT / "models" / "base-tiny", serve_cfg
    )
    stats = result.stats
    assert stats["request_errors"] == 0 and stats["pairs_judged"] > 0
    assert stats["scores_asked"] > 0
    dropped = sum(stats[f"dropped_{s}"] for s in P.STATUSES if s != "kept")
    assert stats["decided_kept"] + dropped == 12
    # every pair verdict is a side, a tie (incl. swap disagreements) or unparseable, counted
    assert stats["swap_disagreements"] <= stats["pair_ties"] <= stats["pairs_judged"]
    assert len(load_pairs(tmp_path / "pairs.parquet")) == stats["kept"]
    served = json.loads((tmp_path / "serve" / "serve.json").read_text())
    assert served["served_model_name"] == "UnifiedReward"
    assert key_env not in os.environ  # the stage's key did not leak into the environment
    with pytest.raises(ProcessLookupError):
        os.kill(served["pid"], 0)  # the server is gone


def test_build_pairs_fails_clearly_when_the_vllm_judge_is_killed_mid_stage(tmp_path: Path) -> None:
    """The real vLLM server is SIGKILLed (its whole process group: a dead node) once the stage's
    first verdict requests reach it: the client retries with backoff, then `JudgeUnavailable`,
    and no pair file (issue 21, item 2)."""
    import os
    import signal
    import threading
    import time

    from unireward.policy.build_pairs import BuildPairsConfig, JudgeClientParams, run
    from unireward.serving import serve
    from unireward.serving.client import JudgeUnavailable

    key_env = "UNIREWARD_TEST_KILLED_KEY"
    os.environ[key_env] = "killed-judge-key"
    serve_cfg = _serve_config(key_env)
    killed = threading.Event()
    try:
        with serve.run(serve_cfg, tmp_path / "serve", ROOT / "models" / "base-tiny") as server:

            def kill_when_asked() -> None:
                deadline = time.monotonic() + 300
                while time.monotonic() < deadline:
                    if "/v1/chat/completions" in server.log_path.read_text(errors="replace"):
                        os.killpg(server.process.pid, signal.SIGKILL)
                        killed.set()
                        return
                    time.sleep(0.05)

            threading.Thread(target=kill_when_asked, daemon=True).start()
            cfg = BuildPairsConfig(
                judge_url=f"{server.base_url}",
                prompts=12,
                samples=6,
                tracking_uri="null",
                client=JudgeClientParams(max_retries=2, timeout_s=10),
            )
            out = tmp_path / "pairs"
            with pytest.raises(JudgeUnavailable, match="judge requests failed after 2 retries"):
                run(cfg, ROOT / "models" / "policy-tiny", out, serve_config=serve_cfg)
    finally:
        os.environ.pop(key_env, None)
    assert killed.is_set()
    assert not (out / "pairs.parquet").exists() and not (out / "stats.json").exists()
