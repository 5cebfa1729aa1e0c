"""evaluate on public benchmarks: the papers' accuracies (pure, table-driven) and
`unireward evaluate --benchmark` end to end on a directory in each benchmark's layout
(tests/benchmark_layout.py) with a tiny random judge.

    .venv/bin/pytest tests/test_benchmark.py -q
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from benchmark_layout import SIZES, make_benchmark_dir
from mlflow_store import logged_artifacts
from unireward.cli import app
from unireward.eval import metrics as M
from unireward.eval.benchmark import (
    BENCHMARKS,
    format_markdown,
    load_benchmarks,
    score_benchmarks,
    vl_category,
)
from unireward.tracking import default_tracking_uri


@pytest.mark.parametrize(
    ("preds", "labels", "tau", "diff", "n_diff"),
    [
        ([1, 2, 0, None, 0], [1, 1, 1, 2, 0], 2 / 5, 1 / 4, 4),  # the docstring's example
        ([1, 2], [1, 2], 1.0, 1.0, 2),
        ([0, 0], [0, 0], 1.0, math.nan, 0),  # ties only: tau counts them, diff has none
        ([0, 0, 1], [1, 2, 1], 1 / 3, 1 / 3, 3),  # a tie answer is wrong on decided pairs
    ],
)
def test_benchmark_accuracy_counts_ties_like_the_papers(preds, labels, tau, diff, n_diff) -> None:
    acc = M.benchmark_accuracy(preds, labels)
    assert acc.tau == pytest.approx(tau)
    assert acc.n_diff == n_diff
    assert (math.isnan(acc.diff) and math.isnan(diff)) or acc.diff == pytest.approx(diff)
    # evaluate's own pairwise_diff also drops the judge's ties: a different number
    if preds == [0, 0, 1]:
        assert M.pairwise_accuracy(preds, labels).diff == 1.0


def test_macro_accuracy_weights_each_group_once() -> None:
    acc = M.macro_accuracy([True, False, True, True, True], ["a", "a", "b", "b", "b"])
    assert acc.overall == pytest.approx(4 / 5)
    assert acc.per_group == {"a": 0.5, "b": 1.0}
    assert acc.macro == pytest.approx(0.75)


@pytest.mark.parametrize(
    ("record_id", "category"),
    [
        ("RLAIF-V-Dataset_12", "hallucination"),
        ("RLHF-V_3", "hallucination"),
        ("povid_7", "hallucination"),
        ("mathverse_9", "reasoning"),
        ("mmmu_pro_1", "reasoning"),
        ("wildvision-battle_2", "general"),
        ("vlfeedback_5", "general"),
        ("no-prefix", "general"),
    ],
)
def test_vl_rewardbench_category_from_the_id(record_id: str, category: str) -> None:
    assert vl_category(record_id) == category


def _row(benchmark: str, label: int, pred: int | None, category: str = "") -> dict:
    return {
        "benchmark": benchmark,
        "label": label,
        "pred": pred,
        "pred_swapped": {1: 2, 2: 1}.get(pred, pred),
        "category": category,
    }


def test_score_benchmarks_reports_each_benchmark_in_its_papers_terms() -> None:
    rows = [
        _row("GenAI-Bench-Image", 1, 1),
        _row("GenAI-Bench-Image", 2, 1),
        _row("GenAI-Bench-Image", 0, 0),
        _row("GenAI-Bench-Image", 0, 1),
        _row("VL-RewardBench", 1, 1, "general"),
        _row("VL-RewardBench", 2, 1, "general"),
        _row("VL-RewardBench", 1, 1, "reasoning"),
        _row("VL-RewardBench", 2, None, "hallucination"),
    ]
    table = score_benchmarks(rows)
    assert list(table) == ["GenAI-Bench-Image", "VL-RewardBench"]
    genai = table["GenAI-Bench-Image"]
    assert (genai["tau"], genai["diff"], genai["n"], genai["n_diff"]) == (0.5, 0.5, 4, 2)
    assert "macro" not in genai
    vl = table["VL-RewardBench"]
    assert vl["overall"] == pytest.approx(2 / 4)
    assert vl["general_accuracy"] == 0.5 and vl["reasoning_accuracy"] == 1.0
    assert vl["hallucination_accuracy"] == 0.0
    assert vl["macro"] == pytest.approx(0.5)
    assert vl["unparseable"] == pytest.approx(0.25)
    assert vl["swap_consistency"] == pytest.approx(3 / 4)  # the unparseable one is not
    md = format_markdown(table)
    assert "| GenAI-Bench-Image | 4 | 50.0 | 50.0 | - | - |" in md
    assert "| VL-RewardBench | 4 | - | - | 50.0 | 50.0 | 50.0 | 0.0 | 100.0 |" in md


@pytest.fixture(scope="module")
def benchmark_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_benchmark_dir(tmp_path_factory.mktemp("benchmarks") / "src")


def test_load_benchmarks_reads_every_layout(benchmark_dir: Path, tmp_path: Path) -> None:
    records = load_benchmarks(benchmark_dir, tmp_path / "data")
    formats = [r.meta_dict["format"] for r in records]
    assert {BENCHMARKS[f]: formats.count(f) for f in dict.fromkeys(formats)} == {
        name: n for name, (n, _) in SIZES.items()
    }
    video = next(r for r in records if r.meta_dict["format"] == "videogen_rewardbench")
    assert [len(item) for item in video.media] == [8, 8]  # the contract's 8 frames each
    ties = [r.label for r in records if r.meta_dict["format"] == "genai_bench_image"]
    assert ties.count("Both images are equally good") == 2  # tievote and bothbad_vote


def test_a_broken_benchmark_record_stops_the_run(benchmark_dir: Path, tmp_path: Path) -> None:
    import shutil

    src = tmp_path / "src"
    shutil.copytree(benchmark_dir, src)
    with (src / "genai_bench_image.jsonl").open("a") as fh:
        fh.write(
            json.dumps(
                {
                    "prompt": "x",
                    "left_image": "img/none.png",
                    "right_image": "img/red.png",
                    "vote_type": "leftvote",
                }
            )
            + "\n"
        )
    with pytest.raises(ValueError, match="1 of 19 records cannot be read"):
        load_benchmarks(src, tmp_path / "data")


def test_a_directory_of_other_data_is_not_a_benchmark(shapes_dataset: Path, tmp_path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "x.json").write_text(
        json.dumps([{"problem": "Caption: a", "images": [], "solution": "Image 1 is better"}])
    )
    with pytest.raises(ValueError, match="not benchmark files"):
        load_benchmarks(src, tmp_path / "data")


def test_evaluate_benchmark_end_to_end(
    tiny_model_dir: Path, benchmark_dir: Path, tmp_path: Path
) -> None:
    """`unireward evaluate --benchmark`: the table printed, written and logged to MLflow."""
    uri = default_tracking_uri(tmp_path / "store")
    params = tmp_path / "params.yaml"
    params.write_text(json.dumps({"evaluate": {"tracking_uri": uri, "max_new_tokens": 6}}))
    out = tmp_path / "bench"
    result = CliRunner().invoke(
        app,
        [
            "evaluate",
            *("--model", str(tiny_model_dir)),
            *("--benchmark", str(benchmark_dir)),
            *("--output-dir", str(out)),
            *("--params", str(params)),
            *("--name", "tiny"),
        ],
    )
    assert result.exit_code == 0, result.output
    table = json.loads((out / "benchmark.json").read_text())
    assert list(table) == list(SIZES)
    for name, (n, n_diff) in SIZES.items():
        assert table[name]["n"] == n
        if name == "VL-RewardBench":
            assert {"overall", "macro", "general_accuracy"} <= set(table[name])
        else:
            assert table[name]["n_diff"] == n_diff and {"tau", "diff"} <= set(table[name])
        # A random judge writes few contract answers: unparseable is counted wrong, not guessed.
        accuracy = table[name].get("tau", table[name].get("overall"))
        assert accuracy <= 1 - table[name]["unparseable"] + 1e-9
    assert "| VideoGen-RewardBench | 3 |" in result.output  # printed
    assert (out / "benchmark.md").read_text() in result.output
    preds = pd.read_parquet(out / "predictions.parquet")
    assert len(preds) == sum(n for n, _ in SIZES.values())
    assert set(preds["category"][preds["benchmark"] == "VL-RewardBench"]) == {
        "general",
        "hallucination",
        "reasoning",
    }
    assert {"benchmark/benchmark.json", "benchmark/benchmark.md"} <= logged_artifacts(
        uri, "benchmark-tiny"
    )
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    (run,) = [
        r
        for e in client.search_experiments()
        for r in client.search_runs([e.experiment_id])
        if r.info.run_name == "benchmark-tiny"
    ]
    assert run.data.metrics["benchmark/GenAI-Bench-Image/n"] == 6
    assert "benchmark/VL-RewardBench/macro" in run.data.metrics
