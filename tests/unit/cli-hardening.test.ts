/**
 * Issue 8 through the release executable, items 4, 7, 8 and 9: complete
 * output through pipes, hostile YAML refused with clear errors (never "bug in
 * berth", never a stack), `config check` agreeing with the config phase, and
 * error output no input can forge.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { closeSync, openSync } from "node:fs";
import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { tmpdir } from "node:os";
import { ensureRelease, EXE, NO_STACK, runBerth, scratchDirs, type CliRun } from "../fixtures/cli.ts";
import { hostileSeeds } from "../fixtures/config-fuzz.ts";

const scratch = scratchDirs("berth-hardening-");
before(ensureRelease);
after(() => scratch.removeAll());

const HEAD =
  "apiVersion: node.eks.aws/v1alpha1\nkind: NodeConfig\nspec:\n  cluster:\n    name: c\n    apiServerEndpoint: https://x.example.com\n    certificateAuthority: YWJj\n    cidr: 10.100.0.0/16\n";
const SEEDS = hostileSeeds();

/** A config file in a fresh scratch dir; returns its file:// URL. */
async function config(text: string): Promise<string> {
  const file = path.join(await scratch.make(), "config.yaml");
  await writeFile(file, text);
  return `file://${file}`;
}

/** A root holding /config.yaml: `--root ROOT -c file:///config.yaml` reads it (and a dry run writes nothing there). */
async function rootWith(text: string): Promise<string[]> {
  const root = await scratch.make();
  await writeFile(path.join(root, "config.yaml"), text);
  return ["--root", root, "-c", "file:///config.yaml"];
}

/** Only berth's own lines on stderr: each error is one `error:` line and one `hint:` line; no stack, no "bug". */
function assertWellFormed(r: CliRun, label: string): void {
  assert.doesNotMatch(r.stderr, NO_STACK, label);
  assert.doesNotMatch(r.stderr, /internal error|bug in berth/i, label);
  const lines = r.stderr.split("\n").filter((l) => l !== "");
  for (const [i, line] of lines.entries()) {
    assert.match(line, /^(error: | {2}hint: |config: |warning: |dry run: )/, `${label}: line ${i}: ${JSON.stringify(line)}`);
    if (line.startsWith("error: ")) assert.match(lines[i + 1] ?? "", /^ {2}hint: /, `${label}: error without its hint: ${line}`);
  }
}

const errorLines = (r: CliRun): string[] => r.stderr.split("\n").filter((l) => l.startsWith("error: "));

// ---------------------------------------------------------------- item 4: output through a pipe is complete
/** ~900 KB of environment variables: a config whose dump and diff are far beyond a pipe's 64 KiB. */
function bigConfig(): string {
  const lines = [HEAD, "  instance:\n    environment:\n      default:\n"];
  for (let i = 0; i < 15_000; i++) lines.push(`        V${i}: "${"x".repeat(40)}"\n`);
  return lines.join("");
}

test("item 4: config dump of a large config is complete through a pipe, and equals the file it writes with -o", async () => {
  const url = await config(bigConfig());
  const piped = await runBerth(["config", "dump", "-c", url]);
  assert.equal(piped.code, 0, piped.stderr);
  assert.ok(piped.stdout.length > 10 * 65536, `only ${piped.stdout.length} bytes`);
  const dump = JSON.parse(piped.stdout) as { spec: { instance: { environment: { default: Record<string, string> } } } };
  assert.equal(Object.keys(dump.spec.instance.environment.default).length, 15_000);
  const out = path.join(await scratch.make(), "dump.json");
  const toFile = await runBerth(["config", "dump", "-c", url, "-o", out]);
  assert.equal(toFile.code, 0, toFile.stderr);
  assert.equal(piped.stdout, await readFile(out, "utf8"));
});

test("item 4: a dry run's diff of a large config is complete through a pipe (the summary line comes last)", async () => {
  const r = await runBerth(["demo", ...(await rootWith(bigConfig())), "--dry-run"]);
  assert.equal(r.code, 0, r.stderr);
  assert.ok(r.stdout.length > 10 * 65536, `only ${r.stdout.length} bytes`);
  assert.match(r.stdout, /^\+DefaultEnvironment="V14999=x{40}"$/m);
  assert.match(r.stdout, /dry run: \d+ file\(s\) would be written, 0 removed, 0 unchanged; nothing was written\n$/);
});

test("item 4: a reader that stops early (| head) ends berth quietly, without an EPIPE stack trace", async () => {
  const url = await config(bigConfig());
  const r = await new Promise<{ code: number | null; stderr: string }>((resolve, reject) => {
    const child = spawn(EXE, ["config", "dump", "-c", url], {
      stdio: ["ignore", "pipe", "pipe"],
      env: { PATH: process.env.PATH, HOME: tmpdir() },
    });
    let stderr = "";
    child.stdout.once("data", () => child.stdout.destroy());
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stderr }));
  });
  assert.equal(r.stderr, "");
  assert.equal(r.code, 0);
});

test("item 4: stdout that cannot be written (a full disk) is an error and a failure, not a silent success", async () => {
  const url = await config(HEAD);
  const full = openSync("/dev/full", "w");
  try {
    const r = await new Promise<{ code: number | null; stderr: string }>((resolve, reject) => {
      const child = spawn(EXE, ["config", "dump", "-c", url], {
        stdio: ["ignore", full, "pipe"],
        env: { PATH: process.env.PATH, HOME: tmpdir() },
      });
      let stderr = "";
      child.stderr?.on("data", (d: Buffer) => (stderr += d.toString()));
      child.on("error", reject);
      child.on("close", (code) => resolve({ code, stderr }));
    });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^error: could not write to standard output: ENOSPC.*\n {2}hint: /);
    assert.doesNotMatch(r.stderr, NO_STACK);
  } finally {
    closeSync(full);
  }
});

// ---------------------------------------------------------------- item 7: hostile YAML
test("item 7: deep nesting, alias cycles and bombs, a 5 MB CA: clear errors with the source, the limit and what to do", async () => {
  const cases: Array<[string, RegExp]> = [
    ["1000 levels of nesting", /^error: file:\/\/\S+:11:\d+: maps and lists are nested more than 100 levels deep here\n {2}hint: /],
    ["1000 levels of block nesting", /^error: file:\/\/\S+:\d+:\d+: maps and lists are nested more than 100 levels deep here\n/],
    [
      "an alias inside its own anchor",
      /^error: file:\/\/\S+:10:23: spec\.kubelet\.config\.self: alias \*r is inside the value anchored as &r/,
    ],
    ["an alias before its anchor", /^error: file:\/\/\S+:10:\d+: spec\.kubelet\.config\.a: alias \*nope has no anchor &nope before it\n/],
    ["an alias bomb", /^error: file:\/\/\S+:\d+:\d+: cannot expand the aliases of YAML document 1: /],
    [
      "a 5 MB CA",
      /^error: file:\/\/\S+: the configuration is 5,243,\d+ bytes; berth reads at most 1,048,576 bytes from one source\n {2}hint: /,
    ],
  ];
  for (const [name, expected] of cases) {
    const r = await runBerth(["config", "check", "-c", await config(SEEDS[name]!)]);
    assert.equal(r.code, 1, `${name}: ${r.stderr}`);
    assert.match(r.stderr, expected, name);
    assertWellFormed(r, name);
  }
});

test("item 7: 20,000 unknown keys print 20 errors and how many more there are", async () => {
  const r = await runBerth(["config", "check", "-c", await config(SEEDS["20,000 unknown keys"]!)]);
  assert.equal(r.code, 1);
  assertWellFormed(r, "20,000 unknown keys");
  const errors = errorLines(r);
  assert.equal(errors.length, 21);
  assert.match(errors[0]!, /^error: file:\/\/\S+:10:5: spec\.kubelet\.k0: unknown field `k0`$/);
  assert.equal(errors[20], "error: … and 19,980 more errors (20,000 in all)");
});

test("item 7: 200,000 unknown keys are refused up front by size", async () => {
  const lines = [HEAD, "  kubelet:\n"];
  for (let i = 0; i < 200_000; i++) lines.push(`    k${i}: 1\n`);
  const r = await runBerth(["config", "check", "-c", await config(lines.join(""))]);
  assert.equal(r.code, 1);
  assert.match(
    r.stderr,
    /^error: file:\/\/\S+: the configuration is 2,\d{3},\d{3} bytes; berth reads at most 1,048,576 bytes from one source\n/,
  );
  assertWellFormed(r, "200,000 unknown keys");
});

// ---------------------------------------------------------------- item 8: config check agrees with init
test("item 8: what the config phase refused after config check passed is now refused by config check, with file:line:column", async () => {
  const cases: Array<[string, RegExp]> = [
    [
      "maxPods: 1e32",
      /^error: file:\/\/\S+:11:16: spec\.kubelet\.config\.maxPods: maxPods must be an integer from 1 to 2147483647, got 1e\+32\n/,
    ],
    [
      "a newline in a kubelet flag",
      /^error: file:\/\/\S+:11:9: spec\.kubelet\.flags\[0\]: kubelet flag "--v=1\\nerror: forged" contains a control character/,
    ],
  ];
  const more: Array<[string, string, RegExp]> = [
    [
      "a blank search domain",
      `${HEAD}  instance:\n    network:\n      domains: ["ok.example", " "]\n`,
      /:11:\d+: spec\.instance\.network\.domains\[1\]: " " cannot be a search domain/,
    ],
    [
      "a service name ending in .service",
      `${HEAD}  instance:\n    environment:\n      kubelet.service:\n        A: b\n`,
      /:12:9: spec\.instance\.environment\["kubelet\.service"\]: "kubelet\.service" is not a systemd service name/,
    ],
    [
      "an unknown CEL variable",
      `${HEAD}  kubelet:\n    maxPodsExpression: foo + 1\n`,
      /:10:24: spec\.kubelet\.maxPodsExpression: maxPodsExpression "foo \+ 1": unknown variable/,
    ],
    [
      "a containerd config version 4",
      `${HEAD}  containerd:\n    config: "version = 4"\n`,
      /:10:13: spec\.containerd\.config: spec\.containerd\.config declares version = 4/,
    ],
  ];
  for (const [name, text, expected] of [...cases.map(([n, e]) => [n, SEEDS[n]!, e] as const), ...more]) {
    const src = await rootWith(text);
    const check = await runBerth(["config", "check", ...src]);
    assert.equal(check.code, 1, `${name}: ${check.stdout}${check.stderr}`);
    assert.match(check.stderr, expected, name);
    assertWellFormed(check, name);
    // The config phase runs the very same validation.
    const demo = await runBerth(["demo", ...src, "--dry-run"]);
    assert.equal(demo.code, 1, name);
    assert.equal(errorLines(demo).join("\n"), errorLines(check).join("\n"), name);
  }
});

test("item 8: an error only the node's facts reveal points at the source line of its field", async () => {
  // containerd 1.7 (the demo profile) reads only config version 2: nothing config check could know.
  const src = await rootWith(SEEDS["version 3 containerd config on containerd 1.7"]!);
  const check = await runBerth(["config", "check", ...src]);
  assert.equal(check.code, 0, check.stderr);
  const demo = await runBerth(["demo", ...src, "--dry-run"]);
  assert.equal(demo.code, 1);
  assert.match(
    demo.stderr,
    /^error: file:\/\/\S+:10:13: spec\.containerd\.config: .*this node runs containerd 1\.7\.27, which reads only version 2\n/m,
  );
  assertWellFormed(demo, "containerd version 3");
});

// ---------------------------------------------------------------- item 9: error output cannot be forged
test("item 9: control characters in user strings are printed escaped: one error is exactly its two lines", async () => {
  const r = await runBerth(["config", "check", "-c", await config(SEEDS["a newline in an environment variable name"]!)]);
  assert.equal(r.code, 1);
  assertWellFormed(r, "environment variable name");
  assert.equal(r.stderr.split("\n").length, 3, r.stderr);
  assert.ok(r.stderr.includes('"A\\nerror: forged\\n  hint: forged" is not a valid environment variable name'), r.stderr);
  assert.doesNotMatch(r.stderr, /^error: forged/m);

  const forged = "x\nerror: forged\n  hint: forged";
  for (const [args, label] of [
    [["config", "check", "-c", `file:///nonexistent/${forged}`], "a source URL"],
    [["config", "dump", "--format", forged], "a usage error"],
    [["config", "check", "-c", "file:///x", "extra\u001b[2Jargument"], "an extra argument with a terminal escape"],
  ] as const) {
    const u = await runBerth([...args]);
    assert.notEqual(u.code, 0, label);
    assert.doesNotMatch(u.stderr, /^error: forged|^ {2}hint: forged/m, label);
    // eslint-disable-next-line no-control-regex
    assert.doesNotMatch(u.stderr, /\u001b/, label);
    assert.equal(errorLines(u).length, 1, `${label}: ${u.stderr}`);
  }
});

test("item 9: an unknown command or config subcommand is printed escaped, so it cannot forge an error or hint line", async () => {
  for (const args of [["bogus\nerror: forged"], ["config", "x\nhint: forged"]]) {
    const r = await runBerth(args);
    assert.equal(r.code, 2, args.join(" "));
    const lines = r.stderr.trimEnd().split("\n");
    assert.equal(lines.length, 2, r.stderr);
    assert.match(lines[0]!, /^error: unknown (command|config subcommand) '.+\\n(error|hint): forged'$/);
    assert.match(lines[1]!, /^ {2}hint: /);
  }
});
