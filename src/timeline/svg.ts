/**
 * The boot timeline as a picture: one bar per unit or step on a time axis
 * in seconds from boot, coloured by whose time it is (berth's own work, or
 * what it waits on), the critical path drawn solid, outlined and joined
 * by a line, the rest faded; above the chart, berth's own share of the boot
 * and the critical path split by owner. A self-contained SVG: no scripts,
 * no external fonts or images, generic font families only. Pure.
 */
import type { Bar, Owner, Timeline } from "./model.ts";
import { axisTicks, secondsLabel } from "./path.ts";
import { originPhrase } from "./text.ts";

const WIDTH = 1200;
const LEFT = 24;
const LABEL_W = 300;
const CHART_X = LEFT + LABEL_W;
const CHART_W = WIDTH - CHART_X - 70;
const ROW = 24;
const BAR_H = 14;
const HEADER = 212;

const COLOURS: Record<Owner | "idle", string> = {
  kernel: "#64748b",
  "cloud-init": "#7c3aed",
  berth: "#0f766e",
  containerd: "#ea580c",
  kubelet: "#2563eb",
  systemd: "#a8a29e",
  idle: "#e5e7eb",
};

const OWNER_NAMES: Record<Owner | "idle", string> = {
  kernel: "kernel",
  "cloud-init": "cloud-init",
  berth: "berth's own work",
  containerd: "containerd",
  kubelet: "kubelet",
  systemd: "systemd",
  idle: "between bars",
};

const esc = (s: string): string => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
const f1 = (n: number): string => String(Math.round(n * 10) / 10);
const sec = (ms: number): string => `${(ms / 1000).toFixed(2)} s`;
/** A hover text (a browser shows it as a tooltip; no script needed). */
const tooltip = (s: string): string => `<title>${esc(s)}</title>`;

function svgText(x: number, y: number, s: string, attrs = ""): string {
  return `<text x="${f1(x)}" y="${f1(y)}"${attrs ? ` ${attrs}` : ""}>${esc(s)}</text>`;
}

/** The stacked strip: the critical path by owner, left to right in a fixed order, each part labelled when wide enough. */
function shareStrip(t: Timeline, y: number): string[] {
  const cp = t.totals.criticalPath;
  const total = cp.barsMs + cp.gapsMs;
  if (total <= 0) return [];
  const order: Array<Owner | "idle"> = ["kernel", "cloud-init", "berth", "containerd", "kubelet", "systemd", "idle"];
  const out = [svgText(LEFT, y + 13, "critical path by owner", `font-size="12" fill="#374151"`)];
  let x = CHART_X;
  for (const o of order) {
    const ms = o === "idle" ? cp.idleMs : (cp.byOwner[o] ?? 0);
    if (ms <= 0) continue;
    const w = (ms / total) * CHART_W;
    const stroke = o === "berth" ? ` stroke="#111827" stroke-width="2"` : "";
    const tip = tooltip(`${OWNER_NAMES[o]}: ${sec(ms)}`);
    out.push(`<rect x="${f1(x)}" y="${y}" width="${f1(w)}" height="18" fill="${COLOURS[o]}"${stroke}>${tip}</rect>`);
    const label = `${o === "berth" ? "berth" : OWNER_NAMES[o]} ${sec(ms)}`;
    if (w > label.length * 6.2 + 6) {
      out.push(svgText(x + 4, y + 13, label, `font-size="11" fill="${o === "idle" || o === "systemd" ? "#111827" : "#ffffff"}"`));
    } else if (o === "berth") {
      // berth's part is the one this picture is about: named below the strip when it is too narrow to hold its label.
      out.push(svgText(x + w / 2, y + 32, label, `font-size="11" font-weight="bold" fill="${COLOURS.berth}" text-anchor="middle"`));
    }
    x += w;
  }
  return out;
}

function header(t: Timeline): string[] {
  const b = t.totals.berth;
  const w = b.waitingMs;
  const facts: string[] = [];
  if (t.totals.kubeletActiveMs !== undefined) facts.push(`kubelet active at ${sec(t.totals.kubeletActiveMs)}`);
  if (t.totals.startupFinishedMs !== undefined) facts.push(`systemd's startup finished at ${sec(t.totals.startupFinishedMs)}`);
  facts.push(`last bar ends at ${sec(t.totals.endMs)}`);
  const out = [
    svgText(LEFT, 30, "berth boot timeline", `font-size="20" font-weight="bold" fill="#111827"`),
    svgText(LEFT + 236, 30, `${originPhrase(t)}`, `font-size="13" fill="#4b5563"`),
    svgText(LEFT, 54, facts.join("  ·  "), `font-size="13" fill="#111827"`),
  ];
  if (b.spanMs > 0) {
    out.push(
      svgText(
        LEFT,
        82,
        `berth's own work: ${sec(b.ownMs)} of ${sec(t.totals.endMs)} (${(b.shareOfBoot * 100).toFixed(1)} % of the boot)`,
        `font-size="16" font-weight="bold" fill="${COLOURS.berth}"`,
      ),
      svgText(
        LEFT,
        102,
        `inside its phases (${sec(b.spanMs)}) berth waited ${sec(w.containerd)} on containerd, ` +
          `${sec(w.kubelet)} on the kubelet, ${sec(w.systemd)} on systemd`,
        `font-size="13" fill="#374151"`,
      ),
    );
  }
  out.push(...shareStrip(t, 114));
  let x = LEFT;
  for (const o of ["berth", "containerd", "kubelet", "systemd", "cloud-init", "kernel"] as Owner[]) {
    out.push(
      `<rect x="${x}" y="162" width="14" height="12" fill="${COLOURS[o]}"/>`,
      svgText(x + 19, 173, OWNER_NAMES[o], `font-size="12" fill="#374151"`),
    );
    x += 30 + OWNER_NAMES[o].length * 7;
  }
  out.push(
    `<rect x="${x}" y="162" width="28" height="12" fill="#9ca3af" stroke="#111827" stroke-width="2"/>`,
    svgText(x + 34, 173, "critical path (outlined, joined)", `font-size="12" fill="#374151"`),
    `<rect x="${x + 240}" y="162" width="28" height="12" fill="#9ca3af" fill-opacity="0.35"/>`,
    svgText(x + 274, 173, "off the critical path", `font-size="12" fill="#374151"`),
  );
  return out;
}

function axis(endMs: number, top: number, bottom: number): string[] {
  const out: string[] = [];
  const x = (ms: number): number => CHART_X + (endMs > 0 ? (ms / endMs) * CHART_W : 0);
  for (const tick of axisTicks(endMs, 12)) {
    out.push(`<line x1="${f1(x(tick))}" y1="${top}" x2="${f1(x(tick))}" y2="${bottom}" stroke="#e5e7eb" stroke-width="1"/>`);
    out.push(svgText(x(tick), top - 6, secondsLabel(tick), `font-size="11" fill="#4b5563" text-anchor="middle"`));
  }
  return out;
}

function barRow(b: Bar, i: number, endMs: number): string[] {
  const y = HEADER + 22 + i * ROW;
  const x = (ms: number): number => CHART_X + (endMs > 0 ? (ms / endMs) * CHART_W : 0);
  const x0 = x(b.startMs);
  const w = Math.max(2, x(b.endMs) - x0);
  const out: string[] = [];
  if (i % 2 === 0) out.push(`<rect x="${LEFT - 8}" y="${y - 5}" width="${WIDTH - LEFT}" height="${ROW}" fill="#f9fafb"/>`);
  const weight = b.critical ? ` font-weight="bold"` : "";
  out.push(svgText(LEFT + (b.parent ? 16 : 0), y + 11, b.label, `font-size="12" fill="#111827"${weight}`));
  const look = b.critical ? `stroke="#111827" stroke-width="1.5"` : `fill-opacity="0.35"`;
  const tip = `${b.label}: ${sec(b.startMs)} → ${sec(b.endMs)} (${sec(b.durationMs)})${b.detail ? ` — ${b.detail}` : ""}`;
  out.push(
    `<rect x="${f1(x0)}" y="${y}" width="${f1(w)}" height="${BAR_H}" rx="2" fill="${COLOURS[b.owner]}" ${look}>${tooltip(tip)}</rect>`,
  );
  const dur = sec(b.durationMs);
  const after = x0 + w + 5;
  const fits = after + dur.length * 6.5 < WIDTH - 4;
  out.push(svgText(fits ? after : x0 - 5, y + 11, dur, `font-size="11" fill="#4b5563"${fits ? "" : ` text-anchor="end"`}`));
  return out;
}

/** The critical path's joints: from each bar's end to the start of the bar after it. */
function pathLinks(t: Timeline, endMs: number): string[] {
  const x = (ms: number): number => CHART_X + (endMs > 0 ? (ms / endMs) * CHART_W : 0);
  const row = new Map(t.bars.map((b, i) => [b.id, { b, y: HEADER + 22 + i * ROW + BAR_H / 2 }]));
  const out: string[] = [];
  let prev: { b: Bar; y: number } | undefined;
  for (const link of t.criticalPath) {
    const r = row.get(link.id);
    if (!r) continue;
    if (prev) {
      const [x0, x1] = [x(prev.b.endMs), x(r.b.startMs)];
      const [y0, y1] = [prev.y + (r.y > prev.y ? BAR_H / 2 : -BAR_H / 2), r.y];
      out.push(`<path d="M${f1(x0)},${f1(y0)} V${f1(y1)} H${f1(Math.max(x0, x1))}" fill="none" stroke="#111827" stroke-width="1"/>`);
    }
    prev = r;
  }
  return out;
}

function markerLines(t: Timeline, endMs: number, top: number, bottom: number): string[] {
  const out: string[] = [];
  t.markers.forEach((m, i) => {
    const x = CHART_X + (endMs > 0 ? (m.atMs / endMs) * CHART_W : 0);
    const colour = m.id === "kubelet-active" ? COLOURS.kubelet : "#b91c1c";
    out.push(`<line x1="${f1(x)}" y1="${top}" x2="${f1(x)}" y2="${bottom}" stroke="${colour}" stroke-width="1.5" stroke-dasharray="6 3"/>`);
    out.push(svgText(x, bottom + 16 + i * 16, `${m.label} ${sec(m.atMs)}`, `font-size="12" fill="${colour}" text-anchor="end"`));
  });
  return out;
}

/** The whole picture. */
export function renderTimelineSvg(t: Timeline): string {
  const endMs = t.totals.endMs;
  const top = HEADER + 12;
  const bottom = HEADER + 16 + Math.max(1, t.bars.length) * ROW;
  const notesY = bottom + 24 + t.markers.length * 16;
  const height = notesY + t.notes.length * 18 + 16;
  const body = [
    `<rect width="${WIDTH}" height="${height}" fill="#ffffff"/>`,
    ...header(t),
    ...axis(endMs, top, bottom),
    ...t.bars.flatMap((b, i) => barRow(b, i, endMs)),
    ...pathLinks(t, endMs),
    ...markerLines(t, endMs, top, bottom),
    ...t.notes.map((n, i) => svgText(LEFT, notesY + i * 18, `note: ${n}`, `font-size="12" fill="#6b7280"`)),
  ];
  if (t.bars.length === 0)
    body.push(
      svgText(CHART_X, top + 30, "no bars: neither systemd's timestamps nor the run phase's steps were available", `font-size="14"`),
    );
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" ` +
      `viewBox="0 0 ${WIDTH} ${height}" font-family="sans-serif">`,
    `<title>berth boot timeline</title>`,
    ...body,
    "</svg>",
    "",
  ].join("\n");
}
