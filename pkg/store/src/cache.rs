//! The in-memory core shared by every backend: the key map, the global
//! revision, a bounded ring of recent events for watch replay, and the live
//! watchers.
//!
//! [`MemoryStore`](crate::memory::MemoryStore) is this cache alone; the
//! [`EmbeddedStore`](crate::embedded::EmbeddedStore) uses it as its watch
//! cache and applies writes to it only after they are durable on disk.
//!
//! Watchers get a bounded channel. Writers never block on a watcher: when a
//! watcher's channel is full it is dropped (its channel closes after the
//! buffered events), like Kubernetes' "too slow watcher" handling. The API
//! server then ends that watch and the client re-lists.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use tokio::sync::mpsc;

use crate::{Error, Event, EventKind, KeyValue, ListResult, Result, Revision, WatchReceiver};

/// Default number of events kept for watch replay.
pub const DEFAULT_HISTORY_LIMIT: usize = 10_000;
/// Default capacity of each watcher's channel (live events).
pub const DEFAULT_WATCH_CAPACITY: usize = 1024;

/// Tuning of a [`Cache`].
#[derive(Clone, Copy, Debug)]
pub struct CacheOptions {
    /// Number of most recent events kept for watch replay.
    pub history_limit: usize,
    /// Capacity of each watcher's channel beyond its replayed events; a
    /// watcher that falls this far behind is dropped.
    pub watch_capacity: usize,
}

impl Default for CacheOptions {
    fn default() -> Self {
        Self {
            history_limit: DEFAULT_HISTORY_LIMIT,
            watch_capacity: DEFAULT_WATCH_CAPACITY,
        }
    }
}

/// One requested write, validated against the current state by [`plan`].
#[derive(Clone, Debug)]
pub enum WriteOp {
    /// Create a key that must not exist.
    Create {
        /// The key.
        key: String,
        /// The new value.
        value: Vec<u8>,
    },
    /// Replace an existing key's value.
    Update {
        /// The key.
        key: String,
        /// The new value.
        value: Vec<u8>,
        /// Required current mod revision, if any.
        expected: Option<Revision>,
    },
    /// Delete an existing key.
    Delete {
        /// The key.
        key: String,
        /// Required current mod revision, if any.
        expected: Option<Revision>,
    },
}

impl WriteOp {
    /// The key this operation writes.
    pub fn key(&self) -> &str {
        match self {
            WriteOp::Create { key, .. }
            | WriteOp::Update { key, .. }
            | WriteOp::Delete { key, .. } => key,
        }
    }
}

/// Validates `op` against the key's `current` value and turns it into the
/// event it would produce at revision `rev`.
pub fn plan(op: WriteOp, current: Option<&KeyValue>, rev: Revision) -> Result<Event> {
    let check = |key: &str, expected: Option<Revision>| -> Result<KeyValue> {
        let cur = current.ok_or_else(|| Error::NotFound(key.to_string()))?;
        match expected {
            Some(expected) if expected != cur.mod_revision => Err(Error::Conflict {
                key: key.to_string(),
                expected,
                current: cur.mod_revision,
            }),
            _ => Ok(cur.clone()),
        }
    };
    match op {
        WriteOp::Create { key, value } => {
            if current.is_some() {
                return Err(Error::AlreadyExists(key));
            }
            Ok(Event {
                kind: EventKind::Added,
                kv: KeyValue {
                    key,
                    value: value.into(),
                    create_revision: rev,
                    mod_revision: rev,
                },
                prev: None,
            })
        }
        WriteOp::Update {
            key,
            value,
            expected,
        } => {
            let prev = check(&key, expected)?;
            Ok(Event {
                kind: EventKind::Modified,
                kv: KeyValue {
                    key,
                    value: value.into(),
                    create_revision: prev.create_revision,
                    mod_revision: rev,
                },
                prev: Some(prev),
            })
        }
        WriteOp::Delete { key, expected } => {
            let prev = check(&key, expected)?;
            let mut kv = prev.clone();
            kv.mod_revision = rev;
            Ok(Event {
                kind: EventKind::Deleted,
                kv,
                prev: Some(prev),
            })
        }
    }
}

struct Watcher {
    prefix: String,
    /// Only events with a revision above this are sent.
    after: Revision,
    tx: mpsc::Sender<Event>,
}

struct Inner {
    map: BTreeMap<String, KeyValue>,
    revision: Revision,
    history: VecDeque<Event>,
    /// Smallest `from` a watch can replay from.
    floor: Revision,
    watchers: Vec<Watcher>,
}

/// Map, revision, history and watchers behind one lock.
pub struct Cache {
    inner: Mutex<Inner>,
    revision: AtomicU64,
    opts: CacheOptions,
}

impl Cache {
    /// An empty cache at revision 0.
    pub fn new(opts: CacheOptions) -> Self {
        Self::with_state(BTreeMap::new(), 0, opts)
    }

    /// A cache holding `map` at `revision` (e.g. loaded from disk). History
    /// starts empty: watches from older revisions are `Compacted`.
    pub fn with_state(
        map: BTreeMap<String, KeyValue>,
        revision: Revision,
        opts: CacheOptions,
    ) -> Self {
        Self {
            inner: Mutex::new(Inner {
                map,
                revision,
                history: VecDeque::new(),
                floor: revision,
                watchers: Vec::new(),
            }),
            revision: AtomicU64::new(revision),
            opts,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The latest revision.
    pub fn current_revision(&self) -> Revision {
        self.revision.load(Ordering::Acquire)
    }

    /// Reads one key.
    pub fn get(&self, key: &str) -> Option<KeyValue> {
        self.lock().map.get(key).cloned()
    }

    /// Lists keys under `prefix` (see [`Store::list`](crate::Store::list)).
    pub fn list(&self, prefix: &str, start_after: Option<&str>, limit: usize) -> ListResult {
        use std::ops::Bound;
        let inner = self.lock();
        let lower = match start_after {
            Some(s) if s >= prefix => Bound::Excluded(s),
            _ => Bound::Included(prefix),
        };
        let mut iter = inner
            .map
            .range::<str, _>((lower, Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix));
        let limit = if limit == 0 { usize::MAX } else { limit };
        let items: Vec<KeyValue> = iter.by_ref().take(limit).map(|(_, v)| v.clone()).collect();
        ListResult {
            items,
            revision: inner.revision,
            remaining: iter.count(),
        }
    }

    /// Lists keys under `prefix` as they were at `revision`, rebuilt from
    /// the retained history (consistent pages for list continuation).
    pub fn list_at(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        revision: Revision,
    ) -> Result<ListResult> {
        let inner = self.lock();
        if revision >= inner.revision {
            drop(inner);
            return Ok(self.list(prefix, start_after, limit));
        }
        if revision < inner.floor {
            return Err(Error::Compacted {
                requested: revision,
                oldest: inner.floor,
            });
        }
        let mut snap: BTreeMap<String, KeyValue> = inner
            .map
            .range::<str, _>((
                std::ops::Bound::Included(prefix),
                std::ops::Bound::Unbounded,
            ))
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for e in inner.history.iter().rev() {
            if e.kv.mod_revision <= revision {
                break;
            }
            if !e.kv.key.starts_with(prefix) {
                continue;
            }
            match (&e.kind, &e.prev) {
                (EventKind::Added, _) => {
                    snap.remove(&e.kv.key);
                }
                (_, Some(prev)) => {
                    snap.insert(prev.key.clone(), prev.clone());
                }
                (_, None) => {
                    snap.remove(&e.kv.key);
                }
            }
        }
        let limit = if limit == 0 { usize::MAX } else { limit };
        let mut iter = snap
            .into_iter()
            .filter(|(k, _)| start_after.is_none_or(|s| k.as_str() > s))
            .map(|(_, v)| v);
        let items: Vec<KeyValue> = iter.by_ref().take(limit).collect();
        Ok(ListResult {
            items,
            revision,
            remaining: iter.count(),
        })
    }

    /// Number of keys under `prefix`.
    pub fn count(&self, prefix: &str) -> usize {
        self.lock()
            .map
            .range::<str, _>((
                std::ops::Bound::Included(prefix),
                std::ops::Bound::Unbounded,
            ))
            .take_while(|(k, _)| k.starts_with(prefix))
            .count()
    }

    /// Validates and applies one write atomically (used by the memory store).
    pub fn write(&self, op: WriteOp) -> Result<KeyValue> {
        let mut inner = self.lock();
        let rev = inner.revision + 1;
        let current = inner.map.get(op.key());
        let event = plan(op, current, rev)?;
        let kv = event.kv.clone();
        self.apply_locked(&mut inner, event);
        Ok(kv)
    }

    /// Applies already validated events, in order, each one revision above
    /// the previous; notifies watchers.
    pub fn apply(&self, events: Vec<Event>) {
        let mut inner = self.lock();
        for event in events {
            self.apply_locked(&mut inner, event);
        }
    }

    fn apply_locked(&self, inner: &mut Inner, event: Event) {
        let rev = event.kv.mod_revision;
        debug_assert_eq!(rev, inner.revision + 1, "events must be applied in order");
        match event.kind {
            EventKind::Added | EventKind::Modified => {
                inner.map.insert(event.kv.key.clone(), event.kv.clone());
            }
            EventKind::Deleted => {
                inner.map.remove(&event.kv.key);
            }
        }
        inner.revision = rev;
        self.revision.store(rev, Ordering::Release);
        inner.watchers.retain(|w| {
            if rev <= w.after || !event.kv.key.starts_with(&w.prefix) {
                return !w.tx.is_closed();
            }
            // Full: too slow, drop it (closes its channel). Closed: gone.
            w.tx.try_send(event.clone()).is_ok()
        });
        if self.opts.history_limit == 0 {
            inner.floor = rev;
            return;
        }
        if inner.history.len() == self.opts.history_limit {
            if let Some(old) = inner.history.pop_front() {
                inner.floor = old.kv.mod_revision;
            }
        }
        inner.history.push_back(event);
    }

    /// Starts a watch (see [`Store::watch`](crate::Store::watch)).
    pub fn watch(&self, prefix: &str, from: Revision) -> Result<WatchReceiver> {
        let mut inner = self.lock();
        if from < inner.floor && from < inner.revision {
            return Err(Error::Compacted {
                requested: from,
                oldest: inner.floor,
            });
        }
        let replay: Vec<&Event> = inner
            .history
            .iter()
            .skip_while(|e| e.kv.mod_revision <= from)
            .filter(|e| e.kv.key.starts_with(prefix))
            .collect();
        let (tx, rx) = mpsc::channel(self.opts.watch_capacity.max(1) + replay.len());
        for e in replay {
            // Cannot fail: the channel has room for every replayed event.
            let _ = tx.try_send(e.clone());
        }
        let after = from.max(inner.revision);
        inner.watchers.push(Watcher {
            prefix: prefix.to_string(),
            after,
            tx,
        });
        Ok(rx)
    }

    /// Number of live watchers (for metrics and tests).
    pub fn watcher_count(&self) -> usize {
        let mut inner = self.lock();
        inner.watchers.retain(|w| !w.tx.is_closed());
        inner.watchers.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(c: &Cache, key: &str) -> KeyValue {
        c.write(WriteOp::Create {
            key: key.into(),
            value: vec![],
        })
        .unwrap()
    }

    #[test]
    fn slow_watcher_is_dropped_not_blocking() {
        let c = Cache::new(CacheOptions {
            history_limit: 100,
            watch_capacity: 2,
        });
        let mut slow = c.watch("/", 0).unwrap();
        let mut other = c.watch("/b", 0).unwrap();
        for i in 0..5 {
            create(&c, &format!("/a{i}"));
        }
        assert_eq!(c.current_revision(), 5);
        // The two buffered events, then the channel is closed.
        assert_eq!(slow.try_recv().unwrap().kv.mod_revision, 1);
        assert_eq!(slow.try_recv().unwrap().kv.mod_revision, 2);
        assert_eq!(
            slow.try_recv(),
            Err(tokio::sync::mpsc::error::TryRecvError::Disconnected)
        );
        // Unrelated watcher unaffected.
        assert_eq!(c.watcher_count(), 1);
        create(&c, "/b");
        assert_eq!(other.try_recv().unwrap().kv.key, "/b");
    }

    #[test]
    fn replay_larger_than_capacity() {
        let c = Cache::new(CacheOptions {
            history_limit: 100,
            watch_capacity: 1,
        });
        for i in 0..50 {
            create(&c, &format!("/k{i}"));
        }
        let mut w = c.watch("/", 0).unwrap();
        for rev in 1..=50 {
            assert_eq!(w.try_recv().unwrap().kv.mod_revision, rev);
        }
        create(&c, "/live");
        assert_eq!(w.try_recv().unwrap().kv.mod_revision, 51);
    }

    #[test]
    fn future_revision_and_dropped_receivers() {
        let c = Cache::new(CacheOptions::default());
        let mut w = c.watch("/", 2).unwrap();
        drop(c.watch("/", 0).unwrap());
        create(&c, "/1");
        create(&c, "/2");
        create(&c, "/3");
        assert_eq!(w.try_recv().unwrap().kv.mod_revision, 3);
        assert!(w.try_recv().is_err());
        assert_eq!(c.watcher_count(), 1);
    }

    #[test]
    fn loaded_state_has_no_history() {
        let mut map = BTreeMap::new();
        map.insert(
            "/a".to_string(),
            KeyValue {
                key: "/a".into(),
                value: vec![].into(),
                create_revision: 3,
                mod_revision: 7,
            },
        );
        let c = Cache::with_state(map, 9, CacheOptions::default());
        assert_eq!(c.current_revision(), 9);
        assert!(matches!(
            c.watch("/", 8),
            Err(Error::Compacted {
                requested: 8,
                oldest: 9
            })
        ));
        let mut w = c.watch("/", 9).unwrap();
        assert_eq!(create(&c, "/b").mod_revision, 10);
        assert_eq!(w.try_recv().unwrap().kv.key, "/b");
    }

    #[test]
    fn list_at_rebuilds_an_older_revision() {
        let c = Cache::new(CacheOptions::default());
        let put = |k: &str, v: &str| {
            c.write(WriteOp::Create {
                key: k.into(),
                value: v.as_bytes().to_vec(),
            })
            .unwrap()
        };
        put("/p/a", "1");
        let b = put("/p/b", "1");
        let at = c.current_revision();
        put("/p/c", "1");
        c.write(WriteOp::Update {
            key: "/p/a".into(),
            value: b"2".to_vec(),
            expected: None,
        })
        .unwrap();
        c.write(WriteOp::Delete {
            key: "/p/b".into(),
            expected: None,
        })
        .unwrap();
        let snap = c.list_at("/p/", None, 0, at).unwrap();
        let keys: Vec<_> = snap.items.iter().map(|kv| kv.key.as_str()).collect();
        assert_eq!(keys, ["/p/a", "/p/b"]);
        assert_eq!(&*snap.items[0].value, b"1");
        assert_eq!(snap.items[1], b);
        let page = c.list_at("/p/", Some("/p/a"), 1, at).unwrap();
        assert_eq!(page.items.len(), 1);
        assert_eq!(page.remaining, 0);
    }
}
