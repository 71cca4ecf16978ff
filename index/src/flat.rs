//! Flat (exact) search: one pass over the contiguous vector array with the SIMD kernel.
//!
//! When a filter keeps few points, the scan walks the filter's bitmap instead of every offset.

use crate::distance::Metric;
use crate::topk::{Neighbor, TopK};
use crate::{PointFilter, VectorIndexRead, Vectors};

/// The exact index: it stores nothing beyond the vectors themselves.
#[derive(Debug, Default, Clone, Copy)]
pub struct FlatIndex;

/// Below this share of admitted points, the scan iterates the bitmap rather than all offsets.
const SPARSE_FILTER_SHARE: f64 = 0.25;

impl VectorIndexRead for FlatIndex {
    fn search(
        &self,
        vectors: Vectors<'_>,
        metric: Metric,
        query: &[f32],
        k: usize,
        filter: &PointFilter<'_>,
    ) -> Vec<Neighbor> {
        exact_search(vectors, metric, query, k, filter)
    }
}

/// Exact top-`k` over `vectors`, honouring `filter`. Shared by every index as its fallback.
pub fn exact_search(
    vectors: Vectors<'_>,
    metric: Metric,
    query: &[f32],
    k: usize,
    filter: &PointFilter<'_>,
) -> Vec<Neighbor> {
    let n = vectors.len();
    let mut top = TopK::new(k);
    match filter.allowed {
        Some(allowed) if (allowed.len() as f64) < SPARSE_FILTER_SHARE * n as f64 => {
            for offset in allowed.iter() {
                if (offset as usize) < n && !filter.is_deleted(offset) {
                    top.push(metric.distance(query, vectors.get(offset)), offset);
                }
            }
        }
        _ => {
            let plain = filter.allowed.is_none() && filter.deleted.is_none_or(|d| d.is_empty());
            for (offset, v) in vectors.iter().enumerate() {
                let offset = offset as u32;
                if plain || filter.admits(offset) {
                    top.push(metric.distance(query, v), offset);
                }
            }
        }
    }
    top.into_sorted_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng, rngs::StdRng};
    use roaring::RoaringBitmap;

    fn data(n: usize, dim: usize) -> Vec<f32> {
        let mut rng = StdRng::seed_from_u64(7);
        (0..n * dim).map(|_| rng.random_range(-1.0..1.0)).collect()
    }

    #[test]
    fn matches_a_sort_of_all_distances() {
        let dim = 16;
        let raw = data(500, dim);
        let vectors = Vectors::new(&raw, dim);
        let q = &raw[..dim];
        for metric in [Metric::Cosine, Metric::Dot, Metric::L2] {
            let got = FlatIndex.search(vectors, metric, q, 10, &PointFilter::default());
            let mut all: Vec<(f32, u32)> = (0..500u32)
                .map(|i| (metric.distance_scalar(q, vectors.get(i)), i))
                .collect();
            all.sort_by(|a, b| a.0.total_cmp(&b.0));
            let want: Vec<u32> = all[..10].iter().map(|x| x.1).collect();
            let got: Vec<u32> = got.iter().map(|n| n.key).collect();
            assert_eq!(got, want, "{metric:?}");
        }
    }

    #[test]
    fn filter_and_deletions_are_respected() {
        let dim = 8;
        let raw = data(1000, dim);
        let vectors = Vectors::new(&raw, dim);
        let allowed: RoaringBitmap = (0..1000u32).filter(|i| i % 7 == 0).collect();
        let deleted: RoaringBitmap = (0..1000u32).filter(|i| i % 2 == 0).collect();
        let f = PointFilter {
            allowed: Some(&allowed),
            deleted: Some(&deleted),
        };
        let got = FlatIndex.search(vectors, Metric::L2, &raw[..dim], 50, &f);
        assert!(!got.is_empty());
        for n in &got {
            assert!(
                n.key % 7 == 0 && n.key % 2 == 1,
                "offset {} passed the filter",
                n.key
            );
        }
        // 1000/7 ≈ 143 multiples of 7, half of them odd.
        assert_eq!(got.len(), 50);
    }
}
