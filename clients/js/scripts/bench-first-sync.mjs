// First sync of N records (default 10,000, about 100 bytes of JSON each) into a fresh record
// store over loopback: starts `sync-server` ($SYNC_SERVER_BIN) on a temporary SQLite
// database, fills it through the client's batch pushes, then times `syncOnce` of a new
// device RUNS times (default 5), each into a fresh store, and prints the median.
//
//   SYNC_SERVER_BIN=target/release/sync-server node scripts/bench-first-sync.mjs [N] [RUNS] [memory|file]
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createInterface } from "node:readline";
import { tmpdir, loadavg } from "node:os";
import { join } from "node:path";
import { RecordStore, SyncClient, SyncEngine, openJsonFileStore } from "../dist/node.js";

const n = Number(process.argv[2] ?? 10_000);
const runs = Number(process.argv[3] ?? 5);
const kind = process.argv[4] ?? "memory";
const bin = process.env.SYNC_SERVER_BIN;
if (!bin) throw new Error("set SYNC_SERVER_BIN to a sync-server binary");
const tmp = mkdtempSync(join(tmpdir(), "bench-js-"));
const server = spawn(bin, ["--listen", "127.0.0.1:0", "--db", join(tmp, "server.db"), "--token", "bench:bench-token-0123456789"], { stdio: ["ignore", "pipe", "ignore"] });
const url = await new Promise((resolve) => createInterface({ input: server.stdout }).once("line", (l) => resolve(l.slice("listening on ".length))));
try {
  const client = () => new SyncClient({ baseUrl: url, token: "bench-token-0123456789" });
  const enc = new TextEncoder();
  const seed = client();
  const t0 = performance.now();
  for (let i = 0; i < n; i += 500) {
    const reqs = [];
    for (let j = i; j < Math.min(n, i + 500); j++) {
      reqs.push({ key: `records/r${String(j).padStart(6, "0")}`, content: enc.encode(JSON.stringify({ id: j, title: `record number ${j}`, done: j % 3 === 0, tags: ["a", "b"] })), ifMatch: null });
    }
    const out = await seed.pushMany(reqs);
    if (out.some((o) => !o.ok)) throw new Error("seeding failed");
  }
  console.log(`seeded ${n} records in ${((performance.now() - t0) / 1000).toFixed(2)} s`);
  const times = [];
  for (let r = 0; r < runs; r++) {
    const store = kind === "file" ? await openJsonFileStore(join(tmp, `device-${r}.json`)) : RecordStore.memory();
    const engine = new SyncEngine({ client: client(), store });
    const t = performance.now();
    const report = await engine.syncOnce();
    times.push((performance.now() - t) / 1000);
    if (report.downloaded !== n) throw new Error(`downloaded ${report.downloaded}, expected ${n}`);
  }
  times.sort((a, b) => a - b);
  const median = times[Math.floor(times.length / 2)];
  console.log(`first sync of ${n} records into a fresh ${kind} store: median ${median.toFixed(2)} s over ${runs} runs (min ${times[0].toFixed(2)}, max ${times[times.length - 1].toFixed(2)}); load average ${loadavg()[0].toFixed(2)}`);
} finally {
  server.kill("SIGTERM");
  await new Promise((r) => server.once("exit", r));
  rmSync(tmp, { recursive: true, force: true });
}
