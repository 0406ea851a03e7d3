# berth: make targets. The test and bench entry points are scripts/test.sh and
# bench/run.sh (npm test / npm run bench); this file holds what has no npm script.

.PHONY: build package demo

build:
	node scripts/build.mjs

package:
	node scripts/package.mjs

# Boots a node-lab node (needs root, see lab/README.md), installs berth's
# .deb in it and runs a full `berth init` there, printing the timeline. `make demo DEMO_ARGS=--keep`
# leaves the node up to look around.
demo: package
	node --import tsx tests/lab/run-demo.ts $(DEMO_ARGS)
