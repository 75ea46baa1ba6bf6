//! What changed in the folder since a change token, for `Replica::change_token` and
//! `Replica::scan_since` while a [`crate::FolderWatcher`] runs: the [`Journal`].
//!
//! The watcher's thread feeds every raw event to [`Journal::note`]; the replica's own writes,
//! folder creations and removals call [`Journal::own_change`]. Each relevant change moves a
//! counter (the change token) and records the path (relative to the root) with the counter's
//! value. `scan_since(since)` asks [`Journal::changed_since`] for the paths recorded after
//! `since` and lists only those (see `scan::scan_since`). The journal also keeps the replica's
//! last listing (every item of the last full scan, updated by each answer since), which tells
//! whether a path that vanished was a folder and lets unchanged files be recognised by
//! fingerprint without the engine's base.
//!
//! The journal says it cannot tell (`None`), so the engine scans in full, when: no watcher runs,
//! no full scan ran since the watch started, the kernel queue overflowed or the watch failed,
//! an event named the root or `.syncignore`, more than [`MAX_PATHS`] paths waited, or the last
//! full scan is older than the safety-net interval ([`FULL_SCAN_EVERY`] by default).
//!
//! An event for a path the replica itself just changed, whose state is still exactly what the
//! replica left, is absorbed (the replica already recorded the change): a download does not
//! wake the engine again. This module never reads a file; it only `lstat`s such paths.

use std::collections::{BTreeMap, HashMap};
use std::path::{Component, Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use notify::event::{EventKind, ModifyKind, RemoveKind, RenameMode};
use sync_core::{Fingerprint, Key, KnownItem};

use crate::ignore_rules::{IGNORE_FILE, STATE_DIR, TEMP_PREFIX};
use crate::scan::fingerprint;

/// Paths the journal keeps between two answers; past this many it forgets them and the next
/// `scan_since` says it cannot tell (a full scan is then cheaper than this many stats anyway).
pub const MAX_PATHS: usize = 4096;

/// The default safety net: `scan_since` says it cannot tell when the last full scan is older
/// than this, so a change the watcher missed is found within this time.
pub const FULL_SCAN_EVERY: Duration = Duration::from_secs(600);

/// How long the replica's own change of a path may absorb the watcher's event for it.
const OWN_MARK_KEEP: Duration = Duration::from_secs(2);

/// One path recorded since a token.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Entry {
    /// The counter value of the last change recorded for the path.
    pub(crate) seq: u64,
    /// An event said the path is or was a folder.
    pub(crate) folder: bool,
    /// The path was removed or renamed away at some point (it may be back since).
    pub(crate) gone: bool,
}

/// What the replica itself leaves at a path it changes (see [`Journal::expect_own`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Left {
    /// A file with this fingerprint (renamed into place).
    File(Fingerprint),
    /// A folder (created).
    Folder,
    /// Nothing (removed).
    Removed,
}

/// What the watcher and the replica share about changes; see the module doc.
#[derive(Debug)]
pub(crate) struct Journal {
    /// The root as given and its canonical form (events may name either).
    roots: Vec<PathBuf>,
    state: Mutex<State>,
    /// The last listing, in its own lock so that the watcher's thread never waits for a scan.
    listing: Mutex<Option<BTreeMap<Key, KnownItem>>>,
}

#[derive(Debug)]
struct State {
    /// Watchers attached; the journal answers only while at least one runs.
    watchers: u32,
    /// The change token.
    counter: u64,
    /// `changed_since` answers only for tokens at or after this one.
    floor: u64,
    paths: HashMap<PathBuf, Entry>,
    /// What the replica leaves at a path it changes itself, and since when.
    own: HashMap<PathBuf, (Left, Instant)>,
    last_full_scan: Option<Instant>,
    full_scan_every: Duration,
}

impl Journal {
    /// A journal for the folder `root`, with no watcher attached.
    pub(crate) fn new(root: &Path) -> Journal {
        Journal {
            roots: roots_of(root),
            state: Mutex::new(State {
                watchers: 0,
                counter: 0,
                floor: 0,
                paths: HashMap::new(),
                own: HashMap::new(),
                last_full_scan: None,
                full_scan_every: FULL_SCAN_EVERY,
            }),
            listing: Mutex::new(None),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Every update leaves the state consistent, so a panic elsewhere cannot poison it.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The last listing (`None` until a full scan ran while a watcher was attached).
    pub(crate) fn listing(&self) -> MutexGuard<'_, Option<BTreeMap<Key, KnownItem>>> {
        self.listing.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A watcher starts: nothing before this moment is known, so older tokens get no answer.
    pub(crate) fn attach(&self) {
        let mut s = self.state();
        s.watchers += 1;
        s.lose();
        s.last_full_scan = None;
    }

    /// A watcher stopped; with none left the journal says nothing more and drops its listing.
    pub(crate) fn detach(&self) {
        let mut s = self.state();
        s.watchers = s.watchers.saturating_sub(1);
        if s.watchers == 0 {
            s.lose();
            s.own.clear();
            drop(s);
            *self.listing() = None;
        }
    }

    /// The change token: `None` when no watcher runs. Once the last full scan is older than
    /// the safety-net interval, the token moves (and older ones get no answer), so the
    /// engine's next sync scans in full even if no event came.
    pub(crate) fn token(&self) -> Option<u64> {
        self.token_at(Instant::now())
    }

    fn token_at(&self, now: Instant) -> Option<u64> {
        let mut s = self.state();
        if s.watchers == 0 {
            return None;
        }
        let stale = s
            .last_full_scan
            .is_some_and(|at| now.duration_since(at) >= s.full_scan_every);
        if stale {
            // Once per full scan: until the next one, `changed_since` has no answer anyway.
            s.lose();
            s.last_full_scan = None;
        }
        Some(s.counter)
    }

    /// Sets the safety-net interval (see [`FULL_SCAN_EVERY`]).
    pub(crate) fn set_full_scan_every(&self, every: Duration) {
        self.state().full_scan_every = every;
    }

    /// A full scan starts now (the safety net counts from here).
    pub(crate) fn full_scan_started(&self, at: Instant) {
        let mut s = self.state();
        if s.watchers > 0 {
            s.last_full_scan = Some(at);
        }
    }

    /// A full scan listed `items`: they become the listing, while a watcher runs.
    pub(crate) fn full_scan_listed<'a>(
        &self,
        items: impl Iterator<Item = (&'a Key, &'a sync_core::LocalItem)>,
    ) {
        if self.token().is_none() {
            return;
        }
        let listing = items
            .map(|(k, i)| {
                let known = KnownItem {
                    fingerprint: i.fingerprint,
                    content: i.content,
                };
                (k.clone(), known)
            })
            .collect();
        *self.listing() = Some(listing);
    }

    /// The replica is about to change `key` so that `left` is there: the watcher's events
    /// for it that find exactly that are absorbed (called before the change, so an event
    /// cannot come first). [`Journal::own_change`] records the change once made;
    /// [`Journal::own_cancel`] forgets the mark when it failed.
    pub(crate) fn expect_own(&self, key: &Key, left: Left) {
        let mut s = self.state();
        if s.watchers == 0 {
            return;
        }
        let now = Instant::now();
        if s.own.len() > 256 {
            s.own
                .retain(|_, (_, at)| now.duration_since(*at) < OWN_MARK_KEEP);
        }
        s.own.insert(PathBuf::from(key.as_str()), (left, now));
    }

    /// The change announced by [`Journal::expect_own`] did not happen.
    pub(crate) fn own_cancel(&self, key: &Key) {
        self.state().own.remove(Path::new(key.as_str()));
    }

    /// The replica itself changed `key`: it is now `item` (written or created), or removed.
    pub(crate) fn own_change(&self, key: &Key, item: Option<&sync_core::LocalItem>) {
        let mut s = self.state();
        if s.watchers == 0 {
            return;
        }
        let rel = PathBuf::from(key.as_str());
        let folder = item.is_some_and(|i| i.content == sync_core::Content::Folder);
        // Not `gone` even for a removal: the replica removes only files and empty folders, so
        // nothing it listed under the path can be left unnamed.
        s.record(rel, folder, false);
        drop(s);
        let mut listing = self.listing();
        if let Some(listing) = listing.as_mut() {
            match item {
                Some(i) => {
                    let known = KnownItem {
                        fingerprint: i.fingerprint,
                        content: i.content,
                    };
                    listing.insert(key.clone(), known);
                }
                None => {
                    listing.remove(key);
                }
            }
        }
    }

    /// Records what a raw watcher event means; true when it recorded a change (the engine
    /// should sync), false for events that change nothing the scan lists.
    pub(crate) fn note(&self, event: &notify::Result<notify::Event>) -> bool {
        let event = match event {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e, "folder watch error; the next sync scans in full");
                self.state().lose();
                return true;
            }
        };
        if event.need_rescan() {
            tracing::info!("folder watch overflowed; the next sync scans in full");
            self.state().lose();
            return true;
        }
        if matches!(event.kind, EventKind::Access(_)) {
            return false;
        }
        if event.paths.is_empty() {
            self.state().lose();
            return true;
        }
        let folder = matches!(
            event.kind,
            EventKind::Create(notify::event::CreateKind::Folder)
                | EventKind::Remove(RemoveKind::Folder)
        );
        let mut recorded = false;
        for (i, path) in event.paths.iter().enumerate() {
            let gone = match event.kind {
                EventKind::Remove(_) | EventKind::Modify(ModifyKind::Name(RenameMode::From)) => {
                    true
                }
                EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => i == 0,
                _ => false,
            };
            let Some(rel) = self.relative(path) else {
                continue; // outside the folder
            };
            if rel.as_os_str().is_empty() || rel == Path::new(IGNORE_FILE) {
                // The root itself, or the ignore rules: the whole listing may change.
                self.state().lose();
                return true;
            }
            if !relevant(&rel) {
                continue;
            }
            let mut s = self.state();
            if let Some((left, _)) = s.own.get(&rel) {
                let now = match std::fs::symlink_metadata(path) {
                    Ok(m) if m.is_dir() => Left::Folder,
                    Ok(m) => Left::File(fingerprint(&m)),
                    Err(_) => Left::Removed,
                };
                if now == *left {
                    continue; // what the replica itself leaves there, recorded by it
                }
                s.own.remove(&rel);
            }
            s.record(rel, folder, gone);
            recorded = true;
        }
        recorded
    }

    /// `path` relative to the root, or `None` when it is outside.
    fn relative(&self, path: &Path) -> Option<PathBuf> {
        self.roots
            .iter()
            .find_map(|root| path.strip_prefix(root).ok())
            .map(Path::to_path_buf)
    }

    /// The paths recorded after the token `since`, or `None` when the journal cannot tell (see
    /// the module doc). Forgets the paths recorded up to `since`: a later call asks for a
    /// later token (an earlier one gets `None`).
    pub(crate) fn changed_since(&self, since: u64, now: Instant) -> Option<Vec<(PathBuf, Entry)>> {
        let mut s = self.state();
        if s.watchers == 0 || since < s.floor || since > s.counter {
            return None;
        }
        match s.last_full_scan {
            Some(at) if now.duration_since(at) < s.full_scan_every => {}
            _ => return None,
        }
        s.paths.retain(|_, e| e.seq > since);
        s.floor = since;
        let mut out: Vec<(PathBuf, Entry)> = s.paths.iter().map(|(p, e)| (p.clone(), *e)).collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Some(out)
    }
}

impl State {
    /// Forgets every path: tokens up to now get no answer (the next sync scans in full).
    fn lose(&mut self) {
        self.counter += 1;
        self.floor = self.counter;
        self.paths.clear();
    }

    /// Records a change of `rel`.
    fn record(&mut self, rel: PathBuf, folder: bool, gone: bool) {
        // The ignore rules changed (the engine downloaded them, say): only a full scan, which
        // reloads them, lists everything right.
        let rules = rel == Path::new(IGNORE_FILE);
        if rules || (self.paths.len() >= MAX_PATHS && !self.paths.contains_key(&rel)) {
            self.lose();
            return;
        }
        self.counter += 1;
        let seq = self.counter;
        let entry = self.paths.entry(rel).or_default();
        entry.seq = seq;
        entry.folder |= folder;
        entry.gone |= gone;
    }
}

/// `root` as given and, when it differs, its canonical form: a watcher's events may name
/// paths under either.
pub(crate) fn roots_of(root: &Path) -> Vec<PathBuf> {
    let mut roots = vec![root.to_path_buf()];
    if let Ok(canonical) = std::fs::canonicalize(root) {
        if canonical != root {
            roots.push(canonical);
        }
    }
    roots
}

/// False for paths inside the state folder and for the replica's temporary files (relative
/// to the root).
pub(crate) fn relevant(rel: &Path) -> bool {
    if let Some(Component::Normal(first)) = rel.components().next() {
        if first == STATE_DIR {
            return false;
        }
    }
    let temp = rel
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with(TEMP_PREFIX));
    !temp
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, DataChange, Event, Flag};

    fn modify(root: &Path, rel: &str) -> notify::Result<Event> {
        Ok(
            Event::new(EventKind::Modify(ModifyKind::Data(DataChange::Any)))
                .add_path(root.join(rel)),
        )
    }

    fn journal(root: &Path) -> Journal {
        let j = Journal::new(root);
        j.attach();
        j.full_scan_started(Instant::now());
        j
    }

    #[test]
    fn paths_changed_after_a_token_are_listed_once() {
        let root = Path::new("/r");
        let j = journal(root);
        let t0 = j.token().unwrap();
        assert!(j.note(&modify(root, "a.txt")));
        assert!(j.note(&modify(root, "a.txt")));
        assert!(!j.note(&modify(root, ".sync/state.db")));
        assert!(!j.note(&modify(root, "b/.sync-tmp-1")));
        let t1 = j.token().unwrap();
        assert!(t1 > t0);
        assert!(j.note(&modify(root, "b/c.txt")));
        let since_t0 = j.changed_since(t0, Instant::now()).unwrap();
        let paths: Vec<&Path> = since_t0.iter().map(|(p, _)| p.as_path()).collect();
        assert_eq!(paths, [Path::new("a.txt"), Path::new("b/c.txt")]);
        let since_t1 = j.changed_since(t1, Instant::now()).unwrap();
        assert_eq!(since_t1.len(), 1);
        // An older token than one already answered cannot be answered any more.
        assert!(j.changed_since(t0, Instant::now()).is_none());
    }

    #[test]
    fn an_overflow_or_a_watch_error_means_cannot_tell() {
        let root = Path::new("/r");
        let j = journal(root);
        let t0 = j.token().unwrap();
        assert!(j.note(&modify(root, "a.txt")));
        let overflow = Ok(Event::new(EventKind::Other).set_flag(Flag::Rescan));
        assert!(j.note(&overflow));
        assert!(
            j.token().unwrap() > t0,
            "the token moves, so the engine syncs"
        );
        assert!(j.changed_since(t0, Instant::now()).is_none());
        // From the token after the overflow on, it can tell again.
        let t1 = j.token().unwrap();
        assert!(j.changed_since(t1, Instant::now()).is_some());
        assert!(j.note(&Err(notify::Error::generic("watch failed"))));
        assert!(j.changed_since(t1, Instant::now()).is_none());
        // The ignore rules or the root itself: everything may have changed.
        let t2 = j.token().unwrap();
        assert!(j.note(&modify(root, IGNORE_FILE)));
        assert!(j.changed_since(t2, Instant::now()).is_none());
        let t3 = j.token().unwrap();
        assert!(j.note(&modify(root, "")));
        assert!(j.changed_since(t3, Instant::now()).is_none());
        // Also when the replica itself wrote them (its own events are absorbed).
        let t4 = j.token().unwrap();
        let rules = sync_core::LocalItem {
            key: Key::new(IGNORE_FILE).unwrap(),
            content: sync_core::Content::File(sync_core::ContentHash::of(b"*.log")),
            size: 5,
            fingerprint: Fingerprint::default(),
            modified_millis: 0,
        };
        j.own_change(&rules.key, Some(&rules));
        assert!(j.token().unwrap() > t4);
        assert!(j.changed_since(t4, Instant::now()).is_none());
    }

    #[test]
    fn too_many_paths_or_an_old_full_scan_mean_cannot_tell() {
        let root = Path::new("/r");
        let j = journal(root);
        let t0 = j.token().unwrap();
        for i in 0..=MAX_PATHS {
            j.note(&modify(root, &format!("f{i}")));
        }
        assert!(j.changed_since(t0, Instant::now()).is_none());
        let t1 = j.token().unwrap();
        let later = Instant::now() + FULL_SCAN_EVERY;
        assert!(j.changed_since(t1, later).is_none(), "the safety net");
        j.set_full_scan_every(Duration::from_secs(100_000));
        assert!(j.changed_since(t1, later).is_some());
        j.set_full_scan_every(FULL_SCAN_EVERY);
        // Without any event, the token moves once the full scan is that old, so the engine
        // asks (and gets no answer, so it scans in full).
        let t2 = j.token().unwrap();
        let t3 = j.token_at(later).unwrap();
        assert!(t3 > t2, "the token moves");
        assert_eq!(
            j.token_at(later),
            Some(t3),
            "once, until the next full scan"
        );
        assert!(j.changed_since(t2, later).is_none());
        j.full_scan_started(later);
        assert!(j.changed_since(t3, later).is_some());
    }

    #[test]
    fn without_a_watcher_there_is_no_token() {
        let root = Path::new("/r");
        let j = Journal::new(root);
        assert_eq!(j.token(), None);
        j.attach();
        let t = j.token().unwrap();
        assert!(
            j.changed_since(t, Instant::now()).is_none(),
            "no full scan yet"
        );
        j.detach();
        assert_eq!(j.token(), None);
    }

    #[test]
    fn kinds_of_events_are_kept() {
        let root = Path::new("/r");
        let j = journal(root);
        let t0 = j.token().unwrap();
        j.note(&Ok(
            Event::new(EventKind::Create(CreateKind::Folder)).add_path(root.join("new"))
        ));
        j.note(&Ok(Event::new(EventKind::Modify(ModifyKind::Name(
            RenameMode::Both,
        )))
        .add_path(root.join("old.txt"))
        .add_path(root.join("renamed.txt"))));
        let got: BTreeMap<PathBuf, Entry> = j
            .changed_since(t0, Instant::now())
            .unwrap()
            .into_iter()
            .collect();
        assert!(got[Path::new("new")].folder);
        assert!(got[Path::new("old.txt")].gone);
        assert!(!got[Path::new("renamed.txt")].gone);
        assert!(!j.note(&Ok(Event::new(EventKind::Access(
            notify::event::AccessKind::Any
        ))
        .add_path(root.join("a.txt")))));
    }
}
