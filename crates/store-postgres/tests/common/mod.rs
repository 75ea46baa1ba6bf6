//! Helpers shared by the PostgreSQL tests: the server from `SYNC_TEST_POSTGRES_URL` (skip
//! loudly without it, fail under `CI`), and a fresh schema per store so tests never see each
//! other's tables.
//!
//! Test code: it may panic and unwrap.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::io::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// The variable naming the test server.
pub const URL_VAR: &str = "SYNC_TEST_POSTGRES_URL";

/// The admin URL of the test server, or `None` (after a loud message) when it is not set.
/// Under `CI` a missing URL fails the test: CI must never skip these tests silently.
pub fn server_url(test: &str) -> Option<String> {
    match std::env::var(URL_VAR) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ if std::env::var_os("CI").is_some() => panic!(
            "{test}: {URL_VAR} is not set, but CI is: the PostgreSQL tests must not be skipped in CI. \
             Start PostgreSQL first: eval \"$(bash .ci/postgres.sh)\""
        ),
        _ => {
            // Straight to the process's stderr, past the test harness's output capture, so
            // the skip shows in a plain `cargo test` run.
            let _ = writeln!(
                std::io::stderr(),
                "\n************************************************************\n\
                 SKIPPED {test}: set {URL_VAR} (see .ci/postgres.sh)\n\
                 ************************************************************"
            );
            None
        }
    }
}

/// A connection for test set-up and inspection.
pub async fn admin(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {URL_VAR}: {e}"));
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// Schemas made by one test, dropped by [`Schemas::drop_all`].
#[derive(Clone)]
pub struct Schemas {
    server: String,
    made: Arc<Mutex<Vec<String>>>,
}

static NEXT: AtomicUsize = AtomicUsize::new(0);

impl Schemas {
    /// Schemas on the server at `server`.
    pub fn new(server: &str) -> Schemas {
        Schemas {
            server: server.to_owned(),
            made: Arc::default(),
        }
    }

    /// Creates a new empty schema and returns (its name, a URL whose `search_path` is it and
    /// whose `application_name` is its name).
    pub async fn fresh(&self) -> (String, String) {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let name = format!(
            "test_{}_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst),
            nanos
        );
        admin(&self.server)
            .await
            .batch_execute(&format!("CREATE SCHEMA {name}"))
            .await
            .unwrap();
        self.made.lock().unwrap().push(name.clone());
        let sep = if self.server.contains('?') { '&' } else { '?' };
        let url = format!(
            "{}{sep}options=-c%20search_path%3D{name}&application_name={name}",
            self.server
        );
        (name, url)
    }

    /// Drops every schema made so far.
    pub async fn drop_all(&self) {
        let names: Vec<String> = std::mem::take(&mut *self.made.lock().unwrap());
        let client = admin(&self.server).await;
        for name in names {
            client
                .batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
                .await
                .unwrap();
        }
    }
}
