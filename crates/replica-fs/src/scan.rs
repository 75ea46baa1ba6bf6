//! The scan: walk the folder, recognise unchanged files by fingerprint, hash the rest.
//!
//! Runs entirely on a blocking thread (the caller wraps it in `spawn_blocking`); hashing is
//! spread over the cores with rayon. It never follows a symlink, never reads a file that is over
//! the size limit or whose fingerprint matches what the last sync recorded (unless the racy-mtime
//! rule says the fingerprint cannot be trusted), and never reports a hash of a file that changed
//! while it was being read. The only thing it writes is the removal of stale `.sync-tmp-*`
//! files (not writes in flight in this process, see `in_flight`); it also leaves the ignore
//! rules it loaded in the replica's shared state for `Replica::ignores`.
//!
//! Fingerprints: a file's is (size, mtime in ns, inode). A folder's is (0, 0, inode): a folder's
//! mtime changes whenever an entry is added inside it, which says nothing about the folder item
//! itself, so only its identity is compared.
//!
//! Racy files: a file whose mtime is within [`RACY_WINDOW_NS`] of the scan's start is hashed even
//! when its fingerprint matches, and the fingerprint reported for it is marked
//! ([`Fingerprint::racy`]), so the base recorded from it makes the next scan read it again: a
//! same-size rewrite in the same timestamp tick is found however late the next sync comes.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ffi::OsString;
use std::fs::{File, FileType, Metadata};
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use rayon::prelude::*;
use sync_core::{
    ChangedItems, Content, ContentHash, Error, ErrorClass, Fingerprint, Key, KnownItem, LocalItem,
    Result, Scan, Skipped,
};

use crate::ignore_rules::{IgnoreRules, IGNORE_FILE, TEMP_PREFIX};
use crate::in_flight::InFlight;
use crate::Shared;

/// How close to the scan's start a file's mtime may be before its fingerprint is not trusted
/// (the "racy git" rule): a file written in the same clock tick as the fingerprint was taken
/// could change again without its size or mtime changing.
pub const RACY_WINDOW_NS: i128 = 2_000_000_000;

/// The message of a file skipped because it changed while it was read.
pub const CHANGED_WHILE_READING: &str = "changed while reading; retried next sync";

/// Modification time in nanoseconds since the Unix epoch.
pub(crate) fn mtime_ns(meta: &Metadata) -> i128 {
    i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec())
}

/// Modification time in milliseconds since the Unix epoch (0 before 1970).
pub(crate) fn modified_millis(meta: &Metadata) -> u64 {
    u64::try_from(mtime_ns(meta).max(0) / 1_000_000).unwrap_or(u64::MAX)
}

/// The fingerprint of a file (size, mtime, inode) or a folder (0, 0, inode), from `lstat`.
pub(crate) fn fingerprint(meta: &Metadata) -> Fingerprint {
    if meta.is_dir() {
        Fingerprint {
            size: 0,
            mtime_ns: 0,
            inode: meta.ino(),
        }
    } else {
        Fingerprint {
            size: meta.len(),
            mtime_ns: mtime_ns(meta),
            inode: meta.ino(),
        }
    }
}

/// The scan's view of a folder.
pub(crate) fn folder_item(key: Key, meta: &Metadata) -> LocalItem {
    LocalItem {
        key,
        content: Content::Folder,
        size: 0,
        fingerprint: fingerprint(meta),
        modified_millis: modified_millis(meta),
    }
}

/// The scan's view of a file with a known hash.
pub(crate) fn file_item(key: Key, meta: &Metadata, hash: ContentHash) -> LocalItem {
    LocalItem {
        key,
        content: Content::File(hash),
        size: meta.len(),
        fingerprint: fingerprint(meta),
        modified_millis: modified_millis(meta),
    }
}

/// Fails with a `Storage` error when the root is gone or not a folder, so a missing (for
/// example unmounted) sync folder is never mistaken for "every item was deleted".
pub(crate) fn check_root(root: &Path) -> Result<()> {
    match std::fs::metadata(root) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(Error::storage(format!(
            "sync folder {} is no longer a folder",
            root.display()
        ))),
        Err(e) => Err(Error::storage(format!(
            "sync folder {} cannot be opened: {e}. Reconnect or recreate it",
            root.display()
        ))),
    }
}

/// True when `fp`'s mtime has no sub-second part: the file system (most likely) keeps whole
/// seconds only, so a rewrite within the same second keeps the mtime.
pub(crate) fn whole_second(fp: Fingerprint) -> bool {
    fp.mtime_ns % 1_000_000_000 == 0
}

/// Fingerprints of files this replica wrote itself (by `write`), kept while they are within the
/// racy window.
///
/// The racy rule exists because a file rewritten in the same mtime tick in which its fingerprint
/// was taken looks unchanged. For a file the replica has just renamed into place, the fingerprint
/// was taken from the file it created and its hash from the bytes it wrote, so the rule only has
/// to cover a foreign same-size rewrite within the same timestamp tick; on a file system with
/// sub-second timestamps (the mtime has a nanosecond part) such a file is trusted at once, which
/// keeps a rescan right after a sync from re-reading everything it just downloaded. On a file
/// system with whole-second timestamps the 2 s rule applies to these files too.
#[derive(Debug, Default)]
pub(crate) struct OwnWrites(Mutex<HashMap<Key, Fingerprint>>);

impl OwnWrites {
    fn map(&self) -> MutexGuard<'_, HashMap<Key, Fingerprint>> {
        // A panic while holding the lock cannot leave the map inconsistent (single inserts).
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records a file this replica wrote.
    pub(crate) fn record(&self, key: &Key, fp: Fingerprint) {
        self.map().insert(key.clone(), fp);
    }

    /// True when `key` is a file this replica wrote with exactly `fp`, on a file system with
    /// sub-second timestamps.
    fn vouches(&self, key: &Key, fp: Fingerprint) -> bool {
        !whole_second(fp) && self.map().get(key) == Some(&fp)
    }

    /// Forgets the writes that are out of the racy window of a scan started at `start_ns`.
    fn prune(&self, start_ns: i128) {
        self.map()
            .retain(|_, fp| fp.mtime_ns >= start_ns - RACY_WINDOW_NS);
    }
}

/// A file to hash.
struct Job {
    key: Key,
    path: PathBuf,
    fingerprint: Fingerprint,
}

/// What hashing one file gave.
enum Hashed {
    /// The file and its hash.
    Item(LocalItem),
    /// The file was read but could not be trusted, or could not be read.
    Skip(Skipped),
}

/// Counts the bytes that pass through a reader.
struct Counting<R> {
    inner: R,
    count: u64,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        Ok(n)
    }
}

fn skipped(
    key: Option<Key>,
    path: &Path,
    class: ErrorClass,
    message: impl Into<String>,
) -> Skipped {
    let path = path.to_string_lossy().into_owned();
    // The message names what it is about, as every replica's does (the engine adds the path
    // only to one without a key).
    let message = match key {
        Some(_) => format!("{path}: {}", message.into()),
        None => message.into(),
    };
    Skipped {
        key,
        path,
        class,
        message,
    }
}

fn now_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

/// Lists every item under `root`; see [`sync_core::Replica::scan`] and the module doc.
pub(crate) fn scan(
    root: &Path,
    known: &BTreeMap<Key, KnownItem>,
    max_item_bytes: u64,
    shared: &Shared,
) -> Result<Scan> {
    shared.journal.full_scan_started(Instant::now());
    let (out, _) = walk_all(root, known, None, max_item_bytes, shared)?;
    shared.journal.full_scan_listed(out.items.iter());
    Ok(out)
}

/// Lists what differs from `known`; see [`sync_core::Replica::scan_changes`]. Items that match
/// their entry are counted, not kept; only when fewer of them were met than `known` holds are
/// the gone keys looked for. While a watcher runs, the journal needs the listing of a full
/// scan, so the scan is full and compared afterwards.
pub(crate) fn scan_changes(
    root: &Path,
    known: &BTreeMap<Key, KnownItem>,
    also: &BTreeSet<Key>,
    max_item_bytes: u64,
    shared: &Shared,
) -> Result<ChangedItems> {
    if shared.journal.token().is_some() {
        let full = scan(root, known, max_item_bytes, shared)?;
        return Ok(sync_core::changes_of(full, known, also));
    }
    let (scan, matched) = walk_all(root, known, Some(also), max_item_bytes, shared)?;
    let mut keys = also.clone();
    keys.extend(scan.skipped.iter().filter_map(|s| s.key.clone()));
    keys.extend(scan.items.keys().cloned());
    let met = matched.len() + scan.items.keys().filter(|k| known.contains_key(*k)).count();
    if met < known.len() {
        let seen: HashSet<&Key> = matched.iter().copied().chain(scan.items.keys()).collect();
        keys.extend(known.keys().filter(|k| !seen.contains(k)).cloned());
    }
    Ok(ChangedItems { scan, keys })
}

/// The walk of [`scan`] and [`scan_changes`]: with `changes_only`, items that match their
/// entry in `known` (and are not in that set) are left out of the scan and returned as
/// references to their keys in `known`.
fn walk_all<'k>(
    root: &Path,
    known: &'k BTreeMap<Key, KnownItem>,
    changes_only: Option<&'k BTreeSet<Key>>,
    max_item_bytes: u64,
    shared: &Shared,
) -> Result<(Scan, Vec<&'k Key>)> {
    check_root(root)?;
    let start_ns = now_ns();
    let own = &shared.own;
    own.prune(start_ns);
    let rules = Arc::new(IgnoreRules::load(root));
    shared.set_rules(Arc::clone(&rules));
    let mut out = Scan::default();
    for problem in &rules.problems {
        out.skipped.push(skipped(
            None,
            Path::new(IGNORE_FILE),
            ErrorClass::Warning,
            problem.clone(),
        ));
    }
    // The root's own entries first, then each top-level folder's subtree on rayon's pool (a
    // no-change scan is mostly `stat` calls, which run in parallel on separate folders); the
    // parts are merged in name order, so the result is the same as one sequential walk.
    let no_extra = BTreeSet::new();
    let walker = Walker {
        root,
        known,
        extra: &no_extra,
        changes_only,
        rules: &rules,
        shared,
        max_item_bytes,
        start_ns,
    };
    let mut top = walker.walk(root, true);
    let parts: Vec<Part<'k>> = std::mem::take(&mut top.descend)
        .into_par_iter()
        .map(|dir| walker.walk(&dir, false))
        .collect();
    let (mut jobs, mut items, mut matched) = (Vec::new(), Vec::new(), Vec::new());
    for part in std::iter::once(top).chain(parts) {
        items.extend(part.items);
        out.skipped.extend(part.skipped);
        jobs.extend(part.jobs);
        matched.extend(part.matched);
    }
    let mut hashed = Scan::default();
    walker.hash_into(jobs, &mut hashed);
    out.hashed = hashed.hashed;
    out.skipped.extend(hashed.skipped);
    for item in hashed.items.into_values() {
        walker.keep(item, &mut items, &mut matched);
    }
    // Built once from the collected items: compact nodes, no map per part.
    out.items = items.into_iter().map(|i| (i.key.clone(), i)).collect();
    shared.counts.full.fetch_add(1, Ordering::Relaxed);
    Ok((out, matched))
}

/// Lists only the paths the journal recorded after the token `since`, plus the keys `also`;
/// see [`sync_core::Replica::scan_since`] and the module doc of `journal`. `None`: the journal
/// cannot tell (or a folder vanished), and the engine scans in full.
///
/// Each path is listed by the same per-entry code as the full scan (`Walker::visit`), with the
/// replica's last listing as what is known: a path that is a folder now is walked with its
/// subtree, and every key the listing had under it is named (absent unless found again). The
/// folders above a path are checked as the walk would meet them: one that is missing, a
/// symlink or a file hides the path (it is absent), an ignored one makes it skipped.
pub(crate) fn scan_since(
    root: &Path,
    since: u64,
    also: &BTreeSet<Key>,
    max_item_bytes: u64,
    shared: &Shared,
) -> Result<Option<ChangedItems>> {
    check_root(root)?;
    let Some(changed) = shared.journal.changed_since(since, Instant::now()) else {
        return Ok(None);
    };
    let mut listing_guard = shared.journal.listing();
    let Some(listing) = listing_guard.as_mut() else {
        return Ok(None);
    };
    // A folder that was removed or renamed away: the keys that were under it cannot all be
    // named (some may have been skipped, so the listing does not have them).
    for (rel, entry) in &changed {
        if !entry.gone {
            continue;
        }
        let was_folder = entry.folder
            || rel
                .to_str()
                .and_then(|s| Key::new(s).ok())
                .is_some_and(|k| {
                    matches!(
                        listing.get(&k),
                        Some(KnownItem {
                            content: Content::Folder,
                            ..
                        })
                    ) || keys_under(listing, &k).next().is_some()
                })
            || changed.iter().any(|(p, _)| p != rel && p.starts_with(rel));
        if was_folder {
            return Ok(None);
        }
    }
    let mut targets: BTreeSet<PathBuf> = changed.into_iter().map(|(p, _)| p).collect();
    targets.extend(also.iter().map(|k| PathBuf::from(k.as_str())));

    let start_ns = now_ns();
    shared.own.prune(start_ns);
    let rules = shared.rules();
    let walker = Walker {
        root,
        known: listing,
        extra: also,
        changes_only: None,
        rules: &rules,
        shared,
        max_item_bytes,
        start_ns,
    };
    let mut part = Part::default();
    let mut keys = also.clone();
    let mut walked: Option<PathBuf> = None;
    for rel in &targets {
        if walked.as_ref().is_some_and(|dir| rel.starts_with(dir)) {
            continue; // listed with its folder's subtree
        }
        match walker.above(rel, &mut part) {
            Above::Walk => {}
            Above::Hidden => {
                if let Some(key) = key_of_rel(rel) {
                    keys.extend(keys_under(walker.known, &key).cloned());
                    keys.insert(key);
                }
                continue;
            }
            Above::Skipped => continue,
            Above::CannotTell => return Ok(None),
        }
        let path = root.join(rel);
        let is_dir = match std::fs::symlink_metadata(&path) {
            Ok(m) => m.is_dir(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if let Some(key) = key_of_rel(rel) {
                    keys.extend(keys_under(walker.known, &key).cloned());
                    keys.insert(key);
                }
                continue;
            }
            // The walk reports it, as the full scan would.
            Err(_) => false,
        };
        if is_dir {
            if let Some(key) = key_of_rel(rel) {
                keys.extend(keys_under(walker.known, &key).cloned());
            }
            walked = Some(rel.clone());
        }
        walker.walk_path(&path, &mut part);
    }
    let Part {
        items,
        skipped,
        jobs,
        ..
    } = part;
    let mut out = Scan {
        items: items.into_iter().map(|i| (i.key.clone(), i)).collect(),
        skipped,
        hashed: 0,
    };
    walker.hash_into(jobs, &mut out);
    for item in out.items.values_mut() {
        // A file this replica just wrote, trusted from the listing: marked as a full scan
        // that read it would mark it, so the answer does not depend on what was known.
        if item.content != Content::Folder && walker.is_racy(item.fingerprint) {
            item.fingerprint = item.fingerprint.racy();
        }
    }
    keys.extend(out.items.keys().cloned());
    keys.extend(out.skipped.iter().filter_map(|s| s.key.clone()));
    for key in &keys {
        listing.remove(key);
    }
    for (key, item) in &out.items {
        let known = KnownItem {
            fingerprint: item.fingerprint,
            content: item.content,
        };
        listing.insert(key.clone(), known);
    }
    shared.counts.partial.fetch_add(1, Ordering::Relaxed);
    Ok(Some(ChangedItems { scan: out, keys }))
}

/// One entry met by the walk: its name and type as the folder listing gave them, and its
/// metadata read relative to the open folder (`statx` on the folder's descriptor), so the
/// kernel does not walk the whole path again for every file.
struct Entry {
    path: PathBuf,
    name: OsString,
    file_type: FileType,
    source: Source,
}

/// Where an [`Entry`]'s metadata comes from.
enum Source {
    /// A folder listing's entry (its folder stays open while it lives).
    Listed(std::fs::DirEntry),
    /// A path looked up on its own (the first path of `walk_path`).
    Looked(Metadata),
}

impl Entry {
    /// The entry at `path` itself, without following a symlink.
    fn of_path(path: &Path) -> io::Result<Entry> {
        let meta = std::fs::symlink_metadata(path)?;
        Ok(Entry {
            path: path.to_path_buf(),
            name: path.file_name().map(OsString::from).unwrap_or_default(),
            file_type: meta.file_type(),
            source: Source::Looked(meta),
        })
    }

    /// The entry's own metadata (a symlink's, not its target's).
    fn metadata(&self) -> io::Result<Metadata> {
        match &self.source {
            Source::Listed(entry) => entry.metadata(),
            Source::Looked(meta) => Ok(meta.clone()),
        }
    }
}

/// The entries of `dir` in name order (entries that could not be read last).
fn list(dir: &Path) -> io::Result<Vec<io::Result<Entry>>> {
    let mut entries: Vec<io::Result<Entry>> = std::fs::read_dir(dir)?
        .map(|e| {
            let e = e?;
            Ok(Entry {
                path: e.path(),
                name: e.file_name(),
                file_type: e.file_type()?,
                source: Source::Listed(e),
            })
        })
        .collect();
    entries.sort_by(|a, b| match (a, b) {
        (Ok(a), Ok(b)) => a.name.cmp(&b.name),
        (Ok(_), Err(_)) => std::cmp::Ordering::Less,
        (Err(_), Ok(_)) => std::cmp::Ordering::Greater,
        (Err(_), Err(_)) => std::cmp::Ordering::Equal,
    });
    Ok(entries)
}

/// What the walk does after an entry.
enum Next {
    /// Go on (into the entry, if it is a folder the walk descends into).
    Continue,
    /// Do not descend into this folder (ignored, unreadable or not a valid key).
    SkipDir,
}

impl Next {
    /// `SkipDir` for a folder (nothing inside it is walked), `Continue` for anything else.
    fn skip_if(is_dir: bool) -> Next {
        if is_dir {
            Next::SkipDir
        } else {
            Next::Continue
        }
    }
}

/// What one walk (the root's entries, or one top-level folder's subtree) found.
#[derive(Default)]
struct Part<'k> {
    items: Vec<LocalItem>,
    /// Keys of `Walker::known` whose items matched their entry (with `changes_only`).
    matched: Vec<&'k Key>,
    skipped: Vec<Skipped>,
    jobs: Vec<Job>,
    /// Top-level folders to walk next (only the root's walk fills it).
    descend: Vec<PathBuf>,
}

/// The inputs every walk of one scan shares.
struct Walker<'a, 'k> {
    root: &'a Path,
    known: &'k BTreeMap<Key, KnownItem>,
    /// Set for [`scan_changes`]: the keys to list even when they match.
    changes_only: Option<&'k BTreeSet<Key>>,
    /// Keys to treat as known besides `known` when an entry is ignored or unreadable (the keys
    /// `scan_since` was asked for); empty for a full scan.
    extra: &'a BTreeSet<Key>,
    rules: &'a IgnoreRules,
    shared: &'a Shared,
    max_item_bytes: u64,
    start_ns: i128,
}

impl<'k> Walker<'_, 'k> {
    /// Keeps `item`, or with `changes_only` only counts it when it matches its entry.
    fn keep(&self, item: LocalItem, items: &mut Vec<LocalItem>, matched: &mut Vec<&'k Key>) {
        if let Some(also) = self.changes_only {
            if let Some((key, was)) = self.known.get_key_value(&item.key) {
                let same = was.fingerprint == item.fingerprint && was.content == item.content;
                if same && !also.contains(key) {
                    matched.push(key);
                    return;
                }
            }
        }
        items.push(item);
    }

    /// Walks `dir` in name order: only its own entries when `top` (the root, whose folders
    /// go to `Part::descend`), else its whole subtree.
    fn walk(&self, dir: &Path, top: bool) -> Part<'k> {
        let mut part = Part::default();
        self.walk_into(dir, top, &mut part);
        part
    }

    /// Lists `path` itself and, for a folder, its subtree, into `out` (for `scan_since`).
    fn walk_path(&self, path: &Path, out: &mut Part<'k>) {
        let entry = match Entry::of_path(path) {
            Ok(entry) => entry,
            Err(e) => {
                self.walk_error(path, &e, &mut out.skipped);
                return;
            }
        };
        let folder = entry.file_type.is_dir();
        if let (Next::Continue, true) = (self.visit(&entry, out, false), folder) {
            self.walk_into(path, false, out);
        }
    }

    /// Visits the entries of `dir` in name order without following symlinks, and walks into
    /// each folder the visit keeps (unless `top`).
    fn walk_into(&self, dir: &Path, top: bool, out: &mut Part<'k>) {
        let entries = match list(dir) {
            Ok(entries) => entries,
            Err(e) => {
                self.walk_error(dir, &e, &mut out.skipped);
                return;
            }
        };
        for entry in entries {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) => {
                    self.walk_error(dir, &e, &mut out.skipped);
                    continue;
                }
            };
            let folder = entry.file_type.is_dir().then(|| entry.path.clone());
            if let (Next::Continue, Some(folder)) = (self.visit(&entry, out, top), folder) {
                if !top {
                    self.walk_into(&folder, false, out);
                }
            }
        }
    }

    /// How the folders above `rel` (relative to the root) let the walk reach it, as a full walk
    /// would meet them, outermost first. An ignored folder makes `rel` skipped (reported into
    /// `out` when it is known, as `visit` reports an ignored folder's known keys).
    fn above(&self, rel: &Path, out: &mut Part<'k>) -> Above {
        let parts: Vec<Component<'_>> = rel.components().collect();
        let mut dir = PathBuf::new();
        for part in &parts[..parts.len().saturating_sub(1)] {
            let Component::Normal(name) = part else {
                return Above::CannotTell;
            };
            dir.push(name);
            let (Some(name), Some(key)) = (name.to_str(), key_of_rel(&dir)) else {
                return Above::CannotTell; // the full walk reports such a folder
            };
            match std::fs::symlink_metadata(self.root.join(&dir)) {
                Ok(m) if m.is_dir() => {}
                // A symlink or a file: the walk does not go through it.
                Ok(_) => return Above::Hidden,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Above::Hidden,
                Err(_) => return Above::CannotTell,
            }
            if self.rules.is_ignored(&dir, name, true) {
                let _ = key;
                if let Some(target) = key_of_rel(rel) {
                    self.ignored(&target, false, out);
                }
                return Above::Skipped;
            }
        }
        Above::Walk
    }

    /// Reports the known keys at (or, for a folder, under) the ignored entry `key` as skipped:
    /// an ignored item that synced before is left alone, not treated as deleted.
    fn ignored(&self, key: &Key, is_dir: bool, out: &mut Part<'k>) {
        for k in self.known_under(key, is_dir) {
            out.skipped.push(skipped(
                Some(k.clone()),
                Path::new(k.as_str()),
                ErrorClass::Warning,
                "ignored (built-in rule or .syncignore); it is not synced",
            ));
        }
    }

    /// Known keys (`known` or `extra`) that are `key` or (for a folder) lie inside it, in order.
    fn known_under(&self, key: &Key, is_dir: bool) -> BTreeSet<Key> {
        let known = self.known.keys().chain(self.extra.iter());
        if is_dir {
            known.filter(|k| k.starts_with(key)).cloned().collect()
        } else {
            known.filter(|k| *k == key).cloned().collect()
        }
    }

    /// Hashes the files of `jobs` in parallel into `out`, marking racily clean fingerprints.
    fn hash_into(&self, jobs: Vec<Job>, out: &mut Scan) {
        let results: Vec<(bool, Hashed)> = jobs
            .into_par_iter()
            .map(|job| hash_one(self.root, job))
            .collect();
        for (read, result) in results {
            if read {
                out.hashed += 1;
            }
            match result {
                Hashed::Item(mut item) => {
                    if self.is_racy(item.fingerprint) {
                        // Racily clean: a same-size rewrite in the same timestamp tick after
                        // this read would keep this fingerprint, and a sync long after the
                        // window would trust it. Marked, the base makes the next scan read
                        // the file again.
                        item.fingerprint = item.fingerprint.racy();
                    }
                    out.items.insert(item.key.clone(), item);
                }
                Hashed::Skip(s) => out.skipped.push(s),
            }
        }
    }

    /// True when `fp`'s mtime is within the racy window of this scan's start.
    fn is_racy(&self, fp: Fingerprint) -> bool {
        fp.mtime_ns >= self.start_ns - RACY_WINDOW_NS
    }

    /// Classifies one entry of a walk: a skipped item, a folder, a file recognised by its
    /// fingerprint, or a file to hash (`out.jobs`). `top`: the entry is in the root itself.
    fn visit(&self, entry: &Entry, out: &mut Part<'k>, top: bool) -> Next {
        let (root, known, shared) = (self.root, self.known, self.shared);
        shared.counts.visited.fetch_add(1, Ordering::Relaxed);
        let path = entry.path.as_path();
        let Ok(rel) = path.strip_prefix(root) else {
            return Next::Continue;
        };
        let ft = entry.file_type;
        let is_dir = ft.is_dir();
        let name = entry.name.to_str().unwrap_or("");
        if ft.is_file() && name.starts_with(TEMP_PREFIX) {
            sweep_temp_file(&shared.in_flight, path);
            return Next::Continue;
        }
        if self.rules.is_ignored(rel, name, is_dir) {
            if let Some(key) = rel.to_str().and_then(|s| Key::new(s).ok()) {
                self.ignored(&key, is_dir, out);
            }
            return Next::skip_if(is_dir);
        }
        let key = match key_of(root, rel, entry) {
            Ok(k) => k,
            Err(skip) => {
                out.skipped.push(skip);
                return Next::skip_if(is_dir);
            }
        };
        if ft.is_symlink() {
            out.skipped.push(skipped(
                Some(key),
                rel,
                ErrorClass::Warning,
                "is a symbolic link; symlinks are not followed, so it is not synced",
            ));
            return Next::Continue;
        }
        let meta = match entry.metadata() {
            Ok(m) => m,
            Err(e) => {
                let message = unreadable_message(&e);
                out.skipped
                    .push(skipped(Some(key), rel, ErrorClass::Item, message));
                return Next::skip_if(is_dir);
            }
        };
        if is_dir {
            self.keep(folder_item(key, &meta), &mut out.items, &mut out.matched);
            if top {
                out.descend.push(path.to_path_buf());
            }
            return Next::Continue;
        }
        if !ft.is_file() {
            out.skipped.push(skipped(
                Some(key),
                rel,
                ErrorClass::Warning,
                "is not a regular file or folder (a device, socket or pipe); it is not synced",
            ));
            return Next::Continue;
        }
        if meta.len() > self.max_item_bytes {
            let message = format!(
                "{} bytes is over the limit of {} bytes; it is not synced (raise max_item_bytes, or add it to {IGNORE_FILE})",
                meta.len(),
                self.max_item_bytes
            );
            out.skipped
                .push(skipped(Some(key), rel, ErrorClass::Warning, message));
            return Next::Continue;
        }
        let fp = fingerprint(&meta);
        if let Some(KnownItem {
            fingerprint,
            content: Content::File(hash),
        }) = known.get(&key)
        {
            // Trusted: unchanged, and neither racy now nor marked racy when it was recorded,
            // unless this process wrote exactly this file itself (`OwnWrites`).
            let racy = self.is_racy(fp) || fingerprint.is_racy();
            if fingerprint.settled() == fp && (!racy || shared.own.vouches(&key, fp)) {
                let mut item = file_item(key.clone(), &meta, *hash);
                item.fingerprint = *fingerprint;
                self.keep(item, &mut out.items, &mut out.matched);
                return Next::Continue;
            }
        }
        out.jobs.push(Job {
            key,
            path: path.to_path_buf(),
            fingerprint: fp,
        });
        Next::Continue
    }
}

/// Removes a `.sync-tmp-*` file the walk met unless a write of this process is filling it: it
/// is what a process killed mid-write left behind. A failure is logged, not reported: the file
/// is never synced either way.
fn sweep_temp_file(in_flight: &InFlight, path: &Path) {
    match in_flight.remove_if_stale(path) {
        Ok(true) => tracing::info!(path = %path.display(), "removed a stale temporary file"),
        Ok(false) => {}
        Err(e) => tracing::warn!(
            path = %path.display(),
            error = %e,
            "cannot remove a stale temporary file"
        ),
    }
}

/// What the folders above a path of `scan_since` mean for it (`Walker::above`).
enum Above {
    /// The walk reaches it: list it.
    Walk,
    /// A folder above is missing, a symlink or a file: the walk would not list it (absent).
    Hidden,
    /// A folder above is ignored: reported as skipped if known, else nothing to say.
    Skipped,
    /// A folder above has a name no key can have: only a full scan reports it right.
    CannotTell,
}

/// `rel` as a key, when it is one exactly (valid, and already in NFC).
fn key_of_rel(rel: &Path) -> Option<Key> {
    let s = rel.to_str()?;
    Key::new(s).ok().filter(|k| k.as_str() == s)
}

/// The keys of `map` strictly inside the folder `key`.
pub(crate) fn keys_under<'a, V>(
    map: &'a BTreeMap<Key, V>,
    key: &Key,
) -> impl Iterator<Item = &'a Key> + 'a {
    let prefix = format!("{key}/");
    map.range(key.clone()..)
        .map(|(k, _)| k)
        .skip_while({
            let prefix = prefix.clone();
            move |k| k.as_str() < prefix.as_str()
        })
        .take_while(move |k| k.as_str().starts_with(&prefix))
}

impl Walker<'_, '_> {
    /// A walk failure (typically a folder that cannot be listed): the folder and everything
    /// the last sync knew inside it are skipped, so none of it is mistaken for deleted.
    fn walk_error(&self, path: &Path, e: &io::Error, out: &mut Vec<Skipped>) {
        let root = self.root;
        let rel = path.strip_prefix(root).unwrap_or(path);
        let message = unreadable_message(e);
        let Some(key) = rel.to_str().and_then(|s| Key::new(s).ok()) else {
            out.push(skipped(None, rel, ErrorClass::Item, message));
            return;
        };
        let inside: Vec<Key> = self
            .known_under(&key, true)
            .into_iter()
            .filter(|k| k != &key)
            .collect();
        out.push(skipped(
            Some(key.clone()),
            rel,
            ErrorClass::Item,
            message.clone(),
        ));
        for k in inside {
            out.push(skipped(
                Some(k.clone()),
                Path::new(k.as_str()),
                ErrorClass::Item,
                format!("its folder {key} {message}"),
            ));
        }
    }
}

fn unreadable_message(e: &io::Error) -> String {
    if e.kind() == io::ErrorKind::PermissionDenied {
        "cannot be read: permission denied; check its permissions".to_owned()
    } else {
        format!("cannot be read: {e}")
    }
}

/// The key of a walked entry, or why it cannot have one.
fn key_of(root: &Path, rel: &Path, entry: &Entry) -> std::result::Result<Key, Skipped> {
    let Some(rel_str) = rel.to_str() else {
        return Err(skipped(
            None,
            rel,
            ErrorClass::Item,
            "the name is not valid UTF-8, which keys must be; rename it to sync it",
        ));
    };
    let key = Key::new(rel_str).map_err(|e| {
        skipped(
            None,
            rel,
            ErrorClass::Item,
            format!("{e}; rename it to sync it"),
        )
    })?;
    if key.as_str() != rel_str {
        // Keys are NFC. On a file system that does not normalise names, the NFC spelling would
        // name another (or no) file: skip rather than silently rename.
        let same = match (
            std::fs::symlink_metadata(root.join(key.as_str())),
            entry.metadata(),
        ) {
            (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
            _ => false,
        };
        if !same {
            return Err(skipped(
                None,
                rel,
                ErrorClass::Item,
                "the name is not in Unicode NFC form, which keys must be; rename it to sync it",
            ));
        }
    }
    Ok(key)
}

/// Hashes one file and checks it did not change meanwhile. Returns whether it was read.
fn hash_one(root: &Path, job: Job) -> (bool, Hashed) {
    let rel = job
        .path
        .strip_prefix(root)
        .unwrap_or(&job.path)
        .to_path_buf();
    let changed = |key: Key| {
        Hashed::Skip(skipped(
            Some(key),
            &rel,
            ErrorClass::Item,
            CHANGED_WHILE_READING,
        ))
    };
    let file = match File::open(&job.path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return (false, changed(job.key)),
        Err(e) => {
            let message = unreadable_message(&e);
            return (
                false,
                Hashed::Skip(skipped(Some(job.key), &rel, ErrorClass::Item, message)),
            );
        }
    };
    // The file opened must be the one the walk saw (not a replacement, not a symlink's target).
    match file.metadata() {
        Ok(m) if fingerprint(&m) == job.fingerprint => {}
        _ => return (false, changed(job.key)),
    }
    let mut reader = Counting {
        inner: file,
        count: 0,
    };
    let hash = match ContentHash::from_reader(&mut reader) {
        Ok(h) => h,
        Err(e) => {
            let message = unreadable_message(&e);
            return (
                true,
                Hashed::Skip(skipped(Some(job.key), &rel, ErrorClass::Item, message)),
            );
        }
    };
    let after = match std::fs::symlink_metadata(&job.path) {
        Ok(m) => m,
        Err(_) => return (true, changed(job.key)),
    };
    if fingerprint(&after) != job.fingerprint || reader.count != job.fingerprint.size {
        tracing::debug!(key = %job.key, "changed while hashing; skipped this sync");
        return (true, changed(job.key));
    }
    (true, Hashed::Item(file_item(job.key, &after, hash)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared(root: &Path) -> Shared {
        Shared::new(root)
    }

    #[test]
    fn the_scan_removes_stale_temp_files_but_not_writes_in_flight() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("a/b/c")).unwrap();
        std::fs::write(root.join("a/b/c/doc.txt"), b"doc").unwrap();
        let stale = root.join("a/b/c/.sync-tmp-x");
        std::fs::write(&stale, b"half a download").unwrap();
        let top_stale = root.join(".sync-tmp-y");
        std::fs::write(&top_stale, b"").unwrap();
        let live = root.join("a/.sync-tmp-live");
        std::fs::write(&live, b"being written").unwrap();
        // A temporary file in the state folder is not the scan's business.
        std::fs::create_dir_all(root.join(".sync/backups")).unwrap();
        let backup_tmp = root.join(".sync/backups/.sync-tmp-z");
        std::fs::write(&backup_tmp, b"").unwrap();

        let shared = shared(root);
        let guard = shared.in_flight.register(&live);
        let out = scan(root, &BTreeMap::new(), u64::MAX, &shared).unwrap();
        assert!(!stale.exists(), "nested stale temp file removed");
        assert!(!top_stale.exists(), "top-level stale temp file removed");
        assert!(live.exists(), "a write in flight is not touched");
        assert!(backup_tmp.exists());
        let keys: Vec<&str> = out.items.keys().map(Key::as_str).collect();
        assert_eq!(keys, ["a", "a/b", "a/b/c", "a/b/c/doc.txt"]);
        assert!(out.skipped.is_empty(), "{:?}", out.skipped);

        // Once the write is over (renamed or failed), a leftover with its name is stale.
        drop(guard);
        scan(root, &BTreeMap::new(), u64::MAX, &shared).unwrap();
        assert!(!live.exists());
    }

    #[test]
    fn the_scan_keeps_its_ignore_rules_for_ignores() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let shared = shared(root);
        let key = Key::new("debug.log").unwrap();
        assert!(!shared.rules().ignores_key(&key));
        std::fs::write(root.join(IGNORE_FILE), "*.log\n").unwrap();
        scan(root, &BTreeMap::new(), u64::MAX, &shared).unwrap();
        assert!(shared.rules().ignores_key(&key));
        std::fs::remove_file(root.join(IGNORE_FILE)).unwrap();
        scan(root, &BTreeMap::new(), u64::MAX, &shared).unwrap();
        assert!(!shared.rules().ignores_key(&key));
    }

    #[test]
    fn a_file_that_differs_from_what_the_walk_saw_is_not_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.txt");
        std::fs::write(&path, b"now").unwrap();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let key = Key::new("a.txt").unwrap();
        let stale = Fingerprint {
            size: 99,
            ..fingerprint(&meta)
        };
        let job = |fp| Job {
            key: key.clone(),
            path: path.clone(),
            fingerprint: fp,
        };
        match hash_one(dir.path(), job(stale)) {
            (_, Hashed::Skip(s)) => {
                assert_eq!(s.key, Some(key.clone()));
                assert_eq!(s.class, ErrorClass::Item);
                assert_eq!(s.message, format!("a.txt: {CHANGED_WHILE_READING}"));
            }
            (_, Hashed::Item(i)) => panic!("reported {i:?}"),
        }
        match hash_one(dir.path(), job(fingerprint(&meta))) {
            (true, Hashed::Item(i)) => {
                assert_eq!(i.content, Content::File(ContentHash::of(b"now")));
            }
            _ => panic!("not hashed"),
        }
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(
            hash_one(dir.path(), job(fingerprint(&meta))),
            (false, Hashed::Skip(_))
        ));
    }
}
