//! Criterion benchmarks of folder sync over HTTP on loopback: the tree of
//! `benches/folder_sync.rs` (10,000 files of 8 KiB, 20 per folder, three folder levels deep,
//! `dNN/dNN/dNN/fNNN.bin`) synced through `transport-http` (`HttpTransport`) to a sync server
//! embedded in this process.
//!
//! The server is what `examples/demo.rs` and the `sync-server` program (`crates/sync-cli`) run: a
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

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::serve::ListenerExt;
use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use store_sqlite::SqliteServerStore;
use sync_core::{Cursor, EngineConfig, ItemKind, ServerConfig, Transport};
use sync_engine::folder;

use common::{assert_no_file_is_hashed, check, fresh_dir, gen_tree, FILES, FILE_SIZE};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use transport_http::client::{HttpTransport, RetryPolicy};
use transport_http::server::{router, ServerOptions, StaticTokens};

/// The one tenant and its token.
const TENANT: &str = "bench";
const TOKEN: &str = "bench-token";

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
    let items = FILES as u64; // folders are counted apart (`SyncReport::folders`)
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

criterion_group!(http_sync, benches);
criterion_main!(http_sync);
