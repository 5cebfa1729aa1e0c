"""build_pairs (stage 11): pair selection, pair ranking, the shapes oracle, `build_pairs` with
the oracle on the shipped policy, the pair validation suite. The served judge (vLLM) path:
tests/test_build_pairs_served.py (slow).

    .venv/bin/pytest tests/test_build_pairs.py -q
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from unireward.policy import pairs as P
from unireward.policy.questions import (
    image_key,
    make_questions,
)

ROOT = Path(__file__).resolve().parents[1]
POLICY = ROOT / "models" / "policy-tiny"


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


@pytest.mark.parametrize(
    ("verdicts", "scores", "k", "want"),
    [
        # k = 1 is select_pair's pair
        ({(0, 1): 1, (2, 3): 1}, [60.0, 50.0, 80.0, 5.0], 1, [(2, 3)]),
        # then the other winner-loser pairs whose scores agree, widest margin first
        (
            {(0, 1): 1, (2, 3): 1},
            [60.0, 50.0, 80.0, 5.0],
            9,
            [(2, 3), (0, 3), (2, 1), (0, 1)],
        ),
        # select_pair's pair first; a winner scored below a loser is not paired with it; a tie
        # adds no item
        (
            {(0, 1): 1, (2, 3): 1, (4, 5): 0},
            [60.0, 50.0, 40.0, 55.0, 99.0, 0.0],
            9,
            [(0, 1), (0, 3)],
        ),
        # an item on both lists is not paired with itself (2 beat 0: a pair); unscored ones
        # are left out
        ({(0, 1): 1, (2, 0): 1}, [90.0, 10.0, 95.0], 9, [(2, 1), (0, 1), (2, 0)]),
        ({(0, 1): 1, (2, 3): 1}, [60.0, 50.0, None, 5.0], 9, [(0, 3), (0, 1)]),
        # a prompt that is not kept gives nothing
        ({(0, 1): 0}, [90.0, 10.0], 9, []),
    ],
)
def test_more_pairs_from_one_prompt(verdicts, scores, k, want) -> None:
    assert P.more_pairs(verdicts, scores, P.select_pair(verdicts, scores), k) == want


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


def test_build_pairs_logs_its_statistics_as_a_figure(oracle_pairs: Path) -> None:
    from mlflow_store import logged_artifacts
    from unireward.tracking import default_tracking_uri

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
    assert len(row["images"]) == 1 and row["images"][0].size == (64, 64)
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


# --------------------------------------------------------------------------- judge_from


def test_the_best_judge_builds_the_pairs_and_a_think_judge_asks_in_cot() -> None:
    from unireward.policy.build_pairs import BuildPairsConfig
    from unireward.policy.judge_choice import choose, configure

    metric = "image_understanding/pairwise_diff"
    evals = {
        "unified": {metric: 0.48},
        "think": {metric: 0.71},
        "rs": {metric: float("nan")},  # not measured: never chosen
        "grpo": {metric: 0.69},
    }
    choice = choose(evals, "best", metric)
    assert choice["judge"] == "think" and "0.710" in choice["reason"]
    assert set(choice["scores"]) == {"unified", "think", "grpo"}
    cfg = configure(BuildPairsConfig(), "think")
    assert cfg.cot and not cfg.point_sift  # CoT pairs ranked by pair wins
    assert configure(BuildPairsConfig(), "unified") == BuildPairsConfig()
    # a tie goes to the earlier judge in the DAG (the direct one: cheaper to serve)
    assert choose({"unified": {metric: 0.7}, "grpo": {metric: 0.7}}, "best", metric)["judge"] == (
        "unified"
    )
    assert choose(evals, "grpo", metric)["judge"] == "grpo"  # named in params


def test_a_judge_choice_that_cannot_be_made_is_a_clear_error() -> None:
    from unireward.policy.build_pairs import BuildPairsConfig
    from unireward.policy.judge_choice import choose

    with pytest.raises(ValueError, match="no evaluation has 'video/x'"):
        choose({"unified": {"a": 1.0}}, "best", "video/x")
    with pytest.raises(ValueError, match="'rs' has no evaluation"):
        choose({"unified": {"a": 1.0}}, "rs", "a")
    with pytest.raises(ValueError, match="judge_from must be one of"):
        BuildPairsConfig(judge_from="biggest")


def test_build_pairs_records_which_judge_it_took(tmp_path: Path) -> None:
    """run_with_best_judge (the DAG's build_pairs): the evaluations decide, the choice is
    written beside the pairs, and a Think judge's pairs are asked in CoT (provenance)."""
    from unireward.policy.build_pairs import BuildPairsConfig, run_with_best_judge

    metric = "image_understanding/pairwise_diff"
    evaluations = {}
    for name, value in (("unified", 0.5), ("think", 0.8), ("rs", 0.6), ("grpo", 0.7)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.json").write_text(json.dumps({metric: value}))
        evaluations[name] = tmp_path / name
    cfg = BuildPairsConfig(judge="oracle", prompts=8, samples=4, tracking_uri="null")
    judges = dict.fromkeys(evaluations, POLICY)  # the oracle reads no checkpoint
    result, choice = run_with_best_judge(cfg, POLICY, tmp_path / "out", judges, evaluations)
    assert choice["judge"] == "think"
    assert json.loads((tmp_path / "out" / "judge_choice.json").read_text()) == choice
    import pandas as pd

    rows = pd.read_parquet(tmp_path / "out" / "pairs.parquet")
    assert result.kept == len(rows) > 0
    for provenance in rows["provenance"]:
        assert json.loads(provenance)["cot"] is True  # a Think judge asks in CoT
        assert json.loads(provenance)["scores"] == "pair_wins"
    assert json.loads((tmp_path / "out" / "stats.json").read_text())["prompts"] == 8


def test_a_judge_server_that_is_gone_fails_the_stage_clearly_and_leaves_no_pairs(
    tmp_path: Path, monkeypatch
) -> None:
    """The served judge does not answer (its server died; here nothing listens on its port):
    the client retries each request with backoff, then the stage fails with `JudgeUnavailable`
    and no pair file, not even an earlier run's (issue 21, item 2). Run again, it starts over."""
    from loopback import free_port
    from unireward.policy.build_pairs import BuildPairsConfig, JudgeClientParams, run
    from unireward.serving.client import JudgeUnavailable
    from unireward.serving.serve import ServeConfig

    monkeypatch.setenv("UNIREWARD_TEST_GONE_KEY", "k")
    out = tmp_path / "pairs"
    out.mkdir()
    (out / "pairs.parquet").write_bytes(b"an earlier run's pairs")
    (out / "stats.json").write_text("{}")
    cfg = BuildPairsConfig(
        judge_url=f"http://127.0.0.1:{free_port()}/v1",
        prompts=16,  # the shipped policy answers most prompts one way
        samples=8,
        tracking_uri="null",
        client=JudgeClientParams(max_retries=2, timeout_s=5),
    )
    serve_cfg = ServeConfig(api_key_env="UNIREWARD_TEST_GONE_KEY")
    with pytest.raises(JudgeUnavailable, match=r"judge requests failed after 2 retries each"):
        run(cfg, POLICY, out, serve_config=serve_cfg)
    assert sorted(p.name for p in out.iterdir()) == []
