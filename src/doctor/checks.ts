/**
 * The doctor's checks, their dependencies and deadlines, and one run of them.
 *
 * Deadlines: every check has its own; the run as a whole has DOCTOR_BUDGET_MS,
 * which clips the deadline of a check that starts late. The longest chain
 * (config → apiserver → registration) fits the budget, so the whole run stays
 * under 10 s however broken the node is; independent checks overlap.
 */
import type { DoctorDeps, DoctorState } from "./deps.ts";
import { runChecks } from "./run.ts";
import type { CheckSpec, DoctorReport } from "./types.ts";
import { configCheck } from "./checks/config.ts";
import { ec2Check, imdsCheck } from "./checks/aws.ts";
import { clockCheck } from "./checks/clock.ts";
import { hostCheck } from "./checks/host.ts";
import { filesCheck } from "./checks/files.ts";
import { containerdCheck } from "./checks/containerd.ts";
import { apiserverCheck } from "./checks/apiserver.ts";
import { kubeletCheck } from "./checks/kubelet.ts";
import { nodeNameOf, registrationCheck } from "./checks/registration.ts";

/** Each check's own deadline, ms. */
export const DOCTOR_DEADLINES = {
  config: 3000,
  imds: 2500,
  ec2: 3000,
  clock: 2000,
  host: 2000,
  files: 3000,
  containerd: 3000,
  apiserver: 3500,
  kubelet: 3000,
  registration: 3000,
} as const;

/** The whole run's budget, ms: under the 10 s the doctor promises, with room to start and print. */
export const DOCTOR_BUDGET_MS = 9500;

/** Every check, in the report's order (CHECK_IDS). */
export function doctorChecks(deps: DoctorDeps, state: DoctorState): CheckSpec[] {
  const d = DOCTOR_DEADLINES;
  return [
    configCheck(deps, state, d.config),
    imdsCheck(deps, state, d.imds),
    ec2Check(deps, state, d.ec2),
    clockCheck(deps, d.clock),
    hostCheck(deps, state, d.host),
    filesCheck(deps, state, d.files),
    containerdCheck(deps, d.containerd),
    apiserverCheck(state, d.apiserver),
    kubeletCheck(deps, state, d.kubelet),
    registrationCheck(deps, state, d.registration),
  ];
}

/** Run every check against `deps`; the report names the node as far as the checks found out. */
export async function runDoctor(deps: DoctorDeps, opts: { budgetMs?: number } = {}): Promise<DoctorReport> {
  const state: DoctorState = {};
  const checks = await runChecks(doctorChecks(deps, state), { totalMs: opts.budgetMs ?? DOCTOR_BUDGET_MS });
  const name = state.nodeName ?? (await nodeNameOf(deps, state).catch(() => undefined));
  return { node: { name: name ?? null, instanceId: state.identity?.instanceId ?? null }, checks };
}
