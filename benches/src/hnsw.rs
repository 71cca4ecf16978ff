//! In-process HNSW benchmark: build on every core (timed), then one search thread per ef of a
//! sweep, reporting QPS and recall@10 against the ground truth. With `--quantize int8` the
//! same graph is then swept again walking 8-bit codes (`quiver_index::sq8`), every ef
//! candidates re-ranked on the f32 vectors (engine `quiver-sq8`).

use crate::dataset::{SweepPoint, filter_sweep, read_ivecs, recall_at};
use quiver_client::vecfile::read_all;
use quiver_index::hnsw::{HnswParams, build, search_quantized};
use quiver_index::sq8::Sq8;
use quiver_index::{Metric, Neighbor, PointFilter, Vectors};
use serde_json::json;
use std::path::Path;
use std::time::Instant;

/// How the vectors are encoded for the walk, on top of the f32 sweep.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Quantize {
    /// 8-bit codes per dimension, per-dimension ranges.
    Int8,
}

/// Runs the benchmark and prints one JSON line per ef (and per ef again on codes with
/// `quantize`; the best QPS of `repeat` runs); with `filter_sweep`, then one line per filter share comparing graph search
/// under the filter with an exact scan of its bitmap.
#[allow(clippy::too_many_arguments)]
pub fn run(
    base: &Path,
    queries: &Path,
    gt: &Path,
    m: usize,
    ef_construction: usize,
    efs: &[usize],
    filter_sweep: bool,
    quantize: Option<Quantize>,
    repeat: usize,
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
    let filter = PointFilter::default();
    // One ef's run: QPS and recall@10 of `search` over every query.
    let measure = |search: &dyn Fn(&[f32]) -> Vec<Neighbor>| {
        let t = Instant::now();
        let results: Vec<Vec<Neighbor>> = qs.chunks_exact(dim).map(search).collect();
        let secs = t.elapsed().as_secs_f64();
        let mut recall = 0.0;
        for (r, tr) in results.iter().zip(&truth) {
            let ids: Vec<u32> = r.iter().map(|n| n.key).collect();
            recall += recall_at(10, &ids, tr);
        }
        let nq = results.len() as f64;
        (nq / secs, recall / nq)
    };
    let report = |engine: &str, build_s: f64, mem: usize, ef: usize, (qps, recall): (f64, f64)| {
        println!(
            "{}",
            json!({"engine": engine, "n": v.len(), "dim": dim, "m": m, "ef_construction": ef_construction,
                   "build_threads": threads, "build_s": build_s, "memory_bytes": mem,
                   "ef": ef, "qps_1_thread": qps, "recall_at_10": recall})
        );
    };
    let sq = quantize.map(|Quantize::Int8| {
        let t = Instant::now();
        let sq = Sq8::train(v, Metric::L2);
        (sq, t.elapsed().as_secs_f64())
    });
    // Each ef runs on the floats, then at once on the codes, `repeat` times alternating: the
    // two see the same load; the best QPS of the runs is kept (recall is the same every run).
    let best = |a: (f64, f64), b: (f64, f64)| if b.0 > a.0 { b } else { a };
    for &ef in efs {
        let (mut fl, mut co) = ((0.0, 0.0), (0.0, 0.0));
        for _ in 0..repeat.max(1) {
            fl = best(
                fl,
                measure(&|q| g.search(v, Metric::L2, q, 10, ef, &filter)),
            );
            if let Some((sq, _)) = &sq {
                co = best(
                    co,
                    measure(&|q| search_quantized(&g, sq, v, Metric::L2, q, 10, ef, ef, &filter)),
                );
            }
        }
        report("quiver", build_s, mem, ef, fl);
        if let Some((sq, encode_s)) = &sq {
            report(
                "quiver-sq8",
                build_s + encode_s,
                mem + sq.memory_bytes(),
                ef,
                co,
            );
        }
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
