//! HNSW collections through the server: recall@10 against exact search on clustered data at
//! the default parameters, with a filter keeping 1% of points, and with 30% deleted; the graph
//! survives a restart without a rebuild.

use quiver_client::{Client, filter, num_id, pb};
use quiver_tests::{ServerProcess, embedding_like, temp_dir};
use serde_json::json;

const N: usize = 20_000;
const DIM: usize = 64;

async fn recall(c: &mut Client, queries: &[Vec<f32>], f: Option<pb::Filter>, ef: u32) -> f64 {
    let (mut hit, mut total) = (0usize, 0usize);
    for q in queries {
        let base = pb::SearchRequest {
            collection: "h".into(),
            vector: q.clone(),
            k: 10,
            filter: f.clone(),
            ..Default::default()
        };
        let exact = c
            .search(pb::SearchRequest {
                exact: true,
                ..base.clone()
            })
            .await
            .unwrap();
        let approx = c
            .search(pb::SearchRequest {
                params: Some(pb::SearchParams { ef, nprobe: 0 }),
                ..base
            })
            .await
            .unwrap();
        let truth: Vec<_> = exact.iter().map(|h| h.id.clone()).collect();
        hit += approx.iter().filter(|h| truth.contains(&h.id)).count();
        total += truth.len();
    }
    hit as f64 / total as f64
}

#[tokio::test]
async fn hnsw_recall_filters_deletions_and_restart() {
    let dir = temp_dir("hnsw");
    let args = ["--flush-threshold", "100000"];
    let mut server = ServerProcess::start(&dir, &args);
    let mut c = server.client().await;
    let req = pb::CreateCollectionRequest {
        name: "h".into(),
        dim: DIM as u32,
        metric: pb::Metric::L2 as i32,
        index: Some(pb::IndexSpec {
            kind: Some(pb::index_spec::Kind::Hnsw(pb::HnswIndexSpec {
                m: 0,
                ef_construction: 0,
                ..Default::default()
            })),
        }),
        ..Default::default()
    };
    c.collections.create(req).await.unwrap();
    let data = embedding_like(1, N, DIM);
    for (b, chunk) in data.chunks(2000).enumerate() {
        let points = chunk
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let id = b * 2000 + i;
                pb::Point {
                    id: Some(num_id(id as u64)),
                    vector: v.clone(),
                    payload_json: json!({"one_percent": id % 100 == 0}).to_string(),
                }
            })
            .collect();
        c.upsert("h", points).await.unwrap();
    }
    let info = c
        .collections
        .flush(pb::FlushRequest { name: "h".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.indexed_fraction, 1.0);
    assert!(info.index_memory_bytes > 0, "{info:?}");
    let queries = embedding_like(2, 100, DIM);

    let r = recall(&mut c, &queries, None, 0).await;
    println!("recall@10 at the default ef: {r:.4}");
    assert!(r >= 0.95, "recall@10 {r}");

    let req = pb::CreateFieldIndexRequest {
        collection: "h".into(),
        field: "one_percent".into(),
        r#type: pb::FieldType::Keyword as i32,
        ..Default::default()
    };
    c.collections.create_field_index(req).await.unwrap();
    let one = filter::parse_str(r#"{"must":[{"key":"one_percent","match":true}]}"#).unwrap();
    let r = recall(&mut c, &queries, Some(one), 0).await;
    println!("recall@10 with a 1% filter: {r:.4}");
    assert!(r >= 0.9, "recall@10 with a 1% filter {r}");

    let del: Vec<pb::PointId> = (0..N as u64).filter(|i| i % 10 < 3).map(num_id).collect();
    for chunk in del.chunks(5000) {
        let sel = pb::delete_request::Selector::Ids(pb::PointIdList {
            ids: chunk.to_vec(),
        });
        c.points
            .delete(pb::DeleteRequest {
                collection: "h".into(),
                selector: Some(sel),
            })
            .await
            .unwrap();
    }
    let r = recall(&mut c, &queries, None, 0).await;
    println!("recall@10 with 30% deleted: {r:.4}");
    assert!(r >= 0.9, "recall@10 with 30% deleted {r}");

    // Restart: the graph is read back from its file.
    let before = recall(&mut c, &queries[..20], None, 32).await;
    server.stop();
    let server = ServerProcess::start(&dir, &args);
    let mut c = server.client().await;
    let info = c.describe("h").await.unwrap();
    assert!(info.index_memory_bytes > 0 && info.segments >= 1);
    assert_eq!(
        recall(&mut c, &queries[..20], None, 32).await,
        before,
        "same graph after restart"
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
