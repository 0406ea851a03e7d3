/**
 * Issue 8's fuzz test: hostile YAML and user-data shapes (the issue's
 * reproductions as seeds, then generated ones) through `config check` and the
 * config phase. Most runs are in-process (fast); a few go through the release
 * executable. Fixed seed and a time budget, so the suite stays quick and
 * repeatable; bench/fuzz.ts runs the same property for longer from random
 * seeds. The properties are in tests/fixtures/config-fuzz.ts.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { writeFile } from "node:fs/promises";
import fc from "fast-check";
import { demoFacts } from "../../src/facts/static.ts";
import type { NodeFacts } from "../../src/facts/types.ts";
import { ensureRelease, NO_STACK, runBerth, scratchDirs } from "../fixtures/cli.ts";
import { fuzzInput, hostileSeeds, runPipeline, violations, wrap, type FuzzInput } from "../fixtures/config-fuzz.ts";

const SEED = 20240806;
const scratch = scratchDirs("berth-fuzz-");
let facts: NodeFacts;
let root: string;

before(async () => {
  facts = await demoFacts();
  root = path.join(await scratch.make(), "root-never-written");
});
after(() => scratch.removeAll());

test("every hostile seed: no internal error, well-formed errors, config check agrees with the config phase", async () => {
  for (const [name, text] of Object.entries(hostileSeeds())) {
    const o = await runPipeline(wrap(text, "plain"), facts, root);
    assert.deepEqual(violations(o), [], name);
    // The reproductions are refused by `config check` itself, except the one only the node's containerd can refuse.
    if (!/containerd/.test(name)) assert.equal(o.check.ok, false, `${name}: config check should refuse it`);
  }
});

test("property: generated YAML and user data keep the properties (in-process, fixed seed, ~4 s)", async () => {
  await fc.assert(
    fc.asyncProperty(fuzzInput, async (input) => {
      const v = violations(await runPipeline(wrap(input.text, input.how), facts, root));
      assert.deepEqual(v, [], `${input.how}: ${JSON.stringify(input.text.slice(0, 300))}`);
    }),
    { seed: SEED, numRuns: 100_000, interruptAfterTimeLimit: 4000 },
  );
});

/** What the release executable printed is only berth's own well-formed lines. */
function assertCleanOutput(label: string, r: { code: number | null; stderr: string }): void {
  assert.ok(r.code === 0 || r.code === 1, `${label}: exit ${r.code}\n${r.stderr}`);
  assert.doesNotMatch(r.stderr, NO_STACK, label);
  assert.doesNotMatch(r.stderr, /internal error|bug in berth/i, label);
  for (const line of r.stderr.split("\n").filter((l) => l !== ""))
    assert.match(line, /^(error: | {2}hint: |config: |warning: |dry run: )/, `${label}: unexpected line ${JSON.stringify(line)}`);
}

test("property: a few generated inputs through the release executable (config check, demo --dry-run)", async () => {
  ensureRelease();
  const dir = await scratch.make();
  const file = path.join(dir, "config.yaml");
  const samples = fc.sample(fuzzInput, { seed: SEED, numRuns: 4 }).map((i: FuzzInput) => i.text);
  samples.push(hostileSeeds()["a newline in an environment variable name"]!);
  for (const [i, text] of samples.entries()) {
    await writeFile(file, text);
    const check = await runBerth(["config", "check", "-c", `file://${file}`]);
    assertCleanOutput(`sample ${i} config check`, check);
    const demo = await runBerth(["demo", "-c", `file://${file}`, "--dry-run", "--root", path.join(dir, "root")]);
    assertCleanOutput(`sample ${i} demo`, demo);
    if (check.code === 0 && demo.code !== 0)
      assert.match(
        demo.stderr,
        /^error: file:\/\/\S+:\d+:\d+: /m,
        `sample ${i}: only a facts-dependent error, with its source line, may fail the demo after config check passed`,
      );
  }
});
