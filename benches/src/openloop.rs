//! Open-loop (fixed-rate) search load: search `i` is due at `start + i / rate`, whether or not
//! earlier ones have returned, so a slow server meets the queue a real arrival process would
//! build instead of slowing the senders down (no coordinated omission). Latency runs from the
//! *scheduled* send time, so time spent waiting behind the scheduler or the in-flight cap counts.
//!
//! Bounds: the schedule ends at the end of the measured time (or at Ctrl-C); at most
//! `max_in_flight` requests wait at once, and a search that falls due while they all wait is
//! *dropped* (counted, not sent); a search sent more than [`LATE_MS`] after its due time is
//! counted *late* (tokio's timer has 1 ms ticks, so a few sends share a tick at high rates);
//! in-flight requests get [`DRAIN`] to finish after the schedule ends, and any still waiting
//! then are counted *unfinished*.

use crate::report::stop_flag_set;
use crate::search::{Load, Seen, Workload, latency_json, tick_progress};
use quiver_client::Client;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// A send this many milliseconds behind its due time is late.
pub const LATE_MS: f64 = 2.0;

/// How long requests still in flight at the end of the schedule may take.
pub const DRAIN: Duration = Duration::from_secs(10);

/// The due time of search `i` at `rate` per second from `start`.
pub fn due(start: Instant, rate: f64, i: u64) -> Instant {
    start + Duration::from_secs_f64(i as f64 / rate)
}

/// Runs `work` at `rate` searches per second and returns the report.
pub async fn run(
    o: &Load<'_>,
    rate: f64,
    work: &Workload,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<Value> {
    anyhow::ensure!(
        rate.is_finite() && rate > 0.0,
        "--rate must be above 0, got {rate}"
    );
    let mut clients = Vec::new();
    for _ in 0..o.clients.max(1) {
        clients.push(Client::connect(o.addr).await?);
    }
    let in_flight = Arc::new(Semaphore::new(o.max_in_flight.max(1)));
    let start = Instant::now() + Duration::from_millis(20);
    let measure_from = start + o.warmup;
    let end = measure_from + o.duration;
    let ticker = tick_progress(start, end, stop.clone());
    let mut set: JoinSet<(bool, crate::search::Outcome)> = JoinSet::new();
    let mut seen = Seen::default();
    let (mut sent, mut dropped, mut late) = (0u64, 0u64, 0u64);
    let mut lags = Vec::new();
    let mut stopped_at = end;
    for i in 0u64.. {
        let at = due(start, rate, i);
        if at >= end {
            break;
        }
        // Sleep in short slices so that Ctrl-C is seen even at very low rates.
        loop {
            let now = Instant::now();
            if now >= at || stop_flag_set(&stop) {
                break;
            }
            tokio::time::sleep((at - now).min(Duration::from_millis(50))).await;
        }
        if stop_flag_set(&stop) {
            stopped_at = Instant::now().min(end);
            break;
        }
        while let Some(r) = set.try_join_next() {
            let (measured, out) = r?;
            if measured {
                seen.add(out);
            }
        }
        let measured = at >= measure_from;
        let Ok(permit) = in_flight.clone().try_acquire_owned() else {
            dropped += u64::from(measured);
            continue;
        };
        let lag_ms = at.elapsed().as_secs_f64() * 1e3;
        if measured {
            sent += 1;
            late += u64::from(lag_ms > LATE_MS);
            lags.push(lag_ms);
        }
        let (work, mut client) = (work.clone(), clients[i as usize % clients.len()].clone());
        let qi = i as usize % work.queries.len();
        set.spawn(async move {
            let out = work.send(&mut client, qi, at).await;
            drop(permit);
            (measured, out)
        });
    }
    ticker.abort();
    let drain_until = tokio::time::Instant::now() + DRAIN;
    let mut unfinished = 0;
    loop {
        match tokio::time::timeout_at(drain_until, set.join_next()).await {
            Ok(Some(r)) => {
                let (measured, out) = r?;
                if measured {
                    seen.add(out);
                }
            }
            Ok(None) => break,
            Err(_) => {
                unfinished = set.len();
                set.abort_all();
                break;
            }
        }
    }
    let secs = stopped_at
        .saturating_duration_since(measure_from)
        .as_secs_f64();
    seen.latencies.sort_by(f64::total_cmp);
    lags.sort_by(f64::total_cmp);
    let done = seen.ok + seen.errors.values().sum::<u64>();
    Ok(
        json!({"bench": "search", "mode": "open-loop", "collection": o.collection,
              "target_qps": rate, "clients": clients.len(), "max_in_flight": o.max_in_flight,
              "k": o.k, "ef": o.ef, "nprobe": o.nprobe, "rerank": o.rerank,
              "seconds": secs, "interrupted": stop_flag_set(&stop),
              "sent": sent, "dropped": dropped, "late": late, "unfinished": unfinished,
              "ok": seen.ok, "qps": seen.ok as f64 / secs.max(1e-9),
              "completed_per_s": done as f64 / secs.max(1e-9),
              "send_lag_ms": {"p50": crate::search::percentile(&lags, 50.0), "p99": crate::search::percentile(&lags, 99.0)},
              "latency_ms": latency_json(&seen.latencies), "errors": seen.errors,
              "recall_at_k": work.truth.as_ref().as_ref().map(|_| seen.recall_sum / seen.ok.max(1) as f64)}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_is_fixed_by_rate_alone() {
        let s = Instant::now();
        assert_eq!(due(s, 1000.0, 0), s);
        assert_eq!(due(s, 1000.0, 1500) - s, Duration::from_millis(1500));
        assert_eq!(due(s, 4.0, 3) - s, Duration::from_millis(750));
    }
}
