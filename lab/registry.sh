#!/usr/bin/env bash
# Runs the lab registry in the foreground (Ctrl-C stops it and removes its
# storage): Debian's docker-registry on 127.0.0.1:<free port>, with the lab's
# pause image pushed as kubernetes/pause:latest. Prints the address and the
# hosts.toml a node needs. Tests use startRegistry() from tests/lab/lab.ts.
set -euo pipefail
cd "$(dirname "$0")/.."
exec node --import tsx --input-type=module -e '
import { startRegistry, pushPauseImage, registryHostsToml, PAUSE_IMAGE } from "./tests/lab/lab.ts";
const reg = await startRegistry();
const digest = await pushPauseImage(reg);
process.stdout.write(`registry: http://${reg.address} (${PAUSE_IMAGE} = ${digest})\n`);
process.stdout.write(`# /etc/containerd/certs.d/localhost/hosts.toml\n${registryHostsToml(reg)}`);
const stop = async () => { await reg.stop(); process.exit(0); };
process.on("SIGINT", stop);
process.on("SIGTERM", stop);
setInterval(() => {}, 1 << 30);
'
