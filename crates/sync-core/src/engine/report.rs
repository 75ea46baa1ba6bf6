//! What one sync did: [`SyncReport`], [`SyncFailed`] for a sync that stopped early, and
//! [`SyncEvent`], both as a running loop's handle delivers them.
//!
//! Plain data; the report's JSON form is the one `folder-sync --json` prints (docs/SPEC.md §7). The
//! counts are kept here and only here: the engine hands each pass's plan and scan totals to
//! [`SyncReport::start_pass`] and each applied step's [`Outcome`] to [`SyncReport::count`]. No
//! I/O and no deciding.

use serde::{Deserialize, Serialize};

use crate::{Backup, ContentHash, Error, ErrorClass, ErrorEntry, Key, Revision, Stamp};

/// Counts and per-item problems of one sync.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncReport {
    /// Files (records) written to the server, and their tombstones (under
    /// `DeletePolicy::Propagate`). Folders are counted in `folders`.
    pub uploaded: u64,
    /// Files (records) written to this replica, and their removals (under `Propagate`).
    pub downloaded: u64,
    /// Folders created or removed, on either side.
    #[serde(default)]
    pub folders: u64,
    /// Conflicts resolved (each kept its loser).
    pub conflicts: u64,
    /// Keys that needed nothing.
    pub unchanged: u64,
    /// Items left alone (too large, invalid name, symlink, kind mismatch).
    pub skipped: u64,
    /// Every problem of this sync, most important first.
    pub errors: Vec<ReportedError>,
    /// Every conflict this sync resolved: who won and where both versions are kept.
    #[serde(default)]
    pub resolved: Vec<ConflictRecord>,
    /// The keys (local names) whose content this sync wrote to or removed from this replica:
    /// downloads, and merges written here, in the order they were done. What a UI refreshes.
    /// Not in the JSON form: a first sync lists every key.
    #[serde(skip)]
    pub changed: Vec<Key>,
}

impl SyncReport {
    /// Items moved in either direction.
    pub fn transferred(&self) -> u64 {
        self.uploaded + self.downloaded
    }

    /// Starts a plan-and-apply pass: `unchanged` keys in its plan and `scan_skipped` items its
    /// scan left alone. A later pass's totals replace an earlier one's; transfers add up.
    pub(super) fn start_pass(&mut self, unchanged: u64, scan_skipped: u64) {
        self.unchanged = unchanged;
        self.skipped = scan_skipped;
    }

    /// Counts what one applied step did to `local_key`.
    pub(super) fn count(&mut self, local_key: &Key, outcome: &Outcome) {
        let here = match outcome {
            Outcome::Downloaded { .. } => true,
            Outcome::Uploaded { conflict: Some(c) } => c.winner == ConflictWinner::Merged,
            _ => false,
        };
        if here {
            self.changed.push(local_key.clone());
        }
        let conflict = match outcome {
            Outcome::Nothing => return,
            Outcome::Skipped { .. } => {
                self.skipped += 1;
                return;
            }
            Outcome::Folder => {
                self.folders += 1;
                return;
            }
            Outcome::Uploaded { conflict } => {
                self.uploaded += 1;
                conflict
            }
            Outcome::Downloaded { conflict } => {
                self.downloaded += 1;
                conflict
            }
        };
        if let Some(record) = conflict {
            self.conflicts += 1;
            self.resolved.push(record.clone());
        }
    }
}

/// One conflict a sync resolved (both sides changed a key to different content): which side
/// won, and where each version is kept, so an app can show both and let a person pick.
///
/// Read a version kept on the server with `Transport::fetch(key, Some(rev))` (or
/// [`crate::Engine::restore`] it); read the local backup with `Replica::read_backup`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConflictRecord {
    /// The key (its remote name).
    pub key: Key,
    /// Which version is current now.
    pub winner: ConflictWinner,
    /// This device's version.
    pub local: ConflictVersion,
    /// The server's version.
    pub remote: ConflictVersion,
    /// The server revision that is current after the conflict: the winner's, or the merge's.
    pub current: Revision,
    /// The local copy of this device's version, when it was backed up before being replaced.
    pub backup: Option<Backup>,
}

/// Who won a conflict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConflictWinner {
    /// This device's version was uploaded over the server's.
    Local,
    /// The server's version replaced this device's.
    Remote,
    /// A merge of both replaced both.
    Merged,
}

/// One side of a conflict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConflictVersion {
    /// When the edit was made.
    pub stamp: Stamp,
    /// Its content hash.
    pub hash: ContentHash,
    /// The server revision that keeps it (current or in history).
    pub rev: Revision,
}

/// What one applied step did, as the report counts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Outcome {
    /// Nothing to count: a base change, or a write the server refused with a conflict.
    Nothing,
    /// A change written to the server; `conflict` when it resolved a conflict.
    Uploaded {
        /// The conflict it resolved.
        conflict: Option<ConflictRecord>,
    },
    /// A change written to this replica; `conflict` when it resolved a conflict.
    Downloaded {
        /// The conflict it resolved.
        conflict: Option<ConflictRecord>,
    },
    /// A folder created or removed, on either side.
    Folder,
    /// A key left alone; the engine reports it on the error stack.
    Skipped {
        /// `Item` or `Warning`.
        class: ErrorClass,
        /// What happened and what to do.
        message: String,
    },
}

/// One problem in a report, as `folder-sync --json` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportedError {
    /// Its class on the error stack.
    pub class: ErrorClass,
    /// The key it is about, if one.
    pub key: Option<Key>,
    /// What happened and what to do.
    pub message: String,
}

impl From<&ErrorEntry> for ReportedError {
    fn from(e: &ErrorEntry) -> Self {
        ReportedError {
            class: e.class,
            key: e.key().cloned(),
            message: e.message.clone(),
        }
    }
}

/// What one sync did, as [`crate::SyncHandle::events`] delivers it: the report (what was done
/// until it stopped, for a sync that failed) and the error that stopped it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncEvent {
    /// When the sync ended, in milliseconds since the Unix epoch (the engine's time source).
    pub ended_millis: u64,
    /// What it did: counts, the keys it changed here ([`SyncReport::changed`]), the conflicts
    /// it resolved ([`SyncReport::resolved`]: the winner, where the loser is kept) and the
    /// error stack as it ended ([`SyncReport::errors`]).
    pub report: SyncReport,
    /// Why it stopped early (Auth, Storage, Offline or Throttled), if it did.
    pub failed: Option<Error>,
}

/// A sync that stopped before it finished: the error that stopped it (Auth, Storage, Offline
/// or Throttled), and what it had done until then. Everything done was recorded; the next
/// sync continues from there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("sync stopped: {error}")]
pub struct SyncFailed {
    /// Why it stopped.
    pub error: Error,
    /// What it did before stopping.
    pub partial: SyncReport,
}
