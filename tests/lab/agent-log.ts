/**
 * berth-agent's log, read live from a lab node's journal: the agent runs
 * from the installed package as berth-agent.service, and its pino JSON lines
 * (one per event, on stdout → journald) are what the fault tests and
 * bench/agent-faults.ts observe. Times are the agent's own (`time`, the
 * host's clock: nodes share it), never the journal's arrival time.
 */
import type { LabNode } from "./lab.ts";

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
  /** Journal entries from this time on (µs since the epoch). */
  private readonly fromUs: number;
  private stopped = false;
  private readonly polling: Promise<void>;

  /**
   * Reads berth-agent.service's journal from now on (start it before restarting the agent), re-reading it
   * every 100 ms. Polling, not `journalctl -f`: a follower was seen to miss the first entries of the unit's
   * freshly restarted process (the agent's `agent.start` line) while later ones arrived, whereas reading
   * the journal again always has them. Times are the agent's own, so polling does not blur any figure.
   */
  constructor(private readonly node: LabNode) {
    this.fromUs = Date.now() * 1000;
    this.polling = this.poll();
  }

  private async poll(): Promise<void> {
    while (!this.stopped) {
      await this.refresh().catch(() => undefined);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** Re-reads the unit's entries (only what its processes wrote, not systemd's own lines about it). */
  async refresh(): Promise<void> {
    const since = `--since=@${Math.floor(this.fromUs / 1e6)}`;
    const r = await this.node.exec(["journalctl", "--no-pager", "-o", "json", since, `_SYSTEMD_UNIT=${AGENT_UNIT}`], { timeoutMs: 10_000 });
    const lines: AgentLogLine[] = [];
    const other: string[] = [];
    for (const raw of r.stdout.split("\n")) {
      if (!raw.trim()) continue;
      let e: { __REALTIME_TIMESTAMP?: string; MESSAGE?: unknown };
      try {
        e = JSON.parse(raw) as typeof e;
      } catch {
        continue;
      }
      if (Number(e.__REALTIME_TIMESTAMP) < this.fromUs) continue;
      const m = e.MESSAGE;
      const msg = typeof m === "string" ? m : Array.isArray(m) ? Buffer.from(m as number[]).toString("utf8") : "";
      const p = parseAgentLine(msg);
      if (p) lines.push(p);
      else if (msg.trim()) other.push(msg);
    }
    this.lines.splice(0, this.lines.length, ...lines);
    this.other.splice(0, this.other.length, ...other);
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

  async stop(): Promise<void> {
    this.stopped = true;
    await this.polling;
  }
}
