//! Vector indexes and the distance kernels under them. No I/O beyond an index's own bytes, no async.
//!
//! ```text
//!   query ──► VectorIndexRead::search(vectors, metric, query, k, PointFilter)
//!                  │                                   │
//!                  ▼                                   ▼
//!            IndexKind::{Flat, ..}              allowed bitmap (payload filter)
//!                  │                            deleted bitmap (overwrites, deletes)
//!                  ▼
//!            distance::Metric (simsimd; scalar twin for tests) ──► topk::TopK
//! ```
//!
//! | file          | what it holds                                                   |
//! |---------------|-----------------------------------------------------------------|
//! | `distance.rs` | metrics, SIMD kernels and their scalar twins                     |
//! | `topk.rs`     | the bounded heap that keeps the k closest                        |
//! | `flat.rs`     | exact search, also the fallback of every other index             |
//! | `hnsw/`       | HNSW: parallel build, frozen graph, filtered search              |
//! | `ivfpq/`      | IVF-PQ: k-means lists, product-quantized residuals, ADC scan     |
//! | `sq8.rs`      | 8-bit scalar codes HNSW may walk instead of the f32 vectors      |
//! | `synthetic.rs`| seeded clustered vectors for tests and benchmarks                |
//!
//! Each index is a variant of [`IndexKind`].

#![warn(missing_docs)]
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod distance;
pub mod flat;
pub mod hnsw;
pub mod ivfpq;
pub mod sq8;
pub mod synthetic;
pub mod topk;

pub use distance::Metric;
pub use flat::FlatIndex;
pub use roaring::RoaringBitmap;
pub use topk::{Neighbor, TopK};

/// A read-only view of `len` vectors of `dim` floats stored back to back.
///
/// Layout: `(len, dim)`, row-major, so vector `i` is `data[i * dim .. (i + 1) * dim]`.
#[derive(Debug, Clone, Copy)]
pub struct Vectors<'a> {
    data: &'a [f32],
    dim: usize,
}

impl<'a> Vectors<'a> {
    /// Wraps `data`, whose length must be a multiple of `dim`.
    pub fn new(data: &'a [f32], dim: usize) -> Self {
        assert!(
            dim > 0 && data.len().is_multiple_of(dim),
            "vector array is not a whole number of rows"
        );
        Vectors { data, dim }
    }

    /// The number of vectors.
    pub fn len(&self) -> usize {
        self.data.len() / self.dim
    }

    /// True when there are no vectors.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The dimension of every vector.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Vector number `offset`.
    #[inline]
    pub fn get(&self, offset: u32) -> &'a [f32] {
        let start = offset as usize * self.dim;
        &self.data[start..start + self.dim]
    }

    /// All vectors in offset order.
    pub fn iter(&self) -> std::slice::ChunksExact<'a, f32> {
        self.data.chunks_exact(self.dim)
    }
}

/// Which offsets a search may return.
#[derive(Debug, Default, Clone, Copy)]
pub struct PointFilter<'a> {
    /// Only these offsets, when set (the payload filter turned into a bitmap).
    pub allowed: Option<&'a RoaringBitmap>,
    /// Never these offsets (deleted or overwritten points).
    pub deleted: Option<&'a RoaringBitmap>,
}

impl PointFilter<'_> {
    /// True if `offset` is deleted.
    #[inline]
    pub fn is_deleted(&self, offset: u32) -> bool {
        self.deleted.is_some_and(|d| d.contains(offset))
    }

    /// True if `offset` may be returned.
    #[inline]
    pub fn admits(&self, offset: u32) -> bool {
        self.allowed.is_none_or(|a| a.contains(offset)) && !self.is_deleted(offset)
    }
}

/// The read side of every index.
pub trait VectorIndexRead {
    /// The `k` closest admitted vectors to `query`, closest first.
    fn search(
        &self,
        vectors: Vectors<'_>,
        metric: Metric,
        query: &[f32],
        k: usize,
        filter: &PointFilter<'_>,
    ) -> Vec<Neighbor>;
}

/// The closed set of index kinds, dispatched without `dyn`.
#[derive(Debug)]
pub enum IndexKind {
    /// Exact search.
    Flat(FlatIndex),
    /// HNSW graph.
    Hnsw(hnsw::HnswIndex),
    /// Inverted lists of product-quantized residuals; searched with [`SearchParams`]' `nprobe`
    /// and `rerank`, or the index's own defaults ([`ivfpq::IvfPqIndex::search_with`]). Boxed:
    /// the index keeps several arrays and would make every other variant as large.
    IvfPq(Box<ivfpq::IvfPqIndex>),
}

/// Per-request search knobs.
#[derive(Debug, Clone, Copy, Default)]
pub struct SearchParams {
    /// Brute force whatever the index.
    pub exact: bool,
    /// HNSW beam width; `None` takes the index's default.
    pub ef: Option<usize>,
    /// IVF-PQ lists probed; `None` takes the index's default.
    pub nprobe: Option<usize>,
    /// IVF-PQ candidates re-ranked exactly; `None` takes the index's default.
    pub rerank: Option<usize>,
}

/// Filtered-search planner for graph indexes: exact search over the filter's bitmap costs one
/// distance per admitted point (`A`); graph search under a filter walks about `ef · m0 / s`
/// nodes, `s = A / n` the share admitted. The two meet near `A = C · sqrt(ef · m0 · n)`; below
/// it the planner scans the bitmap. `C` is measured (`quiver-bench hnsw --filter-sweep`, see
/// benches/RESULTS.md): on 200,000 × 128 at ef 64 the crossover fell at about 12,800 admitted
/// points against the model's 20,200, so `C = 0.6`.
pub fn prefer_exact(admitted: u64, n: usize, ef: usize, m0: usize) -> bool {
    const C: f64 = 0.6;
    (admitted as f64) < C * ((ef * m0) as f64 * n as f64).sqrt()
}

impl IndexKind {
    /// The `k` closest admitted vectors.
    pub fn search(
        &self,
        vectors: Vectors<'_>,
        metric: Metric,
        query: &[f32],
        k: usize,
        filter: &PointFilter<'_>,
        params: SearchParams,
    ) -> Vec<Neighbor> {
        match self {
            _ if params.exact => flat::exact_search(vectors, metric, query, k, filter),
            IndexKind::Flat(f) => f.search(vectors, metric, query, k, filter),
            IndexKind::Hnsw(h) => {
                h.search_ef(vectors, metric, query, k, filter, params.ef.unwrap_or(h.ef))
            }
            IndexKind::IvfPq(i) => {
                let knobs = ivfpq::IvfPqSearchParams {
                    nprobe: params.nprobe,
                    rerank: params.rerank,
                };
                i.search_with(vectors, metric, query, k, filter, knobs)
            }
        }
    }

    /// Bytes of memory the index holds beyond the vectors.
    pub fn memory_bytes(&self) -> usize {
        match self {
            IndexKind::Flat(_) => 0,
            IndexKind::Hnsw(h) => h.memory_bytes(),
            IndexKind::IvfPq(i) => i.memory_bytes(),
        }
    }
}
