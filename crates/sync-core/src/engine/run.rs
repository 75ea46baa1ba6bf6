//! The watch-and-sync loop ([`Engine::run`]) and its remote control ([`SyncHandle`]).
//!
//! The loop syncs, then waits for the first of: a local change signal (from a folder watcher or
//! an app), a change on the server (the transport's long-poll), the periodic rescan timer (a
//! safety net for missed signals), an explicit [`SyncHandle::sync_now`], or a switch of
//! [`SyncHandle::set_enabled`]. After a failure it waits with exponential backoff and jitter
//! (or the server's `Retry-After`) instead of long-polling. Status goes out on the engine's
//! watch channel. The handle also carries what an app shows while the loop runs: the status,
//! the error stack as of the last sync, and one [`SyncEvent`] per sync. This module only
//! schedules; it does no I/O besides the traits' own.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, watch, Notify};

use crate::{Error, ErrorStack, Replica, StateStore, SyncStatus, Transport};

use super::report::SyncEvent;
use super::Engine;

/// Sync events kept for a receiver that has not read them yet; one further behind misses the
/// oldest (its `recv` says `Lagged`).
pub const EVENTS_KEPT: usize = 64;

/// How [`Engine::run`] paces itself.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// How long one long-poll of the server may wait (the server caps it at 60 s).
    pub long_poll: Duration,
    /// Sync at least this often even without any signal (the safety net).
    pub rescan_every: Duration,
    /// First wait after a failure; doubles up to `max_backoff`, with jitter.
    pub min_backoff: Duration,
    /// Longest wait after failures.
    pub max_backoff: Duration,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            long_poll: Duration::from_secs(30),
            rescan_every: Duration::from_secs(60),
            min_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(60),
        }
    }
}

/// Whether the loop runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    On,
    Off,
    Stop,
}

/// Controls a running [`Engine::run`] from elsewhere (on/off, sync now, stop) and shows what it
/// does (status, error stack, one event per sync). Cheap to clone; take it with
/// [`Engine::handle`] before the loop takes the engine.
#[derive(Debug, Clone)]
pub struct SyncHandle {
    mode: Arc<watch::Sender<Mode>>,
    kick: Arc<Notify>,
    pub(super) status: Arc<watch::Sender<SyncStatus>>,
    pub(super) errors: Arc<watch::Sender<ErrorStack>>,
    pub(super) events: broadcast::Sender<Arc<SyncEvent>>,
}

impl SyncHandle {
    pub(super) fn new() -> SyncHandle {
        let (mode, _) = watch::channel(Mode::On);
        let (status, _) = watch::channel(SyncStatus::Idle {
            last_sync: None,
            attention: None,
        });
        let (errors, _) = watch::channel(ErrorStack::default());
        let (events, _) = broadcast::channel(EVENTS_KEPT);
        SyncHandle {
            mode: Arc::new(mode),
            kick: Arc::new(Notify::new()),
            status: Arc::new(status),
            errors: Arc::new(errors),
            events,
        }
    }

    /// A receiver of status changes (off / idle / syncing / error), for the app's sync icon.
    pub fn status(&self) -> watch::Receiver<SyncStatus> {
        self.status.subscribe()
    }

    /// The error-priority stack as the last sync left it (docs/SPEC.md §5);
    /// [`ErrorStack::top`] is what the app's error area shows.
    pub fn errors(&self) -> ErrorStack {
        self.errors.borrow().clone()
    }

    /// A receiver of the error stack, which changes at the end of each sync.
    pub fn watch_errors(&self) -> watch::Receiver<ErrorStack> {
        self.errors.subscribe()
    }

    /// A receiver of one [`SyncEvent`] per sync from now on (a sync switched off sends none),
    /// whether the loop or a direct [`Engine::sync_once`] ran it. A receiver more than
    /// [`EVENTS_KEPT`] events behind misses the oldest.
    pub fn events(&self) -> broadcast::Receiver<Arc<SyncEvent>> {
        self.events.subscribe()
    }

    /// Switches sync on or off while the loop runs. Off: no syncs, status `Off`.
    pub fn set_enabled(&self, on: bool) {
        self.mode.send_if_modified(|m| {
            let new = if on { Mode::On } else { Mode::Off };
            let changed = *m != new && *m != Mode::Stop;
            if changed {
                *m = new;
            }
            changed
        });
    }

    /// Asks for a sync as soon as possible (for example when the app comes to the foreground).
    pub fn sync_now(&self) {
        self.kick.notify_one();
    }

    /// Stops the loop after the sync in progress, if any; [`Engine::run`] then returns.
    pub fn stop(&self) {
        self.mode.send_replace(Mode::Stop);
    }
}

impl<T: Transport, S: StateStore, R: Replica> Engine<T, S, R> {
    /// The handle that controls [`Engine::run`] on this engine.
    pub fn handle(&self) -> SyncHandle {
        self.handle.clone()
    }

    /// Syncs until [`SyncHandle::stop`]: at start, on every signal from `local_changes` (send
    /// `()` when local items may have changed; closing the channel is fine), on server changes,
    /// and every `options.rescan_every`. Never returns an error: failures go on the error stack
    /// and the status, and the loop retries with backoff.
    pub async fn run(&mut self, mut local_changes: mpsc::Receiver<()>, options: RunOptions) {
        let mut mode_rx = self.handle.mode.subscribe();
        let kick = self.handle.kick.clone();
        let mut failures: u32 = 0;
        let mut local_open = true;
        loop {
            let mode = *mode_rx.borrow_and_update();
            match mode {
                Mode::Stop => return,
                Mode::Off => {
                    self.set_enabled(false);
                    if mode_rx.changed().await.is_err() {
                        return;
                    }
                    continue;
                }
                Mode::On => {
                    if !self.is_enabled() {
                        self.set_enabled(true);
                    }
                }
            }
            let delay = match self.sync_once().await {
                Ok(_) => {
                    failures = 0;
                    None
                }
                Err(failed) => {
                    failures = failures.saturating_add(1);
                    Some(backoff(&failed.error, failures, &options))
                }
            };
            // Drain signals that arrived during the sync: that sync already saw their changes
            // if they came before its scan; one more sync covers the rest.
            let mut pending = false;
            while let Ok(()) = local_changes.try_recv() {
                pending = true;
            }
            if pending && delay.is_none() {
                continue;
            }
            let remote_wait = async {
                if let Some(d) = delay {
                    tokio::time::sleep(d).await;
                    return;
                }
                loop {
                    match self.wait_for_remote(options.long_poll).await {
                        Ok(true) => return,
                        // Nothing within the long-poll: poll again (the rescan timer covers the
                        // local side).
                        Ok(false) => continue,
                        // The server is unreachable: sync after a pause, so the failure shows
                        // and backoff takes over.
                        Err(_) => {
                            tokio::time::sleep(options.min_backoff).await;
                            return;
                        }
                    }
                }
            };
            tokio::select! {
                _ = remote_wait => {}
                signal = local_changes.recv(), if local_open => {
                    if signal.is_none() {
                        local_open = false;
                    }
                }
                _ = kick.notified() => {}
                _ = tokio::time::sleep(options.rescan_every) => {}
                _ = mode_rx.changed() => {}
            }
        }
    }
}

/// How long to wait after the `failures`-th failure in a row: the server's Retry-After when it
/// gave one, else exponential from `min_backoff` with ±25 % jitter, capped at `max_backoff`.
fn backoff(error: &Error, failures: u32, options: &RunOptions) -> Duration {
    if let Error::Throttled {
        retry_after: Some(d),
        ..
    } = error
    {
        return (*d).min(options.max_backoff);
    }
    let exp = options
        .min_backoff
        .saturating_mul(1u32 << failures.saturating_sub(1).min(16));
    let capped = exp.min(options.max_backoff);
    let jitter = 0.75 + rand::random::<f64>() * 0.5;
    capped.mul_f64(jitter).min(options.max_backoff)
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::memory::{LocalTransport, MemoryReplica, MemoryServerStore, MemoryStateStore};
    use crate::{EngineConfig, Key, ServerConfig, SyncStatus, TenantId};

    type Device = Engine<LocalTransport<MemoryServerStore>, MemoryStateStore, MemoryReplica>;

    fn device(server: &Arc<MemoryServerStore>) -> Device {
        Engine::new(
            LocalTransport::new(server.clone(), TenantId::new("t")),
            MemoryStateStore::default(),
            MemoryReplica::default(),
            EngineConfig::default(),
        )
    }

    fn quick() -> RunOptions {
        RunOptions {
            long_poll: Duration::from_secs(5),
            rescan_every: Duration::from_secs(30),
            min_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(200),
        }
    }

    async fn until(what: &str, deadline: Duration, mut ok: impl FnMut() -> bool) -> Duration {
        let start = Instant::now();
        while !ok() {
            assert!(
                start.elapsed() < deadline,
                "{what}: not within {deadline:?}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        start.elapsed()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_edit_reaches_a_running_device_within_two_seconds() {
        let server = Arc::new(MemoryServerStore::new(ServerConfig::default()));
        let (mut a, mut b) = (device(&server), device(&server));
        let (ra, rb) = (a.replica().clone(), b.replica().clone());
        let (ha, hb) = (a.handle(), b.handle());
        let (tx_a, rx_a) = mpsc::channel(8);
        let (_tx_b, rx_b) = mpsc::channel(8);
        let ta = tokio::spawn(async move { a.run(rx_a, quick()).await });
        let tb = tokio::spawn(async move { b.run(rx_b, quick()).await });
        let key = Key::new("live.txt").unwrap();
        for round in 0..5 {
            let content = format!("edit {round}");
            ra.put(&key, &content);
            tx_a.send(()).await.unwrap();
            let took = until("propagation", Duration::from_secs(2), || {
                rb.get(&key).as_deref() == Some(content.as_bytes())
            })
            .await;
            assert!(took < Duration::from_secs(2), "{took:?}");
        }
        ha.stop();
        hb.stop();
        ta.await.unwrap();
        tb.await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn switched_off_at_run_time_and_back_on() {
        let server = Arc::new(MemoryServerStore::new(ServerConfig::default()));
        let (mut a, mut b) = (device(&server), device(&server));
        let (ra, rb) = (a.replica().clone(), b.replica().clone());
        let (ha, hb) = (a.handle(), b.handle());
        let status = a.status();
        let (tx_a, rx_a) = mpsc::channel(8);
        let (_tx_b, rx_b) = mpsc::channel(8);
        let ta = tokio::spawn(async move { a.run(rx_a, quick()).await });
        let tb = tokio::spawn(async move { b.run(rx_b, quick()).await });
        ha.set_enabled(false);
        until("off", Duration::from_secs(2), || {
            *status.borrow() == SyncStatus::Off
        })
        .await;
        let key = Key::new("while-off.txt").unwrap();
        ra.put(&key, "x");
        tx_a.send(()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(rb.get(&key).is_none(), "synced while off");
        ha.set_enabled(true);
        until("back on", Duration::from_secs(2), || rb.get(&key).is_some()).await;
        ha.stop();
        hb.stop();
        ta.await.unwrap();
        tb.await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_periodic_rescan_catches_changes_nobody_signalled() {
        let server = Arc::new(MemoryServerStore::new(ServerConfig::default()));
        let mut a = device(&server);
        let ra = a.replica().clone();
        let ha = a.handle();
        let (_tx, rx) = mpsc::channel(1);
        let opts = RunOptions {
            rescan_every: Duration::from_millis(100),
            ..quick()
        };
        let ta = tokio::spawn(async move {
            a.run(rx, opts).await;
            a
        });
        let key = Key::new("quiet.txt").unwrap();
        ra.put(&key, "no signal");
        let check = server.clone();
        let tenant = TenantId::new("t");
        let start = Instant::now();
        loop {
            use crate::ServerStore;
            if check.fetch(&tenant, &key, None).await.is_ok() {
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(2), "never uploaded");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        ha.stop();
        let a = ta.await.unwrap();
        assert!(matches!(*a.status().borrow(), SyncStatus::Idle { .. }));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_running_loop_sends_an_event_per_sync_and_shares_its_error_stack() {
        let server = Arc::new(MemoryServerStore::new(ServerConfig::default()));
        let mut a = device(&server);
        let mut config = EngineConfig::default();
        config.policy.max_item_bytes = 16;
        let mut b = Engine::new(
            LocalTransport::new(server.clone(), TenantId::new("t")),
            MemoryStateStore::default(),
            MemoryReplica::default(),
            config,
        );
        let rb = b.replica().clone();
        let hb = b.handle();
        let mut events = hb.events();
        let mut errors = hb.watch_errors();
        let (tx_b, rx_b) = mpsc::channel(8);
        let tb = tokio::spawn(async move { b.run(rx_b, quick()).await });

        // A download: the event names the key it wrote here.
        let note = Key::new("notes/today.txt").unwrap();
        a.replica().put(&note, "from a");
        a.sync_once().await.unwrap();
        let changed = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                let event = events.recv().await.unwrap();
                assert!(event.failed.is_none(), "{event:?}");
                if !event.report.changed.is_empty() {
                    return event.report.changed.clone();
                }
            }
        })
        .await
        .expect("no event with the downloaded key");
        assert_eq!(changed, vec![note.clone()]);
        assert_eq!(rb.get(&note).as_deref(), Some(&b"from a"[..]));

        // A per-item problem while the loop holds the engine: the handle shows it.
        let big = Key::new("big.bin").unwrap();
        rb.put(&big, [7u8; 64]);
        tx_b.send(()).await.unwrap();
        tokio::time::timeout(
            Duration::from_secs(5),
            errors.wait_for(|s| s.top().is_some()),
        )
        .await
        .expect("the error stack never showed the skipped item")
        .unwrap();
        let top = hb.errors().top().cloned().unwrap();
        assert_eq!(top.key(), Some(&big), "{top:?}");
        hb.stop();
        tb.await.unwrap();
    }

    #[test]
    fn backoff_grows_caps_and_honours_retry_after() {
        let opts = RunOptions {
            min_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            ..RunOptions::default()
        };
        let offline = Error::offline("down");
        let first = backoff(&offline, 1, &opts);
        assert!(
            first >= Duration::from_millis(750) && first <= Duration::from_millis(1250),
            "{first:?}"
        );
        let fourth = backoff(&offline, 4, &opts);
        assert!(
            fourth >= Duration::from_secs(6) && fourth <= Duration::from_secs(10),
            "{fourth:?}"
        );
        assert!(backoff(&offline, 40, &opts) <= Duration::from_secs(60));
        let throttled = Error::Throttled {
            retry_after: Some(Duration::from_secs(7)),
            message: "slow down".into(),
        };
        assert_eq!(backoff(&throttled, 1, &opts), Duration::from_secs(7));
    }
}
