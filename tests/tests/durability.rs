//! Restart and crash: a clean stop and start keeps everything (segments flushed and reopened),
//! and after SIGKILL in the middle of a stream of upserts every acknowledged point is back with
//! its exact vector and payload, and no batch is half there.

use quiver_client::{Client, num_id, pb};
use quiver_tests::{ServerProcess, temp_dir, vectors};
use rand::{Rng, SeedableRng, rngs::StdRng};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const DIM: usize = 16;

fn num(id: &pb::PointId) -> u64 {
    match id.kind.as_ref().unwrap() {
        pb::point_id::Kind::Num(n) => *n,
        other => panic!("unexpected id {other:?}"),
    }
}

/// Reads these ids back: id → (vector, payload JSON).
async fn fetch(
    client: &mut Client,
    collection: &str,
    ids: &[u64],
) -> HashMap<u64, (Vec<f32>, Value)> {
    let mut out = HashMap::new();
    for chunk in ids.chunks(1000) {
        let req = pb::GetRequest {
            collection: collection.into(),
            ids: chunk.iter().map(|i| num_id(*i)).collect(),
            with_vector: true,
            with_payload: true,
        };
        for r in client.points.get(req).await.unwrap().into_inner().records {
            out.insert(
                num(r.id.as_ref().unwrap()),
                (r.vector, serde_json::from_str(&r.payload_json).unwrap()),
            );
        }
    }
    out
}

#[tokio::test]
async fn clean_restart_keeps_everything_and_reopens_segments() {
    let dir = temp_dir("restart");
    let data = vectors(3, 5000, DIM);
    let mut server = ServerProcess::start(&dir, &["--flush-threshold", "1000"]);
    let mut client = server.client().await;
    client
        .create_collection("r", DIM as u32, pb::Metric::L2)
        .await
        .unwrap();
    for start in (0..5000).step_by(500) {
        let points = (start..start + 500)
            .map(|i| pb::Point {
                id: Some(num_id(i as u64)),
                vector: data[i].clone(),
                payload_json: json!({"i": i}).to_string(),
            })
            .collect();
        client.upsert("r", points).await.unwrap();
    }
    let q = pb::SearchRequest {
        collection: "r".into(),
        vector: data[17].clone(),
        k: 20,
        ..Default::default()
    };
    let before = client.search(q.clone()).await.unwrap();
    server.stop();

    let server = ServerProcess::start(&dir, &["--flush-threshold", "1000"]);
    let mut client = server.client().await;
    let info = client.describe("r").await.unwrap();
    assert_eq!(info.points, 5000);
    assert!(
        info.segments >= 1 && info.unflushed_points == 0,
        "segments were flushed before the stop: {info:?}"
    );
    assert!(info.disk_bytes > (5000 * DIM * 4) as u64 * 4 / 5);
    assert!(server.logs().contains("recovered"), "{}", server.logs());
    let ids: Vec<u64> = (0..5000).collect();
    let got = fetch(&mut client, "r", &ids).await;
    assert_eq!(got.len(), 5000);
    for (i, (v, p)) in &got {
        assert_eq!(v, &data[*i as usize]);
        assert_eq!(p, &json!({"i": i}));
    }
    assert_eq!(client.search(q).await.unwrap(), before);
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

/// One writer's log: batches acknowledged, and the batch that was in flight when the server died.
#[derive(Default)]
struct WriterLog {
    acked: Vec<Vec<u64>>,
    in_flight: Option<Vec<u64>>,
}

fn point_for(id: u64) -> pb::Point {
    // The vector and payload are a function of the id, so the check needs no stored copy.
    let vector = (0..DIM)
        .map(|d| ((id * 31 + d as u64) % 1000) as f32 / 7.0 + 0.5)
        .collect();
    pb::Point {
        id: Some(num_id(id)),
        vector,
        payload_json: json!({"id": id, "w": id / 1_000_000}).to_string(),
    }
}

#[tokio::test]
async fn sigkill_during_upserts_loses_no_acknowledged_write() {
    let rounds: usize = std::env::var("QUIVER_CRASH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let dir = temp_dir("crash");
    let mut rng = StdRng::seed_from_u64(42);
    let mut all_acked: Vec<u64> = Vec::new();
    let mut next_id = [0u64; 4];
    for round in 0..rounds {
        let mut server = ServerProcess::start(&dir, &["--flush-threshold", "700"]);
        let mut client = server.client().await;
        if round == 0 {
            client
                .create_collection("c", DIM as u32, pb::Metric::Cosine)
                .await
                .unwrap();
        }
        // Everything acknowledged in earlier rounds is still there.
        let got = fetch(&mut client, "c", &all_acked).await;
        for id in &all_acked {
            let (v, p) = got
                .get(id)
                .unwrap_or_else(|| panic!("round {round}: acknowledged point {id} is missing"));
            let want = point_for(*id);
            assert_eq!(v, &want.vector, "point {id}");
            assert_eq!(
                p,
                &serde_json::from_str::<Value>(&want.payload_json).unwrap()
            );
        }
        let logs: Vec<Arc<Mutex<WriterLog>>> = (0..4).map(|_| Arc::default()).collect();
        let mut tasks = Vec::new();
        for w in 0..4usize {
            let (mut c, log) = (client.clone(), logs[w].clone());
            let start = next_id[w];
            tasks.push(tokio::spawn(async move {
                let mut id = (w as u64) * 1_000_000 + start;
                loop {
                    let ids: Vec<u64> = (id..id + 50).collect();
                    id += 50;
                    log.lock().unwrap().in_flight = Some(ids.clone());
                    let points = ids.iter().map(|i| point_for(*i)).collect();
                    if c.upsert("c", points).await.is_err() {
                        return;
                    }
                    let mut l = log.lock().unwrap();
                    l.in_flight = None;
                    l.acked.push(ids);
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(300..1500))).await;
        server.kill9();
        for t in tasks {
            let _ = tokio::time::timeout(Duration::from_secs(30), t).await;
        }
        let server = ServerProcess::start(&dir, &["--flush-threshold", "700"]);
        let mut client = server.client().await;
        for (w, log) in logs.iter().enumerate() {
            let l = log.lock().unwrap();
            let acked: Vec<u64> = l.acked.iter().flatten().copied().collect();
            all_acked.extend(&acked);
            if let Some(last) = l.acked.last() {
                next_id[w] = last.last().unwrap() % 1_000_000 + 1;
            }
            if let Some(batch) = &l.in_flight {
                // All or nothing.
                let got = fetch(&mut client, "c", batch).await;
                assert!(
                    got.is_empty() || got.len() == batch.len(),
                    "round {round}: batch half applied ({} of {})",
                    got.len(),
                    batch.len()
                );
                next_id[w] = batch.last().unwrap() % 1_000_000 + 1;
                if got.len() == batch.len() {
                    all_acked.extend(batch);
                }
            }
        }
        assert!(
            !all_acked.is_empty(),
            "no write was acknowledged before the kill"
        );
        let got = fetch(&mut client, "c", &all_acked).await;
        assert_eq!(
            got.len(),
            all_acked.len(),
            "round {round}: acknowledged points missing after SIGKILL"
        );
        drop(server);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
