#!/usr/bin/env bash
# Builds (once) the Debian rootfs every lab node boots from, and prints its path.
#
# The rootfs is cached OUTSIDE the repo under $BERTH_LAB_CACHE (default
# /var/cache/berth-lab) as rootfs-<hash>, where the hash covers this script
# and the package list: change either and a fresh rootfs is built next time.
# The build goes into a temp dir that is renamed into place only when it is
# complete, under a lock, so a crashed or concurrent build never leaves a
# half-built cache behind. Usage: lab/build-rootfs.sh [--print-path-only]
set -euo pipefail

# libatomic1: berth's .deb depends on it (the release executable links it)
# and a minbase has none; busybox-static: the kubelet stand-in's nc. No
# Node.js: berth runs from its package, as on a real node. xfsprogs, mdadm:
# what instance.localStorage runs (mkfs.xfs, mdadm; blkid is util-linux's).
PACKAGES=(
  systemd systemd-sysv dbus
  containerd runc containernetworking-plugins
  iproute2 procps curl ca-certificates
  libatomic1 busybox-static
  xfsprogs mdadm
)
SUITE=bookworm

cache="${BERTH_LAB_CACHE:-/var/cache/berth-lab}"
self="$(readlink -f "${BASH_SOURCE[0]}")"
hash="$( { cat "$self"; printf '%s\n' "$SUITE" "${PACKAGES[@]}"; } | sha256sum | cut -c1-16)"
final="$cache/rootfs-$hash"

if [ "${1:-}" = "--print-path-only" ]; then echo "$final"; exit 0; fi
if [ -f "$final/.berth-lab-complete" ]; then echo "$final"; exit 0; fi

if [ "$(id -u)" != 0 ]; then
  echo "build-rootfs: must run as root (debootstrap, chroot); current uid $(id -u)" >&2
  exit 1
fi
for tool in debootstrap chroot; do
  command -v "$tool" >/dev/null || { echo "build-rootfs: $tool missing; run scripts/setup.sh" >&2; exit 1; }
done

# The mirror is whatever apt on this machine already uses: deb822 sources
# first (Debian 12 default), then the one-line format. Never another host.
mirror_from_apt() {
  local f uri
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    # First URIs: line of a stanza whose Suites include the plain suite.
    uri="$(awk -v s="$SUITE" '
      /^[[:space:]]*$/ { if (u != "" && ok) { print u; exit } u=""; ok=0; next }
      /^URIs:/ { u=$2 }
      /^Suites:/ { for (i=2;i<=NF;i++) if ($i==s) ok=1 }
      /^Types:/ { for (i=2;i<=NF;i++) if ($i=="deb") t=1 }
      END { if (u != "" && ok) print u }' "$f" | head -n1)"
    if [ -n "$uri" ]; then echo "$uri"; return 0; fi
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    uri="$(awk -v s="$SUITE" '$1=="deb" { i=2; if ($2 ~ /^\[/) { while ($i !~ /\]$/) i++; i++ } if ($(i+1)==s) { print $i; exit } }' "$f")"
    if [ -n "$uri" ]; then echo "$uri"; return 0; fi
  done
  return 1
}
mirror="${BERTH_LAB_MIRROR:-$(mirror_from_apt || true)}"
if [ -z "$mirror" ]; then
  echo "build-rootfs: no '$SUITE' deb source in /etc/apt/sources.list{,.d}; set BERTH_LAB_MIRROR" >&2
  exit 1
fi

mkdir -p "$cache"
exec 9>"$cache/.build.lock"
flock 9
# Another process may have finished the same build while we waited.
if [ -f "$final/.berth-lab-complete" ]; then echo "$final"; exit 0; fi

tmp="$(mktemp -d "$cache/.tmp-rootfs-$hash.XXXXXX")"
cleanup() { rm -rf --one-file-system "$tmp"; }
trap cleanup EXIT

start=$(date +%s)
echo "build-rootfs: debootstrap $SUITE from $mirror into $tmp" >&2
include="$(IFS=,; echo "${PACKAGES[*]}")"
if ! debootstrap --variant=minbase --include="$include" "$SUITE" "$tmp" "$mirror" >"$cache/.debootstrap.log" 2>&1; then
  tail -n 30 "$cache/.debootstrap.log" >&2
  echo "build-rootfs: debootstrap failed (full log: $cache/.debootstrap.log)" >&2
  exit 1
fi

# Units that only slow a container's boot down or wait for things a node in
# nspawn never has (consoles, network-online, periodic maintenance).
mask=(
  getty@.service console-getty.service serial-getty@.service getty.target
  systemd-networkd-wait-online.service systemd-time-wait-sync.service
  apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer e2scrub_reap.service
  fstrim.timer man-db.timer dpkg-db-backup.timer
  systemd-remount-fs.service sys-kernel-debug.mount sys-kernel-tracing.mount
  systemd-firstboot.service systemd-update-utmp.service systemd-update-utmp-runlevel.service
  cryptsetup.target remote-fs.target
)
for u in "${mask[@]}"; do ln -sfn /dev/null "$tmp/etc/systemd/system/$u"; done

# berth (or the test) starts containerd; Debian's postinst enables it.
rm -f "$tmp/etc/systemd/system/multi-user.target.wants/containerd.service"
# Pods need an /etc/hosts to bind into the sandbox.
printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$tmp/etc/hosts"
# Let systemd create a machine id per boot (nspawn passes one in).
: >"$tmp/etc/machine-id"
# Directories the harness writes into.
mkdir -p "$tmp/var/lib/kubelet-standin" "$tmp/etc/containerd/certs.d"
# Drop what a node never needs: apt's package cache and docs.
rm -rf "$tmp"/var/cache/apt/archives/*.deb "$tmp"/var/lib/apt/lists/* "$tmp"/usr/share/doc/* "$tmp"/usr/share/man/*

echo "$SUITE ${PACKAGES[*]} built $(date -u +%FT%TZ) in $(( $(date +%s) - start ))s from $mirror" >"$tmp/.berth-lab-complete"
# mktemp -d made it 0700; a node's "/" must be 0755 (non-root services traverse it).
chmod 755 "$tmp"
rm -rf --one-file-system "$final"
mv "$tmp" "$final"
trap - EXIT
echo "build-rootfs: done in $(( $(date +%s) - start ))s" >&2
echo "$final"
