//! Several clients on one remote folder: concurrent writers from separate transports (as two
//! processes would be), waits that see another client's writes, and open errors.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sync_core::{
    ContentHash, ErrorClass, Key, NodeId, Precondition, PushOutcome, PushRequest, Revision, Stamp,
    TenantId, Transport,
};
use transport_fs::FsTransport;

fn push_req(key: &str, content: &str) -> PushRequest {
    let content = Bytes::from(content.to_owned());
    PushRequest {
        key: Key::new(key).unwrap(),
        precondition: Precondition::Create,
        hash: ContentHash::of(&content),
        content,
        stamp: Stamp::at(1_000, NodeId(1)),
        seen: Revision::ZERO,
    }
}

/// Two transports opened on the same folder from two threads, each with its own runtime and
/// its own database connection (as two processes would have), write at the same time: every
/// write is accepted with its own revision, and both see the same feed.
#[test]
fn concurrent_writers_on_one_folder_get_distinct_revisions() {
    let dir = tempfile::tempdir().unwrap();
    const PER_WRITER: usize = 40;
    let writers: Vec<_> = ["one", "two"]
        .into_iter()
        .map(|name| {
            let path = dir.path().to_path_buf();
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async move {
                    let t = FsTransport::open(&path, TenantId::new("shared"))
                        .await
                        .unwrap();
                    let mut revs = Vec::new();
                    for i in 0..PER_WRITER {
                        match t
                            .push(push_req(&format!("{name}/f{i}.txt"), name))
                            .await
                            .unwrap()
                        {
                            PushOutcome::Accepted(meta) => revs.push(meta.rev),
                            other => panic!("push refused: {other:?}"),
                        }
                    }
                    revs
                })
            })
        })
        .collect();
    let mut all = Vec::new();
    for w in writers {
        all.extend(w.join().unwrap());
    }
    let distinct: BTreeSet<Revision> = all.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        2 * PER_WRITER,
        "revisions repeated: {all:?}"
    );

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let t = FsTransport::open(dir.path(), TenantId::new("shared"))
            .await
            .unwrap();
        let page = t.changes(None, 1000).await.unwrap();
        // Two folders plus every file, each once, in revision order.
        assert_eq!(page.changes.len(), 2 * PER_WRITER + 2);
        assert!(page.changes.windows(2).all(|w| w[0].rev < w[1].rev));
        for rev in &distinct {
            assert!(
                page.changes.iter().any(|c| c.rev == *rev),
                "{rev:?} missing"
            );
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_sees_a_write_made_through_another_transport() {
    let dir = tempfile::tempdir().unwrap();
    let reader = FsTransport::open(dir.path(), TenantId::new("t"))
        .await
        .unwrap();
    let writer = FsTransport::open(dir.path(), TenantId::new("t"))
        .await
        .unwrap();
    let head = reader.changes(None, 10).await.unwrap().cursor;
    let task = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(150)).await;
        writer.push(push_req("late.txt", "x")).await.unwrap()
    });
    let start = Instant::now();
    let woken = reader
        .wait(Some(&head), Duration::from_secs(10))
        .await
        .unwrap();
    assert!(woken);
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    assert!(matches!(task.await.unwrap(), PushOutcome::Accepted(_)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opening_a_missing_folder_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let err = FsTransport::open(dir.path().join("nope"), TenantId::new("t"))
        .await
        .unwrap_err();
    let core: sync_core::Error = err.into();
    assert_eq!(core.class(), ErrorClass::Offline);
    assert!(core.to_string().contains("nope"), "{core}");
    std::fs::write(dir.path().join("file"), b"x").unwrap();
    let err = FsTransport::open(dir.path().join("file"), TenantId::new("t"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not a folder"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_remote_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let first = FsTransport::open(dir.path(), TenantId::new("t"))
        .await
        .unwrap();
    first.push(push_req("a.txt", "hello")).await.unwrap();
    let cursor = first.changes(None, 10).await.unwrap().cursor;
    drop(first);
    let again = FsTransport::open(dir.path(), TenantId::new("t"))
        .await
        .unwrap();
    let fetched = again
        .fetch(&Key::new("a.txt").unwrap(), None)
        .await
        .unwrap();
    assert_eq!(fetched.content, Bytes::from_static(b"hello"));
    // Same epoch: the old cursor is still valid.
    let page = again.changes(Some(&cursor), 10).await.unwrap();
    assert!(page.changes.is_empty());
}

/// Names of the files in the remote's `.sync-remote/` folder.
fn remote_files(remote: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(remote.join(transport_fs::REMOTE_DIR))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_remote_database_uses_the_rollback_journal_not_wal() {
    let dir = tempfile::tempdir().unwrap();
    let remote = FsTransport::open(dir.path(), TenantId::new("t"))
        .await
        .unwrap();
    remote.push(push_req("a.txt", "hello")).await.unwrap();
    let names = remote_files(dir.path());
    // No -wal/-shm (WAL's shared memory), and the rollback journal is gone after each commit.
    assert_eq!(names, ["lock", transport_fs::DB_FILE], "{names:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_made_in_wal_mode_is_switched_and_keeps_its_items() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir
        .path()
        .join(transport_fs::REMOTE_DIR)
        .join(transport_fs::DB_FILE);
    std::fs::create_dir_all(db.parent().unwrap()).unwrap();
    {
        // As an earlier version of this crate made it.
        let old = store_sqlite::SqliteServerStore::open(&db, sync_core::ServerConfig::default())
            .await
            .unwrap();
        let tenant = TenantId::new("t");
        sync_core::ServerStore::push(&old, &tenant, push_req("old.txt", "from WAL days"))
            .await
            .unwrap();
    }
    let remote = FsTransport::open(dir.path(), TenantId::new("t"))
        .await
        .unwrap();
    let fetched = remote
        .fetch(&Key::new("old.txt").unwrap(), None)
        .await
        .unwrap();
    assert_eq!(fetched.content, Bytes::from_static(b"from WAL days"));
    remote.push(push_req("new.txt", "rollback")).await.unwrap();
    let names = remote_files(dir.path());
    assert!(
        !names
            .iter()
            .any(|n| n.ends_with("-wal") || n.ends_with("-shm")),
        "{names:?}"
    );
}

/// Content over the inline limit, stored as a blob file; and that file's path.
fn large(remote: &std::path::Path, seed: u8) -> (String, std::path::PathBuf) {
    let content: String = (0..100_000u32)
        .map(|i| char::from(b'a' + ((i as u8).wrapping_mul(seed)) % 26))
        .collect();
    let hex = ContentHash::of(content.as_bytes()).to_hex();
    let path = remote
        .join(".sync-remote/server.db.blobs")
        .join(&hex[..2])
        .join(&hex);
    (content, path)
}

/// What another writer of a shared folder can put in place of a stored blob: a named pipe
/// (the read used to wait forever) or a symlink to /dev/zero (the read used to run until
/// memory ran out). Both are a storage error at once.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_replaced_by_a_pipe_or_a_device_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let t = FsTransport::open(dir.path(), TenantId::new("t"))
        .await
        .unwrap();
    for (i, replace) in ["pipe", "device"].into_iter().enumerate() {
        let (content, blob) = large(dir.path(), 3 + i as u8);
        let key = format!("{replace}.bin");
        t.push(push_req(&key, &content)).await.unwrap();
        std::fs::remove_file(&blob).unwrap();
        match replace {
            "pipe" => {
                let made = std::process::Command::new("mkfifo")
                    .arg(&blob)
                    .status()
                    .unwrap();
                assert!(made.success());
            }
            _ => std::os::unix::fs::symlink("/dev/zero", &blob).unwrap(),
        }
        let key = Key::new(&key).unwrap();
        let fetch = t.fetch(&key, None);
        let err = tokio::time::timeout(Duration::from_secs(10), fetch)
            .await
            .unwrap_or_else(|_| panic!("the fetch of a blob replaced by a {replace} hangs"))
            .unwrap_err();
        assert_eq!(err.class(), ErrorClass::Storage, "{replace}: {err}");
    }
}

/// Symlinks another writer put in the remote's own folder (the lock file, the blob folder)
/// would make this device create files outside the remote folder: they are refused, and
/// nothing appears outside.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn symlinks_in_the_remotes_own_folder_are_not_written_through() {
    let outside = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let t = FsTransport::open(dir.path(), TenantId::new("t"))
        .await
        .unwrap();
    t.push(push_req("first.txt", "x")).await.unwrap();

    // A dangling lock symlink: a write fails instead of creating the target.
    let lock = dir.path().join(".sync-remote/lock");
    std::fs::remove_file(&lock).unwrap();
    let target = outside.path().join("made-by-the-lock");
    std::os::unix::fs::symlink(&target, &lock).unwrap();
    assert!(t.push(push_req("second.txt", "y")).await.is_err());
    assert!(
        !target.exists(),
        "the lock was created outside the remote folder"
    );
    std::fs::remove_file(&lock).unwrap();

    // The blob folder replaced by a link elsewhere: a large write fails, nothing lands there.
    let (content, _) = large(dir.path(), 7);
    let blobs = dir.path().join(".sync-remote/server.db.blobs");
    if blobs.exists() {
        std::fs::remove_dir_all(&blobs).unwrap();
    }
    std::os::unix::fs::symlink(outside.path(), &blobs).unwrap();
    assert!(t.push(push_req("big.bin", &content)).await.is_err());
    let landed: Vec<_> = std::fs::read_dir(outside.path()).unwrap().collect();
    assert!(landed.is_empty(), "written outside the remote: {landed:?}");
    // And a new device refuses to open the remote at all.
    let err = FsTransport::open(dir.path(), TenantId::new("t2"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("symbolic link"), "{err}");
}
