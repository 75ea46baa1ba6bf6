// The HTTP client's behaviour of docs/PROTOCOL.md "Client behaviour": retries with backoff on
// 5xx/429/connect errors honouring Retry-After, one token refresh on 401, the error class of
// every failure (the Rust client's mapping), hash checks, and the error-priority stack.
import { test } from "node:test";
import assert from "node:assert/strict";
import { ErrorStack, SyncClient, SyncError, checkKey, errorFor, stampForEdit, compareStamps, parseStamp, formatStamp } from "../dist/index.js";
import { fakeServer } from "./fake-server.mjs";

const enc = new TextEncoder();
const client = (server, extra = {}) =>
  new SyncClient({ baseUrl: "http://fake/", token: "t", fetch: server.fetch, retry: { maxAttempts: 3, minDelayMs: 1, jitter: false }, ...extra });
const answer = (status, body = { error: { code: "x", message: "m" } }, headers = {}) => () =>
  new Response(JSON.stringify(body), { status, headers });

test("5xx and connect errors are retried, then the request goes through", async () => {
  const server = fakeServer();
  server.failNext.push(answer(503), () => Promise.reject(new TypeError("fetch failed")));
  const c = client(server);
  const page = await c.changes(null);
  assert.deepEqual(page.changes, []);
  assert.equal(server.log.length, 3);
});

test("429 waits at least its Retry-After; one longer than the longest delay is handed up as throttled", async () => {
  const server = fakeServer();
  server.failNext.push(answer(429, undefined, { "retry-after": "1" }));
  const t0 = Date.now();
  await client(server, { retry: { maxAttempts: 3, minDelayMs: 1, maxDelayMs: 5000, jitter: false } }).changes(null);
  assert.ok(Date.now() - t0 >= 950, "waited the Retry-After");
  server.failNext.push(answer(429, undefined, { "retry-after": "120" }));
  await assert.rejects(client(server).changes(null), (e) => e instanceof SyncError && e.errorClass === "throttled" && e.retryAfterMs === 120000);
});

test("attempts run out: the last failure is returned with its class", async () => {
  const server = fakeServer();
  server.failNext.push(answer(500), answer(502), answer(503));
  await assert.rejects(client(server).changes(null), (e) => e.errorClass === "offline" && e.status === 503);
  server.failNext.push(...[1, 2, 3].map(() => () => Promise.reject(new TypeError("ECONNREFUSED"))));
  await assert.rejects(client(server).changes(null), (e) => e.errorClass === "offline" && e.code === "network");
});

test("a 401 asks for a new token once and sends again; a second 401 is auth", async () => {
  const server = fakeServer({ token: "new" });
  let asked = 0;
  const c = client(server, { token: "old", refreshToken: async (rejected) => (asked++, assert.equal(rejected, "old"), "new") });
  await c.changes(null);
  assert.equal(asked, 1);
  const d = client(server, { token: "old", refreshToken: async () => "still-bad" });
  await assert.rejects(d.changes(null), (e) => e.errorClass === "auth");
  let calls = 0;
  const e = client(server, { token: () => (calls++ === 0 ? "old" : "new") });
  await e.changes(null);
});

test("every answer maps to the class the Rust client gives it", () => {
  const cls = (status, code, ctx = {}) => errorFor(status, JSON.stringify({ error: { code, message: "m" } }), undefined, ctx).errorClass;
  assert.equal(cls(401, "unauthorized"), "auth");
  assert.equal(cls(404, "not_found"), "auth", "no sync server at the URL");
  assert.equal(cls(404, "not_found", { key: "a" }), "item");
  assert.equal(cls(400, "invalid_key", { key: "a" }), "item");
  assert.equal(cls(400, "hash_mismatch", { key: "a" }), "item");
  assert.equal(cls(413, "too_large", { key: "a" }), "item");
  assert.equal(cls(410, "cursor_expired"), "offline");
  assert.equal(cls(429, "rate_limited"), "throttled");
  assert.equal(cls(500, "internal"), "offline");
  assert.equal(errorFor(502, "<html>bad gateway</html>", undefined, {}).errorClass, "offline");
});

test("pushes: create, overwrite, 412 with current; a 412 holding what was sent is success", async () => {
  const server = fakeServer();
  const c = client(server);
  const a = await c.push({ key: "dir/a b", content: enc.encode("1"), ifMatch: null });
  assert.ok(a.ok);
  const again = await c.push({ key: "dir/a b", content: enc.encode("2"), ifMatch: null });
  assert.equal(again.ok, false);
  assert.equal(again.current.rev, a.item.rev);
  const same = await c.push({ key: "dir/a b", content: enc.encode("1"), ifMatch: null });
  assert.ok(same.ok, "what we sent is already there");
  const b = await c.push({ key: "dir/a b", content: enc.encode("2"), ifMatch: a.item.rev });
  assert.ok(b.ok);
  const f = await c.fetch("dir/a b");
  assert.equal(new TextDecoder().decode(f.content), "2");
  const old = await c.fetch("dir/a b", a.item.rev);
  assert.equal(new TextDecoder().decode(old.content), "1");
  assert.equal((await c.history("dir/a b")).length, 2);
  assert.ok(c.seen >= b.item.rev, "the Lamport high-water mark follows what was seen");
  const many = await c.pushMany([{ key: "m1", content: enc.encode("x"), ifMatch: null }, { key: "dir/a b", content: enc.encode("y"), ifMatch: 1 }]);
  assert.ok(many[0].ok);
  assert.equal(many[1].ok, false);
  const got = await c.fetchMany([{ key: "m1" }, { key: "nope" }]);
  assert.equal(new TextDecoder().decode(got[0].content), "x");
  assert.ok(got[1] instanceof SyncError && got[1].code === "not_found");
});

test("content that does not match its hash is refused", async () => {
  const server = fakeServer();
  server.failNext.push(() => new Response("evil", { status: 200, headers: { etag: '"1"', "x-sync-hash": "0".repeat(64), "x-sync-stamp": "1.0.0000000000000000" } }));
  await assert.rejects(client(server).fetch("k"), (e) => e.code === "hash_mismatch" && e.errorClass === "item");
});

test("the error stack shows the most important entry, global first, oldest first", () => {
  const s = new ErrorStack();
  s.push("warning", "a.txt", "too large", 1);
  s.push("item", "b", "rejected", 5);
  s.push("item", "a", "rejected", 3);
  assert.equal(s.top().scope, "a");
  s.push("offline", null, "down", 9);
  s.push("offline", null, "still down", 10);
  assert.equal(s.size, 4, "one entry per (class, scope)");
  assert.equal(s.top().message, "still down");
  assert.equal(s.top().firstSeenMillis, 9);
  s.push("auth", "k", "per key auth", 20);
  s.push("auth", null, "global auth", 30);
  assert.equal(s.top().message, "global auth");
  s.clearScope(null);
  assert.equal(s.top().message, "per key auth");
  assert.deepEqual(s.all().map((e) => e.errorClass), ["auth", "item", "item", "warning"]);
});

test("keys follow docs/SPEC.md §1 and stamps order as the Rust ones", () => {
  assert.equal(checkKey("docs/Cafe\u0301.txt"), "docs/Caf\u00e9.txt");
  for (const bad of ["", "/a", "a//b", "a/", "./a", "a/..", "a\\b", "a\u0000", "a\u0007", "x".repeat(256), "invoice\u202efdp.exe", "a\u200b.txt", "\ufeffa", Array(65).fill("d").join("/")]) {
    assert.throws(() => checkKey(bad), (e) => e.code === "invalid_key", JSON.stringify(bad));
  }
  assert.equal(checkKey(Array(64).fill("d").join("/")), Array(64).fill("d").join("/"));
  const base = parseStamp("1000.4.00000000000000ff");
  assert.equal(formatStamp(stampForEdit(999, "00000000000000aa", base)), "1000.5.00000000000000aa");
  assert.equal(formatStamp(stampForEdit(999, "0000000000000fff", base)), "1000.4.0000000000000fff");
  assert.equal(formatStamp(stampForEdit(2000, "00000000000000aa", base)), "2000.0.00000000000000aa");
  assert.ok(compareStamps(parseStamp("2.0.0000000000000000"), parseStamp("1.9.ffffffffffffffff")) > 0);
});

test("history follows every page of the server, oldest first; a page that does not move back is refused", async () => {
  const server = fakeServer();
  const versions = [];
  for (let rev = 1; rev <= 2345; rev++) {
    versions.push({ version: { rev, hash: null, size: 0, stamp: `${rev}.0.0000000000000007`, deleted: false }, content: new Uint8Array() });
  }
  server.history.set("long", versions);
  const got = await client(server).history("long");
  assert.deepEqual(got.map((v) => v.rev), versions.map((v) => v.version.rev));
  const pages = server.log.filter((l) => l === "GET /sync/v1/history/long").length;
  assert.equal(pages, 3, "1000 + 1000 + 345");
  const stuck = { versions: [{ rev: 7, hash: null, size: 0, stamp: "7.0.0000000000000007", deleted: true }], next_before: 7 };
  const c = client(server);
  server.failNext.push(answer(200, stuck), answer(200, stuck));
  await assert.rejects(c.history("x"), (e) => e instanceof SyncError && e.errorClass === "offline");
});
