"""Real production-plane services on loopback, started once per session and torn down after:
PostgreSQL 15 (initdb -A trust, pg_ctl), moto_server as the S3 endpoint and `mlflow server` with
the PostgreSQL backend store and proxied S3 artifacts (what infra/base/mlflow.yaml deploys).

    .venv/bin/pytest tests/prod -q

PostgreSQL refuses to run as root (CI runs as root): then initdb/pg_ctl run as the `postgres`
(or `nobody`) user through `runuser`, in a temporary directory owned by that user.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from loopback import BIN, free_port, moto_server, process, wait_http

BUCKET = "unireward-artifacts"
S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",  # moto accepts any key; nothing here is a real secret
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


_TIMINGS: dict[str, float] = {}


def pytest_terminal_summary(terminalreporter) -> None:
    """The figure ENVIRONMENT.md quotes (7-14 s on 2 cores), measured on this run."""
    for what, seconds in _TIMINGS.items():
        terminalreporter.write_line(f"{what} {seconds:.1f} s")


@dataclass(frozen=True)
class MlflowServer:
    tracking_uri: str
    s3_endpoint: str
    bucket: str
    postgres_dsn: str
    seconds_to_ready: float  # mlflow server start until /health answers


def _pg_user() -> list[str]:
    """Command prefix that runs PostgreSQL tools as a non-root user ([] when not root)."""
    if os.geteuid() != 0:
        return []
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return ["runuser", "-u", name, "--"]
    pytest.skip("running as root with neither a postgres nor a nobody user for PostgreSQL")
    return []


def _pg_tool(name: str) -> str:
    found = shutil.which(name) or next(
        iter(sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))), None
    )
    if not found:
        pytest.skip(f"PostgreSQL's {name} not found (install postgresql-15)")
    return str(found)


@contextlib.contextmanager
def postgres(root: Path) -> Iterator[str]:
    """A throwaway PostgreSQL cluster on a free loopback port; yields the SQLAlchemy URL."""
    as_user = _pg_user()
    if as_user:
        entry = pwd.getpwnam(as_user[2])
        os.chown(root, entry.pw_uid, entry.pw_gid)
    data, port = root / "data", free_port()
    run = lambda *cmd: subprocess.run([*as_user, *cmd], check=True, capture_output=True)  # noqa: E731
    run(_pg_tool("initdb"), "-A", "trust", "-U", "mlflow", "-D", str(data))
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {root}"
    log = str(root / "pg.log")
    run(_pg_tool("pg_ctl"), "-D", str(data), "-l", log, "-o", options, "-w", "start")
    try:
        run(_pg_tool("createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "mlflow", "mlflow")
        yield f"postgresql+psycopg2://mlflow@127.0.0.1:{port}/mlflow"
    finally:
        run(_pg_tool("pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")


@pytest.fixture
def aws_api(tmp_path: Path) -> Iterator[str]:
    """A fresh moto_server on a free port standing in for the AWS APIs; yields its URL.

    AWS-managed IAM policies (AmazonEKSClusterPolicy, ...) exist only when moto is asked to load
    them (MOTO_IAM_LOAD_MANAGED_POLICIES), as infra/terraform attaches them.
    """
    env = {**os.environ, **S3_ENV, "MOTO_IAM_LOAD_MANAGED_POLICIES": "true"}
    with moto_server(tmp_path / "moto.log", env) as url:
        yield url


@pytest.fixture(scope="session")
def s3_env() -> dict[str, str]:
    return dict(S3_ENV)


@contextlib.contextmanager
def mlflow_process(
    dsn: str, s3: str, port: int, log: Path, env: dict[str, str]
) -> Iterator[subprocess.Popen]:
    """`mlflow server` on PostgreSQL `dsn` with artifacts in the bucket at `s3`, on `port`;
    returns once /health answers. Stopped on the way out (a test may stop and start it again)."""
    cmd = [
        str(BIN / "mlflow"),
        "server",
        "--backend-store-uri",
        dsn,
        "--artifacts-destination",
        f"s3://{BUCKET}/mlartifacts",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    with process(cmd, log, {**env, "MLFLOW_S3_ENDPOINT_URL": s3}) as server:
        wait_http(f"http://127.0.0.1:{port}/health", server, 120, log)
        yield server


@pytest.fixture(scope="session")
def mlflow_server(s3_env: dict[str, str]) -> Iterator[MlflowServer]:
    import boto3

    root = Path(tempfile.mkdtemp(prefix="unireward-prod-"))
    env = {**os.environ, **s3_env, "MLFLOW_DISABLE_TELEMETRY": "true"}
    env.pop("MLFLOW_TRACKING_URI", None)
    try:
        with contextlib.ExitStack() as stack:
            dsn = stack.enter_context(postgres(root))
            s3 = stack.enter_context(moto_server(root / "moto.log", env))
            boto3.client("s3", endpoint_url=s3, **_boto_kwargs(s3_env)).create_bucket(Bucket=BUCKET)

            port = free_port()
            start = time.monotonic()
            stack.enter_context(mlflow_process(dsn, s3, port, root / "mlflow.log", env))
            uri = f"http://127.0.0.1:{port}"
            ready = time.monotonic() - start
            _TIMINGS["mlflow server (PostgreSQL + S3) ready in"] = ready
            yield MlflowServer(uri, s3, BUCKET, dsn, ready)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _boto_kwargs(s3_env: dict[str, str]) -> dict[str, str]:
    return {
        "aws_access_key_id": s3_env["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": s3_env["AWS_SECRET_ACCESS_KEY"],
        "region_name": s3_env["AWS_DEFAULT_REGION"],
    }


@pytest.fixture(scope="session")
def s3_client(mlflow_server: MlflowServer, s3_env: dict[str, str]):
    import boto3

    return boto3.client("s3", endpoint_url=mlflow_server.s3_endpoint, **_boto_kwargs(s3_env))


@pytest.fixture
def mlflow_launcher(mlflow_server: MlflowServer, s3_env: dict[str, str]):
    """`launch(port, log)`: another `mlflow server` on the session's PostgreSQL and bucket, as a
    context manager yielding its process, for tests that kill and restart a server."""
    env = {**os.environ, **s3_env, "MLFLOW_DISABLE_TELEMETRY": "true"}
    env.pop("MLFLOW_TRACKING_URI", None)

    def launch(port: int, log: Path):
        return mlflow_process(mlflow_server.postgres_dsn, mlflow_server.s3_endpoint, port, log, env)

    return launch
