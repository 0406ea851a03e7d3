/**
 * The run phase's decisions against the recording systemd fake and the CRI
 * fake: what is (re)started when, deadlines, and the errors a user sees.
 * CRI readiness goes through the real waitForCriReady (with the fake client)
 * against a real unix socket file under a temp root.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, mkdir, rm, writeFile, utimes, readFile, readdir } from "node:fs/promises";
import { createServer, type Server } from "node:net";
import { once } from "node:events";
import { tmpdir } from "node:os";
import path from "node:path";
import { HostRoot } from "../../src/host/root.ts";
import type { MergedConfig, BerthSpec } from "../../src/api/types.ts";
import { SystemdError } from "../../src/host/systemd.ts";
import { RUN_STATUS_PATH as STATUS_PATH } from "../../src/util/node-layout.ts";
import { writeRunStatus, type RunStatus } from "../../src/host/run-status.ts";
import type { Logger } from "../../src/util/log.ts";
import { runPhase, isContainerdPath, isKubeletPath, type RunContext } from "../../src/phases/run.ts";
import { decideUnitAction } from "../../src/phases/steps/ensure-unit.ts";
import { decideReload } from "../../src/phases/steps/daemon-reload.ts";
import { containerdRuntimeSettings } from "../../src/phases/steps/containerd-settings.ts";
import { pullImages, taskStateOf } from "../../src/phases/tasks.ts";
import { FakeSystemd, defaultUnitState } from "../fakes/systemd-fake.ts";
import { FakeCri } from "../fakes/cri-fake.ts";

const PAUSE = "localhost/kubernetes/pause:latest";
const dirs: string[] = [];
const servers: Server[] = [];
after(async () => {
  for (const s of servers) s.close();
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

interface Logged {
  level: string;
  obj: Record<string, unknown>;
}
function recorder(): Logger & { lines: Logged[]; events(): string[] } {
  const lines: Logged[] = [];
  const at = (level: string) => (obj: Record<string, unknown>) => void lines.push({ level, obj });
  return {
    lines,
    info: at("info"),
    warn: at("warn"),
    error: at("error"),
    debug: at("debug"),
    events: () => lines.filter((l) => l.level !== "debug").map((l) => String(l.obj.event)),
  };
}

/** A temp root with containerd's config, the kubelet's config and a listening CRI socket file. */
async function makeRoot(opts: { socket?: boolean; toml?: string } = {}): Promise<HostRoot> {
  const dir = await mkdtemp(path.join(tmpdir(), "berth-run-unit-"));
  dirs.push(dir);
  const root = new HostRoot(dir);
  await mkdir(root.path("/etc/containerd"), { recursive: true });
  await writeFile(
    root.path("/etc/containerd/config.toml"),
    opts.toml ?? `version = 2\n[plugins."io.containerd.grpc.v1.cri"]\nsandbox_image = "${PAUSE}"\n`,
  );
  await mkdir(root.path("/etc/kubernetes/kubelet"), { recursive: true });
  await writeFile(root.path("/etc/kubernetes/kubelet/config.json"), "{}\n");
  await mkdir(root.path("/etc/systemd/system"), { recursive: true });
  await writeFile(root.path("/etc/systemd/system/kubelet.service"), "[Service]\nExecStart=/usr/bin/kubelet\n");
  // Config written "long ago": older than any unit's ActiveEnterTimestamp in the fake.
  const old = new Date(1_600_000_000_000);
  for (const p of ["/etc/containerd/config.toml", "/etc/kubernetes/kubelet/config.json", "/etc/systemd/system/kubelet.service"])
    await utimes(root.path(p), old, old);
  if (opts.socket ?? true) {
    await mkdir(root.path("/run/containerd"), { recursive: true });
    const srv = createServer();
    srv.listen(root.path("/run/containerd/containerd.sock"));
    await once(srv, "listening");
    servers.push(srv);
  }
  return root;
}

function config(berth: BerthSpec = {}): MergedConfig {
  return { nodeConfig: {}, berth, sources: ["test"] };
}

const T = 1_700_000_000_000; // the fake's clock starts here (ms)
function healthyUnits() {
  return {
    "containerd.service": { activeState: "active", subState: "running", activeEnterTimestampUs: T * 1000 },
    "kubelet.service": { activeState: "active", subState: "running", activeEnterTimestampUs: T * 1000 },
  } as const;
}

function ctx(
  root: HostRoot,
  sd: FakeSystemd,
  cri: FakeCri,
  over: Partial<RunContext> = {},
): RunContext & { log: ReturnType<typeof recorder> } {
  const log = recorder();
  return { root, config: config(), systemd: sd, log, env: {}, deps: { cri, sleep: async () => undefined }, ...over } as RunContext & {
    log: ReturnType<typeof recorder>;
  };
}

async function status(root: HostRoot): Promise<RunStatus> {
  return JSON.parse(await readFile(root.path(STATUS_PATH), "utf8")) as RunStatus;
}

test("fresh node: reload, start containerd, wait for CRI, pull the sandbox image, start kubelet, write status", async () => {
  const root = await makeRoot();
  const sd = new FakeSystemd({
    units: { "containerd.service": { activeState: "inactive" }, "kubelet.service": { activeState: "inactive" } },
  });
  const cri = new FakeCri(root.path("/run/containerd/containerd.sock")).addRegistryImage(PAUSE);
  const c = ctx(root, sd, cri, {
    applied: { written: ["/etc/containerd/config.toml", "/etc/systemd/system/kubelet.service"], unitsChanged: true },
  });
  const r = await runPhase(c);
  assert.ok(r.ok, JSON.stringify(!r.ok && r.errors));
  assert.deepEqual(
    sd.calls.filter((x) => x.method !== "unitState").map((x) => `${x.method}${x.unit ? ` ${x.unit}` : ""}`),
    ["daemonReload", "startUnit containerd.service", "startUnit kubelet.service"],
  );
  assert.deepEqual(
    cri.calls.filter((x) => x.method === "pullImage").map((x) => x.ref),
    [PAUSE],
  );
  assert.equal(r.value.sandboxImage.action, "pulled");
  assert.equal(r.value.kubelet.action, "start");
  assert.ok(r.value.kubelet.mainPid > 0);
  const st = await status(root);
  assert.equal(st.result, "succeeded");
  assert.deepEqual(
    st.steps.map((s) => s.step),
    ["reload", "containerd", "cri", "sandbox-image", "kubelet"],
  );
  assert.ok(st.steps.every((s) => typeof s.durationMs === "number"));
  // Structured events: each has event + component, and state changes carry a cause.
  for (const l of c.log.lines) {
    assert.equal(typeof l.obj.event, "string");
    assert.equal(typeof l.obj.component, "string");
  }
  assert.ok(c.log.events().includes("cri.ready"));
  assert.ok(
    c.log.lines.filter((l) => /\.(start|restart|reloaded)$/.test(String(l.obj.event))).every((l) => typeof l.obj.cause === "string"),
  );
});

test("healthy node, nothing changed: no reload, no start, no restart, no pull", async () => {
  const root = await makeRoot();
  const cri = new FakeCri(root.path("/run/containerd/containerd.sock"));
  cri.images.set(PAUSE, { id: "sha256:p", repoTags: [PAUSE], repoDigests: [], size: 1, pinned: true });
  // First run records the unit fingerprint.
  const sd1 = new FakeSystemd({ units: healthyUnits() });
  assert.ok((await runPhase(ctx(root, sd1, cri))).ok);
  const sd = new FakeSystemd({ units: healthyUnits() });
  const r = await runPhase(ctx(root, sd, cri));
  assert.ok(r.ok, JSON.stringify(!r.ok && r.errors));
  assert.deepEqual(
    sd.callNames().filter((m) => m !== "unitState"),
    [],
  );
  assert.equal(r.value.containerd.action, "none");
  assert.equal(r.value.kubelet.action, "none");
  assert.equal(r.value.daemonReloaded, false);
  assert.equal(cri.callNames().includes("pullImage"), false);
});

test("containerd is restarted only when its config changed; certs.d and kubelet files do not restart it", async () => {
  const root = await makeRoot();
  const cri = new FakeCri(root.path("/run/containerd/containerd.sock")).addRegistryImage(PAUSE);
  for (const [written, expect] of [
    [["/etc/containerd/config.toml"], "restart"],
    [["/etc/containerd/base-runtime-spec.json"], "restart"],
    [["/etc/systemd/system/containerd.service.d/10-berth.conf"], "restart"],
    [["/etc/containerd/certs.d/localhost/hosts.toml"], "none"],
    [["/etc/kubernetes/kubelet/config.json"], "none"],
  ] as const) {
    const sd = new FakeSystemd({ units: healthyUnits() });
    const r = await runPhase(ctx(root, sd, cri, { applied: { written: [...written], unitsChanged: false } }));
    assert.ok(r.ok);
    assert.equal(r.value.containerd.action, expect, written[0]);
    assert.equal(sd.callsOf("restartUnit", "containerd.service").length, expect === "restart" ? 1 : 0, written[0]);
    if (expect === "restart") assert.match(r.value.containerd.cause, /config changed: \/etc\/containerd|containerd\.service\.d/);
  }
});

test("two processes (berth-config then berth-run): a containerd config newer than containerd's start restarts it", async () => {
  const root = await makeRoot();
  const cri = new FakeCri(root.path("/run/containerd/containerd.sock")).addRegistryImage(PAUSE);
  // containerd became active at T; the config phase wrote config.toml at T + 5 s.
  const newer = new Date(T + 5000);
  await utimes(root.path("/etc/containerd/config.toml"), newer, newer);
  const sd = new FakeSystemd({ units: healthyUnits() });
  const r = await runPhase(ctx(root, sd, cri));
  assert.ok(r.ok);
  assert.equal(r.value.containerd.action, "restart");
  assert.match(r.value.containerd.cause, /\/etc\/containerd\/config\.toml is newer/);
  assert.equal(r.value.kubelet.action, "none");
});

test("kubelet: restarted when its config or flags changed, started when inactive, left alone otherwise", async () => {
  const root = await makeRoot();
  const cri = new FakeCri(root.path("/run/containerd/containerd.sock")).addRegistryImage(PAUSE);
  let sd = new FakeSystemd({ units: healthyUnits() });
  let r = await runPhase(ctx(root, sd, cri, { applied: { written: ["/etc/eks/kubelet/environment"], unitsChanged: false } }));
  assert.ok(r.ok);
  assert.equal(r.value.kubelet.action, "restart");
  assert.equal(sd.callsOf("restartUnit", "kubelet.service").length, 1);
  assert.equal(sd.callsOf("restartUnit", "containerd.service").length, 0);

  sd = new FakeSystemd({ units: { ...healthyUnits(), "kubelet.service": { activeState: "failed", result: "exit-code" } } });
  r = await runPhase(ctx(root, sd, cri));
  assert.ok(r.ok);
  assert.equal(r.value.kubelet.action, "restart");
  assert.match(r.value.kubelet.cause, /failed \(exit-code\)/);
});

test("Outposts: the kubeconfig the kubelet writes itself after TLS bootstrap does not restart it; elsewhere a newer kubeconfig does", async () => {
  const root = await makeRoot();
  const cri = new FakeCri(root.path("/run/containerd/containerd.sock")).addRegistryImage(PAUSE);
  // kubelet became active at T and wrote /var/lib/kubelet/kubeconfig at T + 5 s.
  await mkdir(root.path("/var/lib/kubelet"), { recursive: true });
  await writeFile(root.path("/var/lib/kubelet/kubeconfig"), "apiVersion: v1\n");
  const newer = new Date(T + 5000);
  await utimes(root.path("/var/lib/kubelet/kubeconfig"), newer, newer);
  const outpost: MergedConfig = {
    nodeConfig: { cluster: { enableOutpost: true, id: "c-1", apiServerEndpoint: "https://x" } },
    berth: {},
    sources: ["test"],
  };
  let sd = new FakeSystemd({ units: healthyUnits() });
  let r = await runPhase(ctx(root, sd, cri, { config: outpost }));
  assert.ok(r.ok, JSON.stringify(!r.ok && r.errors));
  assert.equal(r.value.kubelet.action, "none", r.value.kubelet.cause);
  assert.equal(sd.callsOf("restartUnit", "kubelet.service").length, 0);

  // Not an Outpost: berth owns that kubeconfig, so a newer one is a config change.
  sd = new FakeSystemd({ units: healthyUnits() });
  r = await runPhase(ctx(root, sd, cri));
  assert.ok(r.ok);
  assert.equal(r.value.kubelet.action, "restart");
  assert.match(r.value.kubelet.cause, /\/var\/lib\/kubelet\/kubeconfig is newer/);
});

test("a relative grpc.address in containerd's config is reported as such, not as a bug in berth", async () => {
  const root = await makeRoot({ socket: false, toml: `version = 2\n[grpc]\naddress = "run/containerd/containerd.sock"\n` });
  const sd = new FakeSystemd({ units: healthyUnits() });
  const r = await runPhase(ctx(root, sd, new FakeCri(root.path("/run/containerd/containerd.sock"))));
  assert.ok(!r.ok);
  assert.equal(r.errors[0]?.code, "run.containerd-socket");
  assert.deepEqual(r.errors[0]?.where, { source: "/etc/containerd/config.toml", path: "grpc.address" });
  assert.equal((await status(root)).result, "failed");
});

test("writeStatus that cannot rename into place leaves no temp file behind", async () => {
  const root = await makeRoot({ socket: false });
  // A non-empty directory where the status file goes: the rename fails.
  await mkdir(root.path(`${STATUS_PATH}/x`), { recursive: true });
  await assert.rejects(
    writeRunStatus(root, {
      apiVersion: "berth.dev/v1alpha1",
      kind: "RunStatus",
      result: "running",
      startedAt: new Date(T).toISOString(),
      steps: [],
    }),
  );
  assert.deepEqual((await readdir(root.path(path.dirname(STATUS_PATH)))).sort(), [path.basename(STATUS_PATH)]);
});

test("containerd activating (boot in progress): join its start job instead of restarting it", async () => {
  const root = await makeRoot();
  const cri = new FakeCri(root.path("/run/containerd/containerd.sock")).addRegistryImage(PAUSE);
  const sd = new FakeSystemd({ units: { ...healthyUnits(), "containerd.service": { activeState: "activating", subState: "start-pre" } } });
  const r = await runPhase(ctx(root, sd, cri));
  assert.ok(r.ok);
  assert.equal(sd.callsOf("startUnit", "containerd.service").length, 1);
  assert.equal(sd.callsOf("restartUnit", "containerd.service").length, 0);
});

test("jobs carry the configured deadline; a job past it fails with the unit and a hint", async () => {
  const root = await makeRoot();
  const cri = new FakeCri(root.path("/run/containerd/containerd.sock")).addRegistryImage(PAUSE);
  const sd = new FakeSystemd({ units: { ...healthyUnits(), "containerd.service": { activeState: "inactive" } } });
  sd.failOnce(
    "startUnit",
    new SystemdError(
      {
        code: "systemd.job-deadline",
        message: "StartUnit of containerd.service: job /j/1 did not finish within 1234 ms (it is still queued in systemd)",
        where: { path: "containerd.service" },
        hint: "check `systemctl list-jobs`",
      },
      "containerd.service",
    ),
  );
  const r = await runPhase(ctx(root, sd, cri, { config: config({ run: { unitJobTimeoutMs: 1234 } }) }));
  assert.equal(r.ok, false);
  assert.ok(!r.ok);
  assert.equal(r.errors[0]?.code, "systemd.job-deadline");
  assert.match(r.errors[0]?.message ?? "", /containerd\.service.*1234 ms/);
  assert.deepEqual(sd.callsOf("startUnit", "containerd.service")[0]?.opts, { timeoutMs: 1234 });
  const st = await status(root);
  assert.equal(st.result, "failed");
  assert.equal(st.error?.code, "systemd.job-deadline");
});

test("a failed containerd start that systemd will retry is waited out; one it will not retry fails at once", async () => {
  const root = await makeRoot();
  const cri = new FakeCri(root.path("/run/containerd/containerd.sock")).addRegistryImage(PAUSE);
  // Restart=always: after the failed job the unit sits in auto-restart.
  let sd = new FakeSystemd({ units: { ...healthyUnits(), "containerd.service": { activeState: "inactive" } } });
  sd.jobResultOnce("startUnit", "failed");
  const origState = sd.unitState.bind(sd);
  let n = 0;
  sd.unitState = async (u: string) => {
    const s = await origState(u);
    if (u === "containerd.service" && ++n === 2) return { ...s, activeState: "activating", subState: "auto-restart" };
    return s;
  };
  let r = await runPhase(ctx(root, sd, cri));
  assert.ok(r.ok, JSON.stringify(!r.ok && r.errors));
  assert.equal(r.value.containerd.jobResult, "failed");

  sd = new FakeSystemd({ units: { ...healthyUnits(), "containerd.service": { activeState: "inactive" } } });
  sd.jobResultOnce("startUnit", "failed");
  r = await runPhase(ctx(root, sd, cri));
  assert.ok(!r.ok);
  assert.equal(r.errors[0]?.code, "run.containerd-failed");
  assert.match(r.errors[0]?.hint ?? "", /journalctl -u containerd/);
});

test("CRI never ready: fails within the configured deadline, naming the socket and the phase it was stuck at", async () => {
  const root = await makeRoot({ socket: false });
  const cri = new FakeCri(root.path("/run/containerd/containerd.sock"));
  const sd = new FakeSystemd({ units: healthyUnits() });
  const c = ctx(root, sd, cri, { config: config({ run: { criReadyTimeoutMs: 150 } }) });
  const r = await runPhase(c);
  assert.ok(!r.ok);
  assert.equal(r.errors[0]?.code, "cri.not-ready");
  assert.match(r.errors[0]?.message ?? "", /containerd\.sock.*stuck at socket/);
  assert.ok(r.errors[0]?.hint);
  // Each wait is logged with its cause; repeats of the same cause only at debug.
  const waits = c.log.lines.filter((l) => l.obj.event === "cri.waiting");
  assert.ok(waits.length >= 1);
  assert.equal(waits.filter((l) => l.level === "info").length, 1);
  assert.match(String(waits[0]?.obj.cause), /does not exist/);
  assert.equal(sd.callsOf("startUnit", "kubelet.service").length, 0, "kubelet must not start without CRI");
});

test("CRI answering but RuntimeReady false until later: waits, then proceeds", async () => {
  const root = await makeRoot();
  const cri = new FakeCri(root.path("/run/containerd/containerd.sock")).addRegistryImage(PAUSE);
  cri.runtimeReady = false;
  const origStatus = cri.status.bind(cri);
  let calls = 0;
  cri.status = async (o) => {
    if (++calls === 3) cri.runtimeReady = true;
    return origStatus(o);
  };
  const sd = new FakeSystemd({ units: healthyUnits() });
  const c = ctx(root, sd, cri);
  const r = await runPhase(c);
  assert.ok(r.ok);
  assert.ok(
    c.log.lines.some((l) => l.obj.event === "cri.waiting" && l.obj.phase === "status" && /RuntimeReady is false/.test(String(l.obj.cause))),
  );
});

test("sandbox image: present → nothing; pull retried; pull giving up names the image and the hint", async () => {
  const root = await makeRoot();
  const sd = () => new FakeSystemd({ units: healthyUnits() });
  // retried: fails twice then succeeds
  let cri = new FakeCri(root.path("/run/containerd/containerd.sock")).addRegistryImage(PAUSE);
  cri.failOnce("pullImage").failOnce("pullImage");
  const c = ctx(root, sd(), cri);
  let r = await runPhase(c);
  assert.ok(r.ok);
  assert.deepEqual(r.value.sandboxImage, { image: PAUSE, action: "pulled", attempts: 3 });
  assert.equal(c.log.lines.filter((l) => l.obj.event === "sandbox-image.pull-retry").length, 2);

  // never pullable: a fake clock makes the 5 min deadline pass instantly
  cri = new FakeCri(root.path("/run/containerd/containerd.sock"));
  let clock = Date.now();
  r = await runPhase(ctx(root, sd(), cri, { deps: { cri, now: () => clock, sleep: async (ms) => void (clock += ms) } }));
  assert.ok(!r.ok);
  assert.equal(r.errors[0]?.code, "run.sandbox-pull");
  assert.match(r.errors[0]?.message ?? "", /localhost\/kubernetes\/pause:latest/);
  assert.match(r.errors[0]?.hint ?? "", /sandboxImageArchive/);
  assert.ok(cri.calls.filter((x) => x.method === "pullImage").length > 2);
});

test("sandbox image: imported from berth.run.sandboxImageArchive when absent", async () => {
  const root = await makeRoot();
  const cri = new FakeCri(root.path("/run/containerd/containerd.sock"));
  const imported: string[] = [];
  const sd = new FakeSystemd({ units: healthyUnits() });
  const r = await runPhase(
    ctx(root, sd, cri, {
      config: config({ run: { sandboxImageArchive: "/opt/pause.tar" } }),
      deps: {
        cri,
        importArchive: async (_sock, archive) => {
          imported.push(archive);
          cri.images.set(PAUSE, { id: "sha256:p", repoTags: [PAUSE], repoDigests: [], size: 1, pinned: false });
        },
      },
    }),
  );
  assert.ok(r.ok);
  assert.equal(r.value.sandboxImage.action, "imported");
  assert.deepEqual(imported, [root.path("/opt/pause.tar")]);
  assert.equal(cri.calls.filter((x) => x.method === "pullImage").length, 0);
});

test("tasks and reboot-once are enqueued after kubelet, never awaited", async () => {
  const root = await makeRoot();
  const cri = new FakeCri(root.path("/run/containerd/containerd.sock")).addRegistryImage(PAUSE);
  const fresh = new FakeSystemd({
    units: { ...healthyUnits(), "kubelet.service": { activeState: "inactive" }, "berth-tasks.target": {}, "berth-reboot-once.service": {} },
  });
  const r = await runPhase(
    ctx(root, fresh, cri, {
      config: config({
        tasks: [
          { name: "pull", pullImages: ["a/b:c"] },
          { name: "s", script: "true" },
        ],
        rebootAfterBootstrap: true,
      }),
    }),
  );
  assert.ok(r.ok, JSON.stringify(!r.ok && r.errors));
  assert.deepEqual(
    fresh.callsOf("startUnit").map((x) => x.unit),
    ["kubelet.service"],
  );
  assert.deepEqual(
    fresh.callsOf("enqueueStartUnit").map((x) => x.unit),
    ["berth-tasks.target", "berth-reboot-once.service"],
  );
  // kubelet's start was awaited before anything was enqueued.
  const order = fresh.calls.filter((c) => c.method === "startUnit" || c.method === "enqueueStartUnit").map((c) => c.unit);
  assert.deepEqual(order, ["kubelet.service", "berth-tasks.target", "berth-reboot-once.service"]);
  assert.deepEqual(r.value.enqueued, ["berth-tasks.target", "berth-reboot-once.service"]);
  const st = await status(root);
  assert.deepEqual(
    st.tasks?.map((t) => t.unit),
    ["berth-task-pull.service", "berth-task-s.service"],
  );
});

test("a task that cannot be enqueued does not fail the run phase", async () => {
  const root = await makeRoot();
  const cri = new FakeCri(root.path("/run/containerd/containerd.sock")).addRegistryImage(PAUSE);
  const sd = new FakeSystemd({ units: healthyUnits() });
  // berth-tasks.target unknown to the fake → NoSuchUnit
  const c = ctx(root, sd, cri, { config: config({ tasks: [{ name: "t", script: "true" }] }) });
  const r = await runPhase(c);
  assert.ok(r.ok);
  assert.ok(c.log.lines.some((l) => l.obj.event === "tasks.enqueue-failed"));
});

test("containerd not installed and kubelet unit missing are explained", async () => {
  const root = await makeRoot();
  const cri = new FakeCri(root.path("/run/containerd/containerd.sock")).addRegistryImage(PAUSE);
  let r = await runPhase(ctx(root, new FakeSystemd({ units: { "kubelet.service": {} } }), cri));
  assert.ok(!r.ok);
  assert.equal(r.errors[0]?.code, "run.containerd-missing");
  assert.match(r.errors[0]?.hint ?? "", /install containerd/);
  r = await runPhase(ctx(root, new FakeSystemd({ units: { "containerd.service": healthyUnits()["containerd.service"] } }), cri));
  assert.ok(!r.ok);
  assert.equal(r.errors[0]?.code, "run.kubelet-missing");
});

test("kubelet that does not stay active fails the phase with its state", async () => {
  const root = await makeRoot();
  const cri = new FakeCri(root.path("/run/containerd/containerd.sock")).addRegistryImage(PAUSE);
  const sd = new FakeSystemd({ units: { ...healthyUnits(), "kubelet.service": { activeState: "inactive" } } });
  sd.jobResultOnce("startUnit", "failed");
  const r = await runPhase(ctx(root, sd, cri));
  assert.ok(!r.ok);
  assert.equal(r.errors[0]?.code, "run.kubelet-not-active");
  assert.match(r.errors[0]?.message ?? "", /failed\/failed.*job failed/);
});

test("the status file records each step's outcome, start and end, also the failed step and the steps it stopped", async () => {
  const root = await makeRoot();
  const cri = new FakeCri(root.path("/run/containerd/containerd.sock")).addRegistryImage(PAUSE);
  // No kubelet.service: the kubelet step fails, and the tasks hand-off that needs it is skipped.
  const sd = new FakeSystemd({ units: { "containerd.service": healthyUnits()["containerd.service"], "berth-tasks.target": {} } });
  const r = await runPhase(ctx(root, sd, cri, { config: config({ tasks: [{ name: "t", script: "true" }] }) }));
  assert.ok(!r.ok);
  const st = await status(root);
  assert.deepEqual(
    st.steps.map((s) => [s.step, s.outcome, s.action]),
    [
      ["reload", "changed", "reloaded"],
      ["containerd", "ok", "none"],
      ["cri", "ok", "ready"],
      ["sandbox-image", "changed", "pulled"],
      ["kubelet", "failed", undefined],
      ["tasks", "skipped", undefined],
    ],
  );
  assert.equal(st.steps[4]?.code, "run.kubelet-missing");
  assert.equal(st.steps[5]?.cause, "needs kubelet, which failed");
  assert.equal(sd.callsOf("enqueueStartUnit").length, 0);
  let previousEnd = Date.parse(st.startedAt);
  for (const s of st.steps) {
    assert.ok(s.startMs >= previousEnd && s.endMs >= s.startMs, `${s.step}: ${s.startMs}..${s.endMs} after ${previousEnd}`);
    assert.equal(s.durationMs, s.endMs - s.startMs);
    previousEnd = s.endMs;
  }
});

// ---- pure pieces

test("decideUnitAction", () => {
  const active = defaultUnitState({ activeState: "active", activeEnterTimestampUs: 2_000_000 });
  assert.equal(decideUnitAction("x", active, { written: [] }).action, "none");
  assert.equal(decideUnitAction("x", active, { written: [], newestConfigMtimeMs: 1999 }).action, "none");
  assert.equal(decideUnitAction("x", active, { written: [], newestConfigMtimeMs: 2001, newestConfigPath: "/a" }).action, "restart");
  assert.equal(decideUnitAction("x", active, { written: ["/a"] }).action, "restart");
  assert.equal(decideUnitAction("x", defaultUnitState(), { written: [] }).action, "start");
  assert.equal(decideUnitAction("x", defaultUnitState({ activeState: "failed" }), { written: [] }).action, "restart");
  assert.equal(decideUnitAction("x", defaultUnitState({ activeState: "activating" }), { written: ["/a"] }).action, "start");
});

test("decideUnitAction: a config written after the main process started is a change, even if older than ActiveEnterTimestamp", () => {
  // containerd (Type=notify) was exec'd at 1.000 s, read its config then, and became active at 1.300 s;
  // berth-config replaced config.toml at 1.100 s. The running containerd never read it (issue 7).
  const raced = defaultUnitState({ activeState: "active", execMainStartTimestampUs: 1_000_000, activeEnterTimestampUs: 1_300_000 });
  const d = decideUnitAction("containerd.service", raced, {
    written: [],
    newestConfigMtimeMs: 1100,
    newestConfigPath: "/etc/containerd/config.toml",
  });
  assert.equal(d.action, "restart");
  assert.match(d.cause, /config\.toml is newer/);
  // Written before the process started: it was read, nothing to do.
  assert.equal(decideUnitAction("containerd.service", raced, { written: [], newestConfigMtimeMs: 999 }).action, "none");
  // Written in the very millisecond the process started: it may not have been read.
  assert.equal(decideUnitAction("containerd.service", raced, { written: [], newestConfigMtimeMs: 1000 }).action, "restart");
});

test("decideReload", () => {
  assert.equal(decideReload({ unitsChanged: true, fingerprint: "a", recorded: "a" }).reload, true);
  assert.equal(decideReload({ unitsChanged: false, fingerprint: "a" }).reload, true);
  assert.equal(decideReload({ unitsChanged: false, fingerprint: "a", recorded: "b" }).reload, true);
  assert.equal(decideReload({ unitsChanged: false, fingerprint: "a", recorded: "a" }).reload, false);
});

test("containerdRuntimeSettings reads schema 2 and 3 and the grpc address", () => {
  assert.deepEqual(containerdRuntimeSettings(undefined), { sandboxImage: PAUSE, socket: "/run/containerd/containerd.sock" });
  assert.equal(
    containerdRuntimeSettings(`version = 2\n[plugins."io.containerd.grpc.v1.cri"]\nsandbox_image = "r/p:1"\n`).sandboxImage,
    "r/p:1",
  );
  assert.equal(
    containerdRuntimeSettings(`version = 3\n[plugins."io.containerd.cri.v1.images".pinned_images]\nsandbox = "r/p:3"\n`).sandboxImage,
    "r/p:3",
  );
  assert.equal(containerdRuntimeSettings(`[grpc]\naddress = "/x.sock"\n`).socket, "/x.sock");
  assert.equal(containerdRuntimeSettings("not toml [[[").sandboxImage, PAUSE);
});

test("path classifiers", () => {
  assert.ok(isContainerdPath("/etc/containerd/config.toml"));
  assert.ok(!isContainerdPath("/etc/containerd/certs.d/x/hosts.toml"));
  assert.ok(isKubeletPath("/etc/eks/kubelet/environment"));
  assert.ok(isKubeletPath("/etc/systemd/system/kubelet.service"));
  assert.ok(!isKubeletPath("/etc/containerd/config.toml"));
});

// ---- tasks

test("pull task: present images skipped, absent pulled with retries, failure explained", async () => {
  const root = await makeRoot();
  const log = recorder();
  const cri = new FakeCri(root.path("/run/containerd/containerd.sock")).addRegistryImage("r/a:1").addRegistryImage("r/b:1");
  cri.images.set("r/a:1", { id: "sha256:a", repoTags: ["r/a:1"], repoDigests: [], size: 1, pinned: false });
  cri.failOnce("pullImage");
  let r = await pullImages(["r/a:1", "r/b:1"], { root, log, cri, sleep: async () => undefined });
  assert.ok(r.ok, JSON.stringify(!r.ok && r.errors));
  assert.deepEqual(
    r.value.map((p) => [p.image, p.action, p.attempts]),
    [
      ["r/a:1", "present", 0],
      ["r/b:1", "pulled", 2],
    ],
  );

  r = await pullImages(["r/missing:1"], { root, log, cri, timeoutMs: 50, backoff: { initialMs: 5, maxMs: 10 } });
  assert.ok(!r.ok);
  assert.equal(r.errors[0]?.code, "task.pull-failed");
  assert.match(r.errors[0]?.message ?? "", /r\/missing:1/);
});

test("taskStateOf", () => {
  assert.equal(taskStateOf(defaultUnitState({ activeState: "active" })), "succeeded");
  assert.equal(taskStateOf(defaultUnitState({ activeState: "failed", result: "exit-code" })), "failed");
  assert.equal(taskStateOf(defaultUnitState({ activeState: "activating" })), "running");
  assert.equal(taskStateOf(defaultUnitState({ activeState: "inactive" })), "pending");
  assert.equal(taskStateOf(defaultUnitState({ loadState: "not-found" })), "unknown");
});
