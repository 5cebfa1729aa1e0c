"""infra/terraform: `terraform fmt -check` and `terraform validate` offline (fast), and in a slow
test `terraform apply` then `destroy` of the whole AWS stack against moto_server, with the
outputs carried into the aws kustomize overlay (infra/cluster_env.py) and validated.

    .venv/bin/pytest tests/prod/test_infra_terraform.py -q            # fmt + validate
    .venv/bin/pytest tests/prod/test_infra_terraform.py -q -m slow    # apply/destroy on moto

The provider comes from TF_PLUGIN_DIR (default /opt/tf-plugins, a local mirror) when it exists.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TF_DIR = ROOT / "infra" / "terraform"
BIN = Path(sys.executable).parent
PLUGIN_DIR = Path(os.environ.get("TF_PLUGIN_DIR", "/opt/tf-plugins"))
TF_ENV = {**os.environ, "CHECKPOINT_DISABLE": "1", "TF_IN_AUTOMATION": "1", "TF_INPUT": "0"}

MOTO_PROVIDER = """
provider "aws" {{
  region                      = "us-east-1"
  access_key                  = "testing"
  secret_key                  = "testing"
  skip_credentials_validation = true
  skip_metadata_api_check     = true
  s3_use_path_style           = true
  endpoints {{
{endpoints}
  }}
}}
"""


def _terraform() -> str:
    found = shutil.which("terraform")
    if not found:
        pytest.skip("terraform not installed")
    return found


def tf(workdir: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [_terraform(), f"-chdir={workdir}", *args],
        capture_output=True,
        text=True,
        env=TF_ENV,
        timeout=timeout,
    )


def _init(tmp: Path) -> Path:
    work = tmp / "terraform"
    shutil.copytree(TF_DIR, work, ignore=shutil.ignore_patterns(".terraform*", "*.tfstate*"))
    plugin = [f"-plugin-dir={PLUGIN_DIR}"] if PLUGIN_DIR.is_dir() else []
    proc = tf(work, "init", "-backend=false", "-no-color", *plugin)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return work


@pytest.fixture(scope="module")
def initialised(tmp_path_factory) -> Path:
    return _init(tmp_path_factory.mktemp("tf"))


def test_fmt_check_passes_and_catches_misformatting(tmp_path):
    proc = subprocess.run(
        [_terraform(), "fmt", "-check", "-recursive", str(TF_DIR)], capture_output=True, text=True
    )
    assert proc.returncode == 0, f"run `terraform fmt {TF_DIR}`: {proc.stdout}"
    bad = tmp_path / "bad.tf"
    bad.write_text('variable "x" {\ntype = string\n}\n')
    proc = subprocess.run([_terraform(), "fmt", "-check", str(tmp_path)], capture_output=True)
    assert proc.returncode != 0


def test_validate_offline(initialised):
    proc = tf(initialised, "validate", "-json", "-no-color")
    report = json.loads(proc.stdout)
    assert report["valid"], report["diagnostics"]


def test_validate_catches_a_wrong_reference(initialised, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(initialised, broken, symlinks=True)
    eks = broken / "eks.tf"
    eks.write_text(eks.read_text().replace("aws_iam_role.node.arn", "aws_iam_role.nodes.arn"))
    report = json.loads(tf(broken, "validate", "-json", "-no-color").stdout)
    assert not report["valid"]


@pytest.mark.slow
def test_apply_and_destroy_against_moto(aws_api, tmp_path):
    import boto3

    work = _init(Path(tempfile.mkdtemp(dir=tmp_path)))
    services = ("ec2", "eks", "iam", "kms", "s3", "ecr", "sts")
    endpoints = "\n".join(f'    {s} = "{aws_api}"' for s in services)
    (work / "moto_override.tf").write_text(MOTO_PROVIDER.format(endpoints=endpoints))
    proc = tf(work, "apply", "-auto-approve", "-no-color")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    outputs = json.loads(tf(work, "output", "-json").stdout)

    aws = {
        "endpoint_url": aws_api,
        "region_name": "us-east-1",
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
    }
    s3 = boto3.client("s3", **aws)
    for key in ("data_bucket", "artifacts_bucket"):
        bucket = outputs[key]["value"]
        assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
        block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
        assert all(block.values())
    gpu = boto3.client("eks", **aws).describe_nodegroup(
        clusterName=outputs["cluster_name"]["value"], nodegroupName="gpu"
    )["nodegroup"]
    assert gpu["scalingConfig"]["minSize"] == 0
    assert {"key": "nvidia.com/gpu", "value": "present", "effect": "NO_SCHEDULE"} in gpu["taints"]
    assert gpu["labels"] == {"unireward.io/pool": "gpu"}
    role = boto3.client("iam", **aws).get_role(RoleName="unireward-mlflow")["Role"]
    assert "system:serviceaccount:unireward:unireward-mlflow" in json.dumps(
        role["AssumeRolePolicyDocument"]
    )

    _check_overlay_from_outputs(outputs, tmp_path)

    proc = tf(work, "destroy", "-auto-approve", "-no-color")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    assert not s3.list_buckets()["Buckets"]


def _check_overlay_from_outputs(outputs: dict, tmp_path: Path) -> None:
    """cluster_env.py turns the outputs into the aws overlay's names; it still validates."""
    sys.path.insert(0, str(ROOT / "infra"))
    from cluster_env import cluster_env

    infra = tmp_path / "infra"
    shutil.copytree(ROOT / "infra", infra, ignore=shutil.ignore_patterns("terraform"))
    (infra / "overlays/aws/cluster.env").write_text(cluster_env(outputs, tag="abc123"))
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        return
    rendered = subprocess.run(
        [kubectl, "kustomize", str(infra / "overlays/aws")], capture_output=True, text=True
    )
    assert rendered.returncode == 0, rendered.stderr
    assert "123456789012.dkr.ecr.us-east-1.amazonaws.com/unireward/cpu:abc123" in rendered.stdout
    assert outputs["mlflow_role_arn"]["value"] in rendered.stdout
    check = subprocess.run(
        [str(BIN / "kubernetes-validate"), "--strict", "--quiet", "-"],
        input=rendered.stdout,
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stdout + check.stderr
