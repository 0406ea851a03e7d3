/**
 * instance.localStorage through the release executable's config phase, on a
 * scratch root whose /dev/disk/by-id holds two instance-store links (the
 * "devices" are plain files: the config phase only resolves them): `--dry-run`
 * shows the mount units and writes nothing, a first `init --skip run` writes
 * them, a second writes nothing.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdir, symlink, writeFile } from "node:fs/promises";
import path from "node:path";
import { useAwsStandIns } from "../fixtures/aws-standins.ts";
import { ensureRelease, EXE, NO_STACK, runCli, scratchDirs, tree } from "../fixtures/cli.ts";
import { seedNodeRoot } from "../fixtures/node.ts";

const scratchDir = scratchDirs("berth-cli-local-storage-");

const aws = useAwsStandIns();
before(ensureRelease);
after(scratchDir.removeAll);

const berth = (args: string[]) => runCli(EXE, args, { env: aws.env() });

async function nodeWithDisks(): Promise<string> {
  const root = await scratchDir.make();
  await seedNodeRoot(root);
  await writeFile(
    path.join(root, "etc/eks/nodeadm.d/50-local-storage.yaml"),
    "apiVersion: node.eks.aws/v1alpha1\nkind: NodeConfig\nspec:\n  instance:\n    localStorage:\n      strategy: Mount\n",
  );
  await mkdir(path.join(root, "dev/disk/by-id"), { recursive: true });
  for (const [dev, serial] of [
    ["nvme1n1", "AWS1111"],
    ["nvme2n1", "AWS2222"],
  ] as const) {
    await writeFile(path.join(root, "dev", dev), "");
    await symlink(`../../${dev}`, path.join(root, `dev/disk/by-id/nvme-Amazon_EC2_NVMe_Instance_Storage_${serial}`));
  }
  return root;
}

test("init --dry-run shows the mount units for the instance-store disks; init writes them once; a re-run writes nothing", async () => {
  const root = await nodeWithDisks();
  const args = ["init", "--skip", "run", "--root", root, "-c", "file:///etc/eks/nodeadm.d/"];
  const before = await tree(root);
  const dry = await berth([...args, "--dry-run"]);
  assert.equal(dry.code, 0, dry.stderr);
  assert.doesNotMatch(dry.stderr, NO_STACK);
  assert.deepEqual(await tree(root), before, "a dry run writes nothing");
  // git's quoting of a path with a backslash: "b/…\\x2d…"
  assert.ok(dry.stdout.includes('+++ "b/etc/systemd/system/mnt-k8s\\\\x2ddisks-1.mount"\n'), dry.stdout);
  assert.match(dry.stdout, /^\+What=\/dev\/disk\/by-id\/nvme-Amazon_EC2_NVMe_Instance_Storage_AWS1111$/m);
  assert.match(dry.stdout, /^\+Where=\/mnt\/k8s-disks\/2$/m);
  assert.match(dry.stdout, /^\+Wants=mnt-k8s\\x2ddisks-1\.mount mnt-k8s\\x2ddisks-2\.mount$/m);

  const first = await berth(args);
  assert.equal(first.code, 0, first.stderr);
  for (const p of ["mnt-k8s\\x2ddisks-1.mount", "mnt-k8s\\x2ddisks-2.mount", "multi-user.target.d/20-berth-local-storage.conf"]) {
    assert.ok(first.stdout.includes(`wrote     /etc/systemd/system/${p}\n`), `${p} not written:\n${first.stdout}`);
  }
  const second = await berth(args);
  assert.equal(second.code, 0, second.stderr);
  assert.match(second.stdout, /^0 written, 0 removed, \d+ unchanged/m);
  assert.ok(second.stdout.includes("unchanged /etc/systemd/system/mnt-k8s\\x2ddisks-1.mount\n"));
});
