"""Tracking: the null tracker records calls; the MLflow tracker round-trips to a sqlite store."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from unireward.plots import close, log_figures, training_curves
from unireward.tracking import (
    MAX_PARAM_VAL_LENGTH,
    MlflowTracker,
    NullTracker,
    default_artifact_location,
    default_tracking_uri,
    flatten,
    make_tracker,
    truncate,
)


def test_import_does_not_import_mlflow():
    code = "import sys, unireward.tracking; assert 'mlflow' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_flatten_and_truncate():
    assert flatten({"a": {"b": 1, "c": {"d": "x"}}, "e": [1, 2]}) == {
        "a.b": 1,
        "a.c.d": "x",
        "e": [1, 2],
    }
    assert truncate("abc", 5) == "abc"
    cut = truncate("x" * 50, 20)
    assert len(cut) == 20 and cut.endswith("[truncated]")


def test_default_tracking_uri_is_absolute_sqlite(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    uri = default_tracking_uri(Path("."))
    assert uri == f"sqlite:///{tmp_path.resolve()}/mlflow.db"  # four slashes: absolute path
    assert default_artifact_location(uri, "exp") == (tmp_path.resolve() / "mlruns/exp").as_uri()
    assert default_artifact_location("http://mlflow:5000", "exp") is None


def test_null_tracker_records_calls():
    tracker = NullTracker()
    with tracker.start_run("stage", tags={"profile": "quick"}) as active:
        assert active.run_id is not None
        tracker.log_params({"opt": {"lr": 0.1}, "long": "y" * (MAX_PARAM_VAL_LENGTH + 10)})
        tracker.log_metrics({"loss": 1.0}, step=1)
        tracker.log_metrics({"loss": 0.5}, step=2)
        tracker.log_artifact("a.json", "reports")
        tracker.log_figure(object(), "plots/x.png")
        tracker.log_text("<p>hi</p>", "report.html")
        tracker.set_tags({"k": "v"})
    assert tracker.run_id is None
    assert tracker.runs == [("stage", {"profile": "quick"})]
    assert tracker.params["opt.lr"] == "0.1"
    assert len(tracker.params["long"]) == MAX_PARAM_VAL_LENGTH
    assert tracker.metrics == {"loss": [(1, 1.0), (2, 0.5)]}
    assert tracker.artifacts == [("a.json", "reports")]
    assert tracker.figures == ["plots/x.png"] and tracker.texts == {"report.html": "<p>hi</p>"}
    assert tracker.tags == {"profile": "quick", "k": "v"}


def test_make_tracker(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert isinstance(make_tracker("null", "exp"), NullTracker)
    default = make_tracker(None, "exp")
    assert isinstance(default, MlflowTracker)
    assert default.tracking_uri == default_tracking_uri(tmp_path)
    assert not (tmp_path / "mlflow.db").exists()  # constructing a tracker touches nothing


def test_mlflow_tracker_round_trip(tmp_path):
    uri = default_tracking_uri(tmp_path)
    tracker = MlflowTracker(uri, "exp")
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "a.txt").write_text("a")
    with tracker.start_run("stage", tags={"profile": "quick"}):
        run_id = tracker.run_id
        params = {f"p{i}": i for i in range(150)}  # more than one MLflow batch
        tracker.log_params({"cfg": {"lr": 0.1, "long": "z" * 7000}, **params})
        tracker.log_metrics({"loss": 1.0, "task/acc": 0.5}, step=3)
        tracker.log_artifacts(tmp_path / "files", "dir")
        tracker.log_artifact(tmp_path / "files" / "a.txt")
        figures = {
            "curve": training_curves([{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.0}], "t")
        }
        assert log_figures(tracker, figures) == ["plots/curve.png"]
        close(figures)
        tracker.log_text("<p>hi</p>", "report.html")
        tracker.set_tags({"gate": "pass"})
    assert os.environ["MLFLOW_DISABLE_TELEMETRY"] == "true"
    assert tracker.run_id is None

    run = tracker.client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "stage"
    assert run.data.params["cfg.lr"] == "0.1"
    assert len(run.data.params["cfg.long"]) == MAX_PARAM_VAL_LENGTH
    assert run.data.params["p149"] == "149"
    assert run.data.metrics == {"loss": 1.0, "task/acc": 0.5}
    assert run.data.tags["profile"] == "quick" and run.data.tags["gate"] == "pass"
    names = {f.path for f in tracker.client.list_artifacts(run_id)}
    assert names == {"dir", "a.txt", "plots", "report.html"}
    local = Path(tracker.client.download_artifacts(run_id, "plots/curve.png", str(tmp_path)))
    assert local.read_bytes()[:4] == b"\x89PNG"
    # artifacts live beside the database, not in the process's working directory
    assert run.info.artifact_uri.startswith((tmp_path / "mlruns" / "exp").as_uri())


def test_mlflow_tracker_marks_failed_run_and_refuses_logging_outside(tmp_path):
    tracker = MlflowTracker(default_tracking_uri(tmp_path), "exp")
    with pytest.raises(RuntimeError, match="no active run"):
        tracker.log_metrics({"x": 1.0})
    with pytest.raises(ValueError, match="boom"), tracker.start_run("bad"):
        run_id = tracker.run_id
        raise ValueError("boom")
    assert tracker.client.get_run(run_id).info.status == "FAILED"
