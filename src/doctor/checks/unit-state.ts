/**
 * A systemd unit's state as the containerd and kubelet checks report it:
 * read over D-Bus (src/host/systemd.ts), judged here. Pure but for `readUnit`.
 */
import type { UnitState } from "../../host/systemd.ts";
import { errorMessage } from "../../util/errors.ts";
import type { DoctorDeps } from "../deps.ts";
import { excerpt } from "../outcome.ts";

/** The unit's state, or why it could not be read (D-Bus unreachable, not root). */
export async function readUnit(deps: DoctorDeps, unit: string): Promise<{ state: UnitState } | { error: string }> {
  try {
    const sd = await deps.systemd();
    return { state: await sd.unitState(unit) };
  } catch (e) {
    return { error: excerpt(errorMessage(e), 160) };
  }
}

/** `active (running)`, `failed (exit-code), 4 restarts`. */
export function unitSummary(s: UnitState): string {
  const result = s.result && s.result !== "success" ? `, result ${s.result}` : "";
  const restarts = s.nRestarts > 0 ? `, ${s.nRestarts} restart(s) by systemd` : "";
  return `${s.activeState} (${s.subState}${result})${restarts}`;
}

/** Why `unit` in state `s` stands in the way, or undefined when it is running. */
export function unitProblem(unit: string, s: UnitState): string | undefined {
  if (s.loadState === "not-found") return `${unit} is not installed (systemd does not know it)`;
  if (s.loadState === "masked") return `${unit} is masked`;
  if (s.activeState === "active") return undefined;
  if (s.activeState === "activating" && s.subState === "auto-restart")
    return `${unit} keeps exiting and systemd keeps restarting it: ${unitSummary(s)}`;
  if (s.activeState === "activating" || s.activeState === "reloading") return `${unit} is still starting: ${unitSummary(s)}`;
  return `${unit} is not running: ${unitSummary(s)}`;
}
