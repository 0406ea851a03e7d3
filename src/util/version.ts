/**
 * Lenient semver-ish parsing for the versions berth sees on a node:
 * `1.35.0-eks-5e0fdde`, `v1.29.3`, `2.0.5`, `1.7.27-1.amzn2023.0.1`, `1.31`.
 *
 * Hand-written rather than a semver library because kubelet/containerd
 * version strings are not strict semver (leading `v`, missing patch, vendor
 * suffixes) and berth only ever needs "is this at least X.Y(.Z)".
 */

export interface Version {
  major: number;
  minor: number;
  patch: number;
  /** Anything after the numeric core (without the leading `-` or `+`), e.g. `eks-5e0fdde`. */
  pre?: string;
}

const VERSION_RE = /^v?(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:[-+~.](.*))?$/;

/** Parse a version string; undefined when it does not start with a number. */
export function parseVersion(s: string): Version | undefined {
  const m = VERSION_RE.exec(s.trim());
  if (!m) return undefined;
  const v: Version = { major: Number(m[1]), minor: Number(m[2] ?? 0), patch: Number(m[3] ?? 0) };
  if (m[4] !== undefined && m[4] !== "") v.pre = m[4];
  return v;
}

/**
 * Order by major, minor, patch only. Vendor suffixes (`-eks-…`, `-1.amzn2023`)
 * are builds of that release, not pre-releases, so `1.35.0-eks-x` counts as
 * 1.35.0 (nodeadm compares kubelet versions the same way for its thresholds).
 */
function compareVersions(a: Version, b: Version): number {
  return a.major - b.major || a.minor - b.minor || a.patch - b.patch;
}

/** `v >= min` on major.minor.patch; an unparsable `v` is never at least anything. */
export function versionAtLeast(v: string, min: string): boolean {
  const pv = parseVersion(v);
  const pm = parseVersion(min);
  if (!pv || !pm) return false;
  return compareVersions(pv, pm) >= 0;
}
