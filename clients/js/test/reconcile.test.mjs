// One test per row of the docs/SPEC.md §3 table, on the JS `decide` (as the Rust `row_*`
// tests in crates/sync-core/src/reconcile/tests.rs do on the Rust one).
import { test } from "node:test";
import assert from "node:assert/strict";
import { decide, DEFAULT_POLICY, merges } from "../dist/index.js";

const NODE = "00000000000000aa";
const H = (c) => c.repeat(64);
const local = (hash, modified = 2000, size = 3) => ({ hash: H(hash), size, modified });
const base = (hash, extra = {}) => ({ rev: 5, hash: H(hash), size: 3, stamp: "1000.0.00000000000000bb", detached: false, confirmed: true, ...extra });
const remote = (hash, extra = {}) => ({ key: "k", kind: "file", rev: 7, hash: hash === null ? null : H(hash), size: 3, stamp: "1500.0.00000000000000bb", deleted: hash === null, ...extra });
const policy = (p = {}) => ({ ...DEFAULT_POLICY, ...p });
const kind = (s) => s?.kind ?? null;

test("row new | absent: upload (create)", () => {
  const s = decide("k", local("a"), undefined, undefined, NODE, policy());
  assert.equal(s.kind, "upload");
  assert.equal(s.ifMatch, null);
});
test("row absent | new: download", () => assert.equal(kind(decide("k", undefined, undefined, remote("a"), NODE, policy())), "download"));
test("row new | new, same hash: record B, no transfer", () => assert.equal(kind(decide("k", local("a"), undefined, remote("a"), NODE, policy())), "record_base"));
test("row unchanged | changed: download", () => assert.equal(kind(decide("k", local("a"), base("a"), remote("b"), NODE, policy())), "download"));
test("row changed | unchanged: upload with base revision", () => {
  const s = decide("k", local("b"), base("a"), remote("a", { rev: 5 }), NODE, policy());
  assert.equal(s.kind, "upload");
  assert.equal(s.ifMatch, 5);
});
test("row changed | changed, same hash: record B", () => assert.equal(kind(decide("k", local("c"), base("a"), remote("c"), NODE, policy())), "record_base"));
test("row changed | changed, hashes differ: conflict, newest stamp wins, loser kept", () => {
  const newer = decide("k", local("b", 2000), base("a"), remote("c"), NODE, policy());
  assert.equal(newer.kind, "upload");
  assert.equal(newer.conflict.rev, 7, "over the remote version, which stays in history");
  const older = decide("k", local("b", 1200), base("a"), remote("c"), NODE, policy());
  assert.equal(older.kind, "keep_loser_then_download");
  assert.equal(kind(decide("k", local("b", 2000), base("a"), remote("c"), NODE, policy({ conflicts: "prefer_remote" }))), "keep_loser_then_download");
  assert.equal(kind(decide("k", local("b", 1), base("a"), remote("c"), NODE, policy({ conflicts: "prefer_local" }))), "upload");
  const m = decide("k", local("b"), base("a"), remote("c"), NODE, policy({ conflictsByPrefix: [["k", merges.jsonFields()]] }));
  assert.equal(m.kind, "merge");
  assert.deepEqual(m.base, { rev: 5, hash: H("a") });
  assert.equal(m.fallback.kind, "upload", "the fallback is decided by the reconciler");
});
test("row new | new, hashes differ: conflict (two creates)", () => assert.equal(kind(decide("k", local("b", 1), undefined, remote("c"), NODE, policy())), "keep_loser_then_download"));
test("row deleted | unchanged: keep remote, detach (or propagate)", () => {
  const s = decide("k", undefined, base("a"), remote("a"), NODE, policy());
  assert.equal(s.kind, "detach");
  assert.equal(s.base.detached, true);
  assert.equal(decide("k", undefined, s.base, remote("a"), NODE, policy()), null, "not downloaded again");
  assert.equal(kind(decide("k", undefined, base("a"), remote("a"), NODE, policy({ deletes: "propagate" }))), "delete_remote");
});
test("row deleted (detached) | changed later: download the newer remote", () =>
  assert.equal(kind(decide("k", undefined, base("a", { detached: true }), remote("b"), NODE, policy())), "download"));
test("row unchanged | deleted (tombstone): keep local, detach (or propagate)", () => {
  const s = decide("k", local("a"), base("a"), remote(null, { rev: 9 }), NODE, policy());
  assert.equal(s.kind, "detach");
  assert.equal(s.base.rev, 9);
  assert.equal(decide("k", local("a"), s.base, remote(null, { rev: 9 }), NODE, policy()), null, "not uploaded again");
  assert.equal(kind(decide("k", local("a"), base("a"), remote(null), NODE, policy({ deletes: "propagate" }))), "delete_local");
});
test("row changed later | deleted: upload (an edit beats a delete)", () => {
  const s = decide("k", local("b"), base("a"), remote(null, { rev: 9 }), NODE, policy());
  assert.equal(s.kind, "upload");
  assert.equal(s.ifMatch, 9);
});
test("row deleted | deleted: forget the key", () => assert.equal(kind(decide("k", undefined, base("a"), remote(null), NODE, policy())), "forget"));
test("row unchanged | absent (the server lost it): upload again", () => assert.equal(kind(decide("k", local("a"), base("a"), undefined, NODE, policy())), "upload"));
test("row unchanged, base unconfirmed | different: conflict", () =>
  assert.equal(kind(decide("k", local("a", 1), base("a", { confirmed: false }), remote("b"), NODE, policy())), "keep_loser_then_download"));
test("row a file | a folder: per-item error, neither side touched", () => {
  const s = decide("k", local("a"), undefined, remote(null, { kind: "folder", deleted: false }), NODE, policy());
  assert.equal(s.kind, "skip");
  assert.equal(s.errorClass, "item");
});
test("row over size limit | any: skip with a warning", () => {
  const s = decide("k", local("a", 2000, 100), undefined, undefined, NODE, policy({ maxItemBytes: 10 }));
  assert.equal(s.kind, "skip");
  assert.equal(s.errorClass, "warning");
  assert.equal(decide("k", undefined, undefined, remote("a", { size: 100 }), NODE, policy({ maxItemBytes: 10 })).errorClass, "warning");
});
test("an edit made after seeing a version stamps newer than it, whatever the clock", () => {
  const s = decide("k", local("b", 10), base("a", { stamp: "5000.3.00000000000000ff" }), remote("a", { rev: 5, stamp: "5000.3.00000000000000ff" }), NODE, policy());
  assert.equal(s.kind, "upload");
  assert.deepEqual(s.stamp, { millis: 5000, counter: 4, node: NODE });
});
