//! `terminal-settings`: what a terminal app syncs between a laptop and a phone, each keeping its
//! records in a persistent [`RecordStore`] file, through a sync server on loopback.
//!
//! Three kinds of record under three policies, and data that never leaves a device:
//! - `settings/terminal`: one JSON object merged **field by field** (`JsonFields`): the laptop
//!   changes the font size while the phone changes the theme, and both changes stay;
//! - `history/shell`: the command history, **append-only** (`AppendOnly` by `id`, ordered by
//!   `at`): commands typed on both devices while apart all end up in one log;
//! - `ssh/<name>`: one SSH profile per key, **newest edit wins** (the default); its
//!   `private_key` field **never syncs** (`NeverSync`), so each device keeps its own key and the
//!   server never sees one;
//! - `local/window`: never syncs at all.
//!
//! `cargo run --example terminal-settings`. It checks what it prints and exits 1 if anything
//! is off.

use std::path::Path;
use std::sync::Arc;

use anyhow::{ensure, Context};
use serde_json::{json, Value};
use store_records::RecordStore;
use store_sqlite::{SqliteServerStore, SqliteStateStore};
use sync_core::merge::{AppendOnly, JsonFields};
use sync_core::{
    ConflictPolicy, Engine, EngineConfig, Key, NeverSync, NeverSyncReplica, ServerConfig,
    SyncPolicy, SyncReport, Transport,
};
use transport_http::client::HttpTransport;
use transport_http::server::{nodelay, router, ServerOptions, StaticTokens};

type Device = Engine<HttpTransport, SqliteStateStore, NeverSyncReplica<RecordStore>>;

const TOKEN: &str = "terminal-app-token";

/// What never leaves a device.
fn private() -> NeverSync {
    NeverSync::new()
        .key_prefix("local/")
        .field("ssh/", "private_key")
}

fn policy() -> SyncPolicy {
    SyncPolicy {
        conflicts_by_prefix: vec![
            (
                "settings/".into(),
                ConflictPolicy::Merge(Arc::new(JsonFields)),
            ),
            (
                "history/".into(),
                ConflictPolicy::Merge(Arc::new(AppendOnly::new("id", "at"))),
            ),
        ],
        ..SyncPolicy::default()
    }
}

/// A device whose records and sync state live in `dir/<name>.db` and `dir/<name>-sync.db`.
async fn device(dir: &Path, name: &str, url: &str) -> anyhow::Result<Device> {
    let records = RecordStore::open(dir.join(format!("{name}.db"))).await?;
    let state = SqliteStateStore::open(dir.join(format!("{name}-sync.db"))).await?;
    Ok(Engine::new(
        HttpTransport::new(url, TOKEN.to_owned())?,
        state,
        NeverSyncReplica::new(records, private()),
        EngineConfig {
            policy: policy(),
            ..EngineConfig::default()
        },
    ))
}

fn key(s: &str) -> anyhow::Result<Key> {
    Ok(Key::new(s)?)
}

/// The app's own view of a record (private fields included).
async fn read(d: &Device, k: &str) -> anyhow::Result<Value> {
    d.replica()
        .inner()
        .get_json(&key(k)?)
        .await?
        .with_context(|| format!("{k} is missing"))
}

async fn write(d: &Device, k: &str, value: Value) -> anyhow::Result<()> {
    Ok(d.replica().inner().put_json(&key(k)?, &value).await?)
}

/// Appends a command to the device's history.
async fn typed(d: &Device, id: &str, at: u64, cmd: &str) -> anyhow::Result<()> {
    let k = key("history/shell")?;
    let mut log: Vec<Value> = d.replica().inner().get_json(&k).await?.unwrap_or_default();
    log.push(json!({"id": id, "at": at, "cmd": cmd}));
    Ok(d.replica().inner().put_json(&k, &log).await?)
}

async fn sync(name: &str, d: &mut Device) -> anyhow::Result<SyncReport> {
    let r = d.sync_once().await?;
    println!(
        "{name:>6}: up {}, down {}, conflicts {}",
        r.uploaded, r.downloaded, r.conflicts
    );
    for c in &r.resolved {
        println!(
            "        {} : {:?} (local version kept at rev {}, remote at rev {})",
            c.key, c.winner, c.local.rev.0, c.remote.rev.0
        );
    }
    ensure!(r.errors.is_empty(), "{name}: {:?}", r.errors);
    Ok(r)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    run().await
}

/// The whole story; also run by the crate's tests.
pub async fn run() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let server =
        SqliteServerStore::open(tmp.path().join("server.db"), ServerConfig::default()).await?;
    let app = router(
        Arc::new(server),
        Arc::new(StaticTokens::new([("me", TOKEN)])),
        ServerOptions::default(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(nodelay(listener), app).await });
    println!("sync server on {url}");

    let mut laptop = device(tmp.path(), "laptop", &url).await?;
    write(
        &laptop,
        "settings/terminal",
        json!({"font": "JetBrains Mono", "size": 12, "theme": "dark"}),
    )
    .await?;
    write(
        &laptop,
        "ssh/prod",
        json!({"host": "prod.example.org", "user": "deploy", "private_key": "LAPTOP-KEY"}),
    )
    .await?;
    write(&laptop, "local/window", json!({"x": 40, "y": 60})).await?;
    typed(&laptop, "laptop-1", 1, "ls -la").await?;
    let first = sync("laptop", &mut laptop).await?;
    // Three records (and three folders: settings, ssh, history); nothing of `local/`.
    ensure!(
        (first.uploaded, first.folders) == (3, 3),
        "uploaded {} records and {} folders",
        first.uploaded,
        first.folders
    );

    let mut phone = device(tmp.path(), "phone", &url).await?;
    let mut changed = phone.replica().inner().subscribe();
    sync("phone", &mut phone).await?;
    let mut heard = Vec::new();
    while let Ok(keys) = changed.try_recv() {
        heard.extend(keys.into_iter().map(|k| k.to_string()));
    }
    heard.sort();
    println!(" phone: the sync changed {heard:?}");
    let profile = read(&phone, "ssh/prod").await?;
    ensure!(profile.get("private_key").is_none(), "a private key synced");
    ensure!(
        phone
            .replica()
            .inner()
            .get(&key("local/window")?)
            .await?
            .is_none(),
        "local/window synced"
    );
    // The phone has a key of its own.
    let mut profile = profile;
    profile["private_key"] = json!("PHONE-KEY");
    write(&phone, "ssh/prod", profile).await?;
    sync("phone", &mut phone).await?;

    // Apart: the laptop makes the font bigger, the phone switches to a light theme; both type.
    let mut settings = read(&laptop, "settings/terminal").await?;
    settings["size"] = json!(14);
    write(&laptop, "settings/terminal", settings).await?;
    typed(&laptop, "laptop-2", 2, "git status").await?;
    let mut settings = read(&phone, "settings/terminal").await?;
    settings["theme"] = json!("light");
    write(&phone, "settings/terminal", settings).await?;
    typed(&phone, "phone-1", 3, "top").await?;

    // The laptop restarts (its records and sync state are in files), then everyone syncs.
    drop(laptop);
    let mut laptop = device(tmp.path(), "laptop", &url).await?;
    sync("laptop", &mut laptop).await?;
    sync("phone", &mut phone).await?;
    sync("laptop", &mut laptop).await?;

    let (ls, ps) = (
        read(&laptop, "settings/terminal").await?,
        read(&phone, "settings/terminal").await?,
    );
    println!("settings on both: {ls}");
    ensure!(ls == ps, "settings differ: {ls} vs {ps}");
    ensure!(
        ls == json!({"font": "JetBrains Mono", "size": 14, "theme": "light"}),
        "a settings change was lost: {ls}"
    );
    let (lh, ph) = (
        read(&laptop, "history/shell").await?,
        read(&phone, "history/shell").await?,
    );
    let cmds: Vec<&str> = lh
        .as_array()
        .map(|a| a.iter().filter_map(|e| e["cmd"].as_str()).collect())
        .unwrap_or_default();
    println!("history on both: {cmds:?}");
    ensure!(lh == ph, "histories differ");
    ensure!(cmds == ["ls -la", "git status", "top"], "history: {cmds:?}");
    let (lk, pk) = (
        read(&laptop, "ssh/prod").await?["private_key"].clone(),
        read(&phone, "ssh/prod").await?["private_key"].clone(),
    );
    println!("ssh/prod private_key: laptop {lk}, phone {pk}");
    ensure!(
        lk == "LAPTOP-KEY" && pk == "PHONE-KEY",
        "a device lost its key"
    );

    // What the server holds: every version of ssh/prod, none with a key.
    let ssh = key("ssh/prod")?;
    let versions = laptop.transport().history(&ssh).await?;
    for v in &versions {
        let content = laptop.transport().fetch(&ssh, Some(v.rev)).await?.content;
        ensure!(
            !String::from_utf8_lossy(&content).contains("KEY"),
            "the server stored a private key"
        );
    }
    println!(
        "the server keeps {} version(s) of ssh/prod, none with a private key",
        versions.len()
    );
    Ok(())
}
