//! The shared merge vectors: `tests/vectors/merge/*.json` at the repository root, base / local /
//! remote -> expected, checked here against `sync_core::merge` and by the JavaScript client's
//! tests (clients/js/test/vectors.test.mjs) against its port, so both implementations give the
//! same bytes on the same inputs.
//!
//! `UPDATE_VECTORS=1 cargo test -p sync-core --test vectors` writes each case's `expected` (or
//! `expected_error`) from the Rust functions; without it the test only checks. Regenerate
//! only when a merge rule changes on purpose, and then make the JS port pass again.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use sync_core::merge::{
    append_only_bytes, json_fields_bytes, union_by_id_bytes, Input, MergeError, Newer,
};

fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/vectors/merge")
}

fn input_name(input: Input) -> &'static str {
    match input {
        Input::Base => "base",
        Input::Local => "local",
        Input::Remote => "remote",
    }
}

/// The error of a vector: its kind and the input it names.
fn error_json(e: &MergeError) -> Value {
    let (kind, input) = match e {
        MergeError::InvalidJson { input, .. } => ("invalid_json", Some(*input)),
        MergeError::InvalidUtf8 { input, .. } => ("invalid_utf8", Some(*input)),
        MergeError::NotAnArray { input } => ("not_an_array", Some(*input)),
        MergeError::MissingField { input, .. } => ("missing_field", Some(*input)),
        MergeError::DuplicateId { input, .. } => ("duplicate_id", Some(*input)),
        MergeError::Serialize(_) => ("serialize", None),
    };
    json!({ "kind": kind, "input": input.map(input_name) })
}

fn field<'a>(case: &'a Value, name: &str) -> &'a str {
    case[name]
        .as_str()
        .unwrap_or_else(|| panic!("case {:?} has no string field {name:?}", case["name"]))
}

/// Runs one case through the Rust merge: the merged bytes, or the error.
fn run(merge: &str, case: &Value) -> Result<Vec<u8>, MergeError> {
    let bytes = |v: &Value| serde_json::to_vec(v).unwrap();
    let base = (!case["base"].is_null()).then(|| bytes(&case["base"]));
    let local = bytes(&case["local"]);
    let remote = bytes(&case["remote"]);
    let newer = || match case["newer"].as_str() {
        Some("local") => Newer::Local,
        Some("remote") => Newer::Remote,
        other => panic!(
            "case {:?}: newer must be local or remote, not {other:?}",
            case["name"]
        ),
    };
    match merge {
        "json_fields" => json_fields_bytes(base.as_deref(), &local, &remote, newer()),
        "union_by_id" => union_by_id_bytes(
            base.as_deref(),
            &local,
            &remote,
            field(case, "id_field"),
            newer(),
        ),
        "append_only" => append_only_bytes(
            base.as_deref(),
            &local,
            &remote,
            field(case, "key_field"),
            field(case, "order_field"),
        ),
        other => panic!("unknown merge {other:?}"),
    }
}

#[test]
fn every_merge_vector_gives_its_expected_result() {
    let update = std::env::var_os("UPDATE_VECTORS").is_some();
    let mut files: Vec<PathBuf> = std::fs::read_dir(vectors_dir())
        .expect("tests/vectors/merge exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 3, "expected the three merge vector files");
    let mut checked = 0;
    for path in files {
        let mut doc: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let merge = doc["merge"].as_str().unwrap().to_owned();
        let cases = doc["cases"].as_array_mut().unwrap();
        for case in cases.iter_mut() {
            let got = run(&merge, case);
            if update {
                let obj = case.as_object_mut().unwrap();
                obj.remove("expected");
                obj.remove("expected_error");
                match &got {
                    Ok(bytes) => {
                        obj.insert("expected".into(), serde_json::from_slice(bytes).unwrap())
                    }
                    Err(e) => obj.insert("expected_error".into(), error_json(e)),
                };
                continue;
            }
            let name = &case["name"];
            match (&got, case.get("expected"), case.get("expected_error")) {
                (Ok(bytes), Some(expected), None) => {
                    assert_eq!(
                        std::str::from_utf8(bytes).unwrap(),
                        serde_json::to_string(expected).unwrap(),
                        "{merge}: {name}"
                    );
                }
                (Err(e), None, Some(expected)) => {
                    assert_eq!(&error_json(e), expected, "{merge}: {name}");
                }
                (got, _, _) => panic!(
                    "{merge}: {name}: got {:?}, the vector expects {:?} / {:?}; regenerate \
                     with UPDATE_VECTORS=1 only if the rule changed on purpose",
                    got.as_ref()
                        .map(|b| String::from_utf8_lossy(b).into_owned()),
                    case.get("expected"),
                    case.get("expected_error")
                ),
            }
            checked += 1;
        }
        if update {
            let text = serde_json::to_string_pretty(&doc).unwrap() + "\n";
            std::fs::write(&path, text).unwrap();
        }
    }
    if !update {
        assert!(checked >= 30, "only {checked} vectors checked");
    }
}
