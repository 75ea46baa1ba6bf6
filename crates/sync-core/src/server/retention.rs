//! Version retention: which old versions of a key a server may drop (docs/SPEC.md §4
//! "Retention"). Pure: a store asks [`Retention::prunable`] (or runs the same rule in its
//! query language, checked by the conformance suite) and deletes what it is told to, together
//! with the content no version refers to any more, in the transaction of the write.
//!
//! The rule: a version is dropped only when **all** of these hold:
//! - it is beyond the newest [`Retention::keep_versions`] versions of its key (by revision,
//!   archived versions counted like any other);
//! - its stamp is older than [`Retention::keep_for`] on the server's clock (stamps are clamped
//!   to at most `max_skew` ahead of it when written, so a version is never kept longer than
//!   `keep_for + max_skew` by a stamp from the future);
//! - it is not the key's current version (a tombstone included): the current version stays
//!   however old, so every item can always be fetched and restored.
//!
//! An archived version (a conflict's loser) gets no protection of its own: it stays while it
//! is among the newest versions or younger than `keep_for`, like an overwritten one. The
//! device that lost keeps its own backup as well.
//!
//! Nothing here reads a clock or storage: the store passes the server's time.

use std::time::Duration;

use crate::{Revision, VersionMeta};

/// The most versions one write drops (over all the keys it wrote): the bounded work pruning
/// adds to a write. A history longer than the limits (a store that turns retention on, a
/// burst) shrinks by this much per write of the key until it is within them.
pub const PRUNE_PER_WRITE: usize = 64;

/// How many old versions a server keeps ([`crate::ServerConfig::retention`]; `None` there
/// keeps every version forever).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    keep_versions: usize,
    keep_for: Duration,
}

impl Retention {
    /// Keep the newest `keep_versions` versions of every key (at least 1: 0 is read as 1) and
    /// every version younger than `keep_for` (zero: no version is kept for its age).
    pub fn new(keep_versions: usize, keep_for: Duration) -> Retention {
        Retention {
            keep_versions: keep_versions.max(1),
            keep_for,
        }
    }

    /// How many of a key's newest versions are always kept (at least 1).
    pub fn keep_versions(&self) -> usize {
        self.keep_versions
    }

    /// How long every version is kept, by its stamp.
    pub fn keep_for(&self) -> Duration {
        self.keep_for
    }

    /// Versions whose stamp is below this (milliseconds) are old enough to go, at server time
    /// `now_millis`.
    pub fn cutoff_millis(&self, now_millis: u64) -> u64 {
        let keep = u64::try_from(self.keep_for.as_millis()).unwrap_or(u64::MAX);
        now_millis.saturating_sub(keep)
    }

    /// Whether `version`, which has `newer` versions of its key above it, may be dropped at
    /// server time `now_millis`, `current` being the key's current revision.
    pub fn prunable(
        &self,
        version: &VersionMeta,
        newer: usize,
        current: Option<Revision>,
        now_millis: u64,
    ) -> bool {
        newer >= self.keep_versions
            && version.stamp.millis < self.cutoff_millis(now_millis)
            && Some(version.rev) != current
    }

    /// The revisions to drop from one key's `versions` (oldest first, as a store keeps them),
    /// oldest first, at most `budget`.
    pub fn to_prune(
        &self,
        versions: &[VersionMeta],
        current: Option<Revision>,
        now_millis: u64,
        budget: usize,
    ) -> Vec<Revision> {
        let n = versions.len();
        versions
            .iter()
            .enumerate()
            .filter(|(i, v)| self.prunable(v, n - 1 - i, current, now_millis))
            .map(|(_, v)| v.rev)
            .take(budget)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{NodeId, Stamp};

    fn v(rev: u64, millis: u64) -> VersionMeta {
        VersionMeta {
            rev: Revision(rev),
            hash: None,
            size: 0,
            stamp: Stamp::at(millis, NodeId(1)),
            deleted: false,
        }
    }

    #[test]
    fn only_versions_both_beyond_the_count_and_old_go() {
        let r = Retention::new(2, Duration::from_millis(100));
        // now 1000: cutoff 900. Revisions 1..=5; 3 is young.
        let versions = [v(1, 10), v(2, 20), v(3, 950), v(4, 30), v(5, 40)];
        assert_eq!(
            r.to_prune(&versions, Some(Revision(5)), 1000, 10),
            [Revision(1), Revision(2)]
        );
        assert_eq!(
            r.to_prune(&versions, Some(Revision(5)), 1000, 1),
            [Revision(1)]
        );
    }

    #[test]
    fn the_current_version_stays_however_old() {
        let r = Retention::new(1, Duration::ZERO);
        // 3 is current; 4 and 5 are archived losers above it.
        let versions = [v(1, 1), v(2, 2), v(3, 3), v(4, 4), v(5, 5)];
        assert_eq!(
            r.to_prune(&versions, Some(Revision(3)), 1000, 10),
            [Revision(1), Revision(2), Revision(4)]
        );
    }

    #[test]
    fn zero_versions_is_one_and_the_cutoff_saturates() {
        let r = Retention::new(0, Duration::from_secs(u64::MAX));
        assert_eq!(r.keep_versions(), 1);
        assert_eq!(r.cutoff_millis(5), 0);
        assert!(r.to_prune(&[v(1, 0), v(2, 0)], None, 5, 10).is_empty());
    }
}
