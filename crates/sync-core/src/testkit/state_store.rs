//! The [`StateStore`] conformance suite: every commit must leave the store exactly as
//! [`StateBatch::apply_to`] leaves a [`ClientState`] model.
//!
//! Test code: it panics on failure and must not be used by the engine.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use futures::future::BoxFuture;

use super::{key, Check, Rng};
use crate::{
    BaseEntry, ClientState, ContentHash, Cursor, Epoch, Fingerprint, ItemKind, ItemMeta, Key,
    NodeId, Revision, Stamp, StateBatch, StateStore,
};

const SUITE: &str = "state_store";

/// Runs every check of the state-store suite. `make` returns a fresh, empty store.
pub async fn state_store_suite<S, F>(make: F)
where
    S: StateStore + 'static,
    F: Fn() -> BoxFuture<'static, S>,
{
    let c = |name| Check::new(SUITE, name);
    empty_load(c("empty_load"), make().await).await;
    round_trip(c("round_trip"), make().await).await;
    base_removal(c("base_removal"), make().await).await;
    reset_remote(c("reset_remote"), make().await).await;
    empty_batch(c("empty_batch"), make().await).await;
    many_entries(c("many_entries"), make().await).await;
    random_batches(c("random_batches"), make().await).await;
    recent_conflicts(c("recent_conflicts"), make().await).await;
    settled_mark(c("settled_mark"), make().await).await;
}

fn conflict(n: u64) -> crate::ConflictRecord {
    let version = |rev: u64| crate::ConflictVersion {
        stamp: Stamp {
            millis: 1_000 + rev,
            counter: 0,
            node: NodeId(3),
        },
        hash: ContentHash::of(&rev.to_be_bytes()),
        rev: Revision(rev),
    };
    crate::ConflictRecord {
        key: key(&format!("c/{n}")),
        winner: if n.is_multiple_of(2) {
            crate::ConflictWinner::Local
        } else {
            crate::ConflictWinner::Remote
        },
        local: version(2 * n),
        remote: version(2 * n + 1),
        current: Revision(2 * n + 1),
        backup: n.is_multiple_of(3).then(|| crate::Backup {
            key: key(&format!("c/{n}")),
            location: format!("backups/c/{n}"),
            hash: ContentHash::of(&n.to_be_bytes()),
            size: n,
        }),
    }
}

/// Conflict records come back in the order committed, whole, and only the newest
/// [`crate::RECENT_CONFLICTS`] are kept.
async fn recent_conflicts<S: StateStore>(c: Check, s: S) {
    let cap = crate::RECENT_CONFLICTS as u64;
    let mut next = 0;
    for size in [3, cap - 10, 40, 1] {
        let batch = StateBatch {
            conflicts: (next..next + size).map(conflict).collect(),
            ..StateBatch::default()
        };
        next += size;
        c.ok(s.commit(batch).await, "commit of conflict records");
        let kept = c.ok(s.load().await, "load").conflicts;
        let expected: Vec<_> = (next.saturating_sub(cap)..next).map(conflict).collect();
        c.eq(
            kept,
            expected,
            &format!("conflict records after {next} were committed"),
        );
    }
}

fn remote(key_: &str, rev: u64, deleted: bool) -> ItemMeta {
    let k = key(key_);
    ItemMeta {
        kind: ItemKind::File,
        rev: Revision(rev),
        hash: (!deleted).then(|| ContentHash::of(key_.as_bytes())),
        size: if deleted { 0 } else { key_.len() as u64 },
        stamp: Stamp {
            millis: 1_700_000_000_000 + rev,
            counter: (rev % 3) as u32,
            node: NodeId(rev.wrapping_mul(31)),
        },
        deleted,
        key: k,
    }
}

fn base(key_: &str, rev: u64, detached: bool) -> BaseEntry {
    let folder = key_.ends_with("dir");
    BaseEntry {
        kind: if folder {
            ItemKind::Folder
        } else {
            ItemKind::File
        },
        hash: (!folder).then(|| ContentHash::of(key_.as_bytes())),
        size: if folder { 0 } else { key_.len() as u64 },
        rev: Revision(rev),
        stamp: Stamp::at(1_600_000_000_000 + rev, NodeId(rev)),
        fingerprint: rev.is_multiple_of(2).then_some(Fingerprint {
            size: key_.len() as u64,
            mtime_ns: 1_600_000_000_000_000_000 + i128::from(rev) * 1_000_000 + 123,
            inode: rev * 7 + 1,
        }),
        local_key: rev
            .is_multiple_of(3)
            .then(|| key(&format!("elsewhere/{key_}"))),
        detached,
    }
}

/// Commits `batch` to the store and the model, then checks that they agree.
async fn commit<S: StateStore>(c: Check, s: &S, model: &mut ClientState, batch: StateBatch) {
    batch.apply_to(model);
    c.ok(s.commit(batch).await, "commit");
    let loaded = c.ok(s.load().await, "load");
    if &loaded != model {
        c.fail(describe_difference(&loaded, model));
    }
    let summary = c.ok(s.load_summary().await, "load_summary");
    c.eq(
        summary,
        crate::StateSummary::of(model),
        "load_summary after a commit",
    );
    // Every key of the model, plus one that has no entries.
    let keys: std::collections::BTreeSet<Key> = model
        .base
        .keys()
        .chain(model.remote.keys())
        .cloned()
        .chain(std::iter::once(key("no/such/key")))
        .collect();
    let some = c.ok(s.load_keys(&keys).await, "load_keys");
    c.eq(
        some,
        crate::KeyEntries {
            base: model.base.clone(),
            remote: model.remote.clone(),
        },
        "load_keys of every key",
    );
}

fn describe_difference(got: &ClientState, want: &ClientState) -> String {
    if got.node != want.node {
        return format!("node: expected {:?}, got {:?}", want.node, got.node);
    }
    if got.cursor != want.cursor {
        return format!("cursor: expected {:?}, got {:?}", want.cursor, got.cursor);
    }
    if got.settled != want.settled {
        return format!(
            "settled mark: expected {:?}, got {:?}",
            want.settled, got.settled
        );
    }
    for (label, g, w) in [
        ("remote", keys_of(&got.remote), keys_of(&want.remote)),
        ("base", keys_of(&got.base), keys_of(&want.base)),
    ] {
        if g != w {
            let missing: Vec<_> = w.iter().filter(|k| !g.contains(k)).take(5).collect();
            let extra: Vec<_> = g.iter().filter(|k| !w.contains(k)).take(5).collect();
            return format!(
                "{label} keys differ ({} expected, {} loaded); missing {missing:?}, unexpected {extra:?}",
                w.len(),
                g.len()
            );
        }
    }
    for (k, w) in &want.remote {
        if got.remote.get(k) != Some(w) {
            return format!("remote[{k}]: expected {w:?}, got {:?}", got.remote.get(k));
        }
    }
    for (k, w) in &want.base {
        if got.base.get(k) != Some(w) {
            return format!("base[{k}]: expected {w:?}, got {:?}", got.base.get(k));
        }
    }
    "states differ".into()
}

fn keys_of<V>(m: &std::collections::BTreeMap<Key, V>) -> Vec<Key> {
    m.keys().cloned().collect()
}

async fn empty_load<S: StateStore>(c: Check, s: S) {
    let state = c.ok(s.load().await, "load of a new store");
    c.eq(state, ClientState::default(), "state of a new store");
    let again = c.ok(s.load().await, "second load");
    c.eq(
        again,
        ClientState::default(),
        "state of a new store, loaded twice",
    );
}

async fn round_trip<S: StateStore>(c: Check, s: S) {
    let mut model = ClientState::default();
    let cursor = Cursor::new(Epoch(0xdead_beef_0000_0001), Revision(42));
    commit(
        c,
        &s,
        &mut model,
        StateBatch {
            node: Some(NodeId(u64::MAX - 5)),
            reset_remote: false,
            cursor: Some(cursor),
            remote: vec![
                remote("a/b.txt", 4, false),
                remote("gone.txt", 9, true),
                remote("Dossier/été.md", 11, false),
            ],
            base: vec![
                (key("a/b.txt"), Some(base("a/b.txt", 4, false))),
                (key("gone.txt"), Some(base("gone.txt", 6, true))),
                (key("a/dir"), Some(base("a/dir", 3, false))),
            ],
            conflicts: vec![conflict(7)],
            settled: Some("round trip".into()),
        },
    )
    .await;
    let loaded = c.ok(s.load().await, "load");
    c.eq(loaded.node, Some(NodeId(u64::MAX - 5)), "node id");
    c.eq(loaded.cursor, Some(cursor), "cursor");
    // Later batches replace entries and keep what they do not mention.
    commit(
        c,
        &s,
        &mut model,
        StateBatch {
            cursor: Some(Cursor::new(Epoch(0xdead_beef_0000_0001), Revision(50))),
            remote: vec![remote("a/b.txt", 50, false)],
            base: vec![(key("a/b.txt"), Some(base("a/b.txt", 50, false)))],
            ..StateBatch::default()
        },
    )
    .await;
    let loaded = c.ok(s.load().await, "load");
    c.eq(
        loaded.node,
        Some(NodeId(u64::MAX - 5)),
        "node id kept by a later batch",
    );
}

async fn base_removal<S: StateStore>(c: Check, s: S) {
    let mut model = ClientState::default();
    commit(
        c,
        &s,
        &mut model,
        StateBatch {
            base: vec![
                (key("x"), Some(base("x", 1, false))),
                (key("y"), Some(base("y", 2, false))),
            ],
            ..StateBatch::default()
        },
    )
    .await;
    commit(
        c,
        &s,
        &mut model,
        StateBatch {
            base: vec![(key("x"), None), (key("never-there"), None)],
            ..StateBatch::default()
        },
    )
    .await;
    let loaded = c.ok(s.load().await, "load");
    c.eq(
        keys_of(&loaded.base),
        vec![key("y")],
        "base keys after removing x",
    );
    // Set then remove within one batch: the last word counts.
    commit(
        c,
        &s,
        &mut model,
        StateBatch {
            base: vec![
                (key("z"), Some(base("z", 3, false))),
                (key("z"), None),
                (key("y"), None),
                (key("y"), Some(base("y", 4, true))),
            ],
            ..StateBatch::default()
        },
    )
    .await;
}

async fn reset_remote<S: StateStore>(c: Check, s: S) {
    let mut model = ClientState::default();
    commit(
        c,
        &s,
        &mut model,
        StateBatch {
            node: Some(NodeId(5)),
            cursor: Some(Cursor::new(Epoch(1), Revision(9))),
            remote: vec![remote("r1", 1, false), remote("r2", 2, true)],
            base: vec![(key("r1"), Some(base("r1", 1, false)))],
            ..StateBatch::default()
        },
    )
    .await;
    commit(
        c,
        &s,
        &mut model,
        StateBatch {
            reset_remote: true,
            ..StateBatch::default()
        },
    )
    .await;
    let loaded = c.ok(s.load().await, "load after reset_remote");
    c.eq(loaded.cursor, None, "cursor after reset_remote");
    c.eq(loaded.remote.len(), 0, "remote entries after reset_remote");
    c.eq(
        loaded.base.len(),
        1,
        "base entries after reset_remote (kept)",
    );
    c.eq(
        loaded.node,
        Some(NodeId(5)),
        "node after reset_remote (kept)",
    );
    // Reset and refill in one batch: the reset happens first.
    commit(
        c,
        &s,
        &mut model,
        StateBatch {
            reset_remote: true,
            cursor: Some(Cursor::new(Epoch(2), Revision(3))),
            remote: vec![remote("r3", 3, false)],
            ..StateBatch::default()
        },
    )
    .await;
    let loaded = c.ok(s.load().await, "load");
    c.eq(
        keys_of(&loaded.remote),
        vec![key("r3")],
        "remote keys after reset + refill in one batch",
    );
}

async fn empty_batch<S: StateStore>(c: Check, s: S) {
    let mut model = ClientState::default();
    commit(c, &s, &mut model, StateBatch::default()).await;
    commit(
        c,
        &s,
        &mut model,
        StateBatch {
            node: Some(NodeId(1)),
            ..StateBatch::default()
        },
    )
    .await;
    commit(c, &s, &mut model, StateBatch::default()).await;
}

async fn many_entries<S: StateStore>(c: Check, s: S) {
    let mut model = ClientState::default();
    let n = 5_000u64;
    let batch = StateBatch {
        node: Some(NodeId(77)),
        reset_remote: false,
        cursor: Some(Cursor::new(Epoch(3), Revision(n))),
        remote: (0..n)
            .map(|i| remote(&format!("d{}/f{i:05}.txt", i % 37), i + 1, i % 11 == 0))
            .collect(),
        base: (0..n)
            .map(|i| {
                let k = format!("d{}/f{i:05}.txt", i % 37);
                (key(&k), Some(base(&k, i + 1, i % 13 == 0)))
            })
            .collect(),
        conflicts: Vec::new(),
        settled: None,
    };
    commit(c, &s, &mut model, batch).await;
    let loaded = c.ok(s.load().await, "load");
    c.eq(
        loaded.remote.len(),
        n as usize,
        "remote entries after one big batch",
    );
    c.eq(
        loaded.base.len(),
        n as usize,
        "base entries after one big batch",
    );
}

async fn random_batches<S: StateStore>(c: Check, s: S) {
    let mut rng = Rng::new(0x5eed_1234);
    let mut model = ClientState::default();
    let names: Vec<String> = (0..40)
        .map(|i| match i % 4 {
            0 => format!("f{i}"),
            1 => format!("a/f{i}.txt"),
            2 => format!("a/b/{i}dir"),
            _ => format!("é/{i}"),
        })
        .collect();
    for _ in 0..60 {
        let mut batch = StateBatch::default();
        if rng.one_in(10) {
            batch.node = Some(NodeId(rng.next()));
        }
        if rng.one_in(8) {
            batch.reset_remote = true;
        }
        if rng.one_in(2) {
            batch.cursor = Some(Cursor::new(Epoch(rng.below(3)), Revision(rng.below(1_000))));
        }
        for _ in 0..rng.below(8) {
            let name = &names[rng.below(names.len() as u64) as usize];
            batch
                .remote
                .push(remote(name, rng.below(10_000) + 1, rng.one_in(4)));
        }
        for _ in 0..rng.below(8) {
            let name = &names[rng.below(names.len() as u64) as usize];
            let entry = (!rng.one_in(3)).then(|| base(name, rng.below(10_000), rng.one_in(5)));
            batch.base.push((key(name), entry));
        }
        if rng.one_in(4) {
            batch.settled = Some(format!("policy {}", rng.below(3)));
        }
        commit(c, &s, &mut model, batch).await;
    }
}

/// The settled mark: kept by batches that change neither the base nor the remote tree,
/// cleared by every other one unless it sets the mark again.
async fn settled_mark<S: StateStore>(c: Check, s: S) {
    let mut model = ClientState::default();
    let set = |tag: &str| StateBatch {
        settled: Some(tag.into()),
        ..StateBatch::default()
    };
    commit(c, &s, &mut model, set("p1")).await;
    c.eq(model.settled.as_deref(), Some("p1"), "the mark once set");
    let keeps = [
        StateBatch {
            cursor: Some(Cursor::new(Epoch(1), Revision(4))),
            ..StateBatch::default()
        },
        StateBatch {
            node: Some(NodeId(9)),
            conflicts: vec![conflict(1)],
            ..StateBatch::default()
        },
    ];
    for batch in keeps {
        commit(c, &s, &mut model, batch).await;
        c.eq(
            model.settled.as_deref(),
            Some("p1"),
            "kept by a batch without entries",
        );
    }
    let clears = [
        StateBatch {
            remote: vec![remote("a", 5, false)],
            ..StateBatch::default()
        },
        StateBatch {
            base: vec![(key("a"), Some(base("a", 5, false)))],
            ..StateBatch::default()
        },
        StateBatch {
            base: vec![(key("a"), None)],
            ..StateBatch::default()
        },
        StateBatch {
            reset_remote: true,
            ..StateBatch::default()
        },
    ];
    for batch in clears {
        commit(c, &s, &mut model, set("p1")).await;
        commit(c, &s, &mut model, batch).await;
        c.eq(
            model.settled.as_deref(),
            None,
            "cleared by a batch with entries",
        );
    }
    let mut both = set("p2");
    both.base = vec![(key("b"), Some(base("b", 6, false)))];
    commit(c, &s, &mut model, both).await;
    c.eq(
        model.settled.as_deref(),
        Some("p2"),
        "set by a batch with entries that sets it",
    );
}
