//! `sync-server tokens add | list | revoke`: managing the device tokens kept (as hashes) in a
//! server's database, from the command line. The store does the work
//! ([`sync_core::server::TokenStore`]); this module opens it, calls it once and prints.

use std::time::{Duration, UNIX_EPOCH};

use anyhow::Context;
use sync_core::server::{TokenInfo, TokenStore};
use sync_core::TenantId;

use crate::printable;

/// Makes a token for `device` of `tenant` and prints it (once: only its hash is kept): alone
/// on stdout, or as one JSON line with `json`.
pub async fn add(
    store: &dyn TokenStore,
    tenant: &str,
    device: &str,
    json: bool,
) -> anyhow::Result<()> {
    anyhow::ensure!(!tenant.is_empty(), "give a tenant: --tenant NAME");
    anyhow::ensure!(!device.is_empty(), "give a device name: --device NAME");
    let made = store
        .add_token(&TenantId::new(tenant), device)
        .await
        .context("cannot store the new token")?;
    if json {
        let line = serde_json::json!({
            "id": made.info.id,
            "tenant": made.info.tenant.as_str(),
            "device": made.info.device,
            "token": made.token,
        });
        println!("{line}");
    } else {
        // The token alone on stdout, so `> FILE` makes a --token-file; the rest on stderr.
        println!("{}", made.token);
        eprintln!(
            "made token {} for device {:?} of tenant {}. It is shown only this once: give it \
             to the device (folder-sync --token-file FILE, or SYNC_TOKEN)",
            printable(&made.info.id),
            made.info.device,
            printable(made.info.tenant.as_str())
        );
    }
    Ok(())
}

/// Prints the tokens not revoked (of `tenant`, or all), oldest first.
pub async fn list(store: &dyn TokenStore, tenant: Option<&str>, json: bool) -> anyhow::Result<()> {
    let tenant = tenant.map(TenantId::new);
    let tokens = store
        .tokens(tenant.as_ref())
        .await
        .context("cannot read the tokens")?;
    if json {
        let rows: Vec<serde_json::Value> = tokens.iter().map(json_row).collect();
        println!("{}", serde_json::Value::Array(rows));
        return Ok(());
    }
    if tokens.is_empty() {
        println!("no tokens; make one with `sync-server tokens add ... --tenant T --device NAME`");
    }
    for t in &tokens {
        println!(
            "{}  tenant {}  device {:?}  created {}  last used {}",
            printable(&t.id),
            printable(t.tenant.as_str()),
            t.device,
            date(t.created_millis),
            t.last_used_millis.map_or_else(|| "never".to_owned(), date)
        );
    }
    Ok(())
}

/// Revokes token `id`; fails when there is no such token.
pub async fn revoke(store: &dyn TokenStore, id: &str) -> anyhow::Result<()> {
    let gone = store
        .revoke_token(id, None)
        .await
        .context("cannot revoke the token")?;
    anyhow::ensure!(
        gone,
        "there is no token {id:?} (or it was revoked already); `sync-server tokens list` shows them"
    );
    println!(
        "revoked {}; running servers refuse it from their next request",
        printable(id)
    );
    Ok(())
}

fn json_row(t: &TokenInfo) -> serde_json::Value {
    serde_json::json!({
        "id": t.id,
        "tenant": t.tenant.as_str(),
        "device": t.device,
        "created_millis": t.created_millis,
        "last_used_millis": t.last_used_millis,
    })
}

/// `millis` as an HTTP date (`Wed, 02 Dec 2026 19:00:00 GMT`).
fn date(millis: u64) -> String {
    httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_millis(millis))
}
