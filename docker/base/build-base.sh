#!/usr/bin/env bash
# Builds the pod's two local Debian bases from one debootstrap (nothing can be
# pulled here, so they are made from Debian's packages: `debootstrap
# --variant=minbase` into a folder, then `docker import`):
#
#   penguin-base:bookworm       the test-only images' base (the GitHub
#                               stand-in needs `git http-backend`): git,
#                               ca-certificates, openssl, user penguinuser
#                               (10001:10001);
#   penguin-toolchain:bookworm  the same root filesystem plus the toolchain
#                               repository test commands use (bash, git,
#                               python3, make, gcc, libc6-dev) and the user
#                               penguinrunner (10002, group 10001): the base
#                               of the shipped runner image
#                               (docker/runner.Dockerfile).
#
# Idempotent: builds only the images that are missing (--force rebuilds both).
# PENGUIN_BASE_IMAGE and PENGUIN_TOOLCHAIN_IMAGE rename them.
set -euo pipefail
base_image="${PENGUIN_BASE_IMAGE:-penguin-base:bookworm}"
toolchain_image="${PENGUIN_TOOLCHAIN_IMAGE:-penguin-toolchain:bookworm}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
# What repository test commands get; gcc without the recommended extras.
toolchain_packages=(bash git python3 make gcc libc6-dev)

force=false
[ "${1:-}" = "--force" ] && force=true
exists() { docker image inspect "$1" >/dev/null 2>&1; }
need_base=true need_toolchain=true
if ! $force; then
  exists "$base_image" && need_base=false
  exists "$toolchain_image" && need_toolchain=false
fi
if ! $need_base && ! $need_toolchain; then
  echo "$base_image and $toolchain_image exist"
  exit 0
fi
if ! command -v debootstrap >/dev/null; then
  echo "installing debootstrap"
  (apt-get update -q && apt-get install -y -q debootstrap) >/dev/null
fi
root="$(mktemp -d)"
cleanup() {
  mountpoint -q "$root/proc" && umount "$root/proc"
  rm -rf "$root"
}
trap cleanup EXIT

slim() { # no package lists, caches, docs, man pages or locales in an image
  chroot "$root" apt-get clean
  rm -rf "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* "$root"/usr/share/man/* \
    "$root"/usr/share/info/* "$root"/usr/share/locale/* "$root"/var/cache/debconf/*-old \
    "$root"/var/log/apt/* "$root"/var/log/dpkg.log "$root"/var/cache/ldconfig/aux-cache
}
import() { # import <image> [<user>]: the root filesystem as an image
  local changes=(--change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
    --change 'CMD ["/bin/bash"]')
  [ -n "${2:-}" ] && changes+=(--change "USER $2")
  tar -C "$root" -c . | docker import "${changes[@]}" \
    - "$1" >/dev/null
  echo "built $1 ($(docker image inspect -f '{{.Size}}' "$1" | awk '{printf "%.0f MB", $1/1e6}'))"
}

echo "debootstrap bookworm into $root (a few minutes)"
debootstrap --variant=minbase \
  --include=git,ca-certificates,openssl \
  bookworm "$root" "$mirror" >/dev/null
chroot "$root" groupadd --gid 10001 penguinuser
chroot "$root" useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
  --shell /usr/sbin/nologin penguinuser
slim
$need_base && import "$base_image"

if $need_toolchain; then
  echo "installing the toolchain (${toolchain_packages[*]})"
  mount -t proc proc "$root/proc"
  chroot "$root" apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive chroot "$root" apt-get install -y -q \
    --no-install-recommends "${toolchain_packages[@]}" >/dev/null
  umount "$root/proc"
  # The runner's user: its own uid, in penguinuser's group, so the api
  # (10001:10001) can use the socket the runner makes (mode 0660).
  chroot "$root" useradd --uid 10002 --gid 10001 --no-create-home --home-dir /nonexistent \
    --shell /usr/sbin/nologin penguinrunner
  slim
  import "$toolchain_image" 10002:10001
fi
