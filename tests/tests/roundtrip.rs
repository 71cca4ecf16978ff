//! Round trip against a real server: upsert 10,000 points with payloads, then search (compared
//! with brute force computed here), filters (indexed and not), get, delete, count and scroll.

use quiver_client::{Client, filter, num_id, pb};
use quiver_tests::{ServerProcess, distance, temp_dir, vectors};
use serde_json::{Value, json};
use std::collections::HashSet;

const N: usize = 10_000;
const DIM: usize = 32;

fn payload(i: usize) -> Value {
    json!({"group": format!("g{}", i % 10), "n": i, "tags": if i % 3 == 0 { json!(["three"]) } else { json!([]) }})
}

async fn load(client: &mut Client, name: &str, metric: pb::Metric, data: &[Vec<f32>]) {
    let req = pb::CreateCollectionRequest {
        name: name.into(),
        dim: DIM as u32,
        metric: metric as i32,
        flush_threshold: 3000,
        ..Default::default()
    };
    client.collections.create(req).await.unwrap();
    for start in (0..data.len()).step_by(1000) {
        let points = (start..(start + 1000).min(data.len()))
            .map(|i| pb::Point {
                id: Some(num_id(i as u64)),
                vector: data[i].clone(),
                payload_json: payload(i).to_string(),
            })
            .collect();
        client.upsert(name, points).await.unwrap();
    }
}

fn id_of(p: &pb::ScoredPoint) -> usize {
    match p.id.as_ref().unwrap().kind.as_ref().unwrap() {
        pb::point_id::Kind::Num(n) => *n as usize,
        other => panic!("unexpected id {other:?}"),
    }
}

/// Checks hits against brute force over the admitted ids: the right count, every hit within
/// the true k-th distance, and each score equal to the true one.
fn check_exact(
    metric: &str,
    data: &[Vec<f32>],
    q: &[f32],
    k: usize,
    admitted: &dyn Fn(usize) -> bool,
    hits: &[pb::ScoredPoint],
) {
    let mut truth: Vec<(f64, usize)> = (0..data.len())
        .filter(|i| admitted(*i))
        .map(|i| (distance(metric, q, &data[i]), i))
        .collect();
    truth.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert_eq!(hits.len(), k.min(truth.len()), "hit count");
    let kth = truth[hits.len() - 1].0;
    let seen: HashSet<usize> = hits.iter().map(id_of).collect();
    assert_eq!(seen.len(), hits.len(), "duplicate hits");
    for h in hits {
        let i = id_of(h);
        assert!(admitted(i), "hit {i} does not pass the filter");
        let d = distance(metric, q, &data[i]);
        assert!(
            d <= kth + 1e-4,
            "hit {i} at {d} is beyond the true k-th distance {kth}"
        );
        let want = match metric {
            "cosine" => 1.0 - d,
            "dot" => -d,
            _ => d.sqrt(),
        };
        assert!(
            (h.score as f64 - want).abs() < 1e-3 * want.abs().max(1.0),
            "score {} vs {want}",
            h.score
        );
    }
}

#[tokio::test]
async fn upsert_search_filter_get_delete_count_scroll() {
    let dir = temp_dir("roundtrip");
    let server = ServerProcess::start(&dir, &[]);
    let mut client = server.client().await;
    let data = vectors(1, N, DIM);
    load(&mut client, "docs", pb::Metric::Cosine, &data).await;
    assert_eq!(client.count("docs", None).await.unwrap(), N as u64);

    // Unfiltered search equals brute force, on both exact and default paths.
    let queries = vectors(99, 20, DIM);
    for (qi, q) in queries.iter().enumerate() {
        let req = pb::SearchRequest {
            collection: "docs".into(),
            vector: q.clone(),
            k: 10,
            exact: qi % 2 == 0,
            ..Default::default()
        };
        let hits = client.search(req).await.unwrap();
        check_exact("cosine", &data, q, 10, &|_| true, &hits);
    }

    // Filters: an unindexed one first, then the same after indexing the fields.
    let f_json = r#"{"must":[{"key":"group","match":"g3"},{"key":"n","range":{"gte":2000,"lt":8000}}],"must_not":[{"key":"tags","match":"three"}]}"#;
    let admitted = |i: usize| i % 10 == 3 && (2000..8000).contains(&i) && i % 3 != 0;
    let want_count = (0..N).filter(|i| admitted(*i)).count() as u64;
    for round in 0..2 {
        if round == 1 {
            for (field, t) in [
                ("group", pb::FieldType::Keyword),
                ("n", pb::FieldType::Numeric),
                ("tags", pb::FieldType::Keyword),
            ] {
                let req = pb::CreateFieldIndexRequest {
                    collection: "docs".into(),
                    field: field.into(),
                    r#type: t as i32,
                    ..Default::default()
                };
                client.collections.create_field_index(req).await.unwrap();
            }
        }
        let f = filter::parse_str(f_json).unwrap();
        assert_eq!(
            client.count("docs", Some(f.clone())).await.unwrap(),
            want_count,
            "count, round {round}"
        );
        for q in queries.iter().take(5) {
            let req = pb::SearchRequest {
                collection: "docs".into(),
                vector: q.clone(),
                k: 15,
                filter: Some(f.clone()),
                with_payload: true,
                ..Default::default()
            };
            let hits = client.search(req).await.unwrap();
            check_exact("cosine", &data, q, 15, &admitted, &hits);
            for h in &hits {
                let p: Value = serde_json::from_str(&h.payload_json).unwrap();
                assert_eq!(p, payload(id_of(h)));
            }
        }
    }
    let info = client.describe("docs").await.unwrap();
    assert!(
        info.segments >= 1,
        "flush threshold 3000 should have produced segments: {info:?}"
    );
    assert_eq!(info.field_indexes.len(), 3);

    // Get returns exact vectors and payloads; unknown ids are left out.
    let ids: Vec<pb::PointId> = [0u64, 4321, 9999, 123_456]
        .iter()
        .map(|i| num_id(*i))
        .collect();
    let got = client
        .points
        .get(pb::GetRequest {
            collection: "docs".into(),
            ids,
            with_vector: true,
            with_payload: true,
        })
        .await
        .unwrap()
        .into_inner()
        .records;
    assert_eq!(got.len(), 3);
    for r in &got {
        let i = match r.id.as_ref().unwrap().kind.as_ref().unwrap() {
            pb::point_id::Kind::Num(n) => *n as usize,
            _ => unreachable!(),
        };
        assert_eq!(r.vector, data[i]);
        assert_eq!(
            serde_json::from_str::<Value>(&r.payload_json).unwrap(),
            payload(i)
        );
    }

    // Delete by ids and by filter.
    let del: Vec<pb::PointId> = (0..100u64).map(|i| num_id(i * 7)).collect();
    let sel = pb::delete_request::Selector::Ids(pb::PointIdList { ids: del });
    let r = client
        .points
        .delete(pb::DeleteRequest {
            collection: "docs".into(),
            selector: Some(sel),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.affected, 100);
    let f9 = filter::parse_str(r#"{"must":[{"key":"group","match":"g9"}]}"#).unwrap();
    let r = client
        .points
        .delete(pb::DeleteRequest {
            collection: "docs".into(),
            selector: Some(pb::delete_request::Selector::Filter(f9)),
        })
        .await
        .unwrap()
        .into_inner();
    let alive = |i: usize| !(i % 7 == 0 && i < 700) && i % 10 != 9;
    let deleted_by_filter = (0..N)
        .filter(|i| i % 10 == 9 && !(i % 7 == 0 && *i < 700))
        .count() as u64;
    assert_eq!(r.affected, deleted_by_filter);
    let live = (0..N).filter(|i| alive(*i)).count() as u64;
    assert_eq!(client.count("docs", None).await.unwrap(), live);
    for q in queries.iter().take(5) {
        let req = pb::SearchRequest {
            collection: "docs".into(),
            vector: q.clone(),
            k: 10,
            ..Default::default()
        };
        check_exact(
            "cosine",
            &data,
            q,
            10,
            &alive,
            &client.search(req).await.unwrap(),
        );
    }

    // Compaction drops deleted points and keeps every live one.
    client
        .collections
        .compact(pb::CompactRequest {
            name: "docs".into(),
        })
        .await
        .unwrap();
    assert_eq!(client.count("docs", None).await.unwrap(), live);

    // Scroll pages cover every live point exactly once, in id order.
    let mut seen = Vec::new();
    let mut offset = None;
    loop {
        let req = pb::ScrollRequest {
            collection: "docs".into(),
            limit: 333,
            offset,
            ..Default::default()
        };
        let page = client.points.scroll(req).await.unwrap().into_inner();
        seen.extend(page.records.iter().map(
            |r| match r.id.as_ref().unwrap().kind.as_ref().unwrap() {
                pb::point_id::Kind::Num(n) => *n as usize,
                _ => unreachable!(),
            },
        ));
        match page.next_offset {
            Some(n) => offset = Some(n),
            None => break,
        }
    }
    let want: Vec<usize> = (0..N).filter(|i| alive(*i)).collect();
    assert_eq!(seen, want);
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn dot_and_l2_metrics_and_string_ids() {
    let dir = temp_dir("metrics");
    let server = ServerProcess::start(&dir, &[]);
    let mut client = server.client().await;
    let data = vectors(5, 2000, DIM);
    for (name, metric, m) in [("d", pb::Metric::Dot, "dot"), ("e", pb::Metric::L2, "l2")] {
        load(&mut client, name, metric, &data).await;
        client
            .collections
            .flush(pb::FlushRequest { name: name.into() })
            .await
            .unwrap();
        for q in vectors(6, 5, DIM) {
            let req = pb::SearchRequest {
                collection: name.into(),
                vector: q.clone(),
                k: 7,
                ..Default::default()
            };
            check_exact(
                m,
                &data,
                &q,
                7,
                &|_| true,
                &client.search(req).await.unwrap(),
            );
        }
    }
    // String ids round-trip and sort after numbers in scroll.
    let p = pb::Point {
        id: Some(quiver_client::text_id(
            "a8098c1a-f86e-11da-bd1a-00112444be1e",
        )),
        vector: data[0].clone(),
        payload_json: String::new(),
    };
    client.upsert("e", vec![p]).await.unwrap();
    let req = pb::ScrollRequest {
        collection: "e".into(),
        limit: 10,
        offset: Some(num_id(1995)),
        ..Default::default()
    };
    let page = client.points.scroll(req).await.unwrap().into_inner();
    let last = page.records.last().unwrap().id.clone().unwrap();
    assert_eq!(
        last,
        quiver_client::text_id("a8098c1a-f86e-11da-bd1a-00112444be1e")
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
