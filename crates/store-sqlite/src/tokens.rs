//! Device tokens in the server database: [`TokenStore`] for [`SqliteServerStore`] over the
//! `tokens` table (hashes only; a revoked token keeps its row with `revoked_millis`).
//!
//! Every lookup reads the table, so a revoke by another process on the same file takes effect
//! at the next request. Only SQL lives here; ids, tokens and hashes come from
//! `sync_core::server::tokens`.

use async_trait::async_trait;
use rusqlite::{params, OptionalExtension, Row};
use sync_core::server::tokens::LAST_USED_EVERY_MILLIS;
use sync_core::server::{new_token, token_hash, NewToken, TokenInfo, TokenStore};
use sync_core::{Result, TenantId};

use crate::error::StoreError;
use crate::schema::{u64_from_sql, u64_to_sql};
use crate::server::SqliteServerStore;

const COLUMNS: &str = "id, tenant, device, created_millis, last_used_millis";

fn info_from_row(row: &Row<'_>) -> rusqlite::Result<TokenInfo> {
    Ok(TokenInfo {
        id: row.get(0)?,
        tenant: TenantId::new(row.get::<_, String>(1)?),
        device: row.get(2)?,
        created_millis: u64_from_sql(row.get(3)?),
        last_used_millis: row.get::<_, Option<i64>>(4)?.map(u64_from_sql),
    })
}

#[async_trait]
impl TokenStore for SqliteServerStore {
    async fn add_token(&self, tenant: &TenantId, device: &str) -> Result<NewToken> {
        let (id, token) = new_token();
        let info = TokenInfo {
            id,
            tenant: tenant.clone(),
            device: device.to_owned(),
            created_millis: self.now_millis(),
            last_used_millis: None,
        };
        let hash = token_hash(&token);
        let row = info.clone();
        self.db()
            .call(move |conn| -> Result<(), StoreError> {
                conn.execute(
                    "INSERT INTO tokens (id, hash, tenant, device, created_millis) \
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![
                        row.id,
                        hash.as_bytes().as_slice(),
                        row.tenant.as_str(),
                        row.device,
                        u64_to_sql(row.created_millis)
                    ],
                )?;
                Ok(())
            })
            .await?;
        Ok(NewToken { info, token })
    }

    async fn tokens(&self, tenant: Option<&TenantId>) -> Result<Vec<TokenInfo>> {
        let tenant = tenant.map(|t| t.as_str().to_owned());
        Ok(self
            .db()
            .call(move |conn| -> Result<Vec<TokenInfo>, StoreError> {
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM tokens WHERE revoked_millis IS NULL \
                     AND (?1 IS NULL OR tenant = ?1) ORDER BY created_millis, rowid"
                ))?;
                let rows = stmt.query_map(params![tenant], info_from_row)?;
                Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
            })
            .await?)
    }

    async fn revoke_token(&self, id: &str, tenant: Option<&TenantId>) -> Result<bool> {
        let (id, tenant) = (id.to_owned(), tenant.map(|t| t.as_str().to_owned()));
        let now = u64_to_sql(self.now_millis());
        Ok(self
            .db()
            .call(move |conn| -> Result<bool, StoreError> {
                let changed = conn.execute(
                    "UPDATE tokens SET revoked_millis = ?3 WHERE id = ?1 \
                     AND revoked_millis IS NULL AND (?2 IS NULL OR tenant = ?2)",
                    params![id, tenant, now],
                )?;
                Ok(changed > 0)
            })
            .await?)
    }

    async fn token_tenant(&self, token: &str) -> Result<Option<TokenInfo>> {
        let hash = token_hash(token);
        let now = self.now_millis();
        Ok(self
            .db()
            .call(move |conn| -> Result<Option<TokenInfo>, StoreError> {
                let found = conn
                    .prepare_cached(&format!(
                        "SELECT {COLUMNS} FROM tokens WHERE hash = ?1 AND revoked_millis IS NULL"
                    ))?
                    .query_row(params![hash.as_bytes().as_slice()], info_from_row)
                    .optional()?;
                let Some(mut info) = found else {
                    return Ok(None);
                };
                let stale = info
                    .last_used_millis
                    .is_none_or(|used| now.saturating_sub(used) >= LAST_USED_EVERY_MILLIS);
                if stale {
                    conn.execute(
                        "UPDATE tokens SET last_used_millis = ?2 WHERE id = ?1",
                        params![info.id, u64_to_sql(now)],
                    )?;
                    info.last_used_millis = Some(now);
                }
                Ok(Some(info))
            })
            .await?)
    }
}
