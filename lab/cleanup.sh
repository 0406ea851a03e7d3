#!/usr/bin/env bash
# Removes what crashed lab runs left behind: nspawn nodes and registries whose
# owning test process is gone, their mounts under ${TMPDIR:-/tmp}/berth-lab-*,
# their cgroups (berthlab-*), and their temp dirs.
# Usage: lab/cleanup.sh [--all]   (--all: also nodes whose owner still runs)
# Prints one line per thing removed; exit 1 if something could not be removed.
set -uo pipefail
all=0; [ "${1:-}" = "--all" ] && all=1
prefix="${TMPDIR:-/tmp}/berth-lab-"
status=0

owner_alive() { local o; o="$(cat "$1/owner" 2>/dev/null)" || return 1; [ -n "$o" ] && kill -0 "$o" 2>/dev/null; }

# Every process whose command line names one of our dirs or machines.
pids_for() { # $1: substring
  local p
  for p in /proc/[0-9]*; do
    tr '\0' ' ' 2>/dev/null <"$p/cmdline" | grep -qF -- "$1" && echo "${p#/proc/}"
  done
}

stop_pids() {
  local pids=("$@") p i
  [ "${#pids[@]}" -eq 0 ] && return 0
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null && echo "cleanup: SIGTERM $p ($(tr '\0' ' ' 2>/dev/null </proc/$p/cmdline | cut -c1-80))"; done
  for i in $(seq 50); do
    local left=0
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && left=1; done
    [ "$left" = 0 ] && return 0
    sleep 0.1
  done
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null && echo "cleanup: SIGKILL $p"; done
  sleep 0.2
}

for dir in "$prefix"*/; do
  dir="${dir%/}"
  [ -d "$dir" ] || continue
  if [ "$all" = 0 ] && owner_alive "$dir"; then continue; fi
  machine="$(cat "$dir/machine" 2>/dev/null || true)"
  mapfile -t pids < <(pids_for "$dir")
  if [ -n "$machine" ]; then mapfile -t more < <(pids_for "$machine"); pids+=("${more[@]}"); fi
  # Never ourselves or our parent shell.
  mapfile -t pids < <(printf '%s\n' "${pids[@]}" | grep -vx -e "$$" -e "$PPID" -e '' | sort -u)
  stop_pids "${pids[@]}"
  # Deepest mounts first; lazy unmount as the last resort.
  mapfile -t mps < <(awk -v d="$dir" '$5 == d || index($5, d "/") == 1 { print $5 }' /proc/self/mountinfo | awk '{ print length, $0 }' | sort -rn | cut -d' ' -f2-)
  for mp in "${mps[@]}"; do
    umount "$mp" 2>/dev/null || umount -l "$mp" 2>/dev/null || { echo "cleanup: cannot unmount $mp" >&2; status=1; }
    echo "cleanup: unmounted $mp"
  done
  if [ -n "$machine" ]; then
    while IFS= read -r cg; do
      find "$cg" -depth -type d -exec rmdir {} \; 2>/dev/null
      if [ -d "$cg" ]; then echo "cleanup: cgroup $cg still busy" >&2; status=1; else echo "cleanup: removed cgroup $cg"; fi
    done < <(find /sys/fs/cgroup -maxdepth 6 -type d -name "$machine" 2>/dev/null)
  fi
  # Loop devices backed by files in the dir (the instance-store disks of tests/lab/local-storage.test.ts).
  while IFS= read -r loop; do
    losetup -d "$loop" 2>/dev/null && echo "cleanup: detached $loop"
  done < <(losetup -n -l -O NAME,BACK-FILE 2>/dev/null | awk -v d="$dir/" 'index($2, d) == 1 { print $1 }')
  if awk -v d="$dir" 'index($5, d) == 1 { found=1 } END { exit !found }' /proc/self/mountinfo; then
    echo "cleanup: $dir still has mounts; not removing it" >&2; status=1
  else
    rm -rf --one-file-system "$dir" && echo "cleanup: removed $dir"
  fi
done

# Cgroups of nodes whose dir is already gone (a crash between rm and rmdir).
while IFS= read -r cg; do
  name="$(basename "$cg")"
  if ls -d "$prefix"*/machine >/dev/null 2>&1 && grep -qx "$name" "$prefix"*/machine 2>/dev/null; then continue; fi
  find "$cg" -depth -type d -exec rmdir {} \; 2>/dev/null
  if [ -d "$cg" ]; then echo "cleanup: cgroup $cg still busy" >&2; status=1; else echo "cleanup: removed orphan cgroup $cg"; fi
done < <(find /sys/fs/cgroup -maxdepth 6 -type d -name 'berthlab-*' 2>/dev/null)

exit "$status"
