/**
 * `berth doctor`'s vocabulary: the stable check ids, the four statuses, what
 * one check reports, and what the runner (src/doctor/run.ts) hands a check.
 * The JSON output (`berth doctor -o json`) is exactly these shapes; see
 * docs/doctor.md for the schema.
 */

/** Every check, in the order they are reported. Stable: tools key on these ids. */
export const CHECK_IDS = ["config", "imds", "ec2", "clock", "host", "files", "containerd", "apiserver", "kubelet", "registration"] as const;

export type CheckId = (typeof CHECK_IDS)[number];

/** `skip`: a check it needs failed (or was itself skipped), so it did not run. */
export type CheckStatus = "pass" | "warn" | "fail" | "skip";

/** What a check found: one line of finding, one line of what to do, and optional detail lines (a diff, a log line). */
export interface CheckOutcome {
  status: Exclude<CheckStatus, "skip">;
  finding: string;
  hint: string;
  /** Extra lines for a person (a short unified diff, the quoted log line); never needed to act on the hint. */
  detail?: string[];
}

/** One check's entry in the report (`checks[]` in the JSON output). */
export interface CheckResult {
  id: CheckId;
  status: CheckStatus;
  finding: string;
  hint: string;
  /** Wall time the check ran, ms (0 when skipped). */
  durationMs: number;
  detail?: string[];
}

/** What the runner gives a check while it runs. */
export interface CheckContext {
  /** The check's deadline, in the runner's clock (`Date.now()` unless injected). */
  readonly deadline: number;
  /** ms left before the deadline, at least 1: bound every call made from the check with it. */
  remaining(): number;
  /** Aborted when the deadline passes; the check's late answer is ignored. */
  readonly signal: AbortSignal;
  /**
   * Name the step under way. A check its deadline cuts off is reported as
   * "<label>: no answer within N ms" with `timeoutHint` (a black-holed
   * endpoint costs its deadline, and the finding still says which one).
   */
  step(label: string, timeoutHint?: string): void;
  /** The result of a check this one needs or runs after. */
  result(id: CheckId): CheckResult | undefined;
}

export interface CheckSpec {
  id: CheckId;
  /** Checks whose failure makes this one pointless: it is skipped when any of them fails or is skipped. */
  needs: readonly CheckId[];
  /** Checks this one waits for and may use, but runs without. */
  after?: readonly CheckId[];
  /** This check's own deadline, ms (the run's overall budget can shorten it). */
  deadlineMs: number;
  run(ctx: CheckContext): Promise<CheckOutcome>;
}

/** The node the report is about, as far as the checks could tell. */
export interface DoctorNode {
  /** The Node object's name (kubelet's --hostname-override, else from EC2 / IMDS); null when unknown. */
  name: string | null;
  instanceId: string | null;
}

/** The whole report: `{"node": …, "checks": […]}`. */
export interface DoctorReport {
  node: DoctorNode;
  checks: CheckResult[];
}
