/** berth's version; kept in step with package.json (tests/unit/cli.test.ts checks it). */
export const VERSION = "0.1.0";
