//! Distance kernels: one SIMD path through simsimd and one plain scalar twin per metric.
//!
//! Every metric is turned into a *distance* where smaller is closer, so that one top-k heap
//! serves all of them:
//!
//! | metric | distance `d(a, b)`        | score shown to users |
//! |--------|---------------------------|----------------------|
//! | cosine | `1 - cos(a, b)`           | `1 - d` (similarity) |
//! | dot    | `-(a · b)`                | `-d` (inner product) |
//! | l2     | `Σ (a_i - b_i)²`          | `sqrt(d)` (euclidean)|
//!
//! simsimd's `cos` already returns `1 - cos`, a distance. It dispatches at run time to the best
//! instruction set of the CPU. The scalar twins are the reference the property tests compare with.

use simsimd::SpatialSimilarity;

/// How two vectors are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    /// Angle between the vectors; zero vectors are rejected at the API boundary.
    Cosine,
    /// Inner product; larger is closer.
    Dot,
    /// Euclidean distance (squared inside, square root in scores).
    L2,
}

impl Metric {
    /// The lower-is-better distance between `a` and `b` on the SIMD path.
    ///
    /// Both slices must have the same length (checked in debug builds; the public API validates
    /// dimensions before any vector reaches a kernel).
    #[inline]
    pub fn distance(self, a: &[f32], b: &[f32]) -> f32 {
        debug_assert_eq!(a.len(), b.len());
        let d = match self {
            Metric::Cosine => <f32 as SpatialSimilarity>::cos(a, b),
            Metric::Dot => <f32 as SpatialSimilarity>::dot(a, b).map(|x| -x),
            Metric::L2 => <f32 as SpatialSimilarity>::l2sq(a, b),
        };
        d.expect("vectors of one collection share a dimension") as f32
    }

    /// The same distance from kernels compiled into this crate (AVX2 + FMA when the CPU has
    /// them, else the simsimd path). Graph search calls this: on short vectors the cost of
    /// simsimd's foreign call and run-time dispatch is a large share of each distance, and these
    /// inline into the search loop.
    #[inline]
    pub fn distance_inline(self, a: &[f32], b: &[f32]) -> f32 {
        #[cfg(target_arch = "x86_64")]
        if has_avx2_fma() {
            debug_assert_eq!(a.len(), b.len());
            // SAFETY: the CPU supports AVX2 and FMA (checked above); both slices have the same
            // length (every vector of a collection has its dimension), and the kernels read
            // only within `a.len()`.
            return unsafe {
                match self {
                    Metric::L2 => x86::l2sq(a, b),
                    Metric::Dot => -x86::dot(a, b),
                    Metric::Cosine => x86::cosine_distance(a, b),
                }
            };
        }
        self.distance(a, b)
    }

    /// The same distance computed with plain loops: the reference for the SIMD path.
    pub fn distance_scalar(self, a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        match self {
            Metric::Cosine => {
                let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
                for (x, y) in a.iter().zip(b) {
                    let (x, y) = (*x as f64, *y as f64);
                    ab += x * y;
                    aa += x * x;
                    bb += y * y;
                }
                if aa == 0.0 || bb == 0.0 {
                    return 1.0;
                }
                (1.0 - ab / (aa.sqrt() * bb.sqrt())).max(0.0) as f32
            }
            Metric::Dot => -a
                .iter()
                .zip(b)
                .map(|(x, y)| *x as f64 * *y as f64)
                .sum::<f64>() as f32,
            Metric::L2 => a
                .iter()
                .zip(b)
                .map(|(x, y)| {
                    let d = *x as f64 - *y as f64;
                    d * d
                })
                .sum::<f64>() as f32,
        }
    }

    /// Turns an internal distance into the score users see (see the table in the module header).
    pub fn score(self, distance: f32) -> f32 {
        match self {
            Metric::Cosine => 1.0 - distance,
            Metric::Dot => -distance,
            Metric::L2 => distance.max(0.0).sqrt(),
        }
    }

    /// True when a higher score means closer (cosine, dot); false for l2.
    pub fn higher_is_better(self) -> bool {
        !matches!(self, Metric::L2)
    }

    /// The metric's name as it appears in configuration and on the wire.
    pub fn name(self) -> &'static str {
        match self {
            Metric::Cosine => "cosine",
            Metric::Dot => "dot",
            Metric::L2 => "l2",
        }
    }
}

/// True when AVX2 and FMA are available (the standard library caches the detection).
#[cfg(target_arch = "x86_64")]
#[inline]
fn has_avx2_fma() -> bool {
    std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! AVX2 + FMA kernels: two 8-lane accumulators over 16 floats a step, then 8, then a scalar
    //! tail. The plain loops they unroll: `Σ (a_i - b_i)²`, `Σ a_i b_i`, and for cosine the
    //! three sums `Σ a_i b_i`, `Σ a_i²`, `Σ b_i²` in one pass.
    use std::arch::x86_64::*;

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn hsum(v: __m256) -> f32 {
        let lo = _mm256_castps256_ps128(v);
        let hi = _mm256_extractf128_ps(v, 1);
        let s = _mm_add_ps(lo, hi);
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
        _mm_cvtss_f32(s)
    }

    /// # Safety
    /// AVX2 and FMA must be available; `b.len() >= a.len()`.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn l2sq(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len();
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let (mut acc0, mut acc1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let mut i = 0;
        while i + 16 <= n {
            // SAFETY: i + 16 <= n: elements i..i + 8 lie inside both (b.len() >= a.len()).
            let d0 =
                unsafe { _mm256_sub_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i))) };
            // SAFETY: and so do elements i + 8..i + 16.
            let d1 = unsafe {
                _mm256_sub_ps(
                    _mm256_loadu_ps(pa.add(i + 8)),
                    _mm256_loadu_ps(pb.add(i + 8)),
                )
            };
            acc0 = _mm256_fmadd_ps(d0, d0, acc0);
            acc1 = _mm256_fmadd_ps(d1, d1, acc1);
            i += 16;
        }
        if i + 8 <= n {
            // SAFETY: i + 8 <= n: elements i..i + 8 lie inside both (b.len() >= a.len()).
            let d0 =
                unsafe { _mm256_sub_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i))) };
            acc0 = _mm256_fmadd_ps(d0, d0, acc0);
            i += 8;
        }
        let mut s = hsum(_mm256_add_ps(acc0, acc1));
        while i < n {
            let d = a[i] - b[i];
            s += d * d;
            i += 1;
        }
        s
    }

    /// # Safety
    /// AVX2 and FMA must be available; `b.len() >= a.len()`.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len();
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let (mut acc0, mut acc1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let mut i = 0;
        while i + 16 <= n {
            // SAFETY: i + 16 <= n: elements i..i + 16 lie inside both (b.len() >= a.len()).
            unsafe {
                acc0 =
                    _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), acc0);
                acc1 = _mm256_fmadd_ps(
                    _mm256_loadu_ps(pa.add(i + 8)),
                    _mm256_loadu_ps(pb.add(i + 8)),
                    acc1,
                );
            }
            i += 16;
        }
        if i + 8 <= n {
            // SAFETY: i + 8 <= n: elements i..i + 8 lie inside both (b.len() >= a.len()).
            acc0 = unsafe {
                _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), acc0)
            };
            i += 8;
        }
        let mut s = hsum(_mm256_add_ps(acc0, acc1));
        while i < n {
            s += a[i] * b[i];
            i += 1;
        }
        s
    }

    /// # Safety
    /// AVX2 and FMA must be available; `b.len() >= a.len()`.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn cosine_distance(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len();
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let (mut ab, mut aa, mut bb) = (
            _mm256_setzero_ps(),
            _mm256_setzero_ps(),
            _mm256_setzero_ps(),
        );
        let mut i = 0;
        while i + 8 <= n {
            // SAFETY: i + 8 <= n: elements i..i + 8 lie inside both (b.len() >= a.len()).
            let (x, y) = unsafe { (_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i))) };
            ab = _mm256_fmadd_ps(x, y, ab);
            aa = _mm256_fmadd_ps(x, x, aa);
            bb = _mm256_fmadd_ps(y, y, bb);
            i += 8;
        }
        let (mut sab, mut saa, mut sbb) = (hsum(ab), hsum(aa), hsum(bb));
        while i < n {
            sab += a[i] * b[i];
            saa += a[i] * a[i];
            sbb += b[i] * b[i];
            i += 1;
        }
        if saa == 0.0 || sbb == 0.0 {
            return 1.0;
        }
        (1.0 - sab / (saa.sqrt() * sbb.sqrt())).max(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn vec_pair() -> impl Strategy<Value = (Vec<f32>, Vec<f32>)> {
        (1usize..300).prop_flat_map(|n| {
            (
                proptest::collection::vec(-10.0f32..10.0, n),
                proptest::collection::vec(-10.0f32..10.0, n),
            )
        })
    }

    fn close(a: f32, b: f32, scale: f32) -> bool {
        (a - b).abs() <= 1e-3 * scale.max(1.0)
    }

    proptest! {
        #[test]
        fn simd_agrees_with_scalar((a, b) in vec_pair()) {
            let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
            prop_assume!(norm(&a) > 1e-3 && norm(&b) > 1e-3);
            let scale = norm(&a) * norm(&b);
            for m in [Metric::Cosine, Metric::Dot, Metric::L2] {
                let fast = m.distance(&a, &b);
                let inline = m.distance_inline(&a, &b);
                let slow = m.distance_scalar(&a, &b);
                let s = if m == Metric::Cosine { 1.0 } else { scale };
                prop_assert!(close(fast, slow, s), "{m:?}: simd {fast} vs scalar {slow}");
                prop_assert!(close(inline, slow, s), "{m:?}: inline {inline} vs scalar {slow}");
            }
        }
    }

    #[test]
    fn known_values() {
        let a = [1.0, 0.0, 0.0];
        let b = [0.0, 1.0, 0.0];
        assert!((Metric::Cosine.distance(&a, &b) - 1.0).abs() < 1e-6);
        assert!(Metric::Cosine.distance(&a, &a).abs() < 1e-6);
        assert_eq!(Metric::Dot.distance(&[1.0, 2.0], &[3.0, 4.0]), -11.0);
        assert_eq!(Metric::L2.distance(&[1.0, 2.0], &[4.0, 6.0]), 25.0);
        assert_eq!(Metric::L2.score(25.0), 5.0);
        assert_eq!(Metric::Dot.score(-11.0), 11.0);
    }
}
