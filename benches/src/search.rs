//! gRPC search load. Closed loop (the default): `clients` concurrent clients send searches for
//! a fixed time after a warm-up, each taking queries in turn from a file, each sending its next
//! query when the last one returned. Open loop (`--rate`, in `openloop.rs`): searches leave on a
//! fixed schedule whatever the server does. Both report QPS, latency percentiles, errors by
//! status code and recall@k against the ground truth, as one JSON value and a table; Ctrl-C ends
//! the measured time early and the partial figures are still reported.

use crate::dataset::{read_ivecs, recall_at};
use crate::report::{progress, table, thousands};
use quiver_client::vecfile::read_all;
use quiver_client::{Client, pb};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The `p`-th percentile (0–100) of ascending `sorted` values, by nearest rank.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    // Less a hair, so that 99.9 % of 1000 is rank 999 and not 1000 by rounding (0.999 · 1000
    // is 999.0000000000001 in f64).
    let rank = ((p / 100.0) * sorted.len() as f64 - 1e-9).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// p50, p95, p99 and p99.9 of ascending `sorted` latencies, as JSON.
pub fn latency_json(sorted: &[f64]) -> Value {
    json!({"p50": percentile(sorted, 50.0), "p95": percentile(sorted, 95.0),
           "p99": percentile(sorted, 99.0), "p99.9": percentile(sorted, 99.9)})
}

/// What some requests saw.
#[derive(Default)]
pub struct Seen {
    /// Milliseconds of each answered request.
    pub latencies: Vec<f64>,
    /// Sum of recall@k over answered requests (with ground truth).
    pub recall_sum: f64,
    /// Answered requests.
    pub ok: u64,
    /// Failed requests by status code.
    pub errors: BTreeMap<String, u64>,
}

impl Seen {
    /// Adds another's counts to these.
    pub fn merge(&mut self, s: Seen) {
        self.latencies.extend(s.latencies);
        self.recall_sum += s.recall_sum;
        self.ok += s.ok;
        for (k, v) in s.errors {
            *self.errors.entry(k).or_default() += v;
        }
    }

    /// Counts one request's outcome.
    pub fn add(&mut self, o: Outcome) {
        match o.result {
            Ok(recall) => {
                self.latencies.push(o.latency_ms);
                self.ok += 1;
                self.recall_sum += recall.unwrap_or(0.0);
            }
            Err(code) => *self.errors.entry(code).or_default() += 1,
        }
    }
}

/// One request's latency and its recall (when there is ground truth), or its status code.
pub struct Outcome {
    /// Milliseconds from the send (closed loop) or the scheduled send (open loop).
    pub latency_ms: f64,
    /// Recall@k, or the error's status code.
    pub result: Result<Option<f64>, String>,
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
    /// IVF-PQ lists probed, 0 for the default.
    pub nprobe: u32,
    /// IVF-PQ candidates re-ranked exactly, 0 for the default.
    pub rerank: u32,
    /// Concurrent clients (closed loop) or connections (open loop).
    pub clients: usize,
    /// Measured time.
    pub duration: Duration,
    /// Unmeasured time first.
    pub warmup: Duration,
    /// Open loop: searches per second on a fixed schedule.
    pub rate: Option<f64>,
    /// Open loop: requests in flight at most; a send due while this many wait is dropped.
    pub max_in_flight: usize,
}

/// The queries and their ground truth, shared by the senders.
#[derive(Clone)]
pub struct Workload {
    /// One vector per query.
    pub queries: Arc<Vec<Vec<f32>>>,
    /// Top ids per query (row numbers of the imported base file).
    pub truth: Arc<Option<Vec<Vec<u32>>>>,
    /// Results per query.
    pub k: u32,
    /// The request, less its vector.
    pub template: pb::SearchRequest,
}

impl Workload {
    /// Sends query `qi` and measures it from `from`.
    pub async fn send(&self, client: &mut Client, qi: usize, from: Instant) -> Outcome {
        let req = pb::SearchRequest {
            vector: self.queries[qi].clone(),
            ..self.template.clone()
        };
        let r = client.points.search(req).await;
        let latency_ms = from.elapsed().as_secs_f64() * 1e3;
        let result = match r {
            Ok(resp) => Ok(self.truth.as_ref().as_ref().map(|tr| {
                let ids: Vec<u32> = resp
                    .into_inner()
                    .hits
                    .iter()
                    .filter_map(|h| match h.id.as_ref()?.kind.as_ref()? {
                        pb::point_id::Kind::Num(n) => Some(*n as u32),
                        _ => None,
                    })
                    .collect();
                recall_at(self.k as usize, &ids, &tr[qi])
            })),
            Err(s) => Err(format!("{:?}", s.code())),
        };
        Outcome { latency_ms, result }
    }
}

/// Runs the load and returns its report (printed by the caller); `stop` ends it early.
pub async fn run(o: &Load<'_>, stop: Arc<AtomicBool>) -> anyhow::Result<Value> {
    let (qs, dim) = read_all(o.queries)?;
    let work = Workload {
        queries: Arc::new(qs.chunks_exact(dim).map(|q| q.to_vec()).collect()),
        truth: Arc::new(match o.gt {
            Some(p) => Some(read_ivecs(p)?),
            None => None,
        }),
        k: o.k,
        template: pb::SearchRequest {
            collection: o.collection.to_string(),
            k: o.k,
            params: (o.ef > 0 || o.nprobe > 0).then_some(pb::SearchParams {
                ef: o.ef,
                nprobe: o.nprobe,
            }),
            rerank: o.rerank,
            ..Default::default()
        },
    };
    anyhow::ensure!(!work.queries.is_empty(), "no queries");
    if let Some(rate) = o.rate {
        return crate::openloop::run(o, rate, &work, stop).await;
    }
    let client = Client::connect(o.addr).await?;
    let start = Instant::now();
    let measure_from = start + o.warmup;
    let end = measure_from + o.duration;
    let ticker = tick_progress(start, end, stop.clone());
    let mut tasks = Vec::new();
    for c in 0..o.clients {
        let (mut client, work, stop) = (client.clone(), work.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut seen = Seen::default();
            let mut i = c;
            while Instant::now() < end && !stop.load(Ordering::Relaxed) {
                let qi = i % work.queries.len();
                i += 1;
                let t = Instant::now();
                let out = work.send(&mut client, qi, t).await;
                if t >= measure_from {
                    seen.add(out);
                }
            }
            seen
        }));
    }
    let mut all = Seen::default();
    for t in tasks {
        all.merge(t.await?);
    }
    ticker.abort();
    let stopped = Instant::now().min(end);
    let secs = stopped
        .saturating_duration_since(measure_from)
        .as_secs_f64();
    all.latencies.sort_by(f64::total_cmp);
    Ok(
        json!({"bench": "search", "mode": "closed-loop", "collection": o.collection,
              "clients": o.clients, "k": o.k, "ef": o.ef, "nprobe": o.nprobe, "rerank": o.rerank,
              "seconds": secs, "interrupted": stop.load(Ordering::SeqCst), "ok": all.ok,
              "qps": all.ok as f64 / secs.max(1e-9),
              "latency_ms": latency_json(&all.latencies), "errors": all.errors,
              "recall_at_k": work.truth.as_ref().as_ref().map(|_| all.recall_sum / all.ok.max(1) as f64)}),
    )
}

/// A progress bar over the run's seconds, until `end` or a stop.
pub fn tick_progress(
    start: Instant,
    end: Instant,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    let total = end.duration_since(start).as_secs().max(1);
    tokio::spawn(async move {
        let bar = progress(total, "searching");
        while Instant::now() < end && !stop.load(Ordering::Relaxed) {
            bar.set_position(start.elapsed().as_secs().min(total));
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        bar.finish_and_clear();
    })
}

/// The report as a table for people.
pub fn summary(r: &Value) -> String {
    let f = |v: &Value| v.as_f64().map_or("–".into(), |x| format!("{x:.2}"));
    let l = &r["latency_ms"];
    let target = r["target_qps"]
        .as_f64()
        .map_or("closed loop".into(), thousands);
    table(
        &[
            "target QPS",
            "clients",
            "QPS",
            "p50 ms",
            "p95 ms",
            "p99 ms",
            "p99.9 ms",
            "recall@k",
            "errors",
            "dropped",
        ],
        &[vec![
            target,
            r["clients"].to_string(),
            thousands(r["qps"].as_f64().unwrap_or(f64::NAN)),
            f(&l["p50"]),
            f(&l["p95"]),
            f(&l["p99"]),
            f(&l["p99.9"]),
            r["recall_at_k"]
                .as_f64()
                .map_or("–".into(), |x| format!("{x:.3}")),
            r["errors"]
                .as_object()
                .map_or(0, |m| m.values().filter_map(Value::as_u64).sum::<u64>())
                .to_string(),
            r["dropped"].as_u64().map_or("–".into(), |d| d.to_string()),
        ]],
    )
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

    #[test]
    fn percentiles_of_a_thousand() {
        // 1..=1000 ms: nearest rank puts p50 at 500, p95 at 950, p99 at 990, p99.9 at 999.
        let v: Vec<f64> = (1..=1000).map(f64::from).collect();
        let l = latency_json(&v);
        assert_eq!(l["p50"], 500.0);
        assert_eq!(l["p95"], 950.0);
        assert_eq!(l["p99"], 990.0);
        assert_eq!(l["p99.9"], 999.0);
    }

    #[test]
    fn seen_counts_outcomes() {
        let mut s = Seen::default();
        s.add(Outcome {
            latency_ms: 2.0,
            result: Ok(Some(0.5)),
        });
        s.add(Outcome {
            latency_ms: 9.0,
            result: Err("Unavailable".into()),
        });
        let mut t = Seen::default();
        t.add(Outcome {
            latency_ms: 1.0,
            result: Ok(Some(1.0)),
        });
        s.merge(t);
        assert_eq!((s.ok, s.recall_sum), (2, 1.5));
        assert_eq!(s.latencies, vec![2.0, 1.0]);
        assert_eq!(s.errors["Unavailable"], 1);
    }
}
