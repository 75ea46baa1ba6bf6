//! Local backups (docs/SPEC.md §3, "nothing is ever lost"): before a file is overwritten by a conflict
//! winner or removed, its content is copied to `.sync/backups/<key>/<stamp millis>-<hash8><ext>`
//! (`-N` added before the extension if that name is taken).
//!
//! The copy is written like any other file of the replica: to a `.sync-tmp-*` file in the
//! target folder, flushed, then renamed (without replacing an existing backup). The hash
//! recorded is the hash of the bytes that were copied, read back from the copy. Listing walks
//! `.sync/backups`: a backup's key is the folder path under `backups/`. This module never
//! touches the synced tree except to read the file being backed up.

use std::fs::{self, File};
use std::io::{self, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use sync_core::{Backup, ContentHash, Error, Key, Result, Stamp};
use walkdir::WalkDir;

use crate::apply::{check_no_symlinked_folder, path_of};
use crate::error::io_to_sync;
use crate::ignore_rules::{STATE_DIR, TEMP_PREFIX};

/// The backups folder, relative to the root.
pub const BACKUPS_DIR: &str = ".sync/backups";

/// The backups folder of a replica rooted at `root`.
pub(crate) fn backups_dir(root: &Path) -> PathBuf {
    root.join(STATE_DIR).join("backups")
}

/// Creates `dir` and its missing parents (`.sync/`, `backups/`, the key's folders) owner-only
/// (0700 on Unix): a backup is a tenant's content, not for other local users. Folders that
/// exist keep their mode. The backup files are 0600 already (from `tempfile`).
fn create_owner_only_dir_all(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// Copies the current content of the file `key` into the backups. `None` if there is no file.
pub(crate) fn backup(root: &Path, key: &Key, stamp: Stamp) -> Result<Option<Backup>> {
    check_no_symlinked_folder(root, key)?;
    let src_path = path_of(root, key);
    let fail = |action: &str, e: &io::Error| io_to_sync(key, action, e);
    match fs::symlink_metadata(&src_path) {
        Ok(m) if m.is_file() => {}
        Ok(_) => return Ok(None),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(fail("back up", &e)),
    }
    let mut src = match File::open(&src_path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(fail("back up", &e)),
    };
    let dir = backups_dir(root).join(key.as_str());
    create_owner_only_dir_all(&dir).map_err(|e| fail("create the backup folder for", &e))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .tempfile_in(&dir)
        .map_err(|e| fail("back up", &e))?;
    let size = io::copy(&mut src, tmp.as_file_mut()).map_err(|e| fail("back up", &e))?;
    tmp.as_file().sync_all().map_err(|e| fail("back up", &e))?;
    tmp.as_file_mut()
        .seek(SeekFrom::Start(0))
        .map_err(|e| fail("back up", &e))?;
    let hash = ContentHash::from_reader(tmp.as_file()).map_err(|e| fail("back up", &e))?;

    let base = format!("{}-{}", stamp.millis, hash.short());
    let ext = key.extension();
    let mut n = 0u32;
    let name = loop {
        let name = if n == 0 {
            format!("{base}{ext}")
        } else {
            format!("{base}-{n}{ext}")
        };
        match tmp.persist_noclobber(dir.join(&name)) {
            Ok(_) => break name,
            Err(e) if e.error.kind() == io::ErrorKind::AlreadyExists && n < 100_000 => {
                tmp = e.file;
                n += 1;
            }
            Err(e) => return Err(fail("back up", &e.error)),
        }
    };
    if let Err(e) = File::open(&dir).and_then(|d| d.sync_all()) {
        tracing::debug!(error = %e, "could not fsync the backup folder");
    }
    Ok(Some(Backup {
        key: key.clone(),
        location: format!("{BACKUPS_DIR}/{key}/{name}"),
        hash,
        size,
    }))
}

/// Every backup under `.sync/backups`, by key, then oldest stamp first.
pub(crate) fn list(root: &Path) -> Result<Vec<Backup>> {
    let dir = backups_dir(root);
    match fs::symlink_metadata(&dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Ok(Vec::new()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::storage(format!("cannot list the backups: {e}"))),
    }
    let mut out = Vec::new();
    for entry in WalkDir::new(&dir).follow_links(false).min_depth(2) {
        let entry = entry.map_err(|e| Error::storage(format!("cannot list the backups: {e}")))?;
        if !entry.file_type().is_file() {
            continue;
        }
        let name_ok = entry
            .file_name()
            .to_str()
            .is_some_and(|n| !n.starts_with(TEMP_PREFIX));
        let key = entry
            .path()
            .parent()
            .and_then(|p| p.strip_prefix(&dir).ok())
            .and_then(Path::to_str)
            .and_then(|s| Key::new(s).ok());
        let (Some(key), true) = (key, name_ok) else {
            tracing::debug!(path = %entry.path().display(), "not a backup; ignored");
            continue;
        };
        let Some(name) = entry.file_name().to_str() else {
            continue;
        };
        let file =
            File::open(entry.path()).map_err(|e| io_to_sync(&key, "read the backup of", &e))?;
        let size = file
            .metadata()
            .map_err(|e| io_to_sync(&key, "read the backup of", &e))?
            .len();
        let hash = ContentHash::from_reader(file)
            .map_err(|e| io_to_sync(&key, "read the backup of", &e))?;
        out.push(Backup {
            location: format!("{BACKUPS_DIR}/{key}/{name}"),
            key,
            hash,
            size,
        });
    }
    out.sort_by_cached_key(|b| (b.key.clone(), order(&b.location), b.location.clone()));
    Ok(out)
}

/// The (stamp millis, `-N` suffix) of a backup's file name, so backups list oldest first and a
/// `-1` copy after the first one; names this module did not make sort first.
fn order(location: &str) -> (u64, u32) {
    let name = location.rsplit('/').next().unwrap_or(location);
    let Some((millis, rest)) = name.split_once('-') else {
        return (0, 0);
    };
    let millis = millis.parse().unwrap_or(0);
    let n = rest
        .get(8..)
        .and_then(|tail| tail.strip_prefix('-'))
        .map(|tail| tail.split('.').next().unwrap_or(""))
        .and_then(|digits| digits.parse().ok())
        .unwrap_or(0);
    (millis, n)
}

/// The content of a backup this replica made. Its location must lie under `.sync/backups/`, and
/// its content must still match its hash.
pub(crate) fn read(root: &Path, backup: &Backup) -> Result<Bytes> {
    let inside = backup
        .location
        .strip_prefix(BACKUPS_DIR)
        .is_some_and(|rest| rest.starts_with('/'));
    // Key validation rejects `..`, `.`, empty segments and absolute paths.
    if !inside || Key::new(&backup.location).is_err() {
        return Err(Error::item(
            &backup.key,
            format!(
                "{:?} is not a backup location of this folder",
                backup.location
            ),
        ));
    }
    let bytes = fs::read(root.join(&backup.location))
        .map_err(|e| io_to_sync(&backup.key, "read the backup of", &e))?;
    let actual = ContentHash::of(&bytes);
    if actual != backup.hash {
        return Err(Error::item(
            &backup.key,
            format!(
                "the backup {} no longer matches its hash (expected {}, got {actual})",
                backup.location, backup.hash
            ),
        ));
    }
    Ok(Bytes::from(bytes))
}
