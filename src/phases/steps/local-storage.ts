/**
 * The run phase's local-storage step (`instance.localStorage`), before
 * containerd: formatting, the md array and the first move of the state
 * directories, on the layout the config phase rendered its mount units from
 * (src/render/local-storage.ts), through src/host/disks.ts. Never formats a
 * disk that carries a filesystem other than xfs, and never reports a node
 * without the storage its config asked for. Details: docs/internals.md.
 */
import { mkdir } from "node:fs/promises";
import type { LocalStorageOptions } from "../../api/types.ts";
import { INSTANCE_STORE_MARKER, type InstanceStoreDisk } from "../../facts/disks.ts";
import {
  assembleRaid,
  copyTree,
  createRaid,
  filesystemType,
  makeXfs,
  raidConfigLine,
  type DiskCommandRunner,
  type RaidSpec,
} from "../../host/disks.ts";
import { writeFileAtomic } from "../../host/fs.ts";
import { pathExists, readTextIfPresent } from "../../host/read.ts";
import type { HostRoot } from "../../host/root.ts";
import { localStorageFiles, localStorageLayout, type LocalMount, type LocalStorageLayout } from "../../render/local-storage.ts";
import { errorMessage, toBerthError } from "../../util/errors.ts";
import { fail, ok, type BerthError, type Result } from "../../util/result.ts";
import type { RunStep, RunStepContext } from "./context.ts";
import { DISK_BY_ID_DIR, MDADM_CONFIG_FILES } from "../../util/node-layout.ts";

export interface LocalStorageStepOptions {
  needs: readonly string[];
  localStorage: LocalStorageOptions;
  /** The node's instance-store disks, read now (src/facts/disks.ts). */
  disks: (root: HostRoot) => Promise<InstanceStoreDisk[]>;
  run: DiskCommandRunner;
  jobTimeoutMs: number;
}

const COMPONENT = "local-storage";

/** What one run did, in order, for the step's cause. */
type Done = string[];

interface Env {
  ctx: RunStepContext;
  o: LocalStorageStepOptions;
  done: Done;
}

const failWith = <T>(code: string, message: string, path: string, hint: string): Result<T> =>
  fail({ code, message, where: { path }, hint });

/** The unit files the config phase wrote must be the ones these disks render to. */
async function checkUnits(root: HostRoot, layout: LocalStorageLayout): Promise<BerthError | undefined> {
  for (const f of localStorageFiles(layout)) {
    const have = await readTextIfPresent(root.path(f.path));
    if (have === f.content) continue;
    const what = have === undefined ? "is missing" : "does not match this node's instance-store disks";
    return {
      code: "run.local-storage-units",
      message: `${f.path} ${what} (disks now: ${layout.disks.map((d) => d.device).join(", ")})`,
      where: { path: f.path },
      hint: "run the config phase again (`berth init`) so the mount units are rendered from the disks this node has now",
    };
  }
  return undefined;
}

async function isActive(ctx: RunStepContext, unit: string): Promise<Result<boolean>> {
  try {
    return ok((await ctx.sd.unitState(unit)).activeState === "active");
  } catch (e) {
    return fail(toBerthError(e, "run.local-storage-state", `cannot read the state of ${unit}`, `check \`systemctl status '${unit}'\``));
  }
}

/** xfs on `device` unless it has it already; a device with any other signature is refused. */
async function ensureXfs(env: Env, device: string, opts: { discard: boolean }): Promise<Result<void>> {
  const real = env.ctx.root.path(device);
  const t = await filesystemType(env.o.run, real);
  if (!t.ok) return t;
  if (t.value === "xfs") return ok(undefined);
  if (t.value !== undefined) {
    const message = `${device} holds ${t.value}, not xfs; berth formats only devices that carry no filesystem or other signature`;
    return failWith(
      "run.local-storage-signature",
      message,
      device,
      `if its data may go, wipe it (\`wipefs -a ${device}\`) and run berth init again`,
    );
  }
  const made = await makeXfs(env.o.run, real, opts);
  if (!made.ok) return made;
  env.ctx.log.info({ event: "local-storage.formatted", component: COMPONENT, cause: `${device} had no filesystem`, device, fs: "xfs" });
  env.done.push(`formatted ${device}`);
  return ok(undefined);
}

async function startUnit(env: Env, unit: string, what: string): Promise<Result<void>> {
  const { ctx } = env;
  let job: string;
  try {
    job = await ctx.sd.startUnit(unit, { timeoutMs: env.o.jobTimeoutMs });
  } catch (e) {
    return fail(toBerthError(e, "run.local-storage-job", `start of ${unit} (${what}) failed`, `check \`journalctl -u '${unit}'\``));
  }
  const st = await ctx.sd.unitState(unit).catch((e: unknown) => new Error(errorMessage(e)));
  if (!(st instanceof Error) && st.activeState === "active") return ok(undefined);
  const state = st instanceof Error ? st.message : `${st.activeState}/${st.subState}`;
  const message = `${unit} (${what}) is not active after its start (job ${job}, ${state})`;
  return failWith("run.local-storage-mount", message, unit, `check \`journalctl -u '${unit}'\` and \`dmesg\``);
}

async function mountIt(env: Env, m: LocalMount): Promise<Result<void>> {
  const r = await startUnit(env, m.unit, `${m.what} on ${m.where}`);
  if (!r.ok) return r;
  env.ctx.log.info({ event: "local-storage.mounted", component: COMPONENT, cause: `${m.unit} started`, what: m.what, where: m.where });
  env.done.push(`mounted ${m.where}`);
  return ok(undefined);
}

/** Mount: every disk on its own, xfs as nodeadm makes it (with discard). */
async function mountDisks(env: Env, layout: LocalStorageLayout): Promise<Result<void>> {
  for (const m of layout.mounts) {
    const active = await isActive(env.ctx, m.unit);
    if (!active.ok) return active;
    if (active.value) continue;
    const fs = await ensureXfs(env, m.device ?? m.what, { discard: true });
    if (!fs.ok) return fs;
    const up = await mountIt(env, m);
    if (!up.ok) return up;
  }
  return ok(undefined);
}

/** What to tell a user whose md command failed: whether this kernel has md at all. */
async function mdHint(root: HostRoot, level: number): Promise<string> {
  if (!(await pathExists(root.path("/proc/mdstat")))) {
    return (
      `this kernel has no md (software RAID) driver: /proc/mdstat is missing; load it (\`modprobe -a md_mod raid${level}\`)` +
      " or set instance.localStorage.strategy to Mount"
    );
  }
  return "check the disks with `mdadm --examine` and the kernel log (`dmesg`)";
}

/** The array exists afterwards: assembled already, assembled from its members, or created from blank disks. */
async function ensureArray(env: Env, layout: LocalStorageLayout, spec: RaidSpec): Promise<Result<void>> {
  const { root, log } = env.ctx;
  if (await pathExists(spec.device)) return ok(undefined);
  const types: (string | undefined)[] = [];
  for (const d of layout.disks) {
    const t = await filesystemType(env.o.run, root.path(d.device));
    if (!t.ok) return t;
    types.push(t.value);
  }
  const foreign = types.findIndex((t) => t !== undefined && t !== "linux_raid_member");
  if (foreign >= 0) {
    const device = layout.disks[foreign]?.device ?? "";
    const message = `${device} holds ${types[foreign]}; berth builds the ${layout.strategy} array only from disks without a filesystem`;
    return failWith(
      "run.local-storage-signature",
      message,
      device,
      `if its data may go, wipe it (\`wipefs -a ${device}\`) and run berth init again`,
    );
  }
  const hint = await mdHint(root, spec.level);
  const assemble = types.some((t) => t === "linux_raid_member");
  const r = assemble ? await assembleRaid(env.o.run, spec, hint) : await createRaid(env.o.run, spec, hint);
  if (!r.ok) return r;
  const what = `${assemble ? "assembled" : "created"} ${layout.strategy} array ${spec.device} from ${spec.members.join(", ")}`;
  log.info({ event: assemble ? "local-storage.array-assembled" : "local-storage.array-created", component: COMPONENT, cause: what });
  env.done.push(what);
  return ok(undefined);
}

/** The array's ARRAY line in mdadm's config directories, so the next boot assembles it under the same name. */
async function keepArrayConfig(env: Env, device: string): Promise<Result<void>> {
  const line = await raidConfigLine(env.o.run, env.ctx.root.path(device));
  if (!line.ok) return line;
  const content = `# Written by berth (instance.localStorage); changes are overwritten.\n${line.value}\n`;
  for (const file of MDADM_CONFIG_FILES) {
    const w = await writeFileAtomic(env.ctx.root, file, content, { mode: 0o644, component: COMPONENT });
    if (!w.ok) return w;
  }
  return ok(undefined);
}

/** Stops the units that are active among `units`; returns those it stopped. */
async function stopActive(env: Env, units: readonly string[]): Promise<Result<string[]>> {
  const stopped: string[] = [];
  for (const u of units) {
    const a = await isActive(env.ctx, u);
    if (!a.ok) return a;
    if (!a.value) continue;
    let job: string;
    try {
      job = await env.ctx.sd.stopUnit(u, { timeoutMs: env.o.jobTimeoutMs });
    } catch (e) {
      return fail(toBerthError(e, "run.local-storage-job", `stop of ${u} failed`, `check \`systemctl status ${u}\``));
    }
    if (job !== "done") return failWith("run.local-storage-job", `stop of ${u} ended with "${job}"`, u, `check \`systemctl status ${u}\``);
    env.ctx.log.info({ event: "local-storage.stopped", component: COMPONENT, cause: "its state directory moves onto the array", unit: u });
    stopped.push(u);
  }
  return ok(stopped);
}

/** Binds each state directory not yet bound: copy its contents onto the array, then mount; its users stopped meanwhile. */
async function bindStateDirs(env: Env, binds: readonly LocalMount[]): Promise<Result<void>> {
  const pending: LocalMount[] = [];
  for (const b of binds) {
    const a = await isActive(env.ctx, b.unit);
    if (!a.ok) return a;
    if (!a.value) pending.push(b);
  }
  if (pending.length === 0) return ok(undefined);
  const users = [...new Set(pending.flatMap((b) => b.users ?? []))];
  const stopped = await stopActive(env, users);
  if (!stopped.ok) return stopped;
  const { root } = env.ctx;
  for (const b of pending) {
    try {
      await mkdir(root.path(b.what), { recursive: true });
      await mkdir(root.path(b.where), { recursive: true });
    } catch (e) {
      return fail(
        toBerthError(e, "run.local-storage-mkdir", `cannot create ${b.what} or ${b.where}`, "check the array's mount and free space"),
      );
    }
    const copied = await copyTree(env.o.run, root.path(b.where), root.path(b.what));
    if (!copied.ok) return copied;
    const up = await mountIt(env, b);
    if (!up.ok) return up;
  }
  for (const u of stopped.value) {
    const r = await startUnit(env, u, "started again after its state directory moved");
    if (!r.ok) return r;
  }
  return ok(undefined);
}

/** RAID0/RAID10: array, its config, xfs, its mount, then the bind mounts. */
async function raidStorage(env: Env, layout: LocalStorageLayout): Promise<Result<void>> {
  const [arrayMount, ...binds] = layout.mounts;
  if (!layout.array || !arrayMount) return ok(undefined);
  const { root } = env.ctx;
  const spec: RaidSpec = { ...layout.array, device: root.path(layout.array.device), members: layout.disks.map((d) => root.path(d.device)) };
  const active = await isActive(env.ctx, arrayMount.unit);
  if (!active.ok) return active;
  if (!active.value) {
    const arr = await ensureArray(env, layout, spec);
    if (!arr.ok) return arr;
  }
  const conf = await keepArrayConfig(env, layout.array.device);
  if (!conf.ok) return conf;
  if (!active.value) {
    const fs = await ensureXfs(env, layout.array.device, { discard: false });
    if (!fs.ok) return fs;
    const up = await mountIt(env, arrayMount);
    if (!up.ok) return up;
  }
  return bindStateDirs(env, binds);
}

export function localStorageStep(o: LocalStorageStepOptions): RunStep {
  return {
    name: "local-storage",
    needs: o.needs,
    async run(ctx) {
      const disks = await o.disks(ctx.root);
      const l = localStorageLayout(o.localStorage, disks);
      if (!l.ok) return { outcome: "failed", error: l.errors[0] as BerthError };
      const layout = l.value;
      if (!layout) {
        const where = `${DISK_BY_ID_DIR}/*${INSTANCE_STORE_MARKER}*`;
        const cause = `no EC2 instance-store NVMe disks (${where}): nothing to set up for ${o.localStorage.strategy}`;
        return { outcome: "ok", action: "none", cause, event: "local-storage.no-disks" };
      }
      const stale = await checkUnits(ctx.root, layout);
      if (stale) return { outcome: "failed", error: stale };
      const env: Env = { ctx, o, done: [] };
      const r = layout.array ? await raidStorage(env, layout) : await mountDisks(env, layout);
      const devices = layout.disks.map((d) => d.device);
      const fields = { fields: { strategy: layout.strategy, disks: devices, mounts: layout.mounts.map((m) => m.where) } };
      if (!r.ok) return { outcome: "failed", error: r.errors[0] as BerthError, event: "local-storage.failed", ...fields };
      if (env.done.length === 0) {
        return {
          outcome: "ok",
          action: "none",
          cause: `${layout.strategy} on ${devices.join(", ")}: every mount is active`,
          event: "local-storage.unchanged",
          ...fields,
        };
      }
      return { outcome: "changed", action: "set-up", cause: env.done.join("; "), event: "local-storage.ready", ...fields };
    },
  };
}
