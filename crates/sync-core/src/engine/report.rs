//! What one sync did: [`SyncReport`], and [`SyncFailed`] for a sync that stopped early.
//!
//! Plain data; the report's JSON form is the one `folder-sync --json` prints (docs/SPEC.md §7). The
//! counts are kept here and only here: the engine hands each pass's plan and scan totals to
//! [`SyncReport::start_pass`] and each applied step's [`Outcome`] to [`SyncReport::count`]. No
//! I/O and no deciding.

use serde::{Deserialize, Serialize};

use crate::{Error, ErrorClass, ErrorEntry, Key};

/// Counts and per-item problems of one sync.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncReport {
    /// Changes written to the server: files, folders, and tombstones (under
    /// `DeletePolicy::Propagate`).
    pub uploaded: u64,
    /// Changes written to this replica: files, folders, and removals (under `Propagate`).
    pub downloaded: u64,
    /// Conflicts resolved (each kept its loser).
    pub conflicts: u64,
    /// Keys that needed nothing.
    pub unchanged: u64,
    /// Items left alone (too large, invalid name, symlink, kind mismatch).
    pub skipped: u64,
    /// Every problem of this sync, most important first.
    pub errors: Vec<ReportedError>,
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

    /// Counts what one applied step did.
    pub(super) fn count(&mut self, outcome: &Outcome) {
        let conflict = match outcome {
            Outcome::Nothing => return,
            Outcome::Skipped { .. } => {
                self.skipped += 1;
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
        if *conflict {
            self.conflicts += 1;
        }
    }
}

/// What one applied step did, as the report counts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Outcome {
    /// Nothing to count: a base change, or a write the server refused with a conflict.
    Nothing,
    /// A change written to the server; `conflict` when it won a conflict.
    Uploaded {
        /// True for a conflict's winner.
        conflict: bool,
    },
    /// A change written to this replica; `conflict` when it won a conflict.
    Downloaded {
        /// True for a conflict's winner.
        conflict: bool,
    },
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
