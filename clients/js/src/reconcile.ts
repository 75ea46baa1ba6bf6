// The three-way reconciler for records: per key, local now (L), base (B) and remote now (R)
// to one step, by the table of docs/SPEC.md §3 ("Reconciliation"), arm for arm as
// `decide` in crates/sync-core/src/reconcile/mod.rs. Each arm below names its row of that
// table; a rule changes in SPEC §3 and in both implementations together. Pure: no I/O, no
// clock; sync.ts executes the steps. Records are file items: a remote folder (made by the
// server as the parent of `a/b`) is not a record and is left alone, unless a record has its
// key (then the row "a file | a folder" applies).

import { compareStamps, Item, parseStamp, Stamp, stampForEdit } from "./core.js";
import { compareKeys, ErrorClass } from "./errors.js";
import { MergeFn } from "./merge.js";
import { BaseEntry, RecordRow } from "./store.js";

/** Who wins a conflict, or how it is merged. */
export type ConflictPolicy = "newest" | "prefer_local" | "prefer_remote" | MergeFn;

/** What the engine syncs and how (the JS form of the Rust `SyncPolicy`). */
export interface SyncPolicy {
  /** `keep` (default): a delete detaches the key; `propagate`: it deletes on the other side. */
  deletes: "keep" | "propagate";
  /** The conflict policy of keys no prefix rule matches. Default `newest`. */
  conflicts: ConflictPolicy;
  /** Policies by key prefix; the longest matching prefix decides. */
  conflictsByPrefix: [string, ConflictPolicy][];
  /** Items over this size are skipped with a warning. Default 20 MiB. */
  maxItemBytes: number;
}

/** The default policy: keep deletes, newest stamp wins, 20 MiB. */
export const DEFAULT_POLICY: SyncPolicy = { deletes: "keep", conflicts: "newest", conflictsByPrefix: [], maxItemBytes: 20 * 1024 * 1024 };

/** The policy for `key`. */
export function conflictsFor(policy: SyncPolicy, key: string): ConflictPolicy {
  let best: [string, ConflictPolicy] | undefined;
  for (const rule of policy.conflictsByPrefix) {
    if (key.startsWith(rule[0]) && (!best || rule[0].length > best[0].length)) best = rule;
  }
  return best ? best[1] : policy.conflicts;
}

/** A local record as the reconciler sees it. */
export interface Local {
  hash: string;
  size: number;
  modified: number;
}

/** One key's step. */
export type Step =
  | { kind: "skip"; errorClass: ErrorClass; message: string }
  | { kind: "record_base"; base: BaseEntry }
  | { kind: "detach"; base: BaseEntry }
  | { kind: "forget" }
  | { kind: "upload"; local: Local; ifMatch: number | null; stamp: Stamp; conflict: Item | null }
  | { kind: "download"; remote: Item; expected: string | null }
  | { kind: "keep_loser_then_download"; local: Local; localStamp: Stamp; remote: Item }
  | {
      kind: "merge";
      merge: MergeFn;
      local: Local;
      remote: Item;
      base: { rev: number; hash: string } | null;
      localStamp: Stamp;
      fallback: Step;
    }
  | { kind: "delete_remote"; rev: number }
  | { kind: "delete_local"; local: Local };

/** The plan of one pass: a step per key that needs one, and how many need none. */
export interface Plan {
  steps: [string, Step][];
  unchanged: number;
}

type Side = "new" | "absent" | "unchanged" | "changed" | "deleted" | "lost";

function side(now: string | undefined, base: BaseEntry | undefined, known: boolean): Side {
  if (now !== undefined) return base ? (now === base.hash ? "unchanged" : "changed") : "new";
  if (!base) return "absent";
  return known ? "deleted" : "lost";
}

/** The base for `remote` as it is now held here. */
export function baseFrom(remote: Item): BaseEntry {
  return { rev: remote.rev, hash: remote.hash, size: remote.size, stamp: remote.stamp, detached: false, confirmed: true };
}

function sameBase(a: BaseEntry, b: BaseEntry): boolean {
  return a.rev === b.rev && a.hash === b.hash && a.size === b.size && a.stamp === b.stamp && a.detached === b.detached && a.confirmed === b.confirmed;
}

function tooLarge(size: number, policy: SyncPolicy, where: string): Step {
  return {
    kind: "skip",
    errorClass: "warning",
    message: `${size} bytes ${where} is over the limit of ${policy.maxItemBytes} bytes; not synced (raise maxItemBytes to sync it)`,
  };
}

function upload(local: Local, base: BaseEntry | undefined, remote: Item | undefined, node: string, policy: SyncPolicy): Step {
  if (local.size > policy.maxItemBytes) return tooLarge(local.size, policy, "here");
  return {
    kind: "upload",
    local,
    ifMatch: remote ? remote.rev : null,
    stamp: stampForEdit(local.modified, node, base ? parseStamp(base.stamp) : null),
    conflict: null,
  };
}

function download(local: Local | undefined, remote: Item, policy: SyncPolicy): Step {
  if (remote.size > policy.maxItemBytes) return tooLarge(remote.size, policy, "on the server");
  return { kind: "download", remote, expected: local ? local.hash : null };
}

/** A conflict decided for `winner` (Rust `resolved`); also what a failed merge falls back to. */
function resolved(winner: "local" | "remote", local: Local, localStamp: Stamp, remote: Item): Step {
  return winner === "local"
    ? { kind: "upload", local, ifMatch: remote.rev, stamp: localStamp, conflict: remote }
    : { kind: "keep_loser_then_download", local, localStamp, remote };
}

function newest(localStamp: Stamp, remote: Item): "local" | "remote" {
  return compareStamps(localStamp, parseStamp(remote.stamp)) > 0 ? "local" : "remote";
}

/** Row "changed / new | changed / new, hashes differ": the winner by policy; the loser is kept. */
function conflict(key: string, local: Local, base: BaseEntry | undefined, remote: Item, node: string, policy: SyncPolicy): Step {
  const localStamp = stampForEdit(local.modified, node, base ? parseStamp(base.stamp) : null);
  const p = conflictsFor(policy, key);
  let winner: "local" | "remote";
  if (typeof p === "function") {
    const size = Math.max(local.size, remote.size);
    if (size > policy.maxItemBytes) return tooLarge(size, policy, "here or on the server");
    // A merge's local stamp is the edit time alone (not ordered after the base), as in Rust.
    const mergeStamp = stampForEdit(local.modified, node, null);
    return {
      kind: "merge",
      merge: p,
      local,
      remote,
      base: base && base.confirmed && base.hash ? { rev: base.rev, hash: base.hash } : null,
      localStamp: mergeStamp,
      fallback: resolved(newest(mergeStamp, remote), local, mergeStamp, remote),
    };
  }
  winner = p === "prefer_local" ? "local" : p === "prefer_remote" ? "remote" : newest(localStamp, remote);
  if (local.size > policy.maxItemBytes) return tooLarge(local.size, policy, "here");
  if (winner === "remote" && remote.size > policy.maxItemBytes) return tooLarge(remote.size, policy, "on the server");
  return resolved(winner, local, localStamp, remote);
}

/** The docs/SPEC.md §3 table for one key; null means nothing to do. */
export function decide(
  key: string,
  local: Local | undefined,
  base: BaseEntry | undefined,
  remote: Item | undefined,
  node: string,
  policy: SyncPolicy,
): Step | null {
  if (remote && remote.kind === "folder" && !remote.deleted) {
    // Row "a file | a folder, or the other way": per-item error, neither side touched.
    if (local) return { kind: "skip", errorClass: "item", message: "is a record here and a folder on the server; rename one of them" };
    return null;
  }
  const rc = remote && !remote.deleted && remote.hash !== null ? remote.hash : undefined;
  const ls = side(local?.hash, base, true);
  const rs = side(rc, base, remote !== undefined);
  const detached = base?.detached ?? false;

  // Row "new | absent": upload (create); "changed later | deleted": an edit beats a delete;
  // "unchanged | absent (the server lost it)": upload again.
  if ((ls === "new" && rs === "absent") || (rs === "lost" && (ls === "changed" || ls === "unchanged" || ls === "new")) || (ls === "changed" && rs === "deleted")) {
    return upload(local!, base, remote, node, policy);
  }
  // Row "absent | new": download; "deleted (detached) | changed later": the newer remote comes back.
  if ((ls === "absent" && rs === "new") || (ls === "deleted" && rs === "changed")) return download(local, remote!, policy);
  // Rows "new | new, same hash" and "changed | changed, same hash": record B; else conflict.
  if ((ls === "new" && rs === "new") || (ls === "changed" && rs === "changed")) {
    if (local!.hash === rc) return { kind: "record_base", base: baseFrom(remote!) };
    return conflict(key, local!, base, remote!, node, policy);
  }
  // Row "unchanged | changed": download; with the base unconfirmed (after CursorExpired): conflict.
  if (ls === "unchanged" && rs === "changed") {
    if (local && !base!.confirmed) return conflict(key, local, base, remote!, node, policy);
    return download(local, remote!, policy);
  }
  // Row "changed | unchanged": upload with base revision.
  if (ls === "changed" && rs === "unchanged") return upload(local!, base, remote, node, policy);
  // Both as in the base: refresh the base if its revision, stamp or flags moved.
  if (ls === "unchanged" && rs === "unchanged") {
    const fresh = baseFrom(remote!);
    return sameBase(fresh, base!) ? null : { kind: "record_base", base: fresh };
  }
  // Row "deleted | unchanged": keep remote, mark detached (or propagate the delete).
  if (ls === "deleted" && rs === "unchanged") {
    if (detached) return null;
    if (policy.deletes === "propagate") return { kind: "delete_remote", rev: remote!.rev };
    return { kind: "detach", base: { ...base!, detached: true } };
  }
  // Row "unchanged | deleted (tombstone)": keep local, mark detached (or propagate).
  if (ls === "unchanged" && rs === "deleted") {
    if (detached) return null;
    if (policy.deletes === "propagate") return { kind: "delete_local", local: local! };
    return { kind: "detach", base: { ...base!, detached: true, rev: remote!.rev } };
  }
  // Row "deleted | deleted": forget the key.
  if (ls === "deleted" && (rs === "deleted" || rs === "lost")) return { kind: "forget" };
  return null;
}

/** Plans one pass over every key of the three sides, in key order. */
export function reconcile(
  local: Map<string, RecordRow | Local>,
  base: Map<string, BaseEntry>,
  remote: Map<string, Item>,
  node: string,
  policy: SyncPolicy,
): Plan {
  const keys = [...new Set([...local.keys(), ...base.keys(), ...remote.keys()])].sort(compareKeys);
  const plan: Plan = { steps: [], unchanged: 0 };
  for (const key of keys) {
    const row = local.get(key);
    const l: Local | undefined = row ? { hash: row.hash, size: "value" in row ? row.value.length : row.size, modified: row.modified } : undefined;
    const step = decide(key, l, base.get(key), remote.get(key), node, policy);
    if (step) plan.steps.push([key, step]);
    else plan.unchanged++;
  }
  return plan;
}
