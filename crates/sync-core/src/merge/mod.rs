//! Built-in three-way merges of content: [`Newer`], [`MergeError`], and the byte-level entry
//! points an engine calls with the content both sides last agreed on (`base`), the local and the
//! remote content, and which side's edit is newer.
//!
//! Four merges live in their own files: [`json_fields`] (objects field by field),
//! [`union_by_id`] (arrays of objects keyed by an id), [`append_only`] (logs) and
//! [`text_lines`] (line-based text); `policies.rs` wraps each as a [`Merge`](crate::Merge)
//! ([`JsonFields`], [`UnionById`], [`AppendOnly`], [`TextLines`]). Every merge is symmetric: swapping `local` and `remote`
//! and flipping [`Newer`] gives the same result, so two devices that merge the same pair
//! converge.
//!
//! Architecture invariant: pure functions only. Nothing here does I/O, reads a clock, draws
//! randomness or calls app code; no `unwrap` on content, which is untrusted input.

mod append_only;
mod json_fields;
mod policies;
mod text_lines;
mod union_by_id;

use std::cmp::Ordering;
use std::fmt;

use serde_json::{Number, Value};

pub use append_only::append_only;
pub use json_fields::json_fields;
pub use policies::{newer_of, AppendOnly, JsonFields, TextLines, UnionById};
pub use text_lines::{text_lines, TextMerge};
pub use union_by_id::union_by_id;

/// Which side's edit is newer (by stamp); decides where both sides changed the same thing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Newer {
    /// The local edit is newer.
    Local,
    /// The remote edit is newer.
    Remote,
}

impl Newer {
    /// The other side: what `newer` is when `local` and `remote` swap places.
    ///
    /// ```
    /// use sync_core::merge::Newer;
    /// assert_eq!(Newer::Local.flip(), Newer::Remote);
    /// assert_eq!(Newer::Remote.flip(), Newer::Local);
    /// ```
    #[must_use]
    pub fn flip(self) -> Newer {
        match self {
            Newer::Local => Newer::Remote,
            Newer::Remote => Newer::Local,
        }
    }

    /// `local` or `remote`, whichever is newer.
    pub(crate) fn pick<'a, T: ?Sized>(self, local: &'a T, remote: &'a T) -> &'a T {
        match self {
            Newer::Local => local,
            Newer::Remote => remote,
        }
    }
}

/// Which of the three inputs of a merge an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Input {
    /// The content both sides last agreed on.
    Base,
    /// The local content.
    Local,
    /// The remote content.
    Remote,
}

impl fmt::Display for Input {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Input::Base => "base",
            Input::Local => "local",
            Input::Remote => "remote",
        })
    }
}

/// Why a built-in merge could not run; the engine then falls back to the newer side.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    /// An input is not valid JSON.
    #[error(
        "the {input} content is not valid JSON ({source}); fix or replace that version, or \
         configure a merge that does not parse JSON for this key"
    )]
    InvalidJson {
        /// Which input.
        input: Input,
        /// What the parser said.
        source: serde_json::Error,
    },
    /// An input is not valid UTF-8 text.
    #[error(
        "the {input} content is not UTF-8 text ({source}); merge binary files with a \
         non-text merge, or let the newer side win"
    )]
    InvalidUtf8 {
        /// Which input.
        input: Input,
        /// Where the decoding failed.
        source: std::str::Utf8Error,
    },
    /// An input is JSON but not a top-level array.
    #[error(
        "the {input} content is not a JSON array; union_by_id and append_only need a \
         top-level array, use json_fields for objects"
    )]
    NotAnArray {
        /// Which input.
        input: Input,
    },
    /// An array element lacks a usable id, key or order field.
    #[error(
        "element {index} of the {input} array has no string or number field {field:?}; give \
         every element that field, or choose the field the elements do carry"
    )]
    MissingField {
        /// Which input.
        input: Input,
        /// The element's position in that array.
        index: usize,
        /// The field that is missing (or not a string or number).
        field: String,
    },
    /// Two elements of one array carry the same id.
    #[error(
        "the {input} array holds id {id} twice in field {field:?}; ids must be unique within \
         one array, so fix the duplicates or merge this key with json_fields"
    )]
    DuplicateId {
        /// Which input.
        input: Input,
        /// The repeated id, as JSON.
        id: String,
        /// The id field.
        field: String,
    },
    /// The merged value could not be serialised.
    #[error("the merged value could not be serialised as JSON ({0}); report this as a bug")]
    Serialize(#[source] serde_json::Error),
}

/// [`json_fields`] on raw bytes: parses the three inputs as JSON, merges, serialises with
/// `serde_json::to_vec`.
///
/// ```
/// use sync_core::merge::{json_fields_bytes, Newer};
/// let merged = json_fields_bytes(
///     Some(br#"{"a":1,"b":1}"#),
///     br#"{"a":2,"b":1}"#,
///     br#"{"a":1,"b":3}"#,
///     Newer::Local,
/// )
/// .unwrap();
/// assert_eq!(merged, br#"{"a":2,"b":3}"#);
/// assert!(json_fields_bytes(None, b"{", b"{}", Newer::Local).is_err());
/// ```
pub fn json_fields_bytes(
    base: Option<&[u8]>,
    local: &[u8],
    remote: &[u8],
    newer: Newer,
) -> Result<Vec<u8>, MergeError> {
    let base = base.map(|b| parse_json(b, Input::Base)).transpose()?;
    let local = parse_json(local, Input::Local)?;
    let remote = parse_json(remote, Input::Remote)?;
    to_bytes(&json_fields(base.as_ref(), &local, &remote, newer))
}

/// [`union_by_id`] on raw bytes: each input must be a top-level JSON array.
///
/// ```
/// use sync_core::merge::{union_by_id_bytes, Newer};
/// let merged = union_by_id_bytes(
///     Some(br#"[{"id":"a"},{"id":"b"}]"#),
///     br#"[{"id":"a"}]"#,
///     br#"[{"id":"a"},{"id":"b"},{"id":"c"}]"#,
///     "id",
///     Newer::Remote,
/// )
/// .unwrap();
/// assert_eq!(merged, br#"[{"id":"a"},{"id":"c"}]"#);
/// ```
pub fn union_by_id_bytes(
    base: Option<&[u8]>,
    local: &[u8],
    remote: &[u8],
    id_field: &str,
    newer: Newer,
) -> Result<Vec<u8>, MergeError> {
    let base = base.map(|b| parse_array(b, Input::Base)).transpose()?;
    let local = parse_array(local, Input::Local)?;
    let remote = parse_array(remote, Input::Remote)?;
    let merged = union_by_id(base.as_deref(), &local, &remote, id_field, newer)?;
    to_bytes(&Value::Array(merged))
}

/// [`append_only`] on raw bytes: each input must be a top-level JSON array.
///
/// ```
/// use sync_core::merge::append_only_bytes;
/// let merged = append_only_bytes(
///     Some(br#"[{"k":"1","t":1}]"#),
///     br#"[{"k":"1","t":1},{"k":"3","t":3}]"#,
///     br#"[{"k":"1","t":1},{"k":"2","t":2}]"#,
///     "k",
///     "t",
/// )
/// .unwrap();
/// assert_eq!(merged, br#"[{"k":"1","t":1},{"k":"2","t":2},{"k":"3","t":3}]"#);
/// ```
pub fn append_only_bytes(
    base: Option<&[u8]>,
    local: &[u8],
    remote: &[u8],
    key_field: &str,
    order_field: &str,
) -> Result<Vec<u8>, MergeError> {
    let base = base.map(|b| parse_array(b, Input::Base)).transpose()?;
    let local = parse_array(local, Input::Local)?;
    let remote = parse_array(remote, Input::Remote)?;
    let merged = append_only(base.as_deref(), &local, &remote, key_field, order_field)?;
    to_bytes(&Value::Array(merged))
}

/// [`text_lines`] on raw bytes: each input must be UTF-8. The merged text is
/// `TextMerge::text` (`.into_bytes()` for the bytes); `fell_back` says whether the newer side
/// won whole.
///
/// ```
/// use sync_core::merge::{text_lines_bytes, Newer};
/// let merged = text_lines_bytes(Some(b"a\nb\nc\n"), b"A\nb\nc\n", b"a\nb\nC\n", Newer::Local)
///     .unwrap();
/// assert_eq!(merged.text, "A\nb\nC\n");
/// assert!(!merged.fell_back);
/// assert!(text_lines_bytes(None, &[0xff], b"", Newer::Local).is_err());
/// ```
pub fn text_lines_bytes(
    base: Option<&[u8]>,
    local: &[u8],
    remote: &[u8],
    newer: Newer,
) -> Result<TextMerge, MergeError> {
    let base = base.map(|b| parse_utf8(b, Input::Base)).transpose()?;
    let local = parse_utf8(local, Input::Local)?;
    let remote = parse_utf8(remote, Input::Remote)?;
    Ok(text_lines(base, local, remote, newer))
}

fn parse_json(bytes: &[u8], input: Input) -> Result<Value, MergeError> {
    serde_json::from_slice(bytes).map_err(|source| MergeError::InvalidJson { input, source })
}

fn parse_array(bytes: &[u8], input: Input) -> Result<Vec<Value>, MergeError> {
    match parse_json(bytes, input)? {
        Value::Array(items) => Ok(items),
        _ => Err(MergeError::NotAnArray { input }),
    }
}

fn parse_utf8(bytes: &[u8], input: Input) -> Result<&str, MergeError> {
    std::str::from_utf8(bytes).map_err(|source| MergeError::InvalidUtf8 { input, source })
}

fn to_bytes(value: &Value) -> Result<Vec<u8>, MergeError> {
    serde_json::to_vec(value).map_err(MergeError::Serialize)
}

/// A string or number field used as an id, key or order, with a total order: numbers (by
/// value, then by their JSON text) before strings (by bytes).
#[derive(Debug, Clone)]
pub(crate) enum Scalar {
    Number(Number),
    String(String),
}

impl Scalar {
    /// The string or number field `field` of `element`, if it is an object that has one.
    pub(crate) fn field(element: &Value, field: &str) -> Option<Scalar> {
        match element.get(field)? {
            Value::Number(n) => Some(Scalar::Number(n.clone())),
            Value::String(s) => Some(Scalar::String(s.clone())),
            _ => None,
        }
    }

    /// The field as JSON text, for error messages.
    pub(crate) fn to_json(&self) -> String {
        match self {
            Scalar::Number(n) => n.to_string(),
            Scalar::String(s) => Value::String(s.clone()).to_string(),
        }
    }
}

impl Ord for Scalar {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Scalar::Number(a), Scalar::Number(b)) => {
                let (x, y) = (
                    a.as_f64().unwrap_or(f64::NAN),
                    b.as_f64().unwrap_or(f64::NAN),
                );
                x.total_cmp(&y)
                    .then_with(|| a.to_string().cmp(&b.to_string()))
            }
            (Scalar::Number(_), Scalar::String(_)) => Ordering::Less,
            (Scalar::String(_), Scalar::Number(_)) => Ordering::Greater,
            (Scalar::String(a), Scalar::String(b)) => a.cmp(b),
        }
    }
}

impl PartialOrd for Scalar {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Scalar {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Scalar {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flip_is_an_involution() {
        assert_eq!(Newer::Local.flip().flip(), Newer::Local);
        assert_eq!(Newer::Local.pick("l", "r"), "l");
        assert_eq!(Newer::Remote.pick("l", "r"), "r");
    }

    #[test]
    fn scalars_order_numbers_before_strings() {
        let n = |v: Value| Scalar::field(&serde_json::json!({ "id": v }), "id").unwrap();
        assert!(n(2.into()) < n(10.into()));
        assert!(n(10.into()) < n("1".into()));
        assert!(n("a".into()) < n("b".into()));
        assert_ne!(n(1.into()), n(serde_json::json!(1.0)));
        assert_eq!(n("x".into()), n("x".into()));
        assert!(Scalar::field(&serde_json::json!({ "id": true }), "id").is_none());
        assert!(Scalar::field(&serde_json::json!([1]), "id").is_none());
    }

    #[test]
    fn byte_entry_points_name_the_bad_input() {
        let err = union_by_id_bytes(None, b"[]", b"{}", "id", Newer::Local).unwrap_err();
        assert!(matches!(
            err,
            MergeError::NotAnArray {
                input: Input::Remote
            }
        ));
        assert!(err.to_string().contains("remote"));
        let err = append_only_bytes(Some(b"nope"), b"[]", b"[]", "k", "t").unwrap_err();
        assert!(matches!(
            err,
            MergeError::InvalidJson {
                input: Input::Base,
                ..
            }
        ));
        let err = text_lines_bytes(None, b"ok", &[0xc3], Newer::Local).unwrap_err();
        assert!(matches!(
            err,
            MergeError::InvalidUtf8 {
                input: Input::Remote,
                ..
            }
        ));
    }
}
