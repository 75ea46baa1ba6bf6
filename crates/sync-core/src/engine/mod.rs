//! The engine: runs one sync between a [`Replica`] and a [`Transport`], remembering what it
//! agreed in a [`StateStore`], and reports status and errors (docs/SPEC.md §3–§5).
//!
//! One sync ([`Engine::sync_once`]): pull the change feed from the stored cursor into the remote
//! tree; scan the replica (fast path by fingerprint); [`reconcile`]
//! into a [`Plan`] of phases; execute the phases in the plan's order (`apply.rs`): the
//! one-at-a-time phases, then downloads several at a time, uploads in batches, removals last;
//! settle each step's result in one place (`Engine::settle`: state changes in batched commits,
//! counts in the [`SyncReport`], per-item errors); plan again (at most
//! [`EngineConfig::max_passes`] times) when an item changed under the plan or the server
//! answered with a conflict.
//!
//! The engine owns its parts and takes `&mut self`, so a watch-and-sync loop can own it in one
//! task; status goes out on a `tokio::sync::watch` channel. Deciding what to do lives in the
//! reconciler, not here: this module only sequences I/O through the traits, and never re-sorts
//! a plan or looks at what kind of step it holds.

mod apply;
mod report;
mod run;
mod settle;
mod versions;

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

pub use report::{
    ConflictRecord, ConflictVersion, ConflictWinner, ReportedError, SyncEvent, SyncFailed,
    SyncReport,
};
pub use run::{RunOptions, SyncHandle, EVENTS_KEPT};

use crate::reconcile::{reconcile, Plan, ReconcileInput, Step, Upload};
use crate::{
    ClientState, Clock, Error, ErrorEntry, ErrorStack, Identity, ItemMeta, Key, KnownItem, NodeId,
    Replica, Revision, Scope, StateBatch, StateStore, SyncPolicy, SyncStatus, SystemTimeSource,
    TimeSource, Transport,
};

use apply::{Batched, InPlace};
use settle::Settler;

/// How an [`Engine`] behaves.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Deletes, conflicts, identity, size limit.
    pub policy: SyncPolicy,
    /// Wall time for stamps and error times.
    pub time: Arc<dyn TimeSource>,
    /// This device's node id; `None` uses the one in the state store, or makes one.
    pub node: Option<NodeId>,
    /// Change-feed entries asked for per request.
    pub page_size: usize,
    /// Change-feed entries that change the remote tree one sync pulls at most; entries it
    /// already holds as they are (a device's own uploads coming back) count only past four
    /// times as many. Past either the sync stops with an `Offline` error after committing what
    /// it pulled, and the next sync goes on from there: a server that sends change pages
    /// without end cannot hold a sync (or its memory) forever. A first sync of a larger tenant
    /// takes several syncs.
    pub max_changes_per_sync: usize,
    /// Applied items recorded per state-store transaction.
    pub batch_size: usize,
    /// Plan-and-apply passes per sync (a pass repeats when items changed under the plan).
    pub max_passes: usize,
    /// Downloads of files fetched one by one in flight at once. Files fetched together are
    /// written with one [`Replica::write_many`], files to upload read with one
    /// [`Replica::read_many`] per batch.
    pub concurrency: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            policy: SyncPolicy::default(),
            time: Arc::new(SystemTimeSource),
            node: None,
            page_size: 1000,
            max_changes_per_sync: 1_000_000,
            batch_size: 512,
            max_passes: 3,
            concurrency: 8,
        }
    }
}

/// Runs syncs of one replica against one server.
pub struct Engine<T, S, R> {
    transport: T,
    state: S,
    replica: R,
    config: EngineConfig,
    loaded: Option<Loaded>,
    errors: ErrorStack,
    enabled: bool,
    handle: SyncHandle,
    /// The server's item limit, once it said (`Some(None)`: it does not say).
    server_limit: Option<Option<u64>>,
}

/// The state store's content, cached between syncs, and the clock made from it.
struct Loaded {
    /// Everything, or (while `partial` is set) the entries of the keys loaded so far.
    state: ClientState,
    clock: Clock,
    /// Set after a pass that settled every item (each step done, or reported against its own
    /// key), while the base has not changed since: the next pass need look only at what
    /// changed after it. Also made from the stored settled mark when the state is loaded.
    settled: Option<Settled>,
    /// Set while only some keys' base and remote entries are in `state`.
    partial: Option<Partial>,
}

/// What stands for the entries not in the cache (see [`StateStore::load_summary`]).
struct Partial {
    /// The fingerprints of every base entry, kept up to date for the keys in the cache
    /// (shared with the scan's blocking thread while it runs).
    known: Arc<BTreeMap<Key, KnownItem>>,
    /// How many base entries are outside the cache.
    base_outside: usize,
    /// The highest revision in the store when the summary was read.
    max_rev: Revision,
    /// The keys whose entries are in the cache (loaded, or written since).
    loaded: BTreeSet<Key>,
}

/// Where the last settled pass left off.
struct Settled {
    /// The replica's change token read before that pass (every local change since has a later
    /// one), when the replica has one.
    token: Option<u64>,
    /// The policy and the replica's rules of that pass ([`Engine::settled_tag`]).
    tag: String,
    /// Keys to look at again although the replica has not changed them: the keys that pass
    /// reported, and the remote keys the change feed brought since.
    dirty: BTreeSet<Key>,
}

/// Keys that may wait in [`Settled::dirty`]; past this many the next pass scans in full.
const MAX_DIRTY: usize = 4096;

impl<T: Transport, S: StateStore, R: Replica> Engine<T, S, R> {
    /// An engine over these parts. Nothing is read until the first sync.
    pub fn new(transport: T, state: S, replica: R, config: EngineConfig) -> Self {
        let handle = SyncHandle::new();
        Engine {
            transport,
            state,
            replica,
            config,
            loaded: None,
            errors: ErrorStack::default(),
            enabled: true,
            handle,
            server_limit: None,
        }
    }

    /// The replica (for apps and tests that edit it).
    pub fn replica(&self) -> &R {
        &self.replica
    }

    /// The transport.
    pub fn transport(&self) -> &T {
        &self.transport
    }

    /// The state store.
    pub fn state_store(&self) -> &S {
        &self.state
    }

    /// The configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// The current error-priority stack; [`ErrorStack::top`] is what the app shows.
    pub fn errors(&self) -> &ErrorStack {
        &self.errors
    }

    /// A receiver of status changes (off / idle / syncing / error).
    pub fn status(&self) -> watch::Receiver<SyncStatus> {
        self.handle.status.subscribe()
    }

    /// Switches sync on or off. While off, [`Engine::sync_once`] does nothing and the status
    /// is `Off`.
    pub fn set_enabled(&mut self, on: bool) {
        self.enabled = on;
        self.handle.status.send_replace(if on {
            SyncStatus::Idle {
                last_sync: None,
                attention: None,
            }
        } else {
            SyncStatus::Off
        });
    }

    /// True when sync is switched on.
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// The stored cursor, if a sync has run.
    pub fn cursor(&self) -> Option<crate::Cursor> {
        self.loaded.as_ref().and_then(|l| l.state.cursor)
    }

    /// Moves local files over the server's own limit (when smaller than the policy's) from the
    /// scan to its skipped items, with a warning naming that limit, so they are never uploaded
    /// only to be refused. The limit is asked once per engine.
    async fn skip_over_server_limit(
        &mut self,
        scan: &mut crate::Scan,
        max: u64,
    ) -> crate::Result<()> {
        let limit = match self.server_limit {
            Some(known) => known,
            None => match self.transport.max_item_bytes().await {
                Ok(asked) => {
                    self.server_limit = Some(asked);
                    asked
                }
                // Not knowing the limit is no reason to stop a sync (the server refuses an item
                // that is too large anyway); ask again next sync. A refused token is.
                Err(e) if e.class() == crate::ErrorClass::Auth => return Err(e),
                Err(e) => {
                    tracing::debug!(error = %e, "cannot read the server's item limit");
                    None
                }
            },
        };
        let Some(limit) = limit.filter(|l| *l < max) else {
            return Ok(());
        };
        let over: Vec<Key> = scan
            .items
            .iter()
            .filter(|(_, i)| i.kind() == crate::ItemKind::File && i.size > limit)
            .map(|(k, _)| k.clone())
            .collect();
        for key in over {
            let size = scan.items.remove(&key).map_or(0, |i| i.size);
            scan.skipped.push(crate::Skipped {
                path: key.to_string(),
                message: format!(
                    "{key}: {size} bytes is over the sync server's limit of {limit} bytes; it \
                     is not uploaded (make it smaller, or ask for the server's \
                     --max-item-bytes to be raised)"
                ),
                key: Some(key),
                class: crate::ErrorClass::Warning,
            });
        }
        Ok(())
    }

    /// Waits until the server has changes this engine has not pulled, or `timeout` passes.
    pub async fn wait_for_remote(&self, timeout: Duration) -> crate::Result<bool> {
        self.transport.wait(self.cursor().as_ref(), timeout).await
    }

    /// Runs one sync: pull, scan, reconcile, apply, record.
    ///
    /// Per-item problems do not stop it; they are in the report and on the error stack. A
    /// failure that stops it (Auth, Storage, Offline, Throttled) returns [`SyncFailed`] with
    /// what was done until then, all of it recorded.
    pub async fn sync_once(&mut self) -> Result<SyncReport, SyncFailed> {
        if !self.enabled {
            self.handle.status.send_replace(SyncStatus::Off);
            return Ok(SyncReport::default());
        }
        self.handle.status.send_replace(SyncStatus::Syncing {
            done: 0,
            total: 0,
            bytes_total: 0,
        });
        let mut report = SyncReport::default();
        let mut reported: Vec<ErrorEntry> = Vec::new();
        let outcome = self.run_sync(&mut report, &mut reported).await;
        let now = self.config.time.now_millis();
        let result = match outcome {
            Ok(()) => {
                // Clear-on-success: whatever this sync did not report again has succeeded.
                let still: BTreeSet<(crate::ErrorClass, Scope)> = reported
                    .iter()
                    .map(|e| (e.class, e.scope.clone()))
                    .collect();
                self.errors
                    .retain(|e| still.contains(&(e.class, e.scope.clone())));
                for e in reported {
                    self.errors.push_entry(e);
                }
                report.errors = self.errors.entries().into_iter().map(Into::into).collect();
                self.handle.status.send_replace(SyncStatus::Idle {
                    last_sync: Some(now),
                    attention: self.errors.top().cloned(),
                });
                Ok(report)
            }
            Err(error) => {
                if let Some(l) = self.loaded.as_mut() {
                    l.settled = None;
                }
                if error.class() == crate::ErrorClass::Storage {
                    // The cache may be ahead of the store: reload next time.
                    self.loaded = None;
                }
                for e in reported {
                    self.errors.push_entry(e);
                }
                self.errors.push_error(&error, now);
                report.errors = self.errors.entries().into_iter().map(Into::into).collect();
                let status = match self.errors.top() {
                    Some(top) => SyncStatus::Error { top: top.clone() },
                    None => SyncStatus::Idle {
                        last_sync: None,
                        attention: None,
                    },
                };
                self.handle.status.send_replace(status);
                Err(SyncFailed {
                    error,
                    partial: report,
                })
            }
        };
        self.publish(&result, now);
        result
    }

    /// Shares the end of a sync with every [`SyncHandle`]: the error stack, and one event
    /// (sent only when some receiver listens, so an app that never asks pays nothing).
    fn publish(&self, result: &Result<SyncReport, SyncFailed>, now: u64) {
        self.handle.errors.send_replace(self.errors.clone());
        if self.handle.events.receiver_count() == 0 {
            return;
        }
        let (report, failed) = match result {
            Ok(report) => (report.clone(), None),
            Err(f) => (f.partial.clone(), Some(f.error.clone())),
        };
        // No receiver left since the check is fine: the event is dropped.
        let _ = self.handle.events.send(Arc::new(SyncEvent {
            ended_millis: now,
            report,
            failed,
        }));
    }

    async fn run_sync(
        &mut self,
        report: &mut SyncReport,
        reported: &mut Vec<ErrorEntry>,
    ) -> crate::Result<()> {
        let started = std::time::Instant::now();
        self.load().await?;
        tracing::debug!(elapsed = ?started.elapsed(), "sync state loaded");
        self.pull().await?;
        tracing::debug!(elapsed = ?started.elapsed(), "change feed pulled");
        let passes = self.config.max_passes.max(1);
        for pass in 0..passes {
            let replan = self
                .plan_and_apply(report, reported, pass + 1 == passes)
                .await?;
            if !replan {
                break;
            }
            self.pull().await?;
        }
        Ok(())
    }

    /// Loads the state store into the cache on first use, and the clock with it.
    ///
    /// With the settled mark stored and keys bound by path, only the summary is read (the
    /// base's fingerprints, no entries): a pass then loads the entries of the keys it looks
    /// at. Otherwise everything is read.
    async fn load(&mut self) -> crate::Result<()> {
        if self.loaded.is_some() {
            return Ok(());
        }
        let by_path = self.config.policy.identity == Identity::Path;
        let summary = if by_path {
            Some(self.state.load_summary().await?)
        } else {
            None
        };
        let (state, partial, max_stamp) = match summary {
            Some(sum) if sum.settled.is_some() && !sum.any_local_key => {
                let state = ClientState {
                    node: sum.node,
                    cursor: sum.cursor,
                    conflicts: sum.conflicts,
                    settled: sum.settled,
                    ..ClientState::default()
                };
                let partial = Partial {
                    known: Arc::new(sum.known),
                    base_outside: sum.base_len,
                    max_rev: sum.max_rev,
                    loaded: BTreeSet::new(),
                };
                (state, Some(partial), sum.max_stamp)
            }
            _ => {
                let state = self.state.load().await?;
                let max_stamp = state.max_stamp();
                (state, None, max_stamp)
            }
        };
        let node = match (self.config.node, state.node) {
            (Some(n), _) | (None, Some(n)) => n,
            (None, None) => NodeId::random(),
        };
        if state.node != Some(node) {
            self.state
                .commit(StateBatch {
                    node: Some(node),
                    ..StateBatch::default()
                })
                .await?;
        }
        let mut clock = Clock::new(node, self.config.time.clone());
        if let Some(stamp) = max_stamp {
            clock.observe(stamp);
        }
        let mut state = state;
        state.node = Some(node);
        // The stored mark stands for a settled pass whose reported keys the next scan finds
        // again (see `Engine::persist_settled`).
        let settled = state.settled.clone().map(|tag| Settled {
            token: None,
            tag,
            dirty: BTreeSet::new(),
        });
        self.loaded = Some(Loaded {
            state,
            clock,
            settled,
            partial,
        });
        Ok(())
    }

    /// Loads every entry the cache lacks (a full pass, a reset of the remote tree).
    async fn load_all(&mut self) -> crate::Result<()> {
        if self.loaded()?.partial.is_none() {
            return Ok(());
        }
        let full = self.state.load().await?;
        let loaded = self.loaded()?;
        loaded.state.base = full.base;
        loaded.state.remote = full.remote;
        loaded.partial = None;
        Ok(())
    }

    /// Loads the entries of `keys` the cache lacks; returns those keys (none when the cache
    /// holds every entry).
    async fn load_keys(&mut self, keys: &BTreeSet<Key>) -> crate::Result<BTreeSet<Key>> {
        let Some(partial) = self.loaded()?.partial.as_ref() else {
            return Ok(BTreeSet::new());
        };
        let missing: BTreeSet<Key> = keys.difference(&partial.loaded).cloned().collect();
        if missing.is_empty() {
            return Ok(missing);
        }
        let entries = self.state.load_keys(&missing).await?;
        let loaded = self.loaded()?;
        let Some(partial) = loaded.partial.as_mut() else {
            return Ok(BTreeSet::new());
        };
        partial.base_outside = partial.base_outside.saturating_sub(entries.base.len());
        loaded.state.base.extend(entries.base);
        // The store holds every committed remote entry, so what it gives equals what a pull
        // put into the cache.
        loaded.state.remote.extend(entries.remote);
        partial.loaded.extend(missing.iter().cloned());
        Ok(missing)
    }

    /// Drops unchanged entries from a partial cache (the store holds them as they are), so a
    /// pull of many entries that change nothing (a device's own uploads) keeps memory flat.
    fn evict<'k>(&mut self, keys: impl Iterator<Item = &'k Key>) -> crate::Result<()> {
        let loaded = self.loaded()?;
        let Some(partial) = loaded.partial.as_mut() else {
            return Ok(());
        };
        for key in keys {
            if partial.loaded.remove(key) {
                if loaded.state.base.remove(key).is_some() {
                    partial.base_outside += 1;
                }
                loaded.state.remote.remove(key);
            }
        }
        Ok(())
    }

    /// The tag kept with the settled mark: what, besides the entries, decides a plan (the
    /// delete policy, the identity, the size limit, the replica's ignore rules).
    fn settled_tag(&self) -> String {
        let p = &self.config.policy;
        format!(
            "v1 deletes={:?} identity={:?} max={} rules={}",
            p.deletes,
            p.identity,
            p.max_item_bytes,
            self.replica.rules_tag()
        )
    }

    fn loaded(&mut self) -> crate::Result<&mut Loaded> {
        self.loaded.as_mut().ok_or_else(not_loaded)
    }

    /// The loaded state, read-only (so the replica can be borrowed beside it).
    fn cached(&self) -> crate::Result<&Loaded> {
        self.loaded.as_ref().ok_or_else(not_loaded)
    }

    /// The engine split for one phase: what its steps need, and where their results go.
    fn parts(&mut self, seen: Revision) -> crate::Result<Parts<'_, T, R, S>> {
        let loaded = self.loaded.as_mut().ok_or_else(not_loaded)?;
        Ok(Parts {
            context: apply::Context {
                transport: &self.transport,
                replica: &self.replica,
                clock: &mut loaded.clock,
                seen,
            },
            settler: Settler {
                store: &self.state,
                state: &mut loaded.state,
                status: &self.handle.status,
                batch_size: self.config.batch_size,
            },
        })
    }

    /// Pulls the change feed into the remote tree, one committed page at a time.
    async fn pull(&mut self) -> crate::Result<()> {
        let mut restarted = false;
        // Entries that changed the remote tree, and all entries (pages count one at least).
        let (mut pulled, mut seen_entries) = (0usize, 0usize);
        loop {
            let cursor = self.loaded()?.state.cursor;
            let page = match self
                .transport
                .changes(cursor.as_ref(), self.config.page_size)
                .await
            {
                Err(Error::CursorExpired | Error::InvalidCursor(_)) if !restarted => {
                    // The server was replaced or restored: forget the remote tree and compare
                    // everything by hash (docs/SPEC.md §2). The base stays, so equal items transfer
                    // nothing.
                    // Every base is marked unconfirmed in the same commit: the restored server
                    // may have lost it, so nothing unchanged here is overwritten unkept.
                    restarted = true;
                    self.load_all().await?;
                    let base = self
                        .loaded()?
                        .state
                        .base
                        .iter()
                        .map(|(k, b)| (k.clone(), Some(b.unconfirmed())))
                        .collect();
                    self.commit(StateBatch {
                        reset_remote: true,
                        base,
                        ..StateBatch::default()
                    })
                    .await?;
                    continue;
                }
                r => r?,
            };
            let loaded = self.loaded()?;
            for item in &page.changes {
                loaded.clock.observe(item.stamp);
            }
            let more = page.more;
            if page.changes.is_empty() && cursor.as_ref() == Some(&page.cursor) {
                // Nothing new (the common no-change sync): no write to the state store.
                if more {
                    return Err(Error::offline(
                        "the server said more changes follow but sent none and did not move \
                         the cursor; it is misbehaving: check its version and logs",
                    ));
                }
                return Ok(());
            }
            if let Some(before) = cursor {
                // A page that brings changes must move the cursor forward (a restored server
                // answers `CursorExpired` instead); one that does not would loop forever.
                if page.cursor.epoch() == before.epoch() && page.cursor.rev() <= before.rev() {
                    return Err(Error::offline(format!(
                        "the server's change feed did not move forward (cursor {} after {before}) \
                         while sending changes; it is misbehaving: check its version and logs",
                        page.cursor
                    )));
                }
            }
            seen_entries = seen_entries.saturating_add(page.changes.len().max(1));
            // Entries the remote tree already holds as they are (most often this device's own
            // writes, which the feed brings back after an upload) change nothing: only the
            // cursor moves, and the keys need no new look.
            let keys: BTreeSet<Key> = page.changes.iter().map(|c| c.key.clone()).collect();
            let newly = self.load_keys(&keys).await?;
            let remote = &self.loaded()?.state.remote;
            let (fresh, same): (Vec<ItemMeta>, Vec<ItemMeta>) = page
                .changes
                .into_iter()
                .partition(|c| remote.get(&c.key) != Some(c));
            // Loaded only to be compared: the cache need not keep them.
            self.evict(same.iter().map(|c| &c.key).filter(|k| newly.contains(*k)))?;
            pulled = pulled.saturating_add(fresh.len());
            self.commit(StateBatch {
                cursor: Some(page.cursor),
                remote: fresh,
                ..StateBatch::default()
            })
            .await?;
            if !more {
                return Ok(());
            }
            let max = self.config.max_changes_per_sync;
            if pulled >= max || seen_entries >= max.saturating_mul(4) {
                return Err(Error::offline(format!(
                    "the server sent more than {} changes in one sync; what arrived is kept and \
                     the next sync goes on from there (if this repeats, the server may be \
                     misbehaving)",
                    self.config.max_changes_per_sync
                )));
            }
        }
    }

    /// Commits a batch to the store and applies it to the cache.
    async fn commit(&mut self, batch: StateBatch) -> crate::Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        self.state.commit(batch.clone()).await?;
        let loaded = self.loaded()?;
        batch.apply_to(&mut loaded.state);
        // Remote entries only (a page of the change feed): the next pass looks at those keys
        // too. Anything else changes what the settled pass agreed on.
        let only_remote = batch.node.is_none() && !batch.reset_remote && batch.base.is_empty();
        loaded.settled = match loaded.settled.take() {
            Some(mut s) if only_remote && s.dirty.len() + batch.remote.len() <= MAX_DIRTY => {
                s.dirty.extend(batch.remote.iter().map(|r| r.key.clone()));
                Some(s)
            }
            _ => None,
        };
        Ok(())
    }

    /// The highest revision this client has seen (for the Lamport rule).
    fn seen(loaded: &Loaded) -> Revision {
        let state = &loaded.state;
        let from_cursor = state.cursor.map(|c| c.rev()).unwrap_or_default();
        let outside = loaded
            .partial
            .as_ref()
            .map_or(Revision::ZERO, |p| p.max_rev);
        state
            .remote
            .values()
            .map(|r| r.rev)
            .fold(from_cursor.max(outside), Revision::max)
    }

    /// How many base entries there are, in the cache or not.
    fn base_len(loaded: &Loaded) -> usize {
        loaded.state.base.len() + loaded.partial.as_ref().map_or(0, |p| p.base_outside)
    }

    /// One scan-reconcile-apply pass. Returns true when the plan should be made again.
    async fn plan_and_apply(
        &mut self,
        report: &mut SyncReport,
        reported: &mut Vec<ErrorEntry>,
        last_pass: bool,
    ) -> crate::Result<bool> {
        let now = self.config.time.now_millis();
        let max = self.config.policy.max_item_bytes;
        // Read before the scan, so a change made during it moves the token past this value.
        let token = self.replica.change_token().await?;
        let settled = self.loaded()?.settled.take();
        if let (Some(now_token), Some(s)) = (token, &settled) {
            if s.token == Some(now_token) && s.dirty.is_empty() && s.tag == self.settled_tag() {
                // Nothing changed on either side since every item was settled.
                let unchanged = Self::base_len(self.loaded()?) as u64;
                report.start_pass(unchanged, 0);
                self.loaded()?.settled = settled;
                return Ok(false);
            }
        }
        let reported_before = reported.len();
        let started = std::time::Instant::now();
        let (mut scan, scope) = self.scan_for_pass(token, settled, max).await?;
        tracing::debug!(
            elapsed = ?started.elapsed(),
            items = scan.items.len(),
            scope = scope.as_ref().map(BTreeSet::len),
            "replica scanned"
        );
        match &scope {
            Some(keys) => {
                self.load_keys(keys).await?;
                // Outside the scope every item is as the settled pass left it.
                scan.items.retain(|k, _| keys.contains(k));
            }
            None => self.load_all().await?,
        }
        if scan
            .items
            .values()
            .any(|i| i.kind() == crate::ItemKind::File)
        {
            self.skip_over_server_limit(&mut scan, max).await?;
        }
        let mut untouchable = BTreeSet::new();
        let mut scan_skipped = 0;
        for s in &scan.skipped {
            if let Some(k) = &s.key {
                untouchable.insert(k.clone());
            }
            scan_skipped += 1;
            reported.push(ErrorEntry {
                class: s.class,
                scope: s.key.clone().map_or(Scope::Global, Scope::Key),
                message: match &s.key {
                    Some(_) => s.message.clone(),
                    None => format!("{}: {}", s.path, s.message),
                },
                first_seen_millis: now,
            });
        }
        let (plan, outside) = {
            let loaded = self.cached()?;
            let (base, remote) = match &scope {
                Some(keys) => (
                    Cow::Owned(subset(&loaded.state.base, keys)),
                    Cow::Owned(subset(&loaded.state.remote, keys)),
                ),
                None => (
                    Cow::Borrowed(&loaded.state.base),
                    Cow::Borrowed(&loaded.state.remote),
                ),
            };
            // Remote keys the replica would never show in a scan must not look deleted there,
            // nor be downloaded only to vanish from the next scan.
            for key in remote.keys() {
                if !scan.items.contains_key(key) && self.replica.ignores(key) {
                    untouchable.insert(key.clone());
                }
            }
            let input = ReconcileInput {
                local: &scan.items,
                untouchable: &untouchable,
                base: &base,
                remote: &remote,
                node: loaded.clock.node(),
            };
            // Keys outside a partial pass's scope are as the settled pass left them.
            let outside = Self::base_len(loaded).saturating_sub(base.len()) as u64;
            (reconcile(input, &self.config.policy), outside)
        };
        report.start_pass(plan.unchanged + outside, scan_skipped);
        let total = plan.len() as u64;
        let bytes_total = plan.bytes();
        let mut pass = Pass {
            batch: StateBatch::default(),
            in_batch: 0,
            replan: false,
            done: 0,
            total,
            bytes_total,
            seen: Self::seen(self.loaded()?),
            now,
            last_pass,
        };
        // The phases in the plan's order (see `Plan`): the one-at-a-time phases; downloads,
        // several at a time; uploads, in batches (one request and one server transaction where
        // the transport can); removals last, children first.
        let Plan {
            skips,
            base_changes,
            remote_folders,
            local_folders,
            keep_loser_then_download,
            merges,
            downloads,
            uploads,
            removals,
            unchanged: _,
        } = plan;
        let mut run = Run {
            pass: &mut pass,
            report,
            reported,
        };
        self.in_place(&skips, &mut run).await?;
        self.in_place(&base_changes, &mut run).await?;
        self.in_place(&remote_folders, &mut run).await?;
        self.in_place(&local_folders, &mut run).await?;
        self.in_place(&keep_loser_then_download, &mut run).await?;
        self.in_place(&merges, &mut run).await?;
        self.pipelined(downloads.chunks(DOWNLOAD_CHUNK), &mut run)
            .await?;
        self.pipelined(upload_chunks(&uploads).into_iter(), &mut run)
            .await?;
        self.in_place(&removals, &mut run).await?;
        // Settled when every item was done or reported against its own key: those keys are
        // looked at again next time, whatever else changes.
        let reported_again = reported_keys(&run.reported[reported_before..]);
        self.parts(run.pass.seen)?
            .settler
            .flush(&mut run.pass.batch)
            .await?;
        self.handle.status.send_replace(SyncStatus::Syncing {
            done: total,
            total,
            bytes_total,
        });
        if let Some(keys) = &scope {
            self.refresh_known(keys)?;
        }
        let tag = self.settled_tag();
        let settled = match reported_again {
            Some(dirty) if !pass.replan => Some(Settled { token, tag, dirty }),
            _ => None,
        };
        if let Some(s) = &settled {
            self.persist_settled(s, &untouchable).await?;
        }
        self.loaded()?.settled = settled;
        Ok(pass.replan)
    }

    /// Stores the settled mark after a settled pass, when the next scan alone finds every key
    /// that pass reported (each was skipped by the scan: it is skipped again, or changed).
    /// A key reported for another reason (a failed download) must be looked at again, which
    /// only this process remembers, so the mark is not stored then.
    ///
    /// The stored mark needs no clearing here: the store clears it with any change to the
    /// entries, and a pass that changed none leaves them as the marked pass did.
    async fn persist_settled(
        &mut self,
        settled: &Settled,
        skipped: &BTreeSet<Key>,
    ) -> crate::Result<()> {
        let found_again = settled.dirty.iter().all(|k| skipped.contains(k));
        let stored = self.cached()?.state.settled.as_deref() == Some(settled.tag.as_str());
        if found_again && !stored {
            self.commit(StateBatch {
                settled: Some(settled.tag.clone()),
                ..StateBatch::default()
            })
            .await?;
        }
        Ok(())
    }

    /// Brings the partial cache's fingerprint index up to date for `keys` after a pass.
    fn refresh_known(&mut self, keys: &BTreeSet<Key>) -> crate::Result<()> {
        let loaded = self.loaded()?;
        let Some(partial) = loaded.partial.as_mut() else {
            return Ok(());
        };
        // The scan is over, so this is the only handle and nothing is copied.
        let known = Arc::make_mut(&mut partial.known);
        for key in keys {
            match loaded
                .state
                .base
                .get(key)
                .and_then(crate::state_store::known_item)
            {
                Some(entry) => known.insert(key.clone(), entry),
                None => known.remove(key),
            };
        }
        Ok(())
    }

    /// The scan of one pass, and the keys it covers when it is partial (`None`: every key).
    ///
    /// After a settled pass (`settled`, kept from the last pass or made from the stored mark),
    /// only keys that changed since need a plan: the dirty ones, and those the replica changed.
    /// A replica that can list its changes ([`Replica::scan_since`], with a change `token`) is
    /// asked for them; any other lists what differs from the base's fingerprints
    /// ([`Replica::scan_changes`]). That needs keys bound by path (another identity binds items
    /// across keys, which only a whole view can do) and the same policy and rules as that
    /// pass; anything else is a full pass.
    async fn scan_for_pass(
        &mut self,
        token: Option<u64>,
        settled: Option<Settled>,
        max: u64,
    ) -> crate::Result<(crate::Scan, Option<BTreeSet<Key>>)> {
        let by_path = self.config.policy.identity == Identity::Path && {
            let loaded = self.cached()?;
            loaded.partial.is_some() || !loaded.state.base.values().any(|b| b.local_key.is_some())
        };
        let settled = settled.filter(|_| by_path);
        if let Some(s) = &settled {
            if let (Some(since), Some(_)) = (s.token, token) {
                if let Some(changed) = self.replica.scan_since(since, &s.dirty, max).await? {
                    if s.tag == self.settled_tag() {
                        return Ok((changed.scan, Some(changed.keys)));
                    }
                }
            }
        }
        if let Some(s) = settled.filter(|s| s.tag == self.settled_tag()) {
            let known = match &self.cached()?.partial {
                Some(p) => Arc::clone(&p.known),
                None => Arc::new(crate::known_items(&self.cached()?.state.base)),
            };
            let changed = self.replica.scan_changes(known, &s.dirty, max).await?;
            // The scan loads the replica's rules: if they changed, keys ignored before may
            // not be any more, and only a full pass finds them.
            if s.tag == self.settled_tag() {
                return Ok((changed.scan, Some(changed.keys)));
            }
        }
        self.load_all().await?;
        let known = crate::known_items(&self.cached()?.state.base);
        Ok((self.replica.scan(&known, max).await?, None))
    }

    /// Applies a batched phase, keeping three batches going: while one batch's results are
    /// settled (state commits), the next is applied (fetched or pushed) and the one after it
    /// prepared (an upload's contents read). A failure that stops the sync drops the batches
    /// in flight unsettled: their items are written on both sides with the same content, or
    /// not at all, which the next sync records without a transfer or redoes.
    async fn pipelined<'s, P: Batched + 's>(
        &mut self,
        mut chunks: impl Iterator<Item = &'s [Step<P>]>,
        run: &mut Run<'_>,
    ) -> crate::Result<()> {
        let concurrency = self.config.concurrency;
        let Parts {
            mut context,
            mut settler,
        } = self.parts(run.pass.seen)?;
        let replica = context.replica;
        let (mut prepared, mut applied) = (None, None);
        loop {
            let (next, to_apply, to_settle) = (chunks.next(), prepared.take(), applied.take());
            if next.is_none() && to_apply.is_none() && to_settle.is_none() {
                return Ok(());
            }
            // The Lamport `seen` as settled so far (the batch being settled may raise it after
            // the next one is sent; the server's counter is past it anyway).
            context.seen = context.seen.max(run.pass.seen);
            let prepare = async {
                match next {
                    Some(c) => Some((c, P::prepare(replica, c).await)),
                    None => None,
                }
            };
            let apply = async {
                match to_apply {
                    Some((c, p)) => {
                        Some((c, P::apply_batch(&mut context, c, p, concurrency).await))
                    }
                    None => None,
                }
            };
            let settle = async {
                match to_settle {
                    Some((c, results)) => settler.settle_all(c, results, run).await,
                    None => Ok(()),
                }
            };
            let (ready, done, settled) = futures::future::join3(prepare, apply, settle).await;
            settled?;
            (prepared, applied) = (ready, done);
        }
    }

    /// Applies the steps of a one-at-a-time phase, in order, settling each.
    async fn in_place<P: InPlace>(
        &mut self,
        steps: &[Step<P>],
        run: &mut Run<'_>,
    ) -> crate::Result<()> {
        for step in steps {
            let mut parts = self.parts(run.pass.seen)?;
            let result = P::apply(&mut parts.context, step).await;
            parts.settler.settle(&step.local_key, result, run).await?;
        }
        Ok(())
    }
}

/// The keys of `reports` when each names one (and they are few enough to look at again).
fn reported_keys(reports: &[ErrorEntry]) -> Option<BTreeSet<Key>> {
    if reports.len() > MAX_DIRTY {
        return None;
    }
    reports
        .iter()
        .map(|e| match &e.scope {
            Scope::Key(k) => Some(k.clone()),
            Scope::Global => None,
        })
        .collect()
}

/// The entries of `map` under `keys`.
fn subset<V: Clone>(map: &BTreeMap<Key, V>, keys: &BTreeSet<Key>) -> BTreeMap<Key, V> {
    keys.iter()
        .filter_map(|k| map.get(k).map(|v| (k.clone(), v.clone())))
        .collect()
}

/// Downloads settled per round of concurrent fetches.
const DOWNLOAD_CHUNK: usize = 256;
/// Uploads per batch, at most, and their content size, at most.
const UPLOAD_BATCH_ITEMS: usize = 256;
const UPLOAD_BATCH_BYTES: u64 = 16 * 1024 * 1024;

/// Uploads split into batches of at most `UPLOAD_BATCH_ITEMS` items and
/// `UPLOAD_BATCH_BYTES` bytes (a larger single item goes alone).
fn upload_chunks(uploads: &[Step<Upload>]) -> Vec<&[Step<Upload>]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0u64);
    for (i, step) in uploads.iter().enumerate() {
        let size = step.op.local.size;
        if i > start && (i - start >= UPLOAD_BATCH_ITEMS || bytes + size > UPLOAD_BATCH_BYTES) {
            out.push(&uploads[start..i]);
            start = i;
            bytes = 0;
        }
        bytes += size;
    }
    if start < uploads.len() {
        out.push(&uploads[start..]);
    }
    out
}

/// The engine split in two disjoint borrows, so a batch can be applied while another settles.
struct Parts<'a, T, R, S> {
    context: apply::Context<'a, T, R>,
    settler: Settler<'a, S>,
}

/// The running state of one plan-and-apply pass.
struct Pass {
    batch: StateBatch,
    in_batch: usize,
    replan: bool,
    done: u64,
    total: u64,
    /// The plan's content bytes (`Plan::bytes`), for the status.
    bytes_total: u64,
    /// The highest revision seen so far (the Lamport rule), kept up to date as items apply.
    seen: Revision,
    now: u64,
    last_pass: bool,
}

/// Where the results of one pass go while its steps are settled.
struct Run<'a> {
    pass: &'a mut Pass,
    report: &'a mut SyncReport,
    reported: &'a mut Vec<ErrorEntry>,
}

/// The error for state used before [`Engine::load`] (a bug, reported as a storage failure).
fn not_loaded() -> Error {
    Error::storage("sync state was not loaded; sync again")
}

/// Appends `more` to `into`, in order.
fn merge_batch(into: &mut StateBatch, more: StateBatch) {
    if more.node.is_some() {
        into.node = more.node;
    }
    if more.cursor.is_some() {
        into.cursor = more.cursor;
    }
    into.reset_remote |= more.reset_remote;
    into.remote.extend(more.remote);
    into.base.extend(more.base);
    into.conflicts.extend(more.conflicts);
}

#[cfg(test)]
mod tests;
