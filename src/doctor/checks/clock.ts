/**
 * `clock`: is the system clock synchronised? Asked of systemd-timedated over
 * D-Bus (org.freedesktop.timedate1, properties `NTPSynchronized` — the
 * kernel's own "synchronised" flag — and `NTP`, whether a time-sync service is
 * enabled), never by running timedatectl. A skewed clock breaks TLS (a
 * certificate "not yet valid") and the signed tokens of `aws eks get-token`.
 * Unsynchronised is a warning: it does not prove a skew, only that nothing
 * keeps the clock from drifting.
 */
import { PROPS } from "../../host/systemd-bus.ts";
import { errorMessage } from "../../util/errors.ts";
import type { DoctorDeps } from "../deps.ts";
import { excerpt, passed, warned } from "../outcome.ts";
import type { CheckOutcome, CheckSpec } from "../types.ts";

export const TIMEDATE_SERVICE = "org.freedesktop.timedate1";
const TIMEDATE_PATH = "/org/freedesktop/timedate1";

/** What systemd-timedated says, as the clock finding. Pure. */
export function clockOutcome(ntpSynchronized: boolean, ntpEnabled: boolean | undefined): CheckOutcome {
  if (ntpSynchronized) return passed("the clock is synchronised (systemd-timedated: NTPSynchronized=yes)");
  if (ntpEnabled === false) {
    return warned(
      "the clock is not synchronised and no time-sync service is enabled (NTPSynchronized=no, NTP=no)",
      "enable one: timedatectl set-ntp true (chronyd or systemd-timesyncd; on EC2 the Amazon Time Sync Service is at " +
        "169.254.169.123); a skewed clock breaks TLS and aws eks get-token",
    );
  }
  return warned(
    "a time-sync service is enabled but the clock is not synchronised yet (NTPSynchronized=no)",
    "check it: chronyc tracking or timedatectl timesync-status; it must reach a time source (169.254.169.123 on EC2) — a skewed clock " +
      "breaks TLS and aws eks get-token",
  );
}

/** A D-Bus property value: dbus-next hands a Variant (`{ signature, value }`). */
function variantValue(v: unknown): unknown {
  return typeof v === "object" && v !== null && "value" in v ? v.value : v;
}

export function clockCheck(deps: DoctorDeps, deadlineMs: number): CheckSpec {
  return {
    id: "clock",
    needs: [],
    deadlineMs,
    async run(ctx) {
      const unknown =
        "check the clock by hand (timedatectl); run berth doctor as root on the node, where systemd-timedated answers on the system bus";
      ctx.step(`systemd-timedated over D-Bus (${deps.busAddress})`, unknown);
      const get = async (prop: string): Promise<unknown> => {
        const bus = await deps.bus();
        const r = await bus.call("Get", {
          destination: TIMEDATE_SERVICE,
          path: TIMEDATE_PATH,
          iface: PROPS,
          signature: "ss",
          body: [TIMEDATE_SERVICE, prop],
          timeoutMs: ctx.remaining(),
        });
        return variantValue(r.body[0]);
      };
      try {
        const [synced, ntp] = await Promise.all([get("NTPSynchronized"), get("NTP").catch(() => undefined)]);
        if (typeof synced !== "boolean")
          return warned(`systemd-timedated answered NTPSynchronized=${JSON.stringify(synced)}, not a boolean`, unknown);
        return clockOutcome(synced, typeof ntp === "boolean" ? ntp : undefined);
      } catch (e) {
        return warned(`cannot ask systemd-timedated whether the clock is synchronised: ${excerpt(errorMessage(e), 200)}`, unknown);
      }
    },
  };
}
