//! [`PgStoreError`]: everything that can go wrong inside this crate, and its conversion into
//! [`sync_core::Error`] (always the `Storage` class: for a server, an unusable database is a
//! storage failure, not a network one).
//!
//! Every message says what happened and what the person running the server can do about it.
//! No message ever contains the database password: connection targets are shown as
//! `postgres://USER@HOST:PORT/DATABASE` ([`describe_target`], [`redact_url`]). This module only
//! describes errors; it must not talk to the database.

use std::fmt::Write as _;

use tokio_postgres::config::Host;

/// A failure of the PostgreSQL server store.
#[derive(Debug, thiserror::Error)]
pub enum PgStoreError {
    /// The connection URL could not be read.
    #[error("invalid PostgreSQL URL {url}: {detail}. Expected postgres://USER:PASSWORD@HOST:PORT/DATABASE")]
    InvalidUrl {
        /// The URL with its password replaced by `***`.
        url: String,
        /// What is wrong with it.
        detail: String,
    },
    /// No connection could be made (server down, wrong address, user, password or database).
    #[error("cannot connect to PostgreSQL at {target}: {}. Is it running, and are the address, user, password and database right?", describe(.source))]
    Connect {
        /// Where (without the password).
        target: String,
        /// What the driver said.
        #[source]
        source: tokio_postgres::Error,
    },
    /// The connection pool could not hand out a connection in time, or was closed.
    #[error("no PostgreSQL connection to {target} is available: {detail}. The database may be overloaded or unreachable; raise the pool size (PgOptions::pool_size, sync-server --postgres-pool-size) or check the database server")]
    Unavailable {
        /// Where (without the password).
        target: String,
        /// Why.
        detail: String,
    },
    /// The database was migrated by a newer version of this crate.
    #[error("the database schema is at version {found}, but this program only knows versions up to {supported}: a newer version of the server migrated it. Upgrade this server (nothing was changed)")]
    NewerSchema {
        /// The newest version recorded in `schema_migrations`.
        found: i32,
        /// The newest version this code knows.
        supported: i32,
    },
    /// A schema migration failed; its transaction was rolled back.
    #[error("migrating the database schema to version {version} failed: {}. Nothing was changed; check that the user may create tables in this database (and schema), then start again", describe(.source))]
    Migration {
        /// The version being applied.
        version: i32,
        /// What PostgreSQL said.
        #[source]
        source: tokio_postgres::Error,
    },
    /// A statement failed or the connection broke while in use.
    #[error("PostgreSQL error: {}. If this repeats, check that the database server is running and reachable", describe(.0))]
    Query(#[from] tokio_postgres::Error),
    /// A row holds a value this code cannot read (a damaged or hand-edited database).
    #[error("the database holds an invalid {what}: {detail}. It may have been edited by hand or damaged: restore it from a backup")]
    BadValue {
        /// Which value.
        what: &'static str,
        /// Why it is invalid.
        detail: String,
    },
}

impl PgStoreError {
    /// A value read from the database that is not valid.
    pub(crate) fn bad(what: &'static str, detail: impl ToString) -> PgStoreError {
        PgStoreError::BadValue {
            what,
            detail: detail.to_string(),
        }
    }

    /// True when the failure is a serialization failure or a deadlock: the transaction was
    /// rolled back and may simply be run again.
    pub(crate) fn is_retryable(e: &tokio_postgres::Error) -> bool {
        use tokio_postgres::error::SqlState;
        e.code().is_some_and(|c| {
            *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED
        })
    }
}

impl From<PgStoreError> for sync_core::Error {
    fn from(e: PgStoreError) -> sync_core::Error {
        sync_core::Error::storage(e.to_string())
    }
}

/// A driver error as one readable line: PostgreSQL's own message, detail and hint for a
/// server error, else the error and its causes.
pub(crate) fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut s = format!("{} (SQLSTATE {})", db.message(), db.code().code());
        if let Some(detail) = db.detail() {
            let _ = write!(s, "; {detail}");
        }
        if let Some(hint) = db.hint() {
            let _ = write!(s, "; hint: {hint}");
        }
        return s;
    }
    let mut s = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        let _ = write!(s, ": {cause}");
        source = cause.source();
    }
    s
}

/// Where a parsed configuration connects, as `postgres://USER@HOST:PORT/DATABASE` (never the
/// password).
pub fn describe_target(config: &tokio_postgres::Config) -> String {
    let mut s = String::from("postgres://");
    if let Some(user) = config.get_user() {
        let _ = write!(s, "{user}@");
    }
    let ports = config.get_ports();
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let name = match host {
                Host::Tcp(name) => name.clone(),
                #[cfg(unix)]
                Host::Unix(path) => path.display().to_string(),
            };
            let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
            format!("{name}:{port}")
        })
        .collect();
    if hosts.is_empty() {
        s.push_str("localhost:5432");
    } else {
        s.push_str(&hosts.join(","));
    }
    s.push('/');
    s.push_str(config.get_dbname().or(config.get_user()).unwrap_or(""));
    s
}

/// The password of a `postgres://user:password@host/...` URL, if it has one (for scrubbing).
fn url_password(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?']).next()?;
    let userinfo = authority.rsplit_once('@')?.0;
    let password = userinfo.split_once(':')?.1;
    (!password.is_empty()).then_some(password)
}

/// `url` with its password (in URL or `password=` key-value form) replaced by `***`.
pub fn redact_url(url: &str) -> String {
    let mut out = match url_password(url) {
        Some(pw) => url.replacen(&format!(":{pw}@"), ":***@", 1),
        None => url.to_owned(),
    };
    // Key-value form and the `password` query parameter.
    for marker in ["password=", "PASSWORD="] {
        let mut from = 0;
        while let Some(at) = out[from..].find(marker) {
            let start = from + at + marker.len();
            let end = out[start..]
                .find(|c: char| c == '&' || c.is_whitespace())
                .map_or(out.len(), |e| start + e);
            out.replace_range(start..end, "***");
            from = start + 3;
        }
    }
    out
}

/// `text` with every occurrence of the password of `url` removed.
pub(crate) fn scrub(text: &str, url: &str) -> String {
    match url_password(url) {
        Some(pw) => text.replace(pw, "***"),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_never_show_the_password() {
        let url = "postgres://sync:s3cret@db.example:6543/app";
        let config: tokio_postgres::Config = url.parse().unwrap();
        let target = describe_target(&config);
        assert_eq!(target, "postgres://sync@db.example:6543/app");
        assert_eq!(redact_url(url), "postgres://sync:***@db.example:6543/app");
        assert_eq!(
            redact_url("host=x user=u password=hunter2 dbname=d"),
            "host=x user=u password=*** dbname=d"
        );
        assert_eq!(
            redact_url("postgres://u@h/d?password=hunter2&sslmode=disable"),
            "postgres://u@h/d?password=***&sslmode=disable"
        );
        assert_eq!(scrub("bad s3cret here", url), "bad *** here");
    }

    #[test]
    fn converts_to_storage_class_and_says_what_to_do() {
        let e = PgStoreError::NewerSchema {
            found: 9,
            supported: 1,
        };
        let core: sync_core::Error = e.into();
        assert_eq!(core.class(), sync_core::ErrorClass::Storage);
        assert!(core.to_string().contains("Upgrade"), "{core}");
    }
}
