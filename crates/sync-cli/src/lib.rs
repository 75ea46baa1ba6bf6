//! # sync-cli
//!
//! The programs of the sync engine (docs/SPEC.md §7), as binaries of this package:
//!
//! - `sync-server`: the HTTP sync server on SQLite or PostgreSQL
//!   ([`transport_http::server::router`] served by [`transport_http::server::serve`]);
//! - `folder-sync`: keeps a folder in step with a sync server or a shared remote folder
//!   ([`sync_engine::folder`]);
//! - `sync-load-test`: many concurrent clients against sync servers on loopback, then a check
//!   that nothing was lost ([`load`]).
//!
//! This library holds only what the three programs share: running an async `main` with the
//! failure report and exit codes of docs/SPEC.md §7 ([`run`]), the stop signal
//! ([`shutdown_signal`]), logging ([`init_tracing`]), the load test's clients and checks, and
//! the `sync-server tokens` commands ([`tokens`]).
//! It is not an API for apps (those use `sync-engine` and its crates) and must not grow sync
//! logic: what an app also needs belongs in the libraries.

pub mod load;
pub mod tokens;

use std::future::Future;
use std::process::ExitCode;

/// Runs a program's async body on a multi-threaded tokio runtime and returns the process's
/// exit code: the body's own, or 1 after printing its error on stderr as `error: <what
/// happened>` and one `  caused by: <cause>` line per cause (never a backtrace).
///
/// Also replaces the panic message: a panic prints one `error: internal error: ...` line with
/// where it happened, and no backtrace, even with `RUST_BACKTRACE=1`. Parse the command line
/// (clap, which exits 2 on bad usage) before calling this.
pub fn run<F>(body: F) -> ExitCode
where
    F: Future<Output = anyhow::Result<ExitCode>>,
{
    std::panic::set_hook(Box::new(|info| {
        let what = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".to_owned());
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!("error: internal error: {what}{at}. This is a bug: please report it with the command that caused it");
    }));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            report(&anyhow::Error::new(e).context(
                "cannot start the async runtime. The system may be out of threads or memory",
            ));
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(body) {
        Ok(code) => code,
        Err(e) => {
            report(&e);
            ExitCode::FAILURE
        }
    }
}

/// Prints `error: <e>` and each cause of `e` on stderr, one line each.
pub fn report(e: &anyhow::Error) {
    eprintln!("error: {e}");
    for cause in e.chain().skip(1) {
        eprintln!("  caused by: {cause}");
    }
}

/// Sends log events to stderr, filtered by `RUST_LOG` (nothing by default but errors).
pub fn init_tracing() {
    // Fails only if a subscriber is set already, which then stays.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .try_init();
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM (on Unix; Ctrl-C elsewhere).
pub async fn shutdown_signal() {
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
