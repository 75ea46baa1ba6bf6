//! Criterion benchmarks of folder sync on disk: 10,000 files of 8 KiB, 20 per
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

mod common;

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use sync_core::{EngineConfig, TenantId};
use sync_engine::folder;

use common::{assert_no_file_is_hashed, check, fresh_dir, gen_tree, FILES};
use transport_fs::FsTransport;

async fn engine(dir: &Path, remote: &Path) -> folder::FolderEngine<FsTransport> {
    let transport = FsTransport::open(remote, TenantId::new("bench"))
        .await
        .unwrap();
    folder::open(dir, transport, EngineConfig::default())
        .await
        .unwrap()
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
    let items = FILES as u64; // folders are counted apart (`SyncReport::folders`)
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

criterion_group!(folder_sync, benches);
criterion_main!(folder_sync);
