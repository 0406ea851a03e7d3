#!/usr/bin/env bash
# Installs what berth's build and tests need. Idempotent and quiet when done.
# On a fresh Debian machine (CI: root, no stdin) this installs the node lab's
# Debian packages and builds the lab's cached rootfs and pause image.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi

# The node lab (lab/README.md): nspawn + debootstrap to boot nodes, containerd
# and runc (also used on the host by CRI tests), the registry and umoci +
# static busybox for the offline pause image, util-linux for nsenter/setpriv.
LAB_PACKAGES=(
  containerd runc containernetworking-plugins
  systemd-container debootstrap debian-archive-keyring
  docker-registry umoci busybox-static
  dbus iproute2 util-linux mount systemd openssl
  # Packaging (npm run package) and the arm64 executable's checks under qemu-user.
  rpm dpkg-dev qemu-user-static libc6-arm64-cross libstdc++6-arm64-cross libatomic1-arm64-cross
  # A real browser for `berth timeline --svg` (tests/unit/timeline-cli.test.ts takes a headless screenshot).
  chromium
)
missing=()
for p in "${LAB_PACKAGES[@]}"; do
  if [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)" != installed ]; then missing+=("$p"); fi
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "setup: the node lab needs these Debian packages: ${missing[*]}; run scripts/setup.sh as root" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq </dev/null >/dev/null
  apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null >/dev/null
fi

# Build the lab's cached images now (≈1 min once per machine) rather than in
# the first test. Only root can; the lab tests fail with that reason otherwise.
if [ "$(id -u)" = 0 ]; then
  bash lab/build-rootfs.sh >/dev/null
  bash lab/build-pause-image.sh >/dev/null
fi
