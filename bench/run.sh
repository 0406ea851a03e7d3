#!/usr/bin/env bash
# Every benchmark, one command:   bash bench/run.sh [--runs N]
# Only some:                      BENCH="config-phase" bash bench/run.sh
# Packages the release first (npm run package) so the figures are for what ships. Lab benchmarks
# (agent-faults, cri-notice) need root and systemd-nspawn (scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
node scripts/package.mjs >/dev/null
status=0
for b in bench/*.ts; do
  name=$(basename "$b" .ts)
  if [ -n "${BENCH:-}" ] && [[ " $BENCH " != *" $name "* ]]; then continue; fi
  echo "== $name"
  node --import tsx "$b" "$@" || { echo "== $name FAILED" >&2; status=1; }
done
exit $status
