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
