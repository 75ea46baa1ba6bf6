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
//! the `sync-server tokens` commands ([`tokens`]), `folder-sync`'s progress bar
//! ([`progress`]), [`parse_duration`] for flags such as `--keep-versions-for 30d`, and
//! [`printable`], which every line meant for a person goes through so that text from a server
//! cannot drive the terminal.
//! It is not an API for apps (those use `sync-engine` and its crates) and must not grow sync
//! logic: what an app also needs belongs in the libraries.

pub mod load;
pub mod progress;
pub mod tokens;

use std::borrow::Cow;
use std::fmt::Write as _;
use std::future::Future;
use std::process::ExitCode;

/// `s` made safe to print on a terminal: every character that a terminal would act on instead
/// of showing is replaced by a visible escape. Those are the C0 controls (U+0000–U+001F, so
/// also newline and tab inside a message) and DEL (U+007F), shown as `\x1b`; the C1 controls
/// (U+0080–U+009F, some terminals read U+009B as an escape sequence's start), shown as
/// `\u{9b}`; and the bidirectional overrides and isolates (U+202A–U+202E, U+2066–U+2069),
/// which reorder what is shown, also as `\u{202e}`. Everything else, other non-ASCII text
/// included, is kept; a string with nothing to escape is returned as it is.
///
/// Error messages, keys and any other text that a server or the synced folder controls reach
/// the terminal only through this (JSON output is escaped by `serde_json` instead). Print one
/// line per call: a newline inside `s` is escaped too.
///
/// ```
/// assert_eq!(sync_cli::printable("a\u{1b}[2Jb"), "a\\x1b[2Jb");
/// assert_eq!(sync_cli::printable("fine, é"), "fine, é");
/// ```
pub fn printable(s: &str) -> Cow<'_, str> {
    if !s.chars().any(needs_escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        if !needs_escape(c) {
            out.push(c);
        } else if u32::from(c) < 0x80 {
            // Writing to a String cannot fail.
            let _ = write!(out, "\\x{:02x}", u32::from(c));
        } else {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        }
    }
    Cow::Owned(out)
}

/// True for a character [`printable`] escapes.
fn needs_escape(c: char) -> bool {
    matches!(
        c,
        '\u{0}'..='\u{1f}'
            | '\u{7f}'..='\u{9f}'
            | '\u{202a}'..='\u{202e}'
            | '\u{2066}'..='\u{2069}'
    )
}

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
        eprintln!(
            "error: internal error: {}{at}. This is a bug: please report it with the command that caused it",
            printable(&what)
        );
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

/// Prints `error: <e>` and each cause of `e` on stderr, one line each, through
/// [`printable`] (a cause may quote the server).
pub fn report(e: &anyhow::Error) {
    eprintln!("error: {}", printable(&e.to_string()));
    for cause in e.chain().skip(1) {
        eprintln!("  caused by: {}", printable(&cause.to_string()));
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

/// A duration flag: a whole number and a unit, `s`, `m`, `h`, `d` (24 h) or `w` (7 d), e.g.
/// `90s`, `12h`, `30d`. The error says what is expected.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let bad = || {
        format!("expected a whole number and a unit (s, m, h, d or w), e.g. 30d or 12h; got {s:?}")
    };
    let t = s.trim();
    let unit = t.chars().last().ok_or_else(bad)?;
    let seconds: u64 = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        'w' => 7 * 86_400,
        _ => return Err(bad()),
    };
    let digits = &t[..t.len() - unit.len_utf8()];
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let n: u64 = digits.parse().map_err(|_| bad())?;
    n.checked_mul(seconds)
        .map(std::time::Duration::from_secs)
        .ok_or_else(|| format!("{s:?} is too long a duration"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations_take_a_number_and_a_unit() {
        use std::time::Duration;
        assert_eq!(
            super::parse_duration("30d"),
            Ok(Duration::from_secs(30 * 86_400))
        );
        assert_eq!(super::parse_duration(" 90s "), Ok(Duration::from_secs(90)));
        assert_eq!(
            super::parse_duration("2w"),
            Ok(Duration::from_secs(14 * 86_400))
        );
        assert_eq!(super::parse_duration("0h"), Ok(Duration::ZERO));
        for bad in [
            "",
            "30",
            "d",
            "-1d",
            "1.5d",
            "30 days",
            "3y",
            "99999999999999999999w",
        ] {
            assert!(super::parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    use super::printable;
    use std::borrow::Cow;

    #[test]
    fn plain_text_is_kept_as_it_is() {
        for s in [
            "",
            "uploaded 3, downloaded 0",
            "notes/été.txt",
            "日本語 ✓",
            "a\\x1b b",
        ] {
            assert!(matches!(printable(s), Cow::Borrowed(b) if b == s), "{s:?}");
        }
    }

    #[test]
    fn terminal_escapes_become_visible_and_harmless() {
        let hostile = "\u{1b}]0;pwned\u{7}\u{1b}[2J";
        let shown = printable(hostile);
        assert_eq!(shown, "\\x1b]0;pwned\\x07\\x1b[2J");
        assert!(!shown.contains('\u{1b}') && !shown.contains('\u{7}'));
    }

    #[test]
    fn every_c0_control_and_del_are_escaped_newlines_and_tabs_too() {
        assert_eq!(printable("a\nb\tc\rd\0"), "a\\x0ab\\x09c\\x0dd\\x00");
        assert_eq!(printable("\u{7f}"), "\\x7f");
        for c in (0u32..0x20).chain([0x7f]).filter_map(char::from_u32) {
            let shown = printable(&c.to_string()).into_owned();
            assert_eq!(shown, format!("\\x{:02x}", u32::from(c)));
        }
    }

    #[test]
    fn c1_controls_and_bidi_overrides_are_escaped() {
        assert_eq!(printable("\u{9b}31m"), "\\u{9b}31m");
        assert_eq!(printable("\u{80}\u{9f}"), "\\u{80}\\u{9f}");
        assert_eq!(printable("evil\u{202e}txt.exe"), "evil\\u{202e}txt.exe");
        for c in (0x202a..=0x202e)
            .chain(0x2066..=0x2069)
            .filter_map(char::from_u32)
        {
            assert_eq!(
                printable(&c.to_string()),
                format!("\\u{{{:x}}}", u32::from(c))
            );
        }
        // Neighbours that are not controls stay.
        for s in ["\u{a0}", "\u{2029}", "\u{202f}", "\u{2065}", "\u{206a}"] {
            assert_eq!(printable(s), s);
        }
    }
}
