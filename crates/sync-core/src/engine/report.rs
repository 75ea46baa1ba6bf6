//! What one sync did: [`SyncReport`], and [`SyncFailed`] for a sync that stopped early.
//!
//! Plain data; the report's JSON form is the one `folder-sync --json` prints (SPEC §7).

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
