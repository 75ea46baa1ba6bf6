//! One test per row of the docs/SPEC.md §3 table, and for each policy; each checks the phase its
//! step lands in and what the step carries.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::*;
use crate::{ContentHash, Fingerprint, Identity, Revision};

const NODE: NodeId = NodeId(1);
const OTHER: NodeId = NodeId(2);

fn k(s: &str) -> Key {
    Key::new(s).unwrap()
}

fn h(s: &str) -> ContentHash {
    ContentHash::of(s.as_bytes())
}

fn local(key: &str, content: &str, modified: u64) -> LocalItem {
    LocalItem {
        key: k(key),
        content: Content::File(h(content)),
        size: content.len() as u64,
        fingerprint: Fingerprint {
            size: content.len() as u64,
            mtime_ns: modified as i128 * 1_000_000,
            inode: 7,
        },
        modified_millis: modified,
    }
}

fn local_folder(key: &str) -> LocalItem {
    LocalItem {
        key: k(key),
        content: Content::Folder,
        size: 0,
        fingerprint: Fingerprint::default(),
        modified_millis: 0,
    }
}

fn remote(key: &str, content: &str, rev: u64, millis: u64) -> ItemMeta {
    ItemMeta {
        key: k(key),
        kind: ItemKind::File,
        rev: Revision(rev),
        hash: Some(h(content)),
        size: content.len() as u64,
        stamp: Stamp::at(millis, OTHER),
        deleted: false,
    }
}

fn tombstone(key: &str, rev: u64) -> ItemMeta {
    ItemMeta {
        key: k(key),
        kind: ItemKind::File,
        rev: Revision(rev),
        hash: None,
        size: 0,
        stamp: Stamp::at(50, OTHER),
        deleted: true,
    }
}

fn remote_folder(key: &str, rev: u64) -> ItemMeta {
    ItemMeta {
        key: k(key),
        kind: ItemKind::Folder,
        rev: Revision(rev),
        hash: None,
        size: 0,
        stamp: Stamp::at(1, OTHER),
        deleted: false,
    }
}

/// The base recorded after `l` and `r` were in sync.
fn base(l: &LocalItem, r: &ItemMeta) -> BaseEntry {
    BaseEntry {
        kind: r.kind,
        hash: r.hash,
        size: r.size,
        rev: r.rev,
        stamp: r.stamp,
        fingerprint: Some(l.fingerprint),
        local_key: None,
        detached: false,
    }
}

struct Case {
    local: BTreeMap<Key, LocalItem>,
    base: BTreeMap<Key, BaseEntry>,
    remote: BTreeMap<Key, ItemMeta>,
    untouchable: BTreeSet<Key>,
    policy: SyncPolicy,
}

impl Case {
    fn new() -> Case {
        Case {
            local: BTreeMap::new(),
            base: BTreeMap::new(),
            remote: BTreeMap::new(),
            untouchable: BTreeSet::new(),
            policy: SyncPolicy::default(),
        }
    }
    fn l(mut self, item: LocalItem) -> Self {
        self.local.insert(item.key.clone(), item);
        self
    }
    fn b(mut self, key: &str, entry: BaseEntry) -> Self {
        self.base.insert(k(key), entry);
        self
    }
    fn r(mut self, item: ItemMeta) -> Self {
        self.remote.insert(item.key.clone(), item);
        self
    }
    fn policy(mut self, f: impl FnOnce(&mut SyncPolicy)) -> Self {
        f(&mut self.policy);
        self
    }
    fn plan(&self) -> Plan {
        reconcile(
            ReconcileInput {
                local: &self.local,
                untouchable: &self.untouchable,
                base: &self.base,
                remote: &self.remote,
                node: NODE,
            },
            &self.policy,
        )
    }
    /// The single step of the plan, which must be in `phase`.
    fn one<T: Clone>(&self, phase: fn(&Plan) -> &Vec<Step<T>>) -> T {
        let plan = self.plan();
        assert_eq!(plan.len(), 1, "{plan:#?}");
        let steps = phase(&plan);
        assert_eq!(steps.len(), 1, "{plan:#?}");
        steps[0].op.clone()
    }
}

fn uploads(p: &Plan) -> &Vec<Step<Upload>> {
    &p.uploads
}

fn downloads(p: &Plan) -> &Vec<Step<Download>> {
    &p.downloads
}

fn base_changes(p: &Plan) -> &Vec<Step<BaseChange>> {
    &p.base_changes
}

fn skips(p: &Plan) -> &Vec<Step<Skip>> {
    &p.skips
}

fn keep_losers(p: &Plan) -> &Vec<Step<KeepLoserThenDownload>> {
    &p.keep_loser_then_download
}

fn removals(p: &Plan) -> &Vec<Step<Removal>> {
    &p.removals
}

/// The keys of a phase's steps, in order.
fn keys<T>(steps: &[Step<T>]) -> Vec<&str> {
    steps.iter().map(|s| s.key.as_str()).collect()
}

#[test]
fn row_new_absent_uploads_create() {
    let up = Case::new().l(local("a", "x", 10)).one(uploads);
    assert!(
        matches!(
            up,
            Upload {
                precondition: Precondition::Create,
                conflict: None,
                ..
            }
        ),
        "{up:?}"
    );
}

#[test]
fn row_new_absent_folder_creates_remote_folder() {
    let folder = Case::new()
        .l(local_folder("dir"))
        .one(|p| &p.remote_folders);
    assert_eq!(folder.local.key, k("dir"));
}

#[test]
fn row_absent_new_downloads() {
    let down = Case::new().r(remote("a", "x", 3, 10)).one(downloads);
    assert!(
        matches!(
            down,
            Download {
                expected: Expected::Absent,
                ..
            }
        ),
        "{down:?}"
    );
    let folder = Case::new()
        .r(remote_folder("d", 1))
        .one(|p| &p.local_folders);
    assert_eq!(folder.remote.key, k("d"));
}

#[test]
fn row_new_new_same_hash_records_base_without_transfer() {
    let case = Case::new()
        .l(local("a", "x", 10))
        .r(remote("a", "x", 3, 10));
    let change = case.one(base_changes);
    let BaseChange::Record(base) = change else {
        panic!("{change:?}")
    };
    assert_eq!(base.rev, Revision(3));
    assert_eq!(case.plan().transfers(), 0);
}

#[test]
fn row_unchanged_changed_downloads() {
    let l = local("a", "v1", 10);
    let r1 = remote("a", "v1", 3, 10);
    let down = Case::new()
        .l(l.clone())
        .b("a", base(&l, &r1))
        .r(remote("a", "v2", 4, 20))
        .one(downloads);
    assert!(
        matches!(down, Download { expected: Expected::Present(fp), .. } if fp == l.fingerprint),
        "{down:?}"
    );
}

#[test]
fn row_changed_unchanged_uploads_with_base_revision() {
    let l1 = local("a", "v1", 10);
    let r = remote("a", "v1", 3, 10);
    let up = Case::new()
        .l(local("a", "v2", 20))
        .b("a", base(&l1, &r))
        .r(r.clone())
        .one(uploads);
    assert!(
        matches!(
            up,
            Upload {
                precondition: Precondition::Match(Revision(3)),
                conflict: None,
                ..
            }
        ),
        "{up:?}"
    );
}

#[test]
fn row_changed_changed_same_hash_records_base() {
    let l1 = local("a", "v1", 10);
    let r1 = remote("a", "v1", 3, 10);
    let change = Case::new()
        .l(local("a", "v2", 20))
        .b("a", base(&l1, &r1))
        .r(remote("a", "v2", 5, 20))
        .one(base_changes);
    assert!(
        matches!(change, BaseChange::Record(ref base) if base.rev == Revision(5)),
        "{change:?}"
    );
}

fn conflict_case(local_millis: u64, remote_millis: u64) -> Case {
    let l1 = local("a", "v1", 10);
    let r1 = remote("a", "v1", 3, 10);
    Case::new()
        .l(local("a", "mine", local_millis))
        .b("a", base(&l1, &r1))
        .r(remote("a", "theirs", 4, remote_millis))
}

#[test]
fn row_conflict_newer_local_stamp_wins_and_remote_loser_stays_in_history() {
    let up = conflict_case(300, 200).one(uploads);
    assert!(
        matches!(
            up,
            Upload {
                precondition: Precondition::Match(Revision(4)),
                conflict: Some(_),
                ..
            }
        ),
        "{up:?}"
    );
}

#[test]
fn row_conflict_newer_remote_stamp_wins_and_local_loser_is_kept() {
    let keep = conflict_case(200, 300).one(keep_losers);
    assert_eq!(keep.remote.rev, Revision(4));
}

#[test]
fn row_conflict_new_new_different_hash() {
    let keep = Case::new()
        .l(local("a", "mine", 10))
        .r(remote("a", "theirs", 2, 20))
        .one(keep_losers);
    assert_eq!(keep.remote.rev, Revision(2));
}

#[test]
fn conflict_policies() {
    let up = conflict_case(200, 300)
        .policy(|p| p.conflicts = ConflictPolicy::PreferLocal)
        .one(uploads);
    assert!(
        matches!(
            up,
            Upload {
                conflict: Some(_),
                ..
            }
        ),
        "{up:?}"
    );
    let keep = conflict_case(300, 200)
        .policy(|p| p.conflicts = ConflictPolicy::PreferRemote)
        .one(keep_losers);
    assert_eq!(keep.remote.rev, Revision(4));
    let merge: Arc<dyn crate::Merge> =
        Arc::new(|m: crate::MergeInput<'_>| -> Result<Vec<u8>, String> { Ok(m.local.to_vec()) });
    let planned = conflict_case(300, 200)
        .policy(|p| p.conflicts = ConflictPolicy::Merge(merge.clone()))
        .one(|p| &p.merges);
    assert_eq!(planned.merger, Merger(merge));
}

#[test]
fn a_merge_carries_its_fallback_newest_stamp_wins() {
    let merge: Arc<dyn crate::Merge> =
        Arc::new(|_: crate::MergeInput<'_>| -> Result<Vec<u8>, String> { Err("no".into()) });
    let merging = |case: Case| {
        case.policy(|p| p.conflicts = ConflictPolicy::Merge(merge.clone()))
            .one(|p| &p.merges)
    };
    // The local edit is newer: upload it over the remote version, as a conflict winner.
    let planned = merging(conflict_case(300, 200));
    assert_eq!(planned.local_stamp, Stamp::at(300, NODE));
    assert_eq!(
        planned.if_merge_fails,
        MergeFallback::Upload(Upload {
            local: planned.local.clone(),
            precondition: Precondition::Match(Revision(4)),
            stamp: planned.local_stamp,
            conflict: Some(planned.remote.clone()),
        })
    );
    // The remote version is newer: keep the local loser, then download the winner.
    let planned = merging(conflict_case(200, 300));
    assert_eq!(
        planned.if_merge_fails,
        MergeFallback::KeepLoserThenDownload(KeepLoserThenDownload {
            local: planned.local.clone(),
            local_stamp: Stamp::at(200, NODE),
            remote: planned.remote.clone(),
        })
    );
}

#[test]
fn row_deleted_unchanged_detaches_and_keeps_remote() {
    let l = local("a", "v1", 10);
    let r = remote("a", "v1", 3, 10);
    let change = Case::new()
        .b("a", base(&l, &r))
        .r(r.clone())
        .one(base_changes);
    let BaseChange::Detach(base) = change else {
        panic!("{change:?}")
    };
    assert!(base.detached);
}

#[test]
fn detached_key_is_not_downloaded_again() {
    let l = local("a", "v1", 10);
    let r = remote("a", "v1", 3, 10);
    let mut b = base(&l, &r);
    b.detached = true;
    b.fingerprint = None;
    let plan = Case::new().b("a", b).r(r).plan();
    assert!(plan.is_empty(), "{plan:?}");
    assert_eq!(plan.unchanged, 1);
}

#[test]
fn row_deleted_detached_then_changed_later_downloads() {
    let l = local("a", "v1", 10);
    let r = remote("a", "v1", 3, 10);
    let mut b = base(&l, &r);
    b.detached = true;
    let down = Case::new()
        .b("a", b)
        .r(remote("a", "v2", 9, 99))
        .one(downloads);
    assert!(
        matches!(
            down,
            Download {
                expected: Expected::Absent,
                ..
            }
        ),
        "{down:?}"
    );
}

#[test]
fn row_unchanged_tombstone_keeps_local_and_detaches() {
    let l = local("a", "v1", 10);
    let r = remote("a", "v1", 3, 10);
    let change = Case::new()
        .l(l.clone())
        .b("a", base(&l, &r))
        .r(tombstone("a", 4))
        .one(base_changes);
    let BaseChange::Detach(base) = change else {
        panic!("{change:?}")
    };
    assert!(base.detached);
    // ... and it is not uploaded again.
    let plan = Case::new()
        .l(l.clone())
        .b("a", base)
        .r(tombstone("a", 4))
        .plan();
    assert!(plan.is_empty(), "{plan:?}");
}

#[test]
fn row_changed_later_beats_a_delete() {
    let l = local("a", "v1", 10);
    let r = remote("a", "v1", 3, 10);
    let up = Case::new()
        .l(local("a", "v2", 20))
        .b("a", base(&l, &r))
        .r(tombstone("a", 4))
        .one(uploads);
    assert!(
        matches!(
            up,
            Upload {
                precondition: Precondition::Match(Revision(4)),
                ..
            }
        ),
        "{up:?}"
    );
}

#[test]
fn row_over_size_limit_is_skipped_with_a_warning() {
    let skip = Case::new()
        .l(local("big", "0123456789", 10))
        .policy(|p| p.max_item_bytes = 4)
        .one(skips);
    assert!(
        matches!(skip, Skip { class: ErrorClass::Warning, ref message } if message.contains("limit")),
        "{skip:?}"
    );
    let skip = Case::new()
        .r(remote("big", "0123456789", 2, 10))
        .policy(|p| p.max_item_bytes = 4)
        .one(skips);
    assert!(
        matches!(
            skip,
            Skip {
                class: ErrorClass::Warning,
                ..
            }
        ),
        "{skip:?}"
    );
}

#[test]
fn untouchable_keys_are_left_alone() {
    // The scan skipped it (unreadable): it must not look deleted.
    let l = local("a", "v1", 10);
    let r = remote("a", "v1", 3, 10);
    let mut case = Case::new()
        .b("a", base(&l, &r))
        .r(r)
        .policy(|p| p.deletes = DeletePolicy::Propagate);
    case.untouchable.insert(k("a"));
    assert!(case.plan().is_empty());
}

#[test]
fn propagate_turns_deletes_into_tombstones_and_backed_up_removals() {
    let l = local("a", "v1", 10);
    let r = remote("a", "v1", 3, 10);
    let removal = Case::new()
        .b("a", base(&l, &r))
        .r(r.clone())
        .policy(|p| p.deletes = DeletePolicy::Propagate)
        .one(removals);
    assert!(
        matches!(removal, Removal::DeleteRemote { .. }),
        "{removal:?}"
    );
    let removal = Case::new()
        .l(l.clone())
        .b("a", base(&l, &r))
        .r(tombstone("a", 4))
        .policy(|p| p.deletes = DeletePolicy::Propagate)
        .one(removals);
    assert!(
        matches!(removal, Removal::DeleteLocal { .. }),
        "{removal:?}"
    );
}

#[test]
fn removals_come_last_children_first() {
    let f = local_folder("d");
    let rf = remote_folder("d", 1);
    let l = local("d/x", "v", 10);
    let r = remote("d/x", "v", 2, 10);
    let plan = Case::new()
        .l(local("new", "n", 5))
        .b("d", base(&f, &rf))
        .b("d/x", base(&l, &r))
        .r(rf)
        .r(r)
        .policy(|p| p.deletes = DeletePolicy::Propagate)
        .plan();
    // The engine runs the removals phase last, after the uploads.
    assert_eq!(plan.len(), 3, "{plan:#?}");
    assert_eq!(keys(&plan.uploads), ["new"]);
    assert_eq!(keys(&plan.removals), ["d/x", "d"]);
}

#[test]
fn both_deleted_forgets() {
    let l = local("a", "v1", 10);
    let r = remote("a", "v1", 3, 10);
    assert_eq!(
        Case::new()
            .b("a", base(&l, &r))
            .r(tombstone("a", 4))
            .one(base_changes),
        BaseChange::Forget
    );
}

#[test]
fn item_the_server_lost_is_uploaded_again() {
    // After a restore from an older backup the remote tree has no entry at all.
    let l = local("a", "v1", 10);
    let r = remote("a", "v1", 3, 10);
    let up = Case::new().l(l.clone()).b("a", base(&l, &r)).one(uploads);
    assert!(
        matches!(
            up,
            Upload {
                precondition: Precondition::Create,
                ..
            }
        ),
        "{up:?}"
    );
}

#[test]
fn file_against_folder_is_an_item_error() {
    let skip = Case::new()
        .l(local_folder("a"))
        .r(remote("a", "x", 1, 1))
        .one(skips);
    assert!(
        matches!(
            skip,
            Skip {
                class: ErrorClass::Item,
                ..
            }
        ),
        "{skip:?}"
    );
}

#[test]
fn in_sync_gives_an_empty_plan_and_counts_unchanged() {
    let l = local("a", "v1", 10);
    let r = remote("a", "v1", 3, 10);
    let plan = Case::new().l(l.clone()).b("a", base(&l, &r)).r(r).plan();
    assert!(plan.is_empty(), "{plan:?}");
    assert_eq!(plan.unchanged, 1);
}

#[test]
fn touched_but_equal_file_refreshes_its_fingerprint_without_transfer() {
    let l = local("a", "v1", 10);
    let r = remote("a", "v1", 3, 10);
    let mut touched = l.clone();
    touched.fingerprint.mtime_ns += 1;
    let change = Case::new()
        .l(touched.clone())
        .b("a", base(&l, &r))
        .r(r)
        .one(base_changes);
    assert!(
        matches!(change, BaseChange::Record(ref base) if base.fingerprint == Some(touched.fingerprint)),
        "{change:?}"
    );
}

#[test]
fn app_name_identity_binds_across_paths() {
    let l = local("site/a/index2.html", "page", 10);
    let r = remote("other/index2.html", "page", 3, 10);
    let plan = Case::new()
        .l(l)
        .r(r)
        .policy(|p| p.identity = Identity::AppName)
        .plan();
    assert_eq!(plan.len(), 1, "{plan:?}");
    let a = &plan.base_changes[0];
    assert_eq!(a.key.as_str(), "other/index2.html");
    assert_eq!(a.local_key.as_str(), "site/a/index2.html");
    let BaseChange::Record(base) = &a.op else {
        panic!("{a:?}")
    };
    assert_eq!(base.local_key, Some(k("site/a/index2.html")));
}

#[test]
fn app_name_duplicate_is_an_item_error_for_the_second_only() {
    let plan = Case::new()
        .l(local("a/index.html", "1", 10))
        .l(local("b/index.html", "2", 10))
        .policy(|p| p.identity = Identity::AppName)
        .plan();
    assert_eq!(plan.skips.len(), 1);
    assert_eq!(plan.skips[0].local_key.as_str(), "b/index.html");
    assert!(plan
        .uploads
        .iter()
        .any(|a| a.key.as_str() == "a/index.html"));
}

#[test]
fn plan_is_deterministic() {
    let case = conflict_case(300, 200)
        .l(local("b", "x", 1))
        .r(remote("c", "y", 9, 1));
    assert_eq!(case.plan(), case.plan());
}

#[test]
fn after_a_restore_unchanged_but_different_is_a_conflict_not_a_download() {
    // The base was marked unconfirmed when the server answered CursorExpired: the restored
    // server may not hold it, so the local file must not be overwritten unkept.
    let l = local("a", "v2", 10);
    let r2 = remote("a", "v2", 7, 10);
    let restored_older = remote("a", "v1", 3, 5);
    let up = Case::new()
        .l(l.clone())
        .b("a", base(&l, &r2).unconfirmed())
        .r(restored_older)
        .one(uploads);
    assert!(
        matches!(
            up,
            Upload {
                conflict: Some(_),
                precondition: Precondition::Match(Revision(3)),
                ..
            }
        ),
        "the newer local version wins and the restored one stays in history: {up:?}"
    );
    // A newer remote version (another device uploaded after the restore) wins, and the local
    // loser is kept.
    let keep = Case::new()
        .l(l.clone())
        .b("a", base(&l, &r2).unconfirmed())
        .r(remote("a", "v3", 9, 99))
        .one(keep_losers);
    assert_eq!(keep.remote.rev, Revision(9));
}

#[test]
fn the_plan_counts_the_content_bytes_it_moves_through_the_replica() {
    // An upload (5 bytes), a download (6), a kept loser (4 read + 6 written), a folder and a
    // remote delete (none).
    let gone = local("gone", "old", 10);
    let gone_remote = remote("gone", "old", 2, 10);
    let plan = conflict_case(200, 300)
        .l(local("up", "12345", 1))
        .r(remote("down", "123456", 5, 1))
        .l(local_folder("dir"))
        .l(gone.clone())
        .b("gone", base(&gone, &gone_remote))
        .r(tombstone("gone", 6))
        .plan();
    assert_eq!(
        (plan.uploads.len(), plan.downloads.len()),
        (1, 1),
        "{plan:?}"
    );
    assert_eq!(plan.keep_loser_then_download.len(), 1, "{plan:?}");
    assert_eq!(
        plan.bytes(),
        5 + 6 + "mine".len() as u64 + "theirs".len() as u64
    );
}
