/**
 * The zod schema of berth's own document, `berth.dev/v1alpha1` BerthConfig
 * (run settings, tasks, the agent, validation mode): strict decoding
 * (decode.ts) and the shipped JSON Schema (json-schema.ts) both come from it.
 */
import * as z from "zod";
import { isHostPort, isImageReference, TASK_NAME } from "./rules.ts";
import { custom, httpUrl, metadataSchema, quote, type Assert, type Extends } from "./schema-parts.ts";
import { BERTH_API_VERSION, BERTH_KIND, type BerthSpec, type Task } from "./types.ts";

const VALIDATION_MODES = ["strict", "warn"] as const;

const ms = (min: number, max: number, description: string) =>
  z.int().min(min).max(max).describe(`${description} Milliseconds, ${min}..${max}.`);
const HOUR = 3_600_000;

export const taskSchema = z
  .strictObject({
    name: z
      .string()
      .regex(TASK_NAME, {
        error: "task name must be a DNS label: lower-case letters, digits and '-', 1..63 characters, starting and ending alphanumeric",
      })
      .describe("Unique task name (DNS label); becomes part of the unit name."),
    pullImages: z
      .array(
        z
          .string()
          .min(1)
          .superRefine((v, ctx) => {
            if (v !== "" && !isImageReference(v))
              ctx.addIssue(
                custom(
                  { code: "config.task-image", hint: "write it as registry/repository:tag or registry/repository@sha256:digest" },
                  `${quote(v)} is not an image reference`,
                  v,
                ),
              );
          }),
      )
      .min(1)
      .describe("Container images to pull.")
      .optional(),
    script: z
      .string()
      .min(1)
      .superRefine((v, ctx) => {
        if (v !== "" && v.trim() === "")
          ctx.addIssue(
            custom(
              { code: "config.task-empty", hint: "write the shell script to run, or remove the task" },
              "the task's script is empty",
              v,
            ),
          );
      })
      .describe("Shell script to run.")
      .optional(),
  })
  .superRefine((t, ctx) => {
    const n = (t.pullImages !== undefined ? 1 : 0) + (t.script !== undefined ? 1 : 0);
    if (n !== 1)
      ctx.addIssue(
        custom(
          { code: "config.invalid-task", hint: "give each task exactly one of `pullImages` or `script`" },
          n === 0 ? `task ${quote(t.name)} has neither pullImages nor script` : `task ${quote(t.name)} has both pullImages and script`,
          t,
        ),
      );
  })
  .describe("A post-bootstrap task: exactly one of pullImages or script.");

const tasksSchema = z.array(taskSchema).superRefine((tasks, ctx) => {
  const seen = new Map<string, number>();
  tasks.forEach((t, i) => {
    const prev = seen.get(t.name);
    if (prev !== undefined)
      ctx.addIssue(
        custom(
          { code: "config.duplicate-task", hint: "give every task a unique name" },
          `task name ${quote(t.name)} is already used by tasks[${prev}]`,
          t.name,
          [i, "name"],
        ),
      );
    else seen.set(t.name, i);
  });
});

const agentSettingsSchema = z
  .strictObject({
    intervalMs: ms(100, HOUR, "Probe interval while healthy.").optional(),
    fastIntervalMs: ms(100, HOUR, "Probe interval while bootstrapping or failing.").optional(),
    probeTimeoutMs: ms(1, 10 * 60_000, "Deadline of one probe.").optional(),
    failureThreshold: z.int().min(1).max(1000).describe("Consecutive failed probes before a repair.").optional(),
    failureWindowMs: ms(0, HOUR, "Minimum time a component must be failing before a repair.").optional(),
    minUptimeMs: ms(0, HOUR, "Units that (re)started more recently than this are left alone.").optional(),
    restartBudget: z.int().min(1).max(1000).describe("Restarts allowed per component per budget window.").optional(),
    budgetWindowMs: ms(1000, 24 * HOUR, "Restart budget window.").optional(),
    backoffInitialMs: ms(1, HOUR, "First backoff between repairs of the same unit.").optional(),
    backoffMaxMs: ms(1, 24 * HOUR, "Maximum backoff between repairs of the same unit.").optional(),
    kubeletHealthzUrl: httpUrl("kubeletHealthzUrl", "http://127.0.0.1:10248/healthz").describe("kubelet health endpoint.").optional(),
    listenAddress: z
      .string()
      .superRefine((v, ctx) => {
        if (!isHostPort(v))
          ctx.addIssue(
            custom(
              { code: "config.invalid-address", hint: "write host:port, e.g. 127.0.0.1:9100 or [::1]:9100" },
              `${quote(v)} is not a valid host:port listen address`,
              v,
            ),
          );
      })
      .describe("host:port for /metrics and /status.")
      .optional(),
  })
  .superRefine((a, ctx) => {
    if (a.backoffInitialMs !== undefined && a.backoffMaxMs !== undefined && a.backoffInitialMs > a.backoffMaxMs)
      ctx.addIssue(
        custom(
          { code: "config.invalid-value", hint: "make backoffMaxMs at least backoffInitialMs" },
          `backoffInitialMs (${a.backoffInitialMs}) is greater than backoffMaxMs (${a.backoffMaxMs})`,
          a,
          ["backoffInitialMs"],
        ),
      );
    if (a.probeTimeoutMs !== undefined && a.intervalMs !== undefined && a.probeTimeoutMs > a.intervalMs)
      ctx.addIssue(
        custom(
          { code: "config.invalid-value", hint: "make probeTimeoutMs at most intervalMs" },
          `probeTimeoutMs (${a.probeTimeoutMs}) is greater than intervalMs (${a.intervalMs})`,
          a,
          ["probeTimeoutMs"],
        ),
      );
  })
  .describe("Health agent settings.");

const runSettingsSchema = z
  .strictObject({
    criReadyTimeoutMs: ms(1000, HOUR, "Deadline for containerd's CRI to become ready.").optional(),
    sandboxImageArchive: z
      .string()
      .startsWith("/", { error: "sandboxImageArchive must be an absolute path" })
      .describe("Load the sandbox image from this OCI/docker archive when absent instead of pulling.")
      .optional(),
    unitJobTimeoutMs: ms(1000, HOUR, "Deadline for systemd start/restart jobs.").optional(),
  })
  .describe("Settings of `berth init`'s run phase.");

const berthSpecSchema = z
  .strictObject({
    run: runSettingsSchema.optional(),
    tasks: tasksSchema.describe("Ordered post-bootstrap tasks.").optional(),
    rebootAfterBootstrap: z.boolean().describe("Reboot once after the first successful bootstrap.").optional(),
    agent: agentSettingsSchema.optional(),
    validation: z
      .enum(VALIDATION_MODES)
      .describe("`warn`: unknown fields in any source are dropped with a warning, as nodeadm drops them; `--validate` wins.")
      .optional(),
  })
  .describe("BerthConfig spec.");

export const berthConfigDocumentSchema = z
  .strictObject({
    apiVersion: z.literal(BERTH_API_VERSION).describe("API version of the document."),
    kind: z.literal(BERTH_KIND).describe("Document kind."),
    metadata: metadataSchema.optional(),
    spec: berthSpecSchema.optional(),
  })
  .describe("berth's own settings (berth.dev/v1alpha1 BerthConfig): tasks, run and agent settings.");

// ---------------------------------------------------------------- compile-time checks
type InferredBerthSpec = z.infer<typeof berthSpecSchema>;
/** Task is a union in types.ts; the schema enforces "exactly one" with a refinement instead. */
type WideTask = { name: string; pullImages?: string[]; script?: string };
export type _BerthSpecCheck = Assert<Extends<Omit<InferredBerthSpec, "tasks">, Omit<BerthSpec, "tasks">>>;
export type _TaskCheck = Assert<Extends<z.infer<typeof taskSchema>, WideTask>>;
export type _TaskBackCheck = Assert<Extends<Task, WideTask>>;
