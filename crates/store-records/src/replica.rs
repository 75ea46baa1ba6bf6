//! The engine's face of [`RecordStore`]: its [`Replica`] implementation (docs/SPEC.md §4).
//!
//! Records are file-kind items and folder rows are folder-kind items, with the folder
//! semantics of `sync_core::memory::MemoryReplica`'s trait side. The scan is one query of the
//! key, id, kind, size, hash and change-counter columns: it never reads content, and it hashes
//! nothing, because each row's hash was stored when it was written (`hashed` counts the rows
//! whose fingerprint was not recognised). `scan_since` is two index range reads (rows written
//! after the token, keys removed after it) and one lookup per key asked for. Writes and removals check [`Expected`] against the
//! row inside the same SQLite transaction that changes it, and notify subscribers after the
//! commit. This module must not be used by the app directly.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use bytes::Bytes;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use sync_core::{
    Backup, ChangedItems, Content, ContentHash, Error, ErrorClass, Expected, ItemKind, Key,
    KnownItem, LocalItem, LocalWrite, Replica, Result, Scan, Skipped, Stamp,
};

use crate::db::{self, Row};
use crate::{RecordStore, RecordsError};

/// A SQLite failure as the engine sees it.
fn storage(e: rusqlite::Error) -> Error {
    RecordsError::from(e).into()
}

/// The item a row stands for, with `content` as known.
fn item(key: &Key, row: &Row, content: Content) -> LocalItem {
    LocalItem {
        key: key.clone(),
        content,
        size: row.size,
        fingerprint: row.fingerprint(),
        modified_millis: row.modified_millis,
    }
}

/// The content a row holds, from its stored hash.
fn stored_content(row: &Row) -> Result<Content> {
    if row.folder {
        return Ok(Content::Folder);
    }
    match row.hash {
        Some(h) => Ok(Content::File(h)),
        None => Err(RecordsError::Corrupt(format!("record {} has no hash", row.key)).into()),
    }
}

/// `Error::Changed` unless the row at `key` is as `expected`.
fn check_expected(conn: &Connection, key: &Key, expected: Expected) -> Result<Option<Row>> {
    let row = db::row(conn, key).map_err(storage)?;
    let ok = match (expected, &row) {
        (Expected::Absent, None) => true,
        (Expected::Present(fp), Some(r)) => r.fingerprint() == fp.settled(),
        _ => false,
    };
    if ok {
        Ok(row)
    } else {
        Err(Error::Changed { key: key.clone() })
    }
}

/// One write inside the caller's transaction, if the row is still as expected and nothing is
/// in the way; changes nothing otherwise.
fn write_checked(tx: &Connection, w: &LocalWrite, now: u64) -> Result<LocalItem> {
    let k = &w.key;
    check_expected(tx, k, w.expected)?;
    db::check_parents(tx, k)?;
    if db::has_children(tx, k).map_err(storage)? {
        return Err(Error::item(
            k,
            "a folder with items in it is in the way; move its items first",
        ));
    }
    db::make_parents(tx, k, now).map_err(storage)?;
    let row = db::upsert_record(tx, k, &w.content, now)?;
    Ok(item(k, &row, stored_content(&row)?))
}

/// Adds the item `row` stands for to `scan` as a scan lists it: a row whose key is not valid
/// or whose record is over `max_item_bytes` is skipped with the reason, content comes from
/// `known` when the fingerprint matches, else from the stored hash.
fn list(
    scan: &mut Scan,
    row: Row,
    known: &BTreeMap<Key, KnownItem>,
    max_item_bytes: u64,
) -> Result<()> {
    let key = match Key::new(&row.key) {
        Ok(k) => k,
        Err(e) => {
            scan.skipped.push(Skipped {
                key: None,
                path: row.key.clone(),
                class: ErrorClass::Item,
                message: format!(
                    "{:?}: not a valid key ({e}); delete the record and store it under a valid key",
                    row.key
                ),
            });
            return Ok(());
        }
    };
    if !row.folder && row.size > max_item_bytes {
        scan.skipped.push(Skipped {
            key: Some(key.clone()),
            path: key.to_string(),
            class: ErrorClass::Warning,
            message: format!(
                "{key}: {} bytes is over the limit of {max_item_bytes} bytes; it is not \
                         synced (make it smaller, or raise max_item_bytes to sync it)",
                row.size
            ),
        });
        return Ok(());
    }
    let kind = if row.folder {
        ItemKind::Folder
    } else {
        ItemKind::File
    };
    let reuse = known
        .get(&key)
        .filter(|k| k.fingerprint == row.fingerprint() && k.content.kind() == kind);
    let content = match reuse {
        Some(k) => k.content,
        None => {
            if !row.folder {
                scan.hashed += 1;
            }
            stored_content(&row)?
        }
    };
    scan.items.insert(key.clone(), item(&key, &row, content));
    Ok(())
}

#[async_trait]
impl Replica for RecordStore {
    async fn scan(&self, known: &BTreeMap<Key, KnownItem>, max_item_bytes: u64) -> Result<Scan> {
        let rows = self
            .db
            .call(|conn| {
                let mut stmt = conn
                    .prepare(&format!(
                        "SELECT {} FROM records ORDER BY key",
                        db::ROW_COLUMNS
                    ))
                    .map_err(storage)?;
                let rows = stmt
                    .query_map([], db::row_from)
                    .map_err(storage)?
                    .collect::<rusqlite::Result<Vec<Row>>>()
                    .map_err(storage)?;
                Ok::<_, Error>(rows)
            })
            .await?;
        let mut scan = Scan::default();
        for row in rows {
            list(&mut scan, row, known, max_item_bytes)?;
        }
        Ok(scan)
    }

    async fn change_token(&self) -> Result<Option<u64>> {
        let seq = self
            .db
            .call(|conn| db::change_counter(conn).map_err(storage))
            .await?;
        Ok(Some(u64::try_from(seq).unwrap_or(0)))
    }

    async fn scan_since(
        &self,
        since: u64,
        also: &BTreeSet<Key>,
        max_item_bytes: u64,
    ) -> Result<Option<ChangedItems>> {
        let Ok(since) = i64::try_from(since) else {
            return Ok(None);
        };
        let mut changed = ChangedItems {
            keys: also.clone(),
            ..ChangedItems::default()
        };
        let also: Vec<Key> = also.iter().cloned().collect();
        let (rows, removed) = self
            .db
            .call(move |conn| {
                let (mut rows, removed) = db::changed_since(conn, since).map_err(storage)?;
                for key in &also {
                    if let Some(row) = db::row(conn, key).map_err(storage)? {
                        rows.push(row);
                    }
                }
                Ok::<_, Error>((rows, removed))
            })
            .await?;
        changed
            .keys
            .extend(removed.iter().filter_map(|k| Key::new(k).ok()));
        for row in rows {
            if let Ok(key) = Key::new(&row.key) {
                changed.keys.insert(key);
            }
            list(&mut changed.scan, row, &BTreeMap::new(), max_item_bytes)?;
        }
        Ok(Some(changed))
    }

    async fn read(&self, key: &Key) -> Result<Bytes> {
        match self.get(key).await? {
            Some(b) => Ok(b),
            None => Err(Error::NotFound { key: key.clone() }),
        }
    }

    async fn write(&self, key: &Key, content: Bytes, expected: Expected) -> Result<LocalItem> {
        let w = LocalWrite {
            key: key.clone(),
            content,
            expected,
        };
        let written = self
            .db
            .call(move |conn| {
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(storage)?;
                let written = write_checked(&tx, &w, db::now_millis())?;
                tx.commit().map_err(storage)?;
                Ok::<_, Error>(written)
            })
            .await?;
        self.notify(vec![key.clone()]);
        Ok(written)
    }

    async fn read_many(&self, keys: &[Key]) -> Vec<Result<Bytes>> {
        let owned = keys.to_vec();
        let read = self
            .db
            .call(move |conn| {
                let mut out = Vec::with_capacity(owned.len());
                for key in owned {
                    out.push(match db::content(conn, &key).map_err(storage)? {
                        Some(c) => Ok(Bytes::from(c)),
                        None => Err(Error::NotFound { key }),
                    });
                }
                Ok::<_, Error>(out)
            })
            .await;
        match read {
            Ok(out) => out,
            Err(e) => keys.iter().map(|_| Err(e.clone())).collect(),
        }
    }

    /// All the writes in one transaction: each checked on its own (a write whose check fails
    /// gets its error and the others go on); a failure of SQLite itself fails them all.
    async fn write_many(&self, writes: Vec<LocalWrite>) -> Vec<Result<LocalItem>> {
        let n = writes.len();
        let done = self
            .db
            .call(move |conn| {
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(storage)?;
                let now = db::now_millis();
                let mut out = Vec::with_capacity(writes.len());
                let mut changed = Vec::new();
                for w in writes {
                    match write_checked(&tx, &w, now) {
                        Ok(item) => {
                            changed.push(w.key);
                            out.push(Ok(item));
                        }
                        Err(e) if e.class() == ErrorClass::Storage => return Err(e),
                        Err(e) => out.push(Err(e)),
                    }
                }
                tx.commit().map_err(storage)?;
                Ok::<_, Error>((out, changed))
            })
            .await;
        match done {
            Ok((out, changed)) => {
                self.notify(changed);
                out
            }
            Err(e) => (0..n).map(|_| Err(e.clone())).collect(),
        }
    }

    async fn create_folder(&self, key: &Key) -> Result<LocalItem> {
        let k = key.clone();
        self.db
            .call(move |conn| {
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(storage)?;
                match db::row(&tx, &k).map_err(storage)? {
                    Some(r) if r.folder => return Ok(item(&k, &r, Content::Folder)),
                    Some(_) => {
                        return Err(Error::item(
                            &k,
                            "a record is in the way where a folder is needed; rename or delete it",
                        ))
                    }
                    None => {}
                }
                db::check_parents(&tx, &k)?;
                let now = db::now_millis();
                db::make_parents(&tx, &k, now).map_err(storage)?;
                db::insert_folder(&tx, &k, now).map_err(storage)?;
                let row = db::row(&tx, &k)
                    .map_err(storage)?
                    .ok_or_else(|| Error::storage(format!("{k}: the folder vanished")))?;
                tx.commit().map_err(storage)?;
                Ok(item(&k, &row, Content::Folder))
            })
            .await
    }

    async fn backup(&self, key: &Key, stamp: Stamp) -> Result<Option<Backup>> {
        let k = key.clone();
        self.db
            .call(move |conn| {
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(storage)?;
                let Some(content) = db::content(&tx, &k).map_err(storage)? else {
                    return Ok(None);
                };
                let hash = ContentHash::of(&content);
                let base = format!("backups/{k}/{}-{}", stamp.millis, hash.short());
                let ext = k.extension();
                let mut location = format!("{base}{ext}");
                let mut n = 1u64;
                while tx
                    .query_row(
                        "SELECT 1 FROM backups WHERE location = ?1",
                        [location.as_str()],
                        |_| Ok(()),
                    )
                    .optional()
                    .map_err(storage)?
                    .is_some()
                {
                    location = format!("{base}-{n}{ext}");
                    n += 1;
                }
                tx.execute(
                    "INSERT INTO backups (key, location, hash, size, content, made_millis)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![
                        k.as_str(),
                        location,
                        hash.as_bytes().as_slice(),
                        content.len() as i64,
                        content,
                        db::now_millis() as i64
                    ],
                )
                .map_err(storage)?;
                tx.commit().map_err(storage)?;
                Ok(Some(Backup {
                    key: k,
                    location,
                    hash,
                    size: content.len() as u64,
                }))
            })
            .await
    }

    async fn remove(&self, key: &Key, expected: Expected) -> Result<()> {
        let k = key.clone();
        let removed = self
            .db
            .call(move |conn| {
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(storage)?;
                let row = check_expected(&tx, &k, expected)?;
                let mut removed = false;
                if row.is_some() && !db::has_children(&tx, &k).map_err(storage)? {
                    removed = db::delete_row(&tx, &k, false).map_err(storage)?;
                }
                tx.commit().map_err(storage)?;
                Ok::<_, Error>(removed)
            })
            .await?;
        if removed {
            self.notify(vec![key.clone()]);
        }
        Ok(())
    }

    async fn backups(&self) -> Result<Vec<Backup>> {
        self.db
            .call(|conn| {
                let mut stmt = conn
                    .prepare("SELECT key, location, hash, size FROM backups ORDER BY id")
                    .map_err(storage)?;
                let rows = stmt
                    .query_map([], |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, Vec<u8>>(2)?,
                            r.get::<_, i64>(3)?,
                        ))
                    })
                    .map_err(storage)?
                    .collect::<rusqlite::Result<Vec<_>>>()
                    .map_err(storage)?;
                rows.into_iter()
                    .map(|(key, location, hash, size)| {
                        let key = Key::new(&key).map_err(|e| {
                            Error::from(RecordsError::Corrupt(format!("backup key {key:?}: {e}")))
                        })?;
                        let hash = <[u8; 32]>::try_from(hash).map_err(|_| {
                            Error::from(RecordsError::Corrupt(format!(
                                "backup {location} has a bad hash"
                            )))
                        })?;
                        Ok(Backup {
                            key,
                            location,
                            hash: ContentHash::from_bytes(hash),
                            size: u64::try_from(size).unwrap_or(0),
                        })
                    })
                    .collect()
            })
            .await
    }

    async fn read_backup(&self, backup: &Backup) -> Result<Bytes> {
        let location = backup.location.clone();
        let content = self
            .db
            .call(move |conn| {
                conn.query_row(
                    "SELECT content FROM backups WHERE location = ?1",
                    [location.as_str()],
                    |r| r.get::<_, Vec<u8>>(0),
                )
                .optional()
                .map_err(storage)
            })
            .await?;
        content.map(Bytes::from).ok_or_else(|| Error::NotFound {
            key: backup.key.clone(),
        })
    }
}
