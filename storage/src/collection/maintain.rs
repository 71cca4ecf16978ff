//! Freeze, flush, compaction, payload index creation, the manifest, and recovery at start.
//!
//! Every change to the set of segments ends in one atomic, synced RocksDB batch that writes the
//! manifest and every sealed segment's deletion bitmap, and (for a flush) deletes the WAL
//! records the new segment holds. A crash before that batch leaves the old manifest and the
//! WAL intact; leftover files of the unfinished segment are removed at the next start.

use super::{Collection, Slot, State, text};
use crate::codec::{self, Reader};
use crate::db::Db;
use crate::error::{Result, StorageError, io_err};
use crate::payload_index::PayloadIndex;
use crate::segment::{self, MutableSegment, SegmentData};
use crate::text::{Bm25Params, TextIndex};
use crate::types::{CollectionConfig, CollectionId, FieldType, Limits, Location, SegmentId, SeqNo};
use crate::wal::WalOp;
use parking_lot::RwLock;
use roaring::RoaringBitmap;
use rocksdb::WriteBatch;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

/// What RocksDB keeps about a collection under `manifest/{id}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Manifest {
    pub config: CollectionConfig,
    pub segments: Vec<SegmentId>,
    pub flushed_seq: SeqNo,
    pub next_segment_id: u64,
}

/// Share of deleted points above which a segment is rewritten by automatic compaction.
const COMPACT_DELETED_SHARE: f64 = 0.3;
/// Automatic compaction merges small segments once there are this many.
const COMPACT_SMALL_SEGMENTS: usize = 4;

impl Collection {
    /// Creates the in-memory side of a new, empty collection (its manifest is written by the caller).
    pub(crate) fn create(
        id: CollectionId,
        config: CollectionConfig,
        db: Arc<Db>,
        dir: PathBuf,
        limits: Arc<Limits>,
    ) -> Result<Collection> {
        std::fs::create_dir_all(dir.join("segments")).map_err(io_err(&dir))?;
        let state = State {
            mutable: MutableSegment::new(
                SegmentId(0),
                config.dim,
                PayloadIndex::new(&config.field_indexes),
            ),
            slots: BTreeMap::new(),
            frozen: None,
            id_map: BTreeMap::new(),
            last_seq: SeqNo(0),
            flushed_seq: SeqNo(0),
            next_segment_id: 1,
        };
        Ok(Collection {
            id,
            config: RwLock::new(config),
            state: RwLock::new(state),
            db,
            dir,
            limits,
            dropped: AtomicBool::new(false),
            building: Default::default(),
        })
    }

    /// The manifest as the state stands, with the batch entries that persist it.
    fn manifest_batch(
        &self,
        s: &State,
        batch: &mut WriteBatch,
        removed: &[SegmentId],
    ) -> Result<()> {
        let manifest = Manifest {
            config: self.config.read().clone(),
            segments: s
                .slots
                .values()
                .filter(|sl| sl.sealed)
                .map(|sl| sl.data.id)
                .collect(),
            flushed_seq: s.flushed_seq,
            next_segment_id: s.next_segment_id,
        };
        let json = serde_json::to_vec(&manifest).expect("manifest serializes");
        batch.put(codec::manifest_key(self.id), json);
        for slot in s.slots.values().filter(|sl| sl.sealed) {
            let mut raw = Vec::with_capacity(slot.deleted.serialized_size());
            slot.deleted
                .serialize_into(&mut raw)
                .expect("writing to a Vec cannot fail");
            batch.put(codec::deleted_key(self.id, slot.data.id), raw);
        }
        for r in removed {
            batch.delete(codec::deleted_key(self.id, *r));
        }
        Ok(())
    }

    /// Ends the mutable segment if it holds anything and no other segment is being flushed.
    /// Returns true if a segment was frozen (the caller then schedules its flush).
    pub(crate) fn freeze(&self, only_if_full: bool) -> bool {
        let mut s = self.state.write();
        let threshold = self.config.read().flush_threshold;
        if s.frozen.is_some()
            || s.mutable.is_empty()
            || (only_if_full && s.mutable.len() < threshold)
        {
            return false;
        }
        let fields = self.config.read().field_indexes.clone();
        let next = SegmentId(s.next_segment_id);
        s.next_segment_id += 1;
        let fresh = MutableSegment::new(next, s.mutable.dim, PayloadIndex::new(&fields));
        let old = std::mem::replace(&mut s.mutable, fresh);
        let (data, deleted, payload_index) = old.freeze();
        let id = data.id;
        s.slots.insert(
            id,
            Slot {
                data: Arc::new(data),
                deleted,
                payload_index,
                sealed: false,
            },
        );
        s.frozen = Some((id, s.last_seq));
        true
    }

    /// True while a frozen segment waits for its flush.
    pub(crate) fn has_frozen(&self) -> bool {
        self.state.read().frozen.is_some()
    }

    /// Writes the frozen segment to files, seals it and truncates the WAL. Returns false if
    /// there was nothing to flush.
    pub(crate) fn flush_frozen(&self) -> Result<bool> {
        let (id, seq, data) = {
            let s = self.state.read();
            match s.frozen {
                Some((id, seq)) => (id, seq, s.slots[&id].data.clone()),
                None => return Ok(false),
            }
        };
        let (spec, metric) = {
            let c = self.config.read();
            (c.index, c.metric)
        };
        let index = self.build_index(&spec, metric, data.vectors())?;
        let (dir, _) = segment::write_segment(
            &self.segments_dir(),
            id,
            data.dim,
            data.vectors.as_slice(),
            &data.ids,
            index.as_ref(),
        )?;
        let opened = segment::open_segment(&dir, id, data.dim, metric, &spec)?;
        let bodies = match self.state.read().slots.get(&id) {
            Some(slot) => text::mem_bodies(&slot.payload_index, data.len()),
            None => return Ok(false),
        };
        let texts = text::write_bodies(&dir, id, data.dim, data.len(), bodies)?;
        let mut s = self.state.write();
        if self.is_dropped() {
            return Ok(false);
        }
        let slot = s
            .slots
            .get_mut(&id)
            .expect("frozen slot stays until flushed");
        // The frozen text indexes hold what the in-memory ones held: kept even if the manifest
        // write below fails.
        for (f, t) in texts {
            slot.payload_index.set_text(&f, t);
        }
        let previous = std::mem::replace(&mut slot.data, Arc::new(opened));
        slot.sealed = true;
        let old_flushed = s.flushed_seq;
        s.flushed_seq = seq;
        let mut batch = WriteBatch::default();
        self.manifest_batch(&s, &mut batch, &[])?;
        batch.delete_range_cf(
            self.db.wal(),
            codec::wal_key(self.id, SeqNo(0)),
            codec::wal_key(self.id, SeqNo(seq.0 + 1)),
        );
        if let Err(e) = self.db.write(batch, true) {
            // Not persisted: keep serving the in-memory copy and retry at the next flush.
            let slot = s.slots.get_mut(&id).expect("still there");
            slot.data = previous;
            slot.sealed = false;
            s.flushed_seq = old_flushed;
            return Err(e);
        }
        s.frozen = None;
        Ok(true)
    }

    /// Picks segments to merge: all sealed ones when forced (if there is anything to gain),
    /// otherwise those with many deletions, plus small ones once there are several.
    fn plan_compaction(&self, s: &State, force: bool) -> Vec<SegmentId> {
        let sealed: Vec<&Slot> = s.slots.values().filter(|sl| sl.sealed).collect();
        if force {
            let gain = sealed.len() > 1 || sealed.iter().any(|sl| !sl.deleted.is_empty());
            return if gain {
                sealed.iter().map(|sl| sl.data.id).collect()
            } else {
                Vec::new()
            };
        }
        let threshold = self.config.read().flush_threshold as u64;
        let mut pick: Vec<SegmentId> = sealed
            .iter()
            .filter(|sl| sl.deleted.len() as f64 > COMPACT_DELETED_SHARE * sl.data.len() as f64)
            .map(|sl| sl.data.id)
            .collect();
        let small: Vec<SegmentId> = sealed
            .iter()
            .filter(|sl| sl.live() < 2 * threshold && !pick.contains(&sl.data.id))
            .map(|sl| sl.data.id)
            .collect();
        if small.len() >= COMPACT_SMALL_SEGMENTS {
            pick.extend(small);
        }
        pick.sort();
        pick
    }

    /// Merges segments (see `plan_compaction`) into one, dropping deleted points.
    /// Returns false if there was nothing to do.
    pub(crate) fn compact(&self, force: bool) -> Result<bool> {
        let (inputs, new_id) = {
            let mut s = self.state.write();
            let plan = self.plan_compaction(&s, force);
            if plan.is_empty() {
                return Ok(false);
            }
            let inputs: Vec<(Arc<SegmentData>, RoaringBitmap)> = plan
                .iter()
                .map(|id| (s.slots[id].data.clone(), s.slots[id].deleted.clone()))
                .collect();
            let new_id = SegmentId(s.next_segment_id);
            s.next_segment_id += 1;
            (inputs, new_id)
        };
        let dim = self.config.read().dim;
        let mut vectors = Vec::new();
        let mut ids = Vec::new();
        let mut origin = Vec::new();
        for (data, deleted) in &inputs {
            let view = data.vectors();
            for offset in 0..data.len() as u32 {
                if !deleted.contains(offset) {
                    vectors.extend_from_slice(view.get(offset));
                    ids.push(data.ids[offset as usize].clone());
                    origin.push((data.id, offset));
                }
            }
        }
        let merged = if ids.is_empty() {
            None
        } else {
            let (spec, metric) = {
                let c = self.config.read();
                (c.index, c.metric)
            };
            let index =
                self.build_index(&spec, metric, quiver_index::Vectors::new(&vectors, dim))?;
            let (dir, _) = segment::write_segment(
                &self.segments_dir(),
                new_id,
                dim,
                &vectors,
                &ids,
                index.as_ref(),
            )?;
            drop(vectors);
            let data = segment::open_segment(&dir, new_id, dim, metric, &spec)?;
            let fields = self.config.read().field_indexes.clone();
            let mut pidx = PayloadIndex::new(&fields);
            if !fields.is_empty() {
                for (chunk_no, chunk) in ids.chunks(4096).enumerate() {
                    for (i, p) in self.db.payloads(self.id, chunk)?.iter().enumerate() {
                        if let Some(p) = p {
                            pidx.add_point((chunk_no * 4096 + i) as u32, p);
                        }
                    }
                }
            }
            let bodies = text::mem_bodies(&pidx, ids.len());
            for (f, t) in text::write_bodies(&dir, new_id, dim, ids.len(), bodies)? {
                pidx.set_text(&f, t);
            }
            Some((data, pidx))
        };
        let mut s = self.state.write();
        if self.is_dropped() {
            return Ok(false);
        }
        let removed: Vec<SegmentId> = inputs.iter().map(|(d, _)| d.id).collect();
        let mut old_slots = Vec::new();
        for id in &removed {
            old_slots.push(
                s.slots
                    .remove(id)
                    .expect("only compaction removes sealed segments"),
            );
        }
        if let Some((data, payload_index)) = merged {
            // Points deleted or overwritten while the merge ran are deleted in the new segment.
            let mut deleted = RoaringBitmap::new();
            for (new_offset, (seg, old)) in origin.iter().enumerate() {
                let new_offset = new_offset as u32;
                let loc = Location {
                    segment: *seg,
                    offset: *old,
                };
                let id = &data.ids[new_offset as usize];
                if s.id_map.get(id) == Some(&loc) {
                    s.id_map.insert(
                        id.clone(),
                        Location {
                            segment: new_id,
                            offset: new_offset,
                        },
                    );
                } else {
                    deleted.insert(new_offset);
                }
            }
            s.slots.insert(
                new_id,
                Slot {
                    data: Arc::new(data),
                    deleted,
                    payload_index,
                    sealed: true,
                },
            );
        }
        let mut batch = WriteBatch::default();
        self.manifest_batch(&s, &mut batch, &removed)?;
        if let Err(e) = self.db.write(batch, true) {
            // Roll back: the old segments are still what the manifest names.
            if s.slots.remove(&new_id).is_some() {
                for (new_offset, (seg, old)) in origin.iter().enumerate() {
                    let here = Location {
                        segment: new_id,
                        offset: new_offset as u32,
                    };
                    if s.id_map.get(&ids[new_offset]) == Some(&here) {
                        s.id_map.insert(
                            ids[new_offset].clone(),
                            Location {
                                segment: *seg,
                                offset: *old,
                            },
                        );
                    }
                }
            }
            for slot in old_slots {
                s.slots.insert(slot.data.id, slot);
            }
            return Err(e);
        }
        drop(s);
        for slot in old_slots {
            if let Some((dir, _)) = &slot.data.disk {
                // The manifest no longer names it; a failure here leaves an orphan removed at start.
                if let Err(e) = std::fs::remove_dir_all(dir) {
                    tracing::warn!(path = %dir.display(), error = %e, "could not remove a compacted segment");
                }
            }
        }
        Ok(true)
    }

    /// Indexes a payload field in every segment. Idempotent for the same type (and, for text,
    /// the same BM25 constants, `None` meaning the defaults).
    pub(crate) fn create_field_index(
        &self,
        field: &str,
        ty: FieldType,
        bm25: Option<Bm25Params>,
    ) -> Result<()> {
        if let Some(p) = bm25 {
            if ty != FieldType::Text {
                return Err(StorageError::InvalidConfig {
                    reason: "BM25 constants apply to text indexes only".into(),
                });
            }
            if !(p.k1.is_finite() && (0.0..=10.0).contains(&p.k1))
                || !(p.b.is_finite() && (0.0..=1.0).contains(&p.b))
            {
                return Err(StorageError::InvalidConfig {
                    reason: format!(
                        "BM25 k1 must be in 0..=10 and b in 0..=1, got k1 {} b {}",
                        p.k1, p.b
                    ),
                });
            }
        }
        let params = (ty == FieldType::Text).then(|| bm25.unwrap_or_default());
        if field.is_empty() || field.split('.').any(str::is_empty) {
            return Err(StorageError::InvalidConfig {
                reason: format!("field {field:?} is empty or has an empty part"),
            });
        }
        let mut s = self.state.write();
        {
            let mut c = self.config.write();
            match c.field_indexes.iter().find(|(f, _)| f == field) {
                Some((_, t)) if *t == ty && c.bm25.get(field).copied() == params => return Ok(()),
                Some((_, t)) if *t == ty => {
                    return Err(StorageError::InvalidConfig {
                        reason: format!(
                            "field '{field}' is already text-indexed with other BM25 constants"
                        ),
                    });
                }
                Some((_, t)) => {
                    return Err(StorageError::InvalidConfig {
                        reason: format!("field '{field}' is already indexed as {t:?}"),
                    });
                }
                None => {
                    c.field_indexes.push((field.to_string(), ty));
                    if let Some(p) = params {
                        c.bm25.insert(field.to_string(), p);
                    }
                }
            }
        }
        let mut batch = WriteBatch::default();
        self.manifest_batch(&s, &mut batch, &[])?;
        if let Err(e) = self.db.write(batch, true) {
            let mut c = self.config.write();
            c.field_indexes.retain(|(f, _)| f != field);
            c.bm25.remove(field);
            return Err(e);
        }
        let s = &mut *s;
        let fill = |ids: &[crate::types::PointId],
                    deleted: &RoaringBitmap,
                    idx: &mut PayloadIndex|
         -> Result<()> {
            idx.add_field(field, ty);
            let live: Vec<u32> = (0..ids.len() as u32)
                .filter(|o| !deleted.contains(*o))
                .collect();
            for chunk in live.chunks(4096) {
                let payloads = self
                    .db
                    .payloads(self.id, chunk.iter().map(|o| &ids[*o as usize]))?;
                for (o, p) in chunk.iter().zip(payloads) {
                    if let Some(p) = p {
                        idx.add_point_field(field, *o, &p);
                    }
                }
            }
            Ok(())
        };
        fill(
            &s.mutable.ids,
            &s.mutable.deleted,
            &mut s.mutable.payload_index,
        )?;
        for slot in s.slots.values_mut() {
            fill(&slot.data.ids, &slot.deleted, &mut slot.payload_index)?;
            if slot.sealed {
                text::seal_texts(slot)?;
            }
        }
        Ok(())
    }

    /// Rebuilds a collection at start: opens its sealed segments (verifying checksums), loads
    /// deletions, rebuilds the id map and payload indexes, and replays the WAL after the
    /// flushed sequence number. Returns the last sequence number seen.
    pub(crate) fn recover(
        id: CollectionId,
        manifest: Manifest,
        db: Arc<Db>,
        dir: PathBuf,
        limits: Arc<Limits>,
    ) -> Result<(Collection, SeqNo)> {
        let c = Collection::create(id, manifest.config.clone(), db, dir, limits)?;
        let dim = manifest.config.dim;
        let fields = manifest.config.field_indexes.clone();
        let seg_dir = c.segments_dir();
        {
            let mut s = c.state.write();
            s.flushed_seq = manifest.flushed_seq;
            s.last_seq = manifest.flushed_seq;
            s.next_segment_id = manifest.next_segment_id;
            for seg in &manifest.segments {
                let path = seg_dir.join(seg.0.to_string());
                let cfg = &manifest.config;
                let data = segment::open_segment(&path, *seg, dim, cfg.metric, &cfg.index)?;
                let raw =
                    c.db.rocks()
                        .get(codec::deleted_key(id, *seg))?
                        .ok_or_else(|| StorageError::Corrupted {
                            path: path.clone(),
                            reason: "its deletion bitmap is missing from RocksDB".into(),
                        })?;
                let deleted = RoaringBitmap::deserialize_from(&raw[..]).map_err(|e| {
                    StorageError::Corrupted {
                        path: path.clone(),
                        reason: format!("deletion bitmap does not decode: {e}"),
                    }
                })?;
                let mut payload_index = PayloadIndex::new(&fields);
                for (f, t) in &fields {
                    if *t == FieldType::Text
                        && let Some(ft) = crate::text::open(&path, *seg, dim, data.len(), f)?
                    {
                        payload_index.set_text(f, TextIndex::Frozen(Arc::new(ft)));
                    }
                }
                let live: Vec<u32> = (0..data.len() as u32)
                    .filter(|o| !deleted.contains(*o))
                    .collect();
                for &o in &live {
                    let pid = data.ids[o as usize].clone();
                    if let Some(old) = s.id_map.insert(
                        pid,
                        Location {
                            segment: *seg,
                            offset: o,
                        },
                    ) {
                        // Cannot happen with an intact manifest; the newer segment wins.
                        tracing::warn!(segment = seg.0, "point present in two segments");
                        s.mark_deleted(old);
                    }
                }
                if payload_index.needs_payloads() {
                    for chunk in live.chunks(4096) {
                        let payloads =
                            c.db.payloads(id, chunk.iter().map(|o| &data.ids[*o as usize]))?;
                        for (o, p) in chunk.iter().zip(payloads) {
                            if let Some(p) = p {
                                payload_index.add_point(*o, &p);
                            }
                        }
                    }
                }
                let mut slot = Slot {
                    data: Arc::new(data),
                    deleted,
                    payload_index,
                    sealed: true,
                };
                // A text index created after the segment was sealed, and lost to a crash
                // before its file was written: rebuilt above, written now.
                text::seal_texts(&mut slot)?;
                s.slots.insert(*seg, slot);
            }
            let mid = SegmentId(s.next_segment_id);
            s.next_segment_id += 1;
            s.mutable = MutableSegment::new(mid, dim, PayloadIndex::new(&fields));
        }
        // Remove segment folders the manifest does not name (a crash mid-flush or mid-compaction).
        let named: HashSet<String> = manifest.segments.iter().map(|s| s.0.to_string()).collect();
        if let Ok(entries) = std::fs::read_dir(&seg_dir) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                if !named.contains(&name) {
                    tracing::info!(path = %e.path().display(), "removing an unfinished segment");
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        // Replay the WAL.
        let mut last = manifest.flushed_seq;
        let start = codec::wal_key(id, SeqNo(manifest.flushed_seq.0 + 1));
        let end = codec::prefix_end(&codec::collection_prefix(id));
        let mut it = c.db.rocks().raw_iterator_cf(c.db.wal());
        it.seek(start);
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
            if k >= &end[..] {
                break;
            }
            let (_, seq) = codec::parse_wal_key(k)?;
            let op = WalOp::decode(v).map_err(|e| StorageError::Corrupted {
                path: PathBuf::from(format!(
                    "RocksDB WAL record {} of collection {}",
                    seq.0, id.0
                )),
                reason: e.to_string(),
            })?;
            match op {
                WalOp::Upsert {
                    ids,
                    vectors,
                    dim: d,
                } => {
                    if d != dim {
                        return Err(StorageError::Corrupted {
                            path: PathBuf::from(format!(
                                "RocksDB WAL record {} of collection {}",
                                seq.0, id.0
                            )),
                            reason: format!("dimension {d} instead of {dim}"),
                        });
                    }
                    c.apply_upsert(seq, &ids, &vectors, None)?;
                }
                WalOp::Delete { ids } => {
                    c.apply_delete(seq, &ids);
                }
            }
            last = seq;
            it.next();
        }
        it.status()?;
        drop(it);
        Ok((c, last))
    }
}

/// Reads every manifest in the database.
pub(crate) fn read_manifests(
    db: &Db,
) -> Result<Vec<(CollectionId, std::result::Result<Manifest, String>)>> {
    let mut out = Vec::new();
    let mut it = db.rocks().raw_iterator();
    it.seek(codec::MANIFEST_PREFIX);
    while let (Some(k), Some(v)) = (it.key(), it.value()) {
        if !k.starts_with(codec::MANIFEST_PREFIX) {
            break;
        }
        let mut r = Reader::new(&k[codec::MANIFEST_PREFIX.len()..]);
        let raw = r.bytes(8, "collection id")?;
        let id = CollectionId(u64::from_be_bytes(raw.try_into().expect("8 bytes")));
        out.push((
            id,
            serde_json::from_slice::<Manifest>(v).map_err(|e| e.to_string()),
        ));
        it.next();
    }
    it.status()?;
    Ok(out)
}
