"""The Kubeflow pipeline: it compiles to the intended DAG, its component modules import only
kfp + the standard library at top level, and it runs end to end with kfp.local on a tiny config.

    .venv/bin/pytest tests/test_pipeline.py -q
"""

from __future__ import annotations

import ast
import dataclasses
import json
import os
import secrets
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

import stage_table

ROOT = Path(__file__).resolve().parents[1]
STAGE_COMPONENTS = stage_table.COMPONENT_STAGES

if str(ROOT) not in sys.path:  # components/ and pipelines/ are top-level packages of the repo
    sys.path.insert(0, str(ROOT))


def _top_level_imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.add((node.module or "").split(".")[0])
    return names


@pytest.mark.parametrize("path", sorted((ROOT / "components").glob("*.py")), ids=lambda p: p.stem)
def test_component_modules_import_only_kfp_and_stdlib(path: Path) -> None:
    allowed = set(sys.stdlib_module_names) | {"kfp", "components"}
    assert _top_level_imports(path) <= allowed, f"{path.name}: {_top_level_imports(path)}"


@pytest.mark.parametrize("stage", STAGE_COMPONENTS)
def test_one_component_per_stage_with_the_stage_name(stage: str) -> None:
    import importlib

    module = importlib.import_module(f"components.{stage}")
    component = getattr(module, stage)
    assert component.component_spec.name == stage.replace("_", "-")
    assert "unireward" in component.component_spec.implementation.container.command[-1]


def _compiled(tmp_path: Path, profile: str = "quick") -> dict:
    from pipelines.compile import compile_pipeline

    out = compile_pipeline(profile, tmp_path / "p.yaml", base_model_uri="s3://bucket/base")
    # First document: the pipeline spec; the second holds the kfp-kubernetes platform settings.
    return next(yaml.safe_load_all(out.read_text()))


def test_pipeline_compiles_to_the_stage_dag(tmp_path: Path) -> None:
    spec = _compiled(tmp_path)
    tasks = spec["root"]["dag"]["tasks"]
    display = {name: task["taskInfo"]["name"] for name, task in tasks.items()}
    deps = {
        display[n]: sorted(display[d] for d in t.get("dependentTasks", []))
        for n, t in tasks.items()
    }
    assert deps == {
        "base_model": [],
        "ingest": [],
        "validate": ["ingest"],
        "unified_sft": ["base_model", "validate"],
        "evaluate-base": ["base_model", "validate"],
        "evaluate-judge": ["unified_sft", "validate"],
        "register": ["evaluate-judge", "unified_sft"],
        "cold_start": ["base_model", "unified_sft", "validate"],
        "evaluate-think": ["cold_start", "rejection_sample", "validate"],
        "rejection_sample": ["cold_start", "validate"],
        "rs_sft": ["cold_start", "rejection_sample", "validate"],
        "evaluate-rs": ["rejection_sample", "rs_sft", "validate"],
        "grpo": ["rejection_sample", "rs_sft", "validate"],
        "evaluate-grpo": ["grpo", "rejection_sample", "validate"],
        "ablation": ["evaluate-grpo", "evaluate-judge", "evaluate-rs", "evaluate-think"],
        "policy_model": [],
        # the pairs come from the best of the four judges, by their evaluations
        "build_pairs": [
            "cold_start",
            "evaluate-grpo",
            "evaluate-judge",
            "evaluate-rs",
            "evaluate-think",
            "grpo",
            "policy_model",
            "register",
            "rs_sft",
            "unified_sft",
        ],
        "dpo": ["build_pairs", "policy_model"],
        "evaluate_policy": ["dpo", "policy_model"],
        "register_policy": ["dpo", "evaluate_policy"],
    }
    # register consumes the judge's evaluation and checkpoint, not the base model's.
    by_display = {display[n]: t for n, t in tasks.items()}
    register_inputs = by_display["register"]["inputs"]["artifacts"]
    producers = {
        k: display[v["taskOutputArtifact"]["producerTask"]] for k, v in register_inputs.items()
    }
    assert producers == {"evaluation": "evaluate-judge", "model": "unified_sft"}
    # cold start gets the unified judge and the base (its config's `init` picks the start);
    # its evaluation is in CoT mode.
    cold_inputs = by_display["cold_start"]["inputs"]["artifacts"]
    assert display[cold_inputs["judge"]["taskOutputArtifact"]["producerTask"]] == "unified_sft"
    assert display[cold_inputs["base_model"]["taskOutputArtifact"]["producerTask"]] == "base_model"
    think_params = by_display["evaluate-think"]["inputs"]["parameters"]
    assert think_params["cot"]["runtimeValue"]["constant"] is True
    assert "cot" not in by_display["evaluate-judge"]["inputs"]["parameters"]

    # rejection sampling -> rs_sft -> grpo: each starts from the judge before it, and grpo
    # trains on rejection_sample's hard set; their evaluations are in CoT mode.
    def producer(task: str, name: str) -> str:
        ref = by_display[task]["inputs"]["artifacts"][name]["taskOutputArtifact"]
        return display[ref["producerTask"]]

    assert producer("rejection_sample", "judge") == "cold_start"
    assert producer("rs_sft", "judge") == "cold_start"
    assert producer("rs_sft", "samples") == "rejection_sample"
    assert producer("grpo", "judge") == "rs_sft"
    assert producer("grpo", "samples") == "rejection_sample"
    for task in ("evaluate-rs", "evaluate-grpo"):
        assert by_display[task]["inputs"]["parameters"]["cot"]["runtimeValue"]["constant"] is True
    # ... and on rejection sampling's hard items (split `hard`); the direct ones are not.
    for task in ("evaluate-think", "evaluate-rs", "evaluate-grpo"):
        assert producer(task, "samples") == "rejection_sample"
    for task in ("evaluate-base", "evaluate-judge"):
        assert "samples" not in by_display[task]["inputs"]["artifacts"]
    # the ablation's columns: each input is the evaluation of the judge of the same name
    for column in ("judge", "think", "rs", "grpo"):
        assert producer("ablation", column) == f"evaluate-{column}"
    # the policy is registered under its own name, with the policy evaluation
    reg_policy = by_display["register_policy"]["inputs"]
    assert display[reg_policy["artifacts"]["evaluation"]["taskOutputArtifact"]["producerTask"]] == (
        "evaluate_policy"
    )
    assert spec["root"]["inputDefinitions"]["parameters"]["policy_model_uri"]["defaultValue"] == (
        "s3://bucket/policy-tiny"
    )


def test_compiled_defaults_are_the_profile_configs(tmp_path: Path) -> None:
    from pipelines.unireward_pipeline import STAGES

    from unireward.config import load_params, stage_section

    params = load_params(ROOT / "params.yaml")
    for profile in ("quick", "full"):
        inputs = _compiled(tmp_path, profile)["root"]["inputDefinitions"]["parameters"]
        assert inputs["base_model_uri"]["defaultValue"] == "s3://bucket/base"
        assert inputs["profile"]["defaultValue"] == profile
        for stage in STAGES:
            default = inputs[f"{stage}_config"]["defaultValue"]
            assert default == json.loads(json.dumps(stage_section(params, stage, profile)))


def test_stage_configs_reject_overrides_for_unknown_stages() -> None:
    from pipelines.unireward_pipeline import stage_configs

    with pytest.raises(ValueError, match="unifed_sft"):
        stage_configs("quick", overrides={"unifed_sft": {}})


@pytest.mark.parametrize(
    ("profile", "error"),
    [("quick", None), ("full", None), ("qwen2_5_vl_7b", "expects a qwen2_5_vl base")],
)
def test_a_base_of_another_family_than_the_profile_is_refused(profile: str, error) -> None:
    from pipelines.run_local import check_base_family

    shipped = ROOT / "models" / "base-tiny"  # the shipped Qwen3-VL base
    if error is None:
        check_base_family(profile, shipped, ROOT / "params.yaml")
    else:
        with pytest.raises(ValueError, match=error):
            check_base_family(profile, shipped, ROOT / "params.yaml")


def test_kfp_numbers_become_ints_again_where_configs_want_ints() -> None:
    from unireward.config import from_dict
    from unireward.judge.unified_sft import UnifiedSftConfig

    cfg = from_dict(UnifiedSftConfig, {"train": {"max_steps": 3.0, "learning_rate": 1.0e-3}})
    assert cfg.train.max_steps == 3 and isinstance(cfg.train.max_steps, int)
    assert isinstance(cfg.train.learning_rate, float)


# --------------------------------------------------------------------------- end to end

TINY = {
    "ingest": {"shapes": {"train_per_task_mode": 4, "eval_per_task_mode": 2, "frames": 4}},
    "unified_sft": {
        "train": {"max_steps": 3, "batch_size": 2, "save_steps": 3, "logging_steps": 1},
        "caption_curriculum": {"hold_steps": 1, "anneal_steps": 1},
    },
    "cold_start": {
        "train": {"max_steps": 2, "batch_size": 2, "save_steps": 2, "logging_steps": 1},
        "max_items_per_task": 1,
        "init": "base",  # the `full` profile's start (quick's, the judge: tests/test_cold_start)
    },
    "rejection_sample": {"k": 2, "max_items_per_task": 1, "max_new_tokens": 8},
    "rs_sft": {"train": {"max_steps": 2, "batch_size": 2, "save_steps": 2, "logging_steps": 1}},
    "grpo": {"num_generations": 2, "max_steps": 2, "save_steps": 2, "max_completion_length": 8},
    "evaluate": {"max_per_task_mode": 2, "batch_size": 8, "cot_max_new_tokens": 8},
    # The shipped policy (models/policy-tiny) with the oracle judge: no vLLM server here
    # (tests/test_build_pairs.py runs the served judge).
    "build_pairs": {"judge": "oracle", "prompts": 9, "samples": 4},
    "dpo": {"train": {"max_steps": 2, "batch_size": 2, "save_steps": 2, "logging_steps": 1}},
    "evaluate_policy": {"questions_per_split": 3},
}


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random tiny Qwen3-VL checkpoint, the shipped base's family (its weights are not needed)."""
    from unireward.model.tiny import (
        TinyModelConfig,
        build_model,
        build_processor,
        save_checkpoint,
        train_tokenizer,
    )
    from unireward.tasks import PAIR_ANSWERS, TIE_ANSWERS

    cfg = TinyModelConfig.preset("test", family="qwen3_vl", image_size=64)
    corpus = [
        *(a for pair in PAIR_ANSWERS.values() for a in pair),
        *TIE_ANSWERS.values(),
        *(f"Final Score: {n}" for n in range(11)),
        "Which image matches the caption better? a red circle at the top left",
        "Score how well the answer fits the question about the video.",
    ] * 20
    tokenizer = train_tokenizer(corpus, cfg.vocab_size)
    out = tmp_path_factory.mktemp("base") / "base-tiny"
    model = build_model(cfg, tokenizer)
    return save_checkpoint(model, build_processor(tokenizer, cfg.image_size, cfg.family), out)


# Secret variables a user's environment holds while the pipeline runs (issue 21, item 6): known
# values, so every output of the run can be searched for them. None is needed by the tiny run;
# they are only there to leak if anything copies the environment into a log, MLflow or a file.
SECRET_ENV = (
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "UNIREWARD_JUDGE_API_KEY",
    "OPENAI_API_KEY",
    "HF_TOKEN",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_TOKEN",
    "PGPASSWORD",
)


@dataclasses.dataclass
class EndToEnd:
    run: Any  # pipelines.run_local.LocalRun
    root: Path  # everything the run wrote: kfp artifacts, the MLflow store, the compiled spec
    uri: str
    log: Path  # the run's stdout and stderr, components' included (fd-level capture)
    secrets: dict[str, str]


@pytest.fixture(scope="module")
def end_to_end(tiny_base: Path, tmp_path_factory: pytest.TempPathFactory) -> EndToEnd:
    """The tiny DAG run once with kfp.local, with known secret values in its environment."""
    from pipelines.compile import compile_pipeline
    from pipelines.run_local import run_pipeline

    from unireward.tracking import default_tracking_uri

    root = tmp_path_factory.mktemp("e2e")
    secrets_ = {name: f"leak-{name.lower()}-{secrets.token_hex(8)}" for name in SECRET_ENV}
    log = tmp_path_factory.mktemp("e2e-log") / "run.log"
    with pytest.MonkeyPatch.context() as mp, log.open("w") as sink:
        for name, value in secrets_.items():
            mp.setenv(name, value)
        # kfp.local logs the components' output to sys.stdout; anything else writes to fd 1 / 2
        mp.setattr(sys, "stdout", sink), mp.setattr(sys, "stderr", sink)
        saved = [os.dup(1), os.dup(2)]
        os.dup2(sink.fileno(), 1), os.dup2(sink.fileno(), 2)
        try:
            run = run_pipeline(
                "quick",
                overrides=TINY,
                base_model_uri=str(tiny_base),
                pipeline_root=root / "kfp",
                tracking_uri=(uri := default_tracking_uri(root / "mlflow")),
            )  # kfp.local raises if any task fails
            compile_pipeline("quick", root / "pipeline.yaml", base_model_uri="s3://bucket/base")
        finally:
            sink.flush()
            os.dup2(saved[0], 1), os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
    return EndToEnd(run, root, uri, log, secrets_)


def test_no_secret_reaches_any_output_of_a_pipeline_run(end_to_end: EndToEnd) -> None:
    """Not in MLflow (params, tags, artifacts: the store's database and artifact files), not in
    any artifact or file a stage wrote, not in the compiled pipeline, not in the run's logs."""
    files = [p for p in end_to_end.root.rglob("*") if p.is_file()] + [end_to_end.log]
    assert len(files) > 50 and (end_to_end.root / "pipeline.yaml").is_file()
    assert end_to_end.log.stat().st_size > 0  # the components' output was captured
    assert any(p.suffix == ".db" for p in files)  # the MLflow store is among them
    leaks = [
        (str(p), name)
        for p in files
        for data in [p.read_bytes()]
        for name, value in end_to_end.secrets.items()
        if value.encode() in data
    ]
    assert not leaks
    # The search sees what stages store: the registered model's name is in the MLflow database
    # and the components' training logs are in the captured output.
    [db] = [p for p in files if p.suffix == ".db"]
    assert b"UnifiedReward" in db.read_bytes()
    assert b"'loss'" in end_to_end.log.read_bytes()


def test_pipeline_runs_end_to_end_with_kfp_local(end_to_end: EndToEnd, tiny_base: Path) -> None:
    from pipelines.run_local import describe

    run, uri, tmp_path = end_to_end.run, end_to_end.uri, end_to_end.root

    judges = list((tmp_path / "kfp").glob("unireward-*/unified-sft/judge"))
    assert len(judges) == 1 and list(judges[0].glob("*.safetensors"))
    assert json.loads((judges[0] / "unireward.json").read_text())["global_step"] == 3
    assert run.registration["model_name"] == "UnifiedReward"
    assert "challenger" in run.aliases
    assert "image_generation/pairwise_diff" in run.judge_metrics
    assert set(run.base_metrics) == set(run.judge_metrics)
    # the cold-start judge: trained from the base (`init: base`), scored in CoT mode
    thinks = list((tmp_path / "kfp").glob("unireward-*/cold-start/think_judge"))
    assert len(thinks) == 1 and list(thinks[0].glob("*.safetensors"))
    info = json.loads((thinks[0] / "unireward.json").read_text())
    assert info["stage"] == "cold_start" and info["global_step"] == 2
    assert info["judge"].endswith("unified-sft/judge")
    assert info["started_from"] == str(tiny_base)  # kfp.local's importer passes the path as is
    distilled = list((tmp_path / "kfp").glob("unireward-*/cold-start/distillation"))
    assert (distilled[0] / "teacher_outputs.jsonl").read_text().count("\n") == 8  # 4 x 2 orders
    assert 0 <= run.think_metrics["image_generation/format_valid"] <= 1
    assert "image_generation/format_valid" not in run.judge_metrics
    # rejection sampling on the cold-start judge, then rs_sft and grpo, each scored in CoT mode
    [samples] = list((tmp_path / "kfp").glob("unireward-*/rejection-sample/samples"))
    summary = json.loads((samples / "summary.json").read_text())
    assert summary["items"] == 4 and summary["samples"] == 8  # 4 tasks x 1 item x k=2
    assert (samples / "samples.jsonl").read_text().count("\n") == 8
    [rs_dir] = list((tmp_path / "kfp").glob("unireward-*/rs-sft/rs_judge"))
    rs_info = json.loads((rs_dir / "unireward.json").read_text())
    assert rs_info["examples"] == summary["kept"]
    assert rs_info["global_step"] == (2 if summary["kept"] else 0)
    [grpo_dir] = list((tmp_path / "kfp").glob("unireward-*/grpo/think_judge"))
    grpo_info = json.loads((grpo_dir / "unireward.json").read_text())
    assert grpo_info["stage"] == "grpo" and grpo_info["judge"].endswith("rs-sft/rs_judge")
    assert grpo_info["prompts"] == summary["hard"]
    assert grpo_info["global_step"] == (2 if summary["hard"] else 0)
    for metrics in (run.think_metrics, run.rs_metrics, run.grpo_metrics):
        assert 0 <= metrics["image_generation/format_valid"] <= 1
        # rejection sampling's hard items are scored too, as split `hard`
        assert ("hard/cot_accuracy_mean" in metrics) == (summary["hard"] > 0)
    # cold_start tracked its distillation and training to the run's MLflow store
    from unireward.tracking import MlflowTracker

    client = MlflowTracker(uri, "unireward").client
    experiment = client.get_experiment_by_name("unireward")
    [tracked] = client.search_runs(
        [experiment.experiment_id], filter_string="tags.stage = 'cold_start'"
    )
    assert tracked.data.metrics["items"] == 8 and "rejected_fraction" in tracked.data.metrics
    # the run's profile reaches the registered version's description
    version = client.get_model_version("UnifiedReward", str(run.registration["version"]))
    assert "- profile: `quick`" in version.description
    text = describe(run)
    assert "eval_unseen" in text and f"version {run.registration['version']}" in text
    assert "(think -> rs)" in text and "(rs -> grpo)" in text
    assert "(judge -> think)" in text and "format-valid (eval_seen): image_generation" in text
    # policy alignment: oracle pairs, two DPO steps, before/after, its own registered model
    assert run.pair_stats["judge"] == "oracle" and run.pair_stats["prompts"] == 9
    assert run.pair_stats["kept"] >= 1  # the shipped policy's samples disagree on some questions
    [aligned] = (tmp_path / "kfp").glob("unireward-*/dpo/aligned_policy")
    assert json.loads((aligned / "dpo.json").read_text())["global_step"] == 2
    assert {"before/eval_seen/mean", "after/eval_unseen/shape"} <= set(run.policy_metrics)
    assert run.policy_registration["model_name"] == "ShapesPolicy"
    [pairs_run] = client.search_runs(
        [experiment.experiment_id], filter_string="tags.stage = 'build_pairs'"
    )
    assert pairs_run.data.metrics["kept"] == run.pair_stats["kept"]
    assert "build_pairs (judge: oracle" in text and "policy before -> after" in text
    # the ablation: one table per split across the four judges, and its own MLflow run
    assert "| task | judge (direct) | think (CoT) | rs (CoT) | grpo (CoT) |" in run.ablation_table
    assert run.ablation_table in text
    [ablation_run] = client.search_runs(
        [experiment.experiment_id], filter_string="tags.stage = 'ablation'"
    )
    key = "image_generation/format_valid"
    assert ablation_run.data.metrics[f"grpo/eval_seen/{key}"] == run.grpo_metrics[key]
