//! `desktop-app`: how a desktop app embeds the engine (docs/EMBEDDING.md walks through it).
//!
//! One tenant, two kinds of data, each in its own **scope** so they never meet on the server:
//! the app's settings (records in a [`RecordStore`], scope `settings`) and a notes folder on
//! disk (scope `notes`). Each runs in the background loop ([`Engine::run`] and
//! [`folder::watch`]); the app keeps only their [`SyncHandle`]s, and from those reads the
//! **status** for its sync icon, one **event** per sync (the keys it changed here, the
//! conflicts it resolved) and the **error stack** for its error area, while the loops run.
//!
//! `cargo run --example desktop-app`. It checks what it prints and exits 1 if anything is off.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{ensure, Context};
use store_records::RecordStore;
use store_sqlite::{SqliteServerStore, SqliteStateStore};
use sync_engine::folder::{self, WatchOptions};
use sync_engine::http::HttpTransport;
use sync_engine::{
    Engine, EngineConfig, Key, RunOptions, ScopedTransport, ServerConfig, SyncEvent,
};
use tokio::sync::{broadcast, mpsc};
use transport_http::server::{nodelay, router, ServerOptions, StaticTokens};

const TOKEN: &str = "desktop-app-token";

/// Waits for the next event of a sync that did something (or failed).
async fn next_event(
    events: &mut broadcast::Receiver<Arc<SyncEvent>>,
) -> anyhow::Result<Arc<SyncEvent>> {
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let event = events.recv().await?;
            if event.failed.is_some()
                || event.report.transferred() > 0
                || !event.report.errors.is_empty()
            {
                return Ok(event);
            }
        }
    })
    .await
    .context("no sync event within 20 s")?
}

/// One device's settings engine: records in `dir/settings.db`, state beside them.
async fn settings_engine(
    dir: &Path,
    url: &str,
) -> anyhow::Result<Engine<ScopedTransport<HttpTransport>, SqliteStateStore, RecordStore>> {
    let transport = ScopedTransport::new(
        HttpTransport::new(url, TOKEN.to_owned())?,
        Key::new("settings")?,
    );
    Ok(Engine::new(
        transport,
        SqliteStateStore::open(dir.join("settings-state.db")).await?,
        RecordStore::open(dir.join("settings.db")).await?,
        EngineConfig::default(),
    ))
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

    // The other device wrote a setting and a note before this one started.
    let other = tmp.path().join("other");
    std::fs::create_dir_all(other.join("Notes"))?;
    let mut other_settings = settings_engine(&other, &url).await?;
    other_settings
        .replica()
        .put_json(&Key::new("theme")?, &"dark")
        .await?;
    other_settings.sync_once().await?;
    std::fs::write(other.join("Notes/todo.txt"), "buy milk\n")?;
    let notes_remote = ScopedTransport::new(
        HttpTransport::new(&url, TOKEN.to_owned())?,
        Key::new("notes")?,
    );
    folder::open(other.join("Notes"), notes_remote, EngineConfig::default())
        .await?
        .sync_once()
        .await?;

    // This device: both engines go into background loops; the app keeps their handles.
    let here = tmp.path().join("here");
    std::fs::create_dir_all(here.join("Notes"))?;
    let mut settings = settings_engine(&here, &url).await?;
    let records = settings.replica().clone();
    let settings_handle = settings.handle();
    let mut settings_events = settings_handle.events();
    let (settings_changed, local_changes) = mpsc::channel(8);
    let settings_loop =
        tokio::spawn(async move { settings.run(local_changes, RunOptions::default()).await });

    let notes_remote = ScopedTransport::new(
        HttpTransport::new(&url, TOKEN.to_owned())?,
        Key::new("notes")?,
    );
    let config = EngineConfig {
        policy: sync_engine::SyncPolicy {
            max_item_bytes: 1024,
            ..Default::default()
        },
        ..EngineConfig::default()
    };
    let mut notes = folder::open(here.join("Notes"), notes_remote, config).await?;
    let notes_handle = notes.handle();
    let mut notes_events = notes_handle.events();
    let (stop_notes, stopped) = tokio::sync::oneshot::channel::<()>();
    let notes_loop = tokio::spawn(async move {
        let stop = async {
            let _ = stopped.await;
        };
        folder::watch(&mut notes, WatchOptions::default(), stop, |status| {
            println!("notes: {}", folder::status_line(status))
        })
        .await
    });

    // Events: what each first sync brought, by key, for the UI to refresh.
    let event = next_event(&mut settings_events).await?;
    println!("settings synced, changed here: {:?}", event.report.changed);
    ensure!(
        event.report.changed == [Key::new("theme")?],
        "the setting's key in the event"
    );
    ensure!(
        records
            .get_json::<String>(&Key::new("theme")?)
            .await?
            .as_deref()
            == Some("dark")
    );
    let event = next_event(&mut notes_events).await?;
    println!("notes synced, changed here: {:?}", event.report.changed);
    ensure!(
        event.report.changed == [Key::new("todo.txt")?],
        "the note's key in the event"
    );
    ensure!(
        !here.join("Notes/theme").exists(),
        "a setting in the notes folder"
    );

    // The error area: a note over the limit is a warning on the notes engine's stack, read
    // from its handle while the loop runs.
    std::fs::write(here.join("Notes/scan.pdf"), vec![0u8; 4096])?;
    let event = next_event(&mut notes_events).await?;
    let top = notes_handle
        .errors()
        .top()
        .cloned()
        .context("an entry on the error stack")?;
    println!("notes error area: {} ({:?})", top.message, top.class);
    ensure!(
        top.key() == Some(&Key::new("scan.pdf")?),
        "the top entry is about scan.pdf"
    );
    ensure!(
        event.report.skipped == 1,
        "the event counts the skipped note"
    );

    // An app write: tell the loop, which syncs it at once.
    records
        .put_json(&Key::new("font")?, &"JetBrains Mono")
        .await?;
    settings_changed.send(()).await?;
    let event = next_event(&mut settings_events).await?;
    ensure!(event.report.uploaded == 1, "the new setting was uploaded");
    println!("settings: font uploaded");

    settings_handle.stop();
    let _ = stop_notes.send(());
    settings_loop.await?;
    notes_loop.await??;
    println!("both loops stopped");
    Ok(())
}
