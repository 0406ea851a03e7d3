/**
 * What the run phase and `berth task` need from containerd's config.toml
 * (schema 2 or 3): the sandbox image and the CRI socket. Pure: the caller
 * reads the file; a missing or unreadable config means containerd's defaults.
 * Never validates containerd's config (containerd does that).
 */
import { DEFAULT_SANDBOX_IMAGE } from "../../render/containerd.ts";
import { parseToml, tomlAt } from "../../util/toml.ts";
import { CONTAINERD_SOCKET } from "../../util/node-layout.ts";

export function containerdRuntimeSettings(tomlText: string | undefined): { sandboxImage: string; socket: string } {
  let sandboxImage = DEFAULT_SANDBOX_IMAGE;
  let socket = CONTAINERD_SOCKET;
  if (tomlText === undefined) return { sandboxImage, socket };
  const parsed = parseToml(tomlText);
  if (!parsed.ok) return { sandboxImage, socket };
  const t = parsed.value;
  const v2 = tomlAt(t, "plugins", "io.containerd.grpc.v1.cri", "sandbox_image");
  const v3 = tomlAt(t, "plugins", "io.containerd.cri.v1.images", "pinned_images", "sandbox");
  if (typeof v3 === "string" && v3) sandboxImage = v3;
  else if (typeof v2 === "string" && v2) sandboxImage = v2;
  const addr = tomlAt(t, "grpc", "address");
  if (typeof addr === "string" && addr) socket = addr;
  return { sandboxImage, socket };
}
