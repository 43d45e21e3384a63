//! Embedded durable store: every object in memory (a [`Cache`], which also
//! serves watches), every acknowledged write fsynced to a `redb` file.
//!
//! Writes go through one background writer thread doing group commit: it
//! takes a batch of pending requests from a channel, validates each against
//! the in-memory state plus the earlier requests of the batch (CAS), writes
//! them all in one durable redb transaction, then applies them to the cache
//! (which notifies watchers) and replies. A write is acknowledged only after
//! its transaction is committed with fsync, so it survives `kill -9`. If the
//! commit fails, every request of the batch gets [`Error::Backend`] and
//! memory is left unchanged.
//!
//! On disk, table `kv` maps each key to `create_revision ‖ mod_revision ‖
//! value` (two little-endian u64s then the bytes) and table `meta` holds the
//! current revision, so revisions never go backwards after restart, even
//! after deletes. On open everything is loaded into memory; watch history
//! starts at the loaded revision (older revisions are `Compacted`).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::{mpsc, oneshot};

use crate::cache::{plan, Cache, CacheOptions, WriteOp};
use crate::{
    Error, Event, EventKind, KeyValue, ListResult, Result, Revision, Store, WatchReceiver,
};

const KV: TableDefinition<&str, &[u8]> = TableDefinition::new("kv");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const REVISION_KEY: &str = "revision";
const HEADER: usize = 16;

/// Tuning of an [`EmbeddedStore`].
#[derive(Clone, Copy, Debug)]
pub struct EmbeddedOptions {
    /// History and watcher limits of the in-memory cache.
    pub cache: CacheOptions,
    /// Most write requests committed in one transaction.
    pub max_batch: usize,
    /// Pending write requests queued before writers wait.
    pub queue_capacity: usize,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        Self {
            cache: CacheOptions::default(),
            max_batch: 512,
            queue_capacity: 4096,
        }
    }
}

struct Request {
    op: WriteOp,
    reply: oneshot::Sender<Result<KeyValue>>,
}

/// A durable [`Store`] backed by one redb file.
pub struct EmbeddedStore {
    cache: Arc<Cache>,
    tx: RwLock<Option<mpsc::Sender<Request>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    /// Fault injection: fail every commit (set only by tests).
    #[cfg_attr(not(test), allow(dead_code))]
    fail_commits: Arc<AtomicBool>,
}

fn backend(e: impl std::fmt::Display) -> Error {
    Error::Backend(e.to_string())
}

fn encode(kv: &KeyValue) -> Vec<u8> {
    let mut buf = Vec::with_capacity(HEADER + kv.value.len());
    buf.extend_from_slice(&kv.create_revision.to_le_bytes());
    buf.extend_from_slice(&kv.mod_revision.to_le_bytes());
    buf.extend_from_slice(&kv.value);
    buf
}

fn decode(key: &str, buf: &[u8]) -> Result<KeyValue> {
    if buf.len() < HEADER {
        return Err(Error::Backend(format!("corrupt record for key {key}")));
    }
    let word = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&buf[i..i + 8]);
        u64::from_le_bytes(b)
    };
    Ok(KeyValue {
        key: key.to_string(),
        value: buf[HEADER..].into(),
        create_revision: word(0),
        mod_revision: word(8),
    })
}

/// Opens (creating if needed) the database and loads every key.
fn load(path: &Path) -> Result<(Database, BTreeMap<String, KeyValue>, Revision)> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(backend)?;
    }
    let db = Database::create(path).map_err(backend)?;
    let txn = db.begin_write().map_err(backend)?;
    txn.open_table(KV).map_err(backend)?;
    txn.open_table(META).map_err(backend)?;
    txn.commit().map_err(backend)?;

    let txn = db.begin_read().map_err(backend)?;
    let meta = txn.open_table(META).map_err(backend)?;
    let mut revision = meta
        .get(REVISION_KEY)
        .map_err(backend)?
        .map(|g| g.value())
        .unwrap_or(0);
    let mut map = BTreeMap::new();
    let table = txn.open_table(KV).map_err(backend)?;
    for item in table.iter().map_err(backend)? {
        let (k, v) = item.map_err(backend)?;
        let kv = decode(k.value(), v.value())?;
        revision = revision.max(kv.mod_revision);
        map.insert(kv.key.clone(), kv);
    }
    drop(table);
    drop(meta);
    drop(txn);
    Ok((db, map, revision))
}

/// Writes `events` and the new `revision` in one durable transaction.
fn persist(db: &Database, events: &[Event], revision: Revision) -> Result<()> {
    let mut txn = db.begin_write().map_err(backend)?;
    txn.set_durability(redb::Durability::Immediate)
        .map_err(backend)?;
    {
        let mut kv = txn.open_table(KV).map_err(backend)?;
        for e in events {
            let key = e.kv.key.as_str();
            match e.kind {
                EventKind::Deleted => {
                    kv.remove(key).map_err(backend)?;
                }
                EventKind::Added | EventKind::Modified => {
                    kv.insert(key, encode(&e.kv).as_slice()).map_err(backend)?;
                }
            }
        }
        let mut meta = txn.open_table(META).map_err(backend)?;
        meta.insert(REVISION_KEY, revision).map_err(backend)?;
    }
    txn.commit().map_err(backend)
}

/// Validates, persists and applies one batch, then replies to each request.
fn process(db: &Database, cache: &Cache, batch: Vec<Request>, fail: bool) {
    let mut rev = cache.current_revision();
    let mut overlay: HashMap<String, Option<KeyValue>> = HashMap::new();
    let mut replies = Vec::with_capacity(batch.len());
    let mut events = Vec::with_capacity(batch.len());
    for Request { op, reply } in batch {
        let current = match overlay.get(op.key()) {
            Some(v) => v.clone(),
            None => cache.get(op.key()),
        };
        let outcome = plan(op, current.as_ref(), rev + 1).map(|event| {
            rev += 1;
            let live = (event.kind != EventKind::Deleted).then(|| event.kv.clone());
            overlay.insert(event.kv.key.clone(), live);
            let kv = event.kv.clone();
            events.push(event);
            kv
        });
        replies.push((reply, outcome));
    }
    if !events.is_empty() {
        let written = if fail {
            Err(Error::Backend("injected commit failure".into()))
        } else {
            persist(db, &events, rev)
        };
        if let Err(e) = written {
            tracing::error!(error = %e, "store commit failed");
            for (reply, _) in replies {
                let _ = reply.send(Err(Error::Backend(e.to_string())));
            }
            return;
        }
        cache.apply(events);
    }
    for (reply, outcome) in replies {
        // The caller may have gone away; the write stands regardless.
        let _ = reply.send(outcome);
    }
}

fn run_writer(
    db: Database,
    cache: Arc<Cache>,
    mut rx: mpsc::Receiver<Request>,
    max_batch: usize,
    fail: Arc<AtomicBool>,
) {
    while let Some(first) = rx.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        process(&db, &cache, batch, fail.load(Ordering::Relaxed));
    }
    drop(db);
}

impl EmbeddedStore {
    /// Opens or creates the database file at `path`, loads it into memory and
    /// starts the writer thread.
    pub fn open(path: &Path, opts: EmbeddedOptions) -> Result<Self> {
        let (db, map, revision) = load(path)?;
        let cache = Arc::new(Cache::with_state(map, revision, opts.cache));
        let (tx, rx) = mpsc::channel(opts.queue_capacity.max(1));
        let fail_commits = Arc::new(AtomicBool::new(false));
        let writer = {
            let cache = cache.clone();
            let fail = fail_commits.clone();
            let max_batch = opts.max_batch.max(1);
            std::thread::Builder::new()
                .name("rkube-store-writer".into())
                .spawn(move || run_writer(db, cache, rx, max_batch, fail))
                .map_err(backend)?
        };
        tracing::info!(path = %path.display(), revision, "opened embedded store");
        Ok(Self {
            cache,
            tx: RwLock::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
            fail_commits,
        })
    }

    /// The in-memory cache (watch cache).
    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    /// Stops accepting writes, lets the writer commit what is queued, and
    /// waits for it to close the database. Later writes fail with `Closed`.
    /// Called by `Drop`.
    pub fn close(&self) {
        self.tx.write().unwrap_or_else(|e| e.into_inner()).take();
        let writer = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(writer) = writer {
            if writer.join().is_err() {
                tracing::error!("store writer thread panicked");
            }
        }
    }

    #[cfg(test)]
    fn set_fail_commits(&self, fail: bool) {
        self.fail_commits.store(fail, Ordering::Relaxed);
    }

    async fn submit(&self, op: WriteOp) -> Result<KeyValue> {
        let tx = self
            .tx
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or(Error::Closed)?;
        let (reply, rx) = oneshot::channel();
        tx.send(Request { op, reply })
            .await
            .map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)?
    }
}

impl Drop for EmbeddedStore {
    fn drop(&mut self) {
        self.close();
    }
}

#[async_trait::async_trait]
impl Store for EmbeddedStore {
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
        self.submit(WriteOp::Create {
            key: key.to_string(),
            value,
        })
        .await
    }

    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: Option<Revision>,
    ) -> Result<KeyValue> {
        self.submit(WriteOp::Update {
            key: key.to_string(),
            value,
            expected,
        })
        .await
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue> {
        self.submit(WriteOp::Delete {
            key: key.to_string(),
            expected,
        })
        .await
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
    use std::io::{BufRead, BufReader, Write};
    use std::process::{Command, Stdio};
    use std::time::Instant;

    use super::*;
    use crate::testsuite;

    fn open(dir: &Path) -> EmbeddedStore {
        EmbeddedStore::open(&dir.join("db/store.redb"), EmbeddedOptions::default()).unwrap()
    }

    #[tokio::test]
    async fn crud() {
        let dir = tempfile::tempdir().unwrap();
        testsuite::crud(&open(dir.path())).await;
    }

    #[tokio::test]
    async fn pagination() {
        let dir = tempfile::tempdir().unwrap();
        testsuite::pagination(&open(dir.path())).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn watch_ordering() {
        let dir = tempfile::tempdir().unwrap();
        testsuite::watch_ordering(Arc::new(open(dir.path()))).await;
    }

    #[tokio::test]
    async fn compacted() {
        let dir = tempfile::tempdir().unwrap();
        let opts = EmbeddedOptions {
            cache: CacheOptions {
                history_limit: 5,
                ..CacheOptions::default()
            },
            ..EmbeddedOptions::default()
        };
        let s = EmbeddedStore::open(&dir.path().join("s.redb"), opts).unwrap();
        testsuite::compacted(&s).await;
    }

    #[tokio::test]
    async fn reopen_preserves_data_and_revision() {
        let dir = tempfile::tempdir().unwrap();
        let (a, rev) = {
            let s = open(dir.path());
            let a = s.create("/a", b"x".to_vec()).await.unwrap();
            s.create("/b", b"y".to_vec()).await.unwrap();
            s.update("/a", b"z".to_vec(), Some(a.mod_revision))
                .await
                .unwrap();
            s.delete("/b", None).await.unwrap();
            // The highest revision was a delete: it must not be lost.
            (s.get("/a").await.unwrap().unwrap(), s.current_revision())
        };
        assert_eq!(rev, 4);
        let s = open(dir.path());
        assert_eq!(s.current_revision(), rev);
        assert_eq!(s.get("/a").await.unwrap(), Some(a));
        assert_eq!(s.get("/b").await.unwrap(), None);
        assert!(matches!(
            s.watch("/", rev - 1),
            Err(Error::Compacted { .. })
        ));
        let mut w = s.watch("/", rev).unwrap();
        assert_eq!(s.create("/c", vec![]).await.unwrap().mod_revision, rev + 1);
        assert_eq!(w.recv().await.unwrap().kv.key, "/c");
        s.close();
        assert!(matches!(s.create("/d", vec![]).await, Err(Error::Closed)));
    }

    #[tokio::test]
    async fn backend_failure_leaves_memory_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        s.create("/a", vec![1]).await.unwrap();
        let mut w = s.watch("/", 1).unwrap();
        s.set_fail_commits(true);
        assert!(matches!(
            s.create("/b", vec![]).await,
            Err(Error::Backend(_))
        ));
        assert!(matches!(
            s.update("/a", vec![2], None).await,
            Err(Error::Backend(_))
        ));
        assert_eq!(s.current_revision(), 1);
        assert_eq!(s.get("/b").await.unwrap(), None);
        assert_eq!(&*s.get("/a").await.unwrap().unwrap().value, &[1]);
        assert!(w.try_recv().is_err());
        s.set_fail_commits(false);
        assert_eq!(s.create("/b", vec![]).await.unwrap().mod_revision, 2);
    }

    const CHILD_ENV: &str = "RKUBE_STORE_DURABILITY_DIR";

    /// Child half of `acknowledged_writes_survive_sigkill`: writes forever,
    /// printing each acknowledged key. A no-op unless re-executed.
    #[test]
    fn durability_child() {
        let Some(dir) = std::env::var_os(CHILD_ENV) else {
            return;
        };
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            let s = Arc::new(open(Path::new(&dir)));
            let tasks: Vec<_> = (0..16)
                .map(|t| {
                    let s = s.clone();
                    tokio::spawn(async move {
                        for i in 0..1_000_000 {
                            let key = format!("/k/{t}/{i}");
                            s.create(&key, vec![7; 100]).await.unwrap();
                            let mut out = std::io::stdout().lock();
                            writeln!(out, "ACK {key}").unwrap();
                            out.flush().unwrap();
                        }
                    })
                })
                .collect();
            for t in tasks {
                t.await.unwrap();
            }
        });
    }

    #[tokio::test]
    async fn acknowledged_writes_survive_sigkill() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "embedded::tests::durability_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut reader = BufReader::new(child.stdout.take().unwrap());
        let mut acked = Vec::new();
        let mut line = String::new();
        let mut killed = false;
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap() == 0 {
                break;
            }
            // Only complete lines count as acknowledged.
            if let Some(key) = line.strip_prefix("ACK ").and_then(|l| l.strip_suffix('\n')) {
                acked.push(key.to_string());
            }
            if !killed && acked.len() >= 500 {
                child.kill().unwrap(); // SIGKILL
                killed = true;
            }
        }
        child.wait().unwrap();
        assert!(killed, "child exited before being killed");
        let s = open(dir.path());
        for key in &acked {
            assert!(s.get(key).await.unwrap().is_some(), "lost acked {key}");
        }
        let total = s.count("/k/").await.unwrap();
        assert!(total >= acked.len());
        println!(
            "acked {} keys before SIGKILL, {} on disk",
            acked.len(),
            total
        );
    }

    #[test]
    fn throughput_64_writers() {
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Runtime::new().unwrap();
        let rate = rt.block_on(async {
            let s = Arc::new(open(dir.path()));
            const WRITERS: usize = 64;
            const PER_WRITER: usize = 100;
            let start = Instant::now();
            let tasks: Vec<_> = (0..WRITERS)
                .map(|t| {
                    let s = s.clone();
                    tokio::spawn(async move {
                        for i in 0..PER_WRITER {
                            let key = format!("/registry/pods/ns{t}/pod{i}");
                            s.create(&key, vec![b'x'; 512]).await.unwrap();
                        }
                    })
                })
                .collect();
            for t in tasks {
                t.await.unwrap();
            }
            let n = WRITERS * PER_WRITER;
            assert_eq!(s.count("/registry/pods/").await.unwrap(), n);
            n as f64 / start.elapsed().as_secs_f64()
        });
        println!("embedded store: {rate:.0} durable creates/s with 64 writers");
        assert!(rate > 200.0, "only {rate:.0} creates/s");
    }
}
