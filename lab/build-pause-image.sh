#!/usr/bin/env bash
# Builds the lab's sandbox ("pause") image offline and prints the path of an
# OCI image layout holding it, tagged "latest".
#
# The image is one layer: Debian's static busybox and a shell loop that sleeps
# until SIGTERM and then exits 0 — what a pause container has to do (the real
# pause binary also reaps zombies; the lab's pods have no other processes).
# No network: umoci builds the layout from local files. Cached like the
# rootfs, under $BERTH_LAB_CACHE/pause-oci-<hash>, keyed by this script and the
# busybox binary. Usage: lab/build-pause-image.sh
set -euo pipefail

cache="${BERTH_LAB_CACHE:-/var/cache/berth-lab}"
self="$(readlink -f "${BASH_SOURCE[0]}")"
busybox=/bin/busybox
for tool in umoci "$busybox"; do
  command -v "$tool" >/dev/null || { echo "build-pause-image: $tool missing; run scripts/setup.sh" >&2; exit 1; }
done
if ! file_type="$(head -c 4 "$busybox" | od -An -c | tr -d ' ')" || [ "$file_type" != '177ELF' ]; then
  echo "build-pause-image: $busybox is not an ELF binary" >&2; exit 1
fi
if ldd "$busybox" >/dev/null 2>&1; then
  echo "build-pause-image: $busybox is dynamically linked; install busybox-static (scripts/setup.sh)" >&2; exit 1
fi
hash="$( { cat "$self"; sha256sum "$busybox"; } | sha256sum | cut -c1-16)"
final="$cache/pause-oci-$hash"
if [ -f "$final/.berth-lab-complete" ]; then echo "$final"; exit 0; fi

mkdir -p "$cache"
tmp="$(mktemp -d "$cache/.tmp-pause-$hash.XXXXXX")"
trap 'rm -rf --one-file-system "$tmp"' EXIT
layout="$tmp/layout"
bundle="$tmp/bundle"

umoci init --layout "$layout"
umoci new --image "$layout:latest"
umoci unpack --rootless --image "$layout:latest" "$bundle" >/dev/null
rootfs="$bundle/rootfs"
mkdir -p "$rootfs/bin" "$rootfs/etc" "$rootfs/proc" "$rootfs/sys" "$rootfs/dev" "$rootfs/tmp"
cp "$busybox" "$rootfs/bin/busybox"
ln -s busybox "$rootfs/bin/sh"
ln -s busybox "$rootfs/bin/sleep"
cat >"$rootfs/pause" <<'PAUSE'
#!/bin/sh
# Lab pause: sleep until SIGTERM/SIGINT, then exit 0 (PID 1 ignores signals without a handler).
trap 'exit 0' TERM INT
while :; do sleep 3600 & wait $!; done
PAUSE
chmod 755 "$rootfs/pause"
umoci repack --image "$layout:latest" "$bundle" >/dev/null
umoci config --image "$layout:latest" \
  --config.entrypoint /pause --clear=config.cmd --config.user 65535:65535 \
  --config.workingdir / --architecture "$(dpkg --print-architecture)" --os linux \
  --author "berth node lab" >/dev/null
umoci gc --layout "$layout"

touch "$layout/.berth-lab-complete"
rm -rf --one-file-system "$final"
mv "$layout" "$final"
echo "$final"
