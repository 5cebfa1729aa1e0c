"""Write infra/overlays/aws/cluster.env from `terraform output -json` (what `make infra-aws-env`
runs), so the aws overlay names this account's images, bucket and IRSA roles without hand edits.

    terraform -chdir=infra/terraform output -json | python infra/cluster_env.py --tag <commit>
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

DEFAULT_OUT = Path(__file__).resolve().parent / "overlays" / "aws" / "cluster.env"
HEADER = (
    "# Values of one AWS deployment, from `terraform output` (make infra-aws-env rewrites\n"
    "# this file from infra/terraform). No secrets here: only names and ARNs.\n"
)


def cluster_env(outputs: dict, tag: str) -> str:
    """cluster.env text from terraform's `output -json` mapping (name -> {"value": ...})."""
    try:
        value = {name: item["value"] for name, item in outputs.items()}
        repos = value["ecr_repositories"]
        lines = {
            "CPU_IMAGE": f"{repos['cpu']}:{tag}",
            "SERVE_IMAGE": f"{repos['serve']}:{tag}",
            "ARTIFACTS_DESTINATION": f"s3://{value['artifacts_bucket']}/mlartifacts",
            "MLFLOW_ROLE_ARN": value["mlflow_role_arn"],
            "PIPELINE_ROLE_ARN": value["pipeline_role_arn"],
        }
    except (KeyError, TypeError) as err:
        raise ValueError(
            f"terraform outputs lack {err}; run `terraform apply` in infra/terraform first"
        ) from None
    return HEADER + "".join(f"{k}={v}\n" for k, v in lines.items())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tag", required=True, help="image tag (make images: the commit)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    try:
        text = cluster_env(json.load(sys.stdin), args.tag)
    except ValueError as err:
        raise SystemExit(f"error: {err}") from None
    args.output.write_text(text)
    print(args.output)


if __name__ == "__main__":
    main()
