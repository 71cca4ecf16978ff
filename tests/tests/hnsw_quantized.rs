//! HNSW with int8 quantized traversal through the server: a collection created by the CLI with
//! `--index hnsw --quantize int8`; Describe's index state (pending before the flush, ready and
//! one indexed segment after it, codes counted in the index memory); recall@10 against exact
//! search at the default ef and with 30% deleted; answers carry exact distances (re-ranked on
//! the floats); a restart reopens `sq8.bin` without rebuilding; compaction writes new codes;
//! a damaged or missing `sq8.bin` refuses the collection with DATA_LOSS naming the file.

use quiver_client::{Client, num_id, pb};
use quiver_tests::{ServerProcess, distance, embedding_like, quiver_json, temp_dir};
use std::path::{Path, PathBuf};
use tonic::Code;

const N: usize = 20_000;
const DIM: usize = 64;

fn search(q: &[f32], exact: bool, ef: u32) -> pb::SearchRequest {
    pb::SearchRequest {
        collection: "q".into(),
        vector: q.to_vec(),
        k: 10,
        exact,
        params: Some(pb::SearchParams { ef, nprobe: 0 }),
        ..Default::default()
    }
}

/// Recall@10 of the index's answers against exact search through the same server; also
/// checks every answer's score is the exact euclidean distance to its point.
async fn recall(c: &mut Client, data: &[Vec<f32>], queries: &[Vec<f32>], ef: u32) -> f64 {
    let (mut hit, mut total) = (0usize, 0usize);
    for q in queries {
        let truth: Vec<_> = c
            .search(search(q, true, 0))
            .await
            .unwrap()
            .into_iter()
            .map(|h| h.id)
            .collect();
        let got = c.search(search(q, false, ef)).await.unwrap();
        for h in &got {
            let Some(pb::point_id::Kind::Num(i)) = h.id.as_ref().and_then(|p| p.kind.clone())
            else {
                panic!("numeric ids");
            };
            let exact = distance("l2", q, &data[i as usize]).sqrt();
            assert!(
                (h.score as f64 - exact).abs() <= 1e-3 * exact.max(1.0),
                "score {} is not the exact distance {exact}",
                h.score
            );
        }
        hit += got.iter().filter(|h| truth.contains(&h.id)).count();
        total += truth.len();
    }
    hit as f64 / total as f64
}

/// The files named `name` under a data folder.
fn files_named(data: &Path, name: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![data.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().is_some_and(|n| n == name) {
                found.push(p);
            }
        }
    }
    found
}

async fn answers(c: &mut Client, queries: &[Vec<f32>]) -> Vec<Vec<(Option<pb::PointId>, f32)>> {
    let mut out = Vec::new();
    for q in queries {
        let hits = c.search(search(q, false, 0)).await.unwrap();
        out.push(hits.into_iter().map(|h| (h.id, h.score)).collect());
    }
    out
}

#[tokio::test]
async fn quantized_hnsw_recall_describe_restart_compaction_and_damage() {
    let dir = temp_dir("hnsw_quantized");
    let args = ["--flush-threshold", "100000"];
    let mut server = ServerProcess::start(&dir, &args);
    let created = quiver_json(
        &server.addr,
        &[
            "collection",
            "create",
            "q",
            "--dim",
            "64",
            "--metric",
            "l2",
            "--index",
            "hnsw",
            "--quantize",
            "int8",
        ],
    );
    assert_eq!(created["index"]["hnsw"]["quantize_int8"], true, "{created}");
    assert_eq!(created["index_state"], "ready", "{created}");
    let mut c = server.client().await;

    let data = embedding_like(1, N, DIM);
    for (b, chunk) in data.chunks(2000).enumerate() {
        let points = chunk
            .iter()
            .enumerate()
            .map(|(i, v)| pb::Point {
                id: Some(num_id((b * 2000 + i) as u64)),
                vector: v.clone(),
                payload_json: String::new(),
            })
            .collect();
        c.upsert("q", points).await.unwrap();
    }
    let pending = quiver_json(&server.addr, &["collection", "describe", "q"]);
    assert_eq!(pending["index_state"], "pending", "{pending}");
    assert_eq!(pending["indexed_segments"], 0, "{pending}");
    let info = c
        .collections
        .flush(pb::FlushRequest { name: "q".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (info.segments, info.indexed_segments, info.building_segments),
        (1, 1, 0),
        "{info:?}"
    );
    // The codes (one byte a dimension) and the graph (level 0: 33 words a node).
    assert!(
        info.index_memory_bytes as usize >= N * DIM + N * 33 * 4,
        "{} bytes of index",
        info.index_memory_bytes
    );
    let ready = quiver_json(&server.addr, &["collection", "describe", "q"]);
    assert_eq!(ready["index_state"], "ready", "{ready}");
    assert_eq!(files_named(&dir, "sq8.bin").len(), 1);

    let queries = embedding_like(2, 100, DIM);
    let r = recall(&mut c, &data, &queries, 0).await;
    println!("quantized recall@10 at the default ef: {r:.4}");
    assert!(r >= 0.95, "recall@10 {r}");
    let low = recall(&mut c, &data, &queries, 1).await;
    println!("quantized recall@10 at ef 1: {low:.4}");
    assert!(
        low < r,
        "ef reaches the quantized search: {low} against {r}"
    );

    // Restart: the codes are read back from sq8.bin, nothing is rebuilt.
    let codes = files_named(&dir, "sq8.bin").pop().expect("one codes file");
    let codes_before = std::fs::read(&codes).unwrap();
    let before = answers(&mut c, &queries[..20]).await;
    server.stop();
    let built = |s: &ServerProcess| s.logs().matches("segment index built").count();
    assert_eq!(built(&server), 1);
    let mut server = ServerProcess::start(&dir, &args);
    let mut c = server.client().await;
    let info2 = c.describe("q").await.unwrap();
    assert_eq!(info2.index_memory_bytes, info.index_memory_bytes);
    assert_eq!(info2.indexed_segments, 1);
    assert_eq!(answers(&mut c, &queries[..20]).await, before);
    assert_eq!(
        built(&server),
        1,
        "nothing built at start (the log goes on across restarts)"
    );
    assert_eq!(std::fs::read(&codes).unwrap(), codes_before);

    // 30% deleted, then compaction: a new segment with new codes, the old files gone.
    let del: Vec<pb::PointId> = (0..N as u64).filter(|i| i % 10 < 3).map(num_id).collect();
    for chunk in del.chunks(5000) {
        let sel = pb::delete_request::Selector::Ids(pb::PointIdList {
            ids: chunk.to_vec(),
        });
        c.points
            .delete(pb::DeleteRequest {
                collection: "q".into(),
                selector: Some(sel),
            })
            .await
            .unwrap();
    }
    let r = recall(&mut c, &data, &queries, 0).await;
    println!("quantized recall@10 with 30% deleted: {r:.4}");
    assert!(r >= 0.9, "recall@10 with 30% deleted {r}");
    let info = c
        .collections
        .compact(pb::CompactRequest { name: "q".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((info.segments, info.indexed_segments), (1, 1), "{info:?}");
    let after = files_named(&dir, "sq8.bin");
    assert_eq!(after.len(), 1, "{after:?}");
    assert_ne!(after[0], codes, "compaction wrote new codes");
    let r = recall(&mut c, &data, &queries, 0).await;
    println!("quantized recall@10 after compaction: {r:.4}");
    assert!(r >= 0.95, "recall@10 after compaction {r}");

    // A flipped byte in the codes, then a missing codes file: DATA_LOSS naming sq8.bin.
    let codes = after[0].clone();
    let good = std::fs::read(&codes).unwrap();
    server.stop();
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x08;
    std::fs::write(&codes, &bad).unwrap();
    for damage in ["flipped byte", "missing file"] {
        if damage == "missing file" {
            std::fs::remove_file(&codes).unwrap();
        }
        let server = ServerProcess::start(&dir, &args);
        let mut c = server.client().await;
        let status = match c.describe("q").await.unwrap_err() {
            quiver_client::ClientError::Status(s) => s,
            other => panic!("a status expected, got {other:?}"),
        };
        assert_eq!(
            status.code(),
            Code::DataLoss,
            "{damage}: {}",
            status.message()
        );
        assert!(
            status.message().contains("sq8.bin"),
            "{damage}: {}",
            status.message()
        );
        drop(server);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
