//! The history checks of the [`ServerStore`] conformance suite: paging
//! ([`ServerStore::history`] with a [`HistoryRange`]) and retention
//! ([`crate::server::Retention`]). Run from
//! [`super::server_store_suite`]. Test code: it panics on failure and must not be used by the
//! engine.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use bytes::Bytes;

use super::{key, push_req, Check, NODE};
use crate::{
    ArchiveRequest, ContentHash, Error, HistoryRange, Key, ManualTime, Precondition, PushOutcome,
    Revision, ServerStore, Stamp, TenantId, VersionMeta,
};

/// Pushes `contents` to `k` one after another, the first over the current revision `after`
/// (`None`: a new key), each later one over the one before; returns every accepted version,
/// oldest first.
pub(crate) async fn push_versions<S: ServerStore>(
    c: &Check,
    s: &S,
    t: &TenantId,
    k: &Key,
    after: Option<Revision>,
    contents: &[&[u8]],
    stamp: Stamp,
) -> Vec<VersionMeta> {
    let mut out: Vec<VersionMeta> = Vec::new();
    for content in contents {
        let precondition = match out.last().map(|v| v.rev).or(after) {
            None => Precondition::Create,
            Some(rev) => Precondition::Match(rev),
        };
        let mut req = push_req(k, precondition, content);
        req.stamp = stamp;
        match c.ok(s.push(t, req).await, "push a version") {
            PushOutcome::Accepted(m) => out.push(m.version()),
            other => c.fail(format!("push to {k}: expected Accepted, got {other:?}")),
        }
    }
    out
}

/// An archive of `content` under `k` (a conflict's loser kept in history).
pub(crate) async fn archive<S: ServerStore>(
    c: &Check,
    s: &S,
    t: &TenantId,
    k: &Key,
    content: &[u8],
    stamp: Stamp,
) -> VersionMeta {
    c.ok(
        s.archive(
            t,
            ArchiveRequest {
                key: k.clone(),
                content: Bytes::copy_from_slice(content),
                hash: ContentHash::of(content),
                stamp,
                seen: Revision::ZERO,
            },
        )
        .await,
        "archive",
    )
}

/// Every version of `k`, read in pages of `limit`, newest first; checks every page's shape
/// on the way (size, order, where the next one starts).
pub(crate) async fn read_pages<S: ServerStore>(
    c: &Check,
    s: &S,
    t: &TenantId,
    k: &Key,
    limit: usize,
) -> Vec<VersionMeta> {
    let mut range = HistoryRange::newest(limit);
    let mut out: Vec<VersionMeta> = Vec::new();
    for _ in 0..10_000 {
        let page = c.ok(s.history(t, k, range).await, "a history page");
        c.ensure(page.versions.len() <= limit.max(1), || {
            format!(
                "a page of at most {limit}: got {} versions",
                page.versions.len()
            )
        });
        c.ensure(
            page.versions.windows(2).all(|w| w[0].rev > w[1].rev),
            || format!("a page is newest first: {:?}", page.versions),
        );
        if let Some(before) = range.before {
            c.ensure(page.versions.iter().all(|v| v.rev < before), || {
                format!("a page before {before}: {:?}", page.versions)
            });
        }
        out.extend(page.versions.iter().cloned());
        match page.next_before {
            None => return out,
            Some(next) => {
                c.eq(
                    Some(next),
                    page.versions.last().map(|v| v.rev),
                    "next_before is the oldest revision of a page that has more after it",
                );
                c.eq(
                    page.versions.len(),
                    limit.max(1),
                    "a page with more is full",
                );
                range = HistoryRange::before(next, limit);
            }
        }
    }
    c.fail(format!("the history of {k} did not end after 10,000 pages"))
}

/// Paging: pages of every size give the whole history, newest first, with no version twice
/// and none of another key; a page past the oldest is empty; `limit` 0 is read as 1; an
/// unknown key (or tenant) is `NotFound`.
pub(crate) async fn history_is_paged<S: ServerStore>(c: Check, s: S, t: TenantId) {
    let (p, q) = (key("paged.txt"), key("other.txt"));
    let stamp = Stamp::at(1_000_000, NODE);
    let mut all = push_versions(&c, &s, &t, &p, None, &[b"1", b"2", b"3"], stamp).await;
    push_versions(&c, &s, &t, &q, None, &[b"q1", b"q2"], stamp).await;
    let current = all.last().map(|v| v.rev);
    all.push(archive(&c, &s, &t, &p, b"a loser", stamp).await);
    push_versions(&c, &s, &t, &key("third.txt"), None, &[b"x"], stamp).await;
    all.extend(push_versions(&c, &s, &t, &p, current, &[b"4", b"5"], stamp).await);
    // Another tenant's versions of the same key are not in this one's pages.
    push_versions(&c, &s, &TenantId::new("tenant-z"), &p, None, &[b"z"], stamp).await;
    let expected: Vec<VersionMeta> = all.iter().rev().cloned().collect();

    let whole = c.ok(
        s.history(&t, &p, HistoryRange::default()).await,
        "history, one page",
    );
    c.eq(
        whole.versions.clone(),
        expected.clone(),
        "the whole history, newest first",
    );
    c.eq(whole.next_before, None, "next_before of the only page");
    for limit in [1, 2, 3, 6, 7, 8] {
        let got = read_pages(&c, &s, &t, &p, limit).await;
        c.eq(got, expected.clone(), "the history read in pages");
    }
    let zero = c.ok(
        s.history(&t, &p, HistoryRange::newest(0)).await,
        "history with limit 0",
    );
    c.eq(zero.versions.len(), 1, "limit 0 is read as 1");
    let oldest = expected.last().unwrap().rev;
    let past = c.ok(
        s.history(&t, &p, HistoryRange::before(oldest, 10)).await,
        "a page before the oldest version",
    );
    c.eq(past.versions, vec![], "a page before the oldest version");
    c.eq(
        past.next_before,
        None,
        "next_before past the oldest version",
    );
    let mid = expected[1].rev;
    let from_mid = c.ok(
        s.history(&t, &p, HistoryRange::before(mid, 10)).await,
        "a page before a revision in the middle",
    );
    c.eq(
        from_mid.versions,
        expected[2..].to_vec(),
        "the versions before a revision in the middle",
    );
    let between = c.ok(
        s.history(&t, &p, HistoryRange::before(Revision(mid.0 + 1), 1))
            .await,
        "a page before a revision that is not one of the key's",
    );
    c.eq(
        between.versions,
        vec![expected[1].clone()],
        "before is exclusive and need not be one of the key's revisions",
    );
    for (who, k) in [
        (t.clone(), key("never.txt")),
        (TenantId::new("nobody"), p.clone()),
    ] {
        match s.history(&who, &k, HistoryRange::default()).await {
            Err(Error::NotFound { .. }) => {}
            r => c.fail(format!(
                "history of {k} for {who}, never written: expected NotFound, got {r:?}"
            )),
        }
    }
}

/// How a store made for the retention checks is set up: keep the newest 2 versions and
/// everything younger than an hour.
pub(crate) const KEEP: usize = 2;
/// See [`KEEP`].
pub(crate) const KEEP_FOR: Duration = Duration::from_secs(3600);

/// The contents the retention check writes, by name, for a store's own checks of where its
/// bytes went (a large one goes to a file where a store keeps large content in files).
pub fn retention_contents() -> Vec<(&'static str, Bytes)> {
    vec![
        ("pruned-large", Bytes::from(vec![b'L'; 100 * 1024])),
        ("pruned-small", Bytes::from_static(b"pruned small")),
        ("kept-large", Bytes::from(vec![b'K'; 100 * 1024])),
        ("shared", Bytes::from_static(b"shared by two keys")),
    ]
}

/// Retention: versions beyond the newest [`KEEP`] and older than [`KEEP_FOR`] go as the key is
/// written (archived ones counted like any other); younger ones stay until they are old; the
/// current version stays however old; a dropped version cannot be fetched, and content that
/// another version (of any key or tenant) still refers to still reads.
///
/// `s` was made with `ServerConfig { retention: Some(Retention::new(KEEP, KEEP_FOR)), time }`
/// and `time` at `now`.
pub(crate) async fn retention_drops_old_versions<S: ServerStore>(
    c: Check,
    s: S,
    time: &ManualTime,
    now: u64,
) {
    let t = TenantId::new("tenant-a");
    let old = Stamp::at(now - 2 * 3_600_000, NODE);
    let young = Stamp::at(now, NODE);
    let contents: Vec<(&str, Bytes)> = retention_contents();
    let bytes = |name: &str| contents.iter().find(|(n, _)| *n == name).unwrap().1.clone();

    // Old versions beyond the newest two go.
    let k = key("old.txt");
    let shared = bytes("shared");
    let pruned = push_versions(
        &c,
        &s,
        &t,
        &k,
        None,
        &[&bytes("pruned-large"), &bytes("pruned-small"), &shared],
        old,
    )
    .await;
    let kept = push_versions(
        &c,
        &s,
        &t,
        &k,
        pruned.last().map(|v| v.rev),
        &[&bytes("kept-large"), b"old 5"],
        old,
    )
    .await;
    // Another key and another tenant hold the content of a version that goes.
    push_versions(&c, &s, &t, &key("holder.txt"), None, &[&shared], old).await;
    let other = TenantId::new("tenant-b");
    push_versions(&c, &s, &other, &key("holder.txt"), None, &[&shared], old).await;
    let history = read_pages(&c, &s, &t, &k, 10).await;
    let revs = |vs: &[VersionMeta]| vs.iter().map(|v| v.rev).collect::<Vec<_>>();
    c.eq(
        revs(&history),
        revs(&kept).into_iter().rev().collect(),
        "only the newest two old versions stay",
    );
    for v in &pruned {
        match s.fetch(&t, &k, Some(v.rev)).await {
            Err(Error::NotFound { .. }) => {}
            r => c.fail(format!(
                "fetch of dropped revision {}: expected NotFound, got {:?}",
                v.rev,
                r.map(|f| f.version)
            )),
        }
    }
    let f = c.ok(
        s.fetch(&t, &k, Some(kept[0].rev)).await,
        "fetch a kept version",
    );
    c.eq(f.content, bytes("kept-large"), "a kept version's content");
    for who in [&t, &other] {
        let f = c.ok(
            s.fetch(who, &key("holder.txt"), None).await,
            "fetch content a dropped version shared",
        );
        c.eq(
            f.content,
            shared.clone(),
            "content another version refers to",
        );
    }

    // Young versions stay beyond the count, until they are old and the key is written again.
    let y = key("young.txt");
    let young_versions =
        push_versions(&c, &s, &t, &y, None, &[b"y1", b"y2", b"y3", b"y4"], young).await;
    c.eq(
        read_pages(&c, &s, &t, &y, 10).await.len(),
        4,
        "versions younger than keep_for stay",
    );
    time.advance(2 * 3_600_000);
    let last = push_versions(
        &c,
        &s,
        &t,
        &y,
        young_versions.last().map(|v| v.rev),
        &[b"y5"],
        Stamp::at(now + 2 * 3_600_000, NODE),
    )
    .await;
    let expected = vec![last[0].rev, young_versions[3].rev];
    c.eq(
        revs(&read_pages(&c, &s, &t, &y, 10).await),
        expected,
        "once old, the versions beyond the newest two go at the next write",
    );

    // The current version stays however old, archived losers above it or not.
    let a = key("archived.txt");
    let current = push_versions(&c, &s, &t, &a, None, &[b"current, old"], old).await;
    let mut losers = Vec::new();
    for loser in [b"loser 1", b"loser 2", b"loser 3"] {
        losers.push(archive(&c, &s, &t, &a, loser, old).await);
    }
    c.eq(
        revs(&read_pages(&c, &s, &t, &a, 10).await),
        vec![losers[2].rev, losers[1].rev, current[0].rev],
        "the newest two and the current version stay; the oldest loser goes",
    );
    let f = c.ok(s.fetch(&t, &a, None).await, "fetch the current version");
    c.eq(
        f.content,
        Bytes::from_static(b"current, old"),
        "the current version's content",
    );
    let f = c.ok(
        s.fetch(&t, &a, Some(losers[1].rev)).await,
        "fetch a kept loser",
    );
    c.eq(
        f.content,
        Bytes::from_static(b"loser 2"),
        "a kept loser's content",
    );
}
