// The record store: an app's local records (bytes under a key) plus what the sync engine
// remembers between syncs (base entries, its copy of the remote tree, cursor, node id,
// backups of conflict losers), over a small `Backend` with atomic, checked commits.
// Backends: `MemoryBackend` (Node, tests), `IndexedDbBackend` (pages and extensions; several
// tabs of one origin share it safely: every commit is one IndexedDB transaction whose checks
// run inside it), and `JsonFileBackend` in node.ts (Node/Electron). The semantics mirror
// crates/store-records: engine writes notify subscribers, app writes notify only other tabs.
// Nothing here syncs or talks to the network (sync.ts does).

import { checkKey, Clock, hashHex, Item } from "./core.js";
import { SyncError } from "./errors.js";

/** The tables of a backend. */
export type Table = "records" | "base" | "remote" | "meta" | "backups";

/** A write: `value` undefined deletes the row. */
export interface Op {
  table: Table;
  key: string;
  value?: unknown;
}

/** A precondition of a commit: the record `key` must have `hash` (null: be absent). */
export interface Check {
  key: string;
  hash: string | null;
}

/** Storage under a record store: rows in tables, and atomic commits with checks. */
export interface Backend {
  get(table: Table, key: string): Promise<unknown>;
  getAll(table: Table): Promise<Map<string, unknown>>;
  /**
   * Applies every op at once if every check holds; false (nothing written) otherwise.
   * `relaxed`: the commit may reach the disk a little later (an OS crash may lose it, never
   * half of it); the engine asks for it on what the next sync can fetch again.
   */
  commit(ops: Op[], checks?: Check[], relaxed?: boolean): Promise<boolean>;
  /** Tells other tabs or processes sharing this backend that keys changed (optional). */
  announce?(keys: string[]): void;
  /** Listens to other tabs' changes (optional). */
  listen?(fn: (keys: string[]) => void): void;
  close(): void;
}

/** A record row. */
export interface RecordRow {
  value: Uint8Array;
  hash: string;
  /** When the app last wrote it, ms (the edit time its stamp starts from). */
  modified: number;
}

/** What both sides held at the last sync (docs/SPEC.md §3 "B"). */
export interface BaseEntry {
  rev: number;
  hash: string | null;
  size: number;
  stamp: string;
  /** Deleted on one side and kept on the other: not synced again until it changes. */
  detached: boolean;
  /** False after a cursor expired, until the server is seen to hold it again. */
  confirmed: boolean;
}

/** A local backup of content that lost a conflict (or was deleted by a propagated delete). */
export interface Backup {
  key: string;
  /** `backups/<key>/<stamp millis>-<hash8>`, as the Rust record store names them. */
  location: string;
  hash: string;
  size: number;
  madeMillis: number;
}

/** Who wrote: the app here, the sync engine, or another tab/process. */
export type Origin = "app" | "sync" | "other";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function cloneBytes(b: Uint8Array): Uint8Array {
  return new Uint8Array(b);
}

/**
 * An app's records, synced by a `SyncEngine`. Keys follow docs/SPEC.md §1; values are bytes
 * (helpers for text and JSON).
 */
export class RecordStore {
  private readonly subscribers = new Set<(keys: string[], origin: Origin) => void>();
  /** The clock local edits are timed by (the engine moves it forward past stamps it sees). */
  readonly clock = new Clock();

  constructor(readonly backend: Backend) {
    backend.listen?.((keys) => this.emit(keys, "other"));
  }

  /** Records in memory only (Node, tests, or a page that keeps nothing). */
  static memory(): RecordStore {
    return new RecordStore(new MemoryBackend());
  }

  /** Records in IndexedDB database `name` (pages, extensions, Electron renderers). */
  static async indexedDb(name: string, factory?: IDBFactory): Promise<RecordStore> {
    return new RecordStore(await IndexedDbBackend.open(name, factory));
  }

  private emit(keys: string[], origin: Origin): void {
    if (keys.length === 0) return;
    for (const fn of this.subscribers) {
      try {
        fn(keys, origin);
      } catch {
        // A subscriber's failure is its own.
      }
    }
  }

  /** Calls `fn` with the keys that changed and who changed them; returns the unsubscribe. */
  subscribe(fn: (keys: string[], origin: Origin) => void): () => void {
    this.subscribers.add(fn);
    return () => this.subscribers.delete(fn);
  }

  /** The record `key`, or undefined. */
  async get(key: string): Promise<Uint8Array | undefined> {
    const row = (await this.backend.get("records", checkKey(key))) as RecordRow | undefined;
    return row ? cloneBytes(row.value) : undefined;
  }

  /** The record as UTF-8 text. */
  async getText(key: string): Promise<string | undefined> {
    const v = await this.get(key);
    return v === undefined ? undefined : decoder.decode(v);
  }

  /** The record parsed as JSON. */
  async getJson<T = unknown>(key: string): Promise<T | undefined> {
    const t = await this.getText(key);
    return t === undefined ? undefined : (JSON.parse(t) as T);
  }

  /** Writes a record (bytes, or text as UTF-8). */
  async put(key: string, value: Uint8Array | string): Promise<void> {
    const k = checkKey(key);
    const bytes = typeof value === "string" ? encoder.encode(value) : cloneBytes(value);
    const row: RecordRow = { value: bytes, hash: hashHex(bytes), modified: this.clock.now() };
    await this.backend.commit([{ table: "records", key: k, value: row }]);
    this.backend.announce?.([k]);
    this.emit([k], "app");
  }

  /** Writes a record as JSON. */
  async putJson(key: string, value: unknown): Promise<void> {
    await this.put(key, JSON.stringify(value));
  }

  /** Deletes a record; true if it existed. */
  async delete(key: string): Promise<boolean> {
    const k = checkKey(key);
    const had = (await this.backend.get("records", k)) !== undefined;
    if (had) {
      await this.backend.commit([{ table: "records", key: k }]);
      this.backend.announce?.([k]);
      this.emit([k], "app");
    }
    return had;
  }

  /** Every record whose key starts with `prefix`, in key order. */
  async list(prefix = ""): Promise<[string, Uint8Array][]> {
    const all = (await this.backend.getAll("records")) as Map<string, RecordRow>;
    return [...all]
      .filter(([k]) => k.startsWith(prefix))
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([k, r]) => [k, cloneBytes(r.value)]);
  }

  /** Every backup kept (conflict losers, content removed by a propagated delete). */
  async backups(): Promise<Backup[]> {
    const all = (await this.backend.getAll("backups")) as Map<string, Backup & { content: Uint8Array }>;
    return [...all.values()]
      .map(({ content: _c, ...b }) => b)
      .sort((a, b) => a.madeMillis - b.madeMillis || (a.location < b.location ? -1 : 1));
  }

  /** The content of a backup. */
  async readBackup(location: string): Promise<Uint8Array> {
    const b = (await this.backend.get("backups", location)) as { content: Uint8Array } | undefined;
    if (!b) throw new SyncError("item", "not_found", `backup ${location}: not found`);
    return cloneBytes(b.content);
  }

  /** Engine side: every record row. */
  async rows(): Promise<Map<string, RecordRow>> {
    return (await this.backend.getAll("records")) as Map<string, RecordRow>;
  }

  /** Engine side: the base entries. */
  async bases(): Promise<Map<string, BaseEntry>> {
    return (await this.backend.getAll("base")) as Map<string, BaseEntry>;
  }

  /** Engine side: the copy of the remote tree. */
  async remote(): Promise<Map<string, Item>> {
    return (await this.backend.getAll("remote")) as Map<string, Item>;
  }

  /** Engine side: a value of the sync state. */
  async meta<T>(name: string): Promise<T | undefined> {
    return (await this.backend.get("meta", name)) as T | undefined;
  }

  /**
   * Engine side: commits sync state and record writes; notifies subscribers of the records.
   * `relaxed` for what the server still holds (downloads, feed pages): see {@link Backend.commit}.
   */
  async commitSync(ops: Op[], checks: Check[] = [], relaxed = false): Promise<boolean> {
    const ok = await this.backend.commit(ops, checks, relaxed);
    if (ok) {
      const keys = ops.filter((o) => o.table === "records").map((o) => o.key);
      this.backend.announce?.(keys);
      this.emit(keys, "sync");
    }
    return ok;
  }
}

/** The backup op for `content` of `key` lost at `stampMillis` (Rust store-records naming). */
export function backupOp(key: string, content: Uint8Array, hash: string, stampMillis: number, now: number): Op {
  const location = `backups/${key}/${stampMillis}-${hash.slice(0, 8)}`;
  const value: Backup & { content: Uint8Array } = { key, location, hash, size: content.length, madeMillis: now, content: cloneBytes(content) };
  return { table: "backups", key: location, value };
}

/** Tables in memory; commits are atomic because JS runs one at a time. */
export class MemoryBackend implements Backend {
  protected tables = new Map<Table, Map<string, unknown>>();

  protected table(t: Table): Map<string, unknown> {
    let m = this.tables.get(t);
    if (!m) this.tables.set(t, (m = new Map()));
    return m;
  }

  async get(table: Table, key: string): Promise<unknown> {
    return this.table(table).get(key);
  }

  async getAll(table: Table): Promise<Map<string, unknown>> {
    return new Map(this.table(table));
  }

  /** Applies the ops if the checks hold, synchronously. */
  protected apply(ops: Op[], checks: Check[]): boolean {
    const records = this.table("records");
    for (const c of checks) {
      const row = records.get(c.key) as RecordRow | undefined;
      if ((row?.hash ?? null) !== c.hash) return false;
    }
    for (const op of ops) {
      if (op.value === undefined) this.table(op.table).delete(op.key);
      else this.table(op.table).set(op.key, op.value);
    }
    return true;
  }

  async commit(ops: Op[], checks: Check[] = []): Promise<boolean> {
    return this.apply(ops, checks);
  }

  close(): void {}
}

/** The IndexedDB object stores: a record and its base entry share one row of `records`. */
const STORES = ["records", "remote", "meta", "backups"] as const;

/** One row of the `records` object store: the record and its base entry, either absent. */
interface Combined {
  r?: RecordRow;
  b?: BaseEntry;
}

function req<T>(r: IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error);
  });
}

function storageError(what: string, e: unknown): SyncError {
  const m = e instanceof Error ? e.message : String(e);
  return new SyncError("storage", "storage", `storage failed: IndexedDB ${what}: ${m}. Free space or allow site storage, then reload`, { cause: e });
}

/**
 * Tables in IndexedDB. A commit is one readwrite transaction over every object store it
 * touches; its checks are read inside that transaction, so two tabs cannot interleave a check
 * and a write. A record and its base entry are one IndexedDB row (`{r, b}` in `records`), so
 * a download writes one row, not two: IndexedDB's cost is per put. Other tabs hear of changes
 * over a BroadcastChannel.
 */
export class IndexedDbBackend implements Backend {
  private channel: BroadcastChannel | undefined;

  private constructor(private readonly db: IDBDatabase, name: string) {
    if (typeof BroadcastChannel !== "undefined") {
      this.channel = new BroadcastChannel(`sync-engine:${name}`);
      // In Node a channel keeps the process alive; a store should not.
      (this.channel as { unref?: () => void }).unref?.();
    }
  }

  /** Opens (creating it if needed) the database `name`. */
  static async open(name: string, factory: IDBFactory = globalThis.indexedDB): Promise<IndexedDbBackend> {
    if (!factory) throw new SyncError("storage", "storage", "storage failed: IndexedDB is not available here; use RecordStore.memory() or a JSON file in Node");
    const open = factory.open(name, 1);
    open.onupgradeneeded = () => {
      for (const t of STORES) if (!open.result.objectStoreNames.contains(t)) open.result.createObjectStore(t);
    };
    try {
      const db = await req(open);
      // Another tab upgrading later: let it.
      db.onversionchange = () => db.close();
      return new IndexedDbBackend(db, name);
    } catch (e) {
      throw storageError("open", e);
    }
  }

  private static store(table: Table): (typeof STORES)[number] {
    return table === "base" ? "records" : table;
  }

  async get(table: Table, key: string): Promise<unknown> {
    const name = IndexedDbBackend.store(table);
    try {
      const v = await req(this.db.transaction(name, "readonly").objectStore(name).get(key));
      if (name !== "records") return v;
      const row = v as Combined | undefined;
      return table === "records" ? row?.r : row?.b;
    } catch (e) {
      throw storageError("read", e);
    }
  }

  async getAll(table: Table): Promise<Map<string, unknown>> {
    const name = IndexedDbBackend.store(table);
    try {
      const store = this.db.transaction(name, "readonly").objectStore(name);
      const [keys, values] = await Promise.all([req(store.getAllKeys()), req(store.getAll())]);
      const out = new Map<string, unknown>();
      keys.forEach((k, i) => {
        const v = values[i];
        if (name !== "records") out.set(String(k), v);
        else {
          const part = table === "records" ? (v as Combined).r : (v as Combined).b;
          if (part !== undefined) out.set(String(k), part);
        }
      });
      return out;
    } catch (e) {
      throw storageError("read", e);
    }
  }

  commit(ops: Op[], checks: Check[] = [], relaxed = false): Promise<boolean> {
    // Record and base ops by key (the last op of a part wins), the others as they are.
    const combined = new Map<string, { r?: Op; b?: Op }>();
    const plain: Op[] = [];
    for (const op of ops) {
      if (op.table === "records" || op.table === "base") {
        const c = combined.get(op.key) ?? {};
        if (op.table === "records") c.r = op;
        else c.b = op;
        combined.set(op.key, c);
      } else plain.push(op);
    }
    const names = [...new Set<string>([...plain.map((o) => o.table), ...(combined.size || checks.length ? ["records"] : [])])];
    if (names.length === 0) return Promise.resolve(true);
    // Rows to read first: checked keys, and keys of which only one part is written.
    const toRead = new Set<string>(checks.map((c) => c.key));
    for (const [k, c] of combined) if (!c.r || !c.b) toRead.add(k);
    return new Promise((resolve, reject) => {
      let tx: IDBTransaction;
      try {
        tx = this.db.transaction(names, "readwrite", { durability: relaxed ? "relaxed" : "strict" });
      } catch (e) {
        return reject(storageError("write", e));
      }
      let refused = false;
      tx.oncomplete = () => resolve(true);
      tx.onabort = () => (refused ? resolve(false) : reject(storageError("write", tx.error)));
      tx.onerror = () => undefined;
      const read = new Map<string, Combined | undefined>();
      const write = () => {
        for (const c of checks) {
          if ((read.get(c.key)?.r?.hash ?? null) !== c.hash) {
            refused = true;
            tx.abort();
            return;
          }
        }
        const records = combined.size ? tx.objectStore("records") : undefined;
        for (const [k, c] of combined) {
          const old = read.get(k);
          const row: Combined = {};
          const r = c.r ? (c.r.value as RecordRow | undefined) : old?.r;
          const b = c.b ? (c.b.value as BaseEntry | undefined) : old?.b;
          if (r !== undefined) row.r = r;
          if (b !== undefined) row.b = b;
          if (r === undefined && b === undefined) records!.delete(k);
          else records!.put(row, k);
        }
        for (const op of plain) {
          const st = tx.objectStore(op.table);
          if (op.value === undefined) st.delete(op.key);
          else st.put(op.value, op.key);
        }
      };
      if (toRead.size === 0) return write();
      const records = tx.objectStore("records");
      let left = toRead.size;
      for (const k of toRead) {
        const r = records.get(k);
        r.onsuccess = () => {
          read.set(k, r.result as Combined | undefined);
          if (--left === 0) write();
        };
      }
    });
  }

  announce(keys: string[]): void {
    if (keys.length) this.channel?.postMessage(keys);
  }

  listen(fn: (keys: string[]) => void): void {
    if (this.channel) this.channel.onmessage = (e: MessageEvent) => fn(e.data as string[]);
  }

  close(): void {
    this.channel?.close();
    this.db.close();
  }
}
