//! Product quantization (Jégou, Douze & Schmid, 2011): a vector of `dim` is cut into `m`
//! sub-vectors of `dsub = dim / m`, and each is replaced by the index (one byte) of its
//! nearest centroid among 256 learned for that sub-space, so a vector costs `m` bytes.
//!
//! Layout of the codebooks: `(m, 256, dsub)`; a code is `(m)` u8. Distances between a query and
//! a code come from per-query lookup tables `(m, 256)` f32 (asymmetric distance computation,
//! "ADC" in the paper): the query stays exact, only the stored vector is quantized.

use super::kernels::Centroids;
use super::kmeans::kmeans;
use std::sync::atomic::AtomicBool;

/// Centroids per sub-space: 8-bit codes.
pub const KSUB: usize = 256;

/// `m` sub-quantizers of [`KSUB`] centroids each.
#[derive(Debug, Clone)]
pub(crate) struct ProductQuantizer {
    dim: usize,
    m: usize,
    dsub: usize,
    /// One per sub-space, `(256, dsub)` each.
    books: Vec<Centroids>,
}

impl ProductQuantizer {
    /// Learns the codebooks from the rows of `data` `(n, dim)` (residuals), one k-means of 256
    /// per sub-space, each on every thread; also returns the Lloyd iterations run (summed over
    /// sub-spaces) and the mean squared quantization error of the residuals. `None` when
    /// `cancel` was raised.
    pub fn train(
        data: &[f32],
        dim: usize,
        m: usize,
        iters: usize,
        seed: u64,
        threads: usize,
        cancel: Option<&AtomicBool>,
    ) -> Option<(ProductQuantizer, usize, f64)> {
        let dsub = dim / m;
        let n = data.len() / dim;
        let mut sub = vec![0f32; n * dsub];
        let mut books = Vec::with_capacity(m);
        let (mut iterations, mut mse) = (0, 0.0);
        for j in 0..m {
            for (s, row) in sub.chunks_exact_mut(dsub).zip(data.chunks_exact(dim)) {
                s.copy_from_slice(&row[j * dsub..(j + 1) * dsub]);
            }
            let km = kmeans(
                &sub,
                dsub,
                KSUB,
                iters,
                seed.wrapping_add(1 + j as u64),
                threads,
                cancel,
            )?;
            iterations += km.iterations;
            mse += km.mse;
            books.push(Centroids::new(km.centroids, dsub));
        }
        let pq = ProductQuantizer {
            dim,
            m,
            dsub,
            books,
        };
        Some((pq, iterations, mse))
    }

    /// Rebuilds a quantizer from its codebooks `(m, 256, dim / m)`.
    pub fn from_codebooks(codebooks: &[f32], dim: usize, m: usize) -> ProductQuantizer {
        let dsub = dim / m;
        assert_eq!(codebooks.len(), m * KSUB * dsub, "codebook size");
        ProductQuantizer {
            dim,
            m,
            dsub,
            books: codebooks
                .chunks_exact(KSUB * dsub)
                .map(|b| Centroids::new(b.to_vec(), dsub))
                .collect(),
        }
    }

    /// Number of sub-spaces (bytes per code).
    pub fn m(&self) -> usize {
        self.m
    }

    /// The codebooks, `(m, 256, dsub)`.
    pub fn codebooks(&self) -> impl Iterator<Item = &[f32]> {
        self.books.iter().map(|b| b.rows())
    }

    /// Bytes held.
    pub fn memory_bytes(&self) -> usize {
        self.books.iter().map(Centroids::memory_bytes).sum()
    }

    /// Codes `(n, m)` of the rows of `data` `(n, dim)`; `scratch` is reused between calls.
    pub fn encode(&self, data: &[f32], codes: &mut [u8], scratch: &mut EncodeScratch) {
        let n = data.len() / self.dim;
        scratch.sub.resize(n * self.dsub, 0.0);
        scratch.idx.resize(n, 0);
        scratch.dist.resize(n, 0.0);
        for (j, book) in self.books.iter().enumerate() {
            for (s, row) in scratch
                .sub
                .chunks_exact_mut(self.dsub)
                .zip(data.chunks_exact(self.dim))
            {
                s.copy_from_slice(&row[j * self.dsub..(j + 1) * self.dsub]);
            }
            book.nearest(&scratch.sub, &mut scratch.idx, &mut scratch.dist);
            for (code, &c) in codes.chunks_exact_mut(self.m).zip(&scratch.idx) {
                code[j] = c as u8;
            }
        }
    }

    /// The vector a code stands for, into `out` `(dim)`.
    pub fn decode(&self, code: &[u8], out: &mut [f32]) {
        for ((o, book), &c) in out.chunks_exact_mut(self.dsub).zip(&self.books).zip(code) {
            o.copy_from_slice(book.row(c as usize));
        }
    }

    /// `out[j · 256 + k] = ⟨q_j, centroid k of sub-space j⟩`: the query's part of every ADC
    /// table. `out` has `m · 256` floats.
    pub fn inner_tables(&self, q: &[f32], out: &mut [f32]) {
        for ((qj, book), o) in q
            .chunks_exact(self.dsub)
            .zip(&self.books)
            .zip(out.chunks_exact_mut(KSUB))
        {
            book.dots(qj, o);
        }
    }

    /// `out[j · 256 + k] = ‖r_jk‖² + 2 ⟨c_j, r_jk⟩` for a coarse centroid `c` and sub-centroids
    /// `r_jk`: the part of an l2 ADC distance that depends on neither the query nor (summed
    /// over the code's sub-spaces) anything but the stored entry, so it is summed once per
    /// entry (`‖q - c - r‖² = ‖q - c‖² + Σ_j (‖r_j‖² + 2⟨c_j, r_j⟩) - 2 Σ_j ⟨q_j, r_j⟩`).
    pub fn l2_terms(&self, c: &[f32], out: &mut [f32]) {
        for ((cj, book), o) in c
            .chunks_exact(self.dsub)
            .zip(&self.books)
            .zip(out.chunks_exact_mut(KSUB))
        {
            book.dots(cj, o);
            for (k, x) in o.iter_mut().enumerate() {
                *x = book.norm(k) + 2.0 * *x;
            }
        }
    }
}

/// Reused buffers of [`ProductQuantizer::encode`].
#[derive(Debug, Default)]
pub(crate) struct EncodeScratch {
    sub: Vec<f32>,
    idx: Vec<u32>,
    dist: Vec<f32>,
}
