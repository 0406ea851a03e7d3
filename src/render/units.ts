/**
 * Every systemd unit berth owns, rendered like any other file (no
 * `systemctl enable`, no symlinks): what starts at boot is declared with a
 * `Wants=` drop-in on multi-user.target.
 *
 * The boot graph:
 *
 *   multi-user.target ─Wants→ berth-config.service, berth.target,
 *                               berth-tasks.target
 *
 * kubelet.service is not pulled in at boot: berth-run starts it, every boot,
 * once containerd's CRI answers and the sandbox image is present — the
 * ordering that removes nodeadm's boot race. (It cannot be ordered
 * After=berth-run instead: berth-run waits for kubelet to be active, so that
 * ordering would deadlock the two start jobs.)
 *   berth.target (no ordering of its own) ─Wants→ berth-run, berth-agent,
 *                               berth-reboot-once
 *   berth-tasks.target (no ordering) ─Wants→ berth-task-<name>.service ...
 *
 * Why the two grouping targets carry DefaultDependencies=no: a target orders
 * itself after everything it wants, and multi-user.target orders itself after
 * everything *it* wants. berth-run must run after cloud-final.service, and on
 * Debian/Ubuntu cloud-final.service is itself ordered after
 * multi-user.target; wanting berth-run straight from multi-user.target (or
 * from a target with default dependencies) would make an ordering cycle that
 * systemd breaks by dropping a job at boot. Grouping targets without default
 * dependencies pull units in without ordering them before multi-user.target.
 *
 * Ordering facts taken from nodeadm's AMI units: the config phase runs before
 * cloud-init.service and after systemd-networkd-wait-online.service (so user
 * data scripts see a configured node); the run phase after cloud-final; the
 * kubelet in runtime.slice with containerd, `ExecStartPre=` iptables, flags
 * from `$NODEADM_KUBELET_ARGS` in /etc/eks/kubelet/environment.
 *
 * Where berth departs from nodeadm on purpose:
 * - kubelet `Restart=always` (nodeadm: on-failure, which leaves a kubelet
 *   that exited 0 down) and `StartLimitIntervalSec=0` (never give up);
 * - the iptables pre-step is prefixed `-` (nodes without CAP_NET_ADMIN);
 * - kubelet only `Wants=`/`After=` containerd, never `Requires=`/`BindsTo=`:
 *   a containerd restart must not take the kubelet down with it;
 * - containerd gets `Restart=always` through a drop-in.
 */

import type { BerthSpec, NodeConfigSpec, Task } from "../api/types.ts";
import type { PlannedFile } from "../plan/types.ts";
import { fail, ok } from "../util/result.ts";
import type { BerthError, Result } from "../util/result.ts";
import { versionAtLeast } from "../util/version.ts";
import { KUBELET_ARGS_VARIABLE, KUBELET_ENVIRONMENT_PATH } from "./kubelet-env.ts";
import { UNITS } from "../util/node-layout.ts";
import { isImageReference, TASK_NAME } from "../api/rules.ts";

export const UNIT_DIR = "/etc/systemd/system";
export const UNIT_HEADER = "# Written by berth; changes are overwritten.";

export const KUBELET_BINARY = "/usr/bin/kubelet";

export const TASK_SCRIPT_DIR = "/etc/berth/tasks";
export const REBOOT_MARKER = "/var/lib/berth/rebooted-once";

export { UNITS };

export function taskUnitName(name: string): string {
  return `berth-task-${name}.service`;
}

export function taskScriptPath(name: string): string {
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

// Task names and image references: validation's rules (api/rules.ts); checked again here as guards.

function validateTasks(tasks: Task[]): BerthError[] {
  const errors: BerthError[] = [];
  const seen = new Set<string>();
  tasks.forEach((t, i) => {
    const at = `berth.tasks[${i}]`;
    if (!TASK_NAME.test(t.name)) {
      errors.push({
        code: "config.task-name",
        message: `task name ${JSON.stringify(t.name)} cannot name a unit`,
        where: { path: `${at}.name` },
        hint: "use lower-case letters, digits and '-', starting and ending with a letter or digit (at most 63 characters)",
      });
    } else if (seen.has(t.name)) {
      errors.push({
        code: "config.task-duplicate",
        message: `task name "${t.name}" is used twice`,
        where: { path: `${at}.name` },
        hint: "give every task its own name",
      });
    }
    seen.add(t.name);
    if (t.pullImages !== undefined) {
      if (t.pullImages.length === 0) {
        errors.push({
          code: "config.task-empty",
          message: `task "${t.name}" has an empty pullImages list`,
          where: { path: `${at}.pullImages` },
          hint: "list at least one image, or remove the task",
        });
      }
      t.pullImages.forEach((img, j) => {
        if (!isImageReference(img)) {
          errors.push({
            code: "config.task-image",
            message: `${JSON.stringify(img)} is not an image reference`,
            where: { path: `${at}.pullImages[${j}]` },
            hint: "write it as registry/repository:tag or registry/repository@sha256:digest",
          });
        }
      });
    } else if (t.script === undefined || t.script.trim() === "") {
      errors.push({
        code: "config.task-empty",
        message: `task "${t.name}" has neither pullImages nor a script`,
        where: { path: at },
        hint: "set pullImages (a list of images) or script (a shell script)",
      });
    }
  });
  return errors;
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

/**
 * All of berth's units and drop-ins, plus task scripts. Deterministic: files
 * come out sorted by path.
 */
export function renderUnits(spec: NodeConfigSpec, berth: BerthSpec, opts: UnitOptions): Result<PlannedFile[]> {
  const tasks = berth.tasks ?? [];
  const errors = validateTasks(tasks);
  if (!opts.berthPath.startsWith("/")) {
    errors.push({
      code: "units.berth-path",
      message: `the berth executable path "${opts.berthPath}" is not absolute`,
      hint: "pass the absolute path of the berth binary (systemd needs it in ExecStart=)",
    });
  }
  if (errors.length > 0) return fail(...errors);

  const berthBin = opts.berthPath;
  const initArgs = opts.initArgs ?? [];
  const taskUnits = tasks.map((t) => taskUnitName(t.name));
  const files: PlannedFile[] = [];
  const add = (name: string, content: string): void => {
    files.push(file(`${UNIT_DIR}/${name}`, content));
  };

  add(
    UNITS.config,
    unit([
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
    ]),
  );

  add(
    UNITS.run,
    unit([
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
    ]),
  );

  add(
    UNITS.agent,
    unit([
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
    ]),
  );

  add(
    UNITS.kubelet,
    kubeletUnit(),
  );

  add(
    UNITS.runtimeSlice,
    unit([
      [
        "Unit",
        // The kubelet's --runtime-cgroups points here; containerd and kubelet run in it.
        ["Description=Kubernetes and container runtime slice", "Documentation=man:systemd.special(7)", "Before=slices.target"],
      ],
    ]),
  );

  files.push(
    file(
      `${UNIT_DIR}/${UNITS.containerd}.d/10-berth.conf`,
      unit([
        ["Unit", ["StartLimitIntervalSec=0"]],
        ["Service", ["Slice=runtime.slice", "Restart=always", "RestartSec=5"]],
      ]),
    ),
  );

  const targetWants = [UNITS.run, UNITS.agent, ...(berth.rebootAfterBootstrap ? [UNITS.rebootOnce] : [])];
  add(
    UNITS.target,
    unit([
      [
        "Unit",
        [
          "Description=berth node bootstrap and health agent",
          // No implicit After= on what it wants (see the file comment).
          "DefaultDependencies=no",
          `Wants=${targetWants.join(" ")}`,
        ],
      ],
    ]),
  );

  add(
    UNITS.tasks,
    unit([
      [
        "Unit",
        [
          "Description=berth post-bootstrap tasks",
          "DefaultDependencies=no",
          ...(taskUnits.length ? [`Wants=${taskUnits.join(" ")}`] : []),
        ],
      ],
      ["Install", ["WantedBy=multi-user.target"]],
    ]),
  );

  tasks.forEach((t, i) => {
    const prev = i > 0 ? taskUnits[i - 1] : undefined;
    let exec: string;
    if (t.pullImages !== undefined) {
      exec = execLine([berthBin, "task", "pull-images", ...t.pullImages]);
    } else {
      const script = t.script ?? "";
      // A script without an interpreter line runs under /bin/sh.
      const body = script.startsWith("#!") ? script : `#!/bin/sh\n${script}`;
      files.push({
        path: taskScriptPath(t.name),
        content: body.endsWith("\n") ? body : `${body}\n`,
        mode: 0o755,
        component: "units",
      });
      exec = execLine([taskScriptPath(t.name)]);
    }
    add(
      taskUnitName(t.name),
      unit([
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
      ]),
    );
  });

  if (berth.rebootAfterBootstrap) {
    add(
      UNITS.rebootOnce,
      unit([
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
      ]),
    );
  }

  files.push(
    file(
      `${UNIT_DIR}/multi-user.target.d/10-berth.conf`,
      unit([["Unit", [`Wants=${UNITS.config} ${UNITS.target} ${UNITS.tasks}`]]]),
    ),
  );

  files.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return ok(files);
}
