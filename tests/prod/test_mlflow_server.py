"""Server mode of the registry: `register` and the promotion gate against `mlflow server` on
PostgreSQL with S3 artifacts (tests/prod/conftest.py starts all three on loopback), the
champion loaded back by `models:/<name>@champion`, and the files found in the S3 bucket.

    .venv/bin/pytest tests/prod/test_mlflow_server.py -q
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from unireward.registry.fetch import fetch
from unireward.registry.register import RegisterConfig, download_model, run

pytestmark = pytest.mark.integration

TASKS = RegisterConfig().per_task_metrics


def _metrics(tmp_path: Path, name: str, primary: float) -> Path:
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps({"pairwise_diff_mean": primary, **dict.fromkeys(TASKS, primary)}))
    return path


def _aliases(uri: str, name: str) -> dict[str, str]:
    from mlflow import MlflowClient

    return dict(MlflowClient(uri, registry_uri=uri).get_registered_model(name).aliases)


def test_register_and_gate_on_postgres_and_s3(
    mlflow_server, s3_client, tiny_model_dir, tmp_path, monkeypatch
):
    import sqlalchemy

    from unireward.model.tiny import load_checkpoint

    uri = mlflow_server.tracking_uri
    config = RegisterConfig(model_name="ServerJudge", tracking_uri=uri)
    first = run(config, tiny_model_dir, _metrics(tmp_path, "a", 0.70), tmp_path / "r1")
    worse = run(config, tiny_model_dir, _metrics(tmp_path, "b", 0.65), tmp_path / "r2")
    assert first.promoted and not worse.promoted
    assert _aliases(uri, "ServerJudge") == {"champion": first.version, "challenger": worse.version}
    better = run(config, tiny_model_dir, _metrics(tmp_path, "c", 0.80), tmp_path / "r3")
    assert better.promoted
    both = {"champion": better.version, "challenger": better.version}
    assert _aliases(uri, "ServerJudge") == both

    # The registry lives in PostgreSQL, not in a sqlite file somewhere.
    engine = sqlalchemy.create_engine(mlflow_server.postgres_dsn)
    with engine.connect() as db:
        rows = db.execute(
            sqlalchemy.text("SELECT alias, version FROM registered_model_aliases WHERE name = :n"),
            {"n": "ServerJudge"},
        ).all()
    engine.dispose()
    assert dict(rows) == {"champion": int(better.version), "challenger": int(better.version)}

    # A consumer resolves the alias the documented way (process-wide URI) and gets a model.
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    local = Path(
        mlflow.artifacts.download_artifacts(
            artifact_uri="models:/ServerJudge@champion", dst_path=str(tmp_path / "dl")
        )
    )
    weights = sorted(p.name for p in tiny_model_dir.glob("*.safetensors"))
    assert weights and sorted(p.name for p in local.glob("*.safetensors")) == weights
    for name in weights:
        assert (local / name).read_bytes() == (tiny_model_dir / name).read_bytes()
    model, _ = load_checkpoint(local)
    assert (
        model.config.model_type
        == json.loads((tiny_model_dir / "config.json").read_text())["model_type"]
    )

    # The artifact bytes are in the bucket, under the champion run's model/ directory.
    listed = s3_client.list_objects_v2(Bucket=mlflow_server.bucket, Prefix="mlartifacts/")
    keys = [o["Key"] for o in listed.get("Contents", [])]
    for name in weights:
        key = next(k for k in keys if better.run_id in k and k.endswith(f"/model/{name}"))
        body = s3_client.get_object(Bucket=mlflow_server.bucket, Key=key)["Body"].read()
        assert body == (tiny_model_dir / name).read_bytes()


def test_fetch_serves_only_safetensors_checkpoints(mlflow_server, tiny_model_dir, tmp_path):
    uri = mlflow_server.tracking_uri
    config = RegisterConfig(model_name="FetchJudge", tracking_uri=uri)
    good = run(config, tiny_model_dir, _metrics(tmp_path, "a", 0.7), tmp_path / "r1")
    out = fetch(uri, "FetchJudge", "champion", tmp_path / "serve" / "judge")
    assert json.loads((out / "unireward-source.json").read_text())["version"] == good.version
    assert list(out.glob("*.safetensors")) and (out / "config.json").is_file()

    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "config.json").write_text("{}")
    (pickled / "pytorch_model.bin").write_bytes(b"not a tensor file")
    run(config, pickled, _metrics(tmp_path, "b", 0.9), tmp_path / "r2")  # becomes champion
    with pytest.raises(ValueError, match=r"pickle weight files \['pytorch_model.bin'\]"):
        download_model(uri, "FetchJudge", "champion", tmp_path / "x", require_safetensors=True)
    with pytest.raises(ValueError, match="pickle"):
        fetch(uri, "FetchJudge", "champion", tmp_path / "serve" / "judge")
    # The refused download did not replace what was being served.
    assert json.loads((out / "unireward-source.json").read_text())["version"] == good.version


# --------------------------------------------------------------------------- faults (issue 21)

_REGISTER = """
import sys
from pathlib import Path
from unireward.registry.register import RegisterConfig, run
uri, name, model, metrics, out = sys.argv[1:]
run(RegisterConfig(model_name=name, tracking_uri=uri), Path(model), Path(metrics), Path(out))
"""


def _register_process(uri: str, name: str, model: Path, metrics: Path, out: Path, env=None):
    import os
    import subprocess
    import sys

    return subprocess.Popen(
        [sys.executable, "-c", _REGISTER, uri, name, str(model), str(metrics), str(out)],
        env={**os.environ, "MLFLOW_TRACKING_URI": uri, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_concurrent_registrations_leave_one_champion_that_passed_the_gate(
    mlflow_server, tiny_model_dir, tmp_path
):
    """Four `register` processes for one model at once (three rounds): each promotion is
    gated against the champion it replaces, so the best of them ends as champion, and every
    version that holds or held the alias beat the one before it."""
    from mlflow import MlflowClient

    uri = mlflow_server.tracking_uri
    client = MlflowClient(uri, registry_uri=uri)
    for round_ in range(3):
        name = f"RaceJudge{round_}"
        scores = [0.62, 0.80, 0.70, 0.66]
        procs = [
            _register_process(
                uri,
                name,
                tiny_model_dir,
                _metrics(tmp_path, f"{name}-{i}", s),
                tmp_path / f"{name}-{i}",
            )
            for i, s in enumerate(scores)
        ]
        for proc in procs:
            out, _ = proc.communicate(timeout=300)
            assert proc.returncode == 0, out[-3000:]
        results = [
            json.loads((tmp_path / f"{name}-{i}" / "registration.json").read_text())
            for i in range(len(scores))
        ]
        versions = sorted(int(r["version"]) for r in results)
        assert versions == [1, 2, 3, 4]  # one version each, no duplicates
        best = next(r for r, s in zip(results, scores, strict=True) if s == max(scores))
        assert str(_aliases(uri, name)["champion"]) == best["version"]
        by_version = {r["version"]: s for r, s in zip(results, scores, strict=True)}
        for r in results:
            if r["promoted"]:
                compared = [x for x in r["reasons"] if x.startswith("compared with champion")]
                if compared:  # it beat the champion it replaced
                    replaced = compared[0].rsplit(" ", 1)[1]
                    assert by_version[r["version"]] > by_version[replaced]
        assert f"{name}.promotion-lock" not in [m.name for m in client.search_registered_models()]


def test_register_survives_an_mlflow_server_restart_and_its_retry_adds_nothing(
    mlflow_server, mlflow_launcher, tiny_model_dir, tmp_path
):
    """A second MLflow server on the same PostgreSQL and bucket is killed (SIGKILL) while
    `register` talks to it and started again on the same port 3 s later: the client's retries
    carry the stage through. Run again (a Kubeflow retry), it returns the same version."""
    import time

    from mlflow import MlflowClient

    from loopback import free_port

    port, name = free_port(), "RestartJudge"
    uri = f"http://127.0.0.1:{port}"
    client = MlflowClient(uri, registry_uri=uri)
    metrics = _metrics(tmp_path, "m", 0.7)
    with mlflow_launcher(port, tmp_path / "mlflow-1.log") as server:
        proc = _register_process(uri, name, tiny_model_dir, metrics, tmp_path / "r1")
        deadline = time.monotonic() + 120
        while not client.search_registered_models(f"name = '{name}'"):  # it is under way
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read()
            time.sleep(0.05)
        server.kill()
        server.wait()
    time.sleep(3)
    with mlflow_launcher(port, tmp_path / "mlflow-2.log"):
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, out[-3000:]
        first = json.loads((tmp_path / "r1" / "registration.json").read_text())
        retry = _register_process(uri, name, tiny_model_dir, metrics, tmp_path / "r2")
        out, _ = retry.communicate(timeout=300)
        assert retry.returncode == 0, out[-3000:]
        again = json.loads((tmp_path / "r2" / "registration.json").read_text())
        assert again == first and first["promoted"]
        assert [str(v.version) for v in client.search_model_versions(f"name = '{name}'")] == [
            first["version"]
        ]
        aliases = {k: str(v) for k, v in _aliases(uri, name).items()}
        assert aliases == {"champion": first["version"], "challenger": first["version"]}
