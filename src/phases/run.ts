/**
 * The run phase: bring the node up on what the config phase wrote, as a list
 * of steps (src/phases/steps/): daemon-reload → local storage (with
 * instance.localStorage) → containerd → CRI ready →
 * sandbox image → kubelet → hand off tasks and reboot-once. This module picks
 * the steps and their parameters, runs them, and writes the run status file
 * at the start and at the end. It decides nothing about a unit itself: the
 * steps do, from facts read at the time (the config and run phases are
 * usually two processes, berth-config.service and berth-run.service).
 */
import path from "node:path";
import type { MergedConfig } from "../api/types.ts";
import type { NodeFacts } from "../facts/types.ts";
import type { CriClient, CriReady, WaitForCriReadyOptions } from "../host/cri.ts";
import { runDiskCommand, type DiskCommandRunner } from "../host/disks.ts";
import { instanceStoreDisks, type InstanceStoreDisk } from "../facts/disks.ts";
import { ctrImport } from "../host/ctr-import.ts";
import type { BerthLock } from "../host/lock.ts";
import { readTextIfPresent } from "../host/read.ts";
import type { HostRoot } from "../host/root.ts";
import {
  readRunStatus,
  writeRunStatus,
  type CriRecord,
  type RunStatus,
  type SandboxImageRecord,
  type StepRecord,
  type UnitRecord,
} from "../host/run-status.ts";
import type { Systemd } from "../host/systemd.ts";
import { isOutpost } from "../render/kubeconfig.ts";
import { errorMessage, toBerthError } from "../util/errors.ts";
import { createLogger, type Logger } from "../util/log.ts";
import {
  BOOTSTRAP_KUBECONFIG_PATH,
  CONTAINERD_CONFIG_PATH,
  IMAGE_CREDENTIAL_PROVIDER_DIR,
  KUBECONFIG_PATH,
  KUBELET_ENVIRONMENT_PATH,
  RUN_STATUS_PATH,
  UNIT_DIR,
  UNITS,
} from "../util/node-layout.ts";
import { fail, ok, type BerthError, type Result } from "../util/result.ts";
import { containerdRuntimeSettings } from "./steps/containerd-settings.ts";
import type { RunStep, RunStepContext } from "./steps/context.ts";
import { criReadyStep } from "./steps/cri-ready.ts";
import { daemonReloadStep } from "./steps/daemon-reload.ts";
import { activeReadiness, doneOrRestartingReadiness, ensureUnitStep, restartsFor } from "./steps/ensure-unit.ts";
import { handOffStep } from "./steps/hand-off.ts";
import { localStorageStep } from "./steps/local-storage.ts";
import { sandboxImageStep } from "./steps/sandbox-image.ts";
import { runSteps } from "./steps/step.ts";

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
const CONTAINERD_FILES = { restartOn: ["/etc/containerd", `${UNIT_DIR}/${UNITS.containerd}.d`], notRestartOn: ["/etc/containerd/certs.d"] };
const KUBELET_FILES = {
  restartOn: [
    "/etc/kubernetes",
    path.dirname(KUBELET_ENVIRONMENT_PATH),
    IMAGE_CREDENTIAL_PROVIDER_DIR,
    KUBECONFIG_PATH,
    BOOTSTRAP_KUBECONFIG_PATH,
    `${UNIT_DIR}/${UNITS.kubelet}`,
    `${UNIT_DIR}/${UNITS.kubelet}.d`,
  ],
};

/** Host paths whose change means containerd must be restarted. */
export function isContainerdPath(p: string): boolean {
  return restartsFor(CONTAINERD_FILES, p);
}

/** Host paths whose change means the kubelet must be restarted. */
export function isKubeletPath(p: string): boolean {
  return restartsFor(KUBELET_FILES, p);
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
  log?: Logger;
  env?: NodeJS.ProcessEnv;
  /** The berth lock the caller holds (src/host/lock.ts); status writes then also sweep stale temp files. */
  lock?: BerthLock;
  /** Test seams. */
  deps?: RunDeps;
}

export interface RunDeps {
  /** Wait for CRI readiness (default: src/host/cri.ts waitForCriReady). */
  waitForCri?: (socketPath: string, opts: WaitForCriReadyOptions) => Promise<CriReady>;
  /** The CRI client used for the wait and the sandbox image (default: a new client on the socket, closed at the end). */
  cri?: CriClient;
  /** Load an image archive into containerd's k8s.io namespace (default: src/host/ctr-import.ts). */
  importArchive?: (socketPath: string, archivePath: string) => Promise<void>;
  /** Sleep used by the pull retries (tests pass an instant one). */
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  now?: () => number;
  /** Runs blkid, mkfs.xfs, mdadm, cp for instance.localStorage (default: src/host/disks.ts runDiskCommand). */
  diskCommands?: DiskCommandRunner;
  /** The node's instance-store disks (default: src/facts/disks.ts instanceStoreDisks). */
  instanceStoreDisks?: (root: HostRoot) => Promise<InstanceStoreDisk[]>;
}

/** With instance.localStorage.strategy set: the local-storage step, which containerd's step then needs. */
function localStorageSteps(ctx: RunContext, jobTimeoutMs: number): RunStep[] {
  const localStorage = ctx.config.nodeConfig.instance?.localStorage;
  if (!localStorage?.strategy) return [];
  const deps = ctx.deps ?? {};
  const disks = deps.instanceStoreDisks ?? instanceStoreDisks;
  return [localStorageStep({ needs: ["reload"], localStorage, disks, run: deps.diskCommands ?? runDiskCommand, jobTimeoutMs })];
}

export interface RunReport {
  steps: StepRecord[];
  daemonReloaded: boolean;
  containerd: UnitRecord;
  cri: CriRecord;
  sandboxImage: SandboxImageRecord;
  kubelet: UnitRecord & { mainPid: number };
  /** Units enqueued after bootstrap (not awaited). */
  enqueued: string[];
  statusPath: string;
  durationMs: number;
}

/** The steps, in order, with their parameters from the BerthConfig (or the defaults) and the test seams. */
function planSteps(ctx: RunContext, sandboxImage: string, recordedFingerprint: string | undefined): RunStep[] {
  const run = ctx.config.berth.run ?? {};
  const deps = ctx.deps ?? {};
  const jobTimeoutMs = run.unitJobTimeoutMs ?? DEFAULTS.unitJobTimeoutMs;
  const unitsChanged = ctx.applied?.unitsChanged ?? ctx.unitsChanged ?? false;
  const storage = localStorageSteps(ctx, jobTimeoutMs);
  const steps: RunStep[] = [
    daemonReloadStep({ unitsChanged, ...(recordedFingerprint ? { recorded: recordedFingerprint } : {}) }),
    ...storage,
    ensureUnitStep({
      name: "containerd",
      unit: UNITS.containerd,
      needs: ["reload", ...storage.map((s) => s.name)],
      ...CONTAINERD_FILES,
      jobTimeoutMs,
      missing: {
        message: `${UNITS.containerd} is not installed (systemd does not know the unit)`,
        hint: "install containerd (its package ships containerd.service) and run berth init again",
      },
      // containerd carries Restart=always: a failed start is retried by systemd, and the CRI wait sees it come back.
      ready: doneOrRestartingReadiness("check `journalctl -u containerd` (a bad /etc/containerd/config.toml is the usual cause)"),
    }),
    criReadyStep({
      needs: ["containerd"],
      deadlineMs: run.criReadyTimeoutMs ?? DEFAULTS.criReadyTimeoutMs,
      backoff: { ...DEFAULTS.criWaitBackoff },
      ...(deps.waitForCri ? { waitFor: deps.waitForCri } : {}),
    }),
    sandboxImageStep({
      needs: ["cri"],
      image: sandboxImage,
      ...(run.sandboxImageArchive ? { archive: run.sandboxImageArchive } : {}),
      importArchive: deps.importArchive ?? ctrImport,
      pull: {
        timeoutMs: DEFAULTS.sandboxPullTimeoutMs,
        backoff: { ...DEFAULTS.sandboxPullBackoff },
        ...(deps.sleep ? { sleep: deps.sleep } : {}),
        ...(deps.now ? { now: deps.now } : {}),
      },
    }),
    ensureUnitStep({
      name: "kubelet",
      unit: UNITS.kubelet,
      needs: ["sandbox-image"],
      ...KUBELET_FILES,
      // On Outposts the kubelet TLS-bootstraps and writes KUBECONFIG_PATH itself after it starts,
      // so that file's mtime is no sign of a config change.
      ...(isOutpost(ctx.config.nodeConfig.cluster) ? { ignoreMtimeOf: (p: string) => p === KUBECONFIG_PATH } : {}),
      jobTimeoutMs,
      missing: {
        message: `${UNITS.kubelet} is not loaded (systemd does not know the unit)`,
        hint: "run the config phase (`berth init --skip run`) to write it, then run berth init again",
      },
      ready: activeReadiness(
        "check `journalctl -u kubelet` (its config under /etc/kubernetes/kubelet and flags in /etc/eks/kubelet/environment)",
      ),
    }),
  ];
  const tasks = ctx.config.berth.tasks ?? [];
  if (tasks.length > 0) {
    steps.push(
      handOffStep({
        name: "tasks",
        unit: UNITS.tasks,
        needs: ["kubelet"],
        cause: `${tasks.length} task(s): ${tasks.map((t) => t.name).join(", ")}`,
        record: (s) => void (s.tasks = tasks.map((t) => ({ name: t.name, unit: `berth-task-${t.name}.service` }))),
      }),
    );
  }
  if (ctx.config.berth.rebootAfterBootstrap) {
    steps.push(
      handOffStep({
        name: "reboot-once",
        unit: UNITS.rebootOnce,
        needs: ["kubelet"],
        cause: "rebootAfterBootstrap is set (the unit skips itself once its marker exists)",
        record: (s) => void (s.rebootAfterBootstrap = true),
      }),
    );
  }
  return steps;
}

/** containerd's CRI socket (as a real path) and sandbox image, from its config.toml. */
async function containerdSettings(root: HostRoot): Promise<Result<{ socketPath: string; sandboxImage: string }>> {
  const settings = containerdRuntimeSettings(await readTextIfPresent(root.path(CONTAINERD_CONFIG_PATH)));
  if (!settings.socket.startsWith("/")) {
    // root.path would throw, and the catch-all of runPhase would call the user's config a bug in berth.
    return fail({
      code: "run.containerd-socket",
      message: `containerd's grpc.address "${settings.socket}" is not an absolute path, so berth cannot tell where its CRI socket is`,
      where: { source: CONTAINERD_CONFIG_PATH, path: "grpc.address" },
      hint:
        "set grpc.address to an absolute socket path (the default is /run/containerd/containerd.sock)" +
        " in the NodeConfig's containerd.config",
    });
  }
  return ok({ socketPath: root.path(settings.socket), sandboxImage: settings.sandboxImage });
}

async function connect(env: NodeJS.ProcessEnv | undefined): Promise<Result<Systemd>> {
  const { connectSystemd } = await import("../host/systemd.ts");
  try {
    return ok(await connectSystemd(env ? { env } : {}));
  } catch (e) {
    return fail(toBerthError(e, "run.systemd-connect", "cannot reach systemd over D-Bus", "berth must run as root on a systemd host"));
  }
}

async function newCriClient(socketPath: string): Promise<CriClient> {
  const { createCriClient } = await import("../host/cri.ts");
  return createCriClient(socketPath, { callTimeoutMs: 2000, reconnect: { ...DEFAULTS.criReconnect } });
}

const internalError = (e: unknown): BerthError =>
  toBerthError(e, "run.internal", "the run phase failed unexpectedly", "this is a bug in berth; please report it with the log above");

export async function runPhase(ctx: RunContext): Promise<Result<RunReport>> {
  const now = ctx.deps?.now ?? Date.now;
  const t0 = now();
  const log = ctx.log ?? (await createLogger({ app: "berth-run", ...(ctx.env ? { env: ctx.env } : {}) }));
  const { root } = ctx;
  const written = ctx.applied?.written ?? [];
  const previous = await readRunStatus(root.path(RUN_STATUS_PATH));
  const status: RunStatus = {
    apiVersion: "berth.dev/v1alpha1",
    kind: "RunStatus",
    result: "running",
    startedAt: new Date(t0).toISOString(),
    steps: [],
  };
  if (previous?.unitsFingerprint) status.unitsFingerprint = previous.unitsFingerprint;

  const finish = async (error?: BerthError): Promise<void> => {
    status.result = error ? "failed" : "succeeded";
    status.finishedAt = new Date(now()).toISOString();
    status.durationMs = now() - t0;
    if (error) status.error = { code: error.code, message: error.message, ...(error.hint ? { hint: error.hint } : {}) };
    try {
      await writeRunStatus(root, status, ctx.lock);
    } catch (e) {
      log.warn({ event: "status.write-failed", component: "run", cause: errorMessage(e), path: root.path(RUN_STATUS_PATH) });
    }
  };
  const failWith = async (e: BerthError): Promise<Result<RunReport>> => {
    log.error({ event: "run.failed", component: "run", code: e.code, cause: e.message, hint: e.hint, durationMs: now() - t0 });
    await finish(e);
    return fail(e);
  };

  const own: { sd?: Systemd; cri?: CriClient } = {};
  try {
    await writeRunStatus(root, status, ctx.lock).catch(() => undefined);
    const cause = ctx.applied ? "after the config phase of this process" : "config phase ran separately (or was skipped)";
    const unitsChanged = ctx.applied?.unitsChanged ?? ctx.unitsChanged ?? false;
    log.info({ event: "run.start", component: "run", cause, root: root.dir, unitsChanged, written: written.length });
    const containerd = await containerdSettings(root);
    if (!containerd.ok) return await failWith(containerd.errors[0] as BerthError);
    let sd = ctx.systemd;
    if (!sd) {
      const c = await connect(ctx.env);
      if (!c.ok) return await failWith(c.errors[0] as BerthError);
      sd = own.sd = c.value;
    }
    const { socketPath, sandboxImage } = containerd.value;
    const stepCtx: RunStepContext = {
      root,
      sd,
      log,
      now,
      written,
      status,
      socketPath,
      enqueued: [],
      cri: async () => ctx.deps?.cri ?? (own.cri ??= await newCriClient(socketPath)),
    };
    const steps = planSteps(ctx, sandboxImage, previous?.unitsFingerprint);
    const { error } = await runSteps(steps, stepCtx, { now, log, thrown: internalError, onRecord: (r) => status.steps.push(r) });
    if (error) return await failWith(error);
    const report: RunReport = {
      steps: status.steps,
      daemonReloaded: status.steps.some((s) => s.step === "reload" && s.action === "reloaded"),
      containerd: status.containerd as UnitRecord,
      cri: status.cri as CriRecord,
      sandboxImage: status.sandboxImage as SandboxImageRecord,
      kubelet: status.kubelet as RunReport["kubelet"],
      enqueued: stepCtx.enqueued,
      statusPath: root.path(RUN_STATUS_PATH),
      durationMs: now() - t0,
    };
    await finish();
    log.info({ event: "run.done", component: "run", cause: "kubelet is active", durationMs: report.durationMs });
    return ok(report);
  } catch (e) {
    return await failWith(internalError(e));
  } finally {
    own.cri?.close();
    own.sd?.close();
  }
}
