//! `sync-server`: the HTTP sync server on SQLite or PostgreSQL (docs/SPEC.md §6, §7).
//!
//! ```text
//! sync-server --listen 127.0.0.1:8080 --db server.db --token TENANT:TOKEN [--token ...]
//!             [--max-item-bytes N] [--rate-limit PER_SECOND]
//! sync-server --listen 127.0.0.1:8081 --postgres postgres://USER:PASS@HOST:PORT/DB --token ...
//! ```
//!
//! With `--postgres` the server is stateless: several of them can serve one database behind one
//! address, and a write on any of them wakes long-polls on all (PostgreSQL LISTEN/NOTIFY).
//!
//! Prints `listening on http://ADDR` once ready. SIGINT/SIGTERM stop it cleanly: the listener
//! closes, in-flight requests finish, open long-polls are cut after a grace period, then the
//! database is closed consistent. This file only parses flags and wires the libraries
//! together; serving is [`transport_http::server::serve`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use store_postgres::PgServerStore;
use store_sqlite::SqliteServerStore;
use sync_core::{ServerConfig, DEFAULT_MAX_ITEM_BYTES};
use transport_http::server::{router, serve, ServerOptions, StaticTokens, Stopped};

#[derive(Parser, Debug)]
#[command(name = "sync-server", about = "The sync server on SQLite", version)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// The SQLite database (created if missing; large blobs go to DB.blobs/ beside it).
    #[arg(
        long,
        required_unless_present = "postgres",
        conflicts_with = "postgres"
    )]
    db: Option<PathBuf>,
    /// A PostgreSQL database URL to use instead of --db (several servers may share it).
    #[arg(long, value_name = "URL")]
    postgres: Option<String>,
    /// A tenant and its bearer token, as TENANT:TOKEN. Repeat for more.
    #[arg(long = "token", value_name = "TENANT:TOKEN", required = true, value_parser = tenant_token)]
    tokens: Vec<(String, String)>,
    /// The largest item accepted, in bytes.
    #[arg(long, default_value_t = DEFAULT_MAX_ITEM_BYTES)]
    max_item_bytes: u64,
    /// Requests per second one token may send on average (bursts up to twice as many); over
    /// it the server answers 429 with Retry-After.
    #[arg(
        long,
        value_name = "PER_SECOND",
        default_value_t = ServerOptions::default().rate_limit_per_second,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    rate_limit: u32,
}

/// How long in-flight requests may take to finish after a stop signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// `--token TENANT:TOKEN`, both parts non-empty.
fn tenant_token(s: &str) -> Result<(String, String), String> {
    s.split_once(':')
        .filter(|(tenant, token)| !tenant.is_empty() && !token.is_empty())
        .map(|(tenant, token)| (tenant.to_owned(), token.to_owned()))
        .ok_or_else(|| "expected TENANT:TOKEN, e.g. --token alice:s3cret".to_owned())
}

fn main() -> ExitCode {
    let args = Args::parse();
    sync_cli::run(server(args))
}

async fn server(args: Args) -> anyhow::Result<ExitCode> {
    sync_cli::init_tracing();
    let config = ServerConfig {
        max_item_bytes: args.max_item_bytes,
        ..ServerConfig::default()
    };
    let auth = Arc::new(StaticTokens::new(args.tokens));
    let options = ServerOptions {
        max_item_bytes: args.max_item_bytes,
        rate_limit_per_second: args.rate_limit,
        rate_limit_burst: args.rate_limit.saturating_mul(2),
        ..ServerOptions::default()
    };
    let app = match (&args.db, &args.postgres) {
        (_, Some(url)) => {
            let store = PgServerStore::connect(url, config)
                .await
                .context("the server cannot start on the PostgreSQL database")?;
            router(Arc::new(store), auth, options)
        }
        (Some(db), None) => {
            let store = SqliteServerStore::open(db, config)
                .await
                .context("the server cannot start on the SQLite database")?;
            router(Arc::new(store), auth, options)
        }
        (None, None) => anyhow::bail!("give --db FILE or --postgres URL"),
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {}. Is another program using it? Choose another --listen \
                 address",
                args.listen
            )
        })?;
    let addr = listener
        .local_addr()
        .context("cannot read the address listened on")?;
    println!("listening on http://{addr}");
    // Every write is one database transaction, so cutting a request never leaves the
    // database half-written.
    if let Stopped::Cut { .. } =
        serve(listener, app, sync_cli::shutdown_signal(), SHUTDOWN_GRACE).await
    {
        eprintln!("requests still open after {SHUTDOWN_GRACE:?} (long-polls) were cut");
    }
    eprintln!("stopped cleanly");
    Ok(ExitCode::SUCCESS)
}
