//! The error-priority stack and the sync status (docs/SPEC.md §5).
//!
//! Every failure becomes an [`ErrorEntry`] with a class, a scope, a message and when it was
//! first seen. [`ErrorStack::top`] is the one entry an app shows in its single error area; an
//! entry clears itself when its scope next succeeds. [`SyncStatus`] is what a watch channel
//! carries to draw a sync icon. This module holds state only; the engine decides when to push
//! and clear.

use serde::{Deserialize, Serialize};

use crate::{Error, Key};

/// How important a failure is; the order of the variants is the order of importance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// Token missing, invalid or expired; or the server's TLS certificate is not trusted.
    Auth,
    /// State store or sync folder unusable, disk full.
    Storage,
    /// Server unreachable or failing; retried with backoff.
    Offline,
    /// 429 or quota; honours Retry-After.
    Throttled,
    /// One key could not sync (permission denied, invalid name, rejected).
    Item,
    /// Skipped on purpose (too large, ignored, symlink).
    Warning,
}

impl ErrorClass {
    /// True for the classes that stop a sync (Auth, Storage, Offline, Throttled); sync goes on
    /// past `Item` and `Warning` entries.
    pub fn stops_sync(self) -> bool {
        self < ErrorClass::Item
    }
}

/// What an entry is about: the whole sync, or one key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// The whole sync (server, token, state store).
    Global,
    /// One item.
    Key(Key),
}

/// One failure on the stack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorEntry {
    /// How important it is.
    pub class: ErrorClass,
    /// What it is about.
    pub scope: Scope,
    /// What happened and what to do, for a person.
    pub message: String,
    /// When it was first seen, milliseconds since the Unix epoch.
    pub first_seen_millis: u64,
}

impl ErrorEntry {
    /// The entry for an [`Error`]: its class, its key if it has one, its message.
    pub fn from_error(error: &Error, now_millis: u64) -> ErrorEntry {
        ErrorEntry {
            class: error.class(),
            scope: error.key().cloned().map_or(Scope::Global, Scope::Key),
            message: error.to_string(),
            first_seen_millis: now_millis,
        }
    }

    /// The key, when the scope is one key.
    pub fn key(&self) -> Option<&Key> {
        match &self.scope {
            Scope::Key(k) => Some(k),
            Scope::Global => None,
        }
    }
}

impl std::fmt::Display for ErrorEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// The set of current failures, at most one per (class, scope).
///
/// ```
/// use sync_core::{ErrorClass, ErrorStack, Scope, Key};
/// let mut stack = ErrorStack::default();
/// let k = Key::new("a.txt").unwrap();
/// stack.push(ErrorClass::Warning, Scope::Key(k.clone()), "too large", 1);
/// stack.push(ErrorClass::Offline, Scope::Global, "server unreachable", 2);
/// assert_eq!(stack.top().unwrap().class, ErrorClass::Offline);
/// stack.clear_scope(&Scope::Global);
/// assert_eq!(stack.top().unwrap().class, ErrorClass::Warning);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorStack {
    entries: Vec<ErrorEntry>,
}

impl ErrorStack {
    /// Records a failure. A failure with the same class and scope as a current entry replaces
    /// its message and keeps its first-seen time.
    pub fn push(&mut self, class: ErrorClass, scope: Scope, message: impl Into<String>, now: u64) {
        self.push_entry(ErrorEntry {
            class,
            scope,
            message: message.into(),
            first_seen_millis: now,
        });
    }

    /// Records a failure from an [`Error`].
    pub fn push_error(&mut self, error: &Error, now: u64) {
        self.push_entry(ErrorEntry::from_error(error, now));
    }

    /// Records an entry (see [`ErrorStack::push`]).
    pub fn push_entry(&mut self, entry: ErrorEntry) {
        match self
            .entries
            .iter_mut()
            .find(|e| e.class == entry.class && e.scope == entry.scope)
        {
            Some(existing) => existing.message = entry.message,
            None => self.entries.push(entry),
        }
    }

    /// The one entry to show: the most important class; within it, global before per-key, then
    /// the oldest, then by key.
    pub fn top(&self) -> Option<&ErrorEntry> {
        self.entries.iter().min_by(|a, b| rank(a).cmp(&rank(b)))
    }

    /// Clears every entry of `scope`: it just succeeded.
    pub fn clear_scope(&mut self, scope: &Scope) {
        self.entries.retain(|e| &e.scope != scope);
    }

    /// Clears the entries of one class, whatever their scope.
    pub fn clear_class(&mut self, class: ErrorClass) {
        self.entries.retain(|e| e.class != class);
    }

    /// Keeps only the entries for which `keep` is true.
    pub fn retain(&mut self, keep: impl FnMut(&ErrorEntry) -> bool) {
        self.entries.retain(keep);
    }

    /// Every current entry, most important first.
    pub fn entries(&self) -> Vec<&ErrorEntry> {
        let mut all: Vec<&ErrorEntry> = self.entries.iter().collect();
        all.sort_by(|a, b| rank(a).cmp(&rank(b)));
        all
    }

    /// True when nothing is wrong.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// How many entries there are.
    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

/// The order of importance: class, then global before per-key, then oldest, then by key.
fn rank(e: &ErrorEntry) -> (ErrorClass, bool, u64, &Scope) {
    (
        e.class,
        e.scope != Scope::Global,
        e.first_seen_millis,
        &e.scope,
    )
}

/// What the sync is doing, for an icon: off, idle, spinning, or in error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum SyncStatus {
    /// Sync is switched off.
    Off,
    /// Not syncing now; `last_sync` is when the last sync finished (ms since the Unix epoch).
    /// The last sync completed, but when `attention` is set some items did not sync (an
    /// `Item` error or a `Warning`, such as a file over the size limit): the app's error area
    /// shows that entry, the icon may show a mark beside "idle".
    Idle {
        /// When the last sync finished, if one has.
        last_sync: Option<u64>,
        /// The top of the error stack after that sync, if it holds anything (per-item
        /// problems only: a failure that stops syncs is `Error`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        attention: Option<ErrorEntry>,
    },
    /// A sync is running: `done` of `total` planned actions are applied.
    Syncing {
        /// Actions applied so far.
        done: u64,
        /// Actions planned.
        total: u64,
        /// The content bytes the planned actions read and write on this replica (see
        /// `Plan::bytes`); 0 before a plan is made. Compare it with what the replica counts
        /// as moved to show a byte total.
        #[serde(default)]
        bytes_total: u64,
    },
    /// Sync is stopped by the top entry (Auth, Storage, Offline or Throttled).
    Error {
        /// The entry to show.
        top: ErrorEntry,
    },
}

impl SyncStatus {
    /// A one-word label for the icon: `off`, `idle`, `syncing` or `error`.
    pub fn label(&self) -> &'static str {
        match self {
            SyncStatus::Off => "off",
            SyncStatus::Idle { .. } => "idle",
            SyncStatus::Syncing { .. } => "syncing",
            SyncStatus::Error { .. } => "error",
        }
    }
}

impl std::fmt::Display for SyncStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SyncStatus::Error { top } => write!(f, "error: {}", top.message),
            SyncStatus::Syncing { done, total, .. } => write!(f, "syncing {done}/{total}"),
            SyncStatus::Idle {
                attention: Some(top),
                ..
            } => write!(f, "idle, with a problem: {}", top.message),
            other => f.write_str(other.label()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> Scope {
        Scope::Key(Key::new(s).unwrap())
    }

    #[test]
    fn top_is_most_important_class_first() {
        let mut s = ErrorStack::default();
        s.push(ErrorClass::Warning, key("a"), "w", 1);
        s.push(ErrorClass::Item, key("b"), "i", 2);
        assert_eq!(s.top().unwrap().class, ErrorClass::Item);
        s.push(ErrorClass::Throttled, Scope::Global, "t", 3);
        assert_eq!(s.top().unwrap().class, ErrorClass::Throttled);
        s.push(ErrorClass::Offline, Scope::Global, "o", 4);
        assert_eq!(s.top().unwrap().class, ErrorClass::Offline);
        s.push(ErrorClass::Storage, Scope::Global, "s", 5);
        assert_eq!(s.top().unwrap().class, ErrorClass::Storage);
        s.push(ErrorClass::Auth, Scope::Global, "a", 6);
        assert_eq!(s.top().unwrap().class, ErrorClass::Auth);
        let order: Vec<ErrorClass> = s.entries().iter().map(|e| e.class).collect();
        assert_eq!(
            order,
            [
                ErrorClass::Auth,
                ErrorClass::Storage,
                ErrorClass::Offline,
                ErrorClass::Throttled,
                ErrorClass::Item,
                ErrorClass::Warning
            ]
        );
    }

    #[test]
    fn within_a_class_global_then_oldest() {
        let mut s = ErrorStack::default();
        s.push(ErrorClass::Item, key("z"), "late", 9);
        s.push(ErrorClass::Item, key("y"), "early", 1);
        assert_eq!(s.top().unwrap().message, "early");
        s.push(ErrorClass::Item, Scope::Global, "global", 20);
        assert_eq!(s.top().unwrap().message, "global");
    }

    #[test]
    fn same_class_and_scope_keeps_first_seen() {
        let mut s = ErrorStack::default();
        s.push(ErrorClass::Offline, Scope::Global, "first", 1);
        s.push(ErrorClass::Offline, Scope::Global, "second", 5);
        assert_eq!(s.len(), 1);
        let top = s.top().unwrap();
        assert_eq!((top.message.as_str(), top.first_seen_millis), ("second", 1));
    }

    #[test]
    fn clears_on_success_of_its_scope_only() {
        let mut s = ErrorStack::default();
        s.push(ErrorClass::Item, key("a"), "a", 1);
        s.push(ErrorClass::Item, key("b"), "b", 1);
        s.clear_scope(&key("a"));
        assert_eq!(s.len(), 1);
        assert_eq!(s.top().unwrap().message, "b");
        s.clear_scope(&Scope::Global);
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn stop_classes() {
        assert!(ErrorClass::Auth.stops_sync());
        assert!(ErrorClass::Throttled.stops_sync());
        assert!(!ErrorClass::Item.stops_sync());
        assert!(!ErrorClass::Warning.stops_sync());
    }

    #[test]
    fn status_labels() {
        assert_eq!(SyncStatus::Off.to_string(), "off");
        assert_eq!(
            SyncStatus::Idle {
                last_sync: None,
                attention: None
            }
            .to_string(),
            "idle"
        );
        let top = ErrorEntry {
            class: ErrorClass::Auth,
            scope: Scope::Global,
            message: "token expired".into(),
            first_seen_millis: 0,
        };
        assert_eq!(
            SyncStatus::Error { top }.to_string(),
            "error: token expired"
        );
    }
}
