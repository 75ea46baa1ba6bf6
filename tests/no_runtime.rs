//! The engine's parts need a tokio runtime; called outside one they fail with an error that
//! says so, instead of tokio's panic ("there is no reactor running").

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use sync_core::memory::{LocalTransport, MemoryServerStore};
use sync_core::{EngineConfig, ServerConfig, TenantId};
use sync_engine::folder::OpenError;

#[test]
fn opening_a_folder_outside_a_tokio_runtime_is_an_error_not_a_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Arc::new(MemoryServerStore::new(ServerConfig::default()));
    let transport = LocalTransport::new(server, TenantId::new("t"));
    let opened = futures::executor::block_on(sync_engine::folder::open(
        tmp.path(),
        transport,
        EngineConfig::default(),
    ));
    let err = opened.err().expect("opening outside a runtime must fail");
    assert!(matches!(err, OpenError::NoRuntime), "{err:?}");
    assert!(err.to_string().contains("needs a tokio runtime"), "{err}");
}

#[test]
fn a_sqlite_store_opened_outside_a_tokio_runtime_says_what_to_do() {
    let err = futures::executor::block_on(store_sqlite::SqliteStateStore::open_in_memory())
        .expect_err("opening outside a runtime must fail");
    assert!(err.to_string().contains("no tokio runtime"), "{err}");
}
