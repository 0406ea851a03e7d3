// `berth timeline` as users run it: the release executable, against a
// systemd STAND-IN on a private dbus-daemon (it serves the recorded
// timestamps of tests/fixtures/timeline/ec2-like.json: LoadUnit and GetAll
// of the manager and of units, nothing else) and a run status file under
// --root. The SVG it draws is opened in a real browser (Debian's chromium,
// headless) and the screenshot checked for being a picture, not a blank page.
// Set BERTH_TIMELINE_SHOT=FILE.png to keep the screenshot.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { copyFile, mkdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import dbus from "@particle/dbus-next";
import { ensureRelease, NO_STACK, runBerth, scratchDirs } from "../fixtures/cli.ts";
import { pngStats, screenshot } from "../helpers/chromium.ts";
import { buildTimeline, type Timeline } from "../../src/timeline/model.ts";
import type { BootTimes, DualTimestamp } from "../../src/host/systemd-times.ts";
import type { RunStatus } from "../../src/host/run-status.ts";

type Msg = InstanceType<typeof dbus.Message>;
type Bus = ReturnType<typeof dbus.sessionBus>;

const fixture = JSON.parse(readFileSync(path.resolve(import.meta.dirname, "../fixtures/timeline/ec2-like.json"), "utf8")) as {
  boot: BootTimes;
  status: RunStatus;
};
const scratch = scratchDirs("berth-timeline-cli-");
let daemon: ChildProcess | undefined;
let server: Bus | undefined;
let address: string;
let root: string;
let dir: string;

const UNIT_PREFIX = "/org/freedesktop/systemd1/unit/";

/** systemd STAND-IN: answers LoadUnit and Properties.GetAll from the recorded boot times. */
function serve(bus: Bus, boot: BootTimes): void {
  const t = (prefix: string, d: DualTimestamp): Record<string, InstanceType<typeof dbus.Variant>> => ({
    [`${prefix}Timestamp`]: new dbus.Variant("t", BigInt(d.realtimeUs)),
    [`${prefix}TimestampMonotonic`]: new dbus.Variant("t", BigInt(d.monotonicUs)),
  });
  bus.addMethodHandler((msg: Msg) => {
    if (msg.type !== dbus.MessageType.METHOD_CALL || msg.destination !== "org.freedesktop.systemd1") return false;
    const reply = (sig: string, body: unknown[]) => bus.send(dbus.Message.newMethodReturn(msg, sig, body));
    if (msg.member === "LoadUnit") {
      reply("o", [`${UNIT_PREFIX}${String(msg.body[0]).replace(/[^A-Za-z0-9]/g, (c) => `_${c.charCodeAt(0).toString(16)}`)}`]);
      return true;
    }
    if (msg.member !== "GetAll") return false;
    const m = boot.manager;
    if (msg.path === "/org/freedesktop/systemd1") {
      reply("a{sv}", [
        {
          ...t("Kernel", m.kernel),
          ...t("InitRD", m.initrd),
          ...t("Userspace", m.userspace),
          ...t("Finish", m.finish),
          Version: new dbus.Variant("s", "252"),
        },
      ]);
      return true;
    }
    const u = boot.units.find(
      (x) => msg.path === `${UNIT_PREFIX}${x.name.replace(/[^A-Za-z0-9]/g, (c) => `_${c.charCodeAt(0).toString(16)}`)}`,
    );
    const zero = { realtimeUs: 0, monotonicUs: 0 };
    reply("a{sv}", [
      {
        LoadState: new dbus.Variant("s", u?.loadState ?? "not-found"),
        ActiveState: new dbus.Variant("s", u?.activeState ?? "inactive"),
        SubState: new dbus.Variant("s", u?.subState ?? "dead"),
        ...t("InactiveExit", u?.inactiveExit ?? zero),
        ...t("ActiveEnter", u?.activeEnter ?? zero),
        ...t("ActiveExit", u?.activeExit ?? zero),
        ...t("InactiveEnter", u?.inactiveEnter ?? zero),
      },
    ]);
    return true;
  });
}

before(async () => {
  ensureRelease();
  dir = await scratch.make();
  const sock = path.join(dir, "bus");
  address = `unix:path=${sock}`;
  daemon = spawn("dbus-daemon", ["--session", "--nofork", "--nopidfile", `--address=${address}`], { stdio: "ignore" });
  for (let i = 0; i < 2000 && !existsSync(sock); i++) await new Promise((r) => setTimeout(r, 5));
  server = dbus.sessionBus({ busAddress: address });
  await new Promise<void>((resolve, reject) => {
    server?.once("connect", () => resolve());
    server?.once("error", reject);
  });
  await server.requestName("org.freedesktop.systemd1", 0);
  serve(server, fixture.boot);
  root = await scratch.make();
  await mkdir(path.join(root, "run/berth"), { recursive: true });
  await writeFile(path.join(root, "run/berth/status.json"), JSON.stringify(fixture.status));
});

after(async () => {
  server?.disconnect();
  if (daemon && daemon.exitCode === null) {
    daemon.kill("SIGTERM");
    await new Promise((r) => daemon?.once("exit", r));
  }
  await scratch.removeAll();
});

test("berth timeline -o json --svg: systemd's timestamps over D-Bus and the run status, as the model draws them", async () => {
  const svg = path.join(dir, "boot.svg");
  const r = await runBerth(["timeline", "-o", "json", "--root", root, "--svg", svg], { env: { BERTH_BUS_ADDRESS: address } });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stderr, `wrote the timeline picture to ${svg}\n`);
  const got = JSON.parse(r.stdout) as Timeline;
  assert.deepEqual(got, buildTimeline({ boot: fixture.boot, status: fixture.status, notes: [] }));
  assert.equal(got.apiVersion, "berth.dev/v1alpha1");
  assert.equal(got.kind, "BootTimeline");
  assert.match(await readFile(svg, "utf8"), /^<svg xmlns=/);

  const text = await runBerth(["timeline", "--root", root], { env: { BERTH_BUS_ADDRESS: address, COLUMNS: "110" } });
  assert.equal(text.code, 0, text.stderr);
  assert.match(text.stdout, /^berth boot timeline: offsets from the kernel's start \(2026-06-12T10:00:00\.000Z\); times in seconds\n/);
  assert.ok(
    text.stdout.split("\n").every((l) => l.length <= 110 || !l.includes("█") || l.startsWith("critical")),
    "bars fit $COLUMNS",
  );
  assert.match(text.stdout, /\* {3}sandbox image +8\.820 +9\.950 +1\.130 +█+\n/);
});

test("berth timeline --svg renders in headless chromium: a picture, not a blank page", async () => {
  const svg = path.join(dir, "shot.svg");
  const r = await runBerth(["timeline", "-o", "json", "--root", root, "--svg", svg], { env: { BERTH_BUS_ADDRESS: address } });
  assert.equal(r.code, 0, r.stderr);
  const png = path.join(dir, "shot.png");
  await screenshot(svg, png);
  const s = await pngStats(png);
  assert.deepEqual([s.width, s.height], [1200, 800]);
  // The chart: 16 bars, a stacked strip, legend, grid and text; a blank page has 0 non-white pixels and 1 colour.
  assert.ok(s.nonWhite > 30_000, `only ${s.nonWhite} non-white pixels`);
  assert.ok(s.colours > 30, `only ${s.colours} colours`);
  if (process.env.BERTH_TIMELINE_SHOT) await copyFile(png, process.env.BERTH_TIMELINE_SHOT);
});

test("no systemd to ask: the run phase alone, from its start, and a note that says why", async () => {
  const r = await runBerth(["timeline", "-o", "json", "--root", root, "--bus-address", "unix:path=/nonexistent/bus"]);
  assert.equal(r.code, 0, r.stderr);
  const t = JSON.parse(r.stdout) as Timeline;
  assert.equal(t.origin.kind, "run-phase");
  assert.deepEqual(
    t.bars.map((b) => b.id),
    ["phase:run", "step:reload", "step:containerd", "step:cri", "step:sandbox-image", "step:kubelet"],
  );
  assert.match(
    t.notes[0] as string,
    /^systemd's timestamps could not be read over D-Bus at unix:path=\/nonexistent\/bus \(cannot connect .*\): only the run phase is drawn$/,
  );
});

test("nothing to draw, a bad option, an unwritable SVG: errors that say what and what to do", async () => {
  const empty = await scratch.make();
  const none = await runBerth(["timeline", "--root", empty, "--bus-address", "unix:path=/nonexistent/bus"]);
  assert.equal(none.code, 1);
  assert.equal(none.stdout, "");
  assert.match(
    none.stderr,
    /^error: \S+\/run\/berth\/status\.json: nothing to draw: systemd's timestamps could not be read \(D-Bus at unix:path=\/nonexistent\/bus\) and there is no run status\n/,
  );
  assert.match(none.stderr, /hint: run berth timeline on the node after berth init/);
  assert.doesNotMatch(none.stderr, NO_STACK);

  const yaml = await runBerth(["timeline", "-o", "yaml"]);
  assert.equal(yaml.code, 2);
  assert.match(yaml.stderr, /unknown --output 'yaml' \(expected text or json\)/);

  const bad = await runBerth(["timeline", "--root", root, "--svg", path.join(empty, "no/such/dir/x.svg")], {
    env: { BERTH_BUS_ADDRESS: address },
  });
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /^error: \S+\/no\/such\/dir\/x\.svg: cannot write the SVG: ENOENT/);
  assert.match(bad.stderr, /hint: check that the directory exists and is writable/);

  const extra = await runBerth(["timeline", "now"]);
  assert.equal(extra.code, 2);
  assert.match(extra.stderr, /unexpected argument 'now'\n {2}hint: run 'berth timeline --help' for usage/);
  const usage = await runBerth(["timeline", "--help"]);
  assert.equal(usage.code, 0);
  assert.match(usage.stdout, /^Usage: berth timeline \[options\]\n/);
  const help = await runBerth(["--help"]);
  assert.match(help.stdout, /\n {2}berth timeline \[-o text\|json\] \[--svg FILE\] \[--root DIR\]\n/);
});
