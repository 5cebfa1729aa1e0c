"""The `register` stage on a real MLflow sqlite store: versions, aliases, the gate, loading back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from unireward.config import from_dict
from unireward.registry.register import (
    RegisterConfig,
    RegisterResult,
    download_model,
    register_key,
    run,
)
from unireward.tracking import default_tracking_uri

TASK_KEYS = RegisterConfig().per_task_metrics


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    ckpt = tmp_path / "ckpt"
    (ckpt / "sub").mkdir(parents=True)
    (ckpt / "config.json").write_text(json.dumps({"model_type": "qwen2_5_vl", "hidden": 8}))
    (ckpt / "model.safetensors").write_bytes(bytes(range(256)) * 4)
    (ckpt / "sub" / "tokenizer.json").write_text("{}")
    return ckpt


@pytest.fixture
def config(tmp_path: Path) -> RegisterConfig:
    return RegisterConfig(tracking_uri=default_tracking_uri(tmp_path / "store"))


def _register(tmp_path, config, checkpoint, name: str, metrics: dict) -> RegisterResult:
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(metrics))
    return run(config, checkpoint, path, tmp_path / name, params={"train": {"lr": 1e-3}})


def _metrics(mean: float, **per_task: float) -> dict[str, float]:
    out = {key: mean for key in TASK_KEYS}
    out.update({f"{task}/pairwise_diff": value for task, value in per_task.items()})
    return {"pairwise_diff_mean": mean, **out}


def _aliases(config: RegisterConfig) -> dict[str, str]:
    from mlflow import MlflowClient

    model = MlflowClient(config.tracking_uri).get_registered_model(config.model_name)
    return {alias: str(version) for alias, version in model.aliases.items()}


def test_first_registration_becomes_champion(tmp_path, config, checkpoint):
    result = _register(tmp_path, config, checkpoint, "v1", _metrics(0.7))
    assert result.promoted and result.version == "1"
    assert any("no current champion" in r for r in result.reasons)
    assert _aliases(config) == {"champion": "1", "challenger": "1"}
    written = json.loads((tmp_path / "v1" / "registration.json").read_text())
    assert written["model_uri"] == "models:/UnifiedReward/1" and written["promoted"] is True

    from mlflow import MlflowClient

    client = MlflowClient(config.tracking_uri)
    version = client.get_model_version(config.model_name, "1")
    assert version.run_id == result.run_id
    assert version.tags == {
        "gate": "promoted",
        "metric.pairwise_diff_mean": "0.7",
        "gate_reasons": json.dumps(list(result.reasons)),
        "register_key": register_key(checkpoint, _metrics(0.7), config.model_name),
    }
    run_data = client.get_run(result.run_id).data
    assert run_data.params["train.lr"] == "0.001"
    assert run_data.params["register.margin"] == "0.01"
    assert run_data.metrics["image_generation/pairwise_diff"] == 0.7


def test_version_says_what_it_is_its_headline_metrics_and_the_gate(tmp_path, config, checkpoint):
    from mlflow import MlflowClient

    (checkpoint / "unireward.json").write_text(
        json.dumps({"stage": "grpo", "judge": "runs/rs_sft", "samples": "runs/rejection_sample"})
    )
    metrics = {
        **_metrics(0.7),
        "eval_unseen/pairwise_diff_mean": 0.61,
        "swap_consistency_mean": 0.9,
        "eval_unseen/swap_consistency_mean": 0.8,
        **{f"{task}/pairwise_tau": 0.5 for task in ("image_generation", "video_generation")},
        "image_generation/by/colour/pairwise_tau": 0.75,
    }
    path = tmp_path / "m.json"
    path.write_text(json.dumps(metrics))
    tags = {"profile": "quick"}
    run(config, checkpoint, path, tmp_path / "v1", tags=tags)
    worse = {**metrics, "pairwise_diff_mean": 0.6}
    path.write_text(json.dumps(worse))
    run(config, checkpoint, path, tmp_path / "v2", tags=tags)

    client = MlflowClient(config.tracking_uri)
    first, second = (client.get_model_version(config.model_name, v) for v in ("1", "2"))
    # A few headline tags; every metric is on the run, not on the version. (Besides them: the
    # gate's reasons and the registration's idempotency key.)
    assert {k: v for k, v in first.tags.items() if k not in ("gate_reasons", "register_key")} == {
        "gate": "promoted",
        "metric.pairwise_diff_mean": "0.7",
        "metric.eval_unseen/pairwise_diff_mean": "0.61",
        "metric.swap_consistency_mean": "0.9",
    }
    assert len(client.get_run(first.run_id).data.metrics) == len(metrics)
    assert second.tags["gate"] == "not promoted" and len(second.tags) == 6

    text = first.description
    assert "checkpoint of stage `grpo`" in text
    assert "- base: `runs/rs_sft`" in text and "- data: `runs/rejection_sample`" in text
    assert "- profile: `quick`" in text
    assert "| eval_unseen/pairwise_diff_mean | 0.61 |" in text
    assert "| video_understanding/pairwise_diff | 0.7 |" in text  # per-task gate metrics
    assert "by/colour" not in text
    assert "**Gate: promoted** to `champion`" in text and "no current champion" in text
    text = second.description
    assert "**Gate: not promoted**: `challenger` only; `champion` stays on version 1." in text
    assert "- pairwise_diff_mean: 0.6000 vs champion 0.7000" in text


def test_worse_challenger_keeps_champion(tmp_path, config, checkpoint):
    _register(tmp_path, config, checkpoint, "v1", _metrics(0.7))
    result = _register(tmp_path, config, checkpoint, "v2", _metrics(0.65))
    assert not result.promoted
    assert any("pairwise_diff_mean: 0.6500 vs champion 0.7000" in r for r in result.reasons)
    assert _aliases(config) == {"champion": "1", "challenger": "2"}


def test_better_challenger_moves_champion(tmp_path, config, checkpoint):
    _register(tmp_path, config, checkpoint, "v1", _metrics(0.7))
    _register(tmp_path, config, checkpoint, "v2", _metrics(0.65))
    # compared with the champion (v1), not with the last challenger (v2)
    result = _register(tmp_path, config, checkpoint, "v3", _metrics(0.72))
    assert result.promoted, result.reasons
    assert any("compared with champion version 1" in r for r in result.reasons)
    assert _aliases(config) == {"champion": "3", "challenger": "3"}


def test_per_task_regression_blocks_promotion(tmp_path, config, checkpoint):
    _register(tmp_path, config, checkpoint, "v1", _metrics(0.7))
    result = _register(tmp_path, config, checkpoint, "v2", _metrics(0.8, video_generation=0.6))
    assert not result.promoted
    assert any(
        r.startswith("video_generation/pairwise_diff") and "FAIL" in r for r in result.reasons
    )
    assert _aliases(config)["champion"] == "1"


def test_missing_per_task_metric_is_refused_with_reason(tmp_path, config, checkpoint):
    _register(tmp_path, config, checkpoint, "v1", _metrics(0.7))
    metrics = _metrics(0.9)
    del metrics["video_understanding/pairwise_diff"]
    result = _register(tmp_path, config, checkpoint, "v2", metrics)
    assert not result.promoted
    assert any("no metric 'video_understanding/pairwise_diff'" in r for r in result.reasons)
    assert _aliases(config) == {"champion": "1", "challenger": "2"}


def test_champion_downloads_with_identical_bytes(tmp_path, config, checkpoint, monkeypatch):
    import mlflow

    _register(tmp_path, config, checkpoint, "v1", _metrics(0.7))
    # models:/ URIs resolve through the process-wide registry URI (mlflow 3.17 ignores the
    # registry_uri argument there), the way a consumer configures it
    monkeypatch.setenv("MLFLOW_TRACKING_URI", config.tracking_uri)
    local = Path(
        mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/{config.model_name}@champion", dst_path=str(tmp_path / "dl")
        )
    )
    _assert_same_tree(local, checkpoint)


def test_download_model_uses_the_given_store(tmp_path, config, checkpoint):
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text('{"hidden": 16}')
    _register(tmp_path, config, checkpoint, "v1", _metrics(0.7))
    _register(tmp_path, config, other, "v2", _metrics(0.6))  # challenger only
    name, uri = config.model_name, config.tracking_uri
    _assert_same_tree(download_model(uri, name, dst_path=tmp_path / "a"), checkpoint)
    _assert_same_tree(download_model(uri, name, "challenger", dst_path=tmp_path / "b"), other)


def _assert_same_tree(local: Path, checkpoint: Path) -> None:
    files = sorted(p.relative_to(checkpoint) for p in checkpoint.rglob("*") if p.is_file())
    assert files and sorted(p.relative_to(local) for p in local.rglob("*") if p.is_file()) == files
    for rel in files:
        assert (local / rel).read_bytes() == (checkpoint / rel).read_bytes()


def test_unknown_config_key_is_named():
    with pytest.raises(ValueError, match="marign"):
        from_dict(RegisterConfig, {"marign": 0.1}, where="register")


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"model_name": "a/b"}, "model_name"),
        ({"tracking_uri": "null"}, "tracking_uri"),
        ({"margin": -0.1}, "margin"),
        ({"max_regression": float("nan")}, "max_regression"),
        ({"per_task_metrics": ("",)}, "per_task_metrics"),
    ],
)
def test_invalid_config_is_rejected(overrides, match):
    with pytest.raises(ValueError, match=match):
        RegisterConfig(**overrides)


def test_config_from_yaml_shaped_dict():
    config = from_dict(RegisterConfig, {"margin": 0, "per_task_metrics": ["a/pairwise_diff"]})
    assert config.margin == 0.0 and config.per_task_metrics == ("a/pairwise_diff",)


def test_bad_inputs_fail_before_touching_mlflow(tmp_path, config, checkpoint):
    bad = tmp_path / "m.json"
    bad.write_text(json.dumps({"pairwise_diff_mean": "high"}))
    with pytest.raises(ValueError, match="pairwise_diff_mean"):
        run(config, checkpoint, bad, tmp_path / "out")
    with pytest.raises(ValueError, match=r"config\.json"):
        run(config, tmp_path, bad, tmp_path / "out")  # parent dir, not the checkpoint
    assert not (tmp_path / "store").exists()


# --------------------------------------------------------------------------- retries (issue 21)


def _versions(config: RegisterConfig) -> list[str]:
    from mlflow import MlflowClient

    found = MlflowClient(config.tracking_uri).search_model_versions(f"name = '{config.model_name}'")
    return sorted(str(v.version) for v in found)


def _count_champion_moves(monkeypatch) -> list[str]:
    from mlflow import MlflowClient

    moves: list[str] = []
    original = MlflowClient.set_registered_model_alias

    def counted(self, name, alias, version):
        if alias == "champion":
            moves.append(str(version))
        return original(self, name, alias, version)

    monkeypatch.setattr(MlflowClient, "set_registered_model_alias", counted)
    return moves


def test_a_retried_registration_is_the_same_version_and_moves_nothing(
    tmp_path, config, checkpoint, monkeypatch
):
    first = _register(tmp_path, config, checkpoint, "v1", _metrics(0.7))
    moves = _count_champion_moves(monkeypatch)
    again = _register(tmp_path, config, checkpoint, "v1", _metrics(0.7))
    assert again == first and moves == []
    assert _versions(config) == ["1"] and _aliases(config) == {"champion": "1", "challenger": "1"}
    assert json.loads((tmp_path / "v1" / "registration.json").read_text())["version"] == "1"
    # A different checkpoint (or different metrics) is a new registration.
    (checkpoint / "config.json").write_text(json.dumps({"model_type": "qwen2_5_vl", "hidden": 9}))
    assert _register(tmp_path, config, checkpoint, "v2", _metrics(0.7)).version == "2"


def test_a_registration_cut_short_is_finished_by_its_retry(
    tmp_path, config, checkpoint, monkeypatch
):
    """Killed after its version exists and the champion moved, before the gate was recorded:
    the retry finds the version by its key and finishes it, moving nothing a second time."""
    from mlflow import MlflowClient

    _register(tmp_path, config, checkpoint, "v1", _metrics(0.7))
    moves = _count_champion_moves(monkeypatch)

    def dies(self, *args, **kwargs):
        raise ConnectionError("the task's pod was evicted")

    with monkeypatch.context() as m:
        m.setattr(MlflowClient, "update_model_version", dies)
        with pytest.raises(ConnectionError):
            _register(tmp_path, config, checkpoint, "v2", _metrics(0.8))
    assert _aliases(config)["champion"] == "2" and moves == ["2"]
    cut_short = MlflowClient(config.tracking_uri).get_model_version("UnifiedReward", "2")
    assert "gate" not in cut_short.tags

    retried = _register(tmp_path, config, checkpoint, "v2", _metrics(0.8))
    assert retried.version == "2" and retried.promoted and moves == ["2"]
    assert _versions(config) == ["1", "2"]
    version = MlflowClient(config.tracking_uri).get_model_version("UnifiedReward", "2")
    assert version.tags["gate"] == "promoted" and "**Gate: promoted**" in version.description


def test_a_create_request_the_server_did_twice_leaves_one_version(
    tmp_path, config, checkpoint, monkeypatch
):
    """The client retried `create_model_version` after the server had done it (a reset
    connection): two versions with one key. The registration keeps the first, deletes the other."""
    from mlflow import MlflowClient

    original = MlflowClient.create_model_version

    def twice(self, *args, **kwargs):
        original(self, *args, **kwargs)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(MlflowClient, "create_model_version", twice)
    result = _register(tmp_path, config, checkpoint, "v1", _metrics(0.7))
    assert result.version == "1" and _versions(config) == ["1"]
    assert _aliases(config) == {"champion": "1", "challenger": "1"}


def test_a_promotion_lock_left_by_a_dead_run_is_broken_and_a_live_one_waited_for(
    tmp_path, checkpoint
):
    import time

    from mlflow import MlflowClient

    config = RegisterConfig(
        tracking_uri=default_tracking_uri(tmp_path / "store"), lock_timeout_s=1, lock_stale_s=60
    )
    client = MlflowClient(config.tracking_uri)
    lock = "UnifiedReward.promotion-lock"
    client.create_registered_model(lock, tags={"holder": "pod-a:7", "since": f"{time.time()}"})
    with pytest.raises(TimeoutError, match="held by pod-a:7"):
        _register(tmp_path, config, checkpoint, "v1", _metrics(0.7))
    assert _versions(config) == ["1"] and "champion" not in _aliases(config)

    client.set_registered_model_tag(lock, "since", f"{time.time() - 61}")  # its holder died
    retried = _register(tmp_path, config, checkpoint, "v1", _metrics(0.7))
    assert retried.version == "1" and retried.promoted
    names = [m.name for m in client.search_registered_models()]
    assert lock not in names  # released on the way out
