//! Scale-out: two `sync-server` processes on one PostgreSQL database, device A on the
//! first and device B on the second; and a short `sync-load-test` through both.
//!
//! Needs `SYNC_TEST_POSTGRES_URL` (start one with `eval "$(bash .ci/postgres.sh)"`). Without it
//! the tests say SKIPPED loudly, except under CI (`CI` set), where a missing database fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{files, sync_once, write, SYNC_LOAD_TEST, SYNC_SERVER};
use sync_core::{
    ContentHash, Key, Precondition, PushOutcome, PushRequest, Revision, Stamp, Transport,
};
use transport_http::HttpTransport;

const URL_VAR: &str = "SYNC_TEST_POSTGRES_URL";

fn database_url(test: &str) -> Option<String> {
    match std::env::var(URL_VAR) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ if std::env::var_os("CI").is_some() => panic!(
            "{test}: {URL_VAR} is not set, but CI is: the PostgreSQL tests must not be skipped in CI. \
             Start PostgreSQL first: eval \"$(bash .ci/postgres.sh)\""
        ),
        _ => {
            eprintln!("SKIPPED {test}: set {URL_VAR} (see .ci/postgres.sh)");
            None
        }
    }
}

/// A fresh, empty schema on the test database; returns a URL that uses it.
fn fresh_schema(url: &str) -> String {
    let name = format!(
        "scale_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        client
            .batch_execute(&format!("CREATE SCHEMA {name}"))
            .await
            .unwrap();
    });
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}options=-c%20search_path%3D{name}")
}

/// A `sync-server --postgres` process, killed when dropped.
struct PgServer {
    child: Child,
    url: String,
}

impl PgServer {
    fn start(database: &str) -> PgServer {
        PgServer::start_with(database, &["--token", "alice:alice-token-0123456789"])
    }

    fn start_with(database: &str, tokens: &[&str]) -> PgServer {
        let mut cmd = Command::new(SYNC_SERVER);
        cmd.args(["--listen", "127.0.0.1:0", "--postgres", database])
            .args(tokens)
            .stderr(Stdio::inherit());
        let (child, url) = common::spawn_listening(cmd);
        PgServer { child, url }
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn two_servers_on_one_database_converge_order_revisions_and_wake_each_other() {
    let Some(base) = database_url("two_servers_on_one_database") else {
        return;
    };
    let database = fresh_schema(&base);
    let (s1, s2) = (PgServer::start(&database), PgServer::start(&database));
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();

    // Convergence: A on the first server, B on the second.
    for i in 0..30 {
        write(
            &a.join(format!("docs/{i}.txt")),
            format!("from A {i}").as_bytes(),
        );
    }
    let (code, report) = sync_once(&a, &s1.url, "alice-token-0123456789");
    assert_eq!(code, 0, "{report}");
    let (code, report) = sync_once(&b, &s2.url, "alice-token-0123456789");
    assert_eq!(
        (code, report["downloaded"].as_u64()),
        (0, Some(30)),
        "{report}"
    );
    write(&b.join("docs/0.txt"), b"edited on B");
    assert_eq!(sync_once(&b, &s2.url, "alice-token-0123456789").0, 0);
    assert_eq!(sync_once(&a, &s1.url, "alice-token-0123456789").0, 0);
    assert_eq!(files(&a), files(&b));

    let rt = runtime();
    rt.block_on(async {
        let t1 = HttpTransport::new(&s1.url, "alice-token-0123456789".to_owned()).unwrap();
        let t2 = HttpTransport::new(&s2.url, "alice-token-0123456789".to_owned()).unwrap();

        // docs/SPEC.md §2 order: writes through both servers take distinct revisions, and each server's
        // feed lists them in strictly increasing revision order.
        let mut revs = Vec::new();
        for i in 0..20 {
            let t = if i % 2 == 0 { &t1 } else { &t2 };
            let content = format!("interleaved {i}");
            let out = t
                .push(PushRequest {
                    key: Key::new(format!("order/{i}.txt")).unwrap(),
                    precondition: Precondition::Create,
                    hash: ContentHash::of(content.as_bytes()),
                    content: content.into_bytes().into(),
                    stamp: Stamp::at(1, sync_core::NodeId(7)),
                    seen: Revision::ZERO,
                })
                .await
                .unwrap();
            let PushOutcome::Accepted(meta) = out else {
                panic!("{out:?}")
            };
            revs.push(meta.rev);
        }
        assert!(revs.windows(2).all(|w| w[0] < w[1]), "{revs:?}");
        for t in [&t1, &t2] {
            let page = t.changes(None, 10_000).await.unwrap();
            let feed: Vec<Revision> = page.changes.iter().map(|c| c.rev).collect();
            assert!(feed.windows(2).all(|w| w[0] < w[1]), "{feed:?}");
            assert_eq!(page.cursor.rev(), *revs.last().unwrap());
        }

        // A write on the first server wakes a long-poll on the second within 2 s.
        let cursor = t2.changes(None, 10_000).await.unwrap().cursor;
        let waiter = tokio::spawn(async move {
            let start = Instant::now();
            let woke = t2
                .wait(Some(&cursor), Duration::from_secs(20))
                .await
                .unwrap();
            (woke, start.elapsed())
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        let pushed = Instant::now();
        t1.push(PushRequest {
            key: Key::new("wake.txt").unwrap(),
            precondition: Precondition::Create,
            hash: ContentHash::of(b"wake"),
            content: b"wake".to_vec().into(),
            stamp: Stamp::at(1, sync_core::NodeId(7)),
            seen: Revision::ZERO,
        })
        .await
        .unwrap();
        let (woke, _) = waiter.await.unwrap();
        let latency = pushed.elapsed();
        eprintln!("cross-server wake-up after {latency:?}");
        assert!(woke, "the long-poll timed out instead of waking");
        assert!(latency < Duration::from_secs(2), "{latency:?}");
    });
    drop((s1, s2));
}

/// Runs `sync-load-test` with `args` through both `servers` with the tokens
/// `load-token-00000` to `load-token-00003`; checks that it passed with no error and nothing
/// lost, and returns its report.
fn load_test(servers: [&str; 2], args: &[&str]) -> String {
    let out = Command::new(SYNC_LOAD_TEST)
        .args(args)
        .args(["--server", servers[0], "--server", servers[1]])
        .args([
            "--token",
            "load-token-00000",
            "--token",
            "load-token-00001",
            "--token",
            "load-token-00002",
            "--token",
            "load-token-00003",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("\nerrors: 0\n"), "{stdout}");
    assert!(stdout.contains(", lost = 0 ("), "{stdout}");
    stdout.into_owned()
}

#[test]
fn a_short_load_test_through_two_servers_on_one_database_loses_nothing() {
    let Some(base) = database_url("a_short_load_test_through_two_servers") else {
        return;
    };
    let database = fresh_schema(&base);
    let server_tokens = [
        "--token",
        "load:load-token-00000",
        "--token",
        "load:load-token-00001",
        "--token",
        "load:load-token-00002",
        "--token",
        "load:load-token-00003",
    ];
    let (s1, s2) = (
        PgServer::start_with(&database, &server_tokens),
        PgServer::start_with(&database, &server_tokens),
    );
    let stdout = load_test(
        [&s1.url, &s2.url],
        &["--clients", "4", "--seconds", "2", "--keys", "3"],
    );
    assert!(
        stdout.contains("2 external servers on one database"),
        "{stdout}"
    );
    drop((s1, s2));
}

#[test]
fn a_load_test_over_two_tenants_with_small_pools_loses_nothing() {
    let Some(base) = database_url("a_load_test_over_two_tenants") else {
        return;
    };
    // The pool flag needs --postgres (were it taken, the missing folder would exit 1).
    let refused = Command::new(SYNC_SERVER)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--db",
            "/nonexistent-folder/x.db",
        ])
        .args(["--postgres-pool-size", "4"])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2), "{refused:?}");

    let database = fresh_schema(&base);
    // Token t belongs to tenant t mod 2; two pooled connections per server.
    let server_tokens = [
        "--token",
        "load0:load-token-00000",
        "--token",
        "load1:load-token-00001",
        "--token",
        "load0:load-token-00002",
        "--token",
        "load1:load-token-00003",
        "--postgres-pool-size",
        "2",
    ];
    let (s1, s2) = (
        PgServer::start_with(&database, &server_tokens),
        PgServer::start_with(&database, &server_tokens),
    );
    let stdout = load_test(
        [&s1.url, &s2.url],
        &[
            "--clients",
            "6",
            "--seconds",
            "2",
            "--keys",
            "3",
            "--tenants",
            "2",
        ],
    );
    assert!(stdout.contains("6 clients of 2 tenants"), "{stdout}");
    drop((s1, s2));

    // Each tenant sees only its own clients' keys: tenant load1 holds clients 1, 3 and 5.
    let s3 = PgServer::start_with(&database, &server_tokens);
    let seen: Vec<String> = runtime().block_on(async {
        let t = HttpTransport::new(&s3.url, "load-token-00001".to_owned()).unwrap();
        let page = t.changes(None, 1000).await.unwrap();
        page.changes
            .iter()
            .map(|m| m.key.as_str().to_owned())
            .collect()
    });
    let clients: std::collections::BTreeSet<&str> =
        seen.iter().filter_map(|k| k.split('/').nth(1)).collect();
    assert_eq!(
        clients.into_iter().collect::<Vec<_>>(),
        ["c001", "c003", "c005"],
        "{seen:?}"
    );
    drop(s3);
}
