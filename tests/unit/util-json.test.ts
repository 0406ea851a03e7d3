import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { parse as parseToml, TomlDate } from "smol-toml";
import {
  canonicalJson,
  compareKeys,
  deepMerge,
  isPlainObject,
  sortKeys,
  type MergeOptions,
  type PlainObject,
} from "../../src/util/json.ts";

// JSON objects as JSON.parse builds them: `__proto__` is a frequent key and stays an own data property.
const key = fc.oneof(fc.constantFrom("__proto__", "a", "b", "kind", "apiVersion", "constructor"), fc.string({ maxLength: 5 }));
const { json } = fc.letrec((tie) => ({
  json: fc.oneof(
    { depthSize: "small" },
    fc.constant(null),
    fc.boolean(),
    fc.integer(),
    fc.string({ maxLength: 5 }),
    fc.array(tie("json"), { maxLength: 3 }),
    fc.dictionary(key, tie("json"), { maxKeys: 4 }),
  ),
}));
const obj = fc.dictionary(key, json, { maxKeys: 6 }).map((o) => JSON.parse(JSON.stringify(o)) as PlainObject);
const allOptions: MergeOptions[] = [{}, { nullDeletes: true }, { cloneOver: true }, { nullDeletes: true, cloneOver: true }];

/** The same value with the keys of every object in another order (reversed, or rotated by `n`). */
function reorder(v: unknown, n: number): unknown {
  if (Array.isArray(v)) return v.map((e) => reorder(e, n));
  if (!isPlainObject(v)) return v;
  const keys = Object.keys(v);
  const rotated = n % 2 ? keys.reverse() : [...keys.slice(n % (keys.length || 1)), ...keys.slice(0, n % (keys.length || 1))];
  return JSON.parse(`{${rotated.map((k) => `${JSON.stringify(k)}:${JSON.stringify(reorder(v[k], n + 1))}`).join(",")}}`);
}

/** Every own key path holding `__proto__` is data, and no object's prototype was swapped. */
function assertProtoIsData(v: unknown): void {
  if (Array.isArray(v)) return v.forEach(assertProtoIsData);
  if (v === null || typeof v !== "object") return;
  assert.ok(isPlainObject(v), "every object keeps a plain prototype");
  for (const k of Object.keys(v)) assertProtoIsData(v[k]);
}

test("property: merging with {} is the identity, on either side, for every option", () => {
  fc.assert(
    fc.property(obj, (x) => {
      for (const o of allOptions) assert.deepStrictEqual(deepMerge(x, {}, o), x);
      assert.deepStrictEqual(deepMerge({}, x), x);
      assert.deepStrictEqual(deepMerge({}, x, { cloneOver: true }), x);
    }),
  );
});

test("property: the later object wins at every leaf; inputs are not mutated", () => {
  fc.assert(
    fc.property(obj, obj, (a, b) => {
      const before = JSON.stringify([a, b]);
      const m = deepMerge(a, b);
      assert.equal(JSON.stringify([a, b]), before);
      for (const [k, v] of Object.entries(b)) if (!isPlainObject(v)) assert.deepStrictEqual(m[k], v);
      for (const k of Object.keys(a)) assert.ok(Object.hasOwn(m, k));
      assert.deepStrictEqual(deepMerge(m, b), m);
    }),
  );
});

test("property: sorted output is independent of key order", () => {
  fc.assert(
    fc.property(obj, fc.nat(7), (x, n) => {
      const y = reorder(x, n);
      assert.equal(canonicalJson(y), canonicalJson(x));
      assert.equal(canonicalJson(y, 4, { first: ["kind", "apiVersion"] }), canonicalJson(x, 4, { first: ["kind", "apiVersion"] }));
      assert.deepStrictEqual(sortKeys(y), sortKeys(x));
      // Same content, only the order changed; and sorting is idempotent.
      assert.deepStrictEqual(JSON.parse(canonicalJson(x)), JSON.parse(JSON.stringify(x)));
      assert.equal(canonicalJson(sortKeys(x)), canonicalJson(x));
    }),
  );
});

test("property: __proto__ stays data through merge and sort", () => {
  fc.assert(
    fc.property(obj, obj, (a, b) => {
      for (const o of allOptions) assertProtoIsData(deepMerge(a, b, o));
      assertProtoIsData(sortKeys(a));
      assert.equal(({} as PlainObject)["polluted"], undefined);
    }),
  );
  const over = JSON.parse('{"__proto__":{"polluted":1,"x":{"y":1}}}') as PlainObject;
  for (const o of allOptions) {
    const once = deepMerge({}, over, o);
    const twice = deepMerge(once, JSON.parse('{"__proto__":{"x":{"z":2}}}') as PlainObject, o);
    assert.deepEqual(Object.keys(twice), ["__proto__"]);
    assert.deepStrictEqual(twice["__proto__"], { polluted: 1, x: { y: 1, z: 2 } });
    assert.equal((twice as { polluted?: unknown }).polluted, undefined);
  }
  assert.equal(canonicalJson(over), '{"__proto__":{"polluted":1,"x":{"y":1}}}');
});

test("nullDeletes: null removes the key where objects merge; elsewhere null is a value", () => {
  const base: PlainObject = { a: { b: 1, c: 2 }, d: 3 };
  assert.deepStrictEqual(deepMerge(base, { a: { b: null }, d: null }, { nullDeletes: true }), { a: { c: 2 } });
  assert.deepStrictEqual(deepMerge(base, { a: { b: null }, d: null }), { a: { b: null, c: 2 }, d: null });
  // A subtree taken whole from `over` keeps its nulls: there is nothing in base to delete from.
  assert.deepStrictEqual(deepMerge(base, { e: { f: null } }, { nullDeletes: true }), { a: { b: 1, c: 2 }, d: 3, e: { f: null } });
  assert.deepStrictEqual(deepMerge(base, { missing: null }, { nullDeletes: true }), base);
});

test("arrays, class instances and undefined: replace, stay leaves, mean absent", () => {
  assert.deepStrictEqual(deepMerge({ l: [1, 2, 3] }, { l: [4] }), { l: [4] });
  const t = parseToml("d = 2024-01-02\n[t]\nx = 1") as PlainObject;
  const u = parseToml("d = 1979-05-27T07:32:00Z\n[t]\ny = 2") as PlainObject;
  const m = deepMerge(t, u);
  assert.ok(m["d"] instanceof TomlDate, "a date replaces, it is not merged into");
  assert.equal(m["d"].toISOString(), "1979-05-27T07:32:00.000Z");
  assert.deepEqual({ ...(m["t"] as object) }, { x: 1, y: 2 });
  assert.ok(sortKeys(m)["d"] === m["d"], "sortKeys leaves class instances alone");
  assert.deepStrictEqual(deepMerge<PlainObject>({ a: 1 }, { a: undefined }), { a: 1 });
  assert.equal(canonicalJson({ b: undefined, a: [undefined] }), '{"a":[null]}');
});

test("cloneOver: the result shares no object with `over`; base order then new keys", () => {
  const over: PlainObject = { l: [1], o: { p: {} } };
  const shared = deepMerge({}, over);
  const cloned = deepMerge({}, over, { cloneOver: true });
  assert.equal(shared["l"], over["l"]);
  assert.notEqual(cloned["l"], over["l"]);
  assert.notEqual(cloned["o"], over["o"]);
  assert.deepStrictEqual(cloned, over);
  assert.deepEqual(Object.keys(deepMerge<PlainObject>({ z: 1, a: 1 }, { m: 1, z: 2 })), ["z", "a", "m"]);
});

test("sortKeys: `first` applies to the top level only; order is code-unit order", () => {
  const v = { z: 1, apiVersion: "v", kind: "K", a: { kind: 1, b: 2 } };
  assert.equal(canonicalJson(v, 0, { first: ["kind", "apiVersion"] }), '{"kind":"K","apiVersion":"v","a":{"b":2,"kind":1},"z":1}');
  assert.equal(canonicalJson({ apiVersion: "v", b: 1 }, 0, { first: ["kind", "apiVersion"] }), '{"apiVersion":"v","b":1}');
  fc.assert(fc.property(fc.array(fc.string()), (ks) => assert.deepEqual([...ks].sort(compareKeys), [...ks].sort())));
  assert.deepEqual(Object.keys(sortKeys({ b: 1, B: 1, _: 1, "1": 1, é: 1 })), ["1", "B", "_", "b", "é"]);
});
