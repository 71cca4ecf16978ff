//! IVF-PQ: an inverted file of `nlist` lists over a coarse k-means quantizer, with each vector
//! stored as the product-quantized residual from its list's centroid (Jégou, Douze & Schmid,
//! "Product quantization for nearest neighbor search", 2011).
//!
//! ```text
//! train (build.rs): sample ─► k-means++ + Lloyd, all cores (kmeans.rs) ─► nlist centroids
//!                   residuals of a sample ─► m k-means of 256 (pq.rs) ─► codebooks
//! add   (build.rs): each vector ─► nearest centroid (its list) ─► residual ─► m code bytes
//!                   ─► lists laid out contiguously: ids, codes sub-space-major, l2 norm terms
//! search (search.rs): nprobe nearest centroids (ranked on a half-precision copy, 2 bytes a
//!                   coordinate, so it stays in cache) ─► one query table (m × 256) ─► scan the codes
//!                   of each probed list (kernels.rs, simd.rs) ─► top-k, or top-rerank then
//!                   exact distances ─► k; a filter admitting few points: exact bitmap scan
//! bytes (bytes.rs): to_bytes / from_bytes, every size, count, id and float checked
//! ```
//!
//! | file         | what it holds                                                    |
//! |--------------|------------------------------------------------------------------|
//! | `mod.rs`     | parameters, the index, its errors and its read trait              |
//! | `kernels.rs` | nearest centroid, inner products, the ADC scan: dispatch and twins |
//! | `simd.rs`    | the same kernels for AVX2 + FMA and AVX-512F                      |
//! | `kmeans.rs`  | k-means++ seeding, parallel Lloyd iterations, empty-cluster split |
//! | `pq.rs`      | the product quantizer: training, encoding, lookup tables          |
//! | `build.rs`   | training and adding on every core                                 |
//! | `search.rs`  | probing, scanning, filtering, exact re-ranking; pooled scratch    |
//! | `bytes.rs`   | the byte layout and its validation                                |
//!
//! Metrics (all lower-is-better, as in `distance.rs`), with `c` the list's centroid and `r` the
//! decoded residual (`x ≈ c + r`):
//!
//! | metric | stored             | list probed by | ADC distance                                    |
//! |--------|--------------------|----------------|-------------------------------------------------|
//! | l2     | `x`                | `‖q - c‖²`     | `‖q - c‖² + (‖r‖² + 2⟨c, r⟩) - 2 Σ_j ⟨q_j, r_j⟩` |
//! | dot    | `x`                | `-⟨q, c⟩`      | `-⟨q, c⟩ - Σ_j ⟨q_j, r_j⟩`                       |
//! | cosine | `x / ‖x‖`          | `1 - ⟨q̂, c⟩`   | `1 - ⟨q̂, c⟩ - Σ_j ⟨q̂_j, r_j⟩` with `q̂ = q / ‖q‖` |
//!
//! Each is the exact distance between the query and the reconstruction `c + r` (for cosine:
//! `1 - ⟨q̂, c + r⟩`, the reconstruction of a unit vector being nearly unit). Lists are always
//! formed by l2 (vectors go to their nearest centroid, so residuals are small). For l2 the
//! term `Σ_j (‖r_j‖² + 2⟨c_j, r_j⟩) = ‖r‖² + 2⟨c, r⟩` belongs to the stored entry alone, so it
//! is summed once per entry (one f32 each, recomputed from the codes on load) and every list
//! shares one query table `-2⟨q_j, r_jk⟩`: no per-list table is built at search time, and no
//! `(nlist, m, 256)` table of list terms is kept (faiss's "precomputed tables"; 16 MB at 1024
//! lists × 16 sub-spaces). Lists are ranked for probing on half-precision centroids (one
//! query reads every centroid: 1 MB instead of 2 MB at 4096 × 128, which then stays in L2);
//! each probed list's base distance is computed in f32. Re-ranking recomputes the `rerank`
//! best candidates' distances exactly from [`Vectors`].

mod build;
mod bytes;
mod kernels;
mod kmeans;
mod pq;
mod search;
mod simd;
#[cfg(test)]
mod tests;

use crate::distance::Metric;
use crate::topk::Neighbor;
use crate::{PointFilter, VectorIndexRead, Vectors};
use kernels::{Centroids, HalfCentroids};
use pq::ProductQuantizer;
use std::sync::atomic::AtomicBool;

pub use pq::KSUB;

/// Probed lists when a request does not say.
pub const DEFAULT_NPROBE: usize = 16;
/// Candidates re-ranked exactly when a request does not say.
pub const DEFAULT_RERANK: usize = 50;
/// Training points per coarse centroid when [`IvfPqParams::train_sample`] is `None` (as faiss).
pub const TRAIN_POINTS_PER_LIST: usize = 256;
/// Residuals per sub-space centroid the product quantizer is trained on, at most.
pub const PQ_TRAIN_POINTS_PER_CENTROID: usize = 256;

/// Training parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IvfPqParams {
    /// Number of inverted lists (coarse centroids); capped at the number of training points.
    pub nlist: usize,
    /// Sub-spaces of the product quantizer, bytes per code; must divide the dimension.
    pub m: usize,
    /// Bits per sub-space code; only 8 is supported.
    pub nbits: u32,
    /// Points the coarse k-means is trained on; `None`: `256 · nlist`, at most every point.
    pub train_sample: Option<usize>,
    /// Lloyd iterations of the coarse k-means at most (it stops early once it converges).
    pub coarse_iters: usize,
    /// Lloyd iterations of each sub-space k-means at most.
    pub pq_iters: usize,
    /// Seed of sampling and k-means++; one seed gives the same index every time.
    pub seed: u64,
}

impl Default for IvfPqParams {
    fn default() -> Self {
        IvfPqParams {
            nlist: 1024,
            m: 16,
            nbits: 8,
            train_sample: None,
            coarse_iters: 10,
            pq_iters: 25,
            seed: 0x5eed,
        }
    }
}

/// Per-request search knobs of IVF-PQ; `None` takes the index's default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IvfPqSearchParams {
    /// Lists to probe.
    pub nprobe: Option<usize>,
    /// Candidates (at least `k`) whose distances are recomputed exactly from the full vectors
    /// before the top `k` are returned; `Some(0)` returns PQ distances as they are.
    pub rerank: Option<usize>,
}

/// Why an IVF-PQ index could not be trained, built or read.
#[derive(Debug, thiserror::Error)]
pub enum IvfPqError {
    /// Codes of other than 8 bits were asked for.
    #[error("{nbits}-bit PQ codes are not supported; only 8 bits are")]
    UnsupportedNbits {
        /// The bits asked for.
        nbits: u32,
    },
    /// `m` is zero or does not divide the dimension.
    #[error("{m} PQ sub-spaces do not divide dimension {dim}")]
    BadSubspaces {
        /// Sub-spaces asked for.
        m: usize,
        /// The vectors' dimension.
        dim: usize,
    },
    /// `nlist` is zero or beyond a u32.
    #[error("nlist {nlist} is out of range")]
    BadNlist {
        /// The lists asked for.
        nlist: usize,
    },
    /// Vectors of another dimension than the quantizer's.
    #[error("wrong dimension: expected {expected}, got {got}")]
    WrongDimension {
        /// The quantizer's.
        expected: usize,
        /// The vectors'.
        got: usize,
    },
    /// A training vector holds NaN or an infinity.
    #[error("training vector {offset} is not finite")]
    NonFinite {
        /// Its offset.
        offset: usize,
    },
    /// More vectors than u32 offsets can name.
    #[error("{n} vectors are more than an index can hold")]
    TooMany {
        /// How many.
        n: usize,
    },
    /// The caller's cancellation flag was raised.
    #[error("cancelled")]
    Cancelled,
    /// Index bytes that do not describe a valid index.
    #[error("IVF-PQ bytes are invalid: {reason}")]
    Corrupt {
        /// What was wrong.
        reason: String,
    },
}

/// How training went (not stored in the index bytes).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TrainReport {
    /// Points the coarse k-means was trained on.
    pub coarse_points: usize,
    /// Lloyd iterations the coarse k-means ran.
    pub coarse_iterations: usize,
    /// Mean squared distance of a training point to its list's centroid.
    pub coarse_mse: f64,
    /// Seconds spent on the coarse quantizer.
    pub coarse_secs: f64,
    /// Residuals the product quantizer was trained on.
    pub pq_points: usize,
    /// Lloyd iterations of the sub-space k-means, summed over sub-spaces.
    pub pq_iterations: usize,
    /// Mean squared quantization error of a training residual.
    pub pq_mse: f64,
    /// Seconds spent on the product quantizer (residuals included).
    pub pq_secs: f64,
}

/// The trained part of an index: coarse centroids and product quantizer, ready to encode.
#[derive(Debug, Clone)]
pub struct IvfPqQuantizer {
    metric: Metric,
    dim: usize,
    /// `(nlist, dim)`.
    coarse: Centroids,
    /// The same in half precision, for ranking lists at search time.
    probe: HalfCentroids,
    pq: ProductQuantizer,
    /// Set by training, `None` when read from bytes.
    report: Option<TrainReport>,
}

impl IvfPqQuantizer {
    /// Number of inverted lists.
    pub fn nlist(&self) -> usize {
        self.coarse.len()
    }

    /// Bytes per code.
    pub fn m(&self) -> usize {
        self.pq.m()
    }

    /// The dimension of the vectors.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The metric it was trained for.
    pub fn metric(&self) -> Metric {
        self.metric
    }

    /// How training went, when this quantizer was trained here rather than read from bytes.
    pub fn train_report(&self) -> Option<&TrainReport> {
        self.report.as_ref()
    }

    fn memory_bytes(&self) -> usize {
        self.coarse.memory_bytes() + self.probe.memory_bytes() + self.pq.memory_bytes()
    }
}

/// An IVF-PQ index over one segment's vectors (offsets `0..len`).
#[derive(Debug)]
pub struct IvfPqIndex {
    quantizer: IvfPqQuantizer,
    /// `(nlist + 1)`: list `l` holds entries `offsets[l] .. offsets[l + 1]`.
    offsets: Vec<u32>,
    /// `(len)`: the vector offset of each entry, list after list.
    ids: Vec<u32>,
    /// `(len · m)`: list `l`'s codes at `offsets[l] · m`, laid out `(m, list length)`
    /// (sub-space-major), so one table column meets one contiguous run of bytes.
    codes: Vec<u8>,
    /// For l2, `(len)`: `‖r‖² + 2⟨c, r⟩` of each entry (its decoded residual `r`, its list's
    /// centroid `c`), recomputed from the codes on load; empty for dot and cosine.
    norm_terms: Vec<f32>,
    /// Lists probed by default.
    pub nprobe: usize,
    /// Candidates re-ranked exactly by default (0: none).
    pub rerank: usize,
    pool: search::ScratchPool,
}

impl IvfPqIndex {
    /// Trains a quantizer on `vectors` and adds them all, on `threads` threads.
    pub fn build(
        vectors: Vectors<'_>,
        metric: Metric,
        params: &IvfPqParams,
        threads: usize,
        cancel: Option<&AtomicBool>,
    ) -> Result<IvfPqIndex, IvfPqError> {
        let q = IvfPqQuantizer::train(vectors, metric, params, threads, cancel)?;
        q.add(vectors, threads, cancel)
    }

    /// The trained quantizer.
    pub fn quantizer(&self) -> &IvfPqQuantizer {
        &self.quantizer
    }

    /// The metric it was built for.
    pub fn metric(&self) -> Metric {
        self.quantizer.metric
    }

    /// Number of vectors indexed.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// True when no vector is indexed.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Number of inverted lists.
    pub fn nlist(&self) -> usize {
        self.quantizer.nlist()
    }

    /// The vector offsets in list `l`.
    pub fn list(&self, l: usize) -> &[u32] {
        &self.ids[self.offsets[l] as usize..self.offsets[l + 1] as usize]
    }

    /// Bytes of memory the index holds beyond the vectors: codes, ids, l2 norm terms, list
    /// offsets, centroids (three copies: rows, blocks, half-precision blocks) and codebooks.
    pub fn memory_bytes(&self) -> usize {
        self.quantizer.memory_bytes()
            + self.codes.len()
            + 4 * (self.ids.len() + self.norm_terms.len() + self.offsets.len())
    }

    /// Bytes per vector that grow with the vectors: the code, the id and, for l2, the norm
    /// term (`m + 8`; `m + 4` for dot and cosine).
    pub fn code_bytes_per_vector(&self) -> usize {
        self.quantizer.m() + 4 + if self.norm_terms.is_empty() { 0 } else { 4 }
    }

    /// [`IvfPqIndex::memory_bytes`] per indexed vector: [`IvfPqIndex::code_bytes_per_vector`]
    /// plus the fixed part (centroids, codebooks, offsets) spread over the vectors.
    pub fn bytes_per_vector(&self) -> f64 {
        self.memory_bytes() as f64 / self.len().max(1) as f64
    }

    /// The vector that entry `i` of list `l` decodes to (`c + r`; unit-length input for
    /// cosine), into `out`.
    pub fn reconstruct(&self, l: usize, i: usize, out: &mut [f32]) {
        let (start, end) = (self.offsets[l] as usize, self.offsets[l + 1] as usize);
        let (len, m) = (end - start, self.quantizer.m());
        let code: Vec<u8> = (0..m)
            .map(|j| self.codes[start * m + j * len + i])
            .collect();
        self.quantizer.pq.decode(&code, out);
        for (o, c) in out.iter_mut().zip(self.quantizer.coarse.row(l)) {
            *o += c;
        }
    }
}

impl VectorIndexRead for IvfPqIndex {
    fn search(
        &self,
        vectors: Vectors<'_>,
        metric: Metric,
        query: &[f32],
        k: usize,
        filter: &PointFilter<'_>,
    ) -> Vec<Neighbor> {
        self.search_with(
            vectors,
            metric,
            query,
            k,
            filter,
            IvfPqSearchParams::default(),
        )
    }
}
