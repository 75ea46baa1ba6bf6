//! Device tokens in the PostgreSQL database: [`TokenStore`] for [`PgServerStore`] over the
//! `tokens` table (hashes only, as hex; a revoked token keeps its row with `revoked_millis`).
//!
//! Every lookup reads the table, so a revoke through any server sharing the database takes
//! effect at the next request on all of them. Only SQL lives here; ids, tokens and hashes come
//! from `sync_core::server::tokens`.

use async_trait::async_trait;
use sync_core::server::tokens::LAST_USED_EVERY_MILLIS;
use sync_core::server::{new_token, token_hash, NewToken, TokenInfo, TokenStore};
use sync_core::{Result, TenantId};
use tokio_postgres::Row;

use crate::store::{pg, PgServerStore};

const COLUMNS: &str = "id, tenant, device, created_millis, last_used_millis";

fn info_from_row(row: &Row) -> Result<TokenInfo> {
    Ok(TokenInfo {
        id: row.try_get(0).map_err(pg)?,
        tenant: TenantId::new(row.try_get::<_, String>(1).map_err(pg)?),
        device: row.try_get(2).map_err(pg)?,
        created_millis: row.try_get::<_, i64>(3).map_err(pg)? as u64,
        last_used_millis: row
            .try_get::<_, Option<i64>>(4)
            .map_err(pg)?
            .map(|v| v as u64),
    })
}

#[async_trait]
impl TokenStore for PgServerStore {
    async fn add_token(&self, tenant: &TenantId, device: &str) -> Result<NewToken> {
        let (id, token) = new_token();
        let info = TokenInfo {
            id,
            tenant: tenant.clone(),
            device: device.to_owned(),
            created_millis: self.config().time.now_millis(),
            last_used_millis: None,
        };
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO tokens (id, hash, tenant, device, created_millis) \
                 VALUES ($1, $2, $3, $4, $5)",
                &[
                    &info.id,
                    &token_hash(&token).to_string(),
                    &info.tenant.as_str(),
                    &info.device,
                    &(info.created_millis as i64),
                ],
            )
            .await
            .map_err(pg)?;
        Ok(NewToken { info, token })
    }

    async fn tokens(&self, tenant: Option<&TenantId>) -> Result<Vec<TokenInfo>> {
        let client = self.client().await?;
        let tenant = tenant.map(|t| t.as_str().to_owned());
        let rows = client
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM tokens WHERE revoked_millis IS NULL \
                     AND ($1::TEXT IS NULL OR tenant = $1) ORDER BY created_millis, seq"
                ),
                &[&tenant],
            )
            .await
            .map_err(pg)?;
        rows.iter().map(info_from_row).collect()
    }

    async fn revoke_token(&self, id: &str, tenant: Option<&TenantId>) -> Result<bool> {
        let client = self.client().await?;
        let tenant = tenant.map(|t| t.as_str().to_owned());
        let now = self.config().time.now_millis() as i64;
        let changed = client
            .execute(
                "UPDATE tokens SET revoked_millis = $3 WHERE id = $1 \
                 AND revoked_millis IS NULL AND ($2::TEXT IS NULL OR tenant = $2)",
                &[&id, &tenant, &now],
            )
            .await
            .map_err(pg)?;
        Ok(changed > 0)
    }

    async fn token_tenant(&self, token: &str) -> Result<Option<TokenInfo>> {
        let client = self.client().await?;
        let now = self.config().time.now_millis();
        let stmt = client
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM tokens WHERE hash = $1 AND revoked_millis IS NULL"
            ))
            .await
            .map_err(pg)?;
        let Some(row) = client
            .query_opt(&stmt, &[&token_hash(token).to_string()])
            .await
            .map_err(pg)?
        else {
            return Ok(None);
        };
        let mut info = info_from_row(&row)?;
        if info
            .last_used_millis
            .is_none_or(|used| now.saturating_sub(used) >= LAST_USED_EVERY_MILLIS)
        {
            client
                .execute(
                    "UPDATE tokens SET last_used_millis = $2 WHERE id = $1",
                    &[&info.id, &(now as i64)],
                )
                .await
                .map_err(pg)?;
            info.last_used_millis = Some(now);
        }
        Ok(Some(info))
    }
}
