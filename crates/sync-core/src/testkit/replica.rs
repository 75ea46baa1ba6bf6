//! The [`Replica`] conformance suite: scans (with the fingerprint fast path and the size
//! limit), reads, guarded writes and removals, folders and backups.
//!
//! Every check starts from a fresh, empty replica and uses only the trait. Test code: it
//! panics on failure and must not be used by the engine.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use futures::future::BoxFuture;

use super::{key, Check, NODE};
use crate::{
    Content, ContentHash, Error, ErrorClass, Expected, Fingerprint, ItemKind, Key, KnownItem,
    LocalItem, Replica, Scan, Stamp,
};

const SUITE: &str = "replica";
const LIMIT: u64 = 1024 * 1024;

/// Runs every check of the replica suite. `make` returns a fresh, empty replica.
pub async fn replica_suite<R, F>(make: F)
where
    R: Replica + 'static,
    F: Fn() -> BoxFuture<'static, R>,
{
    let c = |name| Check::new(SUITE, name);
    empty_scan(c("empty_scan"), make().await).await;
    write_then_scan(c("write_then_scan"), make().await).await;
    rescan_hashes_nothing(c("rescan_hashes_nothing"), make().await).await;
    write_with_wrong_expected(c("write_with_wrong_expected"), make().await).await;
    write_with_right_expected(c("write_with_right_expected"), make().await).await;
    read_missing(c("read_missing"), make().await).await;
    create_folder_idempotent(c("create_folder_idempotent"), make().await).await;
    backup_keeps_old_content(c("backup_keeps_old_content"), make().await).await;
    remove_checks_expected(c("remove_checks_expected"), make().await).await;
    too_large_is_skipped(c("too_large_is_skipped"), make().await).await;
    change_token_moves(c("change_token_moves"), make().await).await;
    scan_since_lists_every_change(c("scan_since_lists_every_change"), make().await).await;
    scan_changes_lists_what_differs(c("scan_changes_lists_what_differs"), make().await).await;
    many_reads_and_writes(c("many_reads_and_writes"), make().await).await;
}

/// `read_many` and `write_many` answer in order, one result each, as single calls would: a
/// missing key is `NotFound`, a write whose `expected` is stale is `Changed` and leaves the
/// item alone while the others are written.
async fn many_reads_and_writes<R: Replica>(c: Check, r: R) {
    let (a, b, gone) = (key("m/a.txt"), key("m/b.txt"), key("m/none.txt"));
    let item_b = write(c, &r, &b, b"old b", Expected::Absent).await;
    let results = r
        .write_many(vec![
            crate::LocalWrite {
                key: a.clone(),
                content: Bytes::from_static(b"new a"),
                expected: Expected::Absent,
            },
            crate::LocalWrite {
                key: b.clone(),
                content: Bytes::from_static(b"stale b"),
                expected: Expected::Present(other_fingerprint(item_b.fingerprint)),
            },
            crate::LocalWrite {
                key: key("m/c/deep.txt"),
                content: Bytes::from_static(b"deep"),
                expected: Expected::Absent,
            },
        ])
        .await;
    c.eq(results.len(), 3, "write_many results");
    let mut results = results.into_iter();
    let written_a = c.ok(results.next().unwrap(), "write_many of a new file");
    c.eq(written_a.key.clone(), a.clone(), "key of the first result");
    c.eq(
        written_a.content.hash(),
        Some(ContentHash::of(b"new a")),
        "hash of the first result",
    );
    expect_changed(
        c,
        results.next().unwrap(),
        "write_many with a stale expected",
    );
    c.ok(results.next().unwrap(), "write_many into a new folder");

    let reads = r.read_many(&[b.clone(), gone.clone(), a.clone()]).await;
    c.eq(reads.len(), 3, "read_many results");
    let mut reads = reads.into_iter();
    c.eq(
        c.ok(reads.next().unwrap(), "read_many of b"),
        Bytes::from_static(b"old b"),
        "b after a refused write",
    );
    match reads.next().unwrap() {
        Err(Error::NotFound { key }) if key == gone => {}
        other => c.fail(format!(
            "read_many of a missing key: expected NotFound, got {other:?}"
        )),
    }
    c.eq(
        c.ok(reads.next().unwrap(), "read_many of a"),
        Bytes::from_static(b"new a"),
        "a after write_many",
    );
    let s = scan(c, &r, &BTreeMap::new()).await;
    c.eq(
        s.items.get(&key("m/c")).map(LocalItem::kind),
        Some(ItemKind::Folder),
        "the folder write_many made",
    );
}

/// A replica with a change token moves it on every write, folder creation and removal, and
/// only then (so an unchanged token means an unchanged replica).
async fn change_token_moves<R: Replica>(c: Check, r: R) {
    let Some(mut last) = c.ok(r.change_token().await, "change_token") else {
        return; // the replica cannot tell: the engine scans every sync
    };
    let k = key("t/file.txt");
    let item = write(c, &r, &k, b"one", Expected::Absent).await;
    token_moved(c, &r, &mut last, "a write").await;
    let _ = scan(c, &r, &BTreeMap::new()).await;
    let _ = c.ok(r.read(&k).await, "read");
    c.eq(
        c.ok(r.change_token().await, "change_token"),
        Some(last),
        "change_token after a scan and a read",
    );
    let item = c.ok(
        r.write(
            &k,
            Bytes::from_static(b"two"),
            Expected::Present(item.fingerprint),
        )
        .await,
        "rewrite",
    );
    token_moved(c, &r, &mut last, "a rewrite").await;
    c.ok(r.create_folder(&key("u")).await, "create_folder");
    token_moved(c, &r, &mut last, "create_folder").await;
    c.ok(
        r.remove(&k, Expected::Present(item.fingerprint)).await,
        "remove",
    );
    token_moved(c, &r, &mut last, "a removal").await;
}

/// A replica that lists its changes ([`Replica::scan_since`]) names every key written,
/// rewritten, created as a folder or removed after the token, and each key asked for, and no
/// other; it lists the present ones exactly as a full scan does.
async fn scan_since_lists_every_change<R: Replica>(c: Check, r: R) {
    let (a, b, same, asked) = (
        key("s/a.txt"),
        key("s/b.txt"),
        key("s/same.txt"),
        key("s/asked.txt"),
    );
    let item_a = write(c, &r, &a, b"a", Expected::Absent).await;
    let item_b = write(c, &r, &b, b"b", Expected::Absent).await;
    write(c, &r, &same, b"same", Expected::Absent).await;
    write(c, &r, &asked, b"asked", Expected::Absent).await;
    let Some(token) = c.ok(r.change_token().await, "change_token") else {
        return; // the replica cannot tell: the engine scans every sync
    };
    let absent = key("s/never.txt");
    let also: BTreeSet<Key> = [asked.clone(), absent.clone()].into();
    let Some(none_yet) = c.ok(r.scan_since(token, &also, LIMIT).await, "scan_since") else {
        return; // the replica cannot list its changes: the engine scans in full
    };
    c.eq(
        none_yet.keys,
        also.clone(),
        "scan_since right after the token: only the key asked for",
    );

    c.ok(
        r.write(
            &a,
            Bytes::from_static(b"a2"),
            Expected::Present(item_a.fingerprint),
        )
        .await,
        "rewrite",
    );
    c.ok(
        r.remove(&b, Expected::Present(item_b.fingerprint)).await,
        "remove",
    );
    let new = key("t/new.txt");
    write(c, &r, &new, b"new", Expected::Absent).await;
    c.ok(r.create_folder(&key("u")).await, "create_folder");

    let Some(changed) = c.ok(r.scan_since(token, &also, LIMIT).await, "scan_since") else {
        c.fail("scan_since answered once, then said it cannot tell");
    };
    for k in [&a, &b, &new, &key("t"), &key("u"), &asked, &absent] {
        c.ensure(changed.keys.contains(k), || format!("scan_since names {k}"));
    }
    c.ensure(!changed.keys.contains(&same), || {
        "scan_since leaves out an unchanged key not asked for".to_owned()
    });
    c.ensure(!changed.scan.items.contains_key(&b), || {
        "a removed key is named but not listed".to_owned()
    });
    let full = scan(c, &r, &BTreeMap::new()).await;
    for (k, item) in &changed.scan.items {
        c.ensure(changed.keys.contains(k), || {
            format!("a listed key {k} is named")
        });
        match full.items.get(k) {
            Some(f) => {
                c.eq(
                    item.content,
                    f.content,
                    &format!("content of {k} as a full scan lists it"),
                );
                c.eq(item.size, f.size, &format!("size of {k}"));
                c.eq(
                    item.fingerprint,
                    f.fingerprint,
                    &format!("fingerprint of {k}"),
                );
            }
            None => c.fail(format!("scan_since lists {k}, a full scan does not")),
        }
    }
    for k in [&a, &new, &asked] {
        c.ensure(changed.scan.items.contains_key(k), || {
            format!("scan_since lists {k}")
        });
    }
}

/// `scan_changes` names every key that differs from the fingerprints it is given (edited, new,
/// gone, asked for) with its item, leaves matching items out, and agrees with a full scan
/// compared by [`crate::changes_of`].
async fn scan_changes_lists_what_differs<R: Replica>(c: Check, r: R) {
    let (edited, same, removed, asked) = (
        key("a/1.txt"),
        key("a/2.txt"),
        key("b/3.txt"),
        key("c/4.txt"),
    );
    for k in [&edited, &same, &removed, &asked] {
        write(c, &r, k, b"first", Expected::Absent).await;
    }
    let mut known = known_from(&scan(c, &r, &BTreeMap::new()).await);
    let never = key("never/there.txt");
    known.insert(
        never.clone(),
        KnownItem {
            fingerprint: known[&same].fingerprint,
            content: Content::File(ContentHash::of(b"first")),
        },
    );
    let was = known[&edited].fingerprint;
    write(c, &r, &edited, b"second, longer", Expected::Present(was)).await;
    let gone = known[&removed].fingerprint;
    c.ok(r.remove(&removed, Expected::Present(gone)).await, "remove");
    let new = key("d/5.txt");
    write(c, &r, &new, b"new", Expected::Absent).await;
    let also = BTreeSet::from([asked.clone()]);
    let known = std::sync::Arc::new(known);
    let changes = c.ok(
        r.scan_changes(known.clone(), &also, LIMIT).await,
        "scan_changes",
    );
    for k in [&edited, &removed, &never, &asked, &new, &key("d")] {
        if !changes.keys.contains(k) {
            c.fail(format!("scan_changes did not name {k}: {:?}", changes.keys));
        }
    }
    c.eq(
        changes.keys.contains(&same),
        false,
        "an unchanged key named",
    );
    let items: BTreeSet<&Key> = changes.scan.items.keys().collect();
    c.eq(
        items,
        BTreeSet::from([&asked, &edited, &new, &key("d")]),
        "items listed by scan_changes",
    );
    let full = crate::changes_of(scan(c, &r, &known).await, &known, &also);
    c.eq(
        changes.keys,
        full.keys,
        "keys of scan_changes and of a full scan",
    );
    c.eq(
        changes.scan.items,
        full.scan.items,
        "items of scan_changes and of a full scan",
    );
}

async fn token_moved<R: Replica>(c: Check, r: &R, last: &mut u64, what: &str) {
    match c.ok(r.change_token().await, "change_token") {
        None => c.fail(format!("change_token became None after {what}")),
        Some(now) if now == *last => c.fail(format!("change_token stayed {now} after {what}")),
        Some(now) => *last = now,
    }
}

async fn scan<R: Replica>(c: Check, r: &R, known: &BTreeMap<Key, KnownItem>) -> Scan {
    c.ok(r.scan(known, LIMIT).await, "scan")
}

async fn write<R: Replica>(
    c: Check,
    r: &R,
    k: &Key,
    content: &'static [u8],
    expected: Expected,
) -> LocalItem {
    c.ok(
        r.write(k, Bytes::from_static(content), expected).await,
        &format!("write {k} with {expected:?}"),
    )
}

fn known_from(scan: &Scan) -> BTreeMap<Key, KnownItem> {
    scan.items
        .iter()
        .map(|(k, item)| {
            (
                k.clone(),
                KnownItem {
                    fingerprint: item.fingerprint,
                    content: item.content,
                },
            )
        })
        .collect()
}

fn expect_changed<V: std::fmt::Debug>(c: Check, r: crate::Result<V>, what: &str) {
    match r {
        Err(Error::Changed { .. }) => {}
        other => c.fail(format!("{what}: expected Err(Changed), got {other:?}")),
    }
}

/// A fingerprint that surely differs from `fp`.
fn other_fingerprint(fp: Fingerprint) -> Fingerprint {
    Fingerprint {
        size: fp.size + 1,
        mtime_ns: fp.mtime_ns - 1_000_000_000,
        inode: fp.inode.wrapping_add(1),
    }
}

async fn empty_scan<R: Replica>(c: Check, r: R) {
    let s = scan(c, &r, &BTreeMap::new()).await;
    c.eq(s.items.len(), 0, "items of an empty replica");
    c.eq(s.skipped.len(), 0, "skipped items of an empty replica");
    c.eq(s.hashed, 0, "items hashed in an empty replica");
    let backups = c.ok(r.backups().await, "backups");
    c.eq(backups, vec![], "backups of an empty replica");
}

async fn write_then_scan<R: Replica>(c: Check, r: R) {
    let k = key("a/b/c.txt");
    let written = write(c, &r, &k, b"hello", Expected::Absent).await;
    c.eq(&written.key, &k, "key of the written item");
    c.eq(
        written.content,
        Content::File(ContentHash::of(b"hello")),
        "content of the written item",
    );
    c.eq(written.size, 5, "size of the written item");
    let s = scan(c, &r, &BTreeMap::new()).await;
    c.eq(
        s.items.keys().map(Key::as_str).collect::<Vec<_>>(),
        vec!["a", "a/b", "a/b/c.txt"],
        "scanned keys (parents created as folders)",
    );
    c.eq(s.items[&key("a")].kind(), ItemKind::Folder, "kind of `a`");
    c.eq(
        s.items[&key("a/b")].kind(),
        ItemKind::Folder,
        "kind of `a/b`",
    );
    let item = &s.items[&k];
    c.eq(
        item.content,
        Content::File(ContentHash::of(b"hello")),
        "scanned content of the file",
    );
    c.eq(item.size, 5, "scanned size");
    c.eq(
        item.fingerprint.settled(),
        written.fingerprint.settled(),
        "scanned fingerprint vs the one write returned (either may be marked racy)",
    );
    c.eq(s.hashed, 1, "files hashed by a scan with nothing known");
    let read = c.ok(r.read(&k).await, "read");
    c.eq(read, Bytes::from_static(b"hello"), "read content");
}

async fn rescan_hashes_nothing<R: Replica>(c: Check, r: R) {
    write(c, &r, &key("x/one.txt"), b"one", Expected::Absent).await;
    write(c, &r, &key("two.txt"), b"two", Expected::Absent).await;
    write(c, &r, &key("x/y/three.txt"), b"three", Expected::Absent).await;
    let first = scan(c, &r, &BTreeMap::new()).await;
    c.eq(first.hashed, 3, "files hashed by the first scan");
    let known = known_from(&first);
    let second = scan(c, &r, &known).await;
    c.eq(
        second.hashed,
        0,
        "files hashed by a rescan with everything known",
    );
    c.eq(&second.items, &first.items, "items of the rescan");
    // A known entry with another fingerprint is hashed again.
    let mut stale = known.clone();
    let entry = stale.get_mut(&key("two.txt")).unwrap();
    entry.fingerprint = other_fingerprint(entry.fingerprint);
    entry.content = Content::File(ContentHash::of(b"wrong"));
    let third = scan(c, &r, &stale).await;
    c.eq(third.hashed, 1, "files hashed when one fingerprint differs");
    c.eq(
        third.items[&key("two.txt")].content,
        Content::File(ContentHash::of(b"two")),
        "content of a re-hashed file",
    );
}

async fn write_with_wrong_expected<R: Replica>(c: Check, r: R) {
    let k = key("doc.txt");
    let first = write(c, &r, &k, b"original", Expected::Absent).await;
    expect_changed(
        c,
        r.write(&k, Bytes::from_static(b"x"), Expected::Absent)
            .await,
        "write with Expected::Absent over an existing file",
    );
    expect_changed(
        c,
        r.write(
            &k,
            Bytes::from_static(b"x"),
            Expected::Present(other_fingerprint(first.fingerprint)),
        )
        .await,
        "write with another fingerprint",
    );
    expect_changed(
        c,
        r.write(
            &key("missing.txt"),
            Bytes::from_static(b"x"),
            Expected::Present(first.fingerprint),
        )
        .await,
        "write with Expected::Present to a missing key",
    );
    let read = c.ok(r.read(&k).await, "read");
    c.eq(
        read,
        Bytes::from_static(b"original"),
        "content after refused writes",
    );
    let s = scan(c, &r, &BTreeMap::new()).await;
    c.eq(
        s.items.keys().map(Key::as_str).collect::<Vec<_>>(),
        vec!["doc.txt"],
        "items after refused writes",
    );
    c.eq(
        s.items[&k].fingerprint.settled(),
        first.fingerprint.settled(),
        "fingerprint after refused writes",
    );
}

async fn write_with_right_expected<R: Replica>(c: Check, r: R) {
    let k = key("dir/doc.txt");
    let first = write(c, &r, &k, b"v1", Expected::Absent).await;
    let second = write(
        c,
        &r,
        &k,
        b"version 2",
        Expected::Present(first.fingerprint),
    )
    .await;
    c.ensure(
        second.fingerprint.settled() != first.fingerprint.settled(),
        || {
            format!(
                "a replaced file must get a new fingerprint: {:?} both times",
                first.fingerprint
            )
        },
    );
    c.eq(
        second.content,
        Content::File(ContentHash::of(b"version 2")),
        "content of the replacement",
    );
    let read = c.ok(r.read(&k).await, "read");
    c.eq(
        read,
        Bytes::from_static(b"version 2"),
        "content after replace",
    );
    // Same size, different bytes: the fingerprint must still change.
    let third = write(
        c,
        &r,
        &k,
        b"version 3",
        Expected::Present(second.fingerprint),
    )
    .await;
    c.ensure(
        third.fingerprint.settled() != second.fingerprint.settled(),
        || {
            format!(
                "a same-size rewrite must get a new fingerprint: {:?} both times",
                second.fingerprint
            )
        },
    );
    let s = scan(c, &r, &BTreeMap::new()).await;
    c.eq(
        s.items[&k].fingerprint.settled(),
        third.fingerprint.settled(),
        "scanned fingerprint",
    );
    expect_changed(
        c,
        r.write(
            &k,
            Bytes::from_static(b"x"),
            Expected::Present(first.fingerprint),
        )
        .await,
        "write with the first (now stale) fingerprint",
    );
}

async fn read_missing<R: Replica>(c: Check, r: R) {
    match r.read(&key("nothing/here.txt")).await {
        Err(Error::NotFound { .. }) => {}
        other => c.fail(format!(
            "read of a missing file: expected NotFound, got {other:?}"
        )),
    }
}

async fn create_folder_idempotent<R: Replica>(c: Check, r: R) {
    let k = key("p/q");
    let first = c.ok(r.create_folder(&k).await, "create_folder");
    c.eq(first.kind(), ItemKind::Folder, "kind of a created folder");
    c.eq(&first.key, &k, "key of a created folder");
    let second = c.ok(r.create_folder(&k).await, "create_folder again");
    c.eq(
        second.kind(),
        ItemKind::Folder,
        "kind after create_folder twice",
    );
    let s = scan(c, &r, &BTreeMap::new()).await;
    c.eq(
        s.items
            .iter()
            .map(|(k, i)| (k.as_str(), i.kind()))
            .collect::<Vec<_>>(),
        vec![("p", ItemKind::Folder), ("p/q", ItemKind::Folder)],
        "items after create_folder twice",
    );
    write(c, &r, &key("p/q/f.txt"), b"f", Expected::Absent).await;
    c.ok(
        r.create_folder(&k).await,
        "create_folder on a folder with items",
    );
    c.ok(r.read(&key("p/q/f.txt")).await, "read a file in the folder");
    match r.create_folder(&key("p/q/f.txt")).await {
        Err(e) if e.class() == ErrorClass::Item => {}
        other => c.fail(format!(
            "create_folder where a file is: expected an Item-class error, got {other:?}"
        )),
    }
    let read = c.ok(r.read(&key("p/q/f.txt")).await, "read");
    c.eq(
        read,
        Bytes::from_static(b"f"),
        "the file after a refused create_folder",
    );
}

async fn backup_keeps_old_content<R: Replica>(c: Check, r: R) {
    let k = key("notes/page.html");
    let first = write(c, &r, &k, b"old content", Expected::Absent).await;
    let stamp = Stamp::at(1_700_000_000_000, NODE);
    let backup = match c.ok(r.backup(&k, stamp).await, "backup") {
        Some(b) => b,
        None => c.fail("backup of an existing file: expected Some(Backup), got None"),
    };
    c.eq(&backup.key, &k, "backup's key");
    c.eq(
        backup.hash,
        ContentHash::of(b"old content"),
        "backup's hash",
    );
    c.eq(backup.size, 11, "backup's size");
    write(c, &r, &k, b"new", Expected::Present(first.fingerprint)).await;
    let old = c.ok(r.read_backup(&backup).await, "read_backup");
    c.eq(old, Bytes::from_static(b"old content"), "backed-up content");
    let listed = c.ok(r.backups().await, "backups");
    c.eq(
        listed.clone(),
        vec![backup.clone()],
        "backups after one backup",
    );
    // The backup is not an item.
    let s = scan(c, &r, &BTreeMap::new()).await;
    c.eq(
        s.items.keys().map(Key::as_str).collect::<Vec<_>>(),
        vec!["notes", "notes/page.html"],
        "items after a backup (backups are not items)",
    );
    // Two backups of the same content with the same stamp are both kept.
    let cur = s.items[&k].fingerprint;
    let b2 = c.ok(r.backup(&k, stamp).await, "second backup").unwrap();
    write(c, &r, &k, b"new", Expected::Present(cur)).await;
    let b3 = c.ok(r.backup(&k, stamp).await, "third backup").unwrap();
    c.ensure(b2.location != b3.location, || {
        format!("two backups must not share a location: {b2:?}, {b3:?}")
    });
    let locations: BTreeSet<String> = c
        .ok(r.backups().await, "backups")
        .into_iter()
        .map(|b| b.location)
        .collect();
    c.eq(locations.len(), 3, "distinct backup locations");
    c.eq(
        c.ok(r.read_backup(&b3).await, "read_backup"),
        Bytes::from_static(b"new"),
        "content of the third backup",
    );
    match c.ok(
        r.backup(&key("nope.txt"), stamp).await,
        "backup of a missing file",
    ) {
        None => {}
        Some(b) => c.fail(format!(
            "backup of a missing file: expected None, got {b:?}"
        )),
    }
}

async fn remove_checks_expected<R: Replica>(c: Check, r: R) {
    let k = key("d/file.txt");
    let item = write(c, &r, &k, b"bytes", Expected::Absent).await;
    expect_changed(
        c,
        r.remove(&k, Expected::Present(other_fingerprint(item.fingerprint)))
            .await,
        "remove with another fingerprint",
    );
    expect_changed(
        c,
        r.remove(&k, Expected::Absent).await,
        "remove with Expected::Absent of an existing file",
    );
    let read = c.ok(r.read(&k).await, "read");
    c.eq(
        read,
        Bytes::from_static(b"bytes"),
        "content after refused removes",
    );

    let s = scan(c, &r, &BTreeMap::new()).await;
    let folder = s.items[&key("d")].fingerprint;
    c.ok(
        r.remove(&key("d"), Expected::Present(folder)).await,
        "remove of a folder that still holds a file",
    );
    c.ok(
        r.read(&k).await,
        "read of a file whose folder removal was refused",
    );

    c.ok(
        r.remove(&k, Expected::Present(item.fingerprint)).await,
        "remove with the right fingerprint",
    );
    match r.read(&k).await {
        Err(Error::NotFound { .. }) => {}
        other => c.fail(format!(
            "read after remove: expected NotFound, got {other:?}"
        )),
    }
    let s = scan(c, &r, &BTreeMap::new()).await;
    c.eq(
        s.items.keys().map(Key::as_str).collect::<Vec<_>>(),
        vec!["d"],
        "items after removing the file",
    );
    let folder = s.items[&key("d")].fingerprint;
    c.ok(
        r.remove(&key("d"), Expected::Present(folder)).await,
        "remove of an empty folder",
    );
    let s = scan(c, &r, &BTreeMap::new()).await;
    c.eq(s.items.len(), 0, "items after removing the empty folder");
}

async fn too_large_is_skipped<R: Replica>(c: Check, r: R) {
    let big = key("big.bin");
    write(c, &r, &big, b"0123456789", Expected::Absent).await;
    write(c, &r, &key("ok.txt"), b"tiny", Expected::Absent).await;
    let s = c.ok(
        r.scan(&BTreeMap::new(), 4).await,
        "scan with a limit of 4 bytes",
    );
    c.eq(
        s.items.keys().map(Key::as_str).collect::<Vec<_>>(),
        vec!["ok.txt"],
        "items with a 10-byte file over a 4-byte limit",
    );
    c.eq(s.skipped.len(), 1, "skipped entries");
    let skipped = &s.skipped[0];
    c.eq(skipped.key.as_ref(), Some(&big), "key of the skipped file");
    c.eq(
        skipped.class,
        ErrorClass::Warning,
        "class of a too-large skip",
    );
    c.ensure(
        skipped.message.contains("10") && skipped.message.contains('4'),
        || {
            format!(
                "the message must give the size (10) and the limit (4), got {:?}",
                skipped.message
            )
        },
    );
    c.ensure(s.hashed <= 1, || {
        format!("a too-large file must not be hashed; hashed = {}", s.hashed)
    });
}
