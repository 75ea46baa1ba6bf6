// The built-in three-way merges of docs/SPEC.md §3 ("Built-in merges"): jsonFields,
// unionById and appendOnly, ported rule for rule from crates/sync-core/src/merge/
// (json_fields.rs, union_by_id.rs, append_only.rs) so that a JS device and a Rust device
// merging the same conflict write the same bytes. The shared vectors in
// tests/vectors/merge/*.json are checked by both test suites; change a rule in both places
// and regenerate them (docs/TESTING.md). Pure functions: no I/O, no clock, no randomness.
//
// Numbers: JSON numbers are JS numbers here, so `1` and `1.0` are one value (serde_json
// keeps them apart) and floats print as JS prints them. Merged fields holding integers and
// strings give byte-identical results in both implementations; the vectors hold only those.

import { compareKeys } from "./errors.js";

/** A parsed JSON value. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** Which side's edit is newer (by stamp); decides where both sides changed the same thing. */
export type Newer = "local" | "remote";

/** Which input of a merge an error is about. */
export type Input = "base" | "local" | "remote";

/** Why a built-in merge could not run; the engine then lets the newer side win. */
export class MergeError extends Error {
  constructor(
    /** `invalid_json`, `invalid_utf8`, `not_an_array`, `missing_field` or `duplicate_id`. */
    readonly kind: "invalid_json" | "invalid_utf8" | "not_an_array" | "missing_field" | "duplicate_id",
    /** Which input. */
    readonly input: Input,
    message: string,
  ) {
    super(message);
    this.name = "MergeError";
  }
}

function isObject(v: Json | undefined): v is { [key: string]: Json } {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Deep equality of JSON values (object key order does not matter, array order does). */
export function jsonEqual(a: Json | undefined, b: Json | undefined): boolean {
  if (a === b) return true;
  if (a === undefined || b === undefined || a === null || b === null) return false;
  if (typeof a !== "object" || typeof b !== "object") return false;
  if (Array.isArray(a) || Array.isArray(b)) {
    if (!Array.isArray(a) || !Array.isArray(b) || a.length !== b.length) return false;
    return a.every((x, i) => jsonEqual(x, b[i]));
  }
  const ka = Object.keys(a);
  if (ka.length !== Object.keys(b).length) return false;
  return ka.every((k) => Object.prototype.hasOwnProperty.call(b, k) && jsonEqual(a[k], b[k]));
}

/** JSON text with object keys in code point order, as serde_json writes a `Value`. */
export function canonicalJson(v: Json): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(",")}]`;
  if (isObject(v)) {
    const keys = Object.keys(v).sort(compareKeys);
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(v[k]!)}`).join(",")}}`;
  }
  return JSON.stringify(v);
}

/** Sets an own property, safely also for `__proto__`. */
function setField(o: { [key: string]: Json }, k: string, v: Json): void {
  Object.defineProperty(o, k, { value: v, enumerable: true, writable: true, configurable: true });
}

function pick<T>(newer: Newer, local: T, remote: T): T {
  return newer === "local" ? local : remote;
}

/**
 * JSON objects merged field by field, recursively (Rust `json_fields`): a side equal to the
 * base takes the other side; a field changed on one side takes that side; changed on both
 * takes the newer, except objects which merge again field by field; deleted on one side and
 * unchanged on the other is deleted. Non-objects: the newer side whole. `base` undefined:
 * both sides created the key.
 */
export function jsonFields(base: Json | undefined, local: Json, remote: Json, newer: Newer): Json {
  if (jsonEqual(local, remote) || (base !== undefined && jsonEqual(remote, base))) return local;
  if (base !== undefined && jsonEqual(local, base)) return remote;
  if (isObject(local) && isObject(remote)) {
    return mergeObjects(isObject(base) ? base : undefined, local, remote, newer);
  }
  return pick(newer, local, remote);
}

function mergeObjects(
  base: { [key: string]: Json } | undefined,
  local: { [key: string]: Json },
  remote: { [key: string]: Json },
  newer: Newer,
): { [key: string]: Json } {
  const has = (o: { [key: string]: Json } | undefined, k: string) =>
    o !== undefined && Object.prototype.hasOwnProperty.call(o, k);
  const keys = new Set<string>([...(base ? Object.keys(base) : []), ...Object.keys(local), ...Object.keys(remote)]);
  const out: { [key: string]: Json } = {};
  for (const k of [...keys].sort(compareKeys)) {
    const merged = mergeField(
      has(base, k) ? base![k] : undefined,
      has(local, k) ? local[k] : undefined,
      has(remote, k) ? remote[k] : undefined,
      newer,
    );
    if (merged !== undefined) setField(out, k, merged);
  }
  return out;
}

/** One field; `undefined` is absent (never added, or deleted). */
function mergeField(base: Json | undefined, local: Json | undefined, remote: Json | undefined, newer: Newer): Json | undefined {
  if (jsonEqual(local, remote) || jsonEqual(remote, base)) return local;
  if (jsonEqual(local, base)) return remote;
  if (local !== undefined && remote !== undefined) return jsonFields(base, local, remote, newer);
  return pick(newer, local, remote);
}

/** A string or number id/key/order field (Rust `Scalar`). */
type Scalar = number | string;

function scalarField(element: Json, field: string): Scalar | undefined {
  if (!isObject(element) || !Object.prototype.hasOwnProperty.call(element, field)) return undefined;
  const v = element[field];
  return typeof v === "number" || typeof v === "string" ? v : undefined;
}

/** Numbers (by value, then text) before strings (by code points): Rust `Scalar::cmp`. */
function compareScalars(a: Scalar, b: Scalar): number {
  if (typeof a === "number" && typeof b === "number") {
    if (a !== b) return a < b ? -1 : 1;
    return compareKeys(String(a), String(b));
  }
  if (typeof a === "number") return -1;
  if (typeof b === "number") return 1;
  return compareKeys(a, b);
}

function scalarId(s: Scalar): string {
  return typeof s === "number" ? `n${s}` : `s${s}`;
}

function missingField(input: Input, index: number, field: string): MergeError {
  return new MergeError(
    "missing_field",
    input,
    `element ${index} of the ${input} array has no string or number field ${JSON.stringify(field)}; give every element that field, or choose the field the elements do carry`,
  );
}

interface Indexed {
  id: Scalar;
  pos: number;
  value: Json;
}

function indexById(items: Json[], field: string, input: Input): Map<string, Indexed> {
  const ids = new Map<string, Indexed>();
  items.forEach((value, pos) => {
    const id = scalarField(value, field);
    if (id === undefined) throw missingField(input, pos, field);
    const k = scalarId(id);
    if (ids.has(k)) {
      throw new MergeError(
        "duplicate_id",
        input,
        `the ${input} array holds id ${JSON.stringify(id)} twice in field ${JSON.stringify(field)}; ids must be unique within one array, so fix the duplicates or merge this key with json_fields`,
      );
    }
    ids.set(k, { id, pos, value });
  });
  return ids;
}

/**
 * Arrays of objects with an id field, merged three-way by id (Rust `union_by_id`): added on
 * either side kept (on both: jsonFields with no base); deleted on either side relative to the
 * base stays deleted; changed on both merged by jsonFields. Order: the base's survivors in
 * the base's order, then new elements by id (numbers before strings).
 * @throws MergeError `missing_field` or `duplicate_id`.
 */
export function unionById(base: Json[] | undefined, local: Json[], remote: Json[], idField: string, newer: Newer): Json[] {
  const baseIds = base !== undefined ? indexById(base, idField, "base") : new Map<string, Indexed>();
  const localIds = indexById(local, idField, "local");
  const remoteIds = indexById(remote, idField, "remote");
  if (jsonEqual(local, remote) || (base !== undefined && jsonEqual(remote, base))) return local;
  if (base !== undefined && jsonEqual(local, base)) return remote;
  const merged: Json[] = [];
  for (const b of [...baseIds.values()].sort((x, y) => x.pos - y.pos)) {
    const k = scalarId(b.id);
    const l = localIds.get(k);
    const r = remoteIds.get(k);
    if (l && r) merged.push(jsonFields(b.value, l.value, r.value, newer));
  }
  const added: { id: Scalar; value: Json }[] = [];
  for (const [k, l] of localIds) {
    if (baseIds.has(k)) continue;
    const r = remoteIds.get(k);
    added.push({ id: l.id, value: r ? jsonFields(undefined, l.value, r.value, newer) : l.value });
  }
  for (const [k, r] of remoteIds) {
    if (!baseIds.has(k) && !localIds.has(k)) added.push({ id: r.id, value: r.value });
  }
  added.sort((x, y) => compareScalars(x.id, y.id));
  return merged.concat(added.map((a) => a.value));
}

/**
 * Append-only logs (Rust `append_only`): the base's entries in the base's order, then the
 * entries of either side not in the base, one per `keyField` (the smallest order, then the
 * smallest JSON text), ordered by `orderField` then key. Equal sides give that side.
 * @throws MergeError `missing_field`.
 */
export function appendOnly(base: Json[] | undefined, local: Json[], remote: Json[], keyField: string, orderField: string): Json[] {
  const entries = (items: Json[], input: Input) =>
    items.map((value, index) => {
      const key = scalarField(value, keyField);
      if (key === undefined) throw missingField(input, index, keyField);
      const order = scalarField(value, orderField);
      if (order === undefined) throw missingField(input, index, orderField);
      return { key, order, value };
    });
  const baseEntries = entries(base ?? [], "base");
  const localEntries = entries(local, "local");
  const remoteEntries = entries(remote, "remote");
  if (jsonEqual(local, remote)) return local;
  const inBase = new Set(baseEntries.map((e) => scalarId(e.key)));
  const added = new Map<string, { key: Scalar; order: Scalar; text: string; value: Json }>();
  for (const e of [...localEntries, ...remoteEntries]) {
    const k = scalarId(e.key);
    if (inBase.has(k)) continue;
    const text = canonicalJson(e.value);
    const kept = added.get(k);
    if (kept && (compareScalars(kept.order, e.order) || compareKeys(kept.text, text)) <= 0) continue;
    added.set(k, { key: e.key, order: e.order, text, value: e.value });
  }
  const fresh = [...added.values()].sort((a, b) => compareScalars(a.order, b.order) || compareScalars(a.key, b.key));
  return [...(base ?? []), ...fresh.map((e) => e.value)];
}

const decoder = new TextDecoder("utf-8", { fatal: true });
const encoder = new TextEncoder();

function parseJson(bytes: Uint8Array, input: Input): Json {
  let text: string;
  try {
    text = decoder.decode(bytes);
  } catch {
    throw new MergeError("invalid_utf8", input, `the ${input} content is not UTF-8 text; let the newer side win`);
  }
  try {
    return JSON.parse(text) as Json;
  } catch (e) {
    throw new MergeError(
      "invalid_json",
      input,
      `the ${input} content is not valid JSON (${(e as Error).message}); fix or replace that version, or configure a merge that does not parse JSON for this key`,
    );
  }
}

function parseArray(bytes: Uint8Array, input: Input): Json[] {
  const v = parseJson(bytes, input);
  if (!Array.isArray(v)) {
    throw new MergeError(
      "not_an_array",
      input,
      `the ${input} content is not a JSON array; union_by_id and append_only need a top-level array, use json_fields for objects`,
    );
  }
  return v;
}

/** {@link jsonFields} on bytes; the result is canonical JSON (as serde_json::to_vec writes it). */
export function jsonFieldsBytes(base: Uint8Array | undefined, local: Uint8Array, remote: Uint8Array, newer: Newer): Uint8Array {
  const b = base !== undefined ? parseJson(base, "base") : undefined;
  return encoder.encode(canonicalJson(jsonFields(b, parseJson(local, "local"), parseJson(remote, "remote"), newer)));
}

/** {@link unionById} on bytes (top-level arrays). */
export function unionByIdBytes(
  base: Uint8Array | undefined,
  local: Uint8Array,
  remote: Uint8Array,
  idField: string,
  newer: Newer,
): Uint8Array {
  const b = base !== undefined ? parseArray(base, "base") : undefined;
  const merged = unionById(b, parseArray(local, "local"), parseArray(remote, "remote"), idField, newer);
  return encoder.encode(canonicalJson(merged));
}

/** {@link appendOnly} on bytes (top-level arrays). */
export function appendOnlyBytes(
  base: Uint8Array | undefined,
  local: Uint8Array,
  remote: Uint8Array,
  keyField: string,
  orderField: string,
): Uint8Array {
  const b = base !== undefined ? parseArray(base, "base") : undefined;
  const merged = appendOnly(b, parseArray(local, "local"), parseArray(remote, "remote"), keyField, orderField);
  return encoder.encode(canonicalJson(merged));
}

/** What a merge function gets: the base (if both sides agreed on one), both sides, who is newer. */
export interface MergeInput {
  key: string;
  base: Uint8Array | undefined;
  local: Uint8Array;
  remote: Uint8Array;
  newer: Newer;
}

/** A conflict merge: returns the merged bytes or throws (then the newer side wins). */
export type MergeFn = (input: MergeInput) => Uint8Array;

/** The built-in merges as merge functions, for `SyncPolicy.conflictsByPrefix`. */
export const merges = {
  jsonFields: (): MergeFn => (i) => jsonFieldsBytes(i.base, i.local, i.remote, i.newer),
  unionById: (idField: string): MergeFn => (i) => unionByIdBytes(i.base, i.local, i.remote, idField, i.newer),
  appendOnly: (keyField: string, orderField: string): MergeFn => (i) =>
    appendOnlyBytes(i.base, i.local, i.remote, keyField, orderField),
};
