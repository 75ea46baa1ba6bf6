//! Large upload bodies written to disk as they arrive ([`ServerOptions::spool_dir`]), so an
//! upload that is slow or stalls holds a buffer of memory, not its whole content.
//!
//! A body is written to an unnamed temporary file (owner-only, gone when closed, also after a
//! crash) in buffers of [`BUFFER`] bytes, hashed on the way, each write and hash on a blocking
//! thread. Once it has all arrived it goes to the store as a file
//! ([`sync_core::ServerStore::push_file`]): a store that keeps content in files copies it
//! without reading it into memory, another reads it in under the body budget
//! ([`super::limits::read_spooled`]). The limits are those of
//! [`super::limits`]: never read past `limit` bytes (413), never longer than `timeout` (408).
//! This module knows nothing of routes or stores.
//!
//! [`ServerOptions::spool_dir`]: super::ServerOptions::spool_dir

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::body::Body;
use http_body_util::BodyExt;
use sync_core::{ContentFile, ContentHash};

use super::errors::ApiError;
use super::limits::{body_timeout, too_large, unreadable_body};

/// Bodies declared longer than this (or declaring no length) are spooled when a spool folder
/// is set; shorter ones are read into memory as they are.
pub(crate) const SPOOL_OVER: u64 = 1024 * 1024;

/// The memory a spooling body holds at most: arrived bytes are written out in buffers of
/// this size.
pub(crate) const BUFFER: usize = 256 * 1024;

/// A body being written to its temporary file.
struct Spool {
    file: File,
    hasher: blake3::Hasher,
    dir: PathBuf,
}

impl Spool {
    fn write(&mut self, buf: &[u8]) -> Result<(), ApiError> {
        self.hasher.update(buf);
        self.file
            .write_all(buf)
            .map_err(|e| failed(&self.dir, "write", &e))
    }
}

fn failed(dir: &Path, what: &str, e: &std::io::Error) -> ApiError {
    tracing::error!(dir = %dir.display(), error = %e, "cannot {what} an upload's spool file");
    ApiError::new(
        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
        "storage",
        "the server could not keep the upload on its disk; try again later",
    )
}

/// Runs `f` on a blocking thread with the spool, and gives the spool back.
async fn blocking<T: Send + 'static>(
    spool: Spool,
    f: impl FnOnce(&mut Spool) -> Result<T, ApiError> + Send + 'static,
) -> Result<(Spool, T), ApiError> {
    let dir = spool.dir.clone();
    tokio::task::spawn_blocking(move || {
        let mut spool = spool;
        let value = f(&mut spool)?;
        Ok((spool, value))
    })
    .await
    .map_err(|e| failed(&dir, "write", &std::io::Error::other(e)))?
}

/// A body that has all arrived, in its temporary file.
pub(crate) struct Spooled {
    spool: Spool,
    len: u64,
    hash: ContentHash,
}

impl Spooled {
    /// The body's length in bytes.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// The body as content for [`sync_core::ServerStore::push_file`] (the temporary file goes
    /// with it).
    pub(crate) fn into_content(self) -> ContentFile {
        ContentFile::new(self.spool.file, self.len, self.hash)
    }
}

/// Writes `body` (at most `limit` bytes, within `timeout`) to a temporary file in `dir`,
/// hashing it on the way.
pub(crate) async fn spool_body(
    dir: &Path,
    body: Body,
    limit: u64,
    timeout: Duration,
) -> Result<Spooled, ApiError> {
    match tokio::time::timeout(timeout, spool(dir, body, limit)).await {
        Ok(spooled) => spooled,
        Err(_) => Err(body_timeout(timeout)),
    }
}

async fn spool(dir: &Path, body: Body, limit: u64) -> Result<Spooled, ApiError> {
    let owned = dir.to_path_buf();
    let file = tokio::task::spawn_blocking(move || tempfile::tempfile_in(&owned))
        .await
        .map_err(std::io::Error::other)
        .and_then(|made| made)
        .map_err(|e| failed(dir, "make", &e))?;
    let mut spool = Spool {
        file,
        hasher: blake3::Hasher::new(),
        dir: dir.to_path_buf(),
    };
    let mut body = body;
    let mut buf: Vec<u8> = Vec::with_capacity(BUFFER);
    let mut len: u64 = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(unreadable_body)?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers carry nothing we use
        };
        len = len.saturating_add(data.len() as u64);
        if len > limit {
            return Err(too_large(&format!("more than {limit}"), limit));
        }
        buf.extend_from_slice(&data);
        if buf.len() >= BUFFER {
            let full = std::mem::replace(&mut buf, Vec::with_capacity(BUFFER));
            (spool, ()) = blocking(spool, move |s| s.write(&full)).await?;
        }
    }
    let (spool, ()) = blocking(spool, move |s| s.write(&buf)).await?;
    let hash = ContentHash::from_blake3(spool.hasher.finalize());
    Ok(Spooled { spool, len, hash })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn body_of(chunks: Vec<Vec<u8>>) -> Body {
        let stream = futures::stream::iter(
            chunks
                .into_iter()
                .map(|c| Ok::<_, std::io::Error>(Bytes::from(c))),
        );
        Body::from_stream(stream)
    }

    #[tokio::test]
    async fn a_spooled_body_comes_back_whole_with_its_hash_and_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let content: Vec<u8> = (0..3 * BUFFER + 123).map(|i| (i % 251) as u8).collect();
        let chunks = content.chunks(10_000).map(<[u8]>::to_vec).collect();
        let spooled = spool_body(
            dir.path(),
            body_of(chunks),
            1 << 30,
            Duration::from_secs(30),
        )
        .await
        .unwrap();
        assert_eq!(spooled.len(), content.len() as u64);
        let file = spooled.into_content();
        assert_eq!(file.hash(), ContentHash::of(&content));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        assert_eq!(file.read().await.unwrap(), content);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_cut_with_413() {
        let dir = tempfile::tempdir().unwrap();
        let chunks = vec![vec![0u8; 1000]; 5];
        let err = spool_body(dir.path(), body_of(chunks), 4000, Duration::from_secs(30))
            .await
            .err()
            .unwrap();
        assert_eq!(err.status, axum::http::StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[tokio::test]
    async fn a_missing_spool_folder_is_a_storage_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let gone = dir.path().join("gone");
        let err = spool_body(
            &gone,
            body_of(vec![vec![1; 10]]),
            100,
            Duration::from_secs(30),
        )
        .await
        .err()
        .unwrap();
        assert_eq!(err.status, axum::http::StatusCode::INTERNAL_SERVER_ERROR);
    }
}
