//! `kv-sync`: records (JSON values under keys, as an app's local storage) synced between two
//! clients through a sync server, with a three-way merge of JSON arrays by `id` for `todos/`.
//!
//! Records travel as file items; only the replica differs from folder sync. Here each client
//! keeps its records in a `MemoryReplica` (an app would implement `Replica` over its own
//! storage). `cargo run --example kv-sync`.

use std::sync::Arc;

use anyhow::{ensure, Context};
use serde_json::Value;
use store_sqlite::{SqliteServerStore, SqliteStateStore};
use sync_core::memory::MemoryReplica;
use sync_core::merge::UnionById;
use sync_core::{ConflictPolicy, Engine, EngineConfig, Key, ServerConfig, SyncPolicy};
use transport_http::client::HttpTransport;
use transport_http::server::{nodelay, router, ServerOptions, StaticTokens};

type Client = Engine<HttpTransport, SqliteStateStore, MemoryReplica>;

async fn client(url: &str) -> anyhow::Result<Client> {
    Ok(Engine::new(
        HttpTransport::new(url, "kv-token".to_owned())?,
        SqliteStateStore::open_in_memory().await?,
        MemoryReplica::default(),
        EngineConfig {
            policy: SyncPolicy {
                // Todo lists merge three-way by id: a todo deleted on one device stays
                // deleted, one added on the other is kept. Other keys: newest edit wins.
                conflicts_by_prefix: vec![(
                    "todos/".into(),
                    ConflictPolicy::Merge(Arc::new(UnionById::new("id"))),
                )],
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

    // The phone deletes "call mum" while the tablet edits another todo: the delete holds.
    put(
        &phone,
        "todos/list",
        serde_json::json!([{"id": 1, "text": "buy milk"}, {"id": 3, "text": "water plants"}]),
    )?;
    put(
        &tablet,
        "todos/list",
        serde_json::json!([{"id": 1, "text": "buy oat milk"}, {"id": 2, "text": "call mum"}, {"id": 3, "text": "water plants"}]),
    )?;
    phone.sync_once().await?;
    tablet.sync_once().await?;
    phone.sync_once().await?;
    let (p, t) = (get(&phone, "todos/list")?, get(&tablet, "todos/list")?);
    println!("after a delete on the phone and an edit on the tablet: {t}");
    ensure!(p == t, "clients disagree");
    ensure!(
        p.as_array()
            .is_some_and(|a| a.len() == 2 && !a.iter().any(|x| x["id"] == 2)),
        "the deleted todo came back"
    );
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
