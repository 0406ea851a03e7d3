/**
 * `kubelet`: the unit's state (D-Bus), its /healthz (the agent's own probe,
 * src/agent/probes.ts), its client certificate's validity, and its recent log
 * (journalctl -u kubelet, or a file) classified into known causes
 * (kubelet-log.ts), quoting the line. The log's cause, when it has one, is the
 * finding's explanation: "kubelet keeps exiting" is the symptom, "x509:
 * certificate signed by unknown authority" the reason.
 */
import { X509Certificate } from "node:crypto";
import type { ProbeOutcome } from "../../agent/decide.ts";
import { kubeletProbe } from "../../agent/probes.ts";
import { DEFAULT_KUBELET_HEALTHZ_URL } from "../../api/agent-settings.ts";
import { readTextIfPresent } from "../../host/read.ts";
import type { UnitState } from "../../host/systemd.ts";
import { errorMessage } from "../../util/errors.ts";
import { KUBELET_CLIENT_CERT_PATH, UNITS } from "../../util/node-layout.ts";
import { KUBELET_LOG_LINES, type DoctorDeps, type DoctorState } from "../deps.ts";
import { excerpt, humanDuration } from "../outcome.ts";
import type { CheckOutcome, CheckSpec } from "../types.ts";
import { classifyKubeletLog, type KubeletLogCause } from "./kubelet-log.ts";
import { readUnit, unitProblem, unitSummary } from "./unit-state.ts";

/** kubelet's current client certificate (a link to the newest kubelet-client-<date>.pem) when it TLS-bootstraps. */

export interface CertJudgement {
  status: "pass" | "warn" | "fail";
  text: string;
  hint?: string;
}

/** kubelet's client certificate (PEM, the key may follow) judged at `now`. Pure. */
export function judgeClientCert(pem: string | undefined, now: number): CertJudgement {
  if (pem === undefined)
    return { status: "pass", text: "no client certificate (kubelet authenticates through the kubeconfig's exec plugin)" };
  const block = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(pem)?.[0];
  let cert: X509Certificate;
  try {
    if (!block) throw new Error("no CERTIFICATE block");
    cert = new X509Certificate(block);
  } catch (e) {
    return {
      status: "warn",
      text: `${KUBELET_CLIENT_CERT_PATH} holds no readable certificate (${errorMessage(e)})`,
      hint: `remove it and restart kubelet so it requests a new one`,
    };
  }
  const from = Date.parse(cert.validFrom);
  const to = Date.parse(cert.validTo);
  if (to <= now)
    return {
      status: "fail",
      text: `kubelet's client certificate expired ${humanDuration(now - to)} ago (${cert.validTo})`,
      hint: `remove ${KUBELET_CLIENT_CERT_PATH} and restart kubelet so it bootstraps a new one; check the clock`,
    };
  if (from > now)
    return {
      status: "fail",
      text: `kubelet's client certificate is not valid before ${cert.validFrom}: the clock is behind`,
      hint: "see the clock check (timedatectl)",
    };
  if (to - now < 24 * 3_600_000)
    return {
      status: "warn",
      text: `kubelet's client certificate expires in ${humanDuration(to - now)} (${cert.validTo})`,
      hint: "kubelet rotates it by itself when rotateCertificates is on; check that it can reach the API server",
    };
  return { status: "pass", text: `client certificate valid until ${cert.validTo}` };
}

export interface KubeletFacts {
  unit: { state: UnitState } | { error: string };
  healthzUrl: string;
  healthz: ProbeOutcome;
  cert: CertJudgement;
  log: { source: string; cause?: KubeletLogCause & { line: string; quote: string } } | { error: string };
}

const NOT_RUNNING_HINT =
  "berth-run.service starts it (systemctl start berth-run, or berth init --skip config); see why it stopped: journalctl -u kubelet -n 50";

/** The kubelet finding. Pure. */
export function judgeKubelet(k: KubeletFacts): CheckOutcome {
  const problems: Array<{ status: "warn" | "fail"; what: string; hint: string }> = [];
  if ("state" in k.unit) {
    const p = unitProblem(UNITS.kubelet, k.unit.state);
    if (p)
      problems.push({
        status: "fail",
        what: p,
        hint:
          k.unit.state.loadState === "not-found"
            ? "install kubelet, then berth init (the config phase writes kubelet.service)"
            : NOT_RUNNING_HINT,
      });
  }
  if (!k.healthz.ok)
    problems.push({
      status: "fail",
      what: `/healthz: ${k.healthz.cause ?? "failed"}`,
      hint: `kubelet is not healthy: journalctl -u kubelet -n 50 (healthz URL ${k.healthzUrl})`,
    });
  if (k.cert.status !== "pass") problems.push({ status: k.cert.status, what: k.cert.text, hint: k.cert.hint ?? "" });
  const cause = "cause" in k.log ? k.log.cause : undefined;
  const quoted = cause ? `${cause.cause}: "${cause.quote}"` : undefined;
  const detail = cause && "source" in k.log ? { detail: [`${k.log.source}: ${cause.line}`] } : {};
  const failing = problems.find((p) => p.status === "fail");
  const unitText = "state" in k.unit ? `${UNITS.kubelet} ${unitSummary(k.unit.state)}` : `unit state unknown (${k.unit.error})`;
  if (problems.length === 0 && !cause) {
    const logText = "error" in k.log ? `log not read (${k.log.error})` : `no known problem in its last ${KUBELET_LOG_LINES} log lines`;
    return { status: "pass", finding: `${unitText}; /healthz ok; ${k.cert.text}; ${logText}`, hint: "nothing to do" };
  }
  const status = failing || cause?.status === "fail" ? "fail" : "warn";
  // The log's cause explains the symptoms (a crash loop, a failing /healthz): its hint is the one to act on.
  const hint = cause?.status === "fail" ? cause.hint : ((failing ?? problems[0])?.hint ?? cause?.hint ?? "");
  const parts = problems.length ? problems.map((p) => p.what) : [`${unitText}; /healthz ok`];
  return { status, finding: [...parts, ...(quoted ? [quoted] : [])].join("; "), hint, ...detail };
}

export function kubeletCheck(deps: DoctorDeps, state: DoctorState, deadlineMs: number): CheckSpec {
  return {
    id: "kubelet",
    needs: [],
    after: ["config"],
    deadlineMs,
    async run(ctx) {
      const healthzUrl = deps.kubeletHealthzUrl ?? state.config?.berth.agent?.kubeletHealthzUrl ?? DEFAULT_KUBELET_HEALTHZ_URL;
      ctx.step(`kubelet's state, ${healthzUrl} and its log`, "systemd (D-Bus), kubelet's /healthz or journalctl is not answering");
      const budget = Math.max(1, ctx.remaining() - 150);
      const [unit, healthz, pem, log] = await Promise.all([
        readUnit(deps, UNITS.kubelet),
        kubeletProbe(healthzUrl)(budget),
        readTextIfPresent(deps.root.path(KUBELET_CLIENT_CERT_PATH)),
        deps.kubeletLog(budget, ctx.signal).then(
          (l) => {
            const cause = classifyKubeletLog(l.lines);
            return { source: l.source, ...(cause ? { cause } : {}) };
          },
          (e: unknown) => ({ error: excerpt(errorMessage(e), 120) }),
        ),
      ]);
      return judgeKubelet({ unit, healthzUrl, healthz, cert: judgeClientCert(pem, Date.now()), log });
    },
  };
}
