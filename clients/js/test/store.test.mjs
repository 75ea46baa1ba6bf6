// The record store over its three backends: memory, IndexedDB (fake-indexeddb in Node) and a
// JSON file: records, checked commits (a sync write refused when the app changed the record),
// persistence across a reopen, and notifications.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { IDBFactory } from "fake-indexeddb";
import { RecordStore } from "../dist/index.js";
import { openJsonFileStore } from "../dist/node.js";

async function exercise(store) {
  await store.put("a/1", "one");
  await store.putJson("a/2", { two: 2 });
  await store.put("b", new Uint8Array([0, 255]));
  assert.equal(await store.getText("a/1"), "one");
  assert.deepEqual(await store.getJson("a/2"), { two: 2 });
  assert.deepEqual([...(await store.get("b"))], [0, 255]);
  assert.deepEqual((await store.list("a/")).map(([k]) => k), ["a/1", "a/2"]);
  assert.equal(await store.delete("b"), true);
  assert.equal(await store.delete("b"), false);
  await assert.rejects(store.put("../x", "no"), (e) => e.code === "invalid_key");
  const row = (await store.rows()).get("a/1");
  // A sync write checked against the hash it saw: refused after an app edit, nothing written.
  await store.put("a/1", "edited");
  const ok = await store.commitSync([{ table: "records", key: "a/1", value: { ...row, value: new TextEncoder().encode("sync") } }, { table: "meta", key: "m", value: 1 }], [{ key: "a/1", hash: row.hash }]);
  assert.equal(ok, false);
  assert.equal(await store.getText("a/1"), "edited");
  assert.equal(await store.meta("m"), undefined, "all or nothing");
  const seen = [];
  store.subscribe((keys, origin) => seen.push([keys, origin]));
  await store.put("c", "x");
  assert.deepEqual(seen, [[["c"], "app"]]);
}

test("memory store", async () => exercise(RecordStore.memory()));

test("IndexedDB store keeps its records across a reopen; two connections (tabs) do not corrupt it", async () => {
  const factory = new IDBFactory();
  const s = await RecordStore.indexedDb("notes", factory);
  await exercise(s);
  const t = await RecordStore.indexedDb("notes", factory);
  await Promise.all(Array.from({ length: 20 }, (_, i) => (i % 2 ? s : t).put(`n/${i}`, String(i))));
  s.backend.close();
  t.backend.close();
  const again = await RecordStore.indexedDb("notes", factory);
  assert.equal(await again.getText("a/1"), "edited");
  assert.equal((await again.list("n/")).length, 20);
  again.backend.close();
});

test("JSON file store persists owner-only and reloads", async () => {
  const path = join(mkdtempSync(join(tmpdir(), "records-")), "store.json");
  const s = await openJsonFileStore(path);
  await exercise(s);
  assert.equal(statSync(path).mode & 0o777, 0o600);
  const again = await openJsonFileStore(path);
  assert.equal(await again.getText("a/1"), "edited");
  assert.deepEqual([...(await again.get("c"))], [120]);
});

test("JSON file store: relaxed commits reach the file with the next strict one", async () => {
  const path = join(mkdtempSync(join(tmpdir(), "records-")), "store.json");
  const s = await openJsonFileStore(path);
  await s.put("strict", "1");
  await s.commitSync([{ table: "meta", key: "cursor", value: "c9" }], [], true);
  assert.equal(await (await openJsonFileStore(path)).meta("cursor"), undefined, "not written yet");
  assert.equal(await s.meta("cursor"), "c9", "but visible at once");
  await s.commitSync([{ table: "meta", key: "seen", value: 9 }]);
  const again = await openJsonFileStore(path);
  assert.equal(await again.meta("cursor"), "c9");
  assert.equal(await again.getText("strict"), "1");
});

test("JSON file store: a commit whose write fails is undone in memory too", async () => {
  const dir = join(mkdtempSync(join(tmpdir(), "records-")), "folder");
  mkdirSync(dir);
  const path = join(dir, "store.json");
  const s = await openJsonFileStore(path);
  await s.put("kept", "1");
  // The folder replaced by a file: the next write cannot create its temporary file.
  rmSync(dir, { recursive: true });
  writeFileSync(dir, "in the way");
  await assert.rejects(s.put("lost", "2"), (e) => e.errorClass === "storage");
  assert.equal(await s.getText("lost"), undefined, "a failed commit must not stay visible");
  assert.equal(await s.getText("kept"), "1");
});
