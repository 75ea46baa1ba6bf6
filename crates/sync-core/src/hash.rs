//! Content hashes: blake3 over an item's bytes, lower-case hex on the wire (docs/SPEC.md §1).
//!
//! Hashing reads from any `std::io::Read` in fixed-size chunks, so a caller can hash a large file
//! without holding it in memory. This module opens no files itself.

use std::fmt;
use std::io::Read;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The blake3 hash of an item's content.
///
/// ```
/// use sync_core::ContentHash;
/// let h = ContentHash::of(b"hello");
/// let hex = h.to_hex();
/// assert_eq!(hex.len(), 64);
/// assert_eq!(hex.parse::<ContentHash>().unwrap(), h);
/// assert_eq!(ContentHash::from_reader(&b"hello"[..]).unwrap(), h);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ContentHash([u8; 32]);

/// A string that is not 64 lower-case hex characters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid content hash {input:?}: expected 64 lower-case hex characters (a blake3 hash)")]
pub struct HashParseError {
    /// The rejected input (cut to 80 characters).
    pub input: String,
}

impl ContentHash {
    /// Hashes a byte slice.
    pub fn of(bytes: &[u8]) -> ContentHash {
        ContentHash(*blake3::hash(bytes).as_bytes())
    }

    /// Hashes everything `reader` yields, 64 KiB at a time.
    pub fn from_reader<R: Read>(mut reader: R) -> std::io::Result<ContentHash> {
        let mut hasher = blake3::Hasher::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    hasher.update(&buf[..n]);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(ContentHash(*hasher.finalize().as_bytes()))
    }

    /// Wraps a finished blake3 hash (for callers that hash incrementally themselves).
    pub fn from_blake3(hash: blake3::Hash) -> ContentHash {
        ContentHash(*hash.as_bytes())
    }

    /// The hash's 32 raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Builds a hash from its 32 raw bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> ContentHash {
        ContentHash(bytes)
    }

    /// Lower-case hex, 64 characters.
    pub fn to_hex(&self) -> String {
        blake3::Hash::from_bytes(self.0).to_hex().to_string()
    }

    /// The first 8 hex characters, for file names of backups and for logs.
    pub fn short(&self) -> String {
        let mut s = self.to_hex();
        s.truncate(8);
        s
    }
}

impl FromStr for ContentHash {
    type Err = HashParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok = s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        let err = || HashParseError {
            input: s.chars().take(80).collect(),
        };
        if !ok {
            return Err(err());
        }
        blake3::Hash::from_hex(s)
            .map(|h| ContentHash(*h.as_bytes()))
            .map_err(|_| err())
    }
}

impl TryFrom<String> for ContentHash {
    type Error = HashParseError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<ContentHash> for String {
    fn from(h: ContentHash) -> String {
        h.to_hex()
    }
}

impl fmt::Display for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentHash({})", self.short())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vector() {
        // blake3("") from the reference implementation.
        assert_eq!(
            ContentHash::of(b"").to_hex(),
            "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
        );
    }

    #[test]
    fn streaming_equals_one_shot_across_chunk_boundaries() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        assert_eq!(
            ContentHash::from_reader(&data[..]).unwrap(),
            ContentHash::of(&data)
        );
    }

    #[test]
    fn hex_round_trip_and_rejects_bad_input() {
        let h = ContentHash::of(b"x");
        assert_eq!(h.to_hex().parse::<ContentHash>().unwrap(), h);
        assert!(h.to_hex().to_uppercase().parse::<ContentHash>().is_err());
        assert!("abc".parse::<ContentHash>().is_err());
        assert!("g".repeat(64).parse::<ContentHash>().is_err());
        let e = "zz".parse::<ContentHash>().unwrap_err().to_string();
        assert!(e.contains("64 lower-case hex"), "{e}");
    }

    #[test]
    fn serde_is_hex_string() {
        let h = ContentHash::of(b"x");
        let json = serde_json::to_string(&h).unwrap();
        assert_eq!(json, format!("\"{}\"", h.to_hex()));
        assert_eq!(serde_json::from_str::<ContentHash>(&json).unwrap(), h);
    }
}
