/**
 * The config phase: resolve config (sources + cache) → validate → gather
 * facts → plan → apply (or dry run) → write the cache.
 *
 * Every step before apply is read-only, and apply itself stages everything
 * before it renames anything, so an invalid config or a failed step writes
 * nothing. Cache semantics follow nodeadm: with `--skip config` the phase is
 * skipped unless the cached spec differs from the sources' (then it is forced,
 * so a stale cache never wins over new user data).
 *
 * Unless it is a dry run, the phase runs under the berth lock
 * (src/host/lock.ts), from reading the cache to writing it: the caller's
 * (`berth init` holds it through the run phase too) or one taken here.
 */
import type { MergedConfig, ValidationMode } from "../api/types.ts";
import type { ImdsClient, NodeFacts } from "../facts/types.ts";
import type { HostRoot } from "../host/root.ts";
import type { ApplyReport } from "../host/fs.ts";
import type { BerthLock } from "../host/lock.ts";
import type { Plan } from "../plan/types.ts";
import { escapeControl, fail, ok, type Result } from "../util/result.ts";
import { errorMessage, toBerthErrors } from "../util/errors.ts";
import { locateErrors } from "../api/locate.ts";
import { resolveConfig, writeCache, type CacheState, type ResolvedConfig } from "../sources/cache.ts";
import type { SourcesReport } from "../sources/index.ts";
import { buildPlan, type PlanOptions } from "../plan/plan.ts";
import { applyPlan } from "../host/fs.ts";

export interface ConfigPhaseOptions {
  sources: string[];
  /** `--config-cache PATH` (a host path, re-rooted under `root`). */
  cachePath?: string;
  root: HostRoot;
  dryRun?: boolean;
  /** `--skip config`: only resolve (and refresh a stale cache) — see the module comment. */
  skipConfig?: boolean;
  env?: NodeJS.ProcessEnv;
  /** Facts supplied by the caller (demo, tests) instead of gathered from IMDS/EC2/sysfs. */
  facts?: NodeFacts;
  /** IMDS client to use; created lazily (only when needed) otherwise. */
  imds?: ImdsClient;
  berthPath?: string;
  /** Progress lines for the operator (stderr in the CLI). */
  log?: (line: string) => void;
  /** The berth lock, when the caller holds it; otherwise the phase takes it (not for a dry run). */
  lock?: BerthLock;
  /** `--validate`; the sources' BerthConfig `spec.validation` otherwise (src/sources/cache.ts). */
  validation?: ValidationMode;
  /** What reading the sources found: the validation mode and the unknown fields warn mode dropped (printed by the CLI). */
  onSources?: (report: SourcesReport) => void;
}

export interface ConfigPhaseReport {
  config: MergedConfig;
  /** Where the config came from (sources, or the cache as a fallback). */
  origin: ResolvedConfig["origin"];
  cacheState: CacheState;
  /** True when `--skip config` skipped the write (cache unchanged). */
  skipped: boolean;
  /** The facts the plan was rendered from (absent when the phase was skipped). */
  facts?: NodeFacts;
  plan?: Plan;
  apply?: ApplyReport;
  cacheWritten: boolean;
}

/** An IMDS client on demand: only configs that read `imds://` or facts that need it pay for it. */
export function lazyImds(env: NodeJS.ProcessEnv | undefined): ImdsClient {
  let client: Promise<ImdsClient> | undefined;
  const get = (): Promise<ImdsClient> => (client ??= import("../facts/imds.ts").then((m) => m.createImdsClient(env ? { env } : undefined)));
  return {
    get: async (p) => (await get()).get(p),
    getBytes: async (p) => (await get()).getBytes(p),
  };
}

/** The hint of an exception from a shell call that ends the config phase. */
const NOTHING_WRITTEN = "nothing was written; fix the cause and run berth again";

export async function runConfigPhase(opts: ConfigPhaseOptions): Promise<Result<ConfigPhaseReport>> {
  if (opts.lock || opts.dryRun) return configPhase(opts);
  const { withLock } = await import("../host/lock.ts");
  return withLock(
    opts.root,
    { command: "berth config phase", ...(opts.env ? { env: opts.env } : {}), ...(opts.log ? { log: opts.log } : {}) },
    (lock) => configPhase({ ...opts, lock }),
  );
}

async function configPhase(opts: ConfigPhaseOptions): Promise<Result<ConfigPhaseReport>> {
  const rawLog = opts.log ?? (() => undefined);
  // Progress and warning lines quote user strings (source URLs, paths): each stays one line, whatever they hold.
  const log = (line: string): void => rawLog(escapeControl(line));
  // BERTH_TIMING=1: one line per step with ms since process start, for bench/config-phase.ts profiling.
  const timing = (opts.env ?? process.env).BERTH_TIMING === "1";
  const mark = (step: string): void => {
    if (timing) log(`timing: ${step} at ${performance.now().toFixed(1)} ms`);
  };
  mark("config-phase start");
  // The API modules (zod schemas, YAML) are the largest part of the phase's load time and
  // sources/cache.ts imports them one after another as it needs them; start them all now
  // so their file reads overlap. Failures surface where they are really imported.
  void Promise.all([import("../api/decode.ts"), import("../api/merge.ts"), import("../api/validate.ts"), import("../api/encode.ts")]).catch(
    () => undefined,
  );
  const imds = opts.imds ?? lazyImds(opts.env);

  let resolved;
  try {
    resolved = await resolveConfig(opts.sources, opts.cachePath, {
      root: opts.root,
      imds,
      ...(opts.validation ? { validation: opts.validation } : {}),
      ...(opts.onSources ? { onSources: opts.onSources } : {}),
    });
  } catch (e) {
    return fail(...toBerthErrors(e, "config.resolve", "could not load the configuration", NOTHING_WRITTEN));
  }
  mark("config resolved");
  if (!resolved.ok) return resolved;
  // resolveConfig validates (sources and cache alike), so the config is valid here.
  const { config, origin, cacheState, warnings } = resolved.value;
  for (const w of warnings) log(`warning: ${w.message}${w.hint ? ` (${w.hint})` : ""}`);
  log(`config: ${config.sources.join(", ") || "(none)"}${opts.cachePath !== undefined ? ` [cache: ${cacheState}]` : ""}`);

  // nodeadm: `--skip config` is overridden when the cache exists but its spec changed.
  const forced = opts.cachePath !== undefined && cacheState === "changed";
  if (opts.skipConfig && !forced) {
    return ok({ config, origin, cacheState, skipped: true, cacheWritten: false });
  }
  if (opts.skipConfig && forced) log("config: cached spec differs from the sources; running the config phase anyway");

  let facts: NodeFacts;
  if (opts.facts) facts = opts.facts;
  else {
    try {
      const { gatherFacts } = await import("../facts/index.ts");
      const f = await gatherFacts(config.nodeConfig, {
        root: opts.root,
        imds,
        ...(opts.env ? { env: opts.env } : {}),
        onWarning: (w) => log(`warning: ${w.message}${w.hint ? ` (${w.hint})` : ""}`),
      });
      if (!f.ok) return f;
      facts = f.value;
    } catch (e) {
      return fail(...toBerthErrors(e, "facts.failed", "could not gather node facts", NOTHING_WRITTEN));
    }
  }

  // CEL is ~100 ms to load; only a config with a maxPodsExpression pays for it.
  const planOpts: PlanOptions = opts.berthPath ? { berthPath: opts.berthPath } : {};
  if (config.nodeConfig.kubelet?.maxPodsExpression) {
    try {
      const { loadMaxPodsEvaluator } = await import("../render/max-pods.ts");
      planOpts.kubelet = { maxPodsEvaluator: await loadMaxPodsEvaluator() };
    } catch (e) {
      const what = "could not load the CEL evaluator for spec.kubelet.maxPodsExpression";
      return fail(...toBerthErrors(e, "config.cel-unavailable", what, NOTHING_WRITTEN));
    }
  }
  mark("facts gathered");
  const plan = buildPlan(config, facts, planOpts);
  mark("plan built");
  // What only rendering finds (it depends on the node's facts) still points at the source line.
  if (!plan.ok) return { ok: false, errors: locateErrors(plan.errors, resolved.value.locate) };

  const applied = await applyPlan(plan.value, opts.root, { dryRun: opts.dryRun ?? false, ...(opts.lock ? { lock: opts.lock } : {}) });
  mark("plan applied");
  if (!applied.ok) return applied;
  for (const t of applied.value.staleTemps ?? []) log(`removed ${t}, a temp file left by an interrupted berth run`);

  let cacheWritten = false;
  if (opts.cachePath !== undefined && !opts.dryRun) {
    // nodeadm treats a failed cache write as non-fatal; so does berth, but says so.
    try {
      await writeCache(opts.cachePath, config, opts.root, undefined, opts.lock);
      cacheWritten = true;
    } catch (e) {
      log(`warning: could not write the config cache ${opts.cachePath}: ${errorMessage(e)}`);
    }
  }
  return ok({ config, origin, cacheState, skipped: false, facts, plan: plan.value, apply: applied.value, cacheWritten });
}
