/**
 * Which executable the systemd units berth writes should run: the one that
 * is running now, so a unit never names a path that does not exist.
 *
 * - $BERTH_PATH when set (an operator's override; bin/berth sets it to itself);
 * - a release executable (a Node single-executable application): its own real path;
 * - the bundle run by a plain `node dist/berth.cjs`: the checkout's bin/berth;
 * - otherwise /usr/bin/berth, where the packages install it.
 */
import { existsSync, realpathSync } from "node:fs";
import path from "node:path";
import { DEFAULT_BERTH_PATH } from "../util/node-layout.ts";

function isSingleExecutable(): boolean {
  const sea = process.getBuiltinModule("node:sea") as { isSea?: () => boolean } | undefined;
  return sea?.isSea?.() ?? false;
}

export function berthExecutable(env: NodeJS.ProcessEnv = process.env): string {
  if (env.BERTH_PATH) return env.BERTH_PATH;
  if (isSingleExecutable()) return realpathSync(process.execPath);
  const script = process.argv[1];
  if (script) {
    const launcher = path.resolve(path.dirname(script), "..", "bin", "berth");
    if (existsSync(launcher)) return launcher;
  }
  return DEFAULT_BERTH_PATH;
}
