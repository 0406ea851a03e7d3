#!/usr/bin/env bash
# Fresh machine → whole test suite: installs what the tests need (Debian
# packages for the node lab, npm dependencies), then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec bash scripts/test.sh "$@"
