/**
 * Rules that need the whole merged config (nodeadm's ValidateNodeConfig and
 * berth's cross-field agent checks). Field-level rules are in schema.ts and
 * already ran per document. Unlike nodeadm, every problem is reported, not
 * just the first.
 */
import { fail, ok, type BerthError, type Location, type Result } from "../util/result.ts";
import type { MergedConfig } from "./types.ts";
import { resolveAgentSettings } from "./agent-settings.ts";
import { parseToml } from "../util/toml.ts";
import { userConfigSchema } from "./containerd-config.ts";
import type { MaxPodsEvaluator } from "./rules.ts";

export interface ValidateOptions {
  /**
   * The CEL evaluator (render/max-pods.ts loadMaxPodsEvaluator()), to check
   * spec.kubelet.maxPodsExpression as far as it can be without the node's
   * facts. Loading CEL costs ~100 ms, so callers pass it only when an
   * expression is set; without it the expression is checked when rendered.
   */
  maxPodsEvaluator?: MaxPodsEvaluator;
}

const REQUIRED: ReadonlyArray<{ field: "name" | "apiServerEndpoint" | "certificateAuthority" | "cidr"; what: string; example: string }> = [
  { field: "name", what: "the cluster name", example: "name: my-cluster" },
  {
    field: "apiServerEndpoint",
    what: "the API server endpoint",
    example: "apiServerEndpoint: https://ABCD.gr7.us-west-2.eks.amazonaws.com",
  },
  { field: "certificateAuthority", what: "the cluster CA (base64)", example: "certificateAuthority: LS0tLS1CRUdJTi..." },
  { field: "cidr", what: "the service CIDR", example: "cidr: 10.100.0.0/16" },
];

function describeSources(sources: readonly string[]): string {
  if (sources.length === 0) return "no configuration sources";
  if (sources.length === 1) return `the one source ${sources[0]}`;
  return `the ${sources.length} merged sources ${sources.join(", ")}`;
}

/** Validate the merged config; returns it unchanged when valid, else every error found. */
export function validateConfig(merged: MergedConfig, opts: ValidateOptions = {}): Result<MergedConfig> {
  const errors: BerthError[] = [];
  const where = (path: string): Location => (merged.sources.length === 1 ? { source: merged.sources[0]!, path } : { path });
  if (merged.sources.length === 0) {
    return fail({
      code: "config.no-config",
      message: "no NodeConfig was found in any configuration source",
      hint: "provide a node.eks.aws/v1alpha1 NodeConfig in user data or a file under the config directory (--config-source)",
    });
  }
  const cluster = merged.nodeConfig.cluster ?? {};
  for (const r of REQUIRED) {
    const v = cluster[r.field];
    if (v === undefined || v === "")
      errors.push({
        code: "config.missing-field",
        message: `${r.what} (spec.cluster.${r.field}) is missing after merging ${describeSources(merged.sources)}`,
        where: where(`spec.cluster.${r.field}`),
        hint:
          `set it under spec.cluster in one of the sources, e.g. ` +
          `\`${r.example}\`${r.field === "name" ? " (check for misspelled keys)" : ""}`,
      });
  }
  if (cluster.enableOutpost === true && !cluster.id)
    errors.push({
      code: "config.missing-field",
      message:
        `the cluster ID (spec.cluster.id) is required when spec.cluster.enableOutpost is true, and is missing after ` +
        `merging ${describeSources(merged.sources)}`,
      where: where("spec.cluster.id"),
      hint: "set spec.cluster.id to the Outposts local cluster's ID, or remove enableOutpost",
    });
  // containerd.config after the merge: each source's TOML parsed alone, but two sources can mix
  // the schema versions (version = 2 in one, a version 3 plugin table in another).
  const toml = merged.nodeConfig.containerd?.config;
  if (toml !== undefined && toml.trim() !== "") {
    const parsed = parseToml(toml);
    const us = parsed.ok ? userConfigSchema(parsed.value) : undefined;
    if (!parsed.ok)
      errors.push({
        code: "config.invalid-toml",
        message: `spec.containerd.config is not valid TOML after merging ${describeSources(merged.sources)}: ${parsed.message}`,
        where: where("spec.containerd.config"),
        hint: "fix the TOML in the sources",
      });
    else if (us && !us.ok) for (const e of us.errors) errors.push({ ...e, where: where(e.where?.path ?? "spec.containerd.config") });
  }
  const expression = merged.nodeConfig.kubelet?.maxPodsExpression;
  if (expression && opts.maxPodsEvaluator) {
    const checked = opts.maxPodsEvaluator.check(expression);
    if (!checked.ok) for (const e of checked.errors) errors.push({ ...e, where: where(e.where?.path ?? "spec.kubelet.maxPodsExpression") });
  }
  // The agent's cross-field rules (against its defaults too: `intervalMs:
  // 1000` alone conflicts with the default probe deadline) live in one place,
  // the agent's own settings resolver, so `config check` and `berth agent`
  // can never disagree.
  const agent = resolveAgentSettings(merged.berth.agent);
  if (!agent.ok)
    for (const e of agent.errors)
      errors.push({
        ...e,
        message: `${e.message} after merging ${describeSources(merged.sources)}`,
        where: where(e.where?.path ?? "spec.agent"),
      });
  return errors.length ? fail(...errors) : ok(merged);
}
