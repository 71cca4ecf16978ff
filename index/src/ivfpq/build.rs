//! Training and adding, on every core.
//!
//! ```text
//! train: sample ≤ 256·nlist rows (seeded) ─► (cosine: normalise) ─► coarse k-means
//!        ─► ≤ 256·256 of those rows ─► residual from the nearest centroid ─► PQ k-means
//!        ─► for l2, the per-list table terms
//! add:   rows in chunks of 256 on every thread ─► (cosine: normalise) ─► nearest centroid
//!        ─► residual ─► code ─► counting sort by list ─► codes regrouped sub-space-major
//! ```

use super::kernels::{Centroids, HalfCentroids, scan};
use super::kmeans::{assign_all, kmeans};
use super::pq::{EncodeScratch, KSUB, ProductQuantizer};
use super::{
    IvfPqError, IvfPqIndex, IvfPqParams, IvfPqQuantizer, PQ_TRAIN_POINTS_PER_CENTROID,
    TRAIN_POINTS_PER_LIST, TrainReport,
};
use crate::Vectors;
use crate::distance::Metric;
use rand::{SeedableRng, rngs::StdRng};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// Rows encoded per task while adding.
const ADD_CHUNK: usize = 256;

/// Scales `v` to unit length (a zero vector stays zero).
pub(crate) fn normalise(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}

/// Copies rows `rows` of `vectors` back to back, normalised for cosine.
fn gather(vectors: Vectors<'_>, rows: &[u32], metric: Metric) -> Vec<f32> {
    let mut out = Vec::with_capacity(rows.len() * vectors.dim());
    for &r in rows {
        let start = out.len();
        out.extend_from_slice(vectors.get(r));
        if metric == Metric::Cosine {
            normalise(&mut out[start..]);
        }
    }
    out
}

/// A seeded uniform sample of `amount` of `0..n`, in increasing order (so that copying the rows
/// reads memory forwards).
fn sample(n: usize, amount: usize, rng: &mut StdRng) -> Vec<u32> {
    let mut s: Vec<u32> = rand::seq::index::sample(rng, n, amount.min(n))
        .into_iter()
        .map(|i| i as u32)
        .collect();
    s.sort_unstable();
    s
}

fn cancelled(cancel: Option<&AtomicBool>) -> bool {
    cancel.is_some_and(|c| c.load(Ordering::Relaxed))
}

impl IvfPqQuantizer {
    /// Trains the coarse quantizer and the product quantizer on a sample of `vectors`, on
    /// `threads` threads. Deterministic for a given `params.seed`, whatever the thread count, on
    /// a given CPU (AVX-512, AVX2 and the plain loops round differently, which can settle a
    /// near tie between two centroids the other way).
    pub fn train(
        vectors: Vectors<'_>,
        metric: Metric,
        params: &IvfPqParams,
        threads: usize,
        cancel: Option<&AtomicBool>,
    ) -> Result<IvfPqQuantizer, IvfPqError> {
        let (n, dim) = (vectors.len(), vectors.dim());
        if params.nbits != 8 {
            return Err(IvfPqError::UnsupportedNbits {
                nbits: params.nbits,
            });
        }
        if params.m == 0 || dim % params.m != 0 {
            return Err(IvfPqError::BadSubspaces { m: params.m, dim });
        }
        if params.nlist == 0 || params.nlist > u32::MAX as usize {
            return Err(IvfPqError::BadNlist {
                nlist: params.nlist,
            });
        }
        if n > u32::MAX as usize {
            return Err(IvfPqError::TooMany { n });
        }
        let threads = threads.max(1);
        let mut rng = StdRng::seed_from_u64(params.seed);
        let wanted = params
            .train_sample
            .unwrap_or(params.nlist.saturating_mul(TRAIN_POINTS_PER_LIST));
        let rows = sample(n, wanted.max(1), &mut rng);
        let train = gather(vectors, &rows, metric);
        if let Some(bad) = train
            .chunks_exact(dim)
            .position(|v| v.iter().any(|x| !x.is_finite()))
        {
            return Err(IvfPqError::NonFinite {
                offset: rows[bad] as usize,
            });
        }
        let nlist = params.nlist.min(rows.len()).max(1);
        let started = Instant::now();
        let coarse = kmeans(
            &train,
            dim,
            nlist,
            params.coarse_iters,
            params.seed,
            threads,
            cancel,
        )
        .ok_or(IvfPqError::Cancelled)?;
        let mut report = TrainReport {
            coarse_points: rows.len(),
            coarse_iterations: coarse.iterations,
            coarse_mse: coarse.mse,
            ..TrainReport::default()
        };
        let coarse = Centroids::new(coarse.centroids, dim);
        report.coarse_secs = started.elapsed().as_secs_f64();
        let started = Instant::now();

        // Residuals of a sub-sample of the training rows from their nearest centroid.
        let pq_rows = sample(rows.len(), KSUB * PQ_TRAIN_POINTS_PER_CENTROID, &mut rng);
        let mut residuals: Vec<f32> = pq_rows
            .iter()
            .flat_map(|&i| &train[i as usize * dim..(i as usize + 1) * dim])
            .copied()
            .collect();
        drop(train);
        let mut assign = vec![0u32; pq_rows.len()];
        let mut dist = vec![0f32; pq_rows.len()];
        assign_all(&coarse, &residuals, &mut assign, &mut dist, threads);
        for (r, &a) in residuals.chunks_exact_mut(dim).zip(&assign) {
            for (x, c) in r.iter_mut().zip(coarse.row(a as usize)) {
                *x -= c;
            }
        }
        let (pq, iterations, mse) = ProductQuantizer::train(
            &residuals,
            dim,
            params.m,
            params.pq_iters,
            params.seed,
            threads,
            cancel,
        )
        .ok_or(IvfPqError::Cancelled)?;
        report.pq_points = pq_rows.len();
        report.pq_iterations = iterations;
        report.pq_mse = mse;
        report.pq_secs = started.elapsed().as_secs_f64();
        let mut q = Self::assemble(metric, coarse, pq);
        q.report = Some(report);
        Ok(q)
    }

    /// A quantizer from its parts.
    pub(crate) fn assemble(metric: Metric, coarse: Centroids, pq: ProductQuantizer) -> Self {
        IvfPqQuantizer {
            metric,
            dim: coarse.dim(),
            probe: HalfCentroids::new(&coarse),
            coarse,
            pq,
            report: None,
        }
    }

    /// Encodes every vector of `vectors` (offsets `0..len`) into its list, on `threads` threads.
    pub fn add(
        self,
        vectors: Vectors<'_>,
        threads: usize,
        cancel: Option<&AtomicBool>,
    ) -> Result<IvfPqIndex, IvfPqError> {
        let (n, dim, m) = (vectors.len(), self.dim, self.m());
        if vectors.dim() != dim {
            return Err(IvfPqError::WrongDimension {
                expected: dim,
                got: vectors.dim(),
            });
        }
        if n > u32::MAX as usize {
            return Err(IvfPqError::TooMany { n });
        }
        let mut assign = vec![0u32; n];
        let mut codes = vec![0u8; n * m];
        let per = n.div_ceil(threads.max(1)).div_ceil(ADD_CHUNK).max(1) * ADD_CHUNK;
        let stopped = AtomicBool::new(false);
        std::thread::scope(|s| {
            for (t, (a, c)) in assign
                .chunks_mut(per)
                .zip(codes.chunks_mut(per * m))
                .enumerate()
            {
                let (this, stopped) = (&self, &stopped);
                s.spawn(move || {
                    let mut scratch = EncodeScratch::default();
                    let mut rows = Vec::with_capacity(ADD_CHUNK * dim);
                    let mut dist = vec![0f32; ADD_CHUNK];
                    for (i, (a, c)) in a
                        .chunks_mut(ADD_CHUNK)
                        .zip(c.chunks_mut(ADD_CHUNK * m))
                        .enumerate()
                    {
                        if cancelled(cancel) {
                            stopped.store(true, Ordering::Relaxed);
                            return;
                        }
                        let first = t * per + i * ADD_CHUNK;
                        rows.clear();
                        for r in first..first + a.len() {
                            let start = rows.len();
                            rows.extend_from_slice(vectors.get(r as u32));
                            if this.metric == Metric::Cosine {
                                normalise(&mut rows[start..]);
                            }
                        }
                        this.coarse.nearest(&rows, a, &mut dist);
                        for (row, &l) in rows.chunks_exact_mut(dim).zip(a.iter()) {
                            for (x, cv) in row.iter_mut().zip(this.coarse.row(l as usize)) {
                                *x -= cv;
                            }
                        }
                        this.pq.encode(&rows, c, &mut scratch);
                    }
                });
            }
        });
        if stopped.load(Ordering::Relaxed) {
            return Err(IvfPqError::Cancelled);
        }
        Ok(self.lay_out(&assign, &codes))
    }

    /// Groups entries by list: `assign` `(n)` and row-major `codes` `(n, m)` become list
    /// offsets, ids in offset order within a list, and codes `(m, len)` per list.
    fn lay_out(self, assign: &[u32], codes: &[u8]) -> IvfPqIndex {
        let (nlist, m) = (self.nlist(), self.m());
        let mut offsets = vec![0u32; nlist + 1];
        for &a in assign {
            offsets[a as usize + 1] += 1;
        }
        for l in 0..nlist {
            offsets[l + 1] += offsets[l];
        }
        let mut ids = vec![0u32; assign.len()];
        let mut fill: Vec<u32> = offsets[..nlist].to_vec();
        for (i, &a) in assign.iter().enumerate() {
            ids[fill[a as usize] as usize] = i as u32;
            fill[a as usize] += 1;
        }
        let mut grouped = vec![0u8; codes.len()];
        for l in 0..nlist {
            let (start, end) = (offsets[l] as usize, offsets[l + 1] as usize);
            let len = end - start;
            let out = &mut grouped[start * m..end * m];
            for (e, &id) in ids[start..end].iter().enumerate() {
                let code = &codes[id as usize * m..(id as usize + 1) * m];
                for (j, &b) in code.iter().enumerate() {
                    out[j * len + e] = b;
                }
            }
        }
        IvfPqIndex::from_parts(self, offsets, ids, grouped)
    }
}

impl IvfPqIndex {
    /// An index from validated parts; computes the l2 norm terms.
    pub(crate) fn from_parts(
        quantizer: IvfPqQuantizer,
        offsets: Vec<u32>,
        ids: Vec<u32>,
        codes: Vec<u8>,
    ) -> IvfPqIndex {
        let norm_terms = if quantizer.metric == Metric::L2 {
            norm_terms(&quantizer, &offsets, &codes)
        } else {
            Vec::new()
        };
        IvfPqIndex {
            quantizer,
            offsets,
            ids,
            codes,
            norm_terms,
            nprobe: super::DEFAULT_NPROBE,
            rerank: super::DEFAULT_RERANK,
            pool: Default::default(),
        }
    }
}

/// `‖r‖² + 2⟨c, r⟩` of every entry, list after list: per list, the table of
/// `‖r_jk‖² + 2⟨c_j, r_jk⟩` summed over each entry's code by the scan kernel.
fn norm_terms(q: &IvfPqQuantizer, offsets: &[u32], codes: &[u8]) -> Vec<f32> {
    let m = q.m();
    let mut out = vec![0f32; codes.len() / m.max(1)];
    let mut table = vec![0f32; m * KSUB];
    for (l, w) in offsets.windows(2).enumerate() {
        let (start, end) = (w[0] as usize, w[1] as usize);
        if start == end {
            continue;
        }
        q.pq.l2_terms(q.coarse.row(l), &mut table);
        scan(
            &table,
            &codes[start * m..end * m],
            None,
            0.0,
            &mut out[start..end],
        );
    }
    out
}
