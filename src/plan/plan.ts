/**
 * (config, facts) → Plan: every file the node needs, from every renderer.
 * Pure: no I/O, same input → same plan (files sorted by path).
 */
import type { MergedConfig } from "../api/types.ts";
import type { NodeFacts } from "../facts/types.ts";
import { fail, ok, type BerthError, type Result } from "../util/result.ts";
import type { Plan, PlannedFile } from "./types.ts";
import { renderKubelet, type RenderKubeletOptions } from "../render/kubelet.ts";
import { renderContainerd } from "../render/containerd.ts";
import { renderEnvironment } from "../render/environment.ts";
import { renderResolved } from "../render/resolved.ts";
import { renderUnits } from "../render/units.ts";
import { renderLocalStorage } from "../render/local-storage.ts";
import { renderOutpostHosts } from "../render/hosts.ts";
import { DEFAULT_BERTH_PATH } from "../util/node-layout.ts";

export interface PlanOptions {
  /** Where the berth executable lives on the node, for the units that call it. */
  berthPath?: string;
  /** Inputs the kubelet renderer takes beyond (spec, facts), e.g. the CEL maxPods evaluator when an expression is set. */
  kubelet?: RenderKubeletOptions;
}

/** What one renderer contributed: files, paths to remove, or errors. */
export interface PlanPart {
  files?: PlannedFile[];
  absent?: string[];
  errors?: BerthError[];
}

const toPart = (r: Result<PlannedFile[]>): PlanPart => (r.ok ? { files: r.value } : { errors: r.errors });

/** Build the plan; collects the errors of every renderer rather than stopping at the first. */
export function buildPlan(config: MergedConfig, facts: NodeFacts, opts: PlanOptions = {}): Result<Plan> {
  const spec = config.nodeConfig;
  const env = renderEnvironment(spec);
  return combinePlan([
    toPart(renderKubelet(spec, facts, opts.kubelet ?? {})),
    toPart(renderContainerd(spec, facts)),
    env.ok ? { files: env.value.files, absent: env.value.absent } : { errors: env.errors },
    toPart(renderResolved(spec)),
    toPart(renderUnits(config.berth, { berthPath: opts.berthPath ?? DEFAULT_BERTH_PATH })),
    toPart(renderLocalStorage(spec, facts.instanceStoreDisks ?? [])),
    toPart(renderOutpostHosts(spec, facts)),
  ]);
}

/**
 * Merge the renderers' parts into one plan: every error of every part; a
 * path claimed by two renderers (or planned and marked absent) is an error,
 * since the result would depend on call order; files and absent paths sorted.
 */
export function combinePlan(parts: PlanPart[]): Result<Plan> {
  const errors: BerthError[] = parts.flatMap((p) => p.errors ?? []);
  if (errors.length) return fail(...errors);
  const files = parts.flatMap((p) => p.files ?? []);
  const owner = new Map<string, string>();
  for (const f of files) {
    const prev = owner.get(f.path);
    if (prev !== undefined) {
      errors.push({
        code: "plan.duplicate-path",
        message: `${f.path} is rendered by both ${prev} and ${f.component}`,
        where: { path: f.path },
        hint: "this is a bug in berth's renderers; please report it",
      });
    } else owner.set(f.path, f.component);
  }
  const absent = [...new Set(parts.flatMap((p) => p.absent ?? []))].filter((p) => {
    if (!owner.has(p)) return true;
    errors.push({
      code: "plan.absent-conflict",
      message: `${p} is rendered by ${owner.get(p)} and also marked for removal`,
      where: { path: p },
      hint: "this is a bug in berth's renderers; please report it",
    });
    return false;
  });
  if (errors.length) return fail(...errors);
  const byPath = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);
  files.sort((a, b) => byPath(a.path, b.path));
  absent.sort(byPath);
  return ok({ files, absent });
}
