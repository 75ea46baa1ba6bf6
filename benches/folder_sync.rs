//! Criterion benchmarks of folder sync on disk (issue 4 item 6): 10,000 files of 8 KiB, 20 per
//! folder, three folder levels deep (`dNN/dNN/dNN/fNNN.bin`, as `../shared/bench/peers.sh`
//! builds its SMALL tree), synced through `transport-fs` (`FsTransport`, a remote folder).
//!
//! - `folder_sync/no_change_rescan`: an already-synced device runs `sync_once()` with nothing
//!   changed; every iteration checks that nothing was transferred (and, once before measuring,
//!   that a scan with the recorded fingerprints hashes no file).
//! - `folder_sync/first_sync_upload`: a device's first sync of the whole tree into an empty
//!   remote (fresh state and remote each iteration; the tree is reused, so the page cache is
//!   warm).
//! - `folder_sync/first_sync_download`: the first sync of an empty device B from a remote
//!   holding the tree.
//!
//! Run: `cargo bench --bench folder_sync`. Everything lives in one temporary folder (the
//! system's temp dir) removed at the end. This file only measures; it asserts what it measures
//! is the work it claims to be, and holds no sync logic.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant, UNIX_EPOCH};

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use replica_fs::FolderReplica;
use store_sqlite::SqliteStateStore;
use sync_core::{EngineConfig, KnownItem, Replica, StateStore, SyncReport, TenantId};
use sync_engine::folder;
use transport_fs::FsTransport;

/// Files in the tree.
const FILES: usize = 10_000;
/// Bytes per file.
const FILE_SIZE: usize = 8 * 1024;
/// Files per leaf folder.
const FILES_PER_DIR: usize = 20;
/// Fixed modification times start here (seconds since the epoch), one second apart, as in
/// peers.sh: old enough that no file is inside the scan's racy window.
const T0: u64 = 1_700_000_000;

/// The leaf folders' fan-out: the smallest `f` with `f³ ≥ leaves`.
fn fan(leaves: usize) -> usize {
    (1..).find(|f| f * f * f >= leaves).unwrap_or(1)
}

/// Writes the tree under `root` (deterministic pseudo-random content) and returns how many
/// folders it has.
fn gen_tree(root: &Path) -> usize {
    let leaves = FILES.div_ceil(FILES_PER_DIR);
    let fan = fan(leaves);
    let mut state: u64 = 42;
    let mut folders = std::collections::BTreeSet::new();
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
    let mut all = std::collections::BTreeSet::new();
    for leaf in &folders {
        let rel = leaf.strip_prefix(root).unwrap();
        for anc in rel.ancestors().filter(|p| !p.as_os_str().is_empty()) {
            all.insert(anc.to_path_buf());
        }
    }
    all.len()
}

async fn engine(dir: &Path, remote: &Path) -> folder::FolderEngine<FsTransport> {
    let transport = FsTransport::open(remote, TenantId::new("bench"))
        .await
        .unwrap();
    folder::open(dir, transport, EngineConfig::default())
        .await
        .unwrap()
}

fn check(report: &SyncReport) {
    assert!(report.errors.is_empty(), "{:?}", report.errors);
}

/// Empties `dir` (or creates it).
fn fresh_dir(dir: &Path) {
    if dir.exists() {
        fs::remove_dir_all(dir).unwrap();
    }
    fs::create_dir_all(dir).unwrap();
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let tmp = tempfile::Builder::new()
        .prefix("folder-sync-bench")
        .tempdir()
        .unwrap();
    let base = tmp.path();

    // Device A, synced once (untimed) into `remote`: the source of the download and the device
    // of the no-change rescan. A second copy of the tree, `up`, is the device of the upload
    // benchmark, whose state is wiped before each iteration.
    let a_dir = base.join("a");
    let up_dir = base.join("up");
    let folders = gen_tree(&a_dir);
    assert_eq!(gen_tree(&up_dir), folders);
    let items = (FILES + folders) as u64;
    let remote = base.join("remote");
    fresh_dir(&remote);
    let mut a = rt.block_on(engine(&a_dir, &remote));
    let first = rt.block_on(a.sync_once()).unwrap();
    check(&first);
    assert_eq!(first.uploaded, items, "{first:?}");

    let mut group = c.benchmark_group("folder_sync");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .throughput(Throughput::Elements(FILES as u64));

    // (a) A no-change rescan of the synced device A.
    let settle = rt.block_on(a.sync_once()).unwrap();
    check(&settle);
    assert_eq!(settle.transferred(), 0, "{settle:?}");
    rt.block_on(assert_no_file_is_hashed(&a_dir));
    group.bench_function("no_change_rescan", |b| {
        b.iter(|| {
            let report = rt.block_on(a.sync_once()).unwrap();
            check(&report);
            assert_eq!(report.transferred(), 0, "{report:?}");
            report
        })
    });

    // (b) The first sync of a device into an empty remote. Each iteration starts from no state
    // and no remote; only `sync_once` is timed.
    let up_remote = base.join("remote-up");
    group.bench_function("first_sync_upload", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                fresh_dir(&up_remote);
                let _ = fs::remove_dir_all(up_dir.join(".sync"));
                let mut dev = rt.block_on(engine(&up_dir, &up_remote));
                let start = Instant::now();
                let report = rt.block_on(dev.sync_once()).unwrap();
                total += start.elapsed();
                check(&report);
                assert_eq!(report.uploaded, items, "{report:?}");
            }
            total
        })
    });

    // (b') The first sync of an empty device B from the remote A filled.
    let b_dir = base.join("b");
    group.bench_function("first_sync_download", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                fresh_dir(&b_dir);
                let mut dev = rt.block_on(engine(&b_dir, &remote));
                let start = Instant::now();
                let report = rt.block_on(dev.sync_once()).unwrap();
                total += start.elapsed();
                check(&report);
                assert_eq!(report.downloaded, items, "{report:?}");
            }
            total
        })
    });
    group.finish();
}

/// A scan of `dir` with the fingerprints its state store recorded reads no file.
async fn assert_no_file_is_hashed(dir: &Path) {
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

criterion_group!(folder_sync, benches);
criterion_main!(folder_sync);
