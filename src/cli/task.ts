/**
 * `berth task ...`: what the rendered berth-task-*.service units run
 * (`berth task pull-images IMAGE...`) and `berth task status`.
 *
 * The subcommands, their options, help and exit statuses (0 ok, 1 failure,
 * 2 usage) belong to src/phases/tasks.ts (the run phase's code); this module
 * only routes to it, so the dispatcher stays free of the run phase's imports
 * (CRI, D-Bus, pino) until a task actually runs.
 */
export async function taskCliCommand(args: string[]): Promise<number> {
  const { taskCommand } = await import("../phases/tasks.ts");
  return taskCommand(args);
}
