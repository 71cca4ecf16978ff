//! Soak: writers (upserts, overwrites, deletes) and readers (filtered searches, gets, counts)
//! run together for a bounded time while flushes and compactions happen. No request may fail,
//! every writer reads its own writes, the final state equals each writer's model, and the
//! server's peak memory is reported. `QUIVER_SOAK_SECS` sets the duration (default 15).

use quiver_client::{Client, filter, num_id, pb};
use quiver_tests::{ServerProcess, temp_dir};
use rand::{Rng, SeedableRng, rngs::StdRng};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::{Duration, Instant};

const DIM: usize = 32;

fn point(id: u64, version: u64) -> pb::Point {
    let vector = (0..DIM)
        .map(|d| ((id * 13 + version * 7 + d as u64) % 89) as f32 / 9.0 + 0.1)
        .collect();
    pb::Point {
        id: Some(num_id(id)),
        vector,
        payload_json: json!({"v": version, "bucket": id % 4}).to_string(),
    }
}

fn id_of(p: &pb::PointId) -> u64 {
    match p.kind.as_ref().unwrap() {
        pb::point_id::Kind::Num(n) => *n,
        other => panic!("unexpected id {other:?}"),
    }
}

/// One writer over its own id range; returns its model (id → version).
async fn writer(mut c: Client, w: u64, until: Instant, seed: u64) -> HashMap<u64, u64> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut model: HashMap<u64, u64> = HashMap::new();
    let base = w * 1_000_000;
    let mut version = 0u64;
    while Instant::now() < until {
        version += 1;
        let roll: f64 = rng.random();
        if roll < 0.75 {
            let ids: Vec<u64> = (0..100)
                .map(|_| base + rng.random_range(0..20_000))
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            c.upsert("s", ids.iter().map(|i| point(*i, version)).collect())
                .await
                .unwrap();
            for i in ids {
                model.insert(i, version);
            }
        } else if !model.is_empty() {
            let ids: Vec<u64> = model.keys().take(20).copied().collect();
            let sel = pb::delete_request::Selector::Ids(pb::PointIdList {
                ids: ids.iter().map(|i| num_id(*i)).collect(),
            });
            c.points
                .delete(pb::DeleteRequest {
                    collection: "s".into(),
                    selector: Some(sel),
                })
                .await
                .unwrap();
            for i in ids {
                model.remove(&i);
            }
        }
        // Read your own writes.
        if let Some((&id, &v)) = model.iter().next() {
            let got = c
                .points
                .get(pb::GetRequest {
                    collection: "s".into(),
                    ids: vec![num_id(id)],
                    with_vector: true,
                    with_payload: true,
                })
                .await
                .unwrap()
                .into_inner()
                .records;
            assert_eq!(got.len(), 1, "writer {w}: own write of {id} not visible");
            assert_eq!(got[0].vector, point(id, v).vector, "writer {w}: point {id}");
        }
    }
    model
}

async fn reader(mut c: Client, until: Instant, seed: u64) -> u64 {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut n = 0;
    let f = filter::parse_str(r#"{"must":[{"key":"bucket","match":2}]}"#).unwrap();
    while Instant::now() < until {
        let q: Vec<f32> = (0..DIM).map(|_| rng.random_range(0.0..10.0)).collect();
        let hits = c
            .search(pb::SearchRequest {
                collection: "s".into(),
                vector: q,
                k: 20,
                filter: Some(f.clone()),
                with_payload: true,
                ..Default::default()
            })
            .await
            .unwrap();
        for w in hits.windows(2) {
            assert!(w[0].score <= w[1].score, "l2 results out of order");
        }
        for h in &hits {
            let p: Value = serde_json::from_str(&h.payload_json).unwrap_or(Value::Null);
            // A point deleted between the search and the payload read has no payload; any payload
            // present must pass the filter.
            assert!(p.is_null() || p["bucket"] == json!(2), "filter broken: {p}");
            assert_eq!(id_of(h.id.as_ref().unwrap()) % 4, 2);
        }
        c.count("s", None).await.unwrap();
        n += 1;
    }
    n
}

fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_readers_and_writers_with_flushes_and_compactions() {
    let secs: u64 = std::env::var("QUIVER_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(15);
    let dir = temp_dir("soak");
    let server = ServerProcess::start(&dir, &["--flush-threshold", "3000"]);
    let mut c = server.client().await;
    c.create_collection("s", DIM as u32, pb::Metric::L2)
        .await
        .unwrap();
    let req = pb::CreateFieldIndexRequest {
        collection: "s".into(),
        field: "bucket".into(),
        r#type: pb::FieldType::Keyword as i32,
        ..Default::default()
    };
    c.collections.create_field_index(req).await.unwrap();
    let until = Instant::now() + Duration::from_secs(secs);
    let writers: Vec<_> = (0..3)
        .map(|w| tokio::spawn(writer(c.clone(), w, until, 100 + w)))
        .collect();
    let readers: Vec<_> = (0..3)
        .map(|r| tokio::spawn(reader(c.clone(), until, 200 + r)))
        .collect();
    let mut compactor = c.clone();
    let compactions = tokio::spawn(async move {
        let mut n = 0;
        while Instant::now() < until {
            tokio::time::sleep(Duration::from_secs(2)).await;
            compactor
                .collections
                .compact(pb::CompactRequest { name: "s".into() })
                .await
                .unwrap();
            n += 1;
        }
        n
    });
    let mut models = Vec::new();
    for w in writers {
        models.push(w.await.unwrap());
    }
    let mut searches = 0;
    for r in readers {
        searches += r.await.unwrap();
    }
    let compactions = compactions.await.unwrap();
    // The final state is exactly the writers' models.
    let total: usize = models.iter().map(|m| m.len()).sum();
    assert_eq!(c.count("s", None).await.unwrap(), total as u64);
    for m in &models {
        let ids: Vec<u64> = m.keys().copied().collect();
        for chunk in ids.chunks(1000) {
            let req = pb::GetRequest {
                collection: "s".into(),
                ids: chunk.iter().map(|i| num_id(*i)).collect(),
                with_vector: true,
                with_payload: true,
            };
            let got = c.points.get(req).await.unwrap().into_inner().records;
            assert_eq!(got.len(), chunk.len());
            for r in got {
                let id = id_of(r.id.as_ref().unwrap());
                assert_eq!(r.vector, point(id, m[&id]).vector, "point {id}");
            }
        }
    }
    let info = c.describe("s").await.unwrap();
    let rss = peak_rss_kib(server.pid());
    println!(
        "soak {secs}s: {total} live points, {searches} filtered searches, {compactions} compactions asked, {} segments, peak RSS {} MiB",
        info.segments,
        rss / 1024
    );
    assert!(
        rss > 0 && rss < 2 * 1024 * 1024,
        "peak RSS {rss} KiB is out of bounds for {total} points"
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
