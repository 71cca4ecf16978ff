//! Scalar quantization to 8 bits (SQ8): every vector becomes one byte per dimension, and a graph
//! walks the bytes instead of the floats (4× less memory read per step), then re-ranks its
//! final candidates on the f32 vectors.
//!
//! ```text
//! train : per dimension i, lo_i = min x_i, step_i = (max x_i - lo_i) / 255   (cosine: on x/|x|)
//! encode: c_i = round((x_i - lo_i) / step_i)  in 0..=255,   x_i ≈ lo_i + step_i c_i
//! query : prepared once per search (Sq8Query), then per stored vector, in f32 lanes:
//!   l2     Σ (a_i - step_i c_i)²             a_i = q_i - lo_i
//!   dot    -(Σ q_i lo_i + Σ b_i c_i)         b_i = q_i step_i
//!   cosine 1 - (Σ q̂_i lo_i + Σ b̂_i c_i)     the same on the unit query q̂ (codes are of x/|x|)
//! bytes : "SQ8CODE1" | dim u32 | n u32 | metric u8 | 3 zero bytes | lo (dim f32) | step (dim f32)
//!         | zero bytes up to a multiple of 64 | codes (n, dim) u8
//!         (little-endian; codes are read in place from a mapped file, where the segment file's
//!         64-byte header keeps them on cache-line boundaries)
//! ```
//!
//! Kernels: AVX-512F (16 lanes), AVX2 + FMA (8 lanes), each with a scalar tail, and the plain
//! scalar twin they are tested against ([`Sq8Query::distance_scalar`]).

use crate::Vectors;
use crate::distance::Metric;
use crate::hnsw::SharedBytes;

const MAGIC: &[u8; 8] = b"SQ8CODE1";

/// Why SQ8 bytes were refused.
#[derive(Debug, thiserror::Error)]
#[error("SQ8 code bytes are invalid: {0}")]
pub struct Sq8Error(pub String);

/// Bytes, owned or read in place from shared bytes (a mapped file).
enum Codes {
    /// `len` bytes at `buf[start..]`, `start` chosen so that they begin on a cache line.
    Owned {
        buf: Vec<u8>,
        start: usize,
        len: usize,
    },
    Shared {
        bytes: SharedBytes,
        start: usize,
        len: usize,
    },
}

impl Codes {
    /// A copy of `bytes` starting on a 64-byte boundary.
    fn aligned(bytes: &[u8]) -> Codes {
        let mut buf = vec![0u8; bytes.len() + 63];
        let start = buf.as_ptr().align_offset(64).min(63);
        buf[start..start + bytes.len()].copy_from_slice(bytes);
        Codes::Owned {
            buf,
            start,
            len: bytes.len(),
        }
    }
}

impl std::ops::Deref for Codes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Codes::Owned { buf, start, len } => &buf[*start..*start + *len],
            Codes::Shared { bytes, start, len } => &(**bytes).as_ref()[*start..*start + *len],
        }
    }
}

/// The codes of one segment's vectors and the per-dimension ranges that decode them.
pub struct Sq8 {
    dim: usize,
    metric: Metric,
    /// (dim) lowest value per dimension.
    lo: Vec<f32>,
    /// (dim) value of one code step per dimension.
    step: Vec<f32>,
    /// (n, dim) one byte per dimension.
    codes: Codes,
}

impl std::fmt::Debug for Sq8 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sq8({} × {}, {:?})", self.len(), self.dim, self.metric)
    }
}

/// The codes of an [`Sq8`], `(n, dim)` bytes, borrowed for one search.
#[derive(Debug, Clone, Copy)]
pub struct CodeView<'a> {
    codes: &'a [u8],
    dim: usize,
}

impl<'a> CodeView<'a> {
    /// The codes of vector `i`.
    #[inline(always)]
    pub fn get(&self, i: u32) -> &'a [u8] {
        let s = i as usize * self.dim;
        &self.codes[s..s + self.dim]
    }

    /// Asks the CPU to start loading vector `i`'s codes (every cache line of them).
    #[inline(always)]
    pub fn prefetch(&self, i: u32) {
        let c = self.get(i);
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
            // Every cache line the row touches, from the one holding its first byte.
            let first = c.as_ptr() as usize & !63;
            let end = c.as_ptr() as usize + c.len();
            let mut line = first;
            while line < end {
                // SAFETY: a prefetch is only a hint: it never faults, even on an address
                // outside the slice, and has no effect on memory.
                unsafe { _mm_prefetch(line as *const i8, _MM_HINT_T0) };
                line += 64;
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = c;
    }
}

/// A query prepared against one [`Sq8`]: the per-dimension weights of its kernel.
#[derive(Debug, Clone)]
pub struct Sq8Query {
    metric: Metric,
    isa: Isa,
    /// (dim) `a_i` for l2, `b_i` for dot and cosine (see the module header).
    w: Vec<f32>,
    /// (dim) `step_i` for l2; empty otherwise.
    step: Vec<f32>,
    /// Added to the kernel's sum: `Σ q_i lo_i` for dot and cosine, 0 for l2.
    offset: f32,
}

fn unit(v: &[f32]) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if n > 0.0 {
        v.iter().map(|x| x / n).collect()
    } else {
        v.to_vec()
    }
}

impl Sq8 {
    /// Learns the per-dimension ranges of `vectors` and encodes them all.
    pub fn train(vectors: Vectors<'_>, metric: Metric) -> Sq8 {
        let dim = vectors.dim();
        let prep = |v: &[f32]| -> Vec<f32> {
            if metric == Metric::Cosine {
                unit(v)
            } else {
                v.to_vec()
            }
        };
        let (mut lo, mut hi) = (vec![f32::INFINITY; dim], vec![f32::NEG_INFINITY; dim]);
        for v in vectors.iter() {
            for (i, x) in prep(v).iter().enumerate() {
                lo[i] = lo[i].min(*x);
                hi[i] = hi[i].max(*x);
            }
        }
        if vectors.is_empty() {
            (lo, hi) = (vec![0.0; dim], vec![0.0; dim]);
        }
        let step: Vec<f32> = lo.iter().zip(&hi).map(|(l, h)| (h - l) / 255.0).collect();
        let mut codes = Vec::with_capacity(vectors.len() * dim);
        for v in vectors.iter() {
            for (i, x) in prep(v).iter().enumerate() {
                let c = if step[i] > 0.0 {
                    ((x - lo[i]) / step[i]).round().clamp(0.0, 255.0)
                } else {
                    0.0
                };
                codes.push(c as u8);
            }
        }
        Sq8 {
            dim,
            metric,
            lo,
            step,
            codes: Codes::aligned(&codes),
        }
    }

    /// Number of encoded vectors.
    pub fn len(&self) -> usize {
        self.codes.len() / self.dim
    }

    /// True when no vector is encoded.
    pub fn is_empty(&self) -> bool {
        self.codes.is_empty()
    }

    /// The metric the codes were made for.
    pub fn metric(&self) -> Metric {
        self.metric
    }

    /// Bytes held: the codes and the ranges.
    pub fn memory_bytes(&self) -> usize {
        self.codes.len() + 8 * self.dim
    }

    /// The codes of vector `i`.
    #[inline]
    pub fn code(&self, i: u32) -> &[u8] {
        self.view().get(i)
    }

    /// The code array as a plain slice, for a search loop (no dispatch per access).
    #[inline]
    pub fn view(&self) -> CodeView<'_> {
        CodeView {
            codes: &self.codes,
            dim: self.dim,
        }
    }

    /// Prepares `query` (of the collection's dimension) for [`Sq8Query::distance`].
    pub fn prepare(&self, query: &[f32]) -> Sq8Query {
        assert_eq!(query.len(), self.dim, "query dimension");
        match self.metric {
            Metric::L2 => Sq8Query {
                metric: Metric::L2,
                isa: isa(),
                w: query.iter().zip(&self.lo).map(|(q, l)| q - l).collect(),
                step: self.step.clone(),
                offset: 0.0,
            },
            Metric::Dot | Metric::Cosine => {
                let q = if self.metric == Metric::Cosine {
                    unit(query)
                } else {
                    query.to_vec()
                };
                Sq8Query {
                    metric: self.metric,
                    isa: isa(),
                    w: q.iter().zip(&self.step).map(|(q, s)| q * s).collect(),
                    step: Vec::new(),
                    offset: q.iter().zip(&self.lo).map(|(q, l)| q * l).sum(),
                }
            }
        }
    }

    /// The codes as bytes (layout in the module header).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(20 + 8 * self.dim + self.codes.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(self.dim as u32).to_le_bytes());
        out.extend_from_slice(&(self.len() as u32).to_le_bytes());
        out.extend_from_slice(&[metric_byte(self.metric), 0, 0, 0]);
        for x in self.lo.iter().chain(&self.step) {
            out.extend_from_slice(&x.to_le_bytes());
        }
        out.resize(codes_offset(self.dim), 0);
        out.extend_from_slice(&self.codes);
        out
    }

    /// Reads codes written by [`Sq8::to_bytes`] for `n` vectors of `dim`; copies them.
    pub fn from_bytes(raw: &[u8], n: usize, dim: usize) -> Result<Sq8, Sq8Error> {
        let (head, codes) = Self::parse(raw, n, dim)?;
        Ok(Sq8 {
            codes: Codes::aligned(&raw[codes]),
            ..head
        })
    }

    /// Like [`Sq8::from_bytes`] for the codes at `bytes[start..start + len]`, read in place.
    pub fn from_shared(
        bytes: SharedBytes,
        start: usize,
        len: usize,
        n: usize,
        dim: usize,
    ) -> Result<Sq8, Sq8Error> {
        let all: &[u8] = (*bytes).as_ref();
        let raw = start
            .checked_add(len)
            .and_then(|end| all.get(start..end))
            .ok_or_else(|| Sq8Error("range outside the bytes".into()))?;
        let (head, codes) = Self::parse(raw, n, dim)?;
        Ok(Sq8 {
            codes: Codes::Shared {
                start: start + codes.start,
                len: codes.len(),
                bytes,
            },
            ..head
        })
    }

    /// Checks the header and ranges; returns them with an empty code array, and where the
    /// codes lie in `raw`.
    fn parse(raw: &[u8], n: usize, dim: usize) -> Result<(Sq8, std::ops::Range<usize>), Sq8Error> {
        let bad = |s: &str| Err(Sq8Error(s.to_string()));
        let u32_at = |at: usize| u32::from_le_bytes(raw[at..at + 4].try_into().expect("4 bytes"));
        if raw.len() < 20 || &raw[..8] != MAGIC {
            return bad("bad magic or truncated header");
        }
        if u32_at(8) as usize != dim || u32_at(12) as usize != n || dim == 0 {
            return bad("dimension or count differs from the segment's");
        }
        let Some(metric) = metric_from_byte(raw[16]) else {
            return bad("unknown metric");
        };
        let ranges = 20 + 8 * dim;
        let at = codes_offset(dim);
        let want = n
            .checked_mul(dim)
            .and_then(|c| c.checked_add(at))
            .ok_or_else(|| Sq8Error("size overflow".into()))?;
        if raw.len() != want {
            return bad("length does not match count × dim");
        }
        let floats: Vec<f32> = raw[20..ranges]
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
            .collect();
        let (lo, step) = floats.split_at(dim);
        if floats.iter().any(|x| !x.is_finite()) || step.iter().any(|s| *s < 0.0) {
            return bad("a range is not finite or negative");
        }
        if raw[ranges..at].iter().any(|b| *b != 0) {
            return bad("padding is not zero");
        }
        let head = Sq8 {
            dim,
            metric,
            lo: lo.to_vec(),
            step: step.to_vec(),
            codes: Codes::aligned(&[]),
        };
        Ok((head, at..want))
    }
}

/// Where the codes start in the bytes: after the header and ranges, on a multiple of 64.
fn codes_offset(dim: usize) -> usize {
    (20 + 8 * dim).next_multiple_of(64)
}

fn metric_byte(m: Metric) -> u8 {
    match m {
        Metric::Cosine => 0,
        Metric::Dot => 1,
        Metric::L2 => 2,
    }
}

fn metric_from_byte(b: u8) -> Option<Metric> {
    match b {
        0 => Some(Metric::Cosine),
        1 => Some(Metric::Dot),
        2 => Some(Metric::L2),
        _ => None,
    }
}

/// Which kernel this CPU runs, detected once.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Isa {
    Avx512,
    Avx2,
    Scalar,
}

fn isa() -> Isa {
    static ISA: std::sync::OnceLock<Isa> = std::sync::OnceLock::new();
    *ISA.get_or_init(detect)
}

fn detect() -> Isa {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return Isa::Avx512;
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return Isa::Avx2;
        }
    }
    Isa::Scalar
}

impl Sq8Query {
    /// The approximate distance to the vector with these codes, on the fastest kernel.
    #[inline]
    pub fn distance(&self, codes: &[u8]) -> f32 {
        debug_assert_eq!(codes.len(), self.w.len());
        #[cfg(target_arch = "x86_64")]
        {
            let isa = self.isa;
            if isa != Isa::Scalar {
                let n = self.w.len().min(codes.len());
                // SAFETY: the CPU has the kernel's features (detected above); the kernels read
                // only the first `n` elements of each slice, and every slice holds at least `n`.
                let sum = unsafe {
                    match (self.metric, isa) {
                        (Metric::L2, Isa::Avx512) => x86::l2_512(&self.w, &self.step, codes, n),
                        (Metric::L2, _) => x86::l2_256(&self.w, &self.step, codes, n),
                        (_, Isa::Avx512) => x86::dot_512(&self.w, codes, n),
                        (_, _) => x86::dot_256(&self.w, codes, n),
                    }
                };
                return self.finish(sum);
            }
        }
        self.distance_scalar(codes)
    }

    /// The same distance with plain loops: the reference for the SIMD kernels.
    pub fn distance_scalar(&self, codes: &[u8]) -> f32 {
        let sum = match self.metric {
            Metric::L2 => self
                .w
                .iter()
                .zip(&self.step)
                .zip(codes)
                .map(|((a, s), c)| {
                    let d = a - s * *c as f32;
                    d * d
                })
                .sum(),
            Metric::Dot | Metric::Cosine => {
                self.w.iter().zip(codes).map(|(b, c)| b * *c as f32).sum()
            }
        };
        self.finish(sum)
    }

    #[inline(always)]
    fn finish(&self, sum: f32) -> f32 {
        match self.metric {
            Metric::L2 => sum,
            Metric::Dot => -(self.offset + sum),
            Metric::Cosine => 1.0 - (self.offset + sum),
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! The kernels of the module header. The plain loops they unroll:
    //! `Σ (a_i - s_i c_i)²` and `Σ b_i c_i`, bytes widened to i32 and converted to f32.
    use std::arch::x86_64::*;

    /// # Safety
    /// AVX-512F must be available; `a`, `s`, `c` hold at least `n` elements.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn l2_512(a: &[f32], s: &[f32], c: &[u8], n: usize) -> f32 {
        let (pa, ps, pc) = (a.as_ptr(), s.as_ptr(), c.as_ptr());
        let (mut acc0, mut acc1) = (_mm512_setzero_ps(), _mm512_setzero_ps());
        let mut i = 0;
        // SAFETY: i + 32 <= n and i + 16 <= n keep every load inside the slices.
        unsafe {
            while i + 32 <= n {
                let c0 = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(
                    pc.add(i) as *const __m128i
                )));
                let c1 = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(
                    pc.add(i + 16) as *const __m128i
                )));
                let d0 =
                    _mm512_fnmadd_ps(c0, _mm512_loadu_ps(ps.add(i)), _mm512_loadu_ps(pa.add(i)));
                let d1 = _mm512_fnmadd_ps(
                    c1,
                    _mm512_loadu_ps(ps.add(i + 16)),
                    _mm512_loadu_ps(pa.add(i + 16)),
                );
                acc0 = _mm512_fmadd_ps(d0, d0, acc0);
                acc1 = _mm512_fmadd_ps(d1, d1, acc1);
                i += 32;
            }
            if i + 16 <= n {
                let c0 = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(
                    pc.add(i) as *const __m128i
                )));
                let d0 =
                    _mm512_fnmadd_ps(c0, _mm512_loadu_ps(ps.add(i)), _mm512_loadu_ps(pa.add(i)));
                acc0 = _mm512_fmadd_ps(d0, d0, acc0);
                i += 16;
            }
        }
        let mut sum = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
        while i < n {
            let d = a[i] - s[i] * c[i] as f32;
            sum += d * d;
            i += 1;
        }
        sum
    }

    /// # Safety
    /// AVX-512F must be available; `b` and `c` hold at least `n` elements.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn dot_512(b: &[f32], c: &[u8], n: usize) -> f32 {
        let (pb, pc) = (b.as_ptr(), c.as_ptr());
        let (mut acc0, mut acc1) = (_mm512_setzero_ps(), _mm512_setzero_ps());
        let mut i = 0;
        // SAFETY: i + 32 <= n and i + 16 <= n keep every load inside the slices.
        unsafe {
            while i + 32 <= n {
                let c0 = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(
                    pc.add(i) as *const __m128i
                )));
                let c1 = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(
                    pc.add(i + 16) as *const __m128i
                )));
                acc0 = _mm512_fmadd_ps(c0, _mm512_loadu_ps(pb.add(i)), acc0);
                acc1 = _mm512_fmadd_ps(c1, _mm512_loadu_ps(pb.add(i + 16)), acc1);
                i += 32;
            }
            if i + 16 <= n {
                let c0 = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(
                    pc.add(i) as *const __m128i
                )));
                acc0 = _mm512_fmadd_ps(c0, _mm512_loadu_ps(pb.add(i)), acc0);
                i += 16;
            }
        }
        let mut sum = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
        while i < n {
            sum += b[i] * c[i] as f32;
            i += 1;
        }
        sum
    }

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps(s, s, 1)))
    }

    /// # Safety
    /// AVX2 and FMA must be available; `a`, `s`, `c` hold at least `n` elements.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn l2_256(a: &[f32], s: &[f32], c: &[u8], n: usize) -> f32 {
        let (pa, ps, pc) = (a.as_ptr(), s.as_ptr(), c.as_ptr());
        let mut acc = _mm256_setzero_ps();
        let mut i = 0;
        // SAFETY: i + 8 <= n keeps every load inside the slices.
        unsafe {
            while i + 8 <= n {
                let c0 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(
                    pc.add(i) as *const __m128i
                )));
                let d0 =
                    _mm256_fnmadd_ps(c0, _mm256_loadu_ps(ps.add(i)), _mm256_loadu_ps(pa.add(i)));
                acc = _mm256_fmadd_ps(d0, d0, acc);
                i += 8;
            }
        }
        let mut sum = hsum(acc);
        while i < n {
            let d = a[i] - s[i] * c[i] as f32;
            sum += d * d;
            i += 1;
        }
        sum
    }

    /// # Safety
    /// AVX2 and FMA must be available; `b` and `c` hold at least `n` elements.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot_256(b: &[f32], c: &[u8], n: usize) -> f32 {
        let (pb, pc) = (b.as_ptr(), c.as_ptr());
        let mut acc = _mm256_setzero_ps();
        let mut i = 0;
        // SAFETY: i + 8 <= n keeps every load inside the slices.
        unsafe {
            while i + 8 <= n {
                let c0 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(
                    pc.add(i) as *const __m128i
                )));
                acc = _mm256_fmadd_ps(c0, _mm256_loadu_ps(pb.add(i)), acc);
                i += 8;
            }
        }
        let mut sum = hsum(acc);
        while i < n {
            sum += b[i] * c[i] as f32;
            i += 1;
        }
        sum
    }

    /// Both kernels for the tests: (AVX-512 if present, AVX2) sums.
    #[cfg(test)]
    pub fn all(q: &super::Sq8Query, c: &[u8]) -> Vec<f32> {
        let n = q.w.len();
        let mut out = Vec::new();
        let l2 = q.metric == crate::Metric::L2;
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: AVX-512F detected; every slice holds `n` elements.
            out.push(unsafe {
                if l2 {
                    l2_512(&q.w, &q.step, c, n)
                } else {
                    dot_512(&q.w, c, n)
                }
            });
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: AVX2 and FMA detected; every slice holds `n` elements.
            out.push(unsafe {
                if l2 {
                    l2_256(&q.w, &q.step, c, n)
                } else {
                    dot_256(&q.w, c, n)
                }
            });
        }
        out.into_iter().map(|s| q.finish(s)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn data(n: usize) -> impl Strategy<Value = (usize, Vec<f32>, Vec<f32>)> {
        (1usize..200).prop_flat_map(move |dim| {
            (
                Just(dim),
                proptest::collection::vec(-5.0f32..5.0, n * dim),
                proptest::collection::vec(-5.0f32..5.0, dim),
            )
        })
    }

    proptest! {
        #[test]
        fn simd_kernels_agree_with_the_scalar_twin((dim, v, q) in data(8)) {
            for m in [Metric::L2, Metric::Dot, Metric::Cosine] {
                let sq = Sq8::train(Vectors::new(&v, dim), m);
                let pq = sq.prepare(&q);
                for i in 0..sq.len() as u32 {
                    let slow = pq.distance_scalar(sq.code(i));
                    let fast = pq.distance(sq.code(i));
                    let tol = 1e-3 * slow.abs().max(1.0);
                    prop_assert!((fast - slow).abs() <= tol, "{m:?}: {fast} vs {slow}");
                    #[cfg(target_arch = "x86_64")]
                    for k in x86::all(&pq, sq.code(i)) {
                        prop_assert!((k - slow).abs() <= tol, "{m:?}: kernel {k} vs {slow}");
                    }
                }
            }
        }

        #[test]
        fn codes_approximate_the_exact_distance((dim, v, q) in data(4)) {
            for m in [Metric::L2, Metric::Dot, Metric::Cosine] {
                let vs = Vectors::new(&v, dim);
                let sq = Sq8::train(vs, m);
                let pq = sq.prepare(&q);
                let qn = q.iter().map(|x| x * x).sum::<f32>().sqrt();
                prop_assume!(qn > 1e-2);
                for (i, x) in vs.iter().enumerate() {
                    let exact = m.distance_scalar(&q, x);
                    let approx = pq.distance_scalar(sq.code(i as u32));
                    // One code step is at most 10/255 per dimension; the error of each term is
                    // bounded by half a step times the query's (or the difference's) size.
                    let xn = x.iter().map(|x| x * x).sum::<f32>().sqrt();
                    let tol = match m {
                        Metric::L2 => 0.04 * (dim as f32) * (qn + xn + 1.0),
                        Metric::Dot => 0.02 * qn * (dim as f32).sqrt() + 1e-3,
                        Metric::Cosine => 0.02 * (dim as f32).sqrt() + 1e-3,
                    };
                    prop_assert!((exact - approx).abs() <= tol, "{m:?}: exact {exact} vs {approx} (tol {tol})");
                }
            }
        }
    }

    #[test]
    fn bytes_round_trip_and_damage_is_refused() {
        let (n, dim) = (300, 24);
        let v = crate::synthetic::clustered(n, dim, 5, 4, 7);
        let sq = Sq8::train(Vectors::new(&v, dim), Metric::Cosine);
        let raw = sq.to_bytes();
        let back = Sq8::from_bytes(&raw, n, dim).unwrap();
        assert_eq!(back.to_bytes(), raw);
        let mut framed = vec![0u8; 13];
        framed.extend(&raw);
        let shared: SharedBytes = std::sync::Arc::new(framed);
        let in_place = Sq8::from_shared(shared, 13, raw.len(), n, dim).unwrap();
        assert_eq!(in_place.to_bytes(), raw);
        assert!(Sq8::from_bytes(&raw[..raw.len() - 1], n, dim).is_err());
        assert!(Sq8::from_bytes(&raw, n + 1, dim).is_err());
        assert!(Sq8::from_bytes(&raw, n, dim + 1).is_err());
        let mut bad = raw.clone();
        bad[16] = 9;
        assert!(Sq8::from_bytes(&bad, n, dim).is_err(), "unknown metric");
        let mut bad = raw.clone();
        bad[20..24].copy_from_slice(&f32::NAN.to_le_bytes());
        assert!(Sq8::from_bytes(&bad, n, dim).is_err(), "NaN range");
    }

    #[test]
    fn constant_dimensions_and_empty_sets() {
        let v = [1.0, 2.0, 1.0, 3.0, 1.0, 4.0];
        let sq = Sq8::train(Vectors::new(&v, 2), Metric::L2);
        let pq = sq.prepare(&[1.0, 3.0]);
        assert!(pq.distance(sq.code(1)).abs() < 1e-4);
        assert!((pq.distance(sq.code(0)) - 1.0).abs() < 1e-3);
        let empty = Sq8::train(Vectors::new(&[], 3), Metric::Dot);
        assert!(empty.is_empty());
        assert_eq!(Sq8::from_bytes(&empty.to_bytes(), 0, 3).unwrap().len(), 0);
    }
}
