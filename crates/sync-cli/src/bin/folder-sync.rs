//! `folder-sync`: keep a folder in step with a sync server or a shared remote folder
//! (docs/SPEC.md §7).
//!
//! ```text
//! folder-sync --dir DIR (--server URL --token TOKEN | --remote-dir DIR)
//!             [--identity path|app-name] [--deletes keep|propagate] [--once] [--json]
//! ```
//!
//! `--once` runs one sync and exits: 0 on success, 1 when the top error is `Auth`, `Storage` or
//! `Offline` ([`sync_engine::folder::exit_code`]). `--json` prints the report as one JSON line.
//! Without `--once` it watches the folder and the server ([`sync_engine::folder::watch`]) and
//! prints one line per status change (`syncing`, `idle`, `off`, `error: <top entry>`) until
//! SIGINT/SIGTERM. State lives in `DIR/.sync/`. This file only parses flags, opens the
//! transport and prints.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, ValueEnum};
use sync_core::{
    DeletePolicy, EngineConfig, Identity, SyncPolicy, SyncReport, TenantId, Transport,
};
use sync_engine::folder::{self, WatchOptions};
use transport_fs::FsTransport;
use transport_http::client::HttpTransport;

#[derive(Parser, Debug)]
#[command(
    name = "folder-sync",
    about = "Keep a folder in step with a sync server or a shared remote folder",
    version
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

fn main() -> ExitCode {
    let args = Args::parse();
    sync_cli::run(folder_sync(args))
}

async fn folder_sync(args: Args) -> anyhow::Result<ExitCode> {
    sync_cli::init_tracing();
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
    match (&args.server, &args.remote_dir) {
        (Some(url), _) => {
            let token = args.token.clone().context("--server needs --token")?;
            let transport = HttpTransport::new(url, token).with_context(|| {
                format!("cannot use the server URL {url}. Give one like http://127.0.0.1:8080")
            })?;
            sync(&args, transport, config).await
        }
        (None, Some(remote)) => {
            let transport = FsTransport::open(remote, TenantId::new("default"))
                .await
                .with_context(|| format!("cannot open the remote folder {}", remote.display()))?;
            sync(&args, transport, config).await
        }
        (None, None) => anyhow::bail!("give --server URL --token TOKEN, or --remote-dir DIR"),
    }
}

/// Runs once or watches; returns the exit code.
async fn sync<T: Transport + 'static>(
    args: &Args,
    transport: T,
    config: EngineConfig,
) -> anyhow::Result<ExitCode> {
    let mut engine = folder::open(&args.dir, transport, config)
        .await
        .with_context(|| format!("cannot open {} for sync", args.dir.display()))?;
    if args.once {
        let outcome = engine.sync_once().await;
        let code = folder::exit_code(&outcome);
        let report = match outcome {
            Ok(report) => report,
            Err(failed) => {
                // The report (stdout) lists it too; this says why the exit code is not 0.
                if code != 0 {
                    eprintln!("error: the sync stopped: {}", failed.error);
                }
                failed.partial
            }
        };
        print_report(&report, args.json)?;
        return Ok(ExitCode::from(code));
    }
    folder::watch(
        &mut engine,
        WatchOptions::default(),
        sync_cli::shutdown_signal(),
        |status| println!("{}", folder::status_line(status)),
    )
    .await
    .with_context(|| format!("cannot watch {} for changes", args.dir.display()))?;
    Ok(ExitCode::SUCCESS)
}

fn print_report(report: &SyncReport, json: bool) -> anyhow::Result<()> {
    if json {
        println!(
            "{}",
            serde_json::to_string(report).context("cannot write the report as JSON")?
        );
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
