/**
 * `imds` and `ec2`: what berth asks AWS for before it can render anything,
 * through the same clients the config phase uses (src/facts/imds.ts, ec2.ts).
 *
 * imds: an IMDSv2 token and the instance identity document. A token PUT that
 * gets no answer is the classic hop-limit symptom (the answer is dropped one
 * hop short when berth runs in a container), so it gets that hint.
 * ec2: the calls berth needs are allowed — DescribeInstances for the node name
 * (unless InstanceIdNodeName) and DescribeInstanceTypes when the instance type
 * is not in berth's table; AccessDenied / UnauthorizedOperation get an IAM hint
 * naming the instance profile.
 */
import { Ec2ApiError, resolveEc2Endpoint, resolveRegion } from "../../facts/ec2.ts";
import { TransportError } from "../../facts/http.ts";
import { IDENTITY_PATH, parseIdentity } from "../../facts/index.ts";
import { tableLookup } from "../../facts/instance-types.ts";
import { toBerthErrors } from "../../util/errors.ts";
import type { DoctorDeps, DoctorState } from "../deps.ts";
import { excerpt, failed, findCause, fromErrors, passed, warned } from "../outcome.ts";
import type { CheckOutcome, CheckSpec } from "../types.ts";

export const HOP_LIMIT_HINT =
  "if berth runs in a container, IMDSv2's answer needs 2 hops: aws ec2 modify-instance-metadata-options --instance-id ID " +
  "--http-put-response-hop-limit 2; " +
  "otherwise check that the metadata endpoint is enabled (--http-endpoint enabled)";

const truthy = (v: string | undefined): boolean => v?.trim().toLowerCase() === "true";

/** The imds finding for an error from the IMDS client. */
export function imdsFailure(e: unknown, endpoint: string): CheckOutcome {
  const transport = findCause(e, (x): x is TransportError => x instanceof TransportError);
  if (transport && transport.url.endsWith("/latest/api/token") && /no answer within/.test(transport.message)) {
    return failed(`the IMDSv2 token PUT to ${endpoint} got no answer (${excerpt(transport.message, 120)})`, HOP_LIMIT_HINT);
  }
  if (transport && /ECONNREFUSED/.test(transport.message)) {
    return failed(
      `nothing answers at the IMDS endpoint ${endpoint} (connection refused)`,
      "check AWS_EC2_METADATA_SERVICE_ENDPOINT, or that the instance's metadata endpoint is enabled",
    );
  }
  return fromErrors(
    "fail",
    toBerthErrors(e, "facts.imds-unreachable", `reading the instance identity from IMDS at ${endpoint}`),
    HOP_LIMIT_HINT,
  );
}

export function imdsCheck(deps: DoctorDeps, state: DoctorState, deadlineMs: number): CheckSpec {
  return {
    id: "imds",
    needs: [],
    deadlineMs,
    async run(ctx) {
      const endpoint = deps.imds.endpoint || "(no endpoint)";
      if (truthy(deps.env.AWS_EC2_METADATA_DISABLED)) {
        return failed(
          "IMDS is turned off (AWS_EC2_METADATA_DISABLED=true)",
          "unset AWS_EC2_METADATA_DISABLED: berth reads the instance's identity, and by default its NodeConfig, from IMDS",
        );
      }
      ctx.step(`IMDSv2 token and identity document from ${endpoint}`, HOP_LIMIT_HINT);
      let text: string | undefined;
      try {
        text = await deps.imds.get(IDENTITY_PATH);
      } catch (e) {
        return imdsFailure(e, endpoint);
      }
      const id = parseIdentity(text);
      if (!id.ok) return fromErrors("fail", id.errors, "check that AWS_EC2_METADATA_SERVICE_ENDPOINT names an instance metadata service");
      state.identity = id.value;
      let profile = "";
      try {
        const info = await deps.imds.get("meta-data/iam/info");
        const arn = info ? (JSON.parse(info) as { InstanceProfileArn?: unknown }).InstanceProfileArn : undefined;
        if (typeof arn === "string" && arn) {
          state.instanceProfileArn = arn;
          profile = `, instance profile ${arn}`;
        }
      } catch {
        // Only for the ec2 check's hint; a node can run on other credentials.
      }
      const d = id.value;
      return passed(`IMDSv2 answers at ${endpoint}: ${d.instanceId} (${d.instanceType} in ${d.availabilityZone})${profile}`);
    },
  };
}

const DENIED = new Set(["UnauthorizedOperation", "AccessDenied", "AccessDeniedException", "AuthFailure", "InvalidClientTokenId"]);

/** The ec2 finding for a failed call. */
export function ec2Failure(action: string, e: unknown, endpoint: string, profileArn: string | undefined): CheckOutcome {
  const api = findCause(e, (x): x is Ec2ApiError => x instanceof Ec2ApiError);
  if (api && DENIED.has(api.code)) {
    const who = profileArn
      ? `the instance role (profile ${profileArn})`
      : "the credentials berth found (instance role, environment or shared file)";
    const bypass =
      action === "DescribeInstances"
        ? "; or set spec.featureGates.InstanceIdNodeName: true so the node is named by instance id and berth skips this call"
        : "";
    return failed(
      `EC2 ${action} at ${endpoint} is denied: ${api.code}: ${excerpt(api.message, 140)}`,
      `allow ec2:${action} for ${who} — the managed policy AmazonEKSWorkerNodePolicy includes it${bypass}`,
    );
  }
  return fromErrors(
    "fail",
    toBerthErrors(e, "facts.ec2-unreachable", `EC2 ${action} at ${endpoint}`),
    "check the route to the EC2 API (VPC endpoint or NAT), HTTPS_PROXY/NO_PROXY, AWS_REGION",
  );
}

export function ec2Check(deps: DoctorDeps, state: DoctorState, deadlineMs: number): CheckSpec {
  return {
    id: "ec2",
    needs: ["imds"],
    after: ["config"],
    deadlineMs,
    async run(ctx) {
      const id = state.identity;
      if (!id) return failed("no instance identity from the imds check", "see the imds check");
      const region = resolveRegion(deps.env, id.region);
      const endpoint = resolveEc2Endpoint(deps.env, region);
      const client = deps.ec2(id.region);
      const byInstanceId = state.config?.nodeConfig.featureGates?.InstanceIdNodeName === true;
      const unreachable =
        "the EC2 API is not answering: check the route to it (a VPC endpoint for ec2, or a NAT gateway) and HTTPS_PROXY/NO_PROXY";
      const done: string[] = [];
      if (!byInstanceId) {
        ctx.step(`EC2 DescribeInstances at ${endpoint}`, unreachable);
        try {
          state.privateDnsName = await client.privateDnsName(id.instanceId);
          done.push(`DescribeInstances allowed (private DNS name ${state.privateDnsName})`);
        } catch (e) {
          return ec2Failure("DescribeInstances", e, endpoint, state.instanceProfileArn);
        }
      }
      if (await tableLookup(id.instanceType)) {
        if (done.length === 0)
          return passed(`no EC2 call needed: InstanceIdNodeName names the node, and ${id.instanceType} is in berth's instance table`);
        return passed(`EC2 API at ${endpoint}: ${done.join("; ")}`);
      }
      ctx.step(`EC2 DescribeInstanceTypes at ${endpoint}`, unreachable);
      try {
        const info = await client.instanceTypeInfo(id.instanceType);
        if (!info)
          return warned(
            `EC2 does not know the instance type ${id.instanceType}; maxPods falls back to 110`,
            "set spec.kubelet.config.maxPods (or kubelet.maxPodsExpression) for this type",
          );
        done.push(`DescribeInstanceTypes allowed (${id.instanceType}: ${info.defaultEnis} ENIs × ${info.ipv4PerEni} IPv4)`);
      } catch (e) {
        const f = ec2Failure("DescribeInstanceTypes", e, endpoint, state.instanceProfileArn);
        // berth renders without it (maxPods 110), so this alone does not stop the node.
        return warned(`${f.finding}; ${id.instanceType} is not in berth's table, so maxPods falls back to 110`, f.hint);
      }
      return passed(`EC2 API at ${endpoint}: ${done.join("; ")}`);
    },
  };
}
