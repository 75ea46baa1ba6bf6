//! The [`Transport`] conformance suite, and the protocol checks it shares with the server-store
//! suite (which runs them through [`crate::memory::LocalTransport`]).
//!
//! Every check starts from a fresh, empty server reached by two transports: tenant A and
//! another tenant on the same server. Checks use only the trait, never an implementation's
//! internals. Test code: it panics on failure and must not be used by the engine.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::BoxFuture;

use super::{key, old_stamp, push_req, Check};
use crate::{
    ArchiveRequest, ChangePage, ContentHash, Cursor, DeleteRequest, Epoch, Error, ErrorClass,
    FolderRequest, ItemKind, ItemMeta, Key, Precondition, PushOutcome, Revision, Transport,
};

const SUITE: &str = "transport";

/// Runs every check of the transport suite.
///
/// `make` returns two transports to a fresh, empty server: `.0` speaks as tenant A, `.1` as
/// another tenant of the same server. Both are used from more than one task.
pub async fn transport_suite<T, F>(make: F)
where
    T: Transport + 'static,
    F: Fn() -> BoxFuture<'static, (T, T)>,
{
    protocol_checks(SUITE, make).await;
}

/// The protocol checks every transport and (through a local transport) every server store
/// must pass.
pub(crate) async fn protocol_checks<T, F>(suite: &'static str, make: F)
where
    T: Transport + 'static,
    F: Fn() -> BoxFuture<'static, (T, T)>,
{
    let fresh = || async {
        let (a, b) = make().await;
        (Arc::new(a), Arc::new(b))
    };
    let c = |name| Check::new(suite, name);

    empty_feed(c("empty_feed"), fresh().await.0).await;
    create_makes_parents(c("create_makes_parents"), fresh().await.0).await;
    lamport_rule(c("lamport_rule"), fresh().await.0).await;
    stale_match_conflicts(c("stale_match_conflicts"), fresh().await.0).await;
    create_over_live_conflicts(c("create_over_live_conflicts"), fresh().await.0).await;
    create_over_tombstone(c("create_over_tombstone"), fresh().await.0).await;
    hash_mismatch(c("hash_mismatch"), fresh().await.0).await;
    overwrite_keeps_history(c("overwrite_keeps_history"), fresh().await.0).await;
    delete_makes_tombstone(c("delete_makes_tombstone"), fresh().await.0).await;
    delete_stale_conflicts(c("delete_stale_conflicts"), fresh().await.0).await;
    pagination(c("pagination"), fresh().await.0).await;
    cursor_expired(c("cursor_expired"), fresh().await.0).await;
    ensure_folder_idempotent(c("ensure_folder_idempotent"), fresh().await.0).await;
    archive_not_in_feed(c("archive_not_in_feed"), fresh().await.0).await;
    wait_immediate_and_timeout(c("wait_immediate_and_timeout"), fresh().await.0).await;
    wait_woken_by_push(c("wait_woken_by_push"), fresh().await.0).await;
    push_many_results(c("push_many_results"), fresh().await.0).await;
    fetch_many_results(c("fetch_many_results"), fresh().await.0).await;
    push_many_batch_sized(c("push_many_batch_sized"), fresh().await.0).await;
    let (a, b) = fresh().await;
    tenant_isolation(c("tenant_isolation"), a, b).await;
}

/// Pages through the whole feed from `since`; returns every page.
pub(crate) async fn all_pages<T: Transport + ?Sized>(
    c: Check,
    t: &T,
    since: Option<Cursor>,
    limit: usize,
) -> Vec<ChangePage> {
    let mut pages = Vec::new();
    let mut cursor = since;
    loop {
        let page = c.ok(t.changes(cursor.as_ref(), limit).await, "changes");
        let more = page.more;
        cursor = Some(page.cursor);
        pages.push(page);
        if !more {
            return pages;
        }
        if pages.len() > 10_000 {
            c.fail("the change feed never stopped saying `more: true`");
        }
    }
}

/// Every entry of the feed from the start.
pub(crate) async fn feed<T: Transport + ?Sized>(c: Check, t: &T) -> Vec<ItemMeta> {
    all_pages(c, t, None, 1000)
        .await
        .into_iter()
        .flat_map(|p| p.changes)
        .collect()
}

/// The cursor at the end of the feed.
async fn head<T: Transport + ?Sized>(c: Check, t: &T) -> Cursor {
    all_pages(c, t, None, 1000).await.last().unwrap().cursor
}

/// Pushes and expects acceptance; returns the item.
pub(crate) async fn accept<T: Transport + ?Sized>(
    c: Check,
    t: &T,
    key: &Key,
    precondition: Precondition,
    content: &[u8],
) -> ItemMeta {
    match c.ok(t.push(push_req(key, precondition, content)).await, "push") {
        PushOutcome::Accepted(m) => m,
        other => c.fail(format!(
            "push {key} with {precondition:?}: expected Accepted, got {other:?}"
        )),
    }
}

fn expect_not_found<V: std::fmt::Debug>(c: Check, r: crate::Result<V>, what: &str) {
    match r {
        Err(Error::NotFound { .. }) => {}
        other => c.fail(format!("{what}: expected Err(NotFound), got {other:?}")),
    }
}

async fn empty_feed<T: Transport>(c: Check, t: Arc<T>) {
    let page = c.ok(t.changes(None, 100).await, "changes on an empty server");
    c.eq(page.changes.len(), 0, "entries in an empty feed");
    c.eq(page.more, false, "`more` of an empty feed");
    let again = c.ok(
        t.changes(Some(&page.cursor), 100).await,
        "changes from cursor",
    );
    c.eq(
        again.changes.len(),
        0,
        "entries after the empty feed's cursor",
    );
    let k = key("nothing.txt");
    expect_not_found(c, t.fetch(&k, None).await, "fetch of a key never written");
    expect_not_found(c, t.history(&k).await, "history of a key never written");
}

async fn create_makes_parents<T: Transport>(c: Check, t: Arc<T>) {
    let k = key("a/b/c.txt");
    let m = accept(c, &*t, &k, Precondition::Create, b"hello").await;
    c.eq(&m.key, &k, "key of the accepted item");
    c.eq(m.kind, ItemKind::File, "kind of the accepted item");
    c.eq(
        m.hash,
        Some(ContentHash::of(b"hello")),
        "hash of the accepted item",
    );
    c.eq(m.size, 5, "size of the accepted item");
    c.eq(m.deleted, false, "deleted flag of the accepted item");
    c.ensure(m.rev > Revision::ZERO, || {
        format!("accepted revision must be > 0, got {:?}", m.rev)
    });
    let entries = feed(c, &*t).await;
    let keys: Vec<&str> = entries.iter().map(|e| e.key.as_str()).collect();
    c.eq(
        keys,
        vec!["a", "a/b", "a/b/c.txt"],
        "feed keys (parents first)",
    );
    c.eq(entries[0].kind, ItemKind::Folder, "kind of parent `a`");
    c.eq(entries[1].kind, ItemKind::Folder, "kind of parent `a/b`");
    c.ensure(
        entries[0].rev < entries[1].rev && entries[1].rev < entries[2].rev,
        || format!("feed revisions must increase, got {entries:?}"),
    );
    c.eq(&entries[2], &m, "feed entry of the file vs the push result");
    let f = c.ok(t.fetch(&k, None).await, "fetch current");
    c.eq(f.content, Bytes::from_static(b"hello"), "fetched content");
    c.eq(f.version.rev, m.rev, "fetched revision");
    c.eq(f.version.hash, m.hash, "fetched hash");
}

async fn lamport_rule<T: Transport>(c: Check, t: Arc<T>) {
    let mut req = push_req(&key("x"), Precondition::Create, b"x");
    req.seen = Revision(100);
    let first = match c.ok(t.push(req).await, "push with seen = 100") {
        PushOutcome::Accepted(m) => m,
        other => c.fail(format!("expected Accepted, got {other:?}")),
    };
    c.eq(
        first.rev,
        Revision(101),
        "revision of a push that has seen 100",
    );
    let mut revs = vec![first.rev];
    for (i, seen) in [0u64, 50, 101, 3].into_iter().enumerate() {
        let mut req = push_req(
            &key(&format!("y{i}")),
            Precondition::Create,
            format!("{i}").as_bytes(),
        );
        req.seen = Revision(seen);
        match c.ok(t.push(req).await, "push") {
            PushOutcome::Accepted(m) => revs.push(m.rev),
            other => c.fail(format!("expected Accepted, got {other:?}")),
        }
    }
    let folder = c.ok(
        t.ensure_folder(FolderRequest {
            key: key("dir"),
            stamp: old_stamp(),
            seen: Revision(7),
        })
        .await,
        "ensure_folder",
    );
    revs.push(folder.rev);
    c.ensure(revs.windows(2).all(|w| w[0] < w[1]), || {
        format!("revisions must keep increasing after a Lamport jump, got {revs:?}")
    });
    let mut req = push_req(&key("z"), Precondition::Create, b"z");
    req.seen = Revision(1_000);
    match c.ok(t.push(req).await, "push with seen = 1000") {
        PushOutcome::Accepted(m) => c.eq(m.rev, Revision(1_001), "revision after seen = 1000"),
        other => c.fail(format!("expected Accepted, got {other:?}")),
    }
}

async fn stale_match_conflicts<T: Transport>(c: Check, t: Arc<T>) {
    let k = key("doc.txt");
    let v1 = accept(c, &*t, &k, Precondition::Create, b"v1").await;
    let v2 = accept(c, &*t, &k, Precondition::Match(v1.rev), b"v2").await;
    c.ensure(v2.rev > v1.rev, || {
        format!("overwrite must take a newer revision: {v1:?} then {v2:?}")
    });
    match c.ok(
        t.push(push_req(&k, Precondition::Match(v1.rev), b"v3"))
            .await,
        "push with a stale base",
    ) {
        PushOutcome::Conflict { current: Some(cur) } => {
            c.eq(cur.rev, v2.rev, "revision of the conflict's current item");
            c.eq(
                cur.hash,
                Some(ContentHash::of(b"v2")),
                "hash of the current item",
            );
        }
        other => c.fail(format!(
            "push with a stale base: expected Conflict carrying the current item, got {other:?}"
        )),
    }
    let f = c.ok(t.fetch(&k, None).await, "fetch after a conflict");
    c.eq(
        f.content,
        Bytes::from_static(b"v2"),
        "content after a refused push",
    );
    match c.ok(
        t.push(push_req(
            &key("absent.txt"),
            Precondition::Match(v1.rev),
            b"x",
        ))
        .await,
        "Match on an absent key",
    ) {
        PushOutcome::Conflict { current: None } => {}
        other => c.fail(format!(
            "Match on an absent key: expected Conflict {{ current: None }}, got {other:?}"
        )),
    }
}

async fn create_over_live_conflicts<T: Transport>(c: Check, t: Arc<T>) {
    let k = key("doc.txt");
    let v1 = accept(c, &*t, &k, Precondition::Create, b"v1").await;
    match c.ok(
        t.push(push_req(&k, Precondition::Create, b"other")).await,
        "Create over a live item",
    ) {
        PushOutcome::Conflict { current: Some(cur) } => {
            c.eq(cur, v1, "the conflict's current item")
        }
        other => c.fail(format!(
            "Create over a live item: expected Conflict with the current item, got {other:?}"
        )),
    }
    let f = c.ok(t.fetch(&k, None).await, "fetch");
    c.eq(
        f.content,
        Bytes::from_static(b"v1"),
        "content after a refused create",
    );
}

async fn create_over_tombstone<T: Transport>(c: Check, t: Arc<T>) {
    let k = key("doc.txt");
    let v1 = accept(c, &*t, &k, Precondition::Create, b"v1").await;
    let tomb = match c.ok(
        t.delete(DeleteRequest {
            key: k.clone(),
            rev: v1.rev,
            stamp: old_stamp(),
            seen: v1.rev,
        })
        .await,
        "delete",
    ) {
        PushOutcome::Accepted(m) => m,
        other => c.fail(format!("delete: expected Accepted, got {other:?}")),
    };
    let v2 = accept(c, &*t, &k, Precondition::Create, b"again").await;
    c.ensure(v2.rev > tomb.rev, || {
        format!("re-create must take a newer revision than the tombstone: {tomb:?}, {v2:?}")
    });
    let f = c.ok(t.fetch(&k, None).await, "fetch after re-create");
    c.eq(
        f.content,
        Bytes::from_static(b"again"),
        "content after re-create",
    );
}

async fn hash_mismatch<T: Transport>(c: Check, t: Arc<T>) {
    let k = key("dir/bad.txt");
    let mut req = push_req(&k, Precondition::Create, b"the real bytes");
    req.hash = ContentHash::of(b"other bytes");
    match t.push(req).await {
        Err(Error::HashMismatch { .. }) => {}
        other => c.fail(format!(
            "push whose content does not match its hash: expected Err(HashMismatch), got {other:?}"
        )),
    }
    c.eq(
        feed(c, &*t).await,
        vec![],
        "feed after a refused push (no parents either)",
    );
    expect_not_found(c, t.fetch(&k, None).await, "fetch after a refused push");
    let mut req = ArchiveRequest {
        key: k.clone(),
        content: Bytes::from_static(b"abc"),
        hash: ContentHash::of(b"abd"),
        stamp: old_stamp(),
        seen: Revision::ZERO,
    };
    match t.archive(req.clone()).await {
        Err(Error::HashMismatch { .. }) => {}
        other => c.fail(format!(
            "archive whose content does not match its hash: expected Err(HashMismatch), got {other:?}"
        )),
    }
    req.hash = ContentHash::of(b"abc");
    c.ok(t.archive(req).await, "archive with the right hash");
}

async fn overwrite_keeps_history<T: Transport>(c: Check, t: Arc<T>) {
    let k = key("notes/today.md");
    let v1 = accept(c, &*t, &k, Precondition::Create, b"first").await;
    let v2 = accept(c, &*t, &k, Precondition::Match(v1.rev), b"second").await;
    let history = c.ok(t.history(&k).await, "history");
    c.eq(
        history.iter().map(|v| (v.rev, v.hash)).collect::<Vec<_>>(),
        vec![(v1.rev, v1.hash), (v2.rev, v2.hash)],
        "history (oldest first, current included)",
    );
    let old = c.ok(t.fetch(&k, Some(v1.rev)).await, "fetch of the old revision");
    c.eq(
        old.content,
        Bytes::from_static(b"first"),
        "old version's content",
    );
    c.eq(old.version.rev, v1.rev, "old version's revision");
    let cur = c.ok(t.fetch(&k, None).await, "fetch current");
    c.eq(
        cur.content,
        Bytes::from_static(b"second"),
        "current content",
    );
    expect_not_found(
        c,
        t.fetch(&k, Some(Revision(v2.rev.0 + 1_000))).await,
        "fetch of a revision that never existed",
    );
    let entries = feed(c, &*t).await;
    let mine: Vec<_> = entries.iter().filter(|e| e.key == k).collect();
    c.eq(
        mine,
        vec![&v2],
        "feed entries of an overwritten key (latest only)",
    );
}

async fn delete_makes_tombstone<T: Transport>(c: Check, t: Arc<T>) {
    let k = key("gone.txt");
    let v1 = accept(c, &*t, &k, Precondition::Create, b"content").await;
    let tomb = match c.ok(
        t.delete(DeleteRequest {
            key: k.clone(),
            rev: v1.rev,
            stamp: old_stamp(),
            seen: v1.rev,
        })
        .await,
        "delete",
    ) {
        PushOutcome::Accepted(m) => m,
        other => c.fail(format!("delete: expected Accepted, got {other:?}")),
    };
    c.eq(tomb.deleted, true, "deleted flag of the tombstone");
    c.eq(tomb.hash, None, "hash of the tombstone");
    c.eq(tomb.size, 0, "size of the tombstone");
    c.ensure(tomb.rev > v1.rev, || {
        format!("a tombstone takes a new revision: {v1:?} then {tomb:?}")
    });
    let entries = feed(c, &*t).await;
    c.eq(entries, vec![tomb.clone()], "feed after delete");
    expect_not_found(c, t.fetch(&k, None).await, "fetch of a deleted key");
    let history = c.ok(t.history(&k).await, "history of a deleted key");
    c.ensure(
        history
            .iter()
            .any(|v| v.rev == v1.rev && v.hash == v1.hash && !v.deleted),
        || format!("history must keep the deleted content ({v1:?}), got {history:?}"),
    );
    let old = c.ok(
        t.fetch(&k, Some(v1.rev)).await,
        "fetch of the deleted version",
    );
    c.eq(
        old.content,
        Bytes::from_static(b"content"),
        "deleted version's content",
    );
    match c.ok(
        t.delete(DeleteRequest {
            key: k.clone(),
            rev: tomb.rev,
            stamp: old_stamp(),
            seen: tomb.rev,
        })
        .await,
        "delete of a tombstone",
    ) {
        PushOutcome::Conflict { .. } => {}
        other => c.fail(format!(
            "delete of an already deleted item: expected Conflict, got {other:?}"
        )),
    }
}

async fn delete_stale_conflicts<T: Transport>(c: Check, t: Arc<T>) {
    let k = key("doc.txt");
    let v1 = accept(c, &*t, &k, Precondition::Create, b"v1").await;
    let v2 = accept(c, &*t, &k, Precondition::Match(v1.rev), b"v2").await;
    match c.ok(
        t.delete(DeleteRequest {
            key: k.clone(),
            rev: v1.rev,
            stamp: old_stamp(),
            seen: v2.rev,
        })
        .await,
        "delete with a stale revision",
    ) {
        PushOutcome::Conflict { current: Some(cur) } => c.eq(cur, v2, "current item"),
        other => c.fail(format!(
            "delete with a stale revision: expected Conflict with the current item, got {other:?}"
        )),
    }
    let f = c.ok(t.fetch(&k, None).await, "fetch after a refused delete");
    c.eq(
        f.content,
        Bytes::from_static(b"v2"),
        "content after a refused delete",
    );
}

async fn pagination<T: Transport>(c: Check, t: Arc<T>) {
    let keys: Vec<Key> = (0..25).map(|i| key(&format!("k{i:02}"))).collect();
    let mut latest = std::collections::BTreeMap::new();
    for k in &keys {
        let m = accept(c, &*t, k, Precondition::Create, k.as_str().as_bytes()).await;
        latest.insert(k.clone(), m);
    }
    let k3 = keys[3].clone();
    let base = latest[&k3].rev;
    let changed = accept(c, &*t, &k3, Precondition::Match(base), b"changed").await;
    latest.insert(k3.clone(), changed.clone());

    let pages = all_pages(c, &*t, None, 10).await;
    c.eq(
        pages.iter().map(|p| p.more).collect::<Vec<_>>(),
        vec![true, true, false],
        "`more` of each page (25 keys, limit 10)",
    );
    c.eq(
        pages.iter().map(|p| p.changes.len()).collect::<Vec<_>>(),
        vec![10, 10, 5],
        "entries per page",
    );
    let entries: Vec<&ItemMeta> = pages.iter().flat_map(|p| &p.changes).collect();
    let revs: Vec<Revision> = entries.iter().map(|e| e.rev).collect();
    c.ensure(revs.windows(2).all(|w| w[0] < w[1]), || {
        format!("revisions must increase strictly across pages, got {revs:?}")
    });
    let seen: BTreeSet<&Key> = entries.iter().map(|e| &e.key).collect();
    c.eq(seen.len(), 25, "distinct keys in the feed");
    c.eq(entries.len(), 25, "entries in the feed (each key once)");
    for e in &entries {
        c.eq(
            *e,
            &latest[&e.key],
            "feed entry vs the latest push of its key",
        );
    }
    c.eq(
        entries.last().map(|e| &e.key),
        Some(&k3),
        "the key changed last comes last",
    );
    let end = pages.last().unwrap().cursor;
    let after = c.ok(
        t.changes(Some(&end), 10).await,
        "changes after the last page",
    );
    c.eq(after.changes.len(), 0, "entries after the last page");
    c.eq(after.more, false, "`more` after the last page");

    // A change after the end shows up, alone, from the end cursor.
    let k0 = keys[0].clone();
    let again = accept(c, &*t, &k0, Precondition::Match(latest[&k0].rev), b"later").await;
    let next = c.ok(t.changes(Some(&end), 10).await, "changes after a new push");
    c.eq(next.changes, vec![again], "feed after the end cursor");
    // A limit of 0 still makes progress.
    let tiny = c.ok(t.changes(None, 0).await, "changes with limit 0");
    c.ensure(!tiny.changes.is_empty(), || {
        format!("limit 0 must still return entries when there are some, got {tiny:?}")
    });
}

async fn cursor_expired<T: Transport>(c: Check, t: Arc<T>) {
    accept(c, &*t, &key("a.txt"), Precondition::Create, b"a").await;
    let real = head(c, &*t).await;
    let other = Cursor::new(Epoch(real.epoch().0.wrapping_add(1)), Revision(0));
    match t.changes(Some(&other), 10).await {
        Err(Error::CursorExpired) => {}
        r => c.fail(format!(
            "changes with a cursor of another epoch: expected Err(CursorExpired), got {r:?}"
        )),
    }
    match t.wait(Some(&other), Duration::from_millis(10)).await {
        Err(Error::CursorExpired) => {}
        r => c.fail(format!(
            "wait with a cursor of another epoch: expected Err(CursorExpired), got {r:?}"
        )),
    }
    let round = real.to_string().parse::<Cursor>().unwrap();
    let page = c.ok(
        t.changes(Some(&round), 10).await,
        "changes with a real cursor",
    );
    c.eq(page.changes.len(), 0, "entries after the head cursor");
}

async fn ensure_folder_idempotent<T: Transport>(c: Check, t: Arc<T>) {
    let req = FolderRequest {
        key: key("x/y"),
        stamp: old_stamp(),
        seen: Revision::ZERO,
    };
    let first = c.ok(t.ensure_folder(req.clone()).await, "ensure_folder");
    c.eq(first.kind, ItemKind::Folder, "kind of the folder");
    c.eq(&first.key, &key("x/y"), "key of the folder");
    let second = c.ok(t.ensure_folder(req).await, "ensure_folder again");
    c.eq(
        &second,
        &first,
        "ensure_folder twice (same item, same revision)",
    );
    let entries = feed(c, &*t).await;
    c.eq(
        entries
            .iter()
            .map(|e| (e.key.as_str(), e.kind))
            .collect::<Vec<_>>(),
        vec![("x", ItemKind::Folder), ("x/y", ItemKind::Folder)],
        "feed after ensure_folder (parents first, no duplicates)",
    );
    // Creating a file inside an existing folder adds no folder revision.
    accept(c, &*t, &key("x/y/f.txt"), Precondition::Create, b"f").await;
    c.eq(
        feed(c, &*t).await.len(),
        3,
        "feed entries after a file in the folder",
    );
    let file = key("x/y/f.txt");
    match t
        .ensure_folder(FolderRequest {
            key: file.join("sub").unwrap(),
            stamp: old_stamp(),
            seen: Revision::ZERO,
        })
        .await
    {
        Err(e) if e.class() == ErrorClass::Item => {}
        r => c.fail(format!(
            "ensure_folder below a file: expected an Item-class error, got {r:?}"
        )),
    }
}

async fn archive_not_in_feed<T: Transport>(c: Check, t: Arc<T>) {
    let k = key("doc.txt");
    let v1 = accept(c, &*t, &k, Precondition::Create, b"winner").await;
    let end = head(c, &*t).await;
    let archived = c.ok(
        t.archive(ArchiveRequest {
            key: k.clone(),
            content: Bytes::from_static(b"loser"),
            hash: ContentHash::of(b"loser"),
            stamp: old_stamp(),
            seen: v1.rev,
        })
        .await,
        "archive",
    );
    c.ensure(archived.rev > v1.rev, || {
        format!("an archive takes a new revision: {v1:?} then {archived:?}")
    });
    c.eq(
        archived.hash,
        Some(ContentHash::of(b"loser")),
        "archived hash",
    );
    let history = c.ok(t.history(&k).await, "history");
    c.ensure(history.iter().any(|v| v == &archived), || {
        format!("history must list the archived version {archived:?}, got {history:?}")
    });
    let got = c.ok(
        t.fetch(&k, Some(archived.rev)).await,
        "fetch of the archive",
    );
    c.eq(
        got.content,
        Bytes::from_static(b"loser"),
        "archived content",
    );
    let cur = c.ok(t.fetch(&k, None).await, "fetch current");
    c.eq(
        cur.content,
        Bytes::from_static(b"winner"),
        "current content after archive",
    );
    c.eq(cur.version.rev, v1.rev, "current revision after archive");
    c.eq(feed(c, &*t).await, vec![v1.clone()], "feed after archive");
    let after = c.ok(t.changes(Some(&end), 10).await, "changes after archive");
    c.eq(after.changes, vec![], "feed entries after archive");
    // The next real change still comes after the archive's revision.
    let v2 = accept(c, &*t, &k, Precondition::Match(v1.rev), b"next").await;
    c.ensure(v2.rev > archived.rev, || {
        format!("revisions never repeat: archive {archived:?}, then {v2:?}")
    });
    let next = c.ok(t.changes(Some(&after.cursor), 10).await, "changes");
    c.eq(
        next.changes,
        vec![v2],
        "feed after a push that follows an archive",
    );
}

async fn wait_immediate_and_timeout<T: Transport>(c: Check, t: Arc<T>) {
    let start = Instant::now();
    let none = c.ok(
        t.wait(None, Duration::from_millis(100)).await,
        "wait on an empty feed",
    );
    c.eq(none, false, "wait on an empty feed (timeout)");
    accept(c, &*t, &key("a.txt"), Precondition::Create, b"a").await;
    let start_now = Instant::now();
    let now = c.ok(t.wait(None, Duration::from_secs(5)).await, "wait");
    c.eq(now, true, "wait when changes exist");
    c.ensure(start_now.elapsed() < Duration::from_secs(2), || {
        format!(
            "wait must return at once when changes exist; took {:?}",
            start_now.elapsed()
        )
    });
    let end = head(c, &*t).await;
    let timed = Instant::now();
    let r = c.ok(
        t.wait(Some(&end), Duration::from_millis(200)).await,
        "wait at the head",
    );
    c.eq(r, false, "wait at the head with no new change");
    c.ensure(timed.elapsed() >= Duration::from_millis(150), || {
        format!(
            "wait returned false before its timeout ({:?})",
            timed.elapsed()
        )
    });
    c.ensure(start.elapsed() < Duration::from_secs(10), || {
        format!("waits took {:?}", start.elapsed())
    });
}

async fn wait_woken_by_push<T: Transport + 'static>(c: Check, t: Arc<T>) {
    accept(c, &*t, &key("first.txt"), Precondition::Create, b"1").await;
    let end = head(c, &*t).await;
    let pusher = t.clone();
    let task = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        pusher
            .push(push_req(&key("second.txt"), Precondition::Create, b"2"))
            .await
    });
    let start = Instant::now();
    let woken = c.ok(t.wait(Some(&end), Duration::from_secs(5)).await, "wait");
    let took = start.elapsed();
    c.eq(woken, true, "wait woken by a concurrent push");
    c.ensure(took < Duration::from_secs(2), || {
        format!("wait must be woken by a push, not by its timeout; took {took:?}")
    });
    match task.await {
        Ok(Ok(PushOutcome::Accepted(_))) => {}
        other => c.fail(format!(
            "the concurrent push: expected Accepted, got {other:?}"
        )),
    }
    let page = c.ok(t.changes(Some(&end), 10).await, "changes after wake-up");
    c.eq(
        page.changes
            .iter()
            .map(|e| e.key.as_str())
            .collect::<Vec<_>>(),
        vec!["second.txt"],
        "feed after the wake-up",
    );
}

/// `fetch_many`: one result per request in order, a version from history by revision, an
/// absent key as `NotFound` without failing the others.
async fn fetch_many_results<T: Transport>(c: Check, t: Arc<T>) {
    let v1 = accept(c, &*t, &key("f/a.txt"), Precondition::Create, b"one").await;
    let v2 = accept(c, &*t, &key("f/a.txt"), Precondition::Match(v1.rev), b"two").await;
    accept(c, &*t, &key("f/b.txt"), Precondition::Create, b"bee").await;
    let reqs = vec![
        (key("f/b.txt"), None),
        (key("f/missing.txt"), None),
        (key("f/a.txt"), Some(v1.rev)),
        (key("f/a.txt"), Some(v2.rev)),
    ];
    let results = c.ok(t.fetch_many(reqs).await, "fetch_many");
    c.eq(results.len(), 4, "one result per request");
    let content = |i: usize| match &results[i] {
        Ok(f) => f.content.to_vec(),
        Err(e) => c.fail(format!("fetch_many[{i}]: expected Ok, got Err({e:?})")),
    };
    c.eq(content(0), b"bee".to_vec(), "fetch_many[0]");
    match &results[1] {
        Err(Error::NotFound { .. }) => {}
        other => c.fail(format!("fetch_many[1]: expected NotFound, got {other:?}")),
    }
    c.eq(content(2), b"one".to_vec(), "fetch_many[2] (from history)");
    c.eq(content(3), b"two".to_vec(), "fetch_many[3]");
    if let Ok(f) = &results[2] {
        c.eq(f.version.rev, v1.rev, "fetch_many[2]'s revision");
        c.eq(
            f.version.hash,
            Some(ContentHash::of(b"one")),
            "fetch_many[2]'s hash",
        );
    }
    let none = c.ok(t.fetch_many(Vec::new()).await, "fetch_many of nothing");
    c.eq(none.len(), 0, "fetch_many of nothing");
}

/// More items than one batch holds, pushed and fetched back: nothing lost or reordered.
async fn push_many_batch_sized<T: Transport>(c: Check, t: Arc<T>) {
    let n = 1_203;
    let reqs: Vec<_> = (0..n)
        .map(|i| {
            push_req(
                &key(&format!("bulk/{i:05}")),
                Precondition::Create,
                format!("v{i}").as_bytes(),
            )
        })
        .collect();
    let results = c.ok(t.push_many(reqs).await, "push_many of many");
    c.eq(results.len(), n, "one result per request");
    for (i, r) in results.iter().enumerate() {
        match r {
            Ok(PushOutcome::Accepted(m)) => {
                c.eq(m.key.to_string(), format!("bulk/{i:05}"), "key in order")
            }
            other => c.fail(format!("push_many[{i}]: expected Accepted, got {other:?}")),
        }
    }
    let fetched = c.ok(
        t.fetch_many(
            (0..n)
                .map(|i| (key(&format!("bulk/{i:05}")), None))
                .collect(),
        )
        .await,
        "fetch_many of many",
    );
    for (i, f) in fetched.iter().enumerate() {
        match f {
            Ok(f) => c.eq(
                f.content.to_vec(),
                format!("v{i}").into_bytes(),
                "content in order",
            ),
            Err(e) => c.fail(format!("fetch_many[{i}]: {e:?}")),
        }
    }
}

async fn push_many_results<T: Transport>(c: Check, t: Arc<T>) {
    let existing = accept(c, &*t, &key("c.txt"), Precondition::Create, b"c").await;
    let mut bad = push_req(&key("b.txt"), Precondition::Create, b"b");
    bad.hash = ContentHash::of(b"not b");
    let reqs = vec![
        push_req(&key("many/a.txt"), Precondition::Create, b"a"),
        bad,
        push_req(&key("c.txt"), Precondition::Create, b"c2"),
        push_req(&key("d.txt"), Precondition::Create, b"d"),
    ];
    let results = c.ok(t.push_many(reqs).await, "push_many");
    c.eq(results.len(), 4, "one result per request");
    match &results[0] {
        Ok(PushOutcome::Accepted(m)) => c.eq(m.key.as_str(), "many/a.txt", "first result's key"),
        other => c.fail(format!("push_many[0]: expected Accepted, got {other:?}")),
    }
    match &results[1] {
        Err(Error::HashMismatch { .. }) => {}
        other => c.fail(format!(
            "push_many[1]: expected Err(HashMismatch), got {other:?}"
        )),
    }
    match &results[2] {
        Ok(PushOutcome::Conflict { current: Some(cur) }) => {
            c.eq(cur, &existing, "push_many[2]'s current item")
        }
        other => c.fail(format!(
            "push_many[2] (Create over a live item): expected Conflict, got {other:?}"
        )),
    }
    match &results[3] {
        Ok(PushOutcome::Accepted(m)) => c.eq(m.key.as_str(), "d.txt", "fourth result's key"),
        other => c.fail(format!("push_many[3]: expected Accepted, got {other:?}")),
    }
    // The requests of one push_many are independent: a transport may send them concurrently
    // (HTTP does), so their revisions may come in any order. What holds: the item written
    // before comes first, a folder created for an item comes before it, nothing else appears.
    let keys: Vec<String> = feed(c, &*t)
        .await
        .into_iter()
        .map(|e| e.key.to_string())
        .collect();
    c.eq(
        keys.first().map(String::as_str),
        Some("c.txt"),
        "feed after push_many: the item written before it",
    );
    let mut sorted = keys.clone();
    sorted.sort();
    c.eq(
        sorted,
        vec![
            "c.txt".to_owned(),
            "d.txt".into(),
            "many".into(),
            "many/a.txt".into(),
        ],
        "feed after push_many (keys in any order)",
    );
    let at = |k: &str| keys.iter().position(|x| x == k);
    c.ensure(at("many") < at("many/a.txt"), || {
        format!("feed after push_many: the folder must come before its item: {keys:?}")
    });
    let empty = c.ok(t.push_many(Vec::new()).await, "push_many of nothing");
    c.eq(empty.len(), 0, "results of an empty push_many");
}

async fn tenant_isolation<T: Transport>(c: Check, a: Arc<T>, b: Arc<T>) {
    let k = key("private/secret.txt");
    let mine = accept(c, &*a, &k, Precondition::Create, b"tenant A").await;
    c.eq(feed(c, &*b).await, vec![], "the other tenant's feed");
    expect_not_found(
        c,
        b.fetch(&k, None).await,
        "the other tenant fetching A's key",
    );
    expect_not_found(
        c,
        b.fetch(&k, Some(mine.rev)).await,
        "the other tenant fetching A's revision",
    );
    expect_not_found(
        c,
        b.history(&k).await,
        "the other tenant's history of A's key",
    );
    match b
        .delete(DeleteRequest {
            key: k.clone(),
            rev: mine.rev,
            stamp: old_stamp(),
            seen: mine.rev,
        })
        .await
    {
        Ok(PushOutcome::Conflict { current: None }) | Err(Error::NotFound { .. }) => {}
        other => c.fail(format!(
            "the other tenant deleting A's key: expected Conflict {{ current: None }} or \
             Err(NotFound), got {other:?}"
        )),
    }
    let theirs = accept(c, &*b, &k, Precondition::Create, b"tenant B").await;
    c.eq(theirs.hash, Some(ContentHash::of(b"tenant B")), "B's item");
    let fa = c.ok(a.fetch(&k, None).await, "A's fetch");
    c.eq(
        fa.content,
        Bytes::from_static(b"tenant A"),
        "A's content after B wrote",
    );
    let fb = c.ok(b.fetch(&k, None).await, "B's fetch");
    c.eq(fb.content, Bytes::from_static(b"tenant B"), "B's content");
    let fa_entries = feed(c, &*a).await;
    c.eq(
        fa_entries
            .iter()
            .map(|e| e.key.as_str())
            .collect::<Vec<_>>(),
        vec!["private", "private/secret.txt"],
        "A's feed",
    );
    c.eq(
        fa_entries.last().and_then(|e| e.hash),
        mine.hash,
        "A's item in A's feed",
    );
    let hb = c.ok(b.history(&k).await, "B's history");
    c.eq(hb.len(), 1, "versions in B's history");
}
