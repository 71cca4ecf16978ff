//! A segment's index file: building the index a collection's [`IndexSpec`] asks for when a
//! segment is flushed or compacted, and reading it back (never rebuilding it) when the segment
//! is opened.
//!
//! ```text
//! spec + point count ──index_file──► None (flat: no file) | Some(hnsw.bin) | Some(ivfpq.bin)
//!   build_index: vectors ──► HNSW graph bytes (+ SQ8 code bytes) / IVF-PQ bytes (trained on
//!                this segment alone)
//!   open_index : file ──check_file (header, CRC32)──► HnswGraph::from_shared (+ Sq8::from_shared)
//!                / IvfPqIndex::from_bytes
//! ```
//!
//! | file        | body                                                                 |
//! |-------------|----------------------------------------------------------------------|
//! | `hnsw.bin`  | the frozen graph (`quiver_index::hnsw::graph`), searched in the map   |
//! | `sq8.bin`   | 8-bit codes of the vectors (`quiver_index::sq8`), read in the map;    |
//! |             | beside `hnsw.bin` when the spec has `quantize_int8`                   |
//! | `ivfpq.bin` | the IVF-PQ index (`quiver_index::ivfpq::bytes`), copied into memory   |
//!
//! Which file a segment has follows from the spec and its point count alone, so opening needs
//! no extra record: an IVF-PQ segment of fewer than [`IndexSpec::ivf_pq_min_points`] points has
//! no `ivfpq.bin` and is searched exactly, and a missing file where one is due is damage.

use super::{HEADER_LEN, TRAILER_LEN, check_file, corrupted, map_file};
use crate::error::Result;
use crate::types::{IndexSpec, SegmentId};
use quiver_index::hnsw::{self, HnswGraph, HnswIndex, HnswParams};
use quiver_index::ivfpq::{IvfPqIndex, IvfPqParams};
use quiver_index::sq8::Sq8;
use quiver_index::{FlatIndex, IndexKind, Metric, Vectors};
use std::path::Path;

pub(super) const KIND_HNSW: u32 = 3;
pub(super) const KIND_IVFPQ: u32 = 4;
pub(super) const KIND_SQ8: u32 = 5;
/// File of the HNSW graph (collections with an hnsw index).
pub const HNSW_FILE: &str = "hnsw.bin";
/// File of the IVF-PQ index (collections with an ivf_pq index, segments large enough to train).
pub const IVFPQ_FILE: &str = "ivfpq.bin";
/// File of the 8-bit codes an hnsw index with `quantize_int8` walks.
pub const SQ8_FILE: &str = "sq8.bin";

/// The index file a segment of `count` points has under `spec`: its name and header kind.
pub fn index_file(spec: &IndexSpec, count: usize) -> Option<(&'static str, u32)> {
    match *spec {
        IndexSpec::Flat => None,
        IndexSpec::Hnsw { .. } => Some((HNSW_FILE, KIND_HNSW)),
        IndexSpec::IvfPq { nlist, .. } if count >= IndexSpec::ivf_pq_min_points(nlist) => {
            Some((IVFPQ_FILE, KIND_IVFPQ))
        }
        IndexSpec::IvfPq { .. } => None,
    }
}

/// An index built for a segment, ready to be written beside its vectors.
#[derive(Debug)]
pub struct BuiltIndex {
    pub(super) file: &'static str,
    pub(super) kind: u32,
    pub(super) bytes: Vec<u8>,
    /// The SQ8 codes' bytes ([`SQ8_FILE`]), when the spec asks for them.
    pub(super) codes: Option<Vec<u8>>,
}

impl BuiltIndex {
    /// The file it goes to.
    pub fn file(&self) -> &'static str {
        self.file
    }

    /// Its bytes (the file's body).
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// Builds the index `spec` asks for over these vectors, on every core: `None` for flat and for
/// an IVF-PQ segment too small to train (see [`index_file`]).
pub fn build_index(
    spec: &IndexSpec,
    metric: Metric,
    vectors: Vectors<'_>,
) -> Result<Option<BuiltIndex>> {
    let Some((file, kind)) = index_file(spec, vectors.len()) else {
        return Ok(None);
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let started = std::time::Instant::now();
    let mut codes = None;
    let bytes = match *spec {
        IndexSpec::Flat => unreachable!("flat has no index file"),
        IndexSpec::Hnsw {
            m,
            ef_construction,
            quantize_int8,
        } => {
            let params = HnswParams {
                m,
                ef_construction,
                ..HnswParams::default()
            };
            if quantize_int8 {
                codes = Some(Sq8::train(vectors, metric).to_bytes());
            }
            hnsw::build(vectors, metric, params, threads).to_bytes()
        }
        IndexSpec::IvfPq { nlist, m, nbits } => {
            // Trained on this segment's own vectors: segments are immutable and independent,
            // so each carries its own centroids and codebooks.
            let params = IvfPqParams {
                nlist,
                m,
                nbits,
                ..IvfPqParams::default()
            };
            IvfPqIndex::build(vectors, metric, &params, threads, None)?.to_bytes()
        }
    };
    tracing::info!(
        file,
        points = vectors.len(),
        bytes = bytes.len(),
        code_bytes = codes.as_ref().map_or(0, Vec::len),
        secs = started.elapsed().as_secs_f64(),
        "segment index built"
    );
    Ok(Some(BuiltIndex {
        file,
        kind,
        bytes,
        codes,
    }))
}

/// Opens the index file of the segment in `dir` (`count` vectors), verifying it; returns the
/// index and the file's size. Any damage is an error naming the file.
pub(super) fn open_index(
    dir: &Path,
    id: SegmentId,
    dim: usize,
    count: usize,
    metric: Metric,
    spec: &IndexSpec,
) -> Result<(IndexKind, u64)> {
    let Some((file, kind)) = index_file(spec, count) else {
        return Ok((IndexKind::Flat(FlatIndex), 0));
    };
    let path = dir.join(file);
    let map = map_file(&path)?;
    let fcount = check_file(&map, &path, kind, id, dim)?;
    if fcount != count {
        return Err(corrupted(
            &path,
            format!("index of {fcount} points for {count} vectors"),
        ));
    }
    let len = map.len();
    let body = HEADER_LEN..len - TRAILER_LEN;
    let mut extra = 0u64;
    let index = match spec {
        IndexSpec::Flat => unreachable!("flat has no index file"),
        IndexSpec::Hnsw { quantize_int8, .. } => {
            // The graph's arrays are searched in place in the mapped file.
            let shared: hnsw::SharedBytes = std::sync::Arc::new(map);
            let graph = HnswGraph::from_shared(shared, body.start, body.len(), count)
                .map_err(|e| corrupted(&path, e.to_string()))?;
            let quantized = if *quantize_int8 {
                let (sq, bytes) = open_codes(dir, id, dim, count, metric)?;
                extra += bytes;
                Some(Box::new(sq))
            } else {
                None
            };
            IndexKind::Hnsw(HnswIndex {
                graph,
                ef: hnsw::DEFAULT_EF,
                quantized,
            })
        }
        IndexSpec::IvfPq { .. } => {
            let ix = IvfPqIndex::from_bytes(&map[body], count)
                .map_err(|e| corrupted(&path, e.to_string()))?;
            if ix.metric() != metric {
                return Err(corrupted(&path, "metric differs from the collection's"));
            }
            IndexKind::IvfPq(Box::new(ix))
        }
    };
    Ok((index, len as u64 + extra))
}

/// Opens and verifies the segment's `sq8.bin`; returns the codes, read in the map, and the
/// file's size.
fn open_codes(
    dir: &Path,
    id: SegmentId,
    dim: usize,
    count: usize,
    metric: Metric,
) -> Result<(Sq8, u64)> {
    let path = dir.join(SQ8_FILE);
    let map = map_file(&path)?;
    let fcount = check_file(&map, &path, KIND_SQ8, id, dim)?;
    if fcount != count {
        return Err(corrupted(
            &path,
            format!("codes of {fcount} points for {count} vectors"),
        ));
    }
    let len = map.len();
    let shared: hnsw::SharedBytes = std::sync::Arc::new(map);
    let sq = Sq8::from_shared(
        shared,
        HEADER_LEN,
        len - HEADER_LEN - TRAILER_LEN,
        count,
        dim,
    )
    .map_err(|e| corrupted(&path, e.to_string()))?;
    if sq.metric() != metric {
        return Err(corrupted(&path, "metric differs from the collection's"));
    }
    Ok((sq, len as u64))
}
