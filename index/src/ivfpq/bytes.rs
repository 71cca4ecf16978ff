//! The byte layout of an IVF-PQ index, and reading it back with every field checked. Anything
//! derived (transposed centroids, norms, the l2 table terms) is recomputed on load, not stored.
//!
//! ```text
//! offset  bytes              field (all little-endian)
//! 0       8                  magic "IVFPQ001"
//! 8       1                  metric: 0 cosine, 1 dot, 2 l2
//! 9       1                  nbits (8)
//! 10      2                  zero
//! 12      4                  dim u32
//! 16      4                  nlist u32 (1 ..= max(n, 1))
//! 20      4                  m u32 (divides dim)
//! 24      4                  n u32 (vectors indexed; must equal the segment's)
//! 28      nlist·dim·4        coarse centroids f32, (nlist, dim), finite
//! ..      m·256·(dim/m)·4    codebooks f32, (m, 256, dim/m), finite
//! ..      (nlist+1)·4        list offsets u32: 0, non-decreasing, last = n
//! ..      n·4                ids u32: each of 0..n exactly once
//! ..      n·m                codes u8, list after list, each (m, list length)
//! ..      0-3                zero padding to a multiple of 4
//! ```
//!
//! The storage crate wraps these bytes in a segment file with its own header and checksum;
//! the checks here are what stops damage the checksum did not catch from being served.

use super::kernels::Centroids;
use super::pq::{KSUB, ProductQuantizer};
use super::{IvfPqError, IvfPqIndex, IvfPqQuantizer};
use crate::distance::Metric;

const MAGIC: &[u8; 8] = b"IVFPQ001";
const HEADER: usize = 28;
/// The largest dimension a file may claim.
const MAX_DIM: usize = 1 << 16;

fn metric_byte(m: Metric) -> u8 {
    match m {
        Metric::Cosine => 0,
        Metric::Dot => 1,
        Metric::L2 => 2,
    }
}

fn corrupt(reason: impl Into<String>) -> IvfPqError {
    IvfPqError::Corrupt {
        reason: reason.into(),
    }
}

impl IvfPqIndex {
    /// The index as bytes (layout in this module's header).
    pub fn to_bytes(&self) -> Vec<u8> {
        let q = &self.quantizer;
        let mut out = Vec::with_capacity(
            HEADER
                + 4 * (q.coarse.rows().len() + q.m() * KSUB * (q.dim / q.m()))
                + 4 * (self.offsets.len() + self.ids.len())
                + self.codes.len()
                + 3,
        );
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&[metric_byte(q.metric), 8, 0, 0]);
        for x in [q.dim, q.nlist(), q.m(), self.len()] {
            out.extend_from_slice(&(x as u32).to_le_bytes());
        }
        let floats = |out: &mut Vec<u8>, v: &[f32]| {
            v.iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes()))
        };
        floats(&mut out, q.coarse.rows());
        for book in q.pq.codebooks() {
            floats(&mut out, book);
        }
        for w in self.offsets.iter().chain(&self.ids) {
            out.extend_from_slice(&w.to_le_bytes());
        }
        out.extend_from_slice(&self.codes);
        out.resize(out.len().div_ceil(4) * 4, 0);
        out
    }

    /// Reads an index written by [`IvfPqIndex::to_bytes`] over a segment of `n_vectors`
    /// vectors, checking every size, count, id and float. Damage gives an error, never a panic
    /// or an index that could read out of bounds.
    pub fn from_bytes(raw: &[u8], n_vectors: usize) -> Result<IvfPqIndex, IvfPqError> {
        if raw.len() < HEADER {
            return Err(corrupt("truncated header"));
        }
        if &raw[..8] != MAGIC {
            return Err(corrupt("bad magic"));
        }
        let metric = match raw[8] {
            0 => Metric::Cosine,
            1 => Metric::Dot,
            2 => Metric::L2,
            b => return Err(corrupt(format!("unknown metric {b}"))),
        };
        if raw[9] != 8 {
            return Err(IvfPqError::UnsupportedNbits {
                nbits: raw[9] as u32,
            });
        }
        if raw[10..12] != [0, 0] {
            return Err(corrupt("reserved header bytes are not zero"));
        }
        let word = |at: usize| u32::from_le_bytes(raw[at..at + 4].try_into().expect("4 bytes"));
        let (dim, nlist, m, n) = (
            word(12) as usize,
            word(16) as usize,
            word(20) as usize,
            word(24) as usize,
        );
        if dim == 0 || dim > MAX_DIM {
            return Err(corrupt(format!("dimension {dim} out of range")));
        }
        if m == 0 || dim % m != 0 {
            return Err(corrupt(format!("{m} sub-spaces do not divide {dim}")));
        }
        if n != n_vectors {
            return Err(corrupt(format!(
                "indexes {n} vectors, the segment holds {n_vectors}"
            )));
        }
        if nlist == 0 || nlist > n.max(1) {
            return Err(corrupt(format!("{nlist} lists for {n} vectors")));
        }
        // Sizes: nlist ≤ max(n, 1) < 2^32 and dim ≤ 2^16 keep every product below 2^50.
        let sizes = [
            nlist * dim * 4,
            KSUB * dim * 4,
            (nlist + 1) * 4,
            n * 4,
            n * m,
        ];
        let body: usize = sizes.iter().sum();
        let total = (HEADER + body).div_ceil(4) * 4;
        if raw.len() != total {
            return Err(corrupt(format!(
                "{} bytes where the header implies {total}",
                raw.len()
            )));
        }
        let mut at = HEADER;
        let mut next = |len: usize| {
            let r = &raw[at..at + len];
            at += len;
            r
        };
        let floats = |b: &[u8]| -> Result<Vec<f32>, IvfPqError> {
            let v: Vec<f32> = b
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
                .collect();
            match v.iter().position(|x| !x.is_finite()) {
                Some(i) => Err(corrupt(format!("non-finite float at {i}"))),
                None => Ok(v),
            }
        };
        let words = |b: &[u8]| -> Vec<u32> {
            b.chunks_exact(4)
                .map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes")))
                .collect()
        };
        let coarse = floats(next(sizes[0]))?;
        let books = floats(next(sizes[1]))?;
        let offsets = words(next(sizes[2]));
        let ids = words(next(sizes[3]));
        let codes = next(sizes[4]).to_vec();
        if raw[at..].iter().any(|&b| b != 0) {
            return Err(corrupt("padding is not zero"));
        }
        if offsets[0] != 0
            || offsets[nlist] as usize != n
            || offsets.windows(2).any(|w| w[0] > w[1])
        {
            return Err(corrupt("list offsets are not a partition of the entries"));
        }
        let mut seen = vec![false; n];
        for &id in &ids {
            match seen.get_mut(id as usize) {
                Some(s) if !*s => *s = true,
                Some(_) => return Err(corrupt(format!("id {id} appears twice"))),
                None => return Err(corrupt(format!("id {id} is beyond {n} vectors"))),
            }
        }
        let quantizer = IvfPqQuantizer::assemble(
            metric,
            Centroids::new(coarse, dim),
            ProductQuantizer::from_codebooks(&books, dim, m),
        );
        Ok(IvfPqIndex::from_parts(quantizer, offsets, ids, codes))
    }
}
