"""`evaluate` on a public benchmark: a directory in a layout `data/formats.py` reads, scored the
way the benchmarks' papers report it.

    unireward evaluate --model runs/unified_sft --benchmark data/benchmarks \
        --output-dir runs/benchmark [--cot]

The directory holds one or more benchmark files (`.json` / `.jsonl` / `.parquet` / `.csv`, the
format detected per file) and the media they name; several benchmarks may sit side by side:

| format (`data/formats.py`) | benchmark | reported |
|---|---|---|
| `genai_bench_image` | GenAI-Bench-Image | tau and diff accuracy |
| `genai_bench_video` | GenAI-Bench-Video | tau and diff accuracy |
| `videogen_rewardbench` | VideoGen-RewardBench | tau and diff accuracy |
| `vl_rewardbench` | VL-RewardBench | overall and macro accuracy (3 categories) |

- tau / diff: `metrics.benchmark_accuracy`: tau over every pair, a tie label right only when
  the judge answers a tie; diff over the pairs whose label is not a tie (the judge's ties stay
  in as wrong). Unparseable answers are wrong (the published video script counts them a tie);
  the published GenAI-Bench-Image script does not ask the judge about tied pairs at all and
  counts them wrong: here they are asked, like VideoGen-RewardBench's.
- VL-RewardBench's category comes from the record id's prefix as in the published script
  (RLAIF / RLHF / povid: hallucination; mathverse / mmmu: reasoning; wildvision and the rest,
  VLFeedback: general); macro = the mean of the three accuracies.

Records are read as `ingest` reads them (media copied under `output_dir/data`, videos decoded to
the contract's 8 frames); a record that cannot be read stops the run with its reasons (`unireward
ingest` + `validate` on the same directory show them all). The judge answers through
`evaluate.predict` (either backend, the same swap seed and both orders); swap consistency is
reported beside the papers' numbers. Writes `benchmark.json` ({benchmark: {metric: value}}),
`benchmark.md` (the table), `predictions.parquet`; logs them and `benchmark/<name>/<metric>`
metrics to MLflow (run `benchmark-<name>`, tag stage=evaluate).
Tests: tests/test_benchmark.py.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unireward.data.schema import Record
from unireward.eval import metrics as M
from unireward.eval.evaluate import EvaluateConfig, predict
from unireward.prompt_templates import log_templates, resolve_templates

# format name -> benchmark name, in report order
BENCHMARKS = {
    "genai_bench_image": "GenAI-Bench-Image",
    "genai_bench_video": "GenAI-Bench-Video",
    "videogen_rewardbench": "VideoGen-RewardBench",
    "vl_rewardbench": "VL-RewardBench",
}
VL_REWARDBENCH = "VL-RewardBench"
VL_CATEGORIES = ("general", "hallucination", "reasoning")
# VL-RewardBench id prefix (before the first "_" or "-", lower case) -> category; else general.
_VL_PREFIX = {
    "rlaif": "hallucination",
    "rlhf": "hallucination",
    "povid": "hallucination",
    "mathverse": "reasoning",
    "mmmu": "reasoning",
    "wildvision": "general",
}
BENCHMARK_SPLIT = "benchmark"


@dataclass
class BenchmarkResult:
    table: dict[str, dict[str, float]]  # benchmark -> metric -> value
    output_dir: Path  # benchmark.md there is the table as printed


def vl_category(record_id: str) -> str:
    """VL-RewardBench's category of an item, from its id (the published script's rule).

    >>> vl_category("RLAIF-V_123"), vl_category("mathverse_7"), vl_category("vlfeedback_3")
    ('hallucination', 'reasoning', 'general')
    """
    cuts = [i for i in (record_id.find("_"), record_id.find("-")) if i != -1]
    prefix = record_id[: min(cuts)] if cuts else record_id
    return _VL_PREFIX.get(prefix.lower(), "general")


def load_benchmarks(benchmark_dir: Path, data_dir: Path) -> list[Record]:
    """Every record of the benchmark files under `benchmark_dir`, media copied to `data_dir`.
    Raises ValueError for unreadable records or files of a format that is not a benchmark."""
    from unireward.data.formats import read_source
    from unireward.data.media import VIDEO_FRAMES

    benchmark_dir = Path(benchmark_dir)
    if not benchmark_dir.exists():
        raise FileNotFoundError(f"benchmark directory {benchmark_dir} does not exist")
    records, info = read_source(
        benchmark_dir, data_dir, "auto", str(benchmark_dir), BENCHMARK_SPLIT, VIDEO_FRAMES
    )
    others = {n: f["format"] for n, f in info["files"].items() if f["format"] not in BENCHMARKS}
    if others:
        raise ValueError(
            f"{benchmark_dir}: {others} are not benchmark files; a benchmark directory holds "
            f"{', '.join(BENCHMARKS)} files (evaluate a canonical dataset with --dataset)"
        )
    bad = [(r.id, r.meta_dict["ingest_error"]) for r in records if "ingest_error" in r.meta]
    bad = [(rid, reason) for rid, reason in bad if reason]
    if bad:
        shown = "; ".join(f"{rid}: {reason}" for rid, reason in bad[:3])
        raise ValueError(
            f"{benchmark_dir}: {len(bad)} of {len(records)} records cannot be read ({shown}); "
            f"a benchmark is scored whole: fix or remove them (`unireward ingest` + `validate` "
            f"on the directory list every reason)"
        )
    return records


def label_rows(rows: list[dict[str, Any]], records: list[Record]) -> list[dict[str, Any]]:
    """Prediction rows (in `records`' order) with their `benchmark` and VL category."""
    out = []
    for row, record in zip(rows, records, strict=True):
        benchmark = BENCHMARKS[record.meta_dict["format"]]
        category = vl_category(record.id) if benchmark == VL_REWARDBENCH else ""
        out.append({**row, "benchmark": benchmark, "category": category})
    return out


def score_benchmarks(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """The papers' table from labelled prediction rows (pure): per benchmark, `n`, `tau` and
    `diff` (GenAI-Bench, VideoGen-RewardBench) or `overall`, `macro` and one accuracy per
    category (VL-RewardBench), plus `unparseable` and `swap_consistency`."""
    table: dict[str, dict[str, float]] = {}
    for benchmark in BENCHMARKS.values():
        mine = [r for r in rows if r["benchmark"] == benchmark]
        if not mine:
            continue
        preds, labels = [r["pred"] for r in mine], [r["label"] for r in mine]
        acc = M.benchmark_accuracy(preds, labels)
        cells: dict[str, float] = {"n": float(acc.n)}
        if benchmark == VL_REWARDBENCH:
            macro = M.macro_accuracy(
                [p == y for p, y in zip(preds, labels, strict=True)], [r["category"] for r in mine]
            )
            cells.update(overall=macro.overall, macro=macro.macro)
            cells.update({f"{c}_accuracy": macro.per_group.get(c, math.nan) for c in VL_CATEGORIES})
        else:
            cells.update(tau=acc.tau, diff=acc.diff, n_diff=float(acc.n_diff))
        cells["unparseable"] = acc.unparseable_rate
        cells["swap_consistency"] = M.swap_consistency(preds, [r["pred_swapped"] for r in mine])
        table[benchmark] = cells
    return table


def _pct(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{100 * value:.1f}"


def format_markdown(table: dict[str, dict[str, float]], title: str = "") -> str:
    """The table in the papers' form (accuracies in %): one row per benchmark."""
    header = (
        "| benchmark | n | tau acc | diff acc | overall acc | macro acc "
        "| general | hallucination | reasoning | unparseable | swap cons |"
    )
    lines = [f"### {title}", ""] if title else []
    lines += [header, "|---|" + "---:|" * 10]
    for name, c in table.items():
        cells = [
            str(int(c["n"])),
            *(_pct(c.get(k)) for k in ("tau", "diff", "overall", "macro")),
            *(_pct(c.get(f"{k}_accuracy")) for k in VL_CATEGORIES),
            _pct(c["unparseable"]),
            _pct(c["swap_consistency"]),
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def flat_metrics(table: dict[str, dict[str, float]]) -> dict[str, float]:
    """`benchmark/<benchmark>/<metric>` for MLflow (nan left out)."""
    return {
        f"benchmark/{name}/{key}": value
        for name, cells in table.items()
        for key, value in cells.items()
        if not math.isnan(value)
    }


def select(records: list[Record], config: EvaluateConfig) -> list[Record]:
    """At most `max_per_task_mode` records per benchmark (0 = all), in file order."""
    if not config.max_per_task_mode:
        return records
    seen: dict[str, int] = {}
    out = []
    for r in records:
        fmt = r.meta_dict["format"]
        if seen.get(fmt, 0) < config.max_per_task_mode:
            seen[fmt] = seen.get(fmt, 0) + 1
            out.append(r)
    return out


def run(
    config: EvaluateConfig,
    model_dir: Path,
    benchmark_dir: Path,
    output_dir: Path,
    name: str = "judge",
) -> BenchmarkResult:
    import pandas as pd

    from unireward.config import to_dict
    from unireward.tracking import make_tracker

    if config.backend == "vllm":
        from unireward.serving.offline import require_vllm

        require_vllm(config.vllm_python, "evaluate")
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    data_dir = output_dir / "data"
    templates = resolve_templates(config.prompt_templates, Path(model_dir))
    records = select(load_benchmarks(Path(benchmark_dir), data_dir), config)
    predictions = predict(config, Path(model_dir), records, data_dir, output_dir, templates)
    rows = label_rows(predictions, records)
    table = score_benchmarks(rows)
    mode = "cot" if config.cot else "direct"
    markdown = format_markdown(table, f"{name} ({mode}, backend {config.backend})")
    (output_dir / "benchmark.json").write_text(json.dumps(table, indent=2))  # report order
    (output_dir / "benchmark.md").write_text(markdown)
    pd.DataFrame(rows).to_parquet(output_dir / "predictions.parquet")
    tracker = make_tracker(config.tracking_uri, config.experiment)
    tags = {"stage": "evaluate", "model": name, "mode": mode, "benchmark": ",".join(table)}
    with tracker.start_run(f"benchmark-{name}", tags=tags):
        paths = {"model_dir": str(model_dir), "benchmark_dir": str(benchmark_dir)}
        tracker.log_params({"evaluate": to_dict(config), **paths})
        log_templates(tracker, templates)
        tracker.log_metrics(flat_metrics(table))
        for file in ("benchmark.json", "benchmark.md", "predictions.parquet"):
            tracker.log_artifact(output_dir / file, "benchmark")
    return BenchmarkResult(table=table, output_dir=output_dir)
