/**
 * What the doctor's checks reach the node through (the imperative shell),
 * made once per run and shared: one IMDS client and one EC2 client per
 * region whose answers are remembered for the run (the config, imds, ec2 and
 * files checks ask the same questions once), one D-Bus connection to systemd,
 * one to the bus for systemd-timedated, CRI clients on demand, and kubelet's
 * recent log. Every client is made with deadlines that fit the checks' own
 * (src/doctor/checks.ts), so a black-holed endpoint fails inside its check.
 *
 * `DoctorState` is what a check learns that the checks after it use (the
 * config, the instance identity, the node's facts); the runner starts a check
 * only after those it needs have finished, so a field is set or never will be.
 */
import { execFile } from "node:child_process";
import { readFile } from "node:fs/promises";
import type { MergedConfig } from "../api/types.ts";
import type { IdentityDocument } from "../facts/index.ts";
import type { Ec2Client, ImdsClient, NodeFacts } from "../facts/types.ts";
import { createImdsClient } from "../facts/imds.ts";
import { createEc2Client } from "../facts/ec2.ts";
import { createCriClient, type CriClient } from "../host/cri.ts";
import type { HostRoot } from "../host/root.ts";
import { connectSystemd, systemBusAddress, type Systemd } from "../host/systemd.ts";
import { openSystemdBus, type SystemdBus } from "../host/systemd-bus.ts";

/** kubelet's recent log lines, oldest first, and where they came from. */
export interface KubeletLog {
  source: string;
  lines: string[];
}

export interface DoctorDeps {
  root: HostRoot;
  env: NodeJS.ProcessEnv;
  /** Config sources, as `berth init -c` takes them. */
  sources: readonly string[];
  /** `--config-cache PATH` (a host path under `root`). */
  cachePath?: string;
  /** The berth executable the units name when the node's own units do not say (src/cli/self.ts). */
  berthPath: string;
  imds: ImdsClient & { readonly endpoint: string };
  ec2(region: string): Ec2Client;
  /** systemd's manager (unit states); rejects with a SystemdError when the bus cannot be reached. */
  systemd(): Promise<Systemd>;
  /** The same bus, for other services' properties (systemd-timedated). */
  bus(): Promise<SystemdBus>;
  busAddress: string;
  cri(socketPath: string, timeoutMs: number): CriClient;
  /** `--kubelet-healthz URL`: overrides the BerthConfig's kubeletHealthzUrl and the default. */
  kubeletHealthzUrl?: string;
  /** kubelet's last lines (journal, or a file); rejects when they cannot be read. */
  kubeletLog(timeoutMs: number, signal?: AbortSignal): Promise<KubeletLog>;
}

/** What checks learn for the checks after them. */
export interface DoctorState {
  config?: MergedConfig;
  identity?: IdentityDocument;
  /** From IMDS meta-data/iam/info, when the instance has a profile. */
  instanceProfileArn?: string;
  /** From EC2 DescribeInstances. */
  privateDnsName?: string;
  facts?: NodeFacts;
  /** The Node object's name, once a check has worked it out. */
  nodeName?: string;
}

export interface DoctorOptions {
  root: HostRoot;
  env: NodeJS.ProcessEnv;
  sources: readonly string[];
  cachePath?: string;
  berthPath: string;
  /** `--bus-address`; else BERTH_BUS_ADDRESS, DBUS_SYSTEM_BUS_ADDRESS, then the system bus socket under the root. */
  busAddress?: string;
  kubeletHealthzUrl?: string;
  /** `--kubelet-log FILE`: read kubelet's log from this file (a path on this machine) instead of the journal. */
  kubeletLogFile?: string;
}

/** How many of kubelet's last log lines are read. */
export const KUBELET_LOG_LINES = 200;

/** Promises remembered per key: a question asked twice in one run (by two checks) goes out once. */
function remember<T>(cache: Map<string, Promise<T>>, key: string, make: () => Promise<T>): Promise<T> {
  let p = cache.get(key);
  if (!p) {
    p = make();
    cache.set(key, p);
  }
  return p;
}

/** The D-Bus address the doctor talks to (see DoctorOptions.busAddress). */
export function doctorBusAddress(root: HostRoot, env: NodeJS.ProcessEnv, explicit?: string): string {
  return explicit || systemBusAddress(env, root);
}

function journalLines(root: HostRoot, timeoutMs: number, signal?: AbortSignal): Promise<KubeletLog> {
  const args = [
    ...(root.isHost ? [] : ["--root", root.dir]),
    "-u",
    "kubelet.service",
    "-n",
    String(KUBELET_LOG_LINES),
    "-o",
    "cat",
    "--no-pager",
    "-q",
  ];
  return new Promise((resolve, reject) => {
    const o = { timeout: timeoutMs, encoding: "utf8" as const, maxBuffer: 4 << 20, ...(signal ? { signal } : {}) };
    execFile("journalctl", args, o, (err, stdout, stderr) => {
      const source = `journalctl ${args.join(" ")}`;
      if (err && !stdout) {
        reject(new Error(`${source}: ${(stderr || err.message).trim().split("\n")[0]}`));
        return;
      }
      resolve({ source, lines: stdout.split("\n").filter((l) => l.trim() !== "") });
    });
  });
}

export function createDoctorDeps(o: DoctorOptions): DoctorDeps & { close(): void } {
  const imdsRaw = createImdsClient({ env: o.env, timeoutMs: 1000, deadlineMs: 2000, backoff: { initialMs: 50, maxMs: 300 } });
  const imdsCache = new Map<string, Promise<Uint8Array | undefined>>();
  const getBytes = (p: string): Promise<Uint8Array | undefined> => remember(imdsCache, p, () => imdsRaw.getBytes(p));
  const imds = {
    endpoint: imdsRaw.endpoint,
    getBytes,
    get: async (p: string) => {
      const b = await getBytes(p);
      return b === undefined ? undefined : Buffer.from(b).toString("utf8");
    },
  };
  const ec2Clients = new Map<string, Ec2Client>();
  const ec2 = (region: string): Ec2Client => {
    let c = ec2Clients.get(region);
    if (!c) {
      const raw = createEc2Client({
        region,
        env: o.env,
        imds,
        timeoutMs: 2000,
        callDeadlineMs: 2500,
        dnsWaitMs: 2500,
        maxAttempts: 2,
        backoff: { initialMs: 100, maxMs: 400 },
        waiterBackoff: { initialMs: 300, maxMs: 800 },
      });
      const names = new Map<string, Promise<string>>();
      const types = new Map<string, Promise<{ defaultEnis: number; ipv4PerEni: number } | undefined>>();
      c = {
        privateDnsName: (id) => remember(names, id, () => raw.privateDnsName(id)),
        instanceTypeInfo: (t) => remember(types, t, () => raw.instanceTypeInfo(t)),
      };
      ec2Clients.set(region, c);
    }
    return c;
  };
  const busAddress = doctorBusAddress(o.root, o.env, o.busAddress);
  let sd: Promise<Systemd> | undefined;
  let bus: Promise<SystemdBus> | undefined;
  const opened: Array<{ close(): void }> = [];
  const track = <T extends { close(): void }>(p: Promise<T>): Promise<T> =>
    p.then((x) => {
      opened.push(x);
      return x;
    });
  return {
    root: o.root,
    env: o.env,
    sources: o.sources,
    ...(o.cachePath !== undefined ? { cachePath: o.cachePath } : {}),
    berthPath: o.berthPath,
    imds,
    ec2,
    systemd: () => (sd ??= track(connectSystemd({ busAddress, timeoutMs: 1500 }))),
    bus: () => (bus ??= track(openSystemdBus(busAddress, 1500))),
    busAddress,
    cri: (socketPath, timeoutMs) => {
      const c = createCriClient(socketPath, { callTimeoutMs: timeoutMs, reconnect: { initialMs: 20, maxMs: 200 } });
      opened.push(c);
      return c;
    },
    ...(o.kubeletHealthzUrl !== undefined ? { kubeletHealthzUrl: o.kubeletHealthzUrl } : {}),
    kubeletLog: async (timeoutMs, signal) => {
      if (o.kubeletLogFile === undefined) return journalLines(o.root, timeoutMs, signal);
      const text = await readFile(o.kubeletLogFile, "utf8");
      return {
        source: o.kubeletLogFile,
        lines: text
          .split("\n")
          .filter((l) => l.trim() !== "")
          .slice(-KUBELET_LOG_LINES),
      };
    },
    close() {
      for (const c of opened.splice(0)) {
        try {
          c.close();
        } catch {
          // closing is best effort; the process ends right after
        }
      }
      imdsRaw.close();
    },
  };
}
