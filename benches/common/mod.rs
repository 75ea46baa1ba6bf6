//! What the folder-sync benchmarks share (`folder_sync.rs`, `http_sync.rs`): the tree they sync
//! (10,000 files of 8 KiB, as `../shared/bench/peers.sh` builds its SMALL tree) and the checks
//! that a measured run did the work it claims. It measures nothing itself.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use replica_fs::FolderReplica;
use store_sqlite::SqliteStateStore;
use sync_core::{KnownItem, Replica, StateStore, SyncReport};

/// Files in the tree.
pub const FILES: usize = 10_000;
/// Bytes per file.
pub const FILE_SIZE: usize = 8 * 1024;
/// Files per leaf folder.
pub const FILES_PER_DIR: usize = 20;
/// Fixed modification times start here (seconds since the epoch), one second apart, as in
/// peers.sh: old enough that no file is inside the scan's racy window.
pub const T0: u64 = 1_700_000_000;

/// The leaf folders' fan-out: the smallest `f` with `f³ ≥ leaves`.
fn fan(leaves: usize) -> usize {
    (1..).find(|f| f * f * f >= leaves).unwrap_or(1)
}

/// Writes the tree under `root` (deterministic pseudo-random content) and returns how many
/// folders it has.
pub fn gen_tree(root: &Path) -> usize {
    let leaves = FILES.div_ceil(FILES_PER_DIR);
    let fan = fan(leaves);
    let mut state: u64 = 42;
    let mut folders = BTreeSet::new();
    let mut buf = vec![0u8; FILE_SIZE];
    for i in 0..FILES {
        let (leaf, k) = (i / FILES_PER_DIR, i % FILES_PER_DIR);
        let (a, rest) = (leaf / (fan * fan), leaf % (fan * fan));
        let (b, c) = (rest / fan, rest % fan);
        let dir = root.join(format!("d{a:02}/d{b:02}/d{c:02}"));
        if folders.insert(dir.clone()) {
            fs::create_dir_all(&dir).unwrap();
        }
        for chunk in buf.chunks_mut(8) {
            // xorshift64*
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            let v = state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
        let path = dir.join(format!("f{k:03}.bin"));
        fs::write(&path, &buf).unwrap();
        fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(UNIX_EPOCH + Duration::from_secs(T0 + i as u64))
            .unwrap();
    }
    // Every folder on the way: dA, dA/dB, dA/dB/dC.
    let mut all = BTreeSet::new();
    for leaf in &folders {
        let rel = leaf.strip_prefix(root).unwrap();
        for anc in rel.ancestors().filter(|p| !p.as_os_str().is_empty()) {
            all.insert(anc.to_path_buf());
        }
    }
    all.len()
}

/// Fails the benchmark when a measured sync reported an error.
pub fn check(report: &SyncReport) {
    assert!(report.errors.is_empty(), "{:?}", report.errors);
}

/// Empties `dir` (or creates it).
pub fn fresh_dir(dir: &Path) {
    if dir.exists() {
        fs::remove_dir_all(dir).unwrap();
    }
    fs::create_dir_all(dir).unwrap();
}

/// A scan of `dir` with the fingerprints its state store recorded reads no file.
pub async fn assert_no_file_is_hashed(dir: &Path) {
    let state = SqliteStateStore::open(dir.join(".sync/state.db"))
        .await
        .unwrap()
        .load()
        .await
        .unwrap();
    let known: BTreeMap<_, _> = state
        .base
        .iter()
        .filter_map(|(key, b)| {
            Some((
                key.clone(),
                KnownItem {
                    fingerprint: b.fingerprint?,
                    content: b.content(),
                },
            ))
        })
        .collect();
    let scan = FolderReplica::new(dir)
        .unwrap()
        .scan(&known, sync_core::DEFAULT_MAX_ITEM_BYTES)
        .await
        .unwrap();
    assert_eq!(scan.hashed, 0, "a no-change rescan must not read any file");
    assert!(scan.items.len() >= FILES, "{}", scan.items.len());
}
