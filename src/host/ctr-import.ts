/**
 * Load an image archive into containerd with `ctr images import`, because CRI
 * has no import call. The image lands in the k8s.io namespace, where CRI (and
 * so the kubelet) looks. Never a pull, never another namespace, never without
 * a deadline.
 */
import { execFile } from "node:child_process";

const IMPORT_TIMEOUT_MS = 300_000;

/** `socketPath` and `archivePath` are real paths (already under any --root). Rejects with ctr's own words. */
export function ctrImport(socketPath: string, archivePath: string): Promise<void> {
  const args = ["--address", socketPath, "--namespace", "k8s.io", "images", "import", archivePath];
  return new Promise((resolve, reject) => {
    execFile("ctr", args, { timeout: IMPORT_TIMEOUT_MS }, (err, _stdout, stderr) => {
      if (err) reject(new Error(`ctr images import ${archivePath} failed: ${stderr.trim() || err.message}`));
      else resolve();
    });
  });
}
