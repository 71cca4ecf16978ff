//! HNSW: a hierarchical navigable small-world graph (Malkov & Yashunin, 2018).
//!
//! ```text
//! build (build.rs): levels drawn per node ─► threads insert nodes in parallel, per-node locks
//!                   ─► HnswGraph::freeze ─► flat arrays (graph.rs) ─► to_bytes / from_bytes
//! search (graph.rs): greedy descent on upper levels ─► beam of ef on level 0, filter and
//!                   deletions steer which nodes become results; visited sets pooled
//! ```
//!
//! | file         | what it holds                                             |
//! |--------------|-----------------------------------------------------------|
//! | `build.rs`   | parallel construction and the neighbour heuristic          |
//! | `graph.rs`   | the frozen graph, its search, its byte layout              |
//! | `visited.rs` | generation-counter visited sets and their pool             |
//!
//! With [`HnswIndex::quantized`] set, the beam walks 8-bit codes (`crate::sq8`) instead of the
//! f32 vectors and its best `rerank` admitted candidates (default: all `ef`) are re-scored on
//! the f32 vectors; the graph itself is always built on the f32 vectors.

mod build;
mod graph;
mod visited;

pub use build::build;
pub use graph::{GraphError, HnswGraph, SharedBytes, Words};

use crate::distance::Metric;
use crate::sq8::Sq8;
use crate::topk::Neighbor;
use crate::{PointFilter, VectorIndexRead, Vectors};
use std::cmp::Ordering;

/// Build parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HnswParams {
    /// Links per node on levels above 0 (`M` in the paper); level 0 keeps `2 m`.
    pub m: usize,
    /// Beam width while inserting (`efConstruction`).
    pub ef_construction: usize,
    /// Seed of the level draws.
    pub seed: u64,
}

impl Default for HnswParams {
    fn default() -> Self {
        HnswParams {
            m: 16,
            ef_construction: 100,
            seed: 0x5eed,
        }
    }
}

/// Default search beam when a request does not set one.
pub const DEFAULT_EF: usize = 64;

/// An f32 with a total order, for heaps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct OrdF32(pub f32);

impl Eq for OrdF32 {}

impl PartialOrd for OrdF32 {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for OrdF32 {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// An HNSW index over one segment's vectors.
#[derive(Debug)]
pub struct HnswIndex {
    /// The graph.
    pub graph: HnswGraph,
    /// Search beam.
    pub ef: usize,
    /// 8-bit codes of the vectors: when set, the beam is scored on them and the final
    /// candidates re-ranked on the f32 vectors.
    pub quantized: Option<Box<Sq8>>,
}

impl HnswIndex {
    /// The `k` closest admitted vectors with a beam of `ef`. A filter that admits few points
    /// is answered by an exact scan of its bitmap instead (`crate::prefer_exact`).
    pub fn search_ef(
        &self,
        vectors: Vectors<'_>,
        metric: Metric,
        query: &[f32],
        k: usize,
        filter: &PointFilter<'_>,
        ef: usize,
    ) -> Vec<Neighbor> {
        match filter.allowed {
            Some(a) if crate::prefer_exact(a.len(), vectors.len(), ef, self.graph.m0()) => {
                crate::flat::exact_search(vectors, metric, query, k, filter)
            }
            _ => match &self.quantized {
                None => self.graph.search(vectors, metric, query, k, ef, filter),
                Some(sq) => {
                    let rerank = ef.max(k);
                    search_quantized(
                        &self.graph,
                        sq,
                        vectors,
                        metric,
                        query,
                        k,
                        ef,
                        rerank,
                        filter,
                    )
                }
            },
        }
    }

    /// Bytes held by the graph and the codes, if any.
    pub fn memory_bytes(&self) -> usize {
        self.graph.memory_bytes() + self.quantized.as_ref().map_or(0, |q| q.memory_bytes())
    }
}

/// Beam search on the codes `sq`, then the best `rerank` admitted candidates re-scored on the
/// f32 vectors; the `k` closest of those, closest first, with exact distances.
#[allow(clippy::too_many_arguments)]
pub fn search_quantized(
    graph: &HnswGraph,
    sq: &Sq8,
    vectors: Vectors<'_>,
    metric: Metric,
    query: &[f32],
    k: usize,
    ef: usize,
    rerank: usize,
    filter: &PointFilter<'_>,
) -> Vec<Neighbor> {
    let pq = sq.prepare(query);
    let codes = sq.view();
    let mut cands = graph.search_by(
        |i| pq.distance(codes.get(i)),
        |i| codes.prefetch(i),
        rerank.max(k),
        ef,
        filter,
    );
    for c in &cands {
        graph::prefetch(vectors.get(c.key));
    }
    for c in &mut cands {
        c.distance = metric.distance_inline(query, vectors.get(c.key));
    }
    cands.sort();
    cands.truncate(k);
    cands
}

impl VectorIndexRead for HnswIndex {
    fn search(
        &self,
        vectors: Vectors<'_>,
        metric: Metric,
        query: &[f32],
        k: usize,
        filter: &PointFilter<'_>,
    ) -> Vec<Neighbor> {
        self.search_ef(vectors, metric, query, k, filter, self.ef)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flat::exact_search;
    use roaring::RoaringBitmap;

    fn clustered(n: usize, dim: usize, seed: u64) -> Vec<f32> {
        crate::synthetic::clustered(n, dim, 50, 10, seed)
    }

    fn recall(
        data: &[f32],
        dim: usize,
        g: &HnswGraph,
        metric: Metric,
        ef: usize,
        filter: &PointFilter<'_>,
        queries: &[f32],
    ) -> f64 {
        let v = Vectors::new(data, dim);
        let (mut hit, mut total) = (0, 0);
        for q in queries.chunks_exact(dim) {
            let truth: Vec<u32> = exact_search(v, metric, q, 10, filter)
                .iter()
                .map(|n| n.key)
                .collect();
            let got: Vec<u32> = g
                .search(v, metric, q, 10, ef, filter)
                .iter()
                .map(|n| n.key)
                .collect();
            for n in &got {
                assert!(filter.admits(*n), "result {n} does not pass the filter");
            }
            hit += truth.iter().filter(|t| got.contains(t)).count();
            total += truth.len();
        }
        hit as f64 / total as f64
    }

    #[test]
    fn recall_on_clustered_data_and_with_deletions() {
        let (n, dim) = (20_000, 64);
        let data = clustered(n, dim, 1);
        let queries = clustered(200, dim, 2);
        let g = build(
            Vectors::new(&data, dim),
            Metric::L2,
            HnswParams::default(),
            2,
        );
        let r = recall(
            &data,
            dim,
            &g,
            Metric::L2,
            DEFAULT_EF,
            &PointFilter::default(),
            &queries,
        );
        assert!(r >= 0.95, "recall@10 {r}");
        let deleted: RoaringBitmap = (0..n as u32).filter(|i| i % 10 < 3).collect();
        let f = PointFilter {
            allowed: None,
            deleted: Some(&deleted),
        };
        let r = recall(&data, dim, &g, Metric::L2, DEFAULT_EF, &f, &queries);
        assert!(r >= 0.9, "recall@10 with 30% deleted {r}");
    }

    #[test]
    fn quantized_traversal_with_rerank_keeps_recall() {
        let (n, dim) = (20_000, 64);
        let data = clustered(n, dim, 1);
        let queries = clustered(200, dim, 2);
        let v = Vectors::new(&data, dim);
        for metric in [Metric::L2, Metric::Cosine] {
            let g = build(v, metric, HnswParams::default(), 2);
            let index = HnswIndex {
                graph: g,
                ef: DEFAULT_EF,
                quantized: Some(Box::new(Sq8::train(v, metric))),
            };
            let deleted: RoaringBitmap = (0..n as u32).filter(|i| i % 10 < 3).collect();
            for (filter, floor) in [
                (PointFilter::default(), 0.95),
                (
                    PointFilter {
                        allowed: None,
                        deleted: Some(&deleted),
                    },
                    0.9,
                ),
            ] {
                let (mut hit, mut total) = (0, 0);
                for q in queries.chunks_exact(dim) {
                    let truth: Vec<u32> = exact_search(v, metric, q, 10, &filter)
                        .iter()
                        .map(|n| n.key)
                        .collect();
                    let got = index.search(v, metric, q, 10, &filter);
                    for w in got.windows(2) {
                        assert!(w[0].distance <= w[1].distance, "sorted");
                    }
                    for g in &got {
                        assert!(filter.admits(g.key));
                        let exact = metric.distance_scalar(q, v.get(g.key));
                        assert!((g.distance - exact).abs() <= 1e-3 * exact.abs().max(1.0));
                    }
                    hit += truth
                        .iter()
                        .filter(|t| got.iter().any(|g| g.key == **t))
                        .count();
                    total += truth.len();
                }
                let r = hit as f64 / total as f64;
                eprintln!("{metric:?} quantized recall@10 {r}");
                assert!(r >= floor, "{metric:?}: quantized recall@10 {r} < {floor}");
            }
        }
    }

    #[test]
    fn one_thread_is_deterministic_and_bytes_round_trip() {
        let (n, dim) = (2000, 16);
        let data = clustered(n, dim, 3);
        let v = Vectors::new(&data, dim);
        let a = build(v, Metric::Cosine, HnswParams::default(), 1);
        let b = build(v, Metric::Cosine, HnswParams::default(), 1);
        assert_eq!(a.to_bytes(), b.to_bytes());
        let back = HnswGraph::from_bytes(&a.to_bytes(), n).unwrap();
        assert_eq!(back.to_bytes(), a.to_bytes());
        // Read in place from shared bytes at an aligned offset, as from a mapped file.
        let mut framed = vec![0u8; 64];
        framed.extend(a.to_bytes());
        let len = framed.len() - 64;
        let shared: SharedBytes = std::sync::Arc::new(framed);
        let in_place = HnswGraph::from_shared(shared.clone(), 64, len, n).unwrap();
        assert_eq!(in_place.to_bytes(), a.to_bytes());
        assert!(
            HnswGraph::from_shared(shared, 63, len, n).is_err(),
            "misaligned or cut bytes are refused"
        );
        let q = &data[..dim];
        assert_eq!(
            back.search(v, Metric::Cosine, q, 5, 32, &PointFilter::default()),
            a.search(v, Metric::Cosine, q, 5, 32, &PointFilter::default())
        );
        // Damage is refused, never served.
        let raw = a.to_bytes();
        assert!(HnswGraph::from_bytes(&raw[..raw.len() - 4], n).is_err());
        assert!(HnswGraph::from_bytes(&raw, n + 1).is_err());
        let mut bad = raw.clone();
        let at = 24 + n + 4 * 3; // inside node 0's level-0 row
        bad[at..at + 4].copy_from_slice(&(n as u32 + 5).to_le_bytes());
        assert!(HnswGraph::from_bytes(&bad, n).is_err());
    }

    #[test]
    fn a_smaller_beam_trades_recall() {
        let (n, dim) = (20_000, 64);
        let data = clustered(n, dim, 1);
        let queries = clustered(200, dim, 2);
        let g = build(
            Vectors::new(&data, dim),
            Metric::L2,
            HnswParams {
                m: 8,
                ..HnswParams::default()
            },
            2,
        );
        let r: Vec<f64> = [10, 40, 160]
            .iter()
            .map(|&ef| {
                recall(
                    &data,
                    dim,
                    &g,
                    Metric::L2,
                    ef,
                    &PointFilter::default(),
                    &queries,
                )
            })
            .collect();
        eprintln!("recall@10 at ef 10, 40, 160 with m 8: {r:?}");
        assert!(r[0] <= r[1] && r[1] <= r[2], "{r:?}");
        assert!(r[0] < 1.0, "the graph path is approximate: {r:?}");
    }

    #[test]
    fn tiny_and_empty_graphs() {
        let g = build(Vectors::new(&[], 4), Metric::L2, HnswParams::default(), 2);
        assert!(
            g.search(
                Vectors::new(&[], 4),
                Metric::L2,
                &[0.0; 4],
                3,
                10,
                &PointFilter::default()
            )
            .is_empty()
        );
        let data = [1.0, 0.0, 0.0, 1.0];
        let g = build(Vectors::new(&data, 2), Metric::L2, HnswParams::default(), 2);
        let got = g.search(
            Vectors::new(&data, 2),
            Metric::L2,
            &[0.9, 0.1],
            5,
            10,
            &PointFilter::default(),
        );
        assert_eq!(got.iter().map(|n| n.key).collect::<Vec<_>>(), vec![0, 1]);
    }
}
