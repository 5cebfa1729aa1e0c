"""Experiment tracking: a small `Tracker` protocol, an in-memory `NullTracker`, and MLflow.

Stages log through a `Tracker` so tests can run them with `NullTracker()` and assert what was
logged. `make_tracker(uri, experiment)` picks the implementation; the embedded default is MLflow
on a sqlite file with artifacts in a sibling `mlruns/` directory (no server needed); the URI
"null" gives the NullTracker::

    tracker = make_tracker(default_tracking_uri(Path.cwd()), "unireward")
    with tracker.start_run("unified_sft", tags={"profile": "quick"}):
        tracker.log_params(to_dict(config))          # nested -> dotted keys
        tracker.log_metrics({"loss": 0.3}, step=10)
        tracker.log_figure(fig, "plots/train_curves.png")   # a matplotlib Figure, as PNG
        tracker.log_text(html, "report.html")

Importing this module does not import mlflow (it is slow and optional): MlflowTracker imports it
on first use, after switching MLflow telemetry off.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from mlflow import MlflowClient

# MLflow's limits (mlflow.utils.validation), copied so that importing this module stays cheap.
MAX_PARAM_VAL_LENGTH = 6000
MAX_TAG_VAL_LENGTH = 8000
_BATCH = 100  # MAX_PARAMS_TAGS_PER_BATCH


class Tracker(Protocol):
    @property
    def run_id(self) -> str | None: ...

    def start_run(
        self, run_name: str, tags: Mapping[str, Any] | None = None
    ) -> contextlib.AbstractContextManager[Tracker]: ...

    def log_params(self, params: Mapping[str, Any]) -> None: ...

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None: ...

    def log_artifact(self, path: Path | str, artifact_path: str | None = None) -> None: ...

    def log_artifacts(self, directory: Path | str, artifact_path: str | None = None) -> None: ...

    def log_figure(self, figure: Figure, artifact_file: str) -> None: ...

    def log_text(self, text: str, artifact_file: str) -> None: ...

    def set_tags(self, tags: Mapping[str, Any]) -> None: ...


def flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings to dotted keys: {"a": {"b": 1}} -> {"a.b": 1}."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def truncate(value: Any, limit: int) -> str:
    """str(value), cut to `limit` characters with a visible marker when it is too long."""
    text = str(value)
    if len(text) <= limit:
        return text
    marker = "...[truncated]"
    return text[: limit - len(marker)] + marker


def default_tracking_uri(project_root: Path) -> str:
    """Embedded default: `sqlite:////<abs project_root>/mlflow.db` (artifacts go to `mlruns/`).

    SQLAlchemy reads `sqlite:///x` as a path relative to the working directory; an absolute path
    needs the fourth slash, which `as_posix()` of an absolute path supplies.
    """
    return f"sqlite:///{(Path(project_root).resolve() / 'mlflow.db').as_posix()}"


def resolve_tracking_uri(configured: str | None, project_root: Path | None = None) -> str:
    """The store a stage logs to: its configured URI, else `$MLFLOW_TRACKING_URI` (a tracking
    server in production), else the embedded sqlite default under `project_root` (the cwd)."""
    if configured:
        return configured
    return os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri(
        Path.cwd() if project_root is None else project_root
    )


def default_artifact_location(tracking_uri: str, experiment: str) -> str | None:
    """For a sqlite store, `<db dir>/mlruns/<experiment>` as a file URI; else None (server's).

    Without this MLflow puts a sqlite store's artifacts under `./mlruns` of whatever directory
    the process happened to start in.
    """
    prefix = "sqlite:///"
    if not tracking_uri.startswith(prefix) or tracking_uri.endswith(":memory:"):
        return None
    db = Path(tracking_uri[len(prefix) :].split("?", 1)[0]).resolve()
    return (db.parent / "mlruns" / experiment).as_uri()


class NullTracker:
    """Records every call in memory; logs nothing anywhere.

    `params`, `metrics` ({key: [(step, value), ...]}), `tags`, `artifacts` ([(path,
    artifact_path)]), `figures` ([artifact_file]), `texts` ({artifact_file: text}) and `runs`
    ([(run_name, tags)]) accumulate across runs.
    """

    def __init__(self) -> None:
        self.runs: list[tuple[str, dict[str, str]]] = []
        self.params: dict[str, str] = {}
        self.metrics: dict[str, list[tuple[int | None, float]]] = {}
        self.tags: dict[str, str] = {}
        self.artifacts: list[tuple[str, str | None]] = []
        self.figures: list[str] = []
        self.texts: dict[str, str] = {}
        self._run_id: str | None = None

    @property
    def run_id(self) -> str | None:
        return self._run_id

    @contextlib.contextmanager
    def start_run(self, run_name: str, tags: Mapping[str, Any] | None = None) -> Iterator[Any]:
        self.runs.append((run_name, {k: str(v) for k, v in (tags or {}).items()}))
        self.set_tags(tags or {})
        self._run_id = f"null-{len(self.runs)}"
        try:
            yield self
        finally:
            self._run_id = None

    def log_params(self, params: Mapping[str, Any]) -> None:
        for key, value in flatten(params).items():
            self.params[key] = truncate(value, MAX_PARAM_VAL_LENGTH)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        for key, value in metrics.items():
            self.metrics.setdefault(key, []).append((step, float(value)))

    def log_artifact(self, path: Path | str, artifact_path: str | None = None) -> None:
        self.artifacts.append((str(path), artifact_path))

    def log_artifacts(self, directory: Path | str, artifact_path: str | None = None) -> None:
        self.artifacts.append((str(directory), artifact_path))

    def log_figure(self, figure: Figure, artifact_file: str) -> None:
        self.figures.append(artifact_file)

    def log_text(self, text: str, artifact_file: str) -> None:
        self.texts[artifact_file] = text

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        self.tags.update({k: truncate(v, MAX_TAG_VAL_LENGTH) for k, v in tags.items()})


class MlflowTracker:
    """Tracker over an explicit `MlflowClient` (no global active-run state).

    The experiment is created on first use; for a sqlite store its artifacts go next to the
    database file (see `default_artifact_location`). `client` is exposed for registry work.
    """

    def __init__(self, tracking_uri: str, experiment: str) -> None:
        if not tracking_uri:
            raise ValueError("MlflowTracker needs a tracking URI (see default_tracking_uri)")
        # Telemetry stays off everywhere here; set before mlflow is first imported (in `client`).
        os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self._client: MlflowClient | None = None
        self._run_id: str | None = None

    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            from mlflow import MlflowClient

            self._client = MlflowClient(
                tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri
            )
        return self._client

    @property
    def run_id(self) -> str | None:
        return self._run_id

    def _require_run(self) -> str:
        if self._run_id is None:
            raise RuntimeError("no active run: call inside `with tracker.start_run(...)`")
        return self._run_id

    def experiment_id(self) -> str:
        found = self.client.get_experiment_by_name(self.experiment)
        if found is not None:
            return found.experiment_id
        location = default_artifact_location(self.tracking_uri, self.experiment)
        return self.client.create_experiment(self.experiment, artifact_location=location)

    @contextlib.contextmanager
    def start_run(self, run_name: str, tags: Mapping[str, Any] | None = None) -> Iterator[Any]:
        if self._run_id is not None:
            raise RuntimeError(f"run {self._run_id} is still active; runs do not nest here")
        tag_values = {k: truncate(v, MAX_TAG_VAL_LENGTH) for k, v in (tags or {}).items()}
        run = self.client.create_run(self.experiment_id(), run_name=run_name, tags=tag_values)
        self._run_id = run.info.run_id
        status = "FAILED"
        try:
            yield self
            status = "FINISHED"
        finally:
            self.client.set_terminated(self._run_id, status=status)
            self._run_id = None

    def artifact_uri(self, artifact_path: str = "") -> str:
        """Absolute URI of an artifact of the active run (what a model version's source needs)."""
        base = self.client.get_run(self._require_run()).info.artifact_uri.rstrip("/")
        return f"{base}/{artifact_path}" if artifact_path else base

    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, truncate(v, MAX_PARAM_VAL_LENGTH)) for k, v in flatten(params).items()]
        for i in range(0, len(items), _BATCH):
            self.client.log_batch(self._require_run(), params=items[i : i + _BATCH])

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, step or 0) for k, v in metrics.items()]
        self.client.log_batch(self._require_run(), metrics=items)

    def log_artifact(self, path: Path | str, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self._require_run(), str(path), artifact_path)

    def log_artifacts(self, directory: Path | str, artifact_path: str | None = None) -> None:
        self.client.log_artifacts(self._require_run(), str(directory), artifact_path)

    def log_figure(self, figure: Figure, artifact_file: str) -> None:
        """`figure` as an image artifact (PNG for a `.png` name); the MLflow UI previews it."""
        self.client.log_figure(self._require_run(), figure, artifact_file)

    def log_text(self, text: str, artifact_file: str) -> None:
        """`text` as a file artifact; the MLflow UI renders `.html` and shows `.md`/`.txt`."""
        self.client.log_text(self._require_run(), text, artifact_file)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(k, truncate(v, MAX_TAG_VAL_LENGTH)) for k, v in tags.items()]
        for i in range(0, len(items), _BATCH):
            self.client.log_batch(self._require_run(), tags=items[i : i + _BATCH])


NULL_TRACKING_URI = "null"


def make_tracker(tracking_uri: str | None, experiment: str) -> Tracker:
    """The tracker for a stage's `tracking_uri` setting.

    None -> MLflow on `$MLFLOW_TRACKING_URI` or else the embedded default
    (`default_tracking_uri(Path.cwd())`), so leaving the setting out never silently drops
    tracking; "null" -> NullTracker (tests, dry runs); any other
    string -> MlflowTracker on that URI.
    """
    if tracking_uri == NULL_TRACKING_URI:
        return NullTracker()
    return MlflowTracker(resolve_tracking_uri(tracking_uri), experiment)
