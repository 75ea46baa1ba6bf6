// The HTTP client of protocol v1 (docs/PROTOCOL.md), over the platform's `fetch` (browsers,
// extensions, Node 20+, Electron): the change feed with cursor and long-poll, single and batch
// pushes and fetches, history and archive, folders, info. Every request goes through
// `request`, which retries with exponential backoff and jitter (honouring `Retry-After`) and
// refreshes the token once on a 401; every failure becomes a SyncError of its docs/SPEC.md §5
// class in `errorFor`, as crates/transport-http/src/client/errors.rs maps them. Content that
// comes back is checked against its blake3 hash. No sync logic lives here (that is sync.ts).

import { hashHex, Item, Version } from "./core.js";
import { SyncError } from "./errors.js";

/** How failed requests that may pass are retried (docs/PROTOCOL.md "Client behaviour"). */
export interface RetryPolicy {
  /** Attempts in all, the first included. Default 5. */
  maxAttempts: number;
  /** The first delay, doubling each time. Default 250 ms. */
  minDelayMs: number;
  /** The longest delay, and the longest Retry-After waited out by the client. Default 30 s. */
  maxDelayMs: number;
  /** Randomise delays so many clients do not retry in step. Default true. */
  jitter: boolean;
}

/** The default retry policy: 5 attempts, 250 ms doubling up to 30 s, with jitter. */
export const DEFAULT_RETRY: RetryPolicy = { maxAttempts: 5, minDelayMs: 250, maxDelayMs: 30_000, jitter: true };

/** Options of a {@link SyncClient}. */
export interface ClientOptions {
  /** The server's base URL, up to (not including) `/sync/v1`. */
  baseUrl: string;
  /** The bearer token, or a function giving the current one (asked before every attempt). */
  token: string | (() => string | Promise<string>);
  /**
   * Asked once when the server refuses a token (401): a new token, or null to give up. The
   * default asks `token` again and retries if it changed.
   */
  refreshToken?: (rejected: string) => string | null | Promise<string | null>;
  retry?: Partial<RetryPolicy>;
  /** Per-request timeout (long-polls get their wait on top). Default 120 s. */
  timeoutMs?: number;
  /** The `fetch` to use (default `globalThis.fetch`). */
  fetch?: typeof fetch;
}

/** A page of the change feed. */
export interface ChangePage {
  changes: Item[];
  cursor: string;
  more: boolean;
}

/** A push: content under a precondition (`ifMatch` null creates). */
export interface PushRequest {
  key: string;
  content: Uint8Array;
  /** The revision it overwrites, or null to create (a tombstone counts as absent). */
  ifMatch: number | null;
  /** Its blake3 hash (computed when absent). */
  hash?: string;
  /** Its stamp (the server's clock when absent). */
  stamp?: string;
  /** The highest revision seen (Lamport rule); default the client's own high-water mark. */
  seen?: number;
}

/** What a push or delete gave: the new item, or a failed precondition with the current item. */
export type PushOutcome = { ok: true; item: Item } | { ok: false; current: Item | null };

/** Fetched content with its version. */
export interface Fetched {
  version: Version;
  content: Uint8Array;
}

/** The server's `GET /info`. */
export interface ServerInfo {
  protocol: number;
  max_item_bytes: number;
  rate_limit_per_second: number;
  rate_limit_burst: number;
  batch_max_items: number;
  batch_max_bytes: number;
  time_millis: number;
}

/** Items up to this size travel in batches. */
export const BATCH_ITEM_BYTES = 64 * 1024;
/** Items per batch request. */
export const BATCH_ITEMS = 500;
/** Content bytes per batch push. */
export const BATCH_BYTES = 4 * 1024 * 1024;
const BATCH_TYPE = "application/x-sync-batch";
const MAX_WAIT_SECS = 60;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A key in a URL path: each segment percent-encoded (docs/PROTOCOL.md "Basics"). */
export function encodeKey(key: string): string {
  return key.split("/").map(encodeURIComponent).join("/");
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const t = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => (clearTimeout(t), resolve()), { once: true });
  });
}

/** `Retry-After` in ms (seconds or an HTTP date), if present. */
export function retryAfterMs(h: string | null, now: number = Date.now()): number | undefined {
  if (!h) return undefined;
  const s = Number(h.trim());
  if (Number.isFinite(s) && s >= 0) return s * 1000;
  const d = Date.parse(h);
  return Number.isNaN(d) ? undefined : Math.max(0, d - now);
}

/** The context of a request, to name errors. */
interface Ctx {
  key?: string;
  sentSize?: number;
}

/** Maps a non-success answer to its SyncError (the Rust client's `error_for_status`). */
export function errorFor(status: number, body: string, retryAfter: number | undefined, ctx: Ctx): SyncError {
  let code = "";
  let message = body.slice(0, 200);
  let limit: number | undefined;
  try {
    const parsed = JSON.parse(body) as { error?: { code?: string; message?: string; limit?: number } };
    if (parsed.error) {
      code = parsed.error.code ?? "";
      message = parsed.error.message ?? "";
      limit = parsed.error.limit;
    }
  } catch {
    // Not the protocol's JSON (a proxy's page): keep the text.
  }
  const said = message ? `HTTP ${status}: ${message}` : `HTTP ${status}`;
  const extra = { key: ctx.key, status, retryAfterMs: retryAfter };
  const itemOrOffline = (what: string) =>
    ctx.key !== undefined ? new SyncError("item", code || "rejected", `${ctx.key}: ${what}`, extra) : new SyncError("offline", code || "http", `server unreachable: ${what}. Sync retries by itself`, extra);
  switch (status) {
    case 401:
    case 403:
      return new SyncError("auth", code || "unauthorized", `not authorised: ${said}. Check the token, or sign in again`, extra);
    case 404:
      return ctx.key !== undefined
        ? new SyncError("item", "not_found", `${ctx.key}: not found`, extra)
        : new SyncError("auth", "no_server", `no sync server at this URL: the sync routes answered ${said}; check the server URL (the part before /sync/v1)`, extra);
    case 400:
      if (code === "invalid_key") return new SyncError("item", code, `${ctx.key ?? "a key"}: invalid key: ${message}; rename it`, extra);
      if (code === "hash_mismatch") return new SyncError("item", code, `${ctx.key}: content does not match its hash; the transfer was corrupted and is retried on the next sync`, extra);
      if (code === "invalid_cursor") return new SyncError("offline", code, `the server does not know this change cursor (${said}); the client reads the feed from the start`, extra);
      return itemOrOffline(`the server refused the request: ${said}`);
    case 410:
      return new SyncError("offline", "cursor_expired", "the change cursor has expired (the server store was replaced or restored); a full comparison follows", extra);
    case 413:
      return ctx.key !== undefined
        ? new SyncError("item", "too_large", `${ctx.key}: ${ctx.sentSize ?? 0} bytes is over the server's limit of ${limit ?? "?"} bytes; it is not synced`, extra)
        : new SyncError("offline", "too_large", `server unreachable: ${said}`, extra);
    case 409:
    case 412:
    case 428:
      return itemOrOffline(said);
    case 429:
      return new SyncError("throttled", "rate_limited", `throttled by the server: ${said}. Sync resumes after the wait`, extra);
    default:
      return new SyncError("offline", code || "http", `server unreachable: ${said}. Sync retries by itself`, extra);
  }
}

function retryable(status: number): boolean {
  return status >= 500 || status === 429 || status === 408;
}

/** One request's description for {@link SyncClient.request}. */
interface Req {
  method: string;
  path: string;
  headers?: Record<string, string>;
  body?: Uint8Array | string;
  timeoutMs?: number;
  signal?: AbortSignal;
}

/** A sent request's answer, and whether an earlier attempt may have reached the server. */
interface Sent {
  res: Response;
  retried: boolean;
}

/**
 * The protocol v1 client for one tenant (one token). Tracks the highest revision seen and
 * sends it as `X-Sync-Seen` (the Lamport rule of docs/SPEC.md §2).
 */
/** The most versions one page of `GET /history` holds (the server's maximum `limit`). */
export const MAX_HISTORY_PAGE = 1000;

export class SyncClient {
  readonly api: string;
  /** The highest revision this client has seen. */
  seen = 0;
  private readonly retry: RetryPolicy;
  private readonly fetchFn: typeof fetch;
  private readonly timeoutMs: number;
  private noBatches = false;
  private info_: ServerInfo | null | undefined;

  constructor(private readonly opts: ClientOptions) {
    let url: URL;
    try {
      url = new URL(opts.baseUrl);
    } catch {
      throw new SyncError("auth", "invalid_url", `invalid server URL ${JSON.stringify(opts.baseUrl)}: not a URL; give e.g. https://sync.example.com`);
    }
    if (url.protocol !== "http:" && url.protocol !== "https:") {
      throw new SyncError("auth", "invalid_url", `invalid server URL ${JSON.stringify(opts.baseUrl)}: the scheme must be http or https`);
    }
    this.api = `${opts.baseUrl.replace(/\/+$/, "")}/sync/v1`;
    this.retry = { ...DEFAULT_RETRY, ...opts.retry };
    this.fetchFn = opts.fetch ?? globalThis.fetch.bind(globalThis);
    this.timeoutMs = opts.timeoutMs ?? 120_000;
  }

  private async token(): Promise<string> {
    const t = this.opts.token;
    return typeof t === "string" ? t : await t();
  }

  private observe(rev: number): void {
    if (rev > this.seen) this.seen = rev;
  }

  /** Sends one request with retries, backoff, Retry-After and one token refresh on 401. */
  private async request(req: Req): Promise<Sent> {
    let token = await this.token();
    let refreshed = false;
    let retried = false;
    let delay = this.retry.minDelayMs;
    for (let attempt = 1; ; attempt++) {
      let res: Response | undefined;
      let failure: SyncError | undefined;
      const timeout = AbortSignal.timeout(req.timeoutMs ?? this.timeoutMs);
      const signal = req.signal ? AbortSignal.any([req.signal, timeout]) : timeout;
      try {
        res = await this.fetchFn(this.api + req.path, {
          method: req.method,
          headers: { Authorization: `Bearer ${token}`, ...req.headers },
          body: req.body as BodyInit | undefined,
          signal,
        });
      } catch (e) {
        if (req.signal?.aborted) throw new SyncError("offline", "aborted", "the request was cancelled", { cause: e });
        const timedOut = timeout.aborted;
        failure = new SyncError(
          "offline",
          timedOut ? "timeout" : "network",
          `server unreachable: ${timedOut ? "no answer in time" : `could not connect to ${this.api} (${(e as Error).message})`}. Sync retries by itself`,
          { cause: e },
        );
      }
      if (res && res.status === 401 && !refreshed) {
        refreshed = true;
        const fresh = this.opts.refreshToken ? await this.opts.refreshToken(token) : await this.token();
        if (fresh !== null && fresh !== token) {
          await res.body?.cancel();
          token = fresh;
          attempt--;
          continue;
        }
        return { res, retried };
      }
      let atLeast = 0;
      if (res) {
        if (!retryable(res.status)) return { res, retried };
        if (res.status === 429) {
          const ra = retryAfterMs(res.headers.get("retry-after"));
          if (ra !== undefined && ra > this.retry.maxDelayMs) return { res, retried };
          atLeast = ra ?? 0;
        }
      }
      if (attempt >= this.retry.maxAttempts) {
        if (res) return { res, retried };
        throw failure!;
      }
      const jittered = this.retry.jitter ? delay * (1 + Math.random()) : delay;
      const wait = Math.max(atLeast, Math.min(jittered, this.retry.maxDelayMs));
      await res?.body?.cancel();
      retried = true;
      await sleep(wait, req.signal);
      if (req.signal?.aborted) throw new SyncError("offline", "aborted", "the request was cancelled");
      delay = Math.min(delay * 2, this.retry.maxDelayMs);
    }
  }

  private async fail(res: Response, ctx: Ctx): Promise<SyncError> {
    const text = await res.text().catch(() => "");
    return errorFor(res.status, text, retryAfterMs(res.headers.get("retry-after")), ctx);
  }

  private async json<T>(res: Response, what: string): Promise<T> {
    try {
      return (await res.json()) as T;
    } catch (e) {
      throw new SyncError("offline", "unreadable", `server unreachable: the answer to ${what} is not the protocol's JSON. Sync retries by itself`, { cause: e });
    }
  }

  private writeHeaders(stamp: string | undefined, seen: number | undefined): Record<string, string> {
    const h: Record<string, string> = { "X-Sync-Seen": String(seen ?? this.seen) };
    if (stamp) h["X-Sync-Stamp"] = stamp;
    return h;
  }

  /** `GET /health`: true when the server and its store answer. */
  async health(): Promise<boolean> {
    const { res } = await this.request({ method: "GET", path: "/health" });
    await res.body?.cancel();
    return res.ok;
  }

  /** `GET /info`, read once; null when the server has no such route. */
  async info(): Promise<ServerInfo | null> {
    if (this.info_ !== undefined) return this.info_;
    const { res } = await this.request({ method: "GET", path: "/info" });
    if (res.status === 404) {
      await res.body?.cancel();
      return (this.info_ = null);
    }
    if (!res.ok) throw await this.fail(res, {});
    return (this.info_ = await this.json<ServerInfo>(res, "info"));
  }

  /**
   * A page of the change feed after `since` (absent: from the start). With `waitSecs > 0`
   * and nothing new, the server holds the request until a change or the wait ends.
   */
  async changes(since: string | null, opts: { limit?: number; waitSecs?: number; signal?: AbortSignal } = {}): Promise<ChangePage> {
    const q = new URLSearchParams();
    if (since !== null) q.set("since", since);
    q.set("limit", String(opts.limit ?? 1000));
    const wait = Math.min(MAX_WAIT_SECS, Math.ceil(opts.waitSecs ?? 0));
    if (wait > 0) q.set("wait", String(wait));
    const { res } = await this.request({
      method: "GET",
      path: `/changes?${q}`,
      timeoutMs: this.timeoutMs + wait * 1000,
      ...(opts.signal ? { signal: opts.signal } : {}),
    });
    if (!res.ok) throw await this.fail(res, {});
    const page = await this.json<ChangePage>(res, "changes");
    for (const c of page.changes) this.observe(c.rev);
    return page;
  }

  /** Waits up to `timeoutMs` for a change after `since`; true when there is one. */
  async waitForChanges(since: string | null, timeoutMs: number, signal?: AbortSignal): Promise<boolean> {
    const page = await this.changes(since, { limit: 1, waitSecs: timeoutMs / 1000, ...(signal ? { signal } : {}) });
    return page.changes.length > 0;
  }

  /** `GET /items/<key>[?rev=]`: the content, checked against its hash. */
  async fetch(key: string, rev?: number): Promise<Fetched> {
    const path = `/items/${encodeKey(key)}${rev !== undefined ? `?rev=${rev}` : ""}`;
    const { res } = await this.request({ method: "GET", path });
    if (!res.ok) throw await this.fail(res, { key });
    const content = new Uint8Array(await res.arrayBuffer());
    const hash = res.headers.get("x-sync-hash") ?? "";
    const actual = hashHex(content);
    if (actual !== hash) {
      throw new SyncError("item", "hash_mismatch", `${key}: content does not match its hash (expected ${hash}, got ${actual}); the transfer was corrupted and is retried on the next sync`, { key });
    }
    const etag = res.headers.get("etag") ?? "";
    const version: Version = {
      rev: Number(etag.replace(/"/g, "")),
      hash,
      size: content.length,
      stamp: res.headers.get("x-sync-stamp") ?? "",
      deleted: false,
    };
    this.observe(version.rev);
    return { version, content };
  }

  /** `PUT /items/<key>` under its precondition. A 412 is `{ok:false, current}`, not an error. */
  async push(p: PushRequest): Promise<PushOutcome> {
    const hash = p.hash ?? hashHex(p.content);
    const headers: Record<string, string> = {
      ...this.writeHeaders(p.stamp, p.seen),
      "X-Sync-Hash": hash,
      "Content-Type": "application/octet-stream",
    };
    if (p.ifMatch === null) headers["If-None-Match"] = "*";
    else headers["If-Match"] = `"${p.ifMatch}"`;
    const { res } = await this.request({ method: "PUT", path: `/items/${encodeKey(p.key)}`, headers, body: p.content });
    if (res.status === 200 || res.status === 201) {
      const item = await this.json<Item>(res, "push");
      this.observe(item.rev);
      return { ok: true, item };
    }
    if (res.status === 412) {
      const body = await this.json<{ current?: Item | null }>(res, "push");
      const current = body.current ?? null;
      if (current) this.observe(current.rev);
      // What we sent is already there (a retried write that committed, or another tab).
      if (current && !current.deleted && current.kind === "file" && current.hash === hash) return { ok: true, item: current };
      return { ok: false, current };
    }
    throw await this.fail(res, { key: p.key, sentSize: p.content.length });
  }

  /**
   * Many pushes: items up to 64 KiB in `POST /batch/push` requests (500 or 4 MiB each), larger
   * ones alone; falls back to single requests for good on a server without batches. One
   * result per request, in order: an outcome, or the item's own SyncError.
   */
  async pushMany(reqs: PushRequest[]): Promise<(PushOutcome | SyncError)[]> {
    const out: (PushOutcome | SyncError)[] = new Array(reqs.length);
    const small: number[] = [];
    const single = async (i: number) => {
      try {
        out[i] = await this.push(reqs[i]!);
      } catch (e) {
        if (e instanceof SyncError && e.errorClass === "item") out[i] = e;
        else throw e;
      }
    };
    reqs.forEach((r, i) => (r.content.length <= BATCH_ITEM_BYTES && !this.noBatches ? small.push(i) : undefined));
    for (const chunk of chunks(small, (i) => reqs[i]!.content.length)) {
      if (this.noBatches) {
        for (const i of chunk) await single(i);
        continue;
      }
      const items = chunk.map((i) => {
        const r = reqs[i]!;
        const hash = r.hash ?? hashHex(r.content);
        return { key: r.key, if_match: r.ifMatch, hash, ...(r.stamp ? { stamp: r.stamp } : {}), size: r.content.length };
      });
      const manifest = encoder.encode(JSON.stringify({ seen: this.seen, items }) + "\n");
      const total = chunk.reduce((n, i) => n + reqs[i]!.content.length, manifest.length);
      const body = new Uint8Array(total);
      body.set(manifest, 0);
      let at = manifest.length;
      for (const i of chunk) {
        body.set(reqs[i]!.content, at);
        at += reqs[i]!.content.length;
      }
      const { res } = await this.request({ method: "POST", path: "/batch/push", headers: { "Content-Type": BATCH_TYPE }, body });
      if (res.status === 404 || res.status === 405) {
        await res.body?.cancel();
        this.noBatches = true;
        for (const i of chunk) await single(i);
        continue;
      }
      if (!res.ok) throw await this.fail(res, {});
      const { results } = await this.json<{ results: BatchPushResult[] }>(res, "batch push");
      if (!Array.isArray(results) || results.length !== chunk.length) {
        throw new SyncError("offline", "unreadable", "server unreachable: the batch push answer does not match the request. Sync retries by itself");
      }
      chunk.forEach((i, j) => {
        const r = results[j]!;
        const sentHash = items[j]!.hash;
        if ((r.status === 200 || r.status === 201) && r.item) {
          this.observe(r.item.rev);
          out[i] = { ok: true, item: r.item };
        } else if (r.status === 412) {
          const current = r.current ?? null;
          if (current) this.observe(current.rev);
          out[i] = current && !current.deleted && current.kind === "file" && current.hash === sentHash ? { ok: true, item: current } : { ok: false, current };
        } else {
          out[i] = errorFor(r.status, JSON.stringify({ error: r.error ?? {} }), undefined, { key: reqs[i]!.key, sentSize: reqs[i]!.content.length });
        }
      });
    }
    for (let i = 0; i < reqs.length; i++) if (out[i] === undefined) await single(i);
    return out;
  }

  /**
   * Many fetches in `POST /batch/fetch` requests (500 each); deferred items (past the
   * answer's byte limit) are asked again. One result per request: the content, or its error.
   */
  async fetchMany(reqs: { key: string; rev?: number }[]): Promise<(Fetched | SyncError)[]> {
    const out: (Fetched | SyncError)[] = new Array(reqs.length);
    const single = async (i: number) => {
      try {
        out[i] = await this.fetch(reqs[i]!.key, reqs[i]!.rev);
      } catch (e) {
        if (e instanceof SyncError && e.errorClass === "item") out[i] = e;
        else throw e;
      }
    };
    let pending = reqs.map((_, i) => i);
    while (pending.length > 0) {
      if (this.noBatches) {
        for (const i of pending) await single(i);
        break;
      }
      const chunk = pending.slice(0, BATCH_ITEMS);
      const body = JSON.stringify({ items: chunk.map((i) => ({ key: reqs[i]!.key, ...(reqs[i]!.rev !== undefined ? { rev: reqs[i]!.rev } : {}) })) });
      const { res } = await this.request({ method: "POST", path: "/batch/fetch", headers: { "Content-Type": "application/json" }, body });
      if (res.status === 404 || res.status === 405) {
        await res.body?.cancel();
        this.noBatches = true;
        continue;
      }
      if (!res.ok) throw await this.fail(res, {});
      const bytes = new Uint8Array(await res.arrayBuffer());
      const nl = bytes.indexOf(10);
      if (nl < 0) throw new SyncError("offline", "unreadable", "server unreachable: the batch fetch answer has no manifest line. Sync retries by itself");
      let results: BatchFetchResult[];
      try {
        results = (JSON.parse(decoder.decode(bytes.subarray(0, nl))) as { results: BatchFetchResult[] }).results;
      } catch (e) {
        throw new SyncError("offline", "unreadable", "server unreachable: the batch fetch manifest is not JSON. Sync retries by itself", { cause: e });
      }
      if (!Array.isArray(results) || results.length !== chunk.length) {
        throw new SyncError("offline", "unreadable", "server unreachable: the batch fetch answer does not match the request. Sync retries by itself");
      }
      let at = nl + 1;
      const again: number[] = [];
      chunk.forEach((i, j) => {
        const r = results[j]!;
        const key = reqs[i]!.key;
        if (r.status === 200 && r.version) {
          const content = bytes.slice(at, at + r.version.size);
          at += r.version.size;
          const actual = hashHex(content);
          if (content.length !== r.version.size || actual !== r.version.hash) {
            out[i] = new SyncError("item", "hash_mismatch", `${key}: content does not match its hash; the transfer was corrupted and is retried on the next sync`, { key });
          } else {
            this.observe(r.version.rev);
            out[i] = { version: r.version, content };
          }
        } else if (r.status === 413 && r.error?.code === "deferred") {
          again.push(i);
        } else {
          out[i] = errorFor(r.status, JSON.stringify({ error: r.error ?? {} }), undefined, { key });
        }
      });
      pending = pending.slice(chunk.length);
      if (again.length === chunk.length) {
        // Not even one fitted: fetch the first alone.
        await single(again.shift()!);
      }
      pending = again.concat(pending);
    }
    return out;
  }

  /** `DELETE /items/<key>` (a tombstone), under `If-Match`. A 404 is `{ok:false,current:null}`. */
  async delete(key: string, ifMatch: number, stamp?: string): Promise<PushOutcome> {
    const headers = { ...this.writeHeaders(stamp, undefined), "If-Match": `"${ifMatch}"` };
    const { res } = await this.request({ method: "DELETE", path: `/items/${encodeKey(key)}`, headers });
    if (res.status === 200) {
      const item = await this.json<Item>(res, "delete");
      this.observe(item.rev);
      return { ok: true, item };
    }
    if (res.status === 412) {
      const body = await this.json<{ current?: Item | null }>(res, "delete");
      if (body.current?.deleted) return { ok: true, item: body.current };
      return { ok: false, current: body.current ?? null };
    }
    if (res.status === 404) {
      await res.body?.cancel();
      return { ok: false, current: null };
    }
    throw await this.fail(res, { key });
  }

  /** `PUT /folders/<path>`: creates the folder and its parents. */
  async ensureFolder(path: string, stamp?: string): Promise<Item> {
    const { res } = await this.request({ method: "PUT", path: `/folders/${encodeKey(path)}`, headers: this.writeHeaders(stamp, undefined) });
    if (!res.ok) throw await this.fail(res, { key: path });
    const item = await this.json<Item>(res, "folder");
    this.observe(item.rev);
    return item;
  }

  /**
   * `GET /history/<key>?limit=&before=`: every version, oldest first. The server answers in
   * pages of at most {@link MAX_HISTORY_PAGE} versions, newest first, each saying where the next
   * one starts (`next_before`); this follows them all. A page that does not move back is refused
   * (offline: the server misbehaves) instead of looping. An older server's single answer (every
   * version, no `next_before`) works the same.
   */
  async history(key: string): Promise<Version[]> {
    const out: Version[] = [];
    let before: number | null = null;
    for (;;) {
      const q = new URLSearchParams({ limit: String(MAX_HISTORY_PAGE) });
      if (before !== null) q.set("before", String(before));
      const { res } = await this.request({ method: "GET", path: `/history/${encodeKey(key)}?${q}` });
      if (!res.ok) throw await this.fail(res, { key });
      const page = await this.json<{ versions: Version[]; next_before?: number | null }>(res, "history");
      out.push(...page.versions);
      const next = page.next_before ?? null;
      if (next === null) break;
      if (before !== null && !(next < before)) {
        throw new SyncError("offline", "unreadable", `server unreachable: its history of ${key} said to go on before revision ${next}, which does not move back from ${before}. Sync retries by itself`);
      }
      before = next;
    }
    return out.sort((a, b) => a.rev - b.rev);
  }

  /** `POST /history/<key>`: keeps a version (a conflict's loser) in history, not current. */
  async archive(key: string, content: Uint8Array, stamp?: string): Promise<Version> {
    const headers = { ...this.writeHeaders(stamp, undefined), "X-Sync-Hash": hashHex(content), "Content-Type": "application/octet-stream" };
    const { res } = await this.request({ method: "POST", path: `/history/${encodeKey(key)}`, headers, body: content });
    if (!res.ok) throw await this.fail(res, { key, sentSize: content.length });
    const v = await this.json<Version>(res, "archive");
    this.observe(v.rev);
    return v;
  }
}

interface BatchPushResult {
  status: number;
  item?: Item;
  current?: Item | null;
  error?: { code: string; message: string };
}

interface BatchFetchResult {
  status: number;
  version?: Version;
  error?: { code: string; message: string };
}

/** Splits indices into runs that fit one batch (500 items, 4 MiB). */
function chunks(indices: number[], size: (i: number) => number): number[][] {
  const out: number[][] = [];
  let cur: number[] = [];
  let bytes = 0;
  for (const i of indices) {
    const s = size(i);
    if (cur.length > 0 && (cur.length === BATCH_ITEMS || bytes + s > BATCH_BYTES)) {
      out.push(cur);
      cur = [];
      bytes = 0;
    }
    cur.push(i);
    bytes += s;
  }
  if (cur.length > 0) out.push(cur);
  return out;
}
