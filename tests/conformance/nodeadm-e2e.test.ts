/**
 * nodeadm conformance: every case and step of
 * ../shared/conformance/nodeadm-e2e/cases.yaml (BERTH_SHARED_DIR overrides
 * the shared dir) through the REAL CLI — `node dist/berth.mjs init --skip run
 * --root <scratch> -c ...` as a child process — against the IMDS and EC2
 * stand-ins on loopback, one scratch node root per case.
 *
 * The bundle is what ships, so that is what is tested; scripts/test.sh builds
 * it before the tests run (this file builds it too when it is missing).
 * When the startup snapshot exists (dist/snapshot/, see scripts/build.mjs),
 * every case runs a second time through bin/berth, which starts the config
 * phase from it: both ways of running berth must meet the contract.
 * BERTH_E2E_CLI=bundle or =bin runs only one of them.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { mkdtemp, mkdir, readFile, readdir, rm, writeFile, cp, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import YAML from "yaml";
import { parse as parseToml } from "smol-toml";
import { startImdsStandIn, type ImdsStandIn } from "../standins/imds-server.ts";
import { startEc2StandIn } from "../standins/ec2-server.ts";
import { sortKeys } from "../../src/util/json.ts";

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const SHARED = process.env.BERTH_SHARED_DIR ? path.resolve(process.env.BERTH_SHARED_DIR) : path.resolve(REPO, "../shared");
const E2E = path.join(SHARED, "conformance/nodeadm-e2e");
const CASES_DIR = path.join(E2E, "cases");
const BUNDLE = path.join(REPO, "dist/berth.mjs");
// Built before the cases are registered: whether the snapshot exists decides which runs there are.
if (!existsSync(BUNDLE)) execFileSync(process.execPath, [path.join(REPO, "scripts/build.mjs")], { cwd: REPO, stdio: "inherit" });
type Cli = "bundle" | "bin";
const CLIS: Cli[] = (["bundle", "bin"] as const).filter(
  (c) => (process.env.BERTH_E2E_CLI ?? c) === c && (c === "bundle" || existsSync(path.join(REPO, "dist/snapshot/berth.blob"))),
);

type FileMap = Record<string, string>;
interface Step {
  command?: string;
  source?: string;
  sources?: string[];
  args?: string[];
  kubelet?: string;
  expect?: "ok" | "fail";
  json?: FileMap;
  exact?: FileMap;
  toml?: FileMap;
  yaml?: FileMap;
  json_spec?: FileMap;
  contains?: FileMap;
  not_contains?: FileMap;
  absent?: string[];
  before?: FileMap;
  remove?: string[];
  berth_differs?: Record<string, Record<string, unknown>>;
}
interface Case {
  kubelet?: string;
  containerd?: string;
  instance_type?: string;
  before?: FileMap;
  steps: Step[];
}

const KNOWN_CASE_KEYS = new Set(["kubelet", "containerd", "instance_type", "before", "steps"]);
const KNOWN_STEP_KEYS = new Set(["command", "source", "sources", "args", "kubelet", "expect", "json", "exact", "toml", "yaml", "json_spec", "contains", "not_contains", "absent", "before", "remove", "berth_differs"]);

// Loaded at module level so node:test can register one subtest per case and step.
if (!existsSync(path.join(E2E, "cases.yaml"))) {
  throw new Error(`conformance cases not found at ${E2E}; set BERTH_SHARED_DIR to the shared directory`);
}
const CASES = YAML.parse(readFileSync(path.join(E2E, "cases.yaml"), "utf8"), { maxAliasCount: -1 }) as Record<string, Case>;

/** Why each `expect: fail` step must fail (cases.yaml comments), keyed `case#step`. */
const FAILURE_REASONS: Record<string, RegExp> = {
  "containerdv1-config#3": /containerd 1\.|version 3|v3/i,
  "containerdv1-runtime-config-nvidia#2": /containerd 1\.|version 3|v3/i,
  "containerdv1-runtime-config-neuron#2": /containerd 1\.|version 3|v3/i,
  "config-cache#3": /spec\.cluster|required|missing/i,
  "config-check#2": /name-not-real/,
};

let ec2: { url: string; close(): Promise<void> | void } | undefined;
const scratches: string[] = [];

before(async () => {
  ec2 = await startEc2StandIn();
});
after(async () => {
  await ec2?.close();
  for (const d of scratches) await rm(d, { recursive: true, force: true });
});

/** `1.7` → `1.7.0`; version files on real nodes carry a full version. */
const fullVersion = (v: string): string => (/^\d+\.\d+$/.test(v) ? `${v}.0` : v);

async function writeNodeFile(root: string, hostPath: string, content: string): Promise<void> {
  const p = path.join(root, hostPath);
  await mkdir(path.dirname(p), { recursive: true });
  await writeFile(p, content);
}

/** A fresh node root: the facts every case assumes (README.md) plus the case's own files. */
async function makeNode(name: string, c: Case): Promise<{ root: string; cwd: string }> {
  const root = await mkdtemp(path.join(tmpdir(), `berth-e2e-${name}-`));
  scratches.push(root);
  await writeNodeFile(root, "/etc/eks/containerd-version.txt", `${fullVersion(String(c.containerd ?? "1.7.27"))}\n`);
  // sysfs: the suite's mock CPU/node trees, and the `online` list every case relies on (2 CPUs).
  const mock = path.join(E2E, "infra/mock");
  for (const [from, to] of [["cpu", "sys/devices/system/cpu"], ["node", "sys/devices/system/node"]] as const) {
    if (existsSync(path.join(mock, from))) await cp(path.join(mock, from), path.join(root, to), { recursive: true });
  }
  await writeNodeFile(root, "/sys/devices/system/cpu/online", "0-1\n");
  for (const [p, content] of Object.entries(c.before ?? {})) await writeNodeFile(root, p, content);
  // Relative file:// sources name files of the case dir: a copy of it is the working directory.
  const cwd = path.join(root, "berth-case");
  await cp(path.join(CASES_DIR, name), cwd, { recursive: true });
  return { root, cwd };
}

interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

function runCli(cli: Cli, args: string[], cwd: string, env: NodeJS.ProcessEnv): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    // Async spawn: the stand-ins answer from this process's event loop.
    const child = cli === "bin"
      ? spawn(path.join(REPO, "bin/berth"), args, { cwd, env, stdio: ["ignore", "pipe", "pipe"] })
      : spawn(process.execPath, [BUNDLE, ...args], { cwd, env, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

function nodeEnv(imds: ImdsStandIn): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  // Only what a node would have; nothing from the developer's AWS setup leaks in.
  for (const k of ["PATH", "LANG", "TZ", "SYSTEMROOT"]) if (process.env[k] !== undefined) env[k] = process.env[k];
  return {
    ...env,
    HOME: tmpdir(),
    AWS_EC2_METADATA_SERVICE_ENDPOINT: imds.url,
    AWS_ENDPOINT_URL_EC2: ec2!.url,
    AWS_REGION: "us-west-2",
    AWS_ACCESS_KEY_ID: "AKIDBERTHCONFORMANCE",
    AWS_SECRET_ACCESS_KEY: "berth-conformance-secret",
    AWS_CONFIG_FILE: "/dev/null",
    AWS_SHARED_CREDENTIALS_FILE: "/dev/null",
    NO_PROXY: "127.0.0.1,localhost,::1",
  };
}

function setDotted(obj: Record<string, unknown>, dotted: string, value: unknown): void {
  const keys = dotted.split(".");
  let cur: Record<string, unknown> = obj;
  for (const k of keys.slice(0, -1)) {
    const next = cur[k];
    if (next === null || typeof next !== "object") cur[k] = {};
    cur = cur[k] as Record<string, unknown>;
  }
  cur[keys[keys.length - 1]!] = value;
}

async function nodeText(root: string, hostPath: string): Promise<string> {
  try {
    return await readFile(path.join(root, hostPath), "utf8");
  } catch (e) {
    throw new assert.AssertionError({ message: `${hostPath} was not written (${(e as NodeJS.ErrnoException).code})` });
  }
}
const caseText = (name: string, rel: string): Promise<string> => readFile(path.join(CASES_DIR, name, rel), "utf8");

async function checkStep(name: string, step: Step, root: string): Promise<void> {
  for (const [p, file] of Object.entries(step.json ?? {})) {
    const actual = JSON.parse(await nodeText(root, p)) as unknown;
    const expected = JSON.parse(await caseText(name, file)) as Record<string, unknown>;
    for (const [k, v] of Object.entries(step.berth_differs?.[p] ?? {})) setDotted(expected, k, v);
    assert.deepStrictEqual(sortKeys(actual), sortKeys(expected), `${p} vs ${file} (sorted JSON)`);
  }
  for (const [p, file] of Object.entries(step.json_spec ?? {})) {
    const actual = JSON.parse(await nodeText(root, p)) as { spec?: unknown };
    const expected = JSON.parse(await caseText(name, file)) as unknown;
    assert.deepStrictEqual(sortKeys(actual.spec), sortKeys(expected), `.spec of ${p} vs ${file}`);
  }
  for (const [p, file] of Object.entries(step.exact ?? {})) {
    assert.equal(await nodeText(root, p), await caseText(name, file), `${p} vs ${file} (byte for byte)`);
  }
  for (const [p, file] of Object.entries(step.toml ?? {})) {
    const actual = await nodeText(root, p);
    const expected = await caseText(name, file);
    assert.deepStrictEqual(parseToml(actual), parseToml(expected), `${p} vs ${file} (parsed TOML)`);
  }
  for (const [p, file] of Object.entries(step.yaml ?? {})) {
    assert.deepStrictEqual(YAML.parse(await nodeText(root, p)), YAML.parse(await caseText(name, file)), `${p} vs ${file} (parsed YAML)`);
  }
  // Like nodeadm's suite (grep), patterns match per line.
  for (const [p, re] of Object.entries(step.contains ?? {})) {
    const text = await nodeText(root, p);
    assert.match(text, new RegExp(re, "m"), `${p} should match /${re}/`);
  }
  for (const [p, re] of Object.entries(step.not_contains ?? {})) {
    const text = await nodeText(root, p);
    assert.doesNotMatch(text, new RegExp(re, "m"), `${p} should not match /${re}/`);
  }
  for (const p of step.absent ?? []) {
    await assert.rejects(stat(path.join(root, p)), { code: "ENOENT" }, `${p} should not exist`);
  }
}

for (const cli of CLIS) for (const [name, c] of Object.entries(CASES)) {
  test(`nodeadm-e2e${cli === "bin" ? " (bin/berth, startup snapshot)" : ""}: ${name}`, async (t) => {
    for (const k of Object.keys(c)) assert.ok(KNOWN_CASE_KEYS.has(k), `case ${name}: check kind '${k}' is not implemented by this suite`);
    const imds = await startImdsStandIn(c.instance_type ? { instanceType: c.instance_type } : {});
    t.after(() => imds.close());
    const { root, cwd } = await makeNode(name, c);
    const env = nodeEnv(imds);

    for (const [i, step] of c.steps.entries()) {
      const sources = step.sources ?? (step.source !== undefined ? [step.source] : []);
      await t.test(`step ${i + 1}: ${step.command ?? "init"} ${sources.join(" ")}${step.args?.length ? ` ${step.args.join(" ")}` : ""}`, async (st) => {
        for (const k of Object.keys(step)) assert.ok(KNOWN_STEP_KEYS.has(k), `step key '${k}' is not implemented by this suite`);
        for (const p of step.remove ?? []) await rm(path.join(root, p), { force: true });
        for (const [p, content] of Object.entries(step.before ?? {})) await writeNodeFile(root, p, content);
        await writeNodeFile(root, "/etc/eks/kubelet-version.txt", `v${String(step.kubelet ?? c.kubelet ?? "1.35.0")}\n`);

        const command = step.command ?? "init";
        const srcArgs = sources.flatMap((s) => ["-c", s]);
        let args: string[];
        if (command === "init") args = ["init", "--skip", "run", "--root", root, ...(step.args ?? []), ...srcArgs];
        else if (command === "config check") args = ["config", "check", "--root", root, ...(step.args ?? []), ...srcArgs];
        else throw new Error(`command '${command}' is not implemented by this suite`);

        const r = await runCli(cli, args, cwd, env);
        const transcript = `$ ${cli === "bin" ? "bin/berth" : "node dist/berth.mjs"} ${args.join(" ")}\n--- exit ${r.code}\n--- stdout\n${r.stdout}--- stderr\n${r.stderr}`;
        // Failures are user errors: a formatted message, never a stack trace.
        assert.doesNotMatch(r.stderr, /^\s+at .+:\d+:\d+\)?$/m, `stack trace printed\n${transcript}`);
        if ((step.expect ?? "ok") === "ok") {
          assert.equal(r.code, 0, `expected success\n${transcript}`);
        } else {
          assert.notEqual(r.code, 0, `expected failure\n${transcript}`);
          assert.match(r.stderr, /^error: /m, `expected a formatted error\n${transcript}`);
          // cases.yaml says only "fail"; make sure it fails for the reason the case is about.
          const reason = FAILURE_REASONS[`${name}#${i + 1}`];
          assert.ok(reason, `no expected failure reason recorded for ${name} step ${i + 1}; add one to FAILURE_REASONS`);
          assert.match(r.stderr, reason, `failed, but not for the expected reason\n${transcript}`);
          st.diagnostic(r.stderr.split("\n").filter((l) => l.startsWith("error: ")).join(" | "));
        }
        try {
          await checkStep(name, step, root);
        } catch (e) {
          if (e instanceof Error) e.message += `\n${transcript}`;
          throw e;
        }
      });
    }
  });
}

if (!CLIS.includes("bin") && process.env.BERTH_E2E_CLI === undefined) {
  test("nodeadm-e2e (bin/berth, startup snapshot)", (t) => t.skip("dist/snapshot/berth.blob was not built (scripts/build.mjs says why); bin/berth runs the bundle, covered above"));
}

// Guard: the suite must see every case (a YAML anchor or parse slip must not silently drop any).
test("nodeadm-e2e: every case in cases.yaml is registered", async () => {
  const names = (await readdir(CASES_DIR)).sort();
  for (const n of Object.keys(CASES)) assert.ok(names.includes(n), `case ${n} has no directory under cases/`);
  assert.ok(Object.keys(CASES).length >= 21, `only ${Object.keys(CASES).length} cases parsed`);
});
