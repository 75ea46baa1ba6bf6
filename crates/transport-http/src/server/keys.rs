//! Keys in request paths: each `/`-separated segment is percent-decoded on its own, checked,
//! and the segments joined and validated once as a [`Key`] (docs/SPEC.md §1, docs/PROTOCOL.md "Basics").
//!
//! This must work on the raw (still encoded) path: decoding the whole path first would turn
//! `%2F` into a separator and `%2e%2e` into a `..` segment that a later check could miss.

use percent_encoding::percent_decode_str;
use sync_core::Key;

use super::errors::ApiError;

/// Decodes and validates the raw key part of a path (`docs/a%20b.txt` → `docs/a b.txt`).
pub(crate) fn decode_key(raw: &str) -> Result<Key, ApiError> {
    let shown = || raw.chars().take(200).collect::<String>();
    let mut segments = Vec::new();
    for seg in raw.split('/') {
        let bytes: Vec<u8> = percent_decode_str(seg).collect();
        let decoded = String::from_utf8(bytes).map_err(|_| {
            ApiError::invalid_key(format!(
                "invalid key {:?}: a segment is not UTF-8 after percent-decoding",
                shown()
            ))
        })?;
        if decoded.contains('/') {
            return Err(ApiError::invalid_key(format!(
                "invalid key {:?}: a segment contains an encoded '/' (%2F); send '/' only between segments",
                shown()
            )));
        }
        segments.push(decoded);
    }
    Key::new(segments.join("/")).map_err(|e| ApiError::invalid_key(e.to_string()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn decodes_per_segment() {
        assert_eq!(
            decode_key("docs/a%20b.txt").unwrap().as_str(),
            "docs/a b.txt"
        );
        assert_eq!(decode_key("caf%C3%A9").unwrap().as_str(), "caf\u{e9}");
        // decomposed é is normalised to NFC
        assert_eq!(decode_key("cafe%CC%81").unwrap().as_str(), "caf\u{e9}");
        assert_eq!(decode_key("100%25").unwrap().as_str(), "100%");
    }

    #[test]
    fn rejects_every_trick() {
        for bad in [
            "..",
            "a/..",
            "%2e%2e",
            "a/%2E%2E/b",
            ".",
            "%2e",
            "a%2Fb",
            "a%2fb",
            "a%5Cb",
            "a\\b",
            "a%00b",
            "a%0Ab",
            "a//b",
            "",
            "%FF",
            "/a",
            "a/",
        ] {
            let err = decode_key(bad).unwrap_err();
            assert_eq!(err.code, "invalid_key", "{bad}");
        }
    }
}
