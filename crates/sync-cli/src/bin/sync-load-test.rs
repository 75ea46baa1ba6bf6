//! `sync-load-test`: many concurrent simulated clients against sync servers on loopback, then
//! a check that nothing a client was told is stored was lost ([`sync_cli::load`] says how).
//!
//! ```text
//! sync-load-test [--clients 100] [--seconds 60] [--keys 8] [--tenants 1]
//!                [--server URL [--server URL ...] --token TOKEN [--token ...]]
//! ```
//!
//! Without `--server` it starts an embedded server in this process. Exits 0 when there was no
//! error and nothing was lost, 1 otherwise. This file only parses flags and prints.

use std::process::ExitCode;

use clap::Parser;
use sync_cli::load::{self, Options};

#[derive(Parser, Debug)]
#[command(
    name = "sync-load-test",
    about = "Concurrent clients against sync servers on loopback",
    version
)]
struct Args {
    /// Concurrent simulated clients.
    #[arg(long, default_value_t = 100, value_parser = at_least_one)]
    clients: usize,
    /// How long the load runs, in seconds.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    seconds: u64,
    /// Keys each client writes in turn.
    #[arg(long, default_value_t = 8, value_parser = at_least_one)]
    keys: usize,
    /// Tenants the clients are spread over: client i is a device of tenant i mod N. Against
    /// external servers, token t must belong to tenant t mod N (give a multiple of N tokens).
    #[arg(long, default_value_t = 1, value_parser = at_least_one)]
    tenants: usize,
    /// A running sync-server's base URL (loopback only; repeat: client i uses server i mod n,
    /// all on one database). Without it an embedded server is used.
    #[arg(long = "server", value_name = "URL", requires = "tokens", value_parser = loopback)]
    servers: Vec<String>,
    /// A bearer token of the external servers (repeat: client i uses token i mod m).
    #[arg(long = "token", value_name = "TOKEN")]
    tokens: Vec<String>,
}

/// A count of at least 1.
fn at_least_one(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err("must be a whole number, at least 1".to_owned()),
    }
}

/// An `http://` URL on this machine's loopback.
fn loopback(s: &str) -> Result<String, String> {
    load::loopback_only(s)
        .map(|()| s.to_owned())
        .map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let args = Args::parse();
    let options = Options {
        clients: args.clients,
        seconds: args.seconds,
        keys: args.keys,
        tenants: args.tenants,
        servers: args.servers,
        tokens: args.tokens,
    };
    sync_cli::run(async move {
        let outcome = load::run(&options, |line| println!("{}", sync_cli::printable(line))).await?;
        if outcome.passed() {
            return Ok(ExitCode::SUCCESS);
        }
        anyhow::bail!(
            "{} errors, {} lost writes. See the error kinds and LOST lines above; against an \
             external server, give it a fresh database and one --token per client",
            outcome.errors,
            outcome.lost
        )
    })
}
