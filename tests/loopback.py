"""Real services on loopback for the tests: a free port, a process whose output goes to a log and
that is always stopped, waiting for an HTTP endpoint, and moto_server (S3 and the AWS APIs); the
command line of a `unireward` stage, and such a process SIGKILLed at a checkpoint.

Shared by tests/test_ingest_remote.py (S3 and DVC remotes) and tests/prod/conftest.py (MLflow
server on PostgreSQL + S3, Terraform against the AWS API emulator). `pythonpath = ["tests"]` in
pyproject.toml makes it importable as `loopback`.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import warnings
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


def unireward_cmd(stage: str, *args: str | Path) -> list[str]:
    """`python -m unireward.cli <stage> <args>` with this interpreter: a stage as a process."""
    return [sys.executable, "-m", "unireward.cli", stage, *map(str, args)]


def sigkill_at_checkpoint(
    cmd: list[str],
    out: Path,
    min_step: int,
    env: Mapping[str, str],
    timeout: float = 240,
    latest_checkpoint=None,
) -> int:
    """Start a training command, SIGKILL it (no cleanup, no final save: a dead node) once a
    checkpoint of at least `min_step` is in `out`, and return the newest checkpoint's step.
    `latest_checkpoint(out)` finds it (default: the Trainer stages', `training`'s)."""
    import signal

    if latest_checkpoint is None:
        from unireward.training import latest_checkpoint

    def step() -> int | None:
        with warnings.catch_warnings():  # polled while a save is under way
            warnings.simplefilter("ignore")
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


# --------------------------------------------------------------------------- fault proxy


class FaultProxy:
    """A real HTTP proxy on loopback in front of `upstream` (e.g. moto_server) that injects
    faults into the responses, one per request in the order of `faults`, then passes traffic:
      "503"      a 503 SlowDown error response (the request never reaches the server);
      "slow"     the response is held `slow_s` seconds (past the client's read timeout);
      "reset"    half the response, then a TCP reset;
      "truncate" the headers and half the body, then a clean close (a short body);
      "pass"     the response as the server sent it.
    Only requests whose request line contains `match` take a fault (the rest pass, uncounted).
    One request per connection (`Connection: close` upstream and downstream). `log` holds
    (fault, request line) of every request."""

    def __init__(self, upstream: str, faults: list[str], match: str = "", slow_s: float = 3.0):
        import socketserver
        import threading

        self.upstream = urllib.parse.urlsplit(upstream)
        self.faults, self.match, self.slow_s = list(faults), match, slow_s
        self.log: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                proxy._handle(self.request)

        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def injected(self) -> int:
        return sum(1 for fault, _ in self.log if fault != "pass")

    def _next(self, line: str) -> str:
        with self._lock:
            fault = self.faults.pop(0) if self.match in line and self.faults else "pass"
            self.log.append((fault, line))
            return fault

    def _handle(self, conn: socket.socket) -> None:
        head, body = _read_message(conn)
        if head is None:
            return
        lines = head.split(b"\r\n")
        fault = self._next(lines[0].decode("latin-1"))
        if fault == "503":
            msg = b"<Error><Code>SlowDown</Code><Message>injected</Message></Error>"
            conn.sendall(
                b"HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\n"
                b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(msg), msg)
            )
            return
        headers = [h for h in lines[1:] if not h.lower().startswith(b"connection:")]
        request = b"\r\n".join([lines[0], *headers, b"Connection: close"]) + b"\r\n\r\n" + body
        with socket.create_connection((self.upstream.hostname, self.upstream.port)) as up:
            up.sendall(request)
            response = b""
            while chunk := up.recv(1 << 16):
                response += chunk
        if fault == "slow":
            time.sleep(self.slow_s)
        cut = response.find(b"\r\n\r\n") + 4
        cut += max(1, (len(response) - cut) // 2)
        if fault == "reset":
            conn.sendall(response[:cut])
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        elif fault == "truncate":
            conn.sendall(response[:cut])
            conn.shutdown(socket.SHUT_WR)
        else:
            with contextlib.suppress(OSError):  # the client gave up waiting ("slow")
                conn.sendall(response)


def _read_message(conn: socket.socket) -> tuple[bytes | None, bytes]:
    """The head and the Content-Length body of one HTTP request from `conn`."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(1 << 16)
        if not chunk:
            return None, b""
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = conn.recv(1 << 16)
        if not chunk:
            break
        body += chunk
    return head, body
