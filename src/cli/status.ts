/**
 * `berth status`: the node's state for a person (or `--json` for tools):
 * phases done, each component's health and cause, the last repairs. Asks the
 * agent's /status; when the agent does not answer, falls back to the run
 * phase's status file and says so.
 *
 * Exit status: 0 when the agent answered and every component is healthy (or
 * stopped on purpose), 1 otherwise (something unhealthy, or no agent), 2 on
 * usage errors.
 */
import http from "node:http";
import { HostRoot } from "../host/root.ts";
import { EXIT_FAIL, EXIT_OK, parseCommand, usageError } from "./args.ts";
import type { AgentStatus, ComponentStatus } from "../agent/controller.ts";
import { isBootstrapDone, readRunStatus, type RunStatus, type StepOutcomeKind } from "../host/run-status.ts";
import { RUN_STATUS_PATH } from "../util/node-layout.ts";
import { errorMessage } from "../util/errors.ts";

const STATUS_HELP = `Usage: berth status [options]

Print the node's state: bootstrap phases done, containerd and kubelet health,
the last repairs by the agent.

Options:
      --json               machine-readable output
      --address HOST:PORT  the agent's status address (default 127.0.0.1:10260)
      --run-status PATH    the run phase's status file (default /run/berth/status.json)
      --root DIR           resolve the status file under DIR
      --timeout MS         how long to wait for the agent (default 2000)
  -h, --help               this help
`;

const STATUS_OPTIONS = {
  json: { type: "boolean" },
  address: { type: "string" },
  "run-status": { type: "string" },
  root: { type: "string" },
  timeout: { type: "string" },
  help: { type: "boolean", short: "h" },
} as const;

function getJson(url: string, timeoutMs: number): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false, timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => {
        if (res.statusCode !== 200) return reject(new Error(`${url} answered ${res.statusCode}`));
        try {
          resolve(JSON.parse(Buffer.concat(chunks).toString("utf8")));
        } catch (e) {
          reject(new Error(`${url}: not JSON: ${errorMessage(e)}`));
        }
      });
      res.on("error", reject);
    });
    req.on("timeout", () => req.destroy(new Error(`no answer from ${url} within ${timeoutMs} ms`)));
    req.on("error", reject);
  });
}

function isAgentStatus(v: unknown): v is AgentStatus {
  return (
    typeof v === "object" &&
    v !== null &&
    (v as { kind?: unknown }).kind === "berth-agent-status" &&
    Array.isArray((v as { components?: unknown }).components)
  );
}

/** "3m12s ago" from two ISO times. */
function ago(iso: string | undefined, nowIso: string): string {
  if (!iso) return "";
  const ms = Date.parse(nowIso) - Date.parse(iso);
  if (!Number.isFinite(ms)) return "";
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s ago`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m ago`;
}

const MARK: Record<string, string> = {
  healthy: "ok",
  stopped: "stopped",
  unknown: "?",
  failing: "FAILING",
  repairing: "REPAIRING",
  degraded: "DEGRADED",
};

/** One run phase step as `berth status` shows it: `error` is the cause of a failed step, `cause` that of any other. */
interface RunStepSummary {
  name: string;
  outcome: StepOutcomeKind;
  done: boolean;
  action?: string;
  cause?: string;
  error?: string;
  durationMs: number;
}

/** The run status file as `berth status` prints it (and `--json` under `run`). */
export interface RunSummary {
  bootstrapDone: boolean;
  result: RunStatus["result"];
  error?: string;
  phases: RunStepSummary[];
}

export function summarizeRun(s: RunStatus): RunSummary {
  const phases = s.steps.map((r): RunStepSummary => {
    const done = r.outcome === "ok" || r.outcome === "changed";
    const why = r.cause === undefined ? {} : r.outcome === "failed" ? { error: r.cause } : { cause: r.cause };
    return { name: r.step, outcome: r.outcome, done, ...(r.action ? { action: r.action } : {}), ...why, durationMs: r.durationMs };
  });
  return { bootstrapDone: isBootstrapDone(s), result: s.result, ...(s.error ? { error: s.error.message } : {}), phases };
}

function stepLine(p: RunStepSummary): string {
  if (p.outcome === "failed") return `  [ ] ${p.name}  error: ${p.error ?? "unknown"} (${p.durationMs} ms)`;
  if (p.outcome === "skipped") return `  [ ] ${p.name}  skipped: ${p.cause ?? "not run"}`;
  return `  [x] ${p.name}${p.action ? `: ${p.action}` : ""} (${p.durationMs} ms)`;
}

/** The human rendering (exported for tests). */
export function formatStatus(
  agent: AgentStatus | undefined,
  run: RunSummary | undefined,
  opts: { agentError?: string; address: string },
): string {
  const lines: string[] = [];
  const now = agent?.now ?? new Date().toISOString();
  if (agent) lines.push(`berth agent at ${opts.address}, up since ${agent.startedAt} (${ago(agent.startedAt, now)})`);
  else
    lines.push(
      `berth agent at ${opts.address} is not answering${opts.agentError ? ` (${opts.agentError})` : ""}; showing the run ` +
        `phase's status file`,
    );
  const boot = agent?.bootstrapDone ?? run?.bootstrapDone;
  const result = run?.result ? ` (run phase ${run.result})` : "";
  lines.push(`bootstrap: ${boot === undefined ? "unknown (no status file)" : boot ? `done${result}` : "in progress"}`);
  for (const p of run?.phases ?? []) lines.push(stepLine(p));
  if (run?.error) lines.push(`  run phase error: ${run.error}`);
  if (agent) {
    lines.push("components:");
    const w = Math.max(...agent.components.map((c) => c.name.length));
    for (const c of agent.components) {
      lines.push(
        `  ${c.name.padEnd(w)}  ${(MARK[c.health] ?? c.health).padEnd(9)}  since ${c.since} (${ago(c.since, now)})  restarts ` +
          `${c.restartsInWindow}, budget left ${c.budgetLeft}`,
      );
      if (c.health !== "healthy") lines.push(`  ${"".padEnd(w)}  cause: ${c.cause}`);
      if (c.unitState)
        lines.push(
          `  ${"".padEnd(w)}  unit ${c.unit}: ${c.unitState.activeState}/${c.unitState.subState}, pid ${c.unitState.mainPid}, ` +
            `systemd restarts ${c.unitState.nRestarts}`,
        );
      if (c.lastProbe)
        lines.push(
          `  ${"".padEnd(w)}  last probe ${c.lastProbe.ok ? "ok" : "failed"} in ${c.lastProbe.latencyMs} ms, ${ago(c.lastProbe.at, now)}`,
        );
    }
    const repairs = agent.components
      .flatMap((c: ComponentStatus) => c.repairs.map((r) => ({ ...r, name: c.name, unit: c.unit })))
      .sort((a, b) => a.at.localeCompare(b.at));
    lines.push(repairs.length ? "last repairs:" : "last repairs: none");
    for (const r of repairs.slice(-10)) {
      const outcome =
        r.recoveredAfterMs !== undefined ? `healthy ${r.recoveredAfterMs} ms later` : r.result ? `job ${r.result}` : "in progress";
      lines.push(`  ${r.at}  restart ${r.unit}: ${outcome}; cause: ${r.cause}`);
    }
  }
  return `${lines.join("\n")}\n`;
}

export async function statusCommand(argv: string[]): Promise<number> {
  const p = parseCommand(argv, STATUS_OPTIONS, "status", STATUS_HELP);
  if (typeof p === "number") return p;
  const v = p.values;
  const timeoutMs = v.timeout !== undefined ? Number(v.timeout) : 2000;
  if (!Number.isInteger(timeoutMs) || timeoutMs <= 0)
    return usageError(`--timeout must be a positive integer (ms), not '${v.timeout}'`, "status");
  const { DEFAULT_LISTEN_ADDRESS, parseListenAddress } = await import("../api/agent-settings.ts");
  const address = v.address ?? DEFAULT_LISTEN_ADDRESS;
  if (!parseListenAddress(address)) return usageError(`--address '${address}' is not host:port`, "status");
  const root = new HostRoot(v.root ?? "/");

  let agent: AgentStatus | undefined;
  let agentError: string | undefined;
  try {
    const body = await getJson(`http://${address}/status`, timeoutMs);
    if (isAgentStatus(body)) agent = body;
    else agentError = "its /status is not a berth agent status";
  } catch (e) {
    agentError = errorMessage(e);
  }
  const status = await readRunStatus(root.path(v["run-status"] ?? RUN_STATUS_PATH));
  const run = status && summarizeRun(status);
  const allGood = agent !== undefined && agent.components.every((c) => c.health === "healthy" || c.health === "stopped");
  if (v.json) {
    const runOut = run ? { bootstrapDone: run.bootstrapDone, result: run.result, error: run.error ?? null, phases: run.phases } : null;
    const out = { agent: agent ?? null, agentError: agentError ?? null, run: runOut, healthy: allGood };
    process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
  } else {
    process.stdout.write(formatStatus(agent, run, { address, ...(agentError ? { agentError } : {}) }));
  }
  return allGood ? EXIT_OK : EXIT_FAIL;
}
