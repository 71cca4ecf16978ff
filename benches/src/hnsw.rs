//! In-process HNSW benchmark: build on every core (timed), then one search thread per ef of a
//! sweep, reporting QPS and recall@10 against the ground truth.

use crate::dataset::{SweepPoint, filter_sweep, read_ivecs, recall_at};
use quiver_client::vecfile::read_all;
use quiver_index::hnsw::{HnswParams, build};
use quiver_index::{Metric, PointFilter, Vectors};
use serde_json::json;
use std::path::Path;
use std::time::Instant;

/// Runs the benchmark and prints one JSON line per ef; with `filter_sweep`, then one line per
/// filter share comparing graph search under the filter with an exact scan of its bitmap.
pub fn run(
    base: &Path,
    queries: &Path,
    gt: &Path,
    m: usize,
    ef_construction: usize,
    efs: &[usize],
    filter_sweep: bool,
) -> anyhow::Result<()> {
    let (data, dim) = read_all(base)?;
    let (qs, qdim) = read_all(queries)?;
    anyhow::ensure!(dim == qdim, "base is {dim}-d, queries {qdim}-d");
    let truth = read_ivecs(gt)?;
    let v = Vectors::new(&data, dim);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let t = Instant::now();
    let g = build(
        v,
        Metric::L2,
        HnswParams {
            m,
            ef_construction,
            ..HnswParams::default()
        },
        threads,
    );
    let build_s = t.elapsed().as_secs_f64();
    let mem = g.memory_bytes() + data.len() * 4;
    for &ef in efs {
        let filter = PointFilter::default();
        let t = Instant::now();
        let mut recall = 0.0;
        let mut results = Vec::with_capacity(qs.len() / dim);
        for q in qs.chunks_exact(dim) {
            results.push(g.search(v, Metric::L2, q, 10, ef, &filter));
        }
        let secs = t.elapsed().as_secs_f64();
        for (r, tr) in results.iter().zip(&truth) {
            let ids: Vec<u32> = r.iter().map(|n| n.key).collect();
            recall += recall_at(10, &ids, tr);
        }
        let nq = results.len();
        println!(
            "{}",
            json!({"engine": "quiver", "n": v.len(), "dim": dim, "m": m, "ef_construction": ef_construction,
                   "build_threads": threads, "build_s": build_s, "memory_bytes": mem,
                   "ef": ef, "qps_1_thread": nq as f64 / secs, "recall_at_10": recall / nq as f64})
        );
    }
    if filter_sweep {
        sweep_filters(&g, v, &qs, dim, efs.first().copied().unwrap_or(64));
    }
    Ok(())
}

/// The filter sweep for HNSW: graph search under the filter against exact bitmap scans.
fn sweep_filters(
    g: &quiver_index::hnsw::HnswGraph,
    v: Vectors<'_>,
    qs: &[f32],
    dim: usize,
    ef: usize,
) {
    let search = |q: &[f32], f: &PointFilter<'_>| -> Vec<u32> {
        g.search(v, Metric::L2, q, 10, ef, f)
            .iter()
            .map(|n| n.key)
            .collect()
    };
    let report = |p: &SweepPoint<'_>| {
        json!({"filter_share": p.share, "admitted": p.allowed.len(), "ef": ef,
               "exact_qps": p.exact_qps, "graph_qps": p.index_qps, "graph_recall_at_10": p.recall,
               "model_switch_admitted": quiver_index::prefer_exact(p.allowed.len(), v.len(), ef, g.m0())})
    };
    filter_sweep(v, qs, dim, &search, &report);
}
