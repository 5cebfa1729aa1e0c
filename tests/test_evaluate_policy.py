"""evaluate_policy (stage 13): questions and per-attribute accuracy, and the evaluation of two
checkpoints.

    .venv/bin/pytest tests/test_evaluate_policy.py -q
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from unireward.policy.questions import (
    ATTRIBUTES,
    accuracy,
    is_correct,
    make_questions,
    normalise_answer,
)

ROOT = Path(__file__).resolve().parents[1]
POLICY = ROOT / "models" / "policy-tiny"


def test_questions_are_deterministic_and_split_by_combination() -> None:
    from unireward.data.shapes import SEEN_COMBOS, UNSEEN_COMBOS

    a, b = make_questions(3, 9, "train"), make_questions(3, 12, "train")
    assert [q.answer for q in a] == [q.answer for q in b[:9]]  # question i independent of n
    assert [q.attribute for q in a[:3]] == list(ATTRIBUTES)
    seen = {(q.scene.colour, q.scene.shape) for q in make_questions(1, 60, "eval_seen")}
    unseen = {(q.scene.colour, q.scene.shape) for q in make_questions(1, 60, "eval_unseen")}
    assert seen <= set(SEEN_COMBOS) and unseen <= set(UNSEEN_COMBOS)
    assert make_questions(1, 3, "eval_seen")[0].answer != "" and a[0].qid != b[1].qid
    with pytest.raises(ValueError, match="unknown policy split"):
        make_questions(0, 1, "test")


def test_accuracy_per_attribute() -> None:
    qs = make_questions(0, 6, "eval_seen")
    answers = [q.answer.upper() + "." for q in qs]  # case and a trailing period do not matter
    answers[1] = "nonsense"  # one shape answer wrong
    acc = accuracy(answers, qs)
    assert acc["colour"] == 1.0 and acc["shape"] == 0.5 and acc["position"] == 1.0
    assert acc["mean"] == pytest.approx(2.5 / 3) and acc["all"] == pytest.approx(5 / 6)
    assert normalise_answer("  Top  Left. ") == "top left" and not is_correct("red", "green")
    with pytest.raises(ValueError, match="answers for"):
        accuracy(answers[:2], qs)


def test_evaluate_policy_of_the_same_model_has_zero_delta(tmp_path: Path) -> None:
    from mlflow_store import logged_artifacts
    from unireward.policy.evaluate_policy import EvaluatePolicyConfig, format_table, run
    from unireward.tracking import default_tracking_uri

    uri = default_tracking_uri(tmp_path / "store")
    cfg = EvaluatePolicyConfig(questions_per_split=9, tracking_uri=uri)
    result = run(cfg, POLICY, POLICY, tmp_path / "out")
    m = result.metrics
    assert m["delta/eval_seen/mean"] == 0.0 and m["delta/eval_unseen/mean"] == 0.0
    assert 0 <= m["before/eval_seen/shape"] <= 1
    assert json.loads((tmp_path / "out" / "metrics.json").read_text()) == pytest.approx(m)
    assert "eval_unseen  position" in format_table(m)
    logged = logged_artifacts(uri, "evaluate_policy")
    assert {"plots/policy_accuracy.png", "evaluate_policy/report.html"} <= logged
    # the sample table: 8 questions per split with both answers (the same model: no change)
    report = (tmp_path / "out" / "report.html").read_text()
    assert report.count("<tr>") == 1 + 2 * 8 and report.count('<img src="data:image/png') == 16
