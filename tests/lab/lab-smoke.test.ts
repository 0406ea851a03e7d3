// Smoke test of the node lab itself: a real node boots, containerd runs pods
// inside it, the lab registry serves the pause image, the kubelet stand-in
// answers, the node's system bus is reachable from the host, and shutdown
// leaves nothing behind. If the machine cannot run the lab (not root, missing
// packages), this FAILS with the reason: scripts/setup.sh installs what it needs.
import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { existsSync, readFileSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import dbus from "@particle/dbus-next";
import {
  bootNode,
  startRegistry,
  pushPauseImage,
  containerdLabFiles,
  labContainerdConfig,
  labLeftovers,
  freePort,
  PAUSE_IMAGE,
  REPO_ROOT,
  type LabNode,
  type Registry,
} from "./lab.ts";

type Table = Record<string, unknown>;

type Unary = (req: object, md: grpc.Metadata, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res: Table) => void) => void;
type CriStub = grpc.Client & Record<string, Unary>;

function criClients(socket: string): { runtime: CriStub; image: CriStub; close(): void } {
  const def = protoLoader.loadSync(join(REPO_ROOT, "lab/cri-pod-sandbox.proto"), {
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
  });
  const pkg = grpc.loadPackageDefinition(def) as unknown as {
    runtime: { v1: { RuntimeService: grpc.ServiceClientConstructor; ImageService: grpc.ServiceClientConstructor } };
  };
  const target = `unix://${socket}`;
  const runtime = new pkg.runtime.v1.RuntimeService(target, grpc.credentials.createInsecure()) as unknown as CriStub;
  const image = new pkg.runtime.v1.ImageService(target, grpc.credentials.createInsecure()) as unknown as CriStub;
  return {
    runtime,
    image,
    close() {
      runtime.close();
      image.close();
    },
  };
}

function call(stub: CriStub, method: string, req: object, timeoutMs = 30_000): Promise<Table> {
  return new Promise((resolve, reject) => {
    const fn = stub[method];
    if (!fn) return reject(new Error(`no CRI method ${method}`));
    fn.call(stub, req, new grpc.Metadata(), { deadline: Date.now() + timeoutMs }, (err, res) => (err ? reject(err) : resolve(res)));
  });
}

describe("node lab smoke", { timeout: 300_000 }, () => {
  let registry: Registry | undefined;
  let node: LabNode | undefined;
  let healthzPort = 0; // chosen by the OS in before(): parallel nodes share the host's network
  let bindDir = "";

  before(async () => {
    bindDir = await mkdtemp(join(tmpdir(), "lab-smoke-bind-"));
    await writeFile(join(bindDir, "hello"), "from the host\n");
    registry = await startRegistry();
    await pushPauseImage(registry);
    healthzPort = await freePort();
    const config = labContainerdConfig(`[plugins."io.containerd.grpc.v1.cri"]\n  sandbox_image = "${PAUSE_IMAGE}"\n`);
    node = await bootNode({
      name: "smoke",
      binds: [{ host: bindDir, node: "/mnt/from-host", readOnly: true }],
      files: {
        ...containerdLabFiles(registry),
        "/etc/containerd/config.toml": config,
        // Not kubelet.service: the package's postinst (berth install) writes berth's own.
        "/etc/systemd/system/lab-kubelet.service": [
          "[Unit]",
          "Description=kubelet stand-in (lab smoke test)",
          "[Service]",
          `Environment=KUBELET_STANDIN_HEALTHZ_PORT=${healthzPort}`,
          "ExecStart=/usr/bin/kubelet --config /etc/kubernetes/kubelet/config.json --node-ip=127.0.0.1",
          "Restart=always",
          "",
        ].join("\n"),
      },
    });
  });

  after(async () => {
    await node?.shutdown();
    await registry?.stop();
    if (bindDir) await rm(bindDir, { recursive: true, force: true });
  });

  it("boots systemd as PID 1 with the kubelet stand-in inside", async () => {
    const n = node as LabNode;
    const r = await n.exec(["sh", "-c", "cat /proc/1/comm; systemctl is-system-running; kubelet --version"]);
    assert.equal(r.code, 0, r.stderr);
    const [comm, state, kubeletVersion] = r.stdout.trim().split("\n");
    assert.equal(comm, "systemd");
    assert.ok(state === "running" || state === "degraded", `system state ${state}`);
    assert.equal(kubeletVersion, "Kubernetes v1.33.0");
    const bound = await n.exec(["sh", "-c", "cat /mnt/from-host/hello; touch /mnt/from-host/x"]);
    assert.equal(bound.stdout, "from the host\n");
    assert.notEqual(bound.code, 0, "a readOnly bind is read-only inside");
    const findmnt = await n.exec(["findmnt", "-n", "-o", "FSTYPE", "/var/lib/containerd"]);
    assert.notEqual(findmnt.stdout.trim(), "overlay", "containerd's overlayfs snapshotter needs a non-overlay /var/lib/containerd");
  });

  it("has no Node.js; berth is installed from its .deb with dpkg and runs as /usr/bin/berth", async () => {
    const n = node as LabNode;
    // Nothing called node or nodejs on PATH, nothing bound in at the old place.
    const which = await n.exec(["sh", "-c", "command -v node || command -v nodejs"]);
    assert.notEqual(which.code, 0, `the node has a Node.js: ${which.stdout}`);
    assert.equal((await n.exec(["test", "-e", "/usr/local/bin/node"])).code, 1);
    const mounts = await n.exec(["findmnt", "-rn", "-o", "TARGET"]);
    assert.ok(!mounts.stdout.split("\n").some((m) => m.startsWith("/usr")), `nothing bound under /usr: ${mounts.stdout}`);

    const status = await n.exec(["dpkg-query", "-W", "-f", "${Status} ${Version} ${Architecture}", "berth"]);
    assert.equal(status.code, 0, status.stderr);
    const pkg = JSON.parse(readFileSync(join(REPO_ROOT, "package.json"), "utf8")) as { version: string };
    assert.equal(status.stdout, `install ok installed ${pkg.version} ${process.arch === "arm64" ? "arm64" : "amd64"}`);
    const s = await n.exec(["dpkg", "-s", "berth"]);
    assert.match(s.stdout, /^Status: install ok installed$/m);
    assert.equal((await n.exec(["dpkg", "-S", "/usr/bin/berth"])).stdout.trim(), "berth: /usr/bin/berth");
    // The installed file is the node's private copy's content, the release executable.
    const sums = await n.exec([
      "sh",
      "-c",
      `dpkg-deb --fsys-tarfile ${n.berthPackage} | tar -xO ./usr/bin/berth | sha256sum; sha256sum < /usr/bin/berth`,
    ]);
    const [inDeb, installed] = sums.stdout
      .trim()
      .split("\n")
      .map((l) => l.split(" ")[0]);
    assert.equal(installed, inDeb);

    const v = await n.exec(["berth", "--version"]);
    assert.equal(v.code, 0, v.stderr);
    assert.match(
      v.stdout,
      new RegExp(`^berth ${pkg.version.replace(/\./g, "\\.")} \\(commit \\S+, node v\\d+\\.\\d+\\.\\d+, linux/${process.arch}\\)`),
    );
    // The package's postinst ran `berth install`: boot units naming the installed executable, wired into multi-user.target.
    const unit = await n.exec(["cat", "/etc/systemd/system/berth-config.service"]);
    assert.match(unit.stdout, /^ExecStart=\/usr\/bin\/berth init --skip run$/m);
    const wants = await n.exec(["systemctl", "show", "-p", "Wants", "--value", "multi-user.target"]);
    for (const u of ["berth-config.service", "berth.target", "berth-tasks.target"])
      assert.ok(wants.stdout.split(/\s+/).includes(u), `multi-user.target does not want ${u}: ${wants.stdout}`);
    assert.equal((await n.exec(["systemd-analyze", "verify", "berth-config.service", "berth-run.service", "berth-agent.service"])).code, 0);
  });

  it("starts containerd through systemd and ctr talks to it", async () => {
    const n = node as LabNode;
    const start = await n.systemctl("start", "containerd");
    assert.equal(start.code, 0, `${start.stderr}\n${await n.journal("containerd", { lines: 30 })}`);
    await n.waitForState("containerd", "active", 30_000);
    const v = await n.exec(["ctr", "version"]);
    assert.equal(v.code, 0, v.stderr);
    assert.match(v.stdout, /Server:\s+Version:/);
  });

  it("pulls the pause image from the lab registry through the hosts.toml mirror (ctr)", async () => {
    const n = node as LabNode;
    const r = await n.exec(["ctr", "-n", "k8s.io", "images", "pull", "--hosts-dir", "/etc/containerd/certs.d", PAUSE_IMAGE], {
      timeoutMs: 60_000,
    });
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    const ls = await n.exec(["ctr", "-n", "k8s.io", "images", "ls", "-q"]);
    assert.ok(ls.stdout.split("\n").includes(PAUSE_IMAGE), ls.stdout);
  });

  it("runs a pod sandbox through the CRI from the host, over the node's socket", async () => {
    const n = node as LabNode;
    const cri = criClients(n.hostPath("/run/containerd/containerd.sock"));
    try {
      const status = await call(cri.runtime, "Status", { verbose: false });
      const conditions = (status.status as Table).conditions as { type: string; status: boolean }[];
      assert.ok(
        conditions.some((c) => c.type === "RuntimeReady" && c.status),
        JSON.stringify(conditions),
      );
      await call(cri.image, "PullImage", { image: { image: PAUSE_IMAGE } }, 60_000);
      const config = {
        metadata: { name: "lab-smoke", uid: "lab-smoke-uid", namespace: "default", attempt: 0 },
        // Host-network pods share the node's UTS namespace: runc refuses to set a hostname.
        hostname: "",
        log_directory: "/var/log/pods/lab-smoke",
        linux: {
          cgroup_parent: "berthlab.slice",
          security_context: { namespace_options: { network: "NODE", pid: "POD", ipc: "POD" } },
        },
      };
      let id = "";
      try {
        const run = await call(cri.runtime, "RunPodSandbox", { config, runtime_handler: "" }, 60_000);
        id = String(run.pod_sandbox_id);
      } catch (e) {
        throw new Error(`RunPodSandbox failed: ${(e as Error).message}\n${await n.journal("containerd", { lines: 40 })}`, { cause: e });
      }
      const st = await call(cri.runtime, "PodSandboxStatus", { pod_sandbox_id: id });
      assert.equal((st.status as Table).state, "SANDBOX_READY");
      const ps = await n.exec(["sh", "-c", "systemctl list-units --no-legend 'cri-containerd-*' | wc -l"]);
      assert.ok(Number(ps.stdout.trim()) >= 1, "the sandbox runs in a systemd scope (SystemdCgroup)");
      await call(cri.runtime, "StopPodSandbox", { pod_sandbox_id: id });
      await call(cri.runtime, "RemovePodSandbox", { pod_sandbox_id: id });
    } finally {
      cri.close();
    }
  });

  it("runs the kubelet stand-in as a unit and it serves /healthz and records its argv", async () => {
    const n = node as LabNode;
    const start = await n.systemctl("start", "lab-kubelet");
    assert.equal(start.code, 0, start.stderr);
    await n.waitForState("lab-kubelet", "active", 15_000);
    // The node shares the host's network namespace: the host can reach the stand-in directly.
    let body = "";
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline) {
      try {
        const res = await fetch(`http://127.0.0.1:${healthzPort}/healthz`, { signal: AbortSignal.timeout(1000) });
        body = await res.text();
        if (res.status === 200) break;
      } catch {
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    assert.equal(body, "ok");
    const inside = await n.exec(["curl", "-fsS", `http://127.0.0.1:${healthzPort}/healthz`]);
    assert.equal(inside.stdout, "ok", inside.stderr);
    const rec = await n.exec(["cat", "/var/lib/kubelet-standin/last-run.json"]);
    const parsed = JSON.parse(rec.stdout) as { argv: string[]; config: string };
    assert.equal(parsed.config, "/etc/kubernetes/kubelet/config.json");
    assert.deepEqual(parsed.argv, ["--config", "/etc/kubernetes/kubelet/config.json", "--node-ip=127.0.0.1"]);
    await n.writeFile("/var/lib/kubelet-standin/healthz-mode", "fail\n");
    const failing = await fetch(`http://127.0.0.1:${healthzPort}/healthz`, { signal: AbortSignal.timeout(2000) });
    assert.equal(failing.status, 500);
    await n.writeFile("/var/lib/kubelet-standin/healthz-mode", "ok\n");
    // Like a real kubelet: SIGTERM → exit 0 (so only Restart=always brings it back).
    const stop = await n.systemctl("stop", "lab-kubelet");
    assert.equal(stop.code, 0);
    const result = await n.systemctl("show", "-p", "Result", "--value", "lab-kubelet");
    assert.equal(result.stdout.trim(), "success");
  });

  it("dpkg -r berth takes out the executable and the boot units and leaves config; dpkg -i puts them back", async () => {
    const n = node as LabNode;
    // Configuration someone wrote (the config phase would): it must survive removal.
    await n.writeFile("/etc/eks/kubelet/environment", "NODEADM_KUBELET_ARGS=--v=2\n");
    const units = [
      "berth-config.service",
      "berth-run.service",
      "berth-agent.service",
      "berth.target",
      "berth-tasks.target",
      "kubelet.service",
      "multi-user.target.d/10-berth.conf",
      "containerd.service.d/10-berth.conf",
    ];
    const r = await n.exec(["dpkg", "-r", "berth"], { env: { DEBIAN_FRONTEND: "noninteractive" } });
    assert.equal(r.code, 0, `${r.stdout}${r.stderr}`);
    assert.equal((await n.exec(["test", "-e", "/usr/bin/berth"])).code, 1, "/usr/bin/berth removed");
    for (const u of units) assert.equal((await n.exec(["test", "-e", `/etc/systemd/system/${u}`])).code, 1, `${u} removed`);
    const wants = await n.exec(["systemctl", "show", "-p", "Wants", "--value", "multi-user.target"]);
    assert.doesNotMatch(wants.stdout, /berth/, "the package's prerm reloaded systemd: multi-user.target no longer wants berth");
    assert.equal((await n.exec(["cat", "/etc/eks/kubelet/environment"])).stdout, "NODEADM_KUBELET_ARGS=--v=2\n", "config stays");

    const again = await n.exec(["dpkg", "-i", n.berthPackage], { env: { DEBIAN_FRONTEND: "noninteractive" } });
    assert.equal(again.code, 0, `${again.stdout}${again.stderr}`);
    for (const u of units) assert.equal((await n.exec(["test", "-e", `/etc/systemd/system/${u}`])).code, 0, `${u} back`);
    assert.match((await n.exec(["systemctl", "show", "-p", "Wants", "--value", "multi-user.target"])).stdout, /berth-config\.service/);
  });

  it("reaches the node's systemd over D-Bus from the host", async () => {
    const n = node as LabNode;
    const bus = dbus.sessionBus({ busAddress: n.busAddress });
    try {
      const obj = await bus.getProxyObject("org.freedesktop.systemd1", "/org/freedesktop/systemd1");
      const manager = obj.getInterface("org.freedesktop.systemd1.Manager") as unknown as {
        LoadUnit(name: string): Promise<string>;
        GetUnit(name: string): Promise<string>;
      };
      const path = await manager.LoadUnit("containerd.service");
      assert.equal(path, "/org/freedesktop/systemd1/unit/containerd_2eservice");
      const again = await manager.GetUnit("containerd.service");
      assert.equal(again, path);
      const unit = await bus.getProxyObject("org.freedesktop.systemd1", path);
      const props = unit.getInterface("org.freedesktop.DBus.Properties") as unknown as {
        Get(iface: string, prop: string): Promise<{ value: string }>;
      };
      const state = await props.Get("org.freedesktop.systemd1.Unit", "ActiveState");
      assert.equal(state.value, "active");
    } finally {
      bus.disconnect();
    }
  });

  it("shuts down with no process, mount, cgroup or temp dir left behind", async () => {
    const n = node as LabNode;
    const { dir, leaderPid, nspawnPid, machine } = n;
    await n.shutdown();
    for (const pid of [leaderPid, nspawnPid]) assert.equal(existsSync(`/proc/${pid}`), false, `pid ${pid} still alive`);
    assert.equal(existsSync(dir), false, `${dir} still exists`);
    const left = labLeftovers();
    // Other lab runs may share this machine: look only for this node's traces.
    const mine = left.processes.filter((pid) => {
      try {
        return readFileSync(`/proc/${pid}/cmdline`, "utf8").includes(machine);
      } catch {
        return false;
      }
    });
    assert.deepEqual(mine, [], "no nspawn process of this node");
    assert.deepEqual(
      left.mounts.filter((m) => m.startsWith(dir)),
      [],
      "no mount under the node's dir",
    );
    assert.deepEqual(
      left.cgroups.filter((c) => c.endsWith(machine)),
      [],
      "no cgroup of the node",
    );
    await assert.rejects(n.exec(["true"]), /shut down/);
  });
});
