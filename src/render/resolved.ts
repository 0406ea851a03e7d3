/**
 * `spec.instance.network` → `/run/systemd/resolved.conf.d/40-eks.conf`
 * (systemd-resolved `DNS=` and `Domains=`), byte-compatible with nodeadm:
 * a `[Resolve]` header, then one line for DNS and one for Domains, each empty
 * when its list is empty. Nothing is written when both lists are empty.
 */

import type { NodeConfigSpec } from "../api/types.ts";
import type { PlannedFile } from "../plan/types.ts";
import { fail, ok } from "../util/result.ts";
import type { BerthError, Result } from "../util/result.ts";
import { isNetworkEntry } from "../api/rules.ts";
import { RESOLVED_DROPIN_PATH } from "../util/node-layout.ts";

export function renderResolved(spec: NodeConfigSpec): Result<PlannedFile[]> {
  const nameservers = spec.instance?.network?.nameservers ?? [];
  const domains = spec.instance?.network?.domains ?? [];
  const errors: BerthError[] = [];
  const check = (list: string[], field: string): void =>
    list.forEach((v, i) => {
      // Validation's rule (api/rules.ts): entries are space-separated on one line.
      if (!isNetworkEntry(v)) {
        errors.push({
          code: "config.network-entry",
          message:
            `${JSON.stringify(v)} cannot be a ${field === "nameservers" ? "nameserver" : "search domain"}: it is empty ` +
            `or contains whitespace`,
          where: { path: `spec.instance.network.${field}[${i}]` },
          hint: "give one address or domain per list item",
        });
      }
    });
  check(nameservers, "nameservers");
  check(domains, "domains");
  if (errors.length > 0) return fail(...errors);
  if (nameservers.length === 0 && domains.length === 0) return ok([]);
  const dns = nameservers.length ? `DNS=${nameservers.join(" ")}` : "";
  const dom = domains.length ? `Domains=${domains.join(" ")}` : "";
  return ok([{ path: RESOLVED_DROPIN_PATH, content: `[Resolve]\n${dns}\n${dom}\n`, mode: 0o644, component: "resolved" }]);
}
