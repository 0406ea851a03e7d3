/**
 * `containerd`: the unit runs, CRI answers on the socket containerd's config
 * names and reports RuntimeReady (RuntimeService/Status), and the sandbox
 * image the config names is present (ImageService/ImageStatus) — the same
 * calls the run phase makes (src/host/cri.ts). NetworkReady=false alone is a
 * warning: the cluster's CNI writes its config only after the node joins.
 */
import { stat } from "node:fs/promises";
import { CriError, type CriImage, type CriStatus } from "../../host/cri.ts";
import { readTextIfPresent } from "../../host/read.ts";
import { containerdRuntimeSettings } from "../../phases/steps/containerd-settings.ts";
import { CONTAINERD_CONFIG_PATH, UNITS } from "../../util/node-layout.ts";
import { errorMessage } from "../../util/errors.ts";
import type { DoctorDeps } from "../deps.ts";
import { excerpt, failed, passed, warned } from "../outcome.ts";
import type { CheckSpec } from "../types.ts";
import { readUnit, unitProblem, unitSummary } from "./unit-state.ts";

const LOOK = "see why: systemctl status containerd; journalctl -u containerd -n 50";

type CriAnswer = { status: CriStatus; image: CriImage | undefined } | { error: unknown };

/** CRI Status, then ImageStatus of the sandbox image; the client is closed afterwards. */
async function askCri(deps: DoctorDeps, socket: string, image: string, budget: () => number): Promise<CriAnswer> {
  const cri = deps.cri(socket, budget());
  try {
    const status = await cri.status({ timeoutMs: budget() });
    return { status, image: status.runtimeReady ? await cri.imageStatus(image, { timeoutMs: budget() }) : undefined };
  } catch (error) {
    return { error };
  } finally {
    cri.close();
  }
}

export function containerdCheck(deps: DoctorDeps, deadlineMs: number): CheckSpec {
  return {
    id: "containerd",
    needs: [],
    deadlineMs,
    async run(ctx) {
      const settings = containerdRuntimeSettings(await readTextIfPresent(deps.root.path(CONTAINERD_CONFIG_PATH)));
      const socket = deps.root.path(settings.socket);
      const budget = () => Math.max(1, ctx.remaining() - 100);
      ctx.step(`systemd (state of ${UNITS.containerd}) and CRI on ${settings.socket}`, `systemd or containerd is not answering: ${LOOK}`);
      // Asked at once: a hung bus must not eat CRI's share of the deadline, nor the reverse.
      const sock = stat(socket).then(
        (st) => (st.isSocket() ? "socket" : "not-a-socket"),
        () => "missing",
      );
      const [unit, kind, answer] = await Promise.all([
        readUnit(deps, UNITS.containerd),
        sock,
        sock.then((k) => (k === "socket" ? askCri(deps, socket, settings.sandboxImage, budget) : undefined)),
      ]);
      if ("state" in unit) {
        const problem = unitProblem(UNITS.containerd, unit.state);
        if (problem) {
          const hint =
            unit.state.loadState === "not-found"
              ? "install containerd (the node image must carry it), then berth init"
              : `start it: systemctl start containerd (berth-agent restarts it after a crash); ${LOOK}`;
          return failed(problem, hint);
        }
      }
      const unitText = "state" in unit ? `${UNITS.containerd} ${unitSummary(unit.state)}` : `unit state unknown (${unit.error})`;
      if (kind === "not-a-socket")
        return failed(`${settings.socket} is not a socket`, `${LOOK}; containerd's [grpc] address must be a socket path`);
      if (!answer)
        return failed(
          `containerd's socket ${settings.socket} does not exist; ${unitText}`,
          `containerd is not running or listens elsewhere: ${LOOK}`,
        );
      if ("error" in answer) {
        const e = answer.error;
        return failed(`${excerpt(errorMessage(e), 200)}; ${unitText}`, e instanceof CriError ? (e.errors[0]?.hint ?? LOOK) : LOOK);
      }
      const { status, image } = answer;
      if (!status.runtimeReady) {
        const c = status.conditions.find((x) => x.type === "RuntimeReady");
        const why = c ? ` (${c.reason}${c.message ? `: ${excerpt(c.message, 100)}` : ""})` : "";
        return failed(`containerd answers but CRI is not ready: RuntimeReady=false${why}`, LOOK);
      }
      if (!image) {
        return failed(
          `the sandbox image ${settings.sandboxImage} is not in containerd: no pod can start`,
          "berth's run phase pulls it (berth init --skip config); check that the registry is reachable (containerd's hosts.toml, the " +
            "proxy) and the image exists",
        );
      }
      const summary = `${unitText}; CRI ready on ${settings.socket}; sandbox image ${settings.sandboxImage} present`;
      if (!status.networkReady) {
        const n = status.conditions.find((x) => x.type === "NetworkReady");
        return warned(
          `${summary}; NetworkReady=false${n?.reason ? ` (${n.reason})` : ""}`,
          "expected until the cluster's CNI (aws-node) writes its config to /etc/cni/net.d after the node registers; if it stays, " +
            "check the CNI pods on this node",
        );
      }
      return passed(summary);
    },
  };
}
