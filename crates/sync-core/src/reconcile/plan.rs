//! The plan of one sync: [`Plan`], one list of [`Step`]s per phase, and the data each phase's
//! steps carry.
//!
//! Plain data. [`reconcile`](super::reconcile) fills it and the engine executes it phase by
//! phase, in the order of [`Plan`]'s fields; nothing here decides anything or does I/O. A step
//! type holds exactly what its phase needs, so the engine never checks at run time what kind of
//! step it holds.

use std::fmt;
use std::sync::Arc;

use crate::{
    BaseEntry, ContentHash, ErrorClass, Expected, ItemMeta, Key, LocalItem, Precondition, Revision,
    Stamp,
};

/// One step of a phase: where it applies, and what to do there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step<T> {
    /// The remote key.
    pub key: Key,
    /// Where the item is (or goes) on this replica; equal to `key` unless identity binds them
    /// differently.
    pub local_key: Key,
    /// What to do.
    pub op: T,
}

/// The steps of one sync, by phase. The engine runs the phases in the order of these fields,
/// and the steps of a phase in their order here: by key (so a folder comes before the items
/// under it), except `skips`, whose identity problems come first, and `removals`, which go
/// children first.
///
/// What the phase order guarantees: folders exist on both sides before anything is written
/// under them (downloads, uploads and merges come after both folder phases; writes also create
/// missing parents); removals come last, after everything that might still need a parent.
/// Keys are otherwise independent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Keys left alone this time, to report (no I/O).
    pub skips: Vec<Step<Skip>>,
    /// Base records that move no content (no I/O).
    pub base_changes: Vec<Step<BaseChange>>,
    /// Local folders to create on the server.
    pub remote_folders: Vec<Step<CreateRemoteFolder>>,
    /// Remote folders to create on this replica.
    pub local_folders: Vec<Step<CreateLocalFolder>>,
    /// Conflicts the remote version won: keep the local loser, then download the winner.
    pub keep_loser_then_download: Vec<Step<KeepLoserThenDownload>>,
    /// Conflicts the app merges.
    pub merges: Vec<Step<Merge>>,
    /// Remote files to write here (the engine runs several at a time).
    pub downloads: Vec<Step<Download>>,
    /// Local files to write to the server (the engine sends them in batches).
    pub uploads: Vec<Step<Upload>>,
    /// Deletes to propagate (`DeletePolicy::Propagate`), children first.
    pub removals: Vec<Step<Removal>>,
    /// How many keys needed nothing.
    pub unchanged: u64,
}

impl Plan {
    /// How many steps the plan has, over all phases.
    pub fn len(&self) -> usize {
        self.skips.len() + self.base_changes.len() + self.transfers()
    }

    /// True when nothing needs doing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The content bytes the plan moves through this replica: what downloads write, what
    /// uploads read, and both for a kept loser or a merge (the loser is read to back it up,
    /// the winner written; a merge's result is counted at the remote version's size, so the
    /// figure is an estimate there). Folders, removals, skips and base changes move none.
    pub fn bytes(&self) -> u64 {
        let downloads = self.downloads.iter().map(|s| s.op.remote.size);
        let uploads = self.uploads.iter().map(|s| s.op.local.size);
        let kept = self
            .keep_loser_then_download
            .iter()
            .map(|s| s.op.local.size.saturating_add(s.op.remote.size));
        let merges = self
            .merges
            .iter()
            .map(|s| s.op.local.size.saturating_add(s.op.remote.size));
        downloads
            .chain(uploads)
            .chain(kept)
            .chain(merges)
            .fold(0u64, u64::saturating_add)
    }

    /// How many steps move content or change the other side (all but skips and base changes).
    pub fn transfers(&self) -> usize {
        self.remote_folders.len()
            + self.local_folders.len()
            + self.keep_loser_then_download.len()
            + self.merges.len()
            + self.downloads.len()
            + self.uploads.len()
            + self.removals.len()
    }
}

/// Leave the key alone and report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skip {
    /// `Item` or `Warning`.
    pub class: ErrorClass,
    /// What happened and what to do.
    pub message: String,
}

/// A change to the base alone: nothing is transferred.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BaseChange {
    /// Both sides already agree: record this base.
    Record(BaseEntry),
    /// One side deleted and the delete is not propagated: record this base, with
    /// `detached: true`.
    Detach(BaseEntry),
    /// Both sides are gone: forget the key.
    Forget,
}

impl BaseChange {
    /// The base to record, or `None` to forget the key.
    pub fn entry(&self) -> Option<&BaseEntry> {
        match self {
            BaseChange::Record(base) | BaseChange::Detach(base) => Some(base),
            BaseChange::Forget => None,
        }
    }
}

/// Create the local folder's path on the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateRemoteFolder {
    /// The local folder.
    pub local: LocalItem,
}

/// Create the remote folder on this replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateLocalFolder {
    /// The remote folder.
    pub remote: ItemMeta,
}

/// Download the remote file, replacing the local item only if it is still as `expected`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Download {
    /// The remote version.
    pub remote: ItemMeta,
    /// What the plan saw locally.
    pub expected: Expected,
}

/// Upload the local file under `precondition`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    /// The local file as scanned.
    pub local: LocalItem,
    /// Create, or overwrite the revision the plan saw.
    pub precondition: Precondition,
    /// The edit's stamp.
    pub stamp: Stamp,
    /// When this upload is the winner of a conflict: the remote version it overwrites (which
    /// stays in the server's history).
    pub conflict: Option<ItemMeta>,
}

/// The remote version won a conflict: back up the local loser (locally and into the server's
/// history), then download the winner over it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeepLoserThenDownload {
    /// The losing local file.
    pub local: LocalItem,
    /// The loser's stamp.
    pub local_stamp: Stamp,
    /// The winning remote version.
    pub remote: ItemMeta,
}

/// Both sides changed and the app merges: back up the local version (locally and into the
/// server's history), then write the merge here and upload it over the remote version.
///
/// The reconciler decides what happens when the app's merge function fails, and the step
/// carries it in `if_merge_fails`: the newest stamp wins, comparing `local_stamp` with the
/// remote version's stamp. The engine only executes that fallback, with the content it has
/// already read and fetched; the loser is kept either way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merge {
    /// The app's merge function.
    pub merger: Merger,
    /// The local file.
    pub local: LocalItem,
    /// The remote version.
    pub remote: ItemMeta,
    /// The version both sides last agreed on (the merge's base), when there is one: the
    /// engine reads its content from the server's history by this revision and checks it
    /// against this hash. `None` when both sides created the key.
    pub base: Option<(Revision, ContentHash)>,
    /// The local version's stamp, under which it is kept: its modification time alone (not
    /// ordered after the base's stamp, unlike a conflict without a merge).
    pub local_stamp: Stamp,
    /// What to do instead when the app's merge function fails.
    pub if_merge_fails: MergeFallback,
}

/// What a [`Merge`] does when the app's merge function fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MergeFallback {
    /// The local version is newer: upload it over the remote version (a conflict winner; the
    /// remote version stays in the server's history).
    Upload(Upload),
    /// The remote version is newer (or as new): keep the local loser, then write the remote
    /// version over it.
    KeepLoserThenDownload(KeepLoserThenDownload),
}

/// The app's merge function, as a plan carries it. Two are equal when they are the same
/// function (the same `Arc`).
#[derive(Clone)]
pub struct Merger(pub Arc<dyn crate::Merge>);

impl fmt::Debug for Merger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Merger(..)")
    }
}

impl PartialEq for Merger {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Merger {}

/// A delete to propagate (`DeletePolicy::Propagate`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removal {
    /// The local item was deleted: tombstone the remote one (its content stays in history).
    DeleteRemote {
        /// The remote revision deleted.
        rev: Revision,
    },
    /// The remote item was deleted: back up and remove the local one.
    DeleteLocal {
        /// The local item.
        local: LocalItem,
    },
}
