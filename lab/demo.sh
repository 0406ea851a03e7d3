#!/usr/bin/env bash
# Boots a lab node (berth installed from its .deb), runs a shell command inside
# it (or an interactive shell with --shell), then tears it down. Needs root.
# Usage: lab/demo.sh [--shell | COMMAND...]
set -euo pipefail
cd "$(dirname "$0")/.."
compgen -G "dist/release/berth_*.deb" >/dev/null || npm run --silent package >/dev/null
exec node --import tsx lab/demo.ts "$@"
