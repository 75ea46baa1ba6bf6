//! Scopes: [`ScopedTransport`], through which an engine syncs one key prefix (a namespace) of
//! its tenant and nothing else.
//!
//! Several engines of one tenant (an app's settings, a notes folder) each take their own
//! prefix, so their items never meet: an engine scoped to `notes` sees the server's
//! `notes/today.txt` as `today.txt`, and what it writes as `today.txt` lands in
//! `notes/today.txt`. Keys outside the prefix never reach the engine; the prefix's own
//! folder row, and the folders above it, neither. Without a scope an engine syncs the whole
//! tenant, and two unscoped engines of one tenant sync each other's items (docs/SPEC.md §1).
//!
//! The change feed stays the tenant's: the wrapper reads every page and keeps the entries under
//! its prefix, so a scoped engine pulls (and long-polls on) its neighbours' changes too. This
//! module only renames keys and filters; it holds no sync logic.

use std::time::Duration;

use async_trait::async_trait;

use crate::{
    ArchiveRequest, ChangePage, Cursor, DeleteRequest, Error, Fetched, FolderRequest, ItemMeta,
    Key, PushOutcome, PushRequest, Result, Revision, Transport, VersionMeta,
};

/// The tenant's change pages one [`ScopedTransport::changes`] reads at most to fill its page.
pub const MAX_PAGES_PER_PAGE: usize = 64;

/// Change-feed entries per request while [`ScopedTransport`]'s `wait` reads past changes
/// outside its scope.
const WAIT_PAGE: usize = 1000;

/// A [`Transport`] that shows the engine only the keys under one prefix, with the prefix
/// taken off (see the module doc).
///
/// ```
/// use std::sync::Arc;
/// use sync_core::memory::{LocalTransport, MemoryServerStore};
/// use sync_core::{Key, ScopedTransport, ServerConfig, TenantId};
///
/// let server = Arc::new(MemoryServerStore::new(ServerConfig::default()));
/// let tenant = TenantId::new("alice");
/// let notes = ScopedTransport::new(
///     LocalTransport::new(server.clone(), tenant.clone()),
///     Key::new("notes").unwrap(),
/// );
/// let settings = ScopedTransport::new(
///     LocalTransport::new(server, tenant),
///     Key::new("settings").unwrap(),
/// );
/// assert_eq!(notes.prefix().as_str(), "notes");
/// # let _ = settings;
/// ```
#[derive(Debug, Clone)]
pub struct ScopedTransport<T> {
    inner: T,
    prefix: Key,
}

impl<T: Transport> ScopedTransport<T> {
    /// `inner`, narrowed to the keys under `prefix` (a key: one or more path segments).
    pub fn new(inner: T, prefix: Key) -> ScopedTransport<T> {
        ScopedTransport { inner, prefix }
    }

    /// The prefix every key of this scope has on the server.
    pub fn prefix(&self) -> &Key {
        &self.prefix
    }

    /// The transport underneath, which sees the whole tenant.
    pub fn inner(&self) -> &T {
        &self.inner
    }

    /// The server's name for the engine's `key`. A key too long once prefixed is an item
    /// error on that key.
    fn outside(&self, key: &Key) -> Result<Key> {
        Key::new(format!("{}/{}", self.prefix, key)).map_err(|e| Error::Item {
            key: key.clone(),
            message: format!(
                "cannot be synced under the scope {}: {e}; shorten the name",
                self.prefix
            ),
        })
    }

    /// The engine's name for the server's `key`, if it is under the prefix (the prefix
    /// itself is not).
    fn inside(&self, key: &Key) -> Option<Key> {
        let rest = key
            .as_str()
            .strip_prefix(self.prefix.as_str())?
            .strip_prefix('/')?;
        // A part of a valid key after a `/` is a valid key: the rules are per segment, and
        // it is shorter.
        Key::new(rest).ok()
    }

    /// `meta` renamed for the engine; one outside the scope is the server's mistake.
    fn meta_inside(&self, mut meta: ItemMeta) -> Result<ItemMeta> {
        match self.inside(&meta.key) {
            Some(key) => {
                meta.key = key;
                Ok(meta)
            }
            None => Err(Error::Item {
                key: meta.key.clone(),
                message: format!(
                    "the server answered with a key outside the scope {}; report this to its operator",
                    self.prefix
                ),
            }),
        }
    }

    fn outcome_inside(&self, outcome: PushOutcome) -> Result<PushOutcome> {
        Ok(match outcome {
            PushOutcome::Accepted(meta) => PushOutcome::Accepted(self.meta_inside(meta)?),
            PushOutcome::Conflict { current } => PushOutcome::Conflict {
                current: current.map(|m| self.meta_inside(m)).transpose()?,
            },
        })
    }

    /// `e` with the key it names renamed for the engine (when it names one in the scope).
    fn error_inside(&self, e: Error) -> Error {
        let rename = |key: Key| self.inside(&key).unwrap_or(key);
        match e {
            Error::NotFound { key } => Error::NotFound { key: rename(key) },
            Error::HashMismatch {
                key,
                expected,
                actual,
            } => Error::HashMismatch {
                key: rename(key),
                expected,
                actual,
            },
            Error::TooLarge { key, size, limit } => Error::TooLarge {
                key: rename(key),
                size,
                limit,
            },
            Error::Changed { key } => Error::Changed { key: rename(key) },
            Error::Item { key, message } => Error::Item {
                key: rename(key),
                message,
            },
            other => other,
        }
    }

    /// Whether the tenant's feed after `since` holds a change in the scope, and where the
    /// feed ends. Past [`MAX_PAGES_PER_PAGE`] pages it answers yes (the engine's sync then
    /// reads on); a cursor that does not move ends the look.
    async fn any_in_scope_after(&self, since: Option<&Cursor>) -> Result<(bool, Option<Cursor>)> {
        let mut cursor = since.cloned();
        for _ in 0..MAX_PAGES_PER_PAGE {
            let page = self.inner.changes(cursor.as_ref(), WAIT_PAGE).await?;
            if page.changes.iter().any(|m| self.inside(&m.key).is_some()) {
                return Ok((true, Some(page.cursor)));
            }
            let moved = cursor.as_ref() != Some(&page.cursor);
            cursor = Some(page.cursor);
            if !page.more || !moved {
                return Ok((false, cursor));
            }
        }
        Ok((true, cursor))
    }

    /// One inner batch call for the requests whose keys can be prefixed (`outside`); the others
    /// fail alone with their own error. One result per request, in order, each renamed back
    /// for the engine (`inside`, and the key of its error).
    async fn batched<Q, S, A, Fut>(
        &self,
        reqs: Vec<Q>,
        what: &str,
        outside: impl Fn(Q) -> Result<S> + Send,
        send: impl FnOnce(Vec<S>) -> Fut + Send,
        inside: impl Fn(A) -> Result<A> + Send,
    ) -> Result<Vec<Result<A>>>
    where
        Q: Send,
        S: Send,
        A: Send,
        Fut: std::future::Future<Output = Result<Vec<Result<A>>>> + Send,
    {
        let mut results: Vec<Option<Result<A>>> = Vec::with_capacity(reqs.len());
        let (mut sent, mut batch) = (Vec::new(), Vec::new());
        for (i, req) in reqs.into_iter().enumerate() {
            match outside(req) {
                Ok(req) => {
                    sent.push(i);
                    batch.push(req);
                    results.push(None);
                }
                Err(e) => results.push(Some(Err(e))),
            }
        }
        if !batch.is_empty() {
            let answers = send(batch).await.map_err(|e| self.error_inside(e))?;
            if answers.len() != sent.len() {
                return Err(Error::offline(format!(
                    "the server answered {} results for {} {what}; they are retried",
                    answers.len(),
                    sent.len()
                )));
            }
            for (i, answer) in sent.into_iter().zip(answers) {
                results[i] = Some(answer.map_err(|e| self.error_inside(e)).and_then(&inside));
            }
        }
        Ok(results.into_iter().flatten().collect())
    }

    fn push_outside(&self, mut req: PushRequest) -> Result<PushRequest> {
        req.key = self.outside(&req.key)?;
        Ok(req)
    }
}

#[async_trait]
impl<T: Transport> Transport for ScopedTransport<T> {
    /// Fills the page from as many of the tenant's pages as it takes (at most
    /// `MAX_PAGES_PER_PAGE`), so neighbours' changes do not shrink it; stops early when
    /// the server's cursor does not move (the engine then sees that and stops).
    async fn changes(&self, since: Option<&Cursor>, limit: usize) -> Result<ChangePage> {
        // A limit of 0 still returns entries, as every transport does.
        let limit = limit.max(1);
        let mut changes = Vec::new();
        let mut cursor = since.cloned();
        let mut more = true;
        for _ in 0..MAX_PAGES_PER_PAGE {
            let want = limit - changes.len();
            let page = self.inner.changes(cursor.as_ref(), want).await?;
            let moved = cursor.as_ref() != Some(&page.cursor);
            changes.extend(page.changes.into_iter().filter_map(|mut meta| {
                meta.key = self.inside(&meta.key)?;
                Some(meta)
            }));
            cursor = Some(page.cursor);
            more = page.more;
            if !more || !moved || changes.len() >= limit {
                break;
            }
        }
        let cursor = match cursor {
            Some(c) => c,
            None => return Err(Error::offline("the server sent no cursor; retrying")),
        };
        Ok(ChangePage {
            changes,
            cursor,
            more,
        })
    }

    async fn fetch(&self, key: &Key, rev: Option<Revision>) -> Result<Fetched> {
        let outside = self.outside(key)?;
        self.inner
            .fetch(&outside, rev)
            .await
            .map_err(|e| self.error_inside(e))
    }

    async fn push(&self, req: PushRequest) -> Result<PushOutcome> {
        let req = self.push_outside(req)?;
        let outcome = self
            .inner
            .push(req)
            .await
            .map_err(|e| self.error_inside(e))?;
        self.outcome_inside(outcome)
    }

    async fn push_many(&self, reqs: Vec<PushRequest>) -> Result<Vec<Result<PushOutcome>>> {
        self.batched(
            reqs,
            "pushes",
            |req| self.push_outside(req),
            |batch| self.inner.push_many(batch),
            |outcome| self.outcome_inside(outcome),
        )
        .await
    }

    async fn fetch_many(&self, reqs: Vec<(Key, Option<Revision>)>) -> Result<Vec<Result<Fetched>>> {
        self.batched(
            reqs,
            "fetches",
            |(key, rev)| Ok((self.outside(&key)?, rev)),
            |batch| self.inner.fetch_many(batch),
            Ok,
        )
        .await
    }

    async fn delete(&self, mut req: DeleteRequest) -> Result<PushOutcome> {
        req.key = self.outside(&req.key)?;
        let outcome = self
            .inner
            .delete(req)
            .await
            .map_err(|e| self.error_inside(e))?;
        self.outcome_inside(outcome)
    }

    async fn ensure_folder(&self, mut req: FolderRequest) -> Result<ItemMeta> {
        req.key = self.outside(&req.key)?;
        let meta = self
            .inner
            .ensure_folder(req)
            .await
            .map_err(|e| self.error_inside(e))?;
        self.meta_inside(meta)
    }

    async fn history(&self, key: &Key) -> Result<Vec<VersionMeta>> {
        let outside = self.outside(key)?;
        self.inner
            .history(&outside)
            .await
            .map_err(|e| self.error_inside(e))
    }

    async fn archive(&self, mut req: ArchiveRequest) -> Result<VersionMeta> {
        req.key = self.outside(&req.key)?;
        self.inner
            .archive(req)
            .await
            .map_err(|e| self.error_inside(e))
    }

    async fn max_item_bytes(&self) -> Result<Option<u64>> {
        self.inner.max_item_bytes().await
    }

    /// Waits for a change in the scope: the tenant's changes outside it are read past (one
    /// change request per wake-up) and waited after.
    async fn wait(&self, since: Option<&Cursor>, timeout: Duration) -> Result<bool> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut from = since.cloned();
        loop {
            let (found, end) = self.any_in_scope_after(from.as_ref()).await?;
            if found {
                return Ok(true);
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() || !self.inner.wait(end.as_ref(), left).await? {
                return Ok(false);
            }
            from = end;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::memory::{LocalTransport, MemoryServerStore};
    use crate::{ContentHash, Precondition, ServerConfig, Stamp, TenantId};

    fn scoped(
        server: &Arc<MemoryServerStore>,
        prefix: &str,
    ) -> ScopedTransport<LocalTransport<MemoryServerStore>> {
        ScopedTransport::new(
            LocalTransport::new(server.clone(), TenantId::new("t")),
            Key::new(prefix).unwrap(),
        )
    }

    fn push(key: &str, content: &'static [u8]) -> PushRequest {
        PushRequest {
            key: Key::new(key).unwrap(),
            precondition: Precondition::Create,
            hash: ContentHash::of(content),
            content: bytes::Bytes::from_static(content),
            stamp: Stamp::default(),
            seen: Revision(0),
        }
    }

    #[tokio::test]
    async fn each_scope_sees_only_its_own_keys_without_the_prefix() {
        let server = Arc::new(MemoryServerStore::new(ServerConfig::default()));
        let (notes, app) = (scoped(&server, "notes"), scoped(&server, "app/data"));
        let accepted = notes.push(push("today.txt", b"n")).await.unwrap();
        assert!(matches!(&accepted, PushOutcome::Accepted(m) if m.key.as_str() == "today.txt"));
        app.push(push("settings.json", b"{}")).await.unwrap();

        let page = notes.changes(None, 100).await.unwrap();
        let keys: Vec<&str> = page.changes.iter().map(|m| m.key.as_str()).collect();
        assert_eq!(
            keys,
            ["today.txt"],
            "no prefix folder, nothing of the other scope"
        );
        let page = app.changes(None, 100).await.unwrap();
        let keys: Vec<&str> = page.changes.iter().map(|m| m.key.as_str()).collect();
        assert_eq!(keys, ["settings.json"]);

        // The whole tenant holds both, under their prefixes.
        let all = notes.inner().changes(None, 100).await.unwrap();
        let keys: Vec<&str> = all.changes.iter().map(|m| m.key.as_str()).collect();
        assert!(
            keys.contains(&"notes/today.txt") && keys.contains(&"app/data/settings.json"),
            "{keys:?}"
        );

        let fetched = notes
            .fetch(&Key::new("today.txt").unwrap(), None)
            .await
            .unwrap();
        assert_eq!(&fetched.content[..], b"n");
        match app.fetch(&Key::new("today.txt").unwrap(), None).await {
            Err(Error::NotFound { key }) => assert_eq!(key.as_str(), "today.txt"),
            other => panic!("expected NotFound under the engine's name, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn two_engines_of_one_tenant_keep_their_items_apart() {
        use crate::memory::{MemoryReplica, MemoryStateStore};
        use crate::{Engine, EngineConfig};
        let server = Arc::new(MemoryServerStore::new(ServerConfig::default()));
        let engine = |transport| {
            Engine::new(
                transport,
                MemoryStateStore::default(),
                MemoryReplica::default(),
                EngineConfig::default(),
            )
        };
        let mut app = engine(scoped(&server, "app"));
        let mut notes = engine(scoped(&server, "notes"));
        let settings = Key::new("settings.json").unwrap();
        let today = Key::new("today.txt").unwrap();
        app.replica().put(&settings, "{}");
        notes.replica().put(&today, "n");
        for _ in 0..2 {
            app.sync_once().await.unwrap();
            notes.sync_once().await.unwrap();
        }
        assert_eq!(app.replica().get(&today), None, "a note in the app's data");
        assert_eq!(
            notes.replica().get(&settings),
            None,
            "settings in the notes"
        );

        // A second device of the notes scope gets the note alone; an unscoped engine of the
        // tenant sees both under their prefixes.
        let mut laptop = engine(scoped(&server, "notes"));
        let report = laptop.sync_once().await.unwrap();
        assert_eq!((report.downloaded, report.folders), (1, 0), "{report:?}");
        assert_eq!(laptop.replica().get(&today).as_deref(), Some(&b"n"[..]));
        let mut all = Engine::new(
            LocalTransport::new(server.clone(), TenantId::new("t")),
            MemoryStateStore::default(),
            MemoryReplica::default(),
            EngineConfig::default(),
        );
        all.sync_once().await.unwrap();
        let under = |k: &str| all.replica().get(&Key::new(k).unwrap());
        assert_eq!(under("notes/today.txt").as_deref(), Some(&b"n"[..]));
        assert_eq!(under("app/settings.json").as_deref(), Some(&b"{}"[..]));
    }

    #[tokio::test]
    async fn a_key_too_long_once_prefixed_fails_alone_in_a_batch() {
        let server = Arc::new(MemoryServerStore::new(ServerConfig::default()));
        let notes = scoped(&server, "notes");
        let long = "x".repeat(255);
        let long_key = format!("{long}/{long}/{long}/{long}");
        // 1,023 bytes: a valid key, which the prefix takes past the 1,024-byte limit.
        let key = Key::new(&long_key).unwrap();
        let mut too_long = push("ok.txt", b"a");
        too_long.key = key;
        let results = notes
            .push_many(vec![push("ok.txt", b"a"), too_long])
            .await
            .unwrap();
        assert!(
            matches!(results[0], Ok(PushOutcome::Accepted(_))),
            "{:?}",
            results[0]
        );
        assert!(
            matches!(results[1], Err(Error::Item { .. })),
            "{:?}",
            results[1]
        );
    }
}
