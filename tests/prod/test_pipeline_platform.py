"""The compiled pipeline carries the cluster settings of params.yaml `deploy`: GPU requests,
node selector, toleration, PVC and Secrets on the GPU stages, CPU/memory on every stage, and no
package installed at task start (parsed from the compiled YAML, not from the Python objects).

    .venv/bin/pytest tests/prod/test_pipeline_platform.py -q
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # components/ and pipelines/ are top-level packages of the repo
    sys.path.insert(0, str(ROOT))

from pipelines.platform import TRAIN_STAGES, DeployConfig, load_deploy  # noqa: E402

from unireward.config import from_dict, load_params  # noqa: E402

GPU_TASKS = {
    "unified_sft": "unified_sft",
    "cold_start": "cold_start",
    "rejection_sample": "rejection_sample",
    "rs_sft": "rs_sft",
    "grpo": "grpo",
    "evaluate-base": "evaluate",
    "evaluate-judge": "evaluate",
    "evaluate-think": "evaluate",
    "evaluate-rs": "evaluate",
    "evaluate-grpo": "evaluate",
    "build_pairs": "build_pairs",
    "dpo": "dpo",
    "evaluate_policy": "evaluate_policy",
}
CPU_TASKS = {
    "ingest": "ingest",
    "validate": "validate",
    "register": "register",
    "ablation": "ablation",
    "register_policy": "register",
}


def _compile(tmp_path: Path, params: Path = ROOT / "params.yaml") -> tuple[dict, dict, dict]:
    """(pipeline spec, kubernetes platform executors, display name -> executor label)."""
    from pipelines.compile import compile_pipeline

    out = compile_pipeline("quick", tmp_path / "p.yaml", "s3://bucket/base", params=params)
    spec, platform = yaml.safe_load_all(out.read_text())
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    tasks = spec["root"]["dag"]["tasks"]
    components = spec["components"]
    label = {
        t["taskInfo"]["name"]: components[t["componentRef"]["name"]].get("executorLabel")
        for t in tasks.values()
    }
    return spec, executors, label


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    return _compile(tmp_path_factory.mktemp("compiled"))


def test_gpu_stages_request_gpus_on_the_gpu_pool(compiled):
    spec, executors, label = compiled
    deploy = load_deploy(ROOT / "params.yaml")
    for task, stage in GPU_TASKS.items():
        container = spec["deploymentSpec"]["executors"][label[task]]["container"]
        accel = container["resources"]["accelerator"]
        assert accel["resourceType"] == "nvidia.com/gpu"
        assert int(accel["resourceCount"]) == getattr(deploy.resources, stage).gpus >= 1
        k8s = executors[label[task]]
        assert k8s["nodeSelector"]["labels"] == {deploy.gpu_node_label: deploy.gpu_node_value}
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in k8s[
            "tolerations"
        ]
        assert [(m["constant"], m["mountPath"]) for m in k8s["pvcMount"]] == [
            (deploy.pvc_name, deploy.pvc_mount_path)
        ]
        env = {e["name"]: e["value"] for e in container.get("env", [])}
        assert env["HF_HOME"].startswith(deploy.pvc_mount_path + "/")
        checkpoints = env.get("UNIREWARD_CHECKPOINT_ROOT", "")
        assert checkpoints.startswith(deploy.pvc_mount_path) == (stage in TRAIN_STAGES)


def test_cpu_stages_stay_off_the_gpu_pool(compiled):
    spec, executors, label = compiled
    for task in CPU_TASKS:
        container = spec["deploymentSpec"]["executors"][label[task]]["container"]
        assert "accelerator" not in container["resources"]
        k8s = executors[label[task]]
        assert not {"nodeSelector", "tolerations", "pvcMount"} & set(k8s), task


def test_every_stage_has_its_requests_and_secrets(compiled):
    spec, executors, label = compiled
    deploy = load_deploy(ROOT / "params.yaml")
    for task, stage in {**GPU_TASKS, **CPU_TASKS}.items():
        res = spec["deploymentSpec"]["executors"][label[task]]["container"]["resources"]
        want = getattr(deploy.resources, stage)
        assert (res["resourceCpuRequest"], res["resourceMemoryRequest"]) == (
            want.cpu,
            want.memory,
        ), task
        assert res["resourceMemoryLimit"] == want.memory
        secrets = {
            s["secretName"]: ({k["envVar"] for k in s["keyToEnv"]}, s.get("optional", False))
            for s in executors[label[task]]["secretAsEnv"]
        }
        assert secrets == {
            deploy.mlflow_secret: (
                {"MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"},
                False,
            ),
            deploy.s3_secret: ({"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}, True),
        }, task
        # infra/base/mlflow.yaml's NetworkPolicy lets only labelled pods in
        assert executors[label[task]]["podMetadata"]["labels"] == {
            "unireward.io/mlflow-client": "true"
        }


def test_tasks_run_on_the_pinned_images_and_install_nothing(compiled):
    from components.images import CPU_IMAGE, TRAIN_IMAGE

    spec, _, label = compiled
    for task in {**GPU_TASKS, **CPU_TASKS}:
        container = spec["deploymentSpec"]["executors"][label[task]]["container"]
        assert container["image"] == (TRAIN_IMAGE if task in GPU_TASKS else CPU_IMAGE)
        command = " ".join(container["command"])
        assert "pip install" not in command and "ensurepip" not in command, task


def test_deploy_settings_come_from_params(tmp_path):
    text = (ROOT / "params.yaml").read_text()
    assert "pvc_name: unireward-work" in text
    params = tmp_path / "params.yaml"
    params.write_text(text.replace("pvc_name: unireward-work", "pvc_name: other-claim"))
    _, executors, label = _compile(tmp_path, params)
    assert executors[label["unified_sft"]]["pvcMount"][0]["constant"] == "other-claim"


def test_params_deploy_section_loads_into_its_config():
    section = load_params(ROOT / "params.yaml")["deploy"]
    deploy = from_dict(DeployConfig, section, where="deploy")
    assert deploy.resources.unified_sft.gpus >= 1 and deploy.schedule.cron.count(" ") == 5
    # every key written in params.yaml reached the config
    assert set(section) <= set(DeployConfig.__dataclass_fields__)


@pytest.mark.parametrize(
    ("section", "match"),
    [
        ({"schedule": {"cron": "0 3 * * 1"}}, "6 fields"),
        ({"resources": {"unified_sft": {"gpus": 0}}}, "unified_sft.gpus"),
        ({"pvc_mount_path": "mnt"}, "absolute"),
        ({"gpu_pool": "x"}, "gpu_pool"),
    ],
)
def test_bad_deploy_sections_are_refused(section, match):
    with pytest.raises(ValueError, match=match):
        from_dict(DeployConfig, section, where="deploy")


def test_the_7b_profile_compiles_with_its_gpus_and_settings(tmp_path):
    """`make compile PROFILE=qwen2_5_vl_7b`: the training stages ask for 8 GPUs and carry the
    published recipe's settings; every other GPU stage one GPU, bf16 on CUDA."""
    import subprocess

    out = tmp_path / "unireward-qwen2_5_vl_7b.yaml"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipelines.compile",
            "--profile",
            "qwen2_5_vl_7b",
            "--output",
            str(out),
            "--base-model-uri",
            "s3://bucket/models/Qwen2.5-VL-7B-Instruct",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    spec, _ = yaml.safe_load_all(out.read_text())
    tasks = spec["root"]["dag"]["tasks"]
    components = spec["components"]
    executors = spec["deploymentSpec"]["executors"]
    gpus = {}
    for task in tasks.values():
        label = components[task["componentRef"]["name"]].get("executorLabel")
        container = executors.get(label, {}).get("container", {})  # importers have none
        accel = container.get("resources", {}).get("accelerator")
        gpus[task["taskInfo"]["name"]] = int(accel["resourceCount"]) if accel else 0
    assert {gpus[t] for t in ("unified_sft", "rs_sft", "grpo")} == {8}
    assert {gpus[t] for t in ("cold_start", "dpo", "evaluate-judge", "rejection_sample")} == {1}
    defaults = {
        name: p["defaultValue"]
        for name, p in spec["root"]["inputDefinitions"]["parameters"].items()
        if "defaultValue" in p
    }
    assert defaults["base_model_uri"] == "s3://bucket/models/Qwen2.5-VL-7B-Instruct"
    sft = defaults["unified_sft_config"]["train"]
    assert sft["learning_rate"] == 2.5e-6 and sft["lr_scheduler"] == "cosine"
    assert sft["device"] == "cuda" and sft["deepspeed"] == "configs/deepspeed/zero2.json"
    assert sft["scale"]["precision"] == "bf16" and sft["scale"]["gradient_checkpointing"]
    assert sft["scale"]["global_batch_size"] == 128
    grpo = defaults["grpo_config"]
    assert grpo["deepspeed"] == "configs/deepspeed/zero3.json" and grpo["learning_rate"] == 1e-6
    assert grpo["num_generations"] == 8 and grpo["beta"] == 0.04
    assert defaults["cold_start_config"]["train"]["scale"]["lora"]["r"] == 64
    assert defaults["dpo_config"]["train"]["learning_rate"] == 5e-7
    for stage in ("evaluate", "rejection_sample", "build_pairs", "evaluate_policy"):
        assert defaults[f"{stage}_config"]["device"] == "cuda", stage
    # and every stage config of the profile loads (validated like params)
    from unireward.config import load_stage_config
    from unireward.judge.unified_sft import UnifiedSftConfig
    from unireward.think.grpo import GrpoConfig

    assert (
        load_stage_config(
            UnifiedSftConfig, "unified_sft", "qwen2_5_vl_7b"
        ).train.scale.accumulation(4, 8)
        == 4
    )
    assert load_stage_config(GrpoConfig, "grpo", "qwen2_5_vl_7b").scale.dtype == "bfloat16"
