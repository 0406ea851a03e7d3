/**
 * Assembles a running agent from settings: connects to systemd, builds the
 * probes for containerd and kubelet, the metrics and the status server.
 * `berth agent` (src/cli/agent.ts), the lab tests and the benchmarks all
 * start the agent through here.
 */
import { connectSystemd, type Systemd } from "../host/systemd.ts";
import { HostRoot } from "../host/root.ts";
import { createAgent, type Agent, type AgentLog } from "./controller.ts";
import type { AgentEvent } from "./decide.ts";
import { createMetrics, serveStatus, type AgentMetrics, type StatusServer } from "./metrics.ts";
import { containerdProbe, kubeletProbe, type Probe } from "./probes.ts";
import { isBootstrapDone, readRunStatus } from "../host/run-status.ts";
import { parseListenAddress, type ResolvedAgentSettings } from "../api/agent-settings.ts";
import { reconnectingSystemd } from "./systemd-reconnect.ts";
// The constants-only layout module: src/host/cri.ts would load grpc-js into the agent.
import { CONTAINERD_SOCKET, RUN_STATUS_PATH, UNITS } from "../util/node-layout.ts";

export interface StartAgentOptions {
  settings: ResolvedAgentSettings;
  /** Host paths (containerd socket, run status file) resolve under this root. */
  root?: HostRoot;
  /** D-Bus address of the system bus to manage (a lab node's). Default: the host's. */
  busAddress?: string;
  /** Use this systemd client instead of connecting (tests). It is closed by stop(). */
  systemd?: Systemd;
  /** containerd's socket as a host path before re-rooting (default /run/containerd/containerd.sock). */
  containerdSocket?: string;
  /** Run phase status file as a host path before re-rooting (default /run/berth/status.json). */
  runStatusPath?: string;
  /** Assume bootstrap is done (true), or never (false); default: read the run status file. */
  bootstrapDone?: boolean;
  /** Serve /metrics and /status (default true). */
  serve?: boolean;
  log?: AgentLog;
  onEvent?: (e: AgentEvent) => void;
  /** Override probes (tests). */
  probes?: { containerd?: Probe; kubelet?: Probe };
  units?: { containerd?: string; kubelet?: string };
  restartJobTimeoutMs?: number;
}

export interface RunningAgent {
  agent: Agent;
  metrics: AgentMetrics;
  /** The bound status address, when serving. */
  address: string | undefined;
  stop(): Promise<void>;
}

/**
 * Is the run phase over? The status file says so when the run phase ended
 * normally; systemd is the ground truth when it did not: a run phase killed
 * midway leaves `running` in the file forever, and a node bootstrapped
 * without berth-run has no file at all. So while the file does not say
 * done, bootstrap counts as over unless berth-run.service is still
 * `activating` — otherwise the agent would never repair anything.
 */
export async function bootstrapFinished(statusPath: string, systemd: Systemd, log?: AgentLog): Promise<boolean> {
  const status = await readRunStatus(statusPath);
  if (status && isBootstrapDone(status)) return true;
  const run = await systemd.unitState(UNITS.run);
  if (run.activeState === "activating") return false;
  const runState = run.loadState === "loaded" ? run.activeState : run.loadState;
  log?.warn(
    {
      event: "agent.bootstrap-assumed-over",
      component: "agent",
      cause: `run status ${status ? `says "${status.result}"` : "is missing"} but ${UNITS.run} is ${runState}`,
    },
    "treating bootstrap as over: the run phase is not running",
  );
  return true;
}

function logReconnect(i: { attempt: number; ok: boolean; cause?: string }, log: AgentLog | undefined): void {
  if (i.ok) log?.warn({ event: "agent.dbus-reconnected", component: "agent", attempt: i.attempt }, "reconnected to systemd over D-Bus");
  else {
    const fields = { event: "agent.dbus-reconnect-failed", component: "agent", attempt: i.attempt, cause: i.cause };
    log?.warn(fields, `cannot reconnect to systemd: ${i.cause}`);
  }
}

export async function startAgent(o: StartAgentOptions): Promise<RunningAgent> {
  const root = o.root ?? new HostRoot("/");
  const settings = o.settings;
  const connect = () => connectSystemd({ ...(o.busAddress ? { busAddress: o.busAddress } : {}), timeoutMs: 5_000 });
  const systemd = o.systemd ?? reconnectingSystemd(await connect(), { connect, onReconnect: (i) => logReconnect(i, o.log) });
  const socket = root.path(o.containerdSocket ?? CONTAINERD_SOCKET);
  const statusPath = root.path(o.runStatusPath ?? RUN_STATUS_PATH);
  const metrics = createMetrics();
  const containerd = o.units?.containerd ?? UNITS.containerd;
  const kubelet = o.units?.kubelet ?? UNITS.kubelet;
  const agent = createAgent({
    settings,
    systemd,
    metrics,
    components: [
      { name: "containerd", unit: containerd, probe: o.probes?.containerd ?? containerdProbe(socket) },
      { name: "kubelet", unit: kubelet, probe: o.probes?.kubelet ?? kubeletProbe(settings.kubeletHealthzUrl), dependsOn: "containerd" },
    ],
    bootstrapDone: o.bootstrapDone !== undefined ? () => o.bootstrapDone as boolean : () => bootstrapFinished(statusPath, systemd, o.log),
    ...(o.log ? { log: o.log } : {}),
    ...(o.onEvent ? { onEvent: o.onEvent } : {}),
    ...(o.restartJobTimeoutMs !== undefined ? { restartJobTimeoutMs: o.restartJobTimeoutMs } : {}),
  });
  let server: StatusServer | undefined;
  try {
    if (o.serve ?? true) {
      const addr = parseListenAddress(settings.listenAddress);
      if (!addr) throw new Error(`invalid listen address ${settings.listenAddress}`);
      server = await serveStatus(addr.host, addr.port, metrics.registry, () => agent.status());
    }
    await agent.start();
  } catch (e) {
    await server?.close();
    systemd.close();
    throw e;
  }
  let stopped = false;
  return {
    agent,
    metrics,
    address: server?.address,
    async stop() {
      if (stopped) return;
      stopped = true;
      await agent.stop();
      await server?.close();
      systemd.close();
    },
  };
}
