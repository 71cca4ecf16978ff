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
                let slow = m.distance_scalar(&a, &b);
                let s = if m == Metric::Cosine { 1.0 } else { scale };
                prop_assert!(close(fast, slow, s), "{m:?}: simd {fast} vs scalar {slow}");
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
