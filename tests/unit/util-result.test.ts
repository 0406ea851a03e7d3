/** formatError: the one way errors are printed, and no input can forge its lines (issue 8, item 9). */
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { escapeControl, formatError } from "../../src/util/result.ts";

test("formatError: source:line:column: path: message, then the hint", () => {
  assert.equal(
    formatError({ code: "x.y", message: "bad", where: { source: "file:///a.yaml", line: 3, column: 5, path: "spec.a" }, hint: "fix it" }),
    "error: file:///a.yaml:3:5: spec.a: bad\n  hint: fix it",
  );
  assert.equal(formatError({ code: "x.y", message: "bad" }), "error: bad");
});

test("control characters in any part are escaped JSON-style; backslashes and other text are kept", () => {
  assert.equal(
    escapeControl("a\nb\r\tc\u0000\u001b[31m\u007f\u0085\u2028 \\n é"),
    "a\\nb\\r\\tc\\u0000\\u001b[31m\\u007f\\u0085\\u2028 \\n é",
  );
  const forged = "x\nerror: forged\n  hint: forged";
  const text = formatError({ code: "x.y", message: `"${forged}" is bad`, where: { source: forged, path: forged }, hint: forged });
  assert.deepEqual(
    text.split("\n").map((l) => l.slice(0, 8)),
    ["error: x", "  hint: "],
  );
});

test("property: one error is always exactly its error line and its hint line", () => {
  const s = fc.string({ unit: "binary", maxLength: 20 });
  fc.assert(
    fc.property(s, s, s, s, (message, source, path, hint) => {
      const lines = formatError({ code: "x.y", message, where: { source, line: 1, path }, hint: hint || "h" }).split("\n");
      assert.equal(lines.length, 2);
      assert.ok(lines[0]!.startsWith("error: ") && lines[1]!.startsWith("  hint: "));
    }),
    { seed: 8 },
  );
});
