//! [`WriteRules`]: every rule a server store applies to a write, as pure functions of what the
//! store read (docs/SPEC.md §2, §3, §4).
//!
//! The rules, once for every store:
//! - **preconditions**: a create needs no current version (or a tombstone); an overwrite or a
//!   delete needs the current revision to be the one the client based its change on; otherwise
//!   the answer is a [`Decision::Conflict`] with the current item;
//! - **kinds**: a file never replaces a live folder, and no folder is made where a live file is;
//! - **parent folders**: writing `a/b/c` first creates each of `a` and `a/b` that is absent or a
//!   tombstone, outermost first, each with its own revision;
//! - **tombstones** keep the kind of what they delete; **archives** enter the history only;
//! - **stamps** more than `max_skew` ahead of the server's clock are clamped to it;
//! - **revisions** follow the Lamport rule (`max(counter, seen) + 1`) and stay at or below
//!   [`MAX_REVISION`].
//!
//! Functions here take the tenant's counter and the current state of the keys from
//! [`keys_to_read`], and return a refusal or a [`Write`]: the rows to store and the new
//! counter. They must not do I/O or keep state; storing the rows is the caller's job.
//!
//! **Rebasing** ([`rebase`]): a store that decides without holding the tenant's lock (it read
//! the counter and the keys, and checks at commit that the keys are unchanged) may find that
//! other writes took `by` more revisions in between. It then moves every revision the write
//! issued up by `by` (the rows and the counter alike). When the write's `seen` is at or below
//! the counter it was decided on (every honest client's case), that is exactly what deciding on
//! the newer counter gives; otherwise the revisions are still above both the counter and
//! `seen`, distinct and increasing, only with a wider jump.

use crate::{
    ArchiveRequest, ContentHash, DeleteRequest, Error, FolderRequest, ItemKind, ItemMeta, Key,
    PushOutcome, PushRequest, Result, Revision, ServerConfig, Stamp, VersionMeta,
};

/// The highest revision a store issues, so that revisions fit a signed 64-bit SQL integer.
pub const MAX_REVISION: Revision = Revision(i64::MAX as u64);

/// The highest `seen` a write may carry. A client can only have seen revisions a server
/// issued, so no honest value comes near it; a larger one is refused, so a single request
/// can never push a tenant's counter close to [`MAX_REVISION`] (2^62 revisions stay after
/// any accepted `seen`).
pub const MAX_SEEN: Revision = Revision(1 << 62);

/// One row an accepted write stores: a version of an item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// The version.
    pub item: ItemMeta,
    /// True: it becomes the key's current version (the change feed) and enters its history.
    /// False: an archive, kept in the history only.
    pub current: bool,
}

/// What an accepted write stores, and what it answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write<T> {
    /// The rows, in the order they were issued (folders before what is inside them). Empty
    /// when nothing changes (a folder path that already exists).
    pub rows: Vec<Row>,
    /// The tenant's counter after this write; the store saves it with the rows.
    pub counter: Revision,
    /// What the operation returns to the client.
    pub value: T,
}

impl<T> Write<T> {
    /// The newest revision this write puts into the change feed (`None` when it puts none in,
    /// as an archive): what the store tells long-polls after it commits.
    pub fn feed_head(&self) -> Option<Revision> {
        self.rows
            .iter()
            .filter(|r| r.current)
            .map(|r| r.item.rev)
            .max()
    }
}

/// The decision on a conditional write (a push or a delete).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The precondition failed; nothing is written. The current item, if any, goes back to the
    /// client so it can reconcile against it.
    Conflict {
        /// The key's current version (tombstones included).
        current: Option<ItemMeta>,
    },
    /// Accepted: store these rows.
    Accept(Write<ItemMeta>),
}

impl Decision {
    /// The answer to the client once the rows (if any) are stored.
    pub fn into_outcome(self) -> PushOutcome {
        match self {
            Decision::Conflict { current } => PushOutcome::Conflict { current },
            Decision::Accept(write) => PushOutcome::Accepted(write.value),
        }
    }
}

/// The keys whose current state a write to `key` depends on, in the order the rules expect
/// them: the ancestors of `key`, outermost first, then `key` itself.
///
/// ```
/// use sync_core::{server::keys_to_read, Key};
/// let keys = keys_to_read(&Key::new("a/b/c.txt").unwrap());
/// let names: Vec<&str> = keys.iter().map(|k| k.as_str()).collect();
/// assert_eq!(names, ["a", "a/b", "a/b/c.txt"]);
/// ```
pub fn keys_to_read(key: &Key) -> Vec<Key> {
    let mut keys = key.ancestors();
    keys.push(key.clone());
    keys
}

/// Where revision `rev` of a write decided on the counter `decided_on` lands when the store
/// commits it after others issued `by` more revisions (the counter was `decided_on + by` at
/// commit; module docs, "Rebasing"): a revision the write issued (above `decided_on`) moves up
/// by `by`; one it only read (an existing item, at or below `decided_on`) stays.
///
/// Fails with [`Error::Storage`] when the result would pass [`MAX_REVISION`].
///
/// ```
/// use sync_core::{server::rebase, Revision};
/// assert_eq!(rebase(Revision(11), Revision(10), 5).unwrap(), Revision(16));
/// assert_eq!(rebase(Revision(7), Revision(10), 5).unwrap(), Revision(7));
/// ```
pub fn rebase(rev: Revision, decided_on: Revision, by: u64) -> Result<Revision> {
    if rev <= decided_on {
        return Ok(rev);
    }
    match rev.0.checked_add(by) {
        Some(r) if Revision(r) <= MAX_REVISION => Ok(Revision(r)),
        _ => Err(Error::storage(format!(
            "revision {rev} moved up by {by} would pass 2^63 - 1; the write was refused"
        ))),
    }
}

/// The write rules with the server's settings (its clock and skew for the stamp clamp, and its
/// size limit).
#[derive(Debug, Clone)]
pub struct WriteRules {
    config: ServerConfig,
}

impl WriteRules {
    /// The rules under `config`.
    pub fn new(config: ServerConfig) -> WriteRules {
        WriteRules { config }
    }

    /// The settings the rules apply.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// A client's stamp as the server records it: clamped to the server's clock when it is more
    /// than `max_skew` ahead (docs/SPEC.md §2).
    pub fn clamp(&self, stamp: Stamp) -> Stamp {
        stamp.clamped(self.config.time.now_millis(), self.config.max_skew)
    }

    /// Decides a push of a file. `read` is the current state (tombstones included) of each key
    /// of [`keys_to_read`]`(&req.key)`, in that order; `counter` is the tenant's counter. The
    /// content is checked separately ([`super::check_content`]) before this is called.
    ///
    /// Fails with [`Error::Item`] when a live folder is at the key or a live file is where a
    /// parent folder must be (nothing is written), and with [`Error::Storage`] when `read` does
    /// not match the key or the counter would pass [`MAX_REVISION`].
    pub fn push(
        &self,
        req: &PushRequest,
        read: &[Option<ItemMeta>],
        counter: Revision,
    ) -> Result<Decision> {
        self.push_of_size(req, req.content.len() as u64, read, counter)
    }

    /// [`push`](Self::push) of content of `size` bytes that is not in `req.content` (a push
    /// whose content waits in a file, [`crate::ServerStore::push_file`]).
    pub fn push_of_size(
        &self,
        req: &PushRequest,
        size: u64,
        read: &[Option<ItemMeta>],
        counter: Revision,
    ) -> Result<Decision> {
        let (ancestors, current) = split_read(&req.key, read)?;
        let allowed = match req.precondition {
            crate::Precondition::Create => current.is_none_or(|c| c.deleted),
            crate::Precondition::Match(rev) => current.is_some_and(|c| c.rev == rev),
        };
        if !allowed {
            return Ok(Decision::Conflict {
                current: current.cloned(),
            });
        }
        if current.is_some_and(|c| c.is_live() && c.kind == ItemKind::Folder) {
            return Err(Error::item(
                &req.key,
                "is a folder on the server, so a file cannot replace it; rename one of them",
            ));
        }
        let stamp = self.clamp(req.stamp);
        let mut w = Writer::new(&req.key, counter, req.seen)?;
        w.folders(&req.key, &req.key.ancestors(), ancestors, stamp)?;
        let item = w.file(&req.key, req.hash, size, stamp)?;
        w.current(item.clone());
        Ok(Decision::Accept(w.finish(item)))
    }

    /// Decides a delete: a tombstone (of the same kind) when `current` is live at the revision
    /// the client saw, else a conflict.
    pub fn delete(
        &self,
        req: &DeleteRequest,
        current: Option<&ItemMeta>,
        counter: Revision,
    ) -> Result<Decision> {
        let Some(live) = current.filter(|c| c.is_live() && c.rev == req.rev) else {
            return Ok(Decision::Conflict {
                current: current.cloned(),
            });
        };
        let mut w = Writer::new(&req.key, counter, req.seen)?;
        let tombstone = ItemMeta {
            key: req.key.clone(),
            kind: live.kind,
            rev: w.next()?,
            hash: None,
            size: 0,
            stamp: self.clamp(req.stamp),
            deleted: true,
        };
        w.current(tombstone.clone());
        Ok(Decision::Accept(w.finish(tombstone)))
    }

    /// Decides a folder creation: every folder of the path that is absent or a tombstone is
    /// created, outermost first; the answer is the folder itself. `read` is as for
    /// [`push`](Self::push). Idempotent: an existing path writes no row.
    pub fn folder(
        &self,
        req: &FolderRequest,
        read: &[Option<ItemMeta>],
        counter: Revision,
    ) -> Result<Write<ItemMeta>> {
        let path = keys_to_read(&req.key);
        check_read(&req.key, path.len(), read)?;
        let mut w = Writer::new(&req.key, counter, req.seen)?;
        let folder = w.folders(&req.key, &path, read, self.clamp(req.stamp))?;
        let folder = folder
            .ok_or_else(|| Error::storage(format!("{}: the folder was not created", req.key)))?;
        Ok(w.finish(folder))
    }

    /// Decides an archive: the losing side of a conflict kept in the key's history, with its
    /// own revision, without becoming current.
    pub fn archive(&self, req: &ArchiveRequest, counter: Revision) -> Result<Write<VersionMeta>> {
        let mut w = Writer::new(&req.key, counter, req.seen)?;
        let item = w.file(
            &req.key,
            req.hash,
            req.content.len() as u64,
            self.clamp(req.stamp),
        )?;
        let version = item.version();
        w.rows.push(Row {
            item,
            current: false,
        });
        Ok(w.finish(version))
    }
}

/// Splits what a store read for `key` into its ancestors' state and the key's own.
fn split_read<'a>(
    key: &Key,
    read: &'a [Option<ItemMeta>],
) -> Result<(&'a [Option<ItemMeta>], Option<&'a ItemMeta>)> {
    check_read(key, key.ancestors().len() + 1, read)?;
    match read.split_last() {
        Some((current, ancestors)) => Ok((ancestors, current.as_ref())),
        None => Err(misread(key)),
    }
}

/// Checks that `read` holds one entry per key to read and that each found item is that key.
fn check_read(key: &Key, expected: usize, read: &[Option<ItemMeta>]) -> Result<()> {
    let keys = keys_to_read(key);
    let aligned = read.len() == expected
        && keys.len() == expected
        && read
            .iter()
            .zip(&keys)
            .all(|(item, k)| item.as_ref().is_none_or(|m| &m.key == k));
    if aligned {
        Ok(())
    } else {
        Err(misread(key))
    }
}

fn misread(key: &Key) -> Error {
    Error::storage(format!(
        "{key}: internal error: the store read other keys than the write needs; report it as a bug"
    ))
}

/// The rows and counter of one write being decided.
struct Writer {
    counter: Revision,
    seen: Revision,
    rows: Vec<Row>,
}

impl Writer {
    /// A writer from the tenant's counter; refuses a `seen` over [`MAX_SEEN`].
    fn new(key: &Key, counter: Revision, seen: Revision) -> Result<Writer> {
        if seen > MAX_SEEN {
            return Err(Error::item(
                key,
                format!(
                    "the write says it has seen revision {seen}, more than any server issues \
                     (at most {MAX_SEEN}); it was refused: the client's sync state is damaged, \
                     so reset it"
                ),
            ));
        }
        Ok(Writer {
            counter,
            seen,
            rows: Vec::new(),
        })
    }

    /// The next revision by the Lamport rule.
    fn next(&mut self) -> Result<Revision> {
        let next = self.counter.lamport_next(self.seen);
        if next > MAX_REVISION {
            return Err(Error::storage(format!(
                "a client sent seen = {}, but revisions must stay below 2^63 - 1; the request \
                 was refused (the client's state is probably damaged)",
                self.seen
            )));
        }
        self.counter = next;
        Ok(next)
    }

    /// A version of the file `key` with the next revision.
    fn file(&mut self, key: &Key, hash: ContentHash, size: u64, stamp: Stamp) -> Result<ItemMeta> {
        Ok(ItemMeta {
            key: key.clone(),
            kind: ItemKind::File,
            rev: self.next()?,
            hash: Some(hash),
            size,
            stamp,
            deleted: false,
        })
    }

    fn current(&mut self, item: ItemMeta) {
        self.rows.push(Row {
            item,
            current: true,
        });
    }

    /// Makes every folder of `folders` (with its current state in `state`, same order) that is
    /// absent or a tombstone; a live file among them fails the write for `target` before any
    /// row is added. Returns the last folder of the path.
    fn folders(
        &mut self,
        target: &Key,
        folders: &[Key],
        state: &[Option<ItemMeta>],
        stamp: Stamp,
    ) -> Result<Option<ItemMeta>> {
        if let Some((folder, _)) = folders.iter().zip(state).find(|(_, s)| {
            s.as_ref()
                .is_some_and(|m| m.is_live() && m.kind == ItemKind::File)
        }) {
            return Err(Error::item(
                target,
                format!(
                    "{folder} is a file on the server, so no folder can be made there; \
                     rename or remove that file"
                ),
            ));
        }
        let mut last = None;
        for (folder, current) in folders.iter().zip(state) {
            match current {
                Some(item) if item.is_live() => last = Some(item.clone()),
                _ => {
                    let item = ItemMeta {
                        key: folder.clone(),
                        kind: ItemKind::Folder,
                        rev: self.next()?,
                        hash: None,
                        size: 0,
                        stamp,
                        deleted: false,
                    };
                    self.current(item.clone());
                    last = Some(item);
                }
            }
        }
        Ok(last)
    }

    fn finish<T>(self, value: T) -> Write<T> {
        Write {
            rows: self.rows,
            counter: self.counter,
            value,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ContentHash, ManualTime, NodeId, Precondition};
    use bytes::Bytes;
    use std::time::Duration;

    fn key(s: &str) -> Key {
        Key::new(s).unwrap()
    }

    fn rules(now: u64) -> WriteRules {
        WriteRules::new(ServerConfig {
            time: ManualTime::new(now),
            max_skew: Duration::from_secs(60),
            ..ServerConfig::default()
        })
    }

    fn push(k: &str, precondition: Precondition, seen: u64) -> PushRequest {
        PushRequest {
            key: key(k),
            precondition,
            content: Bytes::from_static(b"x"),
            hash: ContentHash::of(b"x"),
            stamp: Stamp::at(1_000, NodeId(1)),
            seen: Revision(seen),
        }
    }

    fn item(k: &str, kind: ItemKind, rev: u64, deleted: bool) -> ItemMeta {
        ItemMeta {
            key: key(k),
            kind,
            rev: Revision(rev),
            hash: (kind == ItemKind::File && !deleted).then(|| ContentHash::of(b"old")),
            size: 0,
            stamp: Stamp::at(1, NodeId(2)),
            deleted,
        }
    }

    fn accepted(d: Decision) -> Write<ItemMeta> {
        match d {
            Decision::Accept(w) => w,
            other => panic!("expected Accept, got {other:?}"),
        }
    }

    #[test]
    fn a_seen_past_max_seen_is_refused_and_the_counter_does_not_move() {
        let r = rules(10_000);
        let read = [None];
        let bad = push("a", Precondition::Create, MAX_SEEN.0 + 1);
        let err = r.push(&bad, &read, Revision(5)).unwrap_err();
        assert_eq!(err.class(), crate::ErrorClass::Item, "{err}");
        assert!(err.to_string().contains("damaged"), "{err}");
        // At the bound it is accepted, and revisions still have room.
        let w = accepted(
            r.push(
                &push("a", Precondition::Create, MAX_SEEN.0),
                &read,
                Revision(5),
            )
            .unwrap(),
        );
        assert_eq!(w.counter, Revision(MAX_SEEN.0 + 1));
        assert!(w.counter < MAX_REVISION);
        let folder = FolderRequest {
            key: key("f"),
            stamp: Stamp::at(1_000, NodeId(1)),
            seen: Revision(u64::MAX),
        };
        assert!(r.folder(&folder, &[None], Revision(5)).is_err());
    }

    #[test]
    fn a_push_makes_missing_parents_first_each_with_its_own_revision() {
        let r = rules(10_000);
        let read = [Some(item("a", ItemKind::Folder, 3, false)), None, None];
        let w = accepted(
            r.push(&push("a/b/c", Precondition::Create, 0), &read, Revision(5))
                .unwrap(),
        );
        let got: Vec<(&str, u64, bool)> = w
            .rows
            .iter()
            .map(|r| (r.item.key.as_str(), r.item.rev.0, r.current))
            .collect();
        assert_eq!(got, [("a/b", 6, true), ("a/b/c", 7, true)]);
        assert_eq!(w.counter, Revision(7));
        assert_eq!(w.feed_head(), Some(Revision(7)));
        assert_eq!(w.value.kind, ItemKind::File);
    }

    #[test]
    fn preconditions_decide_conflicts_and_tombstones_allow_a_create() {
        let r = rules(10_000);
        let live = Some(item("k", ItemKind::File, 4, false));
        let tomb = Some(item("k", ItemKind::File, 4, true));
        for (pre, current, ok) in [
            (Precondition::Create, None, true),
            (Precondition::Create, tomb.clone(), true),
            (Precondition::Create, live.clone(), false),
            (Precondition::Match(Revision(4)), live.clone(), true),
            (Precondition::Match(Revision(3)), live.clone(), false),
            (Precondition::Match(Revision(4)), None, false),
        ] {
            let d = r
                .push(
                    &push("k", pre, 0),
                    std::slice::from_ref(&current),
                    Revision(4),
                )
                .unwrap();
            match d {
                Decision::Accept(_) => assert!(ok, "{pre:?} on {current:?}"),
                Decision::Conflict { current: c } => {
                    assert!(!ok, "{pre:?} on {current:?}");
                    assert_eq!(c, current);
                }
            }
        }
    }

    #[test]
    fn kinds_never_clash_and_a_refusal_writes_nothing() {
        let r = rules(10_000);
        let folder = Some(item("a", ItemKind::Folder, 1, false));
        let err = r
            .push(
                &push("a", Precondition::Match(Revision(1)), 0),
                &[folder],
                Revision(1),
            )
            .unwrap_err();
        assert!(matches!(err, Error::Item { .. }), "{err}");
        let file = Some(item("a", ItemKind::File, 1, false));
        let err = r
            .push(
                &push("a/b", Precondition::Create, 0),
                &[file.clone(), None],
                Revision(1),
            )
            .unwrap_err();
        assert!(
            err.to_string().contains("a is a file on the server"),
            "{err}"
        );
        let err = r
            .folder(
                &FolderRequest {
                    key: key("a/b"),
                    stamp: Stamp::at(1, NodeId(1)),
                    seen: Revision::ZERO,
                },
                &[file, None],
                Revision(1),
            )
            .unwrap_err();
        assert!(matches!(err, Error::Item { .. }), "{err}");
    }

    #[test]
    fn the_lamport_rule_and_its_ceiling() {
        let r = rules(10_000);
        let w = accepted(
            r.push(&push("k", Precondition::Create, 100), &[None], Revision(7))
                .unwrap(),
        );
        assert_eq!(w.value.rev, Revision(101));
        // The ceiling is reached by the counter (a `seen` that high is refused before it).
        let err = r
            .push(&push("k", Precondition::Create, 0), &[None], MAX_REVISION)
            .unwrap_err();
        assert!(matches!(err, Error::Storage { .. }), "{err}");
        let err = r
            .push(
                &push("k", Precondition::Create, MAX_REVISION.0),
                &[None],
                Revision(7),
            )
            .unwrap_err();
        assert!(matches!(err, Error::Item { .. }), "{err}");
        let at_max = r
            .push(
                &push("k", Precondition::Create, 0),
                &[None],
                Revision(MAX_REVISION.0 - 1),
            )
            .unwrap();
        assert_eq!(accepted(at_max).counter, MAX_REVISION);
    }

    #[test]
    fn stamps_far_ahead_are_clamped_to_the_server_clock() {
        let r = rules(1_000);
        let mut req = push("k", Precondition::Create, 0);
        req.stamp = Stamp::at(1_000 + 3_600_000, NodeId(1));
        let w = accepted(r.push(&req, &[None], Revision::ZERO).unwrap());
        assert!(
            w.value.stamp.millis <= 1_000 + 60_000,
            "{:?}",
            w.value.stamp
        );
    }

    #[test]
    fn deletes_keep_the_kind_and_need_the_seen_revision() {
        let r = rules(10_000);
        let folder = item("d", ItemKind::Folder, 2, false);
        let req = DeleteRequest {
            key: key("d"),
            rev: Revision(2),
            stamp: Stamp::at(5, NodeId(1)),
            seen: Revision(2),
        };
        let w = accepted(r.delete(&req, Some(&folder), Revision(2)).unwrap());
        assert_eq!(
            (w.value.kind, w.value.deleted, w.value.rev),
            (ItemKind::Folder, true, Revision(3))
        );
        let stale = DeleteRequest {
            rev: Revision(1),
            ..req.clone()
        };
        assert_eq!(
            r.delete(&stale, Some(&folder), Revision(2)).unwrap(),
            Decision::Conflict {
                current: Some(folder.clone())
            }
        );
        let tomb = ItemMeta {
            deleted: true,
            ..folder
        };
        assert!(matches!(
            r.delete(&req, Some(&tomb), Revision(2)).unwrap(),
            Decision::Conflict { .. }
        ));
        assert!(matches!(
            r.delete(&req, None, Revision(2)).unwrap(),
            Decision::Conflict { current: None }
        ));
    }

    #[test]
    fn an_existing_folder_path_writes_nothing_and_archives_stay_out_of_the_feed() {
        let r = rules(10_000);
        let req = FolderRequest {
            key: key("a/b"),
            stamp: Stamp::at(1, NodeId(1)),
            seen: Revision::ZERO,
        };
        let read = [
            Some(item("a", ItemKind::Folder, 1, false)),
            Some(item("a/b", ItemKind::Folder, 2, false)),
        ];
        let w = r.folder(&req, &read, Revision(9)).unwrap();
        assert!(w.rows.is_empty());
        assert_eq!((w.counter, w.value.rev), (Revision(9), Revision(2)));

        let archive = ArchiveRequest {
            key: key("x"),
            content: Bytes::from_static(b"loser"),
            hash: ContentHash::of(b"loser"),
            stamp: Stamp::at(1, NodeId(1)),
            seen: Revision(20),
        };
        let w = r.archive(&archive, Revision(9)).unwrap();
        assert_eq!(w.value.rev, Revision(21));
        assert_eq!(w.feed_head(), None);
        assert!(!w.rows[0].current);
    }

    #[test]
    fn rebasing_equals_deciding_on_the_newer_counter() {
        let r = rules(10_000);
        let read = [Some(item("a", ItemKind::Folder, 3, false)), None, None];
        for (counter, by, seen) in [(5, 0, 0), (5, 7, 0), (5, 7, 5), (9, 1, 4), (40, 100, 39)] {
            let req = push("a/b/c", Precondition::Create, seen);
            let old = accepted(r.push(&req, &read, Revision(counter)).unwrap());
            let new = accepted(r.push(&req, &read, Revision(counter + by)).unwrap());
            let moved = |rev| rebase(rev, Revision(counter), by).unwrap();
            let revs: Vec<Revision> = old.rows.iter().map(|row| moved(row.item.rev)).collect();
            let want: Vec<Revision> = new.rows.iter().map(|row| row.item.rev).collect();
            assert_eq!(revs, want, "counter {counter} + {by}, seen {seen}");
            assert_eq!(moved(old.counter), new.counter);
            assert_eq!(moved(old.value.rev), new.value.rev);
            // What the write only read stays.
            assert_eq!(moved(Revision(3)), Revision(3));
        }
        // A seen above the counter: still above the counter at commit and above seen.
        let req = push("k", Precondition::Create, 50);
        let old = accepted(r.push(&req, &[None], Revision(10)).unwrap());
        let rev = rebase(old.value.rev, Revision(10), 60).unwrap();
        assert!(rev > Revision(70) && rev > Revision(50), "{rev}");
        assert!(rebase(Revision(MAX_REVISION.0 - 1), Revision(1), 2).is_err());
    }

    #[test]
    fn a_read_that_does_not_match_the_key_is_refused() {
        let r = rules(10_000);
        let err = r
            .push(
                &push("a/b", Precondition::Create, 0),
                &[None],
                Revision::ZERO,
            )
            .unwrap_err();
        assert!(matches!(err, Error::Storage { .. }), "{err}");
        let wrong = Some(item("z", ItemKind::Folder, 1, false));
        let err = r
            .push(
                &push("a/b", Precondition::Create, 0),
                &[wrong, None],
                Revision::ZERO,
            )
            .unwrap_err();
        assert!(matches!(err, Error::Storage { .. }), "{err}");
    }
}
