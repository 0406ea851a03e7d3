/**
 * The run phase: bring the node up on what the config phase wrote.
 *
 *   daemon-reload (units changed) → containerd (start/restart only when
 *   needed, job awaited with a deadline) → CRI ready (socket, Version,
 *   Status RuntimeReady; jittered backoff under one deadline) → sandbox image
 *   (present / pull with retries / import from an archive) → kubelet (start,
 *   or restart only when its config changed; confirmed active) → status file
 *   → enqueue post-bootstrap tasks and the reboot-once unit (never awaited).
 *
 * Every decision is made from facts read at the time, not from a memory of
 * what a previous run did, because the config phase and the run phase are
 * usually two processes (berth-config.service, berth-run.service):
 * - "containerd's config changed" = the config phase of this process wrote a
 *   containerd path, OR a containerd config file is newer than the moment
 *   containerd last became active (its ActiveEnterTimestamp). The second rule
 *   covers the two-process boot, where containerd may have started from the
 *   distribution's config before berth-config wrote the real one.
 * - the same rule for the kubelet (config, flags file, kubeconfig, unit).
 * - "units changed" = this process wrote a unit, OR the fingerprint of the
 *   unit directories differs from the one recorded (in /run, so it is
 *   forgotten at reboot, exactly when systemd re-reads everything) at the
 *   last reload.
 *
 * The decision logic is pure (`decideUnitAction`, `decideReload`) and unit
 * tested with the recording systemd fake; this file's shell only gathers
 * the facts and carries the decisions out.
 */
import { createHash } from "node:crypto";
import { execFile } from "node:child_process";
import { promises as fsp } from "node:fs";
import path from "node:path";
import type { MergedConfig } from "../api/types.ts";
import type { NodeFacts } from "../facts/types.ts";
import { readTextIfPresent } from "../host/read.ts";
import type { HostRoot } from "../host/root.ts";
import type { JobResult, Systemd, UnitState } from "../host/systemd.ts";
import type { CriClient, CriReady, CriWaitInfo, WaitForCriReadyOptions } from "../host/cri.ts";
import { CONTAINERD_CONFIG_PATH, DEFAULT_SANDBOX_IMAGE } from "../render/containerd.ts";
import { parseToml, tomlAt } from "../render/toml.ts";
import { UNIT_DIR } from "../render/units.ts";
import { CONTAINERD_SOCKET, RUN_STATUS_PATH, UNITS } from "../util/node-layout.ts";
import { IMAGE_CREDENTIAL_PROVIDER_DIR } from "../render/credential-provider.ts";
import { SYSTEM_ENVIRONMENT_PATH } from "../render/environment.ts";
import { BOOTSTRAP_KUBECONFIG_PATH, isOutpost, KUBECONFIG_PATH } from "../render/kubeconfig.ts";
import { KUBELET_ENVIRONMENT_PATH } from "../render/kubelet-env.ts";
import { fail, ok, type BerthError, type Result } from "../util/result.ts";
import { retry, RetryExhausted } from "../util/retry.ts";

// ---------------------------------------------------------------- constants

export const DEFAULTS = {
  criReadyTimeoutMs: 300_000,
  /** systemd's own DefaultTimeoutStartSec is 90 s; a first containerd start on a slow disk can take longer. */
  unitJobTimeoutMs: 180_000,
  /** Overall deadline for pulling the sandbox image (all retries). */
  sandboxPullTimeoutMs: 300_000,
  sandboxPullBackoff: { initialMs: 1000, maxMs: 30_000, factor: 2, jitter: 0.5 },
  /**
   * Waiting for CRI: the socket's appearance is seen at once (inotify, in
   * waitForCriReady); between socket and RuntimeReady containerd takes a few
   * hundred ms, and every poll there is one local gRPC call. A 25 ms cap
   * keeps "ready → noticed" under 50 ms (bench/cri-notice.ts); cri.ts's
   * default cap of 500 ms measured 200–430 ms late.
   */
  criWaitBackoff: { initialMs: 5, maxMs: 25, factor: 2, jitter: 0.5 },
  /**
   * The waiting client's own gRPC reconnect backoff: after a refused connect
   * grpc-js fails every call fast until its backoff ends, so this must not
   * exceed the wait's own pace above.
   */
  criReconnect: { initialMs: 2, maxMs: 20 },
} as const;

/**
 * What each unit reads, as host paths (a directory covers everything under
 * it): a change written there restarts the unit, and the mtime rule walks
 * these same paths. containerd re-reads certs.d on every pull, so it is left out.
 */
const CONTAINERD_WATCH = ["/etc/containerd", `${UNIT_DIR}/${UNITS.containerd}.d`];
const CONTAINERD_UNWATCHED = "/etc/containerd/certs.d";
const KUBELET_WATCH = [
  "/etc/kubernetes",
  path.dirname(KUBELET_ENVIRONMENT_PATH),
  IMAGE_CREDENTIAL_PROVIDER_DIR,
  KUBECONFIG_PATH,
  BOOTSTRAP_KUBECONFIG_PATH,
  `${UNIT_DIR}/${UNITS.kubelet}`,
  `${UNIT_DIR}/${UNITS.kubelet}.d`,
];

const under = (p: string, dir: string): boolean => p === dir || p.startsWith(`${dir}/`);

/** Host paths whose change means containerd must be restarted. */
export function isContainerdPath(p: string): boolean {
  return CONTAINERD_WATCH.some((w) => under(p, w)) && !under(p, CONTAINERD_UNWATCHED);
}

/** Host paths whose change means the kubelet must be restarted. */
export function isKubeletPath(p: string): boolean {
  return KUBELET_WATCH.some((w) => under(p, w));
}

/** Unit directories fingerprinted for the reload decision. */
const UNIT_DIRS = [UNIT_DIR, path.dirname(SYSTEM_ENVIRONMENT_PATH)];

// ---------------------------------------------------------------- types

/** What berth logs through: pino's Logger satisfies it. */
export interface EventLogger {
  info(obj: Record<string, unknown>, msg?: string): void;
  warn(obj: Record<string, unknown>, msg?: string): void;
  error(obj: Record<string, unknown>, msg?: string): void;
  debug(obj: Record<string, unknown>, msg?: string): void;
}

export interface RunContext {
  root: HostRoot;
  config: MergedConfig;
  facts?: NodeFacts;
  /** What the config phase of this process wrote (absent with `--skip config`). */
  applied?: { written: string[]; unitsChanged: boolean };
  /** Accepted for callers that only know whether units changed. */
  unitsChanged?: boolean;
  /** A connected systemd; connected (and closed) here otherwise. */
  systemd?: Systemd;
  log?: EventLogger;
  env?: NodeJS.ProcessEnv;
  /** Test seams. */
  deps?: RunDeps;
}

export interface RunDeps {
  /** Wait for CRI readiness (default: src/host/cri.ts waitForCriReady). */
  waitForCri?: (socketPath: string, opts: WaitForCriReadyOptions) => Promise<CriReady>;
  /** The CRI client used for the sandbox image (default: a new client on the socket, closed at the end). */
  cri?: CriClient;
  /** Load an image archive into containerd's k8s.io namespace (default: `ctr images import`). */
  importArchive?: (socketPath: string, archivePath: string) => Promise<void>;
  /** Sleep used by the pull retries (tests pass an instant one). */
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  now?: () => number;
}

export type UnitAction = "none" | "start" | "restart";

export interface UnitDecision {
  action: UnitAction;
  cause: string;
}

export interface RunStep {
  step: "reload" | "containerd" | "cri" | "sandbox-image" | "kubelet" | "tasks" | "reboot-once" | "status";
  action: string;
  cause?: string;
  durationMs: number;
}

export interface RunReport {
  steps: RunStep[];
  daemonReloaded: boolean;
  containerd: UnitDecision & { jobResult?: JobResult };
  cri: { readyMs: number; attempts: number; runtimeName: string; runtimeVersion: string };
  sandboxImage: { image: string; action: "present" | "pulled" | "imported"; attempts: number };
  kubelet: UnitDecision & { mainPid: number; jobResult?: JobResult };
  /** Units enqueued after bootstrap (not awaited). */
  enqueued: string[];
  statusPath: string;
  durationMs: number;
}

/** The JSON berth writes at RUN_STATUS_PATH; `berth status` and the agent read it. */
export interface RunStatus {
  apiVersion: "berth.dev/v1alpha1";
  kind: "RunStatus";
  result: "succeeded" | "failed" | "running";
  startedAt: string;
  finishedAt?: string;
  durationMs?: number;
  /** Steps finished, in order, with their timings. */
  steps: RunStep[];
  containerd?: RunReport["containerd"];
  cri?: RunReport["cri"];
  sandboxImage?: RunReport["sandboxImage"];
  kubelet?: RunReport["kubelet"];
  /** Task units; `state` is filled in by `berth task status` (tasks run after this file is first written). */
  tasks?: { name: string; unit: string; state?: string; result?: string }[];
  rebootAfterBootstrap?: boolean;
  error?: { code: string; message: string; hint?: string };
  /** Fingerprint of the unit directories at the last daemon-reload (see the module comment). */
  unitsFingerprint?: string;
}

// ---------------------------------------------------------------- pure decisions

/**
 * What to do with a unit. Pure: the caller gathers the unit's state, the
 * paths this process wrote for it, and the newest mtime (ms) of its config.
 */
export function decideUnitAction(
  unit: string,
  state: UnitState,
  input: { written: string[]; newestConfigMtimeMs?: number; newestConfigPath?: string },
): UnitDecision {
  if (state.activeState === "activating" || state.activeState === "reloading") {
    // A start job (from boot, or systemd's Restart=) is already running: join it rather than kill it.
    return { action: "start", cause: `${unit} is ${state.activeState} (${state.subState}); waiting for its start job` };
  }
  if (state.activeState !== "active") {
    const why = state.activeState === "failed" ? `failed (${state.result || "unknown result"})` : state.activeState || "unknown";
    return { action: state.activeState === "inactive" ? "start" : "restart", cause: `${unit} is ${why}` };
  }
  if (input.written.length > 0) {
    return { action: "restart", cause: `config changed: ${input.written.join(", ")}` };
  }
  const enteredMs = state.activeEnterTimestampUs / 1000;
  if (input.newestConfigMtimeMs !== undefined && enteredMs > 0 && input.newestConfigMtimeMs > enteredMs) {
    return {
      action: "restart",
      cause: `config changed after ${unit} started: ${input.newestConfigPath ?? "a config file"} is newer (${new Date(input.newestConfigMtimeMs).toISOString()} > ${new Date(enteredMs).toISOString()})`,
    };
  }
  return { action: "none", cause: `${unit} is active and its config is unchanged` };
}

/** Reload when this process changed units, or the unit directories differ from the last reload. */
export function decideReload(input: { unitsChanged: boolean; fingerprint: string; recorded?: string }): { reload: boolean; cause: string } {
  if (input.unitsChanged) return { reload: true, cause: "the config phase wrote units" };
  if (input.recorded === undefined) return { reload: true, cause: "no reload recorded since boot" };
  if (input.recorded !== input.fingerprint) return { reload: true, cause: "unit files changed since the last reload" };
  return { reload: false, cause: "unit files unchanged since the last reload" };
}

/** The sandbox image and the CRI socket from containerd's config.toml (schema 2 or 3). */
export function containerdRuntimeSettings(tomlText: string | undefined): { sandboxImage: string; socket: string } {
  let sandboxImage = DEFAULT_SANDBOX_IMAGE;
  let socket = CONTAINERD_SOCKET;
  if (tomlText === undefined) return { sandboxImage, socket };
  const parsed = parseToml(tomlText);
  if (!parsed.ok) return { sandboxImage, socket };
  const t = parsed.value;
  const v2 = tomlAt(t, "plugins", "io.containerd.grpc.v1.cri", "sandbox_image");
  const v3 = tomlAt(t, "plugins", "io.containerd.cri.v1.images", "pinned_images", "sandbox");
  if (typeof v3 === "string" && v3) sandboxImage = v3;
  else if (typeof v2 === "string" && v2) sandboxImage = v2;
  const addr = tomlAt(t, "grpc", "address");
  if (typeof addr === "string" && addr) socket = addr;
  return { sandboxImage, socket };
}

// ---------------------------------------------------------------- shell helpers

function errMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** The first BerthError inside a thrown BerthFailure, or one made from the throwable. */
function toBerthError(e: unknown, code: string, what: string, hint: string): BerthError {
  if (e && typeof e === "object" && "errors" in e && Array.isArray((e as { errors: unknown }).errors)) {
    const first = (e as { errors: BerthError[] }).errors[0];
    if (first) return first;
  }
  if (e instanceof RetryExhausted) return toBerthError(e.lastError, code, `${what} (${e.message})`, hint);
  return { code, message: `${what}: ${errMessage(e)}`, hint, cause: e };
}

/** Newest mtime (ms) of the files at/under the given host paths. */
async function newestMtime(root: HostRoot, hostPaths: readonly string[], skip: (hostPath: string) => boolean = () => false): Promise<{ mtimeMs: number; path: string } | undefined> {
  let best: { mtimeMs: number; path: string } | undefined;
  const visit = async (hp: string, depth: number): Promise<void> => {
    if (skip(hp) || depth > 6) return;
    let st;
    try {
      st = await fsp.lstat(root.path(hp));
    } catch {
      return;
    }
    if (st.isDirectory()) {
      let names: string[] = [];
      try {
        names = await fsp.readdir(root.path(hp));
      } catch {
        return;
      }
      for (const n of names) await visit(`${hp}/${n}`, depth + 1);
    } else if (!best || st.mtimeMs > best.mtimeMs) best = { mtimeMs: st.mtimeMs, path: hp };
  };
  for (const p of hostPaths) await visit(p, 0);
  return best;
}

/** sha256 over (relative path, link target or content) of every entry in the unit directories, sorted. */
export async function unitsFingerprint(root: HostRoot): Promise<string> {
  const h = createHash("sha256");
  const walk = async (hp: string, depth: number): Promise<void> => {
    let st;
    try {
      st = await fsp.lstat(root.path(hp));
    } catch {
      return;
    }
    if (st.isSymbolicLink()) {
      h.update(`L ${hp} ${await fsp.readlink(root.path(hp)).catch(() => "")}\n`);
    } else if (st.isDirectory() && depth < 4) {
      const names = (await fsp.readdir(root.path(hp)).catch(() => [] as string[])).sort();
      for (const n of names) await walk(`${hp}/${n}`, depth + 1);
    } else if (st.isFile()) {
      h.update(`F ${hp} `);
      h.update(await fsp.readFile(root.path(hp)).catch(() => Buffer.alloc(0)));
      h.update("\n");
    }
  };
  for (const d of UNIT_DIRS) await walk(d, 0);
  return h.digest("hex").slice(0, 32);
}

export async function readStatus(root: HostRoot): Promise<RunStatus | undefined> {
  const text = await readTextIfPresent(root.path(RUN_STATUS_PATH));
  if (text === undefined) return undefined;
  try {
    const v = JSON.parse(text) as RunStatus;
    return v && typeof v === "object" ? v : undefined;
  } catch {
    return undefined;
  }
}

/** Atomic write (temp file + rename in the same directory). */
export async function writeStatus(root: HostRoot, status: RunStatus): Promise<void> {
  const target = root.path(RUN_STATUS_PATH);
  await fsp.mkdir(path.dirname(target), { recursive: true, mode: 0o755 });
  const tmp = `${target}.${process.pid}.tmp`;
  try {
    await fsp.writeFile(tmp, `${JSON.stringify(status, null, 2)}\n`, { mode: 0o644 });
    await fsp.rename(tmp, target);
  } catch (e) {
    await fsp.rm(tmp, { force: true }).catch(() => undefined);
    throw e;
  }
}

/** `ctr` because CRI has no import call; the archive lands in the k8s.io namespace CRI reads. */
function ctrImport(socketPath: string, archivePath: string): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile("ctr", ["--address", socketPath, "--namespace", "k8s.io", "images", "import", archivePath], { timeout: 300_000 }, (err, _stdout, stderr) => {
      if (err) reject(new Error(`ctr images import ${archivePath} failed: ${stderr.trim() || err.message}`));
      else resolve();
    });
  });
}

/**
 * pino to stderr, synchronous (a oneshot must not lose its last lines on
 * exit). pino is CommonJS: bundlers expose it as the default export, tsx as
 * a named one too, hence both. Should it fail to load, the same JSON lines
 * are written by hand, so logging can never stop the run phase.
 */
export async function defaultLogger(): Promise<EventLogger> {
  try {
    const m = (await import("pino")) as unknown as { pino?: typeof import("pino").pino; default?: typeof import("pino").pino };
    const pino = m.pino ?? m.default;
    if (typeof pino !== "function") throw new Error("pino has no callable export");
    const l = pino({ base: undefined, timestamp: pino.stdTimeFunctions.isoTime, level: process.env.BERTH_LOG_LEVEL ?? "info" }, pino.destination({ fd: 2, sync: true }));
    return { info: (o, m2) => l.info(o, m2), warn: (o, m2) => l.warn(o, m2), error: (o, m2) => l.error(o, m2), debug: (o, m2) => l.debug(o, m2) };
  } catch {
    const levels = { debug: 20, info: 30, warn: 40, error: 50 } as const;
    const min = levels[(process.env.BERTH_LOG_LEVEL as keyof typeof levels) ?? "info"] ?? 30;
    const at = (level: keyof typeof levels) => (o: Record<string, unknown>, msg?: string) => {
      if (levels[level] < min) return;
      process.stderr.write(`${JSON.stringify({ level: levels[level], time: new Date().toISOString(), ...o, ...(msg ? { msg } : {}) })}\n`);
    };
    return { info: at("info"), warn: at("warn"), error: at("error"), debug: at("debug") };
  }
}

/**
 * Enqueue a start job without waiting for it. A unit ordered after
 * berth-run.service (tasks, reboot-once) cannot finish while the run phase
 * (which *is* berth-run.service at boot) waits for it: awaiting it would
 * deadlock until the deadline.
 */
async function enqueueStart(sd: Systemd, unit: string): Promise<"enqueued"> {
  await sd.enqueueStartUnit(unit);
  return "enqueued";
}

// ---------------------------------------------------------------- the phase

export async function runPhase(ctx: RunContext): Promise<Result<RunReport>> {
  const now = ctx.deps?.now ?? Date.now;
  const t0 = now();
  const log = ctx.log ?? (await defaultLogger());
  const { root, config } = ctx;
  const run = config.berth.run ?? {};
  const jobTimeoutMs = run.unitJobTimeoutMs ?? DEFAULTS.unitJobTimeoutMs;
  const written = ctx.applied?.written ?? [];
  const unitsChanged = ctx.applied?.unitsChanged ?? ctx.unitsChanged ?? false;
  const steps: RunStep[] = [];
  const previous = await readStatus(root);
  const status: RunStatus = { apiVersion: "berth.dev/v1alpha1", kind: "RunStatus", result: "running", startedAt: new Date(t0).toISOString(), steps };
  if (previous?.unitsFingerprint) status.unitsFingerprint = previous.unitsFingerprint;

  const step = (s: RunStep["step"], action: string, cause: string | undefined, startedAt: number): RunStep => {
    const r: RunStep = { step: s, action, ...(cause !== undefined ? { cause } : {}), durationMs: now() - startedAt };
    steps.push(r);
    return r;
  };

  const finish = async (error?: BerthError): Promise<void> => {
    status.result = error ? "failed" : "succeeded";
    status.finishedAt = new Date(now()).toISOString();
    status.durationMs = now() - t0;
    if (error) status.error = { code: error.code, message: error.message, ...(error.hint ? { hint: error.hint } : {}) };
    try {
      await writeStatus(root, status);
    } catch (e) {
      log.warn({ event: "status.write-failed", component: "run", cause: errMessage(e), path: root.path(RUN_STATUS_PATH) });
    }
  };

  const failWith = async (e: BerthError): Promise<Result<RunReport>> => {
    log.error({ event: "run.failed", component: "run", code: e.code, cause: e.message, hint: e.hint, durationMs: now() - t0 });
    await finish(e);
    return fail(e);
  };

  let sd = ctx.systemd;
  let ownSystemd = false;
  let cri = ctx.deps?.cri;
  let ownCri = false;
  try {
    await writeStatus(root, status).catch(() => undefined);
    log.info({ event: "run.start", component: "run", cause: ctx.applied ? "after the config phase of this process" : "config phase ran separately (or was skipped)", root: root.dir, unitsChanged, written: written.length });

    if (!sd) {
      const { connectSystemd } = await import("../host/systemd.ts");
      const busAddress = ctx.env?.BERTH_BUS_ADDRESS ?? ctx.env?.DBUS_SYSTEM_BUS_ADDRESS;
      try {
        sd = await connectSystemd(busAddress ? { busAddress } : {});
      } catch (e) {
        return failWith(toBerthError(e, "run.systemd-connect", "cannot reach systemd over D-Bus", "berth must run as root on a systemd host"));
      }
      ownSystemd = true;
    }

    // 1. daemon-reload
    {
      const ts = now();
      const fingerprint = await unitsFingerprint(root);
      const d = decideReload({ unitsChanged, fingerprint, ...(previous?.unitsFingerprint ? { recorded: previous.unitsFingerprint } : {}) });
      if (d.reload) {
        try {
          await sd.daemonReload();
        } catch (e) {
          return failWith(toBerthError(e, "run.daemon-reload", "daemon-reload failed", "check `journalctl -b -u init.scope` for unit file errors"));
        }
        status.unitsFingerprint = fingerprint;
        log.info({ event: "systemd.reloaded", component: "systemd", cause: d.cause, durationMs: now() - ts });
      }
      step("reload", d.reload ? "reloaded" : "none", d.cause, ts);
    }

    // 2. containerd
    const settings = containerdRuntimeSettings(await readTextIfPresent(root.path(CONTAINERD_CONFIG_PATH)));
    if (!settings.socket.startsWith("/")) {
      // root.path would throw, and the catch-all below would call the user's config a bug in berth.
      return failWith({ code: "run.containerd-socket", message: `containerd's grpc.address "${settings.socket}" is not an absolute path, so berth cannot tell where its CRI socket is`, where: { source: CONTAINERD_CONFIG_PATH, path: "grpc.address" }, hint: "set grpc.address to an absolute socket path (the default is /run/containerd/containerd.sock) in the NodeConfig's containerd.config" });
    }
    const socketPath = root.path(settings.socket);
    {
      const ts = now();
      let state: UnitState;
      try {
        state = await sd.unitState(UNITS.containerd);
      } catch (e) {
        return failWith(toBerthError(e, "run.containerd-state", `cannot read the state of ${UNITS.containerd}`, "check `systemctl status containerd`"));
      }
      if (state.loadState === "not-found") {
        return failWith({ code: "run.containerd-missing", message: `${UNITS.containerd} is not installed (systemd does not know the unit)`, where: { path: UNITS.containerd }, hint: "install containerd (its package ships containerd.service) and run berth init again" });
      }
      const newest = await newestMtime(root, CONTAINERD_WATCH, (p) => under(p, CONTAINERD_UNWATCHED));
      const d = decideUnitAction(UNITS.containerd, state, {
        written: written.filter(isContainerdPath),
        ...(newest ? { newestConfigMtimeMs: newest.mtimeMs, newestConfigPath: newest.path } : {}),
      });
      const report: RunReport["containerd"] = { ...d };
      status.containerd = report;
      if (d.action !== "none") {
        log.info({ event: `containerd.${d.action}`, component: "containerd", cause: d.cause, activeState: state.activeState });
        let result: JobResult;
        try {
          result = d.action === "restart" ? await sd.restartUnit(UNITS.containerd, { timeoutMs: jobTimeoutMs }) : await sd.startUnit(UNITS.containerd, { timeoutMs: jobTimeoutMs });
        } catch (e) {
          return failWith(toBerthError(e, "run.containerd-job", `${d.action} of ${UNITS.containerd} failed`, "check `systemctl status containerd` and `journalctl -u containerd`"));
        }
        report.jobResult = result;
        if (result !== "done") {
          // containerd carries Restart=always: a failed start is retried by
          // systemd, and the CRI wait below (with its own deadline) sees it come
          // back. Give up at once only when nothing will bring it back.
          const after = await sd.unitState(UNITS.containerd).catch(() => undefined);
          const pending = after && (after.activeState === "activating" || after.subState === "auto-restart" || after.activeState === "active");
          log.warn({ event: "containerd.job-failed", component: "containerd", cause: `job result ${result}`, activeState: after?.activeState, subState: after?.subState, willRetry: Boolean(pending), durationMs: now() - ts });
          if (!pending) {
            return failWith({ code: "run.containerd-failed", message: `${d.action} of ${UNITS.containerd} ended with "${result}" and systemd will not restart it (${after?.activeState ?? "unknown"}/${after?.subState ?? "unknown"})`, where: { path: UNITS.containerd }, hint: "check `journalctl -u containerd` (a bad /etc/containerd/config.toml is the usual cause)" });
          }
        } else {
          log.info({ event: "containerd.active", component: "containerd", cause: d.cause, durationMs: now() - ts });
        }
      } else {
        log.info({ event: "containerd.unchanged", component: "containerd", cause: d.cause });
      }
      step("containerd", d.action, d.cause, ts);
    }

    // 3. CRI readiness
    let ready: CriReady;
    {
      const ts = now();
      const criMod = await import("../host/cri.ts");
      const waitFor = ctx.deps?.waitForCri ?? criMod.waitForCriReady;
      if (!cri) {
        cri = criMod.createCriClient(socketPath, { callTimeoutMs: 2000, reconnect: { ...DEFAULTS.criReconnect } });
        ownCri = true;
      }
      let lastKey = "";
      let waits = 0;
      const onWait = (i: CriWaitInfo): void => {
        waits++;
        // One line per change of cause; the repeats are debug (a boot can wait hundreds of times).
        const key = `${i.phase}:${i.cause}`;
        const fields = { event: "cri.waiting", component: "cri", phase: i.phase, cause: i.cause, attempt: i.attempt, delayMs: i.delayMs, elapsedMs: i.elapsedMs };
        if (key !== lastKey) log.info(fields);
        else log.debug(fields);
        lastKey = key;
      };
      try {
        ready = await waitFor(socketPath, { deadlineMs: run.criReadyTimeoutMs ?? DEFAULTS.criReadyTimeoutMs, backoff: { ...DEFAULTS.criWaitBackoff }, onWait, client: cri });
      } catch (e) {
        return failWith(toBerthError(e, "run.cri-not-ready", "containerd's CRI did not become ready", "check `journalctl -u containerd`"));
      }
      status.cri = { readyMs: now() - ts, attempts: ready.attempts, runtimeName: ready.version.runtimeName, runtimeVersion: ready.version.runtimeVersion };
      log.info({ event: "cri.ready", component: "cri", cause: waits ? `ready after ${waits} wait(s)` : "ready at first try", durationMs: now() - ts, attempts: ready.attempts, socketMs: ready.timeline.socketMs, versionMs: ready.timeline.versionMs, runtimeVersion: ready.version.runtimeVersion });
      step("cri", "ready", `${ready.attempts} attempt(s)`, ts);
    }

    // 4. sandbox image
    {
      const ts = now();
      const image = settings.sandboxImage;
      let present;
      try {
        present = await cri.imageStatus(image);
      } catch (e) {
        return failWith(toBerthError(e, "run.sandbox-image", `cannot ask containerd about the sandbox image ${image}`, "check `journalctl -u containerd`"));
      }
      let action: "present" | "pulled" | "imported" = "present";
      let attempts = 0;
      if (!present) {
        const archive = run.sandboxImageArchive;
        if (archive) {
          action = "imported";
          log.info({ event: "sandbox-image.import", component: "sandbox-image", cause: `${image} is absent; importing ${archive}`, image });
          try {
            await (ctx.deps?.importArchive ?? ctrImport)(socketPath, root.path(archive));
            attempts = 1;
          } catch (e) {
            return failWith({ code: "run.sandbox-import", message: `cannot import the sandbox image archive ${archive}: ${errMessage(e)}`, where: { path: "berth.run.sandboxImageArchive", source: archive }, hint: "the archive must be an OCI or docker image archive (e.g. from `ctr images export`)", cause: e });
          }
          const after = await cri.imageStatus(image).catch(() => undefined);
          if (!after) {
            return failWith({ code: "run.sandbox-import", message: `the archive ${archive} was imported but containerd still has no image ${image}`, where: { path: "berth.run.sandboxImageArchive", source: archive }, hint: `the archive must contain ${image} under that exact name (check \`ctr -n k8s.io images ls\`)` });
          }
        } else {
          action = "pulled";
          log.info({ event: "sandbox-image.pull", component: "sandbox-image", cause: `${image} is absent`, image });
          const c = cri;
          try {
            await retry(
              async (a, remaining) => {
                attempts = a;
                return c.pullImage(image, { timeoutMs: Math.max(1, Math.min(remaining, DEFAULTS.sandboxPullTimeoutMs)) });
              },
              {
                ...DEFAULTS.sandboxPullBackoff,
                timeoutMs: DEFAULTS.sandboxPullTimeoutMs,
                ...(ctx.deps?.sleep ? { sleep: ctx.deps.sleep } : {}),
                ...(ctx.deps?.now ? { now: ctx.deps.now } : {}),
                onRetry: (i) => log.warn({ event: "sandbox-image.pull-retry", component: "sandbox-image", cause: errMessage(i.cause), attempt: i.attempt, delayMs: i.delayMs, elapsedMs: i.elapsedMs, image }),
              },
            );
          } catch (e) {
            const last = e instanceof RetryExhausted ? e.lastError : e;
            return failWith({
              code: "run.sandbox-pull",
              message: `cannot pull the sandbox image ${image}: ${e instanceof RetryExhausted ? e.message : errMessage(e)}`,
              where: { source: CONTAINERD_CONFIG_PATH, path: "sandbox_image" },
              hint: `check that the registry is reachable from the node (containerd's hosts.toml under /etc/containerd/certs.d) and the image exists; or set berth.run.sandboxImageArchive to load it from a local archive`,
              cause: last,
            });
          }
        }
      }
      status.sandboxImage = { image, action, attempts };
      log.info({ event: `sandbox-image.${action}`, component: "sandbox-image", cause: action === "present" ? "already in containerd" : `${action} in ${attempts} attempt(s)`, image, durationMs: now() - ts });
      step("sandbox-image", action, image, ts);
    }

    // 5. kubelet
    {
      const ts = now();
      let state: UnitState;
      try {
        state = await sd.unitState(UNITS.kubelet);
      } catch (e) {
        return failWith(toBerthError(e, "run.kubelet-state", `cannot read the state of ${UNITS.kubelet}`, "check `systemctl status kubelet`"));
      }
      if (state.loadState === "not-found") {
        return failWith({ code: "run.kubelet-missing", message: `${UNITS.kubelet} is not loaded (systemd does not know the unit)`, where: { path: UNITS.kubelet }, hint: "run the config phase (`berth init --skip run`) to write it, then run berth init again" });
      }
      // On Outposts the kubelet TLS-bootstraps and writes KUBECONFIG_PATH itself
      // after it starts, so that file's mtime is no sign of a config change.
      const newest = await newestMtime(root, KUBELET_WATCH, isOutpost(config.nodeConfig.cluster) ? (p) => p === KUBECONFIG_PATH : undefined);
      const d = decideUnitAction(UNITS.kubelet, state, {
        written: written.filter(isKubeletPath),
        ...(newest ? { newestConfigMtimeMs: newest.mtimeMs, newestConfigPath: newest.path } : {}),
      });
      const report: RunReport["kubelet"] = { ...d, mainPid: state.mainPid };
      status.kubelet = report;
      if (d.action !== "none") {
        log.info({ event: `kubelet.${d.action}`, component: "kubelet", cause: d.cause, activeState: state.activeState });
        try {
          report.jobResult = d.action === "restart" ? await sd.restartUnit(UNITS.kubelet, { timeoutMs: jobTimeoutMs }) : await sd.startUnit(UNITS.kubelet, { timeoutMs: jobTimeoutMs });
        } catch (e) {
          return failWith(toBerthError(e, "run.kubelet-job", `${d.action} of ${UNITS.kubelet} failed`, "check `systemctl status kubelet` and `journalctl -u kubelet`"));
        }
      }
      const after = await sd.unitState(UNITS.kubelet).catch((e: unknown) => e);
      if (after instanceof Error || (after as UnitState).activeState !== "active") {
        const st = after instanceof Error ? undefined : (after as UnitState);
        return failWith({
          code: "run.kubelet-not-active",
          message: `${UNITS.kubelet} is not active after ${d.action === "none" ? "the check" : d.action} (${st ? `${st.activeState}/${st.subState}, result ${st.result}` : errMessage(after)}${report.jobResult ? `, job ${report.jobResult}` : ""})`,
          where: { path: UNITS.kubelet },
          hint: "check `journalctl -u kubelet` (its config under /etc/kubernetes/kubelet and flags in /etc/eks/kubelet/environment)",
        });
      }
      report.mainPid = (after as UnitState).mainPid;
      log.info({ event: d.action === "none" ? "kubelet.unchanged" : "kubelet.active", component: "kubelet", cause: d.cause, mainPid: report.mainPid, durationMs: now() - ts });
      step("kubelet", d.action, d.cause, ts);
    }

    // 6. post-bootstrap tasks and reboot-once: enqueued, never awaited.
    const enqueued: string[] = [];
    const tasks = config.berth.tasks ?? [];
    if (tasks.length > 0) {
      const ts = now();
      status.tasks = tasks.map((t) => ({ name: t.name, unit: `berth-task-${t.name}.service` }));
      try {
        const r = await enqueueStart(sd, UNITS.tasks);
        enqueued.push(UNITS.tasks);
        log.info({ event: "tasks.enqueued", component: "tasks", cause: `${tasks.length} task(s): ${tasks.map((t) => t.name).join(", ")}`, job: r });
      } catch (e) {
        // A task never holds back the node: report, do not fail.
        log.warn({ event: "tasks.enqueue-failed", component: "tasks", cause: errMessage(e) });
      }
      step("tasks", "enqueued", tasks.map((t) => t.name).join(","), ts);
    }
    if (config.berth.rebootAfterBootstrap) {
      const ts = now();
      status.rebootAfterBootstrap = true;
      try {
        const r = await enqueueStart(sd, UNITS.rebootOnce);
        enqueued.push(UNITS.rebootOnce);
        log.info({ event: "reboot-once.enqueued", component: "reboot-once", cause: "rebootAfterBootstrap is set (the unit skips itself once its marker exists)", job: r });
      } catch (e) {
        log.warn({ event: "reboot-once.enqueue-failed", component: "reboot-once", cause: errMessage(e) });
      }
      step("reboot-once", "enqueued", undefined, ts);
    }

    const report: RunReport = {
      steps,
      daemonReloaded: steps.some((s) => s.step === "reload" && s.action === "reloaded"),
      containerd: status.containerd as RunReport["containerd"],
      cri: status.cri as RunReport["cri"],
      sandboxImage: status.sandboxImage as RunReport["sandboxImage"],
      kubelet: status.kubelet as RunReport["kubelet"],
      enqueued,
      statusPath: root.path(RUN_STATUS_PATH),
      durationMs: now() - t0,
    };
    await finish();
    log.info({ event: "run.done", component: "run", cause: "kubelet is active", durationMs: report.durationMs });
    return ok(report);
  } catch (e) {
    return failWith(toBerthError(e, "run.internal", "the run phase failed unexpectedly", "this is a bug in berth; please report it with the log above"));
  } finally {
    if (ownCri) cri?.close();
    if (ownSystemd) sd?.close();
  }
}
