//! Segments: a run of points with their vectors, ids and index. The mutable segment grows in
//! memory; frozen, it is written to segment files and reopened read-only through mmap.
//!
//! ```text
//! MutableSegment ──freeze──► SegmentData (owned vectors) ──write_segment──► {segment}/ files
//!                                                        ◄──open_segment── (mmap, checksums)
//! ```
//!
//! On disk, `{collection dir}/segments/{segment id}/` holds one file per kind:
//!
//! ```text
//! every file : header (64 bytes) | body | crc32 u32 of header+body | b"QEND"
//! header     : magic b"QUIVSEG\0" | kind u32 | format version u32 | segment id u64
//!              | count u64 | dim u32 | 28 zero bytes
//! vectors.bin: body = count × dim × f32 LE (row-major, starts at byte 64: 4-byte aligned for mmap)
//! ids.bin    : body = count × point id (codec.rs: tag u8, then u64 LE or u32 length + UTF-8)
//! hnsw.bin   : body = the frozen graph (quiver_index::hnsw::graph: its own layout), present
//!              when the collection's index is hnsw
//! sq8.bin    : body = 8-bit codes of the vectors (quiver_index::sq8: its own layout), beside
//!              hnsw.bin when the hnsw index has quantize_int8
//! ivfpq.bin  : body = the IVF-PQ index (quiver_index::ivfpq::bytes: its own layout), present
//!              when the collection's index is ivf_pq and the segment has enough points to
//!              train it (IndexSpec::ivf_pq_min_points); smaller segments are searched exactly
//! ```
//!
//! | file       | what it holds                                                        |
//! |------------|----------------------------------------------------------------------|
//! | `mod.rs`   | segments in memory, the file header and checksum, writing, opening     |
//! | `index.rs` | the index file: which one a segment has, building it, reading it back |
//! Files are written in a `.tmp` folder, fsynced, and renamed into place; the manifest in
//! RocksDB names the segment only after that. Deletions are not in these files: they live in
//! RocksDB (`deleted/` keys) because they change after the segment is sealed.

mod index;

pub use index::{BuiltIndex, HNSW_FILE, IVFPQ_FILE, SQ8_FILE, build_index, index_file};

use crate::codec::{Reader, put_point_id};
use crate::error::{Result, StorageError, io_err};
use crate::payload_index::PayloadIndex;
use crate::types::IndexSpec;
use crate::types::{PointId, SegmentId};
use memmap2::Mmap;
use quiver_index::{FlatIndex, IndexKind, Metric, Vectors};
use roaring::RoaringBitmap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

#[cfg(not(target_endian = "little"))]
compile_error!("segment files are read with mmap as little-endian f32");

const MAGIC: &[u8; 8] = b"QUIVSEG\0";
const TRAILER_MAGIC: &[u8; 4] = b"QEND";
const FORMAT_VERSION: u32 = 1;
pub(crate) const HEADER_LEN: usize = 64;
pub(crate) const TRAILER_LEN: usize = 8;
const KIND_VECTORS: u32 = 1;
const KIND_IDS: u32 = 2;
/// File of the vectors.
pub const VECTORS_FILE: &str = "vectors.bin";
/// File of the ids.
pub const IDS_FILE: &str = "ids.bin";

/// Vectors held in memory or mapped from a segment file.
#[derive(Debug)]
pub enum VectorData {
    /// In memory (mutable and frozen segments).
    Owned(Vec<f32>),
    /// Mapped from `vectors.bin`; `len` floats starting at byte `HEADER_LEN`.
    Mapped {
        /// The whole file.
        map: Mmap,
        /// Number of floats.
        len: usize,
    },
}

impl VectorData {
    /// The floats, row-major.
    pub fn as_slice(&self) -> &[f32] {
        match self {
            VectorData::Owned(v) => v,
            VectorData::Mapped { map, len } => {
                bytemuck::cast_slice(&map[HEADER_LEN..HEADER_LEN + len * 4])
            }
        }
    }
}

/// A segment that no longer changes (its deletions are tracked beside it).
#[derive(Debug)]
pub struct SegmentData {
    /// Its number.
    pub id: SegmentId,
    /// Vector dimension.
    pub dim: usize,
    /// The vectors.
    pub vectors: VectorData,
    /// Point ids by offset.
    pub ids: Vec<PointId>,
    /// The search index.
    pub index: IndexKind,
    /// Where its files are and their total size, once written.
    pub disk: Option<(PathBuf, u64)>,
}

impl SegmentData {
    /// The vectors as an index view.
    pub fn vectors(&self) -> Vectors<'_> {
        Vectors::new(self.vectors.as_slice(), self.dim)
    }

    /// Number of points, deleted ones included.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// True if the segment holds no points.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// The segment that takes writes, in memory.
#[derive(Debug)]
pub struct MutableSegment {
    /// Its number (kept when it is frozen and written).
    pub id: SegmentId,
    /// Vector dimension.
    pub dim: usize,
    /// Vectors, row-major: `(ids.len(), dim)`.
    pub vectors: Vec<f32>,
    /// Point ids by offset.
    pub ids: Vec<PointId>,
    /// Offsets deleted or overwritten.
    pub deleted: RoaringBitmap,
    /// Indexes of its payloads.
    pub payload_index: PayloadIndex,
}

impl MutableSegment {
    /// An empty segment.
    pub fn new(id: SegmentId, dim: usize, payload_index: PayloadIndex) -> Self {
        MutableSegment {
            id,
            dim,
            vectors: Vec::new(),
            ids: Vec::new(),
            deleted: RoaringBitmap::new(),
            payload_index,
        }
    }

    /// Appends a point and returns its offset.
    pub fn push(&mut self, id: PointId, vector: &[f32]) -> u32 {
        let offset = self.ids.len() as u32;
        self.ids.push(id);
        self.vectors.extend_from_slice(vector);
        offset
    }

    /// Points present, deleted ones included.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// True if no point was ever appended.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Live points.
    pub fn live(&self) -> u64 {
        self.ids.len() as u64 - self.deleted.len()
    }

    /// The vectors as an index view.
    pub fn vectors(&self) -> Vectors<'_> {
        Vectors::new(&self.vectors, self.dim)
    }

    /// Ends the segment: its data becomes read-only, its deletions and payload index go on.
    pub fn freeze(self) -> (SegmentData, RoaringBitmap, PayloadIndex) {
        let data = SegmentData {
            id: self.id,
            dim: self.dim,
            vectors: VectorData::Owned(self.vectors),
            ids: self.ids,
            index: IndexKind::Flat(FlatIndex),
            disk: None,
        };
        (data, self.deleted, self.payload_index)
    }
}

pub(crate) fn header(kind: u32, segment: SegmentId, count: usize, dim: usize) -> Vec<u8> {
    let mut h = Vec::with_capacity(HEADER_LEN);
    h.extend_from_slice(MAGIC);
    h.extend_from_slice(&kind.to_le_bytes());
    h.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    h.extend_from_slice(&segment.0.to_le_bytes());
    h.extend_from_slice(&(count as u64).to_le_bytes());
    h.extend_from_slice(&(dim as u32).to_le_bytes());
    h.resize(HEADER_LEN, 0);
    h
}

/// Writes one file: header, body chunks, checksum trailer; fsynced.
pub(crate) fn write_file(path: &Path, header: &[u8], body: &[&[u8]]) -> Result<u64> {
    let mut f = File::create(path).map_err(io_err(path))?;
    let mut crc = crc32fast::Hasher::new();
    let mut len = 0u64;
    for part in std::iter::once(header).chain(body.iter().copied()) {
        crc.update(part);
        f.write_all(part).map_err(io_err(path))?;
        len += part.len() as u64;
    }
    f.write_all(&crc.finalize().to_le_bytes())
        .map_err(io_err(path))?;
    f.write_all(TRAILER_MAGIC).map_err(io_err(path))?;
    f.sync_all().map_err(io_err(path))?;
    Ok(len + TRAILER_LEN as u64)
}

pub(crate) fn fsync_dir(path: &Path) -> Result<()> {
    File::open(path)
        .and_then(|d| d.sync_all())
        .map_err(io_err(path))
}

/// Writes a segment's files into `segments_dir/{id}` (via a `.tmp` folder and a rename).
/// Returns the folder and the bytes written.
pub fn write_segment(
    segments_dir: &Path,
    id: SegmentId,
    dim: usize,
    vectors: &[f32],
    ids: &[PointId],
    index: Option<&BuiltIndex>,
) -> Result<(PathBuf, u64)> {
    let final_dir = segments_dir.join(id.0.to_string());
    let tmp_dir = segments_dir.join(format!("{}.tmp", id.0));
    for d in [&final_dir, &tmp_dir] {
        if d.exists() {
            // Left by a crash before the manifest named it: never served, safe to replace.
            fs::remove_dir_all(d).map_err(io_err(d))?;
        }
    }
    fs::create_dir_all(&tmp_dir).map_err(io_err(&tmp_dir))?;
    let mut bytes = write_file(
        &tmp_dir.join(VECTORS_FILE),
        &header(KIND_VECTORS, id, ids.len(), dim),
        &[bytemuck::cast_slice(vectors)],
    )?;
    let mut raw_ids = Vec::with_capacity(ids.len() * 9);
    for id in ids {
        put_point_id(&mut raw_ids, id);
    }
    bytes += write_file(
        &tmp_dir.join(IDS_FILE),
        &header(KIND_IDS, id, ids.len(), dim),
        &[&raw_ids],
    )?;
    if let Some(built) = index {
        bytes += write_file(
            &tmp_dir.join(built.file),
            &header(built.kind, id, ids.len(), dim),
            &[&built.bytes],
        )?;
        if let Some(codes) = &built.codes {
            bytes += write_file(
                &tmp_dir.join(index::SQ8_FILE),
                &header(index::KIND_SQ8, id, ids.len(), dim),
                &[codes],
            )?;
        }
    }
    fsync_dir(&tmp_dir)?;
    fs::rename(&tmp_dir, &final_dir).map_err(io_err(&final_dir))?;
    fsync_dir(segments_dir)?;
    Ok((final_dir, bytes))
}

pub(crate) fn corrupted(path: &Path, reason: impl Into<String>) -> StorageError {
    StorageError::Corrupted {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Checks a file's bytes: magic, kind, version, segment id, dimension and checksum.
/// Returns the header's count.
pub(crate) fn check_file(
    raw: &[u8],
    path: &Path,
    kind: u32,
    id: SegmentId,
    dim: usize,
) -> Result<usize> {
    if raw.len() < HEADER_LEN + TRAILER_LEN {
        return Err(corrupted(
            path,
            format!("{} bytes is shorter than a header", raw.len()),
        ));
    }
    let (content, trailer) = raw.split_at(raw.len() - TRAILER_LEN);
    if &trailer[4..] != TRAILER_MAGIC {
        return Err(corrupted(path, "trailer magic missing (truncated?)"));
    }
    let stored = u32::from_le_bytes(trailer[..4].try_into().expect("4 bytes"));
    if crc32fast::hash(content) != stored {
        return Err(corrupted(path, "checksum mismatch"));
    }
    let mut r = Reader::new(&content[..HEADER_LEN]);
    let bad = |what: &str| corrupted(path, what.to_string());
    if r.bytes(8, "magic")? != MAGIC {
        return Err(bad("not a Quiver segment file (bad magic)"));
    }
    if r.u32("kind")? != kind {
        return Err(bad("wrong file kind"));
    }
    let version = r.u32("version")?;
    if version != FORMAT_VERSION {
        return Err(corrupted(
            path,
            format!("unsupported format version {version}"),
        ));
    }
    if r.u64("segment id")? != id.0 {
        return Err(bad("file belongs to another segment"));
    }
    let count = r.u64("count")? as usize;
    if r.u32("dim")? as usize != dim {
        return Err(bad("dimension differs from the collection's"));
    }
    Ok(count)
}

/// Checks the bytes of a vectors file; returns the number of vectors.
fn check_vectors(raw: &[u8], path: &Path, id: SegmentId, dim: usize) -> Result<usize> {
    let count = check_file(raw, path, KIND_VECTORS, id, dim)?;
    let want = count
        .checked_mul(dim * 4)
        .ok_or_else(|| corrupted(path, "count overflows"))?;
    if raw.len() != HEADER_LEN + want + TRAILER_LEN {
        return Err(corrupted(path, "length does not match count × dim"));
    }
    Ok(count)
}

/// Checks and decodes the bytes of an ids file holding `count` ids.
fn decode_ids(
    raw: &[u8],
    path: &Path,
    id: SegmentId,
    dim: usize,
    count: usize,
) -> Result<Vec<PointId>> {
    let icount = check_file(raw, path, KIND_IDS, id, dim)?;
    if icount != count {
        return Err(corrupted(path, format!("{icount} ids for {count} vectors")));
    }
    let body = &raw[HEADER_LEN..raw.len() - TRAILER_LEN];
    // Every id takes at least 5 bytes: refuse a count the body cannot hold before allocating.
    if count > body.len() / 5 {
        return Err(corrupted(path, "more ids than the file can hold"));
    }
    let mut r = Reader::new(body);
    let mut ids = Vec::with_capacity(count);
    for _ in 0..count {
        ids.push(r.point_id().map_err(|e| corrupted(path, e.to_string()))?);
    }
    if r.remaining() != 0 {
        return Err(corrupted(path, "stray bytes after the last id"));
    }
    Ok(ids)
}

/// Decodes a segment from the bytes of its two files, checking everything `open_segment` checks.
/// For fuzzing and offline tools; the server maps the files instead.
pub fn decode_segment_bytes(
    vectors: &[u8],
    ids: &[u8],
    id: SegmentId,
    dim: usize,
) -> Result<Vec<PointId>> {
    let count = check_vectors(vectors, Path::new(VECTORS_FILE), id, dim)?;
    decode_ids(ids, Path::new(IDS_FILE), id, dim, count)
}

pub(crate) fn map_file(path: &Path) -> Result<Mmap> {
    let f = File::open(path).map_err(io_err(path))?;
    // SAFETY: segment files are written once, renamed into place and never modified while
    // mapped; the checksum is verified before any byte is trusted.
    unsafe { Mmap::map(&f) }.map_err(io_err(path))
}

/// Opens the segment in `dir`, verifying every file. Any damage is an error naming the file.
pub fn open_segment(
    dir: &Path,
    id: SegmentId,
    dim: usize,
    metric: Metric,
    spec: &IndexSpec,
) -> Result<SegmentData> {
    let vpath = dir.join(VECTORS_FILE);
    let vmap = map_file(&vpath)?;
    let count = check_vectors(&vmap, &vpath, id, dim)?;
    let ipath = dir.join(IDS_FILE);
    let imap = map_file(&ipath)?;
    let ids = decode_ids(&imap, &ipath, id, dim, count)?;
    let (index, index_bytes) = index::open_index(dir, id, dim, count, metric, spec)?;
    let bytes = (vmap.len() + imap.len()) as u64 + index_bytes;
    Ok(SegmentData {
        id,
        dim,
        vectors: VectorData::Mapped {
            map: vmap,
            len: count * dim,
        },
        ids,
        index,
        disk: Some((dir.to_path_buf(), bytes)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("quiver-seg-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn sample() -> (Vec<f32>, Vec<PointId>) {
        let vectors: Vec<f32> = (0..30).map(|x| x as f32 * 0.5).collect();
        let ids = (0..10)
            .map(|i| {
                if i % 2 == 0 {
                    PointId::Num(i)
                } else {
                    PointId::Text(format!("p{i}"))
                }
            })
            .collect();
        (vectors, ids)
    }

    #[test]
    fn round_trip() {
        let dir = tmpdir("rt");
        let (v, ids) = sample();
        let (path, bytes) = write_segment(&dir, SegmentId(4), 3, &v, &ids, None).unwrap();
        let seg = open_segment(&path, SegmentId(4), 3, Metric::L2, &IndexSpec::Flat).unwrap();
        assert_eq!(seg.vectors.as_slice(), &v[..]);
        assert_eq!(seg.ids, ids);
        assert_eq!(seg.disk.as_ref().unwrap().1, bytes);
        fs::remove_dir_all(&dir).unwrap();
    }

    /// Flips every 7th byte of each file, then truncates it, then removes `ids.bin`: every
    /// damage is refused with an error naming the file.
    fn check_damage_is_detected(
        path: &Path,
        id: SegmentId,
        dim: usize,
        spec: &IndexSpec,
        files: &[&str],
    ) {
        let open = || open_segment(path, id, dim, Metric::L2, spec);
        assert!(open().is_ok());
        for file in files {
            let p = path.join(file);
            let good = fs::read(&p).unwrap();
            for pos in (0..good.len()).step_by(7) {
                let mut bad = good.clone();
                bad[pos] ^= 0x10;
                fs::write(&p, &bad).unwrap();
                let err = open().unwrap_err();
                assert!(err.to_string().contains(file), "{file} byte {pos}: {err}");
            }
            fs::write(&p, &good[..good.len() - 3]).unwrap();
            assert!(open().is_err());
            fs::remove_file(&p).unwrap();
            assert!(
                open().unwrap_err().to_string().contains(file),
                "{file} missing"
            );
            fs::write(&p, &good).unwrap();
        }
        assert!(open().is_ok());
    }

    #[test]
    fn every_flipped_byte_and_truncation_is_detected() {
        let dir = tmpdir("flip");
        let (v, ids) = sample();
        let spec = IndexSpec::Hnsw {
            m: 4,
            ef_construction: 16,
            quantize_int8: true,
        };
        let graph = build_index(&spec, Metric::L2, Vectors::new(&v, 3)).unwrap();
        let (path, _) = write_segment(&dir, SegmentId(1), 3, &v, &ids, graph.as_ref()).unwrap();
        let seg = open_segment(&path, SegmentId(1), 3, Metric::L2, &spec).unwrap();
        let IndexKind::Hnsw(h) = &seg.index else {
            panic!("an hnsw segment opens with its graph: {:?}", seg.index);
        };
        assert_eq!(h.quantized.as_ref().map(|q| q.len()), Some(ids.len()));
        let files = [VECTORS_FILE, IDS_FILE, HNSW_FILE, index::SQ8_FILE];
        check_damage_is_detected(&path, SegmentId(1), 3, &spec, &files);
        fs::remove_dir_all(&dir).unwrap();
    }

    /// 600 clustered points of dimension 8, enough to train 16 lists.
    fn ivfpq_sample() -> (Vec<f32>, Vec<PointId>, IndexSpec) {
        let v = quiver_index::synthetic::clustered(600, 8, 5, 4, 9);
        let ids = (0..600).map(PointId::Num).collect();
        let spec = IndexSpec::IvfPq {
            nlist: 16,
            m: 4,
            nbits: 8,
        };
        (v, ids, spec)
    }

    #[test]
    fn ivfpq_file_round_trip_and_damage() {
        let dir = tmpdir("ivfpq");
        let (v, ids, spec) = ivfpq_sample();
        let built = build_index(&spec, Metric::L2, Vectors::new(&v, 8)).unwrap();
        let built = built.expect("600 points train 16 lists");
        assert_eq!(built.file(), IVFPQ_FILE);
        let (path, bytes) = write_segment(&dir, SegmentId(2), 8, &v, &ids, Some(&built)).unwrap();
        let seg = open_segment(&path, SegmentId(2), 8, Metric::L2, &spec).unwrap();
        assert_eq!(seg.disk.as_ref().unwrap().1, bytes);
        let IndexKind::IvfPq(ix) = &seg.index else {
            panic!("an ivf_pq segment opens with its index: {:?}", seg.index);
        };
        assert_eq!(ix.to_bytes(), built.bytes(), "read back, not retrained");
        assert!(seg.index.memory_bytes() > 0);
        // A stored vector finds itself (after exact re-ranking).
        let f = quiver_index::PointFilter::default();
        let q = &v[8 * 123..8 * 124];
        let p = quiver_index::SearchParams::default();
        let hits = seg.index.search(seg.vectors(), Metric::L2, q, 3, &f, p);
        assert_eq!(hits[0].key, 123);
        // Opened under another metric: refused, naming the file.
        let err = open_segment(&path, SegmentId(2), 8, Metric::Dot, &spec).unwrap_err();
        assert!(err.to_string().contains(IVFPQ_FILE), "{err}");
        let files = [VECTORS_FILE, IDS_FILE, IVFPQ_FILE];
        check_damage_is_detected(&path, SegmentId(2), 8, &spec, &files);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn small_ivfpq_segments_are_flat_without_a_file() {
        let dir = tmpdir("ivfpq-small");
        let (v, ids, _) = ivfpq_sample();
        // 600 points are fewer than 4 points for each of 256 lists.
        let spec = IndexSpec::IvfPq {
            nlist: 256,
            m: 4,
            nbits: 8,
        };
        assert!(
            build_index(&spec, Metric::L2, Vectors::new(&v, 8))
                .unwrap()
                .is_none()
        );
        let (path, _) = write_segment(&dir, SegmentId(3), 8, &v, &ids, None).unwrap();
        assert!(!path.join(IVFPQ_FILE).exists());
        let seg = open_segment(&path, SegmentId(3), 8, Metric::L2, &spec).unwrap();
        assert!(matches!(seg.index, IndexKind::Flat(_)));
        fs::remove_dir_all(&dir).unwrap();
    }
}
