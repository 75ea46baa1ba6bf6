//! [`PgServerStore`]: the server's [`ServerStore`] on PostgreSQL.
//!
//! Every write (push, delete, folder, archive, a whole `push_many`) is one transaction on a
//! pooled connection:
//!
//! 1. **lock the tenant row** (`INSERT .. ON CONFLICT DO UPDATE` on `tenants`, creating it on
//!    first use). Writers of one tenant queue here, in every server process, until the holder
//!    commits; everything below reads and writes under that lock, so preconditions are checked
//!    against the latest committed state (READ COMMITTED takes a new snapshot per statement);
//!    That statement also returns the tenant's counter;
//! 2. read the rows the write depends on (the key and its parent folders, one statement) and
//!    ask [`sync_core::server::WriteRules`] what to do: the rules are the same for every store
//!    and this file holds none of its own;
//! 3. store what the rules return: the blob (`ON CONFLICT DO NOTHING`: deduplicated by hash),
//!    each row as the current item (the feed) and a version (the history), then the new
//!    counter;
//! 4. `pg_notify('sync_changes', tenant)` when the feed moved, then commit.
//!
//! Because the tenant lock is held until commit, revisions become visible in the order they
//! were issued: a reader never sees revision n+1 without n, so a feed cursor never skips a
//! change. A rolled-back write gives its revisions back (the counter update rolls back too),
//! so committed revisions have no gaps except where the Lamport rule jumps to a client's
//! `seen`, and archives, which take a revision outside the feed. Content hash and size are checked before the transaction starts. A transaction that
//! PostgreSQL aborts as a deadlock or serialization failure is run again (up to
//! [`MAX_ATTEMPTS`] times).
//!
//! Reads are single statements (one snapshot each); `changes` reads the tenant's counter and
//! the page in one statement, so the cursor it returns is consistent with the page.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime, Transaction};
use sync_core::server::{
    change_page, check_content_off_thread, feed_after, keys_to_read, rows_to_read, Decision, Write,
    WriteRules,
};
use sync_core::{
    ArchiveRequest, ChangePage, ContentHash, Cursor, DeleteRequest, Epoch, Error, Fetched,
    FolderRequest, ItemKind, ItemMeta, Key, PushOutcome, PushRequest, Result, Revision,
    ServerConfig, ServerStore, TenantId, VersionMeta,
};
use tokio_postgres::config::SslMode;
use tokio_postgres::types::ToSql;

use crate::error::{describe_target, redact_url, scrub, PgStoreError};
use crate::listener::{self, AbortOnDrop, Watchers, CHANNEL, MAX_PAYLOAD};
use crate::schema::{
    bits_to_sql, count_from_sql, count_to_sql, item_from_row, kind_from_sql, kind_to_sql, migrate,
    version_from_row, ITEM_COLUMNS, VERSION_COLUMNS,
};

/// How many times a write aborted by a deadlock or serialization failure is tried.
pub const MAX_ATTEMPTS: u32 = 4;

/// Content above this size is looked up before it is sent to the database (a blob already
/// stored is not sent again).
const LARGE: usize = 64 * 1024;

/// Settings of the connection pool (everything else comes from the URL).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PgOptions {
    /// The most pooled connections this store opens (default 16). Each store also keeps one
    /// more connection for `LISTEN`.
    pub pool_size: usize,
    /// How long an operation waits for a free pooled connection before failing (default 30 s).
    pub acquire_timeout: Duration,
    /// How long opening a connection may take, when the URL sets no `connect_timeout`
    /// (default 10 s).
    pub connect_timeout: Duration,
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            pool_size: 16,
            acquire_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
        }
    }
}

impl PgOptions {
    /// These options with `pool_size` connections.
    pub fn with_pool_size(mut self, pool_size: usize) -> PgOptions {
        self.pool_size = pool_size.max(1);
        self
    }
}

/// A sync server's storage in PostgreSQL (see the [crate docs](crate)).
///
/// Cheap to clone: clones share the pool and the listener. Any number of stores, in any number
/// of processes, may use one database at once; a write through any of them wakes
/// [`ServerStore::wait`] on all of them.
#[derive(Clone)]
pub struct PgServerStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    epoch: Epoch,
    rules: WriteRules,
    /// The database, for messages: `postgres://user@host:port/db` (no password).
    target: String,
    watchers: Arc<Watchers>,
    /// Keeps the listener running while the store lives.
    _listener: AbortOnDrop,
}

impl std::fmt::Debug for PgServerStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgServerStore")
            .field("target", &self.inner.target)
            .field("epoch", &self.inner.epoch)
            .field("pool", &self.inner.pool.status())
            .finish_non_exhaustive()
    }
}

impl PgServerStore {
    /// Connects to the database at `url` (`postgres://USER:PASSWORD@HOST:PORT/DATABASE`, or
    /// the key-value form), applies missing schema migrations, makes the store's epoch on first
    /// use and starts listening for other servers' writes. Must be called inside a Tokio
    /// runtime; the store's background task lives as long as the store.
    ///
    /// Tables go into the first schema of the connection's `search_path` (set it with
    /// `?options=-c%20search_path%3Dmyschema` to keep them apart from other data).
    ///
    /// Connections are not encrypted (`NoTls`): run the database on loopback or a private
    /// network, or put a TLS tunnel in front of it. A URL demanding TLS (`sslmode=require`) is
    /// refused with a message saying so.
    pub async fn connect(url: &str, config: ServerConfig) -> Result<PgServerStore, PgStoreError> {
        Self::connect_with(url, config, PgOptions::default()).await
    }

    /// [`connect`](Self::connect) with pool settings.
    pub async fn connect_with(
        url: &str,
        config: ServerConfig,
        options: PgOptions,
    ) -> Result<PgServerStore, PgStoreError> {
        Self::start(url, config, options, false).await
    }

    /// Connects to a database restored from a backup: like [`connect`](Self::connect), but
    /// first gives the store a new random epoch, so every client's cursor expires and clients
    /// catch up by comparing hashes (docs/SPEC.md §2) instead of trusting feed positions the restored
    /// copy may never have reached. Use it once, on the first start after the restore (with
    /// the other servers stopped); later starts use [`connect`](Self::connect).
    pub async fn connect_restored(
        url: &str,
        config: ServerConfig,
        options: PgOptions,
    ) -> Result<PgServerStore, PgStoreError> {
        Self::start(url, config, options, true).await
    }

    async fn start(
        url: &str,
        config: ServerConfig,
        options: PgOptions,
        new_epoch: bool,
    ) -> Result<PgServerStore, PgStoreError> {
        let mut pg: tokio_postgres::Config =
            url.parse()
                .map_err(|e: tokio_postgres::Error| PgStoreError::InvalidUrl {
                    url: redact_url(url),
                    detail: scrub(&e.to_string(), url),
                })?;
        let target = describe_target(&pg);
        if pg.get_ssl_mode() == SslMode::Require {
            return Err(PgStoreError::InvalidUrl {
                url: redact_url(url),
                detail: "it asks for TLS (sslmode=require), which this store does not speak; \
                         reach the database over loopback, a private network or a TLS tunnel \
                         and use sslmode=disable"
                    .into(),
            });
        }
        if pg.get_connect_timeout().is_none() {
            pg.connect_timeout(options.connect_timeout);
        }
        let app = pg
            .get_application_name()
            .unwrap_or("sync-engine")
            .to_owned();
        pg.application_name(&app);
        let mut listen_config = pg.clone();
        listen_config.application_name(format!("{app} (listener)"));

        let manager = Manager::from_config(
            pg,
            tokio_postgres::NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(options.acquire_timeout))
            .create_timeout(Some(options.connect_timeout))
            .build()
            .map_err(|e| PgStoreError::Unavailable {
                target: target.clone(),
                detail: e.to_string(),
            })?;
        let mut client = get_client(&pool, &target).await?;
        let epoch = migrate(&mut client, new_epoch).await?;
        drop(client);

        let watchers = Arc::new(Watchers::default());
        let first = listener::listen(&listen_config, &watchers)
            .await
            .map_err(|source| PgStoreError::Connect {
                target: target.clone(),
                source,
            })?;
        let listener = listener::supervise(listen_config, watchers.clone(), first, target.clone());
        tracing::debug!(%target, ?epoch, "PostgreSQL server store ready");
        Ok(PgServerStore {
            inner: Arc::new(Inner {
                pool,
                epoch,
                rules: WriteRules::new(config),
                target,
                watchers,
                _listener: listener,
            }),
        })
    }

    /// Where this store connects, as `postgres://USER@HOST:PORT/DATABASE` (no password): for
    /// log lines.
    pub fn target(&self) -> &str {
        &self.inner.target
    }

    /// The settings this store was made with.
    pub fn config(&self) -> &ServerConfig {
        self.inner.rules.config()
    }

    /// A pooled connection.
    pub(crate) async fn client(&self) -> Result<deadpool_postgres::Client> {
        Ok(get_client(&self.inner.pool, &self.inner.target).await?)
    }

    /// Runs `op` for `tenant` in one transaction (again, if PostgreSQL aborted it as a
    /// deadlock or serialization failure).
    async fn write(&self, tenant: &TenantId, op: &Op) -> Result<Done> {
        let mut attempt = 1;
        loop {
            let mut client = self.client().await?;
            match self.inner.try_write(&mut client, tenant, op).await {
                Ok(done) => return Ok(done),
                Err(TxError::Pg(e)) if attempt < MAX_ATTEMPTS && PgStoreError::is_retryable(&e) => {
                    tracing::debug!(attempt, error = %e, "PostgreSQL aborted a write; running it again");
                    tokio::time::sleep(Duration::from_millis(5 * u64::from(attempt))).await;
                    attempt += 1;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// True when `tenant`'s feed holds a change after `since`.
    async fn has_changes_after(&self, tenant: &TenantId, since: Revision) -> Result<bool> {
        let since = count_to_sql("revision", since.0)?;
        let client = self.client().await?;
        let stmt = client
            .prepare_cached("SELECT EXISTS (SELECT 1 FROM items WHERE tenant = $1 AND rev > $2)")
            .await
            .map_err(pg)?;
        let row = client
            .query_one(&stmt, &[&tenant.as_str(), &since])
            .await
            .map_err(pg)?;
        row.try_get(0).map_err(pg)
    }
}

/// A connection from `pool`, with failures explained.
async fn get_client(pool: &Pool, target: &str) -> Result<deadpool_postgres::Client, PgStoreError> {
    use deadpool_postgres::PoolError;
    pool.get().await.map_err(|e| match e {
        PoolError::Backend(source) => PgStoreError::Connect {
            target: target.to_owned(),
            source,
        },
        PoolError::Timeout(_) => PgStoreError::Unavailable {
            target: target.to_owned(),
            detail: "timed out waiting for a free connection, or opening one".into(),
        },
        other => PgStoreError::Unavailable {
            target: target.to_owned(),
            detail: other.to_string(),
        },
    })
}

/// A driver error as a sync-core error.
pub(crate) fn pg(e: tokio_postgres::Error) -> Error {
    PgStoreError::Query(e).into()
}

/// A failure inside a write transaction: a driver error (maybe worth retrying) or a decided
/// outcome (an item error, a storage error).
#[derive(Debug)]
enum TxError {
    Pg(tokio_postgres::Error),
    Core(Error),
}

impl From<tokio_postgres::Error> for TxError {
    fn from(e: tokio_postgres::Error) -> TxError {
        TxError::Pg(e)
    }
}

impl From<Error> for TxError {
    fn from(e: Error) -> TxError {
        TxError::Core(e)
    }
}

impl From<PgStoreError> for TxError {
    fn from(e: PgStoreError) -> TxError {
        match e {
            PgStoreError::Query(e) => TxError::Pg(e),
            other => TxError::Core(other.into()),
        }
    }
}

impl From<TxError> for Error {
    fn from(e: TxError) -> Error {
        match e {
            TxError::Pg(e) => pg(e),
            TxError::Core(e) => e,
        }
    }
}

/// A write, kept so that it can be run again.
enum Op {
    Push(PushRequest),
    /// Each request with the result of its hash and size check.
    Many(Vec<(PushRequest, Result<()>)>),
    Delete(DeleteRequest),
    Folder(FolderRequest),
    Archive(ArchiveRequest),
}

/// What a write returns.
enum Done {
    Push(PushOutcome),
    Many(Vec<Result<PushOutcome>>),
    Item(ItemMeta),
    Version(VersionMeta),
}

/// One tenant's counter during one write transaction (its row is locked).
struct Writer<'t> {
    tenant: &'t str,
    counter: Revision,
    /// The counter as locked, to know whether to save it.
    loaded: Revision,
    /// True once this transaction put something into the change feed.
    feed_moved: bool,
}

impl<'t> Writer<'t> {
    /// Locks (creating if needed) the tenant's row until the transaction ends, and reads its
    /// counter.
    async fn lock(tx: &Transaction<'_>, tenant: &'t str) -> Result<Writer<'t>, TxError> {
        let stmt = tx
            .prepare_cached(
                "INSERT INTO tenants (tenant, counter) VALUES ($1, 0) \
                 ON CONFLICT (tenant) DO UPDATE SET counter = tenants.counter \
                 RETURNING counter",
            )
            .await?;
        let counter: i64 = tx.query_one(&stmt, &[&tenant]).await?.try_get(0)?;
        let counter = Revision(count_from_sql("revision", counter)?);
        Ok(Writer {
            tenant,
            counter,
            loaded: counter,
            feed_moved: false,
        })
    }

    /// Saves the counter if it moved.
    async fn save(&self, tx: &Transaction<'_>) -> Result<(), TxError> {
        if self.counter != self.loaded {
            let counter = count_to_sql("revision", self.counter.0)?;
            let stmt = tx
                .prepare_cached("UPDATE tenants SET counter = $2 WHERE tenant = $1")
                .await?;
            tx.execute(&stmt, &[&self.tenant, &counter]).await?;
        }
        Ok(())
    }

    /// The current state of each of `keys` (tombstones included), in the order of `keys`.
    async fn get_many(
        &self,
        tx: &Transaction<'_>,
        keys: &[Key],
    ) -> Result<Vec<Option<ItemMeta>>, TxError> {
        let names: Vec<&str> = keys.iter().map(Key::as_str).collect();
        let stmt = tx
            .prepare_cached(&format!(
                "SELECT {ITEM_COLUMNS} FROM items WHERE tenant = $1 AND key = ANY($2)"
            ))
            .await?;
        let rows = tx.query(&stmt, &[&self.tenant, &names]).await?;
        let mut found = Vec::with_capacity(rows.len());
        for row in &rows {
            found.push(item_from_row(row, 0)?);
        }
        Ok(keys
            .iter()
            .map(|k| found.iter().find(|m| &m.key == k).cloned())
            .collect())
    }

    /// The current state of `key`, tombstones included.
    async fn get(&self, tx: &Transaction<'_>, key: &Key) -> Result<Option<ItemMeta>, TxError> {
        Ok(self
            .get_many(tx, std::slice::from_ref(key))
            .await?
            .pop()
            .flatten())
    }

    /// Stores the rows of an accepted write and takes its counter.
    async fn store<T>(&mut self, tx: &Transaction<'_>, write: &Write<T>) -> Result<(), TxError> {
        for row in &write.rows {
            self.put(tx, &row.item, !row.current).await?;
        }
        self.feed_moved |= write.feed_head().is_some();
        self.counter = write.counter;
        Ok(())
    }

    /// Makes `item` current (unless `archived`) and records it in the history.
    async fn put(
        &self,
        tx: &Transaction<'_>,
        item: &ItemMeta,
        archived: bool,
    ) -> Result<(), TxError> {
        let rev = count_to_sql("revision", item.rev.0)?;
        let size = count_to_sql("size", item.size)?;
        let hash = item.hash.map(|h| h.to_hex());
        let millis = bits_to_sql(item.stamp.millis);
        let counter = i64::from(item.stamp.counter);
        let node = bits_to_sql(item.stamp.node.0);
        let kind = kind_to_sql(item.kind);
        let version = tx
            .prepare_cached(
                "INSERT INTO versions (tenant, rev, key, kind, hash, size, stamp_millis, \
                 stamp_counter, stamp_node, deleted, archived) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            )
            .await?;
        let key = item.key.as_str();
        let version_params: [&(dyn ToSql + Sync); 11] = [
            &self.tenant,
            &rev,
            &key,
            &kind,
            &hash,
            &size,
            &millis,
            &counter,
            &node,
            &item.deleted,
            &archived,
        ];
        let add_version = tx.execute(&version, &version_params);
        if archived {
            add_version.await?;
            return Ok(());
        }
        let current = tx
            .prepare_cached(&format!(
                "INSERT INTO items (tenant, {ITEM_COLUMNS}) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                 ON CONFLICT (tenant, key) DO UPDATE SET kind = excluded.kind, \
                 rev = excluded.rev, hash = excluded.hash, size = excluded.size, \
                 stamp_millis = excluded.stamp_millis, stamp_counter = excluded.stamp_counter, \
                 stamp_node = excluded.stamp_node, deleted = excluded.deleted"
            ))
            .await?;
        let current_params: [&(dyn ToSql + Sync); 10] = [
            &self.tenant,
            &key,
            &kind,
            &rev,
            &hash,
            &size,
            &millis,
            &counter,
            &node,
            &item.deleted,
        ];
        let set_current = tx.execute(&current, &current_params);
        // Both statements go out at once (tokio-postgres pipelines them).
        futures::try_join!(add_version, set_current)?;
        Ok(())
    }
}

/// Stores `content` under `hash` unless it is there already.
async fn put_blob(
    tx: &Transaction<'_>,
    hash: &ContentHash,
    content: &Bytes,
) -> Result<(), TxError> {
    let hex = hash.to_hex();
    if content.len() > LARGE {
        let stmt = tx
            .prepare_cached("SELECT EXISTS (SELECT 1 FROM blobs WHERE hash = $1)")
            .await?;
        let present: bool = tx.query_one(&stmt, &[&hex]).await?.try_get(0)?;
        if present {
            return Ok(());
        }
    }
    let stmt = tx
        .prepare_cached(
            "INSERT INTO blobs (hash, content) VALUES ($1, $2) ON CONFLICT (hash) DO NOTHING",
        )
        .await?;
    tx.execute(&stmt, &[&hex, &content.as_ref()]).await?;
    Ok(())
}

impl Inner {
    /// One attempt at a write transaction.
    async fn try_write(
        &self,
        client: &mut deadpool_postgres::Client,
        tenant: &TenantId,
        op: &Op,
    ) -> Result<Done, TxError> {
        let mut tx = client.transaction().await?;
        let mut w = Writer::lock(&tx, tenant.as_str()).await?;
        let done = match op {
            Op::Push(req) => Done::Push(self.apply_push(&tx, &mut w, req).await?),
            Op::Many(reqs) => {
                let mut results = Vec::with_capacity(reqs.len());
                for (req, checked) in reqs {
                    if let Err(e) = checked {
                        results.push(Err(e.clone()));
                        continue;
                    }
                    // Each request in its own savepoint: a refused one leaves no trace.
                    let sp = tx.transaction().await?;
                    let before = (w.counter, w.feed_moved);
                    match self.apply_push(&sp, &mut w, req).await {
                        Ok(outcome) => {
                            sp.commit().await?;
                            results.push(Ok(outcome));
                        }
                        Err(TxError::Core(e)) if !matches!(e, Error::Storage { .. }) => {
                            sp.rollback().await?;
                            (w.counter, w.feed_moved) = before;
                            results.push(Err(e));
                        }
                        Err(e) => return Err(e),
                    }
                }
                Done::Many(results)
            }
            Op::Delete(req) => {
                let current = w.get(&tx, &req.key).await?;
                let decision = self.rules.delete(req, current.as_ref(), w.counter)?;
                if let Decision::Accept(write) = &decision {
                    w.store(&tx, write).await?;
                }
                Done::Push(decision.into_outcome())
            }
            Op::Folder(req) => {
                let read = w.get_many(&tx, &keys_to_read(&req.key)).await?;
                let write = self.rules.folder(req, &read, w.counter)?;
                w.store(&tx, &write).await?;
                Done::Item(write.value)
            }
            Op::Archive(req) => {
                let write = self.rules.archive(req, w.counter)?;
                put_blob(&tx, &req.hash, &req.content).await?;
                w.store(&tx, &write).await?;
                Done::Version(write.value)
            }
        };
        self.finish(tx, &w, done).await
    }

    /// Notifies the other servers if the feed moved, and commits.
    async fn finish(
        &self,
        tx: Transaction<'_>,
        w: &Writer<'_>,
        done: Done,
    ) -> Result<Done, TxError> {
        w.save(&tx).await?;
        if w.feed_moved {
            let payload = if w.tenant.len() > MAX_PAYLOAD {
                ""
            } else {
                w.tenant
            };
            let stmt = tx.prepare_cached("SELECT pg_notify($1, $2)").await?;
            tx.execute(&stmt, &[&CHANNEL, &payload]).await?;
        }
        tx.commit().await?;
        Ok(done)
    }

    /// One push inside an open transaction or savepoint (content already checked).
    async fn apply_push(
        &self,
        tx: &Transaction<'_>,
        w: &mut Writer<'_>,
        req: &PushRequest,
    ) -> Result<PushOutcome, TxError> {
        let read = w.get_many(tx, &keys_to_read(&req.key)).await?;
        let decision = self.rules.push(req, &read, w.counter)?;
        if let Decision::Accept(write) = &decision {
            put_blob(tx, &req.hash, &req.content).await?;
            w.store(tx, write).await?;
        }
        Ok(decision.into_outcome())
    }
}

/// The unexpected answer of a write.
fn wrong_answer() -> Error {
    Error::storage("internal error: a write returned the wrong kind of result; report it as a bug")
}

#[async_trait]
impl ServerStore for PgServerStore {
    async fn check(&self) -> Result<()> {
        let client = self.client().await?;
        client.query_one("SELECT 1", &[]).await.map_err(pg)?;
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
        let since = count_to_sql("revision", feed_after(since, self.inner.epoch)?.0)?;
        let fetch = i64::try_from(rows_to_read(limit)).unwrap_or(i64::MAX);
        let epoch = self.inner.epoch;
        let client = self.client().await?;
        // The head and the page in one statement: one snapshot.
        let stmt = client
            .prepare_cached(&format!(
                "SELECT t.counter, i.key, i.kind, i.rev, i.hash, i.size, i.stamp_millis, \
                 i.stamp_counter, i.stamp_node, i.deleted \
                 FROM tenants t LEFT JOIN LATERAL ( \
                     SELECT {ITEM_COLUMNS} FROM items \
                     WHERE items.tenant = t.tenant AND items.rev > $2 \
                     ORDER BY items.rev LIMIT $3 \
                 ) i ON true \
                 WHERE t.tenant = $1 ORDER BY i.rev"
            ))
            .await
            .map_err(pg)?;
        let rows = client
            .query(&stmt, &[&tenant.as_str(), &since, &fetch])
            .await
            .map_err(pg)?;
        let mut head = Revision::ZERO;
        let mut changes = Vec::with_capacity(rows.len());
        for row in &rows {
            let counter: i64 = row.try_get(0).map_err(pg)?;
            head = Revision(crate::schema::count_from_sql("revision", counter)?);
            if row.try_get::<_, Option<String>>(1).map_err(pg)?.is_some() {
                changes.push(item_from_row(row, 1)?);
            }
        }
        Ok(change_page(epoch, head, changes, limit))
    }

    async fn fetch(&self, tenant: &TenantId, key: &Key, rev: Option<Revision>) -> Result<Fetched> {
        let not_found = || Error::NotFound { key: key.clone() };
        let client = self.client().await?;
        let row = match rev {
            None => {
                let stmt = client
                    .prepare_cached(&format!(
                        "SELECT v.kind, v.{}, b.content FROM items v \
                         LEFT JOIN blobs b ON b.hash = v.hash AND NOT v.deleted \
                         WHERE v.tenant = $1 AND v.key = $2",
                        VERSION_COLUMNS.replace(", ", ", v.")
                    ))
                    .await
                    .map_err(pg)?;
                client
                    .query_opt(&stmt, &[&tenant.as_str(), &key.as_str()])
                    .await
            }
            Some(rev) => {
                let Ok(rev) = i64::try_from(rev.0) else {
                    return Err(not_found());
                };
                let stmt = client
                    .prepare_cached(&format!(
                        "SELECT v.kind, v.{}, b.content FROM versions v \
                         LEFT JOIN blobs b ON b.hash = v.hash AND NOT v.deleted \
                         WHERE v.tenant = $1 AND v.key = $2 AND v.rev = $3",
                        VERSION_COLUMNS.replace(", ", ", v.")
                    ))
                    .await
                    .map_err(pg)?;
                client
                    .query_opt(&stmt, &[&tenant.as_str(), &key.as_str(), &rev])
                    .await
            }
        }
        .map_err(pg)?
        .ok_or_else(not_found)?;
        let kind = kind_from_sql(row.try_get(0).map_err(pg)?)?;
        let version = version_from_row(&row, 1)?;
        if version.deleted {
            return Err(not_found());
        }
        let content = match (kind, version.hash) {
            (ItemKind::File, Some(_)) => {
                let bytes: Option<Vec<u8>> = row.try_get(8).map_err(pg)?;
                Bytes::from(bytes.ok_or_else(|| {
                    Error::storage(format!(
                        "{key}: the content of revision {} is missing from the database; \
                         restore it from a backup",
                        version.rev
                    ))
                })?)
            }
            _ => Bytes::new(),
        };
        Ok(Fetched { version, content })
    }

    async fn push(&self, tenant: &TenantId, req: PushRequest) -> Result<PushOutcome> {
        check_content_off_thread(&req.key, &req.content, &req.hash, self.max_item_bytes()).await?;
        match self.write(tenant, &Op::Push(req)).await? {
            Done::Push(outcome) => Ok(outcome),
            _ => Err(wrong_answer()),
        }
    }

    async fn push_many(
        &self,
        tenant: &TenantId,
        reqs: Vec<PushRequest>,
    ) -> Result<Vec<Result<PushOutcome>>> {
        let limit = self.max_item_bytes();
        let mut checked = Vec::with_capacity(reqs.len());
        for req in reqs {
            let ok = check_content_off_thread(&req.key, &req.content, &req.hash, limit).await;
            checked.push((req, ok));
        }
        match self.write(tenant, &Op::Many(checked)).await? {
            Done::Many(results) => Ok(results),
            _ => Err(wrong_answer()),
        }
    }

    async fn delete(&self, tenant: &TenantId, req: DeleteRequest) -> Result<PushOutcome> {
        match self.write(tenant, &Op::Delete(req)).await? {
            Done::Push(outcome) => Ok(outcome),
            _ => Err(wrong_answer()),
        }
    }

    async fn ensure_folder(&self, tenant: &TenantId, req: FolderRequest) -> Result<ItemMeta> {
        match self.write(tenant, &Op::Folder(req)).await? {
            Done::Item(item) => Ok(item),
            _ => Err(wrong_answer()),
        }
    }

    async fn history(&self, tenant: &TenantId, key: &Key) -> Result<Vec<VersionMeta>> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!(
                "SELECT {VERSION_COLUMNS} FROM versions \
                 WHERE tenant = $1 AND key = $2 ORDER BY rev"
            ))
            .await
            .map_err(pg)?;
        let rows = client
            .query(&stmt, &[&tenant.as_str(), &key.as_str()])
            .await
            .map_err(pg)?;
        if rows.is_empty() {
            return Err(Error::NotFound { key: key.clone() });
        }
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            out.push(version_from_row(row, 0)?);
        }
        Ok(out)
    }

    async fn archive(&self, tenant: &TenantId, req: ArchiveRequest) -> Result<VersionMeta> {
        check_content_off_thread(&req.key, &req.content, &req.hash, self.max_item_bytes()).await?;
        match self.write(tenant, &Op::Archive(req)).await? {
            Done::Version(v) => Ok(v),
            _ => Err(wrong_answer()),
        }
    }

    async fn wait(
        &self,
        tenant: &TenantId,
        since: Option<&Cursor>,
        timeout: Duration,
    ) -> Result<bool> {
        let since = feed_after(since, self.inner.epoch)?;
        self.inner
            .watchers
            .wait_until(tenant.as_str(), timeout, || {
                self.has_changes_after(tenant, since)
            })
            .await
    }

    fn max_item_bytes(&self) -> u64 {
        self.inner.rules.config().max_item_bytes
    }
}
