/**
 * nodeadm parity (issue 11) through the release executable: `--validate=warn`
 * and the BerthConfig `spec.validation` setting on `init`, `config check` and
 * `config dump`; the Outposts API server block in /etc/hosts.
 * The config phase gathers facts from the IMDS and EC2 stand-ins.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { useAwsStandIns } from "../fixtures/aws-standins.ts";
import { ensureRelease, NO_STACK, runBerth, scratchDirs, type CliRun } from "../fixtures/cli.ts";
import { CLUSTER_NODECONFIG_YAML as CLUSTER, seedNodeRoot } from "../fixtures/node.ts";
import { checkSummary, MERGED_ROW } from "../../src/cli/check-summary.ts";
import type { SourcesReport } from "../../src/sources/index.ts";

const scratch = scratchDirs("berth-cli-validate-");

const aws = useAwsStandIns();
before(ensureRelease);
after(scratch.removeAll);

const env = (): NodeJS.ProcessEnv => aws.env();
const berth = (args: string[]): Promise<CliRun> => runBerth(args, { env: env() });

const DIR = "/etc/eks/test";
/** The cluster plus a misspelled kubelet field on line 10 (`flag:` at column 5). */
const TYPO = `${CLUSTER}  kubelet:\n    flag:\n      - --node-labels=pool=general\n`;
const WARN_SETTING = "apiVersion: berth.dev/v1alpha1\nkind: BerthConfig\nspec:\n  validation: warn\n";

/** A node root with `files` under /etc/eks/test. */
async function node(files: Record<string, string>): Promise<string> {
  const root = await scratch.make();
  await seedNodeRoot(root);
  await mkdir(path.join(root, DIR), { recursive: true });
  for (const [name, text] of Object.entries(files)) await writeFile(path.join(root, DIR, name), text);
  return root;
}

const init = (root: string, ...args: string[]) => berth(["init", "--skip", "run", "--root", root, ...args]);
const WARNING =
  /^warning: file:\/\/\/etc\/eks\/test\/node\.yaml:10:5: spec\.kubelet\.flag: unknown field `flag`; did you mean `flags`\?\n {2}hint: fields allowed in spec\.kubelet: config, flags, maxPodsExpression$/m;

test("init --validate=warn: a misspelled field is dropped with one warning (line, column, suggestion) and the node's files are written", async () => {
  const root = await node({ "node.yaml": TYPO });
  const r = await init(root, "-c", `file://${DIR}/node.yaml`, "--validate=warn");
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, WARNING);
  assert.equal(r.stderr.match(/^warning: /gm)?.length, 1, r.stderr);
  assert.match(r.stdout, /^wrote +\/etc\/kubernetes\/kubelet\/config\.json$/m);
  assert.ok(existsSync(path.join(root, "etc/kubernetes/kubelet/config.json")));
  // Dropped, as nodeadm drops it: the flag never reaches the kubelet.
  assert.doesNotMatch(await readFile(path.join(root, "etc/eks/kubelet/environment"), "utf8"), /pool=general/);
});

test("init without --validate: the same input fails as before, with the same text as an error, and writes nothing", async () => {
  const root = await node({ "node.yaml": TYPO });
  const r = await init(root, "-c", `file://${DIR}/node.yaml`);
  assert.equal(r.code, 1);
  assert.match(r.stderr, new RegExp(WARNING.source.replace("^warning: ", "^error: "), "m"));
  assert.doesNotMatch(r.stderr, /^warning: /m);
  assert.doesNotMatch(r.stderr, NO_STACK);
  assert.ok(!existsSync(path.join(root, "etc/kubernetes")));
});

test("init --validate=warn: a type error is still an error (the warning is printed too); a bad mode is a usage error", async () => {
  const root = await node({ "node.yaml": TYPO.replace("name: my-cluster", "name: yes") });
  const r = await init(root, "-c", `file://${DIR}/node.yaml`, "--validate", "warn");
  assert.equal(r.code, 1);
  assert.match(r.stderr, WARNING);
  assert.match(
    r.stderr,
    /^error: file:\/\/\/etc\/eks\/test\/node\.yaml:5:11: spec\.cluster\.name: wrong type: expected a string, got the boolean true$/m,
  );
  assert.ok(!existsSync(path.join(root, "etc/kubernetes")));
  const usage = await init(root, "-c", `file://${DIR}/node.yaml`, "--validate=lenient");
  assert.equal(usage.code, 2);
  assert.match(usage.stderr, /^error: unknown --validate mode 'lenient' \(expected strict or warn\)$/m);
});

test("the BerthConfig setting lets the boot units' plain `init` pass; --validate=strict wins over it", async () => {
  const root = await node({ "node.yaml": TYPO, "berth.yaml": WARN_SETTING });
  const sources = ["-c", `file://${DIR}/node.yaml`, "-c", `file://${DIR}/berth.yaml`];
  const r = await init(root, ...sources);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, WARNING);
  const strict = await init(root, ...sources, "--validate=strict", "--dry-run");
  assert.equal(strict.code, 1);
  assert.match(strict.stderr, /^error: file:\/\/\/etc\/eks\/test\/node\.yaml:10:5: /m);
});

test("config check over a directory: the warnings and errors, then a summary per file and in all; exit 0 with warnings only", async () => {
  const root = await node({
    "10-cluster.yaml": CLUSTER,
    "20-typo.yaml": `apiVersion: node.eks.aws/v1alpha1\nkind: NodeConfig\nspec:\n  kubelet:\n    flag: []\n`,
  });
  const ok = await berth(["config", "check", "--root", root, "-c", `file://${DIR}/`, "--validate=warn"]);
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(ok.stderr, /^warning: file:\/\/\/etc\/eks\/test\/20-typo\.yaml:5:5: spec\.kubelet\.flag: unknown field `flag`/m);
  assert.equal(
    ok.stdout.split("\n").slice(0, 4).join("\n"),
    [
      "summary (validation warn, from --validate):",
      "  ok         file:///etc/eks/test/10-cluster.yaml",
      "  1 warning  file:///etc/eks/test/20-typo.yaml",
      "2 files: 1 ok, 1 with warnings only, 0 with errors; 1 warning and 0 errors in all",
    ].join("\n"),
  );
  assert.match(ok.stdout, /^configuration is valid \(/m);

  await writeFile(
    path.join(root, DIR, "30-bad.yaml"),
    "apiVersion: node.eks.aws/v1alpha1\nkind: NodeConfig\nspec:\n  cluster:\n    cidr: 10.0.0.0/33\n",
  );
  const bad = await berth(["config", "check", "--root", root, "-c", `file://${DIR}/`, "--validate=warn"]);
  assert.equal(bad.code, 1);
  assert.match(bad.stdout, /^ {2}1 error {4}file:\/\/\/etc\/eks\/test\/30-bad\.yaml$/m);
  assert.match(bad.stdout, /^3 files: 1 ok, 1 with warnings only, 1 with errors; 1 warning and 1 error in all$/m);
  assert.doesNotMatch(bad.stdout, /configuration is valid/);

  const strict = await berth([
    "config",
    "check",
    "--root",
    root,
    "-c",
    `file://${DIR}/20-typo.yaml`,
    "-c",
    `file://${DIR}/10-cluster.yaml`,
  ]);
  assert.equal(strict.code, 1);
  assert.match(strict.stdout, /^summary \(validation strict, the default\):$/m);
  assert.match(
    strict.stdout,
    /^1 error is an unknown field: --validate=warn \(or BerthConfig spec\.validation: warn\) would drop it with a warning/m,
  );
});

test("warn mode prints at most 20 warnings, then how many more there are; the summary counts them all", async () => {
  const keys = Array.from({ length: 25 }, (_, i) => `    k${i}: 1\n`).join("");
  const root = await node({ "node.yaml": `${CLUSTER}  kubelet:\n${keys}` });
  const r = await berth(["config", "check", "--root", root, "-c", `file://${DIR}/node.yaml`, "--validate=warn"]);
  assert.equal(r.code, 0, r.stderr);
  const warnings = r.stderr.split("\n").filter((l) => l.startsWith("warning: "));
  assert.equal(warnings.length, 21);
  assert.equal(warnings[20], "warning: … and 5 more warnings (25 in all)");
  assert.match(r.stdout, /^1 file: 0 ok, 1 with warnings only, 0 with errors; 25 warnings and 0 errors in all$/m);
});

test("config dump --validate=warn: the dropped field is not in the dump; the warning goes to stderr", async () => {
  const root = await node({ "node.yaml": TYPO });
  const r = await berth(["config", "dump", "--root", root, "-c", `file://${DIR}/node.yaml`, "--validate=warn"]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, WARNING);
  const dump = JSON.parse(r.stdout) as { spec: { kubelet?: Record<string, unknown> } };
  assert.deepEqual(dump.spec.kubelet, {});
  assert.doesNotMatch(r.stdout, /node-labels|"flag"/);
});

test("the summary: MIME parts count as their file; problems no file holds get their own line", () => {
  const ud = "imds://user-data";
  const report: SourcesReport = {
    texts: [`${ud} (MIME part 1 of 2)`, `${ud} (MIME part 2 of 2)`],
    mode: { mode: "warn", from: "setting" },
    warnings: [
      { code: "config.unknown-field", message: "unknown field `x`", where: { source: `${ud} (MIME part 2 of 2)`, line: 4, column: 3 } },
    ],
  };
  const missing = {
    code: "config.missing-field",
    message: "the cluster name (spec.cluster.name) is missing",
    where: { path: "spec.cluster.name" },
  };
  assert.equal(
    checkSummary(report, [missing]),
    [
      "summary (validation warn, from BerthConfig spec.validation):",
      "  1 warning  imds://user-data",
      `  1 error    ${MERGED_ROW}`,
      "1 file: 0 ok, 1 with warnings only, 0 with errors; 1 warning and 1 error in all",
      "",
    ].join("\n"),
  );
});

// ------------------------------------------------------------------ Outposts /etc/hosts

const outpost = (endpoint: string): string =>
  CLUSTER.replace("apiServerEndpoint: https://example.com", `apiServerEndpoint: ${endpoint}\n    enableOutpost: true\n    id: 0123abcd`);
const HOSTS = "127.0.0.1 localhost\n# keep me\n10.1.2.3 db.internal\n";
const BLOCK = "# BEGIN berth: outpost api server\n127.0.0.1\tlocalhost\n# END berth: outpost api server\n";

test("Outposts: the API server's addresses in a marked /etc/hosts block; a re-run leaves it unchanged; --dry-run shows a change", async () => {
  const root = await node({ "outpost.yaml": outpost("https://localhost:8443") });
  await writeFile(path.join(root, "etc/hosts"), HOSTS);
  const first = await init(root, "-c", `file://${DIR}/outpost.yaml`);
  assert.equal(first.code, 0, first.stderr);
  assert.match(first.stdout, /^wrote +\/etc\/hosts$/m);
  const hosts = await readFile(path.join(root, "etc/hosts"), "utf8");
  assert.ok(hosts.startsWith(HOSTS), hosts);
  // localhost is 127.0.0.1 everywhere; some machines also give ::1.
  assert.match(
    hosts.slice(HOSTS.length),
    /^# BEGIN berth: outpost api server\n127\.0\.0\.1\tlocalhost\n(::1\tlocalhost\n)?# END berth: outpost api server\n$/,
  );

  const again = await init(root, "-c", `file://${DIR}/outpost.yaml`);
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stdout, /^unchanged \/etc\/hosts$/m);

  await writeFile(path.join(root, "etc/hosts"), `${HOSTS}${BLOCK.replace("127.0.0.1", "10.9.9.9")}# after\n`);
  const dry = await init(root, "-c", `file://${DIR}/outpost.yaml`, "--dry-run");
  assert.equal(dry.code, 0, dry.stderr);
  assert.match(dry.stdout, /^-10\.9\.9\.9\tlocalhost$/m);
  assert.match(dry.stdout, /^\+127\.0\.0\.1\tlocalhost$/m);
  assert.equal(await readFile(path.join(root, "etc/hosts"), "utf8"), `${HOSTS}${BLOCK.replace("127.0.0.1", "10.9.9.9")}# after\n`);
});

test("Outposts: a name that does not resolve fails with the endpoint's source line, the name, the resolver's error and what to do", async () => {
  const root = await node({ "outpost.yaml": outpost("https://berth-test.invalid") });
  await writeFile(path.join(root, "etc/hosts"), HOSTS);
  const r = await init(root, "-c", `file://${DIR}/outpost.yaml`);
  assert.equal(r.code, 1);
  assert.match(
    r.stderr,
    /^error: file:\/\/\/etc\/eks\/test\/outpost\.yaml:6:24: spec\.cluster\.apiServerEndpoint: cannot resolve the API server name berth-test\.invalid for \/etc\/hosts \(cluster\.enableOutpost\): DNS A: \S+, AAAA: \S+; system resolver: E[A-Z_]+\n {2}hint: check that the name in apiServerEndpoint is right/m,
  );
  assert.doesNotMatch(r.stderr, NO_STACK);
  assert.equal(await readFile(path.join(root, "etc/hosts"), "utf8"), HOSTS);
  assert.ok(!existsSync(path.join(root, "etc/kubernetes")));
});
