"""params.yaml cannot drift from the stage configs: every section of every profile loads into
its frozen dataclass, and a typo is an error that names the key.

    .venv/bin/pytest tests/test_params.py -q
"""

from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path

import pytest

from unireward.config import from_dict, load_params, load_stage_config, stage_section

PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"
EXPERIMENTS = PARAMS.parent / "experiments" / "params.yaml"  # extends params.yaml
# stage -> "module:ConfigClass": one name per stage everywhere (STYLE.md).
STAGE_CONFIGS = {
    "pretrain_base": "unireward.model.pretrain_base:PretrainBaseConfig",
    "ingest": "unireward.data.ingest:IngestConfig",
    "validate": "unireward.data.validate:ValidateConfig",
    "unified_sft": "unireward.judge.unified_sft:UnifiedSftConfig",
    "cold_start": "unireward.think.cold_start:ColdStartConfig",
    "rejection_sample": "unireward.think.rejection_sample:RejectionSampleConfig",
    "rs_sft": "unireward.think.rs_sft:RsSftConfig",
    "grpo": "unireward.think.grpo:GrpoConfig",
    "evaluate": "unireward.eval.evaluate:EvaluateConfig",
    "ablation": "unireward.eval.ablation:AblationConfig",
    "register": "unireward.registry.register:RegisterConfig",
    "serve": "unireward.serving.serve:ServeConfig",
    "policy_sft": "unireward.policy.policy_sft:PolicySftConfig",
    "gen_policy_sft": "unireward.genpolicy.gen_policy_sft:GenPolicySftConfig",
    "build_gen_pairs": "unireward.genpolicy.build_gen_pairs:BuildGenPairsConfig",
    "gen_dpo": "unireward.genpolicy.gen_dpo:GenDpoConfig",
    "evaluate_gen_policy": "unireward.genpolicy.evaluate_gen_policy:EvaluateGenPolicyConfig",
    "build_pairs": "unireward.policy.build_pairs:BuildPairsConfig",
    "dpo": "unireward.policy.dpo:DpoConfig",
    "evaluate_policy": "unireward.policy.evaluate_policy:EvaluatePolicyConfig",
    "register_policy": "unireward.registry.register:RegisterConfig",
}
PROFILES = sorted(load_params(PARAMS).get("profiles") or {})
# The product's profiles; an experiment's profile lives beside it (experiments/params.yaml).
PRODUCT_PROFILES = {"quick", "full", "qwen2_5_vl_7b"}
EXPERIMENT_PROFILES = sorted(set(load_params(EXPERIMENTS)["profiles"]) - set(PROFILES))


def _config_class(stage: str) -> type:
    module, name = STAGE_CONFIGS[stage].split(":")
    return getattr(importlib.import_module(module), name)


def test_every_stage_section_has_a_config_class_and_vice_versa() -> None:
    # `deploy` holds cluster settings, not a stage (tests/prod/test_pipeline_platform.py).
    sections = set(load_params(PARAMS)) - {"profiles", "deploy"}
    assert sections <= set(STAGE_CONFIGS), (
        f"sections without a stage: {sections - set(STAGE_CONFIGS)}"
    )
    assert set(STAGE_CONFIGS) <= sections, (
        f"stages without a section: {set(STAGE_CONFIGS) - sections}"
    )
    for profile, overrides in (load_params(PARAMS).get("profiles") or {}).items():
        unknown = set(overrides or {}) - sections - {"deploy"}  # a profile's cluster settings
        assert not unknown, f"profile {profile!r} overrides stages with no section: {unknown}"


@pytest.mark.parametrize(
    ("path", "profile"),
    [(PARAMS, p) for p in PROFILES] + [(EXPERIMENTS, p) for p in EXPERIMENT_PROFILES],
)
@pytest.mark.parametrize("stage", sorted(STAGE_CONFIGS))
def test_section_loads_into_its_config(stage: str, path: Path, profile: str) -> None:
    cls = _config_class(stage)
    config = load_stage_config(cls, stage, profile, path)
    assert isinstance(config, cls) and dataclasses.is_dataclass(config)
    # Every key written in params.yaml reached the config (none shadowed by a default).
    section = stage_section(load_params(path), stage, profile)
    for key in section:
        assert hasattr(config, key), f"{stage}.{key}"


def test_profile_overrides_apply() -> None:
    from unireward.judge.unified_sft import UnifiedSftConfig

    quick = load_stage_config(UnifiedSftConfig, "unified_sft", "quick", PARAMS)
    full = load_stage_config(UnifiedSftConfig, "unified_sft", "full", PARAMS)
    assert full.train.max_steps > quick.train.max_steps
    assert full.train.learning_rate == quick.train.learning_rate  # deep merge keeps the rest


@pytest.mark.parametrize("stage", sorted(STAGE_CONFIGS))
def test_a_typo_key_fails_naming_it(stage: str) -> None:
    section = stage_section(load_params(PARAMS), stage, "quick")
    with pytest.raises(ValueError, match="max_stpes"):
        from_dict(_config_class(stage), {**section, "max_stpes": 3}, where=stage)


def test_a_nested_typo_key_fails_naming_it() -> None:
    from unireward.judge.unified_sft import UnifiedSftConfig

    with pytest.raises(ValueError, match=r"learning_rat\b.*unified_sft.train"):
        from_dict(UnifiedSftConfig, {"train": {"learning_rat": 0.1}}, where="unified_sft")


def test_unknown_profile_fails_naming_it() -> None:
    with pytest.raises(ValueError, match="'fulll'"):
        stage_section(load_params(PARAMS), "ingest", "fulll")


def test_params_yaml_holds_only_the_products_profiles() -> None:
    assert set(PROFILES) == PRODUCT_PROFILES
    assert EXPERIMENT_PROFILES, "experiments/params.yaml defines no profile of its own"


def test_extends_merges_a_file_over_the_one_it_names(tmp_path: Path) -> None:
    from unireward.judge.unified_sft import UnifiedSftConfig

    mine = tmp_path / "mine.yaml"
    mine.write_text(
        f"extends: {PARAMS}\nprofiles:\n  longer:\n    unified_sft:\n"
        "      train: {max_steps: 12345}\n"
    )
    longer = load_stage_config(UnifiedSftConfig, "unified_sft", "longer", mine)
    quick = load_stage_config(UnifiedSftConfig, "unified_sft", "quick", PARAMS)
    assert longer.train.max_steps == 12345
    assert longer.train.learning_rate == quick.train.learning_rate  # the rest is params.yaml's
    assert load_stage_config(UnifiedSftConfig, "unified_sft", "quick", mine) == quick


def test_extends_that_loops_or_names_nothing_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("extends: b.yaml\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    with pytest.raises(ValueError, match="loops back"):
        load_params(tmp_path / "a.yaml")
    (tmp_path / "c.yaml").write_text("extends: missing.yaml\n")
    with pytest.raises(FileNotFoundError, match=r"missing\.yaml"):
        load_params(tmp_path / "c.yaml")


def test_the_shipped_bases_phases_chain_in_the_makefiles_order() -> None:
    """`make pretrain-base`: phase 1 is params.yaml's pretrain_base, each later phase
    (configs/base/*.yaml) starts from the one before it and draws a data stream of its own."""
    import re

    from unireward.model.pretrain_base import PretrainBaseConfig

    root = PARAMS.parent
    phases = re.search(r"^BASE_PHASES := (.+)$", (root / "Makefile").read_text(), re.M)
    assert phases, "Makefile: BASE_PHASES"
    previous, seeds = (
        "phase1",
        {load_stage_config(PretrainBaseConfig, "pretrain_base", None, PARAMS).train.seed},
    )
    for name in phases.group(1).split():
        config = load_stage_config(
            PretrainBaseConfig, "pretrain_base", None, root / "configs" / "base" / f"{name}.yaml"
        )
        assert config.init_from == f"build/base-tiny/{previous}", (name, config.init_from)
        assert config.train.seed not in seeds, name
        seeds.add(config.train.seed)
        previous = name
