#!/usr/bin/env bash
# The whole test suite: unit, property, conformance, release and node-lab
# tests, on node's own test runner. Usage: scripts/test.sh [test files...]
#
# It typechecks and lints (eslint with type information, prettier --check)
# first, then packages the release (npm run package: the executables, .deb,
# .rpm and tarballs in dist/release/) because every CLI-level and lab test
# runs those very files.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$#" -gt 0 ]; then
  files=("$@")
else
  mapfile -t files < <(find tests -name '*.test.ts' | sort)
fi
npx tsc -p tsconfig.json --noEmit
npm run --silent lint
node scripts/package.mjs >/dev/null
exec node --import tsx --test --test-concurrency=1 --test-reporter=spec "${files[@]}"
