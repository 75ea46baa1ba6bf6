//! The load test behind `sync-load-test`: many concurrent simulated clients against sync
//! servers on loopback, then a check that nothing a client was told is stored was lost.
//!
//! ```text
//! sync-load-test [--clients 100] [--seconds 60] [--keys 8] [--tenants 1]
//!                [--server URL [--server URL ...] --token TOKEN [--token ...]]
//! ```
//!
//! - Without `--server` it starts an embedded server in this process: a `SqliteServerStore`
//!   in a temporary folder behind `transport_http::router` with the default `ServerOptions`,
//!   on 127.0.0.1:0 (its connection cap raised to fit every client). The server and the
//!   clients then share this process's CPU (and the tokio runtime), so the figures are those
//!   of both together on this machine.
//! - With `--server URL` it drives a running `sync-server` (only on loopback: 127.0.0.1,
//!   `localhost` or `[::1]`; every URL is checked). Client `i` uses token `i mod m` of the `m`
//!   `--token` values. The server limits the requests of each token (`--rate-limit`, per
//!   server process), so give it one token per client (`sync-server --token load:t0 --token
//!   load:t1 ...` and the same `--token t0 --token t1 ...` here), or the figures may measure
//!   the rate limiter. It also keeps at most `--max-connections` open (default 1024; each
//!   client holds one or more): raise it for more than a few hundred clients.
//! - `--server` may be repeated: client `i` then talks only to server `i mod n` of the `n`
//!   URLs, e.g. several `sync-server --postgres URL` processes on one PostgreSQL database
//!   (each with the same tokens). The nothing-lost check reads everything through the first
//!   server: all servers must share one database, so any of them sees every write. (Servers
//!   with separate databases fail the check, the writes made through the others being "lost".)
//! - An external server's database must not hold this tenant's `load/...` keys yet (a fresh
//!   `--db` file or PostgreSQL database per run): a second run on the same database would see
//!   its creates conflict, and counts them as errors.
//!
//! By default all clients are devices of **one tenant** (the embedded server gives each its own
//! token, as real devices have): every write takes the next revision of the same per-tenant
//! counter, and every client's change feed carries everyone's writes. With `--tenants N` client
//! `i` is a device of tenant `i mod N` instead (the embedded server names them `load0`..; an
//! external server must map token `t` to tenant `t mod N`, and the number of `--token` values
//! must be a multiple of N), so writes spread over N counters and feeds. Each client owns `--keys` keys
//! (`load/cNNN/kJ`) and loops until the time is up: push one of its keys (a create with
//! `If-None-Match: *` the first time, then an overwrite with `If-Match` of the revision it got
//! back), pull one page (100) of the change feed from its cursor, and fetch one of its keys back
//! (which must be exactly what it last wrote). Each client is its own `HttpTransport` (its own
//! connection pool) with retries off, so every failed request is counted.
//!
//! At the end it reports requests/second, p50/p95/p99 latency (all requests and per operation),
//! the errors by kind, and the **nothing-lost check**: every write a client got `Accepted` for
//! is in its key's version history with its revision and hash, each key's current content is
//! (byte for byte, by hash) the last accepted write or a newer version, the first accepted
//! version of each key is still readable by revision, and the change feed from the start lists
//! every key (per tenant, through a token of that tenant). The program exits 1 on any error or
//! loss. Everything is bounded: the load phase
//! by `--seconds` (plus at most one request timeout), the check by the number of keys.
//!
//! This module measures and checks through the public `Transport` API only; it must not reach
//! into a store.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{ensure, Context};
use bytes::Bytes;
use store_sqlite::SqliteServerStore;
use sync_core::{
    ContentHash, Cursor, Error, Key, NodeId, Precondition, PushOutcome, PushRequest, Revision,
    ServerConfig, Stamp, Transport,
};
use transport_http::client::{HttpTransport, RetryPolicy};
use transport_http::server::{router, serve_with, ServeOptions, ServerOptions, StaticTokens};

/// What to run: how many clients, how long, against which servers.
#[derive(Debug, Clone)]
pub struct Options {
    /// Concurrent simulated clients (at least 1).
    pub clients: usize,
    /// How long the load runs, in seconds (1..=3600).
    pub seconds: u64,
    /// Keys each client writes in turn (at least 1).
    pub keys: usize,
    /// Tenants the clients are spread over (client `i` is in tenant `i mod tenants`; 1..=clients).
    pub tenants: usize,
    /// Running sync-servers' base URLs, loopback only (client `i` uses server `i mod n`, all on
    /// one database); empty: an embedded server in this process.
    pub servers: Vec<String>,
    /// Bearer tokens of the external servers (client `i` uses token `i mod m`).
    pub tokens: Vec<String>,
}

/// How a run ended; the figures themselves went to the `print` callback of [`run`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// Failed requests and wrong answers (conflicts, stale reads, out-of-order feeds).
    pub errors: u64,
    /// Accepted writes the nothing-lost check did not find as written.
    pub lost: usize,
}

impl Outcome {
    /// No error and nothing lost.
    pub fn passed(&self) -> bool {
        self.errors == 0 && self.lost == 0
    }
}

/// The operations a client does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Op {
    Create,
    Overwrite,
    Changes,
    Fetch,
}

const OPS: [Op; 4] = [Op::Create, Op::Overwrite, Op::Changes, Op::Fetch];

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Create => "create (PUT If-None-Match)",
            Op::Overwrite => "overwrite (PUT If-Match)",
            Op::Changes => "changes (GET /changes)",
            Op::Fetch => "fetch (GET /items)",
        }
    }
}

/// One accepted write.
#[derive(Debug, Clone)]
struct Write {
    key: Key,
    rev: Revision,
    hash: ContentHash,
}

/// What one client saw.
#[derive(Default)]
struct ClientLog {
    /// Latency of every request, in microseconds, by operation.
    latency: HashMap<Op, Vec<u64>>,
    /// Failures by kind.
    errors: BTreeMap<String, u64>,
    /// A few failure messages, for the report.
    samples: Vec<String>,
    /// Every accepted write, in order.
    accepted: Vec<Write>,
}

impl ClientLog {
    fn time(&mut self, op: Op, start: Instant) {
        self.latency
            .entry(op)
            .or_default()
            .push(start.elapsed().as_micros() as u64);
    }

    fn fail(&mut self, kind: &str, message: String) {
        *self.errors.entry(kind.to_owned()).or_default() += 1;
        if self.samples.len() < 3 {
            self.samples.push(format!("{kind}: {message}"));
        }
    }
}

/// The kind of a transport error, for the error table.
fn kind(e: &Error) -> String {
    let name = match e {
        Error::Auth { .. } => "auth",
        Error::Storage { .. } => "storage",
        Error::Offline { .. } => "offline",
        Error::Throttled { .. } => "throttled",
        Error::CursorExpired => "cursor_expired",
        Error::InvalidCursor(_) => "invalid_cursor",
        Error::NotFound { .. } => "not_found",
        Error::InvalidKey(_) => "invalid_key",
        Error::HashMismatch { .. } => "hash_mismatch",
        Error::TooLarge { .. } => "too_large",
        _ => "other",
    };
    name.to_owned()
}

/// A small deterministic generator (xorshift), so the load test needs no random crate.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// One simulated client until `deadline`.
async fn client(i: usize, own: Vec<Key>, transport: HttpTransport, deadline: Instant) -> ClientLog {
    let keys = own.len();
    let mut log = ClientLog::default();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (i as u64 + 1).wrapping_mul(0x2545_F491_4F6C_DD1D));
    let key_of = |j: usize| own[j].clone();
    // Per key: the revision and hash of our last accepted write; `None` = not created yet,
    // `unsure` = a write failed, so the server may or may not hold it: read it back first.
    let mut last: Vec<Option<(Revision, ContentHash)>> = vec![None; keys];
    let mut unsure = vec![false; keys];
    let mut cursor: Option<Cursor> = None;
    let mut seen = Revision::ZERO;
    let mut version = 0u64;
    let node = NodeId(i as u64 + 1);
    while Instant::now() < deadline {
        let j = (version as usize) % keys;
        version += 1;
        let key = key_of(j);
        if unsure[j] {
            match transport.fetch(&key, None).await {
                Ok(f) => last[j] = f.version.hash.map(|h| (f.version.rev, h)),
                Err(Error::NotFound { .. }) => last[j] = None,
                Err(_) => continue,
            }
            unsure[j] = false;
        }
        // Push: create the first time, then overwrite the revision we got back.
        let content = Bytes::from(format!(
            "client {i} key {j} version {version} written at {} ms; padding to look like a small note",
            now_millis()
        ));
        let hash = ContentHash::of(&content);
        let (op, precondition) = match last[j] {
            None => (Op::Create, Precondition::Create),
            Some((rev, _)) => (Op::Overwrite, Precondition::Match(rev)),
        };
        let req = PushRequest {
            key: key.clone(),
            precondition,
            content,
            hash,
            stamp: Stamp::at(now_millis(), node),
            seen,
        };
        let start = Instant::now();
        let pushed = transport.push(req).await;
        log.time(op, start);
        match pushed {
            Ok(PushOutcome::Accepted(meta)) => {
                seen = seen.max(meta.rev);
                last[j] = Some((meta.rev, hash));
                log.accepted.push(Write {
                    key: key.clone(),
                    rev: meta.rev,
                    hash,
                });
            }
            Ok(PushOutcome::Conflict { current }) => {
                // Nobody else writes this key: a conflict means a write was lost or doubled.
                log.fail(
                    "unexpected_conflict",
                    format!("{key}: {precondition:?} answered with current {current:?}"),
                );
                unsure[j] = true;
            }
            Err(e) => {
                log.fail(&kind(&e), e.to_string());
                unsure[j] = true;
            }
        }
        // Pull one page of the feed after our cursor.
        let start = Instant::now();
        let page = transport.changes(cursor.as_ref(), 100).await;
        log.time(Op::Changes, start);
        match page {
            Ok(page) => {
                let after = cursor.map(|c| c.rev()).unwrap_or(Revision::ZERO);
                let mut prev = after;
                for m in &page.changes {
                    if m.rev <= prev {
                        log.fail(
                            "feed_out_of_order",
                            format!("{} at rev {} after rev {}", m.key, m.rev.0, prev.0),
                        );
                    }
                    prev = m.rev;
                }
                seen = seen.max(page.cursor.rev());
                cursor = Some(page.cursor);
            }
            Err(e) => log.fail(&kind(&e), e.to_string()),
        }
        // Read one of our keys back: it must be exactly our last accepted write.
        let j = rng.below(keys);
        if let (Some((rev, hash)), false) = (last[j], unsure[j]) {
            let key = key_of(j);
            let start = Instant::now();
            let fetched = transport.fetch(&key, None).await;
            log.time(Op::Fetch, start);
            match fetched {
                Ok(f) if f.version.rev == rev && ContentHash::of(&f.content) == hash => {}
                Ok(f) => log.fail(
                    "stale_read",
                    format!(
                        "{key}: read rev {} after writing rev {}",
                        f.version.rev.0, rev.0
                    ),
                ),
                Err(e) => log.fail(&kind(&e), e.to_string()),
            }
        }
    }
    log
}

/// p-th percentile of sorted microseconds, in milliseconds.
fn pct(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let at = ((sorted.len() as f64 * p / 100.0).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[at] as f64 / 1000.0
}

fn latency_line(name: &str, sorted: &[u64]) -> String {
    format!(
        "{name:<28} {:>8} req   p50 {:>7.2} ms   p95 {:>7.2} ms   p99 {:>7.2} ms   max {:>8.2} ms",
        sorted.len(),
        pct(sorted, 50.0),
        pct(sorted, 95.0),
        pct(sorted, 99.0),
        sorted.last().copied().unwrap_or(0) as f64 / 1000.0,
    )
}

/// Refuses any server that is not on this machine's loopback.
pub fn loopback_only(url: &str) -> anyhow::Result<()> {
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("--server {url}: must be an http:// URL on loopback"))?;
    let authority = rest.split('/').next().unwrap_or("");
    let host = if authority.starts_with('[') {
        authority.split(']').next().map(|h| format!("{h}]"))
    } else {
        authority.split(':').next().map(str::to_owned)
    }
    .unwrap_or_default();
    ensure!(
        host == "localhost" || host == "[::1]" || host.starts_with("127."),
        "--server {url}: only loopback servers (127.x.x.x, localhost, [::1]) are allowed"
    );
    Ok(())
}

/// The nothing-lost check: every accepted write is still on the server.
async fn verify(
    transport: HttpTransport,
    writes: Vec<Write>,
) -> anyhow::Result<(usize, usize, Vec<String>)> {
    let mut by_key: BTreeMap<Key, Vec<Write>> = BTreeMap::new();
    for w in writes {
        by_key.entry(w.key.clone()).or_default().push(w);
    }
    let keys = by_key.len();
    let checked: usize = by_key.values().map(Vec::len).sum();
    // The feed from the start lists every key.
    let mut in_feed = std::collections::BTreeSet::new();
    let mut cursor = None;
    loop {
        let page = transport
            .changes(cursor.as_ref(), 10_000)
            .await
            .context("reading the whole change feed")?;
        in_feed.extend(page.changes.iter().map(|m| m.key.clone()));
        cursor = Some(page.cursor);
        if !page.more {
            break;
        }
    }
    let mut lost = Vec::new();
    for k in by_key.keys() {
        if !in_feed.contains(k) {
            lost.push(format!("{k}: not in the change feed"));
        }
    }
    // Per key, a few at a time: history, current content, first version by revision.
    let by_key: Vec<(Key, Vec<Write>)> = by_key.into_iter().collect();
    let mut tasks = tokio::task::JoinSet::new();
    for chunk in by_key.chunks(by_key.len().div_ceil(16).max(1)) {
        let chunk = chunk.to_vec();
        let t = transport.clone();
        tasks.spawn(async move {
            let mut lost = Vec::new();
            for (key, writes) in chunk {
                if let Err(e) = verify_key(&t, &key, &writes, &mut lost).await {
                    lost.push(format!("{key}: could not be checked: {e}"));
                }
            }
            lost
        });
    }
    while let Some(r) = tasks.join_next().await {
        lost.extend(r.context("a check task failed")?);
    }
    Ok((keys, checked, lost))
}

async fn verify_key(
    t: &HttpTransport,
    key: &Key,
    writes: &[Write],
    lost: &mut Vec<String>,
) -> sync_core::Result<()> {
    let history = t.history(key).await?;
    let held: std::collections::HashSet<(Revision, Option<ContentHash>)> =
        history.iter().map(|v| (v.rev, v.hash)).collect();
    for w in writes {
        if !held.contains(&(w.rev, Some(w.hash))) {
            lost.push(format!(
                "{key}: accepted rev {} ({}) is not in its history",
                w.rev.0,
                w.hash.to_hex()
            ));
        }
    }
    let Some(last) = writes.last() else {
        return Ok(());
    };
    let current = t.fetch(key, None).await?;
    let actual = ContentHash::of(&current.content);
    if current.version.rev < last.rev
        || (current.version.rev == last.rev && actual != last.hash)
        || current.version.hash != Some(actual)
    {
        lost.push(format!(
            "{key}: current is rev {} ({}), the last accepted write was rev {} ({})",
            current.version.rev.0,
            actual.to_hex(),
            last.rev.0,
            last.hash.to_hex()
        ));
    }
    if let Some(first) = writes.first().filter(|f| f.rev != last.rev) {
        let old = t.fetch(key, Some(first.rev)).await?;
        if ContentHash::of(&old.content) != first.hash {
            lost.push(format!(
                "{key}: rev {} reads back other content",
                first.rev.0
            ));
        }
    }
    Ok(())
}

/// Runs the load test of `options`: starts the embedded server if no server is given, runs
/// the clients for `options.seconds`, then checks that nothing was lost. Each line of the
/// report goes to `print` as soon as it is known (the first before the load starts). Fails
/// when it cannot run (a server cannot be started, a URL is not on loopback, the check
/// cannot read the feed); errors and losses found are in the [`Outcome`].
pub async fn run(options: &Options, mut print: impl FnMut(&str)) -> anyhow::Result<Outcome> {
    let args = options;
    ensure!(args.clients >= 1, "--clients must be at least 1");
    ensure!(args.keys >= 1, "--keys must be at least 1");
    ensure!(
        (1..=args.clients).contains(&args.tenants),
        "--tenants must be 1..=--clients ({})",
        args.clients
    );
    let tenant_name = |g: usize| {
        if args.tenants == 1 {
            "load".to_owned()
        } else {
            format!("load{g}")
        }
    };
    ensure!(
        (1..=3600).contains(&args.seconds),
        "--seconds must be 1..=3600"
    );

    // The servers: external (loopback only, one or more on one database) or embedded.
    let mut _tmp = None;
    let (urls, tokens, what) = match args.servers.as_slice() {
        [] => {
            let tmp = tempfile::tempdir().context("a temporary folder for the database")?;
            let db: PathBuf = tmp.path().join("load.db");
            let store = SqliteServerStore::open(&db, ServerConfig::default())
                .await
                .context("opening the embedded SQLite store")?;
            let tokens: Vec<String> = (0..args.clients).map(|i| format!("load-{i}")).collect();
            let auth = StaticTokens::new(
                tokens
                    .iter()
                    .enumerate()
                    .map(|(i, t)| (tenant_name(i % args.tenants), t.clone())),
            );
            let app = router(Arc::new(store), Arc::new(auth), ServerOptions::default());
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let addr = listener.local_addr()?;
            // Room for every client's connections (four each), so the connection cap is never
            // what the load measures. Never stopped: it ends with this process.
            let defaults = ServeOptions::default();
            let options = ServeOptions {
                max_connections: defaults.max_connections.max(args.clients.saturating_mul(4)),
                ..defaults
            };
            tokio::spawn(serve_with(
                listener,
                app,
                options,
                std::future::pending(),
                Duration::ZERO,
            ));
            _tmp = Some(tmp);
            (
                vec![format!("http://{addr}")],
                tokens,
                format!("embedded server on http://{addr} (SQLite; shares this process's CPU with the clients)"),
            )
        }
        servers => {
            for url in servers {
                loopback_only(url)?;
            }
            let what = match servers {
                [url] => format!("external server {url}"),
                _ => format!(
                    "{} external servers on one database ({}; client i uses server i mod {})",
                    servers.len(),
                    servers.join(", "),
                    servers.len()
                ),
            };
            (
                servers
                    .iter()
                    .map(|u| u.trim_end_matches('/').to_owned())
                    .collect(),
                args.tokens.clone(),
                what,
            )
        }
    };
    ensure!(!tokens.is_empty(), "give at least one --token");
    ensure!(
        tokens.len() % args.tenants == 0,
        "--tenants {}: give a multiple of {} --token values (token t must belong to tenant \
         t mod {} on the server), not {}",
        args.tenants,
        args.tenants,
        args.tenants,
        tokens.len()
    );
    let of_tenants = match args.tenants {
        1 => "one tenant".to_owned(),
        n => format!("{n} tenants (client i in tenant i mod {n})"),
    };
    print(&format!(
        "load-test: {} clients of {of_tenants}, {} keys each, {} s, against the {what}",
        args.clients, args.keys, args.seconds
    ));

    // The load.
    let start = Instant::now();
    let deadline = start + Duration::from_secs(args.seconds);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..args.clients {
        let url = &urls[i % urls.len()];
        let transport = HttpTransport::new(url, tokens[i % tokens.len()].clone())
            .context("making a client")?
            .with_retry(RetryPolicy::none())
            .with_request_timeout(Duration::from_secs(30));
        let own = (0..args.keys)
            .map(|j| Key::new(format!("load/c{i:03}/k{j}")))
            .collect::<Result<Vec<Key>, _>>()?;
        let server = i % urls.len();
        let tenant = i % args.tenants;
        tasks.spawn(async move { (server, tenant, client(i, own, transport, deadline).await) });
    }
    let mut logs = Vec::new();
    let bound = Duration::from_secs(args.seconds + 60);
    while let Some(r) =
        tokio::time::timeout(bound.saturating_sub(start.elapsed()), tasks.join_next())
            .await
            .context("the clients did not stop in time")?
    {
        logs.push(r.context("a client task failed")?);
    }
    let elapsed = start.elapsed();

    // Figures.
    let mut by_op: HashMap<Op, Vec<u64>> = HashMap::new();
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    let mut samples = Vec::new();
    let mut writes: Vec<Vec<Write>> = vec![Vec::new(); args.tenants];
    // Per server: clients, requests, errors.
    let mut per_server = vec![(0usize, 0usize, 0u64); urls.len()];
    for (server, tenant, log) in logs {
        per_server[server].0 += 1;
        per_server[server].1 += log.latency.values().map(Vec::len).sum::<usize>();
        per_server[server].2 += log.errors.values().sum::<u64>();
        for (op, l) in log.latency {
            by_op.entry(op).or_default().extend(l);
        }
        for (k, n) in log.errors {
            *errors.entry(k).or_default() += n;
        }
        samples.extend(log.samples);
        writes[tenant].extend(log.accepted);
    }
    let mut all: Vec<u64> = by_op.values().flatten().copied().collect();
    all.sort_unstable();
    let secs = elapsed.as_secs_f64();
    print(&format!(
        "requests: {} in {secs:.1} s = {:.0} req/s",
        all.len(),
        all.len() as f64 / secs
    ));
    print(&latency_line("all requests", &all));
    for op in OPS {
        let mut l = by_op.remove(&op).unwrap_or_default();
        l.sort_unstable();
        print(&latency_line(op.name(), &l));
    }
    if urls.len() > 1 {
        for (url, (clients, requests, errs)) in urls.iter().zip(&per_server) {
            print(&format!(
                "  server {url}: {clients} clients, {requests} requests ({:.0} req/s), {errs} errors",
                *requests as f64 / secs
            ));
        }
    }
    let error_count: u64 = errors.values().sum();
    let accepted: usize = writes.iter().map(Vec::len).sum();
    print(&format!(
        "writes accepted: {accepted} ({:.0}/s)",
        accepted as f64 / secs
    ));
    if errors.is_empty() {
        print("errors: 0");
    } else {
        print(&format!("errors: {error_count}"));
        for (k, n) in &errors {
            print(&format!("  {k}: {n}"));
        }
        for s in samples.iter().take(10) {
            print(&format!("  e.g. {s}"));
        }
    }

    // Nothing lost, read through the first server: every server shares its database, so the
    // writes made through the others must be visible there too. Tenant g is checked with
    // token g (of tenant g mod --tenants = g).
    let check_start = Instant::now();
    let (mut keys, mut checked, mut lost) = (0, 0, Vec::new());
    for (g, tenant_writes) in writes.into_iter().enumerate() {
        let checker = HttpTransport::new(&urls[0], tokens[g].clone())?;
        let (k, c, l) = verify(checker, tenant_writes)
            .await
            .with_context(|| format!("checking tenant {}", tenant_name(g)))?;
        keys += k;
        checked += c;
        lost.extend(l);
    }
    print(&format!(
        "nothing-lost check through {}: {checked} accepted writes on {keys} keys, lost = {} ({:.1} s)",
        urls[0],
        lost.len(),
        check_start.elapsed().as_secs_f64()
    ));
    for l in lost.iter().take(20) {
        print(&format!("  LOST {l}"));
    }
    Ok(Outcome {
        errors: error_count,
        lost: lost.len(),
    })
}
