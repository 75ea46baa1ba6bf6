//! Runs `examples/terminal-settings.rs` as a test: three policies, a private field that never
//! syncs, a device restart, all checked by the example itself.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../examples/terminal-settings.rs"]
#[allow(dead_code)]
mod terminal_settings;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_terminal_settings_example_runs_and_checks_itself() {
    terminal_settings::run().await.unwrap();
}
