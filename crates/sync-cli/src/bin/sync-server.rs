//! `sync-server`: the HTTP sync server on SQLite or PostgreSQL (docs/SPEC.md §6, §7).
//!
//! ```text
//! sync-server --listen 127.0.0.1:8080 --db server.db [--token TENANT:TOKEN ...]
//!             [--token-file FILE] [--max-item-bytes N] [--rate-limit PER_SECOND]
//!             [--max-failed-sign-ins N]
//!             [--tls-cert PEM --tls-key PEM] [--max-connections N]
//!             [--header-timeout-secs S] [--idle-timeout-secs S] [--cors-origin ORIGIN ...]
//!             [--keep-versions N] [--keep-versions-for DURATION] [--spool-dir DIR]
//! sync-server --listen 127.0.0.1:8081 --postgres postgres://USER:PASS@HOST:PORT/DB
//!             [--postgres-pool-size N] ...
//! sync-server tokens add (--db DB | --postgres URL) --tenant T --device NAME [--json]
//! sync-server tokens list (--db DB | --postgres URL) [--tenant T] [--json]
//! sync-server tokens revoke (--db DB | --postgres URL) ID
//! ```
//!
//! Tokens come from `--token`, from `--token-file` (lines `TENANT:TOKEN`, read again on
//! SIGHUP), from JWTs (`--jwt-hs256-secret-file`, `--jwt-public-key` or `--jwt-jwks`, the
//! tenant in `--jwt-tenant-claim`) and from the device tokens in the database (`tokens add`; a revoke holds from the
//! next request on every server sharing the database).
//!
//! With `--postgres` the server is stateless: several of them can serve one database behind one
//! address, and a write on any of them wakes long-polls on all (PostgreSQL LISTEN/NOTIFY).
//!
//! With `--tls-cert` and `--tls-key` it serves HTTPS. Connections that do not send a complete
//! request head within `--header-timeout-secs`, or sit idle between requests longer than
//! `--idle-timeout-secs`, are closed; at most `--max-connections` are open at once (more wait
//! to be accepted).
//!
//! With `--keep-versions N` and/or `--keep-versions-for DURATION` old versions are dropped as
//! keys are written (docs/SPEC.md §4 "Retention"); without them every version is kept.
//!
//! Upload bodies over 1 MiB are written to `--spool-dir` (by default the SQLite database's
//! folder) as they arrive, and downloads of content kept in files are streamed, so
//! transfers that stall hold disk or a buffer, not their content.
//!
//! With `--cors-origin ORIGIN` (repeatable) pages of that origin may call the API from a
//! browser (CORS preflights answered, the protocol's headers allowed and exposed).
//!
//! With `--metrics-listen ADDR` it first prints `metrics on http://ADDR/metrics` (Prometheus
//! text). Prints `listening on http://ADDR` (or `https://`) once ready. SIGINT/SIGTERM stop it cleanly: the listener
//! closes, in-flight requests finish, open long-polls are cut after a grace period, then the
//! database is closed consistent. This file only parses flags and wires the libraries
//! together; serving is [`transport_http::server::serve`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args as ClapArgs, Parser, Subcommand};
use store_postgres::{PgOptions, PgServerStore};
use store_sqlite::SqliteServerStore;
use sync_cli::printable;
use sync_core::server::{Retention, TokenStore};
use sync_core::{ServerConfig, ServerStore, DEFAULT_MAX_ITEM_BYTES};
use transport_http::server::{
    router, serve_with, AnyOf, Authenticator, JwtAuthenticator, ServeOptions, ServerOptions,
    StaticTokens, Stopped, StoredTokens, TlsConfig, TokenFile,
};

#[derive(Parser, Debug)]
#[command(
    name = "sync-server",
    about = "The sync server on SQLite or PostgreSQL",
    version,
    subcommand_negates_reqs = true,
    args_conflicts_with_subcommands = true
)]
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
    /// The most pooled PostgreSQL connections this server opens, plus one for LISTEN
    /// [default: 16]. All servers on one database together need fewer than its
    /// max_connections. Only with --postgres.
    #[arg(
        long,
        value_name = "N",
        requires = "postgres",
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=10_000)
    )]
    postgres_pool_size: Option<usize>,
    /// A tenant and its bearer token, as TENANT:TOKEN. Repeat for more. Visible to every
    /// local user in `ps`: prefer --token-file or device tokens (`sync-server tokens add`).
    #[arg(long = "token", value_name = "TENANT:TOKEN", value_parser = tenant_token)]
    tokens: Vec<(String, String)>,
    /// A file of TENANT:TOKEN lines (# comments), read again on SIGHUP.
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// Accept JWTs signed with HS256 and the secret in FILE (at least 32 bytes).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["jwt_public_key", "jwt_jwks"])]
    jwt_hs256_secret_file: Option<PathBuf>,
    /// Accept JWTs signed with the private half of this RSA (RS256) or P-256 (ES256) public key.
    #[arg(long, value_name = "PEM", conflicts_with = "jwt_jwks")]
    jwt_public_key: Option<PathBuf>,
    /// Accept JWTs signed with a key of this JWKS file (chosen by the token's kid).
    #[arg(long, value_name = "FILE")]
    jwt_jwks: Option<PathBuf>,
    /// The JWT claim that names the tenant.
    #[arg(long, value_name = "NAME", default_value = "sub")]
    jwt_tenant_claim: String,
    /// Accept only JWTs with this issuer (iss).
    #[arg(long, value_name = "ISS")]
    jwt_issuer: Option<String>,
    /// Accept only JWTs with this audience (aud).
    #[arg(long, value_name = "AUD")]
    jwt_audience: Option<String>,
    /// The largest item accepted, in bytes.
    #[arg(long, default_value_t = DEFAULT_MAX_ITEM_BYTES)]
    max_item_bytes: u64,
    /// Retention: keep the newest N versions of every key; an older version is dropped (with
    /// its content, once nothing refers to it) when it is also older than
    /// --keep-versions-for. The current version always stays. Default: keep every version.
    #[arg(
        long,
        value_name = "N",
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..)
    )]
    keep_versions: Option<usize>,
    /// Retention: keep every version younger than this (30d, 12h, 90m, 2w; by the version's
    /// stamp). With --keep-versions only, 0; with this flag only, the newest version of a
    /// key and its current one stay.
    #[arg(long, value_name = "DURATION", value_parser = sync_cli::parse_duration)]
    keep_versions_for: Option<Duration>,
    /// Requests per second one token may send on average (bursts up to twice as many); over
    /// it the server answers 429 with Retry-After. Counted per server process, in memory:
    /// behind n servers on one database a token may send up to n times as much.
    #[arg(
        long,
        value_name = "PER_SECOND",
        default_value_t = ServerOptions::default().rate_limit_per_second,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    rate_limit: u32,
    /// Failed sign-ins (unknown tokens) allowed per minute from one address; past it, that
    /// address gets 429 until the minute is over. 0: no limit (behind a proxy, where every
    /// request comes from the proxy's address).
    #[arg(
        long,
        value_name = "N",
        default_value_t = ServerOptions::default().max_failed_sign_ins_per_minute
    )]
    max_failed_sign_ins: u32,
    // The help text names bare origins; they are not links in the docs.
    #[allow(rustdoc::bare_urls)]
    /// Let web pages of this origin call the API from a browser (CORS), e.g.
    /// https://app.example.com or http://localhost:5173: scheme, host and port, no path.
    /// Repeat for several origins; other origins get no CORS headers.
    #[arg(long = "cors-origin", value_name = "ORIGIN", value_parser = cors_origin)]
    cors_origins: Vec<axum::http::HeaderValue>,
    /// Serve Prometheus metrics at http://ADDR/metrics (requests by route and status, latency,
    /// bytes, writes, open long-polls, store errors). Keep it off the public address.
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<SocketAddr>,
    /// Serve HTTPS with this certificate chain (PEM: the server's certificate first, then any
    /// intermediates). Needs --tls-key.
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM, unencrypted). Needs --tls-cert.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// The most connections open at once; more wait to be accepted until one closes.
    #[arg(
        long,
        value_name = "N",
        default_value_t = ServeOptions::default().max_connections,
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..)
    )]
    max_connections: usize,
    /// Seconds a client may take to send a request's head (and, with TLS, its handshake);
    /// slower connections are closed.
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = ServeOptions::default().header_timeout.as_secs(),
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    header_timeout_secs: u64,
    /// Seconds a keep-alive connection may sit idle between requests before it is closed.
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = ServeOptions::default().idle_timeout.as_secs(),
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    idle_timeout_secs: u64,
    /// Write upload bodies over 1 MiB to this folder as they arrive, so slow or stalled uploads
    /// hold disk, not memory (unnamed owner-only files). Default: the database's folder with
    /// --db; none with --postgres (bodies are held in memory).
    #[arg(long, value_name = "DIR")]
    spool_dir: Option<PathBuf>,
    /// Manage the device tokens in the database instead of serving.
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Device tokens kept (as hashes) in the server's database.
    #[command(subcommand)]
    Tokens(TokensCommand),
}

#[derive(Subcommand, Debug)]
enum TokensCommand {
    /// Make a token for a device and print it (only this once).
    Add {
        #[command(flatten)]
        db: Database,
        /// The tenant the token speaks for.
        #[arg(long)]
        tenant: String,
        /// A name for the device (shown by `list` and GET /sync/v1/devices).
        #[arg(long)]
        device: String,
        /// Print one JSON line {"id","tenant","device","token"}.
        #[arg(long)]
        json: bool,
    },
    /// List the tokens not revoked: id, tenant, device, created, last used.
    List {
        #[command(flatten)]
        db: Database,
        /// Only this tenant's.
        #[arg(long)]
        tenant: Option<String>,
        /// Print one JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token by id; running servers refuse it from their next request.
    Revoke {
        #[command(flatten)]
        db: Database,
        /// The token's id (see `list`).
        id: String,
    },
}

/// The database a `tokens` command works on.
#[derive(ClapArgs, Debug)]
struct Database {
    /// The server's SQLite database.
    #[arg(
        long,
        required_unless_present = "postgres",
        conflicts_with = "postgres"
    )]
    db: Option<PathBuf>,
    /// The server's PostgreSQL database URL.
    #[arg(long, value_name = "URL")]
    postgres: Option<String>,
}

/// How long in-flight requests may take to finish after a stop signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// `--token TENANT:TOKEN`, both parts non-empty, the token hard to guess.
fn tenant_token(s: &str) -> Result<(String, String), String> {
    let (tenant, token) = s
        .split_once(':')
        .filter(|(tenant, token)| !tenant.is_empty() && !token.is_empty())
        .ok_or_else(|| {
            "expected TENANT:TOKEN, e.g. --token alice:$(openssl rand -hex 16)".to_owned()
        })?;
    transport_http::server::check_token_strength(token)?;
    Ok((tenant.to_owned(), token.to_owned()))
}

/// `--cors-origin ORIGIN`: a web origin, checked once here.
fn cors_origin(s: &str) -> Result<axum::http::HeaderValue, String> {
    transport_http::server::parse_cors_origin(s).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let args = Args::parse();
    // clap's `requires` does not hold beside `subcommand_negates_reqs`; checked here (exit 2).
    if args.postgres_pool_size.is_some() && args.postgres.is_none() {
        use clap::CommandFactory;
        Args::command()
            .error(
                clap::error::ErrorKind::MissingRequiredArgument,
                "--postgres-pool-size only applies with --postgres URL (the SQLite server has \
                 no pool): remove it or give --postgres",
            )
            .exit();
    }
    sync_cli::run(server(args))
}

async fn server(args: Args) -> anyhow::Result<ExitCode> {
    sync_cli::init_tracing();
    if let Some(Command::Tokens(command)) = &args.command {
        tokens(command).await?;
        return Ok(ExitCode::SUCCESS);
    }
    let retention = match (args.keep_versions, args.keep_versions_for) {
        (None, None) => None,
        (n, d) => Some(Retention::new(n.unwrap_or(1), d.unwrap_or(Duration::ZERO))),
    };
    let config = ServerConfig {
        max_item_bytes: args.max_item_bytes,
        retention,
        ..ServerConfig::default()
    };
    let mut auth = AnyOf::new();
    if !args.tokens.is_empty() {
        auth = auth.with(Arc::new(StaticTokens::new(args.tokens.clone())));
    }
    if let Some(path) = &args.token_file {
        let file = Arc::new(TokenFile::load(path)?);
        reload_on_sighup(file.clone())?;
        auth = auth.with(file);
    }
    if let Some(jwt) = jwt(&args)? {
        auth = auth.with(Arc::new(jwt));
    }
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(
            TlsConfig::from_pem_files(cert, key)
                .context("cannot serve HTTPS with --tls-cert and --tls-key")?,
        ),
        (None, None) => None,
        _ => anyhow::bail!("give both --tls-cert PEM and --tls-key PEM, or neither"),
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let serve_options = ServeOptions {
        header_timeout: Duration::from_secs(args.header_timeout_secs),
        idle_timeout: Duration::from_secs(args.idle_timeout_secs),
        max_connections: args.max_connections,
        tls,
    };
    let options = ServerOptions {
        max_item_bytes: args.max_item_bytes,
        rate_limit_per_second: args.rate_limit,
        rate_limit_burst: args.rate_limit.saturating_mul(2),
        max_failed_sign_ins_per_minute: args.max_failed_sign_ins,
        cors_origins: args.cors_origins.clone(),
        spool_dir: args.spool_dir.clone(),
        ..ServerOptions::default()
    };
    if let Some(dir) = &args.spool_dir {
        anyhow::ensure!(
            dir.is_dir(),
            "--spool-dir {} is not a folder; create it (on the server's disk) or leave the \
             flag out",
            dir.display()
        );
    }
    let app = match (&args.db, &args.postgres) {
        (_, Some(url)) => {
            let defaults = PgOptions::default();
            let size = args.postgres_pool_size.unwrap_or(defaults.pool_size);
            let pool = defaults.with_pool_size(size);
            let store = PgServerStore::connect_with(url, config, pool)
                .await
                .context("the server cannot start on the PostgreSQL database")?;
            app(Arc::new(store), auth, options).await?
        }
        (Some(db), None) => {
            let store = SqliteServerStore::open(db, config)
                .await
                .context("the server cannot start on the SQLite database")?;
            // By default beside the database: on its disk, and a folder that exists.
            let beside = match db.parent() {
                Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
                _ => PathBuf::from("."),
            };
            let options = ServerOptions {
                spool_dir: options.spool_dir.or(Some(beside)),
                ..options
            };
            app(Arc::new(store), auth, options).await?
        }
        (None, None) => anyhow::bail!("give --db FILE or --postgres URL"),
    };
    if let Some(addr) = args.metrics_listen {
        serve_metrics(addr).await?;
    }
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
    println!("listening on {scheme}://{addr}");
    // Every write is one database transaction, so cutting a request never leaves the
    // database half-written.
    let stopped = serve_with(
        listener,
        app,
        serve_options,
        sync_cli::shutdown_signal(),
        SHUTDOWN_GRACE,
    )
    .await;
    if let Stopped::Cut { .. } = stopped {
        eprintln!("requests still open after {SHUTDOWN_GRACE:?} (long-polls) were cut");
    }
    eprintln!("stopped cleanly");
    Ok(ExitCode::SUCCESS)
}

/// Installs the Prometheus recorder and serves its text at `http://addr/metrics` until the
/// process ends; prints `metrics on http://ADDR/metrics` once listening.
async fn serve_metrics(addr: SocketAddr) -> anyhow::Result<()> {
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    // Latency as a histogram with buckets (not a summary), so it adds up across servers.
    const BUCKETS: &[f64] = &[
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    ];
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(transport_http::server::observe::DURATION.to_owned()),
            BUCKETS,
        )
        .context("cannot set the latency buckets")?
        .install_recorder()
        .context("cannot install the metrics recorder")?;
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
        format!("cannot listen for metrics on {addr}: choose another --metrics-listen")
    })?;
    let bound = listener
        .local_addr()
        .context("cannot read the metrics address")?;
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let text = handle.render();
            async move { ([("content-type", "text/plain; version=0.0.4")], text) }
        }),
    );
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            eprintln!(
                "the metrics listener stopped: {}",
                printable(&e.to_string())
            );
        }
    });
    println!("metrics on http://{bound}/metrics");
    Ok(())
}

/// The router over `store`, accepting `auth`'s tokens and the store's device tokens, with the
/// device routes on.
async fn app<S: ServerStore + TokenStore + 'static>(
    store: Arc<S>,
    auth: AnyOf,
    options: ServerOptions,
) -> anyhow::Result<axum::Router> {
    let stored = store
        .tokens(None)
        .await
        .context("cannot read the device tokens in the database")?;
    if auth.is_empty() && stored.is_empty() {
        eprintln!(
            "warning: no tokens yet, so every request is refused: add a device token with \
             `sync-server tokens add --db DB --tenant T --device NAME`, or give --token-file"
        );
    }
    let tokens: Arc<dyn TokenStore> = store.clone();
    let auth: Arc<dyn Authenticator> =
        Arc::new(auth.with(Arc::new(StoredTokens::new(tokens.clone()))));
    let options = ServerOptions {
        token_store: Some(tokens),
        ..options
    };
    Ok(router(store, auth, options))
}

/// The JWT authenticator the flags ask for, if any.
fn jwt(args: &Args) -> anyhow::Result<Option<JwtAuthenticator>> {
    let auth = match (
        &args.jwt_hs256_secret_file,
        &args.jwt_public_key,
        &args.jwt_jwks,
    ) {
        (Some(f), _, _) => JwtAuthenticator::hs256_file(f)?,
        (None, Some(f), _) => JwtAuthenticator::public_key_file(f)?,
        (None, None, Some(f)) => JwtAuthenticator::jwks_file(f)?,
        (None, None, None) => return Ok(None),
    };
    let mut auth = auth.tenant_claim(args.jwt_tenant_claim.clone());
    if let Some(iss) = &args.jwt_issuer {
        auth = auth.issuer(iss.clone());
    }
    if let Some(aud) = &args.jwt_audience {
        auth = auth.audience(aud.clone());
    }
    Ok(Some(auth))
}

/// Reads `file` again on every SIGHUP; a bad edit is reported and the old tokens stay.
fn reload_on_sighup(file: Arc<TokenFile>) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangups = signal(SignalKind::hangup()).context("cannot listen for SIGHUP")?;
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            match file.reload() {
                Ok(n) => eprintln!(
                    "reloaded {} ({n} tokens)",
                    printable(&file.path().display().to_string())
                ),
                Err(e) => eprintln!(
                    "error: {}; the tokens loaded before stay in force",
                    printable(&e.to_string())
                ),
            }
        }
    });
    Ok(())
}

/// Runs a `tokens` command on the database it names.
async fn tokens(command: &TokensCommand) -> anyhow::Result<()> {
    let db = match command {
        TokensCommand::Add { db, .. }
        | TokensCommand::List { db, .. }
        | TokensCommand::Revoke { db, .. } => db,
    };
    let store: Arc<dyn TokenStore> = match (&db.db, &db.postgres) {
        (_, Some(url)) => Arc::new(
            PgServerStore::connect(url, ServerConfig::default())
                .await
                .context("cannot open the PostgreSQL database")?,
        ),
        (Some(path), None) => Arc::new(
            SqliteServerStore::open(path, ServerConfig::default())
                .await
                .with_context(|| format!("cannot open the database {}", path.display()))?,
        ),
        (None, None) => anyhow::bail!("give --db FILE or --postgres URL"),
    };
    match command {
        TokensCommand::Add {
            tenant,
            device,
            json,
            ..
        } => sync_cli::tokens::add(&*store, tenant, device, *json).await,
        TokensCommand::List { tenant, json, .. } => {
            sync_cli::tokens::list(&*store, tenant.as_deref(), *json).await
        }
        TokensCommand::Revoke { id, .. } => sync_cli::tokens::revoke(&*store, id).await,
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_flags_are_consistent() {
        super::Args::command().debug_assert();
    }
}
