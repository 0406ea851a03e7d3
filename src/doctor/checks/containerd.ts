/**
 * `containerd`: the unit runs, CRI answers on the socket containerd's config
 * names and reports RuntimeReady (RuntimeService/Status), and the sandbox
 * image the config names is present (ImageService/ImageStatus) — the same
 * calls the run phase makes (src/host/cri.ts). NetworkReady=false alone is a
 * warning: the cluster's CNI writes its config only after the node joins.
 */
import { stat } from "node:fs/promises";
import { CriError } from "../../host/cri.ts";
import { readTextIfPresent } from "../../host/read.ts";
import { containerdRuntimeSettings } from "../../phases/steps/containerd-settings.ts";
import { CONTAINERD_CONFIG_PATH } from "../../render/containerd.ts";
import { UNITS } from "../../util/node-layout.ts";
import { errorMessage } from "../../util/errors.ts";
import type { DoctorDeps } from "../deps.ts";
import { excerpt, failed, passed, warned } from "../outcome.ts";
import type { CheckSpec } from "../types.ts";
import { readUnit, unitProblem, unitSummary } from "./unit-state.ts";

const LOOK = "see why: systemctl status containerd; journalctl -u containerd -n 50";

export function containerdCheck(deps: DoctorDeps, deadlineMs: number): CheckSpec {
  return {
    id: "containerd",
    needs: [],
    deadlineMs,
    async run(ctx) {
      const settings = containerdRuntimeSettings(await readTextIfPresent(deps.root.path(CONTAINERD_CONFIG_PATH)));
      ctx.step(`systemd: state of ${UNITS.containerd}`, "systemd is not answering over D-Bus");
      const unit = await readUnit(deps, UNITS.containerd);
      if ("state" in unit) {
        const problem = unitProblem(UNITS.containerd, unit.state);
        if (problem) {
          const hint = unit.state.loadState === "not-found" ? "install containerd (the node image must carry it), then berth init" : `start it: systemctl start containerd (berth-agent restarts it after a crash); ${LOOK}`;
          return failed(problem, hint);
        }
      }
      const unitText = "state" in unit ? `${UNITS.containerd} ${unitSummary(unit.state)}` : `unit state unknown (${unit.error})`;
      const socket = deps.root.path(settings.socket);
      try {
        if (!(await stat(socket)).isSocket()) return failed(`${settings.socket} is not a socket`, `${LOOK}; containerd's [grpc] address must be a socket path`);
      } catch {
        return failed(`containerd's socket ${settings.socket} does not exist; ${unitText}`, `containerd is not running or listens elsewhere: ${LOOK}`);
      }
      const cri = deps.cri(socket, Math.max(1, ctx.remaining() - 100));
      try {
        ctx.step(`CRI RuntimeService/Status on ${settings.socket}`, `containerd accepts connections but does not answer: it may be hung; ${LOOK}`);
        const status = await cri.status({ timeoutMs: Math.max(1, ctx.remaining() - 100) });
        if (!status.runtimeReady) {
          const c = status.conditions.find((x) => x.type === "RuntimeReady");
          return failed(`containerd answers but CRI is not ready: RuntimeReady=false${c ? ` (${c.reason}${c.message ? `: ${excerpt(c.message, 100)}` : ""})` : ""}`, LOOK);
        }
        ctx.step(`CRI ImageService/ImageStatus of ${settings.sandboxImage}`, LOOK);
        const image = await cri.imageStatus(settings.sandboxImage, { timeoutMs: Math.max(1, ctx.remaining() - 100) });
        if (!image) {
          return failed(
            `the sandbox image ${settings.sandboxImage} is not in containerd: no pod can start`,
            "berth's run phase pulls it (berth init --skip config); check that the registry is reachable (containerd's hosts.toml, the proxy) and the image exists",
          );
        }
        const summary = `${unitText}; CRI ready on ${settings.socket}; sandbox image ${settings.sandboxImage} present`;
        if (!status.networkReady) {
          const n = status.conditions.find((x) => x.type === "NetworkReady");
          return warned(
            `${summary}; NetworkReady=false${n?.reason ? ` (${n.reason})` : ""}`,
            "expected until the cluster's CNI (aws-node) writes its config to /etc/cni/net.d after the node registers; if it stays, check the CNI pods on this node",
          );
        }
        return passed(summary);
      } catch (e) {
        const hint = e instanceof CriError ? (e.errors[0]?.hint ?? LOOK) : LOOK;
        return failed(`${excerpt(errorMessage(e), 200)}; ${unitText}`, hint);
      } finally {
        cri.close();
      }
    },
  };
}
