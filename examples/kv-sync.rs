//! `kv-sync`: a todo list kept in each device's persistent [`RecordStore`] file and synced
//! through a sync server, with the list merged three-way by `id` (`UnionById`) so that a todo
//! deleted on one device stays deleted when another device edits the list at the same time.
//!
//! Each device is its own **process**, started again for every step: it opens its record store
//! and sync state from files, does one thing (add, edit or delete a todo, sync), and exits. So
//! what a device knows survives restarts, as in an app. This program starts a sync server on
//! loopback (an embedded SQLite database in a temporary folder), runs the devices' steps as
//! child processes of itself, and checks the story: `cargo run --example kv-sync`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use anyhow::{bail, ensure, Context};
use serde_json::{json, Value};
use store_records::RecordStore;
use store_sqlite::{SqliteServerStore, SqliteStateStore};
use sync_core::merge::UnionById;
use sync_core::{ConflictPolicy, Engine, EngineConfig, Key, ServerConfig, SyncPolicy};
use transport_http::client::HttpTransport;
use transport_http::server::{nodelay, router, ServerOptions, StaticTokens};

const TOKEN: &str = "kv-token";
const LIST: &str = "todos/list";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if std::env::var_os("KV_DEVICE").is_some() {
        return device_step().await;
    }
    let exe = std::env::current_exe().context("cannot find this program to run the devices")?;
    run(&exe, &[]).await
}

/// The story, with each device step run as `exe args...` (this program, or a test binary).
pub async fn run(exe: &Path, args: &[&str]) -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let store =
        SqliteServerStore::open(tmp.path().join("server.db"), ServerConfig::default()).await?;
    let app = router(
        Arc::new(store),
        Arc::new(StaticTokens::new([("app", TOKEN)])),
        ServerOptions::default(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(nodelay(listener), app).await });
    println!("sync server on {url}");
    let step = |device: &str, action: &str| {
        let out = tmp.path().join(format!("{device}.out"));
        let status = Command::new(exe)
            .args(args)
            .env("KV_DEVICE", device)
            .env("KV_SERVER", &url)
            .env("KV_DATA", tmp.path())
            .env("KV_DO", action)
            .env("KV_OUT", &out)
            .status()
            .with_context(|| format!("cannot start the {device} process"))?;
        ensure!(status.success(), "{device} `{action}` failed: {status}");
        let list: BTreeMap<String, String> = serde_json::from_slice(&std::fs::read(&out)?)?;
        println!("{device:>6} {action:<24} -> {list:?}");
        anyhow::Ok(list)
    };

    step("phone", "add 1 buy milk")?;
    step("phone", "add 2 call mum")?;
    step("phone", "sync")?;
    step("tablet", "sync")?;
    // Apart: the phone deletes "call mum", the tablet edits "buy milk" and adds a todo.
    step("phone", "delete 2")?;
    step("tablet", "edit 1 buy oat milk")?;
    step("tablet", "add 3 water plants")?;
    step("phone", "sync")?;
    step("tablet", "sync")?;
    let phone = step("phone", "sync")?;
    let tablet = step("tablet", "sync")?;
    ensure!(
        phone == tablet,
        "the devices disagree: {phone:?} vs {tablet:?}"
    );
    ensure!(
        !phone.contains_key("2"),
        "the deleted todo came back: {phone:?}"
    );
    ensure!(
        phone.get("1").map(String::as_str) == Some("buy oat milk") && phone.contains_key("3"),
        "an edit or an add was lost: {phone:?}"
    );
    println!("both devices: {phone:?}; the todo deleted on the phone stayed deleted");
    Ok(())
}

/// One step of one device, from `KV_*` variables: open its files, act, write the list to
/// `KV_OUT`, exit.
pub async fn device_step() -> anyhow::Result<()> {
    let var = |name: &str| std::env::var(name).with_context(|| format!("{name} is not set"));
    let (device, server, action) = (var("KV_DEVICE")?, var("KV_SERVER")?, var("KV_DO")?);
    let data = PathBuf::from(var("KV_DATA")?);
    let records = RecordStore::open(data.join(format!("{device}.db"))).await?;
    let list_key = Key::new(LIST)?;
    let mut list: Vec<Value> = records.get_json(&list_key).await?.unwrap_or_default();
    let words: Vec<&str> = action.splitn(3, ' ').collect();
    match words.as_slice() {
        ["add", id, text] => list.push(json!({"id": id, "text": text})),
        ["edit", id, text] => {
            for todo in list.iter_mut().filter(|t| t["id"] == *id) {
                todo["text"] = json!(text);
            }
        }
        ["delete", id] => list.retain(|t| t["id"] != *id),
        ["sync"] => {}
        _ => bail!("unknown step {action:?}"),
    }
    if words[0] != "sync" {
        records.put_json(&list_key, &list).await?;
    } else {
        let mut engine = Engine::new(
            HttpTransport::new(&server, TOKEN.to_owned())?,
            SqliteStateStore::open(data.join(format!("{device}-sync.db"))).await?,
            records.clone(),
            EngineConfig {
                policy: SyncPolicy {
                    conflicts_by_prefix: vec![(
                        "todos/".into(),
                        ConflictPolicy::Merge(Arc::new(UnionById::new("id"))),
                    )],
                    ..SyncPolicy::default()
                },
                ..EngineConfig::default()
            },
        );
        let report = engine.sync_once().await?;
        ensure!(report.errors.is_empty(), "{:?}", report.errors);
        list = records.get_json(&list_key).await?.unwrap_or_default();
    }
    let shown: BTreeMap<String, String> = list
        .iter()
        .map(|t| {
            let s = |v: &Value| v.as_str().unwrap_or_default().to_owned();
            (s(&t["id"]), s(&t["text"]))
        })
        .collect();
    std::fs::write(var("KV_OUT")?, serde_json::to_vec(&shown)?)?;
    Ok(())
}
