//! The database schema: forward-only migrations applied at [`crate::PgServerStore::connect`],
//! the store's epoch, and the conversions between sync-core values and SQL columns.
//!
//! Migrations are SQL steps in `MIGRATIONS`, numbered from 1. `migrate` applies the missing
//! ones in one transaction under a transaction-scoped advisory lock (one per schema), so two
//! servers starting at once never race: the second waits, then finds them applied. Applied
//! versions are recorded in `schema_migrations`; a database migrated by a newer version of this
//! crate is refused rather than guessed at. To change the schema, append a step; never edit one
//! that has shipped.
//!
//! Storage of numbers: PostgreSQL has no unsigned integers. Revisions and sizes are stored as
//! `BIGINT` and kept below 2^63 (the store refuses a `seen` that would pass it); stamp
//! milliseconds and node ids, which are only compared in Rust, are stored bit for bit
//! (`u64 as i64`), so every `u64` round-trips.

use deadpool_postgres::Client;
use sync_core::{
    ContentHash, Epoch, ItemKind, ItemMeta, Key, NodeId, Revision, Stamp, VersionMeta,
};
use tokio_postgres::Row;

use crate::error::PgStoreError;

/// One forward step of the schema.
#[derive(Debug)]
pub(crate) struct Migration {
    /// Its number, from 1, in order.
    pub(crate) version: i32,
    /// The SQL it runs.
    pub(crate) sql: &'static str,
}

/// Every schema step, in order.
pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        sql: r#"
CREATE TABLE meta (
    name  TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
-- One row per tenant: the last revision issued (the Lamport counter, docs/SPEC.md §2). Every write
-- locks this row first, so writers of one tenant run one after another.
CREATE TABLE tenants (
    tenant  TEXT PRIMARY KEY,
    counter BIGINT NOT NULL CHECK (counter >= 0)
);
-- The current version of every key (tombstones included): the change feed, by (tenant, rev).
CREATE TABLE items (
    tenant        TEXT    NOT NULL,
    key           TEXT    NOT NULL,
    kind          TEXT    NOT NULL CHECK (kind IN ('file', 'folder')),
    rev           BIGINT  NOT NULL CHECK (rev > 0),
    hash          TEXT,
    size          BIGINT  NOT NULL,
    stamp_millis  BIGINT  NOT NULL,
    stamp_counter BIGINT  NOT NULL,
    stamp_node    BIGINT  NOT NULL,
    deleted       BOOLEAN NOT NULL,
    PRIMARY KEY (tenant, key),
    UNIQUE (tenant, rev)
);
-- Every accepted version, archived ones (a conflict's loser) included: history and
-- fetch-by-revision. Revisions are unique per tenant.
CREATE TABLE versions (
    tenant        TEXT    NOT NULL,
    rev           BIGINT  NOT NULL,
    key           TEXT    NOT NULL,
    kind          TEXT    NOT NULL CHECK (kind IN ('file', 'folder')),
    hash          TEXT,
    size          BIGINT  NOT NULL,
    stamp_millis  BIGINT  NOT NULL,
    stamp_counter BIGINT  NOT NULL,
    stamp_node    BIGINT  NOT NULL,
    deleted       BOOLEAN NOT NULL,
    archived      BOOLEAN NOT NULL,
    PRIMARY KEY (tenant, rev)
);
CREATE INDEX versions_by_key ON versions (tenant, key, rev);
-- Content, once per blake3 hash (lower-case hex), whoever stored it.
CREATE TABLE blobs (
    hash    TEXT PRIMARY KEY,
    content BYTEA NOT NULL
);
"#,
    },
    // Device tokens: only their hash is kept (`sync_core::server::TokenStore`).
    Migration {
        version: 2,
        sql: r#"
CREATE TABLE tokens (
    id               TEXT PRIMARY KEY,
    hash             TEXT NOT NULL UNIQUE,
    tenant           TEXT NOT NULL,
    device           TEXT NOT NULL,
    created_millis   BIGINT NOT NULL,
    last_used_millis BIGINT,
    revoked_millis   BIGINT,
    seq              BIGSERIAL
);
"#,
    },
    // The write path's one statement (crate::store module docs): under the tenant's row lock,
    // check that the keys the rules read are unchanged (compare-and-set on their revisions),
    // move the decided revisions up by what others issued since the read, store everything,
    // notify. Returns that shift, or NULL when a key changed (nothing written). PL/pgSQL so
    // that each statement after the lock reads the latest commits (READ COMMITTED).
    Migration {
        version: 3,
        sql: r#"
CREATE FUNCTION sync_apply(
    p_tenant text, p_read bigint, p_counter bigint,
    p_check_keys text[], p_check_revs bigint[],
    p_keys text[], p_kinds text[], p_revs bigint[], p_hashes text[], p_sizes bigint[],
    p_stamp_millis bigint[], p_stamp_counters bigint[], p_stamp_nodes bigint[],
    p_deleted boolean[], p_current boolean[],
    p_blob_hashes text[], p_blobs bytea[],
    p_channel text, p_payload text
) RETURNS bigint LANGUAGE plpgsql AS $fn$
DECLARE
    v_counter bigint;
    v_shift bigint;
BEGIN
    SELECT counter INTO v_counter FROM tenants WHERE tenant = p_tenant FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO tenants (tenant, counter) VALUES (p_tenant, 0)
            ON CONFLICT (tenant) DO NOTHING;
        SELECT counter INTO v_counter FROM tenants WHERE tenant = p_tenant FOR UPDATE;
    END IF;
    IF EXISTS (
        SELECT 1 FROM unnest(p_check_keys, p_check_revs) AS r(key, rev)
        LEFT JOIN items i ON i.tenant = p_tenant AND i.key = r.key
        WHERE i.rev IS DISTINCT FROM r.rev
    ) THEN
        RETURN NULL;
    END IF;
    v_shift := v_counter - p_read;
    IF v_shift < 0 THEN
        RAISE EXCEPTION 'the counter of tenant % went back from % to %', p_tenant, p_read, v_counter;
    END IF;
    INSERT INTO blobs (hash, content)
        SELECT b.hash, b.content FROM unnest(p_blob_hashes, p_blobs) AS b(hash, content)
        ON CONFLICT (hash) DO NOTHING;
    INSERT INTO versions (tenant, rev, key, kind, hash, size, stamp_millis, stamp_counter,
                          stamp_node, deleted, archived)
        SELECT p_tenant, r.rev + v_shift, r.key, r.kind, r.hash, r.size, r.millis, r.counter,
               r.node, r.deleted, NOT r.current
        FROM unnest(p_keys, p_kinds, p_revs, p_hashes, p_sizes, p_stamp_millis,
                    p_stamp_counters, p_stamp_nodes, p_deleted, p_current)
             AS r(key, kind, rev, hash, size, millis, counter, node, deleted, current);
    INSERT INTO items AS it (tenant, key, kind, rev, hash, size, stamp_millis, stamp_counter,
                             stamp_node, deleted)
        SELECT DISTINCT ON (r.key) p_tenant, r.key, r.kind, r.rev + v_shift, r.hash, r.size,
               r.millis, r.counter, r.node, r.deleted
        FROM unnest(p_keys, p_kinds, p_revs, p_hashes, p_sizes, p_stamp_millis,
                    p_stamp_counters, p_stamp_nodes, p_deleted, p_current)
             AS r(key, kind, rev, hash, size, millis, counter, node, deleted, current)
        WHERE r.current
        ORDER BY r.key, r.rev DESC
        ON CONFLICT (tenant, key) DO UPDATE SET kind = excluded.kind, rev = excluded.rev,
            hash = excluded.hash, size = excluded.size, stamp_millis = excluded.stamp_millis,
            stamp_counter = excluded.stamp_counter, stamp_node = excluded.stamp_node,
            deleted = excluded.deleted;
    UPDATE tenants SET counter = p_counter + v_shift WHERE tenant = p_tenant;
    IF p_payload IS NOT NULL THEN
        PERFORM pg_notify(p_channel, p_payload);
    END IF;
    RETURN v_shift;
END
$fn$;
"#,
    },
    // Retention (`sync_core::server::Retention`): versions by content hash (is a blob still
    // referred to?), `sync_apply` locking the blobs it refers to, and `sync_prune`, which a
    // write runs after its apply when retention is on: it drops the versions of the keys just
    // written that are beyond the newest `p_keep`, stamped before `p_cutoff` and not current
    // (at most `p_limit`, oldest first), then the blobs no version refers to any more, under
    // FOR UPDATE in hash order. One statement, so one transaction: all or nothing.
    Migration {
        version: 4,
        sql: r#"
CREATE INDEX versions_by_hash ON versions (hash);
CREATE OR REPLACE FUNCTION sync_apply(
    p_tenant text, p_read bigint, p_counter bigint,
    p_check_keys text[], p_check_revs bigint[],
    p_keys text[], p_kinds text[], p_revs bigint[], p_hashes text[], p_sizes bigint[],
    p_stamp_millis bigint[], p_stamp_counters bigint[], p_stamp_nodes bigint[],
    p_deleted boolean[], p_current boolean[],
    p_blob_hashes text[], p_blobs bytea[],
    p_channel text, p_payload text
) RETURNS bigint LANGUAGE plpgsql AS $fn$
DECLARE
    v_counter bigint;
    v_shift bigint;
BEGIN
    SELECT counter INTO v_counter FROM tenants WHERE tenant = p_tenant FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO tenants (tenant, counter) VALUES (p_tenant, 0)
            ON CONFLICT (tenant) DO NOTHING;
        SELECT counter INTO v_counter FROM tenants WHERE tenant = p_tenant FOR UPDATE;
    END IF;
    IF EXISTS (
        SELECT 1 FROM unnest(p_check_keys, p_check_revs) AS r(key, rev)
        LEFT JOIN items i ON i.tenant = p_tenant AND i.key = r.key
        WHERE i.rev IS DISTINCT FROM r.rev
    ) THEN
        RETURN NULL;
    END IF;
    v_shift := v_counter - p_read;
    IF v_shift < 0 THEN
        RAISE EXCEPTION 'the counter of tenant % went back from % to %', p_tenant, p_read, v_counter;
    END IF;
    INSERT INTO blobs (hash, content)
        SELECT b.hash, b.content FROM unnest(p_blob_hashes, p_blobs) AS b(hash, content)
        ON CONFLICT (hash) DO NOTHING;
    -- Retention may be dropping blobs (sync_prune): lock every blob this write refers to
    -- (KEY SHARE conflicts with the FOR UPDATE sync_prune takes), in hash order, so none goes
    -- until this commits, then check that they are all there (a new statement: it sees what a
    -- prune committed). One gone means a prune dropped it after the read, or between the
    -- insert above and the lock: abort as a serialization failure, which the store runs
    -- again from the read (then the content is sent).
    PERFORM 1 FROM blobs
        WHERE hash IN (SELECT DISTINCT h FROM unnest(p_hashes) AS h WHERE h IS NOT NULL)
        ORDER BY hash FOR KEY SHARE;
    IF EXISTS (
        SELECT 1 FROM unnest(p_hashes) AS r(h)
        WHERE r.h IS NOT NULL AND NOT EXISTS (SELECT 1 FROM blobs b WHERE b.hash = r.h)
    ) THEN
        RAISE EXCEPTION 'a blob this write refers to was just dropped by retention'
            USING ERRCODE = 'serialization_failure';
    END IF;
    INSERT INTO versions (tenant, rev, key, kind, hash, size, stamp_millis, stamp_counter,
                          stamp_node, deleted, archived)
        SELECT p_tenant, r.rev + v_shift, r.key, r.kind, r.hash, r.size, r.millis, r.counter,
               r.node, r.deleted, NOT r.current
        FROM unnest(p_keys, p_kinds, p_revs, p_hashes, p_sizes, p_stamp_millis,
                    p_stamp_counters, p_stamp_nodes, p_deleted, p_current)
             AS r(key, kind, rev, hash, size, millis, counter, node, deleted, current);
    INSERT INTO items AS it (tenant, key, kind, rev, hash, size, stamp_millis, stamp_counter,
                             stamp_node, deleted)
        SELECT DISTINCT ON (r.key) p_tenant, r.key, r.kind, r.rev + v_shift, r.hash, r.size,
               r.millis, r.counter, r.node, r.deleted
        FROM unnest(p_keys, p_kinds, p_revs, p_hashes, p_sizes, p_stamp_millis,
                    p_stamp_counters, p_stamp_nodes, p_deleted, p_current)
             AS r(key, kind, rev, hash, size, millis, counter, node, deleted, current)
        WHERE r.current
        ORDER BY r.key, r.rev DESC
        ON CONFLICT (tenant, key) DO UPDATE SET kind = excluded.kind, rev = excluded.rev,
            hash = excluded.hash, size = excluded.size, stamp_millis = excluded.stamp_millis,
            stamp_counter = excluded.stamp_counter, stamp_node = excluded.stamp_node,
            deleted = excluded.deleted;
    UPDATE tenants SET counter = p_counter + v_shift WHERE tenant = p_tenant;
    IF p_payload IS NOT NULL THEN
        PERFORM pg_notify(p_channel, p_payload);
    END IF;
    RETURN v_shift;
END
$fn$;
CREATE FUNCTION sync_prune(
    p_tenant text, p_keys text[], p_keep bigint, p_cutoff bigint, p_limit bigint
) RETURNS bigint LANGUAGE plpgsql AS $fn$
DECLARE
    v_key text;
    v_threshold bigint;
    v_current bigint;
    v_left bigint := p_limit;
    v_hashes text[] := '{}';
    v_gone text[];
    v_n bigint;
BEGIN
    FOREACH v_key IN ARRAY p_keys LOOP
        EXIT WHEN v_left <= 0;
        -- The newest revision beyond the kept count: only it and older ones may go.
        SELECT rev INTO v_threshold FROM versions
            WHERE tenant = p_tenant AND key = v_key ORDER BY rev DESC OFFSET p_keep LIMIT 1;
        CONTINUE WHEN v_threshold IS NULL;
        SELECT rev INTO v_current FROM items WHERE tenant = p_tenant AND key = v_key;
        WITH gone AS (
            DELETE FROM versions WHERE tenant = p_tenant AND rev IN (
                SELECT rev FROM versions
                WHERE tenant = p_tenant AND key = v_key AND rev <= v_threshold
                  AND stamp_millis < p_cutoff AND rev IS DISTINCT FROM v_current
                ORDER BY rev LIMIT v_left
            ) RETURNING hash
        )
        SELECT coalesce(array_agg(hash) FILTER (WHERE hash IS NOT NULL), '{}'), count(*)
            INTO v_gone, v_n FROM gone;
        v_hashes := v_hashes || v_gone;
        v_left := v_left - v_n;
    END LOOP;
    IF cardinality(v_hashes) > 0 THEN
        PERFORM 1 FROM blobs WHERE hash = ANY (v_hashes) ORDER BY hash FOR UPDATE;
        -- A new statement: it sees every write that held one of these blobs and committed.
        DELETE FROM blobs b WHERE b.hash = ANY (v_hashes)
            AND NOT EXISTS (SELECT 1 FROM versions v WHERE v.hash = b.hash);
    END IF;
    RETURN p_limit - v_left;
END
$fn$;
"#,
    },
];

/// The newest schema version this code knows.
pub(crate) const LATEST: i32 = MIGRATIONS[MIGRATIONS.len() - 1].version;

/// The first key of the advisory lock taken while migrating (the second is the schema's
/// hash): ASCII "SYNC".
const MIGRATION_LOCK: i32 = 0x5359_4e43;

/// Applies every missing migration and reads (making it on first use) the store's epoch, in
/// one transaction under the migration lock. With `new_epoch`, the stored epoch is replaced by
/// a new random one first (a database restored from a backup).
pub(crate) async fn migrate(client: &mut Client, new_epoch: bool) -> Result<Epoch, PgStoreError> {
    let tx = client.transaction().await?;
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, hashtext(coalesce(current_schema(), '')))",
        &[&MIGRATION_LOCK],
    )
    .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version    INTEGER PRIMARY KEY,
             applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
         )",
    )
    .await
    .map_err(|source| PgStoreError::Migration { version: 0, source })?;
    let applied: Vec<i32> = tx
        .query(
            "SELECT version FROM schema_migrations ORDER BY version",
            &[],
        )
        .await?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()?;
    if let Some(&found) = applied.iter().max().filter(|&&v| v > LATEST) {
        return Err(PgStoreError::NewerSchema {
            found,
            supported: LATEST,
        });
    }
    for m in MIGRATIONS.iter().filter(|m| !applied.contains(&m.version)) {
        tracing::info!(version = m.version, "applying PostgreSQL schema migration");
        let fail = |source| PgStoreError::Migration {
            version: m.version,
            source,
        };
        tx.batch_execute(m.sql).await.map_err(fail)?;
        tx.execute(
            "INSERT INTO schema_migrations (version) VALUES ($1)",
            &[&m.version],
        )
        .await
        .map_err(fail)?;
    }
    if new_epoch {
        tx.execute("DELETE FROM meta WHERE name = 'epoch'", &[])
            .await?;
    }
    tx.execute(
        "INSERT INTO meta (name, value) VALUES ('epoch', $1) ON CONFLICT (name) DO NOTHING",
        &[&bits_to_sql(Epoch::random().0)],
    )
    .await?;
    let epoch: i64 = tx
        .query_one("SELECT value FROM meta WHERE name = 'epoch'", &[])
        .await?
        .try_get(0)?;
    tx.commit().await?;
    Ok(Epoch(bits_from_sql(epoch)))
}

/// A `u64` stored bit for bit in a `BIGINT` (stamp millis, node ids, the epoch).
pub(crate) fn bits_to_sql(v: u64) -> i64 {
    v as i64
}

/// The inverse of [`bits_to_sql`].
pub(crate) fn bits_from_sql(v: i64) -> u64 {
    v as u64
}

/// A count (revision, size) stored as a non-negative `BIGINT`.
pub(crate) fn count_to_sql(what: &'static str, v: u64) -> Result<i64, PgStoreError> {
    i64::try_from(v).map_err(|_| PgStoreError::bad(what, format!("{v} does not fit in a BIGINT")))
}

/// A non-negative `BIGINT` count.
pub(crate) fn count_from_sql(what: &'static str, v: i64) -> Result<u64, PgStoreError> {
    u64::try_from(v).map_err(|_| PgStoreError::bad(what, format!("{v} is negative")))
}

/// The `kind` column's text.
pub(crate) fn kind_to_sql(kind: ItemKind) -> &'static str {
    match kind {
        ItemKind::File => "file",
        ItemKind::Folder => "folder",
    }
}

/// Reads the `kind` column.
pub(crate) fn kind_from_sql(s: &str) -> Result<ItemKind, PgStoreError> {
    match s {
        "file" => Ok(ItemKind::File),
        "folder" => Ok(ItemKind::Folder),
        other => Err(PgStoreError::bad("item kind", format!("{other:?}"))),
    }
}

/// Reads a `hash` column.
pub(crate) fn hash_from_sql(s: Option<String>) -> Result<Option<ContentHash>, PgStoreError> {
    s.map(|h| h.parse().map_err(|e| PgStoreError::bad("content hash", e)))
        .transpose()
}

/// The columns [`version_from_row`] reads, in order, for use in `SELECT` lists.
pub(crate) const VERSION_COLUMNS: &str =
    "rev, hash, size, stamp_millis, stamp_counter, stamp_node, deleted";

/// The columns [`item_from_row`] reads: `key, kind` then [`VERSION_COLUMNS`].
pub(crate) const ITEM_COLUMNS: &str =
    "key, kind, rev, hash, size, stamp_millis, stamp_counter, stamp_node, deleted";

/// Reads [`VERSION_COLUMNS`] starting at column `at`.
pub(crate) fn version_from_row(row: &Row, at: usize) -> Result<VersionMeta, PgStoreError> {
    let counter: i64 = row.try_get(at + 4)?;
    Ok(VersionMeta {
        rev: Revision(count_from_sql("revision", row.try_get(at)?)?),
        hash: hash_from_sql(row.try_get(at + 1)?)?,
        size: count_from_sql("size", row.try_get(at + 2)?)?,
        stamp: Stamp {
            millis: bits_from_sql(row.try_get(at + 3)?),
            counter: u32::try_from(counter)
                .map_err(|_| PgStoreError::bad("stamp counter", counter))?,
            node: NodeId(bits_from_sql(row.try_get(at + 5)?)),
        },
        deleted: row.try_get(at + 6)?,
    })
}

/// Reads [`ITEM_COLUMNS`] starting at column `at`.
pub(crate) fn item_from_row(row: &Row, at: usize) -> Result<ItemMeta, PgStoreError> {
    let key: String = row.try_get(at)?;
    let key = Key::new(&key).map_err(|e| PgStoreError::bad("key", e))?;
    let kind = kind_from_sql(row.try_get(at + 1)?)?;
    let v = version_from_row(row, at + 2)?;
    Ok(ItemMeta {
        key,
        kind,
        rev: v.rev,
        hash: v.hash,
        size: v.size,
        stamp: v.stamp,
        deleted: v.deleted,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_from_one_in_order() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version as usize, i + 1);
        }
        assert_eq!(LATEST as usize, MIGRATIONS.len());
    }

    #[test]
    fn every_u64_round_trips_bit_for_bit() {
        for v in [0, 1, i64::MAX as u64, i64::MAX as u64 + 1, u64::MAX] {
            assert_eq!(bits_from_sql(bits_to_sql(v)), v);
        }
        assert!(count_to_sql("revision", u64::MAX).is_err());
        assert!(count_from_sql("size", -1).is_err());
        assert_eq!(
            kind_from_sql(kind_to_sql(ItemKind::Folder)).unwrap(),
            ItemKind::Folder
        );
        assert!(kind_from_sql("link").is_err());
    }
}
