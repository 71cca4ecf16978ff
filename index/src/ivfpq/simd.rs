//! x86-64 kernels of IVF-PQ (AVX2 + FMA, and AVX-512F); their plain twins and the dispatch are
//! in `kernels.rs`.
//!
//! Nearest centroid is a register-blocked matrix product: a tile of `P` points × 16 (AVX2) or
//! 32 (AVX-512: two blocks) centroids keeps its accumulators in registers while the dimension
//! is walked, so each centroid coordinate is loaded once per `P` points and each point
//! coordinate once per tile. The plain loop it unrolls:
//!
//! ```text
//! for c in 0..k: d = norm[c] - 2 Σ_d x[d] · c[d]; if d < best { best = d; at = c }
//! ```
//!
//! The epilogue keeps a running minimum and its index per lane (strict `<`, so a lane keeps the
//! earliest of equal distances) and reduces the lanes at the end (lowest index among equals), so
//! no distance leaves the registers. Measured on Zen 5 at 1024 × 128: 4-point AVX2 tiles 2.2
//! ns a pair, 8-point AVX-512 tiles of one block 1.3 ns, of two blocks 1.05 ns. Rows of 4, 8
//! or 16 floats (PQ sub-vectors) turn the tile around: 16 points sit in the lanes, centroids
//! are broadcast one by one, and each lane keeps its own minimum
//! ([`nearest_lanes_avx512`]).

#![cfg(target_arch = "x86_64")]

use super::kernels::{BLOCK, Centroids, HalfCentroids};
use std::arch::x86_64::*;

/// Picks the lowest distance, lowest index among equals, from per-lane minima.
#[inline(always)]
fn reduce(d: &[f32], i: &[u32]) -> (u32, f32) {
    let (mut bd, mut bi) = (f32::INFINITY, 0u32);
    for (&dl, &il) in d.iter().zip(i) {
        if dl < bd || (dl == bd && il < bi) {
            bd = dl;
            bi = il;
        }
    }
    (bi, bd)
}

/// Nearest centroid of the `P` rows of `pts`: writes each one's index and
/// `‖c‖² - 2⟨x, c⟩` (the squared distance minus `‖x‖²`).
///
/// # Safety
/// AVX2 and FMA must be available; `pts` holds exactly `P` rows of `cs.dim`, and `best_i`,
/// `best_d` at least `P` slots.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn nearest_avx2<const P: usize>(
    cs: &Centroids,
    pts: &[f32],
    best_i: &mut [u32],
    best_d: &mut [f32],
) {
    let dim = cs.dim;
    assert!(pts.len() == P * dim && best_i.len() >= P && best_d.len() >= P);
    let nb = cs.norms.len() / BLOCK;
    let mut minv = [_mm256_set1_ps(f32::INFINITY); P];
    let mut mini = [_mm256_setzero_si256(); P];
    let lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    let two = _mm256_set1_ps(2.0);
    for b in 0..nb {
        let mut acc0 = [_mm256_setzero_ps(); P];
        let mut acc1 = [_mm256_setzero_ps(); P];
        let blk = &cs.blocks[b * dim * BLOCK..(b + 1) * dim * BLOCK];
        for d in 0..dim {
            let col = &blk[d * BLOCK..(d + 1) * BLOCK];
            // SAFETY: `col` has 16 floats.
            let (c0, c1) = unsafe {
                (
                    _mm256_loadu_ps(col.as_ptr()),
                    _mm256_loadu_ps(col.as_ptr().add(8)),
                )
            };
            for p in 0..P {
                // SAFETY: p < P and d < dim index inside `pts` (P rows of dim, asserted).
                let x = _mm256_set1_ps(unsafe { *pts.get_unchecked(p * dim + d) });
                acc0[p] = _mm256_fmadd_ps(x, c0, acc0[p]);
                acc1[p] = _mm256_fmadd_ps(x, c1, acc1[p]);
            }
        }
        let nrm = &cs.norms[b * BLOCK..(b + 1) * BLOCK];
        // SAFETY: `nrm` has 16 floats.
        let (n0, n1) = unsafe {
            (
                _mm256_loadu_ps(nrm.as_ptr()),
                _mm256_loadu_ps(nrm.as_ptr().add(8)),
            )
        };
        let i0 = _mm256_add_epi32(_mm256_set1_epi32((b * BLOCK) as i32), lanes);
        let i1 = _mm256_add_epi32(i0, _mm256_set1_epi32(8));
        for p in 0..P {
            for (acc, n, i) in [(acc0[p], n0, i0), (acc1[p], n1, i1)] {
                let d = _mm256_fnmadd_ps(two, acc, n);
                let lt = _mm256_cmp_ps::<_CMP_LT_OQ>(d, minv[p]);
                minv[p] = _mm256_blendv_ps(minv[p], d, lt);
                mini[p] = _mm256_castps_si256(_mm256_blendv_ps(
                    _mm256_castsi256_ps(mini[p]),
                    _mm256_castsi256_ps(i),
                    lt,
                ));
            }
        }
    }
    for p in 0..P {
        let (mut d, mut i) = ([0f32; 8], [0u32; 8]);
        // SAFETY: both arrays hold 8 lanes.
        unsafe {
            _mm256_storeu_ps(d.as_mut_ptr(), minv[p]);
            _mm256_storeu_si256(i.as_mut_ptr() as *mut __m256i, mini[p]);
        }
        (best_i[p], best_d[p]) = reduce(&d, &i);
    }
}

/// The AVX-512 version of [`nearest_avx2`]: 16-lane accumulators, two blocks a step.
///
/// # Safety
/// AVX-512F must be available; `pts` holds exactly `P` rows of `cs.dim`, and `best_i`,
/// `best_d` at least `P` slots.
#[target_feature(enable = "avx512f,avx2,fma")]
pub unsafe fn nearest_avx512<const P: usize>(
    cs: &Centroids,
    pts: &[f32],
    best_i: &mut [u32],
    best_d: &mut [f32],
) {
    let dim = cs.dim;
    assert!(pts.len() == P * dim && best_i.len() >= P && best_d.len() >= P);
    let nb = cs.norms.len() / BLOCK;
    let mut minv = [_mm512_set1_ps(f32::INFINITY); P];
    let mut mini = [_mm512_setzero_si512(); P];
    let lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    let two = _mm512_set1_ps(2.0);
    // The running minimum of lane-wise distances `acc` of block `b`.
    let mut keep = |b: usize, acc: &[__m512; P]| {
        let nrm = &cs.norms[b * BLOCK..(b + 1) * BLOCK];
        // SAFETY: `nrm` has 16 floats.
        let n = unsafe { _mm512_loadu_ps(nrm.as_ptr()) };
        let idx = _mm512_add_epi32(_mm512_set1_epi32((b * BLOCK) as i32), lanes);
        for p in 0..P {
            let d = _mm512_fnmadd_ps(two, acc[p], n);
            let lt = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(d, minv[p]);
            minv[p] = _mm512_mask_mov_ps(minv[p], lt, d);
            mini[p] = _mm512_mask_mov_epi32(mini[p], lt, idx);
        }
    };
    let mut b = 0;
    while b + 2 <= nb {
        let (mut acc0, mut acc1) = ([_mm512_setzero_ps(); P], [_mm512_setzero_ps(); P]);
        let blk = &cs.blocks[b * dim * BLOCK..(b + 2) * dim * BLOCK];
        for d in 0..dim {
            // SAFETY: column d of both blocks lies inside `blk` (d < dim).
            let (c0, c1) = unsafe {
                (
                    _mm512_loadu_ps(blk.as_ptr().add(d * BLOCK)),
                    _mm512_loadu_ps(blk.as_ptr().add((dim + d) * BLOCK)),
                )
            };
            for p in 0..P {
                // SAFETY: p < P and d < dim index inside `pts` (P rows of dim, asserted).
                let x = _mm512_set1_ps(unsafe { *pts.get_unchecked(p * dim + d) });
                acc0[p] = _mm512_fmadd_ps(x, c0, acc0[p]);
                acc1[p] = _mm512_fmadd_ps(x, c1, acc1[p]);
            }
        }
        keep(b, &acc0);
        keep(b + 1, &acc1);
        b += 2;
    }
    if b < nb {
        let mut acc = [_mm512_setzero_ps(); P];
        let blk = &cs.blocks[b * dim * BLOCK..(b + 1) * dim * BLOCK];
        for d in 0..dim {
            // SAFETY: column d lies inside `blk` (d < dim).
            let c = unsafe { _mm512_loadu_ps(blk.as_ptr().add(d * BLOCK)) };
            for (p, a) in acc.iter_mut().enumerate() {
                // SAFETY: p < P and d < dim index inside `pts` (P rows of dim, asserted).
                let x = _mm512_set1_ps(unsafe { *pts.get_unchecked(p * dim + d) });
                *a = _mm512_fmadd_ps(x, c, *a);
            }
        }
        keep(b, &acc);
    }
    for p in 0..P {
        let (mut d, mut i) = ([0f32; 16], [0u32; 16]);
        // SAFETY: both arrays hold 16 lanes.
        unsafe {
            _mm512_storeu_ps(d.as_mut_ptr(), minv[p]);
            _mm512_storeu_si512(i.as_mut_ptr() as *mut __m512i, mini[p]);
        }
        (best_i[p], best_d[p]) = reduce(&d, &i);
    }
}

/// Nearest centroid of 16 points of `D` ≤ 16 dimensions held in the lanes of `D` registers
/// (`lanes` is `(D, 16)`: coordinate `d` of point `i` at `d · 16 + i`), for the short rows of
/// PQ sub-spaces: centroids are walked in order, eight at a time (eight FMA chains in flight),
/// each coordinate broadcast from the row-major rows, and every lane keeps its own running
/// minimum, so no lanes are reduced at the end. Writes each point's index and
/// `‖c‖² - 2⟨x, c⟩`. Merging the eight one after the other into the running minimum made
/// that chain of compares the bottleneck; a tree of pairwise minima first keeps it one merge
/// deep per group.
///
/// # Safety
/// AVX-512F must be available; `D == cs.dim`, `lanes.len() == D · 16`, and `best_i`, `best_d`
/// have at least 16 slots.
#[target_feature(enable = "avx512f,avx2,fma")]
pub unsafe fn nearest_lanes_avx512<const D: usize>(
    cs: &Centroids,
    lanes: &[f32],
    best_i: &mut [u32],
    best_d: &mut [f32],
) {
    const G: usize = 8;
    assert!(D == cs.dim && lanes.len() == D * 16 && best_i.len() >= 16 && best_d.len() >= 16);
    let rows = cs.rows();
    let k = cs.len();
    let mut x = [_mm512_setzero_ps(); D];
    for (d, xd) in x.iter_mut().enumerate() {
        // SAFETY: coordinate d of the 16 points is `lanes[d · 16 .. d · 16 + 16]`.
        *xd = unsafe { _mm512_loadu_ps(lanes.as_ptr().add(d * 16)) };
    }
    let two = _mm512_set1_ps(2.0);
    let mut minv = _mm512_set1_ps(f32::INFINITY);
    let mut mini = _mm512_setzero_si512();
    // `‖c‖² - 2⟨x, c⟩` of centroid c in every lane.
    let score = |c: usize, acc: __m512| _mm512_fnmadd_ps(two, acc, _mm512_set1_ps(cs.norm(c)));
    // Keeps (b, ib) where b is strictly below a: the left side holds the lower indices, so
    // among equal distances the lowest index stays.
    let merge = |a: __m512, ia: __m512i, b: __m512, ib: __m512i| {
        let lt = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(b, a);
        (
            _mm512_mask_mov_ps(a, lt, b),
            _mm512_mask_mov_epi32(ia, lt, ib),
        )
    };
    let mut c = 0;
    while c + G <= k {
        let group = &rows[c * D..(c + G) * D];
        let mut acc = [_mm512_setzero_ps(); G];
        for (d, xd) in x.iter().enumerate() {
            for (g, a) in acc.iter_mut().enumerate() {
                // SAFETY: g < G and d < D index inside `group` ((G, D) floats).
                let w = _mm512_set1_ps(unsafe { *group.get_unchecked(g * D + d) });
                *a = _mm512_fmadd_ps(w, *xd, *a);
            }
        }
        // A tree of pairwise minima over the group, then one step of the running minimum:
        // the chain through `minv` is one merge a group instead of eight.
        let mut v: [(__m512, __m512i); G] =
            std::array::from_fn(|g| (score(c + g, acc[g]), _mm512_set1_epi32((c + g) as i32)));
        let mut width = G;
        while width > 1 {
            for t in 0..width / 2 {
                let (a, b) = (v[2 * t], v[2 * t + 1]);
                v[t] = merge(a.0, a.1, b.0, b.1);
            }
            width /= 2;
        }
        (minv, mini) = merge(minv, mini, v[0].0, v[0].1);
        c += G;
    }
    while c < k {
        let row = &rows[c * D..(c + 1) * D];
        let mut acc = _mm512_setzero_ps();
        for (w, xd) in row.iter().zip(&x) {
            acc = _mm512_fmadd_ps(_mm512_set1_ps(*w), *xd, acc);
        }
        (minv, mini) = merge(minv, mini, score(c, acc), _mm512_set1_epi32(c as i32));
        c += 1;
    }
    // SAFETY: both outputs have at least 16 slots (asserted).
    unsafe {
        _mm512_storeu_ps(best_d.as_mut_ptr(), minv);
        _mm512_storeu_si512(best_i.as_mut_ptr() as *mut __m512i, mini);
    }
}

/// `out[c] = ⟨x, c⟩` for `G` consecutive blocks starting at block `b`, one 8-lane accumulator
/// pair per block (`G` up to 4 keeps 8 FMA chains in flight).
///
/// # Safety
/// AVX2 and FMA must be available; blocks `b..b + G` exist; `out` covers them.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn dots_group_avx2<const G: usize>(cs: &Centroids, x: &[f32], b: usize, out: &mut [f32]) {
    let dim = cs.dim;
    let blk = &cs.blocks[b * dim * BLOCK..(b + G) * dim * BLOCK];
    let mut acc = [[_mm256_setzero_ps(); 2]; G];
    for (d, xd) in x.iter().enumerate() {
        let xv = _mm256_set1_ps(*xd);
        for (g, a) in acc.iter_mut().enumerate() {
            // SAFETY: column d of block g starts at (g · dim + d) · 16 and has 16 floats, inside
            // `blk` (G blocks of dim · 16) for g < G, d < dim = x.len().
            unsafe {
                let col = blk.as_ptr().add((g * dim + d) * BLOCK);
                a[0] = _mm256_fmadd_ps(xv, _mm256_loadu_ps(col), a[0]);
                a[1] = _mm256_fmadd_ps(xv, _mm256_loadu_ps(col.add(8)), a[1]);
            }
        }
    }
    let out = &mut out[b * BLOCK..(b + G) * BLOCK];
    for (o, a) in out.chunks_exact_mut(BLOCK).zip(&acc) {
        // SAFETY: `o` has 16 floats.
        unsafe {
            _mm256_storeu_ps(o.as_mut_ptr(), a[0]);
            _mm256_storeu_ps(o.as_mut_ptr().add(8), a[1]);
        }
    }
}

/// `out[c] = ⟨x, c⟩` for every block, four at a time.
///
/// # Safety
/// AVX2 and FMA must be available; `x.len() == cs.dim`, `out.len() >= cs.norms.len()`.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn dots_avx2(cs: &Centroids, x: &[f32], out: &mut [f32]) {
    let nb = cs.norms.len() / BLOCK;
    let mut b = 0;
    while b + 4 <= nb {
        // SAFETY: AVX2 and FMA are available; blocks b..b + 4 exist and `out` covers them.
        unsafe { dots_group_avx2::<4>(cs, x, b, out) };
        b += 4;
    }
    while b < nb {
        // SAFETY: as above, for block b.
        unsafe { dots_group_avx2::<1>(cs, x, b, out) };
        b += 1;
    }
}

/// The AVX-512 version of [`dots_group_avx2`]: one 16-lane accumulator per block.
///
/// # Safety
/// AVX-512F must be available; blocks `b..b + G` exist; `out` covers them.
#[inline]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn dots_group_avx512<const G: usize>(cs: &Centroids, x: &[f32], b: usize, out: &mut [f32]) {
    let dim = cs.dim;
    let blk = &cs.blocks[b * dim * BLOCK..(b + G) * dim * BLOCK];
    let mut acc = [_mm512_setzero_ps(); G];
    for (d, xd) in x.iter().enumerate() {
        let xv = _mm512_set1_ps(*xd);
        for (g, a) in acc.iter_mut().enumerate() {
            // SAFETY: column d of block g starts at (g · dim + d) · 16 and has 16 floats, inside
            // `blk` (G blocks of dim · 16) for g < G, d < dim = x.len().
            let c = unsafe { _mm512_loadu_ps(blk.as_ptr().add((g * dim + d) * BLOCK)) };
            *a = _mm512_fmadd_ps(xv, c, *a);
        }
    }
    let out = &mut out[b * BLOCK..(b + G) * BLOCK];
    for (o, a) in out.chunks_exact_mut(BLOCK).zip(&acc) {
        // SAFETY: `o` has 16 floats.
        unsafe { _mm512_storeu_ps(o.as_mut_ptr(), *a) };
    }
}

/// `out[c] = ⟨x, c⟩` for every block, eight at a time (8 FMA chains in flight).
///
/// # Safety
/// AVX-512F must be available; `x.len() == cs.dim`, `out.len() >= cs.norms.len()`.
#[target_feature(enable = "avx512f,avx2,fma")]
pub unsafe fn dots_avx512(cs: &Centroids, x: &[f32], out: &mut [f32]) {
    let nb = cs.norms.len() / BLOCK;
    let mut b = 0;
    while b + 8 <= nb {
        // SAFETY: AVX-512F is available; blocks b..b + 8 exist and `out` covers them.
        unsafe { dots_group_avx512::<8>(cs, x, b, out) };
        b += 8;
    }
    while b + 2 <= nb {
        // SAFETY: as above, for blocks b..b + 2.
        unsafe { dots_group_avx512::<2>(cs, x, b, out) };
        b += 2;
    }
    if b < nb {
        // SAFETY: as above, for block b.
        unsafe { dots_group_avx512::<1>(cs, x, b, out) };
    }
}

/// `out[c] = ⟨x, c⟩` (unscaled) for `G` consecutive half-precision blocks from block `b`, each
/// column of 16 halves widened to floats in one instruction.
///
/// # Safety
/// AVX-512F must be available; blocks `b..b + G` exist; `out` covers them.
#[inline]
#[target_feature(enable = "avx512f,avx2,fma,f16c")]
unsafe fn half_group_avx512<const G: usize>(
    hc: &HalfCentroids,
    x: &[f32],
    b: usize,
    out: &mut [f32],
) {
    let dim = hc.dim;
    let blk = &hc.blocks[b * dim * BLOCK..(b + G) * dim * BLOCK];
    let mut acc = [_mm512_setzero_ps(); G];
    for (d, xd) in x.iter().enumerate() {
        let xv = _mm512_set1_ps(*xd);
        for (g, a) in acc.iter_mut().enumerate() {
            // SAFETY: column d of block g holds 16 halves (32 bytes) at (g · dim + d) · 16,
            // inside `blk` (G blocks of dim · 16) for g < G, d < dim = x.len().
            let c = unsafe {
                _mm512_cvtph_ps(_mm256_loadu_si256(
                    blk.as_ptr().add((g * dim + d) * BLOCK) as *const __m256i
                ))
            };
            *a = _mm512_fmadd_ps(xv, c, *a);
        }
    }
    let out = &mut out[b * BLOCK..(b + G) * BLOCK];
    for (o, a) in out.chunks_exact_mut(BLOCK).zip(&acc) {
        // SAFETY: `o` has 16 floats.
        unsafe { _mm512_storeu_ps(o.as_mut_ptr(), *a) };
    }
}

/// `out[c] = ⟨x, c⟩` (unscaled) from half-precision blocks, eight at a time.
///
/// # Safety
/// AVX-512F must be available; `x.len() == hc.dim`, `out` covers every block.
#[target_feature(enable = "avx512f,avx2,fma,f16c")]
pub unsafe fn half_dots_avx512(hc: &HalfCentroids, x: &[f32], out: &mut [f32]) {
    let nb = hc.blocks.len() / (hc.dim * BLOCK);
    let mut b = 0;
    while b + 8 <= nb {
        // SAFETY: AVX-512F is available; blocks b..b + 8 exist and `out` covers them.
        unsafe { half_group_avx512::<8>(hc, x, b, out) };
        b += 8;
    }
    while b < nb {
        // SAFETY: as above, for block b.
        unsafe { half_group_avx512::<1>(hc, x, b, out) };
        b += 1;
    }
}

/// The AVX2 + F16C version of [`half_group_avx512`].
///
/// # Safety
/// AVX2, FMA and F16C must be available; blocks `b..b + G` exist; `out` covers them.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn half_group_avx2<const G: usize>(
    hc: &HalfCentroids,
    x: &[f32],
    b: usize,
    out: &mut [f32],
) {
    let dim = hc.dim;
    let blk = &hc.blocks[b * dim * BLOCK..(b + G) * dim * BLOCK];
    let mut acc = [[_mm256_setzero_ps(); 2]; G];
    for (d, xd) in x.iter().enumerate() {
        let xv = _mm256_set1_ps(*xd);
        for (g, a) in acc.iter_mut().enumerate() {
            // SAFETY: column d of block g holds 16 halves at (g · dim + d) · 16, inside `blk`
            // for g < G, d < dim; each load reads 8 of them.
            unsafe {
                let col = blk.as_ptr().add((g * dim + d) * BLOCK);
                let lo = _mm256_cvtph_ps(_mm_loadu_si128(col as *const __m128i));
                let hi = _mm256_cvtph_ps(_mm_loadu_si128(col.add(8) as *const __m128i));
                a[0] = _mm256_fmadd_ps(xv, lo, a[0]);
                a[1] = _mm256_fmadd_ps(xv, hi, a[1]);
            }
        }
    }
    let out = &mut out[b * BLOCK..(b + G) * BLOCK];
    for (o, a) in out.chunks_exact_mut(BLOCK).zip(&acc) {
        // SAFETY: `o` has 16 floats.
        unsafe {
            _mm256_storeu_ps(o.as_mut_ptr(), a[0]);
            _mm256_storeu_ps(o.as_mut_ptr().add(8), a[1]);
        }
    }
}

/// The AVX2 + F16C version of [`half_dots_avx512`]: four blocks at a time.
///
/// # Safety
/// AVX2, FMA and F16C must be available; `x.len() == hc.dim`, `out` covers every block.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn half_dots_avx2(hc: &HalfCentroids, x: &[f32], out: &mut [f32]) {
    let nb = hc.blocks.len() / (hc.dim * BLOCK);
    let mut b = 0;
    while b + 4 <= nb {
        // SAFETY: AVX2, FMA and F16C are available; blocks b..b + 4 exist, `out` covers them.
        unsafe { half_group_avx2::<4>(hc, x, b, out) };
        b += 4;
    }
    while b < nb {
        // SAFETY: as above, for block b.
        unsafe { half_group_avx2::<1>(hc, x, b, out) };
        b += 1;
    }
}

/// [`super::kernels::scan_scalar`] compiled for AVX2: eight table loads and one 8-lane add per
/// eight codes (see `kernels::scan` for the alternatives measured).
///
/// # Safety
/// AVX2 must be available.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn scan_avx2(
    table: &[f32],
    codes: &[u8],
    init: Option<&[f32]>,
    base: f32,
    out: &mut [f32],
) {
    super::kernels::scan_scalar(table, codes, init, base, out)
}
