//! The three-way reconciler (SPEC §3): a pure function from (local scan, base, remote tree) to
//! a [`Plan`].
//!
//! Every rule of the §3 table is decided in [`decide`], one `match` arm per row; the arms are
//! labelled with the row they implement. The reconciler does no I/O and calls no app code; it
//! only says what to do. The engine applies the plan and re-checks each local item before it
//! touches it.
//!
//! Architecture invariant: no action in a plan deletes or overwrites local or remote content
//! without the content first being kept: a remote overwrite keeps the old version in the
//! server's history; a local overwrite by a conflict winner is [`ActionKind::KeepLoserThenDownload`];
//! a local delete exists only under [`DeletePolicy::Propagate`] and backs up first.

use std::collections::{BTreeMap, BTreeSet};

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

/// One step of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    /// The remote key.
    pub key: Key,
    /// Where the item is (or goes) on this replica; equal to `key` unless identity binds them
    /// differently.
    pub local_key: Key,
    /// What to do.
    pub kind: ActionKind,
}

/// What to do for one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionKind {
    /// Upload the local file under `precondition`. `conflict` is set when it wins a conflict
    /// (the remote version it overwrites stays in the server's history).
    Upload {
        /// The local file as scanned.
        local: LocalItem,
        /// Create, or overwrite the revision the plan saw.
        precondition: Precondition,
        /// The edit's stamp.
        stamp: Stamp,
        /// True when this upload is the winner of a conflict.
        conflict: bool,
    },
    /// Create the local folder's path on the server.
    CreateRemoteFolder {
        /// The local folder.
        local: LocalItem,
    },
    /// Download the remote file (replacing the local item only if it is still as `expected`).
    Download {
        /// The remote version.
        remote: ItemMeta,
        /// What the plan saw locally.
        expected: Expected,
    },
    /// Create the remote folder locally.
    CreateLocalFolder {
        /// The remote folder.
        remote: ItemMeta,
    },
    /// Both sides already agree: record the base, transfer nothing.
    RecordBase {
        /// The new base.
        base: BaseEntry,
    },
    /// One side deleted and the delete is not propagated: mark the key detached.
    Detach {
        /// The base, with `detached: true`.
        base: BaseEntry,
    },
    /// Both sides are gone: forget the key.
    Forget,
    /// The remote version won a conflict: back up the local loser (locally and into the
    /// server's history), then download the winner.
    KeepLoserThenDownload {
        /// The losing local file.
        local: LocalItem,
        /// The loser's stamp.
        local_stamp: Stamp,
        /// The winning remote version.
        remote: ItemMeta,
    },
    /// Both changed and the app merges: back up the local version, then write and upload the
    /// merge over the remote version.
    Merge {
        /// The local file.
        local: LocalItem,
        /// The remote version.
        remote: ItemMeta,
    },
    /// `DeletePolicy::Propagate`: the local item was deleted; tombstone the remote one.
    DeleteRemote {
        /// The remote version deleted (it stays in history).
        remote: ItemMeta,
    },
    /// `DeletePolicy::Propagate`: the remote item was deleted; back up and remove the local one.
    DeleteLocal {
        /// The local item.
        local: LocalItem,
        /// The tombstone.
        remote: ItemMeta,
    },
    /// Leave the key alone and report it.
    Skip {
        /// `Item` or `Warning`.
        class: ErrorClass,
        /// What happened and what to do.
        message: String,
    },
}

impl ActionKind {
    /// True for actions that move content or change the other side.
    pub fn transfers(&self) -> bool {
        !matches!(
            self,
            ActionKind::RecordBase { .. }
                | ActionKind::Detach { .. }
                | ActionKind::Forget
                | ActionKind::Skip { .. }
        )
    }

    /// True for actions that remove something (applied children first).
    fn is_removal(&self) -> bool {
        matches!(
            self,
            ActionKind::DeleteRemote { .. } | ActionKind::DeleteLocal { .. }
        )
    }
}

/// The actions for one sync, in the order to apply them: parents before children, removals
/// last and children first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// The actions.
    pub actions: Vec<Action>,
    /// How many keys needed nothing.
    pub unchanged: u64,
}

impl Plan {
    /// True when nothing needs doing.
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
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
    let mut removals = Vec::new();
    for (local_key, message) in problems {
        untouchable.insert(local_key.clone());
        plan.actions.push(Action {
            key: local_key.clone(),
            local_key,
            kind: ActionKind::Skip {
                class: ErrorClass::Item,
                message,
            },
        });
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
        let kind = if local.is_none() && occupied.contains_key(&local_key) {
            Some(ActionKind::Skip {
                class: ErrorClass::Item,
                message: format!(
                    "the local path {local_key} already holds the twin of {}; rename one of them",
                    occupied[&local_key]
                ),
            })
        } else {
            decide(local, base, remote, input.node, policy)
        };
        match kind {
            None => plan.unchanged += 1,
            Some(kind) => {
                let action = Action {
                    key: key.clone(),
                    local_key,
                    kind,
                };
                if action.kind.is_removal() {
                    removals.push(action);
                } else {
                    plan.actions.push(action);
                }
            }
        }
    }
    removals.reverse();
    plan.actions.extend(removals);
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

fn base_from(remote: &ItemMeta, local: Option<&LocalItem>, detached: bool) -> BaseEntry {
    BaseEntry {
        kind: remote.kind,
        hash: remote.hash,
        size: remote.size,
        rev: remote.rev,
        stamp: remote.stamp,
        fingerprint: local.map(|l| l.fingerprint),
        local_key: local.and_then(|l| (l.key != remote.key).then(|| l.key.clone())),
        detached,
    }
}

/// The §3 table for one key. `None` means nothing to do.
fn decide(
    local: Option<&LocalItem>,
    base: Option<&BaseEntry>,
    remote: Option<&ItemMeta>,
    node: NodeId,
    policy: &SyncPolicy,
) -> Option<ActionKind> {
    let lc = local.map(|l| l.content);
    let rc = remote.and_then(ItemMeta::content);
    let ls = side(lc, base, true);
    let rs = side(rc, base, remote.is_some());
    let detached = base.is_some_and(|b| b.detached);

    // A file here and a folder there (or the reverse) cannot be merged or backed up as one
    // version: leave both and say so.
    if let (Some(l), Some(r)) = (lc, rc) {
        if l.kind() != r.kind() {
            return Some(ActionKind::Skip {
                class: ErrorClass::Item,
                message: format!(
                    "is a {} here and a {} on the server; rename one of them",
                    kind_name(l.kind()),
                    kind_name(r.kind())
                ),
            });
        }
    }

    use Side::*;
    match (ls, rs) {
        // Row "new | absent": upload (create). Also "changed later | deleted" (an edit beats a
        // delete) and an item the server lost.
        (New, Absent) | (Changed | Unchanged | New, Lost) | (Changed, Deleted) => {
            upload(local?, base, remote, node, policy, false)
        }
        // Row "absent | new": download. Also "deleted (detached) | changed later" and
        // "deleted | changed": the newer remote version comes back.
        (Absent, New) | (Deleted, Changed) => download(local, remote?, policy),
        // Rows "new | new, same hash" and "changed | changed, same hash": record B, no
        // transfer; otherwise a conflict.
        (New, New) | (Changed, Changed) => {
            let (l, r) = (local?, remote?);
            if lc == rc {
                Some(ActionKind::RecordBase {
                    base: base_from(r, Some(l), false),
                })
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
        (Changed, Unchanged) => upload(local?, base, remote, node, policy, false),
        // Both as in the base: refresh the base if the fingerprint, revision or detached flag
        // moved, otherwise nothing.
        (Unchanged, Unchanged) => {
            let (l, b, r) = (local?, base?, remote?);
            let fresh = base_from(r, Some(l), false);
            (fresh != *b).then_some(ActionKind::RecordBase { base: fresh })
        }
        // Row "deleted | unchanged": keep remote, mark detached (or propagate the delete).
        (Deleted, Unchanged) => {
            let (b, r) = (base?, remote?);
            if detached {
                None
            } else if policy.deletes == DeletePolicy::Propagate {
                Some(ActionKind::DeleteRemote { remote: r.clone() })
            } else {
                Some(ActionKind::Detach {
                    base: BaseEntry {
                        detached: true,
                        fingerprint: None,
                        ..b.clone()
                    },
                })
            }
        }
        // Row "unchanged | deleted (tombstone)": keep local, mark detached (or propagate).
        (Unchanged, Deleted) => {
            let (l, b, r) = (local?, base?, remote?);
            if detached {
                None
            } else if policy.deletes == DeletePolicy::Propagate {
                Some(ActionKind::DeleteLocal {
                    local: l.clone(),
                    remote: r.clone(),
                })
            } else {
                Some(ActionKind::Detach {
                    base: BaseEntry {
                        detached: true,
                        rev: r.rev,
                        fingerprint: Some(l.fingerprint),
                        ..b.clone()
                    },
                })
            }
        }
        // Both gone: forget the key.
        (Deleted, Deleted | Lost) => Some(ActionKind::Forget),
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
    conflict: bool,
) -> Option<ActionKind> {
    if local.kind() == ItemKind::Folder {
        return Some(ActionKind::CreateRemoteFolder {
            local: local.clone(),
        });
    }
    // Row "over size limit | any": skip, never uploaded.
    if local.size > policy.max_item_bytes {
        return Some(too_large(local.size, policy, "here"));
    }
    Some(ActionKind::Upload {
        local: local.clone(),
        precondition: precondition(remote),
        stamp: Stamp::for_edit(local.modified_millis, node, base.map(|b| b.stamp)),
        conflict,
    })
}

fn download(
    local: Option<&LocalItem>,
    remote: &ItemMeta,
    policy: &SyncPolicy,
) -> Option<ActionKind> {
    if remote.kind == ItemKind::Folder {
        return Some(ActionKind::CreateLocalFolder {
            remote: remote.clone(),
        });
    }
    if remote.size > policy.max_item_bytes {
        return Some(too_large(remote.size, policy, "on the server"));
    }
    Some(ActionKind::Download {
        remote: remote.clone(),
        expected: expected(local),
    })
}

fn too_large(size: u64, policy: &SyncPolicy, side: &str) -> ActionKind {
    ActionKind::Skip {
        class: ErrorClass::Warning,
        message: format!(
            "{size} bytes {side} is over the limit of {} bytes; not synced (raise max_item_bytes to sync it)",
            policy.max_item_bytes
        ),
    }
}

/// Row "changed / new | changed / new, hashes differ": the winner by policy; the loser is kept.
fn conflict(
    local: &LocalItem,
    base: Option<&BaseEntry>,
    remote: &ItemMeta,
    node: NodeId,
    policy: &SyncPolicy,
) -> ActionKind {
    let local_stamp = Stamp::for_edit(local.modified_millis, node, base.map(|b| b.stamp));
    let winner = match &policy.conflicts {
        ConflictPolicy::NewestStamp if local_stamp > remote.stamp => Winner::Local,
        ConflictPolicy::NewestStamp => Winner::Remote,
        ConflictPolicy::PreferLocal => Winner::Local,
        ConflictPolicy::PreferRemote => Winner::Remote,
        ConflictPolicy::Merge(_) if local.size.max(remote.size) > policy.max_item_bytes => {
            return too_large(local.size.max(remote.size), policy, "here or on the server");
        }
        ConflictPolicy::Merge(_) => {
            return ActionKind::Merge {
                local: local.clone(),
                remote: remote.clone(),
            }
        }
    };
    if local.size > policy.max_item_bytes {
        return too_large(local.size, policy, "here");
    }
    if winner == Winner::Remote && remote.size > policy.max_item_bytes {
        return too_large(remote.size, policy, "on the server");
    }
    match winner {
        Winner::Local => ActionKind::Upload {
            local: local.clone(),
            precondition: Precondition::Match(remote.rev),
            stamp: local_stamp,
            conflict: true,
        },
        Winner::Remote => ActionKind::KeepLoserThenDownload {
            local: local.clone(),
            local_stamp,
            remote: remote.clone(),
        },
    }
}

#[cfg(test)]
mod tests;
