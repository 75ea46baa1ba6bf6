//! The [`ServerStore`] conformance suite.
//!
//! Store-only checks (epoch, size limit, stamp clamping against the configured clock) run on
//! the store directly; the protocol checks shared with the transport suite run through a
//! [`LocalTransport`] for two tenants of one store. Test code: it panics on failure and must not
//! be used by the engine.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::FutureExt;

use super::history::{history_is_paged, retention_drops_old_versions, KEEP, KEEP_FOR};
use super::transport::protocol_checks;
use super::{key, push_req, Check, NODE};
use crate::memory::LocalTransport;
use crate::server::Retention;
use crate::{
    ArchiveRequest, ContentFile, ContentHash, Cursor, Epoch, Error, FolderRequest, ManualTime,
    Precondition, PushOutcome, Revision, ServerConfig, ServerStore, Stamp, TenantId,
};

const SUITE: &str = "server_store";

/// The server clock every check's store is made with (milliseconds).
const NOW: u64 = 1_700_000_000_000;

fn config() -> ServerConfig {
    ServerConfig {
        time: ManualTime::new(NOW),
        ..ServerConfig::default()
    }
}

fn tenant() -> TenantId {
    TenantId::new("tenant-a")
}

/// Runs every check of the server-store suite.
///
/// `make` returns a fresh, empty store using the given config (its size limit, skew and
/// clock must be honoured).
pub async fn server_store_suite<S, F>(make: F)
where
    S: ServerStore + 'static,
    F: Fn(ServerConfig) -> BoxFuture<'static, S>,
{
    let c = |name| Check::new(SUITE, name);
    epoch_is_stable(c("epoch_is_stable"), make(config()).await).await;
    too_large(c("too_large"), &make).await;
    push_file_is_push(c("push_file_is_push"), make(config()).await).await;
    stamps_are_clamped(c("stamps_are_clamped"), make(config()).await).await;
    folder_stamps_are_clamped(c("folder_stamps_are_clamped"), make(config()).await).await;
    unknown_tenant_is_empty(c("unknown_tenant_is_empty"), make(config()).await).await;
    fetch_many_keeps_to_its_budget(c("fetch_many_keeps_to_its_budget"), make(config()).await).await;
    history_is_paged(c("history_is_paged"), make(config()).await, tenant()).await;
    let time = ManualTime::new(NOW);
    let kept = make(ServerConfig {
        time: time.clone(),
        retention: Some(Retention::new(KEEP, KEEP_FOR)),
        ..config()
    })
    .await;
    retention_drops_old_versions(c("retention_drops_old_versions"), kept, &time, NOW).await;

    protocol_checks(SUITE, || {
        make(config())
            .map(|store| {
                let store = Arc::new(store);
                (
                    LocalTransport::new(store.clone(), tenant()),
                    LocalTransport::new(store, TenantId::new("tenant-b")),
                )
            })
            .boxed()
    })
    .await;
}

/// `fetch_many` answers in order (an old revision, a missing key, another tenant's view) and
/// stops at its byte budget: the item that would go over it and every later one are `None`.
async fn fetch_many_keeps_to_its_budget<S: ServerStore>(c: Check, s: S) {
    let t = tenant();
    let (a, b, d) = (key("a.txt"), key("b.txt"), key("d.txt"));
    let first = c.ok(
        s.push(&t, push_req(&a, Precondition::Create, b"aaaa"))
            .await,
        "push a",
    );
    let PushOutcome::Accepted(first) = first else {
        c.fail(format!(
            "push of a new key: expected Accepted, got {first:?}"
        ));
    };
    let again = push_req(&a, Precondition::Match(first.rev), b"AAAAAAAA");
    c.ok(s.push(&t, again).await, "push a again");
    c.ok(
        s.push(&t, push_req(&b, Precondition::Create, b"bbbb"))
            .await,
        "push b",
    );
    c.ok(
        s.push(&t, push_req(&d, Precondition::Create, b"dddd"))
            .await,
        "push d",
    );
    let reqs = vec![
        (a.clone(), Some(first.rev)),
        (key("missing.txt"), None),
        (a.clone(), None),
        (b.clone(), None),
        (d.clone(), None),
    ];
    // 4 + 8 bytes fit; b's 4 more would make 16 > 14.
    let got = c.ok(s.fetch_many(&t, reqs.clone(), 14).await, "fetch_many");
    c.eq(got.len(), 5, "fetch_many results");
    let content = |i: usize| match &got[i] {
        Some(Ok(f)) => Some(f.content.to_vec()),
        _ => None,
    };
    c.eq(
        content(0),
        Some(b"aaaa".to_vec()),
        "a at its first revision",
    );
    if !matches!(&got[1], Some(Err(Error::NotFound { .. }))) {
        c.fail(format!(
            "a missing key: expected NotFound, got {:?}",
            got[1]
        ));
    }
    c.eq(content(2), Some(b"AAAAAAAA".to_vec()), "a now");
    if got[3].is_some() || got[4].is_some() {
        c.fail(format!(
            "past the budget: expected None, None, got {:?}, {:?}",
            got[3], got[4]
        ));
    }
    let all = c.ok(s.fetch_many(&t, reqs.clone(), u64::MAX).await, "fetch_many");
    c.eq(
        all.iter().filter(|r| matches!(r, Some(Ok(_)))).count(),
        4,
        "everything fetched without a budget",
    );
    let other = c.ok(
        s.fetch_many(&TenantId::new("tenant-b"), reqs, u64::MAX)
            .await,
        "fetch_many as another tenant",
    );
    if !other
        .iter()
        .all(|r| matches!(r, Some(Err(Error::NotFound { .. }))))
    {
        c.fail(format!(
            "another tenant's view: expected NotFound for all, got {other:?}"
        ));
    }
}

/// Content of `len` bytes that does not repeat in 64 KiB (so no store can keep it inline by
/// accident of compression), in an unnamed temporary file.
fn content_file(content: &[u8]) -> ContentFile {
    use std::io::Write;
    let mut file = tempfile::tempfile().unwrap();
    file.write_all(content).unwrap();
    ContentFile::new(file, content.len() as u64, ContentHash::of(content))
}

fn varied(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ (i >> 8) as u8 ^ seed)
        .collect()
}

/// `push_file` writes what `push` of the same bytes writes: new content (over 64 KiB, where
/// stores keep content in files), content another key already has, a refused precondition
/// (no change), and a file whose hash is not the announced one (`HashMismatch`, no change).
async fn push_file_is_push<S: ServerStore>(c: Check, s: S) {
    let t = tenant();
    let big = varied(100 * 1024, 1);
    let file_req = |k: &crate::Key, precondition, content: &[u8]| crate::PushRequest {
        content: Bytes::new(),
        ..push_req(k, precondition, content)
    };
    let (a, b) = (key("big/a.bin"), key("big/b.bin"));
    let first = match s
        .push_file(
            &t,
            file_req(&a, Precondition::Create, &big),
            content_file(&big),
        )
        .await
    {
        Ok(PushOutcome::Accepted(meta)) => meta,
        r => c.fail(format!(
            "push_file of new content: expected Accepted, got {r:?}"
        )),
    };
    c.eq(first.size, big.len() as u64, "size of the pushed file");
    let got = c.ok(s.fetch(&t, &a, None).await, "fetch a");
    c.eq(
        got.content.to_vec(),
        big.clone(),
        "a's content after push_file",
    );
    match s
        .push_file(
            &t,
            file_req(&b, Precondition::Create, &big),
            content_file(&big),
        )
        .await
    {
        Ok(PushOutcome::Accepted(_)) => {}
        r => c.fail(format!(
            "push_file of known content: expected Accepted, got {r:?}"
        )),
    }
    let got = c.ok(s.fetch(&t, &b, None).await, "fetch b");
    c.eq(
        got.content.to_vec(),
        big.clone(),
        "b's content (the same bytes as a)",
    );
    let before = c.ok(s.changes(&t, None, 100).await, "changes");
    let other = varied(100 * 1024, 2);
    match s
        .push_file(
            &t,
            file_req(&a, Precondition::Create, &other),
            content_file(&other),
        )
        .await
    {
        Ok(PushOutcome::Conflict { current: Some(m) }) => c.eq(
            m.rev,
            first.rev,
            "the current revision in a refused push_file",
        ),
        r => c.fail(format!(
            "push_file creating an existing key: expected Conflict, got {r:?}"
        )),
    }
    match s
        .push_file(
            &t,
            file_req(&a, Precondition::Match(first.rev), &big),
            content_file(&other),
        )
        .await
    {
        Err(Error::HashMismatch { .. }) => {}
        r => c.fail(format!(
            "push_file of a file whose hash is not the announced one: expected \
             Err(HashMismatch), got {r:?}"
        )),
    }
    let after = c.ok(s.changes(&t, None, 100).await, "changes");
    c.eq(
        after.changes,
        before.changes,
        "feed after two refused push_file",
    );
    let got = c.ok(s.fetch(&t, &a, None).await, "fetch a again");
    c.eq(
        got.content.to_vec(),
        big,
        "a's content after two refused push_file",
    );
}

async fn epoch_is_stable<S: ServerStore>(c: Check, s: S) {
    let e1 = c.ok(s.epoch().await, "epoch");
    let e2 = c.ok(s.epoch().await, "epoch again");
    c.eq(e2, e1, "epoch across calls");
    let page = c.ok(s.changes(&tenant(), None, 10).await, "changes");
    c.eq(page.cursor.epoch(), e1, "epoch of a page's cursor");
    c.ok(
        s.push(
            &tenant(),
            push_req(&key("a.txt"), Precondition::Create, b"a"),
        )
        .await,
        "push",
    );
    let e3 = c.ok(s.epoch().await, "epoch after a push");
    c.eq(e3, e1, "epoch after a push");
    let page = c.ok(
        s.changes(&tenant(), Some(&page.cursor), 10).await,
        "changes",
    );
    c.eq(page.cursor.epoch(), e1, "epoch of a later cursor");
    let other = Cursor::new(Epoch(e1.0 ^ 0x5a5a), Revision::ZERO);
    match s.changes(&tenant(), Some(&other), 10).await {
        Err(Error::CursorExpired) => {}
        r => c.fail(format!(
            "a cursor of another epoch: expected Err(CursorExpired), got {r:?}"
        )),
    }
}

async fn too_large<S, F>(c: Check, make: &F)
where
    S: ServerStore + 'static,
    F: Fn(ServerConfig) -> BoxFuture<'static, S>,
{
    let s = make(ServerConfig {
        max_item_bytes: 8,
        ..config()
    })
    .await;
    c.eq(
        s.max_item_bytes(),
        8,
        "max_item_bytes() of a store made with 8",
    );
    let k = key("big.bin");
    match s
        .push(&tenant(), push_req(&k, Precondition::Create, b"123456789"))
        .await
    {
        Err(Error::TooLarge { size, limit, .. }) => {
            c.eq((size, limit), (9, 8), "size and limit in TooLarge")
        }
        r => c.fail(format!(
            "push of 9 bytes with a limit of 8: expected Err(TooLarge), got {r:?}"
        )),
    }
    match s
        .push_file(
            &tenant(),
            crate::PushRequest {
                content: Bytes::new(),
                ..push_req(&k, Precondition::Create, b"123456789")
            },
            content_file(b"123456789"),
        )
        .await
    {
        Err(Error::TooLarge { size, limit, .. }) => c.eq(
            (size, limit),
            (9, 8),
            "size and limit in TooLarge of push_file",
        ),
        r => c.fail(format!(
            "push_file of 9 bytes with a limit of 8: expected Err(TooLarge), got {r:?}"
        )),
    }
    let page = c.ok(s.changes(&tenant(), None, 10).await, "changes");
    c.eq(page.changes, vec![], "feed after a refused push");
    match s
        .archive(
            &tenant(),
            ArchiveRequest {
                key: k.clone(),
                content: Bytes::from_static(b"123456789"),
                hash: ContentHash::of(b"123456789"),
                stamp: Stamp::at(NOW, NODE),
                seen: Revision::ZERO,
            },
        )
        .await
    {
        Err(Error::TooLarge { .. }) => {}
        r => c.fail(format!(
            "archive of 9 bytes with a limit of 8: expected Err(TooLarge), got {r:?}"
        )),
    }
    match c.ok(
        s.push(&tenant(), push_req(&k, Precondition::Create, b"12345678"))
            .await,
        "push of exactly the limit",
    ) {
        PushOutcome::Accepted(m) => c.eq(m.size, 8, "size"),
        other => c.fail(format!(
            "push of exactly the limit: expected Accepted, got {other:?}"
        )),
    }
}

async fn stamps_are_clamped<S: ServerStore>(c: Check, s: S) {
    let skew = Duration::from_secs(60);
    let far = Stamp::at(NOW + 3_600_000, NODE);
    let mut req = push_req(&key("future.txt"), Precondition::Create, b"f");
    req.stamp = far;
    let m = match c.ok(s.push(&tenant(), req).await, "push from the future") {
        PushOutcome::Accepted(m) => m,
        other => c.fail(format!("expected Accepted, got {other:?}")),
    };
    c.eq(
        m.stamp,
        far.clamped(NOW, skew),
        "stamp an hour ahead of the server (clamped to its time)",
    );
    c.eq(m.stamp.millis, NOW, "clamped stamp's millis");

    let near = Stamp {
        millis: NOW + 30_000,
        counter: 3,
        node: NODE,
    };
    let mut req = push_req(&key("near.txt"), Precondition::Create, b"n");
    req.stamp = near;
    match c.ok(s.push(&tenant(), req).await, "push 30 s ahead") {
        PushOutcome::Accepted(m) => c.eq(m.stamp, near, "stamp within max_skew (kept)"),
        other => c.fail(format!("expected Accepted, got {other:?}")),
    }
    let page = c.ok(s.changes(&tenant(), None, 10).await, "changes");
    let stamps: Vec<Stamp> = page.changes.iter().map(|e| e.stamp).collect();
    c.eq(
        stamps,
        vec![far.clamped(NOW, skew), near],
        "stamps in the feed",
    );
    let history = c.ok(
        crate::full_history(&s, &tenant(), &key("future.txt")).await,
        "history",
    );
    c.eq(history[0].stamp.millis, NOW, "clamped stamp in history");

    let archived = c.ok(
        s.archive(
            &tenant(),
            ArchiveRequest {
                key: key("future.txt"),
                content: Bytes::from_static(b"x"),
                hash: ContentHash::of(b"x"),
                stamp: far,
                seen: Revision::ZERO,
            },
        )
        .await,
        "archive from the future",
    );
    c.eq(archived.stamp.millis, NOW, "clamped stamp of an archive");
}

async fn folder_stamps_are_clamped<S: ServerStore>(c: Check, s: S) {
    let far = Stamp::at(NOW + 3_600_000, NODE);
    let folder = c.ok(
        s.ensure_folder(
            &tenant(),
            FolderRequest {
                key: key("f/g"),
                stamp: far,
                seen: Revision::ZERO,
            },
        )
        .await,
        "ensure_folder from the future",
    );
    c.eq(folder.stamp.millis, NOW, "clamped stamp of a folder");
}

async fn unknown_tenant_is_empty<S: ServerStore>(c: Check, s: S) {
    let nobody = TenantId::new("nobody");
    let page = c.ok(
        s.changes(&nobody, None, 10).await,
        "changes of an unknown tenant",
    );
    c.eq(page.changes, vec![], "feed of an unknown tenant");
    c.eq(page.more, false, "`more` of an unknown tenant");
    match s.fetch(&nobody, &key("a"), None).await {
        Err(Error::NotFound { .. }) => {}
        r => c.fail(format!(
            "fetch for an unknown tenant: expected NotFound, got {r:?}"
        )),
    }
    let waited = c.ok(
        s.wait(&nobody, None, Duration::from_millis(20)).await,
        "wait of an unknown tenant",
    );
    c.eq(waited, false, "wait of an unknown tenant");
}
