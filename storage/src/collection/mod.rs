//! A collection: its settings, its segments and the map from point id to location.
//!
//! ```text
//!            writes (writer thread, after the WAL is durable)
//!                 │ apply_upsert / apply_delete
//!                 ▼
//!   State { mutable ─freeze─► slots[frozen] ─flush─► slots[sealed, mmap] ─compact─► slots[merged] }
//!           id_map: PointId → (segment, offset)        deletions: one bitmap per segment
//!                 ▲
//!            reads (search, get, scroll, count) under the read lock
//! ```
//!
//! | file          | what it does                                                    |
//! |---------------|-----------------------------------------------------------------|
//! | `mod.rs`      | the state, applying writes, validation, statistics               |
//! | `read.rs`     | search, get, scroll, count, filters per segment                  |
//! | `maintain.rs` | freeze, flush, compaction, the manifest, recovery at start       |
//! | `text.rs`     | BM25 search over a text-indexed field, sealing text index files   |

mod maintain;
mod read;
mod text;

pub(crate) use maintain::{Manifest, read_manifests};
pub use read::{Record, SearchRequest};
pub use text::{TextRecord, TextSearchRequest};

use crate::db::Db;
use crate::error::{Result, StorageError};
use crate::filter::Filter;
use crate::payload_index::PayloadIndex;
use crate::segment::{MutableSegment, SegmentData};
use crate::types::{CollectionConfig, CollectionId, Limits, Location, PointId, SegmentId, SeqNo};
use parking_lot::RwLock;
use quiver_index::Metric;
use roaring::RoaringBitmap;
use serde_json::Value;
use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// A frozen or sealed segment with what still changes about it.
pub(crate) struct Slot {
    pub data: Arc<SegmentData>,
    pub deleted: RoaringBitmap,
    pub payload_index: PayloadIndex,
    /// True once its files are written and the manifest names it.
    pub sealed: bool,
}

impl Slot {
    fn live(&self) -> u64 {
        self.data.len() as u64 - self.deleted.len()
    }
}

/// Everything about a collection that writes change.
pub(crate) struct State {
    pub mutable: MutableSegment,
    /// Frozen and sealed segments, oldest first.
    pub slots: BTreeMap<SegmentId, Slot>,
    /// The segment being flushed, and the last sequence number it holds.
    pub frozen: Option<(SegmentId, SeqNo)>,
    pub id_map: BTreeMap<PointId, Location>,
    /// The last write applied.
    pub last_seq: SeqNo,
    /// Writes up to here are in segment files; the WAL holds only later ones.
    pub flushed_seq: SeqNo,
    pub next_segment_id: u64,
}

impl State {
    fn mark_deleted(&mut self, loc: Location) {
        if loc.segment == self.mutable.id {
            self.mutable.deleted.insert(loc.offset);
        } else if let Some(slot) = self.slots.get_mut(&loc.segment) {
            slot.deleted.insert(loc.offset);
        }
    }
}

/// Live statistics for `Describe` and metrics.
#[derive(Debug, Clone, Default)]
pub struct CollectionStats {
    /// Live points.
    pub points: u64,
    /// Sealed (on-disk) segments.
    pub segments: usize,
    /// Bytes of segment files.
    pub disk_bytes: u64,
    /// Live points in sealed segments over all live points (1.0 when empty).
    pub indexed_fraction: f64,
    /// Live points not yet in segment files.
    pub unflushed_points: u64,
    /// Memory held by the segments' indexes, bytes.
    pub index_memory_bytes: u64,
    /// Sealed segments searched exactly although the collection names an index: IVF-PQ
    /// segments with too few points to train on (`IndexSpec::ivf_pq_min_points`).
    pub exact_segments: usize,
    /// Sealed segments searched through the collection's index (HNSW graph, IVF-PQ lists);
    /// 0 for a flat collection.
    pub indexed_segments: usize,
    /// Index builds running now (a flush or a compaction building a segment's graph, codes
    /// or lists); the points they hold are searched exactly until the build ends.
    pub building_segments: usize,
}

/// One collection. Shared between request handlers, the writer and maintenance threads.
pub struct Collection {
    /// Its internal number.
    pub id: CollectionId,
    pub(crate) config: RwLock<CollectionConfig>,
    pub(crate) state: RwLock<State>,
    pub(crate) db: Arc<Db>,
    pub(crate) dir: PathBuf,
    pub(crate) limits: Arc<Limits>,
    dropped: AtomicBool,
    /// Index builds running now (see [`CollectionStats::building_segments`]).
    pub(crate) building: std::sync::atomic::AtomicUsize,
}

/// A validated upsert, ready for the log.
#[derive(Debug)]
pub struct UpsertBatch {
    /// Point ids, unique within the batch.
    pub ids: Vec<PointId>,
    /// Vectors, row-major: `(ids.len(), dim)`.
    pub vectors: Vec<f32>,
    /// Parsed payloads, for the payload index.
    pub payloads: Vec<Option<Value>>,
    /// The same payloads as stored JSON text.
    pub payload_bytes: Vec<Option<Vec<u8>>>,
}

impl Collection {
    /// The collection's settings.
    pub fn config(&self) -> CollectionConfig {
        self.config.read().clone()
    }

    /// The collection's name.
    pub fn name(&self) -> String {
        self.config.read().name.clone()
    }

    pub(crate) fn is_dropped(&self) -> bool {
        self.dropped.load(Ordering::Acquire)
    }

    pub(crate) fn set_dropped(&self) {
        self.dropped.store(true, Ordering::Release);
    }

    /// Builds a segment's index ([`crate::segment::build_index`]), counted in `building` meanwhile.
    pub(crate) fn build_index(
        &self,
        spec: &crate::types::IndexSpec,
        metric: Metric,
        vectors: quiver_index::Vectors<'_>,
    ) -> Result<Option<crate::segment::BuiltIndex>> {
        struct Building<'a>(&'a std::sync::atomic::AtomicUsize);
        impl Drop for Building<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::AcqRel);
            }
        }
        self.building.fetch_add(1, Ordering::AcqRel);
        let _counted = Building(&self.building);
        crate::segment::build_index(spec, metric, vectors)
    }

    fn segments_dir(&self) -> PathBuf {
        self.dir.join("segments")
    }

    /// Checks a query or point vector against the collection: dimension, finite values, and
    /// for cosine, not all zeros. `index` names the vector in the error.
    pub fn check_vector(&self, index: usize, v: &[f32]) -> Result<()> {
        let (dim, metric) = {
            let c = self.config.read();
            (c.dim, c.metric)
        };
        check_vector(dim, metric, index, v)
    }

    /// Validates a batch of points (ids, vectors, payload JSON text) into an [`UpsertBatch`].
    pub fn prepare_upsert(
        &self,
        points: Vec<(PointId, Vec<f32>, Option<String>)>,
    ) -> Result<UpsertBatch> {
        let (dim, metric) = {
            let c = self.config.read();
            (c.dim, c.metric)
        };
        if points.is_empty() {
            return Err(StorageError::Empty {
                what: "upsert batch",
            });
        }
        if points.len() > self.limits.max_batch {
            return Err(StorageError::BatchTooLarge {
                size: points.len(),
                limit: self.limits.max_batch,
            });
        }
        let mut seen = HashSet::with_capacity(points.len());
        let mut batch = UpsertBatch {
            ids: Vec::with_capacity(points.len()),
            vectors: Vec::with_capacity(points.len() * dim),
            payloads: Vec::with_capacity(points.len()),
            payload_bytes: Vec::with_capacity(points.len()),
        };
        for (i, (id, vector, payload)) in points.into_iter().enumerate() {
            id.validate()?;
            if !seen.insert(id.clone()) {
                return Err(StorageError::DuplicateId { id: id.to_string() });
            }
            check_vector(dim, metric, i, &vector)?;
            let (parsed, raw) = match payload.filter(|p| !p.trim().is_empty()) {
                None => (None, None),
                Some(text) => {
                    if text.len() > self.limits.max_payload_bytes {
                        return Err(StorageError::PayloadTooLarge {
                            index: i,
                            size: text.len(),
                            limit: self.limits.max_payload_bytes,
                        });
                    }
                    let v: Value =
                        serde_json::from_str(&text).map_err(|e| StorageError::InvalidPayload {
                            index: i,
                            reason: e.to_string(),
                        })?;
                    if !v.is_object() {
                        return Err(StorageError::InvalidPayload {
                            index: i,
                            reason: "a payload must be a JSON object".into(),
                        });
                    }
                    (Some(v), Some(text.into_bytes()))
                }
            };
            batch.ids.push(id);
            batch.vectors.extend_from_slice(&vector);
            batch.payloads.push(parsed);
            batch.payload_bytes.push(raw);
        }
        Ok(batch)
    }

    /// Validates ids for a delete or get.
    pub fn check_ids(&self, ids: &[PointId]) -> Result<()> {
        if ids.is_empty() {
            return Err(StorageError::Empty { what: "id list" });
        }
        if ids.len() > self.limits.max_batch {
            return Err(StorageError::BatchTooLarge {
                size: ids.len(),
                limit: self.limits.max_batch,
            });
        }
        ids.iter().try_for_each(PointId::validate)
    }

    /// Validates a filter against the limits.
    pub fn check_filter(&self, filter: &Filter) -> Result<()> {
        filter.validate(&self.limits)
    }

    /// Applies a durable upsert. `payloads` are the parsed payloads when the caller has them
    /// (`None` during WAL replay: they are read back from RocksDB if an index needs them).
    pub(crate) fn apply_upsert(
        &self,
        seq: SeqNo,
        ids: &[PointId],
        vectors: &[f32],
        payloads: Option<&[Option<Value>]>,
    ) -> Result<u64> {
        let mut s = self.state.write();
        let dim = s.mutable.dim;
        let fetched;
        let payloads = match payloads {
            Some(p) => Some(p),
            None if !s.mutable.payload_index.is_empty() => {
                fetched = self.db.payloads(self.id, ids)?;
                Some(&fetched[..])
            }
            None => None,
        };
        for (i, (id, v)) in ids.iter().zip(vectors.chunks_exact(dim)).enumerate() {
            if let Some(old) = s.id_map.get(id).copied() {
                s.mark_deleted(old);
            }
            let offset = s.mutable.push(id.clone(), v);
            if let Some(Some(p)) = payloads.map(|p| &p[i]) {
                s.mutable.payload_index.add_point(offset, p);
            }
            let segment = s.mutable.id;
            s.id_map.insert(id.clone(), Location { segment, offset });
        }
        s.last_seq = seq;
        Ok(ids.len() as u64)
    }

    /// Applies a durable delete; returns how many points were there.
    pub(crate) fn apply_delete(&self, seq: SeqNo, ids: &[PointId]) -> u64 {
        let mut s = self.state.write();
        let mut n = 0;
        for id in ids {
            if let Some(loc) = s.id_map.remove(id) {
                s.mark_deleted(loc);
                n += 1;
            }
        }
        s.last_seq = seq;
        n
    }

    /// Sequence number of the last write applied to this collection: any upsert or delete
    /// changes it (caches of derived answers key on it).
    pub fn last_seq(&self) -> u64 {
        self.state.read().last_seq.0
    }

    /// Live statistics.
    pub fn stats(&self) -> CollectionStats {
        // The config lock first and alone: never held while waiting for the state lock.
        let indexed = self.config.read().index != crate::types::IndexSpec::Flat;
        let s = self.state.read();
        let points = s.id_map.len() as u64;
        let sealed: Vec<&Slot> = s.slots.values().filter(|sl| sl.sealed).collect();
        let in_sealed: u64 = sealed.iter().map(|sl| sl.live()).sum();
        CollectionStats {
            indexed_segments: if indexed {
                sealed
                    .iter()
                    .filter(|sl| !matches!(sl.data.index, quiver_index::IndexKind::Flat(_)))
                    .count()
            } else {
                0
            },
            building_segments: self.building.load(Ordering::Acquire),
            exact_segments: if indexed {
                sealed
                    .iter()
                    .filter(|sl| matches!(sl.data.index, quiver_index::IndexKind::Flat(_)))
                    .count()
            } else {
                0
            },
            points,
            segments: sealed.len(),
            disk_bytes: sealed
                .iter()
                .filter_map(|sl| {
                    let d = sl.data.disk.as_ref()?;
                    Some(d.1 + sl.payload_index.text_file_bytes())
                })
                .sum(),
            indexed_fraction: if points == 0 {
                1.0
            } else {
                in_sealed as f64 / points as f64
            },
            unflushed_points: points - in_sealed,
            index_memory_bytes: s
                .slots
                .values()
                .map(|sl| {
                    (sl.data.index.memory_bytes() + sl.payload_index.text_memory_bytes()) as u64
                })
                .sum::<u64>()
                + s.mutable.payload_index.text_memory_bytes() as u64,
        }
    }
}

pub(crate) fn check_vector(dim: usize, metric: Metric, index: usize, v: &[f32]) -> Result<()> {
    if v.len() != dim {
        return Err(StorageError::WrongDimension {
            index,
            expected: dim,
            got: v.len(),
        });
    }
    if let Some(position) = v.iter().position(|x| !x.is_finite()) {
        return Err(StorageError::NonFiniteValue { index, position });
    }
    if metric == Metric::Cosine && v.iter().all(|x| *x == 0.0) {
        return Err(StorageError::ZeroVector { index });
    }
    Ok(())
}
