//! Executing the steps of a [`Plan`](crate::reconcile::Plan): the I/O of a sync, through the
//! traits only.
//!
//! [`InPlace`] runs one step of a one-at-a-time phase; [`Batched`] the downloads
//! ([`download_many`]) and uploads ([`read_planned`], then [`Context::push_read`]) several at a
//! time. Every step
//! re-checks what the plan saw before it touches anything: local content is re-read and its
//! hash compared (for a batched upload, its size here and its hash by the transport, which
//! refuses content that does not match the hash it is sent with), local writes and removals pass the fingerprint the plan saw to the replica,
//! remote writes carry a precondition. Content arriving from the server is checked against its
//! hash before it is written. A loser is always kept before it is overwritten.
//!
//! Each result says what it changed in the state and what it did ([`Outcome`]), for the engine
//! to record and count. Deciding *what* to do, including a merge's fallback, is the
//! reconciler's job, not this module's; nothing here counts or reports.

use std::future::Future;

use bytes::Bytes;
use futures::StreamExt;

use crate::reconcile::{
    base_entry, BaseChange, CreateLocalFolder, CreateRemoteFolder, Download, KeepLoserThenDownload,
    Merge, MergeFallback, Removal, Skip, Step, Upload,
};
use crate::{
    ArchiveRequest, Backup, BaseEntry, Clock, ContentHash, DeleteRequest, Error, Expected, Fetched,
    FolderRequest, ItemKind, ItemMeta, Key, LocalItem, LocalWrite, MergeInput, Precondition,
    PushOutcome, PushRequest, Replica, Result, Revision, Stamp, StateBatch, Transport, VersionMeta,
};

use super::report::{ConflictRecord, ConflictVersion, ConflictWinner, Outcome};

/// What applying a step changed in the state, what it did, and whether the plan must be made
/// again.
pub(super) struct Applied {
    pub batch: StateBatch,
    pub replan: bool,
    pub outcome: Outcome,
}

impl Applied {
    fn record(
        remote: Option<ItemMeta>,
        key: &Key,
        base: Option<BaseEntry>,
        outcome: Outcome,
    ) -> Applied {
        Applied {
            batch: StateBatch {
                remote: remote.into_iter().collect(),
                base: vec![(key.clone(), base)],
                ..StateBatch::default()
            },
            replan: false,
            outcome,
        }
    }

    fn replan(remote: Option<ItemMeta>) -> Applied {
        Applied {
            batch: StateBatch {
                remote: remote.into_iter().collect(),
                ..StateBatch::default()
            },
            replan: true,
            outcome: Outcome::Nothing,
        }
    }

    /// The server's answer to a write that changes it: `on_accept` records the accepted
    /// version, a conflict asks for a new plan.
    fn pushed(outcome: PushOutcome, on_accept: impl FnOnce(ItemMeta) -> Applied) -> Applied {
        match outcome {
            PushOutcome::Accepted(meta) => on_accept(meta),
            PushOutcome::Conflict { current } => Applied::replan(current),
        }
    }
}

/// Everything a step needs.
pub(super) struct Context<'a, T, R> {
    pub transport: &'a T,
    pub replica: &'a R,
    pub clock: &'a mut Clock,
    pub seen: Revision,
}

/// A phase whose steps are applied one at a time, in plan order.
pub(super) trait InPlace: Sized {
    /// Applies one step of this phase.
    fn apply<T: Transport, R: Replica>(
        ctx: &mut Context<'_, T, R>,
        step: &Step<Self>,
    ) -> impl Future<Output = Result<Applied>> + Send;
}

/// A phase whose steps are applied in batches (several at a time, or one request each), in two
/// stages: [`Batched::prepare`] needs only shared access (the engine prepares the next batch
/// while one is applied), [`Batched::apply_batch`] finishes it.
pub(super) trait Batched: Sized {
    /// What the first stage hands the second.
    type Prepared: Send;

    /// The first stage of a batch: what can be done before the batch before it is applied.
    fn prepare<R: Replica>(
        replica: &R,
        steps: &[Step<Self>],
    ) -> impl Future<Output = Self::Prepared> + Send;

    /// Applies one prepared batch of this phase's steps: one result per step, in order.
    fn apply_batch<T: Transport, R: Replica>(
        ctx: &mut Context<'_, T, R>,
        steps: &[Step<Self>],
        prepared: Self::Prepared,
        concurrency: usize,
    ) -> impl Future<Output = Vec<Result<Applied>>> + Send;
}

impl Batched for Download {
    /// Nothing: a download's first stage is its fetch, which [`download_many`] overlaps with
    /// the writes itself.
    type Prepared = ();

    async fn prepare<R: Replica>(_: &R, _: &[Step<Download>]) {}

    async fn apply_batch<T: Transport, R: Replica>(
        ctx: &mut Context<'_, T, R>,
        steps: &[Step<Download>],
        (): (),
        concurrency: usize,
    ) -> Vec<Result<Applied>> {
        download_many(ctx.transport, ctx.replica, steps, concurrency).await
    }
}

impl Batched for Upload {
    /// The local contents, read and checked against what the plan saw.
    type Prepared = Vec<Result<(Bytes, ContentHash)>>;

    async fn prepare<R: Replica>(
        replica: &R,
        steps: &[Step<Upload>],
    ) -> Vec<Result<(Bytes, ContentHash)>> {
        read_planned(replica, steps).await
    }

    async fn apply_batch<T: Transport, R: Replica>(
        ctx: &mut Context<'_, T, R>,
        steps: &[Step<Upload>],
        reads: Vec<Result<(Bytes, ContentHash)>>,
        _: usize,
    ) -> Vec<Result<Applied>> {
        ctx.push_read(steps, reads).await
    }
}

impl InPlace for Skip {
    async fn apply<T: Transport, R: Replica>(
        _: &mut Context<'_, T, R>,
        step: &Step<Skip>,
    ) -> Result<Applied> {
        Ok(Applied {
            batch: StateBatch::default(),
            replan: false,
            outcome: Outcome::Skipped {
                class: step.op.class,
                message: step.op.message.clone(),
            },
        })
    }
}

impl InPlace for BaseChange {
    async fn apply<T: Transport, R: Replica>(
        _: &mut Context<'_, T, R>,
        step: &Step<BaseChange>,
    ) -> Result<Applied> {
        let base = step.op.entry().cloned();
        Ok(Applied::record(None, &step.key, base, Outcome::Nothing))
    }
}

impl InPlace for CreateRemoteFolder {
    async fn apply<T: Transport, R: Replica>(
        ctx: &mut Context<'_, T, R>,
        step: &Step<CreateRemoteFolder>,
    ) -> Result<Applied> {
        let stamp = ctx.clock.now();
        let meta = ctx
            .transport
            .ensure_folder(FolderRequest {
                key: step.key.clone(),
                stamp,
                seen: ctx.seen,
            })
            .await?;
        let base = base_entry(&meta, &step.local_key, &step.op.local);
        Ok(Applied::record(
            Some(meta),
            &step.key,
            Some(base),
            Outcome::Folder,
        ))
    }
}

impl InPlace for CreateLocalFolder {
    async fn apply<T: Transport, R: Replica>(
        ctx: &mut Context<'_, T, R>,
        step: &Step<CreateLocalFolder>,
    ) -> Result<Applied> {
        let made = ctx.replica.create_folder(&step.local_key).await?;
        let base = base_entry(&step.op.remote, &step.local_key, &made);
        Ok(Applied::record(
            None,
            &step.key,
            Some(base),
            Outcome::Folder,
        ))
    }
}

impl InPlace for KeepLoserThenDownload {
    async fn apply<T: Transport, R: Replica>(
        ctx: &mut Context<'_, T, R>,
        step: &Step<KeepLoserThenDownload>,
    ) -> Result<Applied> {
        let (key, local_key, op) = (&step.key, &step.local_key, &step.op);
        let loser = ctx.read_verified(local_key, &op.local).await?;
        let kept = ctx
            .keep_loser(key, local_key, &op.local, loser, op.local_stamp)
            .await?;
        let fetched = fetch_verified(ctx.transport, &op.remote).await?;
        ctx.write_winner(key, local_key, op, fetched.content, kept)
            .await
    }
}

impl InPlace for Merge {
    /// Keeps the local version, writes the merge here and uploads it over the remote version
    /// (which stays in the server's history); when the app's merge fails, executes the step's
    /// fallback with the content already read and fetched.
    async fn apply<T: Transport, R: Replica>(
        ctx: &mut Context<'_, T, R>,
        step: &Step<Merge>,
    ) -> Result<Applied> {
        let (key, local_key, op) = (&step.key, &step.local_key, &step.op);
        let mine = ctx.read_verified(local_key, &op.local).await?;
        let theirs = fetch_verified(ctx.transport, &op.remote).await?;
        let base = match op.base {
            Some((rev, hash)) => fetch_base(ctx.transport, key, rev, hash).await?,
            None => None,
        };
        let input = MergeInput {
            key,
            base: base.as_deref(),
            local: &mine,
            remote: &theirs.content,
            local_stamp: op.local_stamp,
            remote_stamp: op.remote.stamp,
        };
        let merged = match op.merger.0.merge(input) {
            Ok(m) => Bytes::from(m),
            Err(why) => {
                tracing::warn!(%key, %why, "merge failed; newest stamp wins");
                return match &op.if_merge_fails {
                    MergeFallback::Upload(upload) => ctx.upload(key, local_key, upload, mine).await,
                    MergeFallback::KeepLoserThenDownload(keep) => {
                        let kept = ctx
                            .keep_loser(key, local_key, &keep.local, mine, keep.local_stamp)
                            .await?;
                        ctx.write_winner(key, local_key, keep, theirs.content, kept)
                            .await
                    }
                };
            }
        };
        let (backup, archived) = ctx
            .keep_loser(key, local_key, &op.local, mine, op.local_stamp)
            .await?;
        let written = ctx
            .replica
            .write(
                local_key,
                merged.clone(),
                Expected::Present(op.local.fingerprint),
            )
            .await?;
        let stamp = ctx
            .clock
            .now()
            .max(op.remote.stamp.successor(ctx.clock.node()));
        let upload = Upload {
            local: written,
            precondition: Precondition::Match(op.remote.rev),
            stamp,
            conflict: Some(op.remote.clone()),
        };
        let mut applied = ctx.upload(key, local_key, &upload, merged).await?;
        if let Outcome::Uploaded {
            conflict: Some(record),
        } = &mut applied.outcome
        {
            record.winner = ConflictWinner::Merged;
            record.local = ConflictVersion {
                stamp: op.local_stamp,
                hash: archived.hash.unwrap_or(record.local.hash),
                rev: archived.rev,
            };
            record.backup = backup;
        }
        Ok(applied)
    }
}

impl InPlace for Removal {
    async fn apply<T: Transport, R: Replica>(
        ctx: &mut Context<'_, T, R>,
        step: &Step<Removal>,
    ) -> Result<Applied> {
        let (key, local_key) = (&step.key, &step.local_key);
        match &step.op {
            Removal::DeleteRemote { rev } => {
                let stamp = ctx.clock.now();
                let outcome = ctx
                    .transport
                    .delete(DeleteRequest {
                        key: key.clone(),
                        rev: *rev,
                        stamp,
                        seen: ctx.seen,
                    })
                    .await?;
                Ok(Applied::pushed(outcome, |meta| {
                    let done = match meta.kind {
                        ItemKind::Folder => Outcome::Folder,
                        ItemKind::File => Outcome::Uploaded { conflict: None },
                    };
                    Applied::record(Some(meta), key, None, done)
                }))
            }
            Removal::DeleteLocal { local } => {
                if local.kind() == ItemKind::File {
                    ctx.replica.backup(local_key, ctx.clock.now()).await?;
                }
                ctx.replica
                    .remove(local_key, Expected::Present(local.fingerprint))
                    .await?;
                let done = match local.kind() {
                    ItemKind::Folder => Outcome::Folder,
                    ItemKind::File => Outcome::Downloaded { conflict: None },
                };
                Ok(Applied::record(None, key, None, done))
            }
        }
    }
}

impl<T: Transport, R: Replica> Context<'_, T, R> {
    /// Reads a local file and checks it is still the content the plan saw.
    async fn read_verified(&self, local_key: &Key, local: &LocalItem) -> Result<Bytes> {
        let content = self.replica.read(local_key).await?;
        as_planned(local_key, local, content).map(|(content, _)| content)
    }

    /// Pushes a batch of steps whose contents [`read_planned`] read, in one `push_many`. One
    /// result per step, in order; a refused hash is the file having changed since the scan
    /// ([`Error::Changed`]).
    pub async fn push_read(
        &mut self,
        steps: &[Step<Upload>],
        reads: Vec<Result<(Bytes, ContentHash)>>,
    ) -> Vec<Result<Applied>> {
        let mut results: Vec<Option<Result<Applied>>> = Vec::with_capacity(steps.len());
        let mut requests = Vec::new();
        let mut pushed = Vec::new();
        for (i, (step, read)) in steps.iter().zip(reads).enumerate() {
            match read {
                Ok((content, hash)) => {
                    requests.push(self.push_request(&step.key, &step.op, content, hash));
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
                        let step = &steps[*i];
                        results[*i] = Some(
                            changed_if_mismatched(&step.local_key, outcome)
                                .map(|o| uploaded(&step.key, &step.local_key, &step.op, o)),
                        );
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
            .zip(steps)
            .map(|(r, s)| r.unwrap_or_else(|| Err(Error::item(&s.key, "upload result missing"))))
            .collect()
    }

    /// The request that uploads `content` as `op` says, the clock having seen its stamp.
    fn push_request(
        &mut self,
        key: &Key,
        op: &Upload,
        content: Bytes,
        hash: ContentHash,
    ) -> PushRequest {
        self.clock.observe(op.stamp);
        PushRequest {
            key: key.clone(),
            precondition: op.precondition,
            hash,
            content,
            stamp: op.stamp,
            seen: self.seen,
        }
    }

    /// Uploads `content` on its own, as `op` says.
    async fn upload(
        &mut self,
        key: &Key,
        local_key: &Key,
        op: &Upload,
        content: Bytes,
    ) -> Result<Applied> {
        let hash = ContentHash::of(&content);
        let request = self.push_request(key, op, content, hash);
        let outcome = self.transport.push(request).await?;
        Ok(uploaded(key, local_key, op, outcome))
    }

    /// Keeps the losing local content: in local backups and in the server's history. Returns
    /// both places.
    async fn keep_loser(
        &mut self,
        key: &Key,
        local_key: &Key,
        local: &LocalItem,
        content: Bytes,
        stamp: Stamp,
    ) -> Result<(Option<Backup>, VersionMeta)> {
        let backup = self.replica.backup(local_key, stamp).await?;
        let hash = local
            .content
            .hash()
            .unwrap_or_else(|| ContentHash::of(&content));
        let archived = self
            .transport
            .archive(ArchiveRequest {
                key: key.clone(),
                content,
                hash,
                stamp,
                seen: self.seen,
            })
            .await?;
        Ok((backup, archived))
    }

    /// Writes a conflict's winning remote content over the (already kept) local loser.
    async fn write_winner(
        &mut self,
        key: &Key,
        local_key: &Key,
        op: &KeepLoserThenDownload,
        content: Bytes,
        (backup, archived): (Option<Backup>, VersionMeta),
    ) -> Result<Applied> {
        let written = self
            .replica
            .write(local_key, content, Expected::Present(op.local.fingerprint))
            .await?;
        let base = base_entry(&op.remote, local_key, &written);
        let record = ConflictRecord {
            key: key.clone(),
            winner: ConflictWinner::Remote,
            local: ConflictVersion {
                stamp: op.local_stamp,
                hash: archived
                    .hash
                    .or(op.local.content.hash())
                    .unwrap_or_else(|| ContentHash::of(b"")),
                rev: archived.rev,
            },
            remote: remote_version(&op.remote),
            current: op.remote.rev,
            backup,
        };
        let done = Outcome::Downloaded {
            conflict: Some(record),
        };
        Ok(Applied::record(None, key, Some(base), done))
    }
}

/// Records the server's answer to an upload.
fn uploaded(key: &Key, local_key: &Key, op: &Upload, outcome: PushOutcome) -> Applied {
    Applied::pushed(outcome, |meta| {
        let base = base_entry(&meta, local_key, &op.local);
        let conflict = op.conflict.as_ref().map(|remote| ConflictRecord {
            key: key.clone(),
            winner: ConflictWinner::Local,
            local: ConflictVersion {
                stamp: meta.stamp,
                hash: meta.hash.unwrap_or_else(|| ContentHash::of(b"")),
                rev: meta.rev,
            },
            remote: remote_version(remote),
            current: meta.rev,
            backup: None,
        });
        let done = Outcome::Uploaded { conflict };
        Applied::record(Some(meta), key, Some(base), done)
    })
}

/// A remote version as one side of a conflict.
fn remote_version(remote: &ItemMeta) -> ConflictVersion {
    ConflictVersion {
        stamp: remote.stamp,
        hash: remote.hash.unwrap_or_else(|| ContentHash::of(b"")),
        rev: remote.rev,
    }
}

/// Fetches a remote version and checks its bytes against its hash.
async fn fetch_verified<T: Transport>(transport: &T, remote: &ItemMeta) -> Result<Fetched> {
    let fetched = transport.fetch(&remote.key, Some(remote.rev)).await?;
    verified(remote, fetched)
}

/// The content of `key` at revision `rev` (a merge's base), checked against `hash`; `None` when
/// the server no longer has that version (the merge then runs without a base).
async fn fetch_base<T: Transport>(
    transport: &T,
    key: &Key,
    rev: Revision,
    hash: ContentHash,
) -> Result<Option<Bytes>> {
    match transport.fetch(key, Some(rev)).await {
        Ok(fetched) => {
            let actual = ContentHash::of(&fetched.content);
            if actual != hash {
                return Err(Error::HashMismatch {
                    key: key.clone(),
                    expected: hash,
                    actual,
                });
            }
            Ok(Some(fetched.content))
        }
        Err(Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Checks fetched content against the remote version the plan saw.
fn verified(remote: &ItemMeta, fetched: Fetched) -> Result<Fetched> {
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

/// Applies one download: fetch, verify, write if the local item is still as planned.
async fn download<T: Transport, R: Replica>(
    transport: &T,
    replica: &R,
    step: &Step<Download>,
) -> Result<Applied> {
    let fetched = fetch_verified(transport, &step.op.remote).await?;
    write_download(replica, step, fetched.content).await
}

/// Writes a download's verified content if the local item is still as planned.
async fn write_download<R: Replica>(
    replica: &R,
    step: &Step<Download>,
    content: Bytes,
) -> Result<Applied> {
    let written = replica
        .write(&step.local_key, content, step.op.expected)
        .await?;
    Ok(downloaded(step, &written))
}

/// `content` read from `local_key` with its hash, if it is still the content the plan saw
/// (`local`); otherwise [`Error::Changed`].
fn as_planned(local_key: &Key, local: &LocalItem, content: Bytes) -> Result<(Bytes, ContentHash)> {
    let hash = ContentHash::of(&content);
    if Some(hash) != local.content.hash() {
        return Err(Error::Changed {
            key: local_key.clone(),
        });
    }
    Ok((content, hash))
}

/// What a download that wrote `written` changed and did.
fn downloaded(step: &Step<Download>, written: &LocalItem) -> Applied {
    let base = base_entry(&step.op.remote, &step.local_key, written);
    let done = Outcome::Downloaded { conflict: None };
    Applied::record(None, &step.key, Some(base), done)
}

/// Downloads of files up to this size are fetched together ([`Transport::fetch_many`]).
pub(super) const FETCH_TOGETHER_BYTES: u64 = 64 * 1024;
/// Files fetched per [`Transport::fetch_many`] call.
pub(super) const FETCH_TOGETHER: usize = 500;

/// Reads the contents of upload steps in one [`Replica::read_many`], each with the hash the
/// plan saw. The content is not hashed again here: a read of another size is
/// [`Error::Changed`] at once, and for the rest the transport checks the content against that
/// hash as it stores it (a transport refuses a mismatch with [`Error::HashMismatch`], which
/// [`Context::push_read`] turns into `Changed`), so each uploaded byte is hashed once on this
/// side (by the scan) instead of twice.
async fn read_planned<R: Replica>(
    replica: &R,
    steps: &[Step<Upload>],
) -> Vec<Result<(Bytes, ContentHash)>> {
    let keys: Vec<Key> = steps.iter().map(|s| s.local_key.clone()).collect();
    replica
        .read_many(&keys)
        .await
        .into_iter()
        .zip(steps)
        .map(|(read, s)| {
            let content = read?;
            match s.op.local.content.hash() {
                Some(hash) if content.len() as u64 == s.op.local.size => Ok((content, hash)),
                Some(_) => Err(Error::Changed {
                    key: s.local_key.clone(),
                }),
                None => as_planned(&s.local_key, &s.op.local, content),
            }
        })
        .collect()
}

/// A push's answer, where a refused hash means the file changed after the scan hashed it
/// (the push carried the scan's hash, see [`read_planned`]): the step is planned again.
fn changed_if_mismatched(local_key: &Key, outcome: Result<PushOutcome>) -> Result<PushOutcome> {
    outcome.map_err(|e| match e {
        Error::HashMismatch { .. } => Error::Changed {
            key: local_key.clone(),
        },
        other => other,
    })
}

/// Applies downloads: small files fetched together ([`FETCH_TOGETHER`] per
/// [`Transport::fetch_many`], one request where the transport batches), larger ones alone;
/// checks and writes `concurrency` at a time. One result per step, in order.
pub(super) async fn download_many<T: Transport, R: Replica>(
    transport: &T,
    replica: &R,
    steps: &[Step<Download>],
    concurrency: usize,
) -> Vec<Result<Applied>> {
    let mut results: Vec<Option<Result<Applied>>> = (0..steps.len()).map(|_| None).collect();
    let small: Vec<usize> = (0..steps.len())
        .filter(|i| steps[*i].op.remote.size <= FETCH_TOGETHER_BYTES)
        .collect();
    for chunk in small.chunks(FETCH_TOGETHER).filter(|c| c.len() > 1) {
        let reqs = chunk
            .iter()
            .map(|i| {
                (
                    steps[*i].op.remote.key.clone(),
                    Some(steps[*i].op.remote.rev),
                )
            })
            .collect();
        match transport.fetch_many(reqs).await {
            Ok(fetched) => {
                // Verified content goes to the replica in one `write_many`.
                let mut writes = Vec::new();
                let mut written = Vec::new();
                for (i, f) in chunk.iter().zip(fetched) {
                    let step = &steps[*i];
                    match f.and_then(|f| verified(&step.op.remote, f)) {
                        Ok(f) => {
                            writes.push(LocalWrite {
                                key: step.local_key.clone(),
                                content: f.content,
                                expected: step.op.expected,
                            });
                            written.push(*i);
                        }
                        Err(e) => results[*i] = Some(Err(e)),
                    }
                }
                for (i, w) in written.into_iter().zip(replica.write_many(writes).await) {
                    results[i] = Some(w.map(|item| downloaded(&steps[i], &item)));
                }
            }
            Err(e) => {
                for i in chunk {
                    results[*i] = Some(Err(e.clone()));
                }
            }
        }
    }
    let rest: Vec<usize> = (0..steps.len()).filter(|i| results[*i].is_none()).collect();
    let futures: Vec<_> = rest
        .iter()
        .map(|i| download(transport, replica, &steps[*i]))
        .collect();
    let done: Vec<Result<Applied>> = futures::stream::iter(futures)
        .buffered(concurrency.max(1))
        .collect()
        .await;
    for (i, r) in rest.into_iter().zip(done) {
        results[i] = Some(r);
    }
    results
        .into_iter()
        .zip(steps)
        .map(|(r, s)| r.unwrap_or_else(|| Err(Error::item(&s.key, "download result missing"))))
        .collect()
}
