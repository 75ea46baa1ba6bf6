//! Change-feed cursors and store epochs (docs/SPEC.md §2).
//!
//! A [`Cursor`] is opaque to apps and to the wire: it round-trips through a string. Inside, it
//! names the store's [`Epoch`] and the last revision the client has seen, so that a server
//! restored from a backup (a new epoch) can answer `CursorExpired` instead of a wrong feed.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::Revision;

/// A random id made when a server store is created; a restore from backup makes a new one.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Epoch(pub u64);

impl Epoch {
    /// A new random epoch.
    pub fn random() -> Epoch {
        Epoch(rand::random::<u64>())
    }
}

impl fmt::Debug for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Epoch({:016x})", self.0)
    }
}

/// A position in one store's change feed.
///
/// ```
/// use sync_core::{Cursor, Epoch, Revision};
/// let c = Cursor::new(Epoch(7), Revision(42));
/// let s = c.to_string();
/// assert_eq!(s.parse::<Cursor>().unwrap(), c);
/// assert!("garbage".parse::<Cursor>().is_err());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Cursor {
    epoch: Epoch,
    rev: Revision,
}

/// A string that is not a cursor this library made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid cursor {input:?}: use the cursor string a change page returned, or omit it to start from the beginning")]
pub struct CursorParseError {
    /// The rejected input (cut to 80 characters).
    pub input: String,
}

const PREFIX: &str = "c1.";

impl Cursor {
    /// A cursor at `rev` in the store with `epoch`.
    pub fn new(epoch: Epoch, rev: Revision) -> Cursor {
        Cursor { epoch, rev }
    }

    /// The epoch of the store that issued it.
    pub fn epoch(&self) -> Epoch {
        self.epoch
    }

    /// The last revision covered: the feed continues after it.
    pub fn rev(&self) -> Revision {
        self.rev
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}{:016x}.{:x}", self.epoch.0, self.rev.0)
    }
}

impl fmt::Debug for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cursor({:016x}@{})", self.epoch.0, self.rev.0)
    }
}

impl FromStr for Cursor {
    type Err = CursorParseError;
    fn from_str(s: &str) -> Result<Cursor, CursorParseError> {
        let err = || CursorParseError {
            input: s.chars().take(80).collect(),
        };
        let rest = s.strip_prefix(PREFIX).ok_or_else(err)?;
        let (epoch, rev) = rest.split_once('.').ok_or_else(err)?;
        let hex = |x: &str| {
            if x.is_empty() || x.len() > 16 || !x.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            u64::from_str_radix(x, 16).ok()
        };
        if epoch.len() != 16 {
            return Err(err());
        }
        let epoch = hex(epoch).ok_or_else(err)?;
        let rev = hex(rev).ok_or_else(err)?;
        Ok(Cursor::new(Epoch(epoch), Revision(rev)))
    }
}

impl TryFrom<String> for Cursor {
    type Error = CursorParseError;
    fn try_from(s: String) -> Result<Cursor, CursorParseError> {
        s.parse()
    }
}

impl From<Cursor> for String {
    fn from(c: Cursor) -> String {
        c.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_extremes() {
        for (e, r) in [(0, 0), (u64::MAX, u64::MAX), (0xabc, 17)] {
            let c = Cursor::new(Epoch(e), Revision(r));
            assert_eq!(c.to_string().parse::<Cursor>().unwrap(), c);
            let json = serde_json::to_string(&c).unwrap();
            assert_eq!(serde_json::from_str::<Cursor>(&json).unwrap(), c);
        }
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "c1.",
            "c1.0000000000000001",
            "c1.0000000000000001.",
            "c1.1.1",
            "c2.0000000000000001.1",
            "c1.0000000000000001.+1",
            "c1.0000000000000001.10000000000000000",
            "c1.000000000000000g.1",
            "c1.0000000000000001.1.2",
        ] {
            assert!(bad.parse::<Cursor>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn random_epochs_differ() {
        assert_ne!(Epoch::random(), Epoch::random());
    }
}
