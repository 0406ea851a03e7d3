# berth: make targets. The test and bench entry points are scripts/test.sh and
# bench/run.sh (npm test / npm run bench); this file holds what has no npm script.

.PHONY: build demo

build:
	node scripts/build.mjs

# Boots a node-lab node (needs root, see lab/README.md) and runs a full
# `berth init` inside it, printing the timeline. `make demo DEMO_ARGS=--keep`
# leaves the node up to look around.
demo: build
	node --import tsx tests/lab/run-demo.ts $(DEMO_ARGS)
