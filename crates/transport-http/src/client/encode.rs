//! Keys in request URLs: each segment percent-encoded on its own (docs/PROTOCOL.md "Basics"),
//! so `docs/a b.txt` travels as `docs/a%20b.txt` and a segment can never be read as a separator
//! or a dot segment.
//!
//! Only unreserved characters (RFC 3986: letters, digits, `-`, `.`, `_`, `~`) are left as they
//! are. A [`Key`] has no `.` or `..` segment, so nothing here can produce one.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sync_core::Key;

/// Everything but RFC 3986's unreserved characters.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The key as a URL path: segments percent-encoded, joined with `/`.
pub(crate) fn encode_key(key: &Key) -> String {
    key.segments()
        .map(|s| utf8_percent_encode(s, SEGMENT).to_string())
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn encodes_each_segment() {
        let k = |s: &str| encode_key(&Key::new(s).unwrap());
        assert_eq!(k("docs/a b.txt"), "docs/a%20b.txt");
        assert_eq!(k("caf\u{e9}/100%"), "caf%C3%A9/100%25");
        assert_eq!(k("a?b#c/d&e=f+g"), "a%3Fb%23c/d%26e%3Df%2Bg");
        assert_eq!(k("..a/.b./x~_-.y"), "..a/.b./x~_-.y");
    }

    #[test]
    #[cfg(feature = "server")]
    fn round_trips_through_the_server_decoder() {
        for s in [
            "docs/a b.txt",
            "caf\u{e9}/100%",
            "a?b#c/d&e=f+g",
            "\u{1F600}/ x /%2F",
        ] {
            let key = Key::new(s).unwrap();
            let back = crate::server::keys::decode_key(&encode_key(&key)).unwrap();
            assert_eq!(back, key, "{s}");
        }
    }
}
