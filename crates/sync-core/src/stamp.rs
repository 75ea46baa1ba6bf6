//! Edit stamps and the hybrid logical clock (docs/SPEC.md §2): "which edit is newer".
//!
//! A [`Stamp`] is (wall-clock milliseconds, counter, node id), totally ordered in that order.
//! A [`Clock`] issues stamps that never go backwards, and absorbs every stamp and server time it
//! sees so that an edit made after seeing a version always stamps newer than that version.
//! Time comes from a [`TimeSource`], so tests and simulations control it; this module reads the
//! system clock only through [`SystemTimeSource`].

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// The id of one device (one replica's engine), the tie-breaker of stamps.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NodeId(pub u64);

impl NodeId {
    /// A new random node id.
    pub fn random() -> NodeId {
        NodeId(rand::random::<u64>())
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Node({:x})", self.0)
    }
}

/// When an edit was made, as a hybrid logical clock reading.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Stamp {
    /// Wall-clock milliseconds since the Unix epoch.
    pub millis: u64,
    /// Orders stamps within one millisecond.
    pub counter: u32,
    /// The device that made the edit: breaks the last ties.
    pub node: NodeId,
}

impl Stamp {
    /// The smallest stamp.
    pub const ZERO: Stamp = Stamp {
        millis: 0,
        counter: 0,
        node: NodeId(0),
    };

    /// A stamp at `millis` with counter 0.
    pub fn at(millis: u64, node: NodeId) -> Stamp {
        Stamp {
            millis,
            counter: 0,
            node,
        }
    }

    /// The smallest stamp of `node` that is newer than `self`.
    pub fn successor(&self, node: NodeId) -> Stamp {
        if node > self.node {
            Stamp { node, ..*self }
        } else if self.counter < u32::MAX {
            Stamp {
                millis: self.millis,
                counter: self.counter + 1,
                node,
            }
        } else {
            Stamp::at(self.millis.saturating_add(1), node)
        }
    }

    /// The stamp of a local edit whose file changed at `modified_millis`, made by `node` on top of
    /// the version stamped `base`: the modification time, but always newer than `base`, so an
    /// edit made after seeing a version never loses to that version.
    ///
    /// This is a pure function so that the reconciler and the uploader agree on it.
    pub fn for_edit(modified_millis: u64, node: NodeId, base: Option<Stamp>) -> Stamp {
        let own = Stamp::at(modified_millis, node);
        match base {
            Some(b) if own <= b => b.successor(node),
            _ => own,
        }
    }

    /// The server's clamp of docs/SPEC.md §2: a stamp more than `max_skew` ahead of `server_now_millis`
    /// becomes the server's time, so a device with a wrong clock cannot win every conflict.
    pub fn clamped(self, server_now_millis: u64, max_skew: Duration) -> Stamp {
        let limit = server_now_millis.saturating_add(max_skew.as_millis() as u64);
        if self.millis > limit {
            Stamp::at(server_now_millis, self.node)
        } else {
            self
        }
    }
}

impl fmt::Display for Stamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{:016x}", self.millis, self.counter, self.node.0)
    }
}

/// A string that is not `<millis>.<counter>.<node hex>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid stamp {input:?}: expected <millis>.<counter>.<16 hex digits of node id>")]
pub struct StampParseError {
    /// The rejected input (cut to 80 characters).
    pub input: String,
}

impl std::str::FromStr for Stamp {
    type Err = StampParseError;
    fn from_str(s: &str) -> Result<Stamp, StampParseError> {
        let err = || StampParseError {
            input: s.chars().take(80).collect(),
        };
        let mut parts = s.split('.');
        let (Some(m), Some(c), Some(n), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(err());
        };
        let digits = |x: &str| !x.is_empty() && x.bytes().all(|b| b.is_ascii_digit());
        if !digits(m) || !digits(c) || n.len() != 16 || !n.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(err());
        }
        Ok(Stamp {
            millis: m.parse().map_err(|_| err())?,
            counter: c.parse().map_err(|_| err())?,
            node: NodeId(u64::from_str_radix(n, 16).map_err(|_| err())?),
        })
    }
}

impl TryFrom<String> for Stamp {
    type Error = StampParseError;
    fn try_from(s: String) -> Result<Stamp, StampParseError> {
        s.parse()
    }
}

impl From<Stamp> for String {
    fn from(s: Stamp) -> String {
        s.to_string()
    }
}

impl fmt::Debug for Stamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Stamp({}.{}@{:x})",
            self.millis, self.counter, self.node.0
        )
    }
}

/// Where a clock reads wall time. Implementations must be cheap and thread-safe.
pub trait TimeSource: Send + Sync + fmt::Debug {
    /// Milliseconds since the Unix epoch.
    fn now_millis(&self) -> u64;
}

/// The system's real-time clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemTimeSource;

impl TimeSource for SystemTimeSource {
    fn now_millis(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }
}

/// A clock that moves only when told: for tests and deterministic simulations.
#[derive(Debug, Default)]
pub struct ManualTime(AtomicU64);

impl ManualTime {
    /// A manual clock reading `millis`.
    pub fn new(millis: u64) -> Arc<ManualTime> {
        Arc::new(ManualTime(AtomicU64::new(millis)))
    }

    /// Moves the clock forward (or backward, to simulate a bad clock) to `millis`.
    pub fn set(&self, millis: u64) {
        self.0.store(millis, Ordering::SeqCst);
    }

    /// Moves the clock forward by `by` milliseconds.
    pub fn advance(&self, by: u64) {
        self.0.fetch_add(by, Ordering::SeqCst);
    }
}

impl TimeSource for ManualTime {
    fn now_millis(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// A hybrid logical clock for one node.
///
/// ```
/// use sync_core::{Clock, ManualTime, NodeId, Stamp};
/// let time = ManualTime::new(1_000);
/// let mut clock = Clock::new(NodeId(1), time.clone());
/// let a = clock.now();
/// time.set(500); // the wall clock jumps back
/// let b = clock.now();
/// assert!(b > a, "never goes backwards");
/// clock.observe(Stamp::at(9_000, NodeId(2)));
/// assert!(clock.now().millis >= 9_000, "absorbs what it sees");
/// ```
#[derive(Debug, Clone)]
pub struct Clock {
    node: NodeId,
    time: Arc<dyn TimeSource>,
    last: Stamp,
}

impl Clock {
    /// A clock for `node` reading wall time from `time`.
    pub fn new(node: NodeId, time: Arc<dyn TimeSource>) -> Clock {
        Clock {
            node,
            time,
            last: Stamp::ZERO,
        }
    }

    /// This clock's node.
    pub fn node(&self) -> NodeId {
        self.node
    }

    /// The wall time of the underlying source, in milliseconds.
    pub fn wall_millis(&self) -> u64 {
        self.time.now_millis()
    }

    /// A new stamp, newer than every stamp this clock has issued or observed.
    pub fn now(&mut self) -> Stamp {
        let wall = Stamp::at(self.time.now_millis(), self.node);
        let next = if wall > self.last {
            wall
        } else {
            self.last.successor(self.node)
        };
        self.last = next;
        next
    }

    /// Absorbs a stamp seen from another node (a remote version, a server response).
    pub fn observe(&mut self, stamp: Stamp) {
        if stamp > self.last {
            self.last = stamp;
        }
    }

    /// Absorbs a server's wall time, in milliseconds.
    pub fn observe_server_time(&mut self, millis: u64) {
        self.observe(Stamp::at(millis, NodeId(0)));
    }

    /// The newest stamp issued or observed.
    pub fn last(&self) -> Stamp {
        self.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_is_millis_then_counter_then_node() {
        let a = Stamp {
            millis: 1,
            counter: 9,
            node: NodeId(9),
        };
        let b = Stamp {
            millis: 2,
            counter: 0,
            node: NodeId(0),
        };
        assert!(a < b);
        let c = Stamp {
            millis: 2,
            counter: 1,
            node: NodeId(0),
        };
        assert!(b < c);
        let d = Stamp {
            millis: 2,
            counter: 1,
            node: NodeId(1),
        };
        assert!(c < d);
    }

    #[test]
    fn successor_is_newer_for_any_node() {
        let s = Stamp {
            millis: 5,
            counter: 3,
            node: NodeId(7),
        };
        for node in [NodeId(0), NodeId(7), NodeId(8)] {
            assert!(s.successor(node) > s);
            assert_eq!(s.successor(node).node, node);
        }
        let max = Stamp {
            millis: 5,
            counter: u32::MAX,
            node: NodeId(7),
        };
        assert!(max.successor(NodeId(1)) > max);
    }

    #[test]
    fn edit_stamp_beats_its_base_even_with_a_slow_clock() {
        let base = Stamp::at(10_000, NodeId(2));
        let s = Stamp::for_edit(5_000, NodeId(1), Some(base));
        assert!(s > base);
        assert_eq!(s.node, NodeId(1));
        assert_eq!(
            Stamp::for_edit(20_000, NodeId(1), Some(base)),
            Stamp::at(20_000, NodeId(1))
        );
        assert_eq!(Stamp::for_edit(3, NodeId(1), None), Stamp::at(3, NodeId(1)));
    }

    #[test]
    fn clock_is_monotonic_and_absorbs() {
        let time = ManualTime::new(100);
        let mut clock = Clock::new(NodeId(1), time.clone());
        let mut prev = clock.now();
        for wall in [100, 50, 100, 200, 10] {
            time.set(wall);
            let s = clock.now();
            assert!(s > prev, "{s:?} <= {prev:?}");
            prev = s;
        }
        clock.observe_server_time(1_000_000);
        assert!(clock.now().millis >= 1_000_000);
    }

    #[test]
    fn string_form_round_trips_and_rejects_garbage() {
        for s in [
            Stamp::ZERO,
            Stamp {
                millis: u64::MAX,
                counter: u32::MAX,
                node: NodeId(u64::MAX),
            },
        ] {
            assert_eq!(s.to_string().parse::<Stamp>().unwrap(), s);
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(serde_json::from_str::<Stamp>(&json).unwrap(), s);
        }
        for bad in [
            "",
            "1.2",
            "1.2.3",
            "a.0.0000000000000000",
            "1.2.000000000000000g",
            "1.2.0000000000000000.4",
            "-1.0.0000000000000000",
            "99999999999999999999.0.0000000000000000",
        ] {
            assert!(bad.parse::<Stamp>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn server_clamps_future_stamps() {
        let skew = Duration::from_secs(60);
        let far = Stamp::at(1_000_000, NodeId(1));
        assert_eq!(far.clamped(1_000, skew), Stamp::at(1_000, NodeId(1)));
        let near = Stamp::at(1_000 + 59_000, NodeId(1));
        assert_eq!(near.clamped(1_000, skew), near);
    }
}
