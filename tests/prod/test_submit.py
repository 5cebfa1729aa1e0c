"""Remote runs and the schedule (pipelines/submit.py): what would be sent to Kubeflow Pipelines
is built from params.yaml `deploy` and a freshly compiled package. No KFP API server runs here,
so the API call itself is not exercised.

    .venv/bin/pytest tests/prod/test_submit.py -q
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pipelines.submit import plan_run, plan_schedule  # noqa: E402

from unireward.config import load_params, stage_section  # noqa: E402

PARAMS = ROOT / "params.yaml"


def test_schedule_takes_cron_profile_and_account_from_params(tmp_path):
    deploy = load_params(PARAMS)["deploy"]
    plan = plan_schedule("s3://bucket/models/base", PARAMS, tmp_path)
    assert plan.method == "create_recurring_run"
    assert plan.kwargs["cron_expression"] == deploy["schedule"]["cron"]
    assert plan.kwargs["job_name"] == deploy["schedule"]["name"]
    assert plan.kwargs["service_account"] == deploy["service_account"]
    assert plan.kwargs["no_catchup"] is True
    spec = next(yaml.safe_load_all(Path(plan.kwargs["pipeline_package_path"]).read_text()))
    inputs = spec["root"]["inputDefinitions"]["parameters"]
    assert inputs["base_model_uri"]["defaultValue"] == "s3://bucket/models/base"
    profile = deploy["schedule"]["profile"]
    want = stage_section(load_params(PARAMS), "unified_sft", profile)
    assert inputs["unified_sft_config"]["defaultValue"] == want


def test_run_compiles_the_requested_profile(tmp_path):
    plan = plan_run("quick", "s3://bucket/models/base", PARAMS, tmp_path)
    assert plan.method == "create_run_from_pipeline_package"
    assert plan.package.is_file() and plan.package.name == "unireward-quick.yaml"
    assert plan.kwargs["pipeline_file"] == str(plan.package)


@pytest.mark.parametrize("uri", ["models/base-tiny", "/abs/models/base-tiny", "file:///x"])
def test_a_local_base_model_is_refused_before_compiling(tmp_path, uri):
    with pytest.raises(ValueError, match="cluster can read"):
        plan_run("quick", uri, PARAMS, tmp_path)
    assert not list(tmp_path.iterdir())
