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
    // 5,000 points go to segments through an explicit flush; 300 more stay in the WAL only
    // (below the flush threshold), so the restart reopens segments and replays the log.
    let data = vectors(3, 5300, DIM);
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
    client
        .collections
        .flush(pb::FlushRequest { name: "r".into() })
        .await
        .unwrap();
    let tail = (5000..5300)
        .map(|i| pb::Point {
            id: Some(num_id(i as u64)),
            vector: data[i].clone(),
            payload_json: json!({"i": i}).to_string(),
        })
        .collect();
    client.upsert("r", tail).await.unwrap();
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
    assert_eq!(info.points, 5300);
    assert!(
        info.segments >= 1 && info.unflushed_points == 300,
        "5,000 points in segments and 300 replayed from the log: {info:?}"
    );
    assert!(info.disk_bytes > (5000 * DIM * 4) as u64 * 4 / 5);
    assert!(server.logs().contains("recovered"), "{}", server.logs());
    let ids: Vec<u64> = (0..5300).collect();
    let got = fetch(&mut client, "r", &ids).await;
    assert_eq!(got.len(), 5300);
    for (i, (v, p)) in &got {
        assert_eq!(v, &data[*i as usize]);
        assert_eq!(p, &json!({"i": i}));
    }
    assert_eq!(client.search(q).await.unwrap(), before);
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

/// What one writer did: operations acknowledged, and the one in flight when the server died.
#[derive(Default)]
struct WriterLog {
    /// Ids whose upsert was acknowledged and that no acknowledged delete removed since.
    present: Vec<u64>,
    /// Ids whose delete was acknowledged.
    deleted: Vec<u64>,
    in_flight: Option<InFlight>,
    next: u64,
}

#[derive(Clone)]
enum InFlight {
    Upsert(Vec<u64>),
    Delete(Vec<u64>),
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

/// One writer: batches of 50 new points, and now and then a delete of 10 of its own points.
async fn writer(mut c: Client, w: u64, log: Arc<Mutex<WriterLog>>, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    loop {
        let op = {
            let mut l = log.lock().unwrap();
            let op = if l.present.len() >= 10 && rng.random_bool(0.25) {
                let at = rng.random_range(0..=l.present.len() - 10);
                InFlight::Delete(l.present[at..at + 10].to_vec())
            } else {
                let start = w * 1_000_000 + l.next;
                l.next += 50;
                InFlight::Upsert((start..start + 50).collect())
            };
            l.in_flight = Some(op.clone());
            op
        };
        let ok = match &op {
            InFlight::Upsert(ids) => c
                .upsert("c", ids.iter().map(|i| point_for(*i)).collect())
                .await
                .is_ok(),
            InFlight::Delete(ids) => {
                let sel = pb::delete_request::Selector::Ids(pb::PointIdList {
                    ids: ids.iter().map(|i| num_id(*i)).collect(),
                });
                c.points
                    .delete(pb::DeleteRequest {
                        collection: "c".into(),
                        selector: Some(sel),
                    })
                    .await
                    .is_ok()
            }
        };
        if !ok {
            return;
        }
        let mut l = log.lock().unwrap();
        l.in_flight = None;
        match op {
            InFlight::Upsert(ids) => l.present.extend(ids),
            InFlight::Delete(ids) => {
                l.present.retain(|i| !ids.contains(i));
                l.deleted.extend(ids);
            }
        }
    }
}

/// Several clients upsert and delete while the server is killed with SIGKILL at random moments
/// (flushes every 700 points and compactions make those moments land inside them too). After
/// each restart: every acknowledged upsert is there with its exact vector and payload, every
/// acknowledged delete stays deleted, and the operation in flight is all there or not at all.
/// `QUIVER_CRASH_ROUNDS` sets the rounds (default 20), `QUIVER_CRASH_SEED` the seed.
#[tokio::test]
async fn sigkill_during_writes_loses_no_acknowledged_write() {
    let rounds: usize = std::env::var("QUIVER_CRASH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let seed: u64 = std::env::var("QUIVER_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(42);
    let dir = temp_dir("crash");
    let mut rng = StdRng::seed_from_u64(seed);
    let logs: Vec<Arc<Mutex<WriterLog>>> = (0..4).map(|_| Arc::default()).collect();
    let args = ["--flush-threshold", "700"];
    for round in 0..rounds {
        let mut server = ServerProcess::start(&dir, &args);
        let mut client = server.client().await;
        if round == 0 {
            client
                .create_collection("c", DIM as u32, pb::Metric::Cosine)
                .await
                .unwrap();
        }
        let mut tasks = Vec::new();
        for (w, log) in logs.iter().enumerate() {
            tasks.push(tokio::spawn(writer(
                client.clone(),
                w as u64,
                log.clone(),
                rng.random(),
            )));
        }
        // Compactions while writing, so that some kills land inside one.
        let mut compactor = client.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(150)).await;
                if compactor
                    .collections
                    .compact(pb::CompactRequest { name: "c".into() })
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }));
        tokio::time::sleep(Duration::from_millis(rng.random_range(200..1200))).await;
        server.kill9();
        for t in tasks {
            let _ = tokio::time::timeout(Duration::from_secs(30), t).await;
        }

        let server = ServerProcess::start(&dir, &args);
        let mut client = server.client().await;
        let mut acked_present = 0;
        for log in &logs {
            let mut l = log.lock().unwrap();
            // The operation in flight at the kill may or may not have happened, but not in part.
            match l.in_flight.take() {
                Some(InFlight::Upsert(ids)) => {
                    let got = fetch(&mut client, "c", &ids).await;
                    assert!(
                        got.is_empty() || got.len() == ids.len(),
                        "round {round}: upsert half applied ({} of {})",
                        got.len(),
                        ids.len()
                    );
                    if got.len() == ids.len() {
                        l.present.extend(ids);
                    }
                }
                Some(InFlight::Delete(ids)) => {
                    let got = fetch(&mut client, "c", &ids).await;
                    assert!(
                        got.is_empty() || got.len() == ids.len(),
                        "round {round}: delete half applied ({} of {} left)",
                        got.len(),
                        ids.len()
                    );
                    if got.is_empty() {
                        l.present.retain(|i| !ids.contains(i));
                        l.deleted.extend(ids);
                    }
                }
                None => {}
            }
            let present = fetch(&mut client, "c", &l.present).await;
            for id in &l.present {
                let (v, p) = present
                    .get(id)
                    .unwrap_or_else(|| panic!("round {round}: acknowledged point {id} is missing"));
                let want = point_for(*id);
                assert_eq!(v, &want.vector, "round {round}: point {id}");
                assert_eq!(
                    p,
                    &serde_json::from_str::<Value>(&want.payload_json).unwrap()
                );
            }
            acked_present += l.present.len();
            let gone = fetch(&mut client, "c", &l.deleted).await;
            assert!(
                gone.is_empty(),
                "round {round}: acknowledged deletes came back: {:?}",
                gone.keys().collect::<Vec<_>>()
            );
        }
        assert_eq!(
            client.count("c", None).await.unwrap(),
            logs.iter()
                .map(|l| l.lock().unwrap().present.len() as u64)
                .sum::<u64>(),
            "round {round}: stray points"
        );
        assert!(
            acked_present > 0 || round > 0,
            "no write was acknowledged before the first kill"
        );
        drop(server);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
