//! Applying one planned [`Action`]: the I/O of a sync, through the traits only.
//!
//! Every action re-checks what the plan saw before it touches anything: local content is
//! re-read and its hash compared, local writes and removals pass the fingerprint the plan saw to
//! the replica, remote writes carry a precondition. Content arriving from the server is checked
//! against its hash before it is written. A loser is always kept before it is overwritten.
//! Deciding *what* to do is the reconciler's job, not this module's.

use bytes::Bytes;
use futures::StreamExt;

use crate::reconcile::{Action, ActionKind, Winner};
use crate::{
    ArchiveRequest, BaseEntry, Clock, ConflictPolicy, ContentHash, DeleteRequest, Error,
    ErrorEntry, Expected, Fetched, FolderRequest, ItemKind, ItemMeta, Key, LocalItem, Precondition,
    PushOutcome, PushRequest, Replica, Result, Revision, Scope, Stamp, StateBatch, SyncPolicy,
    Transport,
};

use super::SyncReport;

/// What applying an action changed in the state, and whether the plan must be made again.
pub(super) struct Applied {
    pub batch: StateBatch,
    pub replan: bool,
}

impl Applied {
    fn record(remote: Option<ItemMeta>, key: &Key, base: Option<BaseEntry>) -> Applied {
        Applied {
            batch: StateBatch {
                remote: remote.into_iter().collect(),
                base: vec![(key.clone(), base)],
                ..StateBatch::default()
            },
            replan: false,
        }
    }

    fn replan(remote: Option<ItemMeta>) -> Applied {
        Applied {
            batch: StateBatch {
                remote: remote.into_iter().collect(),
                ..StateBatch::default()
            },
            replan: true,
        }
    }
}

/// Everything an action needs.
pub(super) struct Context<'a, T, R> {
    pub transport: &'a T,
    pub replica: &'a R,
    pub clock: &'a mut Clock,
    pub policy: &'a SyncPolicy,
    pub seen: Revision,
    pub report: &'a mut SyncReport,
    /// Reads in flight at once when preparing a batch of uploads.
    pub concurrency: usize,
}

/// The base entry for a remote version that this replica now holds as `local`.
fn base_of(remote: &ItemMeta, local: Option<&LocalItem>, local_key: &Key) -> BaseEntry {
    BaseEntry {
        kind: remote.kind,
        hash: remote.hash,
        size: remote.size,
        rev: remote.rev,
        stamp: remote.stamp,
        fingerprint: local.map(|l| l.fingerprint),
        local_key: (local_key != &remote.key).then(|| local_key.clone()),
        detached: false,
    }
}

/// The stack entry a skip action reports, if it is one.
pub(super) fn skip_entry(action: &Action, now: u64) -> Option<ErrorEntry> {
    match &action.kind {
        ActionKind::Skip { class, message } => Some(ErrorEntry {
            class: *class,
            scope: Scope::Key(action.local_key.clone()),
            message: format!("{}: {message}", action.local_key),
            first_seen_millis: now,
        }),
        _ => None,
    }
}

impl<T: Transport, R: Replica> Context<'_, T, R> {
    pub async fn apply(&mut self, action: &Action) -> Result<Applied> {
        let key = &action.key;
        let local_key = &action.local_key;
        match &action.kind {
            ActionKind::Upload {
                local,
                precondition,
                stamp,
                conflict,
            } => {
                let content = self.read_verified(local_key, local).await?;
                self.upload(
                    key,
                    local_key,
                    local,
                    content,
                    *precondition,
                    *stamp,
                    *conflict,
                )
                .await
            }
            ActionKind::CreateRemoteFolder { local } => {
                let stamp = self.clock.now();
                let meta = self
                    .transport
                    .ensure_folder(FolderRequest {
                        key: key.clone(),
                        stamp,
                        seen: self.seen,
                    })
                    .await?;
                self.report.uploaded += 1;
                let base = base_of(&meta, Some(local), local_key);
                Ok(Applied::record(Some(meta), key, Some(base)))
            }
            ActionKind::Download { .. } => {
                let applied = download(self.transport, self.replica, action).await?;
                self.report.downloaded += 1;
                Ok(applied)
            }
            ActionKind::CreateLocalFolder { remote } => {
                let made = self.replica.create_folder(local_key).await?;
                self.report.downloaded += 1;
                Ok(Applied::record(
                    None,
                    key,
                    Some(base_of(remote, Some(&made), local_key)),
                ))
            }
            ActionKind::RecordBase { base } | ActionKind::Detach { base } => {
                Ok(Applied::record(None, key, Some(base.clone())))
            }
            ActionKind::Forget => Ok(Applied::record(None, key, None)),
            ActionKind::KeepLoserThenDownload {
                local,
                local_stamp,
                remote,
            } => {
                let loser = self.read_verified(local_key, local).await?;
                self.keep_loser(key, local_key, local, loser, *local_stamp)
                    .await?;
                let fetched = self.fetch_verified(remote).await?;
                let written = self
                    .replica
                    .write(
                        local_key,
                        fetched.content,
                        Expected::Present(local.fingerprint),
                    )
                    .await?;
                self.report.conflicts += 1;
                self.report.downloaded += 1;
                Ok(Applied::record(
                    None,
                    key,
                    Some(base_of(remote, Some(&written), local_key)),
                ))
            }
            ActionKind::Merge { local, remote } => self.merge(key, local_key, local, remote).await,
            ActionKind::DeleteRemote { remote } => {
                let stamp = self.clock.now();
                let outcome = self
                    .transport
                    .delete(DeleteRequest {
                        key: key.clone(),
                        rev: remote.rev,
                        stamp,
                        seen: self.seen,
                    })
                    .await?;
                match outcome {
                    PushOutcome::Accepted(meta) => {
                        self.report.uploaded += 1;
                        Ok(Applied::record(Some(meta), key, None))
                    }
                    PushOutcome::Conflict { current } => Ok(Applied::replan(current)),
                }
            }
            ActionKind::DeleteLocal { local, .. } => {
                if local.kind() == ItemKind::File {
                    self.replica.backup(local_key, self.clock.now()).await?;
                }
                self.replica
                    .remove(local_key, Expected::Present(local.fingerprint))
                    .await?;
                self.report.downloaded += 1;
                Ok(Applied::record(None, key, None))
            }
            ActionKind::Skip { .. } => {
                self.report.skipped += 1;
                Ok(Applied {
                    batch: StateBatch::default(),
                    replan: false,
                })
            }
        }
    }

    /// Reads a local file and checks it is still the content the plan saw.
    async fn read_verified(&self, local_key: &Key, local: &LocalItem) -> Result<Bytes> {
        let content = self.replica.read(local_key).await?;
        if Some(ContentHash::of(&content)) != local.content.hash() {
            return Err(Error::Changed {
                key: local_key.clone(),
            });
        }
        Ok(content)
    }

    /// Fetches a remote version and checks its bytes against its hash.
    async fn fetch_verified(&self, remote: &ItemMeta) -> Result<Fetched> {
        fetch_verified(self.transport, remote).await
    }

    /// Uploads a batch of `Upload` actions: reads (and re-checks) their content several at a
    /// time, then pushes them in one `push_many`. One result per action, in order.
    pub async fn upload_many(&mut self, actions: &[Action]) -> Vec<Result<Applied>> {
        let reads: Vec<Result<Bytes>> = {
            let this = &*self;
            let futures: Vec<_> = actions.iter().map(|a| this.read_for_upload(a)).collect();
            futures::stream::iter(futures)
                .buffered(self.concurrency.max(1))
                .collect()
                .await
        };
        let mut results: Vec<Option<Result<Applied>>> = Vec::with_capacity(actions.len());
        let mut requests = Vec::new();
        let mut pushed = Vec::new();
        for (i, (action, read)) in actions.iter().zip(reads).enumerate() {
            let ActionKind::Upload {
                precondition,
                stamp,
                ..
            } = &action.kind
            else {
                results.push(Some(Err(Error::item(&action.key, "not an upload"))));
                continue;
            };
            match read {
                Ok(content) => {
                    self.clock.observe(*stamp);
                    requests.push(PushRequest {
                        key: action.key.clone(),
                        precondition: *precondition,
                        hash: ContentHash::of(&content),
                        content,
                        stamp: *stamp,
                        seen: self.seen,
                    });
                    pushed.push(i);
                    results.push(None);
                }
                Err(e) => results.push(Some(Err(e))),
            }
        }
        if !requests.is_empty() {
            match self.transport.push_many(requests).await {
                Ok(outcomes) => {
                    for (i, outcome) in pushed.iter().zip(outcomes) {
                        let action = &actions[*i];
                        results[*i] = Some(outcome.and_then(|o| self.uploaded(action, o)));
                    }
                }
                Err(e) => {
                    for i in &pushed {
                        results[*i] = Some(Err(e.clone()));
                    }
                }
            }
        }
        results
            .into_iter()
            .zip(actions)
            .map(|(r, a)| r.unwrap_or_else(|| Err(Error::item(&a.key, "upload result missing"))))
            .collect()
    }

    /// Reads the content an `Upload` action sends, re-checked against the plan.
    async fn read_for_upload(&self, action: &Action) -> Result<Bytes> {
        match &action.kind {
            ActionKind::Upload { local, .. } => self.read_verified(&action.local_key, local).await,
            _ => Err(Error::item(&action.key, "not an upload")),
        }
    }

    /// Records the server's answer to an upload.
    fn uploaded(&mut self, action: &Action, outcome: PushOutcome) -> Result<Applied> {
        let ActionKind::Upload {
            local, conflict, ..
        } = &action.kind
        else {
            return Err(Error::item(&action.key, "not an upload"));
        };
        match outcome {
            PushOutcome::Accepted(meta) => {
                self.report.uploaded += 1;
                if *conflict {
                    self.report.conflicts += 1;
                }
                let base = base_of(&meta, Some(local), &action.local_key);
                Ok(Applied::record(Some(meta), &action.key, Some(base)))
            }
            PushOutcome::Conflict { current } => Ok(Applied::replan(current)),
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn upload(
        &mut self,
        key: &Key,
        local_key: &Key,
        local: &LocalItem,
        content: Bytes,
        precondition: Precondition,
        stamp: Stamp,
        conflict: bool,
    ) -> Result<Applied> {
        self.clock.observe(stamp);
        let hash = ContentHash::of(&content);
        let outcome = self
            .transport
            .push(PushRequest {
                key: key.clone(),
                precondition,
                content,
                hash,
                stamp,
                seen: self.seen,
            })
            .await?;
        match outcome {
            PushOutcome::Accepted(meta) => {
                self.report.uploaded += 1;
                if conflict {
                    self.report.conflicts += 1;
                }
                let base = base_of(&meta, Some(local), local_key);
                Ok(Applied::record(Some(meta), key, Some(base)))
            }
            PushOutcome::Conflict { current } => Ok(Applied::replan(current)),
        }
    }

    /// Keeps the losing local content: in local backups and in the server's history.
    async fn keep_loser(
        &mut self,
        key: &Key,
        local_key: &Key,
        local: &LocalItem,
        content: Bytes,
        stamp: Stamp,
    ) -> Result<()> {
        self.replica.backup(local_key, stamp).await?;
        let hash = local
            .content
            .hash()
            .unwrap_or_else(|| ContentHash::of(&content));
        self.transport
            .archive(ArchiveRequest {
                key: key.clone(),
                content,
                hash,
                stamp,
                seen: self.seen,
            })
            .await?;
        Ok(())
    }

    /// Both changed and the app merges: keep the local version, write the merge locally, and
    /// upload it over the remote version (which stays in the server's history).
    async fn merge(
        &mut self,
        key: &Key,
        local_key: &Key,
        local: &LocalItem,
        remote: &ItemMeta,
    ) -> Result<Applied> {
        let ConflictPolicy::Merge(merger) = &self.policy.conflicts else {
            return Err(Error::item(key, "merge planned without a merge policy"));
        };
        let merger = merger.clone();
        let mine = self.read_verified(local_key, local).await?;
        let theirs = self.fetch_verified(remote).await?;
        let local_stamp = Stamp::for_edit(local.modified_millis, self.clock.node(), None);
        let merged = match merger.merge(key, &mine, &theirs.content) {
            Ok(m) => Bytes::from(m),
            Err(why) => {
                // Fall back to the newest stamp; the loser is kept either way.
                tracing::warn!(%key, %why, "merge failed; newest stamp wins");
                let winner = if local_stamp > remote.stamp {
                    Winner::Local
                } else {
                    Winner::Remote
                };
                return match winner {
                    Winner::Local => {
                        self.upload(
                            key,
                            local_key,
                            local,
                            mine,
                            Precondition::Match(remote.rev),
                            local_stamp,
                            true,
                        )
                        .await
                    }
                    Winner::Remote => {
                        self.keep_loser(key, local_key, local, mine, local_stamp)
                            .await?;
                        let written = self
                            .replica
                            .write(
                                local_key,
                                theirs.content,
                                Expected::Present(local.fingerprint),
                            )
                            .await?;
                        self.report.conflicts += 1;
                        self.report.downloaded += 1;
                        Ok(Applied::record(
                            None,
                            key,
                            Some(base_of(remote, Some(&written), local_key)),
                        ))
                    }
                };
            }
        };
        self.keep_loser(key, local_key, local, mine, local_stamp)
            .await?;
        let written = self
            .replica
            .write(
                local_key,
                merged.clone(),
                Expected::Present(local.fingerprint),
            )
            .await?;
        let stamp = self
            .clock
            .now()
            .max(remote.stamp.successor(self.clock.node()));
        self.upload(
            key,
            local_key,
            &written,
            merged,
            Precondition::Match(remote.rev),
            stamp,
            true,
        )
        .await
    }
}

/// Fetches a remote version and checks its bytes against its hash.
async fn fetch_verified<T: Transport>(transport: &T, remote: &ItemMeta) -> Result<Fetched> {
    let fetched = transport.fetch(&remote.key, Some(remote.rev)).await?;
    let actual = ContentHash::of(&fetched.content);
    let expected = remote.hash.unwrap_or_else(|| ContentHash::of(b""));
    if actual != expected || fetched.version.hash != remote.hash {
        return Err(Error::HashMismatch {
            key: remote.key.clone(),
            expected,
            actual,
        });
    }
    Ok(fetched)
}

/// Applies one `Download` action: fetch, verify, write if the local item is still as planned.
async fn download<T: Transport, R: Replica>(
    transport: &T,
    replica: &R,
    action: &Action,
) -> Result<Applied> {
    let ActionKind::Download { remote, expected } = &action.kind else {
        return Err(Error::item(&action.key, "not a download"));
    };
    let fetched = fetch_verified(transport, remote).await?;
    let written = replica
        .write(&action.local_key, fetched.content, *expected)
        .await?;
    Ok(Applied::record(
        None,
        &action.key,
        Some(base_of(remote, Some(&written), &action.local_key)),
    ))
}

/// Applies `Download` actions, `concurrency` at a time. One result per action, in order.
pub(super) async fn download_many<T: Transport, R: Replica>(
    transport: &T,
    replica: &R,
    actions: &[Action],
    concurrency: usize,
) -> Vec<Result<Applied>> {
    let futures: Vec<_> = actions
        .iter()
        .map(|a| download(transport, replica, a))
        .collect();
    futures::stream::iter(futures)
        .buffered(concurrency.max(1))
        .collect()
        .await
}
