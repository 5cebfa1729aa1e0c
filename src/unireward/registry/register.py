"""Stage 9, `register`: log a judge checkpoint to MLflow, register it, and run the promotion gate.

    unireward register --model-dir out/grpo --metrics out/evaluate/metrics.json --output out/reg

What it does, in order:
1. one MLflow run with the stage's params, the eval metrics and tags; the checkpoint directory
   (config.json, *.safetensors, tokenizer/processor files) is logged as run artifacts under
   `model/` - as plain files, so vLLM and transformers load it without an MLflow flavour;
2. a new version of registered model `model_name` whose source is the absolute artifact URI of
   that `model/` directory (with run_id set, which an MLflow server requires for local paths);
3. alias `challenger` moves to the new version; the version holding `champion` is compared to it
   by `unireward.registry.gate.promotion_decision` (champion metrics read from its run), and
   `champion` moves only on a pass;
4. the version gets a description (`describe`: what it is - stage, base, data, profile - its
   headline metrics and the gate's decision with its reasons) and a few tags for the registry
   list: `gate` and the headline metrics (`headline_metrics`) as `metric.<name>`. Every metric
   stays on the run, where it belongs (the version links to it);
5. `output_dir/registration.json` records the result, `output_dir/description.md` the
   description.

Retried and concurrent runs (a Kubeflow retry, the MLflow server restarting mid-stage, two
pipelines finishing at once):
- **idempotent**: the version carries `register_key`, a digest of the checkpoint's files, the
  metrics and the model name. A run that finds a version with its key reuses it (no second
  version; a version a retried request created twice is deleted), finishes what an earlier
  attempt left undone, and moves `champion` at most once;
- **one promotion at a time**: the aliases move and the gate reads the champion inside a lock,
  a registered model `<name>.promotion-lock` whose creation the registry's unique name makes
  atomic (deleted on the way out; one older than `lock_stale_s` is broken). So the champion
  is always a version that passed the gate against the champion it replaced.

Consumers load the promoted judge with
`mlflow.artifacts.download_artifacts(artifact_uri="models:/UnifiedReward@champion")`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import random
import socket
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from unireward.registry.gate import promotion_decision
from unireward.tracking import NULL_TRACKING_URI, MlflowTracker, resolve_tracking_uri

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion, RegisteredModel

CHALLENGER, CHAMPION = "challenger", "champion"
MODEL_ARTIFACT_PATH = "model"
DESCRIPTION_FILE = "description.md"  # the version's description, beside registration.json
METRIC_TAG_PREFIX = "metric."
KEY_TAG = "register_key"  # the idempotency key of the registration that made a version
REASONS_TAG = "gate_reasons"  # the gate's reasons (JSON), for a retry that finds it done
LOCK_SUFFIX = ".promotion-lock"
CHECKPOINT_MARKERS = ("config.json", "adapter_config.json")
# Weight formats that unpickle (run code) on load: a served checkpoint must be safetensors only.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")


@dataclass(frozen=True)
class RegisterConfig:
    model_name: str = "UnifiedReward"
    tracking_uri: str | None = None  # None -> $MLFLOW_TRACKING_URI, else sqlite under the cwd
    experiment: str = "unireward"
    primary_metric: str = "pairwise_diff_mean"
    margin: float = 0.01
    max_regression: float = 0.02
    min_primary: float = 0.55  # a judge must beat chance (0.5) to become champion at all
    lock_timeout_s: float = 600.0  # wait this long for another run's promotion to finish
    lock_stale_s: float = 900.0  # a lock older than this was left by a dead run: broken
    per_task_metrics: tuple[str, ...] = (
        "image_generation/pairwise_diff",
        "image_understanding/pairwise_diff",
        "video_generation/pairwise_diff",
        "video_understanding/pairwise_diff",
    )

    def __post_init__(self) -> None:
        if not self.model_name.strip() or any(c in self.model_name for c in "/:"):
            raise ValueError(
                f"register.model_name {self.model_name!r} must be non-empty, without '/' or ':' "
                "(MLflow registered model names)"
            )
        if self.tracking_uri == NULL_TRACKING_URI or self.tracking_uri == "":
            raise ValueError(
                "register.tracking_uri must name an MLflow store (the registry lives there); "
                "leave it out for the local sqlite default"
            )
        if not self.experiment.strip():
            raise ValueError("register.experiment must be a non-empty MLflow experiment name")
        if not self.primary_metric:
            raise ValueError("register.primary_metric must name a key of the evaluate metrics")
        for name in ("margin", "max_regression", "min_primary", "lock_timeout_s", "lock_stale_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"register.{name} must be a number, got {value!r}")
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"register.{name} must be a finite number >= 0, got {value}")
        if not isinstance(self.per_task_metrics, tuple) or not all(
            isinstance(k, str) and k for k in self.per_task_metrics
        ):
            raise ValueError(
                "register.per_task_metrics must be a list of metric names, e.g. "
                "['image_generation/pairwise_diff']"
            )


@dataclass(frozen=True)
class RegisterResult:
    model_name: str
    version: str
    run_id: str
    promoted: bool
    reasons: tuple[str, ...]
    model_uri: str


def load_metrics(path: Path) -> dict[str, float]:
    """The evaluate stage's `{name: number}` JSON; null reads as nan (the gate refuses it)."""
    if not path.is_file():
        raise FileNotFoundError(f"metrics file {path} not found (run the evaluate stage first)")
    data = json.loads(path.read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object of metric name -> number")
    metrics: dict[str, float] = {}
    for key, value in data.items():
        if value is None:
            value = math.nan
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{path}: metric {key!r} is {value!r}; metrics must be numbers")
        metrics[key] = float(value)
    return metrics


def check_checkpoint(model_dir: Path) -> None:
    if not model_dir.is_dir():
        raise FileNotFoundError(f"model directory {model_dir} not found")
    if not any((model_dir / marker).is_file() for marker in CHECKPOINT_MARKERS):
        raise ValueError(
            f"{model_dir} holds no {' or '.join(CHECKPOINT_MARKERS)}; pass the checkpoint "
            "directory itself (the one save_pretrained wrote), not its parent"
        )


def _ensure_registered_model(client: MlflowClient, name: str) -> RegisteredModel:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_registered_model(name)
    except MlflowException as err:
        if err.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
    try:
        return client.create_registered_model(name, description="Unified multimodal reward judge")
    except MlflowException as err:  # another register run created it in between
        if err.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
        return client.get_registered_model(name)


def _champion_metrics(client: MlflowClient, model: RegisteredModel) -> dict[str, float] | None:
    """Metrics of the current champion's run; None when no version holds the alias."""
    version = model.aliases.get(CHAMPION)
    if version is None:
        return None
    champion = client.get_model_version(model.name, version)
    if not champion.run_id:
        return {}  # registered by hand, no run: the gate refuses and says why
    return dict(client.get_run(champion.run_id).data.metrics)


def _gate(
    client: MlflowClient, model: RegisteredModel, metrics: dict[str, float], config: RegisterConfig
) -> tuple[bool, tuple[str, ...]]:
    """The promotion decision against the version holding `champion` (read before any move)."""
    decision = promotion_decision(
        metrics,
        _champion_metrics(client, model),
        primary=config.primary_metric,
        margin=config.margin,
        per_task_keys=config.per_task_metrics,
        max_regression=config.max_regression,
        min_primary=config.min_primary,
    )
    champion_version = model.aliases.get(CHAMPION)
    if champion_version is None:
        return decision.promote, decision.reasons
    compared = f"compared with champion version {champion_version}"
    return decision.promote, (compared, *decision.reasons)


def headline_metrics(metrics: Mapping[str, float], primary: str) -> list[str]:
    """The few metrics a version is known by: the primary one, its held-out counterpart
    (`eval_unseen/<primary>`, or `eval_seen` -> `eval_unseen` inside the name) and the swap
    consistency, those of them that `metrics` holds.

    >>> headline_metrics({"a_mean": 1, "eval_unseen/a_mean": 1, "x": 1}, "a_mean")
    ['a_mean', 'eval_unseen/a_mean']
    """
    unseen = [f"eval_unseen/{primary}", primary.replace("eval_seen", "eval_unseen")]
    keys = dict.fromkeys([primary, *unseen, "swap_consistency_mean"])
    return [k for k in keys if k in metrics]


def _number(value: float) -> str:
    return "nan" if math.isnan(value) else f"{value:.4g}"


def checkpoint_info(model_dir: Path) -> dict[str, Any]:
    """The checkpoint's `unireward.json` (what the training stage recorded), {} without one."""
    path = model_dir / "unireward.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def describe(
    config: RegisterConfig,
    info: Mapping[str, Any],
    metrics: Mapping[str, float],
    tags: Mapping[str, Any],
    promoted: bool,
    reasons: tuple[str, ...],
    champion_before: str | None,
) -> str:
    """The model version's description (markdown, as the MLflow UI renders it): what it is
    (the stage that trained it, its base, its data, the profile), the headline metrics, and
    the gate's decision: promoted to `champion`, or `challenger` only and why not."""
    base = next(
        (info[k] for k in ("base_model", "started_from", "policy", "judge") if k in info), "-"
    )
    data = next((info[k] for k in ("dataset", "samples", "pairs_dir") if k in info), "-")
    what = [
        f"{config.model_name}: checkpoint of stage `{info.get('stage', 'unknown')}`.",
        "",
        f"- base: `{base}`",
        f"- data: `{data}`",
        f"- profile: `{tags.get('profile', '-')}`",
    ]
    if "pipeline" in tags:
        what.append(f"- pipeline: `{tags['pipeline']}`")
    keys = [*headline_metrics(metrics, config.primary_metric)]
    keys += [k for k in config.per_task_metrics if k in metrics and k not in keys]
    table = ["| metric | value |", "|---|---|"]
    table += [f"| {k} | {_number(metrics[k])} |" for k in keys]
    if promoted:
        gate = f"**Gate: promoted** to `{CHAMPION}` (and `{CHALLENGER}`)."
    else:
        stays = (
            f"`{CHAMPION}` stays on version {champion_before}"
            if champion_before
            else (f"no version holds `{CHAMPION}`")
        )
        gate = f"**Gate: not promoted**: `{CHALLENGER}` only; {stays}."
    return "\n".join(
        [
            *what,
            "",
            "Headline metrics (all of them are on the run):",
            "",
            *table,
            "",
            gate,
            "",
            *(f"- {r}" for r in reasons),
        ]
    )


def register_key(model_dir: Path, metrics: Mapping[str, float], name: str) -> str:
    """The registration's identity: the checkpoint's files (paths and bytes), its metrics and
    the registered model's name. A retried task has the same key; a new checkpoint does not."""
    digest = hashlib.sha256(name.encode())
    for path in sorted(p for p in model_dir.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(model_dir)).encode() + b"\0")
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    digest.update(json.dumps(dict(metrics), sort_keys=True).encode())
    return digest.hexdigest()


def _versions_with_key(client: MlflowClient, name: str, key: str) -> list[ModelVersion]:
    found = client.search_model_versions(f"name = '{name}' and tags.{KEY_TAG} = '{key}'")
    return sorted(found, key=lambda v: int(v.version))


def _one_version(client: MlflowClient, name: str, key: str) -> ModelVersion | None:
    """The version this registration made, if any; extra ones (a create request retried after
    the server had done it) are deleted, the oldest kept. Only this key's versions are touched."""
    from mlflow.exceptions import MlflowException

    versions = _versions_with_key(client, name, key)
    for extra in versions[1:]:
        with contextlib.suppress(MlflowException):  # a concurrent retry deleted it first
            client.delete_model_version(name, extra.version)
    return versions[0] if versions else None


@contextlib.contextmanager
def _promotion_lock(client: MlflowClient, name: str, config: RegisterConfig) -> Iterator[None]:
    """Hold `<name>.promotion-lock` (a registered model: creating one that exists fails
    atomically in every MLflow store) while the champion is read and moved."""
    from mlflow.exceptions import MlflowException

    lock = f"{name}{LOCK_SUFFIX}"
    holder = f"{socket.gethostname()}:{os.getpid()}"
    deadline = time.monotonic() + config.lock_timeout_s
    while True:
        try:
            client.create_registered_model(
                lock,
                tags={"holder": holder, "since": f"{time.time():.3f}"},
                description=f"held by `register` while it promotes a version of {name}",
            )
            break
        except MlflowException as err:
            # Taken; or, on a server, taken and released while the create failed (the store
            # reports the lock it could not find): try again either way.
            if err.error_code not in ("RESOURCE_ALREADY_EXISTS", "RESOURCE_DOES_NOT_EXIST"):
                raise
        try:
            held = client.get_registered_model(lock)
        except MlflowException:
            continue  # released in between
        since = float(held.tags.get("since", "0"))
        if time.time() - since > config.lock_stale_s:
            with contextlib.suppress(MlflowException):
                client.delete_registered_model(lock)  # left by a run that died holding it
            continue
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"{lock} is held by {held.tags.get('holder', '?')} since "
                f"{time.time() - since:.0f} s ago; waited {config.lock_timeout_s:g} s "
                "(register.lock_timeout_s)"
            )
        time.sleep(0.2 + random.random() * 0.3)
    try:
        yield
    finally:
        with contextlib.suppress(MlflowException):
            client.delete_registered_model(lock)


def _promote(
    client: MlflowClient, name: str, version: str, metrics: dict[str, float], config: RegisterConfig
) -> tuple[bool, tuple[str, ...], RegisteredModel]:
    """`challenger` to `version`, then gate it against the champion and move `champion` on a
    pass, all under the lock. A
    version that already holds `champion` (an earlier attempt of this registration moved it)
    keeps it without a second move. Returns the registered model as the gate saw it."""
    with _promotion_lock(client, name, config):
        # Every alias move is under the lock: MLflow's alias upsert itself is not safe against
        # a concurrent one (PostgreSQL: a duplicate-key error on registered_model_aliases).
        client.set_registered_model_alias(name, CHALLENGER, version)
        model = client.get_registered_model(name)
        if str(model.aliases.get(CHAMPION)) == version:
            return True, ("promoted by an earlier attempt of this registration",), model
        promote, reasons = _gate(client, model, metrics, config)
        if promote:
            client.set_registered_model_alias(name, CHAMPION, version)
    return promote, reasons, model


def run(
    config: RegisterConfig,
    model_dir: Path,
    metrics_path: Path,
    output_dir: Path,
    params: Mapping[str, Any] | None = None,
    tags: Mapping[str, Any] | None = None,
) -> RegisterResult:
    """Register `model_dir` as a new version; move `champion` only if the gate passes.
    Idempotent: run again with the same inputs, it returns the same version (module docstring)."""
    model_dir, output_dir = Path(model_dir), Path(output_dir)
    check_checkpoint(model_dir)
    metrics = load_metrics(Path(metrics_path))
    tracker = MlflowTracker(resolve_tracking_uri(config.tracking_uri), config.experiment)
    client = tracker.client
    name = config.model_name
    key = register_key(model_dir, metrics, name)
    run_tags = {"stage": "register", **(tags or {})}

    _ensure_registered_model(client, name)
    mv = _one_version(client, name, key)
    if mv is not None and "gate" in mv.tags:  # done before: report it, move nothing
        reasons = tuple(json.loads(mv.tags.get(REASONS_TAG, "[]")))
        result = RegisterResult(
            model_name=name,
            version=str(mv.version),
            run_id=mv.run_id,
            promoted=mv.tags["gate"] == "promoted",
            reasons=reasons,
            model_uri=f"models:/{name}/{mv.version}",
        )
        return _write(output_dir, result, mv.description or "")

    if mv is None:
        with tracker.start_run(f"register-{name}", tags={**run_tags, KEY_TAG: key}):
            run_id = tracker.run_id
            assert run_id is not None
            tracker.log_params({**(params or {}), "register": dataclasses.asdict(config)})
            tracker.log_metrics(metrics)
            tracker.log_artifacts(model_dir, MODEL_ARTIFACT_PATH)
            source = tracker.artifact_uri(MODEL_ARTIFACT_PATH)
            version_tags = {
                f"{METRIC_TAG_PREFIX}{k}": _number(metrics[k])
                for k in headline_metrics(metrics, config.primary_metric)
            }
            client.create_model_version(
                name, source, run_id=run_id, tags={**version_tags, KEY_TAG: key}
            )
        mv = _one_version(client, name, key)
        assert mv is not None, f"the version just created for {name} is not found by its key"
    run_id = mv.run_id
    version = str(mv.version)

    promote, reasons, model = _promote(client, name, version, metrics, config)
    verdict = "promoted" if promote else "not promoted"
    text = describe(
        config,
        checkpoint_info(model_dir),
        metrics,
        run_tags,
        promote,
        reasons,
        model.aliases.get(CHAMPION),
    )
    client.update_model_version(name, version, description=text)
    client.set_model_version_tag(name, version, REASONS_TAG, json.dumps(list(reasons)))
    client.set_model_version_tag(name, version, "gate", verdict)  # last: marks it done
    for tag, value in (("gate", verdict), ("model_version", version)):
        client.set_tag(run_id, tag, value)

    result = RegisterResult(
        model_name=name,
        version=version,
        run_id=run_id,
        promoted=promote,
        reasons=reasons,
        model_uri=f"models:/{name}/{version}",
    )
    return _write(output_dir, result, text)


def _write(output_dir: Path, result: RegisterResult, text: str) -> RegisterResult:
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "registration.json").write_text(
        json.dumps(dataclasses.asdict(result), indent=2) + "\n"
    )
    (output_dir / DESCRIPTION_FILE).write_text(text + "\n")
    return result


def download_model(
    tracking_uri: str,
    model_name: str,
    alias: str = CHAMPION,
    dst_path: Path | None = None,
    require_safetensors: bool = False,
) -> Path:
    """Local directory holding the checkpoint files of `model_name@alias` in this store.

    Equivalent to `mlflow.artifacts.download_artifacts(artifact_uri="models:/<name>@<alias>")`,
    but uses `tracking_uri` explicitly: mlflow 3.17 resolves `models:/` URIs through the
    process-wide registry URI (MLFLOW_TRACKING_URI) and ignores the `registry_uri` argument.
    With `require_safetensors` it refuses (ValueError) a checkpoint without `*.safetensors`
    weights or with pickle weight files next to them: serving loads safetensors only.
    """
    import mlflow

    client = MlflowTracker(tracking_uri, experiment="unused").client
    version = client.get_model_version_by_alias(model_name, alias)
    source = client.get_model_version_download_uri(model_name, version.version)
    local = Path(
        mlflow.artifacts.download_artifacts(
            artifact_uri=source,
            dst_path=None if dst_path is None else str(dst_path),
            tracking_uri=tracking_uri,
        )
    )
    if require_safetensors:
        check_safetensors_only(local, f"{model_name}@{alias} (version {version.version})")
    return local


def check_safetensors_only(model_dir: Path, what: str) -> None:
    pickles = sorted(p.name for p in model_dir.rglob("*") if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise ValueError(
            f"{what} holds pickle weight files {pickles}; only safetensors are served. "
            "Re-save it with save_pretrained(safe_serialization=True) and register again"
        )
    if not list(model_dir.rglob("*.safetensors")):
        raise ValueError(f"{what} holds no *.safetensors weights; nothing safe to serve")
