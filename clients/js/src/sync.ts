// The sync engine for a RecordStore: `syncOnce` pulls the change feed into the store's copy
// of the remote tree, plans with reconcile.ts (docs/SPEC.md §3) and executes the steps
// through the SyncClient, keeping every loser (local backup plus the server's history);
// `start` runs the watch loop (long-poll, local edits, backoff from 0.5 s doubling to 60 s
// with jitter). Failures go to the error stack; the status (`off`/`idle`/`syncing`/`error`)
// follows docs/SPEC.md §5. The decisions live in reconcile.ts and merge.ts, not here.

import { BATCH_ITEMS, ChangePage, Fetched, SyncClient } from "./client.js";
import { checkKey, compareStamps, formatStamp, hashHex, Item, parseStamp, randomNode, Stamp, successor } from "./core.js";
import { asSyncError, ErrorEntry, ErrorStack, stopsSync, SyncError, SyncStatus } from "./errors.js";
import { MergeInput } from "./merge.js";
import { baseFrom, DEFAULT_POLICY, Local, reconcile, Step, SyncPolicy } from "./reconcile.js";
import { backupOp, BaseEntry, Check, Op, RecordRow, RecordStore } from "./store.js";

/** One side of a resolved conflict. */
export interface ConflictVersion {
  stamp: string;
  hash: string;
  /** The server revision that keeps it. */
  rev: number;
}

/** A conflict a sync resolved (docs/SPEC.md §3 "Conflicts and history an app can show"). */
export interface ConflictRecord {
  key: string;
  winner: "local" | "remote" | "merged";
  local: ConflictVersion;
  remote: ConflictVersion;
  /** The revision current after the resolution. */
  current: number;
  /** Where this device's version was backed up, when it was. */
  backup: string | null;
}

/**
 * The record of a conflict whose local version lost and was kept (`kept`: its backup and the
 * revision it was archived as), the winner being the server's or a merge's (`current`).
 */
function keptConflict(
  key: string,
  winner: "remote" | "merged",
  step: { local: Local; localStamp: Stamp; remote: Item },
  kept: { backup: string; archived: number },
  current: number,
): ConflictRecord {
  return {
    key,
    winner,
    local: { stamp: formatStamp(step.localStamp), hash: step.local.hash, rev: kept.archived },
    remote: { stamp: step.remote.stamp, hash: step.remote.hash ?? "", rev: step.remote.rev },
    current,
    backup: kept.backup,
  };
}

/** What one sync did (the Rust `SyncReport`). */
export interface SyncReport {
  uploaded: number;
  downloaded: number;
  conflicts: number;
  unchanged: number;
  skipped: number;
  errors: ErrorEntry[];
  resolved: ConflictRecord[];
}

/** Options of a {@link SyncEngine}. */
export interface EngineOptions {
  client: SyncClient;
  store: RecordStore;
  policy?: Partial<SyncPolicy>;
  /** Plans per sync (a replan follows a step that found things changed). Default 3. */
  maxPasses?: number;
  /** Long-poll wait of the watch loop, seconds. Default 30. */
  waitSecs?: number;
}

const RECENT_CONFLICTS = 256;
const PAGE = 1000;

/** Syncs one RecordStore with one server tenant. */
export class SyncEngine {
  readonly client: SyncClient;
  readonly store: RecordStore;
  readonly policy: SyncPolicy;
  readonly errors = new ErrorStack();
  private readonly maxPasses: number;
  private readonly waitSecs: number;
  private status_: SyncStatus = { state: "off" };
  private readonly listeners = new Set<(s: SyncStatus) => void>();
  private lastSync: number | null = null;
  private running = false;
  private enabled = false;
  private stopped = false;
  private wake: (() => void) | undefined;
  private abort: AbortController | undefined;
  private loop: Promise<void> | undefined;
  private dirty = false;
  private unsubscribe: (() => void) | undefined;
  private inFlight: Promise<SyncReport> | undefined;
  private done = 0;
  private total = 0;

  constructor(opts: EngineOptions) {
    this.client = opts.client;
    this.store = opts.store;
    this.policy = { ...DEFAULT_POLICY, ...opts.policy };
    this.maxPasses = opts.maxPasses ?? 3;
    this.waitSecs = opts.waitSecs ?? 30;
  }

  /** The status now. */
  get status(): SyncStatus {
    return this.status_;
  }

  /** Calls `fn` on every status change (and once now); returns the unsubscribe. */
  onStatus(fn: (s: SyncStatus) => void): () => void {
    this.listeners.add(fn);
    fn(this.status_);
    return () => this.listeners.delete(fn);
  }

  private setStatus(s: SyncStatus): void {
    this.status_ = s;
    for (const fn of this.listeners) {
      try {
        fn(s);
      } catch {
        // A listener's failure is its own.
      }
    }
  }

  private idleOrError(): SyncStatus {
    if (this.stopped) return { state: "off" };
    const top = this.errors.top();
    if (top && stopsSync(top.errorClass)) return { state: "error", top };
    return top ? { state: "idle", lastSync: this.lastSync, attention: top } : { state: "idle", lastSync: this.lastSync };
  }

  /** `n` more steps of this pass are done. */
  private progress(n: number): void {
    this.done = Math.min(this.total, this.done + n);
    this.setStatus({ state: "syncing", done: this.done, total: this.total });
  }

  /** This device's node id (made once, kept in the store). */
  private async node(): Promise<string> {
    let node = await this.store.meta<string>("node");
    if (!node) {
      node = randomNode();
      await this.store.commitSync([{ table: "meta", key: "node", value: node }]);
    }
    return node;
  }

  /** Every conflict resolved lately, newest last (at most 256, kept in the store). */
  async conflicts(): Promise<ConflictRecord[]> {
    return (await this.store.meta<ConflictRecord[]>("conflicts")) ?? [];
  }

  /** Every version the server keeps of `key`, oldest first. */
  history(key: string) {
    return this.client.history(key);
  }

  /**
   * One sync: pull, plan, execute, plan again while steps found things changed (at most
   * `maxPasses`). Resolves with the report; a failure that stops sync (auth, storage,
   * offline, throttled) rejects with its SyncError after recording it on the stack. Two
   * calls at once share one sync; in a browser, tabs of one origin take turns (Web Locks).
   */
  syncOnce(): Promise<SyncReport> {
    if (this.inFlight) return this.inFlight;
    const run = async () => {
      const locks = (globalThis.navigator as { locks?: LockManager } | undefined)?.locks;
      return locks ? await locks.request(`sync-engine:${this.client.api}`, () => this.syncLocked()) : await this.syncLocked();
    };
    this.inFlight = run().finally(() => (this.inFlight = undefined));
    return this.inFlight;
  }

  private async syncLocked(): Promise<SyncReport> {
    const report: SyncReport = { uploaded: 0, downloaded: 0, conflicts: 0, unchanged: 0, skipped: 0, errors: [], resolved: [] };
    const seenNow = new ErrorStack();
    this.running = true;
    this.setStatus({ state: "syncing", done: 0, total: 0 });
    try {
      const node = await this.node();
      this.client.seen = Math.max(this.client.seen, (await this.store.meta<number>("seen")) ?? 0);
      for (let pass = 0; pass < this.maxPasses; pass++) {
        await this.pull(seenNow);
        const plan = reconcile(await this.store.rows(), await this.store.bases(), await this.store.remote(), node, this.policy);
        report.unchanged = plan.unchanged;
        this.done = 0;
        this.total = plan.steps.length;
        this.setStatus({ state: "syncing", done: 0, total: this.total });
        let replan = false;
        const uploads: [string, Extract<Step, { kind: "upload" }>][] = [];
        const downloads: [string, Extract<Step, { kind: "download" }>][] = [];
        for (const [key, step] of plan.steps) {
          if (step.kind === "upload") uploads.push([key, step]);
          else if (step.kind === "download") downloads.push([key, step]);
        }
        // Downloads and uploads in batches; the rest one by one.
        replan = (await this.downloads(downloads, report, seenNow)) || replan;
        replan = (await this.uploads(uploads, report, seenNow, node)) || replan;
        this.progress(uploads.length);
        for (const [key, step] of plan.steps) {
          if (step.kind === "upload" || step.kind === "download") continue;
          try {
            replan = (await this.apply(key, step, report, seenNow, node)) || replan;
          } catch (e) {
            const err = asSyncError(e);
            if (stopsSync(err.errorClass)) throw err;
            seenNow.push(err.errorClass, key, err.message);
          }
          this.progress(1);
        }
        if (!replan) break;
      }
      await this.store.commitSync([{ table: "meta", key: "seen", value: this.client.seen }]);
      // Clear-on-success: what this sync did not report again is gone; what it did keeps
      // its first-seen time.
      const before = this.errors.all();
      this.errors.retain(() => false);
      for (const e of seenNow.all()) {
        const old = before.find((b) => b.errorClass === e.errorClass && b.scope === e.scope);
        this.errors.push(e.errorClass, e.scope, e.message, old?.firstSeenMillis ?? e.firstSeenMillis);
      }
      report.errors = this.errors.all();
      report.skipped = report.errors.filter((e) => e.errorClass === "warning").length;
      this.lastSync = Date.now();
      return report;
    } catch (e) {
      const err = asSyncError(e);
      for (const x of seenNow.all()) this.errors.push(x.errorClass, x.scope, x.message, x.firstSeenMillis);
      this.errors.pushError(err);
      throw err;
    } finally {
      this.running = false;
      this.setStatus(this.idleOrError());
    }
  }

  /** Reads the feed to its end into the remote copy, one commit per page. */
  private async pull(seen: ErrorStack): Promise<void> {
    let cursor = (await this.store.meta<string>("cursor")) ?? null;
    // The next page is asked for while this one is committed.
    let next: Promise<ChangePage> | null = null;
    for (;;) {
      let page: ChangePage;
      try {
        page = await (next ?? this.client.changes(cursor, { limit: PAGE }));
      } catch (e) {
        next = null;
        if (e instanceof SyncError && (e.code === "cursor_expired" || e.code === "invalid_cursor") && cursor !== null) {
          await this.forgetRemote();
          cursor = null;
          continue;
        }
        throw e;
      }
      next = page.more ? this.client.changes(page.cursor, { limit: PAGE }) : null;
      // Not awaited until the next turn: keep a failure from being reported as unhandled.
      next?.catch(() => undefined);
      const ops: Op[] = [];
      for (const item of page.changes) {
        // A key that breaks docs/SPEC.md §1 is no record of ours, whatever the server says.
        let valid = false;
        try {
          valid = checkKey(item.key) === item.key;
        } catch {
          valid = false;
        }
        if (valid) ops.push({ table: "remote", key: item.key, value: item });
        else seen.push("item", item.key, `${JSON.stringify(item.key)}: the server sent a key that breaks the key rules; it is not synced`);
      }
      ops.push({ table: "meta", key: "cursor", value: page.cursor });
      for (const item of page.changes) this.store.clock.observe(parseStamp(item.stamp).millis);
      await this.store.commitSync(ops, [], true);
      cursor = page.cursor;
      if (!page.more) return;
    }
  }

  /** After CursorExpired: forget the remote copy and mark every base unconfirmed (§2). */
  private async forgetRemote(): Promise<void> {
    const ops: Op[] = [...(await this.store.remote()).keys()].map((key) => ({ table: "remote", key }));
    for (const [key, b] of await this.store.bases()) ops.push({ table: "base", key, value: { ...b, confirmed: false } });
    ops.push({ table: "meta", key: "cursor" });
    await this.store.commitSync(ops);
  }

  private async rememberConflict(record: ConflictRecord, report: SyncReport): Promise<void> {
    report.conflicts++;
    report.resolved.push(record);
    const all = [...(await this.conflicts()), record].slice(-RECENT_CONFLICTS);
    await this.store.commitSync([{ table: "meta", key: "conflicts", value: all }]);
  }

  private async readLocal(key: string, local: Local): Promise<Uint8Array | undefined> {
    const row = (await this.store.backend.get("records", key)) as RecordRow | undefined;
    return row && row.hash === local.hash ? row.value : undefined;
  }

  /**
   * Downloads in batches of 500, the next batch fetched while this one is committed; true
   * when something changed under a step (plan again).
   */
  private async downloads(steps: [string, Extract<Step, { kind: "download" }>][], report: SyncReport, seen: ErrorStack): Promise<boolean> {
    let replan = false;
    const chunks: (typeof steps)[] = [];
    for (let i = 0; i < steps.length; i += BATCH_ITEMS) chunks.push(steps.slice(i, i + BATCH_ITEMS));
    const fetch = (c: typeof steps) => {
      const p = this.client.fetchMany(c.map(([key, s]) => ({ key, rev: s.remote.rev })));
      p.catch(() => undefined);
      return p;
    };
    let next = chunks.length > 0 ? fetch(chunks[0]!) : null;
    for (let c = 0; c < chunks.length; c++) {
      const chunk = chunks[c]!;
      const got = await next!;
      next = c + 1 < chunks.length ? fetch(chunks[c + 1]!) : null;
      replan = (await this.writeDownloads(chunk, got, report, seen)) || replan;
    }
    return replan;
  }

  private async writeDownloads(
    steps: [string, Extract<Step, { kind: "download" }>][],
    got: (Fetched | SyncError)[],
    report: SyncReport,
    seen: ErrorStack,
  ): Promise<boolean> {
    let replan = false;
    const ops: Op[] = [];
    const checks: Check[] = [];
    const written: string[] = [];
    for (let i = 0; i < steps.length; i++) {
      const [key, step] = steps[i]!;
      const r = got[i]!;
      if (r instanceof SyncError) {
        seen.push(r.errorClass, key, r.message);
        continue;
      }
      ops.push({ table: "records", key, value: { value: r.content, hash: r.version.hash!, modified: parseStamp(step.remote.stamp).millis } satisfies RecordRow });
      ops.push({ table: "base", key, value: baseFrom(step.remote) });
      checks.push({ key, hash: step.expected });
      written.push(key);
    }
    if (ops.length === 0) return replan;
    if (await this.store.commitSync(ops, checks, true)) {
      report.downloaded += written.length;
      this.progress(written.length);
      return replan;
    }
    // Some record changed meanwhile: write the others one by one, plan the rest again.
    for (let i = 0; i < written.length; i++) {
      const ok = await this.store.commitSync(ops.slice(2 * i, 2 * i + 2), [checks[i]!]);
      if (ok) report.downloaded++;
      else replan = true;
    }
    this.progress(written.length);
    return replan;
  }

  /** Uploads in batches; true when a precondition failed (plan again). */
  private async uploads(steps: [string, Extract<Step, { kind: "upload" }>][], report: SyncReport, seen: ErrorStack, node: string): Promise<boolean> {
    if (steps.length === 0) return false;
    let replan = false;
    const rows = await this.store.rows();
    const sendable: [string, Extract<Step, { kind: "upload" }>, Uint8Array][] = [];
    for (const [key, step] of steps) {
      const row = rows.get(key);
      if (!row || row.hash !== step.local.hash) replan = true;
      else sendable.push([key, step, row.value]);
    }
    const results = await this.client.pushMany(
      sendable.map(([key, s, content]) => ({ key, content, ifMatch: s.ifMatch, hash: s.local.hash, stamp: formatStamp(s.stamp) })),
    );
    const ops: Op[] = [];
    const conflicts: ConflictRecord[] = [];
    for (let i = 0; i < sendable.length; i++) {
      const [key, step] = sendable[i]!;
      const r = results[i]!;
      if (r instanceof SyncError) {
        seen.push(r.errorClass, key, r.message);
        continue;
      }
      if (!r.ok) {
        if (r.current) ops.push({ table: "remote", key, value: r.current });
        replan = true;
        continue;
      }
      ops.push({ table: "remote", key, value: r.item }, { table: "base", key, value: baseFrom(r.item) });
      report.uploaded++;
      if (step.conflict) {
        const remote = step.conflict;
        conflicts.push({
          key,
          winner: "local",
          local: { stamp: formatStamp(step.stamp), hash: step.local.hash, rev: r.item.rev },
          remote: { stamp: remote.stamp, hash: remote.hash ?? "", rev: remote.rev },
          current: r.item.rev,
          backup: null,
        });
      }
    }
    await this.store.commitSync(ops);
    for (const c of conflicts) await this.rememberConflict(c, report);
    return replan;
  }

  /** Keeps the losing local content: a local backup and an archived version on the server. */
  private async keepLoser(key: string, content: Uint8Array, hash: string, stamp: Stamp): Promise<{ backup: string; archived: number }> {
    const op = backupOp(key, content, hash, stamp.millis, Date.now());
    await this.store.commitSync([op]);
    const archived = await this.client.archive(key, content, formatStamp(stamp));
    return { backup: op.key, archived: archived.rev };
  }

  /** Writes a conflict's winning remote content over the (already kept) local loser. */
  private async writeWinner(key: string, local: Local, remote: Item, content: Uint8Array): Promise<boolean> {
    const row: RecordRow = { value: content, hash: hashHex(content), modified: parseStamp(remote.stamp).millis };
    return this.store.commitSync(
      [
        { table: "records", key, value: row },
        { table: "base", key, value: baseFrom(remote) },
      ],
      [{ key, hash: local.hash }],
    );
  }

  /** Executes one step that is not a plain upload or download; true: plan again. */
  private async apply(key: string, step: Step, report: SyncReport, seen: ErrorStack, node: string): Promise<boolean> {
    switch (step.kind) {
      case "skip":
        seen.push(step.errorClass, key, `${key}: ${step.message}`);
        return false;
      case "record_base":
        await this.store.commitSync([{ table: "base", key, value: step.base }]);
        return false;
      case "detach":
        await this.store.commitSync([{ table: "base", key, value: step.base }]);
        return false;
      case "forget":
        await this.store.commitSync([{ table: "base", key }]);
        return false;
      case "upload":
      case "download": {
        return step.kind === "upload" ? this.uploads([[key, step]], report, seen, node) : this.downloads([[key, step]], report, seen);
      }
      case "keep_loser_then_download": {
        const mine = await this.readLocal(key, step.local);
        if (!mine) return true;
        const kept = await this.keepLoser(key, mine, step.local.hash, step.localStamp);
        const theirs = await this.client.fetch(key, step.remote.rev);
        if (!(await this.writeWinner(key, step.local, step.remote, theirs.content))) return true;
        report.downloaded++;
        await this.rememberConflict(keptConflict(key, "remote", step, kept, step.remote.rev), report);
        return false;
      }
      case "merge":
        return this.merge(key, step, report, seen, node);
      case "delete_remote": {
        const out = await this.client.delete(key, step.rev, formatStamp({ millis: this.store.clock.now(), counter: 0, node }));
        if (!out.ok) {
          if (out.current) await this.store.commitSync([{ table: "remote", key, value: out.current }]);
          return true;
        }
        await this.store.commitSync([
          { table: "remote", key, value: out.item },
          { table: "base", key },
        ]);
        return false;
      }
      case "delete_local": {
        const mine = await this.readLocal(key, step.local);
        if (!mine) return true;
        const op = backupOp(key, mine, step.local.hash, Date.now(), Date.now());
        return !(await this.store.commitSync([op, { table: "records", key }, { table: "base", key }], [{ key, hash: step.local.hash }]));
      }
    }
  }

  private async merge(key: string, step: Extract<Step, { kind: "merge" }>, report: SyncReport, seen: ErrorStack, node: string): Promise<boolean> {
    const mine = await this.readLocal(key, step.local);
    if (!mine) return true;
    const theirs = await this.client.fetch(key, step.remote.rev);
    let base: Uint8Array | undefined;
    if (step.base) {
      try {
        const b = await this.client.fetch(key, step.base.rev);
        if (b.version.hash === step.base.hash) base = b.content;
      } catch (e) {
        if (!(e instanceof SyncError && e.code === "not_found")) throw e;
      }
    }
    const input: MergeInput = {
      key,
      base,
      local: mine,
      remote: theirs.content,
      newer: compareStamps(step.localStamp, parseStamp(step.remote.stamp)) > 0 ? "local" : "remote",
    };
    let merged: Uint8Array;
    try {
      merged = step.merge(input);
    } catch (e) {
      seen.push("warning", key, `${key}: the merge failed (${(e as Error).message}); the newer side won and the other is kept`);
      return this.apply(key, step.fallback, report, seen, node);
    }
    const kept = await this.keepLoser(key, mine, step.local.hash, step.localStamp);
    const nowStamp: Stamp = { millis: this.store.clock.now(), counter: 0, node };
    const next = successor(parseStamp(step.remote.stamp), node);
    const stamp = compareStamps(nowStamp, next) > 0 ? nowStamp : next;
    const hash = hashHex(merged);
    const out = await this.client.push({ key, content: merged, ifMatch: step.remote.rev, hash, stamp: formatStamp(stamp) });
    if (!out.ok) {
      if (out.current) await this.store.commitSync([{ table: "remote", key, value: out.current }]);
      return true;
    }
    const row: RecordRow = { value: merged, hash, modified: stamp.millis };
    const ops: Op[] = [
      { table: "remote", key, value: out.item },
      { table: "base", key, value: baseFrom(out.item) },
    ];
    // Write the merge here unless the app edited the record meanwhile (then that edit syncs next).
    if (!(await this.store.commitSync([...ops, { table: "records", key, value: row }], [{ key, hash: step.local.hash }]))) {
      await this.store.commitSync(ops);
    }
    report.uploaded++;
    await this.rememberConflict(keptConflict(key, "merged", step, kept, out.item.rev), report);
    return false;
  }

  /**
   * Starts the watch loop: a sync now, then one after every local edit (debounced 50 ms) or
   * remote change (long-poll), and at least every minute; after a failure it waits 0.5 s
   * doubling to 60 s with jitter (or the server's Retry-After).
   */
  start(): void {
    if (this.loop) return;
    this.enabled = true;
    this.stopped = false;
    // This tab's edits; another tab's edits are synced by that tab's engine.
    this.unsubscribe = this.store.subscribe((_keys, origin) => {
      if (origin === "app") this.syncNow();
    });
    this.loop = this.runLoop().finally(() => (this.loop = undefined));
  }

  /** Asks the loop for a sync now. */
  syncNow(): void {
    this.dirty = true;
    this.wake?.();
    this.abort?.abort();
  }

  /** Stops the loop (status `off`); resolves when it has stopped. */
  async stop(): Promise<void> {
    this.enabled = false;
    this.stopped = true;
    this.unsubscribe?.();
    this.wake?.();
    this.abort?.abort();
    await this.loop;
    await this.inFlight?.catch(() => undefined);
    this.setStatus({ state: "off" });
  }

  private pause(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const t = setTimeout(done, ms);
      function done() {
        clearTimeout(t);
        resolve();
      }
      this.wake = done;
    }).then(() => void (this.wake = undefined));
  }

  private async runLoop(): Promise<void> {
    let backoff = 500;
    while (this.enabled) {
      this.dirty = false;
      try {
        await this.syncOnce();
        backoff = 500;
      } catch (e) {
        const err = asSyncError(e);
        const wait = Math.max(err.retryAfterMs ?? 0, backoff * (0.5 + Math.random() / 2));
        backoff = Math.min(backoff * 2, 60_000);
        await this.pause(wait);
        continue;
      }
      if (!this.enabled) break;
      if (this.dirty) {
        await this.pause(50);
        continue;
      }
      // Wait for a remote change (long-poll) or a local edit (aborts the poll).
      this.abort = new AbortController();
      const cursor = (await this.store.meta<string>("cursor")) ?? null;
      try {
        await this.client.waitForChanges(cursor, this.waitSecs * 1000, this.abort.signal);
      } catch (e) {
        const err = asSyncError(e);
        if (err.code !== "aborted") await this.pause(Math.max(err.retryAfterMs ?? 0, backoff));
      } finally {
        this.abort = undefined;
      }
      if (this.dirty) await this.pause(50);
    }
  }
}
