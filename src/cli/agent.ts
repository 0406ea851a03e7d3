/**
 * `berth agent`: the long-running health agent (run by berth-agent.service).
 * Parses flags, resolves the agent settings, starts src/agent/agent.ts and
 * runs until SIGTERM/SIGINT. Logs are pino JSON lines on stdout (journald).
 */
import { HostRoot } from "../host/root.ts";
import type { AgentSettings, MergedConfig } from "../api/types.ts";
import type { Result } from "../util/result.ts";
import { errorMessage, toBerthErrors } from "../util/errors.ts";
import { createLogger, LOG_LEVELS } from "../util/log.ts";
import { CONFIG_SOURCE_OPTION, EXIT_FAIL, EXIT_OK, parseCommand, printErrors, usageError } from "./args.ts";

const AGENT_HELP = `Usage: berth agent [options]

Probe containerd and kubelet, repair them with RestartUnit (with backoff and
a restart budget), serve /metrics and /status, log one JSON line per event.

Options:
  -c, --config-source URL    read spec.agent of the BerthConfig from these
                             sources (repeatable; default: none, use defaults)
      --config-cache PATH    read the config from berth's config cache
      --listen HOST:PORT     serve /metrics and /status here (overrides listenAddress)
      --kubelet-healthz URL  kubelet's health URL (overrides kubeletHealthzUrl)
      --root DIR             resolve the containerd socket and the run status file under DIR
      --bus-address ADDR     D-Bus address of the system bus (default: the host's)
      --containerd-socket P  containerd's socket (default /run/containerd/containerd.sock)
      --run-status PATH      the run phase's status file (default /run/berth/status.json)
      --assume-bootstrapped  repair without waiting for the run phase's status file
      --log-level LEVEL      info (default), warn, error, debug
  -h, --help                 this help

Settings (spec.agent) and their defaults: docs/agent.md.
`;

const AGENT_OPTIONS = {
  ...CONFIG_SOURCE_OPTION,
  "config-cache": { type: "string" },
  listen: { type: "string" },
  "kubelet-healthz": { type: "string" },
  root: { type: "string" },
  "bus-address": { type: "string" },
  "containerd-socket": { type: "string" },
  "run-status": { type: "string" },
  "assume-bootstrapped": { type: "boolean" },
  "log-level": { type: "string" },
  help: { type: "boolean", short: "h" },
} as const;

async function loadAgentSettings(
  sources: string[],
  cachePath: string | undefined,
  root: HostRoot,
): Promise<Result<AgentSettings | undefined>> {
  if (sources.length === 0 && cachePath === undefined) return { ok: true, value: undefined };
  const [{ resolveConfig }, { lazyImds }] = await Promise.all([import("../sources/cache.ts"), import("../phases/config.ts")]);
  try {
    const r = await resolveConfig(sources, cachePath, { root, imds: lazyImds(process.env) });
    if (!r.ok) return r;
    const merged: MergedConfig = r.value.config;
    return { ok: true, value: merged.berth.agent };
  } catch (e) {
    return { ok: false, errors: toBerthErrors(e, "config.resolve", "could not load the configuration") };
  }
}

export async function agentCommand(argv: string[]): Promise<number> {
  const p = parseCommand(argv, AGENT_OPTIONS, "agent", AGENT_HELP);
  if (typeof p === "number") return p;
  const v = p.values;
  const level = v["log-level"] ?? "info";
  if (!LOG_LEVELS.some((l) => l === level)) return usageError(`unknown log level '${level}' (${LOG_LEVELS.join(", ")})`, "agent");
  const root = new HostRoot(v.root ?? "/");

  const { resolveAgentSettings } = await import("../api/agent-settings.ts");
  const loaded = await loadAgentSettings(v["config-source"] ?? [], v["config-cache"], root);
  // A config that says something wrong is an error; an unreadable source is
  // not: a node with a broken IMDS still deserves a health agent (defaults).
  const bad = loaded.ok
    ? []
    : loaded.errors.filter((e) => e.code.startsWith("config.") && e.code !== "config.none" && e.code !== "config.resolve");
  if (bad.length) return printErrors(bad);
  const over: AgentSettings = { ...(loaded.ok ? loaded.value : {}) };
  if (v.listen !== undefined) over.listenAddress = v.listen;
  if (v["kubelet-healthz"] !== undefined) over.kubeletHealthzUrl = v["kubelet-healthz"];
  const settings = resolveAgentSettings(over);
  if (!settings.ok) return printErrors(settings.errors);

  const log = await createLogger({ app: "berth-agent", level, to: "stdout", sync: false });
  if (!loaded.ok) {
    for (const e of loaded.errors) {
      log.warn(
        { event: "agent.config-unavailable", component: "agent", code: e.code, cause: e.message },
        `using default agent settings: ${e.message}`,
      );
    }
  }

  const { startAgent } = await import("../agent/agent.ts");
  let running;
  try {
    running = await startAgent({
      settings: settings.value,
      root,
      log,
      ...(v["bus-address"] ? { busAddress: v["bus-address"] } : {}),
      ...(v["containerd-socket"] ? { containerdSocket: v["containerd-socket"] } : {}),
      ...(v["run-status"] ? { runStatusPath: v["run-status"] } : {}),
      ...(v["assume-bootstrapped"] ? { bootstrapDone: true } : {}),
    });
  } catch (e) {
    return printErrors(toBerthErrors(e, "agent.start", "the agent could not start", "is the listen address free and is berth root?"));
  }
  log.info(
    { event: "agent.listening", component: "agent", address: running.address ?? null },
    `serving /metrics and /status on ${running.address}`,
  );

  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    const on = (s: NodeJS.Signals) => {
      process.off("SIGTERM", on);
      process.off("SIGINT", on);
      resolve(s);
    };
    process.on("SIGTERM", on);
    process.on("SIGINT", on);
  });
  log.info({ event: "agent.signal", component: "agent", signal }, `${signal}: stopping`);
  try {
    await running.stop();
  } catch (e) {
    log.error({ event: "agent.stop-failed", component: "agent", cause: errorMessage(e) }, "clean stop failed");
    return EXIT_FAIL;
  }
  return EXIT_OK;
}
