//! Criterion benchmarks of the record store and of syncing records: 100,000 records of about
//! 200 bytes (JSON objects under `nNN/NNNNNN`, 100 folders) in a `RecordStore` file.
//!
//! - `records/get`: one `RecordStore::get` of a record (a tokio `block_on` around it, as an app
//!   calling it from async code pays).
//! - `records/transaction_10k_puts`: one `RecordStore::transaction` of 10,000 puts (rewriting
//!   the same 10,000 records each iteration).
//! - `records/no_change_sync`: `sync_once()` of a synced device over HTTP on loopback, with
//!   nothing changed; each iteration checks nothing was transferred.
//! - `records/ten_edits_sync`: `sync_once()` of that device after the app rewrote 10 of the
//!   100,000 records (outside the timed part); each iteration checks 10 went up.
//! - `records/first_sync_upload`: a device's first sync of all 100,000 records to an empty
//!   server (fresh server store and client state each iteration), through the batch route.
//! - `records/first_sync_download`: the first sync of an empty device from a server holding
//!   them.
//!
//! The server is a `SqliteServerStore` behind `transport_http::server::router` in this process
//! (client and server share the process and the machine's cores). Retries are off, so a failed
//! request fails the bench instead of being retried inside a timed sync. Run:
//! `cargo bench --bench records`; `RECORDS_ONCE=1 cargo bench --bench records` runs each sync
//! scenario once and prints its time (for profiling). This file only measures.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode};
use store_records::RecordStore;
use store_sqlite::{SqliteServerStore, SqliteStateStore};
use sync_core::{Engine, EngineConfig, Key, ServerConfig, SyncReport};
use transport_http::client::{HttpTransport, RetryPolicy};
use transport_http::server::{nodelay, router, ServerOptions, StaticTokens};

const RECORDS: usize = 100_000;
const TOKEN: &str = "bench-token";

type Device = Engine<HttpTransport, SqliteStateStore, RecordStore>;

fn key(i: usize) -> Key {
    Key::new(format!("n{:02}/{i:06}", i % 100)).unwrap()
}

/// About 200 bytes of JSON.
fn value(i: usize, round: usize) -> Vec<u8> {
    format!(
        r#"{{"id":{i},"round":{round},"title":"record number {i:06}","body":"{}"}}"#,
        "x".repeat(130)
    )
    .into_bytes()
}

async fn fill(store: &RecordStore) {
    for start in (0..RECORDS).step_by(10_000) {
        store
            .transaction(move |tx| {
                for i in start..start + 10_000 {
                    tx.put(&key(i), value(i, 0))?;
                }
                Ok(())
            })
            .await
            .unwrap();
    }
}

/// A server on a new SQLite store in `dir`; returns its URL.
async fn server(dir: &Path) -> String {
    std::fs::create_dir_all(dir).unwrap();
    let store = SqliteServerStore::open(dir.join("server.db"), ServerConfig::default())
        .await
        .unwrap();
    let app = router(
        Arc::new(store),
        Arc::new(StaticTokens::new([("bench", TOKEN)])),
        ServerOptions::default(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(nodelay(listener), app).await });
    url
}

async fn device(dir: &Path, url: &str, records: RecordStore) -> Device {
    std::fs::create_dir_all(dir).unwrap();
    let transport = HttpTransport::new(url, TOKEN.to_owned())
        .unwrap()
        .with_retry(RetryPolicy::none());
    let state = SqliteStateStore::open(dir.join("state.db")).await.unwrap();
    Engine::new(transport, state, records, EngineConfig::default())
}

/// The app rewrites 10 records spread over the store, in one transaction.
async fn edit_ten(store: &RecordStore, round: usize) {
    store
        .transaction(move |tx| {
            for i in (0..RECORDS).step_by(RECORDS / 10) {
                tx.put(&key(i + 7), value(i + 7, round))?;
            }
            Ok(())
        })
        .await
        .unwrap();
}

fn ok(report: &SyncReport) {
    assert!(report.errors.is_empty(), "{:?}", report.errors);
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let tmp = tempfile::Builder::new()
        .prefix("records-bench")
        .tempdir()
        .unwrap();
    let base = tmp.path();
    let store = rt.block_on(RecordStore::open(base.join("a.db"))).unwrap();
    rt.block_on(fill(&store));

    if std::env::var_os("RECORDS_ONCE").is_some() {
        once(&rt, base, &store);
        return;
    }
    let mut group = c.benchmark_group("records");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));

    let probe = key(RECORDS / 2);
    group.bench_function("get", |b| {
        b.iter(|| rt.block_on(store.get(&probe)).unwrap().unwrap())
    });

    let mut round = 0;
    group.bench_function("transaction_10k_puts", |b| {
        b.iter(|| {
            round += 1;
            let r = round;
            rt.block_on(store.transaction(move |tx| {
                for i in 0..10_000 {
                    tx.put(&key(i), value(i, r))?;
                }
                Ok(())
            }))
            .unwrap()
        })
    });

    // A synced device for the no-change sync (and the source of downloads).
    let main_url = rt.block_on(server(&base.join("server-main")));
    let mut a = rt.block_on(device(&base.join("a-state"), &main_url, store.clone()));
    let first = rt.block_on(a.sync_once()).unwrap();
    ok(&first);
    assert_eq!(first.uploaded as usize, RECORDS, "{first:?}");
    let settle = rt.block_on(a.sync_once()).unwrap();
    assert_eq!(settle.transferred(), 0, "{settle:?}");
    group.bench_function("no_change_sync", |b| {
        b.iter(|| {
            let r = rt.block_on(a.sync_once()).unwrap();
            assert_eq!(r.transferred(), 0, "{r:?}");
            r
        })
    });

    let mut edit_round = 1_000;
    group.bench_function("ten_edits_sync", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                edit_round += 1;
                rt.block_on(edit_ten(&store, edit_round));
                let start = Instant::now();
                let r = rt.block_on(a.sync_once()).unwrap();
                total += start.elapsed();
                ok(&r);
                assert_eq!(r.uploaded, 10, "{r:?}");
            }
            total
        })
    });

    let mut n = 0;
    group.bench_function("first_sync_upload", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                n += 1;
                let url = rt.block_on(server(&base.join(format!("server-up-{n}"))));
                let mut dev =
                    rt.block_on(device(&base.join(format!("up-{n}")), &url, store.clone()));
                let start = Instant::now();
                let r = rt.block_on(dev.sync_once()).unwrap();
                total += start.elapsed();
                ok(&r);
                assert_eq!(r.uploaded as usize, RECORDS, "{r:?}");
            }
            total
        })
    });

    group.bench_function("first_sync_download", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                n += 1;
                let dir = base.join(format!("down-{n}"));
                std::fs::create_dir_all(&dir).unwrap();
                let fresh = rt
                    .block_on(RecordStore::open(dir.join("records.db")))
                    .unwrap();
                let mut dev = rt.block_on(device(&dir, &main_url, fresh));
                let start = Instant::now();
                let r = rt.block_on(dev.sync_once()).unwrap();
                total += start.elapsed();
                ok(&r);
                assert_eq!(r.downloaded as usize, RECORDS, "{r:?}");
            }
            total
        })
    });
    group.finish();
}

/// `RECORDS_ONCE=1`: each sync scenario once, timed with its phases on stderr (for
/// profiling; the criterion figures come from the normal run).
fn once(rt: &tokio::runtime::Runtime, base: &Path, store: &RecordStore) {
    // CPU seconds of this process (user + system), from /proc: on a shared machine the wall
    // time swings with other guests, the CPU time much less.
    let cpu = || -> f64 {
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map_or("", |(_, rest)| rest)
            .split_whitespace()
            .collect();
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        (ticks(11) + ticks(12)) / 100.0
    };
    let url = rt.block_on(server(&base.join("server-once")));
    let mut a = rt.block_on(device(&base.join("once-a"), &url, store.clone()));
    let (t, c) = (Instant::now(), cpu());
    let r = rt.block_on(a.sync_once()).unwrap();
    ok(&r);
    eprintln!(
        "first upload: {:?}, {:.2} s CPU ({} items)",
        t.elapsed(),
        cpu() - c,
        r.uploaded
    );
    rt.block_on(a.sync_once()).unwrap();
    let t = Instant::now();
    let r = rt.block_on(a.sync_once()).unwrap();
    eprintln!(
        "no-change sync: {:?} ({} transferred)",
        t.elapsed(),
        r.transferred()
    );
    for round in 1..=3 {
        rt.block_on(edit_ten(store, round));
        let t = Instant::now();
        let r = rt.block_on(a.sync_once()).unwrap();
        eprintln!(
            "sync after ten edits: {:?} ({} uploaded)",
            t.elapsed(),
            r.uploaded
        );
    }
    // The same after a restart: a new engine over the same state has settled nothing yet, so
    // its first pass scans and reconciles every record (what every sync with edits cost before
    // partial passes).
    drop(a);
    let mut a = rt.block_on(device(&base.join("once-a"), &url, store.clone()));
    rt.block_on(edit_ten(store, 4));
    let t = Instant::now();
    let r = rt.block_on(a.sync_once()).unwrap();
    eprintln!(
        "sync after ten edits, full scan (first after a restart): {:?} ({} uploaded)",
        t.elapsed(),
        r.uploaded
    );
    let dir = base.join("once-b");
    std::fs::create_dir_all(&dir).unwrap();
    let fresh = rt
        .block_on(RecordStore::open(dir.join("records.db")))
        .unwrap();
    let mut b = rt.block_on(device(&dir, &url, fresh));
    let (t, c) = (Instant::now(), cpu());
    let r = rt.block_on(b.sync_once()).unwrap();
    ok(&r);
    eprintln!(
        "first download: {:?}, {:.2} s CPU ({} items)",
        t.elapsed(),
        cpu() - c,
        r.downloaded
    );
}

criterion_group!(records, benches);
criterion_main!(records);
