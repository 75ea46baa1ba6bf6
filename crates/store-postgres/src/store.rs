//! [`PgServerStore`]: the server's [`ServerStore`] on PostgreSQL.
//!
//! Every write (push, delete, folder, archive, a whole `push_many`) takes two round trips on a
//! pooled connection, and holds its tenant's row lock for one statement only:
//!
//! 1. **read, no lock**: one statement reads the tenant's counter and the current state of the
//!    keys the rules need (the key and its parent folders, [`keys_to_read`]) from one snapshot;
//!    pipelined with it, a lookup of content over 64 KiB that may be stored already;
//! 2. **decide, in Rust**: [`sync_core::server::WriteRules`] say what to do with what was read.
//!    The rules are the same for every store and this file holds none of its own. A refusal,
//!    a conflict or a write with no rows (a folder path that exists) is answered here: it
//!    stands at the snapshot it was decided on;
//! 3. **apply, one statement**: `SELECT sync_apply(...)`, a PL/pgSQL function (schema migration
//!    3), in its own implicit transaction: it locks the tenant row (`FOR UPDATE`; writers of
//!    one tenant queue here, in every server process), checks that every key read still has
//!    the revision read (compare-and-set; absent stays absent), moves the decided revisions up
//!    by how many others issued since the read (counter now − counter read, the rule of
//!    [`sync_core::server::rebase`]), stores blobs (deduplicated by hash), versions, items and
//!    the counter, and calls `pg_notify('sync_changes', tenant)` when the feed moved. If a key
//!    changed, it writes nothing and returns NULL, and the write starts again from step 1
//!    (up to [`MAX_RACES`] times; a lost race on the same key usually ends as a conflict).
//! 4. **retention** (only with [`ServerConfig::retention`]): `SELECT sync_prune(...)`
//!    (migration 4), sent right behind step 3 on the same connection (pipelined, so no extra
//!    round trip) and run after it in its own transaction: it drops the old versions of the
//!    keys written and then the blobs nothing refers to, under `FOR UPDATE` on their rows in
//!    hash order. `sync_apply` takes `FOR KEY SHARE` on every blob its rows refer to and then
//!    checks that they exist (a serialization failure, run again from step 1, if a prune
//!    dropped one since the read), so a write never refers to a dropped blob, even one it
//!    found stored and did not send. A failed prune is logged; the write stands.
//!
//! Why this is correct: whatever the rules' answer depends on (the keys' state) is checked
//! under the lock; the counter only places the revisions, and moving all of a write's new
//! revisions up by the same amount keeps every property the rules give them (above the
//! counter and `seen`, distinct, increasing, gap-free). Each statement inside the function
//! reads the latest commits (READ COMMITTED, one snapshot per statement), and every writer of
//! a tenant holds its row lock until commit, so revisions still become visible in the order
//! they were issued: a reader never sees revision n+1 without n, and a feed cursor never skips
//! a change. A write that fails writes nothing and gives no revision back (no gaps, except
//! where the Lamport rule jumps to a client's `seen`, and archives, which take a revision
//! outside the feed). Content hash and size are checked before step 1. An apply that
//! PostgreSQL aborts as a deadlock or serialization failure is run again (up to
//! [`MAX_ATTEMPTS`] times); blobs are inserted in hash order so that two writes never wait on
//! each other's blobs in opposite orders.
//!
//! Reads are single statements (one snapshot each); `changes` reads the tenant's counter and
//! the page in one statement, so the cursor it returns is consistent with the page.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use sync_core::server::{
    change_page, check_content_off_thread, feed_after, keys_to_read, rebase, rows_to_read,
    Decision, Row, WriteRules, PRUNE_PER_WRITE,
};
use sync_core::{
    ArchiveRequest, ChangePage, ContentHash, Cursor, DeleteRequest, Epoch, Error, Fetched,
    FolderRequest, HistoryPage, HistoryRange, ItemKind, ItemMeta, Key, PushOutcome, PushRequest,
    Result, Revision, ServerConfig, ServerStore, TenantId, VersionMeta,
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

/// How many times a write is decided again because a key it read changed before its apply
/// (a lost race with a concurrent write of the same keys) before it fails as
/// [`Error::Throttled`] (retried by the client after a second; nothing was written).
pub const MAX_RACES: u32 = 16;

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

    /// Runs `op` for `tenant`: read, decide, apply ([module docs](self)); from the read again
    /// when a key it read changed before the apply (up to [`MAX_RACES`] times), or when
    /// PostgreSQL aborted the apply as a deadlock or serialization failure (up to
    /// [`MAX_ATTEMPTS`] times).
    async fn write(&self, tenant: &TenantId, op: &Op) -> Result<Done> {
        let client = self.client().await?;
        let (mut aborted, mut raced) = (1, 0);
        loop {
            match self.inner.try_write(&client, tenant, op).await {
                Ok(Some(done)) => return Ok(done),
                Ok(None) => {
                    raced += 1;
                    if raced >= MAX_RACES {
                        // Contention, not a broken store: the client waits and sends it again
                        // (429 with Retry-After over HTTP), and its sync is not shown as a
                        // storage failure.
                        return Err(Error::Throttled {
                            retry_after: Some(std::time::Duration::from_secs(1)),
                            message: format!(
                                "{}: concurrent writes changed what this write depends on \
                                 {raced} times in a row; nothing was written, and it is sent \
                                 again shortly",
                                op.what()
                            ),
                        });
                    }
                    tracing::debug!(
                        raced,
                        "a key changed between the read and the apply; reading again"
                    );
                    if raced > 2 {
                        tokio::time::sleep(Duration::from_millis(u64::from(raced))).await;
                    }
                }
                Err(TxError::Pg(e)) if aborted < MAX_ATTEMPTS && PgStoreError::is_retryable(&e) => {
                    tracing::debug!(aborted, error = %e, "PostgreSQL aborted a write; running it again");
                    tokio::time::sleep(Duration::from_millis(5 * u64::from(aborted))).await;
                    aborted += 1;
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

impl Op {
    /// The key written, for messages (the first one of a batch).
    fn what(&self) -> String {
        match self {
            Op::Push(req) => req.key.to_string(),
            Op::Many(reqs) => match reqs.first() {
                Some((req, _)) if reqs.len() > 1 => {
                    format!("{} (and {} more)", req.key, reqs.len() - 1)
                }
                Some((req, _)) => req.key.to_string(),
                None => "an empty batch".to_owned(),
            },
            Op::Delete(req) => req.key.to_string(),
            Op::Folder(req) => req.key.to_string(),
            Op::Archive(req) => req.key.to_string(),
        }
    }

    /// Every key whose current state the rules need, each once, in a stable order.
    fn keys(&self) -> Vec<Key> {
        let mut keys = match self {
            Op::Push(req) => keys_to_read(&req.key),
            Op::Many(reqs) => reqs
                .iter()
                .filter(|(_, checked)| checked.is_ok())
                .flat_map(|(req, _)| keys_to_read(&req.key))
                .collect(),
            Op::Delete(req) => vec![req.key.clone()],
            Op::Folder(req) => keys_to_read(&req.key),
            Op::Archive(_) => Vec::new(),
        };
        keys.sort();
        keys.dedup();
        keys
    }

    /// The content this write may store, with its hash.
    fn contents(&self) -> Vec<(&ContentHash, &Bytes)> {
        match self {
            Op::Push(req) => vec![(&req.hash, &req.content)],
            Op::Many(reqs) => reqs
                .iter()
                .filter(|(_, checked)| checked.is_ok())
                .map(|(req, _)| (&req.hash, &req.content))
                .collect(),
            Op::Archive(req) => vec![(&req.hash, &req.content)],
            Op::Delete(_) | Op::Folder(_) => Vec::new(),
        }
    }
}

impl Done {
    /// This answer with every revision the write issued moved up by `by`
    /// ([`sync_core::server::rebase`]).
    fn rebased(self, decided_on: Revision, by: u64) -> Result<Done> {
        let item = |mut m: ItemMeta| -> Result<ItemMeta> {
            m.rev = rebase(m.rev, decided_on, by)?;
            Ok(m)
        };
        let outcome = |o: PushOutcome| -> Result<PushOutcome> {
            Ok(match o {
                PushOutcome::Accepted(m) => PushOutcome::Accepted(item(m)?),
                PushOutcome::Conflict { current } => PushOutcome::Conflict {
                    current: current.map(item).transpose()?,
                },
            })
        };
        Ok(match self {
            Done::Push(o) => Done::Push(outcome(o)?),
            Done::Many(results) => Done::Many(
                results
                    .into_iter()
                    .map(|r| match r {
                        Ok(o) => outcome(o).map(Ok),
                        Err(e) => Ok(Err(e)),
                    })
                    .collect::<Result<_>>()?,
            ),
            Done::Item(m) => Done::Item(item(m)?),
            Done::Version(mut v) => {
                v.rev = rebase(v.rev, decided_on, by)?;
                Done::Version(v)
            }
        })
    }
}

/// What a write read, in one statement and without any lock: the tenant's counter and the
/// current state (tombstones included) of every key of [`Op::keys`], from one snapshot.
struct Snapshot {
    counter: Revision,
    items: Vec<(Key, Option<ItemMeta>)>,
}

impl Snapshot {
    /// The state of `key` as read (`None` also for a key that was not read).
    fn get(&self, key: &Key) -> Option<ItemMeta> {
        self.items
            .iter()
            .find(|(k, _)| k == key)
            .and_then(|(_, m)| m.clone())
    }
}

/// What the rules decided: the rows to store (none: nothing to write, the answer stands as
/// read), the counter after them, and the answer.
struct Plan<'a> {
    rows: Vec<Row>,
    counter: Revision,
    /// The content of accepted pushes and archives.
    blobs: Vec<(&'a ContentHash, &'a Bytes)>,
    done: Done,
}

/// Reads the counter and `keys` of `tenant` in one statement (one snapshot).
async fn read_snapshot(
    client: &deadpool_postgres::Client,
    tenant: &str,
    keys: &[Key],
) -> Result<Snapshot, TxError> {
    let names: Vec<&str> = keys.iter().map(Key::as_str).collect();
    let stmt = client
        .prepare_cached(&format!(
            "SELECT coalesce((SELECT counter FROM tenants WHERE tenant = $1), 0), \
             i.key, i.kind, i.rev, i.hash, i.size, i.stamp_millis, i.stamp_counter, \
             i.stamp_node, i.deleted \
             FROM (SELECT 1) AS one LEFT JOIN LATERAL ( \
                 SELECT {ITEM_COLUMNS} FROM items WHERE tenant = $1 AND key = ANY($2) \
             ) i ON true"
        ))
        .await?;
    let rows = client.query(&stmt, &[&tenant, &names]).await?;
    let mut counter = Revision::ZERO;
    let mut found = Vec::with_capacity(rows.len());
    for row in &rows {
        counter = Revision(count_from_sql("revision", row.try_get(0)?)?);
        if row.try_get::<_, Option<String>>(1)?.is_some() {
            found.push(item_from_row(row, 1)?);
        }
    }
    let items = keys
        .iter()
        .map(|k| (k.clone(), found.iter().find(|m| &m.key == k).cloned()))
        .collect();
    Ok(Snapshot { counter, items })
}

/// Which of the large contents `hashes` the database holds already (those are not sent).
async fn blobs_present(
    client: &deadpool_postgres::Client,
    hashes: &[String],
) -> Result<Vec<String>, TxError> {
    if hashes.is_empty() {
        return Ok(Vec::new());
    }
    let stmt = client
        .prepare_cached("SELECT hash FROM blobs WHERE hash = ANY($1)")
        .await?;
    let rows = client.query(&stmt, &[&hashes]).await?;
    rows.iter()
        .map(|r| r.try_get(0).map_err(TxError::Pg))
        .collect()
}

/// The arrays of `sync_apply`'s row parameters (one element per row, in order).
#[derive(Default)]
struct RowArrays<'a> {
    keys: Vec<&'a str>,
    kinds: Vec<&'static str>,
    revs: Vec<i64>,
    hashes: Vec<Option<String>>,
    sizes: Vec<i64>,
    millis: Vec<i64>,
    counters: Vec<i64>,
    nodes: Vec<i64>,
    deleted: Vec<bool>,
    current: Vec<bool>,
}

impl<'a> RowArrays<'a> {
    /// The arrays of `rows`, converted to their SQL types.
    fn new(rows: &'a [Row]) -> Result<RowArrays<'a>, PgStoreError> {
        let mut a = RowArrays::default();
        for Row { item, current } in rows {
            a.keys.push(item.key.as_str());
            a.kinds.push(kind_to_sql(item.kind));
            a.revs.push(count_to_sql("revision", item.rev.0)?);
            a.hashes.push(item.hash.map(|h| h.to_hex()));
            a.sizes.push(count_to_sql("size", item.size)?);
            a.millis.push(bits_to_sql(item.stamp.millis));
            a.counters.push(i64::from(item.stamp.counter));
            a.nodes.push(bits_to_sql(item.stamp.node.0));
            a.deleted.push(item.deleted);
            a.current.push(*current);
        }
        Ok(a)
    }
}

impl Inner {
    /// One attempt: read, decide, apply. `None` when a key read changed before the apply
    /// (nothing was written; read again).
    async fn try_write(
        &self,
        client: &deadpool_postgres::Client,
        tenant: &TenantId,
        op: &Op,
    ) -> Result<Option<Done>, TxError> {
        let keys = op.keys();
        let mut large: Vec<String> = op
            .contents()
            .iter()
            .filter(|(_, c)| c.len() > LARGE)
            .map(|(h, _)| h.to_hex())
            .collect();
        large.sort();
        large.dedup();
        // Both statements go out at once (tokio-postgres pipelines them).
        let (snapshot, present) = futures::try_join!(
            read_snapshot(client, tenant.as_str(), &keys),
            blobs_present(client, &large)
        )?;
        let plan = self.decide(op, &snapshot)?;
        if plan.rows.is_empty() {
            return Ok(Some(plan.done));
        }
        // With retention on, the prune goes out right behind the apply (pipelined: still two
        // round trips) and runs after it on the same connection, in its own transaction.
        let (applied, pruned) = futures::join!(
            self.apply(client, tenant, &snapshot, &plan, &present),
            self.prune(client, tenant, &plan.rows)
        );
        if let Err(e) = pruned {
            // The write stands; the versions go at the key's next write.
            tracing::warn!(error = %Error::from(e), "retention could not drop old versions");
        }
        match applied? {
            Some(by) => Ok(Some(plan.done.rebased(snapshot.counter, by)?)),
            None => Ok(None),
        }
    }

    /// Retention after a write (`sync_prune`, migration 4, [`schema`](crate::schema)): drops
    /// the versions of the keys of `rows` that the store's
    /// [`Retention`](sync_core::server::Retention) lets go (at most
    /// [`PRUNE_PER_WRITE`] in all), and the blobs nothing refers to any more, in one statement.
    /// The rule is `Retention::prunable`'s, as SQL (the conformance suite checks that every
    /// store drops the same versions). Nothing to do without retention or rows.
    async fn prune(
        &self,
        client: &deadpool_postgres::Client,
        tenant: &TenantId,
        rows: &[Row],
    ) -> Result<u64, TxError> {
        let Some(retention) = self.rules.config().retention else {
            return Ok(0);
        };
        if rows.is_empty() {
            return Ok(0);
        }
        let mut keys: Vec<&str> = rows.iter().map(|r| r.item.key.as_str()).collect();
        keys.sort_unstable();
        keys.dedup();
        let keep = i64::try_from(retention.keep_versions()).unwrap_or(i64::MAX);
        let cutoff = bits_to_sql(retention.cutoff_millis(self.rules.config().time.now_millis()));
        let limit = i64::try_from(PRUNE_PER_WRITE).unwrap_or(i64::MAX);
        let stmt = client
            .prepare_cached("SELECT sync_prune($1, $2, $3, $4, $5)")
            .await?;
        let dropped: i64 = client
            .query_one(&stmt, &[&tenant.as_str(), &keys, &keep, &cutoff, &limit])
            .await?
            .try_get(0)?;
        Ok(count_from_sql("versions dropped", dropped)?)
    }

    /// Asks the rules what `op` does on `snapshot`. A batch is decided request by request,
    /// each on the state the ones before it leave (a refused or conflicting request leaves
    /// none).
    fn decide<'a>(&self, op: &'a Op, snapshot: &Snapshot) -> Result<Plan<'a>, TxError> {
        let counter = snapshot.counter;
        let read = |state: &Snapshot, key: &Key| -> Vec<Option<ItemMeta>> {
            keys_to_read(key).iter().map(|k| state.get(k)).collect()
        };
        let plan = |rows, counter, blobs, done| Plan {
            rows,
            counter,
            blobs,
            done,
        };
        Ok(match op {
            Op::Push(req) => match self.rules.push(req, &read(snapshot, &req.key), counter)? {
                Decision::Accept(w) => plan(
                    w.rows,
                    w.counter,
                    vec![(&req.hash, &req.content)],
                    Done::Push(PushOutcome::Accepted(w.value)),
                ),
                conflict => plan(
                    Vec::new(),
                    counter,
                    Vec::new(),
                    Done::Push(conflict.into_outcome()),
                ),
            },
            Op::Many(reqs) => {
                let mut state = Snapshot {
                    counter,
                    items: snapshot.items.clone(),
                };
                let (mut rows, mut blobs) = (Vec::new(), Vec::new());
                let mut results = Vec::with_capacity(reqs.len());
                for (req, checked) in reqs {
                    if let Err(e) = checked {
                        results.push(Err(e.clone()));
                        continue;
                    }
                    match self.rules.push(req, &read(&state, &req.key), state.counter) {
                        Ok(Decision::Accept(w)) => {
                            for row in w.rows.iter().filter(|r| r.current) {
                                if let Some(slot) =
                                    state.items.iter_mut().find(|(k, _)| k == &row.item.key)
                                {
                                    slot.1 = Some(row.item.clone());
                                }
                            }
                            state.counter = w.counter;
                            rows.extend(w.rows);
                            blobs.push((&req.hash, &req.content));
                            results.push(Ok(PushOutcome::Accepted(w.value)));
                        }
                        Ok(conflict) => results.push(Ok(conflict.into_outcome())),
                        Err(e) if !matches!(e, Error::Storage { .. }) => results.push(Err(e)),
                        Err(e) => return Err(e.into()),
                    }
                }
                plan(rows, state.counter, blobs, Done::Many(results))
            }
            Op::Delete(req) => {
                match self
                    .rules
                    .delete(req, snapshot.get(&req.key).as_ref(), counter)?
                {
                    Decision::Accept(w) => plan(
                        w.rows,
                        w.counter,
                        Vec::new(),
                        Done::Push(PushOutcome::Accepted(w.value)),
                    ),
                    conflict => plan(
                        Vec::new(),
                        counter,
                        Vec::new(),
                        Done::Push(conflict.into_outcome()),
                    ),
                }
            }
            Op::Folder(req) => {
                let w = self.rules.folder(req, &read(snapshot, &req.key), counter)?;
                plan(w.rows, w.counter, Vec::new(), Done::Item(w.value))
            }
            Op::Archive(req) => {
                let w = self.rules.archive(req, counter)?;
                plan(
                    w.rows,
                    w.counter,
                    vec![(&req.hash, &req.content)],
                    Done::Version(w.value),
                )
            }
        })
    }

    /// Stores `plan` in one statement: `sync_apply` (migration 3, [`schema`](crate::schema))
    /// locks the tenant row, checks that every key of `snapshot` is still as read, moves the
    /// plan's revisions up by however many others issued since the read, stores blobs, versions,
    /// items and the counter, and notifies. Returns that shift, or `None` when a key had
    /// changed (nothing was written).
    async fn apply(
        &self,
        client: &deadpool_postgres::Client,
        tenant: &TenantId,
        snapshot: &Snapshot,
        plan: &Plan<'_>,
        present: &[String],
    ) -> Result<Option<u64>, TxError> {
        let read = count_to_sql("revision", snapshot.counter.0)?;
        let counter = count_to_sql("revision", plan.counter.0)?;
        let check_keys: Vec<&str> = snapshot.items.iter().map(|(k, _)| k.as_str()).collect();
        let check_revs: Vec<Option<i64>> = snapshot
            .items
            .iter()
            .map(|(_, m)| {
                m.as_ref()
                    .map(|m| count_to_sql("revision", m.rev.0))
                    .transpose()
            })
            .collect::<Result<_, _>>()?;
        let r = RowArrays::new(&plan.rows)?;
        // Each blob once, in hash order (two writes storing the same blobs never wait on each
        // other in opposite orders); those already stored are not sent again.
        let mut blobs: Vec<(String, &[u8])> = plan
            .blobs
            .iter()
            .map(|(h, c)| (h.to_hex(), c.as_ref()))
            .filter(|(h, _)| !present.contains(h))
            .collect();
        blobs.sort_by(|a, b| a.0.cmp(&b.0));
        blobs.dedup_by(|a, b| a.0 == b.0);
        let (blob_hashes, blob_contents): (Vec<String>, Vec<&[u8]>) = blobs.into_iter().unzip();
        let tenant = tenant.as_str();
        let payload: Option<&str> =
            plan.rows
                .iter()
                .any(|r| r.current)
                .then_some(if tenant.len() > MAX_PAYLOAD {
                    ""
                } else {
                    tenant
                });
        let stmt = client
            .prepare_cached(
                "SELECT sync_apply($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, \
                 $14, $15, $16, $17, $18, $19)",
            )
            .await?;
        let params: [&(dyn ToSql + Sync); 19] = [
            &tenant,
            &read,
            &counter,
            &check_keys,
            &check_revs,
            &r.keys,
            &r.kinds,
            &r.revs,
            &r.hashes,
            &r.sizes,
            &r.millis,
            &r.counters,
            &r.nodes,
            &r.deleted,
            &r.current,
            &blob_hashes,
            &blob_contents,
            &CHANNEL,
            &payload,
        ];
        let shift: Option<i64> = client.query_one(&stmt, &params).await?.try_get(0)?;
        shift
            .map(|s| count_from_sql("revision shift", s).map_err(TxError::from))
            .transpose()
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

    /// One statement (one snapshot): the page, read on the `versions_by_key` index, at most
    /// one row more than the page size, and whether the key has any version at all (a second
    /// index probe that matters only when the page is empty).
    async fn history(
        &self,
        tenant: &TenantId,
        key: &Key,
        range: HistoryRange,
    ) -> Result<HistoryPage> {
        let before = range
            .before
            .map_or(i64::MAX, |r| i64::try_from(r.0).unwrap_or(i64::MAX));
        let fetch = i64::try_from(range.page_size() + 1).unwrap_or(i64::MAX);
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!(
                "SELECT EXISTS (SELECT 1 FROM versions WHERE tenant = $1 AND key = $2), p.* \
                 FROM (SELECT 1) AS one LEFT JOIN LATERAL ( \
                     SELECT {VERSION_COLUMNS} FROM versions \
                     WHERE tenant = $1 AND key = $2 AND rev < $3 \
                     ORDER BY rev DESC LIMIT $4 \
                 ) p ON true ORDER BY p.rev DESC"
            ))
            .await
            .map_err(pg)?;
        let rows = client
            .query(&stmt, &[&tenant.as_str(), &key.as_str(), &before, &fetch])
            .await
            .map_err(pg)?;
        let mut out = Vec::with_capacity(rows.len());
        let mut known = false;
        for row in &rows {
            known = row.try_get(0).map_err(pg)?;
            if row.try_get::<_, Option<i64>>(1).map_err(pg)?.is_some() {
                out.push(version_from_row(row, 1)?);
            }
        }
        if !known {
            return Err(Error::NotFound { key: key.clone() });
        }
        Ok(HistoryPage::from_rows(out, range))
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
