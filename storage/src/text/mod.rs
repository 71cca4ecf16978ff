//! Full-text indexes: BM25 over a payload field, beside the vectors.
//!
//! ```text
//! upsert ─► PayloadIndex::add_point ─► MemText (mutable segment: term → (offset, tf), lengths)
//! flush / compact / create index ─► persist: MemText ─► text-{field crc}.bin ─► FrozenText (mmap)
//! start ─► open the file (checksum, ranges) ─► FrozenText; a missing file is rebuilt from payloads
//! query ─► tokenize ─► statistics over live points of every segment ─► BM25 per segment ─► top k
//! ```
//!
//! | file          | what it does                                                      |
//! |---------------|-------------------------------------------------------------------|
//! | `tokenize.rs` | lower-cased alphanumeric runs, English stop words dropped           |
//! | `postings.rs` | the in-memory and frozen inverted index, and its file body          |
//! | `mod.rs`      | BM25's constants, writing and opening files, scoring across segments |
//!
//! Scores use the live collection's statistics (deleted and overwritten points are left out of
//! the document count, the document frequencies and the average length), so a score does not
//! depend on how points happen to be split into segments or on pending compactions:
//!
//! ```text
//! idf(t)    = ln(1 + (N - df(t) + 0.5) / (df(t) + 0.5))
//! score(d)  = Σ over query terms t (each occurrence): idf(t) · tf · (k1 + 1) / (tf + k1 · (1 - b + b · |d| / avgdl))
//! ```

pub mod postings;
pub mod tokenize;

pub use postings::{FrozenText, MemText, TextIndex};

use crate::error::{Result, io_err};
use crate::segment::{self, HEADER_LEN, TRAILER_LEN};
use crate::types::SegmentId;
use quiver_index::TopK;
use roaring::RoaringBitmap;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

/// The segment file kind of text index files.
pub const KIND_TEXT: u32 = 16;

/// BM25's constants.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Bm25Params {
    /// Term-frequency saturation (`k1`).
    pub k1: f32,
    /// Length normalisation (`b`), 0 to 1.
    pub b: f32,
}

impl Default for Bm25Params {
    fn default() -> Self {
        Bm25Params { k1: 1.2, b: 0.75 }
    }
}

/// The file holding a field's text index inside a segment folder.
pub fn file_name(field: &str) -> String {
    format!("text-{:08x}.bin", crc32fast::hash(field.as_bytes()))
}

/// Writes `body` ([`MemText::to_bytes`]) as the text index file of `field` in segment folder `dir` (through a temporary
/// file, fsynced, renamed) and reopens it. Returns the frozen index.
pub(crate) fn persist(
    dir: &Path,
    id: SegmentId,
    dim: usize,
    count: usize,
    field: &str,
    body: Vec<u8>,
) -> Result<FrozenText> {
    let path = dir.join(file_name(field));
    let tmp = dir.join(format!("{}.tmp", file_name(field)));
    segment::write_file(&tmp, &segment::header(KIND_TEXT, id, count, dim), &[&body])?;
    std::fs::rename(&tmp, &path).map_err(io_err(&path))?;
    segment::fsync_dir(dir)?;
    open(dir, id, dim, count, field)?.ok_or_else(|| crate::error::StorageError::Corrupted {
        path,
        reason: "vanished right after it was written".into(),
    })
}

/// Opens the text index file of `field` in segment folder `dir`, checking its header, checksum
/// and every range. `None` if there is no such file (the index is then rebuilt from payloads).
pub(crate) fn open(
    dir: &Path,
    id: SegmentId,
    dim: usize,
    count: usize,
    field: &str,
) -> Result<Option<FrozenText>> {
    let path = dir.join(file_name(field));
    if !path.exists() {
        return Ok(None);
    }
    let map = segment::map_file(&path)?;
    let n = segment::check_file(&map, &path, KIND_TEXT, id, dim)?;
    if n != count {
        return Err(segment::corrupted(
            &path,
            format!("indexes {n} points, the segment holds {count}"),
        ));
    }
    let end = map.len() - TRAILER_LEN;
    Ok(Some(FrozenText::open(
        map, HEADER_LEN, end, &path, field, count,
    )?))
}

/// A query's distinct terms with how often each occurs in it.
pub fn query_terms(query: &str) -> Vec<(String, u32)> {
    let mut terms: Vec<(String, u32)> = Vec::new();
    tokenize::for_each_token(query, |t| match terms.iter_mut().find(|(q, _)| q == t) {
        Some((_, n)) => *n += 1,
        None => terms.push((t.to_string(), 1)),
    });
    terms
}

/// One segment as BM25 sees it.
pub struct TextSegment<'a> {
    /// The segment's index of the searched field.
    pub index: &'a TextIndex,
    /// Deleted or overwritten offsets: left out of results and statistics.
    pub deleted: &'a RoaringBitmap,
    /// When filtering: the offsets that may be returned.
    pub allowed: Option<&'a RoaringBitmap>,
}

/// One BM25 result.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TextHit {
    /// Index of the segment in the slice given to [`bm25_top_k`].
    pub segment: usize,
    /// Offset inside it.
    pub offset: u32,
    /// BM25 score; higher is better.
    pub score: f32,
    /// How many of the query's distinct terms the point holds.
    pub matched_terms: u32,
}

/// The `k` best points for `terms` across `segments`, best first (ties: earlier segment and
/// offset first). Points without any query term are never returned.
pub fn bm25_top_k(
    segments: &[TextSegment<'_>],
    terms: &[(String, u32)],
    params: Bm25Params,
    k: usize,
) -> Vec<TextHit> {
    if terms.is_empty() || k == 0 {
        return Vec::new();
    }
    // Live statistics: documents, total length, document frequency per term.
    let mut n_docs = 0u64;
    let mut total_len = 0u64;
    let mut df = vec![0u64; terms.len()];
    for s in segments {
        let (docs, len) = s.index.totals();
        let (mut dead_docs, mut dead_len) = (0u64, 0u64);
        for d in s.deleted.iter() {
            let l = s.index.doc_len(d);
            if l > 0 {
                dead_docs += 1;
                dead_len += u64::from(l);
            }
        }
        n_docs += docs - dead_docs;
        total_len += len - dead_len;
        for (i, (t, _)) in terms.iter().enumerate() {
            if let Some(p) = s.index.postings(t) {
                df[i] += p.iter().filter(|[o, _]| !s.deleted.contains(*o)).count() as u64;
            }
        }
    }
    if n_docs == 0 {
        return Vec::new();
    }
    let avgdl = total_len as f64 / n_docs as f64;
    let idf: Vec<f64> = df
        .iter()
        .map(|&d| (1.0 + (n_docs as f64 - d as f64 + 0.5) / (d as f64 + 0.5)).ln())
        .collect();
    let (k1, b) = (f64::from(params.k1), f64::from(params.b));
    let mut top = TopK::new(k);
    let mut hits: Vec<TextHit> = Vec::new();
    let mut acc: HashMap<u32, (f64, u32)> = HashMap::new();
    for (si, s) in segments.iter().enumerate() {
        acc.clear();
        for (ti, (t, qtf)) in terms.iter().enumerate() {
            let Some(p) = s.index.postings(t) else {
                continue;
            };
            for &[o, tf] in p {
                if s.deleted.contains(o) || s.allowed.is_some_and(|a| !a.contains(o)) {
                    continue;
                }
                let tf = f64::from(tf);
                let norm = k1 * (1.0 - b + b * f64::from(s.index.doc_len(o)) / avgdl);
                let w = f64::from(*qtf) * idf[ti] * tf * (k1 + 1.0) / (tf + norm);
                let e = acc.entry(o).or_insert((0.0, 0));
                e.0 += w;
                e.1 += 1;
            }
        }
        let mut found: Vec<(u32, (f64, u32))> = acc.iter().map(|(o, v)| (*o, *v)).collect();
        found.sort_unstable_by_key(|(o, _)| *o);
        for (o, (score, matched)) in found {
            // TopK keeps the smallest distances: negate the score.
            let d = -(score as f32);
            if d >= top.threshold() {
                continue;
            }
            top.push(d, hits.len() as u32);
            hits.push(TextHit {
                segment: si,
                offset: o,
                score: score as f32,
                matched_terms: matched,
            });
        }
    }
    top.into_sorted_vec()
        .into_iter()
        .map(|n| hits[n.key as usize])
        .collect()
}

#[cfg(test)]
mod tests;
