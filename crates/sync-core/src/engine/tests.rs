//! Engine scenarios on in-memory parts: each test is a user story of docs/SPEC.md §3 and §5.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::*;
use crate::memory::{LocalTransport, MemoryReplica, MemoryServerStore, MemoryStateStore};
use crate::{
    ArchiveRequest, ChangePage, ConflictPolicy, Cursor, DeletePolicy, DeleteRequest, ErrorClass,
    Fetched, FolderRequest, Identity, ItemMeta, Key, ManualTime, MergeInput, PushOutcome,
    PushRequest, ServerConfig, ServerStore, TenantId, VersionMeta,
};

type Device = Engine<LocalTransport<MemoryServerStore>, MemoryStateStore, MemoryReplica>;

struct World {
    server: Arc<MemoryServerStore>,
    time: Arc<ManualTime>,
    tenant: TenantId,
}

impl World {
    fn new() -> World {
        let time = ManualTime::new(1_000_000);
        let server = Arc::new(MemoryServerStore::new(ServerConfig {
            time: time.clone(),
            ..ServerConfig::default()
        }));
        World {
            server,
            time,
            tenant: TenantId::new("t"),
        }
    }

    fn device(&self, node: u64, policy: SyncPolicy) -> Device {
        Engine::new(
            LocalTransport::new(self.server.clone(), self.tenant.clone()),
            MemoryStateStore::default(),
            MemoryReplica::new(self.time.clone()),
            EngineConfig {
                policy,
                time: self.time.clone(),
                node: Some(NodeId(node)),
                ..EngineConfig::default()
            },
        )
    }

    fn tick(&self) {
        self.time.advance(1_000);
    }
}

fn k(s: &str) -> Key {
    Key::new(s).unwrap()
}

async fn sync<T: Transport, S: StateStore, R: Replica>(d: &mut Engine<T, S, R>) -> SyncReport {
    match d.sync_once().await {
        Ok(r) => r,
        Err(e) => panic!("sync failed: {e}"),
    }
}

#[tokio::test]
async fn two_devices_exchange_files_and_a_second_sync_transfers_nothing() {
    let w = World::new();
    let mut a = w.device(1, SyncPolicy::default());
    let mut b = w.device(2, SyncPolicy::default());
    a.replica().put(&k("docs/x/readme.txt"), b"hello");
    a.replica().put(&k("img.bin"), [0u8, 1, 2, 255]);
    let r = sync(&mut a).await;
    // Two files; the two folders are counted apart.
    assert_eq!((r.uploaded, r.folders), (2, 2), "{r:?}");
    let r = sync(&mut b).await;
    assert_eq!((r.downloaded, r.folders), (2, 2), "{r:?}");
    assert_eq!(b.replica().files(), a.replica().files());
    for d in [&mut a, &mut b] {
        let r = sync(d).await;
        assert_eq!(r.transferred(), 0, "{r:?}");
        assert_eq!(r.conflicts, 0);
    }
    // B edits, A gets it.
    w.tick();
    b.replica().put(&k("docs/x/readme.txt"), b"hello again");
    assert_eq!(sync(&mut b).await.uploaded, 1);
    assert_eq!(sync(&mut a).await.downloaded, 1);
    assert_eq!(
        a.replica().get(&k("docs/x/readme.txt")).unwrap(),
        b"hello again"
    );
}

#[tokio::test]
async fn conflict_newest_stamp_wins_on_both_and_the_loser_is_kept() {
    let w = World::new();
    let mut a = w.device(1, SyncPolicy::default());
    let mut b = w.device(2, SyncPolicy::default());
    a.replica().put(&k("f.txt"), b"base");
    sync(&mut a).await;
    sync(&mut b).await;
    // B edits later than A, but A syncs first; B then finds the conflict and wins it.
    w.tick();
    a.replica().put(&k("f.txt"), b"from a (older)");
    w.tick();
    b.replica().put(&k("f.txt"), b"from b (newer)");
    sync(&mut a).await;
    let r = sync(&mut b).await;
    assert_eq!(r.conflicts, 1, "{r:?}");
    sync(&mut a).await;
    assert_eq!(a.replica().get(&k("f.txt")).unwrap(), b"from b (newer)");
    assert_eq!(b.replica().get(&k("f.txt")).unwrap(), b"from b (newer)");
    // A's losing content stays in the server's history.
    let history = crate::full_history(&*w.server, &w.tenant, &k("f.txt"))
        .await
        .unwrap();
    let loser = crate::ContentHash::of(b"from a (older)");
    assert!(history.iter().any(|v| v.hash == Some(loser)), "{history:?}");

    // The other order: the loser detects the conflict and keeps a local backup.
    w.tick();
    b.replica().put(&k("f.txt"), b"b again (older)");
    w.tick();
    a.replica().put(&k("f.txt"), b"a again (newer)");
    sync(&mut a).await;
    let r = sync(&mut b).await;
    assert_eq!(r.conflicts, 1, "{r:?}");
    assert_eq!(b.replica().get(&k("f.txt")).unwrap(), b"a again (newer)");
    assert!(b
        .replica()
        .backup_contents()
        .contains(&b"b again (older)".to_vec()));
    let history = crate::full_history(&*w.server, &w.tenant, &k("f.txt"))
        .await
        .unwrap();
    let loser = crate::ContentHash::of(b"b again (older)");
    assert!(history.iter().any(|v| v.hash == Some(loser)), "{history:?}");
}

#[tokio::test]
async fn deletes_do_not_propagate_by_default() {
    let w = World::new();
    let mut a = w.device(1, SyncPolicy::default());
    let mut b = w.device(2, SyncPolicy::default());
    a.replica().put(&k("keep.txt"), b"v1");
    sync(&mut a).await;
    sync(&mut b).await;
    a.replica().delete(&k("keep.txt"));
    sync(&mut a).await;
    sync(&mut b).await;
    assert_eq!(b.replica().get(&k("keep.txt")).unwrap(), b"v1");
    let r = sync(&mut a).await;
    assert!(
        a.replica().get(&k("keep.txt")).is_none(),
        "A got it back: {r:?}"
    );
    // B edits it later: A gets the new version.
    w.tick();
    b.replica().put(&k("keep.txt"), b"v2");
    sync(&mut b).await;
    sync(&mut a).await;
    assert_eq!(a.replica().get(&k("keep.txt")).unwrap(), b"v2");
}

#[tokio::test]
async fn a_remote_tombstone_keeps_the_local_file_and_does_not_reupload_it() {
    let w = World::new();
    let mut a = w.device(1, SyncPolicy::default());
    let mut p = w.device(
        2,
        SyncPolicy {
            deletes: DeletePolicy::Propagate,
            ..SyncPolicy::default()
        },
    );
    a.replica().put(&k("t.txt"), b"v1");
    sync(&mut a).await;
    sync(&mut p).await;
    p.replica().delete(&k("t.txt"));
    sync(&mut p).await; // tombstones it on the server
    let r = sync(&mut a).await;
    assert_eq!(r.transferred(), 0, "{r:?}");
    assert_eq!(a.replica().get(&k("t.txt")).unwrap(), b"v1");
    let r = sync(&mut a).await;
    assert_eq!(r.uploaded, 0, "{r:?}");
    // The deleted content stays in history.
    let history = crate::full_history(&*w.server, &w.tenant, &k("t.txt"))
        .await
        .unwrap();
    assert!(history
        .iter()
        .any(|v| v.hash == Some(crate::ContentHash::of(b"v1"))));
}

#[tokio::test]
async fn propagate_removes_on_the_other_side_with_a_backup() {
    let w = World::new();
    let propagate = SyncPolicy {
        deletes: DeletePolicy::Propagate,
        ..SyncPolicy::default()
    };
    let mut a = w.device(1, propagate.clone());
    let mut b = w.device(2, propagate);
    a.replica().put(&k("r/1.json"), b"{}");
    sync(&mut a).await;
    sync(&mut b).await;
    a.replica().delete(&k("r/1.json"));
    sync(&mut a).await;
    sync(&mut b).await;
    assert!(b.replica().get(&k("r/1.json")).is_none());
    assert!(b.replica().backup_contents().contains(&b"{}".to_vec()));
}

#[tokio::test]
async fn rename_is_a_create_and_the_old_name_stays_elsewhere() {
    let w = World::new();
    let mut a = w.device(1, SyncPolicy::default());
    let mut b = w.device(2, SyncPolicy::default());
    a.replica().put(&k("old.txt"), b"content");
    sync(&mut a).await;
    sync(&mut b).await;
    a.replica().rename(&k("old.txt"), &k("new.txt"));
    sync(&mut a).await;
    sync(&mut b).await;
    assert_eq!(b.replica().get(&k("new.txt")).unwrap(), b"content");
    assert_eq!(b.replica().get(&k("old.txt")).unwrap(), b"content");
    sync(&mut a).await;
    assert!(a.replica().get(&k("old.txt")).is_none());
}

#[tokio::test]
async fn app_name_identity_binds_to_the_remote_twin() {
    let w = World::new();
    let mut server_side = w.device(9, SyncPolicy::default());
    server_side
        .replica()
        .put(&k("other/index2.html"), b"<p>v1</p>");
    sync(&mut server_side).await;
    let mut a = w.device(
        1,
        SyncPolicy {
            identity: Identity::AppName,
            ..SyncPolicy::default()
        },
    );
    a.replica().put(&k("site/a/index2.html"), b"<p>v1</p>");
    let r = sync(&mut a).await;
    assert!(a.replica().get(&k("other/index2.html")).is_none(), "{r:?}");
    w.tick();
    a.replica().put(&k("site/a/index2.html"), b"<p>v2</p>");
    sync(&mut a).await;
    sync(&mut server_side).await;
    assert_eq!(
        server_side.replica().get(&k("other/index2.html")).unwrap(),
        b"<p>v2</p>"
    );
    assert!(server_side
        .replica()
        .get(&k("site/a/index2.html"))
        .is_none());
}

#[tokio::test]
async fn an_interrupted_sync_converges_on_the_next_one() {
    let w = World::new();
    let mut a = w.device(1, SyncPolicy::default());
    let mut b = w.device(2, SyncPolicy::default());
    for i in 0..20 {
        a.replica()
            .put(&k(&format!("d/f{i}.txt")), format!("file {i}"));
    }
    sync(&mut a).await;
    b.replica().fail_after(Some(7));
    let failed = b.sync_once().await;
    let err = failed.expect_err("the injected failure stops the sync");
    assert_eq!(err.error.class(), ErrorClass::Storage);
    assert!(matches!(*b.status().borrow(), SyncStatus::Error { .. }));
    b.replica().fail_after(None);
    sync(&mut b).await;
    assert_eq!(b.replica().files(), a.replica().files());
    assert!(b.errors().is_empty(), "{:?}", b.errors());
    assert!(matches!(*b.status().borrow(), SyncStatus::Idle { .. }));
    assert_eq!(sync(&mut b).await.transferred(), 0);
}

#[tokio::test]
async fn a_restored_server_gets_lost_items_back_and_equal_items_cost_nothing() {
    let w = World::new();
    let mut a = w.device(1, SyncPolicy::default());
    a.replica().put(&k("old.txt"), b"before the backup");
    sync(&mut a).await;
    let restored = Arc::new(w.server.restore_copy());
    a.replica().put(&k("new.txt"), b"after the backup");
    sync(&mut a).await;
    // The server is restored from the backup: new epoch, new.txt lost.
    let mut a2 = Engine::new(
        LocalTransport::new(restored.clone(), w.tenant.clone()),
        a.state_store().clone(),
        a.replica().clone(),
        EngineConfig {
            time: w.time.clone(),
            node: Some(NodeId(1)),
            ..EngineConfig::default()
        },
    );
    let r = sync(&mut a2).await;
    assert_eq!(r.uploaded, 1, "only the lost item goes up again: {r:?}");
    assert_eq!(r.downloaded, 0, "{r:?}");
    let f = restored
        .fetch(&w.tenant, &k("new.txt"), None)
        .await
        .unwrap();
    assert_eq!(&f.content[..], b"after the backup");
}

#[tokio::test]
async fn merge_policy_joins_both_edits_and_keeps_the_local_version() {
    let w = World::new();
    let merge: Arc<dyn crate::Merge> = Arc::new(|m: MergeInput<'_>| -> Result<Vec<u8>, String> {
        let (a, b) = (m.local, m.remote);
        let mut lines: Vec<&[u8]> = a
            .split(|c| *c == b'\n')
            .chain(b.split(|c| *c == b'\n'))
            .collect();
        lines.sort();
        lines.dedup();
        Ok(lines.join(&b'\n'))
    });
    let policy = SyncPolicy {
        conflicts: ConflictPolicy::Merge(merge),
        ..SyncPolicy::default()
    };
    let mut a = w.device(1, policy.clone());
    let mut b = w.device(2, policy);
    a.replica().put(&k("list"), b"x");
    sync(&mut a).await;
    sync(&mut b).await;
    w.tick();
    a.replica().put(&k("list"), b"x\ny");
    b.replica().put(&k("list"), b"x\nz");
    sync(&mut a).await;
    let r = sync(&mut b).await;
    assert_eq!(r.conflicts, 1, "{r:?}");
    sync(&mut a).await;
    assert_eq!(a.replica().get(&k("list")).unwrap(), b"x\ny\nz");
    assert_eq!(b.replica().get(&k("list")).unwrap(), b"x\ny\nz");
    assert!(b.replica().backup_contents().contains(&b"x\nz".to_vec()));
}

/// A line-set merge that sees the base: a line removed on either side stays removed, a line
/// added on either side is kept. Without the base it would bring removed lines back.
fn line_set_merge(m: MergeInput<'_>) -> Result<Vec<u8>, String> {
    let lines =
        |b: &[u8]| -> BTreeSet<Vec<u8>> { b.split(|c| *c == b'\n').map(<[u8]>::to_vec).collect() };
    let (local, remote) = (lines(m.local), lines(m.remote));
    let base = m.base.map(lines).unwrap_or_default();
    let kept: Vec<Vec<u8>> = local
        .union(&remote)
        .filter(|l| !base.contains(*l) || (local.contains(*l) && remote.contains(*l)))
        .cloned()
        .collect();
    Ok(kept.join(&b'\n'))
}

#[tokio::test]
async fn a_merge_sees_the_base_so_a_line_deleted_on_one_side_stays_deleted() {
    let w = World::new();
    let policy = SyncPolicy {
        conflicts: ConflictPolicy::Merge(Arc::new(line_set_merge)),
        ..SyncPolicy::default()
    };
    let mut a = w.device(1, policy.clone());
    let mut b = w.device(2, policy);
    a.replica().put(&k("list"), b"x\ny");
    sync(&mut a).await;
    sync(&mut b).await;
    w.tick();
    a.replica().put(&k("list"), b"x"); // a deletes y
    b.replica().put(&k("list"), b"x\ny\nz"); // b adds z
    sync(&mut a).await;
    let r = sync(&mut b).await;
    assert_eq!(r.conflicts, 1, "{r:?}");
    sync(&mut a).await;
    assert_eq!(a.replica().get(&k("list")).unwrap(), b"x\nz");
    assert_eq!(b.replica().get(&k("list")).unwrap(), b"x\nz");
    // Both inputs stay recoverable: b's version in its backups, a's in the server's history.
    assert!(b.replica().backup_contents().contains(&b"x\ny\nz".to_vec()));
}

/// The records app's bug: a todo deleted on one device came back from the other, because its
/// merge saw only (local, remote). Runs the same edits under `merge` and returns the list both
/// devices end with.
async fn todos_after_a_delete_here_and_an_add_there(merge: Arc<dyn crate::Merge>) -> Vec<u8> {
    let w = World::new();
    let policy = SyncPolicy {
        conflicts_by_prefix: vec![("todos/".into(), ConflictPolicy::Merge(merge))],
        ..SyncPolicy::default()
    };
    let mut phone = w.device(1, policy.clone());
    let mut tablet = w.device(2, policy);
    phone
        .replica()
        .put(&k("todos/list"), br#"[{"id":1},{"id":2}]"#);
    sync(&mut phone).await;
    sync(&mut tablet).await;
    w.tick();
    phone.replica().put(&k("todos/list"), br#"[{"id":1}]"#); // deletes todo 2
    tablet
        .replica()
        .put(&k("todos/list"), br#"[{"id":1},{"id":2},{"id":3}]"#); // adds todo 3
    sync(&mut phone).await;
    let r = sync(&mut tablet).await;
    assert_eq!(r.conflicts, 1, "{r:?}");
    sync(&mut phone).await;
    let on_phone = phone.replica().get(&k("todos/list")).unwrap();
    assert_eq!(on_phone, tablet.replica().get(&k("todos/list")).unwrap());
    on_phone.to_vec()
}

#[tokio::test]
async fn a_todo_deleted_on_one_device_does_not_return_from_the_other() {
    // The two-way merge of the old kv-sync example: every id of either side, once.
    let two_way: Arc<dyn crate::Merge> = Arc::new(|m: MergeInput<'_>| -> Result<Vec<u8>, String> {
        let parse = |b: &[u8]| {
            serde_json::from_slice::<Vec<serde_json::Value>>(b).map_err(|e| e.to_string())
        };
        let mut by_id = std::collections::BTreeMap::new();
        for item in parse(m.remote)?.into_iter().chain(parse(m.local)?) {
            by_id.insert(item["id"].to_string(), item);
        }
        serde_json::to_vec(&by_id.into_values().collect::<Vec<_>>()).map_err(|e| e.to_string())
    });
    let old = todos_after_a_delete_here_and_an_add_there(two_way).await;
    assert_eq!(
        old, br#"[{"id":1},{"id":2},{"id":3}]"#,
        "the bug: todo 2 is back"
    );
    let three_way = Arc::new(crate::merge::UnionById::new("id"));
    let new = todos_after_a_delete_here_and_an_add_there(three_way).await;
    assert_eq!(
        new, br#"[{"id":1},{"id":3}]"#,
        "deleted stays deleted, added is kept"
    );
}

#[tokio::test]
async fn policies_per_prefix_merge_settings_by_field_and_leave_other_keys_to_the_newest() {
    let w = World::new();
    let policy = SyncPolicy {
        conflicts_by_prefix: vec![(
            "settings/".into(),
            ConflictPolicy::Merge(Arc::new(crate::merge::JsonFields)),
        )],
        ..SyncPolicy::default()
    };
    let mut a = w.device(1, policy.clone());
    let mut b = w.device(2, policy);
    a.replica()
        .put(&k("settings/app.json"), br#"{"font":12,"theme":"light"}"#);
    a.replica().put(&k("notes.txt"), b"v0");
    sync(&mut a).await;
    sync(&mut b).await;
    w.tick();
    a.replica()
        .put(&k("settings/app.json"), br#"{"font":14,"theme":"light"}"#);
    a.replica().put(&k("notes.txt"), b"from a");
    w.tick();
    b.replica()
        .put(&k("settings/app.json"), br#"{"font":12,"theme":"dark"}"#);
    b.replica().put(&k("notes.txt"), b"from b, newer");
    sync(&mut a).await;
    sync(&mut b).await;
    sync(&mut a).await;
    for d in [&a, &b] {
        assert_eq!(
            d.replica().get(&k("settings/app.json")).unwrap(),
            br#"{"font":14,"theme":"dark"}"#
        );
        assert_eq!(d.replica().get(&k("notes.txt")).unwrap(), b"from b, newer");
    }
    // The losing edit stays recoverable from the server's history.
    let history = crate::full_history(&*w.server, &w.tenant, &k("notes.txt"))
        .await
        .unwrap();
    let from_a = crate::ContentHash::of(b"from a");
    assert!(
        history.iter().any(|v| v.hash == Some(from_a)),
        "{history:?}"
    );
}

#[tokio::test]
async fn a_failed_merge_falls_back_to_the_newest_stamp_and_keeps_the_loser() {
    let failing: Arc<dyn crate::Merge> =
        Arc::new(|_: MergeInput<'_>| -> Result<Vec<u8>, String> { Err("cannot merge".into()) });
    let policy = SyncPolicy {
        conflicts: ConflictPolicy::Merge(failing),
        ..SyncPolicy::default()
    };
    for local_newer in [true, false] {
        let w = World::new();
        let mut a = w.device(1, policy.clone());
        let mut b = w.device(2, policy.clone());
        a.replica().put(&k("list"), b"base");
        sync(&mut a).await;
        sync(&mut b).await;
        w.tick();
        let (first, second) = if local_newer {
            (a.replica(), b.replica())
        } else {
            (b.replica(), a.replica())
        };
        first.put(&k("list"), b"older");
        w.tick();
        second.put(&k("list"), b"newer");
        sync(&mut a).await;
        let r = sync(&mut b).await;
        assert_eq!(r.conflicts, 1, "{r:?}");
        if local_newer {
            // b's edit is newer: it goes up over a's, which stays in the server's history.
            assert_eq!((r.uploaded, r.downloaded), (1, 0), "{r:?}");
        } else {
            // a's edit is newer: b keeps its own version, then takes a's.
            assert_eq!((r.uploaded, r.downloaded), (0, 1), "{r:?}");
            assert!(b.replica().backup_contents().contains(&b"older".to_vec()));
        }
        sync(&mut a).await;
        assert_eq!(a.replica().get(&k("list")).unwrap(), b"newer");
        assert_eq!(b.replica().get(&k("list")).unwrap(), b"newer");
        let history = crate::full_history(&*w.server, &w.tenant, &k("list"))
            .await
            .unwrap();
        assert!(
            history
                .iter()
                .any(|v| v.hash == Some(crate::ContentHash::of(b"older"))),
            "the loser stays in the server's history: {history:?}"
        );
    }
}

#[tokio::test]
async fn too_large_items_are_skipped_with_a_warning_and_the_rest_syncs() {
    let w = World::new();
    let mut a = w.device(
        1,
        SyncPolicy {
            max_item_bytes: 8,
            ..SyncPolicy::default()
        },
    );
    a.replica().put(&k("big.bin"), [7u8; 64]);
    a.replica().put(&k("small.txt"), b"ok");
    let r = sync(&mut a).await;
    assert_eq!(r.uploaded, 1, "{r:?}");
    assert_eq!(r.skipped, 1, "{r:?}");
    let top = a.errors().top().unwrap();
    assert_eq!(top.class, ErrorClass::Warning);
    assert_eq!(top.key(), Some(&k("big.bin")));
    assert!(matches!(*a.status().borrow(), SyncStatus::Idle { .. }));
    // Deleting the big file clears its warning.
    a.replica().delete(&k("big.bin"));
    sync(&mut a).await;
    assert!(a.errors().is_empty(), "{:?}", a.errors());
}

/// A transport that can be switched to fail every call with one error.
struct Flaky {
    inner: LocalTransport<MemoryServerStore>,
    fail: std::sync::Mutex<Option<Error>>,
}

impl Flaky {
    fn check(&self) -> crate::Result<()> {
        match self.fail.lock().unwrap().clone() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

#[async_trait]
impl Transport for Flaky {
    async fn changes(&self, since: Option<&Cursor>, limit: usize) -> crate::Result<ChangePage> {
        self.check()?;
        self.inner.changes(since, limit).await
    }
    async fn fetch(&self, key: &Key, rev: Option<Revision>) -> crate::Result<Fetched> {
        self.check()?;
        self.inner.fetch(key, rev).await
    }
    async fn push(&self, req: PushRequest) -> crate::Result<PushOutcome> {
        self.check()?;
        self.inner.push(req).await
    }
    async fn delete(&self, req: DeleteRequest) -> crate::Result<PushOutcome> {
        self.check()?;
        self.inner.delete(req).await
    }
    async fn ensure_folder(&self, req: FolderRequest) -> crate::Result<ItemMeta> {
        self.check()?;
        self.inner.ensure_folder(req).await
    }
    async fn history(&self, key: &Key) -> crate::Result<Vec<VersionMeta>> {
        self.check()?;
        self.inner.history(key).await
    }
    async fn archive(&self, req: ArchiveRequest) -> crate::Result<VersionMeta> {
        self.check()?;
        self.inner.archive(req).await
    }
    async fn wait(&self, since: Option<&Cursor>, timeout: Duration) -> crate::Result<bool> {
        self.check()?;
        self.inner.wait(since, timeout).await
    }
}

#[tokio::test]
async fn global_errors_stop_the_sync_show_on_top_and_clear_on_success() {
    let w = World::new();
    let mut a = Engine::new(
        Flaky {
            inner: LocalTransport::new(w.server.clone(), w.tenant.clone()),
            fail: std::sync::Mutex::new(Some(Error::offline("connection refused"))),
        },
        MemoryStateStore::default(),
        MemoryReplica::new(w.time.clone()),
        EngineConfig {
            time: w.time.clone(),
            ..EngineConfig::default()
        },
    );
    let status = a.status();
    a.replica().put(&k("x"), b"1");
    let err = a.sync_once().await.expect_err("offline");
    assert_eq!(err.error.class(), ErrorClass::Offline);
    assert_eq!(a.errors().top().unwrap().class, ErrorClass::Offline);
    assert!(
        matches!(&*status.borrow(), SyncStatus::Error { top } if top.class == ErrorClass::Offline)
    );
    *a.transport().fail.lock().unwrap() = Some(Error::Auth {
        message: "token expired".into(),
    });
    a.sync_once().await.expect_err("auth");
    assert_eq!(a.errors().top().unwrap().class, ErrorClass::Auth);
    *a.transport().fail.lock().unwrap() = None;
    let r = a.sync_once().await.unwrap();
    assert_eq!(r.uploaded, 1);
    assert!(a.errors().is_empty());
    assert!(matches!(
        &*status.borrow(),
        SyncStatus::Idle {
            last_sync: Some(_),
            ..
        }
    ));
}

#[tokio::test]
async fn switched_off_does_nothing_and_says_off() {
    let w = World::new();
    let mut a = w.device(1, SyncPolicy::default());
    a.set_enabled(false);
    a.replica().put(&k("x"), b"1");
    let r = sync(&mut a).await;
    assert_eq!(r.transferred(), 0);
    assert_eq!(*a.status().borrow(), SyncStatus::Off);
    a.set_enabled(true);
    assert_eq!(sync(&mut a).await.uploaded, 1);
}

#[tokio::test]
async fn a_state_store_failure_is_a_storage_error_and_recovers() {
    let w = World::new();
    let mut a = w.device(1, SyncPolicy::default());
    a.replica().put(&k("x"), b"1");
    a.state_store().fail_commits(true);
    let err = a.sync_once().await.expect_err("state store down");
    assert_eq!(err.error.class(), ErrorClass::Storage);
    a.state_store().fail_commits(false);
    sync(&mut a).await;
    assert_eq!(sync(&mut a).await.transferred(), 0);
    let mut b = w.device(2, SyncPolicy::default());
    sync(&mut b).await;
    assert_eq!(b.replica().get(&k("x")).unwrap(), b"1");
}

/// Reads version `rev` of `key` from the server.
async fn version_content(w: &World, key: &Key, rev: Revision) -> Vec<u8> {
    let f = w.server.fetch(&w.tenant, key, Some(rev)).await.unwrap();
    f.content.to_vec()
}

#[tokio::test]
async fn conflict_records_say_who_won_and_both_versions_are_readable() {
    let w = World::new();
    let mut a = w.device(1, SyncPolicy::default());
    let mut b = w.device(2, SyncPolicy::default());
    let f = k("f.txt");
    a.replica().put(&f, b"base");
    sync(&mut a).await;
    sync(&mut b).await;

    // B's edit is newer and B finds the conflict: the local side wins.
    w.tick();
    a.replica().put(&f, b"a older");
    w.tick();
    b.replica().put(&f, b"b newer");
    sync(&mut a).await;
    let r = sync(&mut b).await;
    assert_eq!(r.resolved.len(), 1, "{r:?}");
    let won = &r.resolved[0];
    assert_eq!(
        (won.key.clone(), won.winner),
        (f.clone(), ConflictWinner::Local)
    );
    assert_eq!(won.current, won.local.rev);
    assert_eq!(version_content(&w, &f, won.local.rev).await, b"b newer");
    assert_eq!(version_content(&w, &f, won.remote.rev).await, b"a older");
    assert!(won.local.stamp > won.remote.stamp);
    assert_eq!(won.backup, None);

    // A's edit is newer but B finds the conflict: the remote side wins, B's is kept twice.
    w.tick();
    b.replica().put(&f, b"b older");
    w.tick();
    a.replica().put(&f, b"a newer");
    sync(&mut a).await;
    let r = sync(&mut b).await;
    let lost = &r.resolved[0];
    assert_eq!(lost.winner, ConflictWinner::Remote);
    assert_eq!(lost.current, lost.remote.rev);
    assert_eq!(version_content(&w, &f, lost.remote.rev).await, b"a newer");
    assert_eq!(version_content(&w, &f, lost.local.rev).await, b"b older");
    let backup = lost.backup.clone().expect("the local loser is backed up");
    assert_eq!(
        b.replica().read_backup(&backup).await.unwrap(),
        b"b older".as_slice()
    );
    assert_eq!(lost.local.hash, crate::ContentHash::of(b"b older"));

    // The engine remembers both, oldest first, and they serialise for an app to keep.
    let all = b.conflicts().await.unwrap();
    assert_eq!(
        all.iter().map(|c| c.winner).collect::<Vec<_>>(),
        vec![ConflictWinner::Local, ConflictWinner::Remote]
    );
    let json = serde_json::to_string(&all[1]).unwrap();
    assert!(json.contains("\"winner\":\"remote\""), "{json}");
    let back: ConflictRecord = serde_json::from_str(&json).unwrap();
    assert_eq!(back, all[1]);

    // They are kept in the state store: an engine made again over it (an app restart) has them.
    let mut restarted = Engine::new(
        LocalTransport::new(w.server.clone(), w.tenant.clone()),
        b.state_store().clone(),
        b.replica().clone(),
        b.config().clone(),
    );
    assert_eq!(restarted.conflicts().await.unwrap(), all);
}

#[tokio::test]
async fn a_merge_conflict_record_points_at_both_inputs_and_the_result() {
    let w = World::new();
    let policy = SyncPolicy {
        conflicts: ConflictPolicy::Merge(Arc::new(line_set_merge)),
        ..SyncPolicy::default()
    };
    let mut a = w.device(1, policy.clone());
    let mut b = w.device(2, policy);
    let f = k("list");
    a.replica().put(&f, b"x");
    sync(&mut a).await;
    sync(&mut b).await;
    w.tick();
    a.replica().put(&f, b"x\ny");
    b.replica().put(&f, b"x\nz");
    sync(&mut a).await;
    let r = sync(&mut b).await;
    let merged = &r.resolved[0];
    assert_eq!(merged.winner, ConflictWinner::Merged);
    assert_eq!(version_content(&w, &f, merged.local.rev).await, b"x\nz");
    assert_eq!(version_content(&w, &f, merged.remote.rev).await, b"x\ny");
    assert_eq!(version_content(&w, &f, merged.current).await, b"x\ny\nz");
    assert!(merged.backup.is_some());
}

#[tokio::test]
async fn restore_makes_an_old_version_current_as_a_normal_edit() {
    let w = World::new();
    let mut a = w.device(1, SyncPolicy::default());
    let mut b = w.device(2, SyncPolicy::default());
    let f = k("notes/todo.txt");
    a.replica().put(&f, b"v1");
    sync(&mut a).await;
    w.tick();
    a.replica().put(&f, b"v2");
    sync(&mut a).await;
    sync(&mut b).await;
    let history = a.history(&f).await.unwrap();
    assert_eq!(history.len(), 2, "{history:?}");
    let v1 = history[0].rev;

    w.tick();
    a.restore(&f, v1).await.unwrap();
    assert_eq!(a.replica().get(&f).unwrap(), b"v1");
    // What it replaced is kept.
    assert!(a.replica().backup_contents().contains(&b"v2".to_vec()));
    let r = sync(&mut a).await;
    assert_eq!((r.uploaded, r.conflicts), (1, 0), "{r:?}");
    sync(&mut b).await;
    assert_eq!(b.replica().get(&f).unwrap(), b"v1");
    assert_eq!(a.history(&f).await.unwrap().len(), 3);
}

#[tokio::test]
async fn restore_brings_back_a_file_deleted_here_and_refuses_unsynced_edits() {
    let w = World::new();
    let mut a = w.device(1, SyncPolicy::default());
    let f = k("gone.txt");
    a.replica().put(&f, b"keep me");
    sync(&mut a).await;
    let rev = a.history(&f).await.unwrap()[0].rev;
    a.replica().delete(&f);
    sync(&mut a).await;
    a.restore(&f, rev).await.unwrap();
    assert_eq!(a.replica().get(&f).unwrap(), b"keep me");

    // An edit not synced yet is not overwritten.
    sync(&mut a).await;
    w.tick();
    a.replica().put(&f, b"unsynced edit");
    let err = a.restore(&f, rev).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Item, "{err}");
    assert!(err.to_string().contains("sync first"), "{err}");
    assert_eq!(a.replica().get(&f).unwrap(), b"unsynced edit");
    // No such version.
    let missing = a.restore(&f, Revision(9_999)).await.unwrap_err();
    assert!(matches!(missing, Error::NotFound { .. }), "{missing}");
}

#[tokio::test]
async fn files_over_the_servers_limit_are_skipped_before_upload_with_a_warning() {
    let time = ManualTime::new(1_000_000);
    let server = Arc::new(MemoryServerStore::new(ServerConfig {
        max_item_bytes: 10,
        time: time.clone(),
        ..ServerConfig::default()
    }));
    let mut a = Engine::new(
        LocalTransport::new(server.clone(), TenantId::new("t")),
        MemoryStateStore::default(),
        MemoryReplica::new(time.clone()),
        EngineConfig {
            time: time.clone(),
            ..EngineConfig::default()
        },
    );
    a.replica().put(&k("small.txt"), b"tiny");
    a.replica().put(&k("big.bin"), [7u8; 64]);
    let r = sync(&mut a).await;
    assert_eq!((r.uploaded, r.skipped), (1, 1), "{r:?}");
    let warning = r
        .errors
        .iter()
        .find(|e| e.key == Some(k("big.bin")))
        .unwrap();
    assert_eq!(warning.class, ErrorClass::Warning);
    assert!(
        warning.message.contains("server's limit of 10 bytes"),
        "{}",
        warning.message
    );
    // It stays skipped, not retried as an upload every sync.
    let again = sync(&mut a).await;
    assert_eq!((again.uploaded, again.skipped), (0, 1), "{again:?}");
    assert!(crate::full_history(&*server, &w_tenant(), &k("big.bin"))
        .await
        .is_err());
}

fn w_tenant() -> TenantId {
    TenantId::new("t")
}

#[tokio::test]
async fn an_unchanged_token_and_no_remote_change_skip_the_scan() {
    let w = World::new();
    let mut a = counted_device(&w, 9, SyncPolicy::default());
    let mut b = w.device(2, SyncPolicy::default());
    a.replica().inner.put(&k("notes/a.txt"), b"one");
    assert_eq!(a.sync_once().await.unwrap().uploaded, 1);
    // The first sync wrote nothing locally but found work: the next one scans to settle.
    let settle = a.sync_once().await.unwrap();
    assert_eq!(settle.transferred(), 0, "{settle:?}");
    let scans = a.replica().scans();
    let quiet = a.sync_once().await.unwrap();
    assert_eq!(
        a.replica().scans(),
        scans,
        "a settled replica is not scanned"
    );
    assert_eq!((quiet.transferred(), quiet.unchanged), (0, 2), "{quiet:?}");

    // A local edit moves the token: scanned and uploaded.
    w.tick();
    a.replica().inner.put(&k("notes/a.txt"), b"two");
    assert_eq!(a.sync_once().await.unwrap().uploaded, 1);

    // A remote change with the token unmoved: the change feed brings it, so it is scanned.
    a.sync_once().await.unwrap(); // settles after the upload above
    sync(&mut b).await;
    w.tick();
    b.replica().put(&k("notes/b.txt"), b"from b");
    sync(&mut b).await;
    let scans = a.replica().scans();
    let r = a.sync_once().await.unwrap();
    assert_eq!((r.downloaded, a.replica().scans()), (1, scans + 1), "{r:?}");
    assert_eq!(
        a.replica().inner.files().get(&k("notes/b.txt")).cloned(),
        Some(b"from b".to_vec())
    );
}

#[tokio::test]
async fn a_sync_with_something_to_report_never_skips_the_next_scan() {
    let w = World::new();
    let mut a = counted_device(
        &w,
        9,
        SyncPolicy {
            max_item_bytes: 8,
            ..SyncPolicy::default()
        },
    );
    a.replica().inner.put(&k("big.bin"), [7u8; 64]);
    a.sync_once().await.unwrap();
    // The sync completed, but the status says the error area has something to show.
    match &*a.status().borrow() {
        SyncStatus::Idle {
            last_sync: Some(_),
            attention: Some(top),
        } => assert_eq!(top.class, ErrorClass::Warning, "{top:?}"),
        other => panic!("expected Idle with attention, got {other:?}"),
    }
    for _ in 0..3 {
        let scans = a.replica().scans();
        let r = a.sync_once().await.unwrap();
        assert_eq!(r.skipped, 1, "{r:?}");
        assert_eq!(a.replica().scans(), scans + 1);
        assert_eq!(a.errors().top().map(|e| e.class), Some(ErrorClass::Warning));
    }
}

/// A memory replica that counts full scans, partial scans ([`Replica::scan_since`]) and the
/// keys the partial ones covered; with `rewrite` set, the file it names is rewritten with its
/// bytes just before it is next read (an edit between the scan and an upload), once.
struct Counted {
    inner: MemoryReplica,
    full: std::sync::atomic::AtomicU64,
    partial: std::sync::Mutex<Vec<usize>>,
    rewrite: std::sync::Mutex<Option<(Key, Vec<u8>)>>,
}

impl Counted {
    fn full_scans(&self) -> u64 {
        self.full.load(std::sync::atomic::Ordering::SeqCst)
    }
    /// Scans so far, full or partial.
    fn scans(&self) -> u64 {
        self.full_scans() + self.partial.lock().unwrap().len() as u64
    }
    /// The number of keys each partial scan so far covered.
    fn partial_scans(&self) -> Vec<usize> {
        self.partial.lock().unwrap().clone()
    }
}

#[async_trait]
impl Replica for Counted {
    async fn scan(&self, known: &BTreeMap<Key, KnownItem>, max: u64) -> crate::Result<crate::Scan> {
        self.full.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.scan(known, max).await
    }
    async fn change_token(&self) -> crate::Result<Option<u64>> {
        self.inner.change_token().await
    }
    async fn scan_since(
        &self,
        since: u64,
        also: &BTreeSet<Key>,
        max: u64,
    ) -> crate::Result<Option<crate::ChangedItems>> {
        let found = self.inner.scan_since(since, also, max).await?;
        if let Some(f) = &found {
            self.partial.lock().unwrap().push(f.keys.len());
        }
        Ok(found)
    }
    async fn read(&self, key: &Key) -> crate::Result<bytes::Bytes> {
        let rewrite = {
            let mut pending = self.rewrite.lock().unwrap();
            match pending.as_ref() {
                Some((k, _)) if k == key => pending.take(),
                _ => None,
            }
        };
        if let Some((k, content)) = rewrite {
            self.inner.put(&k, content);
        }
        self.inner.read(key).await
    }
    async fn write(
        &self,
        key: &Key,
        content: bytes::Bytes,
        expected: crate::Expected,
    ) -> crate::Result<crate::LocalItem> {
        self.inner.write(key, content, expected).await
    }
    async fn create_folder(&self, key: &Key) -> crate::Result<crate::LocalItem> {
        self.inner.create_folder(key).await
    }
    async fn backup(&self, key: &Key, stamp: crate::Stamp) -> crate::Result<Option<crate::Backup>> {
        self.inner.backup(key, stamp).await
    }
    async fn remove(&self, key: &Key, expected: crate::Expected) -> crate::Result<()> {
        self.inner.remove(key, expected).await
    }
    async fn backups(&self) -> crate::Result<Vec<crate::Backup>> {
        self.inner.backups().await
    }
    async fn read_backup(&self, backup: &crate::Backup) -> crate::Result<bytes::Bytes> {
        self.inner.read_backup(backup).await
    }
}

fn counted_device(
    w: &World,
    node: u64,
    policy: SyncPolicy,
) -> Engine<LocalTransport<MemoryServerStore>, MemoryStateStore, Counted> {
    Engine::new(
        LocalTransport::new(w.server.clone(), w.tenant.clone()),
        MemoryStateStore::default(),
        Counted {
            inner: MemoryReplica::new(w.time.clone()),
            full: Default::default(),
            partial: Default::default(),
            rewrite: Default::default(),
        },
        EngineConfig {
            policy,
            time: w.time.clone(),
            node: Some(NodeId(node)),
            ..EngineConfig::default()
        },
    )
}

#[tokio::test]
async fn after_a_settled_pass_only_the_keys_changed_since_are_reconciled() {
    let w = World::new();
    let policy = SyncPolicy {
        deletes: DeletePolicy::Propagate,
        ..SyncPolicy::default()
    };
    let mut a = counted_device(&w, 1, policy.clone());
    let mut b = counted_device(&w, 2, policy);
    for i in 0..300 {
        a.replica()
            .inner
            .put(&k(&format!("r/{i:03}")), format!("v{i}"));
    }
    assert_eq!(a.sync_once().await.unwrap().uploaded, 300);
    assert_eq!(b.sync_once().await.unwrap().downloaded, 300);
    // Own uploads come back on the change feed; after that both sides are settled.
    a.sync_once().await.unwrap();
    b.sync_once().await.unwrap();
    let quiet = a.sync_once().await.unwrap();
    assert_eq!(
        (quiet.transferred(), quiet.unchanged),
        (0, 301),
        "{quiet:?}"
    );
    let (full_a, full_b) = (a.replica().full_scans(), b.replica().full_scans());

    // Three edits on a: its next pass looks at those three keys and nothing else.
    w.tick();
    for i in [5, 50, 250] {
        a.replica()
            .inner
            .put(&k(&format!("r/{i:03}")), format!("edited {i}"));
    }
    let before = a.replica().partial_scans().len();
    let r = a.sync_once().await.unwrap();
    assert_eq!((r.uploaded, r.unchanged), (3, 298), "{r:?}");
    assert_eq!(
        a.replica().partial_scans()[before..],
        [3],
        "one partial scan of 3 keys"
    );

    // b hears of them on the change feed: a partial pass over the three keys downloads them.
    let before = b.replica().partial_scans().len();
    let r = b.sync_once().await.unwrap();
    assert_eq!(r.downloaded, 3, "{r:?}");
    assert_eq!(b.replica().partial_scans()[before..], [3]);
    assert_eq!(
        b.replica().inner.get(&k("r/250")).as_deref(),
        Some(&b"edited 250"[..])
    );

    // A delete and a conflicting edit of one key on both sides.
    w.tick();
    a.replica().inner.delete(&k("r/007"));
    a.replica().inner.put(&k("r/100"), "a's");
    b.replica().inner.put(&k("r/100"), "b's");
    a.sync_once().await.unwrap();
    b.sync_once().await.unwrap();
    a.sync_once().await.unwrap();
    b.sync_once().await.unwrap();
    let files = a.replica().inner.files();
    assert_eq!(files, b.replica().inner.files());
    assert!(!files.contains_key(&k("r/007")), "the delete reached b");
    assert_eq!(files.len(), 299);
    assert_eq!(
        (a.replica().full_scans(), b.replica().full_scans()),
        (full_a, full_b),
        "no full scan after the devices settled"
    );
}

#[tokio::test]
async fn a_key_a_settled_pass_reported_is_looked_at_again_and_stays_reported() {
    let w = World::new();
    let mut a = counted_device(
        &w,
        1,
        SyncPolicy {
            max_item_bytes: 8,
            ..SyncPolicy::default()
        },
    );
    a.replica().inner.put(&k("big.bin"), [7u8; 64]);
    a.replica().inner.put(&k("small.txt"), "ok");
    for round in 0..3 {
        let r = a.sync_once().await.unwrap();
        assert_eq!(r.skipped, 1, "round {round}: {r:?}");
        assert_eq!(a.errors().top().map(|e| e.class), Some(ErrorClass::Warning));
    }
    assert_eq!(a.replica().full_scans(), 1, "later passes are partial");
    assert!(a.replica().partial_scans().iter().all(|n| *n >= 1));
    // Made small enough, it syncs and the warning goes.
    w.tick();
    a.replica().inner.put(&k("big.bin"), "now ok");
    let r = a.sync_once().await.unwrap();
    assert_eq!((r.uploaded, r.skipped), (1, 0), "{r:?}");
    assert_eq!(a.errors().top(), None);
}

/// A state store that counts how it is read.
#[derive(Clone, Default)]
struct CountingStore {
    inner: MemoryStateStore,
    full_loads: Arc<std::sync::atomic::AtomicUsize>,
    keys_loaded: Arc<std::sync::Mutex<Vec<BTreeSet<Key>>>>,
}

impl CountingStore {
    fn full_loads(&self) -> usize {
        self.full_loads.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn take_keys_loaded(&self) -> Vec<BTreeSet<Key>> {
        std::mem::take(&mut *self.keys_loaded.lock().unwrap())
    }
}

#[async_trait]
impl StateStore for CountingStore {
    async fn load(&self) -> crate::Result<ClientState> {
        self.full_loads
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.load().await
    }

    async fn commit(&self, batch: StateBatch) -> crate::Result<()> {
        self.inner.commit(batch).await
    }

    async fn load_summary(&self) -> crate::Result<crate::StateSummary> {
        Ok(crate::StateSummary::of(&self.inner.load().await?))
    }

    async fn load_keys(&self, keys: &BTreeSet<Key>) -> crate::Result<crate::KeyEntries> {
        self.keys_loaded.lock().unwrap().push(keys.clone());
        let state = self.inner.load().await?;
        Ok(crate::KeyEntries {
            base: subset(&state.base, keys),
            remote: subset(&state.remote, keys),
        })
    }
}

#[tokio::test]
async fn after_a_settled_sync_a_new_engine_loads_only_the_keys_that_changed() {
    let w = World::new();
    let store = CountingStore::default();
    let replica = MemoryReplica::new(w.time.clone());
    let engine = |store: &CountingStore| {
        Engine::new(
            LocalTransport::new(w.server.clone(), w.tenant.clone()),
            store.clone(),
            replica.clone(),
            EngineConfig {
                time: w.time.clone(),
                node: Some(NodeId(1)),
                ..EngineConfig::default()
            },
        )
    };
    for i in 0..40 {
        replica.put(&k(&format!("d{}/f{i}.txt", i % 4)), format!("v1 {i}"));
    }
    let r = sync(&mut engine(&store)).await;
    assert_eq!((r.uploaded, r.folders), (40, 4), "{r:?}");
    assert!(
        store.inner.snapshot().settled.is_some(),
        "a sync that settled every item stores the mark"
    );
    // The next sync pulls the device's own writes back: they change nothing, the mark stays.
    sync(&mut engine(&store)).await;
    assert!(
        store.inner.snapshot().settled.is_some(),
        "own writes keep the mark"
    );
    let loads = store.full_loads();
    store.take_keys_loaded();

    // No change: the summary is enough, no entry is loaded.
    w.tick();
    let r = sync(&mut engine(&store)).await;
    assert_eq!((r.uploaded, r.downloaded, r.unchanged), (0, 0, 44), "{r:?}");
    assert_eq!(
        store.full_loads(),
        loads,
        "a no-change sync loads no entries"
    );
    assert_eq!(store.take_keys_loaded(), Vec::<BTreeSet<Key>>::new());

    // One local edit and one new file: exactly those keys are loaded and synced.
    replica.put(&k("d1/f1.txt"), "v2 local");
    replica.put(&k("d2/new.txt"), "new");
    w.tick();
    let r = sync(&mut engine(&store)).await;
    assert_eq!((r.uploaded, r.unchanged), (2, 43), "{r:?}");
    assert_eq!(store.full_loads(), loads);
    let loaded = |store: &CountingStore| -> BTreeSet<Key> {
        store.take_keys_loaded().into_iter().flatten().collect()
    };
    assert_eq!(
        loaded(&store),
        BTreeSet::from([k("d1/f1.txt"), k("d2/new.txt")])
    );

    // A change from another device: the pulled key is loaded and downloaded.
    let mut other = w.device(2, SyncPolicy::default());
    sync(&mut other).await;
    other.replica().put(&k("d3/f3.txt"), "v2 other");
    w.tick();
    sync(&mut other).await;
    let r = sync(&mut engine(&store)).await;
    assert_eq!((r.downloaded, r.uploaded), (1, 0), "{r:?}");
    assert_eq!(replica.get(&k("d3/f3.txt")).unwrap(), b"v2 other");
    assert_eq!(store.full_loads(), loads);
    // (The page also brings back the two uploads of the sync before.)
    assert_eq!(
        loaded(&store),
        BTreeSet::from([k("d1/f1.txt"), k("d2/new.txt"), k("d3/f3.txt")])
    );

    // A local delete is found by the comparison too (and kept, not propagated, by default).
    replica.delete(&k("d0/f0.txt"));
    let r = sync(&mut engine(&store)).await;
    assert_eq!(loaded(&store), BTreeSet::from([k("d0/f0.txt")]), "{r:?}");

    // The state a full load gives is the one the partial syncs left.
    let full = store.inner.snapshot();
    let mut fresh = Engine::new(
        LocalTransport::new(w.server.clone(), w.tenant.clone()),
        MemoryStateStore::with_state(ClientState {
            settled: None,
            ..full.clone()
        }),
        replica.clone(),
        EngineConfig {
            time: w.time.clone(),
            node: Some(NodeId(1)),
            ..EngineConfig::default()
        },
    );
    let r = sync(&mut fresh).await;
    assert_eq!(
        (r.uploaded, r.downloaded),
        (0, 0),
        "a full pass finds nothing left: {r:?}"
    );
}

#[tokio::test]
async fn own_uploads_coming_back_from_the_feed_do_not_count_as_changes() {
    let w = World::new();
    let config = |node| EngineConfig {
        time: w.time.clone(),
        node: Some(NodeId(node)),
        page_size: 5,
        max_changes_per_sync: 10,
        ..EngineConfig::default()
    };
    let mut a = Engine::new(
        LocalTransport::new(w.server.clone(), w.tenant.clone()),
        MemoryStateStore::default(),
        MemoryReplica::new(w.time.clone()),
        config(1),
    );
    for i in 0..30 {
        a.replica().put(&k(&format!("f{i:02}.txt")), format!("{i}"));
    }
    sync(&mut a).await;
    // 30 entries come back unchanged: under four times the bound, so the sync completes.
    let r = sync(&mut a).await;
    assert_eq!((r.uploaded, r.downloaded), (0, 0), "{r:?}");
    // Another device takes them in as 30 changes: past the bound of 10, in several syncs.
    let mut b = Engine::new(
        LocalTransport::new(w.server.clone(), w.tenant.clone()),
        MemoryStateStore::default(),
        MemoryReplica::new(w.time.clone()),
        config(2),
    );
    let failed = b
        .sync_once()
        .await
        .expect_err("30 changes are over the bound of 10");
    assert_eq!(
        failed.error.class(),
        ErrorClass::Offline,
        "{}",
        failed.error
    );
    let mut syncs = 1;
    while b.sync_once().await.is_err() {
        syncs += 1;
        assert!(syncs < 10, "the first sync of B never ends");
    }
    assert_eq!(b.replica().get(&k("f29.txt")).unwrap(), b"29");
}

/// An upload reads the file again but does not hash it again: the push carries the scan's
/// hash and the transport refuses content that does not match it. A same-size rewrite between
/// the scan and the read is then planned again and its new content uploaded under its own
/// hash; the old hash never names the new bytes, and the other device gets the rewrite.
#[tokio::test]
async fn a_rewrite_between_scan_and_upload_is_planned_again_not_stored_under_the_old_hash() {
    let w = World::new();
    let mut a = counted_device(&w, 1, SyncPolicy::default());
    *a.replica().rewrite.lock().unwrap() = Some((k("doc.txt"), b"second".to_vec()));
    a.replica().inner.put(&k("doc.txt"), b"first!");
    let r = a.sync_once().await.unwrap();
    assert!(r.errors.is_empty(), "{r:?}");
    assert_eq!(r.uploaded, 1, "{r:?}");
    let mut b = w.device(2, SyncPolicy::default());
    sync(&mut b).await;
    assert_eq!(
        b.replica().get(&k("doc.txt")).as_deref(),
        Some(&b"second"[..])
    );
    // The server's version is the rewrite, under the rewrite's hash.
    let fetched = b.transport().fetch(&k("doc.txt"), None).await.unwrap();
    assert_eq!(&fetched.content[..], b"second");
    assert_eq!(
        fetched.version.hash,
        Some(crate::ContentHash::of(b"second"))
    );
}
