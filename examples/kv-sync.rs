//! `kv-sync`: records (JSON values under keys, as an app's local storage) synced between two
//! clients through a sync server, with a custom conflict policy that merges JSON arrays by `id`.
//!
//! Records travel as file items; only the replica differs from folder sync. Here each client
//! keeps its records in a `MemoryReplica` (an app would implement `Replica` over its own
//! storage). `cargo run --example kv-sync`.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{ensure, Context};
use serde_json::Value;
use store_sqlite::{SqliteServerStore, SqliteStateStore};
use sync_core::memory::MemoryReplica;
use sync_core::{ConflictPolicy, Engine, EngineConfig, Key, MergeInput, ServerConfig, SyncPolicy};
use transport_http::client::HttpTransport;
use transport_http::server::{nodelay, router, ServerOptions, StaticTokens};

type Client = Engine<HttpTransport, SqliteStateStore, MemoryReplica>;

/// The app's merge: two JSON arrays of objects with an `id` become one array with every id
/// once (the local object wins for an id present on both sides), ordered by id. Anything else
/// is not mergeable, and the newest edit wins (the loser is still kept).
fn merge_by_id(m: MergeInput<'_>) -> Result<Vec<u8>, String> {
    let (local, remote) = (m.local, m.remote);
    let parse = |b: &[u8]| -> Result<Vec<Value>, String> {
        match serde_json::from_slice::<Value>(b).map_err(|e| e.to_string())? {
            Value::Array(items) => Ok(items),
            _ => Err("not a JSON array".into()),
        }
    };
    let mut by_id: BTreeMap<String, Value> = BTreeMap::new();
    for item in parse(remote)?.into_iter().chain(parse(local)?) {
        let id = item
            .get("id")
            .map(Value::to_string)
            .ok_or("an element has no id")?;
        by_id.insert(id, item);
    }
    serde_json::to_vec(&by_id.into_values().collect::<Vec<_>>()).map_err(|e| e.to_string())
}

async fn client(url: &str) -> anyhow::Result<Client> {
    Ok(Engine::new(
        HttpTransport::new(url, "kv-token".to_owned())?,
        SqliteStateStore::open_in_memory().await?,
        MemoryReplica::default(),
        EngineConfig {
            policy: SyncPolicy {
                conflicts: ConflictPolicy::Merge(Arc::new(merge_by_id)),
                ..SyncPolicy::default()
            },
            ..EngineConfig::default()
        },
    ))
}

fn put(c: &Client, key: &str, value: Value) -> anyhow::Result<()> {
    c.replica()
        .put(&Key::new(key)?, serde_json::to_vec(&value)?);
    Ok(())
}

fn get(c: &Client, key: &str) -> anyhow::Result<Value> {
    let bytes = c.replica().get(&Key::new(key)?).context("record missing")?;
    Ok(serde_json::from_slice(&bytes)?)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let store = SqliteServerStore::open(tmp.path().join("kv.db"), ServerConfig::default()).await?;
    let tokens = StaticTokens::new([("app", "kv-token")]);
    let app = router(Arc::new(store), Arc::new(tokens), ServerOptions::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(nodelay(listener), app).await });
    println!("server on {url}");

    let (mut phone, mut tablet) = (client(&url).await?, client(&url).await?);
    put(
        &phone,
        "todos/list",
        serde_json::json!([{"id": 1, "text": "buy milk"}]),
    )?;
    put(&phone, "settings/theme", serde_json::json!("dark"))?;
    phone.sync_once().await?;
    tablet.sync_once().await?;
    println!("tablet has todos/list = {}", get(&tablet, "todos/list")?);

    // Both add a todo while offline: a conflict, resolved by the app's merge.
    put(
        &phone,
        "todos/list",
        serde_json::json!([{"id": 1, "text": "buy milk"}, {"id": 2, "text": "call mum"}]),
    )?;
    put(
        &tablet,
        "todos/list",
        serde_json::json!([{"id": 1, "text": "buy milk"}, {"id": 3, "text": "water plants"}]),
    )?;
    phone.sync_once().await?;
    let r = tablet.sync_once().await?;
    println!("tablet: {} conflict merged", r.conflicts);
    phone.sync_once().await?;
    let (p, t) = (get(&phone, "todos/list")?, get(&tablet, "todos/list")?);
    println!("phone  has todos/list = {p}");
    println!("tablet has todos/list = {t}");
    ensure!(p == t, "clients disagree");
    ensure!(p.as_array().map(Vec::len) == Some(3), "merge lost a todo");
    let kept = tablet.replica().backup_contents();
    println!(
        "tablet kept its pre-merge version as a backup: {}",
        String::from_utf8_lossy(&kept[0])
    );
    println!(
        "settings/theme on the tablet = {}",
        get(&tablet, "settings/theme")?
    );
    Ok(())
}
