//! Property tests of the built-in merges in `sync_core::merge` over random small inputs.
//!
//! For every merge: **symmetry** (swapping local and remote and flipping `Newer` gives the same
//! result, so devices converge) and **idempotence** (`merge(v, v, v) == v`,
//! `merge(b, v, v) == v`). For `json_fields` and `text_lines` (and `union_by_id`): a
//! **one-sided change** wins exactly. For `union_by_id`: **nothing added is dropped** and every
//! element deleted on one side stays deleted. For `append_only`: every new entry appears once,
//! after the base, in (order, key) order. Sides are mostly edits of the base, sometimes
//! unrelated values, so both clean merges and fallbacks are exercised.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use serde_json::{json, Map, Value};
use sync_core::merge::{
    append_only, json_fields, json_fields_bytes, text_lines, union_by_id, Newer,
};

fn newer() -> impl Strategy<Value = Newer> {
    prop_oneof![Just(Newer::Local), Just(Newer::Remote)]
}

// ---------------------------------------------------------------- json_fields

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (0i64..4).prop_map(Value::from),
        "[a-c]{0,2}".prop_map(Value::String),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            prop::collection::btree_map("[a-d]", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn object() -> impl Strategy<Value = Value> {
    prop::collection::btree_map("[a-e]", value(), 0..5)
        .prop_map(|m| Value::Object(m.into_iter().collect()))
}

/// An edit of `base`: each field kept, deleted, replaced, or (objects) edited again; some added.
fn edit(base: Value, depth: u32) -> BoxedStrategy<Value> {
    let Value::Object(fields) = base else {
        return prop_oneof![3 => Just(base), 1 => value()].boxed();
    };
    let keys: Vec<String> = fields.keys().cloned().collect();
    let per_field: Vec<BoxedStrategy<Option<Value>>> = fields
        .into_iter()
        .map(|(_, v)| {
            let nested = if depth > 0 && v.is_object() {
                edit(v.clone(), depth - 1)
            } else {
                value().boxed()
            };
            prop_oneof![
                3 => Just(Some(v)),
                1 => Just(None),
                1 => value().prop_map(Some),
                1 => nested.prop_map(Some),
            ]
            .boxed()
        })
        .collect();
    (
        per_field,
        prop::collection::btree_map("[a-g]", value(), 0..2),
    )
        .prop_map(move |(values, added)| {
            let mut out = Map::new();
            for (key, v) in keys.iter().zip(values) {
                if let Some(v) = v {
                    out.insert(key.clone(), v);
                }
            }
            for (key, v) in added {
                out.entry(key).or_insert(v);
            }
            Value::Object(out)
        })
        .boxed()
}

/// A side derived from `base`: mostly an edit, sometimes unchanged, sometimes unrelated.
fn json_side(base: Value) -> impl Strategy<Value = Value> {
    prop_oneof![4 => edit(base.clone(), 2), 1 => Just(base), 1 => value()]
}

/// `(base, local, remote)`; `base` is `None` a quarter of the time (both sides created it).
fn json_case() -> impl Strategy<Value = (Option<Value>, Value, Value)> {
    prop_oneof![4 => object(), 1 => value()].prop_flat_map(|b| {
        (
            any::<u8>(),
            json_side(b.clone()),
            json_side(b.clone()),
            Just(b),
        )
            .prop_map(|(coin, l, r, b)| ((coin % 4 != 0).then_some(b), l, r))
    })
}

// ---------------------------------------------------------------- union_by_id

/// The JSON id for a number: even ones are numbers, odd ones strings (both kinds mix).
fn id_of(n: u8) -> Value {
    if n.is_multiple_of(2) {
        json!(n)
    } else {
        json!(format!("s{n}"))
    }
}

fn element(n: u8, v: u8) -> Value {
    json!({"id": id_of(n), "v": v})
}

/// A base list: unique ids below 8, shuffled.
fn id_list() -> impl Strategy<Value = Vec<Value>> {
    prop::collection::btree_map(0u8..8, 0u8..3, 0..6)
        .prop_map(|m| {
            m.into_iter()
                .map(|(n, v)| element(n, v))
                .collect::<Vec<_>>()
        })
        .prop_shuffle()
}

/// A side: each base element kept, deleted or changed; new ids 8..14 added; shuffled.
fn id_side(base: Vec<Value>) -> BoxedStrategy<Vec<Value>> {
    let n = base.len();
    let edited = (
        prop::collection::vec(0u8..4, n),
        prop::collection::btree_map(8u8..14, 0u8..3, 0..3),
    )
        .prop_map(move |(actions, added)| {
            let mut out = Vec::new();
            for (element, action) in base.iter().zip(actions) {
                match action {
                    0 => {}
                    1 => {
                        let mut e = element.clone();
                        e["w"] = json!(true);
                        out.push(e);
                    }
                    2 => {
                        let mut e = element.clone();
                        e["v"] = json!(9);
                        out.push(e);
                    }
                    _ => out.push(element.clone()),
                }
            }
            out.extend(added.into_iter().map(|(n, v)| element(n, v)));
            out
        });
    prop_oneof![3 => edited.clone().prop_shuffle(), 1 => edited].boxed()
}

fn id_case() -> impl Strategy<Value = (Option<Vec<Value>>, Vec<Value>, Vec<Value>)> {
    (any::<u8>(), id_list()).prop_flat_map(|(coin, b)| {
        let base = (coin % 4 != 0).then_some(b);
        let from = base.clone().unwrap_or_default();
        let side = move || prop_oneof![4 => id_side(from.clone()), 1 => Just(from.clone())];
        (Just(base), side(), side())
    })
}

fn ids(values: &[Value]) -> BTreeSet<String> {
    values.iter().map(|v| v["id"].to_string()).collect()
}

// ---------------------------------------------------------------- append_only

fn entry(k: u8, t: u8, m: u8) -> Value {
    json!({"k": id_of(k), "t": t, "m": m})
}

/// A base log: unique keys below 6, any order.
fn log() -> impl Strategy<Value = Vec<Value>> {
    prop::collection::btree_map(0u8..6, 0u8..4, 0..5)
        .prop_map(|m| {
            m.into_iter()
                .map(|(k, t)| entry(k, t, 0))
                .collect::<Vec<_>>()
        })
        .prop_shuffle()
}

/// A side: the base (sometimes with an entry dropped), then new entries with keys 6..12. A new
/// key may come twice, on one side or both, with the same entry or a different one.
fn log_side(base: Vec<Value>) -> impl Strategy<Value = Vec<Value>> {
    (
        any::<prop::sample::Index>(),
        any::<bool>(),
        prop::collection::vec(
            (6u8..12, 0u8..4, prop_oneof![4 => Just(0u8), 1 => 1u8..3]),
            0..4,
        ),
    )
        .prop_map(move |(drop, dropping, new)| {
            let mut out = base.clone();
            if dropping && !out.is_empty() {
                out.remove(drop.index(out.len()));
            }
            out.extend(new.into_iter().map(|(k, t, m)| entry(k, t, m)));
            out
        })
}

fn log_case() -> impl Strategy<Value = (Option<Vec<Value>>, Vec<Value>, Vec<Value>)> {
    (any::<u8>(), log()).prop_flat_map(|(coin, b)| {
        let base = (coin % 4 != 0).then_some(b);
        let from = base.clone().unwrap_or_default();
        (Just(base), log_side(from.clone()), log_side(from))
    })
}

fn keys(values: &[Value]) -> Vec<String> {
    values.iter().map(|v| v["k"].to_string()).collect()
}

// ---------------------------------------------------------------- text_lines

fn text() -> impl Strategy<Value = String> {
    (prop::collection::vec("[a-d]", 0..10), any::<bool>()).prop_map(|(lines, trailing)| {
        let mut t = lines.join("\n");
        if trailing && !t.is_empty() {
            t.push('\n');
        }
        t
    })
}

/// An edit of `base` line by line: keep, delete, replace, or insert after.
fn text_side(base: String) -> impl Strategy<Value = String> {
    let lines: Vec<String> = base.split_inclusive('\n').map(str::to_owned).collect();
    let n = lines.len();
    let edited = prop::collection::vec((0u8..14, "[a-e]"), n + 1).prop_map(move |actions| {
        let mut out = String::new();
        for (i, (action, new)) in actions.iter().enumerate() {
            let line = lines.get(i).map(String::as_str);
            match (action, line) {
                (0, Some(_)) => {}
                (1, Some(_)) => out.push_str(&format!("{new}\n")),
                (2, line) => {
                    out.push_str(line.unwrap_or_default());
                    out.push_str(&format!("{new}\n"));
                }
                (_, line) => out.push_str(line.unwrap_or_default()),
            }
        }
        out
    });
    prop_oneof![4 => edited, 1 => Just(base), 1 => text()]
}

fn text_case() -> impl Strategy<Value = (Option<String>, String, String)> {
    (any::<u8>(), text()).prop_flat_map(|(coin, b)| {
        let base = (coin % 5 != 0).then_some(b.clone());
        (Just(base), text_side(b.clone()), text_side(b))
    })
}

// ---------------------------------------------------------------- properties

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    /// json_fields: symmetric, idempotent, one-sided changes exact; the byte entry point agrees.
    #[test]
    fn json_fields_laws((base, local, remote) in json_case(), newer in newer()) {
        let b = base.as_ref();
        let merged = json_fields(b, &local, &remote, newer);
        prop_assert_eq!(&merged, &json_fields(b, &remote, &local, newer.flip()));
        prop_assert_eq!(json_fields(Some(&local), &local, &local, newer), local.clone());
        prop_assert_eq!(json_fields(b, &local, &local, newer), local.clone());
        if let Some(b) = b {
            prop_assert_eq!(json_fields(Some(b), b, &remote, newer), remote.clone());
            prop_assert_eq!(json_fields(Some(b), &local, b, newer), local.clone());
        }
        let bytes = |v: &Value| serde_json::to_vec(v).unwrap();
        let via_bytes = json_fields_bytes(
            base.as_ref().map(bytes).as_deref(),
            &bytes(&local),
            &bytes(&remote),
            newer,
        )
        .unwrap();
        prop_assert_eq!(via_bytes, bytes(&merged));
    }

    /// union_by_id: symmetric, idempotent, one-sided changes exact, nothing added dropped,
    /// nothing deleted back.
    #[test]
    fn union_by_id_laws((base, local, remote) in id_case(), newer in newer()) {
        let b = base.as_deref();
        let merged = union_by_id(b, &local, &remote, "id", newer).unwrap();
        prop_assert_eq!(&merged, &union_by_id(b, &remote, &local, "id", newer.flip()).unwrap());
        prop_assert_eq!(&union_by_id(Some(&local), &local, &local, "id", newer).unwrap(), &local);
        prop_assert_eq!(&union_by_id(b, &local, &local, "id", newer).unwrap(), &local);
        if let Some(b) = b {
            prop_assert_eq!(&union_by_id(Some(b), b, &remote, "id", newer).unwrap(), &remote);
            prop_assert_eq!(&union_by_id(Some(b), &local, b, "id", newer).unwrap(), &local);
        }
        let (in_base, in_local, in_remote) = (ids(b.unwrap_or_default()), ids(&local), ids(&remote));
        let result = ids(&merged);
        prop_assert_eq!(result.len(), merged.len(), "an id appears twice");
        for id in in_local.union(&in_remote).filter(|id| !in_base.contains(*id)) {
            prop_assert!(result.contains(id), "added {} was dropped", id);
        }
        for id in &in_base {
            if !in_local.contains(id) || !in_remote.contains(id) {
                prop_assert!(!result.contains(id), "deleted {} came back", id);
            }
        }
    }

    /// append_only: symmetric, idempotent; the base first, then every new key once, in
    /// (order, key) order.
    #[test]
    fn append_only_laws((base, local, remote) in log_case()) {
        let b = base.as_deref();
        let merged = append_only(b, &local, &remote, "k", "t").unwrap();
        prop_assert_eq!(&merged, &append_only(b, &remote, &local, "k", "t").unwrap());
        prop_assert_eq!(&append_only(Some(&local), &local, &local, "k", "t").unwrap(), &local);
        prop_assert_eq!(&append_only(b, &local, &local, "k", "t").unwrap(), &local);
        if local == remote {
            return Ok(());
        }
        let base = b.unwrap_or_default();
        prop_assert_eq!(&merged[..base.len()], base);
        let in_base: BTreeSet<String> = keys(base).into_iter().collect();
        let new = &merged[base.len()..];
        let new_keys = keys(new);
        let distinct: BTreeSet<&String> = new_keys.iter().collect();
        prop_assert_eq!(distinct.len(), new_keys.len(), "a new key appears twice");
        let expected: BTreeSet<String> = keys(&local)
            .into_iter()
            .chain(keys(&remote))
            .filter(|k| !in_base.contains(k))
            .collect();
        prop_assert_eq!(distinct.into_iter().cloned().collect::<BTreeSet<_>>(), expected);
        // Numbers before strings, as the merge orders keys.
        let order = |v: &Value| {
            let k = &v["k"];
            (v["t"].as_u64().unwrap(), k.is_string(), k.as_u64(), k.as_str().map(str::to_owned))
        };
        let by: Vec<_> = new.iter().map(order).collect();
        let mut sorted = by.clone();
        sorted.sort();
        prop_assert_eq!(by, sorted);
    }

    /// text_lines: symmetric, idempotent, one-sided changes exact; a fallback is the newer text.
    #[test]
    fn text_lines_laws((base, local, remote) in text_case(), newer in newer()) {
        let b = base.as_deref();
        let merged = text_lines(b, &local, &remote, newer);
        prop_assert_eq!(&merged, &text_lines(b, &remote, &local, newer.flip()));
        let same = text_lines(Some(&local), &local, &local, newer);
        prop_assert_eq!((same.text.as_str(), same.fell_back), (local.as_str(), false));
        prop_assert_eq!(text_lines(b, &local, &local, newer).text, local.clone());
        if let Some(b) = b {
            let one = text_lines(Some(b), b, &remote, newer);
            prop_assert_eq!((one.text.as_str(), one.fell_back), (remote.as_str(), false));
            prop_assert_eq!(text_lines(Some(b), &local, b, newer).text, local.clone());
        }
        if merged.fell_back {
            let newer_text = match newer { Newer::Local => &local, Newer::Remote => &remote };
            prop_assert_eq!(&merged.text, newer_text);
        }
    }
}

/// Duplicate keys within one map are never generated; a sanity check of the generators.
#[test]
fn generators_make_unique_ids() {
    let runner = &mut proptest::test_runner::TestRunner::deterministic();
    for _ in 0..64 {
        let (base, local, remote) = id_case().new_tree(runner).unwrap().current();
        for side in [base.unwrap_or_default(), local, remote] {
            let all: BTreeMap<String, usize> =
                side.iter().map(|v| (v["id"].to_string(), 0)).collect();
            assert_eq!(all.len(), side.len());
        }
    }
}
