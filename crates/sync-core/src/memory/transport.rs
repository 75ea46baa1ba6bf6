//! [`LocalTransport`]: the in-process [`Transport`] over any [`ServerStore`], for one tenant.
//!
//! It forwards every call to the store with its tenant and adds nothing: no serialisation, no
//! retries, no caching. It must not change the store's answers, so an engine test through it
//! exercises exactly the store's semantics.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::{
    ArchiveRequest, ChangePage, Cursor, DeleteRequest, Fetched, FolderRequest, ItemMeta, Key,
    PushOutcome, PushRequest, Result, Revision, ServerStore, TenantId, Transport, VersionMeta,
};

/// A [`Transport`] that calls a [`ServerStore`] in the same process as one tenant.
///
/// Cloning is cheap and shares the store.
#[derive(Debug)]
pub struct LocalTransport<S: ServerStore> {
    store: Arc<S>,
    tenant: TenantId,
}

impl<S: ServerStore> Clone for LocalTransport<S> {
    fn clone(&self) -> Self {
        LocalTransport {
            store: self.store.clone(),
            tenant: self.tenant.clone(),
        }
    }
}

impl<S: ServerStore> LocalTransport<S> {
    /// A transport speaking to `store` as `tenant`.
    pub fn new(store: Arc<S>, tenant: TenantId) -> LocalTransport<S> {
        LocalTransport { store, tenant }
    }

    /// The store it speaks to.
    pub fn store(&self) -> &Arc<S> {
        &self.store
    }

    /// The tenant it speaks as.
    pub fn tenant(&self) -> &TenantId {
        &self.tenant
    }
}

#[async_trait]
impl<S: ServerStore> Transport for LocalTransport<S> {
    async fn changes(&self, since: Option<&Cursor>, limit: usize) -> Result<ChangePage> {
        self.store.changes(&self.tenant, since, limit).await
    }

    async fn fetch(&self, key: &Key, rev: Option<Revision>) -> Result<Fetched> {
        self.store.fetch(&self.tenant, key, rev).await
    }

    async fn push(&self, req: PushRequest) -> Result<PushOutcome> {
        self.store.push(&self.tenant, req).await
    }

    async fn fetch_many(&self, reqs: Vec<(Key, Option<Revision>)>) -> Result<Vec<Result<Fetched>>> {
        let fetched = self.store.fetch_many(&self.tenant, reqs, u64::MAX).await?;
        Ok(fetched
            .into_iter()
            .map(|f| {
                f.unwrap_or_else(|| Err(crate::Error::storage("the store left an item unfetched")))
            })
            .collect())
    }

    async fn push_many(&self, reqs: Vec<PushRequest>) -> Result<Vec<Result<PushOutcome>>> {
        self.store.push_many(&self.tenant, reqs).await
    }

    async fn delete(&self, req: DeleteRequest) -> Result<PushOutcome> {
        self.store.delete(&self.tenant, req).await
    }

    async fn ensure_folder(&self, req: FolderRequest) -> Result<ItemMeta> {
        self.store.ensure_folder(&self.tenant, req).await
    }

    async fn history(&self, key: &Key) -> Result<Vec<VersionMeta>> {
        crate::full_history(&*self.store, &self.tenant, key).await
    }

    async fn archive(&self, req: ArchiveRequest) -> Result<VersionMeta> {
        self.store.archive(&self.tenant, req).await
    }

    async fn max_item_bytes(&self) -> Result<Option<u64>> {
        Ok(Some(self.store.max_item_bytes()))
    }

    async fn wait(&self, since: Option<&Cursor>, timeout: Duration) -> Result<bool> {
        self.store.wait(&self.tenant, since, timeout).await
    }
}
