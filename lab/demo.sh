#!/usr/bin/env bash
# Boots a lab node and runs a shell command inside it (or an interactive shell
# with --shell), then tears it down. Needs root. Usage: lab/demo.sh [--shell | COMMAND...]
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f dist/berth.mjs ] || node scripts/build.mjs || echo "demo: berth bundle did not build; continuing without it" >&2
exec node --import tsx lab/demo.ts "$@"
