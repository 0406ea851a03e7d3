/**
 * berth's units. Besides content checks, every rendered unit goes through
 * `systemd-analyze verify`, which must print nothing on stderr (unknown keys
 * only warn and exit 0, so the exit status alone proves little).
 *
 * How verify runs offline here: `--root=DIR` makes systemd load units and
 * check executables under DIR. DIR gets the host's /usr/lib/systemd/system
 * copied in (symlinked it would resolve back into DIR and loop), `bin`,
 * `sbin`, `lib` as merged-/usr symlinks, stub executables for every
 * ExecStart= path, and a stub containerd.service for the drop-in.
 */

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { chmodSync, cpSync, existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";

import type { BerthSpec, NodeConfigSpec } from "../../src/api/types.ts";
import type { PlannedFile } from "../../src/plan/types.ts";
import { renderUnits, UNIT_HEADER } from "../../src/render/units.ts";
import type { UnitOptions } from "../../src/render/units.ts";

const OPTS: UnitOptions = { berthPath: "/usr/bin/berth" };

const FULL_BERTH: BerthSpec = {
  tasks: [
    { name: "warm-images", pullImages: ["public.ecr.aws/eks-distro/kubernetes/pause:3.10", "registry.k8s.io/coredns/coredns:v1.11.1"] },
    { name: "tune", script: "echo hello > /tmp/berth-tune\n" },
    { name: "py", script: "#!/usr/bin/python3\nprint('x')" },
  ],
  rebootAfterBootstrap: true,
};

// The NodeConfig spec does not shape the units: the tests pass several to show it.
function render(_spec: NodeConfigSpec, berth: BerthSpec, opts: UnitOptions = OPTS): PlannedFile[] {
  const r = renderUnits(berth, opts);
  if (!r.ok) throw new Error(r.errors.map((e) => e.message).join("; "));
  return r.value;
}

function byPath(files: PlannedFile[]): Map<string, string> {
  return new Map(files.map((f) => [f.path, f.content as string]));
}

test("kubelet.service: Wants/After containerd, never Requires/BindsTo; Restart=always; env file and flags", () => {
  for (const spec of [{}, { kubelet: { config: { maxPods: 10 } } }] as NodeConfigSpec[]) {
    {
      const unit = byPath(render(spec, {}, { berthPath: "/usr/bin/berth" })).get("/etc/systemd/system/kubelet.service")!;
      assert.doesNotMatch(unit, /^(Requires|BindsTo|Requisite|PartOf)=.*containerd/m);
      assert.match(unit, /^Wants=containerd\.service$/m);
      assert.match(unit, /^After=containerd\.service berth-config\.service$/m);
      assert.match(unit, /^Restart=always$/m);
      assert.match(unit, /^RestartSec=\d+$/m);
      assert.match(unit, /^EnvironmentFile=\/etc\/eks\/kubelet\/environment$/m);
      assert.match(unit, /^ExecStartPre=-\/sbin\/iptables -P FORWARD ACCEPT -w 5$/m);
      assert.match(unit, /^ExecStart=\/usr\/bin\/kubelet \$NODEADM_KUBELET_ARGS$/m);
      // Flags (incl. --config-dir) and the alpha switch come from the environment file only.
      assert.doesNotMatch(unit, /--config-dir|KUBELET_CONFIG_DROPIN_DIR_ALPHA/);
    }
  }
});

test("berth-config, berth-run, agent, containerd drop-in: the required shape", () => {
  const files = byPath(render({}, {}));
  const config = files.get("/etc/systemd/system/berth-config.service")!;
  assert.match(config, /^Type=oneshot$/m);
  assert.match(config, /^RemainAfterExit=yes$/m);
  assert.match(config, /^ExecStart=\/usr\/bin\/berth init --skip run$/m);
  assert.match(config, /^Before=cloud-init\.service$/m);

  const run = files.get("/etc/systemd/system/berth-run.service")!;
  assert.match(run, /^ExecStart=\/usr\/bin\/berth init --skip config$/m);
  assert.match(run, /^After=.*cloud-final\.service.*$/m);
  assert.match(run, /^After=.*containerd\.service.*$/m);
  assert.match(run, /^Wants=cloud-final\.service containerd\.service$/m);
  assert.match(run, /^RemainAfterExit=yes$/m);

  const agent = files.get("/etc/systemd/system/berth-agent.service")!;
  assert.match(agent, /^ExecStart=\/usr\/bin\/berth agent -c imds:\/\/user-data$/m);
  assert.match(agent, /^After=berth-run\.service$/m);
  assert.match(agent, /^Restart=always$/m);
  assert.match(agent, /^MemoryMax=\d+M$/m);
  assert.doesNotMatch(agent, /Watchdog/);
  // The agent reads its settings from the same config sources as the init units.
  const withSources = byPath(render({}, {}, { berthPath: "/usr/bin/berth", initArgs: ["-c", "file:///etc/berth/"] }));
  assert.match(
    withSources.get("/etc/systemd/system/berth-agent.service")!,
    /^ExecStart=\/usr\/bin\/berth agent -c file:\/\/\/etc\/berth\/$/m,
  );

  const dropin = files.get("/etc/systemd/system/containerd.service.d/10-berth.conf")!;
  assert.match(dropin, /^Restart=always$/m);
  assert.match(dropin, /^RestartSec=5$/m);
  // At boot containerd starts after the config phase wrote its config (ordering only, issue 7).
  assert.match(dropin, /^After=berth-config\.service$/m);
  assert.doesNotMatch(dropin, /^(Requires|Wants|BindsTo)=/m);

  for (const [path, content] of files) assert.ok(content.startsWith(`${UNIT_HEADER}\n`), path);
  // No reboot unit and no task units unless asked for.
  assert.equal(files.has("/etc/systemd/system/berth-reboot-once.service"), false);
  assert.equal(
    [...files.keys()].some((p) => p.includes("berth-task-")),
    false,
  );
});

test("tasks: ordered oneshots after run, containerd, kubelet and the previous task; scripts 0755; target wants all", () => {
  const files = render({}, FULL_BERTH);
  const m = byPath(files);
  const pull = m.get("/etc/systemd/system/berth-task-warm-images.service")!;
  assert.match(pull, /^After=berth-run\.service containerd\.service kubelet\.service$/m);
  assert.match(pull, /^Wants=containerd\.service$/m);
  assert.doesNotMatch(pull, /^(Requires|BindsTo|Before)=/m);
  assert.match(
    pull,
    /^ExecStart=\/usr\/bin\/berth task pull-images public\.ecr\.aws\/eks-distro\/kubernetes\/pause:3\.10 registry\.k8s\.io\/coredns\/coredns:v1\.11\.1$/m,
  );
  const tune = m.get("/etc/systemd/system/berth-task-tune.service")!;
  assert.match(tune, /^After=berth-run\.service containerd\.service kubelet\.service berth-task-warm-images\.service$/m);
  assert.match(tune, /^ExecStart=\/etc\/berth\/tasks\/tune\.sh$/m);
  const script = files.find((f) => f.path === "/etc/berth/tasks/tune.sh")!;
  assert.equal(script.mode, 0o755);
  assert.equal(script.content, "#!/bin/sh\necho hello > /tmp/berth-tune\n");
  assert.equal(m.get("/etc/berth/tasks/py.sh"), "#!/usr/bin/python3\nprint('x')\n");
  assert.match(m.get("/etc/systemd/system/berth-task-py.service")!, /^After=.* berth-task-tune\.service$/m);

  const target = m.get("/etc/systemd/system/berth-tasks.target")!;
  assert.match(target, /^Wants=berth-task-warm-images\.service berth-task-tune\.service berth-task-py\.service$/m);
  assert.match(m.get("/etc/systemd/system/multi-user.target.d/10-berth.conf")!, /^Wants=.*berth-tasks\.target/m);
  // kubelet is started by berth-run once CRI is ready, never pulled in at boot on its own.
  assert.doesNotMatch(m.get("/etc/systemd/system/multi-user.target.d/10-berth.conf")!, /kubelet/);
  // kubelet is never ordered after a task.
  assert.doesNotMatch(m.get("/etc/systemd/system/kubelet.service")!, /berth-task/);
});

test("reboot once: condition on the marker, touch before reboot, after run and every task", () => {
  const unit = byPath(render({}, FULL_BERTH)).get("/etc/systemd/system/berth-reboot-once.service")!;
  assert.match(unit, /^ConditionPathExists=!\/var\/lib\/berth\/rebooted-once$/m);
  assert.match(unit, /^After=berth-run\.service berth-task-warm-images\.service berth-task-tune\.service berth-task-py\.service$/m);
  const touch = unit.indexOf("ExecStart=/bin/touch /var/lib/berth/rebooted-once");
  const reboot = unit.indexOf("systemctl --no-block reboot");
  assert.ok(touch > 0 && reboot > touch);
  assert.match(byPath(render({}, FULL_BERTH)).get("/etc/systemd/system/berth.target")!, /berth-reboot-once\.service/);
});

test("deterministic bytes and sorted paths", () => {
  const a = render({ kubelet: { config: { a: 1 } } }, FULL_BERTH);
  const b = render({ kubelet: { config: { a: 1 } } }, structuredClone(FULL_BERTH));
  assert.deepEqual(a, b);
  const paths = a.map((f) => f.path);
  assert.deepEqual(paths, [...paths].sort());
});

test("bad task names, duplicates, empty tasks and odd image refs are errors naming the field", () => {
  const r = renderUnits(
    {
      tasks: [
        { name: "Bad Name", script: "true" },
        { name: "ok", pullImages: [] },
        { name: "ok", pullImages: ["has space:1"] },
        { name: "empty", script: "  " },
      ],
    },
    OPTS,
  );
  assert.equal(r.ok, false);
  if (r.ok) return;
  assert.deepEqual(
    r.errors.map((e) => e.where?.path),
    ["berth.tasks[0].name", "berth.tasks[1].pullImages", "berth.tasks[2].name", "berth.tasks[2].pullImages[0]", "berth.tasks[3]"],
  );
  const rel = renderUnits({}, { berthPath: "berth" });
  assert.equal(rel.ok, false);
});

test("init arguments are escaped for systemd's command line", () => {
  const m = byPath(
    render({}, {}, { berthPath: "/usr/bin/berth", initArgs: ["--config-source", "file:///etc/berth/a b.yaml", "--x=%h$HOME"] }),
  );
  assert.match(
    m.get("/etc/systemd/system/berth-config.service")!,
    /^ExecStart=\/usr\/bin\/berth init --skip run --config-source "file:\/\/\/etc\/berth\/a b\.yaml" --x=%%h\$\$HOME$/m,
  );
});

// ---- systemd-analyze verify ------------------------------------------------

const analyze = spawnSync("systemd-analyze", ["--version"], { encoding: "utf8" });
const HAVE_ANALYZE = analyze.status === 0;
let root = "";

before(() => {
  if (!HAVE_ANALYZE) return;
  root = mkdtempSync(join(tmpdir(), "berth-units-"));
  mkdirSync(join(root, "usr/lib/systemd"), { recursive: true });
  for (const d of ["usr/bin", "usr/sbin", "etc/systemd/system"]) mkdirSync(join(root, d), { recursive: true });
  for (const [link, to] of [
    ["bin", "usr/bin"],
    ["sbin", "usr/sbin"],
    ["lib", "usr/lib"],
  ] as const)
    symlinkSync(to, join(root, link));
  cpSync("/usr/lib/systemd/system", join(root, "usr/lib/systemd/system"), { recursive: true, verbatimSymlinks: true });
  for (const bin of ["berth", "kubelet", "containerd", "mkdir", "touch", "systemctl"]) {
    writeFileSync(join(root, "usr/bin", bin), "#!/bin/sh\n");
    chmodSync(join(root, "usr/bin", bin), 0o755);
  }
  if (!existsSync(join(root, "usr/lib/systemd/system/containerd.service"))) {
    writeFileSync(
      join(root, "usr/lib/systemd/system/containerd.service"),
      "[Unit]\nDescription=containerd\n[Service]\nType=notify\nExecStart=/usr/bin/containerd\nDelegate=yes\nKillMode=process\n[Install]\nWantedBy=multi-user.target\n",
    );
  }
});

after(() => {
  if (root) rmSync(root, { recursive: true, force: true });
});

test("systemd-analyze verify: every unit, drop-in and task script passes with nothing on stderr", (t) => {
  if (!HAVE_ANALYZE) {
    t.skip("systemd-analyze is not installed (apt-get install systemd)");
    return;
  }
  const files = render({ kubelet: { config: { maxPods: 10 } } }, FULL_BERTH);
  for (const f of files) {
    const p = join(root, f.path);
    mkdirSync(dirname(p), { recursive: true });
    writeFileSync(p, f.content);
    chmodSync(p, f.mode);
  }
  const units = files.map((f) => f.path).filter((p) => /^\/etc\/systemd\/system\/[^/]+\.(service|target|slice)$/.test(p));
  // Drop-ins are loaded with the unit they extend.
  const targets = [...units, "/usr/lib/systemd/system/multi-user.target", "/usr/lib/systemd/system/containerd.service"];
  const res = spawnSync("systemd-analyze", ["verify", `--root=${root}`, ...targets], { encoding: "utf8" });
  assert.equal(res.stderr, "", res.stderr);
  assert.equal(res.status, 0);
});

test("systemd-analyze verify catches a broken unit in this setup (the check is not vacuous)", (t) => {
  if (!HAVE_ANALYZE) {
    t.skip("systemd-analyze is not installed");
    return;
  }
  const p = join(root, "etc/systemd/system/broken.service");
  writeFileSync(p, "[Unit]\nBogusKey=1\n[Service]\nExecStart=/usr/bin/does-not-exist\n");
  let stderr = "";
  try {
    execFileSync("systemd-analyze", ["verify", `--root=${root}`, "/etc/systemd/system/broken.service"], {
      encoding: "utf8",
      stdio: "pipe",
    });
  } catch (e) {
    stderr = String((e as { stderr?: string }).stderr ?? "");
  }
  assert.match(stderr, /BogusKey/);
  assert.match(stderr, /does-not-exist/);
  rmSync(p);
});
