/**
 * A lab node set up for berth's run phase (issue 3), shared by the run-phase
 * lab tests, bench/run-phase.ts, bench/cri-notice.ts and `make demo`.
 *
 * What it prepares, all on the host's loopback (the node shares it):
 * - the lab registry holding the offline pause image as
 *   localhost/kubernetes/pause:latest and a second image for pull tasks
 *   (localhost/berth/task-image:1), reached through a certs.d hosts.toml;
 * - IMDS and EC2 stand-ins; the NodeConfig (+ BerthConfig) is the IMDS user
 *   data, so berth runs with its default config source, as on EC2;
 * - the NodeConfig merges lab/containerd-lab.toml and gives the kubelet
 *   stand-in its own --healthz-port (parallel lab nodes share 127.0.0.1);
 * - berth itself comes from its .deb, installed with dpkg inside the node
 *   (tests/lab/lab.ts); its postinst puts berth's boot units in place. With
 *   `rebootAfterInstall` the node then boots again, so that boot runs
 *   berth-config → berth-run (and berth-agent with `agent`), as on an image
 *   built with the package. Drop-ins (lab only) give berth's units the
 *   stand-ins' endpoints, keep berth-agent off unless `agent` is set, and
 *   replace `systemctl` inside berth-reboot-once.service with a recorder
 *   (see `REBOOT_RECORD`).
 */
import path from "node:path";
import { stringify as yamlStringify } from "yaml";
import {
  bootNode,
  containerdLabFiles,
  containerdLabToml,
  ensurePauseImageLayout,
  freePort,
  pushPauseImage,
  startRegistry,
  type ExecResult,
  type FileSpec,
  type LabNode,
  type Registry,
} from "./lab.ts";
import { pushOciLayout } from "../../lab/oci-push.ts";
import { startImdsStandIn, type ImdsStandIn } from "../standins/imds-server.ts";
import { startEc2StandIn, type Ec2StandIn } from "../standins/ec2-server.ts";
import type { BerthSpec, ClusterDetails, NodeConfigSpec } from "../../src/api/types.ts";

export const TASK_IMAGE = "localhost/berth/task-image:1";
/** Where the fake `systemctl` inside berth-reboot-once.service records its arguments. */
export const REBOOT_RECORD = "/var/lib/berth-lab/reboot-requests";
const FAKE_SYSTEMCTL = "/usr/local/lib/berth-lab/fake-systemctl";

// Any PEM, base64: the kubelet stand-in never talks to an API server.
const LAB_CA = Buffer.from("-----BEGIN CERTIFICATE-----\nTUlJQmxhYg==\n-----END CERTIFICATE-----\n").toString("base64");

export interface RunNodeOptions {
  name?: string;
  berth?: BerthSpec;
  /** Boot again after installing the package, so the boot runs berth-config → berth-run (→ berth-agent). */
  rebootAfterInstall?: boolean;
  /** Let berth-agent.service run (the package enables it; these nodes keep it off by default). */
  agent?: boolean;
  files?: Record<string, FileSpec>;
  /** Extra systemd-nspawn arguments (bootNode's `nspawnArgs`), e.g. block devices. */
  nspawnArgs?: string[];
  /** Overrides of the NodeConfig's spec.cluster, e.g. an API server stand-in's endpoint and CA (berth doctor's lab test). */
  cluster?: Partial<ClusterDetails>;
}

/** With `agent`, this file exists in the node; berth-agent.service's lab drop-in requires it. */
export const AGENT_ENABLE_FILE = "/etc/berth-lab/enable-agent";

export interface RunNode {
  node: LabNode;
  registry: Registry;
  imds: ImdsStandIn;
  ec2: Ec2StandIn;
  healthzPort: number;
  /** Where berth-agent serves /status and /metrics (nodes share the host's network: a free port). */
  agentListen: string;
  nodeConfig: NodeConfigSpec;
  berthSpec: BerthSpec;
  /** Environment berth needs inside the node (stand-in endpoints). */
  env: Record<string, string>;
  /** Run the berth CLI inside the node with `env`. */
  berth(args: string[], timeoutMs?: number): Promise<ExecResult>;
  /** Serve a different BerthConfig (same NodeConfig) as user data from now on. */
  setBerthSpec(b: BerthSpec): void;
  /** `systemctl show -p ... --value`, as a record. */
  show(unit: string, props: string[]): Promise<Record<string, string>>;
  /** Wait until a oneshot unit leaves activating (active or failed); returns its ActiveState. */
  waitSettled(unit: string, timeoutMs: number): Promise<string>;
  cleanup(): Promise<void>;
}

function dropIn(lines: string[]): string {
  return `# berth run-phase lab\n${lines.join("\n")}\n`;
}

export async function bootRunNode(opts: RunNodeOptions = {}): Promise<RunNode> {
  const registry = await startRegistry();
  const cleanups: Array<() => Promise<unknown>> = [() => registry.stop()];
  const cleanup = async (): Promise<void> => {
    for (const c of cleanups.reverse()) await c().catch(() => undefined);
    cleanups.length = 0;
  };
  try {
    await pushPauseImage(registry);
    await pushOciLayout({
      registry: registry.address,
      layoutDir: await ensurePauseImageLayout(),
      tag: "latest",
      repository: "berth/task-image",
    });
    // pushOciLayout picks the manifest by the layout's tag; push it again under the tag tasks use.
    await retag(registry.address, "berth/task-image", "latest", "1");

    const healthzPort = await freePort();
    const agentListen = `127.0.0.1:${await freePort()}`;
    const nodeConfig: NodeConfigSpec = {
      cluster: {
        name: "berth-lab",
        apiServerEndpoint: "https://127.0.0.1:6443",
        certificateAuthority: LAB_CA,
        cidr: "10.100.0.0/16",
        ...(opts.cluster ?? {}),
      },
      containerd: { config: containerdLabToml() },
      kubelet: { flags: [`--healthz-port=${healthzPort}`] },
      featureGates: { InstanceIdNodeName: true },
    };
    const berthSpec: BerthSpec = {
      run: { criReadyTimeoutMs: 120_000 },
      ...(opts.berth ?? {}),
      // The stand-in's port and a port of the agent's own: parallel nodes share 127.0.0.1.
      agent: { kubeletHealthzUrl: `http://127.0.0.1:${healthzPort}/healthz`, listenAddress: agentListen, ...(opts.berth?.agent ?? {}) },
    };
    const userDataFor = (b: BerthSpec): string =>
      [
        "---",
        yamlStringify({ apiVersion: "node.eks.aws/v1alpha1", kind: "NodeConfig", spec: nodeConfig }),
        "---",
        yamlStringify({ apiVersion: "berth.dev/v1alpha1", kind: "BerthConfig", spec: b }),
      ].join("\n");
    const imds = await startImdsStandIn({ userData: userDataFor(berthSpec), instanceType: "m5.large" });
    cleanups.push(() => imds.close());
    const ec2 = await startEc2StandIn({});
    cleanups.push(() => ec2.close());
    const env: Record<string, string> = {
      AWS_EC2_METADATA_SERVICE_ENDPOINT: imds.url,
      AWS_ENDPOINT_URL_EC2: ec2.url,
      AWS_ACCESS_KEY_ID: "AKIDBERTHLAB",
      AWS_SECRET_ACCESS_KEY: "berth-lab-secret",
      AWS_REGION: "us-east-1",
    };
    const envLines = Object.entries(env).map(([k, v]) => `Environment=${k}=${v}`);

    const files: Record<string, FileSpec> = {
      ...containerdLabFiles(registry),
      // berth's units read the stand-ins' endpoints from here (lab only).
      "/etc/systemd/system/berth-config.service.d/50-lab.conf": dropIn(["[Service]", ...envLines]),
      "/etc/systemd/system/berth-run.service.d/50-lab.conf": dropIn(["[Service]", ...envLines]),
      // The health agent reads spec.agent from the same user data; it runs only where a test asks for it.
      "/etc/systemd/system/berth-agent.service.d/50-lab.conf": dropIn([
        "[Unit]",
        `ConditionPathExists=${AGENT_ENABLE_FILE}`,
        "[Service]",
        ...envLines,
      ]),
      ...(opts.agent ? { [AGENT_ENABLE_FILE]: "enabled by tests/lab/run-node.ts\n" } : {}),
      // Reboot-once: the unit runs as rendered, but its /usr/bin/systemctl is a
      // recorder (a per-unit bind mount), so "reboot" is observed, not done —
      // a reboot would end nspawn (exit 133) and the test with it.
      "/etc/systemd/system/berth-reboot-once.service.d/50-lab.conf": dropIn([
        "[Service]",
        `BindReadOnlyPaths=${FAKE_SYSTEMCTL}:/usr/bin/systemctl`,
      ]),
      [FAKE_SYSTEMCTL]: {
        mode: 0o755,
        content: `#!/bin/sh\nmkdir -p ${path.dirname(REBOOT_RECORD)}\necho "$(date +%s.%N) $*" >> ${REBOOT_RECORD}\n`,
      },
      ...(opts.files ?? {}),
    };
    const node = await bootNode({
      name: opts.name ?? "run",
      files,
      rebootAfterInstall: opts.rebootAfterInstall ?? false,
      bootTimeoutMs: 90_000,
      ...(opts.nspawnArgs ? { nspawnArgs: opts.nspawnArgs } : {}),
    });
    cleanups.push(() => node.shutdown());

    const show = async (unit: string, props: string[]): Promise<Record<string, string>> => {
      const r = await node.exec(["systemctl", "show", unit, ...props.map((p) => `--property=${p}`)], { timeoutMs: 10_000 });
      const out: Record<string, string> = {};
      for (const line of r.stdout.split("\n")) {
        const i = line.indexOf("=");
        if (i > 0) out[line.slice(0, i)] = line.slice(i + 1);
      }
      return out;
    };
    return {
      node,
      registry,
      imds,
      ec2,
      healthzPort,
      agentListen,
      nodeConfig,
      berthSpec,
      env,
      berth: (args, timeoutMs = 180_000) => node.exec(["/usr/bin/berth", ...args], { env, timeoutMs }),
      setBerthSpec: (b) => imds.setUserData(userDataFor(b)),
      show,
      async waitSettled(unit, timeoutMs) {
        const end = Date.now() + timeoutMs;
        for (;;) {
          const s = (await show(unit, ["ActiveState"])).ActiveState ?? "";
          if (s === "active" || s === "failed") return s;
          if (Date.now() > end) return s;
          await new Promise((r) => setTimeout(r, 200));
        }
      },
      cleanup,
    };
  } catch (e) {
    await cleanup();
    throw e;
  }
}

/** Registry-side retag: fetch the manifest under one tag, PUT it under another. */
async function retag(registry: string, repo: string, from: string, to: string): Promise<void> {
  const accept = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";
  const got = await fetch(`http://${registry}/v2/${repo}/manifests/${from}`, { headers: { accept }, signal: AbortSignal.timeout(10_000) });
  if (!got.ok) throw new Error(`GET manifest ${repo}:${from}: ${got.status}`);
  const type = got.headers.get("content-type") ?? "application/vnd.oci.image.manifest.v1+json";
  const body = Buffer.from(await got.arrayBuffer());
  const put = await fetch(`http://${registry}/v2/${repo}/manifests/${to}`, {
    method: "PUT",
    headers: { "content-type": type },
    body,
    signal: AbortSignal.timeout(10_000),
  });
  if (!put.ok) throw new Error(`PUT manifest ${repo}:${to}: ${put.status} ${await put.text()}`);
}

/** Deterministic PRNG (mulberry32) for seeded lab randomness. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
