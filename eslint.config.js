// berth's linter: typescript-eslint with type information, over src/, tests/,
// bench/, scripts/ and lab/. `npm run lint` runs it with prettier's check;
// scripts/test.sh runs `npm run lint` before any test.
import js from "@eslint/js";
import tseslint from "typescript-eslint";

export default tseslint.config(
  { ignores: ["dist/**", "node_modules/**", "**/*.gen.ts", "data/**"] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      // Promises are awaited or deliberately voided: a dropped rejection is a crash in an agent.
      "@typescript-eslint/no-floating-promises": [
        "error",
        // node:test's test()/describe() return promises the runner itself awaits.
        {
          allowForKnownSafeCalls: [
            {
              from: "package",
              package: "node:test",
              name: ["test", "describe", "it", "suite", "before", "after", "beforeEach", "afterEach"],
            },
          ],
        },
      ],
      "@typescript-eslint/no-misused-promises": ["error", { checksVoidReturn: { arguments: false } }],
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_", caughtErrors: "none" }],
      "@typescript-eslint/consistent-type-imports": ["error", { fixStyle: "inline-type-imports" }],
      eqeqeq: ["error", "always", { null: "ignore" }],
      // Off: async functions without an await are how berth implements its Promise-returning
      // interfaces (Systemd, CriClient, the fakes, Step.run); making each one build its promise
      // by hand would hide the shape the interface asks for.
      "@typescript-eslint/require-await": "off",
      // An empty catch is berth's (and the lab's) spelling of "best effort": cleanup, optional
      // /proc reads, a node that may already be gone. An empty block anywhere else is still an error.
      "no-empty": ["error", { allowEmptyCatch: true }],
    },
  },
  {
    files: ["src/**/*.ts"],
    rules: {
      // A single executable's main script has no module loader for built-ins: require() or process.getBuiltinModule().
      // Only src/ is bundled into the release executable; tests, scripts and the lab run under plain node.
      "no-restricted-syntax": [
        "error",
        {
          selector: "ImportExpression[source.value=/^node:/]",
          message:
            "load node built-ins with a static import or process.getBuiltinModule(), never import(): the release executable's bundle has no module loader",
        },
      ],
      // Issue 9's limits: one function, one screenful of intent; one file, one job.
      "max-lines-per-function": ["error", { max: 100, skipBlankLines: false, skipComments: false }],
      "max-lines": ["error", { max: 450, skipBlankLines: false, skipComments: false }],
    },
  },
  {
    files: ["tests/**/*.ts"],
    rules: {
      // Off in tests: node:test hooks take methods of helper objects (`after(scratch.removeAll)`),
      // which are arrow-function properties with no `this` to lose.
      "@typescript-eslint/unbound-method": "off",
    },
  },
  {
    // Plain JavaScript (the build scripts, a stand-in): no type information, so no type-aware rules.
    files: ["**/*.js", "**/*.mjs"],
    ...tseslint.configs.disableTypeChecked,
    languageOptions: {
      ...tseslint.configs.disableTypeChecked.languageOptions,
      globals: { process: "readonly", console: "readonly" },
    },
  },
);
