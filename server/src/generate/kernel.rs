//! The decoder's arithmetic kernels: a "skinny" matrix product for the linear layers and the
//! dot product used by attention.
//!
//! Every output value is one dot product of a weight row and an activation row, computed in a
//! fixed order that does not depend on how many activation rows the call holds: 16 running sums
//! (lane `l` takes elements `l, l + 16, l + 32, ...`, each step a fused multiply-add), then the
//! 16 sums folded pairwise (`l + 8`, then `l + 4`, `l + 2`, `l + 1`). So the logits of a token are
//! bitwise the same whether it is run alone or among the draft tokens of a verification pass —
//! what makes prompt-lookup decoding give exactly the greedy output.
//!
//! A call over `m` activation rows streams each weight row from memory once and dots it with all
//! `m` rows (tiles of 4 weight rows × 4 activation rows, 16 accumulators). Decoding reads 540 MB
//! of f32 weights per pass, so a pass over a few tokens costs about what one token costs.
//!
//! Two implementations: AVX-512 (`std::arch`, chosen at run time) and a scalar twin that does the
//! same operations lane by lane (`f32::mul_add`), bitwise equal to it (property-tested below).

use std::sync::OnceLock;

/// Lanes of one accumulator (one AVX-512 register of f32).
pub(super) const LANES: usize = 16;

/// A weight matrix, row-major. Layout: (rows, cols).
pub struct Matrix {
    data: Vec<f32>,
    rows: usize,
    cols: usize,
}

impl Matrix {
    /// Wraps `data` of `rows * cols` values.
    pub fn new(data: Vec<f32>, rows: usize, cols: usize) -> Matrix {
        assert_eq!(data.len(), rows * cols, "matrix data of the wrong length");
        Matrix { data, rows, cols }
    }

    /// Stacks matrices of equal width row-wise (q, k and v in one product).
    pub fn stack(parts: Vec<Matrix>) -> Matrix {
        let cols = parts[0].cols;
        let rows = parts.iter().map(|p| p.rows).sum();
        let mut data = Vec::with_capacity(rows * cols);
        for p in parts {
            assert_eq!(p.cols, cols, "stacked matrices differ in width");
            data.extend_from_slice(&p.data);
        }
        Matrix { data, rows, cols }
    }

    /// Output rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Input width.
    pub fn cols(&self) -> usize {
        self.cols
    }
}

/// Whether the AVX-512 path runs (decided once).
pub(super) fn avx512() -> bool {
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            std::arch::is_x86_feature_detected!("avx512f")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    })
}

/// Folds 16 lane sums: `l + 8`, then `l + 4`, `l + 2`, `l + 1`.
#[inline(always)]
pub(super) fn fold(mut acc: [f32; LANES]) -> f32 {
    let mut w = LANES / 2;
    while w > 0 {
        for l in 0..w {
            acc[l] += acc[l + w];
        }
        w /= 2;
    }
    acc[0]
}

/// The columns `rows` of `xs (m, w.cols) · wᵀ`: `out` is (m, rows.len()). `xs` holds `m` rows
/// of `w.cols` values.
fn matmul_rows(w: &Matrix, xs: &[f32], m: usize, rows: std::ops::Range<usize>, out: &mut [f32]) {
    assert_eq!(xs.len(), m * w.cols, "activations of the wrong size");
    assert_eq!(out.len(), m * rows.len(), "output of the wrong size");
    assert!(rows.end <= w.rows, "rows out of range");
    #[cfg(target_arch = "x86_64")]
    if avx512() {
        // SAFETY: the CPU has AVX-512F (checked at run time); the sizes were checked above.
        unsafe { avx::matmul_rows(w, xs, m, rows, out) };
        return;
    }
    scalar_matmul_rows(w, xs, m, rows, out);
}

/// Threads a product runs on: `QUIVER_GEN_THREADS`, default the machine's cores up to 4.
///
/// A one-token pass is bound by reading the weights, a pass over several tokens (a prompt, a
/// prompt-lookup draft) by arithmetic: on 2 quiet cores a second thread (from `pool`) made a
/// one-token pass 5 to 12% faster and a pass over 8 tokens 1.25 to 1.4 times (benches/RESULTS.md).
/// Under heavy load from other processes a second thread measured slower; set 1 there.
fn threads() -> usize {
    static N: OnceLock<usize> = OnceLock::new();
    *N.get_or_init(|| {
        std::env::var("QUIVER_GEN_THREADS")
            .ok()
            .and_then(|v| v.parse().ok())
            .filter(|&n| n >= 1)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get().min(4)))
    })
}

/// The threads that share large products with the calling one (`threads() - 1` of them),
/// started once: a pass makes up to 121 products, and starting a thread for each cost more than
/// some of the products themselves. `None` when there is one thread, or the pool cannot start.
/// `matmul` must be called from outside any rayon pool (the server's blocking threads, a test's
/// thread): a worker of another pool waiting here could pick up unrelated jobs while the model's
/// lock is held.
fn pool() -> Option<&'static rayon::ThreadPool> {
    static POOL: OnceLock<Option<rayon::ThreadPool>> = OnceLock::new();
    POOL.get_or_init(|| {
        let n = threads();
        if n <= 1 {
            return None;
        }
        rayon::ThreadPoolBuilder::new()
            .num_threads(n - 1)
            .thread_name(|i| format!("quiver-gen-{i}"))
            .build()
            .ok()
    })
    .as_ref()
}

/// Multiply-adds below which a product stays on the calling thread.
const SPLIT_WORK: usize = 1 << 20;

/// `out (m, w.rows) = xs (m, w.cols) · wᵀ`. Large products are split by weight rows across
/// `threads()` threads (each value is computed the same way wherever it runs).
pub fn matmul(w: &Matrix, xs: &[f32], m: usize, out: &mut [f32]) {
    let n = threads();
    let pool = match pool() {
        Some(p) if m * w.rows * w.cols >= SPLIT_WORK && w.rows >= 8 * n => p,
        _ => {
            matmul_rows(w, xs, m, 0..w.rows, out);
            return;
        }
    };
    // Row ranges in multiples of 4 (whole tiles); the first runs here.
    let step = w.rows.div_ceil(n).div_ceil(4) * 4;
    let ranges: Vec<_> = (0..n)
        .map(|t| (t * step).min(w.rows)..((t + 1) * step).min(w.rows))
        .collect();
    let mut parts: Vec<Vec<f32>> = ranges.iter().map(|r| vec![0f32; m * r.len()]).collect();
    // The calling thread takes the first range itself, then waits for the pool's.
    pool.in_place_scope(|s| {
        let (mine, others) = parts.split_first_mut().expect("at least one thread");
        for (r, part) in ranges[1..].iter().zip(others.iter_mut()) {
            let r = r.clone();
            s.spawn(move |_| matmul_rows(w, xs, m, r, part));
        }
        matmul_rows(w, xs, m, ranges[0].clone(), mine);
    });
    for (r, part) in ranges.iter().zip(&parts) {
        for i in 0..m {
            out[i * w.rows + r.start..i * w.rows + r.end]
                .copy_from_slice(&part[i * r.len()..(i + 1) * r.len()]);
        }
    }
}

/// Dot product of two equal-length slices, in the kernel's order.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "dot of unequal lengths");
    #[cfg(target_arch = "x86_64")]
    if avx512() {
        // SAFETY: the CPU has AVX-512F (checked at run time); the lengths are equal.
        return unsafe { avx::dot(a, b) };
    }
    scalar_dot(a, b)
}

/// Attention scores of `heads` query heads against `seen` keys: `out[h · seen + j] =
/// dot(q[h], key j)`, each a `dot` in the kernel's order. `q` holds the heads one after another
/// (`heads · hd` values); key j is `keys[j · stride..j · stride + hd]`.
pub fn scores(q: &[f32], hd: usize, keys: &[f32], stride: usize, seen: usize, out: &mut [f32]) {
    let heads = q.len() / hd;
    assert_eq!(q.len(), heads * hd, "query heads of the wrong size");
    assert_eq!(out.len(), heads * seen, "scores of the wrong size");
    if seen == 0 {
        return;
    }
    assert!(keys.len() >= (seen - 1) * stride + hd, "too few keys");
    #[cfg(target_arch = "x86_64")]
    if avx512() {
        // SAFETY: the CPU has AVX-512F (checked at run time); the sizes were checked above.
        unsafe { avx::scores(q, hd, keys, stride, seen, out) };
        return;
    }
    for h in 0..heads {
        for j in 0..seen {
            out[h * seen + j] =
                scalar_dot(&q[h * hd..(h + 1) * hd], &keys[j * stride..j * stride + hd]);
        }
    }
}

/// `y += a · x`, element by element, each a fused multiply-add.
pub fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    assert_eq!(x.len(), y.len(), "axpy of unequal lengths");
    #[cfg(target_arch = "x86_64")]
    if avx512() {
        // SAFETY: the CPU has AVX-512F (checked at run time); the lengths are equal.
        unsafe { avx::axpy(a, x, y) };
        return;
    }
    for (y, x) in y.iter_mut().zip(x) {
        *y = a.mul_add(*x, *y);
    }
}

/// Attention output: `out[h] = Σ_j p[h · seen + j] · value j` for each of the heads of `p`
/// (`heads · seen` weights), summed in key order from zero, each step a fused multiply-add
/// (as `axpy` key by key). Value j is `values[j · stride..j · stride + hd]`; `out` is (heads, hd).
pub fn weighted_sum(
    p: &[f32],
    seen: usize,
    values: &[f32],
    stride: usize,
    hd: usize,
    out: &mut [f32],
) {
    let heads = out.len() / hd;
    assert_eq!(out.len(), heads * hd, "output heads of the wrong size");
    assert_eq!(p.len(), heads * seen, "weights of the wrong size");
    out.fill(0.0);
    if seen == 0 {
        return;
    }
    assert!(values.len() >= (seen - 1) * stride + hd, "too few values");
    #[cfg(target_arch = "x86_64")]
    if avx512() && hd == 4 * LANES && heads == 3 {
        // SAFETY: the CPU has AVX-512F (checked at run time); the sizes were checked above.
        unsafe { avx::weighted_sum_3x64(p, seen, values, stride, out) };
        return;
    }
    for h in 0..heads {
        let o = &mut out[h * hd..(h + 1) * hd];
        for j in 0..seen {
            axpy(p[h * seen + j], &values[j * stride..j * stride + hd], o);
        }
    }
}

/// The scalar twin of the dot product: the same 16 lanes, fused multiply-adds and fold.
fn scalar_dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    // Missing lanes of the last chunk count as 0 · 0, which leaves a sum unchanged.
    for (ca, cb) in a.chunks(LANES).zip(b.chunks(LANES)) {
        for l in 0..LANES {
            let (x, y) = (
                ca.get(l).copied().unwrap_or(0.0),
                cb.get(l).copied().unwrap_or(0.0),
            );
            acc[l] = x.mul_add(y, acc[l]);
        }
    }
    fold(acc)
}

/// The scalar twin of `matmul_rows`.
fn scalar_matmul_rows(
    w: &Matrix,
    xs: &[f32],
    m: usize,
    rows: std::ops::Range<usize>,
    out: &mut [f32],
) {
    let c = w.cols;
    let (base, stride) = (rows.start, rows.len());
    for r in rows {
        let wr = &w.data[r * c..(r + 1) * c];
        for i in 0..m {
            out[i * stride + r - base] = scalar_dot(wr, &xs[i * c..(i + 1) * c]);
        }
    }
}

#[cfg(target_arch = "x86_64")]
pub(super) mod avx {
    use super::{LANES, Matrix};
    use std::arch::x86_64::*;

    /// Weight rows per tile.
    const R: usize = 4;
    /// Activation rows per tile.
    const C: usize = 4;
    /// Weight rows per block: a block stays in L2 while every activation row passes it.
    const BLOCK: usize = 64;

    /// One tile: `RT` weight rows from `w` times `CT` activation rows from `x`, each sum in the
    /// kernel's order. Plain form: `out[r][c] = dot(w[r], x[c])`.
    ///
    /// # Safety
    /// AVX-512F is available; `w` holds `RT` rows of `cols` floats at stride `ws`, `x` holds
    /// `CT` rows at stride `xs`.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn tile<const RT: usize, const CT: usize>(
        w: *const f32,
        ws: usize,
        x: *const f32,
        xs: usize,
        cols: usize,
    ) -> [[f32; CT]; RT] {
        let mut acc = [[_mm512_setzero_ps(); CT]; RT];
        let full = cols / LANES;
        for k in 0..full {
            let mut wv = [_mm512_setzero_ps(); RT];
            for (r, v) in wv.iter_mut().enumerate() {
                // SAFETY: row r has `cols` floats; chunk k ends at or before `cols`.
                *v = unsafe { _mm512_loadu_ps(w.add(r * ws + k * LANES)) };
            }
            for c in 0..CT {
                // SAFETY: as above, for activation row c.
                let xv = unsafe { _mm512_loadu_ps(x.add(c * xs + k * LANES)) };
                for r in 0..RT {
                    acc[r][c] = _mm512_fmadd_ps(wv[r], xv, acc[r][c]);
                }
            }
        }
        let rest = cols % LANES;
        if rest > 0 {
            // Masked loads read zeros past the end: 0 · 0 leaves a sum unchanged.
            let mask: __mmask16 = (1u32 << rest) as u16 - 1;
            let at = full * LANES;
            let mut wv = [_mm512_setzero_ps(); RT];
            for (r, v) in wv.iter_mut().enumerate() {
                // SAFETY: the mask keeps the load within row r's `cols` floats.
                *v = unsafe { _mm512_maskz_loadu_ps(mask, w.add(r * ws + at)) };
            }
            for c in 0..CT {
                // SAFETY: as above, for activation row c.
                let xv = unsafe { _mm512_maskz_loadu_ps(mask, x.add(c * xs + at)) };
                for r in 0..RT {
                    acc[r][c] = _mm512_fmadd_ps(wv[r], xv, acc[r][c]);
                }
            }
        }
        let mut out = [[0f32; CT]; RT];
        for r in 0..RT {
            for c in 0..CT {
                out[r][c] = fold_v(acc[r][c]);
            }
        }
        out
    }

    /// `super::fold` on a register: lanes `l + 8`, then `l + 4`, `l + 2`, `l + 1`.
    #[target_feature(enable = "avx512f")]
    #[inline]
    pub(in crate::generate) fn fold_v(a: __m512) -> f32 {
        let lo = _mm512_castps512_ps256(a);
        let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(a)));
        let s8 = _mm256_add_ps(lo, hi);
        let s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps::<1>(s8));
        let s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
        let s1 = _mm_add_ss(s2, _mm_shuffle_ps::<1>(s2, s2));
        _mm_cvtss_f32(s1)
    }

    /// Runs one tile of `RT` weight rows from row `r0` and `CT` activation rows from `i0`.
    ///
    /// # Safety
    /// AVX-512F is available; `r0 + RT <= w.rows`, `i0 + CT <= m`, sizes as in `matmul_rows`.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn put<const RT: usize, const CT: usize>(
        w: &Matrix,
        xs: &[f32],
        r0: usize,
        i0: usize,
        o: (usize, usize),
        out: &mut [f32],
    ) {
        let c = w.cols;
        // SAFETY: the caller keeps the rows within `w` and `xs`.
        let t = unsafe {
            tile::<RT, CT>(
                w.data.as_ptr().add(r0 * c),
                c,
                xs.as_ptr().add(i0 * c),
                c,
                c,
            )
        };
        for (r, row) in t.iter().enumerate() {
            for (i, v) in row.iter().enumerate() {
                out[(i0 + i) * o.1 + r0 + r - o.0] = *v;
            }
        }
    }

    /// Tiles of `RT` weight rows from `r0` times every activation row.
    ///
    /// # Safety
    /// As for `put`, with `i0` running over all `m` rows.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn rows_times_all<const RT: usize>(
        w: &Matrix,
        xs: &[f32],
        m: usize,
        r0: usize,
        o: (usize, usize),
        out: &mut [f32],
    ) {
        let mut i = 0;
        // SAFETY (all four calls): i + CT <= m by the loop bounds; r0 + RT <= rows by the caller.
        while i + C <= m {
            unsafe { put::<RT, C>(w, xs, r0, i, o, out) };
            i += C;
        }
        match m - i {
            0 => {}
            1 => unsafe { put::<RT, 1>(w, xs, r0, i, o, out) },
            2 => unsafe { put::<RT, 2>(w, xs, r0, i, o, out) },
            _ => unsafe { put::<RT, 3>(w, xs, r0, i, o, out) },
        }
    }

    /// See `super::matmul_rows`.
    ///
    /// # Safety
    /// AVX-512F is available; sizes as checked by `super::matmul_rows`.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn matmul_rows(
        w: &Matrix,
        xs: &[f32],
        m: usize,
        rows: std::ops::Range<usize>,
        out: &mut [f32],
    ) {
        // Output column of weight row r: r - o.0; output row stride: o.1.
        let o = (rows.start, rows.len());
        let mut b = rows.start;
        while b < rows.end {
            let end = (b + BLOCK).min(rows.end);
            let mut r = b;
            // SAFETY: r + R <= end <= rows.end <= w.rows; r < end for the single rows.
            while r + R <= end {
                unsafe { rows_times_all::<R>(w, xs, m, r, o, out) };
                r += R;
            }
            while r < end {
                unsafe { rows_times_all::<1>(w, xs, m, r, o, out) };
                r += 1;
            }
            b = end;
        }
    }

    /// `GT` query heads against every key, keys in tiles of `R`.
    ///
    /// # Safety
    /// AVX-512F is available; sizes as checked by `super::scores`, `q` holding `GT` heads.
    #[target_feature(enable = "avx512f")]
    unsafe fn scores_of<const GT: usize>(
        q: &[f32],
        hd: usize,
        keys: &[f32],
        stride: usize,
        seen: usize,
        out: &mut [f32],
    ) {
        let mut j = 0;
        while j + R <= seen {
            // SAFETY: keys j..j + R lie within `keys` (checked by the caller); q holds GT heads.
            let t =
                unsafe { tile::<R, GT>(keys.as_ptr().add(j * stride), stride, q.as_ptr(), hd, hd) };
            for (r, row) in t.iter().enumerate() {
                for (h, v) in row.iter().enumerate() {
                    out[h * seen + j + r] = *v;
                }
            }
            j += R;
        }
        while j < seen {
            // SAFETY: as above, for the single key j.
            let t =
                unsafe { tile::<1, GT>(keys.as_ptr().add(j * stride), stride, q.as_ptr(), hd, hd) };
            for (h, v) in t[0].iter().enumerate() {
                out[h * seen + j] = *v;
            }
            j += 1;
        }
    }

    /// See `super::scores`.
    ///
    /// # Safety
    /// AVX-512F is available; sizes as checked by `super::scores`.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn scores(
        q: &[f32],
        hd: usize,
        keys: &[f32],
        stride: usize,
        seen: usize,
        out: &mut [f32],
    ) {
        let heads = q.len() / hd;
        // SAFETY (every call): the caller checked the sizes; each call gets its own heads.
        match heads {
            1 => unsafe { scores_of::<1>(q, hd, keys, stride, seen, out) },
            2 => unsafe { scores_of::<2>(q, hd, keys, stride, seen, out) },
            3 => unsafe { scores_of::<3>(q, hd, keys, stride, seen, out) },
            4 => unsafe { scores_of::<4>(q, hd, keys, stride, seen, out) },
            _ => {
                for h in 0..heads {
                    let out = &mut out[h * seen..(h + 1) * seen];
                    unsafe {
                        scores_of::<1>(&q[h * hd..(h + 1) * hd], hd, keys, stride, seen, out)
                    };
                }
            }
        }
    }

    /// See `super::axpy`.
    ///
    /// # Safety
    /// AVX-512F is available; `x.len() == y.len()`.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
        let av = _mm512_set1_ps(a);
        let n = x.len();
        let mut k = 0;
        while k < n {
            let rest = (n - k).min(LANES);
            let mask: __mmask16 = ((1u32 << rest) - 1) as u16;
            // SAFETY: the mask keeps both loads and the store within the n values from k.
            unsafe {
                let xv = _mm512_maskz_loadu_ps(mask, x.as_ptr().add(k));
                let yv = _mm512_maskz_loadu_ps(mask, y.as_ptr().add(k));
                _mm512_mask_storeu_ps(y.as_mut_ptr().add(k), mask, _mm512_fmadd_ps(av, xv, yv));
            }
            k += LANES;
        }
    }

    /// `super::weighted_sum` for 3 heads of 64 values: 12 accumulators, each value row read once.
    ///
    /// # Safety
    /// AVX-512F is available; sizes as checked by `super::weighted_sum`, hd = 64, 3 heads.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn weighted_sum_3x64(
        p: &[f32],
        seen: usize,
        values: &[f32],
        stride: usize,
        out: &mut [f32],
    ) {
        let mut acc = [[_mm512_setzero_ps(); 4]; 3];
        for j in 0..seen {
            let mut v = [_mm512_setzero_ps(); 4];
            for (c, vc) in v.iter_mut().enumerate() {
                // SAFETY: value row j holds 64 floats within `values` (checked by the caller).
                *vc = unsafe { _mm512_loadu_ps(values.as_ptr().add(j * stride + c * LANES)) };
            }
            for (h, acc) in acc.iter_mut().enumerate() {
                let w = _mm512_set1_ps(p[h * seen + j]);
                for c in 0..4 {
                    acc[c] = _mm512_fmadd_ps(w, v[c], acc[c]);
                }
            }
        }
        for (h, acc) in acc.iter().enumerate() {
            for (c, a) in acc.iter().enumerate() {
                // SAFETY: out holds 3 · 64 floats.
                unsafe { _mm512_storeu_ps(out.as_mut_ptr().add(h * 64 + c * LANES), *a) };
            }
        }
    }

    /// See `super::dot`.
    ///
    /// # Safety
    /// AVX-512F is available; `a.len() == b.len()`.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn dot(a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: both slices hold `a.len()` floats.
        unsafe { tile::<1, 1>(a.as_ptr(), 0, b.as_ptr(), 0, a.len())[0][0] }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn the_fast_path_equals_its_scalar_twin_bitwise(
            rows in 1usize..40,
            cols in 1usize..100,
            m in 1usize..11,
            seed in any::<u64>(),
        ) {
            // A small linear congruential generator: values in [-1, 1).
            let mut s = seed | 1;
            let mut next = move || {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 23) as f32) - 1.0
            };
            let w = Matrix::new((0..rows * cols).map(|_| next()).collect(), rows, cols);
            let xs: Vec<f32> = (0..m * cols).map(|_| next()).collect();
            let mut fast = vec![0f32; m * rows];
            let mut slow = vec![0f32; m * rows];
            matmul(&w, &xs, m, &mut fast);
            scalar_matmul_rows(&w, &xs, m, 0..rows, &mut slow);
            // A part of the rows, as a thread computes it.
            let part = rows / 3..rows;
            let mut some = vec![0f32; m * part.len()];
            matmul_rows(&w, &xs, m, part.clone(), &mut some);
            for i in 0..m {
                prop_assert_eq!(&some[i * part.len()..(i + 1) * part.len()],
                    &slow[i * rows + part.start..i * rows + rows]);
            }
            prop_assert_eq!(
                fast.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                slow.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
            );
            // A row's products do not depend on the other rows of the call.
            for i in 0..m {
                let mut one = vec![0f32; rows];
                matmul(&w, &xs[i * cols..(i + 1) * cols], 1, &mut one);
                prop_assert_eq!(&one[..], &fast[i * rows..(i + 1) * rows]);
                prop_assert_eq!(dot(&w.data[..cols], &xs[i * cols..(i + 1) * cols]).to_bits(),
                    fast[i * rows].to_bits());
            }
            // Scores: weight rows as keys (stride cols), activation rows as query heads.
            let mut sc = vec![0f32; m * rows];
            scores(&xs, cols, &w.data, cols, rows, &mut sc);
            for h in 0..m {
                for j in 0..rows {
                    prop_assert_eq!(sc[h * rows + j].to_bits(), slow[h * rows + j].to_bits());
                }
            }
            let mut y1 = xs[..cols].to_vec();
            let mut y2 = y1.clone();
            axpy(fast[0], &w.data[..cols], &mut y1);
            for (y, x) in y2.iter_mut().zip(&w.data[..cols]) {
                *y = fast[0].mul_add(*x, *y);
            }
            prop_assert_eq!(y1, y2);
            // The attention sum equals axpy key by key (3 heads of 64: the fast path).
            if cols >= 64 {
                let seen = rows;
                let p: Vec<f32> = (0..3 * seen).map(|_| next()).collect();
                let mut got = vec![0f32; 3 * 64];
                weighted_sum(&p, seen, &w.data, cols, 64, &mut got);
                let mut want = vec![0f32; 3 * 64];
                for h in 0..3 {
                    for j in 0..seen {
                        for d in 0..64 {
                            want[h * 64 + d] = p[h * seen + j].mul_add(w.data[j * cols + d], want[h * 64 + d]);
                        }
                    }
                }
                prop_assert_eq!(got, want);
            }
            // And they are dot products.
            let exact: f64 = (0..cols).map(|k| w.data[k] as f64 * xs[k] as f64).sum();
            prop_assert!((fast[0] as f64 - exact).abs() < 1e-4 * (1.0 + exact.abs()));
        }
    }
}
