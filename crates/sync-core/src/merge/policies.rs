//! The built-in merges as [`Merge`](crate::Merge) implementations, ready for
//! [`ConflictPolicy::Merge`](crate::ConflictPolicy::Merge): each turns a
//! [`MergeInput`] into the byte-level call of its merge, with the newer side taken from the
//! two stamps. This file only adapts; the merging is in the sibling files.

use crate::{Merge, MergeInput};

use super::{append_only_bytes, json_fields_bytes, text_lines_bytes, union_by_id_bytes, Newer};

/// Which side is newer, by the stamps of a merge input.
pub fn newer_of(input: &MergeInput<'_>) -> Newer {
    if input.local_is_newer() {
        Newer::Local
    } else {
        Newer::Remote
    }
}

/// [`json_fields`](super::json_fields) as a conflict policy: for settings and other JSON
/// objects.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonFields;

impl Merge for JsonFields {
    fn merge(&self, input: MergeInput<'_>) -> Result<Vec<u8>, String> {
        json_fields_bytes(input.base, input.local, input.remote, newer_of(&input))
            .map_err(|e| e.to_string())
    }
}

/// [`union_by_id`](super::union_by_id) as a conflict policy: for JSON arrays of objects with an
/// id field (profiles, todos, conversations).
#[derive(Debug, Clone)]
pub struct UnionById {
    /// The field that identifies an element (e.g. `"id"`).
    pub id_field: String,
}

impl UnionById {
    /// Elements identified by `id_field`.
    pub fn new(id_field: impl Into<String>) -> UnionById {
        UnionById {
            id_field: id_field.into(),
        }
    }
}

impl Merge for UnionById {
    fn merge(&self, input: MergeInput<'_>) -> Result<Vec<u8>, String> {
        union_by_id_bytes(
            input.base,
            input.local,
            input.remote,
            &self.id_field,
            newer_of(&input),
        )
        .map_err(|e| e.to_string())
    }
}

/// [`append_only`](super::append_only) as a conflict policy: for logs such as command history.
#[derive(Debug, Clone)]
pub struct AppendOnly {
    /// The field that makes two entries the same entry (deduplication).
    pub key_field: String,
    /// The field entries are ordered by (a number or string, e.g. a timestamp).
    pub order_field: String,
}

impl AppendOnly {
    /// Entries deduplicated by `key_field` and ordered by `order_field`.
    pub fn new(key_field: impl Into<String>, order_field: impl Into<String>) -> AppendOnly {
        AppendOnly {
            key_field: key_field.into(),
            order_field: order_field.into(),
        }
    }
}

impl Merge for AppendOnly {
    fn merge(&self, input: MergeInput<'_>) -> Result<Vec<u8>, String> {
        append_only_bytes(
            input.base,
            input.local,
            input.remote,
            &self.key_field,
            &self.order_field,
        )
        .map_err(|e| e.to_string())
    }
}

/// [`text_lines`](super::text_lines) as a conflict policy: for text files; overlapping edits
/// take the newer side whole (the other stays recoverable, as for every conflict).
#[derive(Debug, Clone, Copy, Default)]
pub struct TextLines;

impl Merge for TextLines {
    fn merge(&self, input: MergeInput<'_>) -> Result<Vec<u8>, String> {
        text_lines_bytes(input.base, input.local, input.remote, newer_of(&input))
            .map(|m| m.text.into_bytes())
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Key, NodeId, Stamp};

    fn input<'a>(
        base: Option<&'a [u8]>,
        local: &'a [u8],
        remote: &'a [u8],
        key: &'a Key,
    ) -> MergeInput<'a> {
        MergeInput {
            key,
            base,
            local,
            remote,
            local_stamp: Stamp::at(2, NodeId(1)),
            remote_stamp: Stamp::at(1, NodeId(2)),
        }
    }

    #[test]
    fn each_policy_merges_three_ways_and_reports_bad_input() {
        let key = Key::new("k").unwrap();
        let merged = UnionById::new("id")
            .merge(input(
                Some(br#"[{"id":1},{"id":2}]"#),
                br#"[{"id":1}]"#,
                br#"[{"id":1},{"id":2},{"id":3}]"#,
                &key,
            ))
            .unwrap();
        assert_eq!(merged, br#"[{"id":1},{"id":3}]"#);
        let merged = JsonFields
            .merge(input(
                Some(br#"{"a":1,"b":1}"#),
                br#"{"a":2,"b":1}"#,
                br#"{"a":1,"b":3}"#,
                &key,
            ))
            .unwrap();
        assert_eq!(merged, br#"{"a":2,"b":3}"#);
        let merged = TextLines
            .merge(input(Some(b"a\nb\n"), b"A\nb\n", b"a\nB\n", &key))
            .unwrap();
        assert_eq!(merged, b"A\nB\n");
        let merged = AppendOnly::new("k", "t")
            .merge(input(
                None,
                br#"[{"k":"x","t":1}]"#,
                br#"[{"k":"y","t":2}]"#,
                &key,
            ))
            .unwrap();
        assert_eq!(merged, br#"[{"k":"x","t":1},{"k":"y","t":2}]"#);
        assert!(JsonFields.merge(input(None, b"{", b"{}", &key)).is_err());
    }
}
