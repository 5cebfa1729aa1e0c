"""Judge-built Diffusion-DPO pairs for the text-to-image policy (genpolicy.build_gen_pairs):
with the ground-truth checker as the judge every kept chosen image is truly better; a coin-flip
judge is reproducible; a judge that cannot answer writes no pairs."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from unireward.genpolicy.build_gen_pairs import BuildGenPairsConfig, run
from unireward.serving.client import JudgeUnavailable

ROOT = Path(__file__).resolve().parents[1]
POLICY = ROOT / "models" / "gen-policy-tiny"


def _config(**overrides) -> BuildGenPairsConfig:
    settings = {"captions": 12, "samples": 4, "num_inference_steps": 8, "tracking_uri": "null"}
    return BuildGenPairsConfig(**{**settings, **overrides})


def test_oracle_pairs_keep_only_truly_better_chosen_images(tmp_path: Path) -> None:
    result = run(_config(judge="oracle"), POLICY, tmp_path)
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["kept"] == result.kept > 0
    assert stats["chosen_truly_better"] == 1.0
    statuses = sum(v for k, v in stats.items() if k.startswith("status/"))
    assert statuses == stats["captions"] == 12, "every caption is kept or dropped for a reason"
    rows = pd.read_parquet(tmp_path / "pairs.parquet")
    assert len(rows) == result.kept
    for row in rows.itertuples():
        for side in (row.chosen, row.rejected):
            with Image.open(tmp_path / side) as image:
                assert image.size == (32, 32), "stored as the policy drew it (not resized)"
        assert row.chosen_score > row.rejected_score
        truth = json.loads(row.truth)
        assert row.caption.split()[1:3] == [truth["colour"], truth["shape"]]
        assert json.loads(row.provenance)["judge"] == "oracle"


def test_more_pairs_per_caption_come_from_the_same_drawings(tmp_path: Path) -> None:
    """pairs_per_caption: the paper's pair first, then more winner-loser pairs of the same
    caption; with the oracle each one's chosen image is still truly better."""
    one = run(_config(judge="oracle"), POLICY, tmp_path / "one")
    many = run(_config(judge="oracle", pairs_per_caption=6), POLICY, tmp_path / "many")
    assert many.kept > one.kept and many.stats["chosen_truly_better"] == 1.0
    assert many.stats["captions_kept"] == one.stats["captions_kept"] == one.kept
    a = pd.read_parquet(tmp_path / "one" / "pairs.parquet")
    b = pd.read_parquet(tmp_path / "many" / "pairs.parquet")
    assert b.groupby("cid").size().max() <= 6
    first = b.groupby("cid").head(1).reset_index(drop=True)
    assert list(first["chosen_score"]) == list(a["chosen_score"])
    assert list(first["rejected_score"]) == list(a["rejected_score"])
    assert (b["chosen_score"] > b["rejected_score"]).all()
    with pytest.raises(ValueError, match="pairs_per_caption >= 1"):
        _config(pairs_per_caption=0)


def test_a_random_judge_is_reproducible_and_no_better_than_luck(tmp_path: Path) -> None:
    a = run(_config(judge="random"), POLICY, tmp_path / "a")
    b = run(_config(judge="random"), POLICY, tmp_path / "b")
    rows_a = pd.read_parquet(tmp_path / "a" / "pairs.parquet")
    rows_b = pd.read_parquet(tmp_path / "b" / "pairs.parquet")
    assert a.kept == b.kept and rows_a["chosen_score"].tolist() == rows_b["chosen_score"].tolist()
    assert a.stats["chosen_truly_better"] < 1.0


def test_a_served_judge_needs_a_checkpoint_or_a_url(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="needs the judge checkpoint"):
        run(_config(judge="served"), POLICY, tmp_path)
    with pytest.raises(ValueError, match="judge_url must be"):
        _config(judge_url="localhost:8000")
    with pytest.raises(ValueError, match="judge must be one of"):
        _config(judge="gpt")


def test_a_judge_that_does_not_answer_writes_no_pairs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from unireward.policy.build_pairs import JudgeClientParams

    monkeypatch.setenv("UNIREWARD_JUDGE_API_KEY", "test-key-not-a-secret")
    (tmp_path / "pairs.parquet").write_bytes(b"an earlier run's")
    config = _config(
        judge="served",
        judge_url="http://127.0.0.1:9/v1",  # discard port: nothing listens
        captions=2,
        client=JudgeClientParams(max_concurrency=2, timeout_s=2, max_retries=0),
    )
    with pytest.raises(JudgeUnavailable, match="no pairs were written"):
        run(config, POLICY, tmp_path)
    assert not (tmp_path / "pairs.parquet").exists(), "no stale pairs outlive the failure"
