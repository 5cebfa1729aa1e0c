#!/usr/bin/env bash
# `make images`: build the CPU component image with podman from a local Debian base (made with
# debootstrap: public registries are not reachable here), then smoke-test it: `unireward --help`
# and the `validate` stage on a dataset that `ingest` makes inside the container.
#
#   bash containers/build.sh                # what `make images` runs; needs root (debootstrap)
#
# The build context is `git archive HEAD` (pyproject.toml, requirements.lock, README.md, src/):
# the image holds the project at exactly that commit (tagged with it), never uncommitted edits.
# WHEELS_DIR (default /opt/wheels when present) is mounted into the build for the local CPU torch
# wheel; elsewhere pass PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu instead.
set -euo pipefail
cd "$(dirname "$0")/.."

BASE_IMAGE=${BASE_IMAGE:-localhost/unireward/debian-base:bookworm}
IMAGE=${IMAGE:-localhost/unireward/cpu}
WHEELS_DIR=${WHEELS_DIR:-$( [ -d /opt/wheels ] && echo /opt/wheels || true )}
PIP_EXTRA_INDEX_URL=${PIP_EXTRA_INDEX_URL:-}
# pip inside the build must trust what the host trusts (HTTPS may be intercepted here).
CA_BUNDLE=${CA_BUNDLE:-$( [ -f /etc/ssl/certs/ca-certificates.crt ] && echo /etc/ssl/certs/ca-certificates.crt || true )}
REF=$(git rev-parse --short=12 HEAD)
if [ -n "$(git status --porcelain -- src pyproject.toml requirements.lock)" ]; then
  echo "warning: uncommitted changes under src/ or in the lock are NOT in the image (commit $REF)"
fi

# Tools: Debian packages (none is on the machine image); installed here when root with apt.
missing=$(for t in podman buildah debootstrap; do command -v "$t" >/dev/null || echo "$t"; done)
if [ -n "$missing" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $missing
  else
    echo "error: missing $missing (apt-get install podman buildah debootstrap, as root)"; exit 1
  fi
fi

case "$BASE_IMAGE" in
  localhost/unireward/debian-base:*) bash containers/base/debootstrap.sh "$BASE_IMAGE" ;;
esac

CONTEXT=$(mktemp -d /var/tmp/unireward-context.XXXXXX)
trap 'rm -rf "$CONTEXT"' EXIT
git archive --format=tar HEAD pyproject.toml requirements.lock README.md src | tar -x -C "$CONTEXT"

build_args=(--build-arg "BASE_IMAGE=$BASE_IMAGE" --build-arg "VCS_REF=$REF"
            --build-arg "PIP_EXTRA_INDEX_URL=$PIP_EXTRA_INDEX_URL")
if [ -n "$WHEELS_DIR" ]; then
  build_args+=(--volume "$WHEELS_DIR:/wheels:ro" --build-arg "PIP_FIND_LINKS=/wheels")
fi
if [ -n "$CA_BUNDLE" ]; then
  build_args+=(--volume "$CA_BUNDLE:/run/host-ca.crt:ro" --build-arg "PIP_CERT=/run/host-ca.crt")
fi
start=$(date +%s)
# --format docker: the OCI format drops SHELL (pipefail).
podman build --format docker --isolation chroot --pull=never -f containers/Dockerfile.cpu "${build_args[@]}" \
  -t "$IMAGE:$REF" -t "$IMAGE:latest" "$CONTEXT"
seconds=$(( $(date +%s) - start ))
size=$(podman image inspect --format '{{.Size}}' "$IMAGE:$REF")
echo "built $IMAGE:$REF in ${seconds} s, $(( size / 1000000 )) MB"

bash containers/smoke.sh "$IMAGE:$REF"
