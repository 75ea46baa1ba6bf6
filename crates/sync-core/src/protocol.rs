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
