//! Changing the folder: atomic file writes, folder creation and removal (docs/SPEC.md §3).
//!
//! Every change first checks that the target is still what the plan saw ([`Expected`]); a
//! write goes to a `.sync-tmp-*` file in the target's folder, is flushed with `fsync`, and is
//! renamed over the target, so a crash leaves either the old or the new file, never a partial
//! one. A batch of writes (`write_many`) flushes all its temporary files at once before any
//! rename, and each folder once after them. A temporary file is deleted on every error path (it is a `tempfile::NamedTempFile`,
//! removed on drop), and is registered as in flight while it exists, so a scan removes only
//! the ones a killed process left behind (see `in_flight`). Nothing here follows a symlink: a symlinked folder on the way to a key is
//! an error, not a detour. Runs on a blocking thread.
//!
//! The check-then-rename has a window of microseconds in which another program could still
//! replace the target; the file system offers no compare-and-swap rename, and the next scan sees
//! whatever that program wrote, so nothing is lost except in that same-instant race.

use std::collections::BTreeSet;
use std::fs::{self, File, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use sync_core::{ContentHash, Error, Expected, Fingerprint, Key, LocalItem, LocalWrite, Result};

use crate::error::io_to_sync;
use crate::ignore_rules::reserved;
use crate::journal::Left;
use crate::scan::{check_root, file_item, fingerprint, folder_item, whole_second};
use crate::Shared;

/// The path of `key` under `root`.
pub(crate) fn path_of(root: &Path, key: &Key) -> PathBuf {
    root.join(key.as_str())
}

/// Fails for keys the replica keeps for itself (`.sync/`, `.sync-tmp-*`).
pub(crate) fn check_not_reserved(key: &Key) -> Result<()> {
    match reserved(key) {
        Some(why) => Err(Error::item(
            key,
            format!("cannot be synced to a folder: {why}"),
        )),
        None => Ok(()),
    }
}

/// Fails with an `Item` error on Windows when a segment of `key` is a name Windows cannot hold.
fn check_windows_name(key: &Key) -> Result<()> {
    if cfg!(windows) {
        if let Some(segment) = key.as_str().split('/').find(|s| windows_reserved(s)) {
            return Err(Error::item(
                key,
                format!("{segment:?} is a name Windows keeps for devices (or ends in a dot or a space), so this folder cannot hold it; rename it on the device that made it"),
            ));
        }
    }
    Ok(())
}

/// What a failed [`check_expected`] means for a new file: when another entry that differs
/// only in case stands where it was to go, the folder's file system does not tell them apart
/// (macOS, Windows by default) and the write would replace it, which is an `Item` error; any
/// other failure stays as it is. Looked at only after the check failed, so a write that
/// succeeds pays nothing for it.
fn case_clash_or(failed: Error, path: &Path, key: &Key, expected: Expected) -> Error {
    if expected != Expected::Absent || !matches!(failed, Error::Changed { .. }) {
        return failed;
    }
    let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) else {
        return failed;
    };
    match case_twin(dir, name) {
        Some(twin) => Error::item(
            key,
            format!("{name:?} and {twin:?} differ only in case, and this folder's file system does not tell them apart; rename one of them on the device that made it"),
        ),
        None => failed,
    }
}

/// Windows' reserved device names (`CON`, `PRN`, `AUX`, `NUL`, `COM1`–`COM9`, `LPT1`–`LPT9`,
/// in any case and with any extension), and names ending in a dot or a space, which Windows
/// cannot hold.
pub(crate) fn windows_reserved(segment: &str) -> bool {
    if segment.ends_with('.') || segment.ends_with(' ') {
        return true;
    }
    let stem = segment.split('.').next().unwrap_or(segment).trim_end();
    let upper = stem.to_ascii_uppercase();
    match upper.as_str() {
        "CON" | "PRN" | "AUX" | "NUL" => true,
        _ => {
            let (head, tail) = upper.split_at(upper.len().min(3));
            (head == "COM" || head == "LPT")
                && tail.len() == 1
                && tail.chars().all(|c| ('1'..='9').contains(&c))
        }
    }
}

/// An entry of `dir` other than `name` whose name is `name` but for case.
pub(crate) fn case_twin(dir: &Path, name: &str) -> Option<String> {
    let lower = name.to_lowercase();
    let entries = fs::read_dir(dir).ok()?;
    let mut twin = None;
    for entry in entries.flatten() {
        let Ok(other) = entry.file_name().into_string() else {
            continue;
        };
        if other == name {
            return None;
        }
        if twin.is_none() && other.to_lowercase() == lower {
            twin = Some(other);
        }
    }
    twin
}

/// Fails with [`Error::Changed`] unless the item at `path` is still as `expected`.
fn check_expected(path: &Path, key: &Key, expected: Expected) -> Result<()> {
    let changed = || Error::Changed { key: key.clone() };
    match (fs::symlink_metadata(path), expected) {
        (Err(e), Expected::Absent) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        (Err(e), Expected::Present(_)) if e.kind() == io::ErrorKind::NotFound => Err(changed()),
        (Err(e), _) => Err(io_to_sync(key, "check", &e)),
        (Ok(_), Expected::Absent) => Err(changed()),
        (Ok(meta), Expected::Present(fp)) if fingerprint(&meta) == fp.settled() => Ok(()),
        (Ok(_), Expected::Present(_)) => Err(changed()),
    }
}

/// Fails with an `Item` error when a folder on the way to `key` is a symlink, so nothing is
/// read, removed or backed up through one. Missing folders are fine (the caller then sees the
/// item as absent).
pub(crate) fn check_no_symlinked_folder(root: &Path, key: &Key) -> Result<()> {
    for folder in key.ancestors() {
        match fs::symlink_metadata(path_of(root, &folder)) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(Error::item(
                    key,
                    format!("the folder {folder} is a symbolic link; symlinks are not followed"),
                ))
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_to_sync(key, "open", &e)),
        }
    }
    Ok(())
}

/// Makes sure every folder in `folders` (outermost first) exists as a real folder, creating
/// missing ones (each recorded in the journal as the replica's own change). A symlink or a
/// file in the way is an `Item` error about `key`.
fn ensure_folders(root: &Path, shared: &Shared, key: &Key, folders: &[Key]) -> Result<()> {
    for folder in folders {
        let path = path_of(root, folder);
        let meta = match fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                shared.journal.expect_own(folder, Left::Folder);
                match fs::create_dir(&path) {
                    Ok(()) => {
                        let made = fs::symlink_metadata(&path)
                            .map_err(|e| io_to_sync(key, "create folder", &e))?;
                        let item = folder_item(folder.clone(), &made);
                        shared.journal.own_change(folder, Some(&item));
                        continue;
                    }
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                        shared.journal.own_cancel(folder);
                        fs::symlink_metadata(&path)
                            .map_err(|e| io_to_sync(key, "create folder", &e))?
                    }
                    Err(e) => {
                        shared.journal.own_cancel(folder);
                        return Err(io_to_sync(key, "create folder", &e));
                    }
                }
            }
            Err(e) => return Err(io_to_sync(key, "create folder", &e)),
        };
        if meta.file_type().is_symlink() {
            return Err(Error::item(
                key,
                format!("the folder {folder} is a symbolic link; symlinks are not followed, so nothing is written through it"),
            ));
        }
        if !meta.is_dir() {
            return Err(Error::item(
                key,
                format!("a file is in the way of the folder {folder}; move or rename it"),
            ));
        }
    }
    Ok(())
}

/// Flushes a folder's entries (the rename) to disk. Best effort: a failure is logged, since the
/// data itself is already flushed.
fn sync_dir(dir: &Path) {
    if let Err(e) = File::open(dir).and_then(|d| d.sync_all()) {
        tracing::debug!(dir = %dir.display(), error = %e, "could not fsync folder");
    }
}

/// Writes `content` to `key` atomically if the target is still as `expected`.
pub(crate) fn write(
    root: &Path,
    shared: &Shared,
    key: &Key,
    content: &Bytes,
    expected: Expected,
) -> Result<LocalItem> {
    let pending = Pending::prepare(root, shared, key, content, expected)?;
    pending.sync()?;
    let parent = pending.parent.clone();
    let item = pending.commit(shared)?;
    sync_dir(&parent);
    Ok(item)
}

/// Writes several files, each as [`write`] does (its own `expected` check, its own result),
/// made durable together: every temporary file is written first, then their contents are
/// flushed at once (one `syncfs` of the file system on Linux, an fsync per file elsewhere),
/// then each is checked and renamed into place, and every folder that received one is
/// flushed once. Nothing is returned before all of it is durable, so the state the engine
/// records after it never speaks of a file a crash could lose.
pub(crate) fn write_many(
    root: &Path,
    shared: &Shared,
    writes: Vec<LocalWrite>,
) -> Vec<Result<LocalItem>> {
    let pending: Vec<Result<Pending<'_>>> = writes
        .iter()
        .map(|w| Pending::prepare(root, shared, &w.key, &w.content, w.expected))
        .collect();
    let synced_all = sync_filesystem(root);
    let mut folders = BTreeSet::new();
    let results: Vec<Result<LocalItem>> = pending
        .into_iter()
        .map(|p| {
            let p = p?;
            if !synced_all {
                p.sync()?;
            }
            folders.insert(p.parent.clone());
            p.commit(shared)
        })
        .collect();
    if !sync_filesystem(root) {
        for folder in &folders {
            sync_dir(folder);
        }
    }
    results
}

/// Flushes every file system buffer of the file system holding `root` (Linux `syncfs`).
/// False when that is not possible here; the caller then flushes file by file.
fn sync_filesystem(root: &Path) -> bool {
    #[cfg(target_os = "linux")]
    {
        match File::open(root).and_then(|f| rustix::fs::syncfs(&f).map_err(io::Error::from)) {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!(root = %root.display(), error = %e, "syncfs failed; fsync per file");
                false
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = root;
        false
    }
}

/// A write whose temporary file holds the new content, not yet in place.
struct Pending<'s> {
    key: Key,
    path: PathBuf,
    parent: PathBuf,
    expected: Expected,
    hash: ContentHash,
    len: u64,
    tmp: tempfile::NamedTempFile,
    tmp_inode: u64,
    /// The temporary file's fingerprint: a rename keeps size, mtime and inode, so the
    /// watcher's event for the target finds exactly this.
    tmp_fingerprint: Fingerprint,
    /// Registered as in flight so a concurrent scan does not take it for a crash's leftover.
    in_flight: crate::in_flight::InFlightGuard<'s>,
}

impl<'s> Pending<'s> {
    /// Checks the key, makes its folders, and writes the content to a temporary file beside it.
    fn prepare(
        root: &Path,
        shared: &'s Shared,
        key: &Key,
        content: &Bytes,
        expected: Expected,
    ) -> Result<Pending<'s>> {
        check_not_reserved(key)?;
        check_root(root)?;
        ensure_folders(root, shared, key, &key.ancestors())?;
        let path = path_of(root, key);
        check_windows_name(key)?;
        let parent = path.parent().unwrap_or(root).to_path_buf();
        let fail = |action: &str, e: &io::Error| io_to_sync(key, action, e);

        // New files get the usual 0666-minus-umask mode; an overwritten file keeps its mode.
        let mode = match fs::symlink_metadata(&path) {
            Ok(m) if m.is_file() => m.permissions().mode() & 0o7777,
            _ => 0o666,
        };
        let (in_flight, mut tmp) = shared
            .in_flight
            .create_in(&parent, Permissions::from_mode(mode))
            .map_err(|e| fail("write", &e))?;
        tmp.write_all(content).map_err(|e| fail("write", &e))?;
        let tmp_meta = tmp.as_file().metadata().map_err(|e| fail("write", &e))?;
        let tmp_inode = tmp_meta.ino();
        Ok(Pending {
            tmp_fingerprint: fingerprint(&tmp_meta),
            key: key.clone(),
            path,
            parent,
            expected,
            hash: ContentHash::of(content),
            len: content.len() as u64,
            tmp,
            tmp_inode,
            in_flight,
        })
    }

    /// Flushes the temporary file's content to disk.
    fn sync(&self) -> Result<()> {
        self.tmp
            .as_file()
            .sync_all()
            .map_err(|e| io_to_sync(&self.key, "write", &e))
    }

    /// Renames the temporary file over the target if the target is still as expected (on any
    /// error the temporary file is deleted), and returns the item as written.
    fn commit(self, shared: &Shared) -> Result<LocalItem> {
        let Pending {
            key,
            path,
            expected,
            hash,
            len,
            tmp,
            tmp_inode,
            tmp_fingerprint,
            in_flight,
            ..
        } = self;
        let fail = |action: &str, e: &io::Error| io_to_sync(&key, action, e);
        check_expected(&path, &key, expected)
            .map_err(|e| case_clash_or(e, &path, &key, expected))?;
        shared.journal.expect_own(&key, Left::File(tmp_fingerprint));
        if let Err(e) = tmp.persist(&path) {
            shared.journal.own_cancel(&key);
            return Err(fail("replace", &e.error));
        }
        drop(in_flight);
        let meta = fs::symlink_metadata(&path).map_err(|e| fail("check the written file", &e))?;
        if meta.ino() != tmp_inode || meta.len() != len {
            // Replaced again by someone else in the instant after the rename.
            shared.journal.own_cancel(&key);
            return Err(Error::Changed { key });
        }
        let mut item = file_item(key.clone(), &meta, hash);
        shared.own.record(&key, item.fingerprint);
        shared.journal.own_change(&key, Some(&item));
        if whole_second(item.fingerprint) {
            // Whole-second timestamps: someone may rewrite the file within this second without
            // changing its fingerprint, so the next scan must read it again (see `scan`).
            item.fingerprint = item.fingerprint.racy();
        }
        Ok(item)
    }
}

/// Creates the folder `key` and its parents; succeeds if it exists.
pub(crate) fn create_folder(root: &Path, shared: &Shared, key: &Key) -> Result<LocalItem> {
    check_not_reserved(key)?;
    check_root(root)?;
    let mut folders = key.ancestors();
    folders.push(key.clone());
    ensure_folders(root, shared, key, &folders)?;
    let meta = fs::symlink_metadata(path_of(root, key))
        .map_err(|e| io_to_sync(key, "create folder", &e))?;
    Ok(folder_item(key.clone(), &meta))
}

/// Removes the file or empty folder `key` if it is still as `expected`. Already gone: success.
/// A folder that still holds entries is left in place (success).
pub(crate) fn remove(root: &Path, shared: &Shared, key: &Key, expected: Expected) -> Result<()> {
    check_not_reserved(key)?;
    check_root(root)?;
    check_no_symlinked_folder(root, key)?;
    let path = path_of(root, key);
    let meta = match fs::symlink_metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_to_sync(key, "remove", &e)),
    };
    match expected {
        Expected::Present(fp) if fingerprint(&meta) == fp.settled() => {}
        _ => return Err(Error::Changed { key: key.clone() }),
    }
    shared.journal.expect_own(key, Left::Removed);
    let result = if meta.is_dir() {
        fs::remove_dir(&path)
    } else {
        fs::remove_file(&path)
    };
    if result.is_err() {
        shared.journal.own_cancel(key);
    }
    match result {
        Ok(()) => {
            shared.journal.own_change(key, None);
            sync_dir(path.parent().unwrap_or(root));
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) if meta.is_dir() && has_entries(&path) => {
            tracing::debug!(%key, error = %e, "folder not empty; left in place");
            Ok(())
        }
        Err(e) => Err(io_to_sync(key, "remove", &e)),
    }
}

/// True when the folder at `path` still holds entries (why removing it failed).
fn has_entries(path: &Path) -> bool {
    fs::read_dir(path).is_ok_and(|mut entries| entries.next().is_some())
}

/// The content of the file `key`.
pub(crate) fn read(root: &Path, key: &Key) -> Result<Bytes> {
    check_not_reserved(key)?;
    check_no_symlinked_folder(root, key)?;
    let path = path_of(root, key);
    let meta = fs::symlink_metadata(&path).map_err(|e| io_to_sync(key, "read", &e))?;
    if meta.is_dir() {
        return Err(Error::item(key, "is a folder, not a file"));
    }
    if meta.file_type().is_symlink() {
        return Err(Error::item(
            key,
            "is a symbolic link; symlinks are not followed",
        ));
    }
    fs::read(&path)
        .map(Bytes::from)
        .map_err(|e| io_to_sync(key, "read", &e))
}

#[cfg(test)]
mod tests {
    #[test]
    fn windows_reserved_names_are_known_in_any_case_and_with_an_extension() {
        for name in [
            "CON",
            "con.txt",
            "Aux",
            "nul.tar.gz",
            "COM1",
            "lpt9.log",
            "a.",
            "b ",
        ] {
            assert!(super::windows_reserved(name), "{name}");
        }
        for name in [
            "CONSOLE", "com10", "COM0", "lpt", "a.txt", "nul-file", "con_",
        ] {
            assert!(!super::windows_reserved(name), "{name}");
        }
    }

    #[test]
    fn a_case_twin_is_found_unless_the_exact_name_is_there() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.txt"), b"a").unwrap();
        assert_eq!(
            super::case_twin(dir.path(), "A.TXT").as_deref(),
            Some("a.txt")
        );
        assert_eq!(super::case_twin(dir.path(), "a.txt"), None);
        assert_eq!(super::case_twin(dir.path(), "b.txt"), None);
    }
}
