// A small in-memory protocol v1 server as a `fetch` function, for the client and engine unit
// tests: the feed, items, history, archive, folders and (optionally) batches, with the
// preconditions and the 412 `current` answer of docs/PROTOCOL.md. Not a reference: the
// cross-implementation test (crates/sync-cli/tests/js_client.rs) runs the real sync-server.
import { hashHex } from "../dist/index.js";

export function fakeServer({ batches = true, token = "t" } = {}) {
  let rev = 0;
  const items = new Map(); // key -> item
  const history = new Map(); // key -> [{version, content}]
  const waiters = [];
  const log = [];
  const stamp = () => `${Date.now()}.0.0000000000000000`;
  const json = (status, body, headers = {}) =>
    new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json", ...headers } });
  const err = (status, code, extra = {}) => json(status, { error: { code, message: code }, ...extra });
  function write(key, content, hash, st, deleted = false) {
    rev++;
    const item = { key, kind: "file", rev, hash: deleted ? null : hash, size: deleted ? 0 : content.length, stamp: st ?? stamp(), deleted };
    items.set(key, item);
    const h = history.get(key) ?? [];
    h.push({ version: { rev, hash: item.hash, size: item.size, stamp: item.stamp, deleted }, content });
    history.set(key, h);
    const parts = key.split("/");
    for (let i = 1; i < parts.length; i++) {
      const f = parts.slice(0, i).join("/");
      if (!items.has(f)) items.set(f, { key: f, kind: "folder", rev: ++rev, hash: null, size: 0, stamp: item.stamp, deleted: false });
    }
    while (waiters.length) waiters.pop()();
    return item;
  }
  function put(key, content, hash, ifMatch, st) {
    if (hashHex(content) !== hash) return { status: 400, error: { code: "hash_mismatch", message: "hash" } };
    const cur = items.get(key);
    const live = cur && !cur.deleted;
    if (ifMatch === null ? live : !cur || cur.rev !== ifMatch) return { status: 412, error: { code: "conflict", message: "conflict" }, current: cur ?? null };
    return { status: live ? 200 : 201, item: write(key, content, hash, st) };
  }
  const server = {
    items, history, log,
    /** Test hook: answer the next n requests with this status. */
    failNext: [],
    async fetch(url, init = {}) {
      const u = new URL(url);
      const method = init.method ?? "GET";
      const headers = new Headers(init.headers);
      log.push(`${method} ${u.pathname}`);
      const fail = server.failNext.shift();
      if (fail) return fail();
      if (headers.get("authorization") !== `Bearer ${server.token}`) return err(401, "unauthorized");
      const path = decodeURI(u.pathname.replace(/^\/sync\/v1/, ""));
      const key = (p) => path.slice(p.length).split("/").map(decodeURIComponent).join("/");
      const body = init.body === undefined ? new Uint8Array() : typeof init.body === "string" ? new TextEncoder().encode(init.body) : new Uint8Array(init.body);
      if (path === "/changes") {
        const since = Number((u.searchParams.get("since") ?? "c0").slice(1));
        const limit = Number(u.searchParams.get("limit") ?? 1000);
        const wait = Number(u.searchParams.get("wait") ?? 0);
        const after = () => [...items.values()].filter((i) => i.rev > since).sort((a, b) => a.rev - b.rev);
        if (wait > 0 && after().length === 0) {
          await new Promise((r) => {
            const t = setTimeout(r, wait * 1000);
            waiters.push(() => (clearTimeout(t), r()));
            init.signal?.addEventListener("abort", () => (clearTimeout(t), r()));
          });
          if (init.signal?.aborted) throw new DOMException("aborted", "AbortError");
        }
        const all = after();
        const page = all.slice(0, limit);
        const last = page.length ? page[page.length - 1].rev : since;
        return json(200, { changes: page, cursor: `c${last}`, more: all.length > limit });
      }
      if (path.startsWith("/items/")) {
        const k = key("/items/");
        if (method === "GET") {
          const r = u.searchParams.get("rev");
          const h = history.get(k) ?? [];
          const v = r !== null ? h.find((x) => x.version.rev === Number(r)) : h[h.length - 1];
          if (!v || v.version.deleted) return err(404, "not_found");
          return new Response(v.content, { status: 200, headers: { etag: `"${v.version.rev}"`, "x-sync-hash": v.version.hash, "x-sync-stamp": v.version.stamp } });
        }
        if (method === "PUT") {
          const im = headers.get("if-match");
          const r = put(k, body, headers.get("x-sync-hash"), im ? Number(im.replace(/"/g, "")) : null, headers.get("x-sync-stamp"));
          return r.item ? json(r.status, r.item) : json(r.status, { error: r.error, current: r.current });
        }
        if (method === "DELETE") {
          const cur = items.get(k);
          if (!cur) return err(404, "not_found");
          const im = Number((headers.get("if-match") ?? "").replace(/"/g, ""));
          if (cur.rev !== im) return err(412, "conflict", { current: cur });
          return json(200, write(k, new Uint8Array(), null, headers.get("x-sync-stamp"), true));
        }
      }
      if (path.startsWith("/history/")) {
        const k = key("/history/");
        if (method === "GET") {
          // Pages, newest first, as the real server answers.
          const limit = Number(u.searchParams.get("limit") ?? 1000);
          const before = u.searchParams.has("before") ? Number(u.searchParams.get("before")) : Infinity;
          const older = (history.get(k) ?? []).map((x) => x.version).filter((v) => v.rev < before).sort((a, b) => b.rev - a.rev);
          const versions = older.slice(0, limit);
          const next_before = older.length > limit ? versions[versions.length - 1].rev : null;
          return json(200, { versions, next_before });
        }
        rev++;
        const v = { rev, hash: headers.get("x-sync-hash"), size: body.length, stamp: headers.get("x-sync-stamp") ?? stamp(), deleted: false };
        const h = history.get(k) ?? [];
        h.splice(Math.max(0, h.length - 1), 0, { version: v, content: body });
        history.set(k, h);
        return json(201, v);
      }
      if (path === "/batch/push" || path === "/batch/fetch") {
        if (!batches) return err(404, "not_found");
        if (path === "/batch/fetch") {
          const reqs = JSON.parse(new TextDecoder().decode(body)).items;
          const parts = [];
          const results = reqs.map((r) => {
            const h = history.get(r.key) ?? [];
            const v = r.rev !== undefined ? h.find((x) => x.version.rev === r.rev) : h[h.length - 1];
            if (!v || v.version.deleted) return { status: 404, error: { code: "not_found", message: "nf" } };
            parts.push(v.content);
            return { status: 200, version: v.version };
          });
          const head = new TextEncoder().encode(JSON.stringify({ results }) + "\n");
          const out = new Uint8Array(head.length + parts.reduce((n, p) => n + p.length, 0));
          out.set(head);
          let at = head.length;
          for (const p of parts) (out.set(p, at), (at += p.length));
          return new Response(out, { status: 200, headers: { "content-type": "application/x-sync-batch" } });
        }
        const nl = body.indexOf(10);
        const manifest = JSON.parse(new TextDecoder().decode(body.subarray(0, nl)));
        let at = nl + 1;
        const results = manifest.items.map((m) => {
          const content = body.slice(at, at + m.size);
          at += m.size;
          return put(m.key, content, m.hash, m.if_match, m.stamp);
        });
        return json(200, { results });
      }
      return err(404, "not_found");
    },
  };
  server.token = token;
  return server;
}
