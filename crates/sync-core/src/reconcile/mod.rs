//! The three-way reconciler (docs/SPEC.md §3): a pure function from (local scan, base, remote tree) to
//! a [`Plan`] already split into its phases (`plan.rs`).
//!
//! Every rule of the docs/SPEC.md §3 table is decided in `decide`, one `match` arm per row; the arms are
//! labelled with the row they implement. Each decision goes to the end of its phase, in key
//! order. The reconciler does no I/O and calls no app code; it only says what to do, including
//! what a merge falls back to when the app's merge function fails. The engine executes the plan
//! and re-checks each local item before it touches it.
//!
//! Architecture invariant: no step in a plan deletes or overwrites local or remote content
//! without the content first being kept: a remote overwrite keeps the old version in the
//! server's history; a local overwrite by a conflict winner is a [`KeepLoserThenDownload`] (or
//! a [`Merge`], which keeps the local version first); a local delete exists only under
//! [`DeletePolicy::Propagate`] and backs up first.

mod plan;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

pub use plan::{
    BaseChange, CreateLocalFolder, CreateRemoteFolder, Download, KeepLoserThenDownload, Merge,
    MergeFallback, Merger, Plan, Removal, Skip, Step, Upload,
};

use crate::identity::{self, Binding};
use crate::{
    BaseEntry, ConflictPolicy, Content, DeletePolicy, ErrorClass, Expected, ItemKind, ItemMeta,
    Key, LocalItem, NodeId, Precondition, Stamp, SyncPolicy,
};

/// What the reconciler looks at.
#[derive(Debug, Clone, Copy)]
pub struct ReconcileInput<'a> {
    /// Every local item that can sync, by local key.
    pub local: &'a BTreeMap<Key, LocalItem>,
    /// Local keys to leave alone this time (skipped by the scan: too large, unreadable).
    pub untouchable: &'a BTreeSet<Key>,
    /// The base: what both sides held at the last sync, by remote key.
    pub base: &'a BTreeMap<Key, BaseEntry>,
    /// The remote tree: the latest state of every remote item, tombstones included.
    pub remote: &'a BTreeMap<Key, ItemMeta>,
    /// This device's node id (for stamps of local edits).
    pub node: NodeId,
}

/// Who won a conflict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Winner {
    /// This device's edit.
    Local,
    /// The server's version.
    Remote,
}

/// What [`decide`] says for one key: the step of one phase.
enum Decision {
    Skip(Skip),
    Base(BaseChange),
    RemoteFolder(CreateRemoteFolder),
    LocalFolder(CreateLocalFolder),
    KeepLoser(KeepLoserThenDownload),
    /// Boxed: a merge carries its fallback too, and is rare.
    Merge(Box<Merge>),
    Download(Download),
    Upload(Upload),
    Removal(Removal),
}

impl Plan {
    /// Adds `decision` for `key` to the end of its phase.
    fn add(&mut self, key: Key, local_key: Key, decision: Decision) {
        fn step<T>(key: Key, local_key: Key, op: T) -> Step<T> {
            Step { key, local_key, op }
        }
        match decision {
            Decision::Skip(op) => self.skips.push(step(key, local_key, op)),
            Decision::Base(op) => self.base_changes.push(step(key, local_key, op)),
            Decision::RemoteFolder(op) => self.remote_folders.push(step(key, local_key, op)),
            Decision::LocalFolder(op) => self.local_folders.push(step(key, local_key, op)),
            Decision::KeepLoser(op) => self.keep_loser_then_download.push(step(key, local_key, op)),
            Decision::Merge(op) => self.merges.push(step(key, local_key, *op)),
            Decision::Download(op) => self.downloads.push(step(key, local_key, op)),
            Decision::Upload(op) => self.uploads.push(step(key, local_key, op)),
            Decision::Removal(op) => self.removals.push(step(key, local_key, op)),
        }
    }
}

/// Plans one sync. Pure: the same input gives the same plan.
pub fn reconcile(input: ReconcileInput<'_>, policy: &SyncPolicy) -> Plan {
    let Binding {
        local: bound,
        problems,
    } = identity::bind(policy.identity, input.local, input.base, input.remote);

    let mut untouchable: BTreeSet<Key> = input.untouchable.clone();
    let mut plan = Plan::default();
    for (local_key, message) in problems {
        untouchable.insert(local_key.clone());
        let skip = Skip {
            class: ErrorClass::Item,
            message,
        };
        plan.add(local_key.clone(), local_key, Decision::Skip(skip));
    }
    // Local paths taken by an item bound to another remote key.
    let occupied: BTreeMap<&Key, &Key> = bound
        .iter()
        .filter(|(remote_key, item)| &item.key != *remote_key)
        .map(|(remote_key, item)| (&item.key, remote_key))
        .collect();

    let keys: BTreeSet<&Key> = bound
        .keys()
        .chain(input.base.keys())
        .chain(input.remote.keys())
        .collect();
    for key in keys {
        let local = bound.get(key);
        let base = input.base.get(key);
        let remote = input.remote.get(key);
        let local_key = local
            .map(|l| l.key.clone())
            .or_else(|| base.and_then(|b| b.local_key.clone()))
            .unwrap_or_else(|| key.clone());
        if untouchable.contains(&local_key) {
            continue;
        }
        let decision = if local.is_none() && occupied.contains_key(&local_key) {
            Some(Decision::Skip(Skip {
                class: ErrorClass::Item,
                message: format!(
                    "the local path {local_key} already holds the twin of {}; rename one of them",
                    occupied[&local_key]
                ),
            }))
        } else {
            decide(local, base, remote, input.node, policy)
        };
        match decision {
            None => plan.unchanged += 1,
            Some(decision) => plan.add(key.clone(), local_key, decision),
        }
    }
    // Children before their parents.
    plan.removals.reverse();
    plan
}

/// How one side stands against the base.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    /// No base, and the item exists.
    New,
    /// No base and no item (or a tombstone).
    Absent,
    /// Same content as the base.
    Unchanged,
    /// Different content from the base.
    Changed,
    /// The base exists, the item does not (deleted, or a tombstone).
    Deleted,
    /// The base exists and the remote tree has no entry at all: the server lost the item
    /// (restored from an older backup). Only for the remote side.
    Lost,
}

fn side(now: Option<Content>, base: Option<&BaseEntry>, known: bool) -> Side {
    match (now, base) {
        (Some(_), None) => Side::New,
        (None, None) => Side::Absent,
        (Some(c), Some(b)) if c == b.content() => Side::Unchanged,
        (Some(_), Some(_)) => Side::Changed,
        (None, Some(_)) if known => Side::Deleted,
        (None, Some(_)) => Side::Lost,
    }
}

fn expected(local: Option<&LocalItem>) -> Expected {
    local.map_or(Expected::Absent, |l| Expected::Present(l.fingerprint))
}

fn precondition(remote: Option<&ItemMeta>) -> Precondition {
    match remote {
        Some(r) => Precondition::Match(r.rev),
        None => Precondition::Create,
    }
}

/// The base for `remote` held on this replica at `local_key` as `local`.
pub(crate) fn base_entry(remote: &ItemMeta, local_key: &Key, local: &LocalItem) -> BaseEntry {
    BaseEntry {
        kind: remote.kind,
        hash: remote.hash,
        size: remote.size,
        rev: remote.rev,
        stamp: remote.stamp,
        fingerprint: Some(local.fingerprint),
        local_key: (local_key != &remote.key).then(|| local_key.clone()),
        detached: false,
    }
}

/// The docs/SPEC.md §3 table for one key. `None` means nothing to do.
fn decide(
    local: Option<&LocalItem>,
    base: Option<&BaseEntry>,
    remote: Option<&ItemMeta>,
    node: NodeId,
    policy: &SyncPolicy,
) -> Option<Decision> {
    let lc = local.map(|l| l.content);
    let rc = remote.and_then(ItemMeta::content);
    let ls = side(lc, base, true);
    let rs = side(rc, base, remote.is_some());
    let detached = base.is_some_and(|b| b.detached);

    // A file here and a folder there (or the reverse) cannot be merged or backed up as one
    // version: leave both and say so.
    if let (Some(l), Some(r)) = (lc, rc) {
        if l.kind() != r.kind() {
            return Some(Decision::Skip(Skip {
                class: ErrorClass::Item,
                message: format!(
                    "is a {} here and a {} on the server; rename one of them",
                    kind_name(l.kind()),
                    kind_name(r.kind())
                ),
            }));
        }
    }

    use Side::*;
    match (ls, rs) {
        // Row "new | absent": upload (create). Also "changed later | deleted" (an edit beats a
        // delete) and an item the server lost.
        (New, Absent) | (Changed | Unchanged | New, Lost) | (Changed, Deleted) => {
            upload(local?, base, remote, node, policy)
        }
        // Row "absent | new": download. Also "deleted (detached) | changed later" and
        // "deleted | changed": the newer remote version comes back.
        (Absent, New) | (Deleted, Changed) => download(local, remote?, policy),
        // Rows "new | new, same hash" and "changed | changed, same hash": record B, no
        // transfer; otherwise a conflict.
        (New, New) | (Changed, Changed) => {
            let (l, r) = (local?, remote?);
            if lc == rc {
                Some(Decision::Base(BaseChange::Record(base_entry(r, &l.key, l))))
            } else {
                Some(conflict(l, base, r, node, policy))
            }
        }
        // Row "unchanged | changed": download. But after a restore from backup the server may
        // not hold the local content any more (the base is unconfirmed): then this is a
        // conflict, so the losing side is kept whichever it is.
        (Unchanged, Changed) => {
            let (b, r) = (base?, remote?);
            match local {
                Some(l) if !b.is_confirmed() && r.kind == ItemKind::File => {
                    Some(conflict(l, Some(b), r, node, policy))
                }
                _ => download(local, r, policy),
            }
        }
        // Row "changed | unchanged": upload with base revision.
        (Changed, Unchanged) => upload(local?, base, remote, node, policy),
        // Both as in the base: refresh the base if the fingerprint, revision or detached flag
        // moved, otherwise nothing.
        (Unchanged, Unchanged) => {
            let (l, b, r) = (local?, base?, remote?);
            let fresh = base_entry(r, &l.key, l);
            (fresh != *b).then_some(Decision::Base(BaseChange::Record(fresh)))
        }
        // Row "deleted | unchanged": keep remote, mark detached (or propagate the delete).
        (Deleted, Unchanged) => {
            let (b, r) = (base?, remote?);
            if detached {
                None
            } else if policy.deletes == DeletePolicy::Propagate {
                Some(Decision::Removal(Removal::DeleteRemote { rev: r.rev }))
            } else {
                Some(Decision::Base(BaseChange::Detach(BaseEntry {
                    detached: true,
                    fingerprint: None,
                    ..b.clone()
                })))
            }
        }
        // Row "unchanged | deleted (tombstone)": keep local, mark detached (or propagate).
        (Unchanged, Deleted) => {
            let (l, b, r) = (local?, base?, remote?);
            if detached {
                None
            } else if policy.deletes == DeletePolicy::Propagate {
                Some(Decision::Removal(Removal::DeleteLocal { local: l.clone() }))
            } else {
                Some(Decision::Base(BaseChange::Detach(BaseEntry {
                    detached: true,
                    rev: r.rev,
                    fingerprint: Some(l.fingerprint),
                    ..b.clone()
                })))
            }
        }
        // Both gone: forget the key.
        (Deleted, Deleted | Lost) => Some(Decision::Base(BaseChange::Forget)),
        // Nothing on either side.
        (Absent, Absent) => None,
        // Unreachable combinations (a side is New only without a base, Deleted/Unchanged/
        // Changed only with one).
        _ => None,
    }
}

fn kind_name(kind: ItemKind) -> &'static str {
    match kind {
        ItemKind::File => "file",
        ItemKind::Folder => "folder",
    }
}

fn upload(
    local: &LocalItem,
    base: Option<&BaseEntry>,
    remote: Option<&ItemMeta>,
    node: NodeId,
    policy: &SyncPolicy,
) -> Option<Decision> {
    if local.kind() == ItemKind::Folder {
        return Some(Decision::RemoteFolder(CreateRemoteFolder {
            local: local.clone(),
        }));
    }
    // Row "over size limit | any": skip, never uploaded.
    if local.size > policy.max_item_bytes {
        return Some(too_large(local.size, policy, "here"));
    }
    Some(Decision::Upload(Upload {
        local: local.clone(),
        precondition: precondition(remote),
        stamp: Stamp::for_edit(local.modified_millis, node, base.map(|b| b.stamp)),
        conflict: None,
    }))
}

fn download(local: Option<&LocalItem>, remote: &ItemMeta, policy: &SyncPolicy) -> Option<Decision> {
    if remote.kind == ItemKind::Folder {
        return Some(Decision::LocalFolder(CreateLocalFolder {
            remote: remote.clone(),
        }));
    }
    if remote.size > policy.max_item_bytes {
        return Some(too_large(remote.size, policy, "on the server"));
    }
    Some(Decision::Download(Download {
        remote: remote.clone(),
        expected: expected(local),
    }))
}

fn too_large(size: u64, policy: &SyncPolicy, side: &str) -> Decision {
    Decision::Skip(Skip {
        class: ErrorClass::Warning,
        message: format!(
            "{size} bytes {side} is over the limit of {} bytes; not synced (raise max_item_bytes to sync it)",
            policy.max_item_bytes
        ),
    })
}

/// A conflict decided for `winner`: the local version uploaded over the remote one (which
/// stays in the server's history), or the local loser kept and the remote version downloaded.
/// The same steps are what a merge falls back to.
fn resolved(
    winner: Winner,
    local: &LocalItem,
    local_stamp: Stamp,
    remote: &ItemMeta,
) -> MergeFallback {
    match winner {
        Winner::Local => MergeFallback::Upload(Upload {
            local: local.clone(),
            precondition: Precondition::Match(remote.rev),
            stamp: local_stamp,
            conflict: Some(remote.clone()),
        }),
        Winner::Remote => MergeFallback::KeepLoserThenDownload(KeepLoserThenDownload {
            local: local.clone(),
            local_stamp,
            remote: remote.clone(),
        }),
    }
}

impl From<MergeFallback> for Decision {
    fn from(resolution: MergeFallback) -> Decision {
        match resolution {
            MergeFallback::Upload(upload) => Decision::Upload(upload),
            MergeFallback::KeepLoserThenDownload(keep) => Decision::KeepLoser(keep),
        }
    }
}

/// Who wins by [`ConflictPolicy::NewestStamp`].
fn newest(local_stamp: Stamp, remote: &ItemMeta) -> Winner {
    if local_stamp > remote.stamp {
        Winner::Local
    } else {
        Winner::Remote
    }
}

/// Row "changed / new | changed / new, hashes differ": the winner by policy; the loser is kept.
fn conflict(
    local: &LocalItem,
    base: Option<&BaseEntry>,
    remote: &ItemMeta,
    node: NodeId,
    policy: &SyncPolicy,
) -> Decision {
    let local_stamp = Stamp::for_edit(local.modified_millis, node, base.map(|b| b.stamp));
    let winner = match policy.conflicts_for(&remote.key) {
        ConflictPolicy::NewestStamp => newest(local_stamp, remote),
        ConflictPolicy::PreferLocal => Winner::Local,
        ConflictPolicy::PreferRemote => Winner::Remote,
        ConflictPolicy::Merge(_) if local.size.max(remote.size) > policy.max_item_bytes => {
            return too_large(local.size.max(remote.size), policy, "here or on the server");
        }
        ConflictPolicy::Merge(merger) => return merge(merger, local, base, remote, node),
    };
    if local.size > policy.max_item_bytes {
        return too_large(local.size, policy, "here");
    }
    if winner == Winner::Remote && remote.size > policy.max_item_bytes {
        return too_large(remote.size, policy, "on the server");
    }
    resolved(winner, local, local_stamp, remote).into()
}

/// A conflict the app merges. If its merge function fails, the newest stamp wins; the local
/// version is stamped with its modification time alone (not ordered after the base).
fn merge(
    merger: &Arc<dyn crate::Merge>,
    local: &LocalItem,
    base: Option<&BaseEntry>,
    remote: &ItemMeta,
    node: NodeId,
) -> Decision {
    let local_stamp = Stamp::for_edit(local.modified_millis, node, None);
    Decision::Merge(Box::new(Merge {
        merger: Merger(merger.clone()),
        local: local.clone(),
        remote: remote.clone(),
        base: base
            .filter(|b| b.is_confirmed())
            .and_then(|b| Some((b.rev, b.hash?))),
        local_stamp,
        if_merge_fails: resolved(newest(local_stamp, remote), local, local_stamp, remote),
    }))
}

#[cfg(test)]
mod tests;
