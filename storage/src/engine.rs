//! The storage engine: opens RocksDB, recovers every collection, and runs two threads.
//!
//! ```text
//!  callers ──WriteRequest──► writer thread: group of requests ─► one WriteBatch (WAL records +
//!                            payloads), synced ─► apply to memory in order ─► reply (seq)
//!                                   │ mutable segment full: freeze
//!                                   ▼
//!                            maintenance thread: flush frozen segments, compact
//! ```
//! Group commit: the writer drains every request already queued into one RocksDB write, so
//! concurrent writers share one fsync.

use crate::codec;
use crate::collection::{Collection, UpsertBatch};
use crate::collection::{Manifest, read_manifests};
use crate::db::Db;
use crate::error::{Result, StorageError, io_err};
use crate::types::{CollectionConfig, CollectionId, Durability, FieldType, Limits, PointId, SeqNo};
use crate::wal;
use crossbeam::channel::{Receiver, Sender, bounded, unbounded};
use parking_lot::{Mutex, RwLock};
use rocksdb::WriteBatch;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Instant;

/// What an acknowledged write reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteOutcome {
    /// Its sequence number.
    pub seq: SeqNo,
    /// Points written or deleted.
    pub affected: u64,
}

enum WriteKind {
    Upsert(UpsertBatch),
    Delete(Vec<PointId>),
    Drop,
    /// Not a write: once every earlier write is applied, the writer says so on `paused` and
    /// waits on `resume`, so the caller sees memory and RocksDB at one consistent point.
    Barrier {
        paused: Sender<()>,
        resume: Receiver<()>,
    },
}

struct WriteRequest {
    collection: Arc<Collection>,
    kind: WriteKind,
    reply: Sender<Result<WriteOutcome>>,
}

enum Task {
    Flush(Arc<Collection>, Option<Sender<Result<()>>>),
    Compact(Arc<Collection>, bool, Option<Sender<Result<()>>>),
}

/// Counters for metrics.
#[derive(Debug, Default)]
pub struct EngineStats {
    /// Segment flushes done.
    pub flushes: AtomicU64,
    /// Time spent flushing, microseconds.
    pub flush_micros: AtomicU64,
    /// Compactions done.
    pub compactions: AtomicU64,
    /// Time spent compacting, microseconds.
    pub compaction_micros: AtomicU64,
    /// Groups committed by the writer.
    pub write_groups: AtomicU64,
    /// Writes committed by the writer.
    pub writes: AtomicU64,
}

/// Options of the storage engine.
#[derive(Debug, Clone)]
pub struct StorageOptions {
    /// The data folder.
    pub data_dir: PathBuf,
    /// Request limits.
    pub limits: Limits,
}

/// The storage engine: every collection, the writer and the maintenance thread.
pub struct Storage {
    db: Arc<Db>,
    dir: PathBuf,
    limits: Arc<Limits>,
    collections: RwLock<HashMap<String, Arc<Collection>>>,
    /// Collections refused at start, with the reason (named file).
    failed: RwLock<HashMap<String, (CollectionId, String)>>,
    /// Serializes collection creation (ids and names).
    create_lock: Mutex<()>,
    writer: Mutex<Option<Sender<WriteRequest>>>,
    tasks: Mutex<Option<Sender<Task>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// Counters for metrics.
    pub stats: Arc<EngineStats>,
}

impl Storage {
    /// Opens the data folder, recovers every collection and starts the background threads.
    pub fn open(options: StorageOptions) -> Result<Arc<Storage>> {
        let dir = options.data_dir;
        std::fs::create_dir_all(dir.join("collections")).map_err(io_err(&dir))?;
        let db = Arc::new(Db::open(&dir.join("rocksdb"))?);
        let limits = Arc::new(options.limits);
        let mut collections = HashMap::new();
        let mut failed = HashMap::new();
        let mut max_seq = SeqNo(0);
        let mut known = Vec::new();
        for (id, manifest) in read_manifests(&db)? {
            known.push(id);
            let cdir = collection_dir(&dir, id);
            let manifest = match manifest {
                Ok(m) => m,
                Err(e) => {
                    let reason = format!("manifest of collection {} does not decode: {e}", id.0);
                    tracing::error!("{reason}");
                    failed.insert(format!("#{}", id.0), (id, reason));
                    continue;
                }
            };
            let name = manifest.config.name.clone();
            max_seq = max_seq.max(manifest.flushed_seq);
            match Collection::recover(id, manifest, db.clone(), cdir, limits.clone()) {
                Ok((c, last)) => {
                    max_seq = max_seq.max(last);
                    tracing::info!(collection = %name, points = c.stats().points, "recovered");
                    collections.insert(name, Arc::new(c));
                }
                Err(e) => {
                    tracing::error!(collection = %name, error = %e, "collection refused: its files are damaged");
                    failed.insert(name, (id, e.to_string()));
                }
            }
        }
        remove_orphans(&db, &dir, &known)?;
        let storage = Arc::new(Storage {
            db,
            dir,
            limits,
            collections: RwLock::new(collections),
            failed: RwLock::new(failed),
            create_lock: Mutex::new(()),
            writer: Mutex::new(None),
            tasks: Mutex::new(None),
            threads: Mutex::new(Vec::new()),
            stats: Arc::new(EngineStats::default()),
        });
        let (wtx, wrx) = bounded::<WriteRequest>(1024);
        let (ttx, trx) = unbounded::<Task>();
        *storage.writer.lock() = Some(wtx);
        *storage.tasks.lock() = Some(ttx.clone());
        let w = {
            let (db, stats) = (storage.db.clone(), storage.stats.clone());
            let ttx = ttx.clone();
            std::thread::Builder::new()
                .name("quiver-writer".into())
                .spawn(move || writer_loop(db, wrx, ttx, stats, SeqNo(max_seq.0 + 1)))
                .map_err(io_err("thread quiver-writer"))?
        };
        let m = {
            let stats = storage.stats.clone();
            std::thread::Builder::new()
                .name("quiver-maintenance".into())
                .spawn(move || maintenance_loop(trx, stats))
                .map_err(io_err("thread quiver-maintenance"))?
        };
        storage.threads.lock().extend([w, m]);
        // Collections recovered with a full mutable segment flush now.
        for c in storage.collections.read().values() {
            if c.freeze(true) {
                storage.schedule(Task::Flush(c.clone(), None));
            }
        }
        Ok(storage)
    }

    /// The data folder.
    pub fn data_dir(&self) -> &Path {
        &self.dir
    }

    /// The request limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The raw database (for metrics).
    pub fn db(&self) -> &Db {
        &self.db
    }

    fn schedule(&self, task: Task) {
        if let Some(t) = self.tasks.lock().as_ref() {
            let _ = t.send(task);
        }
    }

    /// The collection by that name, or why it cannot be served.
    pub fn collection(&self, name: &str) -> Result<Arc<Collection>> {
        if let Some(c) = self.collections.read().get(name) {
            return Ok(c.clone());
        }
        if let Some((_, reason)) = self.failed.read().get(name) {
            return Err(StorageError::CollectionUnavailable {
                name: name.to_string(),
                reason: reason.clone(),
            });
        }
        Err(StorageError::CollectionNotFound {
            name: name.to_string(),
        })
    }

    /// Every collection being served, by name.
    pub fn collections(&self) -> Vec<Arc<Collection>> {
        let mut v: Vec<_> = self.collections.read().values().cloned().collect();
        v.sort_by_key(|c| c.name());
        v
    }

    /// Collections refused at start: name and reason.
    pub fn failed_collections(&self) -> Vec<(String, String)> {
        self.failed
            .read()
            .iter()
            .map(|(n, (_, r))| (n.clone(), r.clone()))
            .collect()
    }

    /// Creates a collection.
    pub fn create_collection(&self, config: CollectionConfig) -> Result<Arc<Collection>> {
        config.validate()?;
        let _guard = self.create_lock.lock();
        if self.collections.read().contains_key(&config.name)
            || self.failed.read().contains_key(&config.name)
        {
            return Err(StorageError::CollectionExists { name: config.name });
        }
        let next = match self.db.rocks().get(codec::NEXT_COLLECTION_ID_KEY)? {
            Some(raw) if raw.len() == 8 => u64::from_be_bytes(raw[..].try_into().expect("8 bytes")),
            _ => 1,
        };
        let id = CollectionId(next);
        let c = Collection::create(
            id,
            config.clone(),
            self.db.clone(),
            collection_dir(&self.dir, id),
            self.limits.clone(),
        )?;
        let manifest = Manifest {
            config: config.clone(),
            segments: Vec::new(),
            flushed_seq: SeqNo(0),
            next_segment_id: 1,
        };
        let mut batch = WriteBatch::default();
        batch.put(codec::NEXT_COLLECTION_ID_KEY, (next + 1).to_be_bytes());
        batch.put(
            codec::manifest_key(id),
            serde_json::to_vec(&manifest).expect("manifest serializes"),
        );
        self.db.write(batch, true)?;
        let c = Arc::new(c);
        self.collections.write().insert(config.name, c.clone());
        Ok(c)
    }

    /// Drops a collection and all its data (also one that was refused at start).
    pub fn drop_collection(&self, name: &str) -> Result<()> {
        let _guard = self.create_lock.lock();
        if let Some((id, _)) = self.failed.write().remove(name) {
            let mut batch = WriteBatch::default();
            drop_batch(&self.db, id, &mut batch);
            self.db.write(batch, true)?;
            remove_dir(&collection_dir(&self.dir, id));
            return Ok(());
        }
        let c = self.collection(name)?;
        self.submit(c.clone(), WriteKind::Drop)?;
        self.collections.write().remove(name);
        remove_dir(&c.dir);
        Ok(())
    }

    /// Hands a request to the writer thread.
    fn send(&self, request: WriteRequest) -> Result<()> {
        let writer = self
            .writer
            .lock()
            .clone()
            .ok_or(StorageError::ShuttingDown)?;
        writer.send(request).map_err(|_| StorageError::ShuttingDown)
    }

    fn submit(&self, collection: Arc<Collection>, kind: WriteKind) -> Result<WriteOutcome> {
        let (reply, rx) = bounded(1);
        self.send(WriteRequest {
            collection,
            kind,
            reply,
        })?;
        rx.recv().map_err(|_| StorageError::ShuttingDown)?
    }

    /// Runs `f` while the writer is paused with every earlier write applied: memory and
    /// RocksDB agree for its whole run. Keep `f` short: writes wait meanwhile.
    pub fn at_consistent_point<T>(
        &self,
        collection: &Arc<Collection>,
        f: impl FnOnce() -> T,
    ) -> Result<T> {
        let (paused_tx, paused_rx) = bounded(1);
        let (resume_tx, resume_rx) = bounded(1);
        let (reply, _unused) = bounded(1);
        let kind = WriteKind::Barrier {
            paused: paused_tx,
            resume: resume_rx,
        };
        self.send(WriteRequest {
            collection: collection.clone(),
            kind,
            reply,
        })?;
        paused_rx.recv().map_err(|_| StorageError::ShuttingDown)?;
        let out = f();
        let _ = resume_tx.send(());
        Ok(out)
    }

    /// Upserts a validated batch; returns once it is durable and visible.
    pub fn upsert(&self, collection: &Arc<Collection>, batch: UpsertBatch) -> Result<WriteOutcome> {
        self.submit(collection.clone(), WriteKind::Upsert(batch))
    }

    /// Deletes points by id; returns once durable. Unknown ids are not an error.
    pub fn delete(&self, collection: &Arc<Collection>, ids: Vec<PointId>) -> Result<WriteOutcome> {
        if ids.is_empty() {
            return Ok(WriteOutcome {
                seq: collection.state.read().last_seq,
                affected: 0,
            });
        }
        self.submit(collection.clone(), WriteKind::Delete(ids))
    }

    fn run(&self, make: impl FnOnce(Sender<Result<()>>) -> Task) -> Result<()> {
        let (tx, rx) = bounded(1);
        let tasks = self
            .tasks
            .lock()
            .clone()
            .ok_or(StorageError::ShuttingDown)?;
        tasks
            .send(make(tx))
            .map_err(|_| StorageError::ShuttingDown)?;
        rx.recv().map_err(|_| StorageError::ShuttingDown)?
    }

    /// Writes everything in the mutable segment to segment files now.
    pub fn flush(&self, collection: &Arc<Collection>) -> Result<()> {
        loop {
            if !collection.has_frozen() && !collection.freeze(false) {
                return Ok(());
            }
            self.run(|tx| Task::Flush(collection.clone(), Some(tx)))?;
        }
    }

    /// Merges all sealed segments and drops deleted points now.
    pub fn compact(&self, collection: &Arc<Collection>) -> Result<()> {
        self.run(|tx| Task::Compact(collection.clone(), true, Some(tx)))
    }

    /// Indexes a payload field of a collection; `bm25` sets a text index's constants (`None`:
    /// the defaults).
    pub fn create_field_index(
        &self,
        collection: &Arc<Collection>,
        field: &str,
        ty: FieldType,
        bm25: Option<crate::text::Bm25Params>,
    ) -> Result<()> {
        collection.create_field_index(field, ty, bm25)
    }

    /// Stops the background threads after the work already queued. Further calls fail.
    pub fn shutdown(&self) {
        self.writer.lock().take();
        self.tasks.lock().take();
        for t in self.threads.lock().drain(..) {
            let _ = t.join();
        }
        if let Err(e) = self.db.rocks().flush_wal(true) {
            tracing::error!(error = %e, "could not sync RocksDB's log at shutdown");
        }
    }
}

fn collection_dir(data: &Path, id: CollectionId) -> PathBuf {
    data.join("collections").join(id.0.to_string())
}

fn remove_dir(dir: &Path) {
    if let Err(e) = std::fs::remove_dir_all(dir) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(path = %dir.display(), error = %e, "could not remove a dropped collection's folder");
        }
    }
}

fn drop_batch(db: &Db, id: CollectionId, batch: &mut WriteBatch) {
    let prefix = codec::collection_prefix(id);
    let end = codec::prefix_end(&prefix);
    batch.delete(codec::manifest_key(id));
    batch.delete_range_cf(db.wal(), &prefix[..], &end[..]);
    batch.delete_range_cf(db.payload(), &prefix[..], &end[..]);
    let dp = codec::deleted_prefix(id);
    batch.delete_range(&dp[..], &codec::prefix_end(&dp)[..]);
}

/// Removes folders and log records of collections that no manifest names (a crash mid-drop).
fn remove_orphans(db: &Db, dir: &Path, known: &[CollectionId]) -> Result<()> {
    if let Ok(entries) = std::fs::read_dir(dir.join("collections")) {
        for e in entries.flatten() {
            let keep = e
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u64>().ok())
                .is_some_and(|n| known.contains(&CollectionId(n)));
            if !keep {
                remove_dir(&e.path());
            }
        }
    }
    let mut orphans = Vec::new();
    let mut it = db.rocks().raw_iterator_cf(db.wal());
    it.seek_to_first();
    while let Some(k) = it.key() {
        let (cid, _) = codec::parse_wal_key(k)?;
        let end = codec::prefix_end(&codec::collection_prefix(cid));
        if !known.contains(&cid) {
            orphans.push(cid);
        }
        it.seek(&end);
    }
    it.status()?;
    if !orphans.is_empty() {
        let mut batch = WriteBatch::default();
        for id in orphans {
            drop_batch(db, id, &mut batch);
        }
        db.write(batch, true)?;
    }
    Ok(())
}

/// Most requests taken into one group commit.
const MAX_GROUP: usize = 256;
/// Most vector bytes taken into one group commit.
const MAX_GROUP_BYTES: usize = 64 << 20;

fn writer_loop(
    db: Arc<Db>,
    rx: Receiver<WriteRequest>,
    tasks: Sender<Task>,
    stats: Arc<EngineStats>,
    mut next: SeqNo,
) {
    while let Ok(first) = rx.recv() {
        let mut group = vec![first];
        let mut bytes = 0;
        while group.len() < MAX_GROUP && bytes < MAX_GROUP_BYTES {
            match rx.try_recv() {
                Ok(r) => {
                    if let WriteKind::Upsert(b) = &r.kind {
                        bytes += b.vectors.len() * 4;
                    }
                    group.push(r);
                }
                Err(_) => break,
            }
        }
        let (barriers, group): (Vec<_>, Vec<_>) = group
            .into_iter()
            .partition(|r| matches!(r.kind, WriteKind::Barrier { .. }));
        let mut batch = WriteBatch::default();
        let mut seqs = Vec::with_capacity(group.len());
        let mut sync = false;
        for r in &group {
            let c = &r.collection;
            if c.is_dropped() {
                seqs.push(None);
                continue;
            }
            let seq = next;
            next.0 += 1;
            seqs.push(Some(seq));
            let key = codec::wal_key(c.id, seq);
            let durability = c.config.read().durability;
            sync |= durability == Durability::Sync;
            match &r.kind {
                WriteKind::Upsert(b) => {
                    let dim = c.config.read().dim;
                    batch.put_cf(db.wal(), key, wal::encode_upsert(&b.ids, &b.vectors, dim));
                    for (id, p) in b.ids.iter().zip(&b.payload_bytes) {
                        let pk = codec::payload_key(c.id, id);
                        match p {
                            Some(raw) => batch.put_cf(db.payload(), pk, raw),
                            None => batch.delete_cf(db.payload(), pk),
                        }
                    }
                }
                WriteKind::Delete(ids) => {
                    batch.put_cf(db.wal(), key, wal::encode_delete(ids));
                    for id in ids {
                        batch.delete_cf(db.payload(), codec::payload_key(c.id, id));
                    }
                }
                WriteKind::Drop => {
                    sync = true;
                    drop_batch(&db, c.id, &mut batch);
                }
                WriteKind::Barrier { .. } => unreachable!("barriers were set apart"),
            }
        }
        let written = db.write(batch, sync);
        stats.write_groups.fetch_add(1, Ordering::Relaxed);
        stats
            .writes
            .fetch_add(group.len() as u64, Ordering::Relaxed);
        for (r, seq) in group.into_iter().zip(seqs) {
            let c = r.collection;
            let result = match (&written, seq) {
                (_, None) => Err(StorageError::CollectionNotFound { name: c.name() }),
                (Err(e), _) => Err(clone_err(e)),
                (Ok(()), Some(seq)) => match r.kind {
                    WriteKind::Upsert(b) => c
                        .apply_upsert(seq, &b.ids, &b.vectors, Some(&b.payloads))
                        .map(|affected| WriteOutcome { seq, affected }),
                    WriteKind::Delete(ids) => Ok(WriteOutcome {
                        seq,
                        affected: c.apply_delete(seq, &ids),
                    }),
                    WriteKind::Drop => {
                        let _s = c.state.write();
                        c.set_dropped();
                        Ok(WriteOutcome { seq, affected: 0 })
                    }
                    WriteKind::Barrier { .. } => unreachable!("barriers were set apart"),
                },
            };
            if result.is_ok() && !c.is_dropped() && c.freeze(true) {
                let _ = tasks.send(Task::Flush(c.clone(), None));
            }
            let _ = r.reply.send(result);
        }
        for b in barriers {
            if let WriteKind::Barrier { paused, resume } = b.kind {
                if paused.send(()).is_ok() {
                    let _ = resume.recv();
                }
            }
        }
    }
}

/// A RocksDB error for each writer in a failed group.
fn clone_err(e: &StorageError) -> StorageError {
    match e {
        StorageError::Rocks(r) => StorageError::Rocks(r.clone()),
        other => StorageError::Codec {
            reason: other.to_string(),
        },
    }
}

fn maintenance_loop(rx: Receiver<Task>, stats: Arc<EngineStats>) {
    while let Ok(task) = rx.recv() {
        match task {
            Task::Flush(c, reply) => {
                let r = flush_once(&c, &stats);
                let ok = r.is_ok();
                if let Some(tx) = reply {
                    let _ = tx.send(r);
                }
                if ok {
                    run_compaction(&c, false, &stats, None);
                    // Writes that arrived during the flush may have filled the mutable segment
                    // again; the writer does not freeze while a flush is pending.
                    while !c.is_dropped() && c.freeze(true) {
                        if flush_once(&c, &stats).is_err() {
                            break;
                        }
                        run_compaction(&c, false, &stats, None);
                    }
                }
            }
            Task::Compact(c, force, reply) => run_compaction(&c, force, &stats, reply),
        }
    }
}

fn flush_once(c: &Collection, stats: &EngineStats) -> Result<()> {
    let t = Instant::now();
    let r = c.flush_frozen();
    match &r {
        Ok(true) => {
            stats.flushes.fetch_add(1, Ordering::Relaxed);
            stats
                .flush_micros
                .fetch_add(t.elapsed().as_micros() as u64, Ordering::Relaxed);
            tracing::debug!(collection = %c.name(), ms = t.elapsed().as_millis() as u64, "segment flushed");
        }
        Ok(false) => {}
        Err(e) => {
            tracing::error!(collection = %c.name(), error = %e, "flush failed; the WAL keeps the data")
        }
    }
    r.map(|_| ())
}

fn run_compaction(
    c: &Collection,
    force: bool,
    stats: &EngineStats,
    reply: Option<Sender<Result<()>>>,
) {
    if c.is_dropped() {
        if let Some(tx) = reply {
            let _ = tx.send(Ok(()));
        }
        return;
    }
    let t = Instant::now();
    let r = c.compact(force);
    match &r {
        Ok(true) => {
            stats.compactions.fetch_add(1, Ordering::Relaxed);
            stats
                .compaction_micros
                .fetch_add(t.elapsed().as_micros() as u64, Ordering::Relaxed);
        }
        Ok(false) => {}
        Err(e) => {
            tracing::error!(collection = %c.name(), error = %e, "compaction failed; segments unchanged")
        }
    }
    if let Some(tx) = reply {
        let _ = tx.send(r.map(|_| ()));
    }
}
