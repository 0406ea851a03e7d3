/**
 * The boot timeline as a text Gantt chart: one line per bar (its offsets
 * from boot and duration in seconds, then a bar of characters scaled to the
 * width given), the critical path marked, then the totals and berth's own
 * share. Pure: the same timeline and width give the same bytes.
 */
import type { Bar, Owner, Timeline } from "./model.ts";
import { axisTicks, secondsLabel } from "./path.ts";

const LABEL_MAX = 40;
const NUMBERS = "     start       end      took  ";
const MIN_CHART = 10;

const s3 = (ms: number): string => (ms / 1000).toFixed(3);

/** Where offsets are counted from, in words. */
export function originPhrase(t: Timeline): string {
  const at = t.origin.at ? ` (${t.origin.at})` : "";
  if (t.origin.kind === "kernel") return `offsets from the kernel's start${at}`;
  if (t.origin.kind === "userspace") return `offsets from systemd's start${at}`;
  return `offsets from the run phase's start${at}`;
}

function labelOf(b: Bar, width: number): string {
  const text = `${b.parent ? "  " : ""}${b.label}`;
  return text.length > width ? `${text.slice(0, width - 1)}…` : text.padEnd(width);
}

function chartRow(b: Bar, endMs: number, cols: number): string {
  const scale = endMs > 0 ? cols / endMs : 0;
  const c0 = Math.min(cols - 1, Math.floor(b.startMs * scale));
  const c1 = Math.max(c0 + 1, Math.min(cols, Math.ceil(b.endMs * scale)));
  return `${" ".repeat(c0)}${(b.critical ? "█" : "░").repeat(c1 - c0)}`.trimEnd();
}

function axisRow(endMs: number, cols: number): string {
  const row = Array.from({ length: cols + 8 }, () => " ");
  for (const t of axisTicks(endMs, Math.max(1, Math.floor(cols / 10)))) {
    const c = endMs > 0 ? Math.round((t / endMs) * cols) : 0;
    const label = `|${secondsLabel(t)}`;
    if (c + label.length > row.length) continue;
    if (row.slice(Math.max(0, c - 1), c + label.length).some((ch) => ch !== " ")) continue;
    for (let i = 0; i < label.length; i++) row[c + i] = label[i] as string;
  }
  return row.join("").trimEnd();
}

const OWNER_WORDS: Record<Owner, string> = {
  kernel: "kernel",
  "cloud-init": "cloud-init",
  berth: "berth",
  containerd: "containerd",
  kubelet: "kubelet",
  systemd: "systemd",
};

function summary(t: Timeline): string[] {
  const { totals } = t;
  const lines: string[] = [];
  const at: string[] = [];
  if (totals.kubeletActiveMs !== undefined) at.push(`kubelet active at ${s3(totals.kubeletActiveMs)} s`);
  if (totals.startupFinishedMs !== undefined) at.push(`systemd's startup finished at ${s3(totals.startupFinishedMs)} s`);
  at.push(`the last bar ends at ${s3(totals.endMs)} s`);
  lines.push(`${at.join("; ")}.`);
  const cp = totals.criticalPath;
  const parts = Object.entries(cp.byOwner).map(([o, ms]) => `${OWNER_WORDS[o as Owner]} ${s3(ms)} s`);
  if (cp.idleMs > 0) parts.push(`between bars ${s3(cp.idleMs)} s`);
  lines.push(`critical path (█, *): ${t.criticalPath.length} bar(s), ${s3(cp.barsMs + cp.gapsMs)} s: ${parts.join(", ")}.`);
  const b = totals.berth;
  if (b.spanMs > 0) {
    const pct = (b.shareOfBoot * 100).toFixed(1);
    const w = b.waitingMs;
    lines.push(
      `berth's own share: ${s3(b.ownMs)} s of ${s3(totals.endMs)} s (${pct} %); inside its ${s3(b.spanMs)} s it waited ` +
        `${s3(w.containerd)} s on containerd, ${s3(w.kubelet)} s on the kubelet, ${s3(w.systemd)} s on systemd.`,
    );
  }
  for (const n of t.notes) lines.push(`note: ${n}`);
  return lines;
}

/** The chart for a terminal `width` columns wide (at least the labels, numbers and 10 columns of bars). */
export function renderTimelineText(t: Timeline, opts: { width: number }): string {
  const lines = [`berth boot timeline: ${originPhrase(t)}; times in seconds`, ""];
  if (t.bars.length === 0) {
    lines.push("no bars: neither systemd's timestamps nor the run phase's steps were available");
    for (const n of t.notes) lines.push(`note: ${n}`);
    return `${lines.join("\n")}\n`;
  }
  const labelWidth = Math.min(LABEL_MAX, Math.max(...t.bars.map((b) => b.label.length + (b.parent ? 2 : 0))));
  const cols = Math.max(MIN_CHART, opts.width - 2 - labelWidth - NUMBERS.length - 1);
  const endMs = t.totals.endMs;
  lines.push(`  ${"".padEnd(labelWidth)}${NUMBERS}${axisRow(endMs, cols)}`);
  for (const b of t.bars) {
    const nums = `${s3(b.startMs).padStart(10)}${s3(b.endMs).padStart(10)}${s3(b.durationMs).padStart(10)}  `;
    lines.push(`${b.critical ? "* " : "  "}${labelOf(b, labelWidth)}${nums}${chartRow(b, endMs, cols)}${b.open ? " …" : ""}`);
  }
  lines.push("", ...summary(t));
  return `${lines.join("\n")}\n`;
}
