/**
 * The doctor's runner (src/doctor/run.ts): dependency order, skips, each
 * check's own deadline and the run's budget, errors as findings. Checks here
 * are scripted; nothing touches the machine.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { dependencyOrder, doctorExitStatus, runChecks } from "../../src/doctor/run.ts";
import type { CheckId, CheckOutcome, CheckResult, CheckSpec } from "../../src/doctor/types.ts";
import { CHECK_IDS } from "../../src/doctor/types.ts";
import { DOCTOR_BUDGET_MS, DOCTOR_DEADLINES } from "../../src/doctor/checks.ts";

const never = new Promise<CheckOutcome>(() => undefined);

function check(id: CheckId, needs: CheckId[], run: CheckSpec["run"], more: Partial<CheckSpec> = {}): CheckSpec {
  return { id, needs, deadlineMs: 2000, run, ...more };
}
const outcome = (status: CheckOutcome["status"], finding = `${status}!`): CheckOutcome => ({ status, finding, hint: "do something" });
const byId = (rs: CheckResult[]) => Object.fromEntries(rs.map((r) => [r.id, r]));

test("a check starts only after what it needs; results come back in the listed order", async () => {
  const log: string[] = [];
  const step =
    (id: CheckId, ms: number): CheckSpec["run"] =>
    async () => {
      log.push(`start ${id}`);
      await new Promise((r) => setTimeout(r, ms));
      log.push(`end ${id}`);
      return outcome("pass");
    };
  const rs = await runChecks(
    [
      check("registration", ["apiserver"], step("registration", 1)),
      check("config", [], step("config", 20)),
      check("apiserver", ["config"], step("apiserver", 1)),
      check("clock", [], step("clock", 1)),
    ],
    { totalMs: 5000 },
  );
  assert.deepEqual(
    rs.map((r) => r.id),
    ["registration", "config", "apiserver", "clock"],
  );
  assert.ok(log.indexOf("end config") < log.indexOf("start apiserver"), log.join(", "));
  assert.ok(log.indexOf("end apiserver") < log.indexOf("start registration"), log.join(", "));
  // Independent checks overlap: clock does not wait for config.
  assert.ok(log.indexOf("start clock") < log.indexOf("end config"), log.join(", "));
});

test("a failed or skipped prerequisite skips its dependents; a warning does not; `after` only orders", async () => {
  let ranFiles = false;
  const rs = byId(
    await runChecks(
      [
        check("config", [], () => Promise.resolve(outcome("fail", "bad config"))),
        check("apiserver", ["config"], () => Promise.resolve(outcome("pass"))),
        check("registration", ["config", "apiserver"], () => Promise.resolve(outcome("pass"))),
        check("imds", [], () => Promise.resolve(outcome("warn"))),
        check("ec2", ["imds"], () => Promise.resolve(outcome("pass")), { after: ["config"] }),
        check("files", ["ec2"], () => {
          ranFiles = true;
          return Promise.resolve(outcome("pass"));
        }),
      ],
      { totalMs: 5000 },
    ),
  );
  assert.equal(rs.config?.status, "fail");
  assert.equal(rs.apiserver?.status, "skip");
  assert.match(rs.apiserver.finding, /needs config \(failed\)/);
  assert.match(rs.apiserver.hint, /fix config first/);
  assert.equal(rs.registration?.status, "skip");
  assert.match(rs.registration.finding, /config \(failed\), apiserver \(skipped\)/);
  assert.equal(rs.registration?.durationMs, 0);
  assert.equal(rs.ec2?.status, "pass", "a warned need and a failed `after` do not skip");
  assert.ok(ranFiles);
});

test("a check that never answers costs its deadline and names the step it was on", async () => {
  const rs = byId(
    await runChecks(
      [
        check(
          "imds",
          [],
          async (ctx) => {
            ctx.step("IMDSv2 token PUT", "raise the hop limit");
            return never;
          },
          { deadlineMs: 60 },
        ),
        check("ec2", ["imds"], () => Promise.resolve(outcome("pass"))),
        check("clock", [], () => Promise.resolve(outcome("pass"))),
      ],
      { totalMs: 5000 },
    ),
  );
  assert.equal(rs.imds?.status, "fail");
  assert.equal(rs.imds?.finding, "IMDSv2 token PUT: no answer within 60 ms");
  assert.equal(rs.imds?.hint, "raise the hop limit");
  assert.ok(rs.imds.durationMs >= 50, String(rs.imds?.durationMs));
  assert.equal(rs.ec2?.status, "skip");
  assert.equal(rs.clock?.status, "pass");
});

test("the deadline aborts the check's signal; remaining() counts down to it", async () => {
  let aborted = false;
  let remaining = 0;
  await runChecks(
    [
      check(
        "host",
        [],
        async (ctx) => {
          remaining = ctx.remaining();
          ctx.signal.addEventListener("abort", () => (aborted = true));
          return never;
        },
        { deadlineMs: 40 },
      ),
    ],
    { totalMs: 5000 },
  );
  assert.ok(aborted);
  assert.ok(remaining > 0 && remaining <= 40, String(remaining));
});

test("the run's budget clips the deadline of a check that starts late", async () => {
  const rs = byId(
    await runChecks(
      [
        check("config", [], () => new Promise((r) => setTimeout(() => r(outcome("pass")), 80)), { deadlineMs: 1000 }),
        check("apiserver", ["config"], () => never, { deadlineMs: 10_000 }),
      ],
      { totalMs: 150 },
    ),
  );
  assert.equal(rs.config?.status, "pass");
  assert.equal(rs.apiserver?.status, "fail");
  assert.match(rs.apiserver.finding, /no answer within \d+ ms/);
  const ms = Number(/within (\d+) ms/.exec(rs.apiserver.finding)?.[1]);
  assert.ok(ms < 150, `clipped to the budget, got ${ms}`);
});

test("a check that throws is a failure naming the bug, not a crash; findings stay one line", async () => {
  const rs = byId(
    await runChecks(
      [
        check("host", [], () => Promise.reject(new Error("boom"))),
        check("kubelet", [], () =>
          Promise.resolve<CheckOutcome>({ status: "fail", finding: "line one\nerror: forged", hint: "a\rb", detail: ["x\u001b[31my"] }),
        ),
      ],
      { totalMs: 5000 },
    ),
  );
  assert.equal(rs.host?.status, "fail");
  assert.match(rs.host.finding, /internal error in the host check: boom/);
  assert.match(rs.host.hint, /bug in berth/);
  assert.equal(rs.kubelet?.finding, "line one\\nerror: forged");
  assert.equal(rs.kubelet?.hint, "a\\rb");
  assert.deepEqual(rs.kubelet?.detail, ["x\\u001b[31my"]);
});

test("dependency order: an `after` not in the run is ignored; unknown needs and cycles are bugs, caught before anything runs", () => {
  assert.deepEqual(
    dependencyOrder([check("ec2", [], () => Promise.resolve(outcome("pass")), { after: ["config"] })]).map((c) => c.id),
    ["ec2"],
  );
  assert.throws(
    () => dependencyOrder([check("ec2", ["imds"], () => Promise.resolve(outcome("pass")))]),
    /depends on imds, which is not in the run/,
  );
  assert.throws(
    () =>
      dependencyOrder([
        check("config", ["files"], () => Promise.resolve(outcome("pass"))),
        check("files", ["config"], () => Promise.resolve(outcome("pass"))),
      ]),
    /cycle: config → files → config/,
  );
});

test("exit status: 1 when anything failed, else 0", () => {
  const r = (status: CheckResult["status"]): CheckResult => ({ id: "host", status, finding: "", hint: "", durationMs: 0 });
  assert.equal(doctorExitStatus([r("pass"), r("warn")]), 0);
  assert.equal(doctorExitStatus([r("pass"), r("fail"), r("skip")]), 1);
  assert.equal(doctorExitStatus([]), 0);
});

test("the real checks' deadlines: the longest chain fits the budget, and the budget the 10 s promise", () => {
  const d = DOCTOR_DEADLINES;
  assert.deepEqual(Object.keys(d), [...CHECK_IDS]);
  const chains = [d.config + d.apiserver + d.registration, Math.max(d.config, d.imds + d.ec2) + d.files];
  for (const c of chains) assert.ok(c <= DOCTOR_BUDGET_MS, `${c} > ${DOCTOR_BUDGET_MS}`);
  assert.ok(DOCTOR_BUDGET_MS < 10_000);
});
