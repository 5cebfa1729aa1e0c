"""Caption alignment of the text-to-image policy before / after (genpolicy.evaluate_gen_policy):
the same policy twice changes nothing; the report, grid and metrics are written."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from unireward.genpolicy.evaluate_gen_policy import EvaluateGenPolicyConfig, run

ROOT = Path(__file__).resolve().parents[1]
POLICY = ROOT / "models" / "gen-policy-tiny"


def test_the_same_policy_before_and_after_changes_nothing(tmp_path: Path) -> None:
    config = EvaluateGenPolicyConfig(
        captions=8, num_inference_steps=6, grid_captions=3, tracking_uri="null"
    )
    result = run(config, POLICY, POLICY, tmp_path)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics == result.metrics
    for split in ("eval_seen", "eval_unseen"):
        for attr in ("colour", "shape", "position", "all"):
            assert metrics[f"before/{split}/{attr}"] == metrics[f"after/{split}/{attr}"]
            assert metrics[f"delta/{split}/{attr}"] == 0.0
    # the shipped policy draws some of the seen captions' colours right: it is no blank
    assert metrics["before/eval_seen/colour"] > 0.25
    grid = Image.open(tmp_path / "samples.png")
    assert grid.size[1] == 3 * 64, "one row per grid caption"
    html = (tmp_path / "report.html").read_text()
    assert "<table" in html and "data:image/png;base64," in html
