//! Runs `examples/desktop-app.rs` as a test: two scoped engines of one tenant in background
//! loops, their events and error stack read through their handles while they run.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../examples/desktop-app.rs"]
#[allow(dead_code)]
mod desktop_app;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_desktop_app_example_runs_and_checks_itself() {
    desktop_app::run().await.unwrap();
}
