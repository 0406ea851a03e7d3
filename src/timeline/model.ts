/**
 * The boot timeline, pure: systemd's own timestamps (src/host/systemd-times.ts)
 * and the run phase's step records (src/host/run-status.ts) → bars with start
 * and end as offsets from boot, the critical path, and berth's own share of
 * the boot. The renderers (text.ts, svg.ts) and `-o json` draw this and
 * nothing else; docs/timeline.md says what each bar is.
 *
 * Offsets are ms from the kernel's start (CLOCK_MONOTONIC 0); in a container,
 * where systemd has no kernel boot of its own, from systemd's start; without
 * systemd at all, from the run phase's start. systemd's timestamps are
 * monotonic already; a step's epoch-ms time is turned into a monotonic one
 * through the realtime/monotonic pair systemd took nearest to it (every unit
 * transition is such a pair), so a clock step between boot and the run phase
 * does not shift the steps.
 */
import type { RunStatus } from "../host/run-status.ts";
import type { BootTimes, DualTimestamp, UnitTimes } from "../host/systemd-times.ts";
import { RUN_STATUS_PATH, UNITS } from "../util/node-layout.ts";
import { criticalPath, intervalsLength, type Interval } from "./path.ts";

/** Who the time of a bar belongs to: berth's own work, or what berth (or the boot) waits on. */
export type Owner = "kernel" | "cloud-init" | "berth" | "containerd" | "kubelet" | "systemd";
export type BarKind = "kernel" | "unit" | "phase" | "step";
/** `kernel`: offsets from the kernel's start; `userspace`: from systemd's (a container); `run-phase`: from the run phase's. */
export type OriginKind = "kernel" | "userspace" | "run-phase";

export interface Bar {
  /** `kernel`, `initrd`, `unit:<name>`, `phase:run`, `step:<name>`. */
  id: string;
  label: string;
  kind: BarKind;
  owner: Owner;
  /** Offsets from the origin, ms (0.1 ms resolution). */
  startMs: number;
  endMs: number;
  durationMs: number;
  /** The bar this one lies inside (a run-phase step: its unit or phase). */
  parent?: string;
  critical: boolean;
  /** Where the times come from. */
  source: "systemd" | "run-status";
  detail?: string;
  /** Still running when read: the end is "now". */
  open?: boolean;
}

export interface Marker {
  id: "startup-finished" | "kubelet-active";
  label: string;
  atMs: number;
}

export type OwnerMs = Partial<Record<Owner, number>>;

export interface BerthShare {
  /** Wall time inside berth's config and run phases (their units, or a run phase by hand). */
  spanMs: number;
  /** The part of it berth spent on its own work: the span less the steps that wait on another component. */
  ownMs: number;
  /** Steps of the run phase that wait on containerd (start, CRI, image), the kubelet (start) or systemd (reload, hand-offs). */
  waitingMs: { containerd: number; kubelet: number; systemd: number };
  /** ownMs / totals.endMs (0..1). */
  shareOfBoot: number;
}

export interface Timeline {
  apiVersion: "berth.dev/v1alpha1";
  kind: "BootTimeline";
  origin: { kind: OriginKind; /** The origin as wall-clock time (ISO 8601), when known. */ at?: string };
  /** Top-level bars by start, each followed by the bars inside it. */
  bars: Bar[];
  /** The chain of bars that ends last, first to last; `gapBeforeMs`: idle time since the previous one ended. */
  criticalPath: Array<{ id: string; gapBeforeMs: number }>;
  markers: Marker[];
  totals: {
    /** The last bar's end. */
    endMs: number;
    /** systemd's "Startup finished" (its initial boot jobs done). */
    startupFinishedMs?: number;
    /** The run phase saw the kubelet active (else systemd's ActiveEnterTimestamp of kubelet.service). */
    kubeletActiveMs?: number;
    /**
     * barsMs + gapsMs = endMs, give or take the ≤ 2 ms a bar may overlap the
     * one before it (gaps: between the path's bars, and after its
     * last one when a bar that contains others ends later). byOwner: the
     * bars' time and, in the gaps, time inside a bar that contains others
     * (berth-run's own work around its steps); idleMs: the rest of the gaps.
     */
    criticalPath: { barsMs: number; gapsMs: number; idleMs: number; byOwner: OwnerMs };
    berth: BerthShare;
  };
  notes: string[];
}

export interface TimelineInput {
  /** systemd's timestamps; absent when systemd could not be reached. */
  boot?: BootTimes;
  /** The run status file; absent when there is none. */
  status?: RunStatus;
  /** Said by whoever gathered the input (e.g. why systemd could not be reached). */
  notes?: string[];
}

/** The units the timeline reads: cloud-init's stages and those around berth's phases. */
export const TIMELINE_UNITS: readonly string[] = [
  "cloud-init-local.service",
  "cloud-init.service",
  "cloud-config.service",
  "cloud-final.service",
  UNITS.config,
  UNITS.containerd,
  UNITS.run,
  UNITS.kubelet,
  UNITS.agent,
];

const UNIT_ROLES: Record<string, { owner: Owner; label?: string }> = {
  "cloud-init-local.service": { owner: "cloud-init" },
  "cloud-init.service": { owner: "cloud-init" },
  "cloud-config.service": { owner: "cloud-init" },
  "cloud-final.service": { owner: "cloud-init" },
  [UNITS.config]: { owner: "berth", label: `${UNITS.config} (config phase)` },
  [UNITS.run]: { owner: "berth", label: `${UNITS.run} (run phase)` },
  [UNITS.agent]: { owner: "berth" },
  [UNITS.containerd]: { owner: "containerd" },
  [UNITS.kubelet]: { owner: "kubelet" },
};

/** The run phase's steps (src/phases/run.ts): their label and what their time is spent waiting on. */
const STEP_ROLES: Record<string, { label: string; owner: Owner }> = {
  reload: { label: "daemon-reload", owner: "systemd" },
  containerd: { label: "containerd active", owner: "containerd" },
  cri: { label: "CRI ready", owner: "containerd" },
  "sandbox-image": { label: "sandbox image", owner: "containerd" },
  kubelet: { label: "kubelet active", owner: "kubelet" },
  tasks: { label: "tasks handed off", owner: "systemd" },
  "reboot-once": { label: "reboot-once handed off", owner: "systemd" },
};

/** Steps recorded this close to their unit's window still count as inside it (ms; epoch times have 1 ms resolution). */
const INSIDE_TOLERANCE_MS = 5;

interface Clock {
  kind: OriginKind;
  originRealtimeUs?: number;
  /** A monotonic µs timestamp → offset ms. */
  mono(us: number): number;
  /** An epoch ms time → offset ms. */
  epoch(ms: number): number;
}

function timestampPairs(boot: BootTimes): DualTimestamp[] {
  const m = boot.manager;
  const pairs: DualTimestamp[] = [m.userspace, m.finish, boot.now];
  for (const u of boot.units) pairs.push(u.inactiveExit, u.activeEnter, u.activeExit, u.inactiveEnter);
  return pairs.filter((p) => p.realtimeUs > 0 && p.monotonicUs > 0);
}

/** The origin, and how any timestamp becomes an offset from it. */
function clockOf(input: TimelineInput): Clock {
  const boot = input.boot;
  const m = boot?.manager;
  if (boot && m && (m.kernel.realtimeUs > 0 || m.userspace.monotonicUs > 0)) {
    const kernel = m.kernel.realtimeUs > 0;
    const originMono = kernel ? 0 : m.userspace.monotonicUs;
    const pairs = timestampPairs(boot);
    const toMonoUs = (us: number): number => {
      let best: DualTimestamp = { realtimeUs: m.kernel.realtimeUs || m.userspace.realtimeUs, monotonicUs: originMono };
      for (const p of pairs) if (Math.abs(p.realtimeUs - us) < Math.abs(best.realtimeUs - us)) best = p;
      return best.monotonicUs + (us - best.realtimeUs);
    };
    return {
      kind: kernel ? "kernel" : "userspace",
      originRealtimeUs: kernel ? m.kernel.realtimeUs : m.userspace.realtimeUs,
      mono: (us) => (us - originMono) / 1000,
      epoch: (ms) => (toMonoUs(ms * 1000) - originMono) / 1000,
    };
  }
  const s = input.status;
  const first = s?.steps[0]?.startMs ?? (s ? Date.parse(s.startedAt) : 0);
  return { kind: "run-phase", originRealtimeUs: first * 1000, mono: () => 0, epoch: (ms) => ms - first };
}

type BarDraft = Omit<Bar, "durationMs" | "critical">;

function kernelBars(boot: BootTimes, clock: Clock): BarDraft[] {
  if (clock.kind !== "kernel") return [];
  const { initrd, userspace } = boot.manager;
  const bars: BarDraft[] = [];
  const kernelEnd = initrd.monotonicUs > 0 ? initrd.monotonicUs : userspace.monotonicUs;
  if (kernelEnd > 0)
    bars.push({
      id: "kernel",
      label: "kernel",
      kind: "kernel",
      owner: "kernel",
      startMs: 0,
      endMs: clock.mono(kernelEnd),
      source: "systemd",
    });
  if (initrd.monotonicUs > 0 && userspace.monotonicUs > 0) {
    const b = { startMs: clock.mono(initrd.monotonicUs), endMs: clock.mono(userspace.monotonicUs) };
    bars.push({ id: "initrd", label: "initrd", kind: "kernel", owner: "kernel", ...b, source: "systemd" });
  }
  return bars;
}

/** A unit's last start: left inactive → became active (or went back to inactive/failed, or still starting: now). */
function unitBar(u: UnitTimes, now: DualTimestamp, clock: Clock): BarDraft | undefined {
  const start = u.inactiveExit.monotonicUs;
  if (u.loadState !== "loaded" || start <= 0) return undefined;
  const ends = [u.activeEnter.monotonicUs, u.inactiveEnter.monotonicUs].filter((t) => t >= start);
  const open = ends.length === 0;
  const end = open ? Math.max(start, now.monotonicUs) : Math.min(...ends);
  const role = UNIT_ROLES[u.name] ?? { owner: "systemd" };
  const state = `${u.activeState} (${u.subState})`;
  return {
    id: `unit:${u.name}`,
    label: role.label ?? u.name,
    kind: "unit",
    owner: role.owner,
    startMs: clock.mono(start),
    endMs: clock.mono(end),
    source: "systemd",
    detail: open ? `${state}, still starting` : state,
    ...(open ? { open } : {}),
  };
}

/** The run phase's steps, inside berth-run.service when they ran there, else inside a bar of their own. */
function runBars(status: RunStatus, units: BarDraft[], now: number | undefined, clock: Clock, notes: string[]): BarDraft[] {
  const steps = status.steps.map((r): BarDraft => {
    const role = STEP_ROLES[r.step] ?? { label: r.step, owner: "berth" };
    const what = `${r.outcome}${r.action ? ` (${r.action})` : ""}`;
    const detail = r.cause ? `${what}: ${r.cause}` : what;
    const times = { startMs: clock.epoch(r.startMs), endMs: clock.epoch(r.endMs) };
    return { id: `step:${r.step}`, label: role.label, kind: "step", owner: role.owner, ...times, source: "run-status", detail };
  });
  const startedMs = clock.epoch(Date.parse(status.startedAt));
  const lastEnd = steps.length > 0 ? Math.max(...steps.map((s) => s.endMs)) : startedMs;
  // Still running: up to now when the clocks were read, else (no systemd) up to its last step's end.
  const endedMs = status.finishedAt ? clock.epoch(Date.parse(status.finishedAt)) : Math.max(lastEnd, now ? clock.epoch(now) : lastEnd);
  const unit = units.find((b) => b.id === `unit:${UNITS.run}`);
  const inside = unit && startedMs >= unit.startMs - INSIDE_TOLERANCE_MS && endedMs <= unit.endMs + INSIDE_TOLERANCE_MS;
  if (status.result === "running") notes.push("the run phase is still running: its last bar ends now");
  if (status.error) notes.push(`the run phase failed: ${status.error.code}: ${status.error.message}`);
  if (unit && inside) return steps.map((s) => ({ ...s, parent: unit.id }));
  if (clock.kind !== "run-phase") {
    notes.push(
      `the run phase in ${RUN_STATUS_PATH} ran outside ${UNITS.run} (berth init by hand?); ` +
        "it has a bar of its own, and the config phase that ran with it has none",
    );
  }
  const phase: BarDraft = {
    id: "phase:run",
    label: "run phase (berth init)",
    kind: "phase",
    owner: "berth",
    startMs: startedMs,
    endMs: endedMs,
    source: "run-status",
    detail: status.result,
    ...(status.result === "running" ? { open: true } : {}),
  };
  return [phase, ...steps.map((s) => ({ ...s, parent: phase.id }))];
}

/** Top-level bars by start (longer first on a tie), each followed by its children by start. */
function orderedBars(drafts: BarDraft[]): BarDraft[] {
  const byStart = (a: BarDraft, b: BarDraft): number => a.startMs - b.startMs || b.endMs - a.endMs;
  const out: BarDraft[] = [];
  for (const top of drafts.filter((d) => d.parent === undefined).sort(byStart)) {
    out.push(top, ...drafts.filter((d) => d.parent === top.id).sort(byStart));
  }
  return out;
}

const round1 = (ms: number): number => Math.round(ms * 10) / 10;

function berthShare(bars: Bar[], endMs: number): BerthShare {
  const span: Interval[] = bars
    .filter((b) => b.id === `unit:${UNITS.config}` || b.id === `unit:${UNITS.run}` || b.id === "phase:run")
    .map((b) => [b.startMs, b.endMs]);
  const spanMs = intervalsLength(span);
  const clip = (owner: Owner): Interval[] => {
    const out: Interval[] = [];
    for (const b of bars.filter((x) => x.kind === "step" && x.owner === owner)) {
      for (const [s, e] of span)
        if (Math.min(e, b.endMs) > Math.max(s, b.startMs)) out.push([Math.max(s, b.startMs), Math.min(e, b.endMs)]);
    }
    return out;
  };
  const waits = { containerd: clip("containerd"), kubelet: clip("kubelet"), systemd: clip("systemd") };
  const ownMs = spanMs - intervalsLength([...waits.containerd, ...waits.kubelet, ...waits.systemd]);
  return {
    spanMs: round1(spanMs),
    ownMs: round1(ownMs),
    waitingMs: {
      containerd: round1(intervalsLength(waits.containerd)),
      kubelet: round1(intervalsLength(waits.kubelet)),
      systemd: round1(intervalsLength(waits.systemd)),
    },
    shareOfBoot: endMs > 0 ? Math.round((ownMs / endMs) * 1000) / 1000 : 0,
  };
}

function markersOf(input: TimelineInput, bars: Bar[], clock: Clock): Marker[] {
  const markers: Marker[] = [];
  const finish = input.boot?.manager.finish.monotonicUs ?? 0;
  if (finish > 0 && clock.kind !== "run-phase") {
    markers.push({ id: "startup-finished", label: "startup finished (systemd)", atMs: round1(clock.mono(finish)) });
  }
  const step = input.status?.steps.find((s) => s.step === "kubelet" && (s.outcome === "ok" || s.outcome === "changed"));
  const stepBar = step ? bars.find((b) => b.id === "step:kubelet") : undefined;
  const unit = bars.find((b) => b.id === `unit:${UNITS.kubelet}` && !b.open);
  const at = stepBar?.endMs ?? unit?.endMs;
  if (at !== undefined) markers.push({ id: "kubelet-active", label: "kubelet active", atMs: at });
  return markers;
}

/**
 * The critical path's time by owner: each bar's own, and in the idle time
 * before it (and after the last one, up to `endMs`), the part inside a bar
 * that contains other bars (berth-run's own work before its first step and
 * after its last) for that bar's owner.
 */
function pathByOwner(
  bars: Bar[],
  chain: Array<{ id: string; gapBeforeMs: number }>,
  parents: Set<string | undefined>,
  endMs: number,
): OwnerMs {
  const byOwner: OwnerMs = {};
  const add = (o: Owner, ms: number): void => void (byOwner[o] = round1((byOwner[o] ?? 0) + ms));
  const containers = bars.filter((b) => parents.has(b.id));
  const idle = (gap: Interval): void => {
    for (const c of containers) {
      const covered = Math.min(gap[1], c.endMs) - Math.max(gap[0], c.startMs);
      if (covered > 0) add(c.owner, covered);
    }
  };
  let lastEnd = 0;
  for (const link of chain) {
    const b = bars.find((x) => x.id === link.id) as Bar;
    b.critical = true;
    add(b.owner, b.durationMs);
    idle([b.startMs - link.gapBeforeMs, b.startMs]);
    lastEnd = b.endMs;
  }
  if (chain.length > 0) idle([lastEnd, endMs]);
  return byOwner;
}

export function buildTimeline(input: TimelineInput): Timeline {
  const notes = [...(input.notes ?? [])];
  const clock = clockOf(input);
  const nowMs = input.boot ? input.boot.now.realtimeUs / 1000 : undefined;
  const drafts: BarDraft[] = [];
  if (input.boot) {
    drafts.push(...kernelBars(input.boot, clock));
    for (const u of input.boot.units) {
      const b = unitBar(u, input.boot.now, clock);
      if (b) drafts.push(b);
    }
    if (clock.kind === "userspace")
      notes.push("systemd has no kernel boot of its own here (a container): offsets are from systemd's start");
  }
  if (input.status) drafts.push(...runBars(input.status, drafts, nowMs, clock, notes));
  else notes.push(`no run status at ${RUN_STATUS_PATH}: the run phase has not run since boot, so its steps have no bars`);

  const bars: Bar[] = orderedBars(drafts).map((d) => ({
    ...d,
    startMs: round1(d.startMs),
    endMs: round1(d.endMs),
    durationMs: round1(d.endMs - d.startMs),
    critical: false,
  }));
  const parents = new Set(bars.map((b) => b.parent).filter((p) => p !== undefined));
  const chain = criticalPath(bars.filter((b) => !parents.has(b.id)));
  const endMs = bars.reduce((m, b) => Math.max(m, b.endMs), 0);
  const byOwner = pathByOwner(bars, chain, parents, endMs);
  const barsMs = round1(chain.reduce((s, l) => s + (bars.find((b) => b.id === l.id) as Bar).durationMs, 0));
  // The gaps between the path's bars, and after its last one up to the end (a containing bar that ends later).
  const gapsMs = chain.length > 0 ? round1(Math.max(0, endMs - barsMs)) : 0;
  const attributed = Object.values(byOwner).reduce((s, ms) => s + ms, 0);
  const markers = markersOf(input, bars, clock);
  const finished = markers.find((m) => m.id === "startup-finished")?.atMs;
  const kubelet = markers.find((m) => m.id === "kubelet-active")?.atMs;
  const originAt = clock.originRealtimeUs ? new Date(Math.round(clock.originRealtimeUs / 1000)).toISOString() : undefined;
  return {
    apiVersion: "berth.dev/v1alpha1",
    kind: "BootTimeline",
    origin: { kind: clock.kind, ...(originAt ? { at: originAt } : {}) },
    bars,
    criticalPath: chain,
    markers,
    totals: {
      endMs,
      ...(finished !== undefined ? { startupFinishedMs: finished } : {}),
      ...(kubelet !== undefined ? { kubeletActiveMs: kubelet } : {}),
      criticalPath: { barsMs, gapsMs, idleMs: round1(Math.max(0, barsMs + gapsMs - attributed)), byOwner },
      berth: berthShare(bars, endMs),
    },
    notes,
  };
}
