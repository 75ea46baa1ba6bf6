//! [`SqliteServerStore`]: the server's [`ServerStore`] in one SQLite file (plus a folder of
//! large blobs beside it, see [`crate::blobs`]).
//!
//! Every write runs in one `IMMEDIATE` transaction that also moves the tenant's revision
//! counter (Lamport rule, SPEC §2), creates missing parent folders, stores the content blob and
//! records the version in the history. After a write commits, the tenant's in-process
//! [`tokio::sync::watch`] channel is told the newest feed revision, which wakes
//! [`ServerStore::wait`]. This module must not run SQLite on async threads: every statement
//! runs inside [`Db::call`].

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use sync_core::{
    ArchiveRequest, ChangePage, ContentHash, Cursor, DeleteRequest, Epoch, Error, Fetched,
    FolderRequest, ItemKind, ItemMeta, Key, Precondition, PushOutcome, PushRequest, Result,
    Revision, ServerConfig, ServerStore, Stamp, TenantId, VersionMeta,
};
use tokio::sync::watch;

use crate::blobs::{self, BlobData, INLINE_MAX};
use crate::conn::{run_blocking, Db, StoreOptions};
use crate::error::StoreError;
use crate::schema::{
    hash_from_sql, hash_to_sql, item_from_row, kind_from_sql, kind_to_sql, stamp_from_sql,
    u64_from_sql, u64_to_sql, ITEM_COLUMNS, SERVER,
};

/// Revisions stay below this so that they sort correctly as SQLite integers.
const MAX_REVISION: u64 = i64::MAX as u64;

/// A sync server's storage in SQLite (see the [crate docs](crate)).
///
/// Cheap to clone: clones share one connection and one set of change notifications. Open one
/// store per database file per process: [`ServerStore::wait`] is woken only by writes made
/// through the same store (or its clones).
#[derive(Debug, Clone)]
pub struct SqliteServerStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    db: Db,
    epoch: Epoch,
    config: ServerConfig,
    /// The folder of large blobs; `None` for an in-memory database (everything inline).
    blob_dir: Option<std::path::PathBuf>,
    /// Per tenant: the newest revision in its change feed, for `wait`.
    watchers: Mutex<HashMap<String, watch::Sender<u64>>>,
}

impl SqliteServerStore {
    /// Opens the server database at `path`, creating it with a new random epoch (and migrating
    /// an older schema) as needed. Large blobs live in `<path>.blobs/`. A file that is not
    /// SQLite, is corrupt, belongs to a client state store or was written by a newer version
    /// fails with a [`StoreError`] that says what to do.
    ///
    /// The database uses WAL mode: the file must be on a local disk. For a file on a network
    /// file system use [`open_with`](Self::open_with) and [`Journal::Rollback`](crate::Journal::Rollback).
    pub async fn open(
        path: impl AsRef<Path>,
        config: ServerConfig,
    ) -> Result<SqliteServerStore, StoreError> {
        Self::open_with(path, config, StoreOptions::default()).await
    }

    /// Like [`open`](Self::open), with the journal mode of `options`. With
    /// [`Journal::Rollback`](crate::Journal::Rollback) the database needs no shared memory between the processes that
    /// open it, which is what a database on a network share needs (see the
    /// [crate docs](crate#files-and-durability)).
    ///
    /// An existing database is switched to the requested mode when no other process has it
    /// open; otherwise it keeps its mode for now (a warning is logged) and is switched on a
    /// later open.
    pub async fn open_with(
        path: impl AsRef<Path>,
        config: ServerConfig,
        options: StoreOptions,
    ) -> Result<SqliteServerStore, StoreError> {
        let path = path.as_ref().to_path_buf();
        let db = Db::open(path.clone(), &SERVER, options).await?;
        Self::start(db, config, Some(blobs::blob_dir_for(&path))).await
    }

    /// Opens a database restored from a backup: like [`open`](Self::open), but first gives it
    /// a new random epoch, so every client's cursor expires and clients catch up by comparing
    /// hashes (SPEC §2) instead of trusting feed positions the restored copy may never have
    /// reached. Use it once, on the first start after restoring the file and its `.blobs`
    /// folder; later starts use [`open`](Self::open).
    pub async fn open_restored(
        path: impl AsRef<Path>,
        config: ServerConfig,
    ) -> Result<SqliteServerStore, StoreError> {
        let path = path.as_ref().to_path_buf();
        let db = Db::open(path.clone(), &SERVER, StoreOptions::default()).await?;
        db.call(|conn| -> Result<(), StoreError> {
            conn.execute("DELETE FROM meta WHERE name = 'epoch'", [])?;
            Ok(())
        })
        .await?;
        Self::start(db, config, Some(blobs::blob_dir_for(&path))).await
    }

    /// A private, empty server store in memory, all blobs inline (for tests).
    pub async fn open_in_memory(config: ServerConfig) -> Result<SqliteServerStore, StoreError> {
        let db = Db::open_in_memory(&SERVER).await?;
        Self::start(db, config, None).await
    }

    async fn start(
        db: Db,
        config: ServerConfig,
        blob_dir: Option<std::path::PathBuf>,
    ) -> Result<SqliteServerStore, StoreError> {
        let epoch = db.call(load_or_make_epoch).await?;
        Ok(SqliteServerStore {
            inner: Arc::new(Inner {
                db,
                epoch,
                config,
                blob_dir,
                watchers: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The folder where content over 64 KiB is kept (`None` for an in-memory store).
    pub fn blob_dir(&self) -> Option<&Path> {
        self.inner.blob_dir.as_deref()
    }

    /// The feed revision after `since`, checking the cursor's epoch.
    fn since_rev(&self, since: Option<&Cursor>) -> Result<u64> {
        match since {
            None => Ok(0),
            Some(c) if c.epoch() != self.inner.epoch => Err(Error::CursorExpired),
            Some(c) => Ok(c.rev().0.min(MAX_REVISION)),
        }
    }

    /// Runs a write in one transaction and wakes the tenant's waiters after it commits.
    async fn write<T, F>(&self, tenant: &TenantId, f: F) -> Result<T>
    where
        F: FnOnce(&Connection, &Inner, &mut Writer) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let inner = self.inner.clone();
        let name = tenant.as_str().to_owned();
        self.inner
            .db
            .call(move |conn| -> Result<T> {
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(StoreError::from)?;
                let mut w = Writer::load(&tx, &name)?;
                let value = f(&tx, &inner, &mut w)?;
                w.save(&tx)?;
                tx.commit().map_err(StoreError::from)?;
                inner.notify(&name, w.feed_head);
                Ok(value)
            })
            .await
    }
}

/// Reads the epoch, making and storing a random one in a new database.
fn load_or_make_epoch(conn: &mut Connection) -> Result<Epoch, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute(
        "INSERT OR IGNORE INTO meta (name, value) VALUES ('epoch', ?1)",
        [u64_to_sql(Epoch::random().0)],
    )?;
    let epoch: i64 = tx.query_row("SELECT value FROM meta WHERE name = 'epoch'", [], |r| {
        r.get(0)
    })?;
    tx.commit()?;
    Ok(Epoch(u64_from_sql(epoch)))
}

/// A tenant's id and counter during one write transaction.
struct Writer {
    tenant: i64,
    counter: Revision,
    /// The counter as loaded, to know whether to save it.
    loaded: Revision,
    /// The newest revision this write put into the change feed.
    feed_head: Option<Revision>,
}

impl Writer {
    /// Loads (creating if needed) the tenant `name`.
    fn load(conn: &Connection, name: &str) -> Result<Writer, StoreError> {
        conn.prepare_cached(
            "INSERT INTO tenants (name) VALUES (?1) ON CONFLICT (name) DO NOTHING",
        )?
        .execute([name])?;
        let (tenant, counter): (i64, i64) = conn
            .prepare_cached("SELECT id, counter FROM tenants WHERE name = ?1")?
            .query_row([name], |r| Ok((r.get(0)?, r.get(1)?)))?;
        let counter = Revision(u64_from_sql(counter));
        Ok(Writer {
            tenant,
            counter,
            loaded: counter,
            feed_head: None,
        })
    }

    /// The next revision by the Lamport rule: `max(counter, seen) + 1`.
    fn next(&mut self, seen: Revision) -> Result<Revision, StoreError> {
        let next = self.counter.lamport_next(seen);
        if next.0 > MAX_REVISION {
            return Err(StoreError::bad(
                "revision",
                format!("the counter would pass {MAX_REVISION} (a client sent seen = {seen})"),
            ));
        }
        self.counter = next;
        Ok(next)
    }

    /// Saves the counter if it moved.
    fn save(&self, conn: &Connection) -> Result<(), StoreError> {
        if self.counter != self.loaded {
            conn.prepare_cached("UPDATE tenants SET counter = ?1 WHERE id = ?2")?
                .execute(params![u64_to_sql(self.counter.0), self.tenant])?;
        }
        Ok(())
    }

    /// The current state of `key`, tombstones included.
    fn get(&self, conn: &Connection, key: &Key) -> Result<Option<ItemMeta>, StoreError> {
        get_item(conn, self.tenant, key)
    }

    /// Makes `item` current and records it in the history.
    fn put(
        &mut self,
        conn: &Connection,
        item: &ItemMeta,
        archived: bool,
    ) -> Result<(), StoreError> {
        if !archived {
            conn.prepare_cached(&format!(
                "INSERT INTO items (tenant, {ITEM_COLUMNS}) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) \
                 ON CONFLICT (tenant, key) DO UPDATE SET kind = excluded.kind, \
                 rev = excluded.rev, hash = excluded.hash, size = excluded.size, \
                 stamp_millis = excluded.stamp_millis, stamp_counter = excluded.stamp_counter, \
                 stamp_node = excluded.stamp_node, deleted = excluded.deleted"
            ))?
            .execute(params![
                self.tenant,
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
            self.feed_head = Some(self.feed_head.map_or(item.rev, |h| h.max(item.rev)));
        }
        conn.prepare_cached(
            "INSERT INTO versions (tenant, key, rev, kind, hash, size, stamp_millis, \
             stamp_counter, stamp_node, deleted, archived) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        )?
        .execute(params![
            self.tenant,
            item.key.as_str(),
            u64_to_sql(item.rev.0),
            kind_to_sql(item.kind),
            hash_to_sql(item.hash.as_ref()),
            u64_to_sql(item.size),
            u64_to_sql(item.stamp.millis),
            i64::from(item.stamp.counter),
            u64_to_sql(item.stamp.node.0),
            item.deleted,
            archived,
        ])?;
        Ok(())
    }

    /// Creates every folder in `folders` (outermost first) that is absent or a tombstone, each
    /// with its own revision. A live file in the way fails with [`Error::Item`] about `target`.
    /// Returns the last folder's item.
    fn ensure_folders(
        &mut self,
        conn: &Connection,
        folders: &[Key],
        target: &Key,
        stamp: Stamp,
        seen: Revision,
    ) -> Result<Option<ItemMeta>> {
        let mut last = None;
        for folder in folders {
            match self.get(conn, folder)? {
                Some(item) if item.is_live() && item.kind == ItemKind::Folder => last = Some(item),
                Some(item) if item.is_live() => {
                    return Err(Error::item(
                        target,
                        format!(
                            "{folder} is a file on the server, so no folder can be made there; \
                             rename or remove that file"
                        ),
                    ));
                }
                _ => {
                    let item = ItemMeta {
                        key: folder.clone(),
                        kind: ItemKind::Folder,
                        rev: self.next(seen)?,
                        hash: None,
                        size: 0,
                        stamp,
                        deleted: false,
                    };
                    self.put(conn, &item, false)?;
                    last = Some(item);
                }
            }
        }
        Ok(last)
    }
}

/// The current state of `key` for tenant id `tenant`.
fn get_item(conn: &Connection, tenant: i64, key: &Key) -> Result<Option<ItemMeta>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {ITEM_COLUMNS} FROM items WHERE tenant = ?1 AND key = ?2"
    ))?;
    let mut rows = stmt.query(params![tenant, key.as_str()])?;
    match rows.next()? {
        Some(row) => Ok(Some(item_from_row(row)?)),
        None => Ok(None),
    }
}

/// The id of an existing tenant (reads never create one).
fn tenant_id(conn: &Connection, name: &str) -> Result<Option<(i64, Revision)>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT id, counter FROM tenants WHERE name = ?1")?
        .query_row([name], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))
        .optional()?
        .map(|(id, c)| (id, Revision(u64_from_sql(c)))))
}

/// Checks size, then hash, before anything is written.
fn verify(key: &Key, content: &[u8], hash: &ContentHash, limit: u64) -> Result<()> {
    let size = content.len() as u64;
    if size > limit {
        return Err(Error::TooLarge {
            key: key.clone(),
            size,
            limit,
        });
    }
    let actual = ContentHash::of(content);
    if actual != *hash {
        return Err(Error::HashMismatch {
            key: key.clone(),
            expected: *hash,
            actual,
        });
    }
    Ok(())
}

/// [`verify`], off the async thread when the content is large.
async fn verify_async(key: &Key, content: &Bytes, hash: &ContentHash, limit: u64) -> Result<()> {
    if content.len() <= INLINE_MAX || content.len() as u64 > limit {
        return verify(key, content, hash, limit);
    }
    let (key, content, hash) = (key.clone(), content.clone(), *hash);
    run_blocking(move || verify(&key, &content, &hash, limit)).await?
}

/// One push inside an open transaction or savepoint (already verified).
fn apply_push(
    conn: &Connection,
    inner: &Inner,
    w: &mut Writer,
    req: &PushRequest,
) -> Result<PushOutcome> {
    let current = w.get(conn, &req.key)?;
    let allowed = match req.precondition {
        Precondition::Create => match &current {
            None => true,
            Some(c) => c.deleted,
        },
        Precondition::Match(rev) => current.as_ref().is_some_and(|c| c.rev == rev),
    };
    if !allowed {
        return Ok(PushOutcome::Conflict { current });
    }
    if let Some(c) = current
        .as_ref()
        .filter(|c| c.is_live() && c.kind == ItemKind::Folder)
    {
        return Err(Error::item(
            &c.key,
            "is a folder on the server, so a file cannot replace it; rename one of them",
        ));
    }
    let stamp = inner.clamp(req.stamp);
    w.ensure_folders(conn, &req.key.ancestors(), &req.key, stamp, req.seen)?;
    blobs::put(conn, inner.blob_dir.as_deref(), &req.hash, &req.content)?;
    let item = ItemMeta {
        key: req.key.clone(),
        kind: ItemKind::File,
        rev: w.next(req.seen)?,
        hash: Some(req.hash),
        size: req.content.len() as u64,
        stamp,
        deleted: false,
    };
    w.put(conn, &item, false)?;
    Ok(PushOutcome::Accepted(item))
}

impl Inner {
    /// The server's clamp of a client stamp (SPEC §2).
    fn clamp(&self, stamp: Stamp) -> Stamp {
        stamp.clamped(self.config.time.now_millis(), self.config.max_skew)
    }

    /// A receiver for `tenant`'s feed notifications, marked as seen.
    fn subscribe(&self, tenant: &str) -> watch::Receiver<u64> {
        let mut map = self
            .watchers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let tx = map
            .entry(tenant.to_owned())
            .or_insert_with(|| watch::channel(0).0);
        let mut rx = tx.subscribe();
        rx.borrow_and_update();
        rx
    }

    /// Tells waiters on `tenant` that its feed now reaches `rev` (call it right after the commit, on the same thread, so
    /// that a caller that stops waiting for the result cannot skip it).
    fn notify(&self, tenant: &str, rev: Option<Revision>) {
        let Some(rev) = rev else { return };
        let map = self
            .watchers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(tx) = map.get(tenant) {
            tx.send_if_modified(|v| {
                if rev.0 > *v {
                    *v = rev.0;
                    true
                } else {
                    false
                }
            });
        }
    }
}

/// A version row of `key`: its kind and metadata.
fn version_at(
    conn: &Connection,
    tenant: i64,
    key: &Key,
    rev: Revision,
) -> Result<Option<(ItemKind, VersionMeta)>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT kind, rev, hash, size, stamp_millis, stamp_counter, stamp_node, deleted \
         FROM versions WHERE tenant = ?1 AND key = ?2 AND rev = ?3",
    )?;
    let mut rows = stmt.query(params![tenant, key.as_str(), u64_to_sql(rev.0)])?;
    match rows.next()? {
        None => Ok(None),
        Some(row) => Ok(Some((
            kind_from_sql(row.get(0)?)?,
            version_from_row(row, 1)?,
        ))),
    }
}

/// Reads a [`VersionMeta`] from columns `rev, hash, size, stamp x3, deleted` at `at`.
fn version_from_row(row: &rusqlite::Row<'_>, at: usize) -> Result<VersionMeta, StoreError> {
    Ok(VersionMeta {
        rev: Revision(u64_from_sql(row.get(at)?)),
        hash: hash_from_sql(row.get(at + 1)?)?,
        size: u64_from_sql(row.get(at + 2)?),
        stamp: stamp_from_sql(row.get(at + 3)?, row.get(at + 4)?, row.get(at + 5)?)?,
        deleted: row.get(at + 6)?,
    })
}

#[async_trait]
impl ServerStore for SqliteServerStore {
    async fn epoch(&self) -> Result<Epoch> {
        Ok(self.inner.epoch)
    }

    async fn changes(
        &self,
        tenant: &TenantId,
        since: Option<&Cursor>,
        limit: usize,
    ) -> Result<ChangePage> {
        let since_rev = self.since_rev(since)?;
        let limit = limit.max(1);
        let epoch = self.inner.epoch;
        let name = tenant.as_str().to_owned();
        Ok(self
            .inner
            .db
            .call(move |conn| -> Result<ChangePage, StoreError> {
                let tx = conn.transaction()?;
                let Some((id, head)) = tenant_id(&tx, &name)? else {
                    return Ok(ChangePage {
                        changes: Vec::new(),
                        cursor: Cursor::new(epoch, Revision::ZERO),
                        more: false,
                    });
                };
                let mut changes = Vec::new();
                {
                    let mut stmt = tx.prepare_cached(&format!(
                        "SELECT {ITEM_COLUMNS} FROM items WHERE tenant = ?1 AND rev > ?2 \
                         ORDER BY rev LIMIT ?3"
                    ))?;
                    let fetch = i64::try_from(limit)
                        .unwrap_or(i64::MAX - 1)
                        .saturating_add(1);
                    let mut rows = stmt.query(params![id, u64_to_sql(since_rev), fetch])?;
                    while let Some(row) = rows.next()? {
                        changes.push(item_from_row(row)?);
                    }
                }
                tx.commit()?;
                let more = changes.len() > limit;
                changes.truncate(limit);
                let cursor = match changes.last() {
                    Some(last) if more => last.rev,
                    _ => head,
                };
                Ok(ChangePage {
                    changes,
                    cursor: Cursor::new(epoch, cursor),
                    more,
                })
            })
            .await?)
    }

    async fn fetch(&self, tenant: &TenantId, key: &Key, rev: Option<Revision>) -> Result<Fetched> {
        let inner = self.inner.clone();
        let name = tenant.as_str().to_owned();
        let k = key.clone();
        let found = self
            .inner
            .db
            .call(move |conn| -> Result<_, StoreError> {
                let tx = conn.transaction()?;
                let Some((id, _)) = tenant_id(&tx, &name)? else {
                    return Ok(None);
                };
                let version = match rev {
                    None => get_item(&tx, id, &k)?.map(|item| (item.kind, item.version())),
                    Some(rev) => version_at(&tx, id, &k, rev)?,
                };
                let Some((kind, version)) = version.filter(|(_, v)| !v.deleted) else {
                    return Ok(None);
                };
                let data = match (kind, version.hash) {
                    (ItemKind::File, Some(hash)) => {
                        blobs::locate(&tx, inner.blob_dir.as_deref(), &hash)?
                    }
                    _ => BlobData::Inline(Bytes::new()),
                };
                tx.commit()?;
                Ok(Some((version, data)))
            })
            .await?;
        let Some((version, data)) = found else {
            return Err(Error::NotFound { key: key.clone() });
        };
        let content = match data {
            BlobData::Inline(bytes) => bytes,
            BlobData::File(path, size) => {
                let hash = version.hash.unwrap_or_else(|| ContentHash::of(b""));
                run_blocking(move || blobs::read_file(&path, &hash, size)).await??
            }
        };
        Ok(Fetched { version, content })
    }

    async fn push(&self, tenant: &TenantId, req: PushRequest) -> Result<PushOutcome> {
        verify_async(&req.key, &req.content, &req.hash, self.max_item_bytes()).await?;
        self.write(tenant, move |conn, inner, w| {
            apply_push(conn, inner, w, &req)
        })
        .await
    }

    async fn push_many(
        &self,
        tenant: &TenantId,
        reqs: Vec<PushRequest>,
    ) -> Result<Vec<Result<PushOutcome>>> {
        let limit = self.max_item_bytes();
        let mut checked = Vec::with_capacity(reqs.len());
        for req in reqs {
            let ok = verify_async(&req.key, &req.content, &req.hash, limit).await;
            checked.push((req, ok));
        }
        let inner = self.inner.clone();
        let name = tenant.as_str().to_owned();
        self.inner
            .db
            .call(move |conn| -> Result<_> {
                let mut tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(StoreError::from)?;
                let mut w = Writer::load(&tx, &name)?;
                let mut results = Vec::with_capacity(checked.len());
                for (req, ok) in checked {
                    if let Err(e) = ok {
                        results.push(Err(e));
                        continue;
                    }
                    // Each request in its own savepoint: a failed one leaves no trace.
                    let sp = tx.savepoint().map_err(StoreError::from)?;
                    let before = (w.counter, w.feed_head);
                    match apply_push(&sp, &inner, &mut w, &req) {
                        Ok(outcome) => {
                            sp.commit().map_err(StoreError::from)?;
                            results.push(Ok(outcome));
                        }
                        Err(e @ Error::Storage { .. }) => return Err(e),
                        Err(e) => {
                            drop(sp); // rolls back
                            (w.counter, w.feed_head) = before;
                            results.push(Err(e));
                        }
                    }
                }
                w.save(&tx)?;
                tx.commit().map_err(StoreError::from)?;
                inner.notify(&name, w.feed_head);
                Ok(results)
            })
            .await
    }

    async fn delete(&self, tenant: &TenantId, req: DeleteRequest) -> Result<PushOutcome> {
        self.write(tenant, move |conn, inner, w| {
            let cur = match w.get(conn, &req.key)? {
                Some(cur) if cur.is_live() && cur.rev == req.rev => cur,
                current => return Ok(PushOutcome::Conflict { current }),
            };
            let item = ItemMeta {
                key: req.key.clone(),
                kind: cur.kind,
                rev: w.next(req.seen)?,
                hash: None,
                size: 0,
                stamp: inner.clamp(req.stamp),
                deleted: true,
            };
            w.put(conn, &item, false)?;
            Ok(PushOutcome::Accepted(item))
        })
        .await
    }

    async fn ensure_folder(&self, tenant: &TenantId, req: FolderRequest) -> Result<ItemMeta> {
        self.write(tenant, move |conn, inner, w| {
            let mut path = req.key.ancestors();
            path.push(req.key.clone());
            let stamp = inner.clamp(req.stamp);
            w.ensure_folders(conn, &path, &req.key, stamp, req.seen)?
                .ok_or_else(|| Error::NotFound {
                    key: req.key.clone(),
                })
        })
        .await
    }

    async fn history(&self, tenant: &TenantId, key: &Key) -> Result<Vec<VersionMeta>> {
        let name = tenant.as_str().to_owned();
        let k = key.clone();
        let versions = self
            .inner
            .db
            .call(move |conn| -> Result<Vec<VersionMeta>, StoreError> {
                let tx = conn.transaction()?;
                let Some((id, _)) = tenant_id(&tx, &name)? else {
                    return Ok(Vec::new());
                };
                let mut out = Vec::new();
                {
                    let mut stmt = tx.prepare_cached(
                        "SELECT rev, hash, size, stamp_millis, stamp_counter, stamp_node, \
                         deleted FROM versions WHERE tenant = ?1 AND key = ?2 ORDER BY rev",
                    )?;
                    let mut rows = stmt.query(params![id, k.as_str()])?;
                    while let Some(row) = rows.next()? {
                        out.push(version_from_row(row, 0)?);
                    }
                }
                tx.commit()?;
                Ok(out)
            })
            .await?;
        if versions.is_empty() {
            return Err(Error::NotFound { key: key.clone() });
        }
        Ok(versions)
    }

    async fn archive(&self, tenant: &TenantId, req: ArchiveRequest) -> Result<VersionMeta> {
        verify_async(&req.key, &req.content, &req.hash, self.max_item_bytes()).await?;
        self.write(tenant, move |conn, inner, w| {
            blobs::put(conn, inner.blob_dir.as_deref(), &req.hash, &req.content)?;
            let item = ItemMeta {
                key: req.key.clone(),
                kind: ItemKind::File,
                rev: w.next(req.seen)?,
                hash: Some(req.hash),
                size: req.content.len() as u64,
                stamp: inner.clamp(req.stamp),
                deleted: false,
            };
            w.put(conn, &item, true)?;
            Ok(item.version())
        })
        .await
    }

    async fn wait(
        &self,
        tenant: &TenantId,
        since: Option<&Cursor>,
        timeout: Duration,
    ) -> Result<bool> {
        let since_rev = self.since_rev(since)?;
        // Subscribe before looking, so a write committed after the look still wakes us.
        let mut rx = self.inner.subscribe(tenant.as_str());
        let name = tenant.as_str().to_owned();
        let pending = self
            .inner
            .db
            .call(move |conn| -> Result<bool, StoreError> {
                let Some((id, _)) = tenant_id(conn, &name)? else {
                    return Ok(false);
                };
                Ok(conn
                    .prepare_cached(
                        "SELECT EXISTS (SELECT 1 FROM items WHERE tenant = ?1 AND rev > ?2)",
                    )?
                    .query_row(params![id, u64_to_sql(since_rev)], |r| r.get(0))?)
            })
            .await?;
        if pending {
            return Ok(true);
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Err(_elapsed) => return Ok(false),
                Ok(Err(_closed)) => return Ok(false),
                Ok(Ok(())) => {
                    if *rx.borrow_and_update() > since_rev {
                        return Ok(true);
                    }
                }
            }
        }
    }

    fn max_item_bytes(&self) -> u64 {
        self.inner.config.max_item_bytes
    }
}
