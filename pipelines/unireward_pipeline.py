"""The UnifiedReward pipeline:
ingest -> validate -> unified_sft -> evaluate(base) || evaluate(judge) -> register,
                                  \-> cold_start -> rejection_sample -> rs_sft -> grpo,
                                      with evaluate(think | rs | grpo, CoT mode) after each
                                      training stage -> ablation (one table across the
                                      judge and the three Think judges).
register -> build_pairs (serve the judge + pair construction) -> dpo -> evaluate_policy
         -> register_policy (the policy's own registered model).

    python -m pipelines.compile --profile quick --output build/unireward-quick.yaml
    python -m pipelines.run_local --profile quick

The DAG takes every stage's config as a `dict` parameter; `stage_configs(profile)` reads them
from `params.yaml` (the stage's section with the profile's overrides) at compile or run time, so
the YAML and a local run carry exactly the configs they ran with, and tests can shrink them.

Cluster settings (GPU pool, PVC, Secrets, per-stage CPU/memory) come from `params.yaml`'s
`deploy` section through `build_pipeline(deploy)` (pipelines/platform.py); kfp.local ignores
them. `unireward_pipeline` is the DAG with the default `DeployConfig`.

The policy (the shipped `models/policy-tiny`, `unireward policy_sft`) comes in the same way from
`policy_model_uri`. `build_pairs` serves the judge it was given for the duration of its task (the
`serve` stage inside it; on a cluster `build_pairs.judge_url` names the judge Deployment), so the
local run starts and stops vLLM itself. It runs after `register` so a judge is in the registry
before it is used.

The base model comes in through `dsl.importer` from `base_model_uri`: an absolute local path for
kfp.local (its importer accepts a plain path, and the artifact's `.path` is that path), an
`s3://` URI on a cluster (the launcher downloads it).
"""

# No `from __future__ import annotations`: kfp reads the pipeline's parameter types at runtime.
from pathlib import Path
from typing import Any, NamedTuple

from components.ablation import ablation
from components.build_pairs import build_pairs
from components.cold_start import cold_start
from components.dpo import dpo
from components.evaluate import evaluate
from components.evaluate_policy import evaluate_policy
from components.grpo import grpo
from components.ingest import ingest
from components.register import register
from components.rejection_sample import rejection_sample
from components.rs_sft import rs_sft
from components.unified_sft import unified_sft
from components.validate import validate
from kfp import dsl

from pipelines.platform import DeployConfig, apply

PIPELINE_NAME = "unireward"
PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_BASE_MODEL = PROJECT_ROOT / "models" / "base-tiny"
DEFAULT_POLICY_MODEL = PROJECT_ROOT / "models" / "policy-tiny"
# The stages of this DAG, in order; each takes the params.yaml section of the same name.
STAGES = (
    "ingest",
    "validate",
    "unified_sft",
    "cold_start",
    "rejection_sample",
    "rs_sft",
    "grpo",
    "evaluate",
    "ablation",
    "register",
    "serve",
    "build_pairs",
    "dpo",
    "evaluate_policy",
    "register_policy",
)


def stage_configs(
    profile: str = "quick",
    params_path: Path = PROJECT_ROOT / "params.yaml",
    overrides: dict[str, dict[str, Any]] | None = None,
) -> dict[str, dict[str, Any]]:
    """Pipeline arguments `{"<stage>_config": dict}` for `profile`, deep-merged with `overrides`.

    Only `unireward.config` (pyyaml) is imported, so compiling needs no torch.
    """
    from unireward.config import deep_merge, load_params, stage_section

    params = load_params(Path(params_path))
    unknown = sorted(set(overrides or {}) - set(STAGES))
    if unknown:
        raise ValueError(f"overrides for unknown stage(s) {unknown}; stages are {list(STAGES)}")
    return {
        f"{stage}_config": deep_merge(
            stage_section(params, stage, profile), (overrides or {}).get(stage, {})
        )
        for stage in STAGES
    }


class Outputs(NamedTuple):
    """What a run hands back: the evaluation directories, the ablation table's directory and
    the registration records."""

    base_evaluation: dsl.Artifact
    judge_evaluation: dsl.Artifact
    think_evaluation: dsl.Artifact
    rs_evaluation: dsl.Artifact
    grpo_evaluation: dsl.Artifact
    ablation: dsl.Artifact
    registration: dsl.Artifact
    pairs: dsl.Dataset
    policy_evaluation: dsl.Artifact
    policy_registration: dsl.Artifact


def build_pipeline(deploy: DeployConfig):
    """The DAG with `deploy`'s cluster settings on every task."""

    @dsl.pipeline(
        name=PIPELINE_NAME,
        description="Train, evaluate and register a unified multimodal reward judge "
        "(UnifiedReward).",
    )
    def unireward_pipeline(
        base_model_uri: str,
        policy_model_uri: str,
        ingest_config: dict,
        validate_config: dict,
        unified_sft_config: dict,
        cold_start_config: dict,
        rejection_sample_config: dict,
        rs_sft_config: dict,
        grpo_config: dict,
        evaluate_config: dict,
        ablation_config: dict,
        register_config: dict,
        serve_config: dict,
        build_pairs_config: dict,
        dpo_config: dict,
        evaluate_policy_config: dict,
        register_policy_config: dict,
        profile: str = "",
    ) -> Outputs:
        base = dsl.importer(
            artifact_uri=base_model_uri, artifact_class=dsl.Model, reimport=False
        ).set_display_name("base_model")

        raw = ingest(config=ingest_config).set_display_name("ingest")
        checked = validate(config=validate_config, dataset=raw.outputs["dataset"])
        checked.set_display_name("validate")
        dataset = checked.outputs["validated"]

        sft = unified_sft(config=unified_sft_config, base_model=base.output, dataset=dataset)
        sft.set_display_name("unified_sft")
        judge = sft.outputs["judge"]

        # The base model is scored on the same held-out splits: the table compares the two.
        eval_base = evaluate(
            config=evaluate_config, model=base.output, dataset=dataset, name="base"
        ).set_display_name("evaluate-base")
        eval_judge = evaluate(config=evaluate_config, model=judge, dataset=dataset, name="judge")
        eval_judge.set_display_name("evaluate-judge")

        # UnifiedReward-Think stage 1: CoT distillation from the teacher, SFT from the judge (or
        # the base, `init: base`); scored in CoT mode (format-valid rate, CoT accuracy) on the
        # same held-out splits.
        # Each Think judge is also scored on rejection sampling's hard items (split `hard`).
        def evaluate_cot(model, name: str):
            return evaluate(
                config=evaluate_config,
                model=model,
                dataset=dataset,
                name=name,
                cot=True,
                samples=samples,
            ).set_display_name(f"evaluate-{name}")

        think = cold_start(
            config=cold_start_config, judge=judge, base_model=base.output, dataset=dataset
        )
        think.set_display_name("cold_start")

        # Stage 2: the cold-start judge samples k CoT judgements per pair; SFT on the correct
        # ones, then (stage 3) GRPO on the pairs it missed. Each judge is scored in CoT mode.
        sampled = rejection_sample(
            config=rejection_sample_config, judge=think.outputs["think_judge"], dataset=dataset
        ).set_display_name("rejection_sample")
        samples = sampled.outputs["samples"]
        eval_think = evaluate_cot(think.outputs["think_judge"], "think")
        rs = rs_sft(
            config=rs_sft_config,
            judge=think.outputs["think_judge"],
            samples=samples,
            dataset=dataset,
        ).set_display_name("rs_sft")
        eval_rs = evaluate_cot(rs.outputs["rs_judge"], "rs")
        rl = grpo(
            config=grpo_config, judge=rs.outputs["rs_judge"], samples=samples, dataset=dataset
        ).set_display_name("grpo")
        eval_grpo = evaluate_cot(rl.outputs["think_judge"], "grpo")

        # The four judges' evaluations, each by its name in the ablation table (the paper's:
        # unified judge -> + cold start -> + RS -> + GRPO).
        evaluations = {
            "judge": eval_judge.outputs["evaluation"],
            "think": eval_think.outputs["evaluation"],
            "rs": eval_rs.outputs["evaluation"],
            "grpo": eval_grpo.outputs["evaluation"],
        }
        table = ablation(config=ablation_config, **evaluations).set_display_name("ablation")

        registered = register(
            config=register_config,
            model=judge,
            evaluation=evaluations["judge"],
            tags={"pipeline": PIPELINE_NAME},
            profile=profile,
        ).set_display_name("register")

        # Policy alignment: the best judge builds preference pairs, DPO, evaluation, and
        # the policy's own registration (register's component with register_policy's config).
        policy = dsl.importer(
            artifact_uri=policy_model_uri, artifact_class=dsl.Model, reimport=False
        ).set_display_name("policy_model")
        # The pairs come from the best of the DAG's four judges (build_pairs.judge_from).
        pairs = build_pairs(
            config=build_pairs_config,
            serve_config=serve_config,
            policy=policy.output,
            judge=judge,
            think_judge=think.outputs["think_judge"],
            rs_judge=rs.outputs["rs_judge"],
            grpo_judge=rl.outputs["think_judge"],
            **{f"{name}_evaluation": evaluation for name, evaluation in evaluations.items()},
        ).set_display_name("build_pairs")
        pairs.after(registered)
        aligned = dpo(
            config=dpo_config, policy=policy.output, pairs=pairs.outputs["pairs"]
        ).set_display_name("dpo")
        eval_policy = evaluate_policy(
            config=evaluate_policy_config,
            before=policy.output,
            after=aligned.outputs["aligned_policy"],
        ).set_display_name("evaluate_policy")
        registered_policy = register(
            config=register_policy_config,
            model=aligned.outputs["aligned_policy"],
            evaluation=eval_policy.outputs["evaluation"],
            tags={"pipeline": PIPELINE_NAME, "model": "policy"},
            profile=profile,
        ).set_display_name("register_policy")

        for stage, task in (
            ("ingest", raw),
            ("validate", checked),
            ("unified_sft", sft),
            ("cold_start", think),
            ("rejection_sample", sampled),
            ("rs_sft", rs),
            ("grpo", rl),
            ("evaluate", eval_base),
            ("evaluate", eval_judge),
            ("evaluate", eval_think),
            ("evaluate", eval_rs),
            ("evaluate", eval_grpo),
            ("ablation", table),
            ("register", registered),
            ("build_pairs", pairs),
            ("dpo", aligned),
            ("evaluate_policy", eval_policy),
            ("register", registered_policy),
        ):
            apply(task, stage, deploy)

        return Outputs(
            base_evaluation=eval_base.outputs["evaluation"],
            **{f"{name}_evaluation": evaluation for name, evaluation in evaluations.items()},
            ablation=table.outputs["ablation"],
            registration=registered.outputs["registration"],
            pairs=pairs.outputs["pairs"],
            policy_evaluation=eval_policy.outputs["evaluation"],
            policy_registration=registered_policy.outputs["registration"],
        )

    return unireward_pipeline


unireward_pipeline = build_pipeline(DeployConfig())
