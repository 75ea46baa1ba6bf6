//! The SQL schemas of both stores as lists of forward migrations, and the conversions between
//! sync-core values and SQLite columns.
//!
//! Each schema is a list of SQL steps: step `i` takes the database from `user_version = i` to
//! `i + 1`. Steps are only ever appended, never edited once released, so that every older
//! database can be brought forward. This module holds no connection and runs no statement on
//! its own; [`crate::conn`] applies the steps.
//!
//! Integers: SQLite stores signed 64-bit integers, so `u64` values (sizes, node ids, millis)
//! are stored bit for bit as `i64` and read back the same way. Revisions stay below `2^63`
//! (the server refuses to go past that), so ordering by the `rev` column is correct.

use rusqlite::Row;
use sync_core::{ContentHash, Fingerprint, ItemKind, ItemMeta, Key, NodeId, Revision, Stamp};

use crate::error::StoreError;

/// A database kind and its migrations.
#[derive(Debug)]
pub(crate) struct Schema {
    /// What the database is, for messages ("sync client state").
    pub(crate) kind: &'static str,
    /// The `PRAGMA application_id` that marks this kind of database.
    pub(crate) application_id: i64,
    /// Forward migrations: step `i` goes from version `i` to `i + 1`.
    pub(crate) steps: &'static [&'static str],
}

impl Schema {
    /// The newest schema version this code knows.
    pub(crate) fn version(&self) -> i64 {
        self.steps.len() as i64
    }
}

/// The client state database (`SqliteStateStore`).
pub(crate) static STATE: Schema = Schema {
    kind: "sync client state",
    application_id: 0x5359_4e43, // "SYNC"
    steps: &[STATE_V1, STATE_V2],
};

/// The server database (`SqliteServerStore`).
pub(crate) static SERVER: Schema = Schema {
    kind: "sync server",
    application_id: 0x5359_4e53, // "SYNS"
    steps: &[SERVER_V1, SERVER_V2, SERVER_V3],
};

const STATE_V1: &str = "
CREATE TABLE meta (
    name  TEXT PRIMARY KEY NOT NULL,
    value ANY
) STRICT, WITHOUT ROWID;

CREATE TABLE remote (
    key           TEXT PRIMARY KEY NOT NULL,
    kind          INTEGER NOT NULL,
    rev           INTEGER NOT NULL,
    hash          BLOB,
    size          INTEGER NOT NULL,
    stamp_millis  INTEGER NOT NULL,
    stamp_counter INTEGER NOT NULL,
    stamp_node    INTEGER NOT NULL,
    deleted       INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

CREATE TABLE base (
    key           TEXT PRIMARY KEY NOT NULL,
    kind          INTEGER NOT NULL,
    hash          BLOB,
    size          INTEGER NOT NULL,
    rev           INTEGER NOT NULL,
    stamp_millis  INTEGER NOT NULL,
    stamp_counter INTEGER NOT NULL,
    stamp_node    INTEGER NOT NULL,
    fp_size       INTEGER,
    fp_mtime_ns   BLOB,
    fp_inode      INTEGER,
    local_key     TEXT,
    detached      INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
";

/// Version 2: the conflicts the engine resolved most recently, each a `ConflictRecord` as JSON,
/// oldest first by `id`.
const STATE_V2: &str = "
CREATE TABLE conflicts (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    record TEXT NOT NULL
) STRICT;
";

const SERVER_V1: &str = "
CREATE TABLE meta (
    name  TEXT PRIMARY KEY NOT NULL,
    value ANY
) STRICT, WITHOUT ROWID;

CREATE TABLE tenants (
    id      INTEGER PRIMARY KEY,
    name    TEXT NOT NULL UNIQUE,
    counter INTEGER NOT NULL DEFAULT 0
) STRICT;

-- Content by hash. `data` is NULL when the bytes live in a file beside the database.
CREATE TABLE blobs (
    hash BLOB PRIMARY KEY NOT NULL,
    size INTEGER NOT NULL,
    data BLOB
) STRICT;

-- The current state of every key (tombstones included): the change feed.
CREATE TABLE items (
    tenant        INTEGER NOT NULL REFERENCES tenants(id),
    key           TEXT NOT NULL,
    kind          INTEGER NOT NULL,
    rev           INTEGER NOT NULL,
    hash          BLOB REFERENCES blobs(hash),
    size          INTEGER NOT NULL,
    stamp_millis  INTEGER NOT NULL,
    stamp_counter INTEGER NOT NULL,
    stamp_node    INTEGER NOT NULL,
    deleted       INTEGER NOT NULL,
    PRIMARY KEY (tenant, key)
) STRICT, WITHOUT ROWID;

CREATE UNIQUE INDEX items_feed ON items (tenant, rev);

-- Every accepted version (current, overwritten, deleted and archived), by revision.
CREATE TABLE versions (
    tenant        INTEGER NOT NULL REFERENCES tenants(id),
    key           TEXT NOT NULL,
    rev           INTEGER NOT NULL,
    kind          INTEGER NOT NULL,
    hash          BLOB REFERENCES blobs(hash),
    size          INTEGER NOT NULL,
    stamp_millis  INTEGER NOT NULL,
    stamp_counter INTEGER NOT NULL,
    stamp_node    INTEGER NOT NULL,
    deleted       INTEGER NOT NULL,
    archived      INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant, key, rev)
) STRICT, WITHOUT ROWID;
";

/// Device tokens: only their hash is kept (`sync_core::server::TokenStore`).
const SERVER_V2: &str = "
CREATE TABLE tokens (
    id                TEXT PRIMARY KEY NOT NULL,
    hash              BLOB NOT NULL UNIQUE,
    tenant            TEXT NOT NULL,
    device            TEXT NOT NULL,
    created_millis    INTEGER NOT NULL,
    last_used_millis  INTEGER,
    revoked_millis    INTEGER
) STRICT;
";

/// Version 3: versions by content hash, so that retention finds in one index probe whether a
/// blob is still referred to before it drops it.
const SERVER_V3: &str = "
CREATE INDEX versions_by_hash ON versions (hash);
";

/// A `u64` as stored (bit for bit).
pub(crate) fn u64_to_sql(v: u64) -> i64 {
    v as i64
}

/// A stored `u64`.
pub(crate) fn u64_from_sql(v: i64) -> u64 {
    v as u64
}

/// An item kind as stored.
pub(crate) fn kind_to_sql(kind: ItemKind) -> i64 {
    match kind {
        ItemKind::File => 0,
        ItemKind::Folder => 1,
    }
}

/// A stored item kind.
pub(crate) fn kind_from_sql(v: i64) -> Result<ItemKind, StoreError> {
    match v {
        0 => Ok(ItemKind::File),
        1 => Ok(ItemKind::Folder),
        other => Err(StoreError::bad("item kind", other)),
    }
}

/// A content hash as stored (32 raw bytes).
pub(crate) fn hash_to_sql(hash: Option<&ContentHash>) -> Option<&[u8]> {
    hash.map(|h| h.as_bytes().as_slice())
}

/// A stored content hash.
pub(crate) fn hash_from_sql(v: Option<Vec<u8>>) -> Result<Option<ContentHash>, StoreError> {
    v.as_deref().map(hash_from_blob).transpose()
}

/// A stored content hash (32 bytes), borrowed from its row.
pub(crate) fn hash_from_blob(bytes: &[u8]) -> Result<ContentHash, StoreError> {
    let arr: [u8; 32] = bytes
        .try_into()
        .map_err(|_| StoreError::bad("content hash", format!("{} bytes", bytes.len())))?;
    Ok(ContentHash::from_bytes(arr))
}

/// A stored key (validated again).
pub(crate) fn key_from_sql(v: &str) -> Result<Key, StoreError> {
    Key::new(v).map_err(|e| StoreError::bad("key", e))
}

/// A stored modification time in nanoseconds (16 bytes, big-endian `i128`).
pub(crate) fn mtime_from_sql(v: Vec<u8>) -> Result<i128, StoreError> {
    mtime_from_blob(&v)
}

/// A stored modification time (16 bytes, big-endian `i128`), borrowed from its row.
pub(crate) fn mtime_from_blob(bytes: &[u8]) -> Result<i128, StoreError> {
    let arr: [u8; 16] = bytes
        .try_into()
        .map_err(|_| StoreError::bad("modification time", format!("{} bytes", bytes.len())))?;
    Ok(i128::from_be_bytes(arr))
}

/// A stored fingerprint; all three columns are NULL when there is none.
pub(crate) fn fingerprint_from_sql(
    size: Option<i64>,
    mtime: Option<Vec<u8>>,
    inode: Option<i64>,
) -> Result<Option<Fingerprint>, StoreError> {
    match (size, mtime, inode) {
        (None, None, None) => Ok(None),
        (Some(size), Some(mtime), Some(inode)) => Ok(Some(Fingerprint {
            size: u64_from_sql(size),
            mtime_ns: mtime_from_sql(mtime)?,
            inode: u64_from_sql(inode),
        })),
        _ => Err(StoreError::bad("fingerprint", "partly NULL")),
    }
}

/// A stamp from three stored columns.
pub(crate) fn stamp_from_sql(millis: i64, counter: i64, node: i64) -> Result<Stamp, StoreError> {
    Ok(Stamp {
        millis: u64_from_sql(millis),
        counter: u32::try_from(counter).map_err(|_| StoreError::bad("stamp counter", counter))?,
        node: NodeId(u64_from_sql(node)),
    })
}

/// The item columns in the order [`item_from_row`] reads them.
pub(crate) const ITEM_COLUMNS: &str =
    "key, kind, rev, hash, size, stamp_millis, stamp_counter, stamp_node, deleted";

/// Reads an [`ItemMeta`] from a row whose first columns are [`ITEM_COLUMNS`].
pub(crate) fn item_from_row(row: &Row<'_>) -> Result<ItemMeta, StoreError> {
    Ok(ItemMeta {
        key: key_from_sql(&row.get::<_, String>(0)?)?,
        kind: kind_from_sql(row.get(1)?)?,
        rev: Revision(u64_from_sql(row.get(2)?)),
        hash: hash_from_sql(row.get(3)?)?,
        size: u64_from_sql(row.get(4)?),
        stamp: stamp_from_sql(row.get(5)?, row.get(6)?, row.get(7)?)?,
        deleted: row.get(8)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_round_trip_bit_for_bit() {
        for v in [0, 1, u64::MAX, i64::MAX as u64, i64::MAX as u64 + 1] {
            assert_eq!(u64_from_sql(u64_to_sql(v)), v);
        }
    }

    #[test]
    fn kinds_and_hashes_round_trip() {
        for k in [ItemKind::File, ItemKind::Folder] {
            assert_eq!(kind_from_sql(kind_to_sql(k)).unwrap(), k);
        }
        assert!(kind_from_sql(7).is_err());
        let h = ContentHash::of(b"x");
        let stored = hash_to_sql(Some(&h)).map(<[u8]>::to_vec);
        assert_eq!(hash_from_sql(stored).unwrap(), Some(h));
        assert!(hash_from_sql(Some(vec![1, 2, 3])).is_err());
    }

    #[test]
    fn mtime_round_trips_extremes() {
        for v in [0i128, -1, i128::MIN, i128::MAX, 1_700_000_000_123_456_789] {
            assert_eq!(mtime_from_sql(v.to_be_bytes().to_vec()).unwrap(), v);
        }
    }
}
