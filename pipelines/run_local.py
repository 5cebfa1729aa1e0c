"""Run the pipeline on this machine with kfp.local, then print base vs judge per task.

    python -m pipelines.run_local --profile quick          # what `make pipeline-run` does

Every component runs as a subprocess of this interpreter (`SubprocessRunner(use_venv=False)`:
the venv already holds unireward, no image, no per-task pip install). Artifacts go under
`runs/kfp/`; MLflow is the project's sqlite store `mlflow.db`, passed to every stage that tracks
as an absolute URI so a component's working directory does not matter.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

# Before anything spawns a component: they inherit this environment. Nothing may phone home.
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DVC_NO_ANALYTICS": "1",
}
# The stages whose configs have no `tracking_uri`; every other stage gets the run's (None there
# would mean "sqlite under the cwd").
UNTRACKED_STAGES = ("validate", "serve")


@dataclasses.dataclass
class LocalRun:
    base_metrics: dict[str, float]
    judge_metrics: dict[str, float]
    think_metrics: dict[str, float]  # the cold-start judge, pairwise in CoT mode
    rs_metrics: dict[str, float]  # + rejection sampling (rs_sft), CoT mode
    grpo_metrics: dict[str, float]  # + GRPO, CoT mode
    ablation_table: str  # ablation.md: judge -> think -> rs -> grpo, per split and task
    registration: dict[str, Any]
    aliases: list[str]
    pair_stats: dict[str, Any]  # build_pairs' stats.json
    policy_metrics: dict[str, float]  # evaluate_policy: before / after / delta
    policy_registration: dict[str, Any]
    seconds: float
    pipeline_root: Path


def _metrics(evaluation_dir: str) -> dict[str, float]:
    from unireward.registry.register import load_metrics

    return load_metrics(Path(evaluation_dir) / "metrics.json")


def _aliases(tracking_uri: str, name: str, version: str) -> list[str]:
    from unireward.tracking import MlflowTracker

    client = MlflowTracker(tracking_uri, experiment="unireward").client
    return sorted(client.get_model_version(name, version).aliases)


def check_base_family(profile: str, base_model: Path, params_path: Path) -> None:
    """Refuse a base checkpoint of another model family than the profile's `pretrain_base`
    describes (profile judge_qwen3 with the shipped Qwen2.5-VL base): its data and recipe are
    set for that family, and the DAG would otherwise train on the wrong base for hours."""
    from unireward.config import load_params, stage_section

    family = stage_section(load_params(params_path), "pretrain_base", profile)["model"]["family"]
    found = json.loads((base_model / "config.json").read_text()).get("model_type")
    if found != family:
        raise ValueError(
            f"profile {profile!r} expects a {family} base (pretrain_base.model.family) but "
            f"{base_model} is {found}; build one with `unireward pretrain_base --profile "
            f"{profile} --output-dir DIR` and pass --base-model-uri DIR"
        )


def run_pipeline(
    profile: str = "quick",
    overrides: dict[str, dict[str, Any]] | None = None,
    base_model_uri: str | None = None,
    pipeline_root: Path | None = None,
    tracking_uri: str | None = None,
    policy_model_uri: str | None = None,
) -> LocalRun:
    """Run the DAG with kfp.local; raise if any task fails."""
    from kfp import local

    from pipelines.unireward_pipeline import (
        DEFAULT_BASE_MODEL,
        DEFAULT_POLICY_MODEL,
        PROJECT_ROOT,
        STAGES,
        stage_configs,
        unireward_pipeline,
    )
    from unireward.tracking import default_tracking_uri

    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)
    tracking_uri = tracking_uri or default_tracking_uri(PROJECT_ROOT)
    base_model = Path(base_model_uri or DEFAULT_BASE_MODEL).resolve()
    if not (base_model / "config.json").is_file():
        raise FileNotFoundError(
            f"base checkpoint {base_model} not found; build it with `make pretrain-base`"
        )
    check_base_family(profile, base_model, PROJECT_ROOT / "params.yaml")
    policy_model = Path(policy_model_uri or DEFAULT_POLICY_MODEL).resolve()
    if not (policy_model / "config.json").is_file():
        raise FileNotFoundError(
            f"policy checkpoint {policy_model} not found; build it with `make pretrain-policy`"
        )
    pipeline_root = (pipeline_root or PROJECT_ROOT / "runs" / "kfp").resolve()
    pipeline_root.mkdir(parents=True, exist_ok=True)

    configs = stage_configs(profile, overrides=overrides)
    for stage in STAGES:
        if stage not in UNTRACKED_STAGES:
            configs[f"{stage}_config"].setdefault("tracking_uri", tracking_uri)

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(pipeline_root))
    start = time.perf_counter()
    with warnings.catch_warnings():
        # Expected locally: images and display names are cluster settings the runner ignores.
        warnings.filterwarnings("ignore", message=".*custom or non-Python base image")
        warnings.filterwarnings("ignore", message=".*have no effect in the current local runner")
        task = unireward_pipeline(
            base_model_uri=str(base_model),
            policy_model_uri=str(policy_model),
            profile=profile,
            **configs,
        )
    seconds = time.perf_counter() - start

    registration = json.loads(
        (Path(task.outputs["registration"].path) / "registration.json").read_text()
    )
    uri = configs["register_config"]["tracking_uri"]
    policy_registration = json.loads(
        (Path(task.outputs["policy_registration"].path) / "registration.json").read_text()
    )
    return LocalRun(
        base_metrics=_metrics(task.outputs["base_evaluation"].path),
        judge_metrics=_metrics(task.outputs["judge_evaluation"].path),
        think_metrics=_metrics(task.outputs["think_evaluation"].path),
        rs_metrics=_metrics(task.outputs["rs_evaluation"].path),
        grpo_metrics=_metrics(task.outputs["grpo_evaluation"].path),
        ablation_table=(Path(task.outputs["ablation"].path) / "ablation.md").read_text(),
        registration=registration,
        aliases=_aliases(uri, registration["model_name"], registration["version"]),
        pair_stats=_pair_stats(Path(task.outputs["pairs"].path)),
        policy_metrics=_metrics(task.outputs["policy_evaluation"].path),
        policy_registration=policy_registration,
        seconds=seconds,
        pipeline_root=pipeline_root,
    )


def _pair_stats(pairs_dir: Path) -> dict[str, Any]:
    """build_pairs' stats.json with the judge it chose (judge_choice.json)."""
    stats = json.loads((pairs_dir / "stats.json").read_text())
    choice = json.loads((pairs_dir / "judge_choice.json").read_text())
    return {**stats, "judge_from": choice["judge"], "judge_choice": choice["reason"]}


def _format_valid(metrics: dict[str, float]) -> str:
    rates = {k: v for k, v in metrics.items() if k.endswith("/format_valid") and k.count("/") == 1}
    return "format-valid (eval_seen): " + ", ".join(f"{k[:-13]} {v:.2f}" for k, v in rates.items())


def _pairs_line(stats: dict[str, Any]) -> str:
    keys = (
        "kept",
        "dropped_single_answer",
        "dropped_no_decided_pair",
        "dropped_chosen_not_better",
        "pair_ties",
        "pair_unparseable",
        "swap_disagreements",
    )
    return (
        f"build_pairs (judge: {stats.get('judge')} {stats.get('judge_from')}, "
        f"{stats.get('judge_choice')}; {stats.get('prompts')} prompts): "
        + ", ".join(f"{k} {stats.get(k)}" for k in keys)
    )


def describe(run: LocalRun) -> str:
    from unireward.eval.report import format_comparison
    from unireward.policy.evaluate_policy import format_table

    reg, pol = run.registration, run.policy_registration
    return "\n".join(
        [
            format_comparison(run.base_metrics, run.judge_metrics),
            "",
            "cold start (UnifiedReward-Think stage 1), pairwise in CoT mode:",
            format_comparison(run.judge_metrics, run.think_metrics, names=("judge", "think")),
            _format_valid(run.think_metrics),
            "",
            "+ rejection sampling (rs_sft), pairwise in CoT mode:",
            format_comparison(run.think_metrics, run.rs_metrics, names=("think", "rs")),
            _format_valid(run.rs_metrics),
            "",
            "+ GRPO, pairwise in CoT mode:",
            format_comparison(run.rs_metrics, run.grpo_metrics, names=("rs", "grpo")),
            _format_valid(run.grpo_metrics),
            "",
            "UnifiedReward-Think ablation (ablation.md):",
            run.ablation_table,
            f"registered: {reg['model_name']} version {reg['version']} "
            f"aliases {run.aliases or '[]'} (promoted: {reg['promoted']})",
            *(f"  gate: {reason}" for reason in reg["reasons"]),
            "",
            _pairs_line(run.pair_stats),
            "policy before -> after DPO (held-out shapes-world questions, exact match):",
            format_table(run.policy_metrics),
            f"registered policy: {pol['model_name']} version {pol['version']} "
            f"(promoted: {pol['promoted']})",
            f"artifacts: {run.pipeline_root}",
            f"wall time: {run.seconds:.1f} s",
        ]
    )


def _commit() -> str:
    import subprocess

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else ""

    head = git("rev-parse", "--short=7", "HEAD") or "unknown"
    return head + ("-dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def summary(run: LocalRun, profile: str) -> dict[str, Any]:
    """What pipelines.results renders: the run's own metrics files, its gate decision, time."""
    import datetime

    from pipelines.results import by_difference, summary_keys

    return {
        "profile": profile,
        "commit": _commit(),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d"),
        "machine": f"{os.cpu_count()} CPU cores",
        "wall_s": round(run.seconds, 1),
        **{
            name: summary_keys(getattr(run, f"{name}_metrics"))
            for name in ("base", "judge", "think", "rs", "grpo")
        },
        "judge_by_difference": by_difference(run.judge_metrics),
        "ablation_md": run.ablation_table,
        "registration": {**run.registration, "aliases": run.aliases},
        "pair_stats": run.pair_stats,
        "policy": run.policy_metrics,
        "policy_registration": run.policy_registration,
    }


def write_summary(run: LocalRun, profile: str, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{profile}.json"
    path.write_text(json.dumps(summary(run, profile), indent=1, sort_keys=True) + "\n")
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--base-model-uri", default=None, help="default: models/base-tiny")
    parser.add_argument("--pipeline-root", type=Path, default=None, help="default: runs/kfp")
    args = parser.parse_args(argv)
    try:
        run = run_pipeline(args.profile, None, args.base_model_uri, args.pipeline_root)
    except (FileNotFoundError, ValueError) as err:
        raise SystemExit(f"error: {err}") from None
    print(describe(run))
    path = write_summary(run, args.profile, ROOT / "runs" / "results")
    print(f"summary: {path} (`python -m pipelines.results` records it in docs/results.md)")


if __name__ == "__main__":
    main()
