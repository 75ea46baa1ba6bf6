// The browser test of the notes example (clients/js/examples/notes): headless Chromium driven
// over the DevTools protocol on a pipe (no driver dependency), two browser contexts as two
// devices, a real sync-server on loopback with --cors-origin for the page's origin.
// Checks: an edit in one device's page shows in the other's within 1 s; a reload keeps the
// IndexedDB state (shown with the server unreachable); two tabs of one origin editing at once
// leave one consistent store that matches the other device. Prints one line per check and
// `N passed, 0 failed`; exits 1 on a failure.
//
//   SYNC_SERVER_BIN=target/debug/sync-server CHROMIUM=/usr/bin/chromium node test/browser/notes.mjs
// Run by crates/sync-cli/tests/browser.rs, which gives both. Needs `npm run build:example`.
import { spawn } from "node:child_process";
import { createServer } from "node:http";
import { mkdtempSync, readFileSync, rmSync, existsSync } from "node:fs";
import { createInterface } from "node:readline";
import { tmpdir } from "node:os";
import { join, extname } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("../../examples/notes/", import.meta.url));
const serverBin = process.env.SYNC_SERVER_BIN;
const chromiumBin = process.env.CHROMIUM ?? "chromium";
if (!serverBin) throw new Error("set SYNC_SERVER_BIN to the sync-server binary");
if (!existsSync(join(root, "notes.bundle.js"))) throw new Error("run `npm run build:example` in clients/js first");
const tmp = mkdtempSync(join(tmpdir(), "notes-browser-"));
const children = [];
let passed = 0;
let failed = 0;

function check(name, ok, detail = "") {
  console.log(`${ok ? "ok" : "FAILED"} - ${name}${detail ? ` (${detail})` : ""}`);
  ok ? passed++ : failed++;
}

// The page's origin: a static server for examples/notes.
const types = { ".html": "text/html", ".js": "text/javascript", ".css": "text/css" };
const web = createServer((req, res) => {
  const path = new URL(req.url, "http://x").pathname.replace(/^\/$/, "/index.html");
  try {
    const body = readFileSync(join(root, path.slice(1).replace(/\.\.+/g, "")));
    res.writeHead(200, { "content-type": types[extname(path)] ?? "application/octet-stream" });
    res.end(body);
  } catch {
    res.writeHead(404).end();
  }
});
await new Promise((r) => web.listen(0, "127.0.0.1", r));
const origin = `http://127.0.0.1:${web.address().port}`;

// The sync server, allowing that origin.
const server = spawn(serverBin, ["--listen", "127.0.0.1:0", "--db", join(tmp, "server.db"), "--token", "alice:notes-token-0123456789", "--token", "bench:bench-token-0123456789", "--cors-origin", origin], { stdio: ["ignore", "pipe", "ignore"] });
children.push(server);
const syncUrl = await new Promise((resolve, reject) => {
  createInterface({ input: server.stdout }).once("line", (l) => (l.startsWith("listening on ") ? resolve(l.slice(13)) : reject(new Error(l))));
  server.once("exit", (c) => reject(new Error(`sync-server exited ${c}`)));
});

// Chromium with the DevTools protocol on fds 3 (in) and 4 (out), NUL-separated JSON.
const chrome = spawn(chromiumBin, ["--headless=new", "--remote-debugging-pipe", "--no-sandbox", "--no-first-run", "--disable-gpu", "--disable-dev-shm-usage", `--user-data-dir=${join(tmp, "profile")}`, "about:blank"], { stdio: ["ignore", "ignore", "ignore", "pipe", "pipe"] });
children.push(chrome);
let nextId = 1;
const pending = new Map();
let buf = "";
chrome.stdio[4].on("data", (d) => {
  buf += d.toString();
  let i;
  while ((i = buf.indexOf("\0")) >= 0) {
    const msg = JSON.parse(buf.slice(0, i));
    buf = buf.slice(i + 1);
    const p = pending.get(msg.id);
    if (p) {
      pending.delete(msg.id);
      msg.error ? p.reject(new Error(`${msg.error.message}`)) : p.resolve(msg.result);
    }
  }
});
function cdp(method, params = {}, sessionId) {
  const id = nextId++;
  chrome.stdio[3].write(JSON.stringify({ id, method, params, ...(sessionId ? { sessionId } : {}) }) + "\0");
  return new Promise((resolve, reject) => pending.set(id, { resolve, reject }));
}

async function evaluate(session, expression) {
  const r = await cdp("Runtime.evaluate", { expression, awaitPromise: true, returnByValue: true }, session);
  if (r.exceptionDetails) throw new Error(`${expression}: ${r.exceptionDetails.exception?.description ?? r.exceptionDetails.text}`);
  return r.result.value;
}

async function waitFor(session, expression, timeoutMs = 10_000) {
  const t0 = Date.now();
  for (;;) {
    try {
      const v = await evaluate(session, expression);
      if (v) return Date.now() - t0;
    } catch {
      // The page is (re)loading.
    }
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out waiting for ${expression}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const pageUrl = (server = syncUrl) => `${origin}/index.html?server=${encodeURIComponent(server)}&token=notes-token-0123456789`;

async function open(contextId, url = pageUrl()) {
  const { targetId } = await cdp("Target.createTarget", { url, browserContextId: contextId });
  const { sessionId } = await cdp("Target.attachToTarget", { targetId, flatten: true });
  await waitFor(sessionId, `window.notes?.engine.status.state === "idle"`);
  return sessionId;
}

const shown = (session, key) => `(document.querySelector('[data-key="${key}"]')?.textContent ?? null)`;
const allNotes = `JSON.stringify([...document.querySelectorAll("#notes li")].map((li) => [li.dataset.key, li.textContent]))`;

try {
  const { browserContextId: deviceA } = await cdp("Target.createBrowserContext");
  const { browserContextId: deviceB } = await cdp("Target.createBrowserContext");
  const a1 = await open(deviceA);
  const b1 = await open(deviceB);

  // 1. An edit in one page shows in the other device's page within 1 s.
  const times = [];
  for (let i = 0; i < 5; i++) {
    const text = `hello ${i}`;
    await evaluate(a1, `notes.store.put("notes/live", ${JSON.stringify(text)})`);
    times.push(await waitFor(b1, `${shown(b1, "notes/live")} === ${JSON.stringify(text)}`, 5000));
  }
  times.sort((x, y) => x - y);
  check("an edit shows in the other device's page within 1 s", times[times.length - 1] < 1000, `median ${times[2]} ms, max ${times[4]} ms over 5 edits`);

  // 2. A reload keeps the IndexedDB state: the page comes back with its notes while the
  // server is unreachable (so they cannot have been downloaded again).
  await cdp("Page.navigate", { url: pageUrl("http://127.0.0.1:9") }, b1);
  await waitFor(b1, `window.notes?.engine.status.state === "error"`, 15_000);
  check("after a reload the notes are there from IndexedDB", (await evaluate(b1, shown(b1, "notes/live"))) === "hello 4");
  check("and the status says the server is unreachable", (await evaluate(b1, `notes.engine.status.top.errorClass`)) === "offline");
  await cdp("Page.navigate", { url: pageUrl() }, b1);
  await waitFor(b1, `window.notes?.engine.status.state === "idle"`);

  // 3. Two tabs of one origin (device A) write at once, each running its own engine.
  const a2 = await open(deviceA);
  const burst = (tab, n) => `Promise.all(Array.from({ length: ${n} }, (_, i) => notes.store.put("notes/tab${tab}-" + i, "from tab ${tab} #" + i)))`;
  await Promise.all([evaluate(a1, burst(1, 20)), evaluate(a2, burst(2, 20)), evaluate(a1, `notes.store.put("notes/live", "tab 1 last")`)]);
  const expected = 41; // 20 + 20 + notes/live
  const count = () => `document.querySelectorAll("#notes li").length === ${expected} && !!document.querySelector('[data-key="notes/tab2-19"]')`;
  await waitFor(a1, count(), 15_000);
  await waitFor(a2, count(), 15_000);
  await waitFor(b1, `${count()} && ${shown(b1, "notes/live")} === "tab 1 last"`, 15_000);
  // Settled: one more sync in each tab transfers nothing.
  const again = async (s) => evaluate(s, `notes.engine.syncOnce().then((r) => r.uploaded + r.downloaded + r.conflicts)`);
  await new Promise((r) => setTimeout(r, 300));
  const moves = [await again(a1), await again(a2), await again(b1)];
  check("two tabs of one origin: both tabs and the other device settle on the same notes", moves.every((m) => m === 0) && (await evaluate(a1, allNotes)) === (await evaluate(b1, allNotes)) && (await evaluate(a2, allNotes)) === (await evaluate(b1, allNotes)), `transfers after settling ${moves}`);
  const integrity = await evaluate(a1, `import("./notes.bundle.js").then(async (m) => {
    const rows = await notes.store.rows();
    const bases = await notes.store.bases();
    let bad = 0;
    for (const [k, r] of rows) if (m.hashHex(r.value) !== r.hash || (k.startsWith("notes/") && bases.get(k)?.hash !== r.hash)) bad++;
    return JSON.stringify({ rows: rows.size, bad });
  })`);
  const { rows, bad } = JSON.parse(integrity);
  check("the shared IndexedDB store is consistent (every hash and base matches its record)", bad === 0 && rows === expected, `${rows} records, ${bad} inconsistent`);
  // Optional: SCREENSHOT=FILE.png keeps a picture of device B's page.
  if (process.env.SCREENSHOT) {
    const { data } = await cdp("Page.captureScreenshot", { format: "png" }, b1);
    (await import("node:fs")).writeFileSync(process.env.SCREENSHOT, Buffer.from(data, "base64"));
  }
  // Optional figure (docs/BENCHMARKS.md): BENCH_RECORDS=N times a first sync of N records
  // into a fresh IndexedDB store in a page, over CORS, median of 3. Another tenant, so the
  // notes pages do not download them.
  const benchN = Number(process.env.BENCH_RECORDS ?? 0);
  if (benchN > 0) {
    const { SyncClient } = await import("../../dist/index.js");
    const seed = new SyncClient({ baseUrl: syncUrl, token: "bench-token-0123456789" });
    const enc = new TextEncoder();
    for (let i = 0; i < benchN; i += 500) {
      const reqs = [];
      for (let j = i; j < Math.min(benchN, i + 500); j++) {
        reqs.push({ key: `records/r${String(j).padStart(6, "0")}`, content: enc.encode(JSON.stringify({ id: j, title: `record number ${j}`, done: j % 3 === 0, tags: ["a", "b"] })), ifMatch: null });
      }
      await seed.pushMany(reqs);
    }
    const { browserContextId: deviceC } = await cdp("Target.createBrowserContext");
    const { targetId } = await cdp("Target.createTarget", { url: `${origin}/index.html?server=http://127.0.0.1:9`, browserContextId: deviceC });
    const { sessionId: c1 } = await cdp("Target.attachToTarget", { targetId, flatten: true });
    await waitFor(c1, `!!window.notes`);
    const times = [];
    for (let r = 0; r < 3; r++) {
      const [ms, got] = await evaluate(c1, `import("./notes.bundle.js").then(async (m) => {
        const store = await m.RecordStore.indexedDb("bench-${r}");
        const engine = new m.SyncEngine({ client: new m.SyncClient({ baseUrl: ${JSON.stringify(syncUrl)}, token: "bench-token-0123456789" }), store });
        const t = performance.now();
        const report = await engine.syncOnce();
        return [performance.now() - t, report.downloaded];
      })`);
      if (got !== benchN) throw new Error(`bench downloaded ${got} of ${benchN}`);
      times.push(ms / 1000);
    }
    times.sort((x, y) => x - y);
    console.log(`bench: first sync of ${benchN} records into a fresh IndexedDB store in Chromium: median ${times[1].toFixed(2)} s over 3 runs (min ${times[0].toFixed(2)}, max ${times[2].toFixed(2)})`);
  }
} catch (e) {
  check("the browser test ran", false, e.message);
} finally {
  await Promise.all(children.map((c) => new Promise((r) => (c.exitCode !== null ? r() : (c.once("exit", r), c.kill("SIGTERM"))))));
  web.close();
  // Chromium's helper processes may still be writing its profile for a moment.
  try {
    rmSync(tmp, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 });
  } catch (e) {
    console.error(`could not remove ${tmp}: ${e.message}`);
  }
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
