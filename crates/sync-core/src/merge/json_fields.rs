//! The field-by-field three-way merge of JSON objects, recursive into nested objects.
//!
//! Must stay pure and symmetric: swapping `local` and `remote` and flipping [`Newer`] gives
//! the same value, including the same key order.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use super::Newer;

/// JSON objects merged field by field, recursively.
///
/// - a side equal to `base` takes the other side's whole value; equal sides take that value;
/// - a field changed on one side (relative to base) takes that side;
/// - a field changed differently on both sides takes the newer side, except that where both
///   values are objects they are merged field by field again (with the base's field, or none);
/// - a field deleted on one side and unchanged on the other is deleted; deleted on one side and
///   changed on the other counts as changed on both (the newer side wins, which may be the
///   delete);
/// - a field added on both sides with different values takes the newer (objects: merged
///   recursively, as above).
///
/// Non-objects (or a side that is not an object) fall back to the newer side's whole value.
/// `base` is `None` when both sides created the key; a base that is not an object counts as an
/// empty one when both sides are objects. Merged objects list their keys in sorted order.
///
/// ```
/// use serde_json::json;
/// use sync_core::merge::{json_fields, Newer};
///
/// let base = json!({"title": "x", "done": false, "tags": {"a": 1}});
/// let local = json!({"title": "y", "done": false, "tags": {"a": 1, "b": 2}});
/// let remote = json!({"title": "z", "done": true, "tags": {"a": 1}});
/// let merged = json_fields(Some(&base), &local, &remote, Newer::Remote);
/// assert_eq!(merged, json!({"title": "z", "done": true, "tags": {"a": 1, "b": 2}}));
///
/// // Not objects: the newer side wins whole.
/// assert_eq!(json_fields(None, &json!(1), &json!([2]), Newer::Local), json!(1));
/// ```
pub fn json_fields(base: Option<&Value>, local: &Value, remote: &Value, newer: Newer) -> Value {
    if local == remote || Some(remote) == base {
        return local.clone();
    }
    if Some(local) == base {
        return remote.clone();
    }
    match (local, remote) {
        (Value::Object(l), Value::Object(r)) => {
            let b = match base {
                Some(Value::Object(b)) => Some(b),
                _ => None,
            };
            Value::Object(merge_objects(b, l, r, newer))
        }
        _ => newer.pick(local, remote).clone(),
    }
}

/// Both sides are objects that differ; merges each field of the union in sorted key order.
fn merge_objects(
    base: Option<&Map<String, Value>>,
    local: &Map<String, Value>,
    remote: &Map<String, Value>,
    newer: Newer,
) -> Map<String, Value> {
    let keys: BTreeSet<&String> = base
        .into_iter()
        .flat_map(|b| b.keys())
        .chain(local.keys())
        .chain(remote.keys())
        .collect();
    let mut out = Map::new();
    for key in keys {
        let b = base.and_then(|b| b.get(key));
        let merged = merge_field(b, local.get(key), remote.get(key), newer);
        if let Some(value) = merged {
            out.insert(key.clone(), value);
        }
    }
    out
}

/// One field: `None` means absent (never added, or deleted).
fn merge_field(
    base: Option<&Value>,
    local: Option<&Value>,
    remote: Option<&Value>,
    newer: Newer,
) -> Option<Value> {
    if local == remote || remote == base {
        return local.cloned();
    }
    if local == base {
        return remote.cloned();
    }
    match (local, remote) {
        (Some(l), Some(r)) => Some(json_fields(base, l, r, newer)),
        _ => newer.pick(&local, &remote).cloned(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn both(base: Option<&Value>, local: &Value, remote: &Value, newer: Newer) -> Value {
        let a = json_fields(base, local, remote, newer);
        let b = json_fields(base, remote, local, newer.flip());
        assert_eq!(a, b, "not symmetric");
        a
    }

    #[test]
    fn one_sided_changes_take_that_side() {
        let base = json!({"a": 1, "b": 1, "c": 1});
        let local = json!({"a": 2, "b": 1, "c": 1});
        let remote = json!({"a": 1, "b": 1, "c": 3, "d": 4});
        for newer in [Newer::Local, Newer::Remote] {
            assert_eq!(
                both(Some(&base), &local, &remote, newer),
                json!({"a": 2, "b": 1, "c": 3, "d": 4})
            );
        }
    }

    #[test]
    fn changed_on_both_takes_the_newer() {
        let base = json!({"a": 1});
        let local = json!({"a": 2});
        let remote = json!({"a": 3});
        assert_eq!(
            both(Some(&base), &local, &remote, Newer::Local),
            json!({"a": 2})
        );
        assert_eq!(
            both(Some(&base), &local, &remote, Newer::Remote),
            json!({"a": 3})
        );
    }

    #[test]
    fn deleted_on_one_side_unchanged_on_the_other_is_deleted() {
        let base = json!({"a": 1, "b": 1});
        let local = json!({"a": 1});
        let remote = json!({"a": 1, "b": 1, "c": 1});
        for newer in [Newer::Local, Newer::Remote] {
            assert_eq!(
                both(Some(&base), &local, &remote, newer),
                json!({"a": 1, "c": 1})
            );
        }
    }

    #[test]
    fn delete_against_edit_takes_the_newer() {
        let base = json!({"a": 1, "b": 1});
        let local = json!({"a": 2});
        let remote = json!({"a": 1, "b": 2});
        assert_eq!(
            both(Some(&base), &local, &remote, Newer::Local),
            json!({"a": 2})
        );
        assert_eq!(
            both(Some(&base), &local, &remote, Newer::Remote),
            json!({"a": 2, "b": 2})
        );
    }

    #[test]
    fn added_on_both_takes_the_newer_and_nested_objects_merge() {
        let local = json!({"x": 1, "o": {"p": 1, "q": 1}});
        let remote = json!({"x": 2, "o": {"p": 2, "r": 1}});
        assert_eq!(
            both(None, &local, &remote, Newer::Remote),
            json!({"x": 2, "o": {"p": 2, "q": 1, "r": 1}})
        );
        let base = json!({"o": {"deep": {"a": 1, "b": 1}}});
        let local = json!({"o": {"deep": {"a": 2, "b": 1}}});
        let remote = json!({"o": {"deep": {"a": 1, "b": 2}}});
        assert_eq!(
            both(Some(&base), &local, &remote, Newer::Local),
            json!({"o": {"deep": {"a": 2, "b": 2}}})
        );
    }

    #[test]
    fn non_objects_fall_back_to_the_newer_whole_value() {
        let base = json!({"a": 1});
        let local = json!({"a": 2});
        let remote = json!([1, 2]);
        assert_eq!(both(Some(&base), &local, &remote, Newer::Local), local);
        assert_eq!(both(Some(&base), &local, &remote, Newer::Remote), remote);
        assert_eq!(
            both(Some(&json!(1)), &json!(2), &json!(3), Newer::Remote),
            json!(3)
        );
        // A base that is not an object: the fields merge as if both sides added them.
        assert_eq!(
            both(
                Some(&json!("s")),
                &json!({"a": 1}),
                &json!({"b": 2}),
                Newer::Local
            ),
            json!({"a": 1, "b": 2})
        );
    }

    #[test]
    fn unchanged_and_equal_sides() {
        let v = json!({"a": [1, 2], "b": null});
        assert_eq!(both(Some(&v), &v, &v, Newer::Local), v);
        let b = json!({"a": 0});
        assert_eq!(both(Some(&b), &v, &v, Newer::Remote), v);
        assert_eq!(both(Some(&b), &b, &v, Newer::Local), v);
        assert_eq!(both(Some(&b), &v, &b, Newer::Remote), v);
    }
}
