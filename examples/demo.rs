//! `demo`: the README's first command. A sync server on an embedded SQLite database in a
//! temporary folder, two devices syncing folders through it over HTTP on loopback: uploads,
//! downloads, an edit, a conflict and where its loser was kept, and a delete that does not
//! propagate. Narrates each step and exits 0.
//!
//! `cargo run --release --example demo [-- --keep]` (`--keep` leaves the folders for a look).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{ensure, Context};
use store_sqlite::SqliteServerStore;
use sync_core::{EngineConfig, Key, ServerConfig, Transport};
use sync_engine::folder::{self, FolderEngine};
use transport_http::client::HttpTransport;
use transport_http::server::{nodelay, router, ServerOptions, StaticTokens};

type Device = FolderEngine<HttpTransport>;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let keep = std::env::args().any(|a| a == "--keep");
    let tmp = tempfile::Builder::new().prefix("sync-demo-").tempdir()?;
    let root = tmp.path().to_path_buf();

    // 1. The server.
    let store = SqliteServerStore::open(root.join("server.db"), ServerConfig::default()).await?;
    let tokens = StaticTokens::new([("alice", "alice-secret")]);
    let app = router(Arc::new(store), Arc::new(tokens), ServerOptions::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(nodelay(listener), app).await });
    say(&format!(
        "1. A sync server runs on {url}, storing in {}",
        root.join("server.db").display()
    ));

    // 2. Two devices.
    let mut laptop = device(&root, "laptop", &url).await?;
    let mut desktop = device(&root, "desktop", &url).await?;
    say(&format!(
        "2. Two devices sync the folders {} and {}",
        dir(&laptop).display(),
        dir(&desktop).display()
    ));

    // 3. Uploads.
    write(&laptop, "notes/todo.txt", b"- buy milk\n", 0)?;
    write(&laptop, "site/index.html", b"<h1>Hello</h1>\n", 0)?;
    let photo: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    write(&laptop, "photos/cat.jpg", &photo, 0)?;
    let r = laptop.sync_once().await?;
    say(&format!(
        "3. The laptop creates 3 files in 3 folders and syncs: uploaded {} files and {} folders",
        r.uploaded, r.folders
    ));

    // 4. Downloads.
    let r = desktop.sync_once().await?;
    ensure!(
        read(&desktop, "photos/cat.jpg")? == photo,
        "the photo did not arrive intact"
    );
    say(&format!(
        "4. The desktop syncs: downloaded {} files and {} folders; the 200 KB photo is byte for byte the same",
        r.downloaded, r.folders
    ));

    // 5. An edit travels back.
    write(&desktop, "notes/todo.txt", b"- buy milk\n- call mum\n", 0)?;
    desktop.sync_once().await?;
    let r = laptop.sync_once().await?;
    say(&format!(
        "5. The desktop edits notes/todo.txt; the laptop syncs and downloads {} item: {:?}",
        r.downloaded,
        String::from_utf8_lossy(&read(&laptop, "notes/todo.txt")?)
    ));

    // 6. A conflict: both edit the same file before syncing; the laptop's edit is newer.
    write(
        &desktop,
        "notes/todo.txt",
        b"- buy milk\n- call mum\n- desktop: water plants\n",
        -60,
    )?;
    write(
        &laptop,
        "notes/todo.txt",
        b"- buy milk\n- call mum\n- laptop: book dentist\n",
        0,
    )?;
    laptop.sync_once().await?;
    let r = desktop.sync_once().await?;
    ensure!(r.conflicts == 1, "expected a conflict, got {r:?}");
    let winner = read(&desktop, "notes/todo.txt")?;
    say(&format!(
        "6. Both edit notes/todo.txt offline; the laptop's edit is a minute newer. The desktop finds \
         {} conflict and keeps the newer edit: {:?}",
        r.conflicts,
        String::from_utf8_lossy(&winner)
    ));
    let backups = list(&dir(&desktop).join(".sync/backups"));
    for b in &backups {
        say(&format!(
            "   The desktop's losing edit was kept locally: {} = {:?}",
            b.strip_prefix(dir(&desktop))?.display(),
            String::from_utf8_lossy(&std::fs::read(b)?)
        ));
    }
    ensure!(!backups.is_empty(), "no local backup of the loser");
    let history = desktop
        .transport()
        .history(&Key::new("notes/todo.txt")?)
        .await?;
    say(&format!(
        "   ...and in the server's version history of notes/todo.txt: {} versions (revisions {})",
        history.len(),
        history
            .iter()
            .map(|v| v.rev.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let r = laptop.sync_once().await?;
    say(&format!(
        "   The laptop syncs again: {} transferred, both devices agree",
        r.transferred()
    ));
    ensure!(
        read(&laptop, "notes/todo.txt")? == winner,
        "devices disagree"
    );

    // 7. Deletes do not propagate by default.
    std::fs::remove_file(dir(&laptop).join("photos/cat.jpg"))?;
    laptop.sync_once().await?;
    desktop.sync_once().await?;
    ensure!(
        read(&desktop, "photos/cat.jpg").is_ok(),
        "a delete propagated"
    );
    let r = laptop.sync_once().await?;
    ensure!(
        read(&laptop, "photos/cat.jpg").is_err(),
        "the deleted file came back"
    );
    say(&format!(
        "7. The laptop deletes photos/cat.jpg: the desktop keeps its copy and the server keeps it too; \
         the laptop does not get it back ({} transferred)",
        r.transferred()
    ));

    // 8. Quiet.
    let (a, b) = (laptop.sync_once().await?, desktop.sync_once().await?);
    say(&format!(
        "8. One more sync on each device moves nothing: {} and {} items transferred",
        a.transferred(),
        b.transferred()
    ));
    ensure!(a.transferred() + b.transferred() == 0, "not idempotent");
    if keep {
        let kept = tmp.keep();
        say(&format!("Kept everything in {}", kept.display()));
    }
    say("Done.");
    Ok(())
}

fn say(line: &str) {
    println!("{line}");
}

async fn device(root: &Path, name: &str, url: &str) -> anyhow::Result<Device> {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir)?;
    let transport = HttpTransport::new(url, "alice-secret".to_owned())?;
    Ok(folder::open(&dir, transport, EngineConfig::default()).await?)
}

fn dir(d: &Device) -> &Path {
    d.replica().root()
}

/// Writes a file with its modification time `offset_secs` from now.
fn write(d: &Device, rel: &str, content: &[u8], offset_secs: i64) -> anyhow::Result<()> {
    let path = dir(d).join(rel);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&path, content)?;
    let when = if offset_secs < 0 {
        SystemTime::now() - Duration::from_secs(offset_secs.unsigned_abs())
    } else {
        SystemTime::now() + Duration::from_secs(offset_secs as u64)
    };
    std::fs::File::options()
        .write(true)
        .open(&path)?
        .set_modified(when)?;
    Ok(())
}

fn read(d: &Device, rel: &str) -> anyhow::Result<Vec<u8>> {
    let path = dir(d).join(rel);
    std::fs::read(&path).with_context(|| format!("reading {}", path.display()))
}

fn list(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}
