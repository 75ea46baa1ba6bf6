//! Device tokens kept in a server's database: the [`TokenStore`] trait, what a stored token
//! says about itself ([`TokenInfo`]), and the pure parts every store shares: making a new
//! token and its id ([`new_token`]), and the hash that is stored instead of the token
//! ([`token_hash`]).
//!
//! A store keeps only the hash, so a copy of the database does not give anyone a working token.
//! Tokens are 32 random bytes from a CSPRNG, so a plain (unsalted) blake3 hash is enough: there
//! is nothing to guess. Nothing here does I/O.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::{ContentHash, Result, TenantId};

/// How often [`TokenStore::token_tenant`] writes a token's "last used" time: at most once a
/// minute per token, so checking a token on every request is a read, not a write.
pub const LAST_USED_EVERY_MILLIS: u64 = 60_000;

/// What a store knows about one device token (never the token itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenInfo {
    /// The token's id: what `tokens revoke` and `DELETE /sync/v1/devices/<id>` take.
    pub id: String,
    /// The tenant it speaks for.
    pub tenant: TenantId,
    /// The device name it was made for.
    pub device: String,
    /// When it was made, milliseconds since the Unix epoch.
    pub created_millis: u64,
    /// When it was last used (to the minute), if ever.
    pub last_used_millis: Option<u64>,
}

/// A token just made: shown once, then only its hash is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewToken {
    /// What is stored.
    pub info: TokenInfo,
    /// The bearer token to give the device.
    pub token: String,
}

/// A new token id and token: 12 hex characters, and `st_` with 64 hex characters (32 random
/// bytes).
pub fn new_token() -> (String, String) {
    let secret: [u8; 32] = rand::random();
    let id: [u8; 6] = rand::random();
    (hex(&id), format!("st_{}", hex(&secret)))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What a store keeps of `token`: its blake3 hash.
pub fn token_hash(token: &str) -> ContentHash {
    ContentHash::of(token.as_bytes())
}

/// Device tokens in a server's database. Implemented by the SQLite, PostgreSQL and memory
/// server stores; every one must pass `testkit::token_store_suite` (feature `testkit`).
#[async_trait]
pub trait TokenStore: Send + Sync {
    /// Makes a token for `device` of `tenant` and stores its hash.
    async fn add_token(&self, tenant: &TenantId, device: &str) -> Result<NewToken>;

    /// The tokens not revoked, of one tenant or (`None`) of all, oldest first.
    async fn tokens(&self, tenant: Option<&TenantId>) -> Result<Vec<TokenInfo>>;

    /// Revokes the token `id` (only if it belongs to `tenant`, when given). Returns `false`
    /// when there is no such token. Takes effect for the next request on every server that
    /// shares the database.
    async fn revoke_token(&self, id: &str, tenant: Option<&TenantId>) -> Result<bool>;

    /// The token whose hash `token` has, if it is not revoked; records its use (at most every
    /// [`LAST_USED_EVERY_MILLIS`]).
    async fn token_tenant(&self, token: &str) -> Result<Option<TokenInfo>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_random_and_url_safe() {
        let (id, token) = new_token();
        let (id2, token2) = new_token();
        assert_ne!(token, token2);
        assert_ne!(id, id2);
        assert_eq!(id.len(), 12);
        assert_eq!(token.len(), 3 + 64, "{token}");
        assert!(token.starts_with("st_"));
        assert!(token[3..].chars().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn the_hash_is_what_is_stored() {
        assert_eq!(token_hash("abc"), ContentHash::of(b"abc"));
        assert_ne!(token_hash("abc"), token_hash("abd"));
    }
}
