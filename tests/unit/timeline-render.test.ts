// The boot timeline's renderers (src/timeline/text.ts, svg.ts) on the
// recorded inputs of timeline-model.test.ts. The SVG's look is checked in a
// real browser by timeline-cli.test.ts; here its content and self-containment.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { buildTimeline, type Timeline, type TimelineInput } from "../../src/timeline/model.ts";
import { renderTimelineText } from "../../src/timeline/text.ts";
import { renderTimelineSvg } from "../../src/timeline/svg.ts";

const FIXTURES = path.resolve(import.meta.dirname, "../fixtures/timeline");
const timeline = (name: string): Timeline => buildTimeline(JSON.parse(readFileSync(path.join(FIXTURES, name), "utf8")) as TimelineInput);

test("text: a header, one line per bar with its offsets, a bar scaled to the width, the critical path starred, the totals", () => {
  const t = timeline("ec2-like.json");
  const out = renderTimelineText(t, { width: 120 });
  const lines = out.split("\n");
  assert.equal(lines[0], "berth boot timeline: offsets from the kernel's start (2026-06-12T10:00:00.000Z); times in seconds");
  assert.match(lines[2] as string, /^ +start +end +took {2}\|0s +\|5s +\|10s$/);
  const rows = lines.slice(3, 3 + t.bars.length);
  assert.equal(rows.length, 16);
  for (const r of rows) assert.ok(r.length <= 120, `wider than 120: ${r}`);
  assert.equal(rows[0], "* kernel                                  0.000     1.050     1.050  ██████");
  const cri = rows.find((r) => r.includes("CRI ready")) as string;
  assert.match(cri, /^\* {3}CRI ready +8\.470 +8\.820 +0\.350 +█+$/);
  const containerd = rows.find((r) => r.startsWith("  containerd.service")) as string;
  assert.match(containerd, /^ {2}containerd\.service +8\.185 +8\.460 +0\.275 +░+$/, "off the critical path: light bar, no star");
  // The bar is where its offsets say: the chart spans 0..10.140 s over the columns after the numbers.
  const chartStart = (lines[2] as string).indexOf("|0s");
  const cols = 120 - chartStart - 1;
  assert.equal(cri.indexOf("█") - chartStart, Math.floor((8470 / 10140) * cols));
  const tail = lines.slice(4 + t.bars.length).join("\n");
  assert.match(tail, /kubelet active at 10\.060 s; systemd's startup finished at 10\.150 s; the last bar ends at 10\.140 s\./);
  assert.match(tail, /critical path \(█, \*\): 13 bar\(s\), 10\.140 s: kernel 2\.310 s, cloud-init 3\.570 s, berth 0\.855 s/);
  assert.match(tail, /berth's own share: 0\.840 s of 10\.140 s \(8\.3 %\); inside its 2\.750 s it waited 1\.770 s on containerd/);
  assert.equal(renderTimelineText(t, { width: 120 }), out, "the same input gives the same bytes");
});

test("text: a narrow terminal still gets 10 columns of bars; labels too long are cut", () => {
  const t = timeline("ec2-like.json");
  const out = renderTimelineText(t, { width: 40 });
  const row = out.split("\n").find((l) => l.includes("berth-config.service")) as string;
  assert.match(row, /^\* berth-config\.service \(config phase\) +5\.020/);
  const long = { ...t, bars: t.bars.map((b) => (b.id === "kernel" ? { ...b, label: "k".repeat(60) } : b)) };
  const cut = renderTimelineText(long, { width: 120 }).split("\n")[3] as string;
  assert.match(cut, /^\* k{39}… +0\.000/);
});

test("text: nothing to draw says so", () => {
  const t = buildTimeline({ notes: ["systemd's timestamps could not be read"] });
  assert.equal(
    renderTimelineText(t, { width: 100 }),
    "berth boot timeline: offsets from the run phase's start; times in seconds\n\n" +
      "no bars: neither systemd's timestamps nor the run phase's steps were available\n" +
      "note: systemd's timestamps could not be read\n" +
      "note: no run status at /run/berth/status.json: the run phase has not run since boot, so its steps have no bars\n",
  );
});

test("svg: self-contained (no scripts, links, external fonts), one bar per unit or step, the critical path outlined, berth's share stated", () => {
  const t = timeline("ec2-like.json");
  const svg = renderTimelineSvg(t);
  assert.match(
    svg,
    /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg" width="1200" height="\d+" viewBox="0 0 1200 \d+" font-family="sans-serif">/,
  );
  assert.ok(svg.endsWith("</svg>\n"));
  assert.doesNotMatch(svg, /<script|javascript:|href=|@import|url\(|<foreignObject/i);
  const families = [...svg.matchAll(/font-family="([^"]+)"/g)].map((m) => m[1]);
  assert.deepEqual([...new Set(families)], ["sans-serif"]);
  const bars = [...svg.matchAll(/<rect [^>]*rx="2"[^>]*>(<title>[^<]*<\/title>)<\/rect>/g)];
  assert.equal(bars.length, t.bars.length, "one bar per unit or step");
  const outlined = bars.filter((m) => m[0].includes('stroke="#111827"'));
  assert.equal(outlined.length, t.criticalPath.length, "the critical path's bars are outlined");
  assert.ok(
    bars.some((m) => m[1] === "<title>CRI ready: 8.47 s → 8.82 s (0.35 s) — ok (ready): CRI RuntimeReady after 14 attempts</title>"),
  );
  assert.match(svg, />berth's own work: 0\.84 s of 10\.14 s \(8\.3 % of the boot\)</);
  assert.match(svg, />inside its phases \(2\.75 s\) berth waited 1\.77 s on containerd, 0\.11 s on the kubelet, 0\.03 s on systemd</);
  for (const s of ["0s", "5s", "10s"]) assert.match(svg, new RegExp(`text-anchor="middle">${s}</text>`), `axis tick ${s}`);
  assert.match(svg, />kubelet active 10\.06 s</);
  assert.equal(renderTimelineSvg(t), svg, "deterministic");
});

test("svg: labels and notes are escaped", () => {
  const t = timeline("ec2-like.json");
  const odd = { ...t, bars: t.bars.map((b) => (b.id === "kernel" ? { ...b, label: `<k&"ernel>` } : b)), notes: ["a < b & c"] };
  const svg = renderTimelineSvg(odd);
  assert.match(svg, />&lt;k&amp;&quot;ernel&gt;</);
  assert.match(svg, />note: a &lt; b &amp; c</);
});
