//! Snapshots: a collection at one consistent point, in one file, taken while writes continue;
//! restored into a new collection through the ordinary durable write path.
//!
//! The consistent point: the writer thread is paused after applying every earlier write (see
//! `Storage::at_consistent_point`) just long enough to clone the segment handles and deletion
//! bitmaps, copy the mutable segment and take a RocksDB snapshot for the payloads. The file is
//! then written from those while writes go on.
//!
//! File layout (little-endian):
//! ```text
//! b"QUIVSNAP" | version u32 = 1 | config length u32 | config JSON | count u64 | dim u32
//! count × ( point id (codec.rs) | dim × f32 | payload length u32, u32::MAX for none | payload )
//! crc32 u32 of everything before | b"QEND"
//! ```

use crate::codec::{Reader, payload_key, put_f32s, put_point_id};
use crate::collection::Collection;
use crate::engine::Storage;
use crate::error::{Result, StorageError, io_err};
use crate::segment::SegmentData;
use crate::types::{CollectionConfig, PointId};
use roaring::RoaringBitmap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;
use std::sync::Arc;

const MAGIC: &[u8; 8] = b"QUIVSNAP";
const VERSION: u32 = 1;
const NO_PAYLOAD: u32 = u32::MAX;
const BATCH: usize = 1000;

/// What a snapshot holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// Points written.
    pub points: u64,
    /// Size of the file.
    pub bytes: u64,
}

/// The live points of a collection at one moment, cheap to take.
struct Capture {
    config: CollectionConfig,
    sealed: Vec<(Arc<SegmentData>, RoaringBitmap)>,
    mutable_ids: Vec<PointId>,
    mutable_vectors: Vec<f32>,
    mutable_deleted: RoaringBitmap,
}

impl Capture {
    fn take(c: &Collection) -> Capture {
        let s = c.state.read();
        Capture {
            config: c.config(),
            sealed: s
                .slots
                .values()
                .map(|sl| (sl.data.clone(), sl.deleted.clone()))
                .collect(),
            mutable_ids: s.mutable.ids.clone(),
            mutable_vectors: s.mutable.vectors.clone(),
            mutable_deleted: s.mutable.deleted.clone(),
        }
    }

    /// Every live point as (id, vector), segment by segment.
    fn for_each(&self, mut f: impl FnMut(&[&PointId], &[&[f32]]) -> Result<()>) -> Result<()> {
        let dim = self.config.dim;
        let mut run = |ids: &[PointId], vectors: &[f32], deleted: &RoaringBitmap| -> Result<()> {
            let live: Vec<u32> = (0..ids.len() as u32)
                .filter(|o| !deleted.contains(*o))
                .collect();
            for chunk in live.chunks(BATCH) {
                let cids: Vec<&PointId> = chunk.iter().map(|o| &ids[*o as usize]).collect();
                let cvs: Vec<&[f32]> = chunk
                    .iter()
                    .map(|o| &vectors[*o as usize * dim..(*o as usize + 1) * dim])
                    .collect();
                f(&cids, &cvs)?;
            }
            Ok(())
        };
        for (data, deleted) in &self.sealed {
            run(&data.ids, data.vectors.as_slice(), deleted)?;
        }
        run(
            &self.mutable_ids,
            &self.mutable_vectors,
            &self.mutable_deleted,
        )
    }

    fn live(&self) -> u64 {
        let sealed: u64 = self
            .sealed
            .iter()
            .map(|(d, del)| d.len() as u64 - del.len())
            .sum();
        sealed + self.mutable_ids.len() as u64 - self.mutable_deleted.len()
    }
}

/// A writer that checksums what passes through it.
struct Crc<W> {
    inner: W,
    crc: crc32fast::Hasher,
    bytes: u64,
}

impl<W: Write> Crc<W> {
    fn put(&mut self, b: &[u8]) -> std::io::Result<()> {
        self.crc.update(b);
        self.bytes += b.len() as u64;
        self.inner.write_all(b)
    }
}

impl Storage {
    /// Writes a snapshot of `collection` to `out` (created or replaced).
    pub fn snapshot(&self, collection: &Arc<Collection>, out: &Path) -> Result<SnapshotInfo> {
        let db = self.db().rocks();
        let (capture, snap) =
            self.at_consistent_point(collection, || (Capture::take(collection), db.snapshot()))?;
        let f = File::create(out).map_err(io_err(out))?;
        let mut w = Crc {
            inner: BufWriter::with_capacity(1 << 20, f),
            crc: crc32fast::Hasher::new(),
            bytes: 0,
        };
        let config = serde_json::to_vec(&capture.config).expect("config serializes");
        let mut head = MAGIC.to_vec();
        head.extend_from_slice(&VERSION.to_le_bytes());
        head.extend_from_slice(&(config.len() as u32).to_le_bytes());
        head.extend_from_slice(&config);
        head.extend_from_slice(&capture.live().to_le_bytes());
        head.extend_from_slice(&(capture.config.dim as u32).to_le_bytes());
        w.put(&head).map_err(io_err(out))?;
        let cf = self.db().payload();
        let mut points = 0u64;
        let mut buf = Vec::new();
        capture.for_each(|ids, vectors| {
            let keys: Vec<Vec<u8>> = ids
                .iter()
                .map(|id| payload_key(collection.id, id))
                .collect();
            let payloads = snap.multi_get_cf(keys.iter().map(|k| (cf, k.as_slice())));
            buf.clear();
            for ((id, v), p) in ids.iter().zip(vectors).zip(payloads) {
                put_point_id(&mut buf, id);
                put_f32s(&mut buf, v);
                match p? {
                    Some(raw) => {
                        buf.extend_from_slice(&(raw.len() as u32).to_le_bytes());
                        buf.extend_from_slice(&raw);
                    }
                    None => buf.extend_from_slice(&NO_PAYLOAD.to_le_bytes()),
                }
            }
            points += ids.len() as u64;
            w.put(&buf).map_err(io_err(out))
        })?;
        let crc = w.crc.clone().finalize();
        let mut tail = crc.to_le_bytes().to_vec();
        tail.extend_from_slice(b"QEND");
        w.inner.write_all(&tail).map_err(io_err(out))?;
        let f = w.inner.into_inner().map_err(|e| StorageError::Io {
            path: out.to_path_buf(),
            source: e.into_error(),
        })?;
        f.sync_all().map_err(io_err(out))?;
        Ok(SnapshotInfo {
            points,
            bytes: w.bytes + 8,
        })
    }

    /// Restores the snapshot file `input` into a new collection called `name`.
    pub fn restore(&self, name: &str, input: &Path) -> Result<Arc<Collection>> {
        let corrupted = |reason: &str| StorageError::Corrupted {
            path: input.to_path_buf(),
            reason: reason.to_string(),
        };
        // First pass: the checksum, before anything is created.
        let len = std::fs::metadata(input).map_err(io_err(input))?.len();
        if len < 8 {
            return Err(corrupted("too short to be a snapshot"));
        }
        let mut r = BufReader::with_capacity(1 << 20, File::open(input).map_err(io_err(input))?);
        let mut crc = crc32fast::Hasher::new();
        let mut left = len - 8;
        let mut chunk = vec![0u8; 1 << 20];
        while left > 0 {
            let n = (left as usize).min(chunk.len());
            r.read_exact(&mut chunk[..n]).map_err(io_err(input))?;
            crc.update(&chunk[..n]);
            left -= n as u64;
        }
        let mut tail = [0u8; 8];
        r.read_exact(&mut tail).map_err(io_err(input))?;
        if &tail[4..] != b"QEND"
            || u32::from_le_bytes(tail[..4].try_into().expect("4 bytes")) != crc.finalize()
        {
            return Err(corrupted("checksum mismatch or truncated"));
        }
        // Second pass: parse and write.
        let raw = std::fs::read(input).map_err(io_err(input))?;
        let mut rd = Reader::new(&raw[..raw.len() - 8]);
        let bad = |e: StorageError| corrupted(&e.to_string());
        if rd.bytes(8, "magic").map_err(bad)? != MAGIC {
            return Err(corrupted("not a Quiver snapshot"));
        }
        let version = rd.u32("version").map_err(bad)?;
        if version != VERSION {
            return Err(corrupted(&format!(
                "unsupported snapshot version {version}"
            )));
        }
        let clen = rd.u32("config length").map_err(bad)? as usize;
        let mut config: CollectionConfig =
            serde_json::from_slice(rd.bytes(clen, "config").map_err(bad)?)
                .map_err(|e| corrupted(&format!("config does not decode: {e}")))?;
        let count = rd.u64("count").map_err(bad)?;
        let dim = rd.u32("dim").map_err(bad)? as usize;
        if dim != config.dim {
            return Err(corrupted("dimension differs from the config's"));
        }
        let fields = std::mem::take(&mut config.field_indexes);
        let bm25 = config.bm25.clone();
        config.name = name.to_string();
        let c = self.create_collection(config)?;
        let filled = (|| -> Result<()> {
            for (f, t) in &fields {
                self.create_field_index(&c, f, *t, bm25.get(f).copied())?;
            }
            let mut batch = Vec::with_capacity(BATCH);
            for i in 0..count {
                let id = rd.point_id().map_err(bad)?;
                let v = rd.f32s(dim, "vector").map_err(bad)?;
                let plen = rd.u32("payload length").map_err(bad)?;
                let payload = if plen == NO_PAYLOAD {
                    None
                } else {
                    let p = rd.bytes(plen as usize, "payload").map_err(bad)?;
                    Some(
                        String::from_utf8(p.to_vec())
                            .map_err(|_| corrupted("payload is not UTF-8"))?,
                    )
                };
                batch.push((id, v, payload));
                if batch.len() == BATCH || i + 1 == count {
                    let prepared = c.prepare_upsert(std::mem::take(&mut batch))?;
                    self.upsert(&c, prepared)?;
                }
            }
            if rd.remaining() != 0 {
                return Err(corrupted("stray bytes after the last point"));
            }
            Ok(())
        })();
        if let Err(e) = filled {
            let _ = self.drop_collection(name);
            return Err(e);
        }
        Ok(c)
    }
}
