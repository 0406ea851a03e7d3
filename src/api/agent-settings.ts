/**
 * The agent's effective settings: berth's defaults overlaid with the
 * `spec.agent` section of the BerthConfig (each field validated by
 * schema.ts; what needs the defaults filled in, here). Validation and the
 * agent (src/agent/) both resolve them through this module.
 *
 * Defaults react faster than Gardener's node agent and node-problem-detector's
 * health-checker, but never storm: a repair needs both several consecutive
 * failed probes AND a minimum failing time, repairs of one unit back off
 * exponentially, and a restart budget caps them per window. The table in
 * docs/agent.md puts them side by side.
 */
import type { AgentSettings } from "./types.ts";
import { fail, ok, type BerthError, type Result } from "../util/result.ts";

export const DEFAULT_LISTEN_ADDRESS = "127.0.0.1:10260";
export const DEFAULT_KUBELET_HEALTHZ_URL = "http://127.0.0.1:10248/healthz";

/** Every setting present; durations in ms. */
export type ResolvedAgentSettings = Required<AgentSettings>;

export const AGENT_DEFAULTS: ResolvedAgentSettings = Object.freeze({
  intervalMs: 2_000,
  fastIntervalMs: 500,
  probeTimeoutMs: 2_000,
  failureThreshold: 3,
  failureWindowMs: 5_000,
  minUptimeMs: 10_000,
  restartBudget: 3,
  budgetWindowMs: 10 * 60_000,
  backoffInitialMs: 5_000,
  backoffMaxMs: 2 * 60_000,
  kubeletHealthzUrl: DEFAULT_KUBELET_HEALTHZ_URL,
  listenAddress: DEFAULT_LISTEN_ADDRESS,
});

/**
 * Overlay `over` on the defaults and check what only makes sense once the
 * defaults are filled in (the schema checks each field and pairs given
 * together; here a value given alone is checked against a default).
 */
export function resolveAgentSettings(over: AgentSettings | undefined, source = "spec.agent"): Result<ResolvedAgentSettings> {
  const s: ResolvedAgentSettings = { ...AGENT_DEFAULTS };
  for (const [k, v] of Object.entries(over ?? {})) {
    if (v !== undefined) (s as Record<string, unknown>)[k] = v;
  }
  const errors: BerthError[] = [];
  const where = (field: keyof AgentSettings) => ({ source, path: `${source}.${field}` });
  const positive: Array<keyof AgentSettings> = [
    "intervalMs",
    "fastIntervalMs",
    "probeTimeoutMs",
    "failureThreshold",
    "restartBudget",
    "budgetWindowMs",
    "backoffInitialMs",
    "backoffMaxMs",
  ];
  for (const f of positive) {
    const v = s[f];
    if (typeof v !== "number" || !Number.isFinite(v) || v <= 0) {
      errors.push({
        code: "config.invalid-value",
        message: `${f} must be a positive number, not ${JSON.stringify(v)}`,
        where: where(f),
        hint: `remove it to use the default (${AGENT_DEFAULTS[f]})`,
      });
    }
  }
  for (const f of ["failureWindowMs", "minUptimeMs"] as const) {
    const v = s[f];
    if (typeof v !== "number" || !Number.isFinite(v) || v < 0) {
      errors.push({
        code: "config.invalid-value",
        message: `${f} must be 0 or more, not ${JSON.stringify(v)}`,
        where: where(f),
        hint: `remove it to use the default (${AGENT_DEFAULTS[f]})`,
      });
    }
  }
  if (errors.length) return fail(...errors);
  if (s.backoffInitialMs > s.backoffMaxMs) {
    errors.push({
      code: "config.invalid-value",
      message: `backoffInitialMs (${s.backoffInitialMs}) is greater than backoffMaxMs (${s.backoffMaxMs})`,
      where: where(over?.backoffInitialMs !== undefined ? "backoffInitialMs" : "backoffMaxMs"),
      hint: "make backoffMaxMs at least backoffInitialMs",
    });
  }
  // A probe that may outlive the interval would overlap the next one.
  if (s.probeTimeoutMs > s.intervalMs) {
    errors.push({
      code: "config.invalid-value",
      message: `probeTimeoutMs (${s.probeTimeoutMs}) is greater than intervalMs (${s.intervalMs})`,
      where: where(over?.probeTimeoutMs !== undefined ? "probeTimeoutMs" : "intervalMs"),
      hint: "make probeTimeoutMs at most intervalMs",
    });
  }
  if (s.fastIntervalMs > s.intervalMs) {
    errors.push({
      code: "config.invalid-value",
      message: `fastIntervalMs (${s.fastIntervalMs}) is greater than intervalMs (${s.intervalMs})`,
      where: where(over?.fastIntervalMs !== undefined ? "fastIntervalMs" : "intervalMs"),
      hint: "the fast interval (bootstrapping or failing) must not be slower than the normal one",
    });
  }
  if (!parseListenAddress(s.listenAddress)) {
    errors.push({
      code: "config.invalid-address",
      message: `${JSON.stringify(s.listenAddress)} is not a valid host:port listen address`,
      where: where("listenAddress"),
      hint: "write host:port, e.g. 127.0.0.1:10260 or [::1]:10260",
    });
  }
  try {
    const u = new URL(s.kubeletHealthzUrl);
    if (u.protocol !== "http:") throw new Error("not http");
  } catch {
    errors.push({
      code: "config.invalid-url",
      message: `kubeletHealthzUrl ${JSON.stringify(s.kubeletHealthzUrl)} is not an http:// URL`,
      where: where("kubeletHealthzUrl"),
      hint: `e.g. ${DEFAULT_KUBELET_HEALTHZ_URL}`,
    });
  }
  return errors.length ? fail(...errors) : ok(s);
}

/** `host:port` / `[v6]:port` → parts; port 0 is allowed (the OS picks one: tests). */
export function parseListenAddress(addr: string): { host: string; port: number } | undefined {
  const m = /^\[([0-9a-fA-F:.]+)\]:(\d{1,5})$/.exec(addr) ?? /^([A-Za-z0-9.-]+):(\d{1,5})$/.exec(addr);
  if (!m) return undefined;
  const port = Number(m[2]);
  if (port > 65535) return undefined;
  return { host: m[1] as string, port };
}
