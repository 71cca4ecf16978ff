//! In-process IVF-PQ benchmark: train and add on every core (each timed), then one search
//! thread per (nprobe, rerank) of a sweep, reporting QPS and recall@10 against the ground
//! truth. `benches/peers/ivfpq_peers.py` runs faiss on the same files and prints the same keys.

use crate::dataset::{SweepPoint, filter_sweep, read_ivecs, recall_at};
use quiver_client::vecfile::read_all;
use quiver_index::ivfpq::{IvfPqIndex, IvfPqParams, IvfPqQuantizer, IvfPqSearchParams};
use quiver_index::{Metric, PointFilter, Vectors};
use serde_json::json;
use std::path::Path;
use std::time::Instant;

/// What to build and which points to sweep.
pub struct Sweep<'a> {
    /// Inverted lists.
    pub nlist: usize,
    /// Sub-spaces (bytes per code).
    pub m: usize,
    /// Lists probed, one sweep row each.
    pub nprobe: &'a [usize],
    /// Candidates re-ranked exactly (0: none), one sweep row each.
    pub rerank: &'a [usize],
    /// Then compare filtered IVF-PQ search with exact bitmap scans (at the first nprobe and
    /// the last rerank).
    pub filter_sweep: bool,
    /// Passes over the queries per sweep row; the fastest is reported.
    pub repeat: usize,
}

/// Runs the benchmark and prints one JSON line per (nprobe, rerank), also returned.
pub fn run(
    base: &Path,
    queries: &Path,
    gt: &Path,
    sweep: &Sweep<'_>,
) -> anyhow::Result<Vec<serde_json::Value>> {
    let (data, dim) = read_all(base)?;
    let (qs, qdim) = read_all(queries)?;
    anyhow::ensure!(dim == qdim, "base is {dim}-d, queries {qdim}-d");
    let truth = read_ivecs(gt)?;
    let v = Vectors::new(&data, dim);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let params = IvfPqParams {
        nlist: sweep.nlist,
        m: sweep.m,
        ..IvfPqParams::default()
    };
    let bar = crate::report::progress(
        (sweep.nprobe.len() * sweep.rerank.len()) as u64 + 1,
        "ivfpq train",
    );
    let t = Instant::now();
    let quantizer = IvfPqQuantizer::train(v, Metric::L2, &params, threads, None)?;
    let train_s = t.elapsed().as_secs_f64();
    let report = quantizer
        .train_report()
        .copied()
        .expect("trained here, so reported");
    bar.println(
        json!({"engine": "quiver-ivfpq", "training": {
            "coarse_points": report.coarse_points, "coarse_iterations": report.coarse_iterations,
            "coarse_mse": report.coarse_mse, "coarse_s": report.coarse_secs,
            "pq_points": report.pq_points, "pq_iterations": report.pq_iterations,
            "pq_mse": report.pq_mse, "pq_s": report.pq_secs}})
        .to_string(),
    );
    let t = Instant::now();
    let index = quantizer.add(v, threads, None)?;
    let add_s = t.elapsed().as_secs_f64();
    let n = v.len();
    let serialized = index.to_bytes().len() as f64 / n as f64;
    // Σ len² · nlist / n²: 1 for equal lists, larger when a few long lists are probed often.
    let imbalance = (0..index.nlist())
        .map(|l| (index.list(l).len() as f64).powi(2))
        .sum::<f64>()
        * index.nlist() as f64
        / (n as f64).powi(2).max(1.0);
    bar.set_message("ivfpq search");
    bar.inc(1);
    let mut rows = Vec::new();
    for &nprobe in sweep.nprobe {
        for &rerank in sweep.rerank {
            let sp = IvfPqSearchParams {
                nprobe: Some(nprobe),
                rerank: Some(rerank),
            };
            let filter = PointFilter::default();
            let mut secs = f64::INFINITY;
            let mut results = Vec::with_capacity(qs.len() / dim);
            for _ in 0..sweep.repeat.max(1) {
                results.clear();
                let t = Instant::now();
                for q in qs.chunks_exact(dim) {
                    results.push(index.search_with(v, Metric::L2, q, 10, &filter, sp));
                }
                secs = secs.min(t.elapsed().as_secs_f64());
            }
            let recall: f64 = results
                .iter()
                .zip(&truth)
                .map(|(r, tr)| {
                    let ids: Vec<u32> = r.iter().map(|n| n.key).collect();
                    recall_at(10, &ids, tr)
                })
                .sum();
            let nq = results.len();
            let engine = if rerank == 0 {
                "quiver-ivfpq"
            } else {
                "quiver-ivfpq-rerank"
            };
            let row = json!({"engine": engine, "n": n, "dim": dim, "nlist": index.nlist(), "m": sweep.m, "nbits": 8,
                       "threads": threads, "train_s": train_s, "add_s": add_s,
                       "code_bytes_per_vector": index.code_bytes_per_vector(), "bytes_per_vector": index.bytes_per_vector(),
                       "serialized_bytes_per_vector": serialized, "imbalance_factor": imbalance,
                       "nprobe": nprobe, "rerank": rerank, "repeat": sweep.repeat.max(1),
                       "qps_1_thread": nq as f64 / secs, "recall_at_10": recall / nq as f64});
            bar.suspend(|| println!("{row}"));
            bar.inc(1);
            rows.push(row);
        }
    }
    bar.finish_and_clear();
    if sweep.filter_sweep {
        let sp = IvfPqSearchParams {
            nprobe: sweep.nprobe.first().copied(),
            rerank: sweep.rerank.last().copied(),
        };
        sweep_filters(&index, v, &qs, dim, sp);
    }
    Ok(rows)
}

/// The filter sweep for IVF-PQ: the lists searched under the filter against exact bitmap scans.
fn sweep_filters(
    index: &IvfPqIndex,
    v: Vectors<'_>,
    qs: &[f32],
    dim: usize,
    sp: IvfPqSearchParams,
) {
    let search = |q: &[f32], f: &PointFilter<'_>| -> Vec<u32> {
        index
            .search_lists(v, Metric::L2, q, 10, f, sp)
            .iter()
            .map(|n| n.key)
            .collect()
    };
    let report = |p: &SweepPoint<'_>| {
        json!({"filter_share": p.share, "admitted": p.allowed.len(),
               "nprobe": sp.nprobe, "rerank": sp.rerank,
               "exact_qps": p.exact_qps, "ivfpq_qps": p.index_qps, "ivfpq_recall_at_10": p.recall,
               "model_prefers_exact": index.prefers_exact(p.allowed.len(), sp)})
    };
    filter_sweep(v, qs, dim, &search, &report);
}
