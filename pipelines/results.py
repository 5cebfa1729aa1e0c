"""The results tables, generated from the runs' own metrics (never typed by hand).

`make pipeline-run` (pipelines.run_local) writes `runs/results/<profile>.json`: the run's
evaluate / ablation / build_pairs / evaluate_policy outputs, its gate decision, wall time and
commit. This module renders those summaries:

    python -m pipelines.results                  # record runs/results/*.json, regenerate
    python -m pipelines.results --check          # exit 1 if docs or README are stale (a test)

Recording copies each summary to `docs/results/<profile>.json` (the committed source of the
tables); the tables go to `docs/results.md` (all of it) and to the README between the
`results:begin` / `results:end` markers (the headline table).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RECORDED = ROOT / "docs" / "results"
RESULTS_MD = ROOT / "docs" / "results.md"
README = ROOT / "README.md"
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
PROFILES = ("quick", "full")  # the product's DAG profiles, in table order
TASK_TITLES = {
    "image_generation": "image gen.",
    "image_understanding": "image und.",
    "video_generation": "video gen.",
    "video_understanding": "video und.",
}


def summary_keys(metrics: Mapping[str, float]) -> dict[str, float]:
    """The headline part of an evaluate metrics.json: per task and split, no breakdowns."""
    return {k: v for k, v in metrics.items() if "/by/" not in k and k.count("/") <= 2}


def by_difference(metrics: Mapping[str, float]) -> dict[str, float]:
    """The judge's accuracy per task and per what the two items differ in (colour, shape,
    motion, a defect, a tie; `evaluate`'s `<split>/<task>/by/<difference>/pairwise_tau`) on the
    held-out splits. The seen split's keys carry no split prefix; they get `eval_seen/`."""
    out = {}
    for key, value in metrics.items():
        parts = key.split("/")
        if len(parts) == 4 and parts[1] == "by":
            out[f"eval_seen/{key}"] = value
        elif len(parts) == 5 and parts[2] == "by" and parts[0] in ("eval_seen", "eval_unseen"):
            out[key] = value
    return out


def difference_table(by: Mapping[str, float]) -> str:
    """Markdown: one row per task and difference, seen and unseen accuracy."""
    rows: dict[tuple[str, str], dict[str, float]] = {}
    for key, value in by.items():
        split, task, _, difference, _ = key.split("/")
        rows.setdefault((task, difference), {})[split] = value
    out = ["| task | items differ in | seen | unseen |", "|---|---|---|---|"]
    for (task, difference), cells in sorted(rows.items()):
        seen, unseen = (_num(cells.get(s, math.nan)) for s in ("eval_seen", "eval_unseen"))
        out.append(f"| {task} | {difference} | {seen} | {unseen} |")
    return "\n".join(out)


def _num(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.2f}"


def _per_task(metrics: Mapping[str, float], key: str, split: str = "") -> list[str]:
    prefix = f"{split}/" if split else ""
    return [_num(metrics.get(f"{prefix}{task}/{key}")) for task in TASK_TITLES]


def _row(label: str, cells: list[str]) -> str:
    return f"| {label} | " + " | ".join(cells) + " |"


def headline(run: Mapping[str, Any]) -> str:
    """One profile's table: the judge per task, the Think judge, the gate, pairs, the policy."""
    judge, think = run["judge"], run["grpo"]
    seen_unseen = [
        f"{a} / {b}"
        for a, b in zip(
            _per_task(judge, "pairwise_diff"),
            _per_task(judge, "pairwise_diff", "eval_unseen"),
            strict=True,
        )
    ]
    think_cells = [
        f"{a} / {b}"
        for a, b in zip(
            _per_task(think, "pairwise_diff"), _per_task(think, "format_valid"), strict=True
        )
    ]
    reg, stats, policy = run["registration"], run["pair_stats"], run["policy"]
    aliases = ", ".join(reg.get("aliases") or []) or "none"
    lines = [
        _row("", list(TASK_TITLES.values())),
        "|---|---|---|---|---|",
        _row("judge pairwise accuracy (diff), seen / unseen", seen_unseen),
        _row("judge swap consistency (seen)", _per_task(judge, "swap_consistency")),
        _row("judge pointwise Spearman (seen)", _per_task(judge, "pointwise_spearman")),
        _row("Think judge (after GRPO): diff / format-valid (seen)", think_cells),
        "",
        f"- gate: judge version {reg['version']}, aliases {aliases} "
        f"(promoted: {str(reg['promoted']).lower()})",
        f"- build_pairs with the {stats.get('judge_from', 'unified')} judge: "
        f"{stats.get('kept')} pairs kept of {stats.get('prompts')} prompts "
        f"(swap disagreements {stats.get('swap_disagreements')})",
        "- policy before → after DPO, mean exact match: seen "
        f"{_num(policy.get('before/eval_seen/mean'))} → {_num(policy.get('after/eval_seen/mean'))}"
        f", unseen {_num(policy.get('before/eval_unseen/mean'))} → "
        f"{_num(policy.get('after/eval_unseen/mean'))} (promoted: "
        f"{str(run['policy_registration'].get('promoted')).lower()})",
        f"- wall time {run['wall_s'] / 60:.1f} min on {run['machine']}; commit {run['commit']}, "
        f"{run['date']}",
    ]
    return "\n".join(lines)


def load_recorded(directory: Path = RECORDED) -> dict[str, dict[str, Any]]:
    found = {p.stem: json.loads(p.read_text()) for p in sorted(directory.glob("*.json"))}
    return {
        name: found[name]
        for name in (*PROFILES, *sorted(set(found) - set(PROFILES)))
        if name in found
    }


def readme_block(runs: Mapping[str, Mapping[str, Any]]) -> str:
    parts = [BEGIN, "<!-- generated by `python -m pipelines.results` from docs/results/ -->"]
    for name in PROFILES:
        parts.append("")
        if name in runs:
            parts += [
                f"**`make pipeline-run{'' if name == 'quick' else ' PROFILE=' + name}`**",
                "",
                headline(runs[name]),
            ]
        else:
            command = "make pipeline-run" + ("" if name == "quick" else f" PROFILE={name}")
            parts.append(
                f"**profile `{name}`**: no run recorded yet (`{command}`, then "
                "`python -m pipelines.results`)."
            )
    parts.append(END)
    return "\n".join(parts)


def results_md(runs: Mapping[str, Mapping[str, Any]]) -> str:
    from unireward.eval.report import format_comparison
    from unireward.policy.evaluate_policy import format_table

    out = [
        "# Results",
        "",
        "Generated by `python -m pipelines.results` from the summaries in `docs/results/`, which",
        "`make pipeline-run` writes (`runs/results/<profile>.json`). Do not edit by hand.",
    ]
    for name, run in runs.items():
        out += [
            "",
            f"## Profile `{name}`",
            "",
            headline(run),
            "",
            "Base → unified judge, per split and task:",
            "",
            "```",
            format_comparison(run["base"], run["judge"]),
            "```",
            "",
            *(
                [
                    "The unified judge's accuracy by what the two items differ in (tau: a tie",
                    "answer on a non-tie pair counts wrong; ~50 pairs a task and split in quick,",
                    "200 in full, split over the differences):",
                    "",
                    difference_table(run["judge_by_difference"]),
                    "",
                ]
                if run.get("judge_by_difference")
                else []
            ),
            "The UnifiedReward-Think ablation (unified judge → cold start → + RS → + GRPO):",
            "",
            run["ablation_md"].strip(),
            "",
            "Gate: " + "; ".join(run["registration"].get("reasons") or ["–"]),
            "",
            "Pair statistics: "
            + ", ".join(
                f"{k} {v}" for k, v in run["pair_stats"].items() if not isinstance(v, dict)
            ),
            "",
            "Policy before → after DPO (held-out questions, exact match):",
            "",
            "```",
            format_table(run["policy"]),
            "```",
        ]
    return "\n".join(out) + "\n"


def _replace_block(text: str, block: str) -> str:
    if BEGIN not in text or END not in text:
        raise ValueError(f"README has no {BEGIN} ... {END} block")
    head, rest = text.split(BEGIN, 1)
    return head + block + rest.split(END, 1)[1]


def render(directory: Path = RECORDED) -> tuple[str, str]:
    """(docs/results.md, README) as the recorded summaries make them."""
    runs = load_recorded(directory)
    return results_md(runs), _replace_block(README.read_text(), readme_block(runs))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "summaries",
        nargs="*",
        type=Path,
        help="run summaries to record (default: runs/results/*.json)",
    )
    parser.add_argument("--check", action="store_true", help="only check the docs are current")
    args = parser.parse_args(argv)
    if args.check:
        md, readme = render()
        stale = [
            p
            for p, text in ((RESULTS_MD, md), (README, readme))
            if not p.exists() or p.read_text() != text
        ]
        for path in stale:
            print(f"stale: {path.relative_to(ROOT)} (run `python -m pipelines.results`)")
        return 1 if stale else 0
    RECORDED.mkdir(parents=True, exist_ok=True)
    for path in args.summaries or sorted((ROOT / "runs" / "results").glob("*.json")):
        shutil.copyfile(path, RECORDED / path.name)
        print(f"recorded {path} -> {(RECORDED / path.name).relative_to(ROOT)}")
    md, readme = render()
    RESULTS_MD.write_text(md)
    README.write_text(readme)
    print(f"wrote {RESULTS_MD.relative_to(ROOT)} and the README's results block")
    return 0


if __name__ == "__main__":
    sys.exit(main())
