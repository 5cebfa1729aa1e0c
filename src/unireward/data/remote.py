"""Remote sources for `ingest`: `s3://bucket/prefix` through boto3, DVC-tracked paths at a rev.

    unireward ingest     # with ingest.source "s3://bucket/prefix" or "dvc://path/in/repo"

Both download into a local staging directory that the local readers then read, so a remote
source normalises exactly like the same files on disk.

S3: the endpoint and credentials come from the standard AWS variables (`AWS_ENDPOINT_URL` or
`AWS_ENDPOINT_URL_S3`, `AWS_ACCESS_KEY_ID`, ...; boto3 reads them). Retries use botocore's
"standard" mode (exponential backoff with jitter, `max_attempts` tries); objects larger than
`MULTIPART_BYTES` are fetched in parallel ranged parts. An object key that would land outside
the staging directory (`..`, absolute) is refused: keys are data, not trusted paths. A
response that stalls for `read_timeout_s` is retried like a 5xx; an object whose downloaded size
differs from its listed size (a body cut short) is fetched again, and when the tries are spent
the error is `RemoteError`, naming the object and what failed.

DVC: `dvc://data/prefs` is `data/prefs` in the DVC repository `repo` (a local path or a Git URL)
at `rev` (a branch, tag or commit; None = the workspace), read with `dvc.api.DVCFileSystem`.
The lineage records the commit the rev resolved to.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

MULTIPART_BYTES = 8 * 1024 * 1024


class RemoteError(ConnectionError):
    """A remote source still failed after its retries (the message says which object, why)."""


def split_s3(location: str) -> tuple[str, str]:
    """("bucket", "prefix") of the part after `s3://`."""
    bucket, _, prefix = location.partition("/")
    if not bucket:
        raise ValueError(f"s3 source needs a bucket: s3://BUCKET/PREFIX, got s3://{location}")
    return bucket, prefix.strip("/")


def _safe_dest(dest: Path, rel: str, key: str) -> Path:
    norm = os.path.normpath(rel)
    if not rel or os.path.isabs(rel) or norm == ".." or norm.startswith("../"):
        raise ValueError(f"s3 object key {key!r} would be written outside the staging directory")
    return dest / norm


def download_s3(
    location: str, dest: Path, max_attempts: int = 5, read_timeout_s: float = 60.0
) -> dict[str, Any]:
    """Download every object under s3://`location` into `dest`; returns lineage facts.

    A prefix that names one object downloads that object; otherwise the prefix is a folder
    (`data` matches `data/...`, not `data2/...`). No object at all is an error.
    """
    import boto3
    from boto3.exceptions import Boto3Error
    from boto3.s3.transfer import TransferConfig
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, prefix = split_s3(location)

    client = boto3.client(
        "s3",
        config=Config(
            retries={"max_attempts": max_attempts, "mode": "standard"},
            read_timeout=read_timeout_s,
            connect_timeout=min(read_timeout_s, 60),
        ),
    )
    transfer = TransferConfig(
        multipart_threshold=MULTIPART_BYTES, multipart_chunksize=MULTIPART_BYTES, max_concurrency=4
    )
    listing = hashlib.sha256()
    n_objects = n_bytes = 0
    try:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                key = obj["Key"]
                if key == prefix:
                    rel = key.rsplit("/", 1)[-1]
                elif not prefix or key.startswith(prefix + "/"):
                    rel = key[len(prefix) :].lstrip("/")
                else:
                    continue
                if key.endswith("/"):  # a "folder" marker object
                    continue
                target = _safe_dest(dest, rel, key)
                target.parent.mkdir(parents=True, exist_ok=True)
                _download_whole(client, bucket, obj, target, transfer, max_attempts)
                listing.update(f"{key}\0{obj.get('ETag', '')}\0{obj['Size']}\n".encode())
                n_objects += 1
                n_bytes += obj["Size"]
    except (Boto3Error, BotoCoreError, ClientError) as err:
        raise RemoteError(
            f"s3://{location}: {type(err).__name__}: {err} (after {max_attempts} tries per "
            "request; ingest.s3_max_attempts, ingest.s3_read_timeout_s)"
        ) from err
    if n_objects == 0:
        raise FileNotFoundError(f"no objects under s3://{location} (check bucket and prefix)")
    return {"s3_objects": n_objects, "s3_bytes": n_bytes, "s3_listing_hash": listing.hexdigest()}


def _download_whole(client, bucket: str, obj: dict, target: Path, transfer, attempts: int) -> None:
    """Download one listed object; a file of another size than listed is fetched again."""
    for _ in range(attempts):
        client.download_file(bucket, obj["Key"], str(target), Config=transfer)
        got = target.stat().st_size
        if got == obj["Size"]:
            return
    raise RemoteError(
        f"s3://{bucket}/{obj['Key']}: downloaded {got} of {obj['Size']} bytes, {attempts} times "
        "(a body cut short)"
    )


def download_dvc(path: str, dest: Path, repo: str | None, rev: str | None) -> dict[str, Any]:
    """Fetch `path` of DVC repository `repo` at `rev` into `dest`; returns lineage facts."""
    from dvc.api import DVCFileSystem

    fs = DVCFileSystem(repo or ".", rev=rev)
    try:
        path = path.strip("/")
        if not fs.exists(path):
            raise FileNotFoundError(
                f"dvc://{path} not found in DVC repo {repo or '.'} at rev {rev or 'workspace'}"
            )
        if fs.isdir(path):
            fs.get(path, str(dest), recursive=True)
        else:
            dest.mkdir(parents=True, exist_ok=True)
            fs.get_file(path, str(dest / Path(path).name))
        resolved = fs.repo.scm.resolve_rev(rev) if rev is not None else None
    finally:
        fs.close()
    return {"dvc_repo": repo or ".", "dvc_rev_requested": rev, "dvc_rev_resolved": resolved}
