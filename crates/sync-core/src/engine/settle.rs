//! Settling applied steps: [`Settler`] records each step's result, the one place that does.
//!
//! A step's state changes go to the cached [`ClientState`] at once and to the state store in
//! batches of [`crate::EngineConfig::batch_size`]; what it did is counted in the report; skips
//! and per-item failures are reported against the step's key; a failure that stops the sync is
//! returned after what was done is committed. The settler borrows only the state, the store
//! and the status sender, so the engine can apply the next batch (through the transport, the
//! replica and the clock) while it settles this one. It applies nothing itself.

use tokio::sync::watch;

use crate::{ClientState, Error, ErrorEntry, Key, Scope, StateBatch, StateStore, SyncStatus};

use super::apply::Applied;
use super::report::Outcome;
use super::{merge_batch, Run};

/// Where the results of one phase's steps go.
pub(super) struct Settler<'a, S> {
    pub(super) store: &'a S,
    pub(super) state: &'a mut ClientState,
    pub(super) status: &'a watch::Sender<SyncStatus>,
    pub(super) batch_size: usize,
}

impl<S: StateStore> Settler<'_, S> {
    /// Settles the results of a batch of steps, one per step, in order.
    pub(super) async fn settle_all<P>(
        &mut self,
        steps: &[crate::reconcile::Step<P>],
        results: Vec<crate::Result<Applied>>,
        run: &mut Run<'_>,
    ) -> crate::Result<()> {
        for (step, result) in steps.iter().zip(results) {
            self.settle(&step.local_key, result, run).await?;
        }
        Ok(())
    }

    /// Records the outcome of one applied step (see the module doc).
    pub(super) async fn settle(
        &mut self,
        local_key: &Key,
        result: crate::Result<Applied>,
        run: &mut Run<'_>,
    ) -> crate::Result<()> {
        let pass = &mut *run.pass;
        pass.done += 1;
        self.status.send_replace(SyncStatus::Syncing {
            done: pass.done,
            total: pass.total,
            bytes_total: pass.bytes_total,
        });
        match result {
            Ok(Applied {
                mut batch,
                replan,
                outcome,
            }) => {
                if let Outcome::Uploaded { conflict: Some(c) }
                | Outcome::Downloaded { conflict: Some(c) } = &outcome
                {
                    // Kept with the step that resolved it: both or neither survive a crash.
                    batch.conflicts.push(c.clone());
                }
                pass.replan |= replan;
                pass.in_batch += 1;
                for item in &batch.remote {
                    pass.seen = pass.seen.max(item.rev);
                }
                batch.apply_to(self.state);
                merge_batch(&mut pass.batch, batch);
                run.report.count(local_key, &outcome);
                if let Outcome::Skipped { class, message } = outcome {
                    run.reported.push(ErrorEntry {
                        class,
                        scope: Scope::Key(local_key.clone()),
                        message: format!("{local_key}: {message}"),
                        first_seen_millis: pass.now,
                    });
                }
            }
            Err(e) if e.class().stops_sync() => {
                self.flush(&mut pass.batch).await?;
                return Err(e);
            }
            Err(Error::Changed { .. }) if !pass.last_pass => pass.replan = true,
            Err(e) => {
                let mut entry = ErrorEntry::from_error(&e, pass.now);
                entry.scope = Scope::Key(local_key.clone());
                run.reported.push(entry);
            }
        }
        if pass.in_batch >= self.batch_size {
            self.flush(&mut pass.batch).await?;
            pass.in_batch = 0;
        }
        Ok(())
    }

    /// Commits the accumulated batch (already applied to the cache).
    pub(super) async fn flush(&mut self, batch: &mut StateBatch) -> crate::Result<()> {
        let b = std::mem::take(batch);
        if !b.is_empty() {
            self.store.commit(b).await?;
        }
        Ok(())
    }
}
