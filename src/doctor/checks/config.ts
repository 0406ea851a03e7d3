/**
 * `config`: the sources are readable, the NodeConfig is valid (the very
 * resolution and validation `berth init` runs: src/sources/cache.ts), and the
 * config cache, when one is named, agrees with the sources.
 */
import { resolveConfig } from "../../sources/cache.ts";
import { toBerthErrors } from "../../util/errors.ts";
import type { DoctorDeps, DoctorState } from "../deps.ts";
import { errorLine, fromErrors, passed, warned } from "../outcome.ts";
import type { CheckSpec } from "../types.ts";

export function configCheck(deps: DoctorDeps, state: DoctorState, deadlineMs: number): CheckSpec {
  return {
    id: "config",
    needs: [],
    deadlineMs,
    async run(ctx) {
      const list = deps.sources.join(", ") || "(no source)";
      ctx.step(
        `reading the config sources (${list})`,
        "a config source is not answering: for imds://user-data see the imds check; for file:// check the path",
      );
      let r;
      try {
        r = await resolveConfig(deps.sources, deps.cachePath, { root: deps.root, imds: deps.imds });
      } catch (e) {
        return fromErrors(
          "fail",
          toBerthErrors(e, "config.resolve", "could not load the configuration"),
          "check the config sources given with -c",
        );
      }
      if (!r.ok) return fromErrors("fail", r.errors, "fix the NodeConfig", `run \`berth config check\` with the same -c for all`);
      const { config, cacheState, warnings } = r.value;
      state.config = config;
      const from = config.sources.join(", ") || list;
      if (cacheState === "from-cache") {
        return warned(
          `no source holds a NodeConfig (${list}); using the config cache ${deps.cachePath}`,
          "the node keeps booting from the cache only while it exists: give the NodeConfig in user data or with -c again",
        );
      }
      if (cacheState === "changed") {
        return warned(
          `the NodeConfig from ${from} is valid but differs from the config cache ${deps.cachePath}`,
          "the next boot (berth-config.service) re-runs the config phase with the sources' NodeConfig; run `berth init --skip run` " +
            "now to apply it, or restore the sources the node was built from",
        );
      }
      const first = warnings[0];
      if (first) return warned(`valid NodeConfig from ${from}, but: ${errorLine(first)}`, first.hint ?? "see the warning");
      const cache = cacheState === "unchanged" ? `; the config cache ${deps.cachePath} agrees` : "";
      return passed(
        `valid NodeConfig from ${from} (cluster ${config.nodeConfig.cluster?.name ?? config.nodeConfig.cluster?.id ?? "?"})${cache}`,
      );
    },
  };
}
