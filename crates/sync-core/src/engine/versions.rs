//! Versions an app can show and bring back: the engine's recent [`ConflictRecord`]s,
//! [`Engine::history`] of a key on the server, and [`Engine::restore`], which makes an older
//! version current again as a normal local edit (docs/SPEC.md §3 "Conflicts and history").
//!
//! Nothing here decides a sync: a restore only writes the replica (after keeping what was
//! there), and the next sync uploads it like any edit.

use crate::{ContentHash, Error, Expected, Key, LocalItem, Replica, Result, Revision, StateStore};
use crate::{Transport, VersionMeta};

use super::report::ConflictRecord;
use super::Engine;

impl<T: Transport, S: StateStore, R: Replica> Engine<T, S, R> {
    /// The conflicts resolved on this device most recently, oldest first (at most
    /// [`RECENT_CONFLICTS`](crate::RECENT_CONFLICTS)), as the state store keeps them: they
    /// survive a restart, each committed with the step that resolved it. Each sync's own are also in
    /// [`crate::SyncReport::resolved`]. Reads the state store on first use.
    pub async fn conflicts(&mut self) -> Result<Vec<ConflictRecord>> {
        self.load().await?;
        Ok(self.cached()?.state.conflicts.clone())
    }

    /// Every version the server keeps of `key` (its remote name), oldest first, the current
    /// one included: overwritten versions, conflict losers, deleted content.
    pub async fn history(&self, key: &Key) -> Result<Vec<VersionMeta>> {
        self.transport.history(key).await
    }

    /// Makes version `rev` of `key` current again as a normal local edit: fetches it, checks
    /// it against its hash, keeps what the replica holds now in its backups, and writes it to
    /// the replica. The next sync uploads it (so the server's current version goes to history,
    /// as for any edit). Returns the local item as written.
    ///
    /// Fails with [`Error::NotFound`] when the server has no such version (or it is a
    /// tombstone), and with [`Error::Changed`] when the local item changed since the last
    /// sync (sync first, then restore).
    pub async fn restore(&mut self, key: &Key, rev: Revision) -> Result<LocalItem> {
        self.load().await?;
        let fetched = self.transport.fetch(key, Some(rev)).await?;
        let actual = ContentHash::of(&fetched.content);
        if let Some(expected) = fetched.version.hash {
            if expected != actual {
                return Err(Error::HashMismatch {
                    key: key.clone(),
                    expected,
                    actual,
                });
            }
        }
        self.load_keys(&std::collections::BTreeSet::from([key.clone()]))
            .await?;
        let (local_key, known) = {
            let base = self.cached()?.state.base.get(key);
            (
                base.and_then(|b| b.local_key.clone())
                    .unwrap_or_else(|| key.clone()),
                base.and_then(|b| b.fingerprint),
            )
        };
        let stamp = self.loaded()?.clock.now();
        self.replica.backup(&local_key, stamp).await?;
        let first = match known {
            Some(fp) => Expected::Present(fp.settled()),
            None => Expected::Absent,
        };
        match self
            .replica
            .write(&local_key, fetched.content.clone(), first)
            .await
        {
            // The item the last sync saw was deleted here since: restore into its place.
            Err(Error::Changed { .. }) if known.is_some() => {
                self.replica
                    .write(&local_key, fetched.content, Expected::Absent)
                    .await
            }
            other => other,
        }
        .map_err(|e| match e {
            Error::Changed { key } => Error::Item {
                message: format!(
                    "{key} changed since the last sync, so it was not replaced; sync first, \
                     then restore"
                ),
                key,
            },
            e => e,
        })
    }
}
