//! `folder-sync`: keep a folder in step with a sync server or a shared remote folder (SPEC §7).
//!
//! ```text
//! folder-sync --dir DIR (--server URL --token TOKEN | --remote-dir DIR)
//!             [--identity path|app-name] [--deletes keep|propagate] [--once] [--json]
//! ```
//!
//! `--once` runs one sync and exits: 0 on success, 1 when the top error is `Auth`, `Storage` or
//! `Offline`. `--json` prints the report as one JSON line. Without `--once` it watches the folder
//! and the server and prints one line per status change (`syncing`, `idle`, `off`,
//! `error: <top entry>`). State lives in `DIR/.sync/`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, ValueEnum};
use replica_fs::watch::FolderWatcher;
use sync_core::{
    DeletePolicy, EngineConfig, ErrorClass, Identity, RunOptions, SyncPolicy, SyncReport,
    SyncStatus, TenantId, Transport,
};
use transport_fs::FsTransport;
use transport_http::client::HttpTransport;

#[derive(Parser, Debug)]
#[command(
    name = "folder-sync",
    about = "Keep a folder in step with a sync server or a shared remote folder"
)]
struct Args {
    /// The folder to sync (its state lives in DIR/.sync/).
    #[arg(long)]
    dir: PathBuf,
    /// The sync server's base URL, e.g. http://127.0.0.1:8080.
    #[arg(long, requires = "token", conflicts_with = "remote_dir")]
    server: Option<String>,
    /// The bearer token for --server.
    #[arg(long)]
    token: Option<String>,
    /// A plain (possibly shared) folder to use as the remote instead of a server.
    #[arg(long, required_unless_present = "server")]
    remote_dir: Option<PathBuf>,
    /// How local items find their remote twins.
    #[arg(long, value_enum, default_value_t = IdentityArg::Path)]
    identity: IdentityArg,
    /// Whether deletes propagate.
    #[arg(long, value_enum, default_value_t = DeletesArg::Keep)]
    deletes: DeletesArg,
    /// Run one sync and exit.
    #[arg(long)]
    once: bool,
    /// Print the report (with --once) as one JSON line.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum IdentityArg {
    Path,
    AppName,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum DeletesArg {
    Keep,
    Propagate,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let policy = SyncPolicy {
        identity: match args.identity {
            IdentityArg::Path => Identity::Path,
            IdentityArg::AppName => Identity::AppName,
        },
        deletes: match args.deletes {
            DeletesArg::Keep => DeletePolicy::Keep,
            DeletesArg::Propagate => DeletePolicy::Propagate,
        },
        ..SyncPolicy::default()
    };
    let config = EngineConfig {
        policy,
        ..EngineConfig::default()
    };
    let code = match (&args.server, &args.remote_dir) {
        (Some(url), _) => {
            let token = args.token.clone().context("--server needs --token")?;
            let transport = HttpTransport::new(url, token)
                .with_context(|| format!("cannot use the server URL {url}"))?;
            run(&args, transport, config).await?
        }
        (None, Some(remote)) => {
            let transport = FsTransport::open(remote, TenantId::new("default"))
                .await
                .with_context(|| format!("cannot open the remote folder {}", remote.display()))?;
            run(&args, transport, config).await?
        }
        (None, None) => anyhow::bail!("give --server URL --token TOKEN, or --remote-dir DIR"),
    };
    std::process::exit(code);
}

/// Runs once or watches; returns the exit code.
async fn run<T: Transport + 'static>(
    args: &Args,
    transport: T,
    config: EngineConfig,
) -> anyhow::Result<i32> {
    let mut engine = sync_engine::folder::open(&args.dir, transport, config)
        .await
        .with_context(|| format!("cannot open {} for sync", args.dir.display()))?;
    if args.once {
        let (report, code) = match engine.sync_once().await {
            Ok(report) => (report, 0),
            Err(failed) => {
                let stops = matches!(
                    failed.error.class(),
                    ErrorClass::Auth | ErrorClass::Storage | ErrorClass::Offline
                );
                (failed.partial, i32::from(stops))
            }
        };
        print_report(&report, args.json)?;
        return Ok(code);
    }

    let (_watcher, local) = FolderWatcher::start(&args.dir, Duration::from_millis(300))
        .with_context(|| format!("cannot watch {}", args.dir.display()))?;
    let mut status = engine.status();
    let handle = engine.handle();
    tokio::spawn(async move {
        let mut last = String::new();
        loop {
            let line = status_line(&status.borrow_and_update());
            if line != last {
                println!("{line}");
                last = line;
            }
            if status.changed().await.is_err() {
                break;
            }
        }
    });
    tokio::spawn(async move {
        shutdown_signal().await;
        handle.stop();
    });
    engine.run(local, RunOptions::default()).await;
    Ok(0)
}

/// The one-line status for a person: `syncing`, `idle`, `off`, or `error: <top entry>`.
fn status_line(status: &SyncStatus) -> String {
    match status {
        SyncStatus::Syncing { .. } => "syncing".to_owned(),
        other => other.to_string(),
    }
}

fn print_report(report: &SyncReport, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(report)?);
    } else {
        println!(
            "uploaded {}, downloaded {}, conflicts {}, unchanged {}, skipped {}",
            report.uploaded, report.downloaded, report.conflicts, report.unchanged, report.skipped
        );
        for e in &report.errors {
            println!("{:?}: {}", e.class, e.message);
        }
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
