/**
 * Prometheus metrics of the agent, on its own prom-client Registry (never the
 * global one, so two agents in one test process do not collide), and the
 * small local HTTP server that serves them with `/status` (JSON) and
 * `/healthz`.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import { HEALTH_STATES, type ComponentName, type Health } from "./decide.ts";
import { errorMessage } from "../util/errors.ts";

export interface AgentMetrics {
  readonly registry: Registry;
  probe(component: ComponentName, ok: boolean, latencyMs: number): void;
  restart(component: ComponentName, result: string): void;
  budget(component: ComponentName, left: number): void;
  state(component: ComponentName, health: Health): void;
}

export function createMetrics(opts: { processMetrics?: boolean } = {}): AgentMetrics {
  const registry = new Registry();
  const probes = new Counter({
    name: "berth_agent_probes_total",
    help: "Health probes by component and result (ok, fail).",
    labelNames: ["component", "result"] as const,
    registers: [registry],
  });
  const latency = new Histogram({
    name: "berth_agent_probe_duration_seconds",
    help: "Duration of health probes, including failed ones (a hung process shows as the probe deadline).",
    labelNames: ["component"] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10],
    registers: [registry],
  });
  const restarts = new Counter({
    name: "berth_agent_restarts_total",
    help: "RestartUnit jobs issued by the agent, by component and job result.",
    labelNames: ["component", "result"] as const,
    registers: [registry],
  });
  const budget = new Gauge({
    name: "berth_agent_restart_budget_remaining",
    help: "Restarts the agent may still do in the current budget window.",
    labelNames: ["component"] as const,
    registers: [registry],
  });
  const state = new Gauge({
    name: "berth_agent_component_state",
    help: "1 for the component's current state, 0 for the others.",
    labelNames: ["component", "state"] as const,
    registers: [registry],
  });
  if (opts.processMetrics ?? true) collectDefaultMetrics({ register: registry, prefix: "berth_agent_" });
  return {
    registry,
    probe(c, ok, ms) {
      probes.inc({ component: c, result: ok ? "ok" : "fail" });
      latency.observe({ component: c }, ms / 1000);
    },
    restart(c, result) {
      restarts.inc({ component: c, result });
    },
    budget(c, left) {
      budget.set({ component: c }, left);
    },
    state(c, h) {
      for (const s of HEALTH_STATES) state.set({ component: c, state: s }, s === h ? 1 : 0);
    },
  };
}

export interface StatusServer {
  /** The bound address (`host:port`), with the OS-chosen port when 0 was asked. */
  readonly address: string;
  close(): Promise<void>;
}

/** Serve `/metrics`, `/status` and `/healthz` on host:port. */
export async function serveStatus(host: string, port: number, registry: Registry, status: () => unknown): Promise<StatusServer> {
  const server = http.createServer((req, res) => {
    const url = (req.url ?? "/").split("?")[0];
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { allow: "GET, HEAD" }).end();
      return;
    }
    if (url === "/metrics") {
      registry.metrics().then(
        (text) => res.writeHead(200, { "content-type": registry.contentType }).end(text),
        (e: unknown) => res.writeHead(500, { "content-type": "text/plain" }).end(`metrics: ${errorMessage(e)}\n`),
      );
    } else if (url === "/status") {
      res.writeHead(200, { "content-type": "application/json" }).end(`${JSON.stringify(status(), null, 2)}\n`);
    } else if (url === "/healthz") {
      res.writeHead(200, { "content-type": "text/plain" }).end("ok");
    } else {
      res.writeHead(404, { "content-type": "text/plain" }).end("not found: try /metrics, /status, /healthz\n");
    }
  });
  // A scrape must never keep the agent from exiting.
  server.keepAliveTimeout = 2_000;
  server.headersTimeout = 5_000;
  server.requestTimeout = 10_000;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const a = server.address() as AddressInfo;
  return {
    address: a.family === "IPv6" ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
