/**
 * What the conformance tests share: nodeadm's e2e cases
 * (../shared/conformance/nodeadm-e2e, BERTH_SHARED_DIR overrides the shared
 * dir), a fresh node root per case, the environment of a node (IMDS stand-in
 * on plain http, EC2 stand-in on https with its CA in AWS_CA_BUNDLE), one run
 * of the shipped executable (tests/fixtures/cli.ts EXE), and the checks of a
 * step's expected files.
 */
import assert from "node:assert/strict";
import { after, before } from "node:test";
import { existsSync, readFileSync } from "node:fs";
import { cp, mkdir, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import YAML from "yaml";
import { parse as parseToml } from "smol-toml";
import type { ImdsStandIn } from "../standins/imds-server.ts";
import { startEc2StandIn, type Ec2StandIn } from "../standins/ec2-server.ts";
import { ensureRelease, EXE, NO_STACK, REPO, runBerth, type CliRun } from "../fixtures/cli.ts";
import { sortKeys } from "../../src/util/json.ts";

export const SHARED = process.env.BERTH_SHARED_DIR ? path.resolve(process.env.BERTH_SHARED_DIR) : path.resolve(REPO, "../shared");
export const E2E = path.join(SHARED, "conformance/nodeadm-e2e");
export const CASES_DIR = path.join(E2E, "cases");

export type FileMap = Record<string, string>;
export interface Step {
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
export interface Case {
  kubelet?: string;
  containerd?: string;
  instance_type?: string;
  before?: FileMap;
  steps: Step[];
}

export const KNOWN_CASE_KEYS = new Set(["kubelet", "containerd", "instance_type", "before", "steps"]);
export const KNOWN_STEP_KEYS = new Set([
  "command",
  "source",
  "sources",
  "args",
  "kubelet",
  "expect",
  "json",
  "exact",
  "toml",
  "yaml",
  "json_spec",
  "contains",
  "not_contains",
  "absent",
  "before",
  "remove",
  "berth_differs",
]);

/** cases.yaml, parsed at module level so node:test can register one subtest per case and step. */
export function loadCases(): Record<string, Case> {
  if (!existsSync(path.join(E2E, "cases.yaml"))) {
    throw new Error(`conformance cases not found at ${E2E}; set BERTH_SHARED_DIR to the shared directory`);
  }
  return YAML.parse(readFileSync(path.join(E2E, "cases.yaml"), "utf8"), { maxAliasCount: -1 }) as Record<string, Case>;
}

/** `1.7` → `1.7.0`; version files on real nodes carry a full version. */
const fullVersion = (v: string): string => (/^\d+\.\d+$/.test(v) ? `${v}.0` : v);

export async function writeNodeFile(root: string, hostPath: string, content: string | Uint8Array): Promise<void> {
  const p = path.join(root, hostPath);
  await mkdir(path.dirname(p), { recursive: true });
  await writeFile(p, content);
}

/**
 * A fresh node root (removed by the caller through `scratches`): the facts every case assumes
 * (README.md) plus the case's own files, and a copy of the case dir as the working directory
 * (relative file:// sources name files of the case dir).
 */
export async function makeNode(
  name: string,
  c: Pick<Case, "containerd" | "before">,
  scratches: string[],
): Promise<{ root: string; cwd: string }> {
  const root = await mkdtemp(path.join(tmpdir(), `berth-e2e-${name}-`));
  scratches.push(root);
  await writeNodeFile(root, "/etc/eks/containerd-version.txt", `${fullVersion(String(c.containerd ?? "1.7.27"))}\n`);
  // sysfs: the suite's mock CPU/node trees, and the `online` list every case relies on (2 CPUs).
  const mock = path.join(E2E, "infra/mock");
  for (const [from, to] of [
    ["cpu", "sys/devices/system/cpu"],
    ["node", "sys/devices/system/node"],
  ] as const) {
    if (existsSync(path.join(mock, from))) await cp(path.join(mock, from), path.join(root, to), { recursive: true });
  }
  await writeNodeFile(root, "/sys/devices/system/cpu/online", "0-1\n");
  for (const [p, content] of Object.entries(c.before ?? {})) await writeNodeFile(root, p, content);
  const cwd = path.join(root, "berth-case");
  await cp(path.join(CASES_DIR, name), cwd, { recursive: true });
  return { root, cwd };
}

/** Only what a node would have: IMDS on http, EC2 on https with its CA in AWS_CA_BUNDLE; nothing from the developer's AWS setup. */
export function nodeEnv(imds: ImdsStandIn, ec2: Ec2StandIn): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const k of ["PATH", "LANG", "TZ"]) if (process.env[k] !== undefined) env[k] = process.env[k];
  return {
    ...env,
    HOME: tmpdir(),
    AWS_EC2_METADATA_DISABLED: "",
    AWS_EC2_METADATA_SERVICE_ENDPOINT: imds.url,
    ...ec2.env(),
    AWS_CONFIG_FILE: "/dev/null",
    AWS_SHARED_CREDENTIALS_FILE: "/dev/null",
    NO_PROXY: "127.0.0.1,localhost,::1",
  };
}

/** The shipped executable with `args`, and a transcript for assertion messages. */
export async function runExe(args: string[], cwd: string, env: NodeJS.ProcessEnv): Promise<CliRun & { transcript: string }> {
  const r = await runBerth(args, { cwd, env });
  return {
    ...r,
    transcript: `$ ${path.basename(EXE)} ${args.join(" ")}\n--- exit ${r.code}\n--- stdout\n${r.stdout}--- stderr\n${r.stderr}`,
  };
}

/** A run that must succeed: exit 0, and never a stack trace. */
export function assertOk(r: CliRun & { transcript: string }): void {
  assert.doesNotMatch(r.stderr, NO_STACK, `stack trace printed\n${r.transcript}`);
  assert.equal(r.code, 0, `expected success\n${r.transcript}`);
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

/** The files a step expects on the node, compared the way cases.yaml says. */
export async function checkStep(name: string, step: Step, root: string): Promise<void> {
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

/**
 * A conformance test file's shared setup: the release executable, one https EC2 stand-in (`ec2()`), and
 * scratch node directories (`scratches`, removed in `after`).
 */
export function useConformanceSetup(): { ec2(): Ec2StandIn; scratches: string[] } {
  let ec2: Ec2StandIn | undefined;
  const scratches: string[] = [];
  before(async () => {
    ensureRelease();
    ec2 = await startEc2StandIn();
  });
  after(async () => {
    await ec2?.close();
    for (const d of scratches) await rm(d, { recursive: true, force: true });
  });
  return {
    ec2: () => {
      if (!ec2) throw new Error("the EC2 stand-in is not started yet (use it inside a test)");
      return ec2;
    },
    scratches,
  };
}
