/**
 * `files`: what berth wrote still matches what it would write now. The
 * config phase's own steps, read-only: gather the node's facts
 * (src/facts/index.ts, through the doctor's shared IMDS and EC2 clients),
 * build the plan (src/plan/plan.ts), and compare it with the disk as a dry
 * run of the apply (src/host/fs.ts, with the unified diffs of
 * src/plan/diff.ts). A drifted file is named with its first changed lines;
 * the detail carries a short diff.
 */
import { gatherFacts } from "../../facts/index.ts";
import { applyPlan, type FileDiff } from "../../host/fs.ts";
import { readTextIfPresent } from "../../host/read.ts";
import type { HostRoot } from "../../host/root.ts";
import { buildPlan, type PlanOptions } from "../../plan/plan.ts";
import { loadMaxPodsEvaluator } from "../../render/max-pods.ts";
import { UNIT_DIR, UNITS } from "../../util/node-layout.ts";
import { toBerthErrors } from "../../util/errors.ts";
import type { DoctorDeps, DoctorState } from "../deps.ts";
import { excerpt, failed, fromErrors, passed } from "../outcome.ts";
import type { CheckOutcome, CheckSpec } from "../types.ts";

/** Diff lines shown per drifted file, and drifted files shown, in the detail. */
const DIFF_LINES = 14;
const DIFF_FILES = 3;

/**
 * The berth executable the node's units name (ExecStart= of berth-config.service):
 * the plan is rebuilt with it, so a doctor run from another path does not read as drift.
 */
export async function unitsBerthPath(root: HostRoot): Promise<string | undefined> {
  const text = await readTextIfPresent(root.path(`${UNIT_DIR}/${UNITS.config}`));
  return text ? /^ExecStart=(\/\S+) init\b/m.exec(text)?.[1] : undefined;
}

/** `-old +new` of a diff's first changed lines, for the one-line finding. Pure. */
export function firstChange(diffText: string): string {
  const lines = diffText.split("\n");
  const removed = lines.find((l) => l.startsWith("-") && !l.startsWith("---"));
  const added = lines.find((l) => l.startsWith("+") && !l.startsWith("+++"));
  const parts = [removed, added].filter((l): l is string => l !== undefined).map((l) => `${l[0]}${excerpt(l.slice(1), 60)}`);
  if (parts.length) return parts.join(" ");
  const mode = lines.find((l) => l.startsWith("new mode") || l.startsWith("new owner"));
  return mode ?? "changed";
}

/** The files finding from a dry run's diffs. Pure. */
export function driftOutcome(diffs: readonly FileDiff[], planned: number): CheckOutcome {
  if (diffs.length === 0) return passed(`all ${planned} files berth writes match what the NodeConfig gives now`);
  const what = (d: FileDiff): string =>
    d.kind === "create"
      ? `${d.path} (missing)`
      : d.kind === "remove"
        ? `${d.path} (should not exist)`
        : `${d.path} (${firstChange(d.text)})`;
  const detail: string[] = [];
  for (const d of diffs.slice(0, DIFF_FILES)) {
    const lines = d.text.replace(/\n$/, "").split("\n");
    detail.push(...lines.slice(0, DIFF_LINES));
    if (lines.length > DIFF_LINES)
      detail.push(`… ${lines.length - DIFF_LINES} more diff lines (berth init --skip run --dry-run shows them all)`);
  }
  if (diffs.length > DIFF_FILES) detail.push(`… and ${diffs.length - DIFF_FILES} more file(s)`);
  return failed(
    `${diffs.length} file(s) differ from what berth would write now: ${diffs.map(what).join("; ")}`,
    "rewrite them from the NodeConfig with `berth init --skip run` (its --dry-run shows the diff); a change meant to stay belongs in " +
      "the NodeConfig (spec.kubelet.config, spec.containerd.config)",
    detail,
  );
}

export function filesCheck(deps: DoctorDeps, state: DoctorState, deadlineMs: number): CheckSpec {
  return {
    id: "files",
    needs: ["config", "imds", "ec2"],
    deadlineMs,
    async run(ctx) {
      const config = state.config;
      if (!config) return failed("no NodeConfig from the config check", "see the config check");
      ctx.step(
        "gathering the node's facts (IMDS, EC2, version files, sysfs)",
        "see the imds and ec2 checks; a version probe (kubelet --version) may hang",
      );
      const region = state.identity?.region ?? "";
      let facts;
      try {
        const f = await gatherFacts(config.nodeConfig, {
          root: deps.root,
          imds: deps.imds,
          ec2: () => Promise.resolve(deps.ec2(region)),
          env: deps.env,
        });
        if (!f.ok) return fromErrors("fail", f.errors, "the config phase would fail the same way: fix this first");
        facts = f.value;
      } catch (e) {
        return fromErrors(
          "fail",
          toBerthErrors(e, "facts.failed", "could not gather node facts"),
          "the config phase would fail the same way: fix this first",
        );
      }
      state.facts = facts;
      const opts: PlanOptions = { berthPath: (await unitsBerthPath(deps.root)) ?? deps.berthPath };
      if (config.nodeConfig.kubelet?.maxPodsExpression) opts.kubelet = { maxPodsEvaluator: await loadMaxPodsEvaluator() };
      const plan = buildPlan(config, facts, opts);
      if (!plan.ok) return fromErrors("fail", plan.errors, "the config phase would fail the same way: fix the NodeConfig");
      ctx.step("comparing the plan with the files on disk");
      const cmp = await applyPlan(plan.value, deps.root, { dryRun: true });
      if (!cmp.ok) return fromErrors("fail", cmp.errors, "check the paths berth writes (docs/files.md)");
      return driftOutcome(cmp.value.diffs ?? [], plan.value.files.length);
    },
  };
}
