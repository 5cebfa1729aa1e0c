"""Cluster settings of the compiled pipeline: GPU node pool, PVC, Secrets, per-stage resources.

    python -m pipelines.compile --profile full --base-model-uri s3://BUCKET/models/base-tiny

`params.yaml` section `deploy` loads into `DeployConfig`; `apply(task, stage, deploy)` puts it on
one task with kfp-kubernetes and kfp's resource/accelerator settings. They live in the compiled
YAML's platform spec and resources; `kfp.local` ignores them, so the same DAG runs on a laptop.

What each GPU stage gets (infra/terraform creates the pool, infra/base the PVC and Secrets):
- `nvidia.com/gpu` requested through `set_accelerator_type` / `set_accelerator_limit`;
- a node selector on the GPU pool's label and a toleration of its `nvidia.com/gpu` taint;
- the PVC at `pvc_mount_path`: the Hugging Face cache (HF_HOME) and, for the training stages
  (unified_sft, cold_start), the checkpoints (UNIREWARD_CHECKPOINT_ROOT: a retried task
  resumes).
Every stage gets MLflow's URI and credentials from the `mlflow_secret` Secret and S3 keys from
`s3_secret` as env (optional: on EKS, IRSA on the run's service account supplies S3 access).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

from kfp import dsl, kubernetes

# Training stages: their checkpoints go to the PVC so a retried task resumes.
TRAIN_STAGES = ("unified_sft", "cold_start", "rs_sft", "grpo", "dpo")
MLFLOW_CLIENT_LABEL = "unireward.io/mlflow-client"
# Secret keys -> env names; the Secrets are made by infra/ (examples in infra/base/secrets).
MLFLOW_SECRET_KEYS = {
    "MLFLOW_TRACKING_URI": "MLFLOW_TRACKING_URI",
    "MLFLOW_TRACKING_USERNAME": "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD": "MLFLOW_TRACKING_PASSWORD",
}
S3_SECRET_KEYS = {
    "AWS_ACCESS_KEY_ID": "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY": "AWS_SECRET_ACCESS_KEY",
}


@dataclass(frozen=True)
class Resources:
    cpu: str = "1"
    memory: str = "2Gi"
    gpus: int = 0

    def __post_init__(self) -> None:
        if not self.cpu or not self.memory:
            raise ValueError("deploy.resources: cpu and memory must be Kubernetes quantities")
        if isinstance(self.gpus, bool) or not isinstance(self.gpus, int) or self.gpus < 0:
            raise ValueError(f"deploy.resources: gpus must be an integer >= 0, got {self.gpus!r}")


@dataclass(frozen=True)
class StageResources:
    ingest: Resources = Resources("2", "8Gi")
    validate: Resources = Resources("1", "4Gi")
    unified_sft: Resources = Resources("8", "64Gi", gpus=1)
    cold_start: Resources = Resources("8", "64Gi", gpus=1)
    rejection_sample: Resources = Resources("8", "64Gi", gpus=1)
    rs_sft: Resources = Resources("8", "64Gi", gpus=1)
    grpo: Resources = Resources("8", "64Gi", gpus=1)
    evaluate: Resources = Resources("4", "32Gi", gpus=1)
    ablation: Resources = Resources("1", "2Gi")  # reads metrics.json files, one plot
    register: Resources = Resources("1", "2Gi")
    build_pairs: Resources = Resources("4", "32Gi", gpus=1)  # samples the policy
    dpo: Resources = Resources("8", "64Gi", gpus=1)
    evaluate_policy: Resources = Resources("4", "32Gi", gpus=1)


# The stages that train or run the judge: a GPU in StageResources' defaults, and a deploy may not
# take it away (DeployConfig).
GPU_STAGES = tuple(f.name for f in fields(StageResources) if f.default.gpus)


@dataclass(frozen=True)
class ScheduleConfig:
    """The recurring run of `make pipeline-schedule`; KFP cron has six fields (seconds first)."""

    cron: str = "0 0 3 * * 1"  # Mondays 03:00 UTC
    name: str = "unireward-weekly-retrain"
    experiment: str = "unireward"
    profile: str = "full"
    max_concurrency: int = 1

    def __post_init__(self) -> None:
        if len(self.cron.split()) != 6:
            raise ValueError(
                f"deploy.schedule.cron {self.cron!r} must have 6 fields (KFP cron: seconds "
                "minutes hours day-of-month month day-of-week), e.g. '0 0 3 * * 1'"
            )
        if self.max_concurrency < 1:
            raise ValueError("deploy.schedule.max_concurrency must be >= 1")


@dataclass(frozen=True)
class DeployConfig:
    accelerator: str = "nvidia.com/gpu"
    gpu_node_label: str = "unireward.io/pool"
    gpu_node_value: str = "gpu"
    gpu_taint_key: str = "nvidia.com/gpu"
    pvc_name: str = "unireward-work"
    pvc_mount_path: str = "/mnt/unireward"
    mlflow_secret: str = "unireward-mlflow"
    s3_secret: str = "unireward-s3"
    service_account: str = "unireward-pipeline"
    resources: StageResources = field(default_factory=StageResources)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)

    def __post_init__(self) -> None:
        if not self.pvc_mount_path.startswith("/"):
            raise ValueError(f"deploy.pvc_mount_path must be absolute, got {self.pvc_mount_path}")
        for gpu_stage in GPU_STAGES:
            if getattr(self.resources, gpu_stage).gpus < 1:
                raise ValueError(
                    f"deploy.resources.{gpu_stage}.gpus must be >= 1: the stage trains or runs "
                    "the judge (set it on the GPU pool, or change GPU_STAGES)"
                )


def load_deploy(params_path: Path, profile: str | None = None) -> DeployConfig:
    """`deploy` of `params_path`, with `profiles.<profile>.deploy` over it (the 7B profile's
    GPUs per stage, for example)."""
    from unireward.config import deep_merge, from_dict, load_params

    params = load_params(params_path)
    section = params.get("deploy") or {}
    if profile is not None:
        section = deep_merge(
            section, ((params.get("profiles") or {}).get(profile) or {}).get("deploy") or {}
        )
    return from_dict(DeployConfig, section, where="deploy")


def apply(task: dsl.PipelineTask, stage: str, deploy: DeployConfig) -> dsl.PipelineTask:
    """Put `deploy`'s settings for `stage` on `task` (kfp.local ignores all of them)."""
    res: Resources = getattr(deploy.resources, stage)
    task.set_cpu_request(res.cpu).set_memory_request(res.memory).set_memory_limit(res.memory)
    # infra/base/mlflow.yaml's NetworkPolicy admits only pods with this label.
    kubernetes.add_pod_label(task, MLFLOW_CLIENT_LABEL, "true")
    kubernetes.use_secret_as_env(task, deploy.mlflow_secret, MLFLOW_SECRET_KEYS)
    kubernetes.use_secret_as_env(task, deploy.s3_secret, S3_SECRET_KEYS, optional=True)
    if res.gpus:
        task.set_accelerator_type(deploy.accelerator).set_accelerator_limit(res.gpus)
        kubernetes.add_node_selector(task, deploy.gpu_node_label, deploy.gpu_node_value)
        kubernetes.add_toleration(
            task, key=deploy.gpu_taint_key, operator="Exists", effect="NoSchedule"
        )
        kubernetes.mount_pvc(task, deploy.pvc_name, deploy.pvc_mount_path)
        task.set_env_variable("HF_HOME", f"{deploy.pvc_mount_path}/hf-cache")
        if stage in TRAIN_STAGES:
            task.set_env_variable(
                "UNIREWARD_CHECKPOINT_ROOT", f"{deploy.pvc_mount_path}/checkpoints"
            )
    return task
