"""Submit the pipeline to a Kubeflow Pipelines endpoint: one run now, or a recurring run.

    make pipeline-run KFP_HOST=https://kfp.example.com BASE_MODEL_URI=s3://BUCKET/models/base
    make pipeline-schedule KFP_HOST=https://kfp.example.com BASE_MODEL_URI=s3://BUCKET/models/base
    python -m pipelines.submit run --host URL --base-model-uri s3://... --profile full

Both compile first (pipelines/compile.py: the profile's stage configs as defaults, params.yaml
`deploy` as cluster settings) to `build/unireward-<profile>.yaml`, then call the KFP API with
`deploy.service_account` as the runs' service account (IRSA gives it S3). The schedule's cron,
name, experiment and profile come from `deploy.schedule`. What the cluster must provide is in
the README ("Deploy to a cluster"). Authentication: whatever `kfp.Client` picks up (in-cluster
token, KF_PIPELINES_SA_TOKEN_PATH, or `--existing-token`).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.platform import DeployConfig, load_deploy
from pipelines.unireward_pipeline import PIPELINE_NAME, PROJECT_ROOT

# The launcher downloads the base model from these; a local path does not exist on a cluster.
REMOTE_SCHEMES = ("s3://", "gs://", "minio://", "oci://", "https://")


@dataclass(frozen=True)
class Submission:
    """What is sent to KFP: the compiled package and the API call's keyword arguments."""

    package: Path
    method: str  # kfp.Client method
    kwargs: dict[str, Any]


def check_base_model_uri(uri: str) -> str:
    if not uri.startswith(REMOTE_SCHEMES):
        raise ValueError(
            f"--base-model-uri {uri!r} must be a URI the cluster can read "
            f"({', '.join(REMOTE_SCHEMES)}), e.g. s3://BUCKET/models/base-tiny "
            "(upload models/base-tiny there first)"
        )
    return uri


def plan_run(profile: str, base_model_uri: str, params: Path, out_dir: Path) -> Submission:
    from pipelines.compile import compile_pipeline

    deploy = load_deploy(params)
    package = compile_pipeline(
        profile,
        out_dir / f"{PIPELINE_NAME}-{profile}.yaml",
        check_base_model_uri(base_model_uri),
        params=params,
    )
    return Submission(
        package,
        "create_run_from_pipeline_package",
        {
            "pipeline_file": str(package),
            "arguments": {},
            "run_name": f"{PIPELINE_NAME}-{profile}",
            "experiment_name": deploy.schedule.experiment,
            "service_account": deploy.service_account,
        },
    )


def plan_schedule(base_model_uri: str, params: Path, out_dir: Path) -> Submission:
    from pipelines.compile import compile_pipeline

    deploy: DeployConfig = load_deploy(params)
    schedule = deploy.schedule
    package = compile_pipeline(
        schedule.profile,
        out_dir / f"{PIPELINE_NAME}-{schedule.profile}.yaml",
        check_base_model_uri(base_model_uri),
        params=params,
    )
    return Submission(
        package,
        "create_recurring_run",
        {
            "job_name": schedule.name,
            "description": f"scheduled retraining, profile {schedule.profile}",
            "cron_expression": schedule.cron,
            "max_concurrency": schedule.max_concurrency,
            "no_catchup": True,  # a cluster down for a week runs once, not seven times
            "pipeline_package_path": str(package),
            "service_account": deploy.service_account,
        },
    )


def submit(submission: Submission, host: str, experiment: str, token: str | None = None) -> Any:
    import kfp

    client = kfp.Client(host=host, existing_token=token)
    kwargs = dict(submission.kwargs)
    if submission.method == "create_recurring_run":
        kwargs["experiment_id"] = client.create_experiment(experiment).experiment_id
    return getattr(client, submission.method)(**kwargs)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["run", "schedule"])
    parser.add_argument("--host", required=True, help="KFP API endpoint (KFP_HOST)")
    parser.add_argument("--base-model-uri", required=True, help="s3://... of the base model")
    parser.add_argument("--profile", default="full", help="run only; a schedule uses its own")
    parser.add_argument("--params", type=Path, default=PROJECT_ROOT / "params.yaml")
    parser.add_argument("--existing-token", default=None)
    parser.add_argument("--out-dir", type=Path, default=PROJECT_ROOT / "build")
    args = parser.parse_args(argv)
    try:
        if args.action == "run":
            plan = plan_run(args.profile, args.base_model_uri, args.params, args.out_dir)
        else:
            plan = plan_schedule(args.base_model_uri, args.params, args.out_dir)
    except ValueError as err:
        raise SystemExit(f"error: {err}") from None
    experiment = load_deploy(args.params).schedule.experiment
    result = submit(plan, args.host, experiment, args.existing_token)
    print(f"{plan.method}: {plan.package} -> {args.host}: {result}")


if __name__ == "__main__":
    main()
