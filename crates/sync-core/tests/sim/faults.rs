//! The faults of a simulation, all injected from the test side through sync-core's traits:
//!
//! - [`Network`] holds the current server (swappable: restart, restore from backup), per-device
//!   offline switches, per-request fault rates and the PRNG that decides each request's fate;
//! - [`SimTransport`] is one device's [`Transport`]: it asks the network for the fate of every
//!   request, then drops it, delivers it, delivers it twice, or delivers it and loses the answer;
//! - [`Crash`] is one device's process: armed with a countdown of mutating calls (replica writes,
//!   state commits, acknowledged remote writes), it "crashes" at the chosen one and from then on
//!   every call of that process fails with `Error::Storage`, until the harness restarts it;
//! - [`CrashReplica`] and [`CrashStateStore`] wrap [`MemoryReplica`] and [`MemoryStateStore`]
//!   with that crash switch.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use sync_core::memory::{LocalTransport, MemoryReplica, MemoryServerStore, MemoryStateStore};
use sync_core::{
    ArchiveRequest, Backup, ChangePage, ClientState, Cursor, DeleteRequest, Error, Expected,
    Fetched, FolderRequest, ItemMeta, Key, KnownItem, LocalItem, PushOutcome, PushRequest, Replica,
    Result, Revision, Scan, Stamp, StateBatch, StateStore, TenantId, Transport, VersionMeta,
};

use super::rng::SimRng;
use super::EventLog;

/// Per-request fault rates, in per mille.
#[derive(Debug, Clone, Copy, Default)]
pub struct FaultRates {
    /// The request never reaches the server.
    pub drop: u64,
    /// The request reaches the server twice; the client sees the second answer.
    pub duplicate: u64,
    /// The server handles the request, the answer is lost (the client sees `Offline`).
    pub lose_response: u64,
}

/// What happens to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Deliver,
    Drop,
    Duplicate,
    LoseResponse,
}

/// How many faults of each kind were injected (for the coverage summary).
#[derive(Debug, Clone, Copy, Default)]
pub struct FaultCounts {
    pub requests: u64,
    pub dropped: u64,
    pub duplicated: u64,
    pub lost_responses: u64,
    pub offline_drops: u64,
    pub cursor_expired_seen: u64,
    /// Pushes and deletes answered `Conflict` (stale precondition), as the client saw them.
    pub conflicts_answered: u64,
}

#[derive(Debug)]
struct NetState {
    server: Arc<MemoryServerStore>,
    tenant: TenantId,
    /// The current server process: a new transport per restart.
    transport: LocalTransport<MemoryServerStore>,
    generation: u64,
    rng: SimRng,
    rates: FaultRates,
    faults_on: bool,
    offline: Vec<bool>,
    /// Set for a device when the server it knew was replaced by a restore, cleared when the
    /// device is told `CursorExpired`.
    expect_expired: Vec<bool>,
    counts: FaultCounts,
}

/// The network between the devices and the one server.
#[derive(Debug)]
pub struct Network {
    state: Mutex<NetState>,
    log: EventLog,
}

impl Network {
    /// A network to `server` for `devices` devices, faults decided by `rng` at `rates`.
    pub fn new(
        server: Arc<MemoryServerStore>,
        tenant: TenantId,
        devices: usize,
        rng: SimRng,
        rates: FaultRates,
        log: EventLog,
    ) -> Arc<Network> {
        Arc::new(Network {
            state: Mutex::new(NetState {
                transport: LocalTransport::new(server.clone(), tenant.clone()),
                server,
                tenant,
                generation: 0,
                rng,
                rates,
                faults_on: true,
                offline: vec![false; devices],
                expect_expired: vec![false; devices],
                counts: FaultCounts::default(),
            }),
            log,
        })
    }

    fn lock(&self) -> MutexGuard<'_, NetState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The current server store.
    pub fn server(&self) -> Arc<MemoryServerStore> {
        self.lock().server.clone()
    }

    /// The tenant every device speaks as.
    pub fn tenant(&self) -> TenantId {
        self.lock().tenant.clone()
    }

    /// Restarts the server process over the same store.
    pub fn restart_server(&self) {
        let mut s = self.lock();
        s.generation += 1;
        s.transport = LocalTransport::new(s.server.clone(), s.tenant.clone());
    }

    /// Replaces the server by `restored` (a restore from backup). Devices flagged in
    /// `had_cursor` must be told `CursorExpired` before they sync again successfully.
    pub fn swap_server(&self, restored: Arc<MemoryServerStore>, had_cursor: &[bool]) {
        let mut s = self.lock();
        s.generation += 1;
        s.transport = LocalTransport::new(restored.clone(), s.tenant.clone());
        s.server = restored;
        for (flag, had) in s.expect_expired.iter_mut().zip(had_cursor) {
            *flag |= *had;
        }
    }

    /// Switches per-request faults on or off.
    pub fn set_faults(&self, on: bool) {
        self.lock().faults_on = on;
    }

    /// Cuts a device off (every request dropped) or reconnects it.
    pub fn set_offline(&self, device: usize, offline: bool) {
        self.lock().offline[device] = offline;
    }

    /// Devices still waiting to be told `CursorExpired` after a restore.
    pub fn expecting_expired(&self) -> Vec<usize> {
        let s = self.lock();
        (0..s.expect_expired.len())
            .filter(|&d| s.expect_expired[d])
            .collect()
    }

    /// Fault counters so far.
    pub fn counts(&self) -> FaultCounts {
        self.lock().counts
    }

    /// Decides the fate of one request of `device` and hands out the current server.
    fn decide(&self, device: usize) -> (Fate, LocalTransport<MemoryServerStore>) {
        let mut s = self.lock();
        s.counts.requests += 1;
        let t = s.transport.clone();
        if s.offline[device] {
            s.counts.offline_drops += 1;
            return (Fate::Drop, t);
        }
        if !s.faults_on {
            return (Fate::Deliver, t);
        }
        let rates = s.rates;
        let x = s.rng.below(1000);
        let fate = if x < rates.drop {
            s.counts.dropped += 1;
            Fate::Drop
        } else if x < rates.drop + rates.duplicate {
            s.counts.duplicated += 1;
            Fate::Duplicate
        } else if x < rates.drop + rates.duplicate + rates.lose_response {
            s.counts.lost_responses += 1;
            Fate::LoseResponse
        } else {
            Fate::Deliver
        };
        (fate, t)
    }

    fn saw_expired(&self, device: usize) {
        let mut s = self.lock();
        s.counts.cursor_expired_seen += 1;
        s.expect_expired[device] = false;
    }
}

/// The crash switch of one device's process.
#[derive(Debug, Clone, Default)]
pub struct Crash(Arc<Mutex<CrashState>>);

#[derive(Debug, Default)]
struct CrashState {
    /// Mutating calls that still succeed before the crash; `None`: not armed.
    countdown: Option<u64>,
    /// The call at which the process died, while it is dead.
    crashed_at: Option<String>,
}

impl Crash {
    fn lock(&self) -> MutexGuard<'_, CrashState> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The process dies at its `n`-th next mutating call (1 = the next one), before that call
    /// takes effect (for a remote write: after the server committed it, before the answer).
    pub fn arm(&self, n: u64) {
        self.lock().countdown = Some(n.saturating_sub(1));
    }

    /// Not armed any more.
    pub fn disarm(&self) {
        self.lock().countdown = None;
    }

    /// Where the process died, if it is dead.
    pub fn crashed_at(&self) -> Option<String> {
        self.lock().crashed_at.clone()
    }

    /// The process was started again.
    pub fn restart(&self) {
        let mut s = self.lock();
        s.crashed_at = None;
        s.countdown = None;
    }

    fn dead() -> Error {
        Error::storage("simulated crash: this process is dead")
    }

    /// Any call of a dead process fails.
    fn alive(&self) -> Result<()> {
        if self.lock().crashed_at.is_some() {
            return Err(Crash::dead());
        }
        Ok(())
    }

    /// A mutating call named `what`: fails (and kills the process) when the countdown is over.
    fn mutate(&self, what: impl FnOnce() -> String) -> Result<()> {
        let mut s = self.lock();
        if s.crashed_at.is_some() {
            return Err(Crash::dead());
        }
        match s.countdown {
            Some(0) => {
                s.countdown = None;
                s.crashed_at = Some(what());
                Err(Crash::dead())
            }
            Some(n) => {
                s.countdown = Some(n - 1);
                Ok(())
            }
            None => Ok(()),
        }
    }
}

/// One device's transport: every request goes through the [`Network`]'s faults.
#[derive(Debug, Clone)]
pub struct SimTransport {
    net: Arc<Network>,
    device: usize,
    crash: Crash,
}

impl SimTransport {
    /// Device `device`'s transport, belonging to the process `crash`.
    pub fn new(net: Arc<Network>, device: usize, crash: Crash) -> SimTransport {
        SimTransport { net, device, crash }
    }

    /// Sends one request. `write` requests are crash points of the process after the server
    /// answered.
    async fn call<O, F, Fut>(&self, what: impl Fn() -> String, write: bool, f: F) -> Result<O>
    where
        F: Fn(LocalTransport<MemoryServerStore>) -> Fut,
        Fut: Future<Output = Result<O>>,
    {
        self.crash.alive()?;
        // Let other devices' syncs (and the user) run here: concurrent syncs interleave at
        // every request, deterministically on the current-thread runtime.
        tokio::task::yield_now().await;
        let (fate, t) = self.net.decide(self.device);
        let d = self.device;
        let out = match fate {
            Fate::Deliver => f(t).await,
            Fate::Drop => {
                self.net
                    .log
                    .push(format!("    net: d{d} {} dropped", what()));
                return Err(Error::offline("simulated: request dropped"));
            }
            Fate::Duplicate => {
                let first = f(t.clone()).await;
                let second = f(t).await;
                self.net.log.push(format!(
                    "    net: d{d} {} duplicated (first {}, second {})",
                    what(),
                    brief(&first),
                    brief(&second)
                ));
                second
            }
            Fate::LoseResponse => {
                let r = f(t).await;
                self.net.log.push(format!(
                    "    net: d{d} {} answer lost ({})",
                    what(),
                    brief(&r)
                ));
                return Err(Error::offline("simulated: response lost"));
            }
        };
        if write && out.is_ok() {
            self.crash
                .mutate(|| format!("after the server answered {}", what()))?;
        }
        out
    }
}

/// A short description of a result for the log.
fn brief<O>(r: &Result<O>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(e) => format!("err: {e}"),
    }
}

#[async_trait]
impl Transport for SimTransport {
    async fn changes(&self, since: Option<&Cursor>, limit: usize) -> Result<ChangePage> {
        let since = since.copied();
        let r = self
            .call(
                || "changes".into(),
                false,
                |t| async move { t.changes(since.as_ref(), limit).await },
            )
            .await;
        if matches!(r, Err(Error::CursorExpired)) {
            self.net.saw_expired(self.device);
        }
        r
    }

    async fn fetch(&self, key: &Key, rev: Option<Revision>) -> Result<Fetched> {
        self.call(
            || format!("fetch {key}"),
            false,
            |t| async move { t.fetch(key, rev).await },
        )
        .await
    }

    async fn push(&self, req: PushRequest) -> Result<PushOutcome> {
        let what = || format!("push {} {:?}", req.key, req.precondition);
        let r = self
            .call(what, true, |t| {
                let req = req.clone();
                async move { t.push(req).await }
            })
            .await;
        if matches!(r, Ok(PushOutcome::Conflict { .. })) {
            self.net.lock().counts.conflicts_answered += 1;
        }
        r
    }

    async fn delete(&self, req: DeleteRequest) -> Result<PushOutcome> {
        let what = || format!("delete {} at {}", req.key, req.rev);
        self.call(what, true, |t| {
            let req = req.clone();
            async move { t.delete(req).await }
        })
        .await
    }

    async fn ensure_folder(&self, req: FolderRequest) -> Result<ItemMeta> {
        let what = || format!("ensure_folder {}", req.key);
        self.call(what, true, |t| {
            let req = req.clone();
            async move { t.ensure_folder(req).await }
        })
        .await
    }

    async fn history(&self, key: &Key) -> Result<Vec<VersionMeta>> {
        self.call(
            || format!("history {key}"),
            false,
            |t| async move { t.history(key).await },
        )
        .await
    }

    async fn archive(&self, req: ArchiveRequest) -> Result<VersionMeta> {
        let what = || format!("archive {}", req.key);
        self.call(what, true, |t| {
            let req = req.clone();
            async move { t.archive(req).await }
        })
        .await
    }

    async fn wait(&self, since: Option<&Cursor>, timeout: Duration) -> Result<bool> {
        let since = since.copied();
        self.call(
            || "wait".into(),
            false,
            |t| async move { t.wait(since.as_ref(), timeout).await },
        )
        .await
    }
}

/// A [`MemoryReplica`] inside a process that can crash.
#[derive(Debug, Clone)]
pub struct CrashReplica {
    inner: MemoryReplica,
    crash: Crash,
}

impl CrashReplica {
    /// Wraps `inner`; clones share it.
    pub fn new(inner: MemoryReplica, crash: Crash) -> CrashReplica {
        CrashReplica { inner, crash }
    }
}

#[async_trait]
impl Replica for CrashReplica {
    async fn scan(&self, known: &BTreeMap<Key, KnownItem>, max_item_bytes: u64) -> Result<Scan> {
        self.crash.alive()?;
        self.inner.scan(known, max_item_bytes).await
    }

    async fn read(&self, key: &Key) -> Result<Bytes> {
        self.crash.alive()?;
        self.inner.read(key).await
    }

    async fn write(&self, key: &Key, content: Bytes, expected: Expected) -> Result<LocalItem> {
        self.crash
            .mutate(|| format!("before replica write {key}"))?;
        self.inner.write(key, content, expected).await
    }

    async fn create_folder(&self, key: &Key) -> Result<LocalItem> {
        self.crash
            .mutate(|| format!("before replica create_folder {key}"))?;
        self.inner.create_folder(key).await
    }

    async fn backup(&self, key: &Key, stamp: Stamp) -> Result<Option<Backup>> {
        self.crash
            .mutate(|| format!("before replica backup {key}"))?;
        self.inner.backup(key, stamp).await
    }

    async fn remove(&self, key: &Key, expected: Expected) -> Result<()> {
        self.crash
            .mutate(|| format!("before replica remove {key}"))?;
        self.inner.remove(key, expected).await
    }

    async fn backups(&self) -> Result<Vec<Backup>> {
        self.crash.alive()?;
        self.inner.backups().await
    }

    async fn read_backup(&self, backup: &Backup) -> Result<Bytes> {
        self.crash.alive()?;
        self.inner.read_backup(backup).await
    }

    fn ignores(&self, key: &Key) -> bool {
        self.inner.ignores(key)
    }
}

/// A [`MemoryStateStore`] inside a process that can crash: a commit at the crash point does
/// not happen (the store's commits are atomic, so a crash leaves all or none of a batch).
#[derive(Debug, Clone)]
pub struct CrashStateStore {
    inner: MemoryStateStore,
    crash: Crash,
}

impl CrashStateStore {
    /// Wraps `inner`; clones share it.
    pub fn new(inner: MemoryStateStore, crash: Crash) -> CrashStateStore {
        CrashStateStore { inner, crash }
    }
}

#[async_trait]
impl StateStore for CrashStateStore {
    async fn load(&self) -> Result<ClientState> {
        self.crash.alive()?;
        self.inner.load().await
    }

    async fn commit(&self, batch: StateBatch) -> Result<()> {
        self.crash.mutate(|| {
            format!(
                "before state commit (cursor {}, {} remote, {} base)",
                batch.cursor.is_some(),
                batch.remote.len(),
                batch.base.len()
            )
        })?;
        self.inner.commit(batch).await
    }
}
