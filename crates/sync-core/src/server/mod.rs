//! The server's rules without I/O: what every [`ServerStore`](crate::ServerStore) decides the
//! same way (docs/SPEC.md §2, §4).
//!
//! A store reads rows, calls one of these functions with what it read, and writes what it is
//! told to; the function never touches storage. The split is the same as a sans-I/O protocol
//! core: the decisions live here once, each store keeps only
//!
//! - **reading**: the current state of the keys a write depends on ([`keys_to_read`]), the
//!   tenant's revision counter, and the rows of a change page;
//! - **writing**: the [`Row`]s of a [`Write`] (and the content blob) in one transaction, then
//!   saving [`Write::counter`];
//! - **waking**: telling long-polls that the feed moved ([`Watchers`]).
//!
//! Modules:
//! - [`content`]: a pushed body's size and hash check, and hashing large bodies off the async
//!   threads;
//! - [`write`](mod@write): [`WriteRules`]: preconditions, the stamp clamp, parent folders, folder/file
//!   clashes, tombstones, archives and the Lamport counter;
//! - [`feed`]: the cursor check and how a change page and its cursor are made;
//! - [`retention`]: which old versions a store drops ([`Retention`]);
//! - [`tokens`]: device tokens in the server's database ([`TokenStore`]), stored as hashes;
//! - [`watch`]: per-tenant wake-up channels for [`ServerStore::wait`](crate::ServerStore::wait).
//!
//! Nothing here may open a file or a socket, read the clock other than through
//! [`ServerConfig::time`](crate::ServerConfig::time), or hold state between calls (except the
//! wake-up channels).

pub mod content;
pub mod feed;
pub mod retention;
pub mod tokens;
pub mod watch;
pub mod write;

pub use content::{
    check_content, check_content_file, check_content_off_thread, hash_off_thread,
    HASH_OFF_THREAD_ABOVE,
};
pub use feed::{change_page, feed_after, rows_to_read};
pub use retention::{Retention, PRUNE_PER_WRITE};
pub use tokens::{new_token, token_hash, NewToken, TokenInfo, TokenStore};
pub use watch::Watchers;
pub use write::{keys_to_read, rebase, Decision, Row, Write, WriteRules, MAX_REVISION, MAX_SEEN};
