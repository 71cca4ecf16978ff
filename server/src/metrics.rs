//! Prometheus metrics, served as text on `GET /metrics` of a small HTTP listener.
//!
//! Per request: `quiver_requests_total{method,code}` and `quiver_request_duration_seconds{method}`.
//! Read at scrape time from storage: points, segments and disk bytes per collection, the WAL's
//! size, flush and compaction counts and durations, writes and the synced batches they were
//! grouped into.

use prometheus::{
    CounterVec, Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};
use quiver_storage::Storage;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::{Response, Status};

/// Every metric the server exports.
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    points: IntGaugeVec,
    segments: IntGaugeVec,
    disk_bytes: IntGaugeVec,
    indexed_fraction: GaugeVec,
    wal_bytes: IntGauge,
    flushes: IntCounter,
    compactions: IntCounter,
    writes: IntCounter,
    write_groups: IntCounter,
    seconds: CounterVec,
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Arc<Metrics> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "quiver_requests_total",
                "gRPC requests by method and status code",
            ),
            &["method", "code"],
        )
        .expect("valid metric");
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "quiver_request_duration_seconds",
                "gRPC request latency by method",
            )
            .buckets(prometheus::exponential_buckets(0.0001, 2.5, 14).expect("valid buckets")),
            &["method"],
        )
        .expect("valid metric");
        let gauge = |name: &str, help: &str| {
            IntGaugeVec::new(Opts::new(name, help), &["collection"]).expect("valid metric")
        };
        let points = gauge("quiver_points", "live points per collection");
        let segments = gauge("quiver_segments", "immutable segments per collection");
        let disk_bytes = gauge(
            "quiver_segment_bytes",
            "bytes of segment files per collection",
        );
        let indexed_fraction = GaugeVec::new(
            Opts::new(
                "quiver_indexed_fraction",
                "share of live points in immutable segments",
            ),
            &["collection"],
        )
        .expect("valid metric");
        let wal_bytes = IntGauge::new(
            "quiver_wal_bytes",
            "bytes held by the write-ahead log column family",
        )
        .expect("valid metric");
        let flushes =
            IntCounter::new("quiver_flushes_total", "segments flushed").expect("valid metric");
        let compactions =
            IntCounter::new("quiver_compactions_total", "compactions done").expect("valid metric");
        let writes = IntCounter::new(
            "quiver_writes_total",
            "writes committed to the write-ahead log",
        )
        .expect("valid metric");
        let write_groups = IntCounter::new(
            "quiver_write_groups_total",
            "synced RocksDB batches the writes were grouped into (group commit)",
        )
        .expect("valid metric");
        let seconds = CounterVec::new(
            Opts::new(
                "quiver_maintenance_seconds_total",
                "time spent in flush and compaction",
            ),
            &["task"],
        )
        .expect("valid metric");
        for c in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(latency.clone()),
            Box::new(points.clone()),
            Box::new(segments.clone()),
            Box::new(disk_bytes.clone()),
            Box::new(indexed_fraction.clone()),
            Box::new(wal_bytes.clone()),
            Box::new(flushes.clone()),
            Box::new(compactions.clone()),
            Box::new(writes.clone()),
            Box::new(write_groups.clone()),
            Box::new(seconds.clone()),
        ] {
            registry.register(c).expect("names are unique");
        }
        Arc::new(Metrics {
            registry,
            requests,
            latency,
            points,
            segments,
            disk_bytes,
            indexed_fraction,
            wal_bytes,
            flushes,
            compactions,
            writes,
            write_groups,
            seconds,
        })
    }

    /// Adds collectors owned elsewhere (e.g. the embedding worker's) to the exported set.
    pub fn register(&self, collectors: Vec<Box<dyn prometheus::core::Collector>>) {
        for c in collectors {
            self.registry.register(c).expect("names are unique");
        }
    }

    /// Runs a handler, counting it by method and status and timing it.
    pub async fn observe<T>(
        &self,
        method: &'static str,
        handler: impl Future<Output = Result<Response<T>, Status>>,
    ) -> Result<Response<T>, Status> {
        let t = Instant::now();
        let r = handler.await;
        let code = match &r {
            Ok(_) => tonic::Code::Ok,
            Err(s) => s.code(),
        };
        self.requests
            .with_label_values(&[method, &format!("{code:?}")])
            .inc();
        self.latency
            .with_label_values(&[method])
            .observe(t.elapsed().as_secs_f64());
        r
    }

    /// The text exposition, after refreshing the storage figures.
    pub fn render(&self, storage: &Storage) -> String {
        self.points.reset();
        self.segments.reset();
        self.disk_bytes.reset();
        self.indexed_fraction.reset();
        for c in storage.collections() {
            let name = c.name();
            let st = c.stats();
            self.points
                .with_label_values(&[&name])
                .set(st.points as i64);
            self.segments
                .with_label_values(&[&name])
                .set(st.segments as i64);
            self.disk_bytes
                .with_label_values(&[&name])
                .set(st.disk_bytes as i64);
            self.indexed_fraction
                .with_label_values(&[&name])
                .set(st.indexed_fraction);
        }
        self.wal_bytes.set(storage.db().wal_bytes() as i64);
        let s = &storage.stats;
        let catch_up = |c: &IntCounter, v: u64| c.inc_by(v.saturating_sub(c.get()));
        catch_up(&self.flushes, s.flushes.load(Ordering::Relaxed));
        catch_up(&self.compactions, s.compactions.load(Ordering::Relaxed));
        catch_up(&self.writes, s.writes.load(Ordering::Relaxed));
        catch_up(&self.write_groups, s.write_groups.load(Ordering::Relaxed));
        for (task, micros) in [
            ("flush", &s.flush_micros),
            ("compaction", &s.compaction_micros),
        ] {
            let c = self.seconds.with_label_values(&[task]);
            let total = micros.load(Ordering::Relaxed) as f64 / 1e6;
            c.inc_by((total - c.get()).max(0.0));
        }
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding cannot fail");
        String::from_utf8(out).expect("exposition is UTF-8")
    }
}

/// Serves `GET /metrics` (HTTP/1.1, one request per connection) until the process ends.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    storage: Arc<Storage>,
) {
    loop {
        let Ok((mut sock, _)) = listener.accept().await else {
            continue;
        };
        let (metrics, storage) = (metrics.clone(), storage.clone());
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            let n =
                match tokio::time::timeout(std::time::Duration::from_secs(5), sock.read(&mut buf))
                    .await
                {
                    Ok(Ok(n)) => n,
                    _ => return,
                };
            let head = String::from_utf8_lossy(&buf[..n]);
            let (status, body) = if head.starts_with("GET /metrics") {
                let storage = storage.clone();
                let body = tokio::task::spawn_blocking(move || metrics.render(&storage))
                    .await
                    .unwrap_or_default();
                ("200 OK", body)
            } else {
                ("404 Not Found", "try /metrics\n".to_string())
            };
            let resp = format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(resp.as_bytes()).await;
        });
    }
}

/// Binds the metrics listener.
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}
