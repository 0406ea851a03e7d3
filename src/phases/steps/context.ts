/**
 * What every step of the run phase is handed: the node (root, systemd, CRI),
 * the logger and clock, what the config phase wrote, and the status document
 * in which each step fills its own section. Built once by src/phases/run.ts;
 * it holds no decisions (the steps make those).
 */
import type { CriClient } from "../../host/cri.ts";
import type { HostRoot } from "../../host/root.ts";
import type { RunStatus } from "../../host/run-status.ts";
import type { Systemd } from "../../host/systemd.ts";
import type { Logger } from "../../util/log.ts";
import type { PhaseStep } from "./step.ts";

export interface RunStepContext {
  root: HostRoot;
  sd: Systemd;
  log: Logger;
  now: () => number;
  /** Host paths the config phase of this process wrote (empty with `--skip config`). */
  written: readonly string[];
  /** The run status document being built; written by the run phase, never by a step. */
  status: RunStatus;
  /** containerd's CRI socket as a real path (under the root), from its config.toml. */
  socketPath: string;
  /** The CRI client on that socket, connected on first use; the run phase closes it. */
  cri(): Promise<CriClient>;
  /** Units handed off to systemd (enqueued, never awaited). */
  enqueued: string[];
}

export type RunStep = PhaseStep<RunStepContext>;
