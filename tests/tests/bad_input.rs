//! Every kind of bad request gets its documented status code, the server stays up, and nothing
//! already stored changes. Also: health checking and the metrics endpoint.

use quiver_client::{filter, num_id, pb, text_id};
use quiver_tests::{ServerProcess, temp_dir};
use std::io::{Read, Write};
use tonic::Code;

fn point(id: pb::PointId, vector: Vec<f32>, payload: &str) -> pb::Point {
    pb::Point {
        id: Some(id),
        vector,
        payload_json: payload.into(),
    }
}

fn upsert(points: Vec<pb::Point>) -> pb::UpsertRequest {
    pb::UpsertRequest {
        collection: "v".into(),
        points,
    }
}

/// A dimension-4 collection "w" with an ivf_pq index.
fn ivf_pq(nlist: u32, m: u32, nbits: u32) -> pb::CreateCollectionRequest {
    pb::CreateCollectionRequest {
        name: "w".into(),
        dim: 4,
        metric: 1,
        index: Some(pb::IndexSpec {
            kind: Some(pb::index_spec::Kind::IvfPq(pb::IvfPqIndexSpec {
                nlist,
                m,
                nbits,
            })),
        }),
        ..Default::default()
    }
}

fn search(vector: Vec<f32>, k: u32, filter: Option<pb::Filter>) -> pb::SearchRequest {
    pb::SearchRequest {
        collection: "v".into(),
        vector,
        k,
        filter,
        ..Default::default()
    }
}

#[tokio::test]
async fn bad_inputs_get_clear_status_codes_and_change_nothing() {
    let dir = temp_dir("bad");
    let server = ServerProcess::start(
        &dir,
        &[
            "--max-batch",
            "100",
            "--max-payload-bytes",
            "1024",
            "--max-message-bytes",
            "200000",
            "--max-k",
            "1000",
        ],
    );
    let mut c = server.client().await;
    c.create_collection("v", 4, pb::Metric::Cosine)
        .await
        .unwrap();
    let good: Vec<pb::Point> = (0..50u64)
        .map(|i| point(num_id(i), vec![1.0, i as f32, 2.0, 0.5], r#"{"i": 1}"#))
        .collect();
    c.upsert("v", good.clone()).await.unwrap();

    let deep = {
        let mut f = pb::Filter::default();
        for _ in 0..20 {
            f = pb::Filter {
                must: vec![pb::Condition {
                    kind: Some(pb::condition::Kind::Filter(f)),
                }],
                ..Default::default()
            };
        }
        f
    };
    let v4 = || vec![1.0f32, 0.0, 0.0, 0.0];
    let mut upserts: Vec<(&str, pb::UpsertRequest, Code)> = vec![
        (
            "wrong dimension",
            upsert(vec![point(num_id(1000), vec![1.0; 5], "")]),
            Code::InvalidArgument,
        ),
        (
            "NaN",
            upsert(vec![point(num_id(1000), vec![1.0, f32::NAN, 0.0, 0.0], "")]),
            Code::InvalidArgument,
        ),
        (
            "infinity",
            upsert(vec![point(
                num_id(1000),
                vec![f32::INFINITY, 0.0, 0.0, 0.0],
                "",
            )]),
            Code::InvalidArgument,
        ),
        (
            "zero vector under cosine",
            upsert(vec![point(num_id(1000), vec![0.0; 4], "")]),
            Code::InvalidArgument,
        ),
        ("empty batch", upsert(vec![]), Code::InvalidArgument),
        (
            "duplicate ids",
            upsert(vec![
                point(num_id(1000), v4(), ""),
                point(num_id(1000), v4(), ""),
            ]),
            Code::InvalidArgument,
        ),
        (
            "missing id",
            upsert(vec![pb::Point {
                id: None,
                vector: v4(),
                payload_json: String::new(),
            }]),
            Code::InvalidArgument,
        ),
        (
            "empty oneof id",
            upsert(vec![pb::Point {
                id: Some(pb::PointId { kind: None }),
                vector: v4(),
                payload_json: String::new(),
            }]),
            Code::InvalidArgument,
        ),
        (
            "empty string id",
            upsert(vec![point(text_id(""), v4(), "")]),
            Code::InvalidArgument,
        ),
        (
            "overlong string id",
            upsert(vec![point(text_id(&"x".repeat(200)), v4(), "")]),
            Code::InvalidArgument,
        ),
        (
            "control characters in id",
            upsert(vec![point(text_id("a\u{0}b"), v4(), "")]),
            Code::InvalidArgument,
        ),
        (
            "payload not JSON",
            upsert(vec![point(num_id(1000), v4(), "{not json")]),
            Code::InvalidArgument,
        ),
        (
            "payload not an object",
            upsert(vec![point(num_id(1000), v4(), "[1,2]")]),
            Code::InvalidArgument,
        ),
        (
            "payload too large",
            upsert(vec![point(
                num_id(1000),
                v4(),
                &format!("{{\"a\":\"{}\"}}", "x".repeat(2000)),
            )]),
            Code::ResourceExhausted,
        ),
        (
            "batch too large",
            upsert(
                (0..101u64)
                    .map(|i| point(num_id(2000 + i), v4(), ""))
                    .collect(),
            ),
            Code::ResourceExhausted,
        ),
        (
            "message too large",
            upsert(
                (0..50u64)
                    .map(|i| {
                        point(
                            num_id(3000 + i),
                            v4(),
                            &format!("{{\"a\":\"{}\"}}", "y".repeat(5000)),
                        )
                    })
                    .collect(),
            ),
            Code::ResourceExhausted,
        ),
    ];
    // A batch with one bad point among good ones changes nothing either.
    let mut mixed: Vec<pb::Point> = (0..10u64)
        .map(|i| point(num_id(5000 + i), v4(), ""))
        .collect();
    mixed.push(point(num_id(6000), vec![f32::NAN; 4], ""));
    upserts.push((
        "one bad point in a batch",
        upsert(mixed),
        Code::InvalidArgument,
    ));
    let mut unknown = upsert(vec![point(num_id(1), v4(), "")]);
    unknown.collection = "nope".into();
    upserts.push(("unknown collection", unknown, Code::NotFound));
    for (what, req, code) in upserts {
        let err = c.points.upsert(req).await.expect_err(what);
        assert_eq!(err.code(), code, "{what}: {}", err.message());
        assert!(!err.message().is_empty(), "{what}: empty message");
        if what == "message too large" {
            assert!(
                err.message().contains("message length too large"),
                "{}",
                err.message()
            );
        }
    }

    let bad_filter = |s: &str| Some(filter::parse_str(s).unwrap());
    let searches: Vec<(&str, pb::SearchRequest, Code)> = vec![
        ("k = 0", search(v4(), 0, None), Code::InvalidArgument),
        (
            "k huge",
            search(v4(), 1_000_000, None),
            Code::InvalidArgument,
        ),
        (
            "query of wrong dimension",
            search(vec![1.0; 3], 5, None),
            Code::InvalidArgument,
        ),
        (
            "NaN query",
            search(vec![f32::NAN; 4], 5, None),
            Code::InvalidArgument,
        ),
        (
            "range without bounds",
            search(v4(), 5, bad_filter(r#"{"must":[{"key":"i","range":{}}]}"#)),
            Code::InvalidArgument,
        ),
        (
            "empty key",
            search(v4(), 5, bad_filter(r#"{"must":[{"key":"","match":"x"}]}"#)),
            Code::InvalidArgument,
        ),
        (
            "empty condition",
            search(
                v4(),
                5,
                Some(pb::Filter {
                    must: vec![pb::Condition { kind: None }],
                    ..Default::default()
                }),
            ),
            Code::InvalidArgument,
        ),
        (
            "filter too deep",
            search(v4(), 5, Some(deep)),
            Code::InvalidArgument,
        ),
        (
            "empty has_id",
            search(v4(), 5, bad_filter(r#"{"must":[{"has_id":[]}]}"#)),
            Code::InvalidArgument,
        ),
        (
            "nprobe over the most lists a collection may have",
            pb::SearchRequest {
                params: Some(pb::SearchParams {
                    ef: 0,
                    nprobe: 65_537,
                }),
                ..search(v4(), 5, None)
            },
            Code::InvalidArgument,
        ),
        (
            "rerank huge",
            pb::SearchRequest {
                rerank: 10_001,
                ..search(v4(), 5, None)
            },
            Code::InvalidArgument,
        ),
    ];
    for (what, req, code) in searches {
        let err = c.points.search(req).await.expect_err(what);
        assert_eq!(err.code(), code, "{what}: {}", err.message());
    }

    let creates: Vec<(&str, pb::CreateCollectionRequest, Code)> = vec![
        (
            "existing name",
            pb::CreateCollectionRequest {
                name: "v".into(),
                dim: 4,
                metric: pb::Metric::Cosine as i32,
                ..Default::default()
            },
            Code::AlreadyExists,
        ),
        (
            "dimension 0",
            pb::CreateCollectionRequest {
                name: "w".into(),
                dim: 0,
                metric: pb::Metric::Cosine as i32,
                ..Default::default()
            },
            Code::InvalidArgument,
        ),
        (
            "bad name",
            pb::CreateCollectionRequest {
                name: "a/b".into(),
                dim: 4,
                metric: pb::Metric::Cosine as i32,
                ..Default::default()
            },
            Code::InvalidArgument,
        ),
        (
            "no metric",
            pb::CreateCollectionRequest {
                name: "w".into(),
                dim: 4,
                ..Default::default()
            },
            Code::InvalidArgument,
        ),
        (
            "unknown metric",
            pb::CreateCollectionRequest {
                name: "w".into(),
                dim: 4,
                metric: 42,
                ..Default::default()
            },
            Code::InvalidArgument,
        ),
        (
            "hnsw m out of range",
            pb::CreateCollectionRequest {
                name: "w".into(),
                dim: 4,
                metric: 1,
                index: Some(pb::IndexSpec {
                    kind: Some(pb::index_spec::Kind::Hnsw(pb::HnswIndexSpec {
                        m: 1000,
                        ef_construction: 100,
                        ..Default::default()
                    })),
                }),
                ..Default::default()
            },
            Code::InvalidArgument,
        ),
        (
            "ivf_pq m that does not divide dim",
            ivf_pq(16, 8, 8),
            Code::InvalidArgument,
        ),
        (
            "ivf_pq codes of 4 bits",
            ivf_pq(16, 2, 4),
            Code::InvalidArgument,
        ),
        (
            "ivf_pq nlist huge",
            ivf_pq(1 << 20, 2, 8),
            Code::InvalidArgument,
        ),
    ];
    for (what, req, code) in creates {
        let err = c.collections.create(req).await.expect_err(what);
        assert_eq!(err.code(), code, "{what}: {}", err.message());
    }
    let err = c.collections.create(ivf_pq(16, 3, 8)).await.unwrap_err();
    assert!(
        err.message()
            .contains("ivf_pq m 3 must divide the dimension 4"),
        "{}",
        err.message()
    );

    let err = c
        .collections
        .describe(pb::DescribeCollectionRequest {
            name: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = c
        .collections
        .drop(pb::DropCollectionRequest {
            name: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = c
        .points
        .delete(pb::DeleteRequest {
            collection: "v".into(),
            selector: None,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = c
        .points
        .get(pb::GetRequest {
            collection: "v".into(),
            ids: vec![],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = c
        .points
        .get(pb::GetRequest {
            collection: "v".into(),
            ids: (0..101).map(num_id).collect(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
    let err = c
        .points
        .scroll(pb::ScrollRequest {
            collection: "v".into(),
            limit: 5000,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let req = pb::CreateFieldIndexRequest {
        collection: "v".into(),
        field: "i".into(),
        r#type: 0,
        ..Default::default()
    };
    assert_eq!(
        c.collections
            .create_field_index(req)
            .await
            .unwrap_err()
            .code(),
        Code::InvalidArgument
    );

    // The other request types, each with its malformed forms.
    let f_bad = || {
        Some(pb::Filter {
            must: vec![pb::Condition { kind: None }],
            ..Default::default()
        })
    };
    let sb = |searches: Vec<pb::SearchRequest>| pb::SearchBatchRequest {
        collection: "v".into(),
        searches,
    };
    let e = c.points.search_batch(sb(vec![])).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "empty search batch");
    let e = c
        .points
        .search_batch(sb((0..101).map(|_| search(v4(), 1, None)).collect()))
        .await
        .unwrap_err();
    assert_eq!(
        e.code(),
        Code::ResourceExhausted,
        "search batch over the limit"
    );
    let e = c
        .points
        .search_batch(sb(vec![search(v4(), 1, None), search(vec![1.0], 1, None)]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "one bad search in a batch");
    let e = c
        .points
        .scroll(pb::ScrollRequest {
            collection: "v".into(),
            offset: Some(text_id("")),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "malformed scroll offset");
    let e = c
        .points
        .scroll(pb::ScrollRequest {
            collection: "v".into(),
            filter: f_bad(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "bad scroll filter");
    let e = c
        .points
        .count(pb::CountRequest {
            collection: "v".into(),
            filter: f_bad(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "bad count filter");
    let e = c
        .points
        .count(pb::CountRequest {
            collection: "nope".into(),
            filter: None,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "count on unknown collection");
    let sel = Some(pb::delete_request::Selector::Filter(pb::Filter {
        must: vec![pb::Condition { kind: None }],
        ..Default::default()
    }));
    let e = c
        .points
        .delete(pb::DeleteRequest {
            collection: "v".into(),
            selector: sel,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "delete by a bad filter");
    let sel = Some(pb::delete_request::Selector::Ids(pb::PointIdList {
        ids: vec![text_id("")],
    }));
    let e = c
        .points
        .delete(pb::DeleteRequest {
            collection: "v".into(),
            selector: sel,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "delete of a malformed id");
    let e = c
        .points
        .get(pb::GetRequest {
            collection: "v".into(),
            ids: vec![pb::PointId { kind: None }],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "get of an empty id");
    let req = pb::CreateFieldIndexRequest {
        collection: "v".into(),
        field: "a..b".into(),
        r#type: pb::FieldType::Keyword as i32,
        ..Default::default()
    };
    assert_eq!(
        c.collections
            .create_field_index(req)
            .await
            .unwrap_err()
            .code(),
        Code::InvalidArgument,
        "bad field path"
    );
    let req = pb::CreateFieldIndexRequest {
        collection: "nope".into(),
        field: "a".into(),
        r#type: pb::FieldType::Keyword as i32,
        ..Default::default()
    };
    assert_eq!(
        c.collections
            .create_field_index(req)
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    assert_eq!(
        c.collections
            .flush(pb::FlushRequest {
                name: "nope".into()
            })
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    assert_eq!(
        c.collections
            .compact(pb::CompactRequest { name: "".into() })
            .await
            .unwrap_err()
            .code(),
        Code::InvalidArgument
    );
    assert_eq!(
        c.collections
            .create_snapshot(pb::CreateSnapshotRequest {
                name: "nope".into()
            })
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    let chunks = tokio_stream::iter(vec![pb::RestoreSnapshotChunk {
        collection: String::new(),
        data: vec![1, 2, 3],
    }]);
    assert_eq!(
        c.collections
            .restore_snapshot(chunks)
            .await
            .unwrap_err()
            .code(),
        Code::InvalidArgument,
        "restore without a name"
    );
    let chunks = tokio_stream::iter(vec![pb::RestoreSnapshotChunk {
        collection: "r".into(),
        data: b"not a snapshot at all".to_vec(),
    }]);
    assert_eq!(
        c.collections
            .restore_snapshot(chunks)
            .await
            .unwrap_err()
            .code(),
        Code::DataLoss,
        "restore of garbage"
    );

    // Nothing changed.
    assert_eq!(c.count("v", None).await.unwrap(), 50);
    let req = pb::GetRequest {
        collection: "v".into(),
        ids: (0..50).map(num_id).collect(),
        with_vector: true,
        with_payload: true,
    };
    let got = c.points.get(req).await.unwrap().into_inner().records;
    assert_eq!(got.len(), 50);
    for (r, p) in got.iter().zip(&good) {
        assert_eq!(r.vector, p.vector);
        assert_eq!(r.payload_json, r#"{"i":1}"#);
    }

    // The server is healthy and counted all of it.
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let resp = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        resp.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    let mut sock = std::net::TcpStream::connect(&server.metrics_addr).unwrap();
    sock.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut body = String::new();
    sock.read_to_string(&mut body).unwrap();
    assert!(
        body.contains(r#"quiver_requests_total{code="InvalidArgument",method="Points/Upsert"}"#),
        "{body}"
    );
    assert!(
        body.contains(r#"quiver_points{collection="v"} 50"#),
        "{body}"
    );
    // Group commit is visible: writes and the synced batches they went into.
    assert!(
        body.contains("quiver_writes_total") && body.contains("quiver_write_groups_total"),
        "{body}"
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A request that outlives the server's request timeout gets DEADLINE_EXCEEDED. (A deadline the
/// client sets is also enforced by the tonic client itself, which then reports CANCELLED before
/// the server's answer arrives; so this test uses the server's own limit.)
#[tokio::test]
async fn a_request_past_its_deadline_gets_deadline_exceeded() {
    let dir = temp_dir("deadline");
    let server = ServerProcess::start(&dir, &["--request-timeout-secs", "1"]);
    let mut c = server.client().await;
    c.create_collection("d", 64, pb::Metric::L2).await.unwrap();
    let data = quiver_tests::vectors(4, 40_000, 64);
    for (b, chunk) in data.chunks(5000).enumerate() {
        let points = chunk
            .iter()
            .enumerate()
            .map(|(i, v)| point(num_id((b * 5000 + i) as u64), v.clone(), ""))
            .collect();
        c.upsert("d", points).await.unwrap();
    }
    // 10,000 exact searches over 40,000 vectors (100 GB of scanning) take far longer than 1 s.
    let searches = (0..10_000)
        .map(|i| pb::SearchRequest {
            vector: data[i].clone(),
            k: 10,
            exact: true,
            ..Default::default()
        })
        .collect();
    let t = std::time::Instant::now();
    let err = c
        .points
        .search_batch(pb::SearchBatchRequest {
            collection: "d".into(),
            searches,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{}", err.message());
    assert!(
        t.elapsed() < std::time::Duration::from_secs(3),
        "answered at the deadline, not after the work"
    );
    // The server is still serving.
    assert_eq!(c.count("d", None).await.unwrap(), 40_000);
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
