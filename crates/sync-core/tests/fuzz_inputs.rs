//! Hostile input to the parsers of sync-core (docs/SPEC.md §1, §2): a proptest over
//! arbitrary strings and bytes for key parsing, cursor, stamp and content-hash decoding.
//!
//! - `Key::new` never panics on any string, or on any bytes read as (lossy) UTF-8; it accepts
//!   exactly the inputs whose NFC form obeys every rule of docs/SPEC.md §1, each rule checked here
//!   independently of `key.rs`; an accepted key is that NFC form, is accepted again unchanged
//!   (`Key::new(k.as_str()) == Ok(k)`), round-trips through JSON, and its parent and ancestors
//!   are valid keys; a rejection names a rule the input really breaks.
//! - `Cursor`, `Stamp` and `ContentHash` parsing (from strings and from JSON) never panics on
//!   any string; every value round-trips through its string and JSON forms; whatever parses
//!   prints back to a string that parses to the same value.
//!
//! Run: `cargo test -p sync-core --test fuzz_inputs` (2,500 cases per property by default;
//! `PROPTEST_CASES=100000` for a longer run).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use sync_core::{ContentHash, Cursor, Epoch, Key, KeyRule, NodeId, Revision, Stamp};
use unicode_normalization::{is_nfc, UnicodeNormalization};

/// Cases per property unless `PROPTEST_CASES` says otherwise.
fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_500);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

/// Every rule of docs/SPEC.md §1 that `s` (already NFC or not) breaks, checked from the spec's words.
fn broken_rules(s: &str) -> Vec<KeyRule> {
    let mut out = Vec::new();
    if s.is_empty() {
        out.push(KeyRule::Empty);
    }
    if s.starts_with('/') {
        out.push(KeyRule::LeadingSlash);
    }
    if s.contains('\\') {
        out.push(KeyRule::Backslash);
    }
    if s.contains('\0') {
        out.push(KeyRule::Nul);
    }
    if s.chars().any(|c| c != '\0' && c.is_control()) {
        out.push(KeyRule::ControlChar);
    }
    // Bidirectional controls and zero-width characters, as docs/SECURITY.md lists them.
    let invisible = |c: char| {
        matches!(c as u32, 0x061C | 0x180E | 0x200B..=0x200F | 0x202A..=0x202E
            | 0x2060..=0x2064 | 0x2066..=0x2069 | 0xFEFF)
    };
    if s.chars().any(invisible) {
        out.push(KeyRule::Invisible);
    }
    if s.split('/').count() > 64 {
        out.push(KeyRule::TooDeep);
    }
    if !s.is_empty() {
        let segments: Vec<&str> = s.split('/').collect();
        if segments.iter().any(|seg| seg.is_empty()) {
            out.push(KeyRule::EmptySegment);
        }
        if segments.iter().any(|seg| *seg == "." || *seg == "..") {
            out.push(KeyRule::DotSegment);
        }
        if segments.iter().any(|seg| seg.len() > 255) {
            out.push(KeyRule::SegmentTooLong);
        }
    }
    if s.len() > 1024 {
        out.push(KeyRule::TooLong);
    }
    out
}

/// The full check of one input to `Key::new`.
fn check_key_input(input: &str) -> Result<(), TestCaseError> {
    let nfc: String = input.nfc().collect();
    let broken = broken_rules(&nfc);
    match Key::new(input) {
        Ok(key) => {
            let s = key.as_str();
            prop_assert!(broken.is_empty(), "{input:?} accepted, breaks {broken:?}");
            prop_assert_eq!(s, nfc.as_str(), "a key is the NFC form of its input");
            // Every rule, once more, on the key itself.
            prop_assert!(is_nfc(s), "{s:?} is not NFC");
            prop_assert!(!s.is_empty() && !s.starts_with('/'));
            prop_assert!(!s.contains('\\') && !s.contains('\0'));
            prop_assert!(!s.chars().any(char::is_control), "{s:?} has a control char");
            for seg in s.split('/') {
                prop_assert!(!seg.is_empty() && seg != "." && seg != "..", "{s:?}");
                prop_assert!(seg.len() <= 255, "{s:?}: segment of {} bytes", seg.len());
            }
            prop_assert!(s.len() <= 1024, "{} bytes", s.len());
            // Idempotent, and the same through JSON.
            prop_assert_eq!(Key::new(s), Ok(key.clone()));
            let json = serde_json::to_string(&key).unwrap();
            prop_assert_eq!(serde_json::from_str::<Key>(&json).unwrap(), key.clone());
            // Its folders are keys too, and the helpers do not panic.
            for a in key.ancestors() {
                prop_assert_eq!(Key::new(a.as_str()), Ok(a.clone()));
                prop_assert!(key.starts_with(&a));
            }
            if let Some(p) = key.parent() {
                prop_assert_eq!(Key::new(p.as_str()), Ok(p));
            }
            let _ = (key.file_name(), key.extension(), key.segments().count());
        }
        Err(e) => {
            prop_assert!(
                !broken.is_empty(),
                "{input:?} rejected ({e}) but breaks no rule"
            );
            prop_assert!(
                broken.contains(&e.rule),
                "{input:?} rejected for {:?}, but breaks {broken:?}",
                e.rule
            );
            prop_assert_eq!(e.key.as_str(), input, "the error names the key as given");
            let _ = e.to_string();
        }
    }
    // Through JSON, the same decision.
    let json = serde_json::to_string(input).unwrap();
    prop_assert_eq!(
        serde_json::from_str::<Key>(&json).is_ok(),
        Key::new(input).is_ok()
    );
    Ok(())
}

/// Characters that matter to the key rules, plus ordinary ones.
fn key_char() -> impl Strategy<Value = char> {
    prop_oneof![
        6 => prop::sample::select(vec!['a', 'b', 'z', '0', '-', '_', ' ', '~']),
        3 => Just('/'),
        3 => Just('.'),
        1 => Just('\\'),
        1 => Just('\0'),
        1 => prop::sample::select(vec!['\u{1}', '\u{1f}', '\u{7f}', '\u{85}', '\u{9f}', '\n', '\t']),
        // Decomposed and precomposed forms: e + combining acute, é, Å/Å (U+212B), Hangul jamo.
        2 => prop::sample::select(vec!['e', '\u{301}', '\u{e9}', '\u{212b}', '\u{c5}', '\u{1100}', '\u{1161}', '\u{ac00}']),
        1 => prop::sample::select(vec!['\u{200b}', '\u{feff}', '\u{202e}', '\u{2066}', '\u{fffd}', '\u{10ffff}', '\u{1f600}']),
        1 => any::<char>(),
    ]
}

/// Path-like input near the rules' edges: segments of interesting characters, `.`/`..`, long
/// segments around 255 bytes (one- and two-byte characters), keys around 1024 bytes.
fn pathlike() -> impl Strategy<Value = String> {
    let segment = prop_oneof![
        6 => prop::collection::vec(key_char(), 0..12).prop_map(|cs| cs.into_iter().collect::<String>()),
        1 => Just(String::new()),
        1 => Just(".".to_owned()),
        1 => Just("..".to_owned()),
        1 => (250usize..260).prop_map(|n| "x".repeat(n)),
        1 => (124usize..131).prop_map(|n| "\u{e9}".repeat(n)),
        1 => (124usize..131).prop_map(|n| "e\u{301}".repeat(n / 2 + 60)),
    ];
    (
        any::<bool>(),
        prop::collection::vec(segment, 1..8),
        any::<bool>(),
    )
        .prop_map(|(lead, segs, trail)| {
            let mut s = segs.join("/");
            if lead {
                s.insert(0, '/');
            }
            if trail {
                s.push('/');
            }
            s
        })
}

/// Cursor-like strings: the right shape with wrong parts, and small mutations.
fn cursorlike() -> impl Strategy<Value = String> {
    prop_oneof![
        "c[0-9]\\.[0-9a-fA-Fg]{0,18}\\.[0-9a-fA-F+ -]{0,18}",
        "c1\\.[0-9a-f]{16}\\.[0-9a-f]{1,17}(\\.[0-9]{0,3})?",
        (any::<u64>(), any::<u64>(), any::<String>())
            .prop_map(|(e, r, junk)| format!("{}{junk}", Cursor::new(Epoch(e), Revision(r)))),
    ]
}

/// Stamp-like strings.
fn stamplike() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9+-]{0,22}\\.[0-9+-]{0,12}\\.[0-9a-fA-F]{0,18}",
        "[0-9]{1,21}\\.[0-9]{1,11}\\.[0-9a-fA-F]{16}(\\.[0-9]{0,2})?",
    ]
}

/// Hash-like strings.
fn hashlike() -> impl Strategy<Value = String> {
    prop_oneof!["[0-9a-fA-F]{62,66}", "[0-9a-f]{64}", "[0-9a-g ]{64}"]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn key_new_on_any_string_obeys_spec_1(input in any::<String>()) {
        check_key_input(&input)?;
    }

    #[test]
    fn key_new_on_any_bytes_obeys_spec_1(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        check_key_input(&String::from_utf8_lossy(&bytes))?;
    }

    #[test]
    fn key_new_on_pathlike_input_obeys_spec_1(input in pathlike()) {
        check_key_input(&input)?;
    }

    #[test]
    fn cursor_parsing_never_panics_and_round_trips(
        input in prop_oneof![any::<String>(), cursorlike()],
        epoch in any::<u64>(),
        rev in any::<u64>(),
    ) {
        if let Ok(c) = input.parse::<Cursor>() {
            prop_assert_eq!(c.to_string().parse::<Cursor>(), Ok(c));
        }
        let json = serde_json::to_string(&input).unwrap();
        prop_assert_eq!(serde_json::from_str::<Cursor>(&json).ok(), input.parse::<Cursor>().ok());
        let c = Cursor::new(Epoch(epoch), Revision(rev));
        prop_assert_eq!(c.to_string().parse::<Cursor>(), Ok(c));
        prop_assert_eq!(serde_json::from_str::<Cursor>(&serde_json::to_string(&c).unwrap()).unwrap(), c);
        prop_assert_eq!((c.epoch(), c.rev()), (Epoch(epoch), Revision(rev)));
    }

    #[test]
    fn stamp_parsing_never_panics_and_round_trips(
        input in prop_oneof![any::<String>(), stamplike()],
        millis in any::<u64>(),
        counter in any::<u32>(),
        node in any::<u64>(),
    ) {
        if let Ok(s) = input.parse::<Stamp>() {
            prop_assert_eq!(s.to_string().parse::<Stamp>(), Ok(s));
        }
        let json = serde_json::to_string(&input).unwrap();
        let _ = serde_json::from_str::<Stamp>(&json);
        let s = Stamp { millis, counter, node: NodeId(node) };
        prop_assert_eq!(s.to_string().parse::<Stamp>(), Ok(s));
        prop_assert_eq!(serde_json::from_str::<Stamp>(&serde_json::to_string(&s).unwrap()).unwrap(), s);
    }

    #[test]
    fn content_hash_parsing_never_panics_and_round_trips(
        input in prop_oneof![any::<String>(), hashlike()],
        bytes in any::<[u8; 32]>(),
    ) {
        if let Ok(h) = input.parse::<ContentHash>() {
            prop_assert_eq!(h.to_hex(), input.clone(), "only the canonical form parses");
            prop_assert_eq!(h.to_string().parse::<ContentHash>(), Ok(h));
        }
        let json = serde_json::to_string(&input).unwrap();
        prop_assert_eq!(
            serde_json::from_str::<ContentHash>(&json).ok(),
            input.parse::<ContentHash>().ok()
        );
        let h = ContentHash::from_bytes(bytes);
        prop_assert_eq!(h.to_hex().len(), 64);
        prop_assert_eq!(h.to_hex().parse::<ContentHash>(), Ok(h));
        prop_assert_eq!(
            serde_json::from_str::<ContentHash>(&serde_json::to_string(&h).unwrap()).unwrap(),
            h
        );
    }
}

/// Inputs a fuzzer would take long to find, checked every run.
#[test]
fn edge_cases_of_spec_1() {
    let long_seg = "x".repeat(255);
    let cases = [
        "",
        "/",
        "a//b",
        "a/",
        "./a",
        "a/..",
        "..",
        "a\\b",
        "a\0b",
        "a\u{7f}",
        "a\u{85}b",
        "e\u{301}",
        "\u{212b}",
        "\u{1100}\u{1161}",
        ".../a",
        "a/.b/..c",
        long_seg.as_str(),
    ];
    for c in cases {
        check_key_input(c).unwrap();
    }
    check_key_input(&format!("{long_seg}x")).unwrap();
    // 255 bytes made of 2-byte characters after NFC: 'e' + U+0301 composes to é.
    check_key_input(&"e\u{301}".repeat(127)).unwrap();
    check_key_input(&"e\u{301}".repeat(128)).unwrap();
    // Around 1024 bytes in all: 255 + 255 + 255 + 254 + 3 separators = 1022, then "/y".
    let (seg, short) = ("y".repeat(255), "y".repeat(254));
    let k1024 = format!("{seg}/{seg}/{seg}/{short}/y");
    assert_eq!(k1024.len(), 1024);
    check_key_input(&k1024).unwrap();
    check_key_input(&format!("{k1024}y")).unwrap();
    assert!(Key::new(format!("{k1024}y")).is_err());
    assert_eq!(Key::new(&k1024).unwrap().as_str().len(), 1024);
}
