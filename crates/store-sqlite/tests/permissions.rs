//! Owner-only files: what the SQLite stores create on Unix (the database, its `-wal` and
//! `-shm` files, the `.blobs` folder, its shard folders and blob files) is 0600 or 0700, so
//! other local users cannot read a tenant's content; an existing file keeps its mode.
//!
//! Test code: it may panic and unwrap.

#![cfg(unix)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use store_sqlite::{Journal, SqliteServerStore, SqliteStateStore, StoreOptions, INLINE_MAX};
use sync_core::{
    ContentHash, Cursor, Epoch, Key, NodeId, Precondition, PushOutcome, PushRequest, Revision,
    ServerConfig, ServerStore, Stamp, StateBatch, StateStore, TenantId,
};

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

fn with_suffix(p: &Path, suffix: &str) -> PathBuf {
    let mut s = p.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

fn push(k: &str, content: Vec<u8>) -> PushRequest {
    PushRequest {
        key: Key::new(k).unwrap(),
        precondition: Precondition::Create,
        hash: ContentHash::of(&content),
        content: Bytes::from(content),
        stamp: Stamp::at(1_000, NodeId(3)),
        seen: Revision::ZERO,
    }
}

/// A fresh folder, readable by everyone as a user's folder usually is (the stores must not
/// rely on the folder to hide what they create, nor change it).
fn open_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

#[tokio::test]
async fn a_new_server_database_its_wal_and_its_blobs_are_owner_only() {
    let dir = open_dir();
    let db = dir.path().join("server.db");
    let s = SqliteServerStore::open(&db, ServerConfig::default())
        .await
        .unwrap();
    let large: Vec<u8> = (0..INLINE_MAX + 10).map(|i| (i * 7 % 251) as u8).collect();
    let hex = ContentHash::of(&large).to_hex();
    assert!(matches!(
        s.push(&TenantId::new("alice"), push("big.bin", large))
            .await
            .unwrap(),
        PushOutcome::Accepted(_)
    ));

    assert_eq!(mode(&db), 0o600, "database file");
    let wal = with_suffix(&db, "-wal");
    assert!(
        wal.exists(),
        "a write in WAL mode leaves the -wal file while open"
    );
    assert_eq!(mode(&wal), 0o600, "-wal file");
    assert_eq!(mode(&with_suffix(&db, "-shm")), 0o600, "-shm file");
    let blobs = dir.path().join("server.db.blobs");
    assert_eq!(mode(&blobs), 0o700, "blobs folder");
    assert_eq!(mode(&blobs.join(&hex[..2])), 0o700, "blob shard folder");
    assert_eq!(mode(&blobs.join(&hex[..2]).join(&hex)), 0o600, "blob file");
    // The folder the user chose is not ours to change.
    assert_eq!(mode(dir.path()), 0o755);
}

#[tokio::test]
async fn a_new_rollback_journal_database_is_owner_only() {
    let dir = open_dir();
    let db = dir.path().join("remote.db");
    let options = StoreOptions {
        journal: Journal::Rollback,
    };
    let s = SqliteServerStore::open_with(&db, ServerConfig::default(), options)
        .await
        .unwrap();
    s.push(&TenantId::new("alice"), push("a.txt", b"hi".to_vec()))
        .await
        .unwrap();
    assert_eq!(mode(&db), 0o600);
}

#[tokio::test]
async fn a_new_state_database_and_its_wal_are_owner_only() {
    let dir = open_dir();
    let db = dir.path().join("state.db");
    let store = SqliteStateStore::open(&db).await.unwrap();
    store
        .commit(StateBatch {
            node: Some(NodeId(7)),
            cursor: Some(Cursor::new(Epoch(1), Revision(2))),
            ..StateBatch::default()
        })
        .await
        .unwrap();
    assert_eq!(mode(&db), 0o600, "state database");
    let wal = with_suffix(&db, "-wal");
    assert!(wal.exists());
    assert_eq!(mode(&wal), 0o600, "-wal file");
}

#[tokio::test]
async fn an_existing_database_file_keeps_the_mode_its_owner_chose() {
    let dir = open_dir();
    let db = dir.path().join("shared.db");
    std::fs::write(&db, b"").unwrap();
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o640)).unwrap();
    let store = SqliteStateStore::open(&db).await.unwrap();
    store
        .commit(StateBatch {
            node: Some(NodeId(7)),
            ..StateBatch::default()
        })
        .await
        .unwrap();
    assert_eq!(mode(&db), 0o640);
    // SQLite follows the database file for its own files.
    assert_eq!(mode(&with_suffix(&db, "-wal")), 0o640);
}
