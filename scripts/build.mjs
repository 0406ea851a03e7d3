// Bundles the CLI into one file (dist/berth.mjs) with esbuild.
import { build } from "esbuild";
await build({
  entryPoints: ["src/cli/main.ts"],
  bundle: true,
  platform: "node",
  format: "esm",
  target: "node20",
  outfile: "dist/berth.mjs",
  sourcemap: "linked",
  logLevel: "warning",
  banner: { js: "import { createRequire as __berthCreateRequire } from 'node:module'; const require = __berthCreateRequire(import.meta.url);" },
});
