//! Server-issued revisions (docs/SPEC.md §2): one monotonic counter per tenant, Lamport-style.
//!
//! Only servers mint revisions; clients carry the highest one they have seen so that a server
//! restored from an older backup moves its counter past it ([`Revision::lamport_next`]).

use std::fmt;

use serde::{Deserialize, Serialize};

/// A revision number issued by the server for one accepted change of one tenant.
///
/// `Revision::ZERO` means "nothing yet": the first accepted change takes revision 1.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Revision(pub u64);

impl Revision {
    /// Before the first change.
    pub const ZERO: Revision = Revision(0);

    /// The revision a server issues next, by the Lamport rule of docs/SPEC.md §2: its counter first
    /// becomes `max(counter, seen)`, then takes the next number.
    ///
    /// ```
    /// use sync_core::Revision;
    /// assert_eq!(Revision(5).lamport_next(Revision(3)), Revision(6));
    /// // A server restored from a backup at 5 that hears of revision 9 never reuses 6..=9.
    /// assert_eq!(Revision(5).lamport_next(Revision(9)), Revision(10));
    /// ```
    pub fn lamport_next(self, seen: Revision) -> Revision {
        Revision(self.0.max(seen.0).saturating_add(1))
    }

    /// The raw number.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Debug for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "r{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lamport_rule_never_repeats() {
        let mut counter = Revision::ZERO;
        let mut issued = Vec::new();
        for seen in [0, 0, 10, 3, 11, 11, 40] {
            counter = counter.lamport_next(Revision(seen));
            issued.push(counter.0);
        }
        assert_eq!(issued, [1, 2, 11, 12, 13, 14, 41]);
    }

    #[test]
    fn saturates_instead_of_overflowing() {
        assert_eq!(
            Revision(u64::MAX).lamport_next(Revision::ZERO),
            Revision(u64::MAX)
        );
    }
}
