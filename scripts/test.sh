#!/usr/bin/env bash
# The whole test suite: unit, property, conformance and node-lab tests, on
# node's own test runner. Usage: scripts/test.sh [test files...]
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$#" -gt 0 ]; then
  files=("$@")
else
  mapfile -t files < <(find tests -name '*.test.ts' | sort)
fi
npx tsc -p tsconfig.json --noEmit
node scripts/build.mjs
exec node --import tsx --test --test-concurrency=1 --test-reporter=spec "${files[@]}"
