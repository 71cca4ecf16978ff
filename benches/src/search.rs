//! gRPC search load: `clients` concurrent clients send searches for a fixed time after a
//! warm-up, each taking queries in turn from a file; reports QPS, latency percentiles, errors by
//! status code and recall@k against the ground truth.

use crate::dataset::{read_ivecs, recall_at};
use quiver_client::vecfile::read_all;
use quiver_client::{Client, pb};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The `p`-th percentile (0–100) of ascending `sorted` values, by nearest rank.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// What one client saw.
#[derive(Default)]
struct Seen {
    latencies: Vec<f64>,
    recall_sum: f64,
    ok: u64,
    errors: BTreeMap<String, u64>,
}

/// Options of a run.
pub struct Load<'a> {
    /// Server address.
    pub addr: &'a str,
    /// Collection to search.
    pub collection: &'a str,
    /// Query vectors (.fvecs or .npy).
    pub queries: &'a Path,
    /// Ground truth (.ivecs), optional.
    pub gt: Option<&'a Path>,
    /// Results per query.
    pub k: u32,
    /// HNSW beam, 0 for the default.
    pub ef: u32,
    /// Concurrent clients.
    pub clients: usize,
    /// Measured time.
    pub duration: Duration,
    /// Unmeasured time first.
    pub warmup: Duration,
}

/// Runs the load and prints one JSON line.
pub async fn run(o: Load<'_>) -> anyhow::Result<()> {
    let (qs, dim) = read_all(o.queries)?;
    let queries: Arc<Vec<Vec<f32>>> = Arc::new(qs.chunks_exact(dim).map(|q| q.to_vec()).collect());
    let truth = Arc::new(match o.gt {
        Some(p) => Some(read_ivecs(p)?),
        None => None,
    });
    let client = Client::connect(o.addr).await?;
    let start = Instant::now();
    let measure_from = start + o.warmup;
    let end = measure_from + o.duration;
    let mut tasks = Vec::new();
    for c in 0..o.clients {
        let (mut client, queries, truth) = (client.clone(), queries.clone(), truth.clone());
        let (collection, k, ef) = (o.collection.to_string(), o.k, o.ef);
        tasks.push(tokio::spawn(async move {
            let mut seen = Seen::default();
            let mut i = c;
            while Instant::now() < end {
                let qi = i % queries.len();
                i += 1;
                let req = pb::SearchRequest {
                    collection: collection.clone(),
                    vector: queries[qi].clone(),
                    k,
                    params: (ef > 0).then_some(pb::SearchParams { ef, nprobe: 0 }),
                    ..Default::default()
                };
                let t = Instant::now();
                let r = client.points.search(req).await;
                let measured = t >= measure_from;
                match r {
                    Ok(resp) if measured => {
                        seen.latencies.push(t.elapsed().as_secs_f64() * 1e3);
                        seen.ok += 1;
                        if let Some(tr) = truth.as_ref() {
                            let ids: Vec<u32> = resp
                                .into_inner()
                                .hits
                                .iter()
                                .filter_map(|h| match h.id.as_ref()?.kind.as_ref()? {
                                    pb::point_id::Kind::Num(n) => Some(*n as u32),
                                    _ => None,
                                })
                                .collect();
                            seen.recall_sum += recall_at(k as usize, &ids, &tr[qi]);
                        }
                    }
                    Ok(_) => {}
                    Err(s) if measured => {
                        *seen.errors.entry(format!("{:?}", s.code())).or_default() += 1
                    }
                    Err(_) => {}
                }
            }
            seen
        }));
    }
    let mut all = Seen::default();
    for t in tasks {
        let s = t.await?;
        all.latencies.extend(s.latencies);
        all.recall_sum += s.recall_sum;
        all.ok += s.ok;
        for (k, v) in s.errors {
            *all.errors.entry(k).or_default() += v;
        }
    }
    all.latencies.sort_by(f64::total_cmp);
    let l = &all.latencies;
    println!(
        "{}",
        json!({"bench": "search", "collection": o.collection, "clients": o.clients, "k": o.k, "ef": o.ef,
               "seconds": o.duration.as_secs_f64(), "ok": all.ok, "qps": all.ok as f64 / o.duration.as_secs_f64(),
               "latency_ms": {"p50": percentile(l, 50.0), "p95": percentile(l, 95.0), "p99": percentile(l, 99.0), "p99.9": percentile(l, 99.9)},
               "errors": all.errors,
               "recall_at_k": truth.as_ref().as_ref().map(|_| all.recall_sum / all.ok.max(1) as f64)})
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_hand() {
        let v: Vec<f64> = (1..=10).map(|x| x as f64).collect();
        assert_eq!(percentile(&v, 50.0), 5.0);
        assert_eq!(percentile(&v, 90.0), 9.0);
        assert_eq!(percentile(&v, 99.0), 10.0);
        assert_eq!(percentile(&v, 0.0), 1.0);
        assert_eq!(percentile(&[7.0], 99.9), 7.0);
        assert!(percentile(&[], 50.0).is_nan());
    }
}
