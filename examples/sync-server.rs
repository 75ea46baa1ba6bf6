//! `sync-server`: the HTTP sync server on SQLite (SPEC §6, §7).
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
//! closes, in-flight requests finish, then the database is closed consistent.

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use store_postgres::PgServerStore;
use store_sqlite::SqliteServerStore;
use sync_core::{ServerConfig, DEFAULT_MAX_ITEM_BYTES};
use transport_http::server::{nodelay, router, ServerOptions, StaticTokens};

#[derive(Parser, Debug)]
#[command(name = "sync-server", about = "The sync server on SQLite")]
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
    #[arg(long = "token", value_name = "TENANT:TOKEN", required = true)]
    tokens: Vec<String>,
    /// The largest item accepted, in bytes.
    #[arg(long, default_value_t = DEFAULT_MAX_ITEM_BYTES)]
    max_item_bytes: u64,
    /// Requests per second one token may send on average (bursts up to twice as many); over
    /// it the server answers 429 with Retry-After.
    #[arg(long, value_name = "PER_SECOND", default_value_t = ServerOptions::default().rate_limit_per_second)]
    rate_limit: u32,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let mut pairs = Vec::new();
    for t in &args.tokens {
        let (tenant, token) = t
            .split_once(':')
            .filter(|(a, b)| !a.is_empty() && !b.is_empty())
            .with_context(|| format!("--token {t:?}: expected TENANT:TOKEN"))?;
        pairs.push((tenant.to_owned(), token.to_owned()));
    }
    let config = ServerConfig {
        max_item_bytes: args.max_item_bytes,
        ..ServerConfig::default()
    };
    let auth = Arc::new(StaticTokens::new(pairs));
    anyhow::ensure!(
        args.rate_limit > 0,
        "--rate-limit must be at least 1 request per second"
    );
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
                .context("cannot use the PostgreSQL database")?;
            router(Arc::new(store), auth, options)
        }
        (Some(db), None) => {
            let store = SqliteServerStore::open(db, config)
                .await
                .with_context(|| format!("cannot open the database {}", db.display()))?;
            router(Arc::new(store), auth, options)
        }
        (None, None) => anyhow::bail!("give --db FILE or --postgres URL"),
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    let listener = nodelay(listener);
    println!("listening on http://{addr}");
    // On SIGINT/SIGTERM: stop accepting, let in-flight requests finish, but do not let an open
    // long-poll (up to 60 s) hold the exit: after the grace period the rest are cut. Every write
    // is one database transaction, so cutting a request never leaves the database half-written.
    let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
    let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
        shutdown_signal().await;
        let _ = stopping_tx.send(());
    });
    tokio::select! {
        served = serve.into_future() => served.context("the server failed")?,
        _ = async {
            if stopping_rx.await.is_ok() {
                tokio::time::sleep(SHUTDOWN_GRACE).await;
            } else {
                std::future::pending::<()>().await;
            }
        } => eprintln!("requests still open after {SHUTDOWN_GRACE:?} (long-polls) were cut"),
    }
    eprintln!("stopped cleanly");
    Ok(())
}

/// How long in-flight requests may take to finish after a stop signal.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(3);

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
