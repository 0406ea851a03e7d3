/**
 * Wait until containerd's CRI really answers: the socket exists, Version
 * answers, Status says RuntimeReady, with jittered backoff under one deadline
 * (src/host/cri.ts `waitForCriReady`). Logs one line per change of cause, the
 * repeats at debug. Never starts or restarts containerd: that is the
 * ensure-unit step before it; here only time passes.
 */
import type { Backoff } from "../../util/retry.ts";
import type { CriReady, CriWaitInfo, WaitForCriReadyOptions } from "../../host/cri.ts";
import { toBerthError } from "../../util/errors.ts";
import type { RunStep } from "./context.ts";

export interface CriReadyOptions {
  needs: readonly string[];
  deadlineMs: number;
  backoff: Backoff;
  /** Default: src/host/cri.ts waitForCriReady. */
  waitFor?: (socketPath: string, opts: WaitForCriReadyOptions) => Promise<CriReady>;
}

export function criReadyStep(o: CriReadyOptions): RunStep {
  return {
    name: "cri",
    needs: o.needs,
    async run(ctx) {
      const startedMs = ctx.now();
      const waitFor = o.waitFor ?? (await import("../../host/cri.ts")).waitForCriReady;
      let lastKey = "";
      let waits = 0;
      const onWait = (i: CriWaitInfo): void => {
        waits++;
        const key = `${i.phase}:${i.cause}`;
        const fields = { event: "cri.waiting", component: "cri", ...i };
        if (key !== lastKey) ctx.log.info(fields);
        else ctx.log.debug(fields);
        lastKey = key;
      };
      let ready: CriReady;
      try {
        ready = await waitFor(ctx.socketPath, { deadlineMs: o.deadlineMs, backoff: { ...o.backoff }, onWait, client: await ctx.cri() });
      } catch (e) {
        return {
          outcome: "failed",
          error: toBerthError(e, "run.cri-not-ready", "containerd's CRI did not become ready", "check `journalctl -u containerd`"),
        };
      }
      const { attempts, version, timeline } = ready;
      ctx.status.cri = {
        readyMs: ctx.now() - startedMs,
        attempts,
        runtimeName: version.runtimeName,
        runtimeVersion: version.runtimeVersion,
      };
      return {
        outcome: "ok",
        action: "ready",
        cause: waits ? `ready after ${waits} wait(s)` : "ready at first try",
        event: "cri.ready",
        fields: { attempts, socketMs: timeline.socketMs, versionMs: timeline.versionMs, runtimeVersion: version.runtimeVersion },
      };
    },
  };
}
