//! Content-addressed blobs of the server store, deduplicated by hash (across tenants: a write
//! of content already stored does the same file work as a new one, so its timing says
//! nothing about other tenants).
//!
//! Content up to [`INLINE_MAX`] bytes lives in the `blobs` table. Larger content lives in a
//! file `<db file name>.blobs/<first two hex digits>/<hex hash>` beside the database, with a
//! `blobs` row whose `data` is NULL. A file is written to a temporary file in its final
//! folder, fsynced and renamed into place (and the folder fsynced) *before* the transaction
//! that adds its row commits, so a committed row never points at a missing or partial file.
//! A crash in between leaves at most an unreferenced file, which the next write of the same
//! content reuses. Files are never changed once in place, so they can be read without holding
//! the database lock.
//!
//! With retention on, a write that drops versions also drops the blobs no version (of any
//! tenant: blobs are shared) refers to any more ([`drop_unreferenced`]): their rows go in the
//! write's transaction, their files only after it commits ([`remove_files`], still inside the
//! same connection call, so no other write of this store runs in between). A crash between
//! the commit and the removal leaves an unreferenced file, as above. A read of a version being
//! dropped at that moment may find its file gone and fail as a damaged blob; a version that
//! stays is never affected.
//!
//! Everything here is blocking I/O: call it only from [`crate::conn::Db::call`] or another
//! blocking thread. This module does not verify request hashes; the server does that before
//! it stores anything.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use rusqlite::{params, Connection, OptionalExtension};
use sync_core::ContentHash;

use crate::error::StoreError;
use crate::schema::{hash_to_sql, u64_from_sql, u64_to_sql};

/// The largest content kept inside the database; larger content goes to a file.
pub const INLINE_MAX: usize = 64 * 1024;

/// Where a blob's bytes are.
#[derive(Debug)]
pub(crate) enum BlobData {
    /// In the database (read already).
    Inline(Bytes),
    /// In a file beside the database, of this size.
    File(PathBuf, u64),
}

/// The folder for large blobs beside the database file `db`: `<db file name>.blobs`.
pub(crate) fn blob_dir_for(db: &Path) -> PathBuf {
    let mut name = db
        .file_name()
        .map(std::ffi::OsStr::to_os_string)
        .unwrap_or_else(|| "server.db".into());
    name.push(".blobs");
    db.with_file_name(name)
}

/// The file of a large blob inside `dir`.
pub(crate) fn blob_path(dir: &Path, hash: &ContentHash) -> PathBuf {
    let hex = hash.to_hex();
    dir.join(&hex[..2]).join(hex)
}

/// Stores `content` (whose hash the caller has verified) unless a blob with its hash exists.
/// Large content goes to a file in `dir` when there is one (a file-backed database).
pub(crate) fn put(
    conn: &Connection,
    dir: Option<&Path>,
    hash: &ContentHash,
    content: &[u8],
) -> Result<(), StoreError> {
    let size = u64_to_sql(content.len() as u64);
    let as_file = dir.filter(|_| content.len() > INLINE_MAX);
    let Some(dir) = as_file else {
        // Inline: one statement, which does nothing when the blob is there.
        conn.prepare_cached(
            "INSERT INTO blobs (hash, size, data) VALUES (?1, ?2, ?3) ON CONFLICT (hash) DO NOTHING",
        )?
        .execute(params![hash_to_sql(Some(hash)), size, content])?;
        return Ok(());
    };
    let exists: Option<i64> = conn
        .prepare_cached("SELECT 1 FROM blobs WHERE hash = ?1")?
        .query_row([hash.as_bytes().as_slice()], |r| r.get(0))
        .optional()?;
    if exists.is_some() {
        // The same work as for new content (a temporary file written, fsynced, removed), so
        // how long an upload takes does not tell a tenant that another one holds this content.
        rehearse(dir, hash, content)?;
        return Ok(());
    }
    write_file(dir, hash, content)?;
    conn.prepare_cached("INSERT INTO blobs (hash, size, data) VALUES (?1, ?2, NULL)")?
        .execute(params![hash_to_sql(Some(hash)), size])?;
    Ok(())
}

/// Deletes the blob rows of `hashes` that no version refers to any more (one statement each,
/// an index probe on `versions_by_hash`), inside the caller's transaction. Returns the files of those that
/// lived in `dir`: remove them with [`remove_files`] once the transaction has committed.
pub(crate) fn drop_unreferenced(
    conn: &Connection,
    dir: Option<&Path>,
    hashes: &[ContentHash],
) -> Result<Vec<PathBuf>, StoreError> {
    let mut files = Vec::new();
    for hash in hashes {
        let inline: Option<bool> = conn
            .prepare_cached(
                "DELETE FROM blobs WHERE hash = ?1 \
                 AND NOT EXISTS (SELECT 1 FROM versions WHERE hash = ?1) \
                 RETURNING data IS NOT NULL",
            )?
            .query_row([hash.as_bytes().as_slice()], |r| r.get(0))
            .optional()?;
        if let (Some(false), Some(dir)) = (inline, dir) {
            files.push(blob_path(dir, hash));
        }
    }
    Ok(files)
}

/// Removes the files of blobs whose rows are gone (committed). A file that is not there is
/// fine; one that cannot be removed is logged and left (it is only unreferenced space).
pub(crate) fn remove_files(files: &[PathBuf]) {
    for path in files {
        match fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(
                path = %path.display(),
                error = %e,
                "cannot remove the file of a dropped blob; it stays as unreferenced space"
            ),
        }
    }
}

/// Where the bytes of `hash` are; a missing row is [`StoreError::BlobDamaged`].
pub(crate) fn locate(
    conn: &Connection,
    dir: Option<&Path>,
    hash: &ContentHash,
) -> Result<BlobData, StoreError> {
    let row: Option<(i64, Option<Vec<u8>>)> = conn
        .prepare_cached("SELECT size, data FROM blobs WHERE hash = ?1")?
        .query_row([hash.as_bytes().as_slice()], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    match row {
        None => Err(StoreError::BlobDamaged {
            hash: hash.to_hex(),
            detail: "no blob row".into(),
        }),
        Some((_, Some(data))) => Ok(BlobData::Inline(Bytes::from(data))),
        Some((size, None)) => match dir {
            Some(dir) => Ok(BlobData::File(blob_path(dir, hash), u64_from_sql(size))),
            None => Err(StoreError::BlobDamaged {
                hash: hash.to_hex(),
                detail: "stored as a file, but this database has no blob folder".into(),
            }),
        },
    }
}

/// Opens a blob file for reading after checking what can be checked before reading it: a
/// regular file (not a symlink, pipe or device in its place) of the recorded `size`, which is
/// within `limit`.
fn open_checked(
    path: &Path,
    hash: &ContentHash,
    size: u64,
    limit: u64,
) -> Result<fs::File, StoreError> {
    let damaged = |detail: String| damaged(hash, detail);
    if size > limit {
        return Err(damaged(format!(
            "{} is recorded as {size} bytes, over the store's limit of {limit} bytes; raise the \
             limit to read it",
            path.display()
        )));
    }
    let file =
        open_blob(path).map_err(|e| damaged(format!("cannot read {}: {e}", path.display())))?;
    let meta = file
        .metadata()
        .map_err(|e| damaged(format!("cannot read {}: {e}", path.display())))?;
    if !meta.is_file() {
        return Err(damaged(format!(
            "{} is not a regular file (a pipe or a device in its place)",
            path.display()
        )));
    }
    if meta.len() != size {
        return Err(damaged(format!(
            "{} has {} bytes, not the {size} recorded",
            path.display(),
            meta.len()
        )));
    }
    Ok(file)
}

fn damaged(hash: &ContentHash, detail: String) -> StoreError {
    StoreError::BlobDamaged {
        hash: hash.to_hex(),
        detail,
    }
}

/// Reads a blob file and checks it against its hash and size.
pub(crate) fn read_file(
    path: &Path,
    hash: &ContentHash,
    size: u64,
    limit: u64,
) -> Result<Bytes, StoreError> {
    let file = open_checked(path, hash, size, limit)?;
    // Never more than the recorded size (plus one byte, to see a file that grows).
    let mut data = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    file.take(size.saturating_add(1))
        .read_to_end(&mut data)
        .map_err(|e| damaged(hash, format!("cannot read {}: {e}", path.display())))?;
    if data.len() as u64 != size || ContentHash::of(&data) != *hash {
        return Err(damaged(
            hash,
            format!("{} does not match its hash", path.display()),
        ));
    }
    Ok(Bytes::from(data))
}

/// The size of the chunks [`BlobReader`] reads.
pub(crate) const CHUNK: usize = 256 * 1024;

/// A blob file read a chunk at a time, checked against its size and hash as it goes: the
/// chunk that ends the content is only given out once the whole content matched, so a
/// damaged file ends the stream with an error instead of a complete-looking answer.
pub(crate) struct BlobReader {
    file: fs::File,
    path: PathBuf,
    hash: ContentHash,
    hasher: blake3::Hasher,
    left: u64,
}

impl BlobReader {
    /// Opens the blob file at `path` (checked as [`read_file`] checks it) for reading.
    pub(crate) fn open(
        path: PathBuf,
        hash: ContentHash,
        size: u64,
        limit: u64,
    ) -> Result<BlobReader, StoreError> {
        let file = open_checked(&path, &hash, size, limit)?;
        Ok(BlobReader {
            file,
            path,
            hash,
            hasher: blake3::Hasher::new(),
            left: size,
        })
    }

    /// Whether the whole content has been given out.
    pub(crate) fn done(&self) -> bool {
        self.left == 0
    }

    /// The next chunk (blocking I/O and hashing; call it on a blocking thread).
    pub(crate) fn next_chunk(&mut self) -> std::io::Result<Bytes> {
        let n = usize::try_from(self.left.min(CHUNK as u64)).unwrap_or(CHUNK);
        let mut chunk = vec![0u8; n];
        let failed = |what: String| std::io::Error::other(damaged(&self.hash, what));
        self.file
            .read_exact(&mut chunk)
            .map_err(|e| failed(format!("cannot read {}: {e}", self.path.display())))?;
        self.hasher.update(&chunk);
        self.left -= n as u64;
        if self.left == 0 {
            let mut extra = [0u8; 1];
            let grew = self
                .file
                .read(&mut extra)
                .map_err(|e| failed(format!("cannot read {}: {e}", self.path.display())))?
                > 0;
            if grew || ContentHash::from_blake3(self.hasher.finalize()) != self.hash {
                return Err(failed(format!(
                    "{} does not match its hash",
                    self.path.display()
                )));
            }
        }
        Ok(Bytes::from(chunk))
    }
}

/// Opens a blob file for reading without following a symlink in its place and without
/// waiting on a pipe (the caller then refuses anything but a regular file).
fn open_blob(path: &Path) -> std::io::Result<fs::File> {
    let mut options = fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    }
    options.open(path)
}

/// Makes the shard `folder` inside the blob folder `dir`, refusing either when it is a symlink
/// (`dir` before anything is created inside it).
fn make_blob_folder(dir: &Path, folder: &Path) -> Result<(), StoreError> {
    if fs::symlink_metadata(dir).is_ok() {
        refuse_symlink(dir)?;
    } else {
        // A new blob folder gets all 256 shard folders at once, so storing new content never
        // makes a folder, and takes as long as storing known content (see `rehearse`).
        crate::owner_only::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
        for shard in 0..=255u8 {
            let path = dir.join(format!("{shard:02x}"));
            crate::owner_only::create_dir_all(&path).map_err(|e| StoreError::io(&path, e))?;
        }
        sync_dir(dir)?;
    }
    // Making a folder that is already there (a link included) writes nothing; what is there
    // is then refused unless it is a plain folder.
    crate::owner_only::create_dir_all(folder).map_err(|e| StoreError::io(folder, e))?;
    refuse_symlink(folder)
}

/// Fails when `folder` (a blob folder) is a symlink: blobs are written only inside the
/// store's own folders, never through a link another writer of a shared folder put there.
fn refuse_symlink(folder: &Path) -> Result<(), StoreError> {
    match fs::symlink_metadata(folder) {
        Ok(meta) if meta.file_type().is_symlink() || !meta.is_dir() => Err(StoreError::io(
            folder,
            std::io::Error::other(
                "is not a plain folder (a symbolic link or a file in its place); blobs are not \
                 written through it: remove it",
            ),
        )),
        Ok(_) => Ok(()),
        Err(e) => Err(StoreError::io(folder, e)),
    }
}

/// Writes a large blob: temporary file in the final folder, fsync, rename, fsync the folder.
/// The folders are made owner-only, and the temporary file (so the blob) is 0600 already.
/// A complete file already in place (from an earlier, rolled-back write) is kept.
fn write_file(dir: &Path, hash: &ContentHash, content: &[u8]) -> Result<(), StoreError> {
    let path = blob_path(dir, hash);
    if let Ok(meta) = fs::symlink_metadata(&path) {
        if meta.is_file() && meta.len() == content.len() as u64 {
            return Ok(());
        }
    }
    let folder = path.parent().unwrap_or(dir);
    let tmp = write_temp(dir, folder, content)?;
    tmp.persist(&path)
        .map_err(|e| StoreError::io(&path, e.error))?;
    sync_dir(folder)?;
    if let Some(parent) = folder.parent() {
        // The shard folder itself may be new.
        sync_dir(parent)?;
    }
    Ok(())
}

/// Writes `content` to a temporary file where the blob of `hash` lives, fsyncs it and removes
/// it: what [`write_file`] costs, without keeping anything.
fn rehearse(dir: &Path, hash: &ContentHash, content: &[u8]) -> Result<(), StoreError> {
    let path = blob_path(dir, hash);
    let folder = path.parent().unwrap_or(dir);
    let tmp = write_temp(dir, folder, content)?;
    tmp.close().map_err(|e| StoreError::io(folder, e))?;
    // The same folder fsyncs as a new blob's.
    sync_dir(folder)?;
    if let Some(parent) = folder.parent() {
        sync_dir(parent)?;
    }
    Ok(())
}

/// `content` in a new, fsynced temporary file in the shard `folder` of the blob folder `dir`
/// (both made, and refused when they are symlinks).
fn write_temp(
    dir: &Path,
    folder: &Path,
    content: &[u8],
) -> Result<tempfile::NamedTempFile, StoreError> {
    make_blob_folder(dir, folder)?;
    #[cfg(test)]
    tests::TEMP_WRITES.with(|n| n.set(n.get() + 1));
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(folder)
        .map_err(|e| StoreError::io(folder, e))?;
    tmp.write_all(content)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(|e| StoreError::io(tmp.path(), e))?;
    Ok(tmp)
}

/// Makes a rename inside `dir` durable (a no-op where folders cannot be opened).
fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    #[cfg(unix)]
    {
        fs::File::open(dir)
            .and_then(|f| f.sync_all())
            .map_err(|e| StoreError::io(dir, e))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    thread_local! {
        /// Temporary blob files written on this thread (by `write_temp`).
        pub(super) static TEMP_WRITES: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
    }

    /// Storing content another tenant holds must do the file work new content does (a
    /// temporary file written and fsynced), so its time says nothing; it used to return at
    /// once (1.5 ms against 4.4 ms for 1 MiB).
    #[test]
    fn known_content_is_stored_with_the_same_file_work_as_new_content() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = dir.path().join("server.db.blobs");
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE blobs (hash BLOB PRIMARY KEY NOT NULL, size INTEGER NOT NULL, data BLOB) STRICT;",
        )
        .unwrap();
        let content = vec![7u8; INLINE_MAX + 1];
        let hash = ContentHash::of(&content);
        let before = TEMP_WRITES.with(|n| n.get());
        put(&conn, Some(&blobs), &hash, &content).unwrap();
        let new = TEMP_WRITES.with(|n| n.get()) - before;
        put(&conn, Some(&blobs), &hash, &content).unwrap();
        let known = TEMP_WRITES.with(|n| n.get()) - before - new;
        assert_eq!((new, known), (1, 1), "one temporary file each");
        let shard = blob_path(&blobs, &hash);
        let left: Vec<_> = fs::read_dir(shard.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left.len(), 1, "only the blob stays: {left:?}");
        assert_eq!(fs::read(&shard).unwrap(), content);
        assert_eq!(
            fs::read_dir(&blobs).unwrap().count(),
            256,
            "every shard folder made at once"
        );
    }

    #[test]
    fn blob_dir_sits_beside_the_database() {
        assert_eq!(
            blob_dir_for(Path::new("/srv/data/server.db")),
            PathBuf::from("/srv/data/server.db.blobs")
        );
        let h = ContentHash::of(b"x");
        let p = blob_path(Path::new("/b"), &h);
        let hex = h.to_hex();
        assert_eq!(p, Path::new("/b").join(&hex[..2]).join(&hex));
    }
}
