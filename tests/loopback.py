"""Real services on loopback for the tests: a free port, a process whose output goes to a log and
that is always stopped, waiting for an HTTP endpoint, and moto_server (S3 and the AWS APIs).

Shared by tests/test_ingest_remote.py (S3 and DVC remotes) and tests/prod/conftest.py (MLflow
server on PostgreSQL + S3, Terraform against the AWS API emulator). `pythonpath = ["tests"]` in
pyproject.toml makes it importable as `loopback`.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def process(cmd: list[str], log: Path, env: Mapping[str, str]) -> Iterator[subprocess.Popen]:
    """Run `cmd` with stdout and stderr to `log`; terminate it (then kill) on the way out."""
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=dict(env))
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_http(url: str, proc: subprocess.Popen, timeout: float, log: Path) -> None:
    """Wait until `url` answers; a clear error (log tail) if the process exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text()[-3000:]
            raise RuntimeError(f"{url}: process exited {proc.returncode}:\n{tail}")
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2):
            return
        time.sleep(0.2)
    raise TimeoutError(f"{url} not up after {timeout} s:\n{log.read_text()[-3000:]}")


@contextlib.contextmanager
def moto_server(log: Path, env: Mapping[str, str], timeout: float = 30) -> Iterator[str]:
    """A moto_server on a free loopback port (up in ~0.5 s idle); yields its URL."""
    port = free_port()
    cmd = [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)]
    with process(cmd, log, env) as proc:
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/moto-api/", proc, timeout, log)
        yield url
        assert proc.poll() is None, f"moto_server died:\n{log.read_text()[-3000:]}"


def sigkill_at_checkpoint(
    cmd: list[str], out: Path, min_step: int, env: Mapping[str, str], timeout: float = 240
) -> int:
    """Start a training command, SIGKILL it (no cleanup, no final save: a dead node) once a
    checkpoint of at least `min_step` is in `out`, and return the newest checkpoint's step."""
    import signal

    from unireward.training import latest_checkpoint

    def step() -> int | None:
        ckpt = latest_checkpoint(out)
        return None if ckpt is None else int(ckpt.name.split("-")[1])

    proc = subprocess.Popen(
        cmd, env=dict(env), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + timeout
    try:
        while (step() or 0) < min_step:
            assert proc.poll() is None, f"{cmd[3]} ended before it could be killed"
            assert time.monotonic() < deadline, "no checkpoint appeared in time"
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    killed_at = step()
    assert killed_at is not None
    return killed_at
