//! Checking a pushed body against the size limit and its announced hash, and hashing large
//! bodies on a blocking thread so that an async worker thread is never busy hashing megabytes.
//!
//! This module must not keep content or decide anything else about a write.

use bytes::Bytes;

use crate::{ContentFile, ContentHash, Error, Key, Result};

/// Bodies larger than this are hashed on tokio's blocking pool; smaller ones in place, where
/// handing them to another thread would cost more than hashing them.
pub const HASH_OFF_THREAD_ABOVE: usize = 64 * 1024;

/// Checks `content` for `key`: first its size against `limit` ([`Error::TooLarge`]), then its
/// blake3 hash against `expected` ([`Error::HashMismatch`]). Hashes on the calling thread.
///
/// ```
/// use sync_core::server::check_content;
/// use sync_core::{ContentHash, Error, Key};
/// let key = Key::new("a.txt").unwrap();
/// assert!(check_content(&key, b"hi", &ContentHash::of(b"hi"), 10).is_ok());
/// assert!(matches!(check_content(&key, b"hi", &ContentHash::of(b"ho"), 10), Err(Error::HashMismatch { .. })));
/// assert!(matches!(check_content(&key, b"hi", &ContentHash::of(b"hi"), 1), Err(Error::TooLarge { .. })));
/// ```
pub fn check_content(key: &Key, content: &[u8], expected: &ContentHash, limit: u64) -> Result<()> {
    check_size(key, content.len(), limit)?;
    check_hash(key, *expected, ContentHash::of(content))
}

/// [`check_content`], hashing on a blocking thread when `content` is larger than
/// [`HASH_OFF_THREAD_ABOVE`]. The size is checked first, so an oversized body is never hashed.
pub async fn check_content_off_thread(
    key: &Key,
    content: &Bytes,
    expected: &ContentHash,
    limit: u64,
) -> Result<()> {
    check_size(key, content.len(), limit)?;
    check_hash(key, *expected, hash_off_thread(content).await?)
}

/// Checks content kept in a file for `key` as [`check_content`] checks content in memory:
/// its length against `limit` ([`Error::TooLarge`]), then its recorded hash against
/// `expected` ([`Error::HashMismatch`]). Reads nothing: the file's hash was computed by
/// whoever wrote it.
pub fn check_content_file(
    key: &Key,
    content: &ContentFile,
    expected: &ContentHash,
    limit: u64,
) -> Result<()> {
    if content.len() > limit {
        return Err(Error::TooLarge {
            key: key.clone(),
            size: content.len(),
            limit,
        });
    }
    check_hash(key, *expected, content.hash())
}

/// The blake3 hash of `content`, computed on a blocking thread when it is larger than
/// [`HASH_OFF_THREAD_ABOVE`]. Fails only when that thread could not run (the runtime is
/// shutting down), as a storage error.
pub async fn hash_off_thread(content: &Bytes) -> Result<ContentHash> {
    if content.len() <= HASH_OFF_THREAD_ABOVE {
        return Ok(ContentHash::of(content));
    }
    let shared = content.clone();
    tokio::task::spawn_blocking(move || ContentHash::of(&shared))
        .await
        .map_err(|e| {
            Error::storage(format!(
                "hashing {} bytes on a blocking thread failed ({e}); the server may be shutting down, try again",
                content.len()
            ))
        })
}

fn check_size(key: &Key, size: usize, limit: u64) -> Result<()> {
    let size = size as u64;
    if size > limit {
        return Err(Error::TooLarge {
            key: key.clone(),
            size,
            limit,
        });
    }
    Ok(())
}

fn check_hash(key: &Key, expected: ContentHash, actual: ContentHash) -> Result<()> {
    if actual != expected {
        return Err(Error::HashMismatch {
            key: key.clone(),
            expected,
            actual,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Key {
        Key::new("k").unwrap()
    }

    #[tokio::test]
    async fn large_bodies_are_checked_off_thread_with_the_same_result() {
        let big = Bytes::from(vec![7u8; HASH_OFF_THREAD_ABOVE * 2]);
        let hash = ContentHash::of(&big);
        assert_eq!(hash_off_thread(&big).await.unwrap(), hash);
        check_content_off_thread(&key(), &big, &hash, u64::MAX)
            .await
            .unwrap();
        let wrong = ContentHash::of(b"other");
        assert!(matches!(
            check_content_off_thread(&key(), &big, &wrong, u64::MAX).await,
            Err(Error::HashMismatch { .. })
        ));
    }

    #[tokio::test]
    async fn size_is_checked_before_the_hash() {
        let body = Bytes::from_static(b"12345");
        let wrong = ContentHash::of(b"other");
        assert!(matches!(
            check_content_off_thread(&key(), &body, &wrong, 4).await,
            Err(Error::TooLarge {
                size: 5,
                limit: 4,
                ..
            })
        ));
        assert!(matches!(
            check_content(&key(), &body, &wrong, 4),
            Err(Error::TooLarge { .. })
        ));
    }
}
