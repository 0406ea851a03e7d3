/**
 * berth-agent's log, read live from a lab node's journal: the agent runs
 * from the installed package as berth-agent.service, and its pino JSON lines
 * (one per event, on stdout → journald) are what the fault tests and
 * bench/agent-faults.ts observe. Times are the agent's own (`time`, the
 * host's clock: nodes share it), never the journal's arrival time.
 */
import type { Follower, LabNode } from "./lab.ts";

export const AGENT_UNIT = "berth-agent.service";

export interface AgentLogLine {
  /** The line's `time`, in ms since the epoch. */
  atMs: number;
  level: string;
  /** e.g. agent.start, agent.state, agent.repair, agent.repair-result, agent.budget-exhausted */
  event: string;
  component?: string;
  from?: string;
  to?: string;
  cause?: string;
  msg?: string;
  /** Every other field of the line (counts, durations, results). */
  fields: Record<string, unknown>;
}

const KNOWN = new Set(["time", "level", "event", "component", "from", "to", "cause", "msg", "app", "pid", "hostname"]);

export function parseAgentLine(line: string): AgentLogLine | undefined {
  if (!line.startsWith("{")) return undefined;
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return undefined;
  }
  if (typeof o.event !== "string" || typeof o.time !== "string") return undefined;
  const str = (k: string): string | undefined => (typeof o[k] === "string" ? o[k] : undefined);
  const fields: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(o)) if (!KNOWN.has(k)) fields[k] = v;
  const out: AgentLogLine = { atMs: Date.parse(o.time), level: str("level") ?? "", event: o.event, fields };
  for (const k of ["component", "from", "to", "cause", "msg"] as const) {
    const v = str(k);
    if (v !== undefined) out[k] = v;
  }
  return out;
}

export class AgentJournal {
  readonly lines: AgentLogLine[] = [];
  /** Lines of the agent's processes that are not berth's JSON (e.g. a runtime warning on stderr). */
  readonly other: string[] = [];
  private follower: Follower;

  /** Follows berth-agent.service's journal from now on (start it before restarting the agent). */
  constructor(node: LabNode) {
    // Only what the unit's processes wrote (not systemd's own lines about the unit, as -u would add).
    this.follower = node.follow(["journalctl", "--no-pager", "-f", "-o", "cat", "-n", "0", `_SYSTEMD_UNIT=${AGENT_UNIT}`], (l) => {
      const p = parseAgentLine(l);
      if (p) this.lines.push(p);
      else if (l.trim()) this.other.push(l);
    });
  }

  /** Lines at or after `sinceMs`. */
  since(sinceMs: number): AgentLogLine[] {
    return this.lines.filter((l) => l.atMs >= sinceMs);
  }

  find(sinceMs: number, pred: (l: AgentLogLine) => boolean): AgentLogLine | undefined {
    return this.lines.find((l) => l.atMs >= sinceMs && pred(l));
  }

  /** The component's health as of its latest state change at or after `sinceMs`. */
  health(component: string, sinceMs: number): string | undefined {
    let h: string | undefined;
    for (const l of this.lines) if (l.atMs >= sinceMs && l.event === "agent.state" && l.component === component && l.to) h = l.to;
    return h;
  }

  async waitFor(what: string, pred: (l: AgentLogLine) => boolean, sinceMs: number, timeoutMs = 60_000): Promise<AgentLogLine> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const l = this.find(sinceMs, pred);
      if (l) return l;
      if (Date.now() > end)
        throw new Error(`berth-agent: no ${what} within ${timeoutMs} ms; its log since then:\n${this.describe(sinceMs)}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  /** Waits until `cond` holds (checked every 10 ms). */
  async until(what: string, cond: () => boolean, sinceMs: number, timeoutMs = 60_000): Promise<void> {
    const end = Date.now() + timeoutMs;
    while (!cond()) {
      if (Date.now() > end)
        throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; berth-agent's log:\n${this.describe(sinceMs)}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  describe(sinceMs: number, last = 40): string {
    const ls = this.since(sinceMs).slice(-last);
    const other = this.other.slice(-5).map((l) => `  (other) ${l}`);
    return [
      ...ls.map(
        (l) =>
          `  ${new Date(l.atMs).toISOString()} ${l.level} ${l.event} ${l.component ?? ""} ${l.from ?? ""}${l.to ? `→${l.to}` : ""} ${l.cause ?? l.msg ?? ""}`,
      ),
      ...other,
    ].join("\n");
  }

  stop(): Promise<void> {
    return this.follower.stop();
  }
}
