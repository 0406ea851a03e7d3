/**
 * Every systemd unit berth owns (the phases, the agent, kubelet, the
 * grouping targets, tasks, the one reboot), rendered like any other file:
 * what starts at boot is a `Wants=` drop-in on multi-user.target, never
 * `systemctl enable`. Pure. kubelet must never `Requires=`/`BindsTo=`
 * containerd. The boot graph and why: docs/internals.md ("The boot units").
 */

import type { BerthSpec, Task } from "../api/types.ts";
import type { PlannedFile } from "../plan/types.ts";
import { fail, ok } from "../util/result.ts";
import type { Result } from "../util/result.ts";
import { KUBELET_ARGS_VARIABLE } from "./kubelet-env.ts";
import { KUBELET_BINARY, KUBELET_ENVIRONMENT_PATH, REBOOT_MARKER, TASK_SCRIPT_DIR, UNIT_DIR, UNITS } from "../util/node-layout.ts";
import { taskErrors } from "../api/rules.ts";

export const UNIT_HEADER = "# Written by berth; changes are overwritten.";

function taskUnitName(name: string): string {
  return `berth-task-${name}.service`;
}

function taskScriptPath(name: string): string {
  return `${TASK_SCRIPT_DIR}/${name}.sh`;
}

export interface UnitOptions {
  /** Absolute path of the berth executable, e.g. `/usr/bin/berth`. */
  berthPath: string;
  /** Extra arguments for both `berth init` phases (e.g. config sources); appended after `--skip ...`. */
  initArgs?: string[];
}

export type Section = [name: string, lines: string[]];

/** A unit file: header comment, sections separated by blank lines. */
export function unit(sections: Section[]): string {
  const body = sections
    .filter(([, lines]) => lines.length > 0)
    .map(([name, lines]) => `[${name}]\n${lines.join("\n")}\n`)
    .join("\n");
  return `${UNIT_HEADER}\n${body}`;
}

/**
 * One argument of an Exec line: systemd expands `%` specifiers and `$VAR`
 * in command lines, so both are doubled; anything with whitespace, quotes or
 * backslashes is double-quoted with C escapes.
 */
export function execArg(arg: string): string {
  const escaped = arg.replace(/%/g, "%%").replace(/\$/g, "$$$$");
  if (escaped !== "" && !/[\s"'\\;]/.test(escaped)) return escaped;
  return `"${escaped.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n").replace(/\t/g, "\\t")}"`;
}

function execLine(args: string[]): string {
  return args.map(execArg).join(" ");
}

function file(path: string, content: string, mode = 0o644): PlannedFile {
  return { path, content, mode, component: "units" };
}

function kubeletUnit(): string {
  // Every kubelet flag (--config, --kubeconfig, --config-dir, ...) and the
  // drop-in dir's alpha switch live in the environment file the kubelet
  // renderer writes, so the flags have exactly one source of truth.
  const args = [KUBELET_BINARY];
  const service: string[] = ["Slice=runtime.slice", `EnvironmentFile=${KUBELET_ENVIRONMENT_PATH}`];
  service.push(
    "ExecStartPre=-/sbin/iptables -P FORWARD ACCEPT -w 5",
    // `$VAR` unbraced: systemd splits the flags on whitespace into separate arguments.
    `ExecStart=${execLine(args)} $${KUBELET_ARGS_VARIABLE}`,
    "Restart=always",
    "RestartSec=5",
    "KillMode=process",
    "CPUAccounting=true",
    "MemoryAccounting=true",
  );
  return unit([
    [
      "Unit",
      [
        "Description=Kubernetes Kubelet",
        "Documentation=https://kubernetes.io/docs/reference/command-line-tools-reference/kubelet/",
        `Wants=${UNITS.containerd}`,
        // Ordering only: at boot, let the config phase write the kubelet's files first.
        `After=${UNITS.containerd} ${UNITS.config}`,
        "StartLimitIntervalSec=0",
      ],
    ],
    ["Service", service],
    ["Install", ["WantedBy=multi-user.target"]],
  ]);
}

/** berth's own phase units: the config phase, the run phase, the agent. */
function phaseUnits(berthBin: string, initArgs: string[]): Array<[name: string, content: string]> {
  const config = unit([
    [
      "Unit",
      [
        "Description=berth config phase: write kubelet and containerd configuration",
        // Before cloud-init so user-data scripts find a configured node.
        "Before=cloud-init.service",
        "After=systemd-networkd-wait-online.service",
      ],
    ],
    [
      "Service",
      [
        "Type=oneshot",
        "RemainAfterExit=yes",
        `ExecStart=${execLine([berthBin, "init", "--skip", "run", ...initArgs])}`,
        "StandardError=journal+console",
      ],
    ],
    ["Install", ["WantedBy=multi-user.target"]],
  ]);
  const run = unit([
    [
      "Unit",
      [
        "Description=berth run phase: start containerd, wait for CRI, sandbox image, start kubelet",
        // After cloud-final so changes made by user-data scripts are picked up.
        `After=${UNITS.config} cloud-final.service ${UNITS.containerd}`,
        `Wants=cloud-final.service ${UNITS.containerd}`,
        `Requires=${UNITS.config}`,
      ],
    ],
    [
      "Service",
      [
        "Type=oneshot",
        "RemainAfterExit=yes",
        `ExecStart=${execLine([berthBin, "init", "--skip", "config", ...initArgs])}`,
        // berth bounds each step itself; this is the backstop for a hung run.
        "TimeoutStartSec=30min",
        "StandardError=journal+console",
      ],
    ],
    ["Install", [`WantedBy=${UNITS.target}`]],
  ]);
  const agent = unit([
    [
      "Unit",
      ["Description=berth health agent: probes and repairs containerd and kubelet", `After=${UNITS.run}`, "StartLimitIntervalSec=0"],
    ],
    [
      "Service",
      [
        "Type=exec",
        // The agent reads spec.agent from the same sources as the init units.
        `ExecStart=${execLine([berthBin, "agent", ...(initArgs.length > 0 ? initArgs : ["-c", "imds://user-data"])])}`,
        // Interpreter only: the agent idles between probes, and V8 without
        // its JIT costs ~7 MB less RSS (bench/agent-faults.ts). V8 prints
        // one harmless warning about wasm at start.
        "Environment=NODE_OPTIONS=--jitless",
        "Restart=always",
        "RestartSec=5",
        // Small and bounded: the agent must never compete with pods.
        "MemoryHigh=96M",
        "MemoryMax=128M",
        "TasksMax=64",
        "CPUWeight=20",
      ],
    ],
    ["Install", [`WantedBy=${UNITS.target}`]],
  ]);
  return [
    [UNITS.config, config],
    [UNITS.run, run],
    [UNITS.agent, agent],
  ];
}

/** The runtime slice and containerd's drop-in (containerd itself is the distribution's unit). */
function runtimeFiles(): PlannedFile[] {
  const slice = unit([
    [
      "Unit",
      // The kubelet's --runtime-cgroups points here; containerd and kubelet run in it.
      ["Description=Kubernetes and container runtime slice", "Documentation=man:systemd.special(7)", "Before=slices.target"],
    ],
  ]);
  const containerdDropIn = unit([
    // Ordering only: at boot containerd starts once the config phase has written its
    // config. Started alongside it, containerd could read the distribution's config.toml
    // while berth-config replaces it and run with the old one (issue 7).
    ["Unit", [`After=${UNITS.config}`, "StartLimitIntervalSec=0"]],
    ["Service", ["Slice=runtime.slice", "Restart=always", "RestartSec=5"]],
  ]);
  return [file(`${UNIT_DIR}/${UNITS.runtimeSlice}`, slice), file(`${UNIT_DIR}/${UNITS.containerd}.d/10-berth.conf`, containerdDropIn)];
}

/** The two grouping targets and multi-user.target's drop-in that wants them (see the file comment). */
function groupingFiles(berth: BerthSpec, taskUnits: string[]): PlannedFile[] {
  const targetWants = [UNITS.run, UNITS.agent, ...(berth.rebootAfterBootstrap ? [UNITS.rebootOnce] : [])];
  const target = unit([
    [
      "Unit",
      [
        "Description=berth node bootstrap and health agent",
        // No implicit After= on what it wants (see the file comment).
        "DefaultDependencies=no",
        `Wants=${targetWants.join(" ")}`,
      ],
    ],
  ]);
  const tasks = unit([
    [
      "Unit",
      ["Description=berth post-bootstrap tasks", "DefaultDependencies=no", ...(taskUnits.length ? [`Wants=${taskUnits.join(" ")}`] : [])],
    ],
    ["Install", ["WantedBy=multi-user.target"]],
  ]);
  const wants = unit([["Unit", [`Wants=${UNITS.config} ${UNITS.target} ${UNITS.tasks}`]]]);
  return [
    file(`${UNIT_DIR}/${UNITS.target}`, target),
    file(`${UNIT_DIR}/${UNITS.tasks}`, tasks),
    file(`${UNIT_DIR}/multi-user.target.d/10-berth.conf`, wants),
  ];
}

/** One oneshot unit per task, each after the previous one, and the scripts they run. */
function taskFiles(tasks: readonly Task[], berthBin: string): PlannedFile[] {
  const files: PlannedFile[] = [];
  let prev: string | undefined;
  for (const t of tasks) {
    let exec: string;
    if (t.pullImages !== undefined) {
      exec = execLine([berthBin, "task", "pull-images", ...t.pullImages]);
    } else {
      const script = t.script ?? "";
      // A script without an interpreter line runs under /bin/sh.
      const body = script.startsWith("#!") ? script : `#!/bin/sh\n${script}`;
      files.push(file(taskScriptPath(t.name), body.endsWith("\n") ? body : `${body}\n`, 0o755));
      exec = execLine([taskScriptPath(t.name)]);
    }
    const content = unit([
      [
        "Unit",
        [
          `Description=berth post-bootstrap task ${t.name}`,
          // Never ordered before the kubelet, so a task can never hold it back.
          `After=${[UNITS.run, UNITS.containerd, UNITS.kubelet, ...(prev ? [prev] : [])].join(" ")}`,
          `Wants=${UNITS.containerd}`,
        ],
      ],
      ["Service", ["Type=oneshot", "RemainAfterExit=yes", `ExecStart=${exec}`, "TimeoutStartSec=30min"]],
      ["Install", [`WantedBy=${UNITS.tasks}`]],
    ]);
    files.push(file(`${UNIT_DIR}/${taskUnitName(t.name)}`, content));
    prev = taskUnitName(t.name);
  }
  return files;
}

/** berth-reboot-once.service: one reboot after the first bootstrap that succeeded (and every task). */
function rebootOnceUnit(taskUnits: string[]): string {
  return unit([
    [
      "Unit",
      [
        "Description=berth: reboot once after the first successful bootstrap",
        `ConditionPathExists=!${REBOOT_MARKER}`,
        `After=${[UNITS.run, ...taskUnits].join(" ")}`,
        // Only after a bootstrap that succeeded: a failed run phase fails this job too.
        `Requires=${UNITS.run}`,
      ],
    ],
    [
      "Service",
      [
        "Type=oneshot",
        `ExecStart=/bin/mkdir -p ${REBOOT_MARKER.slice(0, REBOOT_MARKER.lastIndexOf("/"))}`,
        // The marker goes down before the reboot is asked for, so a crash in between cannot loop.
        `ExecStart=/bin/touch ${REBOOT_MARKER}`,
        "ExecStart=/bin/systemctl --no-block reboot",
      ],
    ],
    ["Install", [`WantedBy=${UNITS.target}`]],
  ]);
}

/**
 * All of berth's units and drop-ins, plus task scripts. Deterministic: files
 * come out sorted by path.
 */
export function renderUnits(berth: BerthSpec, opts: UnitOptions): Result<PlannedFile[]> {
  const tasks = berth.tasks ?? [];
  const errors = taskErrors(tasks);
  if (!opts.berthPath.startsWith("/")) {
    errors.push({
      code: "units.berth-path",
      message: `the berth executable path "${opts.berthPath}" is not absolute`,
      hint: "pass the absolute path of the berth binary (systemd needs it in ExecStart=)",
    });
  }
  if (errors.length > 0) return fail(...errors);

  const taskUnits = tasks.map((t) => taskUnitName(t.name));
  const files: PlannedFile[] = [
    ...phaseUnits(opts.berthPath, opts.initArgs ?? []).map(([name, content]) => file(`${UNIT_DIR}/${name}`, content)),
    file(`${UNIT_DIR}/${UNITS.kubelet}`, kubeletUnit()),
    ...runtimeFiles(),
    ...groupingFiles(berth, taskUnits),
    ...taskFiles(tasks, opts.berthPath),
    ...(berth.rebootAfterBootstrap ? [file(`${UNIT_DIR}/${UNITS.rebootOnce}`, rebootOnceUnit(taskUnits))] : []),
  ];
  files.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return ok(files);
}
