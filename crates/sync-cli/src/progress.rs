//! The progress bar `folder-sync` shows on a terminal during a long sync: [`Progress`].
//!
//! It follows the engine's status channel (`SyncStatus::Syncing { done, total, bytes_total }`,
//! the actions of the running pass and the content bytes they move) and a byte counter (what
//! the replica read for uploads and wrote for downloads), and draws one line on stderr with
//! [`indicatif`]: the actions done of the total, the bytes moved of the byte total, and the
//! rates. It appears only once a sync has run for
//! [`SHOW_AFTER`] or plans at least [`MANY_ITEMS`] actions, and is cleared when the sync
//! ends. The caller decides whether to show it at all: only when stderr is a terminal and the
//! output is not `--json` ([`Progress::wanted`]), so output to a pipe or file is unchanged.
//! The text of the line is [`bar_text`], a pure function. This module prints nothing else.

use std::io::IsTerminal;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use indicatif::{HumanBytes, ProgressBar, ProgressDrawTarget, ProgressStyle};
use sync_core::SyncStatus;
use tokio::sync::watch;

/// A sync that runs this long gets a bar.
pub const SHOW_AFTER: Duration = Duration::from_secs(1);

/// A sync that plans at least this many actions gets a bar at once.
pub const MANY_ITEMS: u64 = 500;

/// How often the bar is redrawn.
const TICK: Duration = Duration::from_millis(100);

/// The text after the bar: `done/total items, bytes moved of the byte total, bytes per
/// second, items per second`, e.g. `120/500 items, 3.00 MiB of 12.00 MiB, 1.50 MiB/s, 60
/// items/s`; `bytes` and `elapsed` count from the sync's start (a zero elapsed time gives no
/// rate). The byte total is left out when the plan moves no content or more has moved than
/// it planned (a sync that planned again). A pass with nothing planned (yet) is a sync
/// checking what is left: `checking for more changes, 3.00 MiB`.
pub fn bar_text(done: u64, total: u64, bytes: u64, bytes_total: u64, elapsed: Duration) -> String {
    if total == 0 {
        return format!("checking for more changes, {}", HumanBytes(bytes));
    }
    let secs = elapsed.as_secs_f64();
    let per_sec = |n: u64| {
        if secs > 0.0 {
            n as f64 / secs
        } else {
            0.0
        }
    };
    let moved = if bytes_total > 0 && bytes <= bytes_total {
        format!("{} of {}", HumanBytes(bytes), HumanBytes(bytes_total))
    } else {
        HumanBytes(bytes).to_string()
    };
    format!(
        "{done}/{total} items, {moved}, {}/s, {:.0} items/s",
        HumanBytes(per_sec(bytes) as u64),
        per_sec(done)
    )
}

/// True when a sync running for `elapsed` with `total` planned actions should show a bar.
pub fn worth_showing(total: u64, elapsed: Duration) -> bool {
    total >= MANY_ITEMS || elapsed >= SHOW_AFTER
}

/// The bar of one `folder-sync` run; cheap to clone (the clones share the bar).
#[derive(Debug, Clone, Default)]
pub struct Progress {
    bar: Arc<Mutex<Option<ProgressBar>>>,
}

impl Progress {
    /// True when a bar may be drawn: stderr is a terminal and the output is not JSON.
    pub fn wanted(json: bool) -> bool {
        !json && std::io::stderr().is_terminal()
    }

    /// Prints `line` on stdout without tearing the bar (which is drawn again after it).
    pub fn println(&self, line: &str) {
        match &*self.lock() {
            Some(bar) => bar.suspend(|| println!("{line}")),
            None => println!("{line}"),
        }
    }

    /// Removes the bar, if one is shown.
    pub fn clear(&self) {
        if let Some(bar) = self.lock().take() {
            bar.finish_and_clear();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<ProgressBar>> {
        self.bar.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Follows `status` until the channel closes (or the task is dropped), drawing the bar
    /// while a sync worth showing runs; `bytes` reads the replica's byte counter.
    pub async fn follow(&self, status: watch::Receiver<SyncStatus>, bytes: impl Fn() -> u64) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // When the running sync started, and the byte counter then.
        let mut started: Option<(Instant, u64)> = None;
        loop {
            tick.tick().await;
            if status.has_changed().is_err() {
                self.clear();
                return; // the engine is gone
            }
            let syncing = match &*status.borrow() {
                SyncStatus::Syncing {
                    done,
                    total,
                    bytes_total,
                } => Some((*done, *total, *bytes_total)),
                _ => None,
            };
            let Some((done, total, bytes_total)) = syncing else {
                started = None;
                self.clear();
                continue;
            };
            let (at, bytes_then) = *started.get_or_insert_with(|| (Instant::now(), bytes()));
            let elapsed = at.elapsed();
            if !worth_showing(total, elapsed) {
                continue;
            }
            let moved = bytes().saturating_sub(bytes_then);
            let mut guard = self.lock();
            let bar = guard.get_or_insert_with(|| {
                let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
                // A fixed template: it cannot fail to parse.
                if let Ok(style) = ProgressStyle::with_template("{wide_bar} {msg}") {
                    bar.set_style(style);
                }
                bar
            });
            bar.set_length(total);
            bar.set_position(done.min(total));
            bar.set_message(bar_text(done, total, moved, bytes_total, elapsed));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bar_text_says_items_bytes_and_rates() {
        const MIB: u64 = 1024 * 1024;
        assert_eq!(
            bar_text(120, 500, 3 * MIB, 12 * MIB, Duration::from_secs(2)),
            "120/500 items, 3.00 MiB of 12.00 MiB, 1.50 MiB/s, 60 items/s"
        );
        assert_eq!(
            bar_text(0, 0, 3 * MIB, 0, Duration::from_secs(2)),
            "checking for more changes, 3.00 MiB"
        );
        assert_eq!(
            bar_text(0, 7, 0, 0, Duration::ZERO),
            "0/7 items, 0 B, 0 B/s, 0 items/s"
        );
        assert_eq!(
            bar_text(1, 1, 512, 512, Duration::from_millis(500)),
            "1/1 items, 512 B of 512 B, 1.00 KiB/s, 2 items/s"
        );
        // Moved past the plan's total (a sync that planned again): no total shown.
        assert_eq!(
            bar_text(2, 3, 2 * MIB, MIB, Duration::from_secs(1)),
            "2/3 items, 2.00 MiB, 2.00 MiB/s, 2 items/s"
        );
    }

    #[test]
    fn only_long_or_large_syncs_show_a_bar() {
        assert!(!worth_showing(10, Duration::from_millis(300)));
        assert!(worth_showing(10, SHOW_AFTER));
        assert!(worth_showing(MANY_ITEMS, Duration::ZERO));
        assert!(!worth_showing(MANY_ITEMS - 1, Duration::from_millis(999)));
    }
}
