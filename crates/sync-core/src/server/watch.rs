//! [`Watchers`]: per-tenant wake-up channels that let [`ServerStore::wait`] sleep until a
//! write moves the tenant's change feed, without polling.
//!
//! The value of a channel only counts wake-ups; a woken waiter re-checks the store. This module
//! must not look at stored data: what "a change after the cursor" means is the store's check.
//!
//! [`ServerStore::wait`]: crate::ServerStore::wait

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;

use crate::Result;

/// Above this many channels, [`Watchers::subscribe`] drops those nobody waits on.
const PRUNE_ABOVE: usize = 1024;

/// One wake-up channel per tenant (by tenant id), made on first subscription and dropped when
/// nobody waits on it any more.
#[derive(Debug, Default)]
pub struct Watchers {
    map: Mutex<HashMap<String, watch::Sender<u64>>>,
}

impl Watchers {
    /// No channels yet.
    pub fn new() -> Watchers {
        Watchers::default()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, watch::Sender<u64>>> {
        self.map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A receiver for `tenant`'s wake-ups, marked as seen: its `changed()` fires on the next
    /// wake-up after this call.
    pub fn subscribe(&self, tenant: &str) -> watch::Receiver<u64> {
        let mut map = self.lock();
        if map.len() > PRUNE_ABOVE {
            map.retain(|_, tx| tx.receiver_count() > 0);
        }
        let tx = map
            .entry(tenant.to_owned())
            .or_insert_with(|| watch::channel(0).0);
        let mut rx = tx.subscribe();
        rx.borrow_and_update();
        rx
    }

    /// Wakes `tenant`'s waiters (call it after the write is visible to their check).
    pub fn notify(&self, tenant: &str) {
        if let Some(tx) = self.lock().get(tenant) {
            tx.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// Wakes every waiter of every tenant; each re-checks.
    pub fn notify_all(&self) {
        for tx in self.lock().values() {
            tx.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// How many tenants have a channel (for tests of pruning).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when no tenant has a channel.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits up to `timeout` until `has_changes` says yes: true if it did, false on timeout.
    /// It subscribes before the first check, so a write that lands between a check and the
    /// sleep still wakes it; `has_changes` runs once first and again after every wake-up.
    pub async fn wait_until<F, Fut>(
        &self,
        tenant: &str,
        timeout: Duration,
        mut has_changes: F,
    ) -> Result<bool>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<bool>>,
    {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut rx = self.subscribe(tenant);
        loop {
            if has_changes().await? {
                return Ok(true);
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Err(_) | Ok(Err(_)) => return Ok(false),
                Ok(Ok(())) => {
                    rx.borrow_and_update();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    #[tokio::test]
    async fn a_notify_wakes_the_waiter_which_rechecks() {
        let w = Arc::new(Watchers::new());
        let flag = Arc::new(AtomicBool::new(false));
        let (w2, f2) = (w.clone(), flag.clone());
        let writer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            f2.store(true, Ordering::SeqCst);
            w2.notify("t");
        });
        let woke = w
            .wait_until("t", Duration::from_secs(5), || {
                let f = flag.clone();
                async move { Ok(f.load(Ordering::SeqCst)) }
            })
            .await
            .unwrap();
        assert!(woke);
        writer.await.unwrap();
    }

    #[test]
    fn notify_wakes_only_that_tenant_and_notify_all_wakes_everyone() {
        let w = Watchers::new();
        let mut a = w.subscribe("a");
        let b = w.subscribe("b");
        w.notify("a");
        assert!(a.has_changed().unwrap());
        assert!(!b.has_changed().unwrap());
        a.borrow_and_update();
        w.notify("nobody-waits");
        w.notify_all();
        assert!(a.has_changed().unwrap() && b.has_changed().unwrap());
    }

    #[tokio::test]
    async fn a_wait_without_changes_times_out_and_unused_channels_are_pruned() {
        let w = Watchers::new();
        let woke = w
            .wait_until("t", Duration::from_millis(10), || async { Ok(false) })
            .await
            .unwrap();
        assert!(!woke);
        for i in 0..=PRUNE_ABOVE + 1 {
            drop(w.subscribe(&format!("tenant-{i}")));
        }
        assert!(w.len() <= 2, "{} channels kept", w.len());
    }
}
