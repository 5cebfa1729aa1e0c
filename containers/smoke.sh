#!/usr/bin/env bash
# Smoke test of the CPU image: the CLI answers, and the `validate` stage checks a small dataset
# that `ingest` generates inside the container, as the non-root user, with no network.
#
#   bash containers/smoke.sh localhost/unireward/cpu:latest
#
# Running a container here needs a private mount namespace (unshare -m) and no cgroups
# (--cgroups=disabled): this machine is itself a container without a systemd cgroup manager.
set -euo pipefail
IMAGE=${1:?usage: smoke.sh IMAGE}
run=(podman run --rm --cgroups=disabled --network=none --pull=never)
if [ "$(id -u)" = 0 ]; then run=(unshare -m "${run[@]}"); fi

"${run[@]}" "$IMAGE" unireward --help >/dev/null
"${run[@]}" "$IMAGE" bash -c '
  set -euo pipefail
  test "$(id -u)" != 0 || { echo "error: the image runs as root"; exit 1; }
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
echo "smoke test passed: $IMAGE (unireward --help, ingest -> validate, uid $("${run[@]}" "$IMAGE" id -u))"
