//! [`SqliteServerStore`]: the server's [`ServerStore`] in one SQLite file (plus a folder of
//! large blobs beside it, see [`crate::blobs`]).
//!
//! Every write runs in one `IMMEDIATE` transaction: it reads the tenant's counter and the rows
//! the write depends on, asks [`sync_core::server::WriteRules`] what to do, and stores the rows
//! it returns (with the content blob and the new counter). After a write commits, the tenant's
//! waiters are woken through [`Watchers`]. This module holds no write rule of its own, and must
//! not run SQLite on async threads: every statement runs inside [`Db::call`].

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use sync_core::server::{
    change_page, check_content, check_content_file, check_content_off_thread, feed_after,
    keys_to_read, rows_to_read, Decision, Watchers, Write, WriteRules, PRUNE_PER_WRITE,
};
use sync_core::{
    ArchiveRequest, ChangePage, ContentBody, ContentFile, ContentHash, Cursor, DeleteRequest,
    Epoch, Error, Fetched, FetchedBody, FolderRequest, HistoryPage, HistoryRange, ItemKind,
    ItemMeta, Key, PushOutcome, PushRequest, Result, Revision, ServerConfig, ServerStore, TenantId,
    VersionMeta,
};

use crate::blobs::{self, BlobData};
use crate::conn::{run_blocking, Db, StoreOptions};
use crate::error::StoreError;
use crate::schema::{
    hash_from_sql, hash_to_sql, item_from_row, kind_from_sql, kind_to_sql, stamp_from_sql,
    u64_from_sql, u64_to_sql, ITEM_COLUMNS, SERVER,
};

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
    rules: WriteRules,
    /// The folder of large blobs; `None` for an in-memory database (everything inline).
    blob_dir: Option<std::path::PathBuf>,
    /// Per tenant wake-ups for `wait`.
    watchers: Watchers,
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
    /// hashes (docs/SPEC.md §2) instead of trusting feed positions the restored copy may never have
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

    /// The database, for the other server-side tables of this file (device tokens).
    pub(crate) fn db(&self) -> &Db {
        &self.inner.db
    }

    /// The server's clock now.
    pub(crate) fn now_millis(&self) -> u64 {
        self.inner.rules.config().time.now_millis()
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
                rules: WriteRules::new(config),
                blob_dir,
                watchers: Watchers::new(),
            }),
        })
    }

    /// The folder where content over 64 KiB is kept (`None` for an in-memory store).
    pub fn blob_dir(&self) -> Option<&Path> {
        self.inner.blob_dir.as_deref()
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
                let dropped = prune(&tx, &inner, &w)?;
                w.save(&tx)?;
                tx.commit().map_err(StoreError::from)?;
                blobs::remove_files(&dropped);
                if w.feed_moved {
                    inner.watchers.notify(&name);
                }
                Ok(value)
            })
            .await
    }

    /// The version a fetch reads (current, or at `rev`) and where its content is.
    async fn locate(
        &self,
        tenant: &TenantId,
        key: &Key,
        rev: Option<Revision>,
    ) -> Result<(VersionMeta, BlobData)> {
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
                let found = locate_version(&tx, &inner, id, &k, rev)?;
                tx.commit()?;
                Ok(found)
            })
            .await?;
        found.ok_or_else(|| Error::NotFound { key: key.clone() })
    }
}

/// The chunks of a blob file, each read on a blocking thread when the stream is polled.
fn chunks(reader: blobs::BlobReader) -> BoxStream<'static, std::io::Result<Bytes>> {
    futures::stream::try_unfold(Some(reader), |reader| async move {
        let Some(mut reader) = reader else {
            return Ok(None);
        };
        let (reader, chunk) = run_blocking(move || reader.next_chunk().map(|c| (reader, c)))
            .await
            .map_err(std::io::Error::other)??;
        let next = (!reader.done()).then_some(reader);
        Ok(Some((chunk, next)))
    })
    .boxed()
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
    /// True once this transaction put something into the change feed.
    feed_moved: bool,
    /// Every key this transaction wrote a version of (for retention).
    written: Vec<Key>,
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
            feed_moved: false,
            written: Vec::new(),
        })
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

    /// The current state (tombstones included) of each key a write to `key` depends on.
    fn read_path(&self, conn: &Connection, key: &Key) -> Result<Vec<Option<ItemMeta>>, StoreError> {
        keys_to_read(key)
            .iter()
            .map(|k| get_item(conn, self.tenant, k))
            .collect()
    }

    /// Stores the rows of an accepted write and takes its counter.
    fn store<T>(&mut self, conn: &Connection, write: &Write<T>) -> Result<(), StoreError> {
        for row in &write.rows {
            put_row(conn, self.tenant, &row.item, row.current)?;
            if !self.written.contains(&row.item.key) {
                self.written.push(row.item.key.clone());
            }
        }
        self.feed_moved |= write.feed_head().is_some();
        self.counter = write.counter;
        Ok(())
    }
}

/// Retention, inside the write's transaction: drops the versions of the keys `w` wrote that
/// the store's [`Retention`](sync_core::server::Retention) lets go (beyond the newest
/// `keep_versions`, stamped before the cutoff, not current; at most [`PRUNE_PER_WRITE`] in
/// all, oldest first), then the blobs nothing refers to any more. Returns the blob files to
/// remove once the transaction has committed. The rule is `Retention::prunable`'s, as SQL
/// (the conformance suite checks that every store drops the same versions).
fn prune(
    conn: &Connection,
    inner: &Inner,
    w: &Writer,
) -> Result<Vec<std::path::PathBuf>, StoreError> {
    let Some(retention) = inner.rules.config().retention else {
        return Ok(Vec::new());
    };
    let cutoff = u64_to_sql(retention.cutoff_millis(inner.rules.config().time.now_millis()));
    let keep = i64::try_from(retention.keep_versions()).unwrap_or(i64::MAX);
    let mut budget = PRUNE_PER_WRITE;
    let mut hashes: Vec<ContentHash> = Vec::new();
    for key in &w.written {
        // One statement: the versions at or below the newest one beyond the kept count,
        // stamped before the cutoff, not the current one, oldest first.
        let limit = i64::try_from(budget).unwrap_or(i64::MAX);
        let gone: Vec<Option<Vec<u8>>> = conn
            .prepare_cached(
                "DELETE FROM versions WHERE tenant = ?1 AND key = ?2 AND rev IN ( \
                     SELECT rev FROM versions WHERE tenant = ?1 AND key = ?2 \
                     AND rev <= (SELECT rev FROM versions WHERE tenant = ?1 AND key = ?2 \
                                 ORDER BY rev DESC LIMIT 1 OFFSET ?3) \
                     AND stamp_millis < ?4 \
                     AND rev IS NOT (SELECT rev FROM items WHERE tenant = ?1 AND key = ?2) \
                     ORDER BY rev LIMIT ?5 \
                 ) RETURNING hash",
            )?
            .query_map(params![w.tenant, key.as_str(), keep, cutoff, limit], |r| {
                r.get(0)
            })?
            .collect::<Result<_, _>>()?;
        budget = budget.saturating_sub(gone.len());
        for hash in gone {
            hashes.extend(hash_from_sql(hash)?);
        }
        if budget == 0 {
            break;
        }
    }
    hashes.sort();
    hashes.dedup();
    blobs::drop_unreferenced(conn, inner.blob_dir.as_deref(), &hashes)
}

/// Writes one version: made current (the feed) unless it is an archive, and recorded in the
/// history either way.
fn put_row(
    conn: &Connection,
    tenant: i64,
    item: &ItemMeta,
    current: bool,
) -> Result<(), StoreError> {
    if current {
        conn.prepare_cached(&format!(
            "INSERT INTO items (tenant, {ITEM_COLUMNS}) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) \
             ON CONFLICT (tenant, key) DO UPDATE SET kind = excluded.kind, \
             rev = excluded.rev, hash = excluded.hash, size = excluded.size, \
             stamp_millis = excluded.stamp_millis, stamp_counter = excluded.stamp_counter, \
             stamp_node = excluded.stamp_node, deleted = excluded.deleted"
        ))?
        .execute(params![
            tenant,
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
    conn.prepare_cached(
        "INSERT INTO versions (tenant, key, rev, kind, hash, size, stamp_millis, \
         stamp_counter, stamp_node, deleted, archived) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?
    .execute(params![
        tenant,
        item.key.as_str(),
        u64_to_sql(item.rev.0),
        kind_to_sql(item.kind),
        hash_to_sql(item.hash.as_ref()),
        u64_to_sql(item.size),
        u64_to_sql(item.stamp.millis),
        i64::from(item.stamp.counter),
        u64_to_sql(item.stamp.node.0),
        item.deleted,
        !current,
    ])?;
    Ok(())
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

/// One push inside an open transaction (content already checked, and staged when it goes to
/// a file). Every error that is not a storage error (a refusal of the write rules) comes
/// before the first write, so a batch goes on after it without a savepoint; a storage error
/// fails the whole transaction.
fn apply_push(
    conn: &Connection,
    inner: &Inner,
    w: &mut Writer,
    req: &PushRequest,
    staged: Option<blobs::Staged>,
) -> Result<PushOutcome> {
    let read = w.read_path(conn, &req.key)?;
    let size = staged
        .as_ref()
        .map_or(req.content.len() as u64, blobs::Staged::size);
    let decision = inner.rules.push_of_size(req, size, &read, w.counter)?;
    if let Decision::Accept(write) = &decision {
        put_blob(conn, &req.hash, &req.content, staged)?;
        w.store(conn, write)?;
    }
    Ok(decision.into_outcome())
}

/// Stores a write's content: the staged file of large content, else `content` inline.
fn put_blob(
    conn: &Connection,
    hash: &ContentHash,
    content: &[u8],
    staged: Option<blobs::Staged>,
) -> Result<(), StoreError> {
    match staged {
        Some(staged) => blobs::put_staged(conn, staged),
        None => blobs::put_inline(conn, hash, content),
    }
}

impl SqliteServerStore {
    /// Checks content in memory for `key` (size, then hash) and, when it goes to a file,
    /// stages it: both on a blocking thread, without the database lock.
    async fn prepare(
        &self,
        key: &Key,
        content: &Bytes,
        hash: &ContentHash,
    ) -> Result<Option<blobs::Staged>> {
        let limit = self.max_item_bytes();
        let Some(dir) = blobs::as_file(self.blob_dir(), content.len() as u64) else {
            check_content_off_thread(key, content, hash, limit).await?;
            return Ok(None);
        };
        let (dir, key, content, hash) = (dir.to_path_buf(), key.clone(), content.clone(), *hash);
        let staged = run_blocking(move || -> Result<blobs::Staged> {
            check_content(&key, &content, &hash, limit)?;
            Ok(blobs::stage(&dir, &hash, blobs::Source::Memory(&content))?)
        })
        .await??;
        Ok(Some(staged))
    }
}

/// The version of `key` a fetch reads (current, or at `rev`) and where its content is;
/// `None` when there is none or it is deleted.
fn locate_version(
    conn: &Connection,
    inner: &Inner,
    tenant: i64,
    key: &Key,
    rev: Option<Revision>,
) -> Result<Option<(VersionMeta, BlobData)>, StoreError> {
    let version = match rev {
        None => get_item(conn, tenant, key)?.map(|item| (item.kind, item.version())),
        Some(rev) => version_at(conn, tenant, key, rev)?,
    };
    let Some((kind, version)) = version.filter(|(_, v)| !v.deleted) else {
        return Ok(None);
    };
    let data = match (kind, version.hash) {
        (ItemKind::File, Some(hash)) => blobs::locate(conn, inner.blob_dir.as_deref(), &hash)?,
        _ => BlobData::Inline(Bytes::new()),
    };
    Ok(Some((version, data)))
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
    async fn check(&self) -> Result<()> {
        self.inner
            .db
            .call(|conn| -> Result<(), StoreError> {
                conn.query_row("SELECT count(*) FROM meta", [], |_| Ok(()))?;
                Ok(())
            })
            .await?;
        Ok(())
    }

    async fn epoch(&self) -> Result<Epoch> {
        Ok(self.inner.epoch)
    }

    async fn changes(
        &self,
        tenant: &TenantId,
        since: Option<&Cursor>,
        limit: usize,
    ) -> Result<ChangePage> {
        let since_rev = feed_after(since, self.inner.epoch)?;
        let epoch = self.inner.epoch;
        let name = tenant.as_str().to_owned();
        Ok(self
            .inner
            .db
            .call(move |conn| -> Result<ChangePage, StoreError> {
                let tx = conn.transaction()?;
                let Some((id, head)) = tenant_id(&tx, &name)? else {
                    return Ok(change_page(epoch, Revision::ZERO, Vec::new(), limit));
                };
                let mut rows = Vec::new();
                {
                    let mut stmt = tx.prepare_cached(&format!(
                        "SELECT {ITEM_COLUMNS} FROM items WHERE tenant = ?1 AND rev > ?2 \
                         ORDER BY rev LIMIT ?3"
                    ))?;
                    let fetch = i64::try_from(rows_to_read(limit)).unwrap_or(i64::MAX);
                    let mut found = stmt.query(params![id, u64_to_sql(since_rev.0), fetch])?;
                    while let Some(row) = found.next()? {
                        rows.push(item_from_row(row)?);
                    }
                }
                tx.commit()?;
                Ok(change_page(epoch, head, rows, limit))
            })
            .await?)
    }

    async fn fetch(&self, tenant: &TenantId, key: &Key, rev: Option<Revision>) -> Result<Fetched> {
        let (version, data) = self.locate(tenant, key, rev).await?;
        let content = match data {
            BlobData::Inline(bytes) => bytes,
            BlobData::File(path, size) => {
                let hash = version.hash.unwrap_or_else(|| ContentHash::of(b""));
                let limit = self.max_item_bytes();
                run_blocking(move || blobs::read_file(&path, &hash, size, limit)).await??
            }
        };
        Ok(Fetched { version, content })
    }

    /// Content in a blob file comes as chunks of `blobs::CHUNK` (256 KiB), each read (and hashed)
    /// on a blocking thread when the answer asks for it.
    async fn fetch_body(
        &self,
        tenant: &TenantId,
        key: &Key,
        rev: Option<Revision>,
    ) -> Result<FetchedBody> {
        let (version, data) = self.locate(tenant, key, rev).await?;
        let body = match data {
            BlobData::Inline(bytes) => ContentBody::Whole(bytes),
            BlobData::File(path, size) => {
                let hash = version.hash.unwrap_or_else(|| ContentHash::of(b""));
                let limit = self.max_item_bytes();
                let reader = run_blocking(move || blobs::BlobReader::open(path, hash, size, limit))
                    .await??;
                ContentBody::Chunks {
                    len: size,
                    chunks: chunks(reader),
                }
            }
        };
        Ok(FetchedBody { version, body })
    }

    /// One read transaction on one blocking call for the whole batch (blob files are read
    /// there too), instead of one call per item.
    async fn fetch_many(
        &self,
        tenant: &TenantId,
        reqs: Vec<(Key, Option<Revision>)>,
        budget: u64,
    ) -> Result<Vec<Option<Result<Fetched>>>> {
        let inner = self.inner.clone();
        let name = tenant.as_str().to_owned();
        let limit = self.max_item_bytes();
        let out = self
            .inner
            .db
            .call(move |conn| -> Result<_, StoreError> {
                let tx = conn.transaction()?;
                let id = tenant_id(&tx, &name)?.map(|(id, _)| id);
                let mut out = Vec::with_capacity(reqs.len());
                let (mut used, mut full) = (0u64, false);
                for (key, rev) in reqs {
                    if full {
                        out.push(None);
                        continue;
                    }
                    let found = match id {
                        Some(id) => locate_version(&tx, &inner, id, &key, rev)?,
                        None => None,
                    };
                    let Some((version, data)) = found else {
                        out.push(Some(Err(Error::NotFound { key })));
                        continue;
                    };
                    if used + version.size > budget {
                        full = true;
                        out.push(None);
                        continue;
                    }
                    used += version.size;
                    // A damaged blob is a failure of the store: it fails the whole call, as it
                    // fails a single fetch.
                    let content = match data {
                        BlobData::Inline(bytes) => bytes,
                        BlobData::File(path, size) => {
                            let hash = version.hash.unwrap_or_else(|| ContentHash::of(b""));
                            blobs::read_file(&path, &hash, size, limit)?
                        }
                    };
                    out.push(Some(Ok(Fetched { version, content })));
                }
                tx.commit()?;
                Ok(out)
            })
            .await?;
        Ok(out)
    }

    async fn push(&self, tenant: &TenantId, req: PushRequest) -> Result<PushOutcome> {
        let staged = self.prepare(&req.key, &req.content, &req.hash).await?;
        self.write(tenant, move |conn, inner, w| {
            apply_push(conn, inner, w, &req, staged)
        })
        .await
    }

    async fn push_file(
        &self,
        tenant: &TenantId,
        req: PushRequest,
        content: ContentFile,
    ) -> Result<PushOutcome> {
        check_content_file(&req.key, &content, &req.hash, self.max_item_bytes())?;
        let Some(dir) = blobs::as_file(self.blob_dir(), content.len()) else {
            // Small enough to keep inline (or a store without a blob folder): as a push.
            let content = content.read().await?;
            return self.push(tenant, PushRequest { content, ..req }).await;
        };
        let (dir, hash) = (dir.to_path_buf(), req.hash);
        let staged =
            run_blocking(move || blobs::stage(&dir, &hash, blobs::Source::File(content))).await??;
        self.write(tenant, move |conn, inner, w| {
            apply_push(conn, inner, w, &req, Some(staged))
        })
        .await
    }

    async fn push_many(
        &self,
        tenant: &TenantId,
        reqs: Vec<PushRequest>,
    ) -> Result<Vec<Result<PushOutcome>>> {
        // Checked and staged side by side: their fsyncs overlap instead of queueing.
        let prepared = futures::future::join_all(
            reqs.iter()
                .map(|req| self.prepare(&req.key, &req.content, &req.hash)),
        )
        .await;
        let checked: Vec<_> = reqs.into_iter().zip(prepared).collect();
        let inner = self.inner.clone();
        let name = tenant.as_str().to_owned();
        self.inner
            .db
            .call(move |conn| -> Result<_> {
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(StoreError::from)?;
                let mut w = Writer::load(&tx, &name)?;
                let mut results = Vec::with_capacity(checked.len());
                for (req, ok) in checked {
                    let staged = match ok {
                        Ok(staged) => staged,
                        Err(e) => {
                            results.push(Err(e));
                            continue;
                        }
                    };
                    // No savepoint per request: a refused one wrote nothing (see
                    // `apply_push`), and a storage error ends the whole batch.
                    match apply_push(&tx, &inner, &mut w, &req, staged) {
                        Ok(outcome) => results.push(Ok(outcome)),
                        Err(e @ Error::Storage { .. }) => return Err(e),
                        Err(e) => results.push(Err(e)),
                    }
                }
                let dropped = prune(&tx, &inner, &w)?;
                w.save(&tx)?;
                tx.commit().map_err(StoreError::from)?;
                blobs::remove_files(&dropped);
                if w.feed_moved {
                    inner.watchers.notify(&name);
                }
                Ok(results)
            })
            .await
    }

    async fn delete(&self, tenant: &TenantId, req: DeleteRequest) -> Result<PushOutcome> {
        self.write(tenant, move |conn, inner, w| {
            let current = w.get(conn, &req.key)?;
            let decision = inner.rules.delete(&req, current.as_ref(), w.counter)?;
            if let Decision::Accept(write) = &decision {
                w.store(conn, write)?;
            }
            Ok(decision.into_outcome())
        })
        .await
    }

    async fn ensure_folder(&self, tenant: &TenantId, req: FolderRequest) -> Result<ItemMeta> {
        self.write(tenant, move |conn, inner, w| {
            let read = w.read_path(conn, &req.key)?;
            let write = inner.rules.folder(&req, &read, w.counter)?;
            w.store(conn, &write)?;
            Ok(write.value)
        })
        .await
    }

    /// One read transaction: the page (the primary key is (tenant, key, rev), so this is an
    /// index range read of at most one row more than the page), and, only when the page is
    /// empty, whether the key has any version at all.
    async fn history(
        &self,
        tenant: &TenantId,
        key: &Key,
        range: HistoryRange,
    ) -> Result<HistoryPage> {
        let name = tenant.as_str().to_owned();
        let k = key.clone();
        let before = range
            .before
            .map_or(i64::MAX, |r| i64::try_from(r.0).unwrap_or(i64::MAX));
        let fetch = i64::try_from(range.page_size() + 1).unwrap_or(i64::MAX);
        let found = self
            .inner
            .db
            .call(
                move |conn| -> Result<Option<Vec<VersionMeta>>, StoreError> {
                    let tx = conn.transaction()?;
                    let Some((id, _)) = tenant_id(&tx, &name)? else {
                        return Ok(None);
                    };
                    let mut out = Vec::new();
                    {
                        let mut stmt = tx.prepare_cached(
                            "SELECT rev, hash, size, stamp_millis, stamp_counter, stamp_node, \
                         deleted FROM versions WHERE tenant = ?1 AND key = ?2 AND rev < ?3 \
                         ORDER BY rev DESC LIMIT ?4",
                        )?;
                        let mut rows = stmt.query(params![id, k.as_str(), before, fetch])?;
                        while let Some(row) = rows.next()? {
                            out.push(version_from_row(row, 0)?);
                        }
                    }
                    let known = !out.is_empty()
                    || tx
                        .prepare_cached(
                            "SELECT EXISTS (SELECT 1 FROM versions WHERE tenant = ?1 AND key = ?2)",
                        )?
                        .query_row(params![id, k.as_str()], |r| r.get::<_, bool>(0))?;
                    tx.commit()?;
                    Ok(known.then_some(out))
                },
            )
            .await?;
        match found {
            Some(rows) => Ok(HistoryPage::from_rows(rows, range)),
            None => Err(Error::NotFound { key: key.clone() }),
        }
    }

    async fn archive(&self, tenant: &TenantId, req: ArchiveRequest) -> Result<VersionMeta> {
        let staged = self.prepare(&req.key, &req.content, &req.hash).await?;
        self.write(tenant, move |conn, inner, w| {
            let write = inner.rules.archive(&req, w.counter)?;
            put_blob(conn, &req.hash, &req.content, staged)?;
            w.store(conn, &write)?;
            Ok(write.value)
        })
        .await
    }

    async fn wait(
        &self,
        tenant: &TenantId,
        since: Option<&Cursor>,
        timeout: Duration,
    ) -> Result<bool> {
        let since_rev = feed_after(since, self.inner.epoch)?;
        self.inner
            .watchers
            .wait_until(tenant.as_str(), timeout, || {
                let name = tenant.as_str().to_owned();
                let db = self.inner.db.clone();
                async move {
                    Ok(db
                        .call(move |conn| -> Result<bool, StoreError> {
                            let Some((id, _)) = tenant_id(conn, &name)? else {
                                return Ok(false);
                            };
                            Ok(conn
                                .prepare_cached(
                                    "SELECT EXISTS (SELECT 1 FROM items WHERE tenant = ?1 AND rev > ?2)",
                                )?
                                .query_row(params![id, u64_to_sql(since_rev.0)], |r| r.get(0))?)
                        })
                        .await?)
                }
            })
            .await
    }

    fn max_item_bytes(&self) -> u64 {
        self.inner.rules.config().max_item_bytes
    }
}
