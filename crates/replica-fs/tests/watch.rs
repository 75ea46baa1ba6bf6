//! The folder watcher on a real temporary folder: a local edit wakes it once per burst, the
//! state folder and temporary files do not, and dropping it closes the channel.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::fs;
use std::time::Duration;

use replica_fs::{FolderReplica, FolderWatcher};
use sync_core::{Replica, DEFAULT_MAX_ITEM_BYTES};
use tokio::time::timeout;

const DEBOUNCE: Duration = Duration::from_millis(300);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn touching_a_file_signals_once_within_two_seconds() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("notes")).unwrap();
    let (_watcher, mut rx) = FolderWatcher::start(dir.path(), DEBOUNCE).unwrap();

    // A burst: create, write several times, touch a second file.
    let path = dir.path().join("notes/today.txt");
    for i in 0..10 {
        fs::write(&path, format!("edit {i}")).unwrap();
    }
    fs::write(dir.path().join("other.txt"), b"x").unwrap();

    timeout(Duration::from_secs(2), rx.recv())
        .await
        .expect("a signal within 2 s")
        .expect("the channel is open");
    // The burst was coalesced: no second signal follows.
    assert!(
        timeout(Duration::from_secs(1), rx.recv()).await.is_err(),
        "one signal per burst"
    );

    // A later edit signals again.
    fs::write(&path, b"later").unwrap();
    timeout(Duration::from_secs(2), rx.recv())
        .await
        .expect("a signal for the later edit")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_into_the_state_folder_and_temp_files_do_not_signal() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    fs::create_dir_all(root.join(".sync/backups")).unwrap();
    fs::write(root.join("kept.txt"), b"kept").unwrap();
    let (_watcher, mut rx) = FolderWatcher::start(root, DEBOUNCE).unwrap();

    fs::write(root.join(".sync/state.db"), b"state").unwrap();
    fs::write(root.join(".sync/state.db-wal"), b"wal").unwrap();
    fs::create_dir_all(root.join(".sync/backups/a.txt")).unwrap();
    fs::write(root.join(".sync/backups/a.txt/1-abcdef01.txt"), b"old").unwrap();
    fs::write(root.join(".sync-tmp-123"), b"partial").unwrap();
    fs::remove_file(root.join(".sync-tmp-123")).unwrap();
    // Reading a synced file (as a scan does) is not a change either, nor is a whole scan
    // (which hashes every file and removes a stale temporary file).
    assert_eq!(fs::read(root.join("kept.txt")).unwrap(), b"kept");
    fs::write(root.join(".sync-tmp-stale"), b"left by a crash").unwrap();
    let replica = FolderReplica::new(root).unwrap();
    let scan = replica
        .scan(&BTreeMap::new(), DEFAULT_MAX_ITEM_BYTES)
        .await
        .unwrap();
    assert_eq!(scan.hashed, 1);
    assert!(!root.join(".sync-tmp-stale").exists());

    assert!(
        timeout(Duration::from_secs(1), rx.recv()).await.is_err(),
        "no signal for the engine's own files"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_watcher_closes_the_channel() {
    let dir = tempfile::tempdir().unwrap();
    let (watcher, mut rx) = FolderWatcher::start(dir.path(), DEBOUNCE).unwrap();
    assert_eq!(watcher.root(), dir.path());
    drop(watcher);
    let closed = timeout(Duration::from_secs(2), rx.recv())
        .await
        .expect("the channel closes");
    assert_eq!(closed, None);
}

#[test]
fn a_missing_folder_cannot_be_watched() {
    let dir = tempfile::tempdir().unwrap();
    let err = FolderWatcher::start(&dir.path().join("missing"), DEBOUNCE).unwrap_err();
    assert!(err.to_string().contains("missing"), "{err}");
    assert_eq!(
        sync_core::Error::from(err).class(),
        sync_core::ErrorClass::Storage
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_editor_save_with_a_short_quiet_period_is_one_signal() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    fs::write(root.join("doc.txt"), b"v1").unwrap();
    let replica = FolderReplica::new(root).unwrap();
    let (_watcher, mut rx) = FolderWatcher::start_for(&replica, Duration::from_millis(30)).unwrap();
    // What vim does on :w (backup by rename, write anew, remove the backup) and what many
    // editors do (write a temporary file, rename it over the original): a dozen events
    // within a millisecond or two.
    fs::rename(root.join("doc.txt"), root.join("doc.txt~")).unwrap();
    fs::write(root.join("doc.txt"), b"v2").unwrap();
    fs::remove_file(root.join("doc.txt~")).unwrap();
    fs::write(root.join(".doc.txt.tmp"), b"v3").unwrap();
    fs::rename(root.join(".doc.txt.tmp"), root.join("doc.txt")).unwrap();
    let started = std::time::Instant::now();
    timeout(Duration::from_secs(2), rx.recv())
        .await
        .expect("a signal")
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(1000),
        "the quiet period ends the burst, not a long window"
    );
    assert!(
        timeout(Duration::from_millis(500), rx.recv())
            .await
            .is_err(),
        "one signal for the whole save"
    );
}
