//! Item metadata shared by every crate: what the server says an item is ([`ItemMeta`]), what a
//! local scan found ([`LocalItem`]), and what both sides agreed at the last sync ([`BaseEntry`]).
//!
//! These are plain data with serde support; no behaviour that needs I/O lives here.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{ContentHash, Key, Revision, Stamp};

/// A file or a folder. A record (bytes under a key) travels as a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ItemKind {
    /// Bytes with a content hash.
    File,
    /// A folder: no content.
    Folder,
}

/// What an item holds, for comparing versions: a folder, or a file's content hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Content {
    /// A folder.
    Folder,
    /// A file with this content.
    File(ContentHash),
}

impl Content {
    /// The content of an item of `kind` with `hash` (a file without a hash is empty).
    pub fn of(kind: ItemKind, hash: Option<ContentHash>) -> Content {
        match (kind, hash) {
            (ItemKind::Folder, _) => Content::Folder,
            (ItemKind::File, Some(h)) => Content::File(h),
            (ItemKind::File, None) => Content::File(ContentHash::of(b"")),
        }
    }

    /// The content hash of a file, `None` for a folder.
    pub fn hash(&self) -> Option<ContentHash> {
        match self {
            Content::Folder => None,
            Content::File(h) => Some(*h),
        }
    }

    /// The kind this content belongs to.
    pub fn kind(&self) -> ItemKind {
        match self {
            Content::Folder => ItemKind::Folder,
            Content::File(_) => ItemKind::File,
        }
    }
}

/// The server's view of one item (a change-feed entry, a push result). A tombstone has
/// `deleted: true` and no hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemMeta {
    /// The item's key.
    pub key: Key,
    /// File or folder.
    pub kind: ItemKind,
    /// The revision of this version.
    pub rev: Revision,
    /// Content hash; `None` for folders and tombstones.
    pub hash: Option<ContentHash>,
    /// Size in bytes (0 for folders and tombstones).
    pub size: u64,
    /// When the edit was made.
    pub stamp: Stamp,
    /// True for a tombstone.
    pub deleted: bool,
}

impl ItemMeta {
    /// The item's content, or `None` for a tombstone.
    pub fn content(&self) -> Option<Content> {
        if self.deleted {
            return None;
        }
        Some(Content::of(self.kind, self.hash))
    }

    /// True when this is a live (not deleted) item.
    pub fn is_live(&self) -> bool {
        !self.deleted
    }

    /// The version-history form of this entry.
    pub fn version(&self) -> VersionMeta {
        VersionMeta {
            rev: self.rev,
            hash: self.hash,
            size: self.size,
            stamp: self.stamp,
            deleted: self.deleted,
        }
    }
}

/// One version in an item's history on the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionMeta {
    /// The revision that made this version.
    pub rev: Revision,
    /// Content hash; `None` for folders and tombstones.
    pub hash: Option<ContentHash>,
    /// Size in bytes.
    pub size: u64,
    /// When the edit was made.
    pub stamp: Stamp,
    /// True for a tombstone.
    pub deleted: bool,
}

/// How a replica recognises an unchanged item without reading it: for files on disk, size,
/// modification time (nanoseconds) and inode; other replicas fill it with whatever changes
/// whenever the content may have changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Fingerprint {
    /// Size in bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: i128,
    /// Inode number (or any id that changes when the item is replaced).
    pub inode: u64,
}

/// Added to `mtime_ns` to mark a fingerprint racily clean; far above any real modification time
/// (2^120 ns is about 4·10^19 years).
const RACY_MARK: i128 = 1 << 120;

impl Fingerprint {
    /// This fingerprint marked *racily clean*: it was taken while the file could still be
    /// rewritten within the same timestamp tick without its size, modification time or inode
    /// changing (git's "racy clean" entries). A marked fingerprint never equals one read from a
    /// file, so when a base records it, the next scan reads the file again instead of trusting
    /// the fast path; a later scan, out of the racy window, records the unmarked one.
    ///
    /// ```
    /// # use sync_core::Fingerprint;
    /// let fp = Fingerprint { size: 3, mtime_ns: 1_700_000_000_000_000_000, inode: 7 };
    /// assert_ne!(fp.racy(), fp);
    /// assert!(fp.racy().is_racy() && !fp.is_racy());
    /// assert_eq!(fp.racy().settled(), fp);
    /// ```
    #[must_use]
    pub fn racy(self) -> Fingerprint {
        if self.is_racy() {
            return self;
        }
        match self.mtime_ns.checked_add(RACY_MARK) {
            Some(mtime_ns) => Fingerprint { mtime_ns, ..self },
            None => self,
        }
    }

    /// True when this fingerprint is marked racily clean (see [`Fingerprint::racy`]).
    pub fn is_racy(&self) -> bool {
        self.mtime_ns >= RACY_MARK / 2
    }

    /// The fingerprint as read from the file, without the racy mark: what a replica compares with
    /// the file's current state before it replaces or removes it.
    #[must_use]
    pub fn settled(self) -> Fingerprint {
        if self.is_racy() {
            Fingerprint {
                mtime_ns: self.mtime_ns - RACY_MARK,
                ..self
            }
        } else {
            self
        }
    }
}

/// One item found by a replica's scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalItem {
    /// The item's key on this replica.
    pub key: Key,
    /// What it holds now.
    pub content: Content,
    /// Size in bytes (0 for folders).
    pub size: u64,
    /// How to recognise it next time without reading it.
    pub fingerprint: Fingerprint,
    /// When it was last modified, milliseconds since the Unix epoch.
    pub modified_millis: u64,
}

impl LocalItem {
    /// File or folder.
    pub fn kind(&self) -> ItemKind {
        self.content.kind()
    }
}

/// What both sides held at the last sync of one key, kept by the client's state store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaseEntry {
    /// What both sides held.
    pub kind: ItemKind,
    /// Its content hash (`None` for a folder).
    pub hash: Option<ContentHash>,
    /// Its size.
    pub size: u64,
    /// The server revision of that version. [`Revision::ZERO`] (never issued by a server) marks
    /// a base the current server has not confirmed: after a restore from backup (a new epoch)
    /// the server may no longer hold this content, so it must not be overwritten unkept.
    pub rev: Revision,
    /// The stamp of that version.
    pub stamp: Stamp,
    /// The local fingerprint of the item when it was synced (`None` when not on this replica).
    pub fingerprint: Option<Fingerprint>,
    /// Where the item lives on this replica, when that differs from its key
    /// (`AppNameIdentity` binds a local path to a remote key elsewhere).
    pub local_key: Option<Key>,
    /// One side deleted the item and the delete was not propagated (docs/SPEC.md §3): the item is not
    /// downloaded or uploaded again until the other side changes it.
    pub detached: bool,
}

impl BaseEntry {
    /// True when the current server is known to hold this base (see [`BaseEntry::rev`]).
    pub fn is_confirmed(&self) -> bool {
        self.rev != Revision::ZERO
    }

    /// The same base, marked as not confirmed by the current server.
    pub fn unconfirmed(&self) -> BaseEntry {
        BaseEntry {
            rev: Revision::ZERO,
            ..self.clone()
        }
    }

    /// The content both sides agreed on.
    pub fn content(&self) -> Content {
        Content::of(self.kind, self.hash)
    }
}

/// A tenant: one isolated namespace of items on a server (a user, a team, an app instance).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TenantId(pub String);

impl TenantId {
    /// A tenant id from any string.
    pub fn new(id: impl Into<String>) -> TenantId {
        TenantId(id.into())
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tenant({})", self.0)
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
