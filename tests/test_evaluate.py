"""evaluate: the protocol's metrics from prediction rows (pure, table-driven) and the stage on a
tiny model (every task and split reported, artifacts written)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from mlflow_store import logged_artifacts
from unireward.data.schema import read_records
from unireward.eval.evaluate import EvaluateConfig, presented_order, run, score_split
from unireward.model.tiny import load_processor
from unireward.tasks import TASKS
from unireward.tracking import default_tracking_uri


def _pair(label: int, pred: int | None, swapped: int | None, breakdown: str = "colour") -> dict:
    return {
        "task": "image_generation",
        "mode": "pairwise",
        "label": label,
        "pred": pred,
        "pred_swapped": swapped,
        "breakdown": breakdown,
    }


def _rows(judge) -> list[dict]:
    """Eight image-generation pairs, labels alternating 1/2, answered by `judge(label)`."""
    return [_pair(label, *judge(label)) for label in (1, 2) * 4]


@pytest.mark.parametrize(
    ("name", "judge", "diff", "consistency"),
    [
        ("perfect", lambda y: (y, 3 - y), 1.0, 1.0),
        # Always "Image 1": half right, and never consistent when the pair is swapped.
        ("positional", lambda y: (1, 1), 0.5, 0.0),
        ("contrarian", lambda y: (3 - y, y), 0.0, 1.0),
        ("unparseable", lambda y: (None, None), 0.0, 0.0),
    ],
)
def test_pairwise_metrics_by_kind_of_judge(name, judge, diff, consistency) -> None:
    m = score_split(_rows(judge))
    assert m["image_generation/pairwise_diff"] == pytest.approx(diff), name
    assert m["image_generation/swap_consistency"] == pytest.approx(consistency), name
    assert m["pairwise_diff_mean"] == pytest.approx(diff)


def test_ties_are_wrong_for_tau_and_left_out_of_diff() -> None:
    rows = [_pair(1, 1, 2), _pair(2, 0, 0), _pair(1, 2, 1), _pair(0, 0, 0)]
    m = score_split(rows)
    assert m["image_generation/pairwise_tau"] == pytest.approx(2 / 4)
    # diff: label-tie row and predicted-tie row excluded -> 1 right of 2.
    assert m["image_generation/pairwise_diff"] == pytest.approx(1 / 2)


def test_breakdown_and_spearman() -> None:
    rows = [_pair(1, 1, 2, "colour"), _pair(2, 1, 1, "noise")]
    rows += [
        {"task": "video_generation", "mode": "pointwise", "score": s, "score_pred": p}
        for s, p in ((1, 2), (4, 5), (7, 6), (10, None))
    ]
    m = score_split(rows)
    assert m["image_generation/by/colour/pairwise_tau"] == 1.0
    assert m["image_generation/by/noise/pairwise_tau"] == 0.0
    assert m["video_generation/pointwise_spearman"] == pytest.approx(1.0)
    assert m["video_generation/pointwise_unparseable"] == pytest.approx(0.25)


def test_presented_order_is_seeded_and_swaps_about_half(shapes_dataset: Path) -> None:
    records = [r for r in read_records(shapes_dataset) if r.mode == "pairwise"]
    a, b = presented_order(records, 0), presented_order(records, 0)
    assert a == b
    swapped = sum(x != y for x, y in zip(records, a, strict=True))
    assert 0 < swapped < len(records)


def test_run_reports_every_task_and_split(
    tiny_model_dir: Path, shapes_dataset: Path, tmp_path: Path
) -> None:
    uri = default_tracking_uri(tmp_path / "store")
    cfg = EvaluateConfig(max_per_task_mode=2, batch_size=16, max_new_tokens=6, tracking_uri=uri)
    result = run(cfg, tiny_model_dir, shapes_dataset, tmp_path / "eval", name="tiny")
    m = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert m.keys() == result.metrics.keys()
    for task in TASKS:
        for key in ("pairwise_tau", "pairwise_diff", "swap_consistency", "pointwise_spearman"):
            assert f"{task}/{key}" in m
            assert f"eval_unseen/{task}/{key}" in m
        # A random model writes no contract answer: unparseable is counted as wrong, not guessed.
        assert m[f"{task}/pairwise_tau"] <= 1 - m[f"{task}/pairwise_unparseable"] + 1e-9
    preds = pd.read_parquet(tmp_path / "eval" / "predictions.parquet")
    assert len(preds) == 2 * 2 * 2 * len(TASKS)  # splits x modes x records x tasks
    assert (tmp_path / "eval" / "metrics.png").stat().st_size > 1000
    assert not math.isnan(m["image_generation/pairwise_unparseable"])
    # What a user sees in MLflow: the figures under plots/, the report with the outputs.
    assert {
        "plots/accuracy_by_task.png",
        "plots/accuracy_by_attribute.png",
        "evaluate/report.html",
        "evaluate/metrics.json",
    } <= logged_artifacts(uri, "evaluate-tiny")
    assert "evaluate/metrics.png" not in logged_artifacts(uri, "evaluate-tiny")  # once: plots/
    assert (tmp_path / "eval" / "report.html").read_text().count("<img") == 2


def test_primary_split_must_be_evaluated() -> None:
    with pytest.raises(ValueError, match="primary_split"):
        EvaluateConfig(splits=("eval_unseen",), primary_split="eval_seen")


# --------------------------------------------------------------------------- CoT mode


def _cot_row(label: int, text: str, text_swapped: str) -> dict:
    """A prediction row built by evaluate itself from raw CoT texts (label: 1 or 2)."""
    from unireward.data.schema import Record
    from unireward.eval.evaluate import _row

    record = Record(
        id="r",
        task="image_generation",
        mode="pairwise",
        prompt="a red circle",
        media=[["a.png"], ["b.png"]],
        label=("Image 1 is better", "Image 2 is better")[label - 1],
        split="eval_seen",
        meta='{"difference": "colour"}',
    )
    return _row(record, text, text_swapped, cot=True)


def _cot(answer: str) -> str:
    think = "Image 1: I see a red circle. Image 2: I see a blue circle."
    return f"<think>{think}</think><answer>{answer}</answer>"


def test_cot_rows_parse_the_answer_tag_and_count_format_validity() -> None:
    rows = [
        _cot_row(1, _cot("Image 1 is better"), _cot("Image 2 is better")),  # right, consistent
        _cot_row(2, _cot("Image 2 is better."), _cot("Image 1 is better")),  # right, period
        _cot_row(1, "Image 1 is better", _cot("Image 2 is better")),  # no tags: unparseable
        _cot_row(2, _cot("Image 1 is better"), "<think>cut off mid-thou"),  # wrong, truncated
    ]
    assert [r["pred"] for r in rows] == [1, 2, None, 1]
    assert [r["format_valid"] for r in rows] == [1.0, 1.0, 0.5, 0.5]
    m = score_split(rows)
    assert m["image_generation/format_valid"] == pytest.approx(3 / 4)
    assert m["image_generation/pairwise_diff"] == pytest.approx(2 / 4)
    # the GRPO accuracy reward is stricter: "Image 2 is better." is not the exact string
    assert m["image_generation/cot_accuracy"] == pytest.approx(1 / 4)
    assert m["image_generation/swap_consistency"] == pytest.approx(2 / 4)
    assert m["format_valid_mean"] == pytest.approx(3 / 4)


def test_run_in_cot_mode_generates_longer_and_reports_format_validity(
    tiny_model_dir: Path, shapes_dataset: Path, tmp_path: Path
) -> None:
    cfg = EvaluateConfig(
        max_per_task_mode=1,
        batch_size=16,
        max_new_tokens=4,
        cot=True,
        cot_max_new_tokens=24,
        tracking_uri="null",
    )
    run(cfg, tiny_model_dir, shapes_dataset, tmp_path / "eval", name="tiny")
    m = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    for task in TASKS:
        for key in ("format_valid", "cot_accuracy", "pairwise_diff", "pointwise_spearman"):
            assert f"eval_unseen/{task}/{key}" in m
        assert 0.0 <= m[f"{task}/format_valid"] <= 1.0
    preds = pd.read_parquet(tmp_path / "eval" / "predictions.parquet")
    tok = load_processor(tiny_model_dir).tokenizer  # the tiny model is seeded: deterministic
    lengths = {
        mode: max(len(tok(t)["input_ids"]) for t in preds[preds["mode"] == mode]["text"])
        for mode in ("pairwise", "pointwise")
    }
    # pairwise got the CoT budget, pointwise (direct, no CoT prompt in the contract) its own
    assert 4 < lengths["pairwise"] <= 24 + 2 and lengths["pointwise"] <= 4 + 2
    assert preds[preds["mode"] == "pairwise"]["format_valid"].notna().all()


def test_cot_mode_can_score_pairwise_on_a_subset(shapes_dataset: Path) -> None:
    from unireward.eval.evaluate import select

    records = read_records(shapes_dataset)  # 3 records per (split, task, mode)
    direct = select(records, EvaluateConfig(cot_max_per_task_mode=1))
    cot = select(records, EvaluateConfig(cot=True, cot_max_per_task_mode=1))
    assert len(direct) == 2 * 8 * 3  # splits x (task, mode) x records: the knob is CoT-only
    pairwise = [r for r in cot if r.mode == "pairwise"]
    assert len(pairwise) == 2 * 4 and len(cot) - len(pairwise) == 2 * 4 * 3


def test_evaluate_can_score_some_tasks_only(shapes_dataset: Path) -> None:
    """`tasks`: a judge trained on one task is scored on that task (and names are checked)."""
    from unireward.eval.evaluate import select

    records = read_records(shapes_dataset)  # 3 records per (split, task, mode)
    some = select(records, EvaluateConfig(tasks=("image_understanding",)))
    assert {r.task for r in some} == {"image_understanding"} and len(some) == 2 * 2 * 3
    with pytest.raises(ValueError, match="image_undrstanding"):
        EvaluateConfig(tasks=("image_undrstanding",))
    with pytest.raises(ValueError, match="empty"):
        EvaluateConfig(tasks=())


def test_rejection_samplings_hard_items_are_scored_as_split_hard(
    tiny_model_dir: Path, shapes_dataset: Path, tmp_path: Path
) -> None:
    """`samples_dir`: the hard items of a rejection_sample output (media in the dataset) become
    split `hard`; an empty hard set adds nothing; the name `hard` is reserved."""
    from unireward.data.schema import write_records
    from unireward.eval.evaluate import hard_records

    train = [r for r in read_records(shapes_dataset) if r.split == "train"]
    hard = [r for r in train if r.mode == "pairwise" and r.task.endswith("understanding")]
    write_records(hard + [r for r in train if r.mode == "pointwise"][:1], tmp_path / "s" / "hard")
    cfg = EvaluateConfig(
        max_per_task_mode=1, batch_size=16, cot=True, cot_max_new_tokens=8, tracking_uri="null"
    )
    assert [r.id for r in hard_records(tmp_path / "s", cfg)] == [r.id for r in hard]  # pairwise
    run(cfg, tiny_model_dir, shapes_dataset, tmp_path / "eval", samples_dir=tmp_path / "s")
    m = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    for task in ("image_understanding", "video_understanding"):
        for key in ("pairwise_diff", "format_valid", "cot_accuracy", "swap_consistency"):
            assert f"hard/{task}/{key}" in m
    assert "hard/image_generation/pairwise_diff" not in m and "hard/cot_accuracy_mean" in m
    preds = pd.read_parquet(tmp_path / "eval" / "predictions.parquet")
    assert sorted(preds[preds["split"] == "hard"]["id"]) == sorted(r.id for r in hard)

    only_iu = EvaluateConfig(tasks=("image_understanding",), tracking_uri="null")
    assert {r.task for r in hard_records(tmp_path / "s", only_iu)} == {"image_understanding"}
    write_records([], tmp_path / "empty" / "hard")
    assert hard_records(tmp_path / "empty", cfg) == []
    with pytest.raises(ValueError, match="reserved"):
        hard_records(tmp_path / "s", EvaluateConfig(splits=("hard",), primary_split="hard"))
    with pytest.raises(FileNotFoundError, match=r"records\.parquet"):
        hard_records(tmp_path / "eval", cfg)
