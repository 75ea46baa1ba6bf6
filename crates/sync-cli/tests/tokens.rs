//! Tokens kept out of argv, run as real processes: `sync-server tokens add | list | revoke` on
//! the server's database, a server started with no `--token` that accepts device tokens and a
//! `--token-file` (re-read on SIGHUP), and `folder-sync` reading its token from `SYNC_TOKEN`
//! or `--token-file`. A revoke takes effect on the running server at once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use common::{spawn_listening, write, FOLDER_SYNC, SYNC_SERVER};

fn tokens(db: &Path, args: &[&str]) -> Output {
    Command::new(SYNC_SERVER)
        .arg("tokens")
        .args(&args[..1])
        .arg("--db")
        .arg(db)
        .args(&args[1..])
        .output()
        .unwrap()
}

fn json(out: &Output) -> Value {
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `folder-sync --once` with the token from the environment or a file; its exit code.
fn sync(dir: &Path, url: &str, env_token: Option<&str>, token_file: Option<&Path>) -> i32 {
    let mut cmd = Command::new(FOLDER_SYNC);
    cmd.arg("--dir").arg(dir).args(["--server", url, "--once"]);
    cmd.env_remove("SYNC_TOKEN");
    if let Some(t) = env_token {
        cmd.env("SYNC_TOKEN", t);
    }
    if let Some(f) = token_file {
        cmd.arg("--token-file").arg(f);
    }
    cmd.stdout(Stdio::null()).stderr(Stdio::null());
    cmd.status().unwrap().code().unwrap_or(-1)
}

#[test]
fn device_tokens_and_token_files_without_argv() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("server.db");
    let made = json(&tokens(
        &db,
        &["add", "--tenant", "alice", "--device", "laptop", "--json"],
    ));
    let token = made["token"].as_str().unwrap().to_owned();
    let id = made["id"].as_str().unwrap().to_owned();
    assert_eq!(made["device"], "laptop");
    let file = tmp.path().join("tokens.txt");
    std::fs::write(&file, "# static tokens\nbob:bob-file-token-1\n").unwrap();

    let mut cmd = Command::new(SYNC_SERVER);
    cmd.args(["--listen", "127.0.0.1:0", "--db"])
        .arg(&db)
        .arg("--token-file")
        .arg(&file)
        .stderr(Stdio::null());
    let (mut server, url) = spawn_listening(cmd);

    let laptop = tmp.path().join("laptop");
    write(&laptop.join("notes.txt"), b"hello");
    assert_eq!(
        sync(&laptop, &url, Some(&token), None),
        0,
        "device token from SYNC_TOKEN"
    );
    let bob_file = tmp.path().join("bob-token");
    std::fs::write(&bob_file, "bob-file-token-1\n").unwrap();
    let bob = tmp.path().join("bob");
    std::fs::create_dir_all(&bob).unwrap();
    assert_eq!(
        sync(&bob, &url, None, Some(&bob_file)),
        0,
        "token file token"
    );

    // Text mode prints the token alone on stdout: `> FILE` makes a token file.
    let phone = tokens(&db, &["add", "--tenant", "alice", "--device", "phone"]);
    assert!(phone.status.success());
    let phone_file = tmp.path().join("phone-token");
    std::fs::write(&phone_file, &phone.stdout).unwrap();
    assert_eq!(String::from_utf8_lossy(&phone.stdout).lines().count(), 1);
    assert_eq!(
        sync(&laptop, &url, None, Some(&phone_file)),
        0,
        "token from `tokens add >`"
    );
    let phone_id = json(&tokens(&db, &["list", "--json"]))[1]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(tokens(&db, &["revoke", &phone_id]).status.success());

    let listed = json(&tokens(&db, &["list", "--json"]));
    let row = &listed.as_array().unwrap()[0];
    assert_eq!(
        (row["id"].as_str(), row["tenant"].as_str()),
        (Some(id.as_str()), Some("alice"))
    );
    assert!(row["last_used_millis"].as_u64().is_some(), "{listed}");
    assert!(!listed.to_string().contains(&token), "list printed a token");

    // Revoked while the server runs: refused at once (exit 1: an Auth error).
    assert!(tokens(&db, &["revoke", &id]).status.success());
    assert_eq!(sync(&laptop, &url, Some(&token), None), 1);
    assert_eq!(
        json(&tokens(&db, &["list", "--json"])),
        Value::Array(vec![])
    );

    // A new token file, read on SIGHUP: the old token stops, the new one works.
    std::fs::write(&file, "bob:bob-file-token-2\n").unwrap();
    let pid = server.id().to_string();
    Command::new("kill").args(["-HUP", &pid]).status().unwrap();
    std::fs::write(&bob_file, "bob-file-token-2\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while sync(&bob, &url, None, Some(&bob_file)) != 0 {
        assert!(Instant::now() < deadline, "the new token never worked");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::fs::write(&bob_file, "bob-file-token-1\n").unwrap();
    assert_eq!(
        sync(&bob, &url, None, Some(&bob_file)),
        1,
        "the old token still works"
    );
    let _ = server.kill();
    let _ = server.wait();
}

#[test]
fn bad_token_commands_say_what_to_do() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("server.db");
    let out = tokens(&db, &["revoke", "0123456789ab"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("there is no token"), "{err}");
    // folder-sync without any token for a server.
    let out = Command::new(FOLDER_SYNC)
        .arg("--dir")
        .arg(tmp.path())
        .args(["--server", "http://127.0.0.1:9", "--once"])
        .env_remove("SYNC_TOKEN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "a usage error");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--token"), "{err}");
    // A token file that is missing names itself.
    let missing = tmp.path().join("missing-tokens");
    let out = Command::new(SYNC_SERVER)
        .args(["--listen", "127.0.0.1:0", "--db"])
        .arg(&db)
        .arg("--token-file")
        .arg(&missing)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing-tokens"));
}

#[test]
fn a_server_on_jwts_alone() {
    use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
    let tmp = tempfile::tempdir().unwrap();
    let secret = tmp.path().join("jwt-secret");
    std::fs::write(&secret, "0123456789abcdef0123456789abcdef\n").unwrap();
    let mut cmd = Command::new(SYNC_SERVER);
    cmd.args(["--listen", "127.0.0.1:0", "--db"])
        .arg(tmp.path().join("server.db"))
        .arg("--jwt-hs256-secret-file")
        .arg(&secret)
        .args(["--jwt-tenant-claim", "tenant"])
        .stderr(Stdio::null());
    let (mut server, url) = spawn_listening(cmd);
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let key = EncodingKey::from_secret(b"0123456789abcdef0123456789abcdef").unwrap();
    let jwt = |exp: u64| {
        let claims = serde_json::json!({"tenant": "acme", "exp": exp});
        encode(&Header::new(Algorithm::HS256), &claims, &key).unwrap()
    };
    let dir = tmp.path().join("dev");
    write(&dir.join("a.txt"), b"a");
    assert_eq!(sync(&dir, &url, Some(&jwt(exp + 600)), None), 0);
    assert_eq!(
        sync(&dir, &url, Some(&jwt(exp - 600)), None),
        1,
        "an expired JWT"
    );
    let _ = server.kill();
    let _ = server.wait();
}
