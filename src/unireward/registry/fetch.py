"""Fetch the checkpoint of a registry alias for serving: `UnifiedReward@champion` -> a directory.

    python -m unireward.registry.fetch --alias champion --dst /models/judge

The vLLM Deployment (infra/base/judge-serving.yaml) runs this in an init container on the CPU
image; vLLM then serves the directory. The tracking server comes from `--tracking-uri` or
`$MLFLOW_TRACKING_URI`. It refuses a checkpoint with pickle weights (safetensors only) and writes
`<dst>/unireward-source.json` (name, alias, version) so the serving pod says what it serves.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

from unireward.registry.register import CHAMPION, download_model


def fetch(tracking_uri: str, model_name: str, alias: str, dst: Path) -> Path:
    """Download `model_name@alias` into `dst` (replacing what was there); return `dst`."""
    from unireward.tracking import MlflowTracker

    staging = dst.with_name(dst.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    local = download_model(
        tracking_uri, model_name, alias, dst_path=staging, require_safetensors=True
    )
    version = MlflowTracker(tracking_uri, "unused").client.get_model_version_by_alias(
        model_name, alias
    )
    (local / "unireward-source.json").write_text(
        json.dumps({"model_name": model_name, "alias": alias, "version": version.version}) + "\n"
    )
    shutil.rmtree(dst, ignore_errors=True)
    # download_artifacts puts the files under staging/<artifact dir name>: move that into place.
    local.rename(dst)
    shutil.rmtree(staging, ignore_errors=True)
    return dst


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI"))
    parser.add_argument("--model-name", default="UnifiedReward")
    parser.add_argument("--alias", default=CHAMPION)
    parser.add_argument("--dst", type=Path, required=True)
    args = parser.parse_args(argv)
    if not args.tracking_uri:
        raise SystemExit("error: pass --tracking-uri or set MLFLOW_TRACKING_URI (MLflow server)")
    try:
        out = fetch(args.tracking_uri, args.model_name, args.alias, args.dst)
    except ValueError as err:
        raise SystemExit(f"error: {err}") from None
    print(out)


if __name__ == "__main__":
    main()
