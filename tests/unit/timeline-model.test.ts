// The boot timeline's model (src/timeline/model.ts, path.ts) on recorded
// inputs: tests/fixtures/timeline/ec2-like.json (constructed: an EC2-like
// boot with kernel, initrd and cloud-init, the clock stepped +1.5 s at 6 s)
// and lab-node.json (recorded in the node lab: a container, so no kernel).
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { buildTimeline, type Timeline, type TimelineInput } from "../../src/timeline/model.ts";
import { axisTicks, criticalPath, intervalsLength } from "../../src/timeline/path.ts";
import type { BootTimes, UnitTimes } from "../../src/host/systemd-times.ts";
import type { RunStatus } from "../../src/host/run-status.ts";

const FIXTURES = path.resolve(import.meta.dirname, "../fixtures/timeline");
const load = (name: string): { boot: BootTimes; status: RunStatus } =>
  JSON.parse(readFileSync(path.join(FIXTURES, name), "utf8")) as { boot: BootTimes; status: RunStatus };
const bar = (t: Timeline, id: string) => {
  const b = t.bars.find((x) => x.id === id);
  assert.ok(b, `no bar ${id} in ${t.bars.map((x) => x.id).join(", ")}`);
  return b;
};

test("an EC2-like boot: kernel, initrd, cloud-init, berth's units, the run phase's steps inside berth-run, as offsets from the kernel", () => {
  const { boot, status } = load("ec2-like.json");
  const t = buildTimeline({ boot, status });
  assert.equal(t.origin.kind, "kernel");
  assert.equal(t.origin.at, "2026-06-12T10:00:00.000Z");
  assert.deepEqual(
    t.bars.map((b) => `${b.id} ${b.startMs}-${b.endMs}${b.parent ? ` in ${b.parent}` : ""}`),
    [
      "kernel 0-1050",
      "initrd 1050-2310",
      "unit:cloud-init-local.service 3120-4480",
      "unit:berth-config.service 5020-5640",
      "unit:cloud-init.service 5650-6900",
      "unit:cloud-config.service 7010-7450",
      "unit:cloud-final.service 7460-7980",
      "unit:berth-run.service 7990-10120",
      "step:reload 8150-8180 in unit:berth-run.service",
      "step:containerd 8180-8470 in unit:berth-run.service",
      "step:cri 8470-8820 in unit:berth-run.service",
      "step:sandbox-image 8820-9950 in unit:berth-run.service",
      "step:kubelet 9950-10060 in unit:berth-run.service",
      "unit:containerd.service 8185-8460",
      "unit:kubelet.service 9960-9961",
      "unit:berth-agent.service 10125-10140",
    ],
  );
  assert.equal(bar(t, "step:cri").label, "CRI ready");
  assert.equal(bar(t, "step:sandbox-image").detail, "changed (pulled): pulled 602401143452.dkr.ecr.us-west-2.amazonaws.com/eks/pause:3.10");
  assert.equal(bar(t, "unit:berth-config.service").label, "berth-config.service (config phase)");
  assert.equal(bar(t, "unit:berth-config.service").owner, "berth");
  assert.equal(bar(t, "step:cri").owner, "containerd");
  assert.deepEqual(t.notes, []);
});

test("the critical path: from the bar that ends last back through what each one waited on", () => {
  const t = buildTimeline(load("ec2-like.json"));
  assert.deepEqual(
    t.criticalPath.map((l) => l.id),
    [
      "kernel",
      "initrd",
      "unit:cloud-init-local.service",
      "unit:berth-config.service",
      "unit:cloud-init.service",
      "unit:cloud-config.service",
      "unit:cloud-final.service",
      "step:reload",
      "step:containerd",
      "step:cri",
      "step:sandbox-image",
      "step:kubelet",
      "unit:berth-agent.service",
    ],
  );
  assert.deepEqual(t.bars.filter((b) => b.critical).length, 13);
  assert.equal(bar(t, "unit:berth-run.service").critical, false, "a bar with bars inside is represented by them");
  assert.equal(t.criticalPath.find((l) => l.id === "step:reload")?.gapBeforeMs, 170);
  const cp = t.totals.criticalPath;
  assert.equal(cp.barsMs + cp.gapsMs, t.totals.endMs);
  // berth: the config phase, berth-run's own time before its first step and after its last (in the gaps), the agent's start.
  assert.deepEqual(cp.byOwner, { kernel: 2310, "cloud-init": 3570, berth: 855, systemd: 30, containerd: 1770, kubelet: 110 });
  assert.equal(cp.idleMs, 1495);
});

test("totals: kubelet active from the run phase, startup finished from systemd, berth's own share against its waits", () => {
  const t = buildTimeline(load("ec2-like.json"));
  assert.equal(t.totals.endMs, 10140);
  assert.equal(t.totals.kubeletActiveMs, 10060);
  assert.equal(t.totals.startupFinishedMs, 10150);
  assert.deepEqual(t.totals.berth, {
    spanMs: 2750,
    ownMs: 840,
    waitingMs: { containerd: 1770, kubelet: 110, systemd: 30 },
    shareOfBoot: 0.083,
  });
  assert.deepEqual(
    t.markers.map((m) => `${m.id} ${m.atMs}`),
    ["startup-finished 10150", "kubelet-active 10060"],
  );
});

test("a step's epoch time goes through the clock pair nearest to it: a clock step before the run phase does not move the steps", () => {
  const { boot, status } = load("ec2-like.json");
  // Only the kernel's pair (taken before the clock was stepped +1.5 s): the steps would land 1.5 s late.
  const bare: BootTimes = {
    ...boot,
    units: [],
    now: { realtimeUs: 0, monotonicUs: 0 },
    manager: { ...boot.manager, finish: { realtimeUs: 0, monotonicUs: 0 } },
  };
  const naive = buildTimeline({ boot: { ...bare, manager: { ...bare.manager, userspace: { realtimeUs: 0, monotonicUs: 0 } } }, status });
  assert.equal(bar(naive, "step:reload").startMs, 9650);
  assert.equal(bar(buildTimeline({ boot, status }), "step:reload").startMs, 8150);
});

test("a container (the node lab): offsets from systemd's start, with a note; no kernel bars", () => {
  const { boot, status } = load("lab-node.json");
  const t = buildTimeline({ boot, status });
  assert.equal(t.origin.kind, "userspace");
  assert.ok(!t.bars.some((b) => b.kind === "kernel"));
  assert.match(t.notes.join("\n"), /no kernel boot of its own here \(a container\): offsets are from systemd's start/);
  for (const s of t.bars.filter((b) => b.kind === "step")) assert.equal(s.parent, "unit:berth-run.service");
  const run = bar(t, "unit:berth-run.service");
  assert.ok(t.bars.filter((b) => b.kind === "step").every((s) => s.startMs >= run.startMs && s.endMs <= run.endMs));
  assert.ok(t.totals.berth.ownMs > 0 && t.totals.berth.ownMs < t.totals.berth.spanMs);
  assert.deepEqual(
    t.criticalPath.map((l) => l.id),
    ["unit:berth-config.service", "step:reload", "step:containerd", "step:cri", "step:sandbox-image", "step:kubelet"],
  );
  // berth-run's own time before its first step and after its last is berth's, on the path too.
  assert.equal(t.totals.criticalPath.byOwner.berth, t.totals.berth.ownMs);
  // The run phase saw the kubelet active just after systemd did.
  const kubeletUnit = bar(t, "unit:kubelet.service");
  assert.ok((t.totals.kubeletActiveMs as number) >= kubeletUnit.endMs && (t.totals.kubeletActiveMs as number) - kubeletUnit.endMs < 50);
});

test("no systemd: the steps alone, from the run phase's start, inside a run-phase bar", () => {
  const { status } = load("ec2-like.json");
  const t = buildTimeline({ status, notes: ["systemd's timestamps could not be read"] });
  assert.equal(t.origin.kind, "run-phase");
  assert.deepEqual(t.notes, ["systemd's timestamps could not be read"]);
  const phase = bar(t, "phase:run");
  assert.equal(phase.startMs, -10);
  assert.equal(phase.endMs, 1920);
  assert.equal(bar(t, "step:reload").startMs, 0);
  assert.equal(bar(t, "step:kubelet").endMs, 1910);
  assert.equal(t.totals.berth.spanMs, 1930);
  assert.equal(t.totals.startupFinishedMs, undefined);
});

test("a run phase by hand (outside berth-run.service) gets a bar of its own and a note", () => {
  const { boot, status } = load("ec2-like.json");
  const later = 600_000; // ten minutes after boot
  const shift = (ms: number): number => ms + later;
  const byHand: RunStatus = {
    ...status,
    startedAt: new Date(shift(Date.parse(status.startedAt))).toISOString(),
    finishedAt: new Date(shift(Date.parse(status.finishedAt as string))).toISOString(),
    steps: status.steps.map((s) => ({ ...s, startMs: shift(s.startMs), endMs: shift(s.endMs) })),
  };
  const t = buildTimeline({
    boot: { ...boot, now: { realtimeUs: boot.now.realtimeUs + 60e6, monotonicUs: boot.now.monotonicUs + 60e6 } },
    status: byHand,
  });
  const phase = bar(t, "phase:run");
  assert.equal(phase.startMs, 8140 + later);
  assert.equal(bar(t, "step:reload").parent, "phase:run");
  assert.match(t.notes.join("\n"), /ran outside berth-run\.service \(berth init by hand\?\)/);
});

test("units: not loaded or never started have no bar; a failed start ends when it failed; one still starting ends now", () => {
  const { boot } = load("ec2-like.json");
  const zero = { realtimeUs: 0, monotonicUs: 0 };
  const at = (s: number) => ({ realtimeUs: 1781258400000000 + s * 1e6, monotonicUs: s * 1e6 });
  const u = (name: string, over: Partial<UnitTimes>): UnitTimes => ({
    name,
    loadState: "loaded",
    activeState: "inactive",
    subState: "dead",
    inactiveExit: zero,
    activeEnter: zero,
    activeExit: zero,
    inactiveEnter: zero,
    ...over,
  });
  const input: TimelineInput = {
    boot: {
      ...boot,
      now: at(20),
      units: [
        u("cloud-init.service", { loadState: "not-found" }),
        u("containerd.service", {}),
        u("berth-config.service", { activeState: "failed", inactiveExit: at(5), inactiveEnter: at(5.5), activeEnter: at(1) }),
        u("kubelet.service", { activeState: "activating", subState: "start", inactiveExit: at(12) }),
      ],
    },
  };
  const t = buildTimeline(input);
  assert.deepEqual(
    t.bars.map((b) => `${b.id} ${b.startMs}-${b.endMs}${b.open ? " open" : ""}`),
    ["kernel 0-1050", "initrd 1050-2310", "unit:berth-config.service 5000-5500", "unit:kubelet.service 12000-20000 open"],
  );
  assert.equal(bar(t, "unit:kubelet.service").detail, "activating (start), still starting");
  assert.match(t.notes.join("\n"), /no run status at \/run\/berth\/status\.json/);
  assert.equal(t.totals.kubeletActiveMs, undefined, "a kubelet still starting is not active");
});

test("criticalPath and intervalsLength on small cases", () => {
  assert.deepEqual(criticalPath([]), []);
  const chain = criticalPath([
    { id: "a", startMs: 0, endMs: 10 },
    { id: "b", startMs: 2, endMs: 8 },
    { id: "c", startMs: 11, endMs: 20 },
    { id: "d", startMs: 9.5, endMs: 15 },
  ]);
  assert.deepEqual(chain, [
    { id: "a", gapBeforeMs: 0 },
    { id: "c", gapBeforeMs: 1 },
  ]);
  // Within the tolerance, a bar that starts a moment before its predecessor's end still follows it.
  assert.deepEqual(
    criticalPath([
      { id: "x", startMs: 0, endMs: 10 },
      { id: "y", startMs: 9, endMs: 12 },
    ]).map((l) => l.id),
    ["x", "y"],
  );
  assert.equal(
    intervalsLength([
      [0, 10],
      [5, 15],
      [20, 25],
      [3, 3],
    ]),
    20,
  );
  assert.deepEqual(axisTicks(10140, 12), [0, 1000, 2000, 3000, 4000, 5000, 6000, 7000, 8000, 9000, 10000]);
  assert.deepEqual(axisTicks(450, 4), [0, 200, 400]);
});

test("a run phase still running: berth-run's bar ends now, open, and a note says so", () => {
  const { boot, status } = load("ec2-like.json");
  const zero = { realtimeUs: 0, monotonicUs: 0 };
  const now = { realtimeUs: 1781258400000000 + 10.5e6 + 1.5e6, monotonicUs: 10.5e6 };
  const units = boot.units.map((u) =>
    u.name === "berth-run.service" ? { ...u, activeState: "activating", subState: "start", activeEnter: zero } : u,
  );
  const running: RunStatus = { ...status, result: "running", steps: status.steps.slice(0, 3) };
  delete running.finishedAt;
  const t = buildTimeline({ boot: { ...boot, units, now }, status: running });
  const run = bar(t, "unit:berth-run.service");
  assert.deepEqual([run.endMs, run.open, run.detail], [10500, true, "activating (start), still starting"]);
  assert.equal(bar(t, "step:cri").parent, "unit:berth-run.service");
  assert.match(t.notes.join("\n"), /the run phase is still running/);
  // Without systemd, the run phase's bar ends with its last step (nothing else says what "now" is).
  const alone = buildTimeline({ status: running });
  assert.deepEqual([bar(alone, "phase:run").endMs, bar(alone, "phase:run").open], [bar(alone, "step:cri").endMs, true]);
});
