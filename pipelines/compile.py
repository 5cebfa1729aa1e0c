"""Compile the pipeline to Kubeflow IR YAML with the profile's configs as parameter defaults.

    python -m pipelines.compile --profile quick --output build/unireward-quick.yaml
    python -m pipelines.compile --profile full --base-model-uri s3://bucket/models/base \
        --output build/unireward-full.yaml
"""

from __future__ import annotations

import argparse
from pathlib import Path

from kfp import compiler

from pipelines.platform import load_deploy
from pipelines.unireward_pipeline import (
    DEFAULT_BASE_MODEL,
    PROJECT_ROOT,
    build_pipeline,
    stage_configs,
)


def compile_pipeline(
    profile: str,
    output: Path,
    base_model_uri: str,
    params: Path = PROJECT_ROOT / "params.yaml",
    policy_model_uri: str | None = None,
) -> Path:
    """Compile with the profile's stage configs as defaults and its `deploy` settings (the
    `deploy` section with the profile's own `deploy` over it).

    `policy_model_uri` defaults to `policy-tiny` next to the base (models/base-tiny ->
    models/policy-tiny, s3://b/models/base-tiny -> s3://b/models/policy-tiny)."""
    if policy_model_uri is None:
        policy_model_uri = base_model_uri.rstrip("/").rsplit("/", 1)[0] + "/policy-tiny"
    output.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(
        build_pipeline(load_deploy(params, profile)),
        str(output),
        pipeline_parameters={
            "base_model_uri": base_model_uri,
            "policy_model_uri": policy_model_uri,
            **stage_configs(profile, params_path=params),
            "profile": profile,
        },
    )
    return output


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument(
        "--base-model-uri",
        default=str(DEFAULT_BASE_MODEL),
        help="base checkpoint: an s3:// URI on a cluster (default: the shipped local one)",
    )
    args = parser.parse_args(argv)
    output = args.output or Path("build") / f"unireward-{args.profile}.yaml"
    print(compile_pipeline(args.profile, output, args.base_model_uri))


if __name__ == "__main__":
    main()
