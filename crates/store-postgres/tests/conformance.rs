//! The sync-core `ServerStore` conformance suite against `PgServerStore`, each check on a
//! fresh schema of the server in `SYNC_TEST_POSTGRES_URL`.
//!
//! Test code: it may panic and unwrap.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use futures::FutureExt;
use store_postgres::PgServerStore;
use sync_core::testkit::{server_store_suite, token_store_suite};
use sync_core::ServerConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_server_store_conforms() {
    let Some(server) = common::server_url("postgres_server_store_conforms") else {
        return;
    };
    let schemas = common::Schemas::new(&server);
    let started = std::time::Instant::now();
    let make = schemas.clone();
    server_store_suite(move |config: ServerConfig| {
        let schemas = make.clone();
        async move {
            let (_, url) = schemas.fresh().await;
            PgServerStore::connect(&url, config).await.unwrap()
        }
        .boxed()
    })
    .await;
    eprintln!("server_store_suite on PostgreSQL: {:?}", started.elapsed());
    schemas.drop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_token_store_conforms() {
    let Some(server) = common::server_url("postgres_token_store_conforms") else {
        return;
    };
    let schemas = common::Schemas::new(&server);
    let make = schemas.clone();
    token_store_suite(move || {
        let schemas = make.clone();
        async move {
            let (_, url) = schemas.fresh().await;
            PgServerStore::connect(&url, ServerConfig::default())
                .await
                .unwrap()
        }
        .boxed()
    })
    .await;
    schemas.drop_all().await;
}
