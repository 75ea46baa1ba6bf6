//! The app-side API of [`RecordStore`]: round trips, JSON, atomic transactions, reopening a
//! file, the errors for records and folders in each other's way, and `subscribe` receiving the
//! keys two engines' syncs changed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use store_records::{RecordStore, RecordsError};
use sync_core::memory::{LocalTransport, MemoryServerStore, MemoryStateStore};
use sync_core::{
    DeletePolicy, Engine, EngineConfig, Key, NodeId, Replica, ServerConfig, SyncPolicy, TenantId,
};
use tokio::sync::broadcast::error::TryRecvError;

fn k(s: &str) -> Key {
    Key::new(s).unwrap()
}

#[tokio::test]
async fn put_get_list_delete_round_trip() {
    let store = RecordStore::open_in_memory().await.unwrap();
    assert_eq!(store.get(&k("a")).await.unwrap(), None);
    store.put(&k("notes/b"), "two").await.unwrap();
    store.put(&k("notes/a"), "one").await.unwrap();
    store
        .put(&k("todo"), Bytes::from_static(b"t"))
        .await
        .unwrap();
    store.put(&k("notes/a"), "one, again").await.unwrap();
    assert_eq!(
        store.get(&k("notes/a")).await.unwrap().unwrap(),
        "one, again"
    );
    // A folder is not a record.
    assert_eq!(store.get(&k("notes")).await.unwrap(), None);
    let all: Vec<(String, Bytes)> = store
        .list("")
        .await
        .unwrap()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    assert_eq!(
        all,
        vec![
            ("notes/a".to_string(), Bytes::from_static(b"one, again")),
            ("notes/b".to_string(), Bytes::from_static(b"two")),
            ("todo".to_string(), Bytes::from_static(b"t")),
        ]
    );
    let notes: Vec<Key> = store
        .list("notes/")
        .await
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(notes, vec![k("notes/a"), k("notes/b")]);
    assert_eq!(store.list("to").await.unwrap().len(), 1);
    assert!(store.list("zzz").await.unwrap().is_empty());

    assert!(store.delete(&k("notes/a")).await.unwrap());
    assert!(!store.delete(&k("notes/a")).await.unwrap());
    assert!(!store.delete(&k("notes")).await.unwrap(), "a folder");
    assert_eq!(store.get(&k("notes/a")).await.unwrap(), None);
    assert_eq!(store.list("notes").await.unwrap().len(), 1);
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Note {
    title: String,
    tags: Vec<String>,
}

#[tokio::test]
async fn json_round_trip_and_wrong_type() {
    let store = RecordStore::open_in_memory().await.unwrap();
    let note = Note {
        title: "hi".into(),
        tags: vec!["x".into()],
    };
    store.put_json(&k("n/1"), &note).await.unwrap();
    assert_eq!(store.get_json::<Note>(&k("n/1")).await.unwrap(), Some(note));
    assert_eq!(store.get_json::<Note>(&k("n/2")).await.unwrap(), None);
    store.put(&k("n/raw"), "not json").await.unwrap();
    let err = store.get_json::<Note>(&k("n/raw")).await.unwrap_err();
    assert!(
        matches!(&err, RecordsError::Json { key, .. } if key == &k("n/raw")),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_transaction_commits_all_or_nothing() {
    let store = RecordStore::open_in_memory().await.unwrap();
    store.put(&k("keep"), "old").await.unwrap();
    store
        .transaction(|tx| {
            tx.put(&k("a"), b"1")?;
            tx.put(&k("b"), b"2")?;
            assert_eq!(
                tx.get(&k("a"))?.unwrap(),
                "1",
                "a transaction sees its writes"
            );
            Ok(())
        })
        .await
        .unwrap();
    assert_eq!(store.list("").await.unwrap().len(), 3);

    // The closure fails after writing.
    let err = store
        .transaction(|tx| {
            tx.put(&k("c"), b"3")?;
            tx.delete(&k("a"))?;
            tx.put(&k("keep"), b"new")?;
            Err::<(), _>(RecordsError::Corrupt("the app gave up".into()))
        })
        .await
        .unwrap_err();
    assert!(matches!(err, RecordsError::Corrupt(_)), "{err:?}");
    // A write fails midway: `b` is a record, so `b/x` cannot go under it.
    let err = store
        .transaction(|tx| {
            tx.put(&k("d"), b"4")?;
            tx.delete(&k("keep"))?;
            tx.put(&k("b/x"), b"5")?;
            tx.put(&k("e"), b"6")?;
            Ok(())
        })
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RecordsError::InTheWay { key, .. } if key == &k("b/x")),
        "{err:?}"
    );
    let keys: Vec<Key> = store
        .list("")
        .await
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(keys, vec![k("a"), k("b"), k("keep")]);
    assert_eq!(store.get(&k("keep")).await.unwrap().unwrap(), "old");
}

#[tokio::test]
async fn records_and_folders_do_not_overwrite_each_other() {
    let store = RecordStore::open_in_memory().await.unwrap();
    store.put(&k("a/b"), "x").await.unwrap();
    let err = store.put(&k("a"), "flat").await.unwrap_err();
    assert!(matches!(err, RecordsError::InTheWay { .. }), "{err:?}");
    let err = store.put(&k("a/b/c"), "deep").await.unwrap_err();
    assert!(err.to_string().contains("a/b"), "{err}");
    assert_eq!(store.get(&k("a/b")).await.unwrap().unwrap(), "x");
    // An empty folder may become a record.
    store.delete(&k("a/b")).await.unwrap();
    store.put(&k("a"), "now a record").await.unwrap();
    assert_eq!(store.get(&k("a")).await.unwrap().unwrap(), "now a record");
}

#[tokio::test]
async fn data_and_backups_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    let fingerprint = {
        let store = RecordStore::open(&path).await.unwrap();
        store.put(&k("notes/a"), "kept").await.unwrap();
        store.put_json(&k("n"), &vec![1, 2, 3]).await.unwrap();
        store
            .backup(&k("notes/a"), sync_core::Stamp::at(5, NodeId(1)))
            .await
            .unwrap()
            .unwrap();
        let scan = store.scan(&Default::default(), u64::MAX).await.unwrap();
        scan.items[&k("notes/a")].fingerprint
    };
    let store = RecordStore::open(&path).await.unwrap();
    assert_eq!(store.get(&k("notes/a")).await.unwrap().unwrap(), "kept");
    assert_eq!(
        store.get_json::<Vec<i32>>(&k("n")).await.unwrap(),
        Some(vec![1, 2, 3])
    );
    let backups = store.backups().await.unwrap();
    assert_eq!(backups.len(), 1);
    assert_eq!(store.read_backup(&backups[0]).await.unwrap(), "kept");
    let scan = store.scan(&Default::default(), u64::MAX).await.unwrap();
    assert_eq!(scan.items[&k("notes/a")].fingerprint, fingerprint);
    // The change counter goes on from where it was: a new write gets a new fingerprint.
    store.put(&k("notes/a"), "kept").await.unwrap();
    let scan = store.scan(&Default::default(), u64::MAX).await.unwrap();
    assert_ne!(scan.items[&k("notes/a")].fingerprint, fingerprint);
}

#[tokio::test]
async fn files_that_are_not_record_stores_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.db");
    std::fs::write(&garbage, vec![b'x'; 4096]).unwrap();
    let err = RecordStore::open(&garbage).await.unwrap_err();
    assert!(matches!(err, RecordsError::NotADatabase { .. }), "{err:?}");

    let other = dir.path().join("other.db");
    rusqlite::Connection::open(&other)
        .unwrap()
        .execute_batch("CREATE TABLE theirs (x INTEGER)")
        .unwrap();
    let err = RecordStore::open(&other).await.unwrap_err();
    assert!(matches!(err, RecordsError::WrongKind { .. }), "{err:?}");
    // Refusing did not touch their table.
    let n: i64 = rusqlite::Connection::open(&other)
        .unwrap()
        .query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 1);
}

#[tokio::test]
async fn a_file_of_a_newer_schema_version_is_refused_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("records.db");
    let store = RecordStore::open(&path).await.unwrap();
    store.put(&k("a"), "1").await.unwrap();
    drop(store);
    let version = |path: &std::path::Path| -> i64 {
        rusqlite::Connection::open(path)
            .unwrap()
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap()
    };
    assert_eq!(version(&path), 2, "the store records its schema version");
    // A later version of the crate moved the file on.
    rusqlite::Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", 7)
        .unwrap();
    let err = RecordStore::open(&path).await.unwrap_err();
    assert!(
        matches!(
            err,
            RecordsError::NewerSchema {
                found: 7,
                supported: 2,
                ..
            }
        ),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains("version 7") && message.contains("upgrade the app"),
        "{message}"
    );
    assert_eq!(version(&path), 7, "refusing left the file alone");
}

type Device = Engine<LocalTransport<MemoryServerStore>, MemoryStateStore, RecordStore>;

fn device(server: &Arc<MemoryServerStore>, store: &RecordStore, node: u64) -> Device {
    Engine::new(
        LocalTransport::new(server.clone(), TenantId::new("t")),
        MemoryStateStore::default(),
        store.clone(),
        EngineConfig {
            policy: SyncPolicy {
                deletes: DeletePolicy::Propagate,
                ..SyncPolicy::default()
            },
            node: Some(NodeId(node)),
            ..EngineConfig::default()
        },
    )
}

fn drain(rx: &mut tokio::sync::broadcast::Receiver<Vec<Key>>) -> Vec<Key> {
    let mut keys = Vec::new();
    loop {
        match rx.try_recv() {
            Ok(batch) => keys.extend(batch),
            Err(TryRecvError::Empty) => return keys,
            Err(e) => panic!("subscriber: {e:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_hear_what_a_sync_changed() {
    let server = Arc::new(MemoryServerStore::new(ServerConfig::default()));
    let (store_a, store_b) = (
        RecordStore::open_in_memory().await.unwrap(),
        RecordStore::open_in_memory().await.unwrap(),
    );
    let (mut a, mut b) = (device(&server, &store_a, 1), device(&server, &store_b, 2));
    let mut rx_a = store_a.subscribe();
    let mut rx_b = store_b.subscribe();

    store_a.put(&k("notes/a"), "from A").await.unwrap();
    a.sync_once().await.unwrap();
    assert_eq!(
        drain(&mut rx_a),
        Vec::<Key>::new(),
        "app writes are not sent"
    );
    b.sync_once().await.unwrap();
    assert_eq!(drain(&mut rx_b), vec![k("notes/a")]);
    assert_eq!(store_b.get(&k("notes/a")).await.unwrap().unwrap(), "from A");

    // An edit and a delete on B come back to A (deletes propagate under this policy).
    store_b.put(&k("notes/b"), "from B").await.unwrap();
    store_b.delete(&k("notes/a")).await.unwrap();
    b.sync_once().await.unwrap();
    a.sync_once().await.unwrap();
    let mut heard = drain(&mut rx_a);
    heard.sort();
    assert_eq!(heard, vec![k("notes/a"), k("notes/b")]);
    assert_eq!(store_a.get(&k("notes/a")).await.unwrap(), None);
    assert_eq!(store_a.get(&k("notes/b")).await.unwrap().unwrap(), "from B");
    assert_eq!(drain(&mut rx_b), Vec::<Key>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflict_loser_is_kept_in_the_backups_table() {
    let server = Arc::new(MemoryServerStore::new(ServerConfig::default()));
    let (store_a, store_b) = (
        RecordStore::open_in_memory().await.unwrap(),
        RecordStore::open_in_memory().await.unwrap(),
    );
    let (mut a, mut b) = (device(&server, &store_a, 1), device(&server, &store_b, 2));
    store_a.put(&k("doc"), "base").await.unwrap();
    a.sync_once().await.unwrap();
    b.sync_once().await.unwrap();
    assert_eq!(store_b.get(&k("doc")).await.unwrap().unwrap(), "base");

    // Both edit; A's edit is the newer one (stamps follow the records' write times).
    store_b.put(&k("doc"), "older edit on B").await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    store_a.put(&k("doc"), "newer edit on A").await.unwrap();
    a.sync_once().await.unwrap();
    let mut rx_b = store_b.subscribe();
    b.sync_once().await.unwrap();

    assert_eq!(
        store_b.get(&k("doc")).await.unwrap().unwrap(),
        "newer edit on A"
    );
    assert_eq!(drain(&mut rx_b), vec![k("doc")]);
    let backups = store_b.backups().await.unwrap();
    assert_eq!(backups.len(), 1, "{backups:?}");
    assert_eq!(backups[0].key, k("doc"));
    assert_eq!(
        store_b.read_backup(&backups[0]).await.unwrap(),
        "older edit on B"
    );
    // Backups are not records.
    assert_eq!(store_b.list("").await.unwrap().len(), 1);
}

/// A settled device skips its scan (the change counter did not move), yet every later app
/// edit, including a bare delete, still reaches the other device.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settled_store_skips_its_scan_but_misses_no_edit_or_delete() {
    let server = Arc::new(MemoryServerStore::new(ServerConfig::default()));
    let (store_a, store_b) = (
        RecordStore::open_in_memory().await.unwrap(),
        RecordStore::open_in_memory().await.unwrap(),
    );
    let (mut a, mut b) = (device(&server, &store_a, 1), device(&server, &store_b, 2));
    store_a.put(&k("notes/a"), "one").await.unwrap();
    store_a.put(&k("notes/b"), "two").await.unwrap();
    for _ in 0..3 {
        a.sync_once().await.unwrap();
    }
    b.sync_once().await.unwrap();
    assert_eq!(store_b.list("").await.unwrap().len(), 2);

    store_a.delete(&k("notes/a")).await.unwrap();
    let r = a.sync_once().await.unwrap();
    assert_eq!(r.uploaded, 1, "the delete went up: {r:?}");
    b.sync_once().await.unwrap();
    assert_eq!(store_b.get(&k("notes/a")).await.unwrap(), None);

    for _ in 0..2 {
        a.sync_once().await.unwrap();
    }
    store_a
        .transaction(|tx| tx.put(&k("notes/b"), "two, edited"))
        .await
        .unwrap();
    assert_eq!(a.sync_once().await.unwrap().uploaded, 1);
    b.sync_once().await.unwrap();
    assert_eq!(
        store_b.get(&k("notes/b")).await.unwrap().unwrap(),
        "two, edited"
    );
}

/// On Unix a new store file and its `-wal` are owner-only (0600): records are a tenant's
/// content, so other local users must not read them; an existing file keeps its mode.
#[cfg(unix)]
#[tokio::test]
async fn a_new_store_file_and_its_wal_are_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = dir.path().join("records.db");
    let store = RecordStore::open(&path).await.unwrap();
    store.put(&k("notes/a"), "secret").await.unwrap();
    assert_eq!(mode(&path), 0o600, "store file");
    let wal = dir.path().join("records.db-wal");
    assert!(
        wal.exists(),
        "a write in WAL mode leaves the -wal file while open"
    );
    assert_eq!(mode(&wal), 0o600, "-wal file");

    let chosen = dir.path().join("chosen.db");
    std::fs::write(&chosen, b"").unwrap();
    std::fs::set_permissions(&chosen, std::fs::Permissions::from_mode(0o640)).unwrap();
    let store = RecordStore::open(&chosen).await.unwrap();
    store.put(&k("a"), "x").await.unwrap();
    assert_eq!(mode(&chosen), 0o640, "an existing file keeps its mode");
}
