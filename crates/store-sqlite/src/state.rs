//! [`SqliteStateStore`]: the client's [`StateStore`] (node id, cursor, remote tree, base) in one
//! SQLite file.
//!
//! Every [`StateBatch`] is applied in one `IMMEDIATE` transaction with cached prepared
//! statements, in the order of [`StateBatch::apply_to`], so a crash keeps all of a batch or none
//! of it. This module must not decide anything about syncing: it stores what the engine says.

use std::collections::BTreeSet;
use std::path::Path;

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use sync_core::{
    BaseEntry, ClientState, Content, Cursor, Fingerprint, Key, KeyEntries, KnownItem, NodeId,
    Revision, Stamp, StateBatch, StateStore, StateSummary, RECENT_CONFLICTS,
};

use crate::conn::{Db, StoreOptions};
use crate::error::StoreError;
use crate::schema::{
    fingerprint_from_sql, hash_from_blob, hash_from_sql, hash_to_sql, item_from_row, key_from_sql,
    kind_from_sql, kind_to_sql, mtime_from_blob, stamp_from_sql, u64_from_sql, u64_to_sql,
    ITEM_COLUMNS, STATE,
};

/// A client's sync state in SQLite (see the [crate docs](crate)).
///
/// Cheap to clone: clones share one connection.
#[derive(Debug, Clone)]
pub struct SqliteStateStore {
    db: Db,
}

impl SqliteStateStore {
    /// Opens the state database at `path`, creating it (and migrating an older schema) as
    /// needed. A file that is not SQLite, is corrupt, belongs to a server store or was written
    /// by a newer version fails with a [`StoreError`] that says what to do.
    pub async fn open(path: impl AsRef<Path>) -> Result<SqliteStateStore, StoreError> {
        let db = Db::open(path.as_ref().to_path_buf(), &STATE, StoreOptions::default()).await?;
        Ok(SqliteStateStore { db })
    }

    /// A private, empty state store in memory (for tests).
    pub async fn open_in_memory() -> Result<SqliteStateStore, StoreError> {
        let db = Db::open_in_memory(&STATE).await?;
        Ok(SqliteStateStore { db })
    }
}

#[async_trait]
impl StateStore for SqliteStateStore {
    async fn load(&self) -> sync_core::Result<ClientState> {
        Ok(self.db.call(load).await?)
    }

    async fn commit(&self, batch: StateBatch) -> sync_core::Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        Ok(self.db.call(move |conn| commit(conn, &batch)).await?)
    }

    async fn load_summary(&self) -> sync_core::Result<StateSummary> {
        Ok(self.db.call(load_summary).await?)
    }

    async fn load_keys(&self, keys: &BTreeSet<Key>) -> sync_core::Result<KeyEntries> {
        let keys = keys.clone();
        Ok(self.db.call(move |conn| load_keys(conn, &keys)).await?)
    }
}

/// The base columns in the order [`base_from_row`] reads them.
const BASE_COLUMNS: &str = "key, kind, hash, size, rev, stamp_millis, stamp_counter, stamp_node, \
                            fp_size, fp_mtime_ns, fp_inode, local_key, detached";

/// Reads a base entry and its key from a row whose columns are [`BASE_COLUMNS`].
fn base_from_row(row: &rusqlite::Row<'_>) -> Result<(Key, BaseEntry), StoreError> {
    let key = key_from_sql(&row.get::<_, String>(0)?)?;
    let entry = BaseEntry {
        kind: kind_from_sql(row.get(1)?)?,
        hash: hash_from_sql(row.get(2)?)?,
        size: u64_from_sql(row.get(3)?),
        rev: Revision(u64_from_sql(row.get(4)?)),
        stamp: stamp_from_sql(row.get(5)?, row.get(6)?, row.get(7)?)?,
        fingerprint: fingerprint_from_sql(row.get(8)?, row.get(9)?, row.get(10)?)?,
        local_key: row
            .get::<_, Option<String>>(11)?
            .map(|k| key_from_sql(&k))
            .transpose()?,
        detached: row.get(12)?,
    };
    Ok((key, entry))
}

/// Node id, cursor, settled mark and recent conflicts: the small part of the state.
fn load_meta(tx: &rusqlite::Transaction<'_>, state: &mut ClientState) -> Result<(), StoreError> {
    let node: Option<i64> = tx
        .query_row("SELECT value FROM meta WHERE name = 'node'", [], |r| {
            r.get(0)
        })
        .optional()?;
    state.node = node.map(|n| NodeId(u64_from_sql(n)));
    let cursor: Option<String> = tx
        .query_row("SELECT value FROM meta WHERE name = 'cursor'", [], |r| {
            r.get(0)
        })
        .optional()?;
    state.cursor = cursor
        .map(|c| {
            c.parse::<Cursor>()
                .map_err(|e| StoreError::bad("cursor", e))
        })
        .transpose()?;
    state.settled = tx
        .query_row("SELECT value FROM meta WHERE name = 'settled'", [], |r| {
            r.get(0)
        })
        .optional()?;
    let mut stmt = tx.prepare("SELECT record FROM conflicts ORDER BY id")?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let json: String = row.get(0)?;
        let record =
            serde_json::from_str(&json).map_err(|e| StoreError::bad("conflict record", e))?;
        state.conflicts.push(record);
    }
    Ok(())
}

/// The summary: the base's fingerprints read row by row, the remote tree only aggregated.
fn load_summary(conn: &mut Connection) -> Result<StateSummary, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
    let mut meta = ClientState::default();
    load_meta(&tx, &mut meta)?;
    let mut summary = StateSummary {
        node: meta.node,
        cursor: meta.cursor,
        conflicts: meta.conflicts,
        settled: meta.settled,
        ..StateSummary::default()
    };
    // Rows come in key order; collected first, the map is built with full nodes. Only the
    // columns of the fingerprint index are read, borrowed from the row where they can be.
    let mut known = Vec::new();
    {
        let mut stmt = tx.prepare(
            "SELECT key, kind, hash, fp_size, fp_mtime_ns, fp_inode, local_key FROM base",
        )?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            summary.base_len += 1;
            let local_key = row.get_ref(6)?.as_str_or_null().map_err(bad_column)?;
            summary.any_local_key |= local_key.is_some();
            let Some(size) = row.get_ref(3)?.as_i64_or_null().map_err(bad_column)? else {
                continue;
            };
            let mtime = row.get_ref(4)?.as_blob_or_null().map_err(bad_column)?;
            let inode = row.get_ref(5)?.as_i64_or_null().map_err(bad_column)?;
            let (Some(mtime), Some(inode)) = (mtime, inode) else {
                return Err(StoreError::bad("fingerprint", "partly NULL"));
            };
            let fingerprint = Fingerprint {
                size: u64_from_sql(size),
                mtime_ns: mtime_from_blob(mtime)?,
                inode: u64_from_sql(inode),
            };
            let kind = kind_from_sql(row.get(1)?)?;
            let hash = row.get_ref(2)?.as_blob_or_null().map_err(bad_column)?;
            let content = Content::of(kind, hash.map(hash_from_blob).transpose()?);
            let key = match local_key {
                Some(local) => key_from_sql(local)?,
                None => key_from_sql(row.get_ref(0)?.as_str().map_err(bad_column)?)?,
            };
            known.push((
                key,
                KnownItem {
                    fingerprint,
                    content,
                },
            ));
        }
    }
    summary.known = known.into_iter().collect();
    let mut max_stamp: Option<Stamp> = None;
    for table in ["base", "remote"] {
        let (rev, millis): (Option<i64>, Option<i64>) = tx.query_row(
            &format!("SELECT max(rev), max(stamp_millis) FROM {table}"),
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        if let Some(rev) = rev {
            summary.max_rev = summary.max_rev.max(Revision(u64_from_sql(rev)));
        }
        if let Some(millis) = millis {
            // Several stamps may share the newest millisecond: the newest is decided here.
            let mut stmt = tx.prepare(&format!(
                "SELECT stamp_millis, stamp_counter, stamp_node FROM {table} \
                 WHERE stamp_millis = ?1"
            ))?;
            let mut rows = stmt.query([millis])?;
            while let Some(row) = rows.next()? {
                let stamp = stamp_from_sql(row.get(0)?, row.get(1)?, row.get(2)?)?;
                max_stamp = max_stamp.max(Some(stamp));
            }
        }
    }
    summary.max_stamp = max_stamp;
    drop(tx);
    release_cache(conn)?;
    Ok(summary)
}

/// A column of an unexpected type.
fn bad_column(e: rusqlite::types::FromSqlError) -> StoreError {
    StoreError::bad("base column", e)
}

/// The base and remote entries of `keys`, one indexed lookup each.
fn load_keys(conn: &mut Connection, keys: &BTreeSet<Key>) -> Result<KeyEntries, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
    let mut out = KeyEntries::default();
    {
        let mut base =
            tx.prepare_cached(&format!("SELECT {BASE_COLUMNS} FROM base WHERE key = ?1"))?;
        let mut remote =
            tx.prepare_cached(&format!("SELECT {ITEM_COLUMNS} FROM remote WHERE key = ?1"))?;
        for key in keys {
            if let Some(row) = base.query([key.as_str()])?.next()? {
                let (k, b) = base_from_row(row)?;
                out.base.insert(k, b);
            }
            if let Some(row) = remote.query([key.as_str()])?.next()? {
                let item = item_from_row(row)?;
                out.remote.insert(item.key.clone(), item);
            }
        }
    }
    drop(tx);
    Ok(out)
}

/// Reads everything.
fn load(conn: &mut Connection) -> Result<ClientState, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
    let mut state = ClientState::default();
    load_meta(&tx, &mut state)?;
    {
        let mut stmt = tx.prepare(&format!("SELECT {ITEM_COLUMNS} FROM remote"))?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let item = item_from_row(row)?;
            state.remote.insert(item.key.clone(), item);
        }
    }
    {
        let mut stmt = tx.prepare(&format!("SELECT {BASE_COLUMNS} FROM base"))?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let (key, entry) = base_from_row(row)?;
            state.base.insert(key, entry);
        }
    }
    tx.commit()?;
    release_cache(conn)?;
    Ok(state)
}

/// Frees the page cache a read of every row filled: those pages are not read again soon, and
/// on a large tree they would double the memory of a sync.
fn release_cache(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch("PRAGMA shrink_memory")?;
    Ok(())
}

/// Applies one batch in one transaction, in the order of [`StateBatch::apply_to`].
fn commit(conn: &mut Connection, batch: &StateBatch) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    if let Some(node) = batch.node {
        tx.prepare_cached("INSERT OR REPLACE INTO meta (name, value) VALUES ('node', ?1)")?
            .execute([u64_to_sql(node.0)])?;
    }
    if batch.reset_remote {
        tx.execute("DELETE FROM remote", [])?;
        tx.execute("DELETE FROM meta WHERE name = 'cursor'", [])?;
    }
    if let Some(cursor) = batch.cursor {
        tx.prepare_cached("INSERT OR REPLACE INTO meta (name, value) VALUES ('cursor', ?1)")?
            .execute([cursor.to_string()])?;
    }
    if !batch.remote.is_empty() {
        let mut put = tx.prepare_cached(&format!(
            "INSERT OR REPLACE INTO remote ({ITEM_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
        ))?;
        for item in &batch.remote {
            put.execute(params![
                item.key.as_str(),
                kind_to_sql(item.kind),
                u64_to_sql(item.rev.0),
                hash_to_sql(item.hash.as_ref()),
                u64_to_sql(item.size),
                u64_to_sql(item.stamp.millis),
                i64::from(item.stamp.counter),
                u64_to_sql(item.stamp.node.0),
                item.deleted,
            ])?;
        }
    }
    if !batch.base.is_empty() {
        let mut put = tx.prepare_cached(
            "INSERT OR REPLACE INTO base (key, kind, hash, size, rev, stamp_millis, \
             stamp_counter, stamp_node, fp_size, fp_mtime_ns, fp_inode, local_key, detached) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        )?;
        let mut remove = tx.prepare_cached("DELETE FROM base WHERE key = ?1")?;
        for (key, entry) in &batch.base {
            match entry {
                Some(e) => {
                    put.execute(params![
                        key.as_str(),
                        kind_to_sql(e.kind),
                        hash_to_sql(e.hash.as_ref()),
                        u64_to_sql(e.size),
                        u64_to_sql(e.rev.0),
                        u64_to_sql(e.stamp.millis),
                        i64::from(e.stamp.counter),
                        u64_to_sql(e.stamp.node.0),
                        e.fingerprint.map(|f| u64_to_sql(f.size)),
                        e.fingerprint.map(|f| f.mtime_ns.to_be_bytes().to_vec()),
                        e.fingerprint.map(|f| u64_to_sql(f.inode)),
                        e.local_key.as_ref().map(Key::as_str),
                        e.detached,
                    ])?;
                }
                None => {
                    remove.execute([key.as_str()])?;
                }
            }
        }
    }
    if !batch.conflicts.is_empty() {
        let mut put = tx.prepare_cached("INSERT INTO conflicts (record) VALUES (?1)")?;
        for record in &batch.conflicts {
            let json =
                serde_json::to_string(record).map_err(|e| StoreError::bad("conflict record", e))?;
            put.execute([json])?;
        }
        tx.prepare_cached(
            "DELETE FROM conflicts WHERE id <= (SELECT max(id) FROM conflicts) - ?1",
        )?
        .execute([RECENT_CONFLICTS as i64])?;
    }
    if let Some(tag) = &batch.settled {
        tx.prepare_cached("INSERT OR REPLACE INTO meta (name, value) VALUES ('settled', ?1)")?
            .execute([tag])?;
    } else if batch.changes_entries() {
        tx.prepare_cached("DELETE FROM meta WHERE name = 'settled'")?
            .execute([])?;
    }
    tx.commit()?;
    Ok(())
}
