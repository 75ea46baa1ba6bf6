// The error classes, the error-priority stack and the sync status of docs/SPEC.md §5: the
// same classes, order and rules as the Rust crate's `sync_core::ErrorClass`, `ErrorStack`
// and `SyncStatus` (crates/sync-core/src/status.rs, error.rs). State only: the engine
// (sync.ts) decides when to push and clear. Nothing here does I/O.

/** How important a failure is, most important first (docs/SPEC.md §5). */
export type ErrorClass = "auth" | "storage" | "offline" | "throttled" | "item" | "warning";

/** The classes in order of importance; the index is the rank. */
export const ERROR_CLASSES: readonly ErrorClass[] = [
  "auth",
  "storage",
  "offline",
  "throttled",
  "item",
  "warning",
];

/** The rank of a class: 0 is the most important. */
export function classRank(c: ErrorClass): number {
  return ERROR_CLASSES.indexOf(c);
}

/** True for the classes that stop a sync (auth, storage, offline, throttled). */
export function stopsSync(c: ErrorClass): boolean {
  return classRank(c) < classRank("item");
}

/**
 * A failure of the client, the server or the store. `code` is the server's error code when
 * it answered one (`unauthorized`, `conflict`, `too_large`, ...), or a client-side one
 * (`network`, `timeout`, `hash_mismatch`, `cursor_expired`, `invalid_key`, `storage`).
 */
export class SyncError extends Error {
  /** Where it goes on the error stack. */
  readonly errorClass: ErrorClass;
  /** A short machine-readable code. */
  readonly code: string;
  /** The key it is about, if one. */
  readonly key: string | undefined;
  /** The HTTP status, when the server answered. */
  readonly status: number | undefined;
  /** How long the server asked to wait (429 `Retry-After`), in ms. */
  readonly retryAfterMs: number | undefined;

  constructor(
    errorClass: ErrorClass,
    code: string,
    message: string,
    extra: { key?: string; status?: number; retryAfterMs?: number; cause?: unknown } = {},
  ) {
    super(message, extra.cause === undefined ? undefined : { cause: extra.cause });
    this.name = "SyncError";
    this.errorClass = errorClass;
    this.code = code;
    this.key = extra.key;
    this.status = extra.status;
    this.retryAfterMs = extra.retryAfterMs;
  }
}

/** What an entry is about: `null` for the whole sync, else one key. */
export type Scope = string | null;

/** One failure on the stack. */
export interface ErrorEntry {
  errorClass: ErrorClass;
  /** `null`: global; otherwise the key. */
  scope: Scope;
  /** What happened and what to do, for a person. */
  message: string;
  /** When it was first seen, ms since the Unix epoch. */
  firstSeenMillis: number;
}

function rankCompare(a: ErrorEntry, b: ErrorEntry): number {
  return (
    classRank(a.errorClass) - classRank(b.errorClass) ||
    Number(a.scope !== null) - Number(b.scope !== null) ||
    a.firstSeenMillis - b.firstSeenMillis ||
    compareKeys(a.scope ?? "", b.scope ?? "")
  );
}

/** Orders keys by their UTF-8 bytes, as Rust's `Key` does (code point order). */
export function compareKeys(a: string, b: string): number {
  if (a === b) return 0;
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; ) {
    const ca = a.codePointAt(i)!;
    const cb = b.codePointAt(i)!;
    if (ca !== cb) return ca < cb ? -1 : 1;
    i += ca > 0xffff ? 2 : 1;
  }
  return a.length - b.length;
}

/** The set of current failures, at most one per (class, scope); docs/SPEC.md §5. */
export class ErrorStack {
  private entries: ErrorEntry[] = [];

  /** Records a failure; the same class and scope replaces the message, keeps first-seen. */
  push(errorClass: ErrorClass, scope: Scope, message: string, now: number = Date.now()): void {
    const existing = this.entries.find((e) => e.errorClass === errorClass && e.scope === scope);
    if (existing) existing.message = message;
    else this.entries.push({ errorClass, scope, message, firstSeenMillis: now });
  }

  /** Records a {@link SyncError} (or any error, as `offline` when it is not one). */
  pushError(error: unknown, now: number = Date.now()): void {
    const e = asSyncError(error);
    this.push(e.errorClass, e.key ?? null, e.message, now);
  }

  /** The one entry to show: most important class, global before per-key, oldest, by key. */
  top(): ErrorEntry | undefined {
    let best: ErrorEntry | undefined;
    for (const e of this.entries) if (!best || rankCompare(e, best) < 0) best = e;
    return best;
  }

  /** Clears every entry of `scope`: it just succeeded. */
  clearScope(scope: Scope): void {
    this.entries = this.entries.filter((e) => e.scope !== scope);
  }

  /** Clears the entries of one class. */
  clearClass(errorClass: ErrorClass): void {
    this.entries = this.entries.filter((e) => e.errorClass !== errorClass);
  }

  /** Keeps only the entries for which `keep` is true. */
  retain(keep: (e: ErrorEntry) => boolean): void {
    this.entries = this.entries.filter(keep);
  }

  /** Every entry, most important first. */
  all(): ErrorEntry[] {
    return [...this.entries].sort(rankCompare);
  }

  get size(): number {
    return this.entries.length;
  }
}

/** What the sync is doing, for an icon (docs/SPEC.md §5). */
export type SyncStatus =
  | { state: "off" }
  | { state: "idle"; lastSync: number | null; attention?: ErrorEntry }
  | { state: "syncing"; done: number; total: number }
  | { state: "error"; top: ErrorEntry };

/** Any thrown value as a {@link SyncError}: unknown errors are `storage` (our own bug or the store). */
export function asSyncError(error: unknown): SyncError {
  if (error instanceof SyncError) return error;
  const message = error instanceof Error ? error.message : String(error);
  return new SyncError("storage", "internal", `unexpected failure: ${message}`, { cause: error });
}
