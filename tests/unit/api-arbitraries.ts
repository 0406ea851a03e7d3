/** fast-check generators of valid config specs, shared by the api-* tests (not a test file itself). */
import fc from "fast-check";
import { stringify as stringifyToml } from "smol-toml";
import type { BerthSpec, JsonObject, NodeConfigSpec, Task } from "../../src/api/types.ts";

// Strings that YAML 1.1 would read as something else unless quoted.
const tricky = fc.constantFrom(
  "yes",
  "no",
  "on",
  "off",
  "y",
  "N",
  "true",
  "~",
  "null",
  "010",
  "0x1F",
  "1e3",
  "1:20",
  "2024-01-02",
  "- a",
  "a: b",
  "#x",
  "",
);
const str = fc.oneof(fc.string({ maxLength: 8 }), tricky);
const nonEmpty = fc.oneof(
  fc.string({ minLength: 1, maxLength: 8 }),
  tricky.filter((s) => s !== ""),
);
/** No whitespace (one resolved.conf entry, one image reference), still including YAML's tricky words. */
const word = nonEmpty.filter((s) => !/\s/.test(s));
const imageRef = fc.oneof(
  fc.constantFrom("busybox", "registry.k8s.io/pause:3.10", "public.ecr.aws/x/y@sha256:0a1b"),
  fc.stringMatching(/^[a-z0-9][a-z0-9._/:-]{0,10}$/),
);

/** JSON without -0 (YAML has no -0 for integers) and with stable numbers. */
export const jsonObject: fc.Arbitrary<JsonObject> = fc
  .dictionary(fc.oneof(fc.string({ maxLength: 6 }), fc.constantFrom("a", "b", "c")), fc.jsonValue({ maxDepth: 3 }), { maxKeys: 4 })
  .map((o) => JSON.parse(JSON.stringify(o)) as JsonObject)
  // Keep clear of the kubelet fields the schema type-checks, and of `__proto__` keys (decode refuses them anywhere).
  .filter((o) => !("maxPods" in o) && !("clusterDNS" in o) && !JSON.stringify(o).includes('"__proto__"'));

const tomlKey = fc.constantFrom("a", "b", "version", "grpc", "plugins");
const tomlValue = fc.oneof(
  fc.integer({ min: -5, max: 5 }),
  fc.boolean(),
  fc.string({ maxLength: 5 }),
  fc.array(fc.integer({ min: 0, max: 3 }), { maxLength: 3 }),
);
const tomlTable = fc.dictionary(tomlKey, fc.oneof(tomlValue, fc.dictionary(tomlKey, tomlValue, { maxKeys: 3 })), { maxKeys: 4 });
export const tomlText = tomlTable.map((t) => stringifyToml(t));

const ip = fc.oneof(fc.ipV4(), fc.constantFrom("::1", "fd00::10"));

export const nodeSpec: fc.Arbitrary<NodeConfigSpec> = fc.record(
  {
    cluster: fc.record(
      {
        name: str,
        apiServerEndpoint: fc.constantFrom("https://example.com", "https://a.b.eks.amazonaws.com:443/x", "http://127.0.0.1"),
        certificateAuthority: fc.constantFrom("Y2VydGlmaWNhdGVBdXRob3JpdHk=", "YQ==", "YWJj"),
        cidr: fc.constantFrom("10.100.0.0/16", "172.20.0.0/16", "fd00::/108"),
        enableOutpost: fc.boolean(),
        id: str,
      },
      { requiredKeys: [] },
    ),
    containerd: fc.record({ config: tomlText, baseRuntimeSpec: jsonObject }, { requiredKeys: [] }),
    instance: fc.record(
      {
        localStorage: fc.record(
          {
            strategy: fc.constantFrom("RAID0", "RAID10", "Mount" as const),
            mountPath: nonEmpty,
            disabledMounts: fc.array(fc.constantFrom("Containerd", "PodLogs", "SOCI" as const), { maxLength: 3 }),
          },
          { requiredKeys: [] },
        ),
        environment: fc.dictionary(
          fc.constantFrom("default", "kubelet", "containerd"),
          fc.dictionary(fc.constantFrom("A", "B", "C"), str, { maxKeys: 3 }),
          { maxKeys: 3 },
        ),
        network: fc.record(
          { nameservers: fc.array(ip, { maxLength: 3 }), domains: fc.array(word, { maxLength: 2 }) },
          { requiredKeys: [] },
        ),
      },
      { requiredKeys: [] },
    ),
    kubelet: fc.record(
      {
        config: jsonObject,
        flags: fc.array(
          fc.string({ maxLength: 6 }).map((s) => `--${s}`),
          { maxLength: 3 },
        ),
        maxPodsExpression: str,
      },
      { requiredKeys: [] },
    ),
    featureGates: fc.record({ InstanceIdNodeName: fc.boolean(), FastImagePull: fc.boolean() }, { requiredKeys: [] }),
  },
  { requiredKeys: [] },
);

const taskName = fc.constantFrom("warm", "pull", "a", "b-1", "setup");
const task: fc.Arbitrary<Task> = fc.oneof(
  fc.record({ name: taskName, pullImages: fc.array(imageRef, { minLength: 1, maxLength: 2 }) }),
  fc.record({ name: taskName, script: nonEmpty.filter((s) => s.trim() !== "") }),
);

export const berthSpec: fc.Arbitrary<BerthSpec> = fc.record(
  {
    run: fc.record(
      {
        criReadyTimeoutMs: fc.integer({ min: 1000, max: 60000 }),
        sandboxImageArchive: fc.constantFrom("/opt/pause.tar"),
        unitJobTimeoutMs: fc.integer({ min: 1000, max: 60000 }),
      },
      { requiredKeys: [] },
    ),
    tasks: fc.uniqueArray(task, { selector: (t) => t.name, maxLength: 3 }),
    rebootAfterBootstrap: fc.boolean(),
    agent: fc.record(
      {
        intervalMs: fc.integer({ min: 10000, max: 60000 }),
        fastIntervalMs: fc.integer({ min: 100, max: 10000 }),
        probeTimeoutMs: fc.integer({ min: 1, max: 5000 }),
        failureThreshold: fc.integer({ min: 1, max: 10 }),
        restartBudget: fc.integer({ min: 1, max: 10 }),
        listenAddress: fc.constantFrom("127.0.0.1:9100", "[::1]:9100", ":9100"),
        kubeletHealthzUrl: fc.constantFrom("http://127.0.0.1:10248/healthz"),
      },
      { requiredKeys: [] },
    ),
    validation: fc.constantFrom("strict" as const, "warn" as const),
  },
  { requiredKeys: [] },
);
