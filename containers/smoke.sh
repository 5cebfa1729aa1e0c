#!/usr/bin/env bash
# Smoke test of the CPU image: the CLI answers, and the `validate` stage checks a small dataset
# that `ingest` generates inside the container, as the image's non-root user.
#
#   bash containers/smoke.sh localhost/unireward/cpu:latest
#
# Runs with `buildah run --isolation chroot` rather than `podman run`: this machine is itself a
# container without CAP_SYS_RESOURCE, and crun (podman's runtime) fails setting the container's
# rlimits ("setrlimit RLIMIT_NOFILE: Operation not permitted"). chroot isolation shares the
# host's network; the stages make no network calls (HF_HUB_OFFLINE, tracking "null").
set -euo pipefail
IMAGE=${1:?usage: smoke.sh IMAGE}
container=$(buildah from --pull-never "$IMAGE")
trap 'buildah rm "$container" >/dev/null' EXIT
run=(buildah run --isolation chroot "$container" --)

"${run[@]}" unireward --help >/dev/null
# The same image runs the MLflow server (infra/base/mlflow.yaml): its drivers must import.
"${run[@]}" python -c "import psycopg2, boto3, mlflow.server, kfp.dsl.executor_main"
"${run[@]}" bash -c '
  set -euo pipefail
  test "$(id -u)" != 0 || { echo "error: the image runs as root"; exit 1; }
  cd "$HOME"
  cat > smoke.yaml <<YAML
ingest:
  source: "shapes://"
  tracking_uri: "null"
  shapes: {seed: 1, frames: 4, train_per_task_mode: 3, eval_per_task_mode: 2}
validate:
  max_bad_fraction: 0.01
profiles: {quick: {}}
YAML
  unireward ingest --params smoke.yaml --output runs/ingest
  unireward validate --params smoke.yaml --dataset runs/ingest --output runs/validate
  test -s runs/validate/validation.json
  cat runs/validate/validation.json'
echo "smoke test passed: $IMAGE (unireward --help, ingest -> validate as uid $("${run[@]}" id -u))"
