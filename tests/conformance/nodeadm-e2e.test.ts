/**
 * nodeadm conformance: every case and step of
 * ../shared/conformance/nodeadm-e2e/cases.yaml (BERTH_SHARED_DIR overrides
 * the shared dir) through what ships — the release executable
 * dist/release/berth-linux-<arch> (tests/fixtures/cli.ts EXE), `init --skip
 * run --root <scratch> -c ...` or `config check` as a child process — against
 * the IMDS stand-in (plain http, as on EC2) and the EC2 stand-in (https only,
 * its per-run CA given through AWS_CA_BUNDLE), one scratch node root per case.
 * Shared pieces: ./harness.ts.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdir, rm } from "node:fs/promises";
import path from "node:path";
import { startImdsStandIn } from "../standins/imds-server.ts";
import { NO_STACK } from "../fixtures/cli.ts";
import {
  CASES_DIR,
  checkStep,
  KNOWN_CASE_KEYS,
  KNOWN_STEP_KEYS,
  loadCases,
  makeNode,
  nodeEnv,
  runExe,
  useConformanceSetup,
  writeNodeFile,
} from "./harness.ts";

const CASES = loadCases();

/** Why each `expect: fail` step must fail (cases.yaml comments), keyed `case#step`. */
const FAILURE_REASONS: Record<string, RegExp> = {
  "containerdv1-config#3": /containerd 1\.|version 3|v3/i,
  "containerdv1-runtime-config-nvidia#2": /containerd 1\.|version 3|v3/i,
  "containerdv1-runtime-config-neuron#2": /containerd 1\.|version 3|v3/i,
  "config-cache#3": /spec\.cluster|required|missing/i,
  "config-check#2": /name-not-real/,
};

const setup = useConformanceSetup();
const scratches = setup.scratches;

for (const [name, c] of Object.entries(CASES)) {
  test(`nodeadm-e2e: ${name}`, { timeout: 300_000 }, async (t) => {
    for (const k of Object.keys(c)) assert.ok(KNOWN_CASE_KEYS.has(k), `case ${name}: check kind '${k}' is not implemented by this suite`);
    const imds = await startImdsStandIn(c.instance_type ? { instanceType: c.instance_type } : {});
    t.after(() => imds.close());
    const { root, cwd } = await makeNode(name, c, scratches);
    const env = nodeEnv(imds, setup.ec2());
    for (const [i, step] of c.steps.entries()) {
      const sources = step.sources ?? (step.source !== undefined ? [step.source] : []);
      await t.test(
        `step ${i + 1}: ${step.command ?? "init"} ${sources.join(" ")}${step.args?.length ? ` ${step.args.join(" ")}` : ""}`,
        async (st) => {
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

          const r = await runExe(args, cwd, env);
          const transcript = r.transcript;
          // Failures are user errors: a formatted message, never a stack trace.
          assert.doesNotMatch(r.stderr, NO_STACK, `stack trace printed\n${transcript}`);
          if ((step.expect ?? "ok") === "ok") {
            assert.equal(r.code, 0, `expected success\n${transcript}`);
          } else {
            assert.notEqual(r.code, 0, `expected failure\n${transcript}`);
            assert.match(r.stderr, /^error: /m, `expected a formatted error\n${transcript}`);
            // cases.yaml says only "fail"; make sure it fails for the reason the case is about.
            const reason = FAILURE_REASONS[`${name}#${i + 1}`];
            assert.ok(reason, `no expected failure reason recorded for ${name} step ${i + 1}; add one to FAILURE_REASONS`);
            assert.match(r.stderr, reason, `failed, but not for the expected reason\n${transcript}`);
            st.diagnostic(
              r.stderr
                .split("\n")
                .filter((l) => l.startsWith("error: "))
                .join(" | "),
            );
          }
          try {
            await checkStep(name, step, root);
          } catch (e) {
            if (e instanceof Error) e.message += `\n${transcript}`;
            throw e;
          }
        },
      );
    }
  });
}

// Guard: the suite must see every case (a YAML anchor or parse slip must not silently drop any).
test("nodeadm-e2e: every case in cases.yaml is registered", async () => {
  const names = (await readdir(CASES_DIR)).sort();
  for (const n of Object.keys(CASES)) assert.ok(names.includes(n), `case ${n} has no directory under cases/`);
  assert.ok(Object.keys(CASES).length >= 21, `only ${Object.keys(CASES).length} cases parsed`);
});
