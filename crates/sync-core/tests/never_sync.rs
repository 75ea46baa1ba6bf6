//! The never-sync filter end to end: what the server stores, what comes back, and that private
//! edits and stripped uploads are not mistaken for changes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use futures::FutureExt;
use serde_json::{json, Value};
use sync_core::memory::{LocalTransport, MemoryReplica, MemoryServerStore, MemoryStateStore};
use sync_core::testkit::replica_suite;
use sync_core::{
    Engine, EngineConfig, ErrorClass, Key, NeverSync, NeverSyncReplica, ServerConfig, ServerStore,
    TenantId,
};

type Device =
    Engine<LocalTransport<MemoryServerStore>, MemoryStateStore, NeverSyncReplica<MemoryReplica>>;

fn key(s: &str) -> Key {
    Key::new(s).unwrap()
}

fn filter() -> NeverSync {
    NeverSync::new()
        .key_prefix("device/")
        .field("ssh/", "private_key")
}

fn device(server: &Arc<MemoryServerStore>) -> Device {
    Engine::new(
        LocalTransport::new(server.clone(), TenantId::new("t")),
        MemoryStateStore::default(),
        NeverSyncReplica::new(MemoryReplica::default(), filter()),
        EngineConfig::default(),
    )
}

fn json_of(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap()
}

/// Every version the server keeps of `key`, as JSON text, history included.
async fn everything_stored(server: &MemoryServerStore, k: &Key) -> Vec<String> {
    let tenant = TenantId::new("t");
    let mut out = Vec::new();
    for v in sync_core::full_history(server, &tenant, k).await.unwrap() {
        if v.deleted {
            continue;
        }
        let f = server.fetch(&tenant, k, Some(v.rev)).await.unwrap();
        out.push(String::from_utf8_lossy(&f.content).into_owned());
    }
    out
}

#[tokio::test]
async fn private_fields_and_keys_never_reach_the_server() {
    let server = Arc::new(MemoryServerStore::new(ServerConfig::default()));
    let mut a = device(&server);
    let mut b = device(&server);
    let ssh = key("ssh/home");
    a.replica()
        .inner()
        .put(&ssh, br#"{"host":"example.org","private_key":"SECRET-A"}"#);
    a.replica()
        .inner()
        .put(&key("device/token"), b"SECRET-TOKEN");
    a.sync_once().await.unwrap();

    let stored = everything_stored(&server, &ssh).await;
    assert_eq!(stored, vec![r#"{"host":"example.org"}"#.to_owned()]);
    for never in ["device/token", "device"] {
        assert!(
            sync_core::full_history(&*server, &TenantId::new("t"), &key(never))
                .await
                .is_err(),
            "{never} reached the server"
        );
    }

    // B gets the shared part and sets its own private key.
    b.sync_once().await.unwrap();
    assert_eq!(
        json_of(&b.replica().inner().get(&ssh).unwrap()),
        json!({"host":"example.org"})
    );
    b.replica()
        .inner()
        .put(&ssh, br#"{"host":"example.com","private_key":"SECRET-B"}"#);
    b.sync_once().await.unwrap();
    a.sync_once().await.unwrap();

    // A has B's host and still its own private key; nothing secret was ever stored.
    assert_eq!(
        json_of(&a.replica().inner().get(&ssh).unwrap()),
        json!({"host":"example.com","private_key":"SECRET-A"})
    );
    for version in everything_stored(&server, &ssh).await {
        assert!(!version.contains("SECRET"), "{version}");
    }
}

#[tokio::test]
async fn editing_only_a_private_field_syncs_nothing_and_settles() {
    let server = Arc::new(MemoryServerStore::new(ServerConfig::default()));
    let mut a = device(&server);
    let ssh = key("ssh/home");
    a.replica()
        .inner()
        .put(&ssh, br#"{"host":"h","private_key":"one"}"#);
    assert_eq!(a.sync_once().await.unwrap().uploaded, 1);
    // The stripped upload does not look like a local change next time.
    let again = a.sync_once().await.unwrap();
    assert_eq!((again.uploaded, again.downloaded), (0, 0), "{again:?}");
    a.replica()
        .inner()
        .put(&ssh, br#"{"private_key":"two","host":"h"}"#);
    let private_edit = a.sync_once().await.unwrap();
    assert_eq!(private_edit.uploaded, 0, "{private_edit:?}");
    assert_eq!(everything_stored(&server, &ssh).await.len(), 1);
}

#[tokio::test]
async fn a_downloaded_value_with_restored_fields_is_not_uploaded_back() {
    let server = Arc::new(MemoryServerStore::new(ServerConfig::default()));
    let mut a = device(&server);
    let mut b = device(&server);
    let ssh = key("ssh/home");
    a.replica().inner().put(&ssh, br#"{"host":"1"}"#);
    a.sync_once().await.unwrap();
    b.sync_once().await.unwrap();
    b.replica()
        .inner()
        .put(&ssh, br#"{"host":"1","private_key":"b"}"#);
    b.sync_once().await.unwrap();
    a.replica().inner().put(&ssh, br#"{"host":"2"}"#);
    a.sync_once().await.unwrap();
    let down = b.sync_once().await.unwrap();
    assert_eq!((down.downloaded, down.uploaded), (1, 0), "{down:?}");
    assert_eq!(
        json_of(&b.replica().inner().get(&ssh).unwrap()),
        json!({"host":"2","private_key":"b"})
    );
    let settled = b.sync_once().await.unwrap();
    assert_eq!(
        (settled.downloaded, settled.uploaded),
        (0, 0),
        "{settled:?}"
    );
    assert_eq!(everything_stored(&server, &ssh).await.len(), 2);
}

#[tokio::test]
async fn a_value_that_cannot_be_stripped_is_reported_and_not_uploaded() {
    let server = Arc::new(MemoryServerStore::new(ServerConfig::default()));
    let mut a = device(&server);
    let ssh = key("ssh/broken");
    a.replica().inner().put(&ssh, b"private_key = SECRET");
    let report = a.sync_once().await.unwrap();
    assert_eq!(report.skipped, 1, "{report:?}");
    let problem = &report.errors[0];
    assert_eq!(problem.class, ErrorClass::Item);
    assert!(problem.message.contains("not JSON"), "{}", problem.message);
    assert!(sync_core::full_history(&*server, &TenantId::new("t"), &ssh)
        .await
        .is_err());
}

#[tokio::test]
async fn a_never_sync_key_is_not_downloaded_nor_deleted() {
    // A device without the filter uploaded `device/token`; a device with it leaves it alone.
    let server = Arc::new(MemoryServerStore::new(ServerConfig::default()));
    let mut plain = Engine::new(
        LocalTransport::new(server.clone(), TenantId::new("t")),
        MemoryStateStore::default(),
        MemoryReplica::default(),
        EngineConfig::default(),
    );
    let token = key("device/token");
    plain.replica().put(&token, b"shared by mistake");
    plain.sync_once().await.unwrap();
    let mut a = device(&server);
    a.replica().inner().put(&token, b"mine");
    let report = a.sync_once().await.unwrap();
    assert_eq!(report.errors, vec![], "{report:?}");
    assert_eq!(a.replica().inner().get(&token).unwrap(), b"mine");
    let current = server
        .fetch(&TenantId::new("t"), &token, None)
        .await
        .unwrap();
    assert_eq!(&current.content[..], b"shared by mistake");
}

#[tokio::test]
async fn the_wrapper_is_a_replica() {
    replica_suite(|| {
        async {
            NeverSyncReplica::new(MemoryReplica::default(), NeverSync::new().key_prefix("zz/"))
        }
        .boxed()
    })
    .await;
}

mod properties {
    use proptest::prelude::*;
    use serde_json::{Map, Value};
    use sync_core::{Key, NeverSync};

    /// Small JSON objects over few names, so private paths are often present, nested or not.
    fn object(depth: u32) -> BoxedStrategy<Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            (0i64..5).prop_map(Value::from),
            "[a-c]{0,2}".prop_map(Value::from),
        ];
        let names = prop::sample::select(vec!["a", "b", "secret", "inner"]);
        let child = if depth == 0 {
            leaf.boxed()
        } else {
            prop_oneof![2 => leaf, 1 => object(depth - 1)].boxed()
        };
        prop::collection::vec((names, child), 0..4)
            .prop_map(|fields| {
                Value::Object(
                    fields
                        .into_iter()
                        .map(|(k, v)| (k.to_owned(), v))
                        .collect::<Map<_, _>>(),
                )
            })
            .boxed()
    }

    fn filter() -> NeverSync {
        NeverSync::new()
            .field("p/", "secret")
            .field("p/", "inner.secret")
    }

    fn get<'v>(v: &'v Value, path: &[&str]) -> Option<&'v Value> {
        path.iter().try_fold(v, |v, name| v.as_object()?.get(*name))
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// Nothing private survives a strip, and everything else does.
        #[test]
        fn strip_leaves_no_private_field(v in object(2)) {
            let key = Key::new("p/x").unwrap();
            let bytes = serde_json::to_vec(&v).unwrap();
            let out: Value = serde_json::from_slice(&filter().strip(&key, &bytes).unwrap()).unwrap();
            prop_assert!(get(&out, &["secret"]).is_none());
            prop_assert!(get(&out, &["inner", "secret"]).is_none());
            prop_assert_eq!(get(&out, &["a"]), get(&v, &["a"]));
            prop_assert_eq!(get(&out, &["inner", "a"]), get(&v, &["inner", "a"]));
        }

        /// What a sync writes keeps this device's private fields, and its synced view is what
        /// came in: so a download is never uploaded back, and no private value is lost.
        #[test]
        fn restore_keeps_private_fields_and_strips_back(local in object(2), remote in object(2)) {
            let key = Key::new("p/x").unwrap();
            let f = filter();
            let local_bytes = serde_json::to_vec(&local).unwrap();
            let incoming = f.strip(&key, &serde_json::to_vec(&remote).unwrap()).unwrap().into_owned();
            match f.restore(&key, &incoming, Some(&local_bytes)) {
                Ok(stored) => {
                    let stored_v: Value = serde_json::from_slice(&stored).unwrap();
                    for path in [&["secret"][..], &["inner", "secret"][..]] {
                        if let Some(mine) = get(&local, path) {
                            prop_assert_eq!(get(&stored_v, path), Some(mine));
                        }
                    }
                    let back = f.strip(&key, &stored).unwrap();
                    let back_v: Value = serde_json::from_slice(&back).unwrap();
                    let mut incoming_v: Value = serde_json::from_slice(&incoming).unwrap();
                    // The one documented difference: an object that only held this device's
                    // private field is dropped by the strip, even if it came in empty.
                    if get(&local, &["inner", "secret"]).is_some()
                        && get(&incoming_v, &["inner"]).is_some_and(|i| i == &Value::Object(Map::new()))
                    {
                        incoming_v.as_object_mut().unwrap().remove("inner");
                    }
                    prop_assert_eq!(back_v, incoming_v);
                }
                // Only when the remote made `inner` something other than an object.
                Err(_) => prop_assert!(get(&remote, &["inner"]).is_some_and(|i| !i.is_object())),
            }
        }
    }
}
