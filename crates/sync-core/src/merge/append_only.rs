//! The merge of append-only logs (a command history, an audit trail): the base, then every new
//! entry from either side, deduplicated and ordered.
//!
//! Must stay pure and symmetric: it has no [`Newer`](super::Newer) at all, so swapping `local`
//! and `remote` gives the same log.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::{Input, MergeError, Scalar};

/// Logs (command history): the base's entries, then the union of both sides' entries that are
/// not in base, deduplicated by `key_field`, ordered by `order_field` (a number or string, e.g. a
/// timestamp) then by key.
///
/// An entry is "in base" when the base holds its key. Base entries stay, in the base's order,
/// even if a side dropped them: a log only grows. Equal sides give that side as it is. When
/// both sides (or one side twice) hold a new key with different entries, the one with the
/// smallest order, then the smallest JSON text, is kept. `base` is `None` when both sides
/// created the key.
///
/// # Errors
///
/// [`MergeError::MissingField`] when an entry (of any input) is not an object with a string or
/// number `key_field` and `order_field`.
///
/// ```
/// use serde_json::json;
/// use sync_core::merge::append_only;
///
/// let base = [json!({"id": "a", "at": 1})];
/// let local = [json!({"id": "a", "at": 1}), json!({"id": "c", "at": 3})];
/// let remote = [json!({"id": "a", "at": 1}), json!({"id": "b", "at": 2})];
/// let merged = append_only(Some(&base), &local, &remote, "id", "at").unwrap();
/// let ids: Vec<_> = merged.iter().map(|e| e["id"].as_str().unwrap()).collect();
/// assert_eq!(ids, ["a", "b", "c"]);
/// ```
pub fn append_only(
    base: Option<&[Value]>,
    local: &[Value],
    remote: &[Value],
    key_field: &str,
    order_field: &str,
) -> Result<Vec<Value>, MergeError> {
    let fields = Fields {
        key: key_field,
        order: order_field,
    };
    let base_entries = fields.entries(base.unwrap_or_default(), Input::Base)?;
    let local_entries = fields.entries(local, Input::Local)?;
    let remote_entries = fields.entries(remote, Input::Remote)?;
    if local == remote {
        return Ok(local.to_vec());
    }
    let in_base: BTreeSet<&Scalar> = base_entries.iter().map(|e| &e.key).collect();
    // Per new key, the entry to keep: smallest (order, JSON text).
    let mut added: BTreeMap<&Scalar, (&Scalar, String, &Value)> = BTreeMap::new();
    for entry in local_entries.iter().chain(&remote_entries) {
        if in_base.contains(&entry.key) {
            continue;
        }
        let candidate = (&entry.order, entry.value.to_string(), entry.value);
        match added.get(&entry.key) {
            Some(kept) if (kept.0, &kept.1) <= (candidate.0, &candidate.1) => {}
            _ => {
                added.insert(&entry.key, candidate);
            }
        }
    }
    let mut new: Vec<_> = added
        .into_iter()
        .map(|(key, (order, _, value))| (order, key, value))
        .collect();
    new.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    let mut merged: Vec<Value> = base.unwrap_or_default().to_vec();
    merged.extend(new.into_iter().map(|(_, _, value)| value.clone()));
    Ok(merged)
}

/// The two fields every entry must carry.
struct Fields<'f> {
    key: &'f str,
    order: &'f str,
}

/// One log entry with its key and order read.
struct Entry<'a> {
    key: Scalar,
    order: Scalar,
    value: &'a Value,
}

impl Fields<'_> {
    fn entries<'a>(&self, items: &'a [Value], input: Input) -> Result<Vec<Entry<'a>>, MergeError> {
        items
            .iter()
            .enumerate()
            .map(|(index, value)| {
                let read = |field: &str| {
                    Scalar::field(value, field).ok_or_else(|| MergeError::MissingField {
                        input,
                        index,
                        field: field.to_owned(),
                    })
                };
                Ok(Entry {
                    key: read(self.key)?,
                    order: read(self.order)?,
                    value,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn both(b: Option<&[Value]>, l: &[Value], r: &[Value]) -> Vec<Value> {
        let a = append_only(b, l, r, "k", "t").unwrap();
        assert_eq!(a, append_only(b, r, l, "k", "t").unwrap(), "not symmetric");
        a
    }

    fn keys(values: &[Value]) -> Vec<Value> {
        values.iter().map(|v| v["k"].clone()).collect()
    }

    #[test]
    fn base_first_then_new_entries_by_order_then_key() {
        let base = [json!({"k": "z", "t": 9}), json!({"k": "a", "t": 1})];
        let local = [
            json!({"k": "z", "t": 9}),
            json!({"k": "a", "t": 1}),
            json!({"k": "y", "t": 5}),
            json!({"k": "b", "t": 5}),
        ];
        let remote = [
            json!({"k": "z", "t": 9}),
            json!({"k": "a", "t": 1}),
            json!({"k": "m", "t": 2}),
        ];
        let merged = both(Some(&base), &local, &remote);
        assert_eq!(
            keys(&merged),
            [json!("z"), json!("a"), json!("m"), json!("b"), json!("y")]
        );
    }

    #[test]
    fn entries_on_both_sides_appear_once_and_base_entries_stay() {
        let base = [json!({"k": 1, "t": "2024-01-01"})];
        let local = [json!({"k": 2, "t": "2024-01-02"})]; // dropped the base entry
        let remote = [
            json!({"k": 1, "t": "2024-01-01"}),
            json!({"k": 2, "t": "2024-01-02"}),
        ];
        let merged = both(Some(&base), &local, &remote);
        assert_eq!(keys(&merged), [json!(1), json!(2)]);
    }

    #[test]
    fn the_same_new_key_with_different_entries_keeps_one_deterministically() {
        let local = [json!({"k": "x", "t": 2, "v": "late"})];
        let remote = [
            json!({"k": "x", "t": 1, "v": "early"}),
            json!({"k": "x", "t": 1, "v": "a"}),
        ];
        let merged = both(None, &local, &remote);
        assert_eq!(merged, [json!({"k": "x", "t": 1, "v": "a"})]);
    }

    #[test]
    fn equal_sides_are_kept_as_they_are() {
        let base = [json!({"k": 1, "t": 1})];
        let v = [json!({"k": 3, "t": 3}), json!({"k": 2, "t": 2})];
        assert_eq!(both(Some(&base), &v, &v), v);
    }

    #[test]
    fn entries_missing_a_field_are_errors() {
        let ok = [json!({"k": 1, "t": 1})];
        let err = append_only(None, &ok, &[json!({"k": 2})], "k", "t").unwrap_err();
        assert!(
            matches!(err, MergeError::MissingField { input: Input::Remote, index: 0, ref field } if field == "t")
        );
        let err = append_only(Some(&[json!("x")]), &ok, &ok, "k", "t").unwrap_err();
        assert!(matches!(
            err,
            MergeError::MissingField {
                input: Input::Base,
                ..
            }
        ));
    }
}
