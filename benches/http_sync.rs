//! Criterion benchmarks of folder sync over HTTP on loopback (issue 5 item 7): the tree of
//! `benches/folder_sync.rs` (10,000 files of 8 KiB, 20 per folder, three folder levels deep,
//! `dNN/dNN/dNN/fNNN.bin`) synced through `transport-http` (`HttpTransport`) to a sync server
//! embedded in this process.
//!
//! The server is what `examples/demo.rs` and `examples/sync-server.rs` run: a
//! `SqliteServerStore` (WAL, `synchronous=NORMAL`) in a folder under the temp dir, behind
//! `transport_http::server::router` with `StaticTokens` (one tenant, one token) and the default
//! `ServerOptions`, served by `axum::serve` on 127.0.0.1:0 with `TCP_NODELAY` on every accepted
//! connection. Server and client share this process, its tokio runtime and the machine's cores,
//! so the figures are those of both together.
//!
//! **Rate limit.** The server limits each token (default 5,000 requests/s, bursts of 10,000). A
//! first sync here sends one request per file and folder (10,571) at about 1,600 a second on a
//! 2-core machine, under that, so the default is kept and is not what is measured (with the
//! 200/s default of before, it was). The client has **retries off** (`RetryPolicy::none()`),
//! so a refused (429) or failed request is never retried silently inside a timed sync: it shows
//! up as an error in the report, and the bench fails.
//!
//! - `http_sync/no_change`: an already-synced device runs `sync_once()` with nothing changed;
//!   every iteration checks that nothing was transferred (and, once before measuring, that a
//!   scan with the recorded fingerprints hashes no file).
//! - `http_sync/first_sync_upload`: a device's first sync of the whole tree to an empty server
//!   (a fresh server store and fresh client state each iteration; the tree is reused, so the
//!   page cache is warm). Each iteration checks the report counted every file and folder as
//!   uploaded, and (untimed) that the server's change feed lists every one of them.
//! - `http_sync/first_sync_download`: the first sync of an empty device from a server holding
//!   the tree; each iteration checks every file and folder was downloaded.
//!
//! Only `sync_once()` is timed; starting and stopping servers and opening engines are not.
//!
//! Run: `cargo bench --bench http_sync`. Everything lives in one temporary folder (the system's
//! temp dir) removed at the end. This file only measures; it asserts what it measures is the
//! work it claims to be, and holds no sync logic.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use axum::serve::ListenerExt;
use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use replica_fs::FolderReplica;
use store_sqlite::{SqliteServerStore, SqliteStateStore};
use sync_core::{
    Cursor, EngineConfig, ItemKind, KnownItem, Replica, ServerConfig, StateStore, SyncReport,
    Transport,
};
use sync_engine::folder;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use transport_http::client::{HttpTransport, RetryPolicy};
use transport_http::server::{router, ServerOptions, StaticTokens};

/// Files in the tree.
const FILES: usize = 10_000;
/// Bytes per file.
const FILE_SIZE: usize = 8 * 1024;
/// Files per leaf folder.
const FILES_PER_DIR: usize = 20;
/// Fixed modification times start here (seconds since the epoch), one second apart, as in
/// peers.sh: old enough that no file is inside the scan's racy window.
const T0: u64 = 1_700_000_000;
/// The one tenant and its token.
const TENANT: &str = "bench";
const TOKEN: &str = "bench-token";

/// The leaf folders' fan-out: the smallest `f` with `f³ ≥ leaves`.
fn fan(leaves: usize) -> usize {
    (1..).find(|f| f * f * f >= leaves).unwrap_or(1)
}

/// Writes the tree under `root` (deterministic pseudo-random content, the same as
/// `benches/folder_sync.rs`) and returns how many folders it has.
fn gen_tree(root: &Path) -> usize {
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

/// A sync server embedded in this process, on 127.0.0.1:0.
struct Server {
    url: String,
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Server {
    /// Starts a server on a new SQLite store in `dir` (which must be empty).
    async fn start(dir: &Path) -> Server {
        let store = SqliteServerStore::open(dir.join("server.db"), ServerConfig::default())
            .await
            .expect("open the server store");
        let tokens = StaticTokens::new([(TENANT, TOKEN)]);
        let app = router(Arc::new(store), Arc::new(tokens), ServerOptions::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        // TCP_NODELAY, as the example servers set it: else a response written in two segments
        // waits for the client's delayed ACK.
        let listener = listener.tap_io(|tcp| tcp.set_nodelay(true).expect("TCP_NODELAY"));
        let (shutdown, stop) = oneshot::channel();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stop.await;
                })
                .await
        });
        Server {
            url,
            shutdown,
            task,
        }
    }

    /// A client transport to this server (retries off, see the module doc).
    fn transport(&self) -> HttpTransport {
        HttpTransport::new(&self.url, TOKEN.to_owned())
            .expect("a client transport")
            .with_retry(RetryPolicy::none())
    }

    /// Stops the server and waits until it has closed every connection and dropped its store.
    async fn stop(self) {
        let _ = self.shutdown.send(());
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("the server stops within 30 s")
            .expect("the server task")
            .expect("the server ran without an I/O error");
    }
}

async fn engine(dir: &Path, server: &Server) -> folder::FolderEngine<HttpTransport> {
    folder::open(dir, server.transport(), EngineConfig::default())
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

/// Reads the server's whole change feed and checks it lists exactly `files` live files of
/// `FILE_SIZE` bytes and `folders` live folders.
async fn assert_server_holds(server: &Server, files: usize, folders: usize) {
    let transport = server.transport();
    let mut cursor: Option<Cursor> = None;
    let mut latest = BTreeMap::new();
    loop {
        let page = transport.changes(cursor.as_ref(), 1000).await.unwrap();
        for m in page.changes {
            latest.insert(m.key.clone(), m);
        }
        cursor = Some(page.cursor);
        if !page.more {
            break;
        }
    }
    let live = || latest.values().filter(|m| !m.deleted);
    let (f, d) = (
        live()
            .filter(|m| m.kind == ItemKind::File && m.size == FILE_SIZE as u64)
            .count(),
        live().filter(|m| m.kind == ItemKind::Folder).count(),
    );
    assert_eq!((f, d), (files, folders), "files and folders on the server");
    assert_eq!(
        live().count(),
        files + folders,
        "nothing else on the server"
    );
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let tmp = tempfile::Builder::new()
        .prefix("http-sync-bench")
        .tempdir()
        .unwrap();
    let base = tmp.path();

    // Device A, synced once (untimed) to server `main`: the source of the download and the
    // device of the no-change sync. A second copy of the tree, `up`, is the device of the
    // upload benchmark, whose state (and server) is new in each iteration.
    let a_dir = base.join("a");
    let up_dir = base.join("up");
    let folders = gen_tree(&a_dir);
    assert_eq!(gen_tree(&up_dir), folders);
    let items = (FILES + folders) as u64;
    let main_dir = base.join("server-main");
    fresh_dir(&main_dir);
    let main = rt.block_on(Server::start(&main_dir));
    let mut a = rt.block_on(engine(&a_dir, &main));
    let first = rt.block_on(a.sync_once()).unwrap();
    check(&first);
    assert_eq!(first.uploaded, items, "{first:?}");
    rt.block_on(assert_server_holds(&main, FILES, folders));

    let mut group = c.benchmark_group("http_sync");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .throughput(Throughput::Elements(FILES as u64));

    // (a) A no-change sync of the synced device A.
    let settle = rt.block_on(a.sync_once()).unwrap();
    check(&settle);
    assert_eq!(settle.transferred(), 0, "{settle:?}");
    rt.block_on(assert_no_file_is_hashed(&a_dir));
    group.bench_function("no_change", |b| {
        b.iter(|| {
            let report = rt.block_on(a.sync_once()).unwrap();
            check(&report);
            assert_eq!(report.transferred(), 0, "{report:?}");
            report
        })
    });

    // (b) The first sync of a device to an empty server. Each iteration starts from no client
    // state and a new server on a new store; only `sync_once` is timed.
    let up_server_dir = base.join("server-up");
    group.bench_function("first_sync_upload", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                fresh_dir(&up_server_dir);
                let _ = fs::remove_dir_all(up_dir.join(".sync"));
                let server = rt.block_on(Server::start(&up_server_dir));
                let mut dev = rt.block_on(engine(&up_dir, &server));
                let start = Instant::now();
                let report = rt.block_on(dev.sync_once()).unwrap();
                total += start.elapsed();
                check(&report);
                assert_eq!(report.uploaded, items, "{report:?}");
                rt.block_on(assert_server_holds(&server, FILES, folders));
                drop(dev);
                rt.block_on(server.stop());
            }
            total
        })
    });

    // (b') The first sync of an empty device B from the server A filled.
    let b_dir = base.join("b");
    group.bench_function("first_sync_download", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                fresh_dir(&b_dir);
                let mut dev = rt.block_on(engine(&b_dir, &main));
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

    drop(a);
    rt.block_on(main.stop());
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

criterion_group!(http_sync, benches);
criterion_main!(http_sync);
