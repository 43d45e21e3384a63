//! In-memory store: a [`Cache`] behind the [`Store`] trait.
//!
//! Nothing is persisted; every write is applied under one lock, so writes are
//! linearizable and watch events arrive in revision order. Used by tests and
//! by ephemeral clusters.

use crate::cache::{Cache, CacheOptions, WriteOp};
use crate::{KeyValue, ListResult, Result, Revision, Store, WatchReceiver};

/// A complete, non-durable [`Store`].
pub struct MemoryStore {
    cache: Cache,
}

impl MemoryStore {
    /// An empty store with default options.
    pub fn new() -> Self {
        Self::with_options(CacheOptions::default())
    }

    /// An empty store with the given history and watcher limits.
    pub fn with_options(opts: CacheOptions) -> Self {
        Self {
            cache: Cache::new(opts),
        }
    }

    /// The underlying cache.
    pub fn cache(&self) -> &Cache {
        &self.cache
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait::async_trait]
impl Store for MemoryStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        Ok(self.cache.get(key))
    }

    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<ListResult> {
        Ok(self.cache.list(prefix, start_after, limit))
    }

    async fn list_at(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        revision: Revision,
    ) -> Result<ListResult> {
        self.cache.list_at(prefix, start_after, limit, revision)
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue> {
        self.cache.write(WriteOp::Create {
            key: key.to_string(),
            value,
        })
    }

    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: Option<Revision>,
    ) -> Result<KeyValue> {
        self.cache.write(WriteOp::Update {
            key: key.to_string(),
            value,
            expected,
        })
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue> {
        self.cache.write(WriteOp::Delete {
            key: key.to_string(),
            expected,
        })
    }

    fn current_revision(&self) -> Revision {
        self.cache.current_revision()
    }

    fn watch(&self, prefix: &str, from: Revision) -> Result<WatchReceiver> {
        self.cache.watch(prefix, from)
    }

    async fn count(&self, prefix: &str) -> Result<usize> {
        Ok(self.cache.count(prefix))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::testsuite;

    #[tokio::test]
    async fn crud() {
        testsuite::crud(&MemoryStore::new()).await;
    }

    #[tokio::test]
    async fn pagination() {
        testsuite::pagination(&MemoryStore::new()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn watch_ordering() {
        testsuite::watch_ordering(Arc::new(MemoryStore::new())).await;
    }

    #[tokio::test]
    async fn compacted() {
        let s = MemoryStore::with_options(CacheOptions {
            history_limit: 5,
            ..CacheOptions::default()
        });
        testsuite::compacted(&s).await;
    }
}
