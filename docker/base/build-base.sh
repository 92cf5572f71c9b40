#!/usr/bin/env bash
# Builds `penguin-base:bookworm`, the local base image of the test-only
# images (the GitHub stand-in needs `git http-backend`). Nothing can be pulled
# here, so the image is made from Debian's packages: `debootstrap
# --variant=minbase` into a folder, then `docker import`. Idempotent: does
# nothing when the image exists (pass --force to rebuild).
set -euo pipefail
image="${PENGUIN_BASE_IMAGE:-penguin-base:bookworm}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

if [ "${1:-}" != "--force" ] && docker image inspect "$image" >/dev/null 2>&1; then
  echo "$image exists"
  exit 0
fi
if ! command -v debootstrap >/dev/null; then
  echo "installing debootstrap"
  (apt-get update -q && apt-get install -y -q debootstrap) >/dev/null
fi
root="$(mktemp -d)"
trap 'rm -rf "$root"' EXIT
echo "debootstrap bookworm into $root (a few minutes)"
debootstrap --variant=minbase \
  --include=git,ca-certificates,openssl \
  bookworm "$root" "$mirror" >/dev/null
# Slim it: no package lists, caches, docs or man pages in the image.
chroot "$root" apt-get clean
rm -rf "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* "$root"/usr/share/man/* \
  "$root"/usr/share/locale/* "$root"/var/cache/debconf/*-old
chroot "$root" groupadd --gid 10001 penguinuser
chroot "$root" useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
  --shell /usr/sbin/nologin penguinuser
tar -C "$root" -c . | docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["/bin/bash"]' \
  - "$image" >/dev/null
echo "built $image ($(docker image inspect -f '{{.Size}}' "$image" | awk '{printf "%.0f MB", $1/1e6}'))"
