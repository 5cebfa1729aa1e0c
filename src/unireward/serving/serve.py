"""Stage 10, `serve`: the registered judge behind vLLM's OpenAI-compatible server, on loopback.

    export UNIREWARD_JUDGE_API_KEY=$(python -c 'import secrets; print(secrets.token_urlsafe(24))')
    make serve-venv                                 # vLLM's own venv (.venv-serve), once
    unireward serve                                 # UnifiedReward@champion from MLflow
    unireward serve --model-dir models/base-tiny    # ... or a local checkpoint directory

In Python the stage is a context manager; the server lives for the `with` block:

    with serve.run(config, Path("runs/serve")) as server:
        client = RewardClient(ClientConfig(server.base_url, server.api_key))

What it does, in order:
1. the model: a local directory, or `model_name@alias` downloaded from the MLflow registry
   (`unireward.registry.fetch`: safetensors only, pickle weights refused);
2. the server: `python -m vllm.entrypoints.openai.api_server` from `.venv-serve` (vLLM pins its
   own torch and transformers, see the Makefile), bound to loopback, served name
   `UnifiedReward`, API key from the environment variable `api_key_env` (handed to vLLM as
   VLLM_API_KEY in its environment, never on its command line: `ps` shows command lines),
   prefix caching on, at most `max_images_per_prompt` images per request (a video is frames)
   and `max_image_pixels` per image (larger ones get HTTP 400 before decoding), no native video,
   trust_remote_code off, telemetry off. stdout and stderr go to `output_dir/vllm.log`;
3. readiness: GET /health, then GET /v1/models with the key must list the served name, within
   `startup_timeout_s`; a server that exits or never gets ready raises `ServerError` with the
   log's tail;
4. on leaving the block: SIGTERM to the server's process group (vLLM's engine runs in child
   processes), SIGKILL after `shutdown_timeout_s`.

`output_dir/serve.json` records the URL, the model and where it came from (never the key).
Production serves the same checkpoint with the CUDA image and infra/base/judge-serving.yaml.
Tests: tests/test_serve.py.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unireward.serving.routes import DEFAULT_ROUTES
from unireward.serving.routes import ENV as ROUTES_ENV

DEFAULT_API_KEY_ENV = "UNIREWARD_JUDGE_API_KEY"
LOG_FILE = "vllm.log"
RECORD_FILE = "serve.json"
_LOG_TAIL_LINES = 40


class ServerError(RuntimeError):
    """The server exited or did not become ready; the message carries the log's tail."""


@dataclass(frozen=True)
class ServeConfig:
    model_name: str = "UnifiedReward"  # registered model to serve ...
    alias: str = "champion"  # ... at this alias (ignored when a model directory is given)
    tracking_uri: str | None = None  # None -> $MLFLOW_TRACKING_URI, else sqlite under the cwd
    served_model_name: str = "UnifiedReward"  # the `model` clients ask for
    host: str = "127.0.0.1"  # loopback only: the cluster plane has its own Deployment
    port: int = 0  # 0 = any free port
    api_key_env: str = DEFAULT_API_KEY_ENV  # environment variable holding the API key
    vllm_python: str = ".venv-serve/bin/python"  # `make serve-venv`; relative to the cwd
    max_model_len: int = 2048
    max_images_per_prompt: int = 16  # a pair of videos is 2 x 8 frames
    max_image_pixels: int = 200_704  # 448 x 448; the judge resizes to its own size anyway
    max_num_seqs: int = 64  # requests vLLM batches at once
    enable_prefix_caching: bool = True  # the instruction text repeats across requests
    dtype: str = "auto"
    # GPUs (the cluster's Deployment, or a GPU machine): one model across tensor_parallel_size
    # GPUs, each filled to gpu_memory_utilization. Not passed on the CPU backend.
    device: str = "cpu"
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.9
    # Image URLs the server may fetch (http/https), by host name. Empty = none: the server makes
    # no request to a host a client names (clients send images inline as data URLs).
    allowed_media_domains: tuple[str, ...] = ()
    # The HTTP paths the server answers (unireward.serving.routes); any other is a 404. ("*",) =
    # every route vLLM registers.
    routes: tuple[str, ...] = DEFAULT_ROUTES
    kv_cache_gib: float = 1.0  # VLLM_CPU_KVCACHE_SPACE: KV cache of the CPU backend
    startup_timeout_s: float = 300.0
    shutdown_timeout_s: float = 20.0
    extra_args: tuple[str, ...] = field(default_factory=tuple)  # more vLLM flags, verbatim

    def __post_init__(self) -> None:
        if not _is_loopback(self.host):
            raise ValueError(
                f"serve.host {self.host!r} is not a loopback address; the local plane binds "
                "127.0.0.1 only (a cluster serves the judge via infra/base/judge-serving.yaml)"
            )
        if not 0 <= self.port <= 65535:
            raise ValueError(f"serve.port must be 0 (any free port) or 1-65535, got {self.port}")
        if not self.api_key_env:
            raise ValueError("serve.api_key_env must name an environment variable")
        for name in ("max_model_len", "max_images_per_prompt", "max_image_pixels", "max_num_seqs"):
            if getattr(self, name) < 1:
                raise ValueError(f"serve.{name} must be >= 1, got {getattr(self, name)}")
        if self.kv_cache_gib <= 0 or self.startup_timeout_s <= 0 or self.shutdown_timeout_s <= 0:
            raise ValueError("serve.kv_cache_gib and the timeouts must be > 0")
        if self.device not in ("cpu", "cuda"):
            raise ValueError(f"serve.device must be 'cpu' or 'cuda', got {self.device!r}")
        if self.tensor_parallel_size < 1 or not 0 < self.gpu_memory_utilization <= 1:
            raise ValueError(
                "serve needs tensor_parallel_size >= 1, gpu_memory_utilization in (0, 1]"
            )
        if self.device == "cpu" and self.tensor_parallel_size > 1:
            raise ValueError("serve.tensor_parallel_size > 1 needs device: cuda")
        bad = [r for r in self.routes if r != "*" and (not r.startswith("/") or "," in r)]
        if not self.routes or bad:
            raise ValueError(
                f"serve.routes must list paths starting with / (or '*' for every route), got "
                f"{list(self.routes)}"
            )
        missing = [r for r in ("/health", "/v1/models") if r not in self.routes]
        if missing and "*" not in self.routes:
            raise ValueError(f"serve.routes must include {missing}: readiness is asked there")
        managed = (
            "--middleware",
            "--api-key",
            "--allowed-media-domains",
            "--trust-remote-code",
            "--host",
            "--port",
            "--model",
        )
        clash = [a for a in self.extra_args if a.split("=")[0] in managed]
        if clash:
            raise ValueError(f"serve.extra_args may not set {clash}: the stage manages them")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class JudgeServer:
    """A running server: what a client needs, and how to stop it."""

    base_url: str  # http://127.0.0.1:PORT/v1
    api_key: str = field(repr=False)
    served_model_name: str
    model_dir: Path
    log_path: Path
    process: subprocess.Popen = field(repr=False)

    @property
    def root_url(self) -> str:
        return self.base_url.removesuffix("/v1")

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        return log_tail(self.log_path, lines)


# --------------------------------------------------------------------------- pieces


def resolve_model(config: ServeConfig, model_dir: Path | None, work_dir: Path) -> tuple[Path, dict]:
    """(checkpoint directory, where it came from): `model_dir` as given, else the registry's
    `model_name@alias` downloaded into `work_dir/model`. Safetensors only, either way."""
    from unireward.registry.register import check_safetensors_only

    if model_dir is not None:
        model_dir = Path(model_dir).resolve()
        if not (model_dir / "config.json").exists():
            raise FileNotFoundError(f"{model_dir} is not a model checkpoint (no config.json)")
        check_safetensors_only(model_dir, str(model_dir))
        return model_dir, {"model_dir": str(model_dir)}
    from unireward.registry.fetch import fetch
    from unireward.tracking import resolve_tracking_uri

    tracking_uri = resolve_tracking_uri(config.tracking_uri)
    try:
        local = fetch(tracking_uri, config.model_name, config.alias, work_dir / "model")
    except Exception as err:  # mlflow raises its own exception types
        if isinstance(err, ValueError):
            raise
        raise ValueError(
            f"cannot fetch {config.model_name}@{config.alias} from {tracking_uri}: {err}. "
            "Register a judge first (unireward register), or pass --model-dir"
        ) from err
    source = json.loads((local / "unireward-source.json").read_text())
    return local.resolve(), {**source, "tracking_uri": tracking_uri}


NO_MEDIA_DOMAIN = "no-media-fetching.invalid"


def vllm_command(config: ServeConfig, model_dir: Path, port: int) -> list[str]:
    """The server's command line (no secrets in it)."""
    limits = {"image": config.max_images_per_prompt, "video": 0}  # video travels as frames
    command = [
        str(config.vllm_python),
        "-m",
        "vllm.entrypoints.openai.api_server",
        f"--model={model_dir}",
        f"--served-model-name={config.served_model_name}",
        f"--host={config.host}",
        f"--port={port}",
        f"--max-model-len={config.max_model_len}",
        f"--max-num-seqs={config.max_num_seqs}",
        f"--limit-mm-per-prompt={json.dumps(limits)}",
        f"--dtype={config.dtype}",
        # The chat template iterates content parts: keep text and images in their order.
        "--chat-template-content-format=openai",
        "--generation-config=vllm",  # sampling defaults from the request, not the checkpoint
        "--enable-prefix-caching" if config.enable_prefix_caching else "--no-enable-prefix-caching",
        # vLLM fetches any http(s) image URL unless the hosts are listed: list one that cannot
        # exist (RFC 2606 .invalid) when none is allowed.
        "--allowed-media-domains",
        *(config.allowed_media_domains or (NO_MEDIA_DOMAIN,)),
        # Only the judge's routes (serve.routes), from this package (server_env's PYTHONPATH).
        "--middleware",
        "unireward.serving.routes.AllowedRoutes",
    ]
    if config.device == "cuda":
        command += [
            f"--tensor-parallel-size={config.tensor_parallel_size}",
            f"--gpu-memory-utilization={config.gpu_memory_utilization}",
        ]
    return [*command, *config.extra_args]


def vllm_env(kv_cache_gib: float) -> dict[str, str]:
    """What every vLLM process of the project runs with (the server and the offline engine):
    its CPU KV cache size, no usage stats, nothing from a hub, unbuffered logs."""
    return {
        "VLLM_CPU_KVCACHE_SPACE": f"{kv_cache_gib:g}",
        "VLLM_NO_USAGE_STATS": "1",
        "DO_NOT_TRACK": "1",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "PYTHONUNBUFFERED": "1",
    }


def server_env(config: ServeConfig, api_key: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != config.api_key_env}
    env.update(vllm_env(config.kv_cache_gib))
    env.update(VLLM_API_KEY=api_key, VLLM_MAX_IMAGE_PIXELS=str(config.max_image_pixels))
    # The route middleware is stdlib-only: its package root on the path is all vLLM's venv needs.
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    env[ROUTES_ENV] = ",".join(config.routes)
    return env


def api_key_from_env(config: ServeConfig) -> str:
    key = os.environ.get(config.api_key_env, "")
    if not key:
        raise ValueError(
            f"no API key: set {config.api_key_env} (e.g. export {config.api_key_env}="
            "$(python -c 'import secrets; print(secrets.token_urlsafe(24))')); "
            "clients send it as the Bearer token"
        )
    return key


def free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def log_tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    if not path.exists():
        return "(no log written)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _get(url: str, api_key: str | None = None, timeout: float = 5.0) -> tuple[int, bytes]:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def wait_ready(server: JudgeServer, timeout_s: float, poll_s: float = 1.0) -> float:
    """Seconds until /health answers 200 and /v1/models lists the served name."""
    start = time.monotonic()
    while True:
        if not server.alive():
            raise ServerError(
                f"vLLM exited with code {server.process.returncode} before it was ready; "
                f"log {server.log_path}, last lines:\n{server.log_tail()}"
            )
        try:
            status, _ = _get(server.root_url + "/health")
            if status == 200:
                status, body = _get(server.base_url + "/models", server.api_key)
                if status == 200:
                    served = [m.get("id") for m in json.loads(body).get("data", [])]
                    if server.served_model_name in served:
                        return time.monotonic() - start
                    raise ServerError(
                        f"server is up but serves {served}, not {server.served_model_name!r}"
                    )
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            pass  # not listening yet
        if time.monotonic() - start > timeout_s:
            raise ServerError(
                f"vLLM not ready after {timeout_s:.0f} s (serve.startup_timeout_s); "
                f"log {server.log_path}, last lines:\n{server.log_tail()}"
            )
        time.sleep(poll_s)


def stop(server: JudgeServer, timeout_s: float) -> int | None:
    """SIGTERM the server's process group, SIGKILL what is left after `timeout_s`; the exit code.

    vLLM's engine core and workers are children in the same group (start_new_session=True):
    returns only once none of them is left, so no orphan holds the port or the memory.
    """
    process = server.process
    _signal_group(process, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=timeout_s)
    if not _wait_group_gone(process.pid, deadline):
        _signal_group(process, signal.SIGKILL)
        process.wait(timeout=timeout_s)
        if not _wait_group_gone(process.pid, time.monotonic() + timeout_s):
            raise ServerError(f"processes of group {process.pid} survived SIGKILL")
    return process.returncode


def _wait_group_gone(pgid: int, deadline: float) -> bool:
    while True:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)


def _signal_group(process: subprocess.Popen, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)  # start_new_session=True: the group id is the pid


def launch(config: ServeConfig, model_dir: Path, log_path: Path, api_key: str) -> JudgeServer:
    """Start the server process (not yet ready); see `wait_ready` and `stop`."""
    python = Path(config.vllm_python)
    if not python.exists():
        raise FileNotFoundError(
            f"{python} not found: vLLM lives in its own venv; run `make serve-venv` "
            "(or set serve.vllm_python)"
        )
    port = config.port or free_port(config.host)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            vllm_command(config, model_dir, port),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=server_env(config, api_key),
            start_new_session=True,
        )
    host = f"[{config.host}]" if ":" in config.host else config.host
    return JudgeServer(
        base_url=f"http://{host}:{port}/v1",
        api_key=api_key,
        served_model_name=config.served_model_name,
        model_dir=model_dir,
        log_path=log_path,
        process=process,
    )


# --------------------------------------------------------------------------- stage


@contextlib.contextmanager
def run(
    config: ServeConfig, output_dir: Path, model_dir: Path | None = None
) -> Iterator[JudgeServer]:
    """Serve the judge for the duration of the `with` block (see the module docstring)."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    api_key = api_key_from_env(config)
    local, source = resolve_model(config, model_dir, output_dir)
    server = launch(config, local, output_dir / LOG_FILE, api_key)
    try:
        ready_s = wait_ready(server, config.startup_timeout_s)
        record: dict[str, Any] = {
            "base_url": server.base_url,
            "served_model_name": server.served_model_name,
            "model_dir": str(local),
            "source": source,
            "pid": server.process.pid,
            "ready_s": round(ready_s, 1),
            "log": str(server.log_path),
            "api_key_env": config.api_key_env,
        }
        (output_dir / RECORD_FILE).write_text(json.dumps(record, indent=2) + "\n")
        yield server
    finally:
        stop(server, config.shutdown_timeout_s)
