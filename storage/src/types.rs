//! Identifiers and settings shared across the crate: point ids, sequence numbers, collection config.

use crate::error::{Result, StorageError};
use quiver_index::Metric;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A point's id: a number, or a short string such as a UUID.
///
/// Ordered numbers first, then strings: the order `Scroll` pages in.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum PointId {
    /// A numeric id.
    Num(u64),
    /// A string id.
    Text(String),
}

/// The longest string id accepted, in bytes.
pub const MAX_TEXT_ID_BYTES: usize = 128;

impl PointId {
    /// Checks a string id: non-empty, at most [`MAX_TEXT_ID_BYTES`], no control characters.
    pub fn validate(&self) -> Result<()> {
        if let PointId::Text(s) = self {
            let bad = |reason: &str| {
                Err(StorageError::InvalidId {
                    reason: reason.to_string(),
                })
            };
            if s.is_empty() {
                return bad("string id is empty");
            }
            if s.len() > MAX_TEXT_ID_BYTES {
                return bad(&format!(
                    "string id is {} bytes, over {MAX_TEXT_ID_BYTES}",
                    s.len()
                ));
            }
            if s.chars().any(char::is_control) {
                return bad("string id contains control characters");
            }
        }
        Ok(())
    }
}

impl fmt::Display for PointId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PointId::Num(n) => write!(f, "{n}"),
            PointId::Text(s) => write!(f, "{s:?}"),
        }
    }
}

/// Position of a write in the log; increases with every acknowledged write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SeqNo(pub u64);

/// A segment's number inside its collection; never reused while the collection lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SegmentId(pub u64);

/// A collection's internal number: the prefix of its keys in RocksDB. Never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CollectionId(pub u64);

/// Where a point lives: a segment and the offset of its vector there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    /// The segment.
    pub segment: SegmentId,
    /// The row of its vector inside the segment.
    pub offset: u32,
}

/// When an acknowledged write is safe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// fsync before acknowledging: survives power loss.
    #[default]
    Sync,
    /// Written to the OS before acknowledging: survives a crash of the process only.
    Async,
}

/// The index built for a collection's immutable segments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IndexSpec {
    /// Exact search.
    #[default]
    Flat,
    /// An HNSW graph per segment.
    Hnsw {
        /// Links per node (`M`).
        m: usize,
        /// Beam width while building.
        ef_construction: usize,
        /// Walk 8-bit codes of the vectors (`sq8.bin`, [`quiver_index::sq8`]) and re-rank the
        /// final candidates on the f32 vectors.
        #[serde(default)]
        quantize_int8: bool,
    },
    /// An IVF-PQ index per segment, trained on that segment's own vectors. A segment with
    /// fewer than [`IndexSpec::ivf_pq_min_points`] points is searched exactly instead.
    IvfPq {
        /// Inverted lists (coarse k-means centroids).
        nlist: usize,
        /// PQ sub-spaces, bytes per code; divides the dimension.
        m: usize,
        /// Bits per sub-space code; only 8.
        nbits: u32,
    },
}

/// The largest `nlist` a collection may ask for.
pub const MAX_NLIST: usize = 65_536;
/// Training points an IVF-PQ segment needs per list: below `4 · nlist` points (or below 256,
/// what one PQ codebook needs) its k-means would be fit to almost nothing, so the segment is
/// searched exactly.
pub const IVF_PQ_POINTS_PER_LIST: usize = 4;

impl IndexSpec {
    /// The fewest points an IVF-PQ segment of `nlist` lists is trained on; smaller segments
    /// are searched exactly (flat).
    pub fn ivf_pq_min_points(nlist: usize) -> usize {
        (IVF_PQ_POINTS_PER_LIST * nlist).max(quiver_index::ivfpq::KSUB)
    }
}

/// How a payload field is indexed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    /// Exact values (strings, integers, booleans): a bitmap per value.
    Keyword,
    /// Numbers for range conditions.
    Numeric,
    /// Full text, searched with BM25 (`crate::text`); not used by filters.
    Text,
}

/// A collection's settings, as stored in its manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CollectionConfig {
    /// The collection's name.
    pub name: String,
    /// Vector dimension.
    pub dim: usize,
    /// Distance metric.
    pub metric: Metric,
    /// Index of immutable segments.
    pub index: IndexSpec,
    /// When writes are acknowledged.
    pub durability: Durability,
    /// Points in the mutable segment before it is frozen and flushed.
    pub flush_threshold: usize,
    /// Indexed payload fields.
    #[serde(default)]
    pub field_indexes: Vec<(String, FieldType)>,
    /// The embedding model that turns this collection's documents into vectors, if any. The
    /// engine only keeps the name; the server owns the model.
    #[serde(default)]
    pub embedding_model: Option<String>,
    /// BM25's constants of each text-indexed field (absent: the defaults).
    #[serde(default)]
    pub bm25: std::collections::BTreeMap<String, crate::text::Bm25Params>,
}

/// The longest collection name accepted.
pub const MAX_NAME_BYTES: usize = 128;
/// The largest dimension accepted.
pub const MAX_DIM: usize = 65_536;

impl CollectionConfig {
    /// Checks the settings of a new collection.
    pub fn validate(&self) -> Result<()> {
        let bad = |reason: String| Err(StorageError::InvalidConfig { reason });
        let name_ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
        if self.name.is_empty()
            || self.name.len() > MAX_NAME_BYTES
            || !self.name.chars().all(name_ok)
        {
            return bad(format!(
                "name {:?} must be 1 to {MAX_NAME_BYTES} characters of letters, digits, '_', '-' or '.'",
                self.name
            ));
        }
        if self.dim == 0 || self.dim > MAX_DIM {
            return bad(format!(
                "dimension {} is out of range (1..={MAX_DIM})",
                self.dim
            ));
        }
        if let IndexSpec::Hnsw {
            m, ef_construction, ..
        } = self.index
        {
            if !(2..=128).contains(&m) || !(1..=4096).contains(&ef_construction) {
                return bad(format!(
                    "hnsw m {m} must be in 2..=128 and ef_construction {ef_construction} in 1..=4096"
                ));
            }
        }
        if let IndexSpec::IvfPq { nlist, m, nbits } = self.index {
            if nbits != 8 {
                return bad(format!("ivf_pq nbits {nbits} is not supported; only 8 is"));
            }
            if !(1..=MAX_NLIST).contains(&nlist) {
                return bad(format!("ivf_pq nlist {nlist} must be in 1..={MAX_NLIST}"));
            }
            if m == 0 || !self.dim.is_multiple_of(m) {
                return bad(format!(
                    "ivf_pq m {m} must divide the dimension {} (sub-spaces of equal width)",
                    self.dim
                ));
            }
        }
        if self.flush_threshold == 0 {
            return bad("flush threshold must be at least 1".into());
        }
        Ok(())
    }
}

/// Limits on requests, set by the server's configuration.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Points in one upsert, ids in one delete or get.
    pub max_batch: usize,
    /// Bytes of one point's payload (as JSON text).
    pub max_payload_bytes: usize,
    /// Largest `k` of a search, and page size of a scroll.
    pub max_k: usize,
    /// Nesting depth of a filter.
    pub max_filter_depth: usize,
    /// Conditions in one filter, all levels counted.
    pub max_filter_conditions: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_batch: 10_000,
            max_payload_bytes: 1 << 20,
            max_k: 10_000,
            max_filter_depth: 8,
            max_filter_conditions: 1_000,
        }
    }
}
