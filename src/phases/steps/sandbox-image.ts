/**
 * Make sure containerd has the sandbox ("pause") image before the kubelet
 * needs it: present → nothing; absent → import it from
 * berth.run.sandboxImageArchive when one is set, else pull it over CRI with
 * retries under one deadline. Never pulls anything but that one image, and
 * never touches the kubelet.
 */
import type { CriClient } from "../../host/cri.ts";
import type { SandboxImageRecord } from "../../host/run-status.ts";
import { errorMessage, toBerthError } from "../../util/errors.ts";
import type { BerthError } from "../../util/result.ts";
import { retry, RetryExhausted, type Backoff } from "../../util/retry.ts";
import type { RunStepContext, RunStep } from "./context.ts";
import { CONTAINERD_CONFIG_PATH } from "../../util/node-layout.ts";

export interface SandboxImageOptions {
  needs: readonly string[];
  image: string;
  /** berth.run.sandboxImageArchive (a host path), when set. */
  archive?: string;
  /** Load an archive into containerd's k8s.io namespace (src/host/ctr-import.ts in production). */
  importArchive: (socketPath: string, archivePath: string) => Promise<void>;
  pull: { timeoutMs: number; backoff: Backoff; sleep?: (ms: number, signal?: AbortSignal) => Promise<void>; now?: () => number };
}

type Fetched = { ok: true; attempts: number } | { ok: false; error: BerthError };

async function importImage(ctx: RunStepContext, cri: CriClient, o: SandboxImageOptions, archive: string): Promise<Fetched> {
  const where = { path: "berth.run.sandboxImageArchive", source: archive };
  ctx.log.info({
    event: "sandbox-image.import",
    component: "sandbox-image",
    cause: `${o.image} is absent; importing ${archive}`,
    image: o.image,
  });
  try {
    await o.importArchive(ctx.socketPath, ctx.root.path(archive));
  } catch (e) {
    const hint = "the archive must be an OCI or docker image archive (e.g. from `ctr images export`)";
    return {
      ok: false,
      error: {
        code: "run.sandbox-import",
        message: `cannot import the sandbox image archive ${archive}: ${errorMessage(e)}`,
        where,
        hint,
        cause: e,
      },
    };
  }
  if (await cri.imageStatus(o.image).catch(() => undefined)) return { ok: true, attempts: 1 };
  const hint = `the archive must contain ${o.image} under that exact name (check \`ctr -n k8s.io images ls\`)`;
  return {
    ok: false,
    error: {
      code: "run.sandbox-import",
      message: `the archive ${archive} was imported but containerd still has no image ${o.image}`,
      where,
      hint,
    },
  };
}

async function pullImage(ctx: RunStepContext, cri: CriClient, o: SandboxImageOptions): Promise<Fetched> {
  const { image, pull } = o;
  ctx.log.info({ event: "sandbox-image.pull", component: "sandbox-image", cause: `${image} is absent`, image });
  let attempts = 0;
  try {
    await retry(
      async (a, remaining) => {
        attempts = a;
        return cri.pullImage(image, { timeoutMs: Math.max(1, Math.min(remaining, pull.timeoutMs)) });
      },
      {
        ...pull.backoff,
        timeoutMs: pull.timeoutMs,
        ...(pull.sleep ? { sleep: pull.sleep } : {}),
        ...(pull.now ? { now: pull.now } : {}),
        onRetry: (i) =>
          ctx.log.warn({
            event: "sandbox-image.pull-retry",
            component: "sandbox-image",
            cause: errorMessage(i.cause),
            attempt: i.attempt,
            delayMs: i.delayMs,
            elapsedMs: i.elapsedMs,
            image,
          }),
      },
    );
  } catch (e) {
    return {
      ok: false,
      error: {
        code: "run.sandbox-pull",
        message: `cannot pull the sandbox image ${image}: ${errorMessage(e)}`,
        where: { source: CONTAINERD_CONFIG_PATH, path: "sandbox_image" },
        hint:
          "check that the registry is reachable from the node (containerd's hosts.toml under /etc/containerd/certs.d)" +
          " and the image exists; or set berth.run.sandboxImageArchive to load it from a local archive",
        cause: e instanceof RetryExhausted ? e.lastError : e,
      },
    };
  }
  return { ok: true, attempts };
}

export function sandboxImageStep(o: SandboxImageOptions): RunStep {
  return {
    name: "sandbox-image",
    needs: o.needs,
    async run(ctx) {
      const cri = await ctx.cri();
      let present;
      try {
        present = await cri.imageStatus(o.image);
      } catch (e) {
        const error = toBerthError(
          e,
          "run.sandbox-image",
          `cannot ask containerd about the sandbox image ${o.image}`,
          "check `journalctl -u containerd`",
        );
        return { outcome: "failed", error };
      }
      let record: SandboxImageRecord = { image: o.image, action: "present", attempts: 0 };
      if (!present) {
        const fetched = o.archive ? await importImage(ctx, cri, o, o.archive) : await pullImage(ctx, cri, o);
        if (!fetched.ok) return { outcome: "failed", error: fetched.error };
        record = { image: o.image, action: o.archive ? "imported" : "pulled", attempts: fetched.attempts };
      }
      ctx.status.sandboxImage = record;
      const { action, attempts } = record;
      const cause = action === "present" ? "already in containerd" : `${action} in ${attempts} attempt(s)`;
      return {
        outcome: action === "present" ? "ok" : "changed",
        action,
        cause,
        event: `sandbox-image.${action}`,
        fields: { image: o.image },
      };
    },
  };
}
