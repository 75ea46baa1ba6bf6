//! One test per row of the SPEC §3 table, and for each policy.

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
    /// The single action of the plan.
    fn one(&self) -> ActionKind {
        let plan = self.plan();
        assert_eq!(plan.actions.len(), 1, "{:#?}", plan.actions);
        plan.actions.into_iter().next().unwrap().kind
    }
}

#[test]
fn row_new_absent_uploads_create() {
    let kind = Case::new().l(local("a", "x", 10)).one();
    assert!(
        matches!(
            kind,
            ActionKind::Upload {
                precondition: Precondition::Create,
                conflict: false,
                ..
            }
        ),
        "{kind:?}"
    );
}

#[test]
fn row_new_absent_folder_creates_remote_folder() {
    let kind = Case::new().l(local_folder("dir")).one();
    assert!(
        matches!(kind, ActionKind::CreateRemoteFolder { .. }),
        "{kind:?}"
    );
}

#[test]
fn row_absent_new_downloads() {
    let kind = Case::new().r(remote("a", "x", 3, 10)).one();
    assert!(
        matches!(
            kind,
            ActionKind::Download {
                expected: Expected::Absent,
                ..
            }
        ),
        "{kind:?}"
    );
    let kind = Case::new().r(remote_folder("d", 1)).one();
    assert!(
        matches!(kind, ActionKind::CreateLocalFolder { .. }),
        "{kind:?}"
    );
}

#[test]
fn row_new_new_same_hash_records_base_without_transfer() {
    let kind = Case::new()
        .l(local("a", "x", 10))
        .r(remote("a", "x", 3, 10))
        .one();
    let ActionKind::RecordBase { base } = kind else {
        panic!("{kind:?}")
    };
    assert_eq!(base.rev, Revision(3));
    assert!(!kind_transfers(&ActionKind::RecordBase { base }));
}

fn kind_transfers(k: &ActionKind) -> bool {
    k.transfers()
}

#[test]
fn row_unchanged_changed_downloads() {
    let l = local("a", "v1", 10);
    let r1 = remote("a", "v1", 3, 10);
    let kind = Case::new()
        .l(l.clone())
        .b("a", base(&l, &r1))
        .r(remote("a", "v2", 4, 20))
        .one();
    assert!(
        matches!(kind, ActionKind::Download { expected: Expected::Present(fp), .. } if fp == l.fingerprint),
        "{kind:?}"
    );
}

#[test]
fn row_changed_unchanged_uploads_with_base_revision() {
    let l1 = local("a", "v1", 10);
    let r = remote("a", "v1", 3, 10);
    let kind = Case::new()
        .l(local("a", "v2", 20))
        .b("a", base(&l1, &r))
        .r(r.clone())
        .one();
    assert!(
        matches!(
            kind,
            ActionKind::Upload {
                precondition: Precondition::Match(Revision(3)),
                conflict: false,
                ..
            }
        ),
        "{kind:?}"
    );
}

#[test]
fn row_changed_changed_same_hash_records_base() {
    let l1 = local("a", "v1", 10);
    let r1 = remote("a", "v1", 3, 10);
    let kind = Case::new()
        .l(local("a", "v2", 20))
        .b("a", base(&l1, &r1))
        .r(remote("a", "v2", 5, 20))
        .one();
    assert!(
        matches!(kind, ActionKind::RecordBase { ref base } if base.rev == Revision(5)),
        "{kind:?}"
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
    let kind = conflict_case(300, 200).one();
    assert!(
        matches!(
            kind,
            ActionKind::Upload {
                precondition: Precondition::Match(Revision(4)),
                conflict: true,
                ..
            }
        ),
        "{kind:?}"
    );
}

#[test]
fn row_conflict_newer_remote_stamp_wins_and_local_loser_is_kept() {
    let kind = conflict_case(200, 300).one();
    assert!(
        matches!(kind, ActionKind::KeepLoserThenDownload { .. }),
        "{kind:?}"
    );
}

#[test]
fn row_conflict_new_new_different_hash() {
    let kind = Case::new()
        .l(local("a", "mine", 10))
        .r(remote("a", "theirs", 2, 20))
        .one();
    assert!(
        matches!(kind, ActionKind::KeepLoserThenDownload { .. }),
        "{kind:?}"
    );
}

#[test]
fn conflict_policies() {
    let kind = conflict_case(200, 300)
        .policy(|p| p.conflicts = ConflictPolicy::PreferLocal)
        .one();
    assert!(
        matches!(kind, ActionKind::Upload { conflict: true, .. }),
        "{kind:?}"
    );
    let kind = conflict_case(300, 200)
        .policy(|p| p.conflicts = ConflictPolicy::PreferRemote)
        .one();
    assert!(
        matches!(kind, ActionKind::KeepLoserThenDownload { .. }),
        "{kind:?}"
    );
    let merge: Arc<dyn crate::Merge> =
        Arc::new(|_: &Key, a: &[u8], _: &[u8]| -> Result<Vec<u8>, String> { Ok(a.to_vec()) });
    let kind = conflict_case(300, 200)
        .policy(|p| p.conflicts = ConflictPolicy::Merge(merge))
        .one();
    assert!(matches!(kind, ActionKind::Merge { .. }), "{kind:?}");
}

#[test]
fn row_deleted_unchanged_detaches_and_keeps_remote() {
    let l = local("a", "v1", 10);
    let r = remote("a", "v1", 3, 10);
    let kind = Case::new().b("a", base(&l, &r)).r(r.clone()).one();
    let ActionKind::Detach { base } = kind else {
        panic!("{kind:?}")
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
    let kind = Case::new().b("a", b).r(remote("a", "v2", 9, 99)).one();
    assert!(
        matches!(
            kind,
            ActionKind::Download {
                expected: Expected::Absent,
                ..
            }
        ),
        "{kind:?}"
    );
}

#[test]
fn row_unchanged_tombstone_keeps_local_and_detaches() {
    let l = local("a", "v1", 10);
    let r = remote("a", "v1", 3, 10);
    let kind = Case::new()
        .l(l.clone())
        .b("a", base(&l, &r))
        .r(tombstone("a", 4))
        .one();
    let ActionKind::Detach { base } = kind else {
        panic!("{kind:?}")
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
    let kind = Case::new()
        .l(local("a", "v2", 20))
        .b("a", base(&l, &r))
        .r(tombstone("a", 4))
        .one();
    assert!(
        matches!(
            kind,
            ActionKind::Upload {
                precondition: Precondition::Match(Revision(4)),
                ..
            }
        ),
        "{kind:?}"
    );
}

#[test]
fn row_over_size_limit_is_skipped_with_a_warning() {
    let kind = Case::new()
        .l(local("big", "0123456789", 10))
        .policy(|p| p.max_item_bytes = 4)
        .one();
    assert!(
        matches!(kind, ActionKind::Skip { class: ErrorClass::Warning, ref message } if message.contains("limit")),
        "{kind:?}"
    );
    let kind = Case::new()
        .r(remote("big", "0123456789", 2, 10))
        .policy(|p| p.max_item_bytes = 4)
        .one();
    assert!(
        matches!(
            kind,
            ActionKind::Skip {
                class: ErrorClass::Warning,
                ..
            }
        ),
        "{kind:?}"
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
    let kind = Case::new()
        .b("a", base(&l, &r))
        .r(r.clone())
        .policy(|p| p.deletes = DeletePolicy::Propagate)
        .one();
    assert!(matches!(kind, ActionKind::DeleteRemote { .. }), "{kind:?}");
    let kind = Case::new()
        .l(l.clone())
        .b("a", base(&l, &r))
        .r(tombstone("a", 4))
        .policy(|p| p.deletes = DeletePolicy::Propagate)
        .one();
    assert!(matches!(kind, ActionKind::DeleteLocal { .. }), "{kind:?}");
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
    let keys: Vec<&str> = plan.actions.iter().map(|a| a.key.as_str()).collect();
    assert_eq!(keys, ["new", "d/x", "d"]);
}

#[test]
fn both_deleted_forgets() {
    let l = local("a", "v1", 10);
    let r = remote("a", "v1", 3, 10);
    assert_eq!(
        Case::new().b("a", base(&l, &r)).r(tombstone("a", 4)).one(),
        ActionKind::Forget
    );
}

#[test]
fn item_the_server_lost_is_uploaded_again() {
    // After a restore from an older backup the remote tree has no entry at all.
    let l = local("a", "v1", 10);
    let r = remote("a", "v1", 3, 10);
    let kind = Case::new().l(l.clone()).b("a", base(&l, &r)).one();
    assert!(
        matches!(
            kind,
            ActionKind::Upload {
                precondition: Precondition::Create,
                ..
            }
        ),
        "{kind:?}"
    );
}

#[test]
fn file_against_folder_is_an_item_error() {
    let kind = Case::new()
        .l(local_folder("a"))
        .r(remote("a", "x", 1, 1))
        .one();
    assert!(
        matches!(
            kind,
            ActionKind::Skip {
                class: ErrorClass::Item,
                ..
            }
        ),
        "{kind:?}"
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
    let kind = Case::new()
        .l(touched.clone())
        .b("a", base(&l, &r))
        .r(r)
        .one();
    assert!(
        matches!(kind, ActionKind::RecordBase { ref base } if base.fingerprint == Some(touched.fingerprint)),
        "{kind:?}"
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
    assert_eq!(plan.actions.len(), 1, "{plan:?}");
    let a = &plan.actions[0];
    assert_eq!(a.key.as_str(), "other/index2.html");
    assert_eq!(a.local_key.as_str(), "site/a/index2.html");
    let ActionKind::RecordBase { base } = &a.kind else {
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
    let skips: Vec<&Action> = plan
        .actions
        .iter()
        .filter(|a| matches!(a.kind, ActionKind::Skip { .. }))
        .collect();
    assert_eq!(skips.len(), 1);
    assert_eq!(skips[0].local_key.as_str(), "b/index.html");
    assert!(plan
        .actions
        .iter()
        .any(|a| a.key.as_str() == "a/index.html" && matches!(a.kind, ActionKind::Upload { .. })));
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
    let kind = Case::new()
        .l(l.clone())
        .b("a", base(&l, &r2).unconfirmed())
        .r(restored_older)
        .one();
    assert!(
        matches!(
            kind,
            ActionKind::Upload {
                conflict: true,
                precondition: Precondition::Match(Revision(3)),
                ..
            }
        ),
        "the newer local version wins and the restored one stays in history: {kind:?}"
    );
    // A newer remote version (another device uploaded after the restore) wins, and the local
    // loser is kept.
    let kind = Case::new()
        .l(l.clone())
        .b("a", base(&l, &r2).unconfirmed())
        .r(remote("a", "v3", 9, 99))
        .one();
    assert!(
        matches!(kind, ActionKind::KeepLoserThenDownload { .. }),
        "{kind:?}"
    );
}
