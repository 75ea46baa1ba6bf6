// Keys (docs/SPEC.md §1), stamps and the hybrid logical clock (§2), content hashes (blake3,
// 64 lower-case hex digits) and the wire item types of docs/PROTOCOL.md. Pure: no I/O.
// Mirrors crates/sync-core/src/{key,stamp,hash}.rs; a change of rule goes there first.

import { blake3 } from "@noble/hashes/blake3.js";
import { SyncError } from "./errors.js";

/** An item in JSON (docs/PROTOCOL.md "An item"). */
export interface Item {
  key: string;
  kind: "file" | "folder";
  rev: number;
  hash: string | null;
  size: number;
  stamp: string;
  deleted: boolean;
}

/** A version in JSON (docs/PROTOCOL.md "A version"). */
export interface Version {
  rev: number;
  hash: string | null;
  size: number;
  stamp: string;
  deleted: boolean;
}

const MAX_SEGMENT_BYTES = 255;
const MAX_KEY_BYTES = 1024;
const MAX_KEY_DEPTH = 64;

/** Bidirectional controls and zero-width characters (`KeyRule::Invisible` in Rust). */
function isInvisible(c: number): boolean {
  return (
    c === 0x061c ||
    c === 0x180e ||
    (c >= 0x200b && c <= 0x200f) ||
    (c >= 0x202a && c <= 0x202e) ||
    (c >= 0x2060 && c <= 0x2064) ||
    (c >= 0x2066 && c <= 0x2069) ||
    c === 0xfeff
  );
}
const encoder = new TextEncoder();

/** The blake3 hash of `bytes`, as 64 lower-case hex digits. */
export function hashHex(bytes: Uint8Array): string {
  const h = blake3(bytes);
  let s = "";
  for (const b of h) s += b.toString(16).padStart(2, "0");
  return s;
}

/**
 * The key of docs/SPEC.md §1 for `input`: NFC, then every rule checked. Throws a
 * {@link SyncError} of class `item`, code `invalid_key`, naming the rule.
 */
export function checkKey(input: string): string {
  const key = input.normalize("NFC");
  const fail = (rule: string) =>
    new SyncError("item", "invalid_key", `invalid key ${JSON.stringify(input)}: ${rule}; rename it`, {
      key: input,
    });
  if (key === "") throw fail("it is empty");
  if (key.startsWith("/")) throw fail("keys are relative, it must not start with /");
  for (const ch of key) {
    const c = ch.codePointAt(0)!;
    if (c === 0) throw fail("it contains NUL");
    if (ch === "\\") throw fail("it contains a backslash");
    if (c < 0x20 || (c >= 0x7f && c <= 0x9f)) throw fail("it contains a control character");
    if (isInvisible(c)) throw fail("it contains a bidirectional control or a zero-width character");
  }
  const segments = key.split("/");
  if (segments.length > MAX_KEY_DEPTH) throw fail("it has more than 64 segments");
  for (const seg of segments) {
    if (seg === "") throw fail("it has an empty segment (// or a trailing /)");
    if (seg === "." || seg === "..") throw fail("it has a . or .. segment");
    if (encoder.encode(seg).length > MAX_SEGMENT_BYTES) throw fail("a segment is over 255 bytes");
  }
  if (encoder.encode(key).length > MAX_KEY_BYTES) throw fail("it is over 1024 bytes");
  return key;
}

/** A stamp (docs/SPEC.md §2): wall-clock ms, a counter, a node id (16 hex digits). */
export interface Stamp {
  millis: number;
  counter: number;
  node: string;
}

const STAMP_RE = /^(\d+)\.(\d+)\.([0-9a-fA-F]{16})$/;

/** Parses `<millis>.<counter>.<node as 16 hex digits>`. */
export function parseStamp(s: string): Stamp {
  const m = STAMP_RE.exec(s);
  if (!m) {
    throw new SyncError("offline", "invalid_stamp", `invalid stamp ${JSON.stringify(s.slice(0, 80))} from the server`);
  }
  return { millis: Number(m[1]), counter: Number(m[2]), node: m[3]!.toLowerCase() };
}

/** The wire form of a stamp. */
export function formatStamp(s: Stamp): string {
  return `${s.millis}.${s.counter}.${s.node}`;
}

/** Orders stamps by (millis, counter, node). */
export function compareStamps(a: Stamp, b: Stamp): number {
  return a.millis - b.millis || a.counter - b.counter || (a.node < b.node ? -1 : a.node > b.node ? 1 : 0);
}

const U32_MAX = 0xffffffff;

/** The smallest stamp of `node` newer than `s` (Rust `Stamp::successor`). */
export function successor(s: Stamp, node: string): Stamp {
  if (node > s.node) return { ...s, node };
  if (s.counter < U32_MAX) return { millis: s.millis, counter: s.counter + 1, node };
  return { millis: s.millis + 1, counter: 0, node };
}

/**
 * The stamp of a local edit made at `modifiedMillis` by `node` on top of the version stamped
 * `base`: the edit time, but always newer than `base` (Rust `Stamp::for_edit`), so an edit
 * made after seeing a version never loses to it.
 */
export function stampForEdit(modifiedMillis: number, node: string, base: Stamp | null): Stamp {
  const own: Stamp = { millis: modifiedMillis, counter: 0, node };
  if (base && compareStamps(own, base) <= 0) return successor(base, node);
  return own;
}

/** A random node id, 16 lower-case hex digits. */
export function randomNode(): string {
  const b = new Uint8Array(8);
  globalThis.crypto.getRandomValues(b);
  let s = "";
  for (const x of b) s += x.toString(16).padStart(2, "0");
  return s;
}

/**
 * The hybrid logical clock of docs/SPEC.md §2: the wall clock, never behind a stamp it has
 * seen. Local edits take `now()` as their modification time.
 */
export class Clock {
  private last = 0;
  constructor(private readonly wall: () => number = Date.now) {}

  /** Absorbs a stamp (or server time) seen, so later edits are newer. */
  observe(millis: number): void {
    if (millis > this.last) this.last = millis;
  }

  /** The time of a local edit now: the wall clock, but never behind what was seen. */
  now(): number {
    const t = Math.max(this.wall(), this.last);
    this.last = t;
    return t;
  }
}
