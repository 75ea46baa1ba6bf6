//! The history checks of the [`ServerStore`] conformance suite: paging
//! ([`ServerStore::history`] with a [`HistoryRange`]). Run from
//! [`super::server_store_suite`]. Test code: it panics on failure and must not be used by the
//! engine.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;

use super::{key, push_req, Check, NODE};
use crate::{
    ArchiveRequest, ContentHash, Error, HistoryRange, Key, Precondition, PushOutcome, Revision,
    ServerStore, Stamp, TenantId, VersionMeta,
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
