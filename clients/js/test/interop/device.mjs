// One step of a Node device for the cross-implementation test
// (crates/sync-cli/tests/js_client.rs): opens its JSON-file record store, runs the steps given
// as one JSON argument against a real sync-server, prints one JSON line (records, backups,
// reports), exits 0; on a failure prints `error: ...` and exits 1. Uses the built package
// (dist/), as an app would.
//
//   node device.mjs '{"store":"FILE","server":"URL","token":"T","steps":[["put","k","v"],["sync"]]}'
import { SyncClient, SyncEngine, merges, openJsonFileStore } from "../../dist/node.js";

const dec = new TextDecoder();
try {
  const cfg = JSON.parse(process.argv[2]);
  const store = await openJsonFileStore(cfg.store);
  const client = new SyncClient({ baseUrl: cfg.server, token: cfg.token });
  const engine = new SyncEngine({ client, store, policy: { conflictsByPrefix: [["todos/", merges.unionById("id")]] } });
  const reports = [];
  for (const [op, key, value] of cfg.steps) {
    if (op === "put") await store.put(key, value);
    else if (op === "delete") await store.delete(key);
    else if (op === "sync") reports.push(await engine.syncOnce());
    else if (op === "sleep") await new Promise((r) => setTimeout(r, Number(key)));
    else throw new Error(`unknown step ${op}`);
  }
  const records = Object.fromEntries((await store.list()).map(([k, v]) => [k, dec.decode(v)]));
  const backups = [];
  for (const b of await store.backups()) backups.push({ ...b, content: dec.decode(await store.readBackup(b.location)) });
  console.log(JSON.stringify({ records, backups, reports, status: engine.status.state }));
} catch (e) {
  console.log(`error: ${e?.message ?? e}`);
  process.exit(1);
}
