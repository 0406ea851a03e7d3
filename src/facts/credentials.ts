/**
 * The part of the AWS default credential chain a node needs, in the SDK's
 * order: environment (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY/AWS_SESSION_TOKEN),
 * static keys in the shared credentials file (AWS_SHARED_CREDENTIALS_FILE or
 * ~/.aws/credentials, profile AWS_PROFILE or `default`), then the instance
 * role from IMDS. Left out, deliberately: SSO, credential_process, web
 * identity and container credentials — none applies to an EC2 worker node
 * bootstrapping itself; the error hint names what is supported.
 */
import { readFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import type { ImdsClient } from "./types.ts";
import type { AwsCredentials } from "./sigv4.ts";
import { BerthFailure } from "../util/result.ts";

export type CredentialProvider = () => Promise<AwsCredentials>;

/** Minimal INI reader for the shared credentials file: `[profile]` sections of `key = value`. */
export function parseIni(text: string): Map<string, Map<string, string>> {
  const out = new Map<string, Map<string, string>>();
  let cur: Map<string, string> | undefined;
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.replace(/^\s+|\s+$/g, "");
    if (line === "" || line.startsWith("#") || line.startsWith(";")) continue;
    const sec = /^\[\s*(.+?)\s*\]$/.exec(line);
    if (sec) {
      cur = new Map();
      out.set(sec[1]!, cur);
      continue;
    }
    const eq = line.indexOf("=");
    if (cur && eq > 0) cur.set(line.slice(0, eq).trim(), line.slice(eq + 1).trim());
  }
  return out;
}

function fromEnv(env: NodeJS.ProcessEnv): AwsCredentials | undefined {
  const id = env.AWS_ACCESS_KEY_ID;
  const secret = env.AWS_SECRET_ACCESS_KEY;
  if (!id || !secret) return undefined;
  return { accessKeyId: id, secretAccessKey: secret, ...(env.AWS_SESSION_TOKEN ? { sessionToken: env.AWS_SESSION_TOKEN } : {}) };
}

async function fromSharedFile(env: NodeJS.ProcessEnv): Promise<AwsCredentials | undefined> {
  const file = env.AWS_SHARED_CREDENTIALS_FILE ?? path.join(env.HOME ?? os.homedir(), ".aws", "credentials");
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch {
    return undefined;
  }
  const prof = parseIni(text).get(env.AWS_PROFILE ?? env.AWS_DEFAULT_PROFILE ?? "default");
  const id = prof?.get("aws_access_key_id");
  const secret = prof?.get("aws_secret_access_key");
  if (!id || !secret) return undefined;
  const token = prof?.get("aws_session_token");
  return { accessKeyId: id, secretAccessKey: secret, ...(token ? { sessionToken: token } : {}) };
}

async function fromImds(imds: ImdsClient): Promise<AwsCredentials | undefined> {
  const roles = await imds.get("meta-data/iam/security-credentials/");
  const role = roles
    ?.split("\n")
    .map((s) => s.trim())
    .find((s) => s !== "");
  if (!role) return undefined;
  const doc = await imds.get(`meta-data/iam/security-credentials/${role}`);
  if (!doc) return undefined;
  const c = JSON.parse(doc) as { AccessKeyId?: string; SecretAccessKey?: string; Token?: string; Expiration?: string };
  if (!c.AccessKeyId || !c.SecretAccessKey) return undefined;
  const exp = c.Expiration ? Date.parse(c.Expiration) : NaN;
  return {
    accessKeyId: c.AccessKeyId,
    secretAccessKey: c.SecretAccessKey,
    ...(c.Token ? { sessionToken: c.Token } : {}),
    ...(Number.isFinite(exp) ? { expiresAt: exp } : {}),
  };
}

/** The chain, memoised until five minutes before the credentials expire. */
export function defaultCredentialChain(opts: { env?: NodeJS.ProcessEnv; imds?: ImdsClient; now?: () => number }): CredentialProvider {
  const env = opts.env ?? process.env;
  const now = opts.now ?? Date.now;
  let cached: Promise<AwsCredentials> | undefined;
  let cachedValue: AwsCredentials | undefined;
  const resolve = async (): Promise<AwsCredentials> => {
    const c = fromEnv(env) ?? (await fromSharedFile(env)) ?? (opts.imds ? await fromImds(opts.imds) : undefined);
    if (!c) {
      throw new BerthFailure({
        code: "facts.aws-credentials",
        message: "no AWS credentials found for the EC2 lookups",
        where: { source: "AWS credential chain (env, shared credentials file, instance role)" },
        hint:
          "attach an instance profile with ec2:DescribeInstances and ec2:DescribeInstanceTypes, " +
          "or set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY; to avoid the DescribeInstances call set featureGates.InstanceIdNodeName: true",
      });
    }
    return c;
  };
  return () => {
    if (cachedValue?.expiresAt !== undefined && cachedValue.expiresAt - 5 * 60_000 <= now()) cached = undefined;
    cached ??= resolve().then(
      (c) => (cachedValue = c),
      (e: unknown) => {
        cached = undefined;
        throw e;
      },
    );
    return cached;
  };
}
