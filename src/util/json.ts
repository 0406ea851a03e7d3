/**
 * Plain-data helpers shared by the config merge (api), the renderers and the
 * config cache: one plain-object test, one deep merge, one recursive key sort.
 *
 * "Plain object" means prototype `Object.prototype` or `null`: what
 * JSON.parse, yaml and zod produce, and smol-toml's tables (null prototype).
 * Everything else is a leaf, never recursed into: arrays, and class instances
 * such as smol-toml's `TomlDate`, which is a TOML value (it must stay an
 * instance for the TOML writers). For values typed `JsonValue` this agrees
 * with a bare `typeof v === "object"` test.
 *
 * Every write goes through `setOwn`, so a `__proto__` key stays an own data
 * property instead of replacing the object's prototype. The YAML decoder
 * rejects such keys, but JSON.parse, smol-toml and hand-built values in the
 * pure core can still carry one.
 */

export type PlainObject = Record<string, unknown>;

export function isPlainObject(v: unknown): v is PlainObject {
  if (v === null || typeof v !== "object" || Array.isArray(v)) return false;
  const proto: unknown = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

export function hasOwn(o: object, k: string): boolean {
  return Object.prototype.hasOwnProperty.call(o, k);
}

/** `o[k] = v`, except that `k === "__proto__"` becomes an own data property, not the prototype. */
export function setOwn(o: PlainObject, k: string, v: unknown): void {
  if (k === "__proto__") Object.defineProperty(o, k, { value: v, enumerable: true, writable: true, configurable: true });
  else o[k] = v;
}

/**
 * Key order of every sorted output: UTF-16 code units, which is what
 * `Array.prototype.sort()` does with strings. Go sorts map keys bytewise
 * (UTF-8); the two disagree only between a character above U+FFFF and one in
 * U+E000..U+FFFF, never for the ASCII keys of kubelet, containerd and OCI configs.
 */
export function compareKeys(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

export interface MergeOptions {
  /**
   * A `null` in `over` removes the key from the result (berth's extension for
   * `containerd.baseRuntimeSpec`, where nodeadm cannot remove a default).
   * Without it `null` is a value that wins like any other leaf, which is the
   * NodeConfig rule for `kubelet.config`.
   */
  nullDeletes?: boolean;
  /**
   * structuredClone every value taken from `over`, so the result shares no
   * object with it and a caller may edit the result without touching the
   * user's spec. Not for TOML trees: a clone of a `TomlDate` is a bare `Date`.
   */
  cloneOver?: boolean;
}

/**
 * Deep merge, `over` wins: plain objects merge key by key, everything else
 * (arrays, scalars, `null`, class instances) from `over` replaces. An
 * `undefined` in `over` means "absent" and leaves `base` alone. Key order:
 * `base`'s keys, then new keys in `over`'s order. Neither input is mutated;
 * without `cloneOver` the result shares unchanged subtrees with both.
 */
export function deepMerge<T extends object>(base: T, over: T, opts: MergeOptions = {}): T {
  return mergeInto(base as PlainObject, over as PlainObject, opts) as T;
}

function mergeInto(base: PlainObject, over: PlainObject, opts: MergeOptions): PlainObject {
  // Spread copies own enumerable keys with define semantics, so a `__proto__` key of `base` stays data.
  const out: PlainObject = { ...base };
  for (const [k, v] of Object.entries(over)) {
    if (v === undefined) continue;
    if (v === null && opts.nullDeletes) {
      delete out[k];
      continue;
    }
    // hasOwn: an inherited member (Object.prototype for `__proto__`) is never merged into.
    const cur = hasOwn(out, k) ? out[k] : undefined;
    setOwn(out, k, isPlainObject(cur) && isPlainObject(v) ? mergeInto(cur, v, opts) : opts.cloneOver ? structuredClone(v) : v);
  }
  return out;
}

export interface SortOptions {
  /** Keys written first, in this order, at the top level only (`kind`, `apiVersion` in kubelet files). */
  first?: readonly string[];
}

/**
 * A copy with the keys of every plain object sorted (`compareKeys`), at every
 * depth, arrays kept in order. Keys whose value is `undefined` are dropped
 * (JSON has no such value). Non-plain objects are returned as they are.
 */
export function sortKeys<T>(value: T, opts: SortOptions = {}): T {
  return sortAt(value, opts.first ?? []) as T;
}

function sortAt(v: unknown, first: readonly string[]): unknown {
  if (Array.isArray(v)) return v.map((e: unknown) => sortAt(e, []));
  if (!isPlainObject(v)) return v;
  const lead = first.filter((k) => hasOwn(v, k));
  const keys = [
    ...lead,
    ...Object.keys(v)
      .sort(compareKeys)
      .filter((k) => !lead.includes(k)),
  ];
  const out: PlainObject = {};
  for (const k of keys) {
    const x = v[k];
    if (x !== undefined) setOwn(out, k, sortAt(x, []));
  }
  return out;
}

/** Deterministic JSON text: `sortKeys`, then JSON.stringify (no trailing newline). */
export function canonicalJson(value: unknown, indent = 0, opts: SortOptions = {}): string {
  return JSON.stringify(sortKeys(value, opts), null, indent);
}
