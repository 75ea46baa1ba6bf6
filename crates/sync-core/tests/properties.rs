//! Property tests of the reconciler and the engine over random histories (docs/SPEC.md §3).
//!
//! A history is a sequence of edits, deletes, renames, clock ticks and syncs on 2–4 in-memory
//! replicas sharing one in-memory server. Conflicting edits arise whenever two replicas touch the
//! same key between syncs. After the history, every replica syncs twice with no new edits; then:
//!
//! - **convergence**: every replica holds exactly the server's live files, except keys it has
//!   detached (it deleted them, or kept them when the server deleted them); under
//!   `DeletePolicy::Propagate` with no detached keys, all replicas equal the server;
//! - **nothing lost**: every content a replica held when a sync started is still readable from a
//!   replica, the server's current items or history, or a replica's backups;
//! - **idempotence**: one more sync on every replica transfers nothing;
//! - **keep-deletes**: under `DeletePolicy::Keep` no sync removes a local file, and the server
//!   never holds a tombstone.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use proptest::prelude::*;
use sync_core::memory::{LocalTransport, MemoryReplica, MemoryServerStore, MemoryStateStore};
use sync_core::{
    ContentHash, DeletePolicy, Engine, EngineConfig, Key, ManualTime, NodeId, ServerConfig,
    ServerStore, StateStore, SyncPolicy, TenantId,
};

const KEYS: [&str; 5] = ["a.txt", "b.txt", "d/c.txt", "d/e.txt", "f/g/h.txt"];

#[derive(Debug, Clone)]
enum Op {
    Write {
        replica: usize,
        key: usize,
    },
    Delete {
        replica: usize,
        key: usize,
    },
    Rename {
        replica: usize,
        from: usize,
        to: usize,
    },
    Tick {
        millis: u64,
    },
    Sync {
        replica: usize,
    },
}

fn op(replicas: usize) -> impl Strategy<Value = Op> {
    let r = 0..replicas;
    let k = 0..KEYS.len();
    prop_oneof![
        4 => (r.clone(), k.clone()).prop_map(|(replica, key)| Op::Write { replica, key }),
        1 => (r.clone(), k.clone()).prop_map(|(replica, key)| Op::Delete { replica, key }),
        1 => (r.clone(), k.clone(), k).prop_map(|(replica, from, to)| Op::Rename { replica, from, to }),
        1 => (0u64..3_000).prop_map(|millis| Op::Tick { millis }),
        4 => r.prop_map(|replica| Op::Sync { replica }),
    ]
}

fn history() -> impl Strategy<Value = (usize, Vec<Op>)> {
    (2usize..=4).prop_flat_map(|n| (Just(n), prop::collection::vec(op(n), 1..40)))
}

type Device = Engine<LocalTransport<MemoryServerStore>, MemoryStateStore, MemoryReplica>;

struct Fleet {
    server: Arc<MemoryServerStore>,
    tenant: TenantId,
    time: Arc<ManualTime>,
    devices: Vec<Device>,
    /// Every content any replica held when one of its syncs started.
    held: BTreeSet<ContentHash>,
    /// Set when a sync under `Keep` removed a local file.
    removed_by_sync: Vec<String>,
}

impl Fleet {
    fn new(n: usize, deletes: DeletePolicy) -> Fleet {
        let time = ManualTime::new(1_000_000);
        let server = Arc::new(MemoryServerStore::new(ServerConfig {
            time: time.clone(),
            ..ServerConfig::default()
        }));
        let tenant = TenantId::new("prop");
        let devices = (0..n)
            .map(|i| {
                Engine::new(
                    LocalTransport::new(server.clone(), tenant.clone()),
                    MemoryStateStore::default(),
                    MemoryReplica::new(time.clone()),
                    EngineConfig {
                        policy: SyncPolicy {
                            deletes,
                            ..SyncPolicy::default()
                        },
                        time: time.clone(),
                        node: Some(NodeId(i as u64 + 1)),
                        ..EngineConfig::default()
                    },
                )
            })
            .collect();
        Fleet {
            server,
            tenant,
            time,
            devices,
            held: BTreeSet::new(),
            removed_by_sync: Vec::new(),
        }
    }

    async fn sync(&mut self, i: usize) -> sync_core::SyncReport {
        let before = self.devices[i].replica().files();
        self.held
            .extend(before.values().map(|c| ContentHash::of(c)));
        let report = self.devices[i]
            .sync_once()
            .await
            .unwrap_or_else(|e| panic!("device {i}: {e}"));
        let after = self.devices[i].replica().files();
        for key in before.keys() {
            if !after.contains_key(key) {
                self.removed_by_sync.push(format!("device {i} lost {key}"));
            }
        }
        self.time.advance(1);
        report
    }

    async fn run(&mut self, ops: &[Op]) {
        for (n, op) in ops.iter().enumerate() {
            match *op {
                Op::Write { replica, key } => {
                    let content = format!("content {n} by {replica}");
                    self.devices[replica].replica().put(&k(KEYS[key]), content);
                }
                Op::Delete { replica, key } => {
                    self.devices[replica].replica().delete(&k(KEYS[key]))
                }
                Op::Rename { replica, from, to } => {
                    let r = self.devices[replica].replica();
                    if from != to && r.get(&k(KEYS[from])).is_some() {
                        r.rename(&k(KEYS[from]), &k(KEYS[to]));
                    }
                }
                Op::Tick { millis } => self.time.advance(millis),
                Op::Sync { replica } => {
                    self.sync(replica).await;
                }
            }
        }
        for _ in 0..2 {
            for i in 0..self.devices.len() {
                self.sync(i).await;
            }
        }
    }

    /// The server's live files, read through its change feed.
    async fn server_files(&self) -> BTreeMap<Key, Vec<u8>> {
        let mut out = BTreeMap::new();
        for item in self.server_items().await {
            if !item.deleted && item.kind == sync_core::ItemKind::File {
                let f = self
                    .server
                    .fetch(&self.tenant, &item.key, None)
                    .await
                    .unwrap();
                out.insert(item.key, f.content.to_vec());
            }
        }
        out
    }

    async fn server_items(&self) -> Vec<sync_core::ItemMeta> {
        let page = self
            .server
            .changes(&self.tenant, None, 10_000)
            .await
            .unwrap();
        assert!(!page.more);
        page.changes
    }

    /// Every content the server can still give back: current items and all history.
    async fn server_contents(&self) -> BTreeSet<ContentHash> {
        let mut out = BTreeSet::new();
        for item in self.server_items().await {
            for v in sync_core::full_history(&*self.server, &self.tenant, &item.key)
                .await
                .unwrap()
            {
                out.extend(v.hash);
            }
        }
        out
    }

    async fn detached(&self, i: usize) -> BTreeSet<Key> {
        let state = self.devices[i].state_store().load().await.unwrap();
        state
            .base
            .into_iter()
            .filter(|(_, b)| b.detached)
            .map(|(k, _)| k)
            .collect()
    }

    async fn check_convergence(&self, strict: bool) -> Result<(), TestCaseError> {
        let server = self.server_files().await;
        for (i, d) in self.devices.iter().enumerate() {
            let files = d.replica().files();
            let detached = self.detached(i).await;
            if strict {
                prop_assert!(detached.is_empty(), "device {i} detached {detached:?}");
            }
            for key in server.keys().chain(files.keys()) {
                let (s, l) = (server.get(key), files.get(key));
                prop_assert!(
                    s == l || (detached.contains(key) && (s.is_none() || l.is_none())),
                    "device {i} key {key}: server {:?} local {:?} detached {}",
                    s.map(|c| String::from_utf8_lossy(c).into_owned()),
                    l.map(|c| String::from_utf8_lossy(c).into_owned()),
                    detached.contains(key)
                );
            }
        }
        Ok(())
    }

    async fn check_nothing_lost(&self) -> Result<(), TestCaseError> {
        let mut readable = self.server_contents().await;
        for d in &self.devices {
            readable.extend(d.replica().files().values().map(|c| ContentHash::of(c)));
            readable.extend(
                d.replica()
                    .backup_contents()
                    .iter()
                    .map(|c| ContentHash::of(c)),
            );
        }
        let lost: Vec<_> = self.held.difference(&readable).collect();
        prop_assert!(lost.is_empty(), "lost contents: {lost:?}");
        Ok(())
    }

    async fn check_idempotent(&mut self) -> Result<(), TestCaseError> {
        for i in 0..self.devices.len() {
            let r = self.sync(i).await;
            prop_assert_eq!(
                r.transferred(),
                0,
                "device {} transferred again: {:?}",
                i,
                r
            );
            prop_assert_eq!(r.conflicts, 0);
        }
        Ok(())
    }
}

fn k(s: &str) -> Key {
    Key::new(s).unwrap()
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Convergence, nothing lost, idempotence and keep-deletes under the default policies.
    #[test]
    fn keep_policy_converges_loses_nothing_and_never_deletes((n, ops) in history()) {
        block_on(async {
            let mut fleet = Fleet::new(n, DeletePolicy::Keep);
            fleet.run(&ops).await;
            fleet.check_convergence(false).await?;
            fleet.check_nothing_lost().await?;
            fleet.check_idempotent().await?;
            prop_assert!(fleet.removed_by_sync.is_empty(), "{:?}", fleet.removed_by_sync);
            let tombstones: Vec<_> = fleet.server_items().await.into_iter().filter(|i| i.deleted).collect();
            prop_assert!(tombstones.is_empty(), "server tombstones under Keep: {tombstones:?}");
            Ok::<(), TestCaseError>(())
        })?;
    }

    /// Under Propagate, deletes travel, and still nothing is lost.
    #[test]
    fn propagate_policy_converges_and_loses_nothing((n, ops) in history()) {
        block_on(async {
            let mut fleet = Fleet::new(n, DeletePolicy::Propagate);
            fleet.run(&ops).await;
            fleet.check_convergence(false).await?;
            fleet.check_nothing_lost().await?;
            fleet.check_idempotent().await?;
            Ok::<(), TestCaseError>(())
        })?;
    }
}
