//! What the scan leaves out on purpose: the state folder `.sync/`, the replica's own temporary
//! files (`.sync-tmp-*`), editor and OS droppings, and the patterns of `root/.syncignore`
//! (gitignore syntax, matched by the `ignore` crate).
//!
//! Also the names a key may not take on this replica because the replica uses them itself
//! ([`reserved`]), and the same rules applied to a key rather than a walked path
//! ([`IgnoreRules::ignores_key`], behind [`sync_core::Replica::ignores`]). This module only
//! reads `.syncignore`; it never writes, and it knows nothing about hashing or the state store.

use std::path::{Path, PathBuf};

use ignore::gitignore::{Gitignore, GitignoreBuilder};
use sync_core::{ContentHash, Key};

/// The folder under the root where the replica keeps its state and backups.
pub const STATE_DIR: &str = ".sync";

/// The prefix of every temporary file the replica writes; such files are never scanned.
pub const TEMP_PREFIX: &str = ".sync-tmp-";

/// The name of the per-folder ignore file, in gitignore syntax, at the root.
pub const IGNORE_FILE: &str = ".syncignore";

/// True for names the scan always skips, wherever they are: the replica's temporary files and
/// common editor and OS droppings (`.DS_Store`, `Thumbs.db`, `*.swp`, `~$*`, `*.tmp`).
pub fn is_dropping(name: &str) -> bool {
    name.starts_with(TEMP_PREFIX)
        || name == ".DS_Store"
        || name == "Thumbs.db"
        || name.ends_with(".swp")
        || name.starts_with("~$")
        || name.ends_with(".tmp")
}

/// Why `key` may not be written or read on a folder replica, or `None` if it may: the state
/// folder and the replica's temporary-file names belong to the replica.
pub fn reserved(key: &Key) -> Option<&'static str> {
    if key.segments().next() == Some(STATE_DIR) {
        return Some("the top-level folder '.sync' holds the sync state and cannot be synced");
    }
    if key.segments().any(|s| s.starts_with(TEMP_PREFIX)) {
        return Some("names starting with '.sync-tmp-' are the replica's temporary files");
    }
    None
}

/// The ignore rules of one scan: the built-in ones plus `.syncignore`.
#[derive(Debug)]
pub struct IgnoreRules {
    user: Option<Gitignore>,
    /// What the rules were made from (the hash of `.syncignore`, or that there is none), for
    /// `Replica::rules_tag`.
    pub tag: String,
    /// Problems reading `.syncignore` (bad patterns, unreadable file), for a warning.
    pub problems: Vec<String>,
}

impl IgnoreRules {
    /// Reads `root/.syncignore` if there is one. A bad pattern does not stop the scan: the good
    /// patterns still apply and the problem is reported in [`IgnoreRules::problems`].
    pub fn load(root: &Path) -> IgnoreRules {
        let file = root.join(IGNORE_FILE);
        let mut problems = Vec::new();
        match std::fs::symlink_metadata(&file) {
            Ok(m) if m.is_file() => {}
            Ok(_) => {
                problems.push(format!(
                    "{IGNORE_FILE} is not a regular file; it is not used"
                ));
                return IgnoreRules {
                    user: None,
                    tag: "not a file".into(),
                    problems,
                };
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return IgnoreRules {
                    user: None,
                    tag: "none".into(),
                    problems,
                };
            }
            Err(e) => {
                problems.push(format!("{IGNORE_FILE} cannot be read: {e}"));
                return IgnoreRules {
                    user: None,
                    tag: "unreadable".into(),
                    problems,
                };
            }
        }
        // The file is small; read once more for its hash (an unreadable one is reported below).
        let tag = std::fs::read(&file).map_or_else(
            |_| "unreadable".to_owned(),
            |bytes| ContentHash::of(&bytes).to_string(),
        );
        let mut builder = GitignoreBuilder::new(root);
        if let Some(e) = builder.add(&file) {
            problems.push(format!("{IGNORE_FILE}: {e}; fix the pattern"));
        }
        let user = match builder.build() {
            Ok(g) => Some(g),
            Err(e) => {
                problems.push(format!("{IGNORE_FILE} is not used: {e}"));
                None
            }
        };
        IgnoreRules {
            user,
            tag,
            problems,
        }
    }

    /// True when the entry at `rel` (relative to the root, file name `name`) is skipped. The
    /// state folder is only `.sync` at the top level.
    pub fn is_ignored(&self, rel: &Path, name: &str, is_dir: bool) -> bool {
        if is_dir && rel == Path::new(STATE_DIR) {
            return true;
        }
        if is_dropping(name) {
            return true;
        }
        match &self.user {
            Some(g) => g.matched(rel, is_dir).is_ignore(),
            None => false,
        }
    }

    /// True when a scan would leave `key` out: the key is reserved by the replica ([`reserved`]),
    /// or one of its folders or the key itself is ignored, checked outermost first exactly as the
    /// walk does (an ignored folder hides everything inside it). No I/O.
    ///
    /// The key's own kind is not known here, so its last segment is matched as a file: a
    /// folder-only pattern such as `build/` hides everything inside a remote folder `build` but
    /// not the (empty) folder item itself, which at worst appears empty locally and is then
    /// left alone by the scan. The other choice would hide a remote *file* named `build` from
    /// this device without a word.
    pub fn ignores_key(&self, key: &Key) -> bool {
        if reserved(key).is_some() {
            return true;
        }
        let segments: Vec<&str> = key.segments().collect();
        let mut rel = PathBuf::new();
        for (i, segment) in segments.iter().enumerate() {
            rel.push(segment);
            let is_dir = i + 1 < segments.len();
            if self.is_ignored(&rel, segment, is_dir) {
                return true;
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn droppings() {
        for n in [
            ".DS_Store",
            "Thumbs.db",
            "a.swp",
            "~$report.docx",
            "x.tmp",
            ".sync-tmp-abc",
        ] {
            assert!(is_dropping(n), "{n}");
        }
        for n in ["a.txt", "swp", "tmp", "Thumbs.db.txt", "a~$b"] {
            assert!(!is_dropping(n), "{n}");
        }
    }

    #[test]
    fn keys_are_ignored_like_the_walk_ignores_paths() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(IGNORE_FILE),
            "*.log\nbuild/\n/top-only.txt\n",
        )
        .unwrap();
        let rules = IgnoreRules::load(dir.path());
        assert!(rules.problems.is_empty(), "{:?}", rules.problems);
        let k = |s: &str| Key::new(s).unwrap();
        for ignored in [
            "debug.log",
            "sub/deep/debug.log",
            "build/out.bin",
            "sub/build/x/y",
            "top-only.txt",
            "x.tmp",
            "a/.DS_Store",
            "a/b.swp/c.txt",
            ".sync/state.db",
            "a/.sync-tmp-1",
        ] {
            assert!(rules.ignores_key(&k(ignored)), "{ignored}");
        }
        for synced in [
            "ok.txt",
            "log",
            "logs/a.txt",
            "sub/top-only.txt",
            "a/.sync/b",
            "build",
            ".syncignore",
        ] {
            assert!(!rules.ignores_key(&k(synced)), "{synced}");
        }
        // Without a .syncignore only the built-in rules apply.
        let bare = IgnoreRules::load(dir.path().join("missing").as_path());
        assert!(!bare.ignores_key(&k("debug.log")));
        assert!(bare.ignores_key(&k("x.tmp")));
    }

    #[test]
    fn reserved_keys() {
        let k = |s: &str| Key::new(s).unwrap();
        assert!(reserved(&k(".sync")).is_some());
        assert!(reserved(&k(".sync/backups/a")).is_some());
        assert!(reserved(&k("a/.sync-tmp-1")).is_some());
        assert!(reserved(&k("a/.sync/b")).is_none());
        assert!(reserved(&k(".syncignore")).is_none());
    }
}
