#!/usr/bin/env bash
# Build the local Debian base image for `make images` (public registries are not reachable
# here, the Debian mirror is): debootstrap a minimal bookworm with Python 3.11 and import it
# into podman as IMAGE. Needs root (debootstrap chroots).
#
#   bash containers/base/debootstrap.sh localhost/unireward/debian-base:bookworm
#
# Idempotent: does nothing when IMAGE already exists (delete it with `podman rmi` to rebuild).
set -euo pipefail
IMAGE=${1:-localhost/unireward/debian-base:bookworm}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SUITE=${DEBIAN_SUITE:-bookworm}

if podman image exists "$IMAGE"; then
  echo "base image $IMAGE exists"
  exit 0
fi
command -v debootstrap >/dev/null || { echo "error: debootstrap not found (apt-get install debootstrap)"; exit 1; }
ROOTFS=$(mktemp -d /var/tmp/unireward-rootfs.XXXXXX)
trap 'rm -rf "$ROOTFS"' EXIT
# python3-venv: the images install the project into /opt/venv (Debian's python is
# externally managed, PEP 668); ca-certificates: pip over https.
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
  "$SUITE" "$ROOTFS" "$MIRROR"
rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/*
tar --numeric-owner -C "$ROOTFS" -c . | podman import \
  --change 'ENV LANG=C.UTF-8' --change 'CMD ["/bin/bash"]' - "$IMAGE"
echo "imported $IMAGE"
