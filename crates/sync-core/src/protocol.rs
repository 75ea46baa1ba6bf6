//! The data of the sync protocol's operations (docs/SPEC.md §4, §6), shared by [`crate::Transport`]
//! (client side) and [`crate::ServerStore`] (server side): change pages, pushes and their
//! outcomes, fetched content.
//!
//! Plain data only. Content travels as [`Bytes`]: items are bounded by the size limit
//! (20 MiB by default), and `Bytes` lets one buffer be shared without copies.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::{ContentHash, Cursor, ItemMeta, Key, Revision, Stamp, VersionMeta};

/// One page of the change feed: the latest state of every key changed after the `since`
/// cursor, in revision order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangePage {
    /// Changed items, oldest revision first; tombstones have `deleted: true`.
    pub changes: Vec<ItemMeta>,
    /// Where the next page starts.
    pub cursor: Cursor,
    /// True when more changes remain after this page.
    pub more: bool,
}

/// The condition a write is accepted under (HTTP `If-Match` / `If-None-Match: *`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Precondition {
    /// The key must not exist, or be a tombstone (create).
    Create,
    /// The key's current revision must be this one (overwrite the version the client based on).
    Match(Revision),
}

/// Write a file's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushRequest {
    /// The item.
    pub key: Key,
    /// When the write is accepted.
    pub precondition: Precondition,
    /// The content.
    pub content: Bytes,
    /// Its blake3 hash; the server verifies it.
    pub hash: ContentHash,
    /// When the edit was made (the server may clamp it, docs/SPEC.md §2).
    pub stamp: Stamp,
    /// The highest revision the client has seen (Lamport rule).
    pub seen: Revision,
}

/// Delete an item (a tombstone), used only under `DeletePolicy::Propagate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteRequest {
    /// The item.
    pub key: Key,
    /// The revision the client saw.
    pub rev: Revision,
    /// When the delete was made.
    pub stamp: Stamp,
    /// The highest revision the client has seen.
    pub seen: Revision,
}

/// Create a folder path (and its parents); idempotent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderRequest {
    /// The folder.
    pub key: Key,
    /// When it was made.
    pub stamp: Stamp,
    /// The highest revision the client has seen.
    pub seen: Revision,
}

/// Keep a version in an item's history without making it current: how the losing side of a
/// conflict reaches the server when the remote version wins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveRequest {
    /// The item.
    pub key: Key,
    /// The losing content.
    pub content: Bytes,
    /// Its hash; the server verifies it.
    pub hash: ContentHash,
    /// The losing edit's stamp.
    pub stamp: Stamp,
    /// The highest revision the client has seen.
    pub seen: Revision,
}

/// The result of a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushOutcome {
    /// Accepted: the item as it now is.
    Accepted(ItemMeta),
    /// The precondition failed: the item as it now is (`None` if it does not exist), so the
    /// client can reconcile against it.
    Conflict {
        /// The current item.
        current: Option<ItemMeta>,
    },
}

/// Content fetched from the server, with the version it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// The version.
    pub version: VersionMeta,
    /// Its bytes.
    pub content: Bytes,
}

/// The most versions one page of a key's history holds (and the page size when none is asked
/// for): a history of any length is read in pages of at most this many.
pub const MAX_HISTORY_PAGE: usize = 1000;

/// Which page of a key's history to read: the versions with a revision below `before` (from
/// the newest, when `None`), newest first, at most `limit` of them (1 to
/// [`MAX_HISTORY_PAGE`]; a store reads `limit` as [`HistoryRange::page_size`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryRange {
    /// Only versions older than this revision (exclusive); `None` starts at the newest.
    pub before: Option<Revision>,
    /// The most versions to return.
    pub limit: usize,
}

impl HistoryRange {
    /// The first page: the newest `limit` versions.
    pub fn newest(limit: usize) -> HistoryRange {
        HistoryRange {
            before: None,
            limit,
        }
    }

    /// The page after one whose [`HistoryPage::next_before`] was `before`.
    pub fn before(before: Revision, limit: usize) -> HistoryRange {
        HistoryRange {
            before: Some(before),
            limit,
        }
    }

    /// `limit` brought into 1 ..= [`MAX_HISTORY_PAGE`]: what a store returns at most.
    pub fn page_size(&self) -> usize {
        self.limit.clamp(1, MAX_HISTORY_PAGE)
    }
}

impl Default for HistoryRange {
    /// The newest [`MAX_HISTORY_PAGE`] versions.
    fn default() -> Self {
        HistoryRange::newest(MAX_HISTORY_PAGE)
    }
}

/// One page of a key's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryPage {
    /// Versions, newest first.
    pub versions: Vec<VersionMeta>,
    /// When older versions follow: the revision to pass as [`HistoryRange::before`] for the
    /// next page (the oldest revision of this page). `None` on the last page.
    pub next_before: Option<Revision>,
}

impl HistoryPage {
    /// The page of at most `range.page_size()` versions made from `rows`: the versions
    /// below `range.before`, newest first, at most one more than the page size (the extra one
    /// only says that more follow, and is dropped).
    ///
    /// ```
    /// use sync_core::{HistoryPage, HistoryRange, Revision, Stamp, VersionMeta};
    /// let v = |rev| VersionMeta { rev: Revision(rev), hash: None, size: 0,
    ///     stamp: Stamp::ZERO, deleted: false };
    /// let page = HistoryPage::from_rows(vec![v(9), v(7), v(4)], HistoryRange::newest(2));
    /// assert_eq!(page.versions.len(), 2);
    /// assert_eq!(page.next_before, Some(Revision(7)));
    /// ```
    pub fn from_rows(mut rows: Vec<VersionMeta>, range: HistoryRange) -> HistoryPage {
        let size = range.page_size();
        let more = rows.len() > size;
        rows.truncate(size);
        let next_before = rows.last().filter(|_| more).map(|v| v.rev);
        HistoryPage {
            versions: rows,
            next_before,
        }
    }
}
