//! Versioned key-value store behind the API server.
//!
//! One global revision counter serves as Kubernetes' `resourceVersion`. Every
//! write bumps it. Writes are compare-and-swap on a key's `mod_revision`.
//! Watches replay retained history from a revision and then follow live
//! writes; a revision older than the retained history is `Compacted` (the API
//! server answers 410 Gone). The embedded backend keeps every object in memory
//! (the watch cache) and makes each acknowledged write durable on disk.

use std::sync::Arc;

pub mod cache;
pub mod embedded;
pub mod memory;
#[cfg(test)]
mod testsuite;

/// Store revision (Kubernetes resourceVersion).
pub type Revision = u64;

/// Errors of store operations.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The key exists already (create).
    #[error("key {0} already exists")]
    AlreadyExists(String),
    /// The key does not exist (update, delete).
    #[error("key {0} not found")]
    NotFound(String),
    /// The key's mod_revision differs from the expected one.
    #[error("key {key} was modified: expected revision {expected}, current {current}")]
    Conflict {
        /// The key.
        key: String,
        /// Expected mod revision.
        expected: Revision,
        /// Current mod revision.
        current: Revision,
    },
    /// The requested revision is older than the retained history.
    #[error("revision {requested} has been compacted (oldest available {oldest})")]
    Compacted {
        /// Requested revision.
        requested: Revision,
        /// Oldest revision still available.
        oldest: Revision,
    },
    /// The on-disk database failed.
    #[error("storage backend: {0}")]
    Backend(String),
    /// The store has been closed.
    #[error("store is closed")]
    Closed,
}

/// Result of store operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A stored value with its revisions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    /// Full key, e.g. `/registry/core/pods/default/nginx`.
    pub key: String,
    /// Serialized object (JSON bytes).
    pub value: Arc<[u8]>,
    /// Revision at which the key was created.
    pub create_revision: Revision,
    /// Revision of the last write (for a delete event: the delete revision).
    pub mod_revision: Revision,
}

/// Kind of change in a watch event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// Key created.
    Added,
    /// Key updated.
    Modified,
    /// Key deleted; `kv.value` is the last value, `kv.mod_revision` the delete revision.
    Deleted,
}

/// One change observed by a watch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// What happened.
    pub kind: EventKind,
    /// The key's new value (or last value for a delete).
    pub kv: KeyValue,
    /// The previous value, when there was one.
    pub prev: Option<KeyValue>,
}

/// A page of a prefix listing.
#[derive(Clone, Debug, Default)]
pub struct ListResult {
    /// Items sorted by key.
    pub items: Vec<KeyValue>,
    /// The store revision this listing reflects.
    pub revision: Revision,
    /// Number of further matching keys after the last item (0 when complete).
    pub remaining: usize,
}

/// A live watch: receives events in revision order. Dropping it cancels the watch.
pub type WatchReceiver = tokio::sync::mpsc::Receiver<Event>;

/// The storage interface of the API server.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// Reads one key.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>>;
    /// Lists keys starting with `prefix`, sorted, strictly after `start_after`
    /// when given, at most `limit` items (0 means no limit).
    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<ListResult>;
    /// Lists like [`Store::list`] but as the keys were at `revision`; fails
    /// with `Compacted` when that revision is no longer retained.
    async fn list_at(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        revision: Revision,
    ) -> Result<ListResult>;
    /// Creates a key; fails with `AlreadyExists` when present.
    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue>;
    /// Replaces a key's value; with `expected` set, fails with `Conflict`
    /// unless the key's mod_revision equals it. `NotFound` if absent.
    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: Option<Revision>,
    ) -> Result<KeyValue>;
    /// Deletes a key (CAS like `update`); returns the deleted value with
    /// `mod_revision` set to the delete revision.
    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue>;
    /// The latest revision.
    fn current_revision(&self) -> Revision;
    /// Streams events for keys under `prefix` with revision > `from`.
    /// Fails with `Compacted` when `from` is older than retained history.
    fn watch(&self, prefix: &str, from: Revision) -> Result<WatchReceiver>;
    /// Number of keys under `prefix` (cheap; used for metrics and quotas).
    async fn count(&self, prefix: &str) -> Result<usize>;
}
