"""infra/ kustomize overlays render and pass the Kubernetes schemas (kubernetes-validate
--strict), and the rendered objects say what the production plane promises: the judge's API key
from a Secret, its model from MLflow alias `champion`, GPUs on the tainted pool, non-root pods,
no Secret objects in the repository. Also the Kubeflow Trainer TrainJob and the Dockerfiles.

    .venv/bin/pytest tests/prod/test_infra_manifests.py -q
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
OVERLAYS = ("local", "aws")
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _kubectl() -> str:
    found = shutil.which("kubectl")
    if not found:
        pytest.skip("kubectl not installed (it renders the kustomize overlays)")
    return found


def _render(path: Path) -> str:
    proc = subprocess.run([_kubectl(), "kustomize", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _validate(manifests: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "kubernetes-validate"), "--strict", "--quiet", "-"],
        input=manifests,
        capture_output=True,
        text=True,
    )


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict]]:
    return {o: list(yaml.safe_load_all(_render(ROOT / "infra/overlays" / o))) for o in OVERLAYS}


def _one(objects: list[dict], kind: str, name: str) -> dict:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_passes_the_kubernetes_schemas(overlay):
    proc = _validate(_render(ROOT / "infra/overlays" / overlay))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_schema_check_catches_a_misspelt_field(rendered):
    """The check above can fail: a typo in a Deployment is rejected under --strict."""
    objects = [dict(o) for o in rendered["aws"]]
    judge = _one(objects, "Deployment", "unireward-judge")
    judge["spec"] = {**judge["spec"], "replica": 2}
    proc = _validate(yaml.safe_dump_all(objects))
    assert proc.returncode != 0 and "replica" in proc.stdout + proc.stderr


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_judge_serves_the_champion_with_a_secret_api_key(rendered, overlay):
    objects = rendered[overlay]
    pod = _one(objects, "Deployment", "unireward-judge")["spec"]["template"]["spec"]
    (fetch,) = pod["initContainers"]
    assert fetch["command"][-1] == "unireward.registry.fetch"
    assert "--alias=champion" in fetch["args"]
    (vllm,) = pod["containers"]
    dst = next(a.split("=", 1)[1] for a in fetch["args"] if a.startswith("--dst="))
    assert f"--model={dst}" in vllm["args"]
    env = {e["name"]: e for e in vllm["env"]}
    assert env["VLLM_API_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "unireward-judge-api",
        "key": "api-key",
    }
    assert vllm["resources"]["limits"]["nvidia.com/gpu"] == "1"
    # the GPU flags the local stage would pass for the same settings, and no URL fetching
    from unireward.serving import serve

    gpu = serve.ServeConfig(device="cuda", dtype="bfloat16", gpu_memory_utilization=0.9)
    expected = serve.vllm_command(gpu, Path(dst), 8000)
    for flag in ("--dtype=", "--tensor-parallel-size=", "--gpu-memory-utilization="):
        assert [a for a in vllm["args"] if a.startswith(flag)] == [
            a for a in expected if a.startswith(flag)
        ], flag
    at = vllm["args"].index("--allowed-media-domains")
    assert vllm["args"][at + 1] == serve.NO_MEDIA_DOMAIN
    tp = next(a for a in vllm["args"] if a.startswith("--tensor-parallel-size="))
    assert tp.split("=")[1] == vllm["resources"]["limits"]["nvidia.com/gpu"]
    assert pod["nodeSelector"] == {"unireward.io/pool": "gpu"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod[
        "tolerations"
    ]
    labels = _one(objects, "Deployment", "unireward-judge")["spec"]["selector"]["matchLabels"]
    for kind in ("PodDisruptionBudget", "NetworkPolicy"):
        obj = _one(objects, kind, "unireward-judge")["spec"]
        selector = obj.get("selector") or obj["podSelector"]
        assert selector["matchLabels"] == labels, kind
    hpa = _one(objects, "HorizontalPodAutoscaler", "unireward-judge")["spec"]
    assert hpa["scaleTargetRef"]["name"] == "unireward-judge" and hpa["maxReplicas"] >= 1


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_runs_as_non_root_and_no_secret_ships(rendered, overlay):
    objects = rendered[overlay]
    assert not [o for o in objects if o["kind"] == "Secret"]
    for obj in objects:
        if obj["kind"] not in ("Deployment", "StatefulSet"):
            continue
        pod = obj["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, obj["metadata"]["name"]
        for c in pod.get("initContainers", []) + pod["containers"]:
            assert c["securityContext"]["allowPrivilegeEscalation"] is False, c["name"]
            assert c["securityContext"]["capabilities"]["drop"] == ["ALL"], c["name"]


def test_mlflow_server_uses_postgres_and_s3(rendered):
    for overlay in OVERLAYS:
        objects = rendered[overlay]
        mlflow = _one(objects, "Deployment", "unireward-mlflow")["spec"]["template"]["spec"]
        (c,) = mlflow["containers"]
        assert c["command"] == ["mlflow", "server"]
        config = _one(objects, "ConfigMap", "unireward-mlflow-config")["data"]
        assert config["MLFLOW_ARTIFACTS_DESTINATION"].startswith("s3://")
        dsn = next(e for e in c["env"] if e["name"] == "MLFLOW_BACKEND_STORE_URI")
        assert dsn["valueFrom"]["secretKeyRef"]["name"] == "unireward-mlflow-server"
    local = rendered["local"]
    assert _one(local, "StatefulSet", "unireward-postgres")
    assert "MLFLOW_S3_ENDPOINT_URL" in _one(local, "ConfigMap", "unireward-mlflow-config")["data"]


def test_base_images_are_the_ones_components_name():
    from components import images

    text = (ROOT / "infra/base/judge-serving.yaml").read_text()
    text += (ROOT / "infra/base/mlflow.yaml").read_text()
    named = {line.split("image:")[1].strip() for line in text.splitlines() if "image:" in line}
    assert named == {images.CPU_IMAGE, images.SERVE_IMAGE}


def test_aws_overlay_takes_its_names_from_cluster_env(rendered):
    objects = rendered["aws"]
    env = dict(
        line.split("=", 1)
        for line in (ROOT / "infra/overlays/aws/cluster.env").read_text().splitlines()
        if line and not line.startswith("#")
    )
    annotations = {
        o["metadata"]["name"]: o["metadata"].get("annotations", {})
        for o in objects
        if o["kind"] == "ServiceAccount"
    }
    assert annotations["unireward-mlflow"]["eks.amazonaws.com/role-arn"] == env["MLFLOW_ROLE_ARN"]
    assert (
        annotations["unireward-pipeline"]["eks.amazonaws.com/role-arn"] == env["PIPELINE_ROLE_ARN"]
    )
    images = {
        c["image"]
        for o in objects
        if o["kind"] == "Deployment"
        for c in o["spec"]["template"]["spec"].get("initContainers", [])
        + o["spec"]["template"]["spec"]["containers"]
    }
    assert images == {env["CPU_IMAGE"], env["SERVE_IMAGE"]}
    assert not [o for o in objects if o["metadata"]["name"] == "unireward-cluster"]


def test_trainjob_runs_deepspeed_on_the_gpu_pool():
    """Structure of the Kubeflow Trainer manifest (no API server here to admit it)."""
    from components.images import TRAIN_IMAGE
    from pipelines.platform import load_deploy

    docs = list(yaml.safe_load_all((ROOT / "infra/trainer/unified-sft-trainjob.yaml").read_text()))
    job = next(d for d in docs if d["kind"] == "TrainJob")
    config = next(d for d in docs if d["kind"] == "ConfigMap")
    assert job["apiVersion"] == "trainer.kubeflow.org/v1alpha1"
    assert job["spec"]["runtimeRef"]["name"] == "torch-distributed"
    trainer = job["spec"]["trainer"]
    assert trainer["image"] == TRAIN_IMAGE and trainer["numNodes"] >= 2
    assert trainer["command"] == ["torchrun"] and "unified_sft" in trainer["args"]
    assert int(trainer["resourcesPerNode"]["limits"]["nvidia.com/gpu"]) >= 1
    env = {e["name"]: e.get("value") for e in trainer["env"]}
    assert env["ACCELERATE_USE_DEEPSPEED"] == "true"
    ds_file = Path(env["ACCELERATE_DEEPSPEED_CONFIG_FILE"])
    ds = yaml.safe_load(config["data"][ds_file.name])
    assert ds["zero_optimization"]["stage"] in (2, 3)
    (override,) = job["spec"]["podTemplateOverrides"]
    spec = override["spec"]
    mounts = {m["mountPath"]: m["name"] for m in spec["containers"][0]["volumeMounts"]}
    assert mounts[str(ds_file.parent)] == "deepspeed"
    deploy = load_deploy(ROOT / "params.yaml")
    assert spec["nodeSelector"] == {deploy.gpu_node_label: deploy.gpu_node_value}
    claims = {
        v["persistentVolumeClaim"]["claimName"]
        for v in spec["volumes"]
        if "persistentVolumeClaim" in v
    }
    assert claims == {deploy.pvc_name}


DOCKERFILES = sorted((ROOT / "containers").glob("Dockerfile.*"))


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_is_hadolint_clean_and_non_root(dockerfile):
    proc = subprocess.run([str(BIN / "hadolint"), str(dockerfile)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = dockerfile.read_text()
    assert "ARG BASE_IMAGE" in text and "FROM ${BASE_IMAGE}" in text
    user = [line.split()[1] for line in text.splitlines() if line.startswith("USER ")]
    assert user and user[-1].split(":")[0] not in ("root", "0")


def test_hadolint_catches_a_defect(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian:bookworm\nRUN apt-get install -y curl\n")
    proc = subprocess.run([str(BIN / "hadolint"), str(bad)], capture_output=True, text=True)
    assert proc.returncode != 0 and "DL3008" in proc.stdout
