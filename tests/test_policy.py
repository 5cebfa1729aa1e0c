"""Policy alignment (stages 11-13): questions and accuracy, pair selection, the shapes oracle,
`build_pairs` with the oracle on the shipped policy, `dpo` killed and resumed as a real process,
`evaluate_policy`. The served judge (vLLM) path: tests/test_build_pairs_served.py (slow).

    .venv/bin/pytest tests/test_policy.py -q
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from loopback import sigkill_at_checkpoint
from mlflow_store import logged_artifacts
from unireward.policy import pairs as P
from unireward.policy.questions import (
    ATTRIBUTES,
    accuracy,
    image_key,
    is_correct,
    make_questions,
    normalise_answer,
)
from unireward.tracking import default_tracking_uri

ROOT = Path(__file__).resolve().parents[1]
POLICY = ROOT / "models" / "policy-tiny"

# --------------------------------------------------------------------------- pure functions


@pytest.mark.parametrize(
    ("verdicts", "scores", "want"),
    [
        ({(0, 1): 1}, [90.0, 10.0], ("kept", 0, 1)),
        ({(0, 1): 2}, [90.0, 10.0], ("chosen_not_better", 1, 0)),  # ranking vs sifting
        ({(0, 1): 0}, [90.0, 10.0], ("no_decided_pair", None, None)),  # a tie picks no side
        ({(0, 1): None}, [90.0, 10.0], ("no_decided_pair", None, None)),  # nor does garbage
        ({(0, 1): 1}, [None, 10.0], ("unscored", None, None)),
        ({(0, 1): 1}, [50.0, 50.0], ("chosen_not_better", 0, 1)),  # equal scores: dropped
        ({}, [70.0], ("single_answer", None, None)),
        # numbers, not strings: "10" < "9" as text (the published bug)
        ({(0, 1): 1}, [10.0, 9.0], ("kept", 0, 1)),
        # best of the chosen list, worst of the rejected list
        ({(0, 1): 1, (2, 3): 1}, [60.0, 50.0, 80.0, 5.0], ("kept", 2, 3)),
        # odd count: the last is paired with the first; the same item on both lists is dropped
        ({(0, 1): 1, (2, 0): 2}, [90.0, 10.0, 40.0], ("kept", 0, 1)),
    ],
)
def test_select_pair(verdicts, scores, want) -> None:
    d = P.select_pair(verdicts, scores)
    assert (d.status, d.chosen, d.rejected) == want


def test_pair_ranking_alone_ranks_by_wins() -> None:
    """point_sift: false -- the win counts are the scores: a decided pair is kept, a tie is not,
    and an item that won one pair and lost another is never both chosen and rejected."""
    decide = lambda v, n: P.select_pair(v, P.win_counts(v, n))  # noqa: E731
    d = decide({(0, 1): 2}, 2)
    assert (d.status, d.chosen, d.rejected, d.chosen_score, d.rejected_score) == (
        "kept",
        1,
        0,
        1.0,
        0.0,
    )
    assert decide({(0, 1): 0}, 2).status == "no_decided_pair"
    assert decide({(0, 1): None, (2, 3): None}, 4).status == "no_decided_pair"
    d = decide({(0, 1): 1, (2, 0): 1}, 3)  # 2 beat 0, 0 beat 1: chosen 0 or 2, rejected 1
    assert d.status == "kept" and d.rejected == 1 and d.chosen in (0, 2)


def test_distinct_and_pair_up() -> None:
    assert P.distinct(["a", "b", "a", "c", "a"]) == (["a", "b", "c"], [3, 1, 1])
    assert P.pair_up(1) == [] and P.pair_up(2) == [(0, 1)]
    assert P.pair_up(4) == [(0, 1), (2, 3)] and P.pair_up(5) == [(0, 1), (2, 3), (4, 0)]


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


def test_confused_policy_training_rows() -> None:
    from unireward.policy.policy_sft import PolicySftConfig, confused, training_row

    assert confused("position", "top left") == "top right" and confused("shape", "cross") is None
    cfg = PolicySftConfig(confusion_rate=1.0)
    rows = [training_row(i, cfg) for i in range(30)]
    assert training_row(7, cfg)["completion"] == rows[7]["completion"]  # a pure function of i
    answers = {r["completion"][0]["content"][0]["text"] for r in rows}
    assert "red" not in answers and "circle" not in answers  # always confused at rate 1


# --------------------------------------------------------------------------- the oracle


def test_oracle_judges_against_ground_truth_and_never_guesses() -> None:
    from unireward.policy.judges import ShapesOracle
    from unireward.serving.client import PairQuery, ScoreQuery
    from unireward.tasks import Task

    q, other = make_questions(0, 2, "train")
    oracle = ShapesOracle({image_key(q.question, q.image): q.answer})
    t = Task.IMAGE_UNDERSTANDING

    def pair(a: str, b: str) -> int | None:
        [j] = oracle.judge_pairs([PairQuery(t, q.question, (q.image,), (a, b))], swap=True)
        assert j.disagree is False
        return j.verdict.preferred

    assert pair(q.answer, "blurple") == 1 and pair("blurple", q.answer) == 2
    assert pair("blurple", "mauve") == 0  # both wrong: a tie, no side picked
    right, wrong = oracle.score(
        [ScoreQuery(t, q.question, q.image, q.answer), ScoreQuery(t, q.question, q.image, "x")]
    )
    assert (right.score.score, wrong.score.score) == (100.0, 0.0)
    with pytest.raises(KeyError, match="no ground truth"):
        oracle.score([ScoreQuery(t, other.question, other.image, "red")])


# --------------------------------------------------------------------------- build_pairs


@pytest.fixture(scope="module")
def oracle_pairs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from unireward.policy.build_pairs import BuildPairsConfig, run

    out = tmp_path_factory.mktemp("pairs")
    uri = default_tracking_uri(out / "store")
    cfg = BuildPairsConfig(judge="oracle", prompts=24, samples=6, tracking_uri=uri)
    result = run(cfg, POLICY, out)
    assert result.kept >= 4, result.stats  # the shipped policy's samples disagree often
    return out


def test_build_pairs_logs_its_statistics_as_a_figure(oracle_pairs: Path) -> None:
    uri = default_tracking_uri(oracle_pairs / "store")
    logged = logged_artifacts(uri, "build_pairs-oracle")
    assert logged == {"stats.json", "report.html", "plots/pair_stats.png"}
    assert (oracle_pairs / "report.html").read_text().count("<img") == 1


def test_build_pairs_with_the_oracle_writes_valid_trl_rows(oracle_pairs: Path) -> None:
    from unireward.policy.build_pairs import load_pairs

    stats = json.loads((oracle_pairs / "stats.json").read_text())
    dropped = sum(stats[f"dropped_{s}"] for s in P.STATUSES if s != "kept")
    assert stats["decided_kept"] + dropped == stats["prompts"] == 24
    assert stats["kept"] == stats["decided_kept"] - stats["quarantined"]
    assert stats["kept_chosen_correct"] == 1.0 and stats["kept_rejected_correct"] == 0.0
    assert stats["pair_unparseable"] == 0 and stats["swap_disagreements"] == 0
    ds = load_pairs(oracle_pairs / "pairs.parquet")
    assert len(ds) == stats["kept"]
    row = ds[0]
    assert row["chosen"][0]["role"] == "assistant" and row["chosen_score"] > row["rejected_score"]
    assert [p["type"] for p in row["prompt"][0]["content"]] == ["text", "image", "text"]
    assert len(row["images"]) == 1 and row["images"][0].size == (56, 56)
    assert json.loads(row["provenance"])["judge"] == "oracle"


def test_cot_pairs_without_point_sifting_ask_no_scores() -> None:
    """build_pairs' cot / point_sift switches reach the judge: every pair query is in CoT mode,
    no pointwise score is asked, and the candidates are ranked by their pair wins."""
    from unireward.policy.build_pairs import Candidates, judge_candidates
    from unireward.policy.judges import ShapesOracle

    qs = make_questions(4, 3, "train")
    asked: list = []

    class Recording(ShapesOracle):
        def judge_pairs(self, queries, swap=False):
            asked.extend(queries)
            return super().judge_pairs(queries, swap)

        def score(self, queries):
            raise AssertionError("point_sift: false must not ask pointwise scores")

    judge = Recording({image_key(q.question, q.image): q.answer for q in qs})
    cands = [Candidates(q, ["mauve", q.answer, "blurple"], [1, 1, 1]) for q in qs]
    verdicts, scores, counts = judge_candidates(judge, cands, True, cot=True, point_sift=False)
    assert len(asked) == 2 * len(qs) and all(q.cot for q in asked)
    assert "scores_asked" not in counts and counts["pairs_judged"] == 2 * len(qs)
    # pairs (0, 1): the right answer wins; (2, 0): both wrong, a tie
    assert scores == [[0.0, 1.0, 0.0]] * len(qs)
    chosen = [P.select_pair(v, s).chosen for v, s in zip(verdicts, scores, strict=True)]
    assert chosen == [1] * len(qs)


def test_pair_validation_quarantines_bad_rows() -> None:
    from unireward.policy.build_pairs import Candidates, preference_row, validate_rows

    q = make_questions(0, 1, "train")[0]
    c = Candidates(q, [q.answer, "mauve", q.answer + " "], [3, 2, 1])
    good = preference_row(c, P.PairDecision("kept", 0, 1, 100.0, 0.0), {})
    same = preference_row(c, P.PairDecision("kept", 0, 2, 100.0, 0.0), {})
    flat = preference_row(c, P.PairDecision("kept", 0, 1, 50.0, 50.0), {})
    kept, bad = validate_rows([good, same, flat])
    assert kept == [0]
    assert bad == {1: "chosen_equals_rejected", 2: "chosen_score_not_above_rejected"}


# --------------------------------------------------------------------------- dpo


def _dpo_cmd(params: Path, pairs: Path, out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "unireward.cli",
        "dpo",
        "--params",
        str(params),
        "--policy",
        str(POLICY),
        "--pairs",
        str(pairs),
        "--output-dir",
        str(out),
    ]


def test_killed_dpo_resumes_and_changes_the_policy(oracle_pairs: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    params = tmp_path / "params.yaml"
    uri = default_tracking_uri(tmp_path / "store")
    train = {
        "max_steps": 8,
        "batch_size": 2,
        "save_steps": 2,
        "logging_steps": 1,
        "learning_rate": 1e-3,
    }
    params.write_text(
        yaml.safe_dump({"dpo": {"train": train, "tracking_uri": uri}, "profiles": {"quick": {}}})
    )
    out = tmp_path / "dpo"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    killed_at = sigkill_at_checkpoint(_dpo_cmd(params, oracle_pairs, out), out, 4, env)
    assert killed_at < 8 and not (out / "dpo.json").exists()
    done = subprocess.run(
        _dpo_cmd(params, oracle_pairs, out), env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    record = json.loads((out / "dpo.json").read_text())
    assert record["trained"] and record["global_step"] == 8
    assert record["resumed_from"].endswith(f"checkpoint-{killed_at}")
    # the history restored from the checkpoint, continued: every step logged exactly once
    steps = [h["step"] for h in record["log_history"] if "loss" in h]
    assert steps == list(range(1, 9))
    before, after = load_file(POLICY / "model.safetensors"), load_file(out / "model.safetensors")
    assert any((before[k] != after[k]).any() for k in before)  # DPO moved the policy
    assert "plots/train_curves.png" in logged_artifacts(uri, "dpo")  # the run that finished


def test_dpo_without_pairs_fails_or_passes_the_policy_on(tmp_path: Path) -> None:
    from unireward.policy import dpo
    from unireward.policy.build_pairs import write_rows

    empty = tmp_path / "pairs"
    empty.mkdir()
    write_rows([], empty / "pairs.parquet")
    with pytest.raises(ValueError, match="no preference pairs"):
        dpo.run(dpo.DpoConfig(tracking_uri="null"), POLICY, empty, tmp_path / "a")
    result = dpo.run(
        dpo.DpoConfig(tracking_uri="null", allow_empty=True), POLICY, empty, tmp_path / "b"
    )
    assert (
        not result.trained
        and json.loads((tmp_path / "b" / "dpo.json").read_text())["reason"] == "no preference pairs"
    )
    assert (tmp_path / "b" / "model.safetensors").read_bytes() == (
        POLICY / "model.safetensors"
    ).read_bytes()


# --------------------------------------------------------------------------- evaluate_policy


def test_evaluate_policy_of_the_same_model_has_zero_delta(tmp_path: Path) -> None:
    from unireward.policy.evaluate_policy import EvaluatePolicyConfig, format_table, run

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
