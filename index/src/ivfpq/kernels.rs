//! The arithmetic under IVF-PQ, each kernel beside its plain twin (property tests at the end
//! check that they agree):
//!
//! | kernel                 | used by                                   | work                    |
//! |------------------------|-------------------------------------------|-------------------------|
//! | [`Centroids::nearest`] | k-means, list assignment, PQ encoding      | `n · k · dim` FMAs      |
//! | [`Centroids::dots`]    | per query: coarse probe, PQ lookup tables   | `k · dim` FMAs          |
//! | [`scan`]               | per probed list: ADC distances of its codes | `len · m` table lookups |
//!
//! Centroids are kept twice: row-major for reading, and transposed in blocks of 16 so that one
//! broadcast coordinate of a point meets 16 centroids in one 16-lane FMA (two 8-lane ones).
//! The SIMD versions live in `simd.rs`; this file dispatches to the best the CPU has
//! ([`Isa::best`]) and holds the plain twins.

/// Centroids per transposed block.
pub(super) const BLOCK: usize = 16;

/// The instruction sets the kernels are compiled for, each including the ones before it; the
/// best the CPU has is chosen once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Isa {
    /// Plain loops (the twins).
    Scalar,
    /// AVX2 + FMA (+ F16C): 4-point tiles, 8-lane accumulators.
    Avx2,
    /// AVX-512F: 8-point tiles over two blocks, 16-lane accumulators and mask registers.
    Avx512,
}

impl Isa {
    /// The best instruction set of this CPU (detected once).
    pub fn best() -> Isa {
        static BEST: std::sync::OnceLock<Isa> = std::sync::OnceLock::new();
        *BEST.get_or_init(|| {
            Isa::available()
                .into_iter()
                .last()
                .expect("scalar is always available")
        })
    }

    /// Every instruction set this CPU can run, scalar first.
    pub fn available() -> Vec<Isa> {
        let mut out = vec![Isa::Scalar];
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            if has!("avx2") && has!("fma") && has!("f16c") {
                out.push(Isa::Avx2);
                if has!("avx512f") {
                    out.push(Isa::Avx512);
                }
            }
        }
        out
    }
}

/// `k` centroids of dimension `dim`, prepared for nearest-centroid search and inner products.
///
/// Layout: `rows` `(k, dim)` row-major; `blocks` `(⌈k/16⌉, dim, 16)`: coordinate `d` of
/// centroid `16 b + l` at `blocks[(b · dim + d) · 16 + l]`, zero in padding lanes; `norms`
/// `(⌈k/16⌉ · 16)`: `‖c‖²`, +∞ in padding lanes so that padding is never nearest.
#[derive(Debug, Clone)]
pub(crate) struct Centroids {
    k: usize,
    pub(super) dim: usize,
    rows: Vec<f32>,
    pub(super) blocks: Vec<f32>,
    pub(super) norms: Vec<f32>,
}

impl Centroids {
    /// Prepares `rows` `(k, dim)`.
    pub fn new(rows: Vec<f32>, dim: usize) -> Centroids {
        assert!(
            dim > 0 && rows.len().is_multiple_of(dim),
            "centroids are whole rows"
        );
        let k = rows.len() / dim;
        let nb = k.div_ceil(BLOCK);
        let mut blocks = vec![0f32; nb * dim * BLOCK];
        let mut norms = vec![f32::INFINITY; nb * BLOCK];
        for (c, row) in rows.chunks_exact(dim).enumerate() {
            let (b, l) = (c / BLOCK, c % BLOCK);
            for (d, x) in row.iter().enumerate() {
                blocks[(b * dim + d) * BLOCK + l] = *x;
            }
            norms[c] = row.iter().map(|x| x * x).sum();
        }
        Centroids {
            k,
            dim,
            rows,
            blocks,
            norms,
        }
    }

    /// Number of centroids.
    pub fn len(&self) -> usize {
        self.k
    }

    /// Dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// All centroids, `(k, dim)` row-major.
    pub fn rows(&self) -> &[f32] {
        &self.rows
    }

    /// Centroid `c`.
    #[inline]
    pub fn row(&self, c: usize) -> &[f32] {
        &self.rows[c * self.dim..(c + 1) * self.dim]
    }

    /// `‖c‖²` of centroid `c`.
    #[inline]
    pub fn norm(&self, c: usize) -> f32 {
        self.norms[c]
    }

    /// Bytes held.
    pub fn memory_bytes(&self) -> usize {
        4 * (self.rows.len() + self.blocks.len() + self.norms.len())
    }

    /// For each row of `points` `(n, dim)`: the nearest centroid by l2 into `idx`, and the
    /// squared distance to it into `dist` (ties go to the lower index).
    pub fn nearest(&self, points: &[f32], idx: &mut [u32], dist: &mut [f32]) {
        self.nearest_with(Isa::best(), points, idx, dist)
    }

    /// [`Centroids::nearest`] on a given instruction set (which the CPU must have).
    pub fn nearest_with(&self, isa: Isa, points: &[f32], idx: &mut [u32], dist: &mut [f32]) {
        let n = points.len() / self.dim;
        assert!(idx.len() >= n && dist.len() >= n && self.k > 0);
        let tile = match isa {
            Isa::Scalar => return self.nearest_scalar(points, idx, dist),
            Isa::Avx2 => 4,
            Isa::Avx512 => 8,
        };
        assert!(isa <= Isa::best(), "{isa:?} is not available");
        let dim = self.dim;
        // Short rows (PQ sub-vectors): 16 points to the lanes of one register instead.
        let in_lanes = isa == Isa::Avx512 && matches!(dim, 4 | 8 | 16);
        let mut p = 0;
        while p < n {
            let rows = if in_lanes && n - p >= 16 {
                16
            } else if n - p >= tile {
                tile
            } else {
                1
            };
            let block = &points[p * dim..(p + rows) * dim];
            let (bi, bd) = (&mut idx[p..p + rows], &mut dist[p..p + rows]);
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the CPU has `isa` (asserted above); `block` holds `rows` whole points of
            // `dim` (and `lanes` those 16 points transposed, `dim` ≤ 16), `bi` and `bd` have
            // `rows` slots, and the kernels read only those and this centroid set's arrays,
            // whose sizes `new` fixed.
            unsafe {
                use super::simd;
                if rows == 16 {
                    let mut lanes = [0f32; 16 * 16];
                    for (i, x) in block.chunks_exact(dim).enumerate() {
                        for (d, v) in x.iter().enumerate() {
                            lanes[d * 16 + i] = *v;
                        }
                    }
                    let lanes = &lanes[..dim * 16];
                    match dim {
                        4 => simd::nearest_lanes_avx512::<4>(self, lanes, bi, bd),
                        8 => simd::nearest_lanes_avx512::<8>(self, lanes, bi, bd),
                        _ => simd::nearest_lanes_avx512::<16>(self, lanes, bi, bd),
                    }
                } else {
                    match (isa, rows) {
                        (Isa::Avx512, 8) => simd::nearest_avx512::<8>(self, block, bi, bd),
                        (Isa::Avx512, _) => simd::nearest_avx512::<1>(self, block, bi, bd),
                        (Isa::Avx2, 4) => simd::nearest_avx2::<4>(self, block, bi, bd),
                        _ => simd::nearest_avx2::<1>(self, block, bi, bd),
                    }
                }
            }
            for (r, x) in block.chunks_exact(dim).enumerate() {
                let xx: f32 = x.iter().map(|v| v * v).sum();
                dist[p + r] = (dist[p + r] + xx).max(0.0);
            }
            p += rows;
        }
    }

    /// The plain twin of [`Centroids::nearest`].
    pub fn nearest_scalar(&self, points: &[f32], idx: &mut [u32], dist: &mut [f32]) {
        for (i, x) in points.chunks_exact(self.dim).enumerate() {
            let (mut best, mut best_d) = (0u32, f32::INFINITY);
            for c in 0..self.k {
                let dot: f32 = x.iter().zip(self.row(c)).map(|(a, b)| a * b).sum();
                let d = self.norms[c] - 2.0 * dot;
                if d < best_d {
                    best_d = d;
                    best = c as u32;
                }
            }
            idx[i] = best;
            dist[i] = (best_d + x.iter().map(|v| v * v).sum::<f32>()).max(0.0);
        }
    }

    /// `out[c] = ⟨x, c⟩` for every centroid; `out` holds at least `⌈k/16⌉ · 16` floats
    /// (padding lanes get 0).
    pub fn dots(&self, x: &[f32], out: &mut [f32]) {
        self.dots_with(Isa::best(), x, out)
    }

    /// [`Centroids::dots`] on a given instruction set (which the CPU must have).
    pub fn dots_with(&self, isa: Isa, x: &[f32], out: &mut [f32]) {
        assert!(x.len() == self.dim && out.len() >= self.norms.len());
        if isa == Isa::Scalar {
            return self.dots_scalar(x, out);
        }
        assert!(isa <= Isa::best(), "{isa:?} is not available");
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the CPU has `isa` (asserted above); `x` has `dim` floats and `out` room for
        // every block (asserted above).
        unsafe {
            match isa {
                Isa::Avx512 => super::simd::dots_avx512(self, x, out),
                _ => super::simd::dots_avx2(self, x, out),
            }
        }
    }

    /// The plain twin of [`Centroids::dots`].
    pub fn dots_scalar(&self, x: &[f32], out: &mut [f32]) {
        out[..self.norms.len()].fill(0.0);
        for (o, row) in out.iter_mut().zip(self.rows.chunks_exact(self.dim)) {
            *o = x.iter().zip(row).map(|(a, b)| a * b).sum();
        }
    }
}

/// Centroids in half precision (IEEE binary16) for the search-time probe, which only ranks
/// lists: half the bytes of [`Centroids`], so 4096 × 128 centroids (1 MB) stay in a core's L2
/// cache where the f32 copy (2 MB) streamed from L3 on every query. Values are scaled by a
/// power of two so the largest coordinate is 2^14 (no overflow; tiny ones lose only what is
/// small beside it); relative error about 2^-11 a coordinate. The distances that count (each
/// probed list's base, re-ranking) are recomputed in f32.
///
/// Layout: `blocks` `(⌈k/16⌉, dim, 16)` u16 like [`Centroids`]' blocks.
#[derive(Debug, Clone)]
pub(crate) struct HalfCentroids {
    pub(super) dim: usize,
    nb: usize,
    /// Multiplies the stored values back to the centroids' scale (a power of two).
    unscale: f32,
    pub(super) blocks: Vec<u16>,
}

impl HalfCentroids {
    /// Converts `cs`, rounding to nearest even.
    pub fn new(cs: &Centroids) -> HalfCentroids {
        let max = cs.blocks.iter().fold(0f32, |m, x| m.max(x.abs()));
        let e = if max > 0.0 {
            max.log2().ceil().clamp(-100.0, 100.0) as i32
        } else {
            0
        };
        let scale = 2f32.powi(14 - e);
        HalfCentroids {
            dim: cs.dim,
            nb: cs.norms.len() / BLOCK,
            unscale: 2f32.powi(e - 14),
            blocks: cs.blocks.iter().map(|&x| f32_to_f16(x * scale)).collect(),
        }
    }

    /// Bytes held.
    pub fn memory_bytes(&self) -> usize {
        2 * self.blocks.len()
    }

    /// `out[c] ≈ ⟨x, c⟩` for every centroid (`out` as for [`Centroids::dots`]).
    pub fn dots(&self, x: &[f32], out: &mut [f32]) {
        assert!(x.len() == self.dim && out.len() >= self.nb * BLOCK);
        #[cfg(target_arch = "x86_64")]
        {
            let isa = Isa::best();
            if isa != Isa::Scalar {
                // SAFETY: the CPU has `isa`; `x` has `dim` floats and `out` room for every block
                // (asserted above).
                unsafe {
                    match isa {
                        Isa::Avx512 => super::simd::half_dots_avx512(self, x, out),
                        _ => super::simd::half_dots_avx2(self, x, out),
                    }
                }
                for o in &mut out[..self.nb * BLOCK] {
                    *o *= self.unscale;
                }
                return;
            }
        }
        self.dots_scalar(x, out)
    }

    /// The plain twin of [`HalfCentroids::dots`].
    pub fn dots_scalar(&self, x: &[f32], out: &mut [f32]) {
        for b in 0..self.nb {
            for l in 0..BLOCK {
                let mut s = 0f32;
                for (d, xd) in x.iter().enumerate() {
                    s += xd * f16_to_f32(self.blocks[(b * self.dim + d) * BLOCK + l]);
                }
                out[b * BLOCK + l] = s * self.unscale;
            }
        }
    }
}

/// IEEE binary16 bits of `x`, rounded to nearest even (overflow to infinity, underflow through
/// subnormals to zero).
pub(crate) fn f32_to_f16(x: f32) -> u16 {
    let b = x.to_bits();
    let sign = ((b >> 16) & 0x8000) as u16;
    let exp = ((b >> 23) & 0xff) as i32;
    let man = b & 0x7f_ffff;
    if exp == 0xff {
        return sign | 0x7c00 | if man != 0 { 0x200 } else { 0 };
    }
    let e = exp - 112; // rebias 127 → 15
    if e <= 0 {
        if e < -10 {
            return sign;
        }
        // Subnormal: the value is (man | 1 << 23) · 2^(exp - 150) = m · 2^-24.
        let m = man | 0x80_0000;
        let shift = (14 - e) as u32;
        let rounded = (m + (1 << (shift - 1)) - 1 + ((m >> shift) & 1)) >> shift;
        return sign | rounded as u16;
    }
    let rounded = man + 0x0fff + ((man >> 13) & 1);
    let (e, m) = if rounded & 0x80_0000 != 0 {
        (e + 1, 0)
    } else {
        (e, rounded >> 13)
    };
    if e >= 0x1f {
        return sign | 0x7c00;
    }
    sign | ((e as u16) << 10) | m as u16
}

/// The f32 value of binary16 bits.
pub(crate) fn f16_to_f32(h: u16) -> f32 {
    let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = ((h >> 10) & 0x1f) as i32;
    let man = (h & 0x3ff) as f32;
    sign * match exp {
        0 => man * 2f32.powi(-24),
        0x1f if man == 0.0 => f32::INFINITY,
        0x1f => f32::NAN,
        _ => (1.0 + man / 1024.0) * 2f32.powi(exp - 15),
    }
}

/// ADC distances of one inverted list:
/// `out[i] = base + init[i] + Σ_j table[j · 256 + codes[j · len + i]]` for the list's
/// `len = out.len()` codes, stored sub-space-major (`codes` is `(m, len)`); no `init`, no term.
///
/// One sub-space at a time, the loop adds one table column into the whole distance buffer;
/// compiled for AVX2 it becomes eight table loads and one 8-lane add per eight codes. Measured
/// at 16 and 32 sub-spaces (Zen 5) against keeping sixteen running sums in registers, pairing
/// or quadrupling sub-spaces, and hardware gathers (AVX2 and AVX-512): this was the fastest, at
/// 0.20 ns a lookup against 0.21-0.29.
#[inline]
pub(crate) fn scan(table: &[f32], codes: &[u8], init: Option<&[f32]>, base: f32, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if Isa::best() != Isa::Scalar {
        // SAFETY: the CPU has AVX2 (every ISA above scalar includes it); the function is the
        // safe loop below, compiled for AVX2.
        unsafe { super::simd::scan_avx2(table, codes, init, base, out) };
        return;
    }
    scan_scalar(table, codes, init, base, out)
}

/// The plain twin of [`scan`] (and the loop it compiles).
#[inline(always)]
pub(crate) fn scan_scalar(
    table: &[f32],
    codes: &[u8],
    init: Option<&[f32]>,
    base: f32,
    out: &mut [f32],
) {
    let len = out.len();
    match init {
        Some(init) => {
            for (o, x) in out.iter_mut().zip(init) {
                *o = base + x;
            }
        }
        None => out.fill(base),
    }
    if len == 0 {
        return;
    }
    for (t, col) in table.chunks_exact(256).zip(codes.chunks_exact(len)) {
        let t: &[f32; 256] = t.try_into().expect("256 entries a sub-space");
        for (o, &c) in out.iter_mut().zip(col) {
            *o += t[c as usize];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn centroids_and_points() -> impl Strategy<Value = (Vec<f32>, Vec<f32>, usize)> {
        (1usize..40, 1usize..70, 1usize..20).prop_flat_map(|(dim, k, n)| {
            (
                proptest::collection::vec(-4.0f32..4.0, k * dim),
                proptest::collection::vec(-4.0f32..4.0, n * dim),
                Just(dim),
            )
        })
    }

    proptest! {
        #[test]
        fn nearest_agrees_with_its_twin((rows, pts, dim) in centroids_and_points()) {
            let cs = Centroids::new(rows, dim);
            let n = pts.len() / dim;
            let (mut i2, mut d2) = (vec![0u32; n], vec![0f32; n]);
            cs.nearest_scalar(&pts, &mut i2, &mut d2);
            for isa in Isa::available() {
            let (mut i1, mut d1) = (vec![0u32; n], vec![0f32; n]);
            cs.nearest_with(isa, &pts, &mut i1, &mut d1);
            for p in 0..n {
                let x = &pts[p * dim..(p + 1) * dim];
                let exact = |c: u32| -> f32 {
                    x.iter().zip(cs.row(c as usize)).map(|(a, b)| (a - b) * (a - b)).sum()
                };
                // Rounding may split a near tie differently; the distances must agree.
                prop_assert!((exact(i1[p]) - exact(i2[p])).abs() <= 1e-3 * (1.0 + exact(i2[p])));
                prop_assert!((d1[p] - d2[p]).abs() <= 1e-3 * (1.0 + d2[p]), "{} vs {}", d1[p], d2[p]);
                prop_assert!((d1[p] - exact(i1[p])).abs() <= 1e-3 * (1.0 + d1[p]), "{isa:?}");
            }
            }
        }

        #[test]
        fn dots_agree_with_their_twin((rows, pts, dim) in centroids_and_points()) {
            let cs = Centroids::new(rows, dim);
            let padded = cs.len().div_ceil(BLOCK) * BLOCK;
            let mut b = vec![0f32; padded];
            cs.dots_scalar(&pts[..dim], &mut b);
            for isa in Isa::available() {
                let mut a = vec![1f32; padded];
                cs.dots_with(isa, &pts[..dim], &mut a);
                for (x, y) in a.iter().zip(&b) {
                    prop_assert!((x - y).abs() <= 1e-3 * (1.0 + y.abs()), "{isa:?}: {x} vs {y}");
                }
            }
        }

        #[test]
        fn scan_agrees_with_its_twin(
            m in 1usize..20,
            len in 0usize..90,
            seed in any::<u64>(),
        ) {
            use rand::{Rng, SeedableRng, rngs::StdRng};
            let mut rng = StdRng::seed_from_u64(seed);
            let table: Vec<f32> = (0..m * 256).map(|_| rng.random_range(-1.0..1.0)).collect();
            let codes: Vec<u8> = (0..m * len).map(|_| rng.random()).collect();
            let init: Vec<f32> = (0..len).map(|_| rng.random_range(-1.0..1.0)).collect();
            for with_init in [false, true] {
                let init = with_init.then_some(&init[..]);
                let (mut a, mut b) = (vec![0f32; len], vec![0f32; len]);
                scan(&table, &codes, init, 0.5, &mut a);
                scan_scalar(&table, &codes, init, 0.5, &mut b);
                for (i, (x, y)) in a.iter().zip(&b).enumerate() {
                    let want: f32 = 0.5
                        + init.map_or(0.0, |v| v[i])
                        + (0..m).map(|j| table[j * 256 + codes[j * len + i] as usize]).sum::<f32>();
                    prop_assert!((x - y).abs() <= 1e-4 && (x - want).abs() <= 1e-4);
                }
            }
        }
    }

    #[test]
    fn half_precision_round_trips_and_matches_the_hardware() {
        for x in [
            0.0f32, 1.0, -2.5, 65504.0, 1e-5, -6.1e-5, 1234.567, 1e9, 0.33333,
        ] {
            let h = f32_to_f16(x);
            let back = f16_to_f32(h);
            if x.abs() <= 65504.0 {
                assert!((back - x).abs() <= x.abs() * 1e-3 + 6e-8, "{x} -> {back}");
            } else {
                assert!(back.is_infinite());
            }
        }
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("f16c") {
            // SAFETY: F16C is available; the registers are built from plain values.
            unsafe { hardware_conversion_agrees() }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "f16c,avx")]
    unsafe fn hardware_conversion_agrees() {
        use rand::{Rng, SeedableRng, rngs::StdRng};
        use std::arch::x86_64::*;
        let mut rng = StdRng::seed_from_u64(9);
        for _ in 0..10_000 {
            let x: f32 = rng.random_range(-3.0..3.0) * 10f32.powi(rng.random_range(-9..6));
            let hw =
                _mm_extract_epi16::<0>(_mm_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(_mm_set1_ps(x)));
            assert_eq!(f32_to_f16(x), hw as u16, "{x}");
            let back = _mm_cvtss_f32(_mm_cvtph_ps(_mm_set1_epi16(hw as i16)));
            assert_eq!(f16_to_f32(hw as u16), back, "{x}");
        }
    }

    proptest! {
        #[test]
        fn half_dots_agree_with_their_twin_and_with_f32((rows, pts, dim) in centroids_and_points()) {
            let cs = Centroids::new(rows, dim);
            let half = HalfCentroids::new(&cs);
            let padded = cs.len().div_ceil(BLOCK) * BLOCK;
            let (mut a, mut b, mut exact) = (vec![0f32; padded], vec![0f32; padded], vec![0f32; padded]);
            half.dots(&pts[..dim], &mut a);
            half.dots_scalar(&pts[..dim], &mut b);
            cs.dots_scalar(&pts[..dim], &mut exact);
            let x_norm: f32 = pts[..dim].iter().map(|v| v * v).sum::<f32>().sqrt();
            for ((x, y), e) in a.iter().zip(&b).zip(&exact) {
                prop_assert!((x - y).abs() <= 1e-3 * (1.0 + y.abs()), "{x} vs {y}");
                // Each coordinate within 2^-11 of the largest: |error| ≤ 2^-11 · 4 · ‖x‖₁.
                prop_assert!((x - e).abs() <= 4.0 * 4.0 * x_norm * (dim as f32).sqrt() / 2048.0 + 1e-4, "{x} vs {e}");
            }
        }
    }

    #[test]
    fn short_rows_in_lanes_agree_with_the_twin() {
        use rand::{Rng, SeedableRng, rngs::StdRng};
        let mut rng = StdRng::seed_from_u64(3);
        for dim in [4, 8, 16] {
            for k in [1, 7, 8, 9, 256, 300] {
                let rows: Vec<f32> = (0..k * dim).map(|_| rng.random_range(-2.0..2.0)).collect();
                let pts: Vec<f32> = (0..37 * dim).map(|_| rng.random_range(-2.0..2.0)).collect();
                let cs = Centroids::new(rows, dim);
                let (mut i2, mut d2) = (vec![0u32; 37], vec![0f32; 37]);
                cs.nearest_scalar(&pts, &mut i2, &mut d2);
                for isa in Isa::available() {
                    let (mut i1, mut d1) = (vec![0u32; 37], vec![0f32; 37]);
                    cs.nearest_with(isa, &pts, &mut i1, &mut d1);
                    for p in 0..37 {
                        assert!(
                            (d1[p] - d2[p]).abs() <= 1e-4 * (1.0 + d2[p]),
                            "{isa:?} {dim} {k}"
                        );
                        let x = &pts[p * dim..(p + 1) * dim];
                        let exact: f32 = x
                            .iter()
                            .zip(cs.row(i1[p] as usize))
                            .map(|(a, b)| (a - b) * (a - b))
                            .sum();
                        assert!(
                            (exact - d2[p]).abs() <= 1e-4 * (1.0 + d2[p]),
                            "{isa:?} {dim} {k}"
                        );
                    }
                }
            }
        }
        // Ties in lanes: identical centroids, the first wins.
        let cs = Centroids::new(vec![0.5; 8 * 20], 8);
        let (mut i, mut d) = ([9u32; 16], [0f32; 16]);
        cs.nearest(&vec![0.0; 8 * 16], &mut i, &mut d);
        assert_eq!(i, [0; 16]);
    }

    #[test]
    fn ties_go_to_the_lower_index_and_padding_is_never_nearest() {
        // Three identical centroids: every point's nearest is number 0.
        let cs = Centroids::new(vec![1.0, 1.0, 1.0, 1.0, 1.0, 1.0], 2);
        let pts = [0.0, 0.0, 5.0, 5.0, 1.0, 1.0, -3.0, 2.0, 9.0, 9.0];
        for isa in Isa::available() {
            let (mut i, mut d) = ([9u32; 5], [0f32; 5]);
            cs.nearest_with(isa, &pts, &mut i, &mut d);
            assert_eq!(i, [0; 5], "{isa:?}");
            assert!((d[0] - 2.0).abs() < 1e-5 && d[2].abs() < 1e-5, "{isa:?}");
        }
    }
}
