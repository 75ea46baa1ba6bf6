// The engine over the in-memory fake server: two devices converge, conflicts keep their
// loser (local backup and server history), deletes follow the policy, merges by prefix, and
// the status an app draws.
import { test } from "node:test";
import assert from "node:assert/strict";
import { IDBFactory } from "fake-indexeddb";
import { RecordStore, SyncClient, SyncEngine, merges } from "../dist/index.js";
import { fakeServer } from "./fake-server.mjs";

function scenario(name, fn) {
  for (const k of kinds) test(`${name} [${k}]`, async () => {
    kind = k;
    await fn();
  });
}

// Every scenario runs on the memory store and on IndexedDB (fake-indexeddb), whose rows
// hold a record and its base together.
const kinds = ["memory", "indexeddb"];
let kind = "memory";
let dbs = 0;

async function device(server, policy = {}, token = "t") {
  const store = kind === "memory" ? RecordStore.memory() : await RecordStore.indexedDb(`device-${dbs++}`, new IDBFactory());
  const client = new SyncClient({ baseUrl: "http://fake", token, fetch: server.fetch, retry: { maxAttempts: 2, minDelayMs: 1, jitter: false } });
  return { store, engine: new SyncEngine({ client, store, policy }) };
}

for (const batches of [true, false]) {
  scenario(`records reach the other device (${batches ? "batches" : "single requests"})`, async () => {
    const server = fakeServer({ batches });
    const a = await device(server);
    const b = await device(server);
    for (let i = 0; i < 5; i++) await a.store.putJson(`notes/n${i}`, { i });
    const ra = await a.engine.syncOnce();
    assert.equal(ra.uploaded, 5);
    const rb = await b.engine.syncOnce();
    assert.equal(rb.downloaded, 5);
    assert.deepEqual(await b.store.getJson("notes/n3"), { i: 3 });
    assert.equal((await b.engine.syncOnce()).uploaded, 0, "nothing to do the second time");
    assert.ok(server.log.some((l) => l.includes("/batch/")) === true, "batch route tried");
  });
}

scenario("a conflict: the newer edit wins on both sides, the loser is kept in backup and history", async () => {
  const server = fakeServer();
  const a = await device(server);
  const b = await device(server);
  await a.store.put("k", "v0");
  await a.engine.syncOnce();
  await b.engine.syncOnce();
  await b.store.put("k", "from b (older)");
  await new Promise((r) => setTimeout(r, 5));
  await a.store.put("k", "from a (newer)");
  await a.engine.syncOnce();
  const rb = await b.engine.syncOnce();
  assert.equal(rb.conflicts, 1);
  assert.equal(rb.resolved[0].winner, "remote");
  assert.equal(await b.store.getText("k"), "from a (newer)");
  const backups = await b.store.backups();
  assert.equal(backups.length, 1);
  assert.equal(new TextDecoder().decode(await b.store.readBackup(backups[0].location)), "from b (older)");
  const kept = server.history.get("k").map((x) => new TextDecoder().decode(x.content));
  assert.ok(kept.includes("from b (older)") && kept.includes("v0"), `history ${kept}`);
  await a.engine.syncOnce();
  assert.equal(await a.store.getText("k"), "from a (newer)");
  assert.equal((await b.engine.conflicts()).length, 1, "the conflict is remembered");
});

scenario("a local edit newer than the remote one wins and the remote version stays in history", async () => {
  const server = fakeServer();
  const a = await device(server);
  const b = await device(server);
  await a.store.put("k", "v0");
  await a.engine.syncOnce();
  await b.engine.syncOnce();
  await a.store.put("k", "a older");
  await a.engine.syncOnce();
  await new Promise((r) => setTimeout(r, 5));
  await b.store.put("k", "b newer");
  const rb = await b.engine.syncOnce();
  assert.equal(rb.resolved[0]?.winner, "local");
  await a.engine.syncOnce();
  assert.equal(await a.store.getText("k"), "b newer");
  assert.ok(server.history.get("k").some((x) => new TextDecoder().decode(x.content) === "a older"));
});

scenario("deletes are kept local by default (detached) and propagate when asked", async () => {
  const server = fakeServer();
  const a = await device(server);
  const b = await device(server);
  await a.store.put("x", "1");
  await a.engine.syncOnce();
  await b.engine.syncOnce();
  await a.store.delete("x");
  await a.engine.syncOnce();
  await b.engine.syncOnce();
  assert.equal(await b.store.getText("x"), "1", "keep: the other device keeps it");
  assert.equal(server.items.get("x").deleted, false);
  assert.equal(await a.store.get("x"), undefined, "and it is not downloaded again");
  await a.engine.syncOnce();
  assert.equal(await a.store.get("x"), undefined);

  const s2 = fakeServer();
  const c = await device(s2, { deletes: "propagate" });
  const d = await device(s2, { deletes: "propagate" });
  await c.store.put("y", "1");
  await c.engine.syncOnce();
  await d.engine.syncOnce();
  await c.store.delete("y");
  await c.engine.syncOnce();
  assert.equal(s2.items.get("y").deleted, true);
  await d.engine.syncOnce();
  assert.equal(await d.store.get("y"), undefined);
  assert.equal((await d.store.backups()).length, 1, "the removed content is backed up");
});

scenario("lists merge by id under a prefix policy, on both devices", async () => {
  const server = fakeServer();
  const policy = { conflictsByPrefix: [["todos/", merges.unionById("id")]] };
  const a = await device(server, policy);
  const b = await device(server, policy);
  await a.store.putJson("todos/list", [{ id: 1, t: "milk" }, { id: 2, t: "eggs" }]);
  await a.engine.syncOnce();
  await b.engine.syncOnce();
  await a.store.putJson("todos/list", [{ id: 1, t: "milk" }, { id: 3, t: "bread" }]); // deletes 2, adds 3
  await b.store.putJson("todos/list", [{ id: 1, t: "oat milk" }, { id: 2, t: "eggs" }]); // edits 1
  await a.engine.syncOnce();
  const rb = await b.engine.syncOnce();
  assert.equal(rb.resolved[0]?.winner, "merged");
  const want = [{ id: 1, t: "oat milk" }, { id: 3, t: "bread" }];
  assert.deepEqual(await b.store.getJson("todos/list"), want);
  await a.engine.syncOnce();
  assert.deepEqual(await a.store.getJson("todos/list"), want);
  assert.equal((await b.store.backups()).length, 1, "b's own version is backed up");
});

scenario("status: off, syncing, idle; an auth failure is an error with the auth entry on top", async () => {
  const server = fakeServer();
  const a = await device(server, {}, "wrong");
  const seen = [];
  a.engine.onStatus((s) => seen.push(s.state));
  await assert.rejects(a.engine.syncOnce(), (e) => e.errorClass === "auth");
  assert.equal(a.engine.status.state, "error");
  assert.equal(a.engine.status.top.errorClass, "auth");
  server.token = "wrong";
  await a.engine.syncOnce();
  assert.equal(a.engine.status.state, "idle", "clear-on-success");
  assert.deepEqual(seen.slice(0, 3), ["off", "syncing", "error"]);
});

scenario("an oversized record is skipped with a warning, the sync goes on (idle with attention)", async () => {
  const server = fakeServer();
  const a = await device(server, { maxItemBytes: 10 });
  await a.store.put("big", "0123456789abc");
  await a.store.put("small", "ok");
  const r = await a.engine.syncOnce();
  assert.equal(r.uploaded, 1);
  assert.equal(r.skipped, 1);
  assert.equal(a.engine.status.state, "idle");
  assert.equal(a.engine.status.attention.errorClass, "warning");
});

scenario("the watch loop brings a remote edit within a second (long-poll)", async () => {
  const server = fakeServer();
  const a = await device(server);
  const b = await device(server);
  b.engine.start();
  await new Promise((r) => setTimeout(r, 50));
  await a.store.put("live", "now");
  const t0 = Date.now();
  await a.engine.syncOnce();
  while ((await b.store.getText("live")) !== "now") {
    assert.ok(Date.now() - t0 < 1000, "not there within 1 s");
    await new Promise((r) => setTimeout(r, 10));
  }
  await b.engine.stop();
  assert.equal(b.engine.status.state, "off");
});

scenario("a key from the server that breaks the key rules is not synced and is reported", async () => {
  const server = fakeServer();
  const a = await device(server);
  server.items.set("../evil", { key: "../evil", kind: "file", rev: 99, hash: "0".repeat(64), size: 1, stamp: "1.0.0000000000000000", deleted: false });
  await a.store.put("fine", "ok");
  const r = await a.engine.syncOnce();
  assert.equal(r.uploaded, 1);
  assert.deepEqual((await a.store.list()).map(([k]) => k), ["fine"]);
  assert.equal(a.engine.status.attention?.scope, "../evil");
  assert.equal((await a.store.remote()).has("../evil"), false);
});
