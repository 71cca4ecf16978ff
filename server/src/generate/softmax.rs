//! The attention softmax: one row of scores to weights, with our own exponential, so the
//! AVX-512 path and its scalar twin agree bitwise (what prompt lookup's "same output as greedy"
//! needs of every kernel; see `kernel.rs`). It replaced a scalar loop calling glibc's `expf` per
//! score (benches/RESULTS.md: plain decoding 45.9 → 50.5 tokens/s with it).

use super::kernel::{LANES, avx512, fold};

/// Softmax of one row of attention scores, in place: `row[j] = e_j / Σ e` with
/// `e_j = exp(row[j] · scale - max)`, `max` the largest scaled score.
///
/// The exponential is our own (`exp_neg`), evaluated the same way in every lane, so the AVX-512
/// path and its scalar twin agree bitwise; the sum runs over 16 lanes (lane `l` takes the
/// elements `l, l + 16, ...`) folded as in `fold`. A row's result depends only on the row.
pub fn softmax(row: &mut [f32], scale: f32) {
    #[cfg(target_arch = "x86_64")]
    if avx512() {
        // SAFETY: the CPU has AVX-512F (checked at run time).
        unsafe { avx::softmax(row, scale) };
        return;
    }
    scalar_softmax(row, scale);
}

/// log2(e).
const LOG2E: f32 = std::f32::consts::LOG2_E;
/// ln 2 split in two: `LN2_HI` has few significant bits, so `n · LN2_HI` is exact.
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// Minimax polynomial of `(exp(r) - 1 - r) / r²` on |r| ≤ ln2 / 2, highest degree first (the
/// classic single-precision coefficients, about 1 ulp).
const EXP_POLY: [f32; 6] = [
    1.987_569_1e-4,
    1.398_199_9e-3,
    8.333_452e-3,
    4.166_579_6e-2,
    0.166_666_65,
    0.5,
];
/// Below this `exp_neg` saturates at exp(-87) ≈ 1.6e-38 (a normal number), far under any
/// softmax weight that counts.
const EXP_MIN: f32 = -87.0;

/// `exp(x)` for `x ≤ 0` (as a softmax has): `2^n · exp(r)` with `n = round(x · log2 e)`.
fn exp_neg(x: f32) -> f32 {
    let x = x.max(EXP_MIN);
    let n = (x * LOG2E).round_ties_even();
    let r = n.mul_add(-LN2_HI, x);
    let r = n.mul_add(-LN2_LO, r);
    let mut p = EXP_POLY[0];
    for c in &EXP_POLY[1..] {
        p = p.mul_add(r, *c);
    }
    let e = p.mul_add(r * r, r) + 1.0;
    e * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

/// The scalar twin of `softmax`.
fn scalar_softmax(row: &mut [f32], scale: f32) {
    let max = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b * scale));
    let mut acc = [0f32; LANES];
    for chunk in row.chunks_mut(LANES) {
        for (l, v) in chunk.iter_mut().enumerate() {
            *v = exp_neg(*v * scale - max);
            acc[l] += *v;
        }
    }
    let sum = fold(acc);
    row.iter_mut().for_each(|v| *v /= sum);
}

#[cfg(target_arch = "x86_64")]
mod avx {
    use super::LANES;
    use crate::generate::kernel::avx::fold_v;
    use std::arch::x86_64::*;

    /// `super::exp_neg` in every lane.
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn exp_neg(x: __m512) -> __m512 {
        use super::{EXP_MIN, EXP_POLY, LN2_HI, LN2_LO, LOG2E};
        let x = _mm512_max_ps(x, _mm512_set1_ps(EXP_MIN));
        let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
            _mm512_mul_ps(x, _mm512_set1_ps(LOG2E)),
        );
        let r = _mm512_fmadd_ps(n, _mm512_set1_ps(-LN2_HI), x);
        let r = _mm512_fmadd_ps(n, _mm512_set1_ps(-LN2_LO), r);
        let mut p = _mm512_set1_ps(EXP_POLY[0]);
        for c in &EXP_POLY[1..] {
            p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(*c));
        }
        let e = _mm512_add_ps(
            _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r),
            _mm512_set1_ps(1.0),
        );
        let bias = _mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127));
        _mm512_mul_ps(e, _mm512_castsi512_ps(_mm512_slli_epi32::<23>(bias)))
    }

    /// See `super::softmax`.
    ///
    /// # Safety
    /// AVX-512F is available.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn softmax(row: &mut [f32], scale: f32) {
        let n = row.len();
        let sv = _mm512_set1_ps(scale);
        let mask_at = |k: usize| -> __mmask16 { ((1u32 << (n - k).min(LANES)) - 1) as u16 };
        let p = row.as_mut_ptr();
        // The maximum is exact whatever the order; masked-off lanes hold -inf.
        let mut mv = _mm512_set1_ps(f32::NEG_INFINITY);
        let mut k = 0;
        while k < n {
            let m = mask_at(k);
            // SAFETY: the mask keeps the load within the row.
            let v = unsafe { _mm512_maskz_loadu_ps(m, p.add(k)) };
            // The new value first: a NaN there yields the running maximum (as `f32::max`).
            mv = _mm512_mask_max_ps(mv, m, _mm512_mul_ps(v, sv), mv);
            k += LANES;
        }
        let max = _mm512_set1_ps(_mm512_reduce_max_ps(mv));
        let mut acc = _mm512_setzero_ps();
        k = 0;
        while k < n {
            let m = mask_at(k);
            // SAFETY: the mask keeps the load and the store within the row.
            unsafe {
                let v = _mm512_maskz_loadu_ps(m, p.add(k));
                let e = exp_neg(_mm512_sub_ps(_mm512_mul_ps(v, sv), max));
                acc = _mm512_mask_add_ps(acc, m, acc, e);
                _mm512_mask_storeu_ps(p.add(k), m, e);
            }
            k += LANES;
        }
        let sum = _mm512_set1_ps(fold_v(acc));
        k = 0;
        while k < n {
            let m = mask_at(k);
            // SAFETY: as above.
            unsafe {
                let v = _mm512_maskz_loadu_ps(m, p.add(k));
                _mm512_mask_storeu_ps(p.add(k), m, _mm512_div_ps(v, sum));
            }
            k += LANES;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn the_fast_path_equals_its_scalar_twin_bitwise_and_is_a_softmax(
            row in proptest::collection::vec(-1.0f32..1.0, 1..200),
        ) {
            // Softmax: the fast path equals its twin bitwise, and both are a softmax.
            let twins = |row: &[f32], scale: f32| {
                let (mut fast, mut slow) = (row.to_vec(), row.to_vec());
                softmax(&mut fast, scale);
                scalar_softmax(&mut slow, scale);
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                (bits(&fast) == bits(&slow)).then_some(fast)
            };
            let a = twins(&row.iter().map(|v| v * 30.0).collect::<Vec<_>>(), 0.125);
            prop_assert!(a.is_some(), "softmax differs from its twin");
            let a = a.unwrap_or_default();
            // Also on wide ranges (past exp's -87 floor), -inf and NaN scores.
            let mut wide: Vec<f32> = row.iter().map(|v| v * 400.0).collect();
            wide[0] = f32::NEG_INFINITY;
            if wide.len() > 2 {
                // One in the first chunk, one in the last.
                wide[2] = f32::NAN;
                *wide.last_mut().expect("not empty") = f32::NAN;
            }
            prop_assert!(twins(&wide, 1.0).is_some(), "softmax differs from its twin: {:?}", wide);
            let mx = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v * 30.0 * 0.125)) as f64;
            let z: f64 = row.iter().map(|&v| ((v * 30.0 * 0.125) as f64 - mx).exp()).sum();
            for (got, x) in a.iter().zip(&row) {
                let want = ((x * 30.0 * 0.125) as f64 - mx).exp() / z;
                prop_assert!((*got as f64 - want).abs() < 1e-5 * want + 1e-37, "{} against {}", got, want);
            }
        }
    }
}
