/**
 * `berth timeline`: where the boot's time went. Argument parsing and
 * printing only: systemd's timestamps come from src/host/systemd-times.ts,
 * the run phase's steps from the run status file, the chart from
 * src/timeline/ (model, text, svg).
 *
 * Exit status: 0 when a timeline was printed, 1 when there was nothing to
 * draw or the SVG could not be written, 2 on usage errors.
 */
import { writeFile } from "node:fs/promises";
import path from "node:path";
import { HostRoot } from "../host/root.ts";
import { readRunStatus } from "../host/run-status.ts";
import { errorMessage } from "../util/errors.ts";
import { RUN_STATUS_PATH } from "../util/node-layout.ts";
import { EXIT_OK, parseCommand, printErrors, usageError } from "./args.ts";

export const TIMELINE_HELP = `Usage: berth timeline [options]

Where this boot's time went: systemd's own timestamps for the kernel,
cloud-init's stages and the units around berth (berth-config, containerd,
berth-run, kubelet, berth-agent), next to the run phase's steps, as offsets
from boot; the critical path and berth's own share (docs/timeline.md).
Run it on the node.

Options:
  -o, --output FORMAT     text (default: a Gantt chart as wide as the terminal) or json
      --svg FILE          also draw the timeline as an SVG picture into FILE
      --root DIR          read the run status file under DIR
      --bus-address ADDR  systemd's D-Bus (default: BERTH_BUS_ADDRESS, DBUS_SYSTEM_BUS_ADDRESS,
                          else /run/dbus/system_bus_socket)
  -h, --help              this help

Exit status: 0 when a timeline was printed, 1 when there was nothing to draw
or the SVG could not be written, 2 on a usage error.
`;

const TIMELINE_OPTIONS = {
  output: { type: "string", short: "o" },
  svg: { type: "string" },
  root: { type: "string" },
  "bus-address": { type: "string" },
  help: { type: "boolean", short: "h" },
} as const;

/** The chart's width: the terminal's, else $COLUMNS, else 100. */
function terminalWidth(): number {
  const fromEnv = Number(process.env.COLUMNS);
  if (process.stdout.isTTY && process.stdout.columns > 0) return process.stdout.columns;
  return Number.isInteger(fromEnv) && fromEnv > 0 ? fromEnv : 100;
}

export async function timelineCommand(args: string[]): Promise<number> {
  const p = parseCommand(args, TIMELINE_OPTIONS, "timeline", TIMELINE_HELP);
  if (typeof p === "number") return p;
  const v = p.values;
  const output = v.output ?? "text";
  if (output !== "text" && output !== "json") return usageError(`unknown --output '${output}' (expected text or json)`, "timeline");
  if (v.svg === "") return usageError("--svg needs a file name", "timeline");
  const root = new HostRoot(v.root ?? "/");
  const [{ readBootTimes }, { systemBusAddress }, { buildTimeline, TIMELINE_UNITS }] = await Promise.all([
    import("../host/systemd-times.ts"),
    import("../host/systemd.ts"),
    import("../timeline/model.ts"),
  ]);
  const busAddress = v["bus-address"] || systemBusAddress(process.env);
  const statusPath = root.path(RUN_STATUS_PATH);
  const notes: string[] = [];
  const [boot, status] = await Promise.all([
    readBootTimes({ busAddress, units: TIMELINE_UNITS }).catch((e: unknown) => {
      notes.push(`systemd's timestamps could not be read over D-Bus at ${busAddress} (${errorMessage(e)}): only the run phase is drawn`);
      return undefined;
    }),
    readRunStatus(statusPath),
  ]);
  if (!boot && !status) {
    return printErrors([
      {
        code: "timeline.nothing",
        message: `nothing to draw: systemd's timestamps could not be read (D-Bus at ${busAddress}) and there is no run status`,
        where: { path: statusPath },
        hint: "run berth timeline on the node after berth init (root may be needed for D-Bus); or give --bus-address / --root",
      },
    ]);
  }
  const timeline = buildTimeline({ ...(boot ? { boot } : {}), ...(status ? { status } : {}), notes });
  if (v.svg !== undefined) {
    const file = path.resolve(v.svg);
    const { renderTimelineSvg } = await import("../timeline/svg.ts");
    try {
      await writeFile(file, renderTimelineSvg(timeline));
    } catch (e) {
      return printErrors([
        {
          code: "timeline.svg-write",
          message: `cannot write the SVG: ${errorMessage(e)}`,
          where: { path: file },
          hint: "check that the directory exists and is writable",
        },
      ]);
    }
    process.stderr.write(`wrote the timeline picture to ${file}\n`);
  }
  if (output === "json") process.stdout.write(`${JSON.stringify(timeline, null, 2)}\n`);
  else process.stdout.write((await import("../timeline/text.ts")).renderTimelineText(timeline, { width: terminalWidth() }));
  return EXIT_OK;
}
