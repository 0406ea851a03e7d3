/**
 * The run phase's last steps: hand the post-bootstrap tasks
 * (berth-tasks.target) and the one reboot after bootstrap
 * (berth-reboot-once.service) to systemd. Enqueued, never awaited: those units
 * are ordered after berth-run.service, which at boot *is* the run phase, so
 * waiting would deadlock until the deadline. A hand-off that fails never
 * fails the node: the step is optional and only reports it.
 */
import { errorMessage } from "../../util/errors.ts";
import type { RunStep, RunStepContext } from "./context.ts";

export interface HandOffOptions {
  name: "tasks" | "reboot-once";
  unit: string;
  needs: readonly string[];
  /** Why it is handed off, for the log and the status file. */
  cause: string;
  /** Record in the status file what was handed off (before the attempt, so a failure still shows it). */
  record: (status: RunStepContext["status"]) => void;
}

export function handOffStep(o: HandOffOptions): RunStep {
  return {
    name: o.name,
    needs: o.needs,
    optional: true,
    async run(ctx) {
      o.record(ctx.status);
      try {
        await ctx.sd.enqueueStartUnit(o.unit);
      } catch (e) {
        const error = { code: `run.${o.name}-enqueue`, message: `cannot enqueue ${o.unit}: ${errorMessage(e)}`, where: { path: o.unit } };
        return { outcome: "failed", error, event: `${o.name}.enqueue-failed` };
      }
      ctx.enqueued.push(o.unit);
      return { outcome: "changed", action: "enqueued", cause: o.cause, event: `${o.name}.enqueued` };
    },
  };
}
