//! The choices an app makes about sync (docs/SPEC.md §1, §3): deletes, conflicts, identity, size limit.
//!
//! Policies are data plus one app-supplied hook ([`Merge`]); the reconciler reads them, it never
//! asks the app anything at planning time.

use std::fmt;
use std::sync::Arc;

use crate::{Key, Stamp};

/// The default largest item that syncs: 20 MiB.
pub const DEFAULT_MAX_ITEM_BYTES: u64 = 20 * 1024 * 1024;

/// What a delete on one side does to the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeletePolicy {
    /// Deletes never propagate (default): the deleting side detaches the key.
    #[default]
    Keep,
    /// A delete becomes a tombstone on the other side; the content stays in the server's version
    /// history and in local backups.
    Propagate,
}

/// Joins two conflicting versions into one (for example JSON arrays merged by `id`).
pub trait Merge: Send + Sync {
    /// The merged content of a key both sides changed, from the three versions in `input`, or
    /// an error message; on error the engine falls back to the newest stamp. Whatever it
    /// returns, both inputs stay recoverable (a local backup and the server's history).
    fn merge(&self, input: MergeInput<'_>) -> Result<Vec<u8>, String>;
}

impl<F> Merge for F
where
    F: Fn(MergeInput<'_>) -> Result<Vec<u8>, String> + Send + Sync,
{
    fn merge(&self, input: MergeInput<'_>) -> Result<Vec<u8>, String> {
        self(input)
    }
}

/// What a [`Merge`] sees: the key, the content both sides last agreed on, and both sides now.
///
/// Without the base a merge cannot tell "deleted here" from "added there", and brings deleted
/// elements back; with it, a three-way merge can. The engine reads the base from the server's
/// version history (the revision both sides last agreed on); it is `None` when both sides
/// created the key independently, or when that version cannot be read any more.
#[derive(Debug, Clone, Copy)]
pub struct MergeInput<'a> {
    /// The key (its remote name).
    pub key: &'a Key,
    /// The content both sides last agreed on, if any.
    pub base: Option<&'a [u8]>,
    /// This device's content.
    pub local: &'a [u8],
    /// The server's content.
    pub remote: &'a [u8],
    /// When the local edit was made.
    pub local_stamp: Stamp,
    /// When the remote edit was made.
    pub remote_stamp: Stamp,
}

impl MergeInput<'_> {
    /// True when the local edit is the newer one (stamps are totally ordered): where both
    /// sides changed the same part, a merge takes the newer side.
    pub fn local_is_newer(&self) -> bool {
        self.local_stamp > self.remote_stamp
    }
}

/// Who wins a conflict (both sides changed the same key to different content). Whichever wins,
/// the loser is kept: in local backups and in the server's version history.
#[derive(Clone, Default)]
pub enum ConflictPolicy {
    /// The edit with the newer stamp wins (default).
    #[default]
    NewestStamp,
    /// This device's edit wins.
    PreferLocal,
    /// The server's version wins.
    PreferRemote,
    /// An app-supplied merge makes a new version from both.
    Merge(Arc<dyn Merge>),
}

impl fmt::Debug for ConflictPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConflictPolicy::NewestStamp => f.write_str("NewestStamp"),
            ConflictPolicy::PreferLocal => f.write_str("PreferLocal"),
            ConflictPolicy::PreferRemote => f.write_str("PreferRemote"),
            ConflictPolicy::Merge(_) => f.write_str("Merge(..)"),
        }
    }
}

/// How a local item finds its remote twin (docs/SPEC.md §1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Identity {
    /// The key is the path (default).
    #[default]
    Path,
    /// A `*.html` file binds to the remote item with the same file name wherever it lives;
    /// other items use their path.
    AppName,
}

/// Everything the reconciler needs to know about the app's choices.
#[derive(Debug, Clone)]
pub struct SyncPolicy {
    /// What deletes do.
    pub deletes: DeletePolicy,
    /// Who wins a conflict, for keys no entry of `conflicts_by_prefix` matches.
    pub conflicts: ConflictPolicy,
    /// Conflict policies for key prefixes, e.g. `("settings/", JsonFields)`,
    /// `("history/", AppendOnly)`: the longest prefix that `key.as_str()` starts with decides;
    /// keys no prefix matches use `conflicts`. A prefix is matched as text, so end it with `/`
    /// to mean a folder.
    pub conflicts_by_prefix: Vec<(String, ConflictPolicy)>,
    /// How local items find their remote twins.
    pub identity: Identity,
    /// Items larger than this are skipped with a warning.
    pub max_item_bytes: u64,
}

impl SyncPolicy {
    /// The conflict policy for `key`: that of the longest matching entry of
    /// `conflicts_by_prefix`, else `conflicts`.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use sync_core::merge::{AppendOnly, JsonFields};
    /// use sync_core::{ConflictPolicy, Key, SyncPolicy};
    /// let policy = SyncPolicy {
    ///     conflicts_by_prefix: vec![
    ///         ("settings/".into(), ConflictPolicy::Merge(Arc::new(JsonFields))),
    ///         ("history/".into(), ConflictPolicy::Merge(Arc::new(AppendOnly::new("id", "at")))),
    ///     ],
    ///     ..SyncPolicy::default()
    /// };
    /// let key = |s: &str| Key::new(s).unwrap();
    /// assert!(matches!(policy.conflicts_for(&key("settings/theme.json")), ConflictPolicy::Merge(_)));
    /// assert!(matches!(policy.conflicts_for(&key("notes/a.txt")), ConflictPolicy::NewestStamp));
    /// ```
    pub fn conflicts_for(&self, key: &Key) -> &ConflictPolicy {
        self.conflicts_by_prefix
            .iter()
            .filter(|(prefix, _)| key.as_str().starts_with(prefix.as_str()))
            .max_by_key(|(prefix, _)| prefix.len())
            .map_or(&self.conflicts, |(_, policy)| policy)
    }
}

impl Default for SyncPolicy {
    fn default() -> Self {
        SyncPolicy {
            deletes: DeletePolicy::Keep,
            conflicts: ConflictPolicy::NewestStamp,
            conflicts_by_prefix: Vec::new(),
            identity: Identity::Path,
            max_item_bytes: DEFAULT_MAX_ITEM_BYTES,
        }
    }
}
