//! IVF-PQ collections through the server: recall@10 against brute force computed here, on
//! 20,000 clustered vectors at the default nprobe and rerank, under a filter, with 30% deleted;
//! a segment too small to train is searched exactly and counted; the index is read back, not
//! retrained, after a restart; nprobe on a flat collection is ignored; a damaged `ivfpq.bin`
//! refuses the collection with DATA_LOSS naming the file.

use quiver_client::{Client, filter, num_id, pb};
use quiver_tests::{ServerProcess, distance, embedding_like, temp_dir};
use serde_json::json;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use tonic::Code;

const N: usize = 20_000;
const DIM: usize = 64;
const NLIST: u32 = 128;

/// The ids of the 10 points of `data` nearest to `q` among those `keep` admits.
fn brute_force(data: &[Vec<f32>], q: &[f32], keep: impl Fn(u64) -> bool) -> Vec<u64> {
    let mut all: Vec<(f64, u64)> = data
        .iter()
        .enumerate()
        .filter(|(i, _)| keep(*i as u64))
        .map(|(i, v)| (distance("l2", q, v), i as u64))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    all.into_iter().take(10).map(|(_, i)| i).collect()
}

fn num(id: Option<&pb::PointId>) -> u64 {
    match id.and_then(|p| p.kind.as_ref()) {
        Some(pb::point_id::Kind::Num(n)) => *n,
        other => panic!("numeric id expected, got {other:?}"),
    }
}

fn request(q: &[f32], f: Option<pb::Filter>, nprobe: u32, rerank: u32) -> pb::SearchRequest {
    pb::SearchRequest {
        collection: "v".into(),
        vector: q.to_vec(),
        k: 10,
        filter: f,
        params: Some(pb::SearchParams { ef: 0, nprobe }),
        rerank,
        ..Default::default()
    }
}

/// Recall@10 of the server's answers (`knobs`: nprobe and rerank, 0 for the defaults) against
/// brute force over the points `keep` admits.
async fn recall(
    c: &mut Client,
    data: &[Vec<f32>],
    queries: &[Vec<f32>],
    f: Option<pb::Filter>,
    keep: impl Fn(u64) -> bool + Copy,
    knobs: (u32, u32),
) -> f64 {
    let (mut hit, mut total) = (0usize, 0usize);
    for q in queries {
        let truth = brute_force(data, q, keep);
        let got = c
            .search(request(q, f.clone(), knobs.0, knobs.1))
            .await
            .unwrap();
        assert!(got.iter().all(|h| keep(num(h.id.as_ref()))), "filter held");
        hit += got
            .iter()
            .filter(|h| truth.contains(&num(h.id.as_ref())))
            .count();
        total += truth.len();
    }
    hit as f64 / total as f64
}

/// Every `(id, score)` answered for these queries at fixed knobs.
async fn answers(c: &mut Client, queries: &[Vec<f32>]) -> Vec<Vec<(u64, f32)>> {
    let mut out = Vec::new();
    for q in queries {
        let hits = c.search(request(q, None, 8, 20)).await.unwrap();
        out.push(hits.iter().map(|h| (num(h.id.as_ref()), h.score)).collect());
    }
    out
}

/// The `ivfpq.bin` files under a data folder.
fn ivfpq_files(data: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![data.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().is_some_and(|n| n == "ivfpq.bin") {
                found.push(p);
            }
        }
    }
    found
}

async fn upsert_range(c: &mut Client, data: &[Vec<f32>], from: usize) {
    for (b, chunk) in data.chunks(2000).enumerate() {
        let points = chunk
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let id = from + b * 2000 + i;
                pb::Point {
                    id: Some(num_id(id as u64)),
                    vector: v.clone(),
                    payload_json: json!({"third": id % 3 == 0, "one_percent": id % 100 == 0})
                        .to_string(),
                }
            })
            .collect();
        c.upsert("v", points).await.unwrap();
    }
}

#[tokio::test]
async fn ivfpq_recall_filters_deletions_restart_and_damage() {
    let dir = temp_dir("ivfpq");
    let args = ["--flush-threshold", "100000"];
    let mut server = ServerProcess::start(&dir, &args);
    let mut c = server.client().await;
    let req = pb::CreateCollectionRequest {
        name: "v".into(),
        dim: DIM as u32,
        metric: pb::Metric::L2 as i32,
        index: Some(pb::IndexSpec {
            kind: Some(pb::index_spec::Kind::IvfPq(pb::IvfPqIndexSpec {
                nlist: NLIST,
                m: 0,
                nbits: 0,
            })),
        }),
        ..Default::default()
    };
    let info = c.collections.create(req).await.unwrap().into_inner();
    let Some(pb::index_spec::Kind::IvfPq(spec)) = info.index.and_then(|i| i.kind) else {
        panic!("describe shows the ivf_pq spec");
    };
    assert_eq!(
        (spec.nlist, spec.m, spec.nbits),
        (NLIST, 16, 8),
        "defaults filled in"
    );

    let data = embedding_like(1, N, DIM);
    upsert_range(&mut c, &data, 0).await;
    let info = c
        .collections
        .flush(pb::FlushRequest { name: "v".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.indexed_fraction, 1.0);
    assert_eq!((info.segments, info.exact_segments), (1, 0));
    // Codes (16 bytes), ids and l2 terms (4 + 4) a vector, plus centroids and codebooks.
    let per_vector = info.index_memory_bytes as f64 / N as f64;
    println!(
        "index memory: {} bytes, {per_vector:.1} a vector",
        info.index_memory_bytes
    );
    assert!(
        (24.0..64.0).contains(&per_vector),
        "{per_vector} bytes a vector"
    );
    let queries = embedding_like(2, 100, DIM);

    let r = recall(&mut c, &data, &queries, None, |_| true, (0, 0)).await;
    println!("recall@10 at the default nprobe and rerank: {r:.4}");
    assert!(r >= 0.9, "recall@10 {r}");
    // The knobs reach the index: one list probed, no candidate beyond k re-ranked, loses some.
    let low = recall(&mut c, &data, &queries, None, |_| true, (1, 10)).await;
    println!("recall@10 at nprobe 1, rerank 10: {low:.4}");
    assert!(low < r, "nprobe 1 {low} against the default {r}");

    let req = pb::CreateFieldIndexRequest {
        collection: "v".into(),
        field: "third".into(),
        r#type: pb::FieldType::Keyword as i32,
        ..Default::default()
    };
    c.collections.create_field_index(req).await.unwrap();
    let third = filter::parse_str(r#"{"must":[{"key":"third","match":true}]}"#).unwrap();
    let r = recall(&mut c, &data, &queries, Some(third), |i| i % 3 == 0, (0, 0)).await;
    println!("recall@10 with a filter keeping a third: {r:.4}");
    assert!(r >= 0.9, "recall@10 with a filter {r}");
    // A filter admitting 1% is answered by an exact scan of its bitmap: every answer exact.
    let one = filter::parse_str(r#"{"must":[{"key":"one_percent","match":true}]}"#).unwrap();
    let one_percent = |i| i % 100 == 0;
    let r = recall(
        &mut c,
        &data,
        &queries[..20],
        Some(one),
        one_percent,
        (0, 0),
    )
    .await;
    assert_eq!(r, 1.0, "recall@10 with a 1% filter");

    let del: Vec<pb::PointId> = (0..N as u64).filter(|i| i % 10 < 3).map(num_id).collect();
    for chunk in del.chunks(5000) {
        let sel = pb::delete_request::Selector::Ids(pb::PointIdList {
            ids: chunk.to_vec(),
        });
        c.points
            .delete(pb::DeleteRequest {
                collection: "v".into(),
                selector: Some(sel),
            })
            .await
            .unwrap();
    }
    let live = |i: u64| i % 10 >= 3;
    let r = recall(&mut c, &data, &queries, None, live, (0, 0)).await;
    println!("recall@10 with 30% deleted: {r:.4}");
    assert!(r >= 0.9, "recall@10 with 30% deleted {r}");

    // A second segment of 300 points, too few to train 128 lists: searched exactly.
    let small = embedding_like(3, 300, DIM);
    upsert_range(&mut c, &small, N).await;
    let info = c
        .collections
        .flush(pb::FlushRequest { name: "v".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((info.segments, info.exact_segments), (2, 1), "{info:?}");
    assert_eq!(
        ivfpq_files(&dir).len(),
        1,
        "no ivfpq.bin for the small segment"
    );
    let hit = c.search(request(&small[7], None, 0, 0)).await.unwrap();
    assert_eq!(
        num(hit[0].id.as_ref()),
        N as u64 + 7,
        "found in the exact segment"
    );

    // Restart: the index is read back from its file, not retrained.
    let file = ivfpq_files(&dir)
        .pop()
        .expect("the big segment's index file");
    let file_before = std::fs::read(&file).unwrap();
    let before = answers(&mut c, &queries[..20]).await;
    let memory = info.index_memory_bytes;
    server.stop();
    let built = |s: &ServerProcess| s.logs().matches("segment index built").count();
    assert_eq!(built(&server), 1, "one index trained: the big segment's");
    let mut server = ServerProcess::start(&dir, &args);
    let mut c = server.client().await;
    let info = c.describe("v").await.unwrap();
    assert_eq!((info.segments, info.exact_segments), (2, 1));
    assert_eq!(info.index_memory_bytes, memory);
    assert_eq!(
        answers(&mut c, &queries[..20]).await,
        before,
        "same index after restart"
    );
    assert_eq!(built(&server), 1, "nothing trained at start");
    assert_eq!(std::fs::read(&file).unwrap(), file_before);

    // nprobe and rerank are ignored by a collection without an ivf_pq index.
    c.create_collection("f", DIM as u32, pb::Metric::L2)
        .await
        .unwrap();
    let points = data[..500]
        .iter()
        .enumerate()
        .map(|(i, v)| pb::Point {
            id: Some(num_id(i as u64)),
            vector: v.clone(),
            payload_json: String::new(),
        })
        .collect();
    c.upsert("f", points).await.unwrap();
    let flat = |nprobe, rerank| pb::SearchRequest {
        collection: "f".into(),
        ..request(&queries[0], None, nprobe, rerank)
    };
    let plain = c.search(flat(0, 0)).await.unwrap();
    assert_eq!(c.search(flat(3, 1)).await.unwrap(), plain);
    let truth: HashSet<u64> = brute_force(&data[..500], &queries[0], |_| true)
        .into_iter()
        .collect();
    assert!(plain.iter().all(|h| truth.contains(&num(h.id.as_ref()))));

    // A flipped byte in ivfpq.bin: the collection is refused with DATA_LOSS naming the file;
    // the other collection is served.
    server.stop();
    let mut bad = file_before.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x20;
    std::fs::write(&file, &bad).unwrap();
    let server = ServerProcess::start(&dir, &args);
    let mut c = server.client().await;
    let err = c.describe("v").await.unwrap_err();
    let status = match err {
        quiver_client::ClientError::Status(s) => s,
        other => panic!("a status expected, got {other:?}"),
    };
    assert_eq!(status.code(), Code::DataLoss, "{}", status.message());
    assert!(
        status.message().contains("ivfpq.bin"),
        "{}",
        status.message()
    );
    assert_eq!(c.describe("f").await.unwrap().points, 500);
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
