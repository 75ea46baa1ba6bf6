// The package's browser-safe entry point: re-exports the client, the record store, the
// reconciler, the merges and the engine. Node-only parts (the JSON file store) are in
// node.ts (`@sync-engine/client/node`), so page bundles never import node:fs.

export * from "./errors.js";
export * from "./core.js";
export * from "./merge.js";
export * from "./client.js";
export * from "./store.js";
export * from "./reconcile.js";
export * from "./sync.js";
