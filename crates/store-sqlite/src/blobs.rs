//! Content-addressed blobs of the server store, deduplicated by hash (across tenants: a write
//! of content already stored does the same file work as a new one, so its timing says
//! nothing about other tenants).
//!
//! Content up to [`INLINE_MAX`] bytes lives in the `blobs` table. Larger content lives in a
//! file `<db file name>.blobs/<first two hex digits>/<hex hash>` beside the database, with a
//! `blobs` row whose `data` is NULL. Its bytes are first written to a temporary file in the
//! final folder and fsynced *without* the database lock ([`stage`], on a blocking thread), so
//! large uploads are written and flushed side by side; then, inside the write's transaction
//! ([`put_staged`]), the file is renamed into place and the folder fsynced *before* the row is
//! added and committed, so a committed row never points at a missing or partial file. A crash
//! in between leaves at most an unreferenced file, which the next write of the same content
//! replaces. Files are never changed once in place, so they can be read without holding the
//! database lock. An upload kept on disk ([`Source::File`]) is copied into the temporary file
//! inside the kernel, never through memory, or on Linux linked into place without a copy when it
//! is an unnamed temporary file on the same file system ([`stage`]).
//!
//! With retention on, a write that drops versions also drops the blobs no version (of any
//! tenant: blobs are shared) refers to any more ([`drop_unreferenced`]): their rows go in the
//! write's transaction, their files only after it commits ([`remove_files`], still inside the
//! same connection call, so no other write of this store runs in between). A crash between
//! the commit and the removal leaves an unreferenced file, as above. A read of a version being
//! dropped at that moment may find its file gone and fail as a damaged blob; a version that
//! stays is never affected.
//!
//! Everything here is blocking I/O: call [`stage`] on a blocking thread and the rest only from
//! [`crate::conn::Db::call`]. This module does not verify request hashes; the server does that before
//! it stores anything.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use rusqlite::{params, Connection, OptionalExtension};
use sync_core::{ContentFile, ContentHash};

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

/// Stores small `content` (whose hash the caller has verified) in the `blobs` table unless a
/// blob with its hash exists: one statement. Content a store keeps in files goes through
/// [`stage`] and [`put_staged`] instead.
pub(crate) fn put_inline(
    conn: &Connection,
    hash: &ContentHash,
    content: &[u8],
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO blobs (hash, size, data) VALUES (?1, ?2, ?3) ON CONFLICT (hash) DO NOTHING",
    )?
    .execute(params![
        hash_to_sql(Some(hash)),
        u64_to_sql(content.len() as u64),
        content
    ])?;
    Ok(())
}

/// Whether content of `len` bytes goes to a file in a store whose blob folder is `dir`.
pub(crate) fn as_file(dir: Option<&Path>, len: u64) -> Option<&Path> {
    dir.filter(|_| len > INLINE_MAX as u64)
}

/// Where the bytes of a blob being staged come from.
pub(crate) enum Source<'a> {
    /// In memory.
    Memory(&'a [u8]),
    /// In a file (an upload kept on disk), copied inside the kernel where it can be.
    File(ContentFile),
}

/// A large blob's content written and fsynced to a temporary file in its shard folder, ready
/// for [`put_staged`]. Made without the database lock ([`stage`]), so the slow part of storing
/// a large blob (writing and flushing its bytes) runs beside other writes; dropped unused (a
/// refused write), its temporary file goes.
pub(crate) struct Staged {
    tmp: tempfile::NamedTempFile,
    path: PathBuf,
    hash: ContentHash,
    size: u64,
}

impl Staged {
    /// The content's length in bytes.
    pub(crate) fn size(&self) -> u64 {
        self.size
    }
}

impl std::fmt::Debug for Staged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Staged")
            .field("path", &self.path)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

/// Writes the content of the blob `hash` (verified by the caller) to a new, fsynced temporary
/// file in its shard folder of `dir`, whether or not the blob is stored already: known and new
/// content cost the same file work, so how long an upload takes does not tell a tenant that
/// another one holds this content. Blocking I/O: run it on a blocking thread, never inside
/// [`crate::conn::Db::call`].
pub(crate) fn stage(
    dir: &Path,
    hash: &ContentHash,
    source: Source<'_>,
) -> Result<Staged, StoreError> {
    let path = blob_path(dir, hash);
    let folder = path.parent().unwrap_or(dir);
    make_blob_folder(dir, folder)?;
    #[cfg(test)]
    tests::TEMP_WRITES.with(|n| n.set(n.get() + 1));
    let source = match source {
        Source::File(file) => match link_in(folder, &file) {
            Some(tmp) => return finish_staging(tmp, path, hash, file.len()),
            None => Source::File(file),
        },
        memory => memory,
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(folder)
        .map_err(|e| StoreError::io(folder, e))?;
    let size = match source {
        Source::Memory(content) => {
            tmp.write_all(content)
                .map_err(|e| StoreError::io(tmp.path(), e))?;
            content.len() as u64
        }
        Source::File(file) => {
            let len = file.len();
            let copied = file
                .reader()
                .and_then(|mut reader| std::io::copy(&mut reader, tmp.as_file_mut()))
                .map_err(|e| StoreError::io(tmp.path(), e))?;
            if copied != len {
                return Err(StoreError::io(
                    tmp.path(),
                    std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        format!("the upload kept on disk held {copied} of its {len} bytes"),
                    ),
                ));
            }
            len
        }
    };
    finish_staging(tmp, path, hash, size)
}

/// Flushes a staged blob's temporary file.
fn finish_staging(
    tmp: tempfile::NamedTempFile,
    path: PathBuf,
    hash: &ContentHash,
    size: u64,
) -> Result<Staged, StoreError> {
    tmp.as_file()
        .sync_all()
        .map_err(|e| StoreError::io(tmp.path(), e))?;
    Ok(Staged {
        tmp,
        path,
        hash: *hash,
        size,
    })
}

/// Gives an upload kept on disk a name in `folder` without copying its bytes: a hard link to
/// an unnamed temporary file (`O_TMPFILE`) through `/proc/self/fd`, which works when the upload
/// was kept on the same file system as the blobs and the file holds exactly the content. `None`
/// in every other case (another file system, no `/proc`, a named or longer file): the caller
/// copies instead, so this can only save work, never fail a write.
#[cfg(target_os = "linux")]
fn link_in(folder: &Path, file: &ContentFile) -> Option<tempfile::NamedTempFile> {
    use std::os::fd::AsRawFd;
    let handle = file.as_file();
    let meta = handle.metadata().ok()?;
    if meta.len() != file.len() || !meta.is_file() {
        return None;
    }
    let proc = PathBuf::from(format!("/proc/self/fd/{}", handle.as_raw_fd()));
    tempfile::Builder::new()
        .prefix(".tmp-")
        .make_in(folder, |name| {
            // Cloned before the link, so a failure cannot leave a name nobody removes.
            let clone = handle.try_clone()?;
            rustix::fs::linkat(
                rustix::fs::CWD,
                &proc,
                rustix::fs::CWD,
                name,
                rustix::fs::AtFlags::SYMLINK_FOLLOW,
            )?;
            Ok(clone)
        })
        .ok()
}

#[cfg(not(target_os = "linux"))]
fn link_in(_folder: &Path, _file: &ContentFile) -> Option<tempfile::NamedTempFile> {
    None
}

/// Stores a staged blob inside the caller's transaction, unless a blob with its hash exists:
/// new content is renamed into place and its folder fsynced before its row is added (so a
/// committed row never points at a missing or partial file); known content's temporary file
/// is removed, with the same folder fsyncs. A complete file already in place without a row
/// (from a rolled-back write) is replaced by the same bytes.
pub(crate) fn put_staged(conn: &Connection, staged: Staged) -> Result<(), StoreError> {
    let Staged {
        tmp,
        path,
        hash,
        size,
    } = staged;
    let folder = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let exists: Option<i64> = conn
        .prepare_cached("SELECT 1 FROM blobs WHERE hash = ?1")?
        .query_row([hash.as_bytes().as_slice()], |r| r.get(0))
        .optional()?;
    if exists.is_some() {
        tmp.close().map_err(|e| StoreError::io(&folder, e))?;
    } else {
        tmp.persist(&path)
            .map_err(|e| StoreError::io(&path, e.error))?;
    }
    // The shard folder's own entry was made durable when it was made (`make_blob_folder`).
    sync_dir(&folder)?;
    if exists.is_none() {
        conn.prepare_cached("INSERT INTO blobs (hash, size, data) VALUES (?1, ?2, NULL)")?
            .execute(params![hash_to_sql(Some(&hash)), u64_to_sql(size)])?;
    }
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
        // makes a folder, and takes as long as storing known content (see `stage`).
        crate::owner_only::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
        for shard in 0..=255u8 {
            let path = dir.join(format!("{shard:02x}"));
            crate::owner_only::create_dir_all(&path).map_err(|e| StoreError::io(&path, e))?;
        }
        sync_dir(dir)?;
    }
    // A shard folder removed by hand is made again, and its entry flushed before a blob is
    // renamed into it. What is there is refused unless it is a plain folder (not a link).
    if fs::symlink_metadata(folder).is_err() {
        crate::owner_only::create_dir_all(folder).map_err(|e| StoreError::io(folder, e))?;
        sync_dir(dir)?;
    }
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
        /// Temporary blob files written on this thread (by `stage`).
        pub(super) static TEMP_WRITES: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
    }

    /// Storing content another tenant holds must do the file work new content does (a
    /// temporary file written and fsynced), so its time says nothing; it used to return at
    /// once (1.5 ms against 4.4 ms for 1 MiB).
    #[test]
    fn known_content_is_stored_with_the_same_file_work_as_new_content() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = dir.path().join("server.db.blobs");
        let conn = blob_table();
        let content = vec![7u8; INLINE_MAX + 1];
        let hash = ContentHash::of(&content);
        let put = |source| put_staged(&conn, stage(&blobs, &hash, source).unwrap()).unwrap();
        let before = TEMP_WRITES.with(|n| n.get());
        put(Source::Memory(&content));
        let new = TEMP_WRITES.with(|n| n.get()) - before;
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&content).unwrap();
        put(Source::File(ContentFile::new(
            file,
            content.len() as u64,
            hash,
        )));
        let known = TEMP_WRITES.with(|n| n.get()) - before - new;
        assert_eq!((new, known), (1, 1), "one temporary file each");
        let shard = blob_path(&blobs, &hash);
        let left = shard_entries(&blobs, &hash);
        assert_eq!(left.len(), 1, "only the blob stays: {left:?}");
        assert_eq!(fs::read(&shard).unwrap(), content);
        assert_eq!(
            fs::read_dir(&blobs).unwrap().count(),
            256,
            "every shard folder made at once"
        );
    }

    /// An in-memory database with only the `blobs` table.
    fn blob_table() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE blobs (hash BLOB PRIMARY KEY NOT NULL, size INTEGER NOT NULL, data BLOB) STRICT;",
        )
        .unwrap();
        conn
    }

    fn shard_entries(blobs: &Path, hash: &ContentHash) -> Vec<std::ffi::OsString> {
        let shard = blob_path(blobs, hash);
        fs::read_dir(shard.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect()
    }

    /// A staged blob that is never stored (its write was refused) leaves nothing behind, and
    /// an upload file shorter than its length is refused without a blob.
    #[test]
    fn unused_or_short_staged_blobs_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = dir.path().join("server.db.blobs");
        let content = vec![3u8; INLINE_MAX + 10];
        let hash = ContentHash::of(&content);
        drop(stage(&blobs, &hash, Source::Memory(&content)).unwrap());
        assert_eq!(
            shard_entries(&blobs, &hash),
            Vec::<std::ffi::OsString>::new()
        );
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&content[..100]).unwrap();
        let short = ContentFile::new(file, content.len() as u64, hash);
        let err = stage(&blobs, &hash, Source::File(short)).unwrap_err();
        assert!(err.to_string().contains("held 100 of its"), "{err}");
        assert_eq!(
            shard_entries(&blobs, &hash),
            Vec::<std::ffi::OsString>::new()
        );
    }

    /// An upload kept in an unnamed temporary file beside the blobs becomes the blob itself
    /// (no second copy of its bytes); one whose file holds more than its content is copied,
    /// and only its content is stored.
    #[cfg(target_os = "linux")]
    #[test]
    fn an_unnamed_upload_file_is_linked_and_a_longer_one_copied() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let blobs = dir.path().join("server.db.blobs");
        let conn = blob_table();
        let content = vec![5u8; INLINE_MAX + 3];
        let hash = ContentHash::of(&content);
        let mut file = tempfile::tempfile_in(dir.path()).unwrap();
        file.write_all(&content).unwrap();
        let upload_inode = file.metadata().unwrap().ino();
        let upload = ContentFile::new(file, content.len() as u64, hash);
        put_staged(&conn, stage(&blobs, &hash, Source::File(upload)).unwrap()).unwrap();
        let stored = blob_path(&blobs, &hash);
        assert_eq!(fs::metadata(&stored).unwrap().ino(), upload_inode, "linked");
        assert_eq!(fs::read(&stored).unwrap(), content);
        assert_eq!(
            shard_entries(&blobs, &hash).len(),
            1,
            "no temporary name left"
        );

        let other = vec![6u8; INLINE_MAX + 3];
        let other_hash = ContentHash::of(&other);
        let mut longer = tempfile::tempfile_in(dir.path()).unwrap();
        longer.write_all(&other).unwrap();
        longer
            .write_all(b"trailing bytes that are not content")
            .unwrap();
        let longer_inode = longer.metadata().unwrap().ino();
        let upload = ContentFile::new(longer, other.len() as u64, other_hash);
        put_staged(
            &conn,
            stage(&blobs, &other_hash, Source::File(upload)).unwrap(),
        )
        .unwrap();
        let stored = blob_path(&blobs, &other_hash);
        assert_ne!(fs::metadata(&stored).unwrap().ino(), longer_inode, "copied");
        assert_eq!(fs::read(&stored).unwrap(), other);
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
