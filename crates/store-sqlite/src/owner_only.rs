//! Files and folders that only their owner may read: the databases, their `.blobs` folders
//! and the client's `.sync/` folder hold a tenant's content, so on Unix what the stores create
//! is made with mode 0600 (files) and 0700 (folders) instead of the process umask's usual
//! 0644/0755. SQLite creates a database's `-wal`, `-shm` and `-journal` files with the mode of
//! the database file, so an owner-only database file is enough for them.
//!
//! Only what is created here gets these modes: a file or folder that exists already keeps the
//! mode it has (a user who chose to share one keeps that choice). Elsewhere than Unix these
//! are the plain `std::fs` calls.
//!
//! Blocking I/O: call from a blocking thread.

use std::io;
use std::path::Path;

/// The mode of a file created here (Unix).
pub const FILE_MODE: u32 = 0o600;
/// The mode of a folder created here (Unix).
pub const DIR_MODE: u32 = 0o700;

/// Creates `path` as an empty owner-only file unless something exists there already.
/// Returns whether it created the file.
pub fn create_file(path: &Path) -> io::Result<bool> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(FILE_MODE);
    }
    match options.open(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}

/// Creates the folder `path` and any missing parents, each owner-only; folders that exist keep
/// their mode.
pub fn create_dir_all(path: &Path) -> io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(DIR_MODE);
    }
    builder.create(path)
}

#[cfg(all(test, unix))]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn new_files_and_folders_are_owner_only_and_existing_ones_keep_their_mode() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        assert!(create_file(&file).unwrap());
        assert_eq!(mode(&file), 0o600);

        let shared = dir.path().join("shared");
        std::fs::write(&shared, b"x").unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(!create_file(&shared).unwrap());
        assert_eq!(mode(&shared), 0o644);
        assert_eq!(std::fs::read(&shared).unwrap(), b"x");

        let deep = dir.path().join("a/b");
        create_dir_all(&deep).unwrap();
        assert_eq!(mode(&dir.path().join("a")), 0o700);
        assert_eq!(mode(&deep), 0o700);

        let open = dir.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
        create_dir_all(&open.join("c")).unwrap();
        assert_eq!(mode(&open), 0o755);
        assert_eq!(mode(&open.join("c")), 0o700);
    }
}
