//! Item keys (docs/SPEC.md §1): the one validated name of an item.
//!
//! A [`Key`] is a relative `/`-separated path in Unicode NFC. Every key that enters the library,
//! from disk, from the network or from an app, goes through [`Key::new`] exactly once; everything
//! downstream can then trust it (no `..`, no absolute paths, no control characters).
//!
//! This module does no I/O and knows nothing about local paths: turning a path into a key is the
//! replica's job, and it must report paths that cannot become keys instead of renaming them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use unicode_normalization::UnicodeNormalization;

/// The most bytes one segment of a key may have.
pub const MAX_SEGMENT_BYTES: usize = 255;
/// The most bytes a whole key may have.
pub const MAX_KEY_BYTES: usize = 1024;
/// Segments a key may have at most (folders nested this deep, the item included): every
/// segment is a folder row on the server.
pub const MAX_KEY_DEPTH: usize = 64;

/// A validated item key: a relative path, NFC, segments joined by `/`.
///
/// Keys order by their bytes, so a folder sorts before everything inside it
/// (`a` < `a/b`), which the reconciler relies on to create parents first.
///
/// ```
/// use sync_core::Key;
/// let key = Key::new("docs/Cafe\u{301}.txt").unwrap(); // decomposed é
/// assert_eq!(key.as_str(), "docs/Caf\u{e9}.txt");     // stored as NFC
/// assert_eq!(key.file_name(), "Caf\u{e9}.txt");
/// assert_eq!(key.parent().unwrap().as_str(), "docs");
/// assert!(Key::new("../etc/passwd").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Key(String);

/// Bidirectional controls and zero-width characters: U+061C, U+180E, U+200B–U+200F,
/// U+202A–U+202E, U+2060–U+2064, U+2066–U+2069, U+FEFF.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{061C}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{2069}'
            | '\u{FEFF}'
    )
}

/// The rule of docs/SPEC.md §1 that a rejected key broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyRule {
    /// The key is the empty string.
    Empty,
    /// The key starts with `/` (keys are relative).
    LeadingSlash,
    /// Two `/` in a row, or a trailing `/`.
    EmptySegment,
    /// A segment is `.` or `..`.
    DotSegment,
    /// The key contains `\`.
    Backslash,
    /// The key contains a NUL byte.
    Nul,
    /// The key contains a control character other than NUL.
    ControlChar,
    /// The key contains a bidirectional control (such as U+202E, which shows `txt.exe` as
    /// `exe.txt`) or an invisible zero-width character: names that look like other names.
    Invisible,
    /// One segment is longer than [`MAX_SEGMENT_BYTES`].
    SegmentTooLong,
    /// The whole key is longer than [`MAX_KEY_BYTES`].
    TooLong,
    /// The key has more than [`MAX_KEY_DEPTH`] segments.
    TooDeep,
}

impl KeyRule {
    /// The rule in words, for error messages.
    pub fn describe(self) -> &'static str {
        match self {
            KeyRule::Empty => "a key must not be empty",
            KeyRule::LeadingSlash => "a key must be relative (no leading '/')",
            KeyRule::EmptySegment => {
                "a key must not have an empty segment ('//' or a trailing '/')"
            }
            KeyRule::DotSegment => "a key must not have a '.' or '..' segment",
            KeyRule::Backslash => "a key must not contain '\\' (use '/' between segments)",
            KeyRule::Nul => "a key must not contain a NUL character",
            KeyRule::ControlChar => "a key must not contain control characters",
            KeyRule::Invisible => {
                "a key must not contain bidirectional controls or zero-width characters (they \
                 make a name look like another); rename it"
            }
            KeyRule::SegmentTooLong => "a key segment must be at most 255 bytes",
            KeyRule::TooLong => "a key must be at most 1024 bytes",
            KeyRule::TooDeep => "a key must have at most 64 segments (folders nested 64 deep)",
        }
    }
}

/// A key was rejected: which key (escaped for display) and which rule it broke.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid key {key:?}: {}", rule.describe())]
pub struct KeyError {
    /// The rejected input, as given.
    pub key: String,
    /// The rule it broke.
    pub rule: KeyRule,
}

impl Key {
    /// Normalises `input` to NFC and validates it against every rule of docs/SPEC.md §1.
    pub fn new(input: impl AsRef<str>) -> Result<Key, KeyError> {
        let input = input.as_ref();
        let fail = |rule| KeyError {
            key: input.to_owned(),
            rule,
        };
        // ASCII is always NFC: skip the normalisation pass (most keys, and the hot path when
        // a state store loads hundreds of thousands of them).
        let nfc: String = if input.is_ascii() {
            input.to_owned()
        } else {
            input.nfc().collect()
        };
        if nfc.is_empty() {
            return Err(fail(KeyRule::Empty));
        }
        if nfc.starts_with('/') {
            return Err(fail(KeyRule::LeadingSlash));
        }
        for ch in nfc.chars() {
            match ch {
                '\0' => return Err(fail(KeyRule::Nul)),
                '\\' => return Err(fail(KeyRule::Backslash)),
                c if c.is_control() => return Err(fail(KeyRule::ControlChar)),
                c if is_invisible(c) => return Err(fail(KeyRule::Invisible)),
                _ => {}
            }
        }
        for (depth, segment) in nfc.split('/').enumerate() {
            if depth == MAX_KEY_DEPTH {
                return Err(fail(KeyRule::TooDeep));
            }
            if segment.is_empty() {
                return Err(fail(KeyRule::EmptySegment));
            }
            if segment == "." || segment == ".." {
                return Err(fail(KeyRule::DotSegment));
            }
            if segment.len() > MAX_SEGMENT_BYTES {
                return Err(fail(KeyRule::SegmentTooLong));
            }
        }
        if nfc.len() > MAX_KEY_BYTES {
            return Err(fail(KeyRule::TooLong));
        }
        Ok(Key(nfc))
    }

    /// The key as a string (NFC, `/`-separated).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The segments of the key, outermost first.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }

    /// The last segment: the item's own name.
    pub fn file_name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }

    /// The extension of the last segment including its dot (`".html"`), or `""` if none.
    /// A leading dot (`.profile`) is part of the name, not an extension.
    pub fn extension(&self) -> &str {
        let name = self.file_name();
        match name.rfind('.') {
            Some(0) | None => "",
            Some(i) => &name[i..],
        }
    }

    /// The folder that holds this item, or `None` at the top level.
    pub fn parent(&self) -> Option<Key> {
        self.0.rfind('/').map(|i| Key(self.0[..i].to_owned()))
    }

    /// Every folder above this key, outermost first (`a/b/c` gives `a`, `a/b`).
    pub fn ancestors(&self) -> Vec<Key> {
        self.0
            .match_indices('/')
            .map(|(i, _)| Key(self.0[..i].to_owned()))
            .collect()
    }

    /// The key of `name` inside this folder; `name` is validated like any key.
    pub fn join(&self, name: &str) -> Result<Key, KeyError> {
        Key::new(format!("{}/{}", self.0, name))
    }

    /// True when `self` is `other` or lies inside the folder `other`.
    pub fn starts_with(&self, other: &Key) -> bool {
        self.0 == other.0
            || (self.0.len() > other.0.len()
                && self.0.starts_with(&other.0)
                && self.0.as_bytes()[other.0.len()] == b'/')
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({:?})", self.0)
    }
}

impl FromStr for Key {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Key, KeyError> {
        Key::new(s)
    }
}

impl TryFrom<String> for Key {
    type Error = KeyError;
    fn try_from(s: String) -> Result<Key, KeyError> {
        Key::new(s)
    }
}

impl TryFrom<&str> for Key {
    type Error = KeyError;
    fn try_from(s: &str) -> Result<Key, KeyError> {
        Key::new(s)
    }
}

impl From<Key> for String {
    fn from(k: Key) -> String {
        k.0
    }
}

impl AsRef<str> for Key {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(s: &str) -> KeyRule {
        match Key::new(s) {
            Err(e) => e.rule,
            Ok(k) => panic!("{s:?} was accepted as {k:?}"),
        }
    }

    #[test]
    fn accepts_ordinary_paths() {
        for s in [
            "a",
            "a/b/c.txt",
            "Dossier/été.md",
            ".hidden",
            "a/.b",
            "x..y",
            "..a",
        ] {
            assert_eq!(Key::new(s).map(|k| k.0), Ok(s.to_owned()));
        }
    }

    #[test]
    fn rejects_every_rule_of_spec_1() {
        assert_eq!(rule(""), KeyRule::Empty);
        assert_eq!(rule("/etc/passwd"), KeyRule::LeadingSlash);
        assert_eq!(rule("a//b"), KeyRule::EmptySegment);
        assert_eq!(rule("a/"), KeyRule::EmptySegment);
        assert_eq!(rule("."), KeyRule::DotSegment);
        assert_eq!(rule("a/./b"), KeyRule::DotSegment);
        assert_eq!(rule(".."), KeyRule::DotSegment);
        assert_eq!(rule("a/../../b"), KeyRule::DotSegment);
        assert_eq!(rule("a\\b"), KeyRule::Backslash);
        assert_eq!(rule("..\\x"), KeyRule::Backslash);
        assert_eq!(rule("a\0b"), KeyRule::Nul);
        assert_eq!(rule("a\nb"), KeyRule::ControlChar);
        assert_eq!(rule("a\u{7f}"), KeyRule::ControlChar);
        assert_eq!(rule("a\u{85}"), KeyRule::ControlChar);
        // A right-to-left override shows "invoice\u{202E}fdp.exe" as "invoiceexe.pdf".
        assert_eq!(rule("invoice\u{202E}fdp.exe"), KeyRule::Invisible);
        assert_eq!(
            rule("a\u{200B}.txt"),
            KeyRule::Invisible,
            "zero-width space"
        );
        assert_eq!(rule("\u{FEFF}a.txt"), KeyRule::Invisible, "byte-order mark");
        assert_eq!(rule("a/\u{2066}b"), KeyRule::Invisible, "isolate");
        assert!(
            Key::new("caf\u{e9} \u{65e5}\u{672c}.txt").is_ok(),
            "visible non-ASCII is fine"
        );
        assert_eq!(rule(&"x".repeat(256)), KeyRule::SegmentTooLong);
        let long = vec!["y".repeat(200); 6].join("/");
        assert_eq!(rule(&long), KeyRule::TooLong);
    }

    #[test]
    fn limits_are_inclusive() {
        assert!(Key::new("x".repeat(255)).is_ok());
        let seg = |c: &str, n| c.repeat(n);
        let base = format!(
            "{}/{}/{}/{}",
            seg("a", 255),
            seg("b", 255),
            seg("c", 255),
            seg("d", 254)
        );
        assert_eq!(base.len(), 1022);
        assert!(
            Key::new(format!("{base}/e")).is_ok(),
            "1024 bytes is allowed"
        );
        assert_eq!(rule(&format!("{base}/ef")), KeyRule::TooLong);
    }

    #[test]
    fn segment_limit_counts_bytes_not_chars() {
        // 128 two-byte characters = 256 bytes.
        assert_eq!(rule(&"é".repeat(128)), KeyRule::SegmentTooLong);
        assert!(Key::new("é".repeat(127)).is_ok());
    }

    #[test]
    fn normalises_to_nfc_so_equal_names_are_equal_keys() {
        let decomposed = Key::new("cafe\u{301}").unwrap();
        let composed = Key::new("caf\u{e9}").unwrap();
        assert_eq!(decomposed, composed);
        assert_eq!(decomposed.as_str().len(), 5);
    }

    #[test]
    fn error_names_the_key_and_the_rule() {
        let e = Key::new("a/../b").unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("a/../b"), "{msg}");
        assert!(msg.contains("'..'"), "{msg}");
    }

    #[test]
    fn parents_sort_before_children() {
        let mut keys: Vec<Key> = ["a/b", "a-b", "a", "a/b/c", "a.b"]
            .iter()
            .map(|s| Key::new(s).unwrap())
            .collect();
        keys.sort();
        let pos = |s: &str| keys.iter().position(|k| k.as_str() == s).unwrap();
        assert!(pos("a") < pos("a/b"));
        assert!(pos("a/b") < pos("a/b/c"));
    }

    #[test]
    fn path_helpers() {
        let k = Key::new("a/b/page.html").unwrap();
        assert_eq!(k.file_name(), "page.html");
        assert_eq!(k.extension(), ".html");
        assert_eq!(Key::new(".profile").unwrap().extension(), "");
        assert_eq!(
            k.ancestors().iter().map(Key::as_str).collect::<Vec<_>>(),
            ["a", "a/b"]
        );
        assert_eq!(k.parent().unwrap().as_str(), "a/b");
        assert!(Key::new("top").unwrap().parent().is_none());
        assert!(k.starts_with(&Key::new("a/b").unwrap()));
        assert!(!Key::new("a/bc")
            .unwrap()
            .starts_with(&Key::new("a/b").unwrap()));
        assert_eq!(Key::new("a").unwrap().join("b").unwrap().as_str(), "a/b");
        assert!(Key::new("a").unwrap().join("..").is_err());
    }

    #[test]
    fn serde_validates() {
        let k: Key = serde_json::from_str("\"a/b\"").unwrap();
        assert_eq!(k.as_str(), "a/b");
        assert!(serde_json::from_str::<Key>("\"../x\"").is_err());
        assert_eq!(serde_json::to_string(&k).unwrap(), "\"a/b\"");
    }
}
