//! Property tests of the per-prefix policy table (docs/SPEC.md §3) with two or three devices.
//!
//! Each device edits three records under three policies: `settings/app` (`JsonFields`: set and
//! remove fields), `history/cmds` (`AppendOnly` by `id`, ordered by `at`: append entries) and
//! `todos/list` (`UnionById`: add, edit and remove todos), with syncs in random order between
//! the edits. After the history every device syncs until quiet; then:
//!
//! - **convergence**: every device holds the same three values, equal to the server's;
//! - **idempotence**: one more sync on every device transfers nothing;
//! - **nothing dropped**: every history entry any device appended is in the final log, once;
//!   the final todos are exactly those added minus those removed (a removal relative to the
//!   base stays, an add is never lost); every final setting is a value some device wrote;
//! - **nothing lost**: every content a device held when a sync started is still readable from
//!   a device, its backups, or the server's current items or history.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use proptest::prelude::*;
use serde_json::{json, Value};
use sync_core::memory::{LocalTransport, MemoryReplica, MemoryServerStore, MemoryStateStore};
use sync_core::merge::{AppendOnly, JsonFields, UnionById};
use sync_core::{
    ConflictPolicy, ContentHash, Engine, EngineConfig, Key, ManualTime, NodeId, ServerConfig,
    ServerStore, SyncPolicy, TenantId,
};

const SETTINGS: &str = "settings/app";
const HISTORY: &str = "history/cmds";
const TODOS: &str = "todos/list";

#[derive(Debug, Clone)]
enum Op {
    SetField { dev: usize, field: u8 },
    RemoveField { dev: usize, field: u8 },
    Append { dev: usize },
    AddTodo { dev: usize },
    EditTodo { dev: usize, pick: usize },
    RemoveTodo { dev: usize, pick: usize },
    Tick { millis: u64 },
    Sync { dev: usize },
}

fn op(devices: usize) -> impl Strategy<Value = Op> {
    let d = 0..devices;
    prop_oneof![
        2 => (d.clone(), 0u8..3).prop_map(|(dev, field)| Op::SetField { dev, field }),
        1 => (d.clone(), 0u8..3).prop_map(|(dev, field)| Op::RemoveField { dev, field }),
        2 => d.clone().prop_map(|dev| Op::Append { dev }),
        2 => d.clone().prop_map(|dev| Op::AddTodo { dev }),
        1 => (d.clone(), 0usize..8).prop_map(|(dev, pick)| Op::EditTodo { dev, pick }),
        1 => (d.clone(), 0usize..8).prop_map(|(dev, pick)| Op::RemoveTodo { dev, pick }),
        1 => (0u64..2_000).prop_map(|millis| Op::Tick { millis }),
        4 => d.prop_map(|dev| Op::Sync { dev }),
    ]
}

fn history() -> impl Strategy<Value = (usize, Vec<Op>)> {
    (2usize..=3).prop_flat_map(|n| (Just(n), prop::collection::vec(op(n), 1..40)))
}

type Device = Engine<LocalTransport<MemoryServerStore>, MemoryStateStore, MemoryReplica>;

struct Fleet {
    server: Arc<MemoryServerStore>,
    tenant: TenantId,
    time: Arc<ManualTime>,
    devices: Vec<Device>,
    /// Every content a device held when one of its syncs started.
    held: BTreeSet<ContentHash>,
    appended: BTreeSet<String>,
    added: BTreeSet<String>,
    removed: BTreeSet<String>,
    written: BTreeMap<String, BTreeSet<String>>,
}

fn policy() -> SyncPolicy {
    SyncPolicy {
        conflicts_by_prefix: vec![
            (
                "settings/".into(),
                ConflictPolicy::Merge(Arc::new(JsonFields)),
            ),
            (
                "history/".into(),
                ConflictPolicy::Merge(Arc::new(AppendOnly::new("id", "at"))),
            ),
            (
                "todos/".into(),
                ConflictPolicy::Merge(Arc::new(UnionById::new("id"))),
            ),
        ],
        ..SyncPolicy::default()
    }
}

fn k(s: &str) -> Key {
    Key::new(s).unwrap()
}

impl Fleet {
    fn new(n: usize) -> Fleet {
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
                        policy: policy(),
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
            appended: BTreeSet::new(),
            added: BTreeSet::new(),
            removed: BTreeSet::new(),
            written: BTreeMap::new(),
        }
    }

    fn read(&self, dev: usize, key: &str, empty: Value) -> Value {
        match self.devices[dev].replica().get(&k(key)) {
            Some(bytes) => serde_json::from_slice(&bytes).unwrap(),
            None => empty,
        }
    }

    fn write(&self, dev: usize, key: &str, value: &Value) {
        self.devices[dev]
            .replica()
            .put(&k(key), serde_json::to_vec(value).unwrap());
    }

    async fn sync(&mut self, dev: usize) -> sync_core::SyncReport {
        let files = self.devices[dev].replica().files();
        self.held.extend(files.values().map(|c| ContentHash::of(c)));
        let report = self.devices[dev]
            .sync_once()
            .await
            .unwrap_or_else(|e| panic!("device {dev}: {e}"));
        assert!(report.errors.is_empty(), "device {dev}: {report:?}");
        self.time.advance(1);
        report
    }

    async fn run(&mut self, ops: &[Op]) {
        for (n, op) in ops.iter().enumerate() {
            match *op {
                Op::SetField { dev, field } => {
                    let mut v = self.read(dev, SETTINGS, json!({}));
                    let value = format!("v{n}");
                    v[format!("f{field}")] = json!(value);
                    self.written
                        .entry(format!("f{field}"))
                        .or_default()
                        .insert(value);
                    self.write(dev, SETTINGS, &v);
                }
                Op::RemoveField { dev, field } => {
                    let mut v = self.read(dev, SETTINGS, json!({}));
                    if let Some(map) = v.as_object_mut() {
                        if map.remove(&format!("f{field}")).is_some() {
                            self.write(dev, SETTINGS, &v);
                        }
                    }
                }
                Op::Append { dev } => {
                    let mut v = self.read(dev, HISTORY, json!([]));
                    let id = format!("c{n}");
                    v.as_array_mut()
                        .unwrap()
                        .push(json!({"id": id, "at": n, "cmd": format!("ls {n}")}));
                    self.appended.insert(id);
                    self.write(dev, HISTORY, &v);
                }
                Op::AddTodo { dev } => {
                    let mut v = self.read(dev, TODOS, json!([]));
                    let id = format!("t{n}");
                    v.as_array_mut()
                        .unwrap()
                        .push(json!({"id": id, "text": "new", "done": false}));
                    self.added.insert(id);
                    self.write(dev, TODOS, &v);
                }
                Op::EditTodo { dev, pick } => {
                    let mut v = self.read(dev, TODOS, json!([]));
                    let list = v.as_array_mut().unwrap();
                    if !list.is_empty() {
                        let i = pick % list.len();
                        list[i]["text"] = json!(format!("edited {n}"));
                        self.write(dev, TODOS, &v);
                    }
                }
                Op::RemoveTodo { dev, pick } => {
                    let mut v = self.read(dev, TODOS, json!([]));
                    let list = v.as_array_mut().unwrap();
                    if !list.is_empty() {
                        let gone = list.remove(pick % list.len());
                        self.removed.insert(gone["id"].as_str().unwrap().to_owned());
                        self.write(dev, TODOS, &v);
                    }
                }
                Op::Tick { millis } => self.time.advance(millis),
                Op::Sync { dev } => {
                    self.sync(dev).await;
                }
            }
        }
        // Until quiet: merges made late reach the others in the following round.
        for _ in 0..3 {
            for i in 0..self.devices.len() {
                self.sync(i).await;
            }
        }
    }

    async fn server_value(&self, key: &str) -> Option<Vec<u8>> {
        self.server
            .fetch(&self.tenant, &k(key), None)
            .await
            .ok()
            .map(|f| f.content.to_vec())
    }

    async fn server_contents(&self) -> BTreeSet<ContentHash> {
        let mut out = BTreeSet::new();
        for key in [SETTINGS, HISTORY, TODOS] {
            if let Ok(versions) =
                sync_core::full_history(&*self.server, &self.tenant, &k(key)).await
            {
                out.extend(versions.into_iter().filter_map(|v| v.hash));
            }
        }
        out
    }

    async fn check(&mut self) -> Result<(), TestCaseError> {
        // Convergence, on the server's values.
        for key in [SETTINGS, HISTORY, TODOS] {
            let server = self.server_value(key).await;
            for (i, d) in self.devices.iter().enumerate() {
                let local = d.replica().get(&k(key));
                prop_assert_eq!(
                    local.as_deref().map(String::from_utf8_lossy),
                    server.as_deref().map(String::from_utf8_lossy),
                    "device {} key {}",
                    i,
                    key
                );
            }
        }
        // Idempotence.
        for i in 0..self.devices.len() {
            let r = self.sync(i).await;
            prop_assert_eq!(r.transferred(), 0, "device {} synced again: {:?}", i, r);
        }
        // Nothing dropped.
        let log = self.read(0, HISTORY, json!([]));
        let ids: Vec<&str> = log
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_str().unwrap())
            .collect();
        let unique: BTreeSet<&str> = ids.iter().copied().collect();
        prop_assert_eq!(unique.len(), ids.len(), "duplicates in {:?}", ids);
        let expected: BTreeSet<&str> = self.appended.iter().map(String::as_str).collect();
        prop_assert_eq!(unique, expected, "history entries");
        let todos = self.read(0, TODOS, json!([]));
        let todo_ids: BTreeSet<String> = todos
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_owned())
            .collect();
        let expected: BTreeSet<String> = self.added.difference(&self.removed).cloned().collect();
        prop_assert_eq!(todo_ids, expected, "todos");
        let settings = self.read(0, SETTINGS, json!({}));
        for (field, value) in settings.as_object().unwrap() {
            let value = value.as_str().unwrap().to_owned();
            prop_assert!(
                self.written.get(field).is_some_and(|w| w.contains(&value)),
                "setting {field} = {value} was never written"
            );
        }
        // Nothing lost.
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
        let lost = self.held.difference(&readable).count();
        prop_assert_eq!(lost, 0, "contents lost");
        Ok(())
    }
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

    #[test]
    fn a_policy_table_converges_and_drops_nothing((n, ops) in history()) {
        block_on(async {
            let mut fleet = Fleet::new(n);
            fleet.run(&ops).await;
            fleet.check().await
        })?;
    }
}
