//! Durable upserts over gRPC into a new collection of a running server: `n` seeded random
//! vectors, or a vector file (.fvecs or .npy), in batches, `parallel` requests in flight;
//! reports vectors/s, batch latency, and the time from the last acknowledgement until the
//! collection is fully indexed (a Flush: the mutable segment written and its index built).
//! Ctrl-C stops sending new batches, waits for those in flight and reports what was written
//! (the count check is then against the acknowledged points).

use crate::report::{progress, stop_flag_set, table, thousands};
use crate::search::percentile;
use anyhow::Context;
use quiver_client::{Client, num_id, pb};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;
use tokio::task::JoinSet;

/// Options of a run.
pub struct Ingest<'a> {
    /// Server address.
    pub addr: &'a str,
    /// Points to write.
    pub n: usize,
    /// Their dimension.
    pub dim: usize,
    /// Points per request.
    pub batch: usize,
    /// Requests in flight at once.
    pub parallel: usize,
    /// Collection, dropped first (and at the end unless `keep`).
    pub collection: &'a str,
    /// Vectors from this file instead of random ones (`n` and `dim` come from it).
    pub base: Option<&'a std::path::Path>,
    /// Build an HNSW index (default parameters) rather than a flat one.
    pub hnsw: bool,
    /// Keep the collection afterwards (for a following `search`).
    pub keep: bool,
}

/// Runs the ingest and returns its report (also shown as a table on stderr).
pub async fn run(o: &Ingest<'_>, stop: Arc<AtomicBool>) -> anyhow::Result<Value> {
    let (data, n, dim) = match o.base {
        Some(path) => {
            let (data, dim) = quiver_client::vecfile::read_all(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let n = data.len() / dim.max(1);
            (data, n, dim)
        }
        None => (crate::random(3, o.n * o.dim), o.n, o.dim),
    };
    let (batch, collection) = (o.batch.max(1), o.collection);
    let mut client = Client::connect(o.addr).await?;
    let _ = client
        .collections
        .drop(pb::DropCollectionRequest {
            name: collection.into(),
        })
        .await;
    client
        .collections
        .create(pb::CreateCollectionRequest {
            name: collection.into(),
            dim: dim as u32,
            metric: pb::Metric::L2 as i32,
            durability: pb::Durability::Sync as i32,
            index: o.hnsw.then(|| pb::IndexSpec {
                kind: Some(pb::index_spec::Kind::Hnsw(pb::HnswIndexSpec::default())),
            }),
            ..Default::default()
        })
        .await
        .context("creating the collection")?;
    let batches: Vec<Vec<pb::Point>> = (0..n)
        .step_by(batch)
        .map(|s| {
            (s..(s + batch).min(n))
                .map(|i| pb::Point {
                    id: Some(num_id(i as u64)),
                    vector: data[i * dim..(i + 1) * dim].to_vec(),
                    payload_json: String::new(),
                })
                .collect()
        })
        .collect();
    let bar = progress(n as u64, "ingest");
    let t = Instant::now();
    let mut lat = Vec::new();
    let mut written = 0usize;
    let mut set: JoinSet<anyhow::Result<(f64, usize)>> = JoinSet::new();
    for b in batches {
        if stop_flag_set(&stop) {
            break;
        }
        while set.len() >= o.parallel.max(1) {
            let (l, c) = set.join_next().await.expect("not empty")??;
            lat.push(l);
            written += c;
            bar.inc(c as u64);
        }
        let mut c = client.clone();
        let coll = collection.to_string();
        set.spawn(async move {
            let s = Instant::now();
            let count = b.len();
            c.upsert(&coll, b).await?;
            Ok((s.elapsed().as_secs_f64(), count))
        });
    }
    while let Some(r) = set.join_next().await {
        let (l, c) = r??;
        lat.push(l);
        written += c;
        bar.inc(c as u64);
    }
    bar.finish_and_clear();
    let secs = t.elapsed().as_secs_f64();
    lat.sort_by(f64::total_cmp);
    let count = client.count(collection, None).await?;
    anyhow::ensure!(
        count == written as u64,
        "server holds {count} points, {written} were acknowledged"
    );
    // Until fully indexed: the rest of the mutable segment written and its index built.
    let t = Instant::now();
    let info = client
        .collections
        .flush(pb::FlushRequest {
            name: collection.into(),
        })
        .await?
        .into_inner();
    let indexed_s = t.elapsed().as_secs_f64();
    let report = json!({"bench": "ingest", "n": written, "requested": n, "dim": dim, "batch": batch,
           "index": if o.hnsw { "hnsw" } else { "flat" }, "indexed_s": indexed_s,
           "indexed_fraction": info.indexed_fraction,
           "parallel": o.parallel, "durability": "sync", "interrupted": stop_flag_set(&stop),
           "seconds": secs, "vectors_per_s": written as f64 / secs,
           "batch_ms_p50": percentile(&lat, 50.0) * 1e3,
           "batch_ms_p95": percentile(&lat, 95.0) * 1e3, "batch_ms_p99": percentile(&lat, 99.0) * 1e3});
    eprintln!(
        "{}",
        table(
            &[
                "points",
                "seconds",
                "vectors/s",
                "batch p50 ms",
                "batch p95 ms",
                "batch p99 ms",
                "then indexed in s"
            ],
            &[vec![
                thousands(written as f64),
                format!("{secs:.2}"),
                thousands(written as f64 / secs),
                format!("{:.2}", report["batch_ms_p50"].as_f64().unwrap_or(f64::NAN)),
                format!("{:.2}", report["batch_ms_p95"].as_f64().unwrap_or(f64::NAN)),
                format!("{:.2}", report["batch_ms_p99"].as_f64().unwrap_or(f64::NAN)),
                format!("{indexed_s:.2}"),
            ]]
        )
    );
    if !o.keep {
        client
            .collections
            .drop(pb::DropCollectionRequest {
                name: collection.into(),
            })
            .await?;
    }
    Ok(report)
}
