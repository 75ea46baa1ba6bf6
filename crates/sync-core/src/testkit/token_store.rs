//! The token store suite: every [`TokenStore`] keeps only hashes, finds a token's tenant, lists
//! and revokes per tenant, and records use.

use futures::future::BoxFuture;

use super::Check;
use crate::server::TokenStore;
use crate::TenantId;

const SUITE: &str = "token_store";

/// Runs every check of the token store suite. `make` returns a fresh, empty store.
pub async fn token_store_suite<S, F>(make: F)
where
    S: TokenStore + 'static,
    F: Fn() -> BoxFuture<'static, S>,
{
    let c = |name| Check::new(SUITE, name);
    add_then_find(c("add_then_find"), make().await).await;
    list_per_tenant(c("list_per_tenant"), make().await).await;
    revoke(c("revoke"), make().await).await;
    use_is_recorded(c("use_is_recorded"), make().await).await;
}

async fn add_then_find<S: TokenStore>(c: Check, store: S) {
    let alice = TenantId::new("alice");
    let made = c.ok(store.add_token(&alice, "laptop").await, "add_token");
    c.eq(
        made.info.tenant.clone(),
        alice.clone(),
        "tenant of the new token",
    );
    c.eq(
        made.info.device.as_str(),
        "laptop",
        "device of the new token",
    );
    c.ensure(made.token.len() >= 32, || {
        format!("a short token: {}", made.token)
    });
    let found = c.ok(store.token_tenant(&made.token).await, "token_tenant");
    c.eq(
        found.map(|i| i.id),
        Some(made.info.id.clone()),
        "the token is found",
    );
    let wrong = c.ok(store.token_tenant("st_not-a-token").await, "token_tenant");
    c.eq(wrong, None, "an unknown token");
    let other = c.ok(
        store.add_token(&alice, "laptop").await,
        "add a second token",
    );
    c.ensure(
        other.token != made.token && other.info.id != made.info.id,
        || "two tokens alike".into(),
    );
}

async fn list_per_tenant<S: TokenStore>(c: Check, store: S) {
    let (alice, bob) = (TenantId::new("alice"), TenantId::new("bob"));
    let a = c.ok(store.add_token(&alice, "phone").await, "add");
    let b = c.ok(store.add_token(&bob, "desk").await, "add");
    let all = c.ok(store.tokens(None).await, "tokens(None)");
    c.eq(
        all.iter().map(|t| t.id.clone()).collect::<Vec<_>>(),
        vec![a.info.id.clone(), b.info.id.clone()],
        "every token, oldest first",
    );
    let only = c.ok(store.tokens(Some(&alice)).await, "tokens(alice)");
    c.eq(only, vec![a.info.clone()], "alice's tokens");
}

async fn revoke<S: TokenStore>(c: Check, store: S) {
    let (alice, bob) = (TenantId::new("alice"), TenantId::new("bob"));
    let a = c.ok(store.add_token(&alice, "phone").await, "add");
    let gone = c.ok(store.revoke_token(&a.info.id, Some(&bob)).await, "revoke");
    c.eq(gone, false, "another tenant cannot revoke it");
    c.ensure(
        c.ok(store.token_tenant(&a.token).await, "lookup").is_some(),
        || "revoked by another tenant".into(),
    );
    let gone = c.ok(store.revoke_token(&a.info.id, Some(&alice)).await, "revoke");
    c.eq(gone, true, "revoked");
    c.eq(
        c.ok(store.token_tenant(&a.token).await, "lookup"),
        None,
        "a revoked token",
    );
    c.eq(
        c.ok(store.tokens(None).await, "tokens").len(),
        0,
        "revoked tokens are not listed",
    );
    c.eq(
        c.ok(store.revoke_token(&a.info.id, None).await, "revoke again"),
        false,
        "revoking twice",
    );
    c.eq(
        c.ok(store.revoke_token("000000000000", None).await, "revoke"),
        false,
        "an unknown id",
    );
}

async fn use_is_recorded<S: TokenStore>(c: Check, store: S) {
    let alice = TenantId::new("alice");
    let a = c.ok(store.add_token(&alice, "phone").await, "add");
    c.eq(a.info.last_used_millis, None, "a new token was never used");
    c.ok(store.token_tenant(&a.token).await, "lookup");
    let listed = c.ok(store.tokens(Some(&alice)).await, "tokens");
    let used = listed.first().and_then(|t| t.last_used_millis);
    c.ensure(used.is_some_and(|u| u >= a.info.created_millis), || {
        format!("last used not recorded: {listed:?}")
    });
}
