//! The three-way merge of arrays of objects that carry an id (a to-do list, a set of records).
//!
//! Must stay pure and symmetric: the result, including its order, is the same whichever side is
//! `local` once [`Newer`] is flipped. Deletes relative to base are honoured: a naive union would
//! bring a deleted element back.

use std::collections::BTreeMap;

use serde_json::Value;

use super::{json_fields, Input, MergeError, Newer, Scalar};

/// Arrays of objects with an id field (`id_field`, e.g. `"id"`, a string or number), merged
/// three-way by id.
///
/// - elements added on either side are kept (added on both: merged by [`json_fields`] with no
///   base);
/// - elements deleted on either side relative to `base` stay deleted, even if the other side
///   changed them;
/// - an element changed on both sides is merged by [`json_fields`].
///
/// Order: equal sides, or a side equal to `base`, give the other side as it is; otherwise the
/// survivors in the base's order first, then the new elements ordered by id (numbers before
/// strings). `base` is `None` when both sides created the key.
///
/// # Errors
///
/// [`MergeError::MissingField`] when an element (of any input) is not an object with a string or
/// number `id_field`; [`MergeError::DuplicateId`] when one array holds an id twice.
///
/// ```
/// use serde_json::json;
/// use sync_core::merge::{union_by_id, Newer};
///
/// let base = [json!({"id": "a"}), json!({"id": "b"})];
/// let local = [json!({"id": "a"})]; // deletes b
/// let remote = [json!({"id": "a"}), json!({"id": "b"}), json!({"id": "c"})]; // adds c
/// let merged = union_by_id(Some(&base), &local, &remote, "id", Newer::Local).unwrap();
/// assert_eq!(merged, [json!({"id": "a"}), json!({"id": "c"})]);
/// ```
pub fn union_by_id(
    base: Option<&[Value]>,
    local: &[Value],
    remote: &[Value],
    id_field: &str,
    newer: Newer,
) -> Result<Vec<Value>, MergeError> {
    let base_ids = base.map(|b| index(b, id_field, Input::Base)).transpose()?;
    let local_ids = index(local, id_field, Input::Local)?;
    let remote_ids = index(remote, id_field, Input::Remote)?;
    if local == remote || Some(remote) == base {
        return Ok(local.to_vec());
    }
    if Some(local) == base {
        return Ok(remote.to_vec());
    }
    let base_ids = base_ids.unwrap_or_default();
    let mut merged = Vec::new();
    // Survivors of the base, in the base's order.
    for (id, b) in ordered(&base_ids) {
        let (Some((_, l)), Some((_, r))) = (local_ids.get(id), remote_ids.get(id)) else {
            continue; // deleted on at least one side
        };
        merged.push(json_fields(Some(b), l, r, newer));
    }
    // New elements, ordered by id.
    let mut added: BTreeMap<&Scalar, Value> = BTreeMap::new();
    for (id, (_, l)) in &local_ids {
        if !base_ids.contains_key(id) {
            let value = match remote_ids.get(id) {
                Some((_, r)) => json_fields(None, l, r, newer),
                None => (*l).clone(),
            };
            added.insert(id, value);
        }
    }
    for (id, (_, r)) in &remote_ids {
        if !base_ids.contains_key(id) && !local_ids.contains_key(id) {
            added.insert(id, (*r).clone());
        }
    }
    merged.extend(added.into_values());
    Ok(merged)
}

/// Each element by id, with its position; errors on a missing or repeated id.
fn index<'a>(
    items: &'a [Value],
    id_field: &str,
    input: Input,
) -> Result<BTreeMap<Scalar, (usize, &'a Value)>, MergeError> {
    let mut ids = BTreeMap::new();
    for (index, item) in items.iter().enumerate() {
        let id = Scalar::field(item, id_field).ok_or_else(|| MergeError::MissingField {
            input,
            index,
            field: id_field.to_owned(),
        })?;
        if ids.contains_key(&id) {
            return Err(MergeError::DuplicateId {
                input,
                id: id.to_json(),
                field: id_field.to_owned(),
            });
        }
        ids.insert(id, (index, item));
    }
    Ok(ids)
}

/// The ids of an index in array order.
fn ordered<'m, 'a>(ids: &'m BTreeMap<Scalar, (usize, &'a Value)>) -> Vec<(&'m Scalar, &'a Value)> {
    let mut by_position: Vec<_> = ids.iter().map(|(id, (pos, v))| (*pos, id, *v)).collect();
    by_position.sort_by_key(|(pos, _, _)| *pos);
    by_position.into_iter().map(|(_, id, v)| (id, v)).collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn both(b: Option<&[Value]>, l: &[Value], r: &[Value], newer: Newer) -> Vec<Value> {
        let a = union_by_id(b, l, r, "id", newer).unwrap();
        let c = union_by_id(b, r, l, "id", newer.flip()).unwrap();
        assert_eq!(a, c, "not symmetric");
        a
    }

    fn ids(values: &[Value]) -> Vec<Value> {
        values.iter().map(|v| v["id"].clone()).collect()
    }

    #[test]
    fn a_delete_on_one_side_and_an_add_on_the_other_both_stick() {
        let base = [json!({"id": "a"}), json!({"id": "b"})];
        let local = [json!({"id": "a"})];
        let remote = [json!({"id": "a"}), json!({"id": "b"}), json!({"id": "c"})];
        for newer in [Newer::Local, Newer::Remote] {
            let merged = both(Some(&base), &local, &remote, newer);
            assert_eq!(ids(&merged), [json!("a"), json!("c")]);
        }
    }

    #[test]
    fn changed_on_both_merges_fields_and_delete_beats_edit() {
        let base = [
            json!({"id": 1, "t": "x", "n": 0}),
            json!({"id": 2, "t": "y"}),
        ];
        let local = [
            json!({"id": 1, "t": "X", "n": 0}),
            json!({"id": 2, "t": "Y"}),
        ];
        let remote = [json!({"id": 1, "t": "x", "n": 5})];
        let merged = both(Some(&base), &local, &remote, Newer::Local);
        assert_eq!(merged, [json!({"id": 1, "t": "X", "n": 5})]);
    }

    #[test]
    fn new_elements_follow_the_base_ordered_by_id() {
        let base = [json!({"id": "m"}), json!({"id": "b"})];
        let local = [json!({"id": "z"}), json!({"id": "b"}), json!({"id": "m"})];
        let remote = [
            json!({"id": "m"}),
            json!({"id": "b"}),
            json!({"id": 7}),
            json!({"id": "c"}),
        ];
        let merged = both(Some(&base), &local, &remote, Newer::Remote);
        assert_eq!(
            ids(&merged),
            [json!("m"), json!("b"), json!(7), json!("c"), json!("z")]
        );
    }

    #[test]
    fn added_on_both_sides_merges_with_no_base() {
        let local = [json!({"id": "a", "x": 1, "y": 1})];
        let remote = [json!({"id": "a", "x": 2})];
        let merged = both(None, &local, &remote, Newer::Remote);
        assert_eq!(merged, [json!({"id": "a", "x": 2, "y": 1})]);
    }

    #[test]
    fn one_side_unchanged_takes_the_other_as_is() {
        let base = [json!({"id": 1}), json!({"id": 2})];
        let remote = [json!({"id": 3}), json!({"id": 2})];
        assert_eq!(both(Some(&base), &base, &remote, Newer::Local), remote);
        assert_eq!(both(Some(&base), &remote, &remote, Newer::Local), remote);
    }

    #[test]
    fn elements_without_an_id_or_with_a_repeated_id_are_errors() {
        let good = [json!({"id": 1})];
        let err = union_by_id(None, &good, &[json!({"id": true})], "id", Newer::Local).unwrap_err();
        assert!(matches!(
            err,
            MergeError::MissingField {
                input: Input::Remote,
                index: 0,
                ..
            }
        ));
        let err = union_by_id(Some(&[json!(3)]), &good, &good, "id", Newer::Local).unwrap_err();
        assert!(matches!(
            err,
            MergeError::MissingField {
                input: Input::Base,
                ..
            }
        ));
        let twice = [json!({"id": "a"}), json!({"id": "a", "x": 1})];
        let err = union_by_id(None, &twice, &good, "id", Newer::Local).unwrap_err();
        assert!(matches!(
            err,
            MergeError::DuplicateId {
                input: Input::Local,
                ..
            }
        ));
        assert!(err.to_string().contains("\"a\""));
    }
}
