//! `folder-sync`: keep a folder in step with a sync server or a shared remote folder
//! (docs/SPEC.md §7).
//!
//! ```text
//! folder-sync --dir DIR (--server URL [--token-file FILE] [--ca-cert PEM] | --remote-dir DIR)
//!             [--identity path|app-name] [--deletes keep|propagate] [--once] [--json]
//! folder-sync --dir DIR (--server ... | --remote-dir DIR) history PATH [--json]
//! folder-sync --dir DIR (--server ... | --remote-dir DIR) restore PATH --rev N [--json]
//! ```
//!
//! The token for `--server` comes from `--token-file`, the `SYNC_TOKEN` environment variable,
//! or `--token` (which every local user can read in `ps`). An `https://` server is verified
//! against the bundled webpki (Mozilla) roots, plus the CA in `--ca-cert` for a server whose
//! certificate is signed by your own CA or is self-signed.
//!
//! `history` lists every version the remote keeps of one file (PATH relative to DIR, or an
//! absolute path inside it); `restore` makes version N current again as a normal edit (what
//! the file holds now is kept in `DIR/.sync/backups/`) and runs one sync to upload it.
//!
//! `--once` runs one sync and exits: 0 on success, 1 when the top error is `Auth`, `Storage` or
//! `Offline` ([`sync_engine::folder::exit_code`]). `--json` prints the report as one JSON line.
//! Without `--once` it watches the folder and the server ([`sync_engine::folder::watch`]) and
//! prints one line per status change (`syncing`, `idle`, `off`, `error: <top entry>`) until
//! SIGINT/SIGTERM. On a terminal (stderr) and without `--json`, a sync that runs over a second
//! or plans many actions also shows a progress bar on stderr (`sync_cli::progress`). State
//! lives in `DIR/.sync/`. This file only parses flags, opens the transport and prints.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use sync_cli::printable;
use sync_cli::progress::Progress;
use sync_core::{
    DeletePolicy, EngineConfig, Identity, Key, Revision, SyncPolicy, SyncReport, SyncStatus,
    TenantId, Transport,
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
    #[arg(long, conflicts_with = "remote_dir", requires = "credentials")]
    server: Option<String>,
    /// The bearer token for --server. Visible in `ps` when given here: prefer --token-file or
    /// the SYNC_TOKEN environment variable.
    #[arg(
        long,
        env = "SYNC_TOKEN",
        hide_env_values = true,
        group = "credentials"
    )]
    token: Option<String>,
    /// A file holding the bearer token for --server (its first line that is not blank or a
    /// # comment).
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with = "token",
        group = "credentials"
    )]
    token_file: Option<PathBuf>,
    /// Trust this CA certificate (PEM) too when verifying an https:// --server: for a
    /// certificate signed by your own CA, or a self-signed one.
    #[arg(long, value_name = "PEM", requires = "server")]
    ca_cert: Option<PathBuf>,
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
    /// Print the report (with --once), the history or the restore as one JSON line.
    #[arg(long, global = true)]
    json: bool,
    /// Look at or bring back versions of one file instead of syncing.
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// List every version the remote keeps of a file, oldest first.
    History {
        /// The file: relative to --dir, or an absolute path inside it.
        path: PathBuf,
    },
    /// Make an older version of a file current again (as a normal edit), then sync.
    Restore {
        /// The file: relative to --dir, or an absolute path inside it.
        path: PathBuf,
        /// The revision to bring back (see `history`).
        #[arg(long)]
        rev: u64,
    },
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
            let token = token(&args)?;
            let mut transport = HttpTransport::new(url, token).with_context(|| {
                format!("cannot use the server URL {url}. Give one like http://127.0.0.1:8080")
            })?;
            if let Some(path) = &args.ca_cert {
                let pem = std::fs::read(path).with_context(|| {
                    format!(
                        "cannot read the CA certificate file {} (--ca-cert)",
                        path.display()
                    )
                })?;
                transport = transport.with_ca_cert(&pem).with_context(|| {
                    format!(
                        "cannot use the CA certificate file {} (--ca-cert)",
                        path.display()
                    )
                })?;
            }
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
    match &args.command {
        Some(Command::History { path }) => {
            let key = key_of(&args.dir, path)?;
            let versions = engine
                .history(&key)
                .await
                .with_context(|| format!("cannot read the history of {key}"))?;
            if args.json {
                println!("{}", serde_json::to_string(&versions)?);
            } else {
                for v in &versions {
                    let what = match (v.deleted, v.hash) {
                        (true, _) => "deleted".to_owned(),
                        (false, Some(h)) => format!("{} bytes, {}", v.size, &h.to_string()[..12]),
                        (false, None) => "folder".to_owned(),
                    };
                    println!("rev {}  {}  stamp {}", v.rev.0, what, v.stamp);
                }
            }
            return Ok(ExitCode::SUCCESS);
        }
        Some(Command::Restore { path, rev }) => {
            let key = key_of(&args.dir, path)?;
            engine
                .restore(&key, Revision(*rev))
                .await
                .with_context(|| format!("cannot restore revision {rev} of {key}"))?;
            let outcome = engine.sync_once().await;
            let code = folder::exit_code(&outcome);
            let report = outcome.unwrap_or_else(|failed| failed.partial);
            if args.json {
                let out = serde_json::json!({ "key": key, "rev": rev, "report": report });
                println!("{out}");
            } else {
                println!("restored {} to revision {rev}", printable(key.as_str()));
                print_report(&report, false)?;
            }
            return Ok(ExitCode::from(code));
        }
        None => {}
    }
    // A bar on stderr during long syncs, on a terminal only (other output stays as it is).
    let progress = Progress::default();
    let follow = Progress::wanted(args.json).then(|| {
        let (progress, status) = (progress.clone(), engine.status());
        let replica = engine.replica().clone();
        tokio::spawn(async move { progress.follow(status, move || replica.bytes_moved()).await })
    });
    if args.once {
        let outcome = engine.sync_once().await;
        if let Some(task) = &follow {
            task.abort();
        }
        progress.clear();
        let code = folder::exit_code(&outcome);
        let report = match outcome {
            Ok(report) => report,
            Err(failed) => {
                // The report (stdout) lists it too; this says why the exit code is not 0.
                if code != 0 {
                    eprintln!(
                        "error: the sync stopped: {}",
                        printable(&failed.error.to_string())
                    );
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
        |status| {
            if !matches!(status, SyncStatus::Syncing { .. }) {
                progress.clear();
            }
            progress.println(&printable(&folder::status_line(status)));
        },
    )
    .await
    .with_context(|| format!("cannot watch {} for changes", args.dir.display()))?;
    if let Some(task) = &follow {
        task.abort();
    }
    progress.clear();
    Ok(ExitCode::SUCCESS)
}

/// The bearer token: from --token-file, else --token or SYNC_TOKEN.
fn token(args: &Args) -> anyhow::Result<String> {
    if let Some(path) = &args.token_file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the token file {}", path.display()))?;
        return text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_owned)
            .with_context(|| format!("the token file {} holds no token", path.display()));
    }
    args.token.clone().context(
        "--server needs a token: give --token-file FILE, set SYNC_TOKEN, or give --token TOKEN",
    )
}

/// The key of `path`: relative to `dir`, or an absolute path inside it.
fn key_of(dir: &std::path::Path, path: &std::path::Path) -> anyhow::Result<Key> {
    let relative = if path.is_absolute() {
        let dir = std::fs::canonicalize(dir)
            .with_context(|| format!("cannot find the folder {}", dir.display()))?;
        let parent = path.parent().unwrap_or(path);
        let parent = std::fs::canonicalize(parent).unwrap_or_else(|_| parent.to_path_buf());
        let full = match path.file_name() {
            Some(name) => parent.join(name),
            None => parent,
        };
        full.strip_prefix(&dir)
            .with_context(|| {
                format!(
                    "{} is not inside {}; give a path inside the synced folder",
                    path.display(),
                    dir.display()
                )
            })?
            .to_path_buf()
    } else {
        path.to_path_buf()
    };
    let parts: Vec<String> = relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    Key::new(parts.join("/"))
        .with_context(|| format!("{} is not a name that syncs", path.display()))
}

fn print_report(report: &SyncReport, json: bool) -> anyhow::Result<()> {
    if json {
        println!(
            "{}",
            serde_json::to_string(report).context("cannot write the report as JSON")?
        );
    } else {
        println!(
            "uploaded {}, downloaded {}, folders {}, conflicts {}, unchanged {}, skipped {}",
            report.uploaded,
            report.downloaded,
            report.folders,
            report.conflicts,
            report.unchanged,
            report.skipped
        );
        for e in &report.errors {
            println!("{:?}: {}", e.class, printable(&e.message));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_flags_are_consistent() {
        super::Args::command().debug_assert();
    }
}
