/**
 * Issue 10, the boot timeline, in the node lab (root): a node boots with
 * berth's package installed, so its boot runs berth-config → berth-run by
 * itself (a full `berth init` through its units); then `berth timeline -o
 * json` inside the node must agree with systemd's own timestamps
 * (`systemctl show`, read independently) to within 50 ms, and its `--svg`
 * must render in headless chromium.
 *
 * Set BERTH_TIMELINE_RECORD=FILE to also save the inputs (systemd's
 * timestamps over the node's bus, the run status) as a fixture for the unit
 * tests (tests/fixtures/timeline/).
 * Run: node --import tsx --test tests/lab/timeline.test.ts  (after npm run package)
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { copyFile, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { bootRunNode, type RunNode } from "./run-node.ts";
import { pngStats, screenshot } from "../helpers/chromium.ts";
import { readBootTimes } from "../../src/host/systemd-times.ts";
import { TIMELINE_UNITS, type Timeline } from "../../src/timeline/model.ts";

/** How far the timeline may be from systemd's own timestamps (the bound). */
const AGREE_MS = 50;

let rn: RunNode;
let dir: string;

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "berth-timeline-lab-"));
  rn = await bootRunNode({ name: "timeline", rebootAfterInstall: true });
  const s = await rn.waitSettled("berth-run.service", 180_000);
  if (s !== "active") {
    const j = await rn.node.exec(["journalctl", "--no-pager", "-o", "cat", "-u", "berth-config", "-u", "berth-run"]);
    throw new Error(`berth-run.service is ${s} after boot:\n${j.stdout.slice(-6000)}`);
  }
  // The boot's initial jobs must be done for systemd's "startup finished" to exist.
  for (let i = 0; i < 100; i++) {
    const state = (await rn.node.exec(["systemctl", "is-system-running"])).stdout.trim();
    if (state === "running" || state === "degraded") break;
    await new Promise((r) => setTimeout(r, 100));
  }
});

after(async () => {
  await rn?.cleanup();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** `systemctl show` of the manager (no unit) or a unit: monotonic µs as numbers. */
async function shown(unit: string | undefined, props: string[]): Promise<Record<string, number>> {
  const args = ["systemctl", "show", ...(unit ? [unit] : []), ...props.map((p) => `--property=${p}`)];
  const r = await rn.node.exec(args, { timeoutMs: 10_000 });
  const out: Record<string, number> = {};
  for (const line of r.stdout.split("\n")) {
    const i = line.indexOf("=");
    if (i > 0) out[line.slice(0, i)] = Number(line.slice(i + 1));
  }
  return out;
}

/** How far each figure was from systemd's, for the test's diagnostics. */
const deltas: string[] = [];

function near(actual: number | undefined, expected: number, what: string): void {
  assert.ok(actual !== undefined, `${what}: missing from the timeline`);
  deltas.push(`${what}: ${(actual - expected).toFixed(1)} ms`);
  assert.ok(
    Math.abs(actual - expected) <= AGREE_MS,
    `${what}: timeline ${actual} ms, systemd ${expected.toFixed(1)} ms (more than ${AGREE_MS} ms apart)`,
  );
}

test("berth timeline -o json agrees with systemd's own timestamps to within 50 ms", async (tc) => {
  const r = await rn.berth(["timeline", "-o", "json", "--svg", "/tmp/timeline.svg"]);
  assert.equal(r.code, 0, r.stderr);
  const t = JSON.parse(r.stdout) as Timeline;
  if (process.env.BERTH_TIMELINE_RECORD) {
    const boot = await readBootTimes({ busAddress: rn.node.busAddress, units: TIMELINE_UNITS });
    const status = JSON.parse(await readFile(rn.node.hostPath("/run/berth/status.json"), "utf8")) as unknown;
    await writeFile(
      process.env.BERTH_TIMELINE_RECORD,
      `${JSON.stringify({ note: "recorded in the node lab (tests/lab/timeline.test.ts)", boot, status }, null, 2)}\n`,
    );
  }
  const m = await shown(undefined, ["KernelTimestamp", "UserspaceTimestampMonotonic", "FinishTimestampMonotonic"]);
  // A node in nspawn has no kernel boot of its own: offsets count from systemd's start there.
  const origin = (m.KernelTimestamp ?? 0) > 0 ? 0 : (m.UserspaceTimestampMonotonic as number);
  assert.equal(t.origin.kind, origin === 0 ? "kernel" : "userspace");
  const off = (us: number | undefined): number => ((us as number) - origin) / 1000;
  near(t.totals.startupFinishedMs, off(m.FinishTimestampMonotonic), "systemd's startup finished");

  const props = ["InactiveExitTimestampMonotonic", "ActiveEnterTimestampMonotonic"];
  const units: Record<string, Record<string, number>> = {};
  for (const u of ["berth-config.service", "berth-run.service", "containerd.service", "kubelet.service"]) {
    units[u] = await shown(u, props);
    const bar = t.bars.find((b) => b.id === `unit:${u}`);
    assert.ok(bar, `no bar for ${u}: ${t.bars.map((b) => b.id).join(", ")}`);
    near(bar.startMs, off(units[u].InactiveExitTimestampMonotonic), `${u} start`);
    near(bar.endMs, off(units[u].ActiveEnterTimestampMonotonic), `${u} active`);
  }
  // The run phase's own records (epoch ms, converted) against systemd's view of the same moments.
  const kubeletActive = off(units["kubelet.service"]?.ActiveEnterTimestampMonotonic);
  near(t.totals.kubeletActiveMs, kubeletActive, "kubelet active (the run phase's kubelet step)");
  const steps = t.bars.filter((b) => b.kind === "step");
  // The run phase's steps in their order (steps added later, e.g. local storage, may sit between them).
  const core = ["step:reload", "step:containerd", "step:cri", "step:sandbox-image", "step:kubelet"];
  assert.deepEqual(
    steps.map((s) => s.id).filter((id) => core.includes(id)),
    core,
  );
  const run = units["berth-run.service"] as Record<string, number>;
  for (const s of steps) {
    assert.equal(s.parent, "unit:berth-run.service", `${s.id} lies inside berth-run.service`);
    assert.ok(s.startMs >= off(run.InactiveExitTimestampMonotonic) - AGREE_MS, `${s.id} starts after berth-run.service started`);
    assert.ok(s.endMs <= off(run.ActiveEnterTimestampMonotonic) + AGREE_MS, `${s.id} ends before berth-run.service finished`);
  }
  const config = units["berth-config.service"] as Record<string, number>;
  const span = (u: Record<string, number>): number =>
    ((u.ActiveEnterTimestampMonotonic ?? 0) - (u.InactiveExitTimestampMonotonic ?? 0)) / 1000;
  near(t.totals.berth.spanMs, span(config) + span(run), "berth's span (config phase + run phase)");
  const lastEnd = Math.max(...t.bars.map((b) => b.endMs));
  assert.equal(t.totals.endMs, lastEnd);
  const path = t.criticalPath.map((l) => l.id);
  assert.ok(path.length >= 2, `critical path: ${path.join(" → ")}`);
  const leaves = t.bars.filter((b) => !t.bars.some((c) => c.parent === b.id));
  assert.equal(
    t.bars.find((b) => b.id === path.at(-1))?.endMs,
    Math.max(...leaves.map((b) => b.endMs)),
    "the path ends with the bar that ends last",
  );
  const cp = t.totals.criticalPath;
  assert.ok(Math.abs(cp.barsMs + cp.gapsMs - lastEnd) <= 0.2, `critical path ${cp.barsMs} + ${cp.gapsMs} ms vs ${lastEnd} ms`);
  const w = t.totals.berth.waitingMs;
  near(t.totals.berth.ownMs + w.containerd + w.kubelet + w.systemd, t.totals.berth.spanMs, "berth's own + waiting = its span");
  tc.diagnostic(`timeline − systemd: ${deltas.join("; ")}`);
  const text = await rn.berth(["timeline"]);
  assert.equal(text.code, 0, text.stderr);
  assert.match(text.stdout, /^berth boot timeline: offsets from /);
  assert.match(text.stdout, /berth's own share: /);
});

test("berth timeline --svg of the lab boot renders in headless chromium", async () => {
  const svg = path.join(dir, "timeline.svg");
  await copyFile(rn.node.hostPath("/tmp/timeline.svg"), svg);
  const png = path.join(dir, "timeline.png");
  await screenshot(svg, png);
  const s = await pngStats(png);
  assert.equal(s.width, 1200);
  // A blank page is all white; the chart paints bars, text and grid lines in several colours.
  assert.ok(s.nonWhite > 20_000, `only ${s.nonWhite} non-white pixels in ${png}`);
  assert.ok(s.colours > 20, `only ${s.colours} colours in ${png}`);
  const keep = process.env.BERTH_TIMELINE_SHOT;
  if (keep) await copyFile(png, keep);
});
