//! The browser test: the notes example of clients/js in headless Chromium, two browser
//! contexts as two devices and two tabs of one origin, against the real `sync-server` with
//! `--cors-origin` (the driver, clients/js/test/browser/notes.mjs, starts both and speaks the
//! DevTools protocol). An edit shows in the other device within 1 s, a reload keeps the
//! IndexedDB state, two tabs do not corrupt the store.
//!
//! Needs `node`, Chromium (`chromium` on PATH, or `CHROMIUM`) and the example's bundle
//! (`npm run build:example` in clients/js). Without them the test prints SKIPPED and passes,
//! except under `CI`, where it fails (.ci/run installs and builds them).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

fn available(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn the_notes_example_syncs_between_browsers_and_tabs() {
    let js = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../clients/js");
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "chromium".to_owned());
    let missing = if !available("node") {
        Some("`node` is not on PATH".to_owned())
    } else if !available(&chromium) {
        Some(format!(
            "{chromium} does not run (apt-get install chromium, or set CHROMIUM)"
        ))
    } else if !js.join("examples/notes/notes.bundle.js").exists() {
        Some("the notes bundle is missing: run `npm run build:example` in clients/js".to_owned())
    } else {
        None
    };
    if let Some(why) = missing {
        if std::env::var_os("CI").is_some() {
            panic!("browser: {why}, but CI is set: the browser test must not be skipped in CI");
        }
        eprintln!("SKIPPED browser: {why}");
        return;
    }
    let out = Command::new("node")
        .arg(js.join("test/browser/notes.mjs"))
        .env("SYNC_SERVER_BIN", env!("CARGO_BIN_EXE_sync-server"))
        .env("CHROMIUM", &chromium)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "the browser test failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("5 passed, 0 failed"), "{stdout}");
}
