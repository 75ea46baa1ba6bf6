//! `PgServerStore` against a real PostgreSQL (`SYNC_TEST_POSTGRES_URL`, see `.ci/postgres.sh`):
//! concurrent writers get distinct gap-free revisions (one store, and two stores on one
//! database), racing writers on two stores (shared parent folders, batches, one contested key)
//! lose no write and get each revision once, a write through one store wakes a long-poll on
//! another, a restart keeps the epoch
//! and items, stores connecting at once migrate safely, a killed listener connection comes
//! back, and connection errors say what to do without showing the password.
//!
//! Test code: it may panic and unwrap.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use store_postgres::{PgServerStore, PgStoreError};
use sync_core::{
    ContentHash, Error, ErrorClass, Key, NodeId, Precondition, PushOutcome, PushRequest, Revision,
    ServerConfig, ServerStore, Stamp, TenantId,
};

fn push_req(key: &str, content: &[u8], precondition: Precondition) -> PushRequest {
    PushRequest {
        key: Key::new(key).unwrap(),
        precondition,
        content: Bytes::copy_from_slice(content),
        hash: ContentHash::of(content),
        stamp: Stamp::at(1_000_000, NodeId(7)),
        seen: Revision::ZERO,
    }
}

fn accepted(outcome: PushOutcome) -> sync_core::ItemMeta {
    match outcome {
        PushOutcome::Accepted(m) => m,
        other => panic!("expected Accepted, got {other:?}"),
    }
}

async fn connect(url: &str) -> PgServerStore {
    PgServerStore::connect(url, ServerConfig::default())
        .await
        .unwrap()
}

/// Pushes `keys` concurrently, each from its own task, round-robin over `stores`; returns
/// every accepted revision, sorted.
async fn push_concurrently(stores: &[PgServerStore], tenant: &TenantId, keys: usize) -> Vec<u64> {
    let mut tasks = Vec::new();
    for i in 0..keys {
        let store = stores[i % stores.len()].clone();
        let tenant = tenant.clone();
        tasks.push(tokio::spawn(async move {
            let body = format!("writer {i}");
            let outcome = store
                .push(
                    &tenant,
                    push_req(&format!("k{i:02}"), body.as_bytes(), Precondition::Create),
                )
                .await
                .unwrap();
            accepted(outcome).rev.0
        }));
    }
    let mut revs = Vec::new();
    for t in tasks {
        revs.push(t.await.unwrap());
    }
    revs.sort_unstable();
    revs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_writers_get_fifty_distinct_gap_free_revisions() {
    let Some(server) = common::server_url("fifty_concurrent_writers") else {
        return;
    };
    let schemas = common::Schemas::new(&server);
    let expected: Vec<u64> = (1..=50).collect();

    // Fifty tasks through one store.
    let (_, url) = schemas.fresh().await;
    let store = connect(&url).await;
    let tenant = TenantId::new("busy");
    let started = Instant::now();
    let revs = push_concurrently(std::slice::from_ref(&store), &tenant, 50).await;
    eprintln!(
        "50 concurrent pushes through one store: {:?}",
        started.elapsed()
    );
    assert_eq!(revs, expected, "one store");
    let page = store.changes(&tenant, None, 100).await.unwrap();
    let feed: Vec<u64> = page.changes.iter().map(|m| m.rev.0).collect();
    assert_eq!(feed, expected, "the feed lists every revision in order");
    assert_eq!(page.cursor.rev(), Revision(50));

    // Twenty-five each through two stores (two pools, two listeners) on one database.
    let (_, url) = schemas.fresh().await;
    let (a, b) = (connect(&url).await, connect(&url).await);
    assert_eq!(a.epoch().await.unwrap(), b.epoch().await.unwrap());
    let started = Instant::now();
    let revs = push_concurrently(&[a.clone(), b.clone()], &tenant, 50).await;
    eprintln!(
        "50 concurrent pushes through two stores: {:?}",
        started.elapsed()
    );
    assert_eq!(revs, expected, "two stores");
    let page = b.changes(&tenant, None, 100).await.unwrap();
    assert_eq!(page.changes.len(), 50);
    assert_eq!(page.cursor.rev(), Revision(50));

    // Concurrent overwrites of one key with the same base: exactly one wins.
    let base = accepted(
        a.push(&tenant, push_req("hot", b"0", Precondition::Create))
            .await
            .unwrap(),
    );
    let mut tasks = Vec::new();
    for i in 0..10u8 {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        let tenant = tenant.clone();
        tasks.push(tokio::spawn(async move {
            store
                .push(
                    &tenant,
                    push_req("hot", &[b'a' + i], Precondition::Match(base.rev)),
                )
                .await
                .unwrap()
        }));
    }
    let mut wins = 0;
    for t in tasks {
        if let PushOutcome::Accepted(m) = t.await.unwrap() {
            assert_eq!(m.rev, Revision(base.rev.0 + 1));
            wins += 1;
        }
    }
    assert_eq!(
        wins, 1,
        "exactly one of ten writers with the same base wins"
    );
    drop((store, a, b));
    schemas.drop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_through_one_store_wakes_a_wait_on_another() {
    let Some(server) = common::server_url("a_write_through_one_store_wakes_a_wait_on_another")
    else {
        return;
    };
    let schemas = common::Schemas::new(&server);
    let (_, url) = schemas.fresh().await;
    let (writer, waiter) = (connect(&url).await, connect(&url).await);
    let tenant = TenantId::new("alice");
    let head = waiter.changes(&tenant, None, 10).await.unwrap().cursor;

    let mut worst = Duration::ZERO;
    let mut cursor = head;
    for round in 0..5 {
        let w = waiter.clone();
        let t = tenant.clone();
        let since = cursor;
        let wait = tokio::spawn(async move {
            let r = w.wait(&t, Some(&since), Duration::from_secs(10)).await;
            (r, Instant::now())
        });
        // Let the waiter check the feed and go to sleep on its channel.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            !wait.is_finished(),
            "round {round}: wait returned before any write"
        );
        let pushed = Instant::now();
        writer
            .push(
                &tenant,
                push_req(&format!("r{round}"), b"x", Precondition::Create),
            )
            .await
            .unwrap();
        let (woken, at) = wait.await.unwrap();
        assert!(woken.unwrap(), "round {round}: the wait saw the write");
        let latency = at.duration_since(pushed);
        worst = worst.max(latency);
        assert!(
            latency < Duration::from_secs(2),
            "round {round}: woken after {latency:?}"
        );
        cursor = waiter
            .changes(&tenant, Some(&cursor), 10)
            .await
            .unwrap()
            .cursor;
    }
    eprintln!("cross-store wake-up, worst of 5 (push start to wait return): {worst:?}");

    // Another tenant's write does not end the wait.
    let w = waiter.clone();
    let t = tenant.clone();
    let since = cursor;
    let wait =
        tokio::spawn(async move { w.wait(&t, Some(&since), Duration::from_millis(800)).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    writer
        .push(
            &TenantId::new("bob"),
            push_req("b", b"b", Precondition::Create),
        )
        .await
        .unwrap();
    assert!(
        !wait.await.unwrap().unwrap(),
        "bob's write woke alice's wait"
    );
    drop((writer, waiter));
    schemas.drop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_listener_connection_reconnects_and_wakes_again() {
    let Some(server) = common::server_url("a_killed_listener_connection_reconnects") else {
        return;
    };
    let schemas = common::Schemas::new(&server);
    let (name, url) = schemas.fresh().await;
    let (writer, waiter) = (connect(&url).await, connect(&url).await);
    let tenant = TenantId::new("alice");
    let head = waiter.changes(&tenant, None, 10).await.unwrap().cursor;

    let admin = common::admin(&server).await;
    let killed = admin
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
            &[&format!("{name} (listener)")],
        )
        .await
        .unwrap();
    assert_eq!(
        killed.len(),
        2,
        "both stores' listener connections were found"
    );

    // Wait for both listeners to be back (they reconnect after 100 ms).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let n: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
                &[&format!("{name} (listener)")],
            )
            .await
            .unwrap()
            .get(0);
        if n == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "listeners did not come back: {n}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;

    let w = waiter.clone();
    let t = tenant.clone();
    let wait = tokio::spawn(async move { w.wait(&t, Some(&head), Duration::from_secs(10)).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!wait.is_finished());
    let pushed = Instant::now();
    writer
        .push(
            &tenant,
            push_req("after-reconnect", b"x", Precondition::Create),
        )
        .await
        .unwrap();
    assert!(wait.await.unwrap().unwrap());
    let latency = pushed.elapsed();
    assert!(latency < Duration::from_secs(2), "woken after {latency:?}");
    drop((writer, waiter));
    schemas.drop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_the_epoch_the_items_and_the_counter() {
    let Some(server) = common::server_url("a_restart_keeps_the_epoch") else {
        return;
    };
    let schemas = common::Schemas::new(&server);
    let (_, url) = schemas.fresh().await;
    let tenant = TenantId::new("alice");
    let store = connect(&url).await;
    let epoch = store.epoch().await.unwrap();
    let m = accepted(
        store
            .push(
                &tenant,
                push_req("a/b.txt", b"before", Precondition::Create),
            )
            .await
            .unwrap(),
    );
    let cursor = store.changes(&tenant, None, 10).await.unwrap().cursor;
    drop(store);

    let store = connect(&url).await;
    assert_eq!(store.epoch().await.unwrap(), epoch, "epoch after a restart");
    let fetched = store
        .fetch(&tenant, &Key::new("a/b.txt").unwrap(), None)
        .await
        .unwrap();
    assert_eq!(fetched.content, Bytes::from_static(b"before"));
    let page = store.changes(&tenant, Some(&cursor), 10).await.unwrap();
    assert!(page.changes.is_empty(), "an old cursor still works");
    let next = accepted(
        store
            .push(
                &tenant,
                push_req("a/b.txt", b"after", Precondition::Match(m.rev)),
            )
            .await
            .unwrap(),
    );
    assert_eq!(next.rev, Revision(m.rev.0 + 1), "the counter continues");
    drop(store);

    // After a restore from backup: a new epoch, old cursors expire, items and counter stay.
    let store = PgServerStore::connect_restored(&url, ServerConfig::default(), Default::default())
        .await
        .unwrap();
    assert_ne!(
        store.epoch().await.unwrap(),
        epoch,
        "a restored store has a new epoch"
    );
    assert_eq!(
        store.changes(&tenant, Some(&cursor), 10).await,
        Err(Error::CursorExpired)
    );
    let page = store.changes(&tenant, None, 10).await.unwrap();
    assert_eq!(page.changes.last().unwrap().rev, next.rev);
    let restored_epoch = store.epoch().await.unwrap();
    drop(store);
    assert_eq!(
        connect(&url).await.epoch().await.unwrap(),
        restored_epoch,
        "kept by later starts"
    );
    schemas.drop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stores_connecting_at_once_migrate_once_and_share_one_epoch() {
    let Some(server) = common::server_url("stores_connecting_at_once_migrate") else {
        return;
    };
    let schemas = common::Schemas::new(&server);
    let (name, url) = schemas.fresh().await;
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { PgServerStore::connect(&url, ServerConfig::default()).await })
        })
        .collect();
    let mut epochs = Vec::new();
    let mut stores = Vec::new();
    for t in tasks {
        let store = t.await.unwrap().unwrap();
        epochs.push(store.epoch().await.unwrap());
        stores.push(store);
    }
    assert!(epochs.iter().all(|e| *e == epochs[0]), "{epochs:?}");
    let admin = common::admin(&server).await;
    let versions: Vec<i32> = admin
        .query(
            &format!("SELECT version FROM {name}.schema_migrations ORDER BY version"),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(versions, vec![1, 2, 3, 4], "each migration recorded once");

    // A database migrated by a newer version is refused, untouched.
    admin
        .batch_execute(&format!(
            "INSERT INTO {name}.schema_migrations (version) VALUES (99)"
        ))
        .await
        .unwrap();
    let err = PgServerStore::connect(&url, ServerConfig::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, PgStoreError::NewerSchema { found: 99, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("Upgrade"), "{err}");
    drop(stores);
    schemas.drop_all().await;
}

#[tokio::test]
async fn an_unreachable_database_is_a_storage_error_that_hides_the_password() {
    // Runs without a test server: port 1 on loopback refuses connections.
    let url = "postgres://someone:hunter2secret@127.0.0.1:1/nothing?connect_timeout=5";
    let err = PgServerStore::connect(url, ServerConfig::default())
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, PgStoreError::Connect { .. }), "{msg}");
    assert!(
        msg.contains("postgres://someone@127.0.0.1:1/nothing"),
        "{msg}"
    );
    assert!(msg.contains("Is it running"), "{msg}");
    assert!(!msg.contains("hunter2secret"), "{msg}");
    let core: Error = err.into();
    assert_eq!(core.class(), ErrorClass::Storage);
    assert!(!core.to_string().contains("hunter2secret"));

    let err = PgServerStore::connect("postgres://u:hunter2secret@[bad", ServerConfig::default())
        .await
        .unwrap_err();
    assert!(matches!(err, PgStoreError::InvalidUrl { .. }), "{err}");
    assert!(!err.to_string().contains("hunter2secret"), "{err}");

    let err = PgServerStore::connect(
        "postgres://u:hunter2secret@127.0.0.1:1/db?sslmode=require",
        ServerConfig::default(),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("TLS"), "{err}");
    assert!(!err.to_string().contains("hunter2secret"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blobs_are_stored_once_and_large_content_round_trips() {
    let Some(server) = common::server_url("blobs_are_stored_once") else {
        return;
    };
    let schemas = common::Schemas::new(&server);
    let (name, url) = schemas.fresh().await;
    let store = Arc::new(connect(&url).await);
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    for (tenant, key) in [("t1", "one.bin"), ("t1", "two.bin"), ("t2", "three.bin")] {
        accepted(
            store
                .push(
                    &TenantId::new(tenant),
                    push_req(key, &big, Precondition::Create),
                )
                .await
                .unwrap(),
        );
    }
    let got = store
        .fetch(&TenantId::new("t2"), &Key::new("three.bin").unwrap(), None)
        .await
        .unwrap();
    assert_eq!(got.content.len(), big.len());
    assert!(got.content == big[..]);
    let admin = common::admin(&server).await;
    let n: i64 = admin
        .query_one(&format!("SELECT count(*) FROM {name}.blobs"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1, "one blob for three items with the same content");
    drop(store);
    schemas.drop_all().await;
}

/// What one racing writer was told was accepted: (key, revision, content hash), in order, and
/// the revision each of its accepted writes of `hot` was based on.
type Accepted = (Vec<(String, u64, ContentHash)>, Vec<u64>);

/// One writer of `racing_writers_on_two_stores_lose_nothing`: `rounds` times, overwrites its
/// own keys under parent folders every writer creates at once, pushes a batch of two, and
/// tries to take the shared key `hot` from the revision it last saw.
async fn racing_writer(
    store: PgServerStore,
    tenant: TenantId,
    w: usize,
    rounds: usize,
) -> Accepted {
    let (mut log, mut hot_bases) = (Vec::new(), Vec::new());
    let mut mine: Vec<Option<Revision>> = vec![None; 3];
    let mut hot_seen: Option<Revision> = None;
    let pre = |rev: Option<Revision>| rev.map_or(Precondition::Create, Precondition::Match);
    for round in 0..rounds {
        let j = round % 3;
        let key = format!("shared/w{w}/k{j}");
        let body = format!("writer {w} round {round}");
        let outcome = store
            .push(&tenant, push_req(&key, body.as_bytes(), pre(mine[j])))
            .await
            .unwrap();
        let m = accepted(outcome);
        mine[j] = Some(m.rev);
        log.push((key, m.rev.0, ContentHash::of(body.as_bytes())));

        let batch: Vec<(String, String)> = (0..2)
            .map(|b| {
                (
                    format!("shared/batch/w{w}/r{round}/b{b}"),
                    format!("batch {w} {round} {b}"),
                )
            })
            .collect();
        let reqs = batch
            .iter()
            .map(|(k, body)| push_req(k, body.as_bytes(), Precondition::Create))
            .collect();
        let results = store.push_many(&tenant, reqs).await.unwrap();
        assert_eq!(results.len(), 2);
        for ((k, body), r) in batch.iter().zip(results) {
            let m = accepted(r.unwrap());
            log.push((k.clone(), m.rev.0, ContentHash::of(body.as_bytes())));
        }

        let body = format!("hot from {w} round {round}");
        match store
            .push(&tenant, push_req("hot", body.as_bytes(), pre(hot_seen)))
            .await
            .unwrap()
        {
            PushOutcome::Accepted(m) => {
                hot_bases.push(hot_seen.map_or(0, |r| r.0));
                hot_seen = Some(m.rev);
                log.push(("hot".to_owned(), m.rev.0, ContentHash::of(body.as_bytes())));
            }
            PushOutcome::Conflict { current } => hot_seen = current.map(|c| c.rev),
        }
    }
    (log, hot_bases)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_writers_on_two_stores_lose_nothing() {
    let Some(server) = common::server_url("racing_writers_on_two_stores_lose_nothing") else {
        return;
    };
    let schemas = common::Schemas::new(&server);
    let (_, url) = schemas.fresh().await;
    let (a, b) = (connect(&url).await, connect(&url).await);
    let tenant = TenantId::new("race");
    let (writers, rounds) = (8, 12);
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let store = if w % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(racing_writer(store, tenant.clone(), w, rounds))
        })
        .collect();
    let (mut logs, mut hot_bases) = (Vec::new(), Vec::new());
    for t in tasks {
        let (log, bases) = t.await.unwrap();
        logs.push(log);
        hot_bases.extend(bases);
    }
    // Each version of `hot` is won once: no two writers overwrite the same base.
    let wins = hot_bases.len();
    hot_bases.sort_unstable();
    hot_bases.dedup();
    assert_eq!(hot_bases.len(), wins, "two writers won with the same base");

    // Each writer's revisions increase: a later write never gets an older revision.
    for (w, log) in logs.iter().enumerate() {
        let revs: Vec<u64> = log.iter().map(|(_, rev, _)| *rev).collect();
        assert!(revs.windows(2).all(|p| p[0] < p[1]), "writer {w}: {revs:?}");
    }
    let all: Vec<&(String, u64, ContentHash)> = logs.iter().flatten().collect();
    let hot_wins = all.iter().filter(|(k, _, _)| k == "hot").count();
    assert!(hot_wins >= 1, "someone takes the hot key");

    // Every revision issued, from every key's history: each exactly once, 1..=head, no gap.
    let page = a.changes(&tenant, None, 10_000).await.unwrap();
    assert!(!page.more);
    let head = page.cursor.rev().0;
    let feed: Vec<u64> = page.changes.iter().map(|m| m.rev.0).collect();
    assert!(feed.windows(2).all(|p| p[0] < p[1]), "feed in order");
    let mut issued = Vec::new();
    let mut histories = std::collections::HashMap::new();
    for m in &page.changes {
        let h = sync_core::full_history(&b, &tenant, &m.key).await.unwrap();
        issued.extend(h.iter().map(|v| v.rev.0));
        histories.insert(m.key.as_str().to_owned(), h);
    }
    issued.sort_unstable();
    let expected: Vec<u64> = (1..=head).collect();
    assert_eq!(issued, expected, "every revision once, none missing");
    // Folders: shared, shared/batch, 8 writer folders, 8 batch writer folders, 12 x 8 rounds.
    let folders = 2 + 2 * writers + writers * rounds;
    assert_eq!(
        head as usize,
        all.len() + folders,
        "accepted writes + folders"
    );

    // No accepted write lost: each is in its key's history with its content, and each key's
    // current version is its last accepted write.
    let mut last: std::collections::HashMap<&str, (u64, ContentHash)> = Default::default();
    for (key, rev, hash) in &all {
        let h = &histories[key.as_str()];
        assert!(
            h.iter().any(|v| v.rev.0 == *rev && v.hash == Some(*hash)),
            "{key} rev {rev} missing from its history"
        );
        let e = last.entry(key.as_str()).or_insert((*rev, *hash));
        if *rev > e.0 {
            *e = (*rev, *hash);
        }
    }
    for (key, (rev, hash)) in last {
        let f = a
            .fetch(&tenant, &Key::new(key).unwrap(), None)
            .await
            .unwrap();
        assert_eq!(
            (f.version.rev.0, ContentHash::of(&f.content)),
            (rev, hash),
            "{key}"
        );
    }
    drop((a, b));
    schemas.drop_all().await;
}

/// Retention on PostgreSQL: a dropped version's blob row goes when nothing refers to it, one a
/// kept version (of another tenant) refers to stays; and writers of shared content racing
/// the prunes of two stores never leave a version whose blob is gone (the blob locks of
/// `sync_apply` and `sync_prune`). Large contents, which a write does not send when it finds
/// them stored, are the case a prune could otherwise break.
#[tokio::test]
async fn retention_drops_unreferenced_blobs_and_never_a_referenced_one() {
    let Some(server) = common::server_url("retention_drops_unreferenced_blobs") else {
        return;
    };
    let schemas = common::Schemas::new(&server);
    let (name, url) = schemas.fresh().await;
    let config = || ServerConfig {
        retention: Some(sync_core::server::Retention::new(1, Duration::ZERO)),
        ..ServerConfig::default()
    };
    let a = PgServerStore::connect(&url, config()).await.unwrap();
    let b = PgServerStore::connect(&url, config()).await.unwrap();
    let admin = common::admin(&server).await;
    let blobs_sql = format!("SELECT hash FROM {name}.blobs ORDER BY hash");
    let large = |seed: u8| vec![seed; 70 * 1024];
    let (t, u) = (TenantId::new("t"), TenantId::new("u"));
    let first = accepted(
        a.push(&t, push_req("k", &large(1), Precondition::Create))
            .await
            .unwrap(),
    );
    accepted(
        b.push(&u, push_req("k", &large(1), Precondition::Create))
            .await
            .unwrap(),
    );
    let second = accepted(
        a.push(&t, push_req("k", b"small", Precondition::Match(first.rev)))
            .await
            .unwrap(),
    );
    accepted(
        a.push(
            &t,
            push_req("k", &large(3), Precondition::Match(second.rev)),
        )
        .await
        .unwrap(),
    );
    let mut expected = vec![
        ContentHash::of(&large(1)).to_hex(),
        ContentHash::of(&large(3)).to_hex(),
    ];
    expected.sort();
    let stored: Vec<String> = admin
        .query(&blobs_sql, &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(stored, expected, "the small blob went, u's stayed");
    assert!(matches!(
        a.fetch(&t, &Key::new("k").unwrap(), Some(first.rev)).await,
        Err(Error::NotFound { .. })
    ));

    // Races: in each round, tenant t overwrites "k2" with new content (which drops the
    // version before and so its content), while tenant u, on the other store, at the same
    // moment writes a new key with the content t is dropping: found stored by u's read, and
    // gone by its apply unless the blob locks hold.
    let rounds = 80u8;
    let barrier = Arc::new(tokio::sync::Barrier::new(2));
    let content = |round: u8| vec![round; 70 * 1024];
    let mut rev = accepted(
        a.push(&t, push_req("k2", &content(0), Precondition::Create))
            .await
            .unwrap(),
    )
    .rev;
    let overwriter = {
        let (a, t, barrier) = (a.clone(), t.clone(), barrier.clone());
        tokio::spawn(async move {
            for round in 1..=rounds {
                barrier.wait().await;
                let req = push_req("k2", &content(round), Precondition::Match(rev));
                rev = accepted(a.push(&t, req).await.unwrap()).rev;
            }
        })
    };
    let copier = {
        let (b, u, barrier) = (b.clone(), u.clone(), barrier.clone());
        tokio::spawn(async move {
            for round in 1..=rounds {
                barrier.wait().await;
                let k = format!("copy-{round}");
                let req = push_req(&k, &content(round - 1), Precondition::Create);
                accepted(b.push(&u, req).await.unwrap());
            }
        })
    };
    overwriter.await.unwrap();
    copier.await.unwrap();
    let dangling: i64 = admin
        .query_one(
            &format!(
                "SELECT count(*) FROM {name}.versions v WHERE v.hash IS NOT NULL \
                 AND NOT EXISTS (SELECT 1 FROM {name}.blobs b WHERE b.hash = v.hash)"
            ),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(dangling, 0, "versions whose blob is gone");
    for round in 1..=rounds {
        let k = Key::new(format!("copy-{round}")).unwrap();
        let f = b.fetch(&u, &k, None).await.unwrap();
        assert_eq!(f.content, content(round - 1), "{k}");
    }
    drop((a, b));
    schemas.drop_all().await;
}

/// What retention costs a write on PostgreSQL (a measurement, not a check: `cargo test -p
/// store-postgres --test postgres retention_write_cost -- --ignored --nocapture`, the
/// command of docs/BENCHMARKS.md; add `--release` for optimised code): 1,000 overwrites of one key with new content each, without retention and
/// with `Retention::new(10, 0)` (from the 11th write on, each write drops one version and its
/// blob in `sync_prune`), three rounds alternating, each on a fresh schema; prints each round
/// and the medians.
#[tokio::test]
#[ignore = "a measurement; run it by name with --ignored --nocapture"]
async fn retention_write_cost() {
    let Some(server) = common::server_url("retention_write_cost") else {
        return;
    };
    let schemas = common::Schemas::new(&server);
    let round = |retention: Option<sync_core::server::Retention>| {
        let schemas = schemas.clone();
        async move {
            let (_, url) = schemas.fresh().await;
            let config = ServerConfig {
                retention,
                ..ServerConfig::default()
            };
            let s = PgServerStore::connect(&url, config).await.unwrap();
            let t = TenantId::new("t");
            let mut rev = None;
            let started = Instant::now();
            for i in 0..1_000u32 {
                let pre = rev.map_or(Precondition::Create, Precondition::Match);
                let req = push_req("k.txt", format!("content {i}").as_bytes(), pre);
                rev = Some(accepted(s.push(&t, req).await.unwrap()).rev);
            }
            started.elapsed() / 1_000
        }
    };
    let (mut off, mut on) = (Vec::new(), Vec::new());
    for r in 0..3 {
        off.push(round(None).await);
        on.push(round(Some(sync_core::server::Retention::new(10, Duration::ZERO))).await);
        println!(
            "round {r}: per write {:?} without retention, {:?} with",
            off[r], on[r]
        );
    }
    off.sort();
    on.sort();
    println!(
        "median per write: {:?} without, {:?} with retention (x{:.2})",
        off[1],
        on[1],
        on[1].as_secs_f64() / off[1].as_secs_f64()
    );
    schemas.drop_all().await;
}
