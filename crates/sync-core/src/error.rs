//! The one error type every trait of sync-core returns, and its class on the error stack (docs/SPEC.md §5).
//!
//! Implementations in other crates keep their own `thiserror` enums and convert into [`Error`]
//! at the trait boundary, choosing the variant whose class fits (a full disk is `Storage`, a
//! refused connection is `Offline`, one unreadable file is `Item`).

use std::time::Duration;

use crate::{ContentHash, CursorParseError, ErrorClass, Key, KeyError};

/// A failure of a transport, a store, a replica or the engine.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The token is missing, invalid or expired.
    #[error("not authorised: {message}. Check the token, or sign in again")]
    Auth {
        /// What the server or the authenticator said.
        message: String,
    },
    /// The server's TLS certificate is not trusted (unknown issuer, expired, or for another
    /// name). Of class `Auth`: nothing passes by retrying; the user must give the CA that
    /// signed the certificate, or fix the server's certificate or the URL.
    #[error("the server's certificate is not trusted: {message}")]
    Untrusted {
        /// What the TLS check said, and what to do.
        message: String,
    },
    /// Nothing at the server URL speaks the sync protocol (its change feed is not there: a
    /// wrong host, port or path). Of class `Auth`: retrying does not help; the user must fix
    /// the URL.
    #[error("no sync server at this URL: {message}")]
    NoServer {
        /// What the URL answered, and what to do.
        message: String,
    },
    /// The state store, the server store or the sync folder is unusable.
    #[error("storage failed: {message}")]
    Storage {
        /// What went wrong and what to do about it.
        message: String,
    },
    /// The server could not be reached or failed (5xx, garbage); retried with backoff.
    #[error("server unreachable: {message}. Sync retries by itself")]
    Offline {
        /// What went wrong, short enough for an app's error area.
        message: String,
        /// The technical detail (the HTTP client's error chain, the URL), when there is one:
        /// this error's `source()`, for logs and `caused by:` lines.
        #[source]
        detail: Option<Detail>,
    },
    /// The server asked the client to slow down (429, quota).
    #[error("throttled by the server: {message}. Sync resumes after the wait")]
    Throttled {
        /// How long the server asked to wait, if it said.
        retry_after: Option<Duration>,
        /// What the server said.
        message: String,
    },
    /// The cursor belongs to another epoch of the store (restored from backup): start over
    /// from the beginning of the feed and compare by hash.
    #[error("the change cursor has expired (the server store was replaced or restored); a full comparison follows")]
    CursorExpired,
    /// A cursor string that this library did not make.
    #[error(transparent)]
    InvalidCursor(#[from] CursorParseError),
    /// The item (or that version of it) does not exist.
    #[error("{key}: not found")]
    NotFound {
        /// The key asked for.
        key: Key,
    },
    /// A key broke a rule of docs/SPEC.md §1.
    #[error(transparent)]
    InvalidKey(#[from] KeyError),
    /// Content did not match the hash sent with it.
    #[error("{key}: content does not match its hash (expected {expected}, got {actual}); the transfer was corrupted and is retried on the next sync")]
    HashMismatch {
        /// The item.
        key: Key,
        /// The hash that was announced.
        expected: ContentHash,
        /// The hash of the bytes that arrived.
        actual: ContentHash,
    },
    /// The item is over the size limit.
    #[error("{key}: {size} bytes is over the limit of {limit} bytes; it is not synced (raise max_item_bytes to sync it)")]
    TooLarge {
        /// The item.
        key: Key,
        /// Its size.
        size: u64,
        /// The limit in force.
        limit: u64,
    },
    /// A local item changed after the plan looked at it; it is left alone and planned again.
    #[error("{key}: changed while syncing; it is left as it is and synced next time")]
    Changed {
        /// The item.
        key: Key,
    },
    /// One item could not be synced (permission denied, invalid name, rejected by the server).
    #[error("{key}: {message}")]
    Item {
        /// The item.
        key: Key,
        /// What went wrong and what to do.
        message: String,
    },
}

/// The technical detail behind an error's short message, as its `source()`: what a log or a
/// `caused by:` line shows, and an app's error area does not.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Detail(pub String);

impl Error {
    /// Where this error goes on the error-priority stack.
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::Auth { .. } | Error::Untrusted { .. } | Error::NoServer { .. } => {
                ErrorClass::Auth
            }
            Error::Storage { .. } => ErrorClass::Storage,
            Error::Offline { .. } | Error::CursorExpired | Error::InvalidCursor(_) => {
                ErrorClass::Offline
            }
            Error::Throttled { .. } => ErrorClass::Throttled,
            Error::NotFound { .. }
            | Error::InvalidKey(_)
            | Error::HashMismatch { .. }
            | Error::TooLarge { .. }
            | Error::Changed { .. }
            | Error::Item { .. } => ErrorClass::Item,
        }
    }

    /// The key this error is about, if it is about one item.
    pub fn key(&self) -> Option<&Key> {
        match self {
            Error::NotFound { key }
            | Error::HashMismatch { key, .. }
            | Error::TooLarge { key, .. }
            | Error::Changed { key }
            | Error::Item { key, .. } => Some(key),
            _ => None,
        }
    }

    /// Shorthand for an [`Error::Storage`].
    pub fn storage(message: impl Into<String>) -> Error {
        Error::Storage {
            message: message.into(),
        }
    }

    /// Shorthand for an [`Error::Offline`].
    pub fn offline(message: impl Into<String>) -> Error {
        Error::Offline {
            message: message.into(),
            detail: None,
        }
    }

    /// An [`Error::Offline`] with a short `message` for a person and the technical `detail`
    /// behind it (its `source()`).
    pub fn offline_with_detail(message: impl Into<String>, detail: impl Into<String>) -> Error {
        Error::Offline {
            message: message.into(),
            detail: Some(Detail(detail.into())),
        }
    }

    /// Shorthand for an [`Error::Item`].
    pub fn item(key: &Key, message: impl Into<String>) -> Error {
        Error::Item {
            key: key.clone(),
            message: message.into(),
        }
    }
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_follow_spec_5() {
        let k = Key::new("a").unwrap();
        assert_eq!(
            Error::Auth {
                message: "x".into()
            }
            .class(),
            ErrorClass::Auth
        );
        assert_eq!(
            Error::Untrusted {
                message: "x".into()
            }
            .class(),
            ErrorClass::Auth
        );
        assert_eq!(Error::storage("x").class(), ErrorClass::Storage);
        assert_eq!(Error::offline("x").class(), ErrorClass::Offline);
        assert_eq!(
            Error::Throttled {
                retry_after: None,
                message: "x".into()
            }
            .class(),
            ErrorClass::Throttled
        );
        assert_eq!(Error::item(&k, "x").class(), ErrorClass::Item);
        assert_eq!(
            Error::TooLarge {
                key: k.clone(),
                size: 2,
                limit: 1
            }
            .class(),
            ErrorClass::Item
        );
        assert_eq!(Error::item(&k, "x").key(), Some(&k));
    }

    #[test]
    fn messages_say_what_to_do() {
        let k = Key::new("big.bin").unwrap();
        let msg = Error::TooLarge {
            key: k,
            size: 30,
            limit: 20,
        }
        .to_string();
        assert!(
            msg.contains("big.bin") && msg.contains("max_item_bytes"),
            "{msg}"
        );
        let msg = Error::Auth {
            message: "token expired".into(),
        }
        .to_string();
        assert!(msg.contains("sign in again"), "{msg}");
    }
}
