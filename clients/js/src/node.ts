// Node/Electron only (imports node:fs): `JsonFileBackend`, a record store kept in one JSON
// file, rewritten whole on every commit through a temporary file and a rename (owner-only,
// 0600), so a crash leaves the old or the new file. For small stores (settings, a few
// thousand records); larger ones belong in IndexedDB or the Rust store-records. Not exported
// from the browser entry point, so bundles for pages never pull in node:fs.

import { promises as fs } from "node:fs";
import { MemoryBackend, Op, Check, RecordStore, Table } from "./store.js";
import { SyncError } from "./errors.js";

export * from "./index.js";

interface FileShape {
  version: 1;
  tables: Record<string, Record<string, unknown>>;
}

function encode(v: unknown): unknown {
  if (v instanceof Uint8Array) return { $bytes: Buffer.from(v).toString("base64") };
  if (Array.isArray(v)) return v.map(encode);
  if (v && typeof v === "object") return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, encode(x)]));
  return v;
}

function decode(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(decode);
  if (v && typeof v === "object") {
    const o = v as Record<string, unknown>;
    if (typeof o.$bytes === "string" && Object.keys(o).length === 1) return new Uint8Array(Buffer.from(o.$bytes, "base64"));
    return Object.fromEntries(Object.entries(o).map(([k, x]) => [k, decode(x)]));
  }
  return v;
}

/** A backend in one JSON file; commits are serialised and each rewrites the file atomically. */
export class JsonFileBackend extends MemoryBackend {
  private queue: Promise<unknown> = Promise.resolve();
  private dirty = false;

  private constructor(private readonly path: string) {
    super();
  }

  /** Opens `path`, creating it at the first commit if it does not exist. */
  static async open(path: string): Promise<JsonFileBackend> {
    const b = new JsonFileBackend(path);
    let text: string | undefined;
    try {
      text = await fs.readFile(path, "utf8");
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "ENOENT") {
        throw new SyncError("storage", "storage", `storage failed: cannot read the record store ${path}: ${(e as Error).message}`, { cause: e });
      }
    }
    if (text !== undefined) {
      let shape: FileShape;
      try {
        shape = JSON.parse(text) as FileShape;
      } catch (e) {
        throw new SyncError("storage", "storage", `storage failed: the record store ${path} is not valid JSON; restore it from a backup or move it away to start empty`, { cause: e });
      }
      for (const [t, rows] of Object.entries(shape.tables ?? {})) {
        const m = b.table(t as Table);
        for (const [k, v] of Object.entries(rows)) m.set(k, decode(v));
      }
    }
    return b;
  }

  /**
   * Applies the ops, then rewrites the file. A `relaxed` commit (feed pages, downloads: what
   * the server still holds) only marks the file dirty; the next strict commit, or `flush`,
   * writes everything, so a first sync rewrites the file a few times instead of once per
   * batch. A crash before that loses the relaxed commits whole, and the next sync repeats them.
   */
  override commit(ops: Op[], checks: Check[] = [], relaxed = false): Promise<boolean> {
    const run = async () => {
      // What the ops replace, so a commit whose file write fails is undone in memory too:
      // a refused commit leaves nothing behind, in the file or in what the app reads.
      const undo = ops.map((op) => {
        const m = this.table(op.table);
        return { table: op.table, key: op.key, had: m.has(op.key), value: m.get(op.key) };
      });
      if (!this.apply(ops, checks)) return false;
      if (relaxed) {
        this.dirty = true;
        return true;
      }
      try {
        await this.write();
      } catch (e) {
        for (const u of undo.reverse()) {
          const m = this.table(u.table);
          if (u.had) m.set(u.key, u.value);
          else m.delete(u.key);
        }
        throw e;
      }
      return true;
    };
    const next = this.queue.then(run, run);
    this.queue = next.catch(() => undefined);
    return next;
  }

  /** Writes relaxed commits still only in memory. */
  flush(): Promise<void> {
    const run = async () => {
      if (this.dirty) await this.write();
    };
    const next = this.queue.then(run, run);
    this.queue = next.catch(() => undefined);
    return next;
  }

  private async write(): Promise<void> {
    const tables: Record<string, Record<string, unknown>> = {};
    for (const [t, m] of this.tables) tables[t] = Object.fromEntries([...m].map(([k, v]) => [k, encode(v)]));
    const tmp = `${this.path}.tmp-${process.pid}`;
    try {
      await fs.writeFile(tmp, JSON.stringify({ version: 1, tables } satisfies FileShape), { mode: 0o600 });
      await fs.rename(tmp, this.path);
    } catch (e) {
      throw new SyncError("storage", "storage", `storage failed: cannot write the record store ${this.path}: ${(e as Error).message}; free disk space or fix its permissions`, { cause: e });
    }
    this.dirty = false;
  }
}

/** A record store kept in the JSON file `path`. */
export async function openJsonFileStore(path: string): Promise<RecordStore> {
  return new RecordStore(await JsonFileBackend.open(path));
}
