/**
 * The user docs cannot drift from the code: generated tables equal what
 * scripts/gen-config-docs.ts produces now (from the JSON Schema and real
 * plans), every schema field has a merge rule, every planned file is
 * documented, the `config check` example is real output, and the
 * compatibility page names every conformance case.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { mkdtemp, mkdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import YAML from "yaml";
import {
  DOC_FILES,
  REPO,
  fileDocProblems,
  generatedBlockNames,
  generatedBlocks,
  renderDocs,
  replaceGenerated,
  undocumentedMergeRules,
} from "../../scripts/gen-config-docs.ts";
import { resolveConfig } from "../../src/sources/cache.ts";
import type { SourcesReport } from "../../src/sources/index.ts";
import { checkSummary } from "../../src/cli/check-summary.ts";
import { HostRoot } from "../../src/host/root.ts";
import { formatError } from "../../src/util/result.ts";
import { memoryMebibytesToReserve } from "../../src/render/reserved.ts";

const read = (rel: string): string => readFileSync(path.join(REPO, rel), "utf8");
const REGEN = "run: node --import tsx scripts/gen-config-docs.ts";

const scratch: string[] = [];
after(async () => {
  for (const d of scratch) await rm(d, { recursive: true, force: true });
});

test("generated doc blocks are up to date", () => {
  const want = renderDocs();
  for (const file of DOC_FILES) {
    const have = read(file);
    // Compare block by block first for a readable failure, then the whole file.
    for (const name of generatedBlockNames(have)) {
      const body = generatedBlocks()[file][name];
      assert.ok(body !== undefined, `${file}: unknown generated block ${name}`);
      assert.ok(have.includes(`\n${body}\n`), `${file}: generated block "${name}" is stale; ${REGEN}`);
    }
    assert.equal(have, want[file], `${file} differs from its regenerated form; ${REGEN}`);
  }
});

test("every doc file carries every generated block exactly once", () => {
  const blocks = generatedBlocks();
  for (const file of DOC_FILES) {
    assert.deepEqual(generatedBlockNames(read(file)).sort(), Object.keys(blocks[file]).sort(), file);
  }
});

test("replaceGenerated replaces only between markers and is idempotent", () => {
  const doc = "intro\n<!-- BEGIN GENERATED t (scripts/gen-config-docs.ts; do not edit) -->\nold\n<!-- END GENERATED -->\noutro\n";
  const once = replaceGenerated(doc, "t", "new\n");
  assert.equal(once, "intro\n<!-- BEGIN GENERATED t (scripts/gen-config-docs.ts; do not edit) -->\nnew\n<!-- END GENERATED -->\noutro\n");
  assert.equal(replaceGenerated(once, "t", "new"), once);
  assert.throws(() => replaceGenerated(doc, "missing", "x"), /not found/);
  assert.throws(() => replaceGenerated(doc.replace("<!-- END GENERATED -->", ""), "t", "x"), /END GENERATED/);
});

test("every schema field has a documented merge rule", () => {
  assert.deepEqual(undocumentedMergeRules(), []);
});

test("every NodeConfig and BerthConfig field appears in config.md", () => {
  const text = read("docs/config.md");
  for (const name of ["nodeconfig.schema.json", "berthconfig.schema.json"]) {
    const schema = JSON.parse(read(`data/schema/${name}`)) as { properties: { spec: Record<string, unknown> } };
    const walk = (node: Record<string, unknown>, prefix: string): void => {
      const props = node["properties"] as Record<string, Record<string, unknown>> | undefined;
      for (const [k, v] of Object.entries(props ?? {})) {
        const p = prefix ? `${prefix}.${k}` : k;
        assert.ok(text.includes(`\`${p}\``), `docs/config.md lacks spec.${p} (${name})`);
        walk(v, p);
        const items = v["items"] as Record<string, unknown> | undefined;
        if (items) walk(items, `${p}[]`);
      }
    };
    walk(schema.properties.spec, "");
  }
});

test("every planned file is documented and every documented file is planned", () => {
  assert.deepEqual(fileDocProblems(), { undocumented: [], unused: [] });
});

test("the `berth config check` example in config.md is real output", async () => {
  const text = read("docs/config.md");
  const block = (marker: string, fence: string): string => {
    const at = text.indexOf(`<!-- example ${marker} `);
    assert.ok(at >= 0, `marker ${marker} missing`);
    const open = text.indexOf(`\`\`\`${fence}\n`, at);
    const close = text.indexOf("\n```", open + 4);
    return text.slice(open + fence.length + 4, close + 1);
  };
  const input = block("config-check-input", "yaml");
  const output = block("config-check-output", "console").split("\n");
  const command = output[0]!;
  const m = /-c (file:\/\/\/\S+\/)$/.exec(command);
  assert.ok(m, `unexpected example command: ${command}`);
  const dirUrl = m[1]!;
  const expectedLines = output.slice(1).filter((l) => l !== "");
  const file = /error: file:\/\/(\/[^:]+):/.exec(expectedLines[0] ?? "")?.[1];
  assert.ok(file, "the example output names no file");

  const root = await mkdtemp(path.join(tmpdir(), "berth-docs-"));
  scratch.push(root);
  await mkdir(path.join(root, path.dirname(file)), { recursive: true });
  await writeFile(path.join(root, file), input);
  const noImds = {
    get: () => Promise.reject(new Error("no IMDS in this test")),
    getBytes: () => Promise.reject(new Error("no IMDS in this test")),
  };
  let report: SourcesReport | undefined;
  const r = await resolveConfig([dirUrl], undefined, { root: new HostRoot(root), imds: noImds, onSources: (rep) => (report = rep) });
  assert.equal(r.ok, false, "the example config must fail");
  if (r.ok) return;
  // stderr (the errors), then the summary on stdout.
  const actual = [...r.errors.map(formatError), checkSummary(report, r.errors).trimEnd()].join("\n").split("\n");
  assert.deepEqual(actual, expectedLines);
});

test("the kubeReserved example in the compatibility page matches the formula", () => {
  const text = read("docs/nodeadm-compatibility.md");
  assert.equal(memoryMebibytesToReserve(1), 266);
  assert.equal(memoryMebibytesToReserve(60), 915);
  assert.ok(text.includes("11 × 60 + 255 = **915Mi**") && text.includes("11 × 1 + 255 = **266Mi**"));
});

const SHARED = process.env.BERTH_SHARED_DIR ? path.resolve(process.env.BERTH_SHARED_DIR) : path.resolve(REPO, "../shared");
const CASES = path.join(SHARED, "conformance/nodeadm-e2e/cases.yaml");

test("the compatibility page lists every conformance case and every berth_differs", (t) => {
  if (!existsSync(CASES)) {
    t.skip(`conformance contract not found at ${CASES} (set BERTH_SHARED_DIR)`);
    return;
  }
  const cases = YAML.parse(readFileSync(CASES, "utf8")) as Record<
    string,
    { steps?: Array<{ berth_differs?: Record<string, Record<string, unknown>> }> }
  >;
  const text = read("docs/nodeadm-compatibility.md");
  for (const [name, c] of Object.entries(cases)) {
    assert.ok(text.includes(`| \`${name}\` |`), `docs/nodeadm-compatibility.md: case ${name} missing from the table`);
    for (const step of c.steps ?? []) {
      for (const [file, values] of Object.entries(step.berth_differs ?? {})) {
        for (const [key, value] of Object.entries(values)) {
          assert.ok(text.includes(String(value)), `${name}: berth_differs ${file} ${key}=${String(value)} not explained`);
        }
      }
    }
  }
  const listed = [...text.matchAll(/^\| `([a-z0-9-]+)` \|/gm)].map((m) => m[1]!);
  for (const name of listed) assert.ok(name in cases, `the table lists ${name}, which is not a conformance case`);
});
