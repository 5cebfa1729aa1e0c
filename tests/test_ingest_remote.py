"""`ingest` from real remote stores on loopback: `s3://` through boto3 against a moto_server
process, and DVC: `dvc push` to that S3 server then `dvc pull` into a clean clone restores
byte-identical data, `dvc repro` rebuilds the dataset, and `dvc://path` ingests at a rev."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from loopback import BIN, moto_server
from unireward.data import ingest
from unireward.data.remote import download_s3
from unireward.data.schema import read_records

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[1]
PAIR = "<image><image>Caption: a red square"


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """A moto_server on a free loopback port, with the AWS variables pointing at it."""
    import boto3

    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    saved = {k: os.environ.get(k) for k in [*env, "AWS_ENDPOINT_URL"]}
    try:
        with moto_server(log, {**os.environ, **env}) as endpoint:
            os.environ.update({**env, "AWS_ENDPOINT_URL": endpoint})
            yield endpoint, boto3.client("s3")
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _png(rgb) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (16, 16), rgb).save(buf, format="PNG")
    return buf.getvalue()


def make_source(root: Path, n: int = 3) -> None:
    """A LLaVA-format source: n pairwise records over two images."""
    (root / "img").mkdir(parents=True, exist_ok=True)
    (root / "img" / "red.png").write_bytes(_png((255, 0, 0)))
    (root / "img" / "blue.png").write_bytes(_png((0, 0, 255)))
    rows = [
        {
            "id": f"r{i}",
            "images": ["img/red.png", "img/blue.png"],
            "conversations": [
                {"from": "human", "value": PAIR},
                {"from": "gpt", "value": f"Image {1 + i % 2} is better"},
            ],
        }
        for i in range(n)
    ]
    (root / "train.json").write_text(json.dumps(rows))


def _upload(client, bucket: str, root: Path, prefix: str) -> None:
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        client.upload_file(str(path), bucket, f"{prefix}/{path.relative_to(root).as_posix()}")


def _content(records) -> list[tuple]:
    return [(r.id, r.task, r.mode, r.prompt, r.media, r.label, r.split) for r in records]


def test_ingest_from_s3_matches_the_same_files_on_disk(s3, tmp_path):
    _, client = s3
    client.create_bucket(Bucket="prefs")
    src = tmp_path / "src"
    make_source(src)
    _upload(client, "prefs", src, "sets/v1")
    _upload(client, "prefs", src, "sets/v10")  # a sibling prefix that "sets/v1" must not match

    cfg = ingest.IngestConfig(source="s3://prefs/sets/v1", tracking_uri="null")
    remote = ingest.run(cfg, tmp_path / "from_s3")
    local = ingest.run(ingest.IngestConfig(source=str(src), tracking_uri="null"), tmp_path / "l")

    assert _content(read_records(remote.output_dir)) == _content(read_records(local.output_dir))
    assert {r.source for r in read_records(remote.output_dir)} == {"s3://prefs/sets/v1"}
    lineage = remote.lineage
    assert lineage["scheme"] == "s3" and lineage["source"] == "s3://prefs/sets/v1"
    assert lineage["s3_objects"] == 3 and lineage["rows_in"] == lineage["rows_out"] == 3
    media = {k: v for k, v in _tree(remote.output_dir).items() if k.startswith("img/")}
    assert media == {k: v for k, v in _tree(local.output_dir).items() if k.startswith("img/")}
    assert len(media) == 2


def test_s3_download_multipart_object_and_refuses_keys_out_of_staging(s3, tmp_path):
    _, client = s3
    client.create_bucket(Bucket="big")
    blob = os.urandom(9 * 1024 * 1024 + 123)  # past the 8 MiB multipart threshold
    client.put_object(Bucket="big", Key="d/blob.bin", Body=blob)
    facts = download_s3("big/d", tmp_path / "stage")
    assert (tmp_path / "stage" / "blob.bin").read_bytes() == blob
    assert facts["s3_objects"] == 1 and facts["s3_bytes"] == len(blob)

    client.put_object(Bucket="big", Key="e/../../evil.json", Body=b"[]")
    with pytest.raises(ValueError, match="outside the staging directory"):
        download_s3("big/e", tmp_path / "stage2")
    assert not (tmp_path / "evil.json").exists()
    with pytest.raises(FileNotFoundError, match="no objects under s3://big/nothing"):
        download_s3("big/nothing", tmp_path / "stage3")


# --------------------------------------------------------------------------- S3 under faults
# A real HTTP proxy on loopback (loopback.FaultProxy) between boto3 and moto_server injects the
# faults into the object downloads (issue 21, item 1).

RECOVERABLE = {
    "503 burst": ["503", "503", "503"],
    "slow past the read timeout": ["slow", "slow"],
    "reset mid-body": ["reset", "reset"],
    "body cut short": ["truncate", "truncate"],
    "mixed": ["503", "reset", "truncate", "slow"],
}


@pytest.fixture(scope="module")
def faulty_bucket(s3, tmp_path_factory):
    """Bucket `faults` with a LLaVA source under `faults/set`, and the same source ingested
    without a proxy: what every faulty ingest must equal byte for byte."""
    _, client = s3
    client.create_bucket(Bucket="faults")
    src = tmp_path_factory.mktemp("faulty-src")
    make_source(src)
    _upload(client, "faults", src, "set")
    cfg = ingest.IngestConfig(source="s3://faults/set", tracking_uri="null")
    return ingest.run(cfg, tmp_path_factory.mktemp("clean") / "out")


def _faulty_ingest(s3, faults, out: Path, monkeypatch, attempts: int = 5):
    from loopback import FaultProxy

    endpoint, _ = s3
    cfg = ingest.IngestConfig(
        source="s3://faults/set",
        tracking_uri="null",
        s3_max_attempts=attempts,
        s3_read_timeout_s=1.0,
    )
    proxy = FaultProxy(endpoint, faults, match="/faults/set/", slow_s=2.5)
    with proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        try:
            return ingest.run(cfg, out), proxy
        except Exception as err:
            err.proxy = proxy
            raise


@pytest.mark.parametrize("faults", RECOVERABLE.values(), ids=RECOVERABLE.keys())
def test_s3_ingest_through_faults_is_byte_identical(
    s3, faulty_bucket, faults, tmp_path, monkeypatch
):
    result, proxy = _faulty_ingest(s3, list(faults), tmp_path / "out", monkeypatch)
    assert proxy.injected() == len(faults)  # every fault was served to the client
    assert _tree(result.output_dir) == _tree(faulty_bucket.output_dir)
    assert result.lineage == faulty_bucket.lineage
    assert not (tmp_path / ".out.partial").exists()


@pytest.mark.parametrize("fault", ["503", "truncate", "reset"])
def test_s3_ingest_that_cannot_finish_fails_clearly_and_leaves_the_last_dataset(
    s3, faulty_bucket, fault, tmp_path, monkeypatch
):
    """Every try fails: a `RemoteError` naming the source, no partial output, and an earlier
    ingest in the output directory still whole (it is replaced only by a complete one)."""
    from unireward.data.remote import RemoteError

    out = tmp_path / "out"
    shutil.copytree(faulty_bucket.output_dir, out)
    before = _tree(out)
    with pytest.raises(RemoteError, match="s3://faults/set") as failed:
        _faulty_ingest(s3, [fault] * 100, out, monkeypatch, attempts=3)
    assert failed.value.proxy.injected() >= 3
    assert _tree(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no staging left behind


def test_ingest_cli_reports_a_remote_that_gives_up_in_one_line(s3, faulty_bucket, tmp_path):
    from loopback import FaultProxy

    endpoint, _ = s3
    params = tmp_path / "params.yaml"
    params.write_text(
        json.dumps({"ingest": {"tracking_uri": "null", "s3_max_attempts": 2}, "profiles": {}})
    )
    with FaultProxy(endpoint, ["503"] * 100, match="/faults/set/") as proxy:
        done = subprocess.run(
            [
                str(BIN / "unireward"),
                "ingest",
                "--source",
                "s3://faults/set",
                "--output-dir",
                str(tmp_path / "out"),
                "--params",
                str(params),
            ],
            env={**os.environ, "AWS_ENDPOINT_URL": proxy.url, "MLFLOW_TRACKING_URI": "null"},
            capture_output=True,
            text=True,
            timeout=300,
            cwd=tmp_path,
        )
    assert done.returncode == 1, done.stderr[-2000:]
    assert "ingest failed: s3://faults/set" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- DVC


def _run(cmd: list[str], cwd: Path) -> str:
    env = {
        **os.environ,
        "DVC_NO_ANALYTICS": "1",
        "PATH": f"{BIN}:{os.environ['PATH']}",
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode:
        raise AssertionError(
            f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        )
    return proc.stdout


def _dvc(*args: str, cwd: Path) -> str:
    """The `dvc` command line, run in this process (each `dvc` process would spend seconds
    importing DVC); its output is captured from the logging DVC prints through."""
    import contextlib
    import io

    from dvc.cli import main

    out = io.StringIO()
    here, path = Path.cwd(), os.environ["PATH"]
    os.chdir(cwd)
    os.environ["PATH"] = f"{BIN}:{path}"  # stage commands run `unireward` from this venv
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            code = main(list(args))
    finally:
        os.chdir(here)
        os.environ["PATH"] = path
    if code:
        raise AssertionError(f"dvc {' '.join(args)} failed ({code}):\n{out.getvalue()}")
    return out.getvalue()


def _git(*args: str, cwd: Path) -> str:
    return _run(["git", *args], cwd)


def _tree(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def dvc_repo(s3, tmp_path_factory):
    """A git + DVC repo whose data/prefs has two revs (v1: 3 records, v2: 5); v2 pushed to S3."""
    endpoint, client = s3
    client.create_bucket(Bucket="dvc-store")
    repo = tmp_path_factory.mktemp("dvcrepo") / "repo"
    repo.mkdir()
    _git("init", "-q", "-b", "main", cwd=repo)
    _dvc("init", "-q", cwd=repo)
    _dvc("remote", "add", "-d", "store", "s3://dvc-store/cache", cwd=repo)
    _dvc("remote", "modify", "store", "endpointurl", endpoint, cwd=repo)
    for tag, n in (("v1", 3), ("v2", 5)):
        make_source(repo / "data" / "prefs", n)
        _dvc("add", "-q", "data/prefs", cwd=repo)
        _git("add", "-A", cwd=repo)
        _git("commit", "-q", "-m", tag, cwd=repo)
        _git("tag", tag, cwd=repo)
    _dvc("push", "-q", cwd=repo)  # the workspace (v2); v1 stays in the repo's own cache
    return repo


def test_dvc_push_then_pull_into_a_clean_clone_is_byte_identical(dvc_repo, tmp_path):
    clone = tmp_path / "clone"
    _git("clone", "-q", str(dvc_repo), str(clone), cwd=tmp_path)
    assert not (clone / "data" / "prefs").exists()  # only the .dvc pointer travels with git
    _dvc("pull", "-q", cwd=clone)
    assert _tree(clone / "data" / "prefs") == _tree(dvc_repo / "data" / "prefs")
    assert len(json.loads((clone / "data" / "prefs" / "train.json").read_text())) == 5


@pytest.mark.parametrize("rev,n", [("v1", 3), ("v2", 5)])
def test_ingest_dvc_path_at_a_rev(dvc_repo, tmp_path, rev, n):
    cfg = ingest.IngestConfig(
        source="dvc://data/prefs", dvc_repo=str(dvc_repo), dvc_rev=rev, tracking_uri="null"
    )
    result = ingest.run(cfg, tmp_path / "out")
    commit = _git("rev-parse", f"{rev}^{{commit}}", cwd=dvc_repo).strip()
    assert result.n_records == n
    assert result.lineage["dvc_rev"] == commit
    assert result.lineage["dvc_rev_requested"] == rev
    assert [r.id for r in read_records(result.output_dir)] == [f"r{i}" for i in range(n)]


def test_dvc_repro_rebuilds_the_dataset_and_push_pull_moves_it(s3, tmp_path):
    """The project's own dvc.yaml data stages (ingest, validate) in a fresh repo."""
    import yaml

    endpoint, client = s3
    client.create_bucket(Bucket="dvc-repro")
    repo = tmp_path / "repo"
    shutil.copytree(ROOT / "src" / "unireward" / "data", repo / "src" / "unireward" / "data")
    project = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    stages = {k: project["stages"][k] for k in ("ingest", "validate")}
    (repo / "dvc.yaml").write_text(yaml.safe_dump({"vars": project["vars"], "stages": stages}))
    tiny = {"seed": 0, "frames": 4, "train_per_task_mode": 2, "eval_per_task_mode": 1}
    params = {
        "ingest": {"source": "shapes://", "shapes": tiny, "tracking_uri": "null"},
        "validate": {"max_bad_fraction": 0.0},
        "profiles": {"quick": {}},
    }
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    _git("init", "-q", "-b", "main", cwd=repo)
    _dvc("init", "-q", cwd=repo)
    _dvc("remote", "add", "-d", "store", "s3://dvc-repro/cache", cwd=repo)
    _dvc("remote", "modify", "store", "endpointurl", endpoint, cwd=repo)
    _dvc("repro", "-q", "validate", cwd=repo)
    assert (repo / "runs" / "validate" / "records.parquet").is_file()
    assert "up to date" in _dvc("status", cwd=repo)
    _git("add", "-A", cwd=repo)
    _git("commit", "-q", "-m", "data", cwd=repo)
    _dvc("push", "-q", cwd=repo)

    clone = tmp_path / "clone"
    _git("clone", "-q", str(repo), str(clone), cwd=tmp_path)
    _dvc("pull", "-q", cwd=clone)
    for out in ("runs/ingest", "runs/validate"):
        assert _tree(clone / out) == _tree(repo / out)
    assert "up to date" in _dvc("status", cwd=clone)  # pulled outputs match dvc.lock


def _clone_through(dvc_repo: Path, tmp_path: Path, proxy_url: str) -> Path:
    """A clean git clone of `dvc_repo` whose DVC remote is reached through `proxy_url`."""
    clone = tmp_path / "clone"
    _git("clone", "-q", str(dvc_repo), str(clone), cwd=tmp_path)
    _dvc("remote", "modify", "--local", "store", "endpointurl", proxy_url, cwd=clone)
    _dvc("remote", "modify", "--local", "store", "read_timeout", "2", cwd=clone)
    return clone


@pytest.mark.parametrize(
    "faults",
    [["503", "503", "503"], ["slow", "reset"], ["truncate", "503", "reset"]],
    ids=["503 burst", "slow and reset", "mixed"],
)
def test_dvc_pull_through_faults_is_byte_identical(dvc_repo, s3, tmp_path, faults):
    """`dvc pull` from the S3 remote through the fault proxy (object downloads only): the
    client's retries carry it through, and the pulled data equals the pushed data."""
    from loopback import FaultProxy

    endpoint, _ = s3
    with FaultProxy(endpoint, list(faults), match="GET /dvc-store/cache/files/", slow_s=3) as proxy:
        clone = _clone_through(dvc_repo, tmp_path, proxy.url)
        _dvc("pull", "-q", cwd=clone)
    assert proxy.injected() == len(faults)
    assert _tree(clone / "data" / "prefs") == _tree(dvc_repo / "data" / "prefs")
    assert "up to date" in _dvc("status", cwd=clone)


def test_dvc_pull_that_cannot_finish_fails_and_leaves_no_complete_looking_data(
    dvc_repo, s3, tmp_path, caplog, monkeypatch
):
    """Every object download fails (503 on every try): `dvc pull` exits non-zero naming what
    it could not fetch, the workspace holds no half-pulled copy that DVC calls up to date, and
    the same pull without the faults then completes."""
    from dvc.cli import main

    from loopback import FaultProxy

    endpoint, _ = s3
    # Fewer botocore tries than its default, so the test gives up in seconds, not minutes
    # (s3fs still retries each call 5 times on top).
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    with FaultProxy(endpoint, ["503"] * 500, match="GET /dvc-store/cache/files/") as proxy:
        clone = _clone_through(dvc_repo, tmp_path, proxy.url)
        with pytest.raises(AssertionError, match=r"failed \(\d+\)") as failed:
            _dvc("pull", cwd=clone)
    assert proxy.injected() >= 2 and "failed (255)" in str(failed.value)
    # DVC logs why: the S3 error and botocore's retries (measured: "An error occurred
    # (SlowDown) when calling the GetObject operation (reached max retries: 1)").
    assert "SlowDown" in caplog.text and "max retries" in caplog.text, caplog.text[-2000:]
    data = clone / "data" / "prefs"
    assert not data.exists() or _tree(data) != _tree(dvc_repo / "data" / "prefs")
    here = Path.cwd()
    os.chdir(clone)
    try:
        assert main(["status", "-q"]) != 0, "DVC reports the data as missing or changed"
    finally:
        os.chdir(here)
    _dvc("remote", "modify", "--local", "store", "endpointurl", endpoint, cwd=clone)
    _dvc("pull", "-q", cwd=clone)
    assert _tree(data) == _tree(dvc_repo / "data" / "prefs")
