//! BM25 and hybrid retrieval against a real server with the real embedding model: a rare exact
//! term that BM25 and hybrid find and dense search misses, a paraphrase that dense and hybrid
//! find and BM25 cannot, scores that survive flushes and restarts, deletes leaving the postings,
//! text search without a model, Ask citing what hybrid retrieval found, and bad inputs.

use quiver_client::{Client, pb};
use quiver_tests::{ServerProcess, create_text_collection, documents, ingest, temp_dir};
use serde_json::Value;

const MINILM: &str = "all-minilm-l6-v2";

/// Error-code manual entries that differ mostly by their codes, and a few other passages.
const CORPUS: &[(&str, &str)] = &[
    (
        "e1",
        "Error code WZQU means the cooling fan stopped; clean the air intake.",
    ),
    (
        "e2",
        "Error code WZQX means the cooling pump stopped; check the coolant level.",
    ),
    (
        "e3",
        "Error code WZQT means the fan controller stopped; replace its fuse.",
    ),
    (
        "e4",
        "When the panel shows WZQV, the intake filter is blocked and must be replaced.",
    ),
    (
        "e5",
        "Error code WZQY means the air flow sensor failed; clean the sensor.",
    ),
    (
        "e6",
        "Error code WZQS means the heater relay failed; call the service desk.",
    ),
    (
        "cat",
        "The feline dozed all afternoon on the woven rug by the fireplace.",
    ),
    (
        "train",
        "The night train to Vienna leaves platform nine at eleven.",
    ),
    (
        "bread",
        "Knead the dough for ten minutes, then let it rise for an hour.",
    ),
];

/// Every segment folder under a server's data folder.
fn segment_dirs(data: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for col in std::fs::read_dir(data.join("collections")).unwrap() {
        let segs = col.unwrap().path().join("segments");
        if let Ok(rd) = std::fs::read_dir(segs) {
            out.extend(rd.map(|e| e.unwrap().path()).filter(|p| p.is_dir()));
        }
    }
    out
}

async fn text_index(c: &mut Client, collection: &str) -> Result<pb::CollectionInfo, tonic::Status> {
    c.collections
        .create_field_index(pb::CreateFieldIndexRequest {
            collection: collection.into(),
            field: "text".into(),
            r#type: pb::FieldType::Text as i32,
            text: None,
        })
        .await
        .map(|r| r.into_inner())
}

async fn search(
    c: &mut Client,
    collection: &str,
    query: &str,
    mode: pb::SearchMode,
    k: u32,
) -> Result<Vec<pb::ScoredPoint>, tonic::Status> {
    c.documents
        .search_text(pb::SearchTextRequest {
            collection: collection.into(),
            query: query.into(),
            k,
            mode: mode as i32,
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner().hits)
}

/// BM25's answer in collection "kb" to a query three entries match.
async fn cooling(c: &mut Client) -> Vec<pb::ScoredPoint> {
    search(c, "kb", "cooling fan stopped", pb::SearchMode::Bm25, 8)
        .await
        .unwrap()
}

/// The top 3 of `q` in collection "kb" by dense, BM25 and hybrid retrieval.
async fn by_each_mode(c: &mut Client, q: &str) -> [Vec<pb::ScoredPoint>; 3] {
    let mut out = Vec::new();
    for mode in [
        pb::SearchMode::Dense,
        pb::SearchMode::Bm25,
        pb::SearchMode::Hybrid,
    ] {
        out.push(search(c, "kb", q, mode, 3).await.unwrap());
    }
    out.try_into().expect("three modes")
}

fn doc_ids(hits: &[pb::ScoredPoint]) -> Vec<String> {
    hits.iter()
        .map(|h| {
            let p: Value = serde_json::from_str(&h.payload_json).unwrap();
            p["doc_id"].as_str().unwrap().to_string()
        })
        .collect()
}

fn scores(hits: &[pb::ScoredPoint]) -> Vec<(String, f32)> {
    doc_ids(hits)
        .into_iter()
        .zip(hits.iter().map(|h| h.score))
        .collect()
}

#[tokio::test]
async fn rare_terms_paraphrases_restart_and_deletes() {
    let dir = temp_dir("hybrid");
    let mut server = ServerProcess::start(&dir, &[]);
    let mut c = server.client().await;
    create_text_collection(&mut c, "kb", MINILM).await.unwrap();
    let info = text_index(&mut c, "kb").await.unwrap();
    let text = info
        .field_indexes
        .iter()
        .find(|f| f.field == "text")
        .unwrap();
    assert_eq!(text.r#type, pb::FieldType::Text as i32);
    assert_eq!(text.text.as_ref().map(|t| (t.k1, t.b)), Some((1.2, 0.75)));
    let req = pb::IngestRequest {
        collection: "kb".into(),
        documents: documents(CORPUS),
        ..Default::default()
    };
    ingest(&mut c, req).await.unwrap();

    // A rare exact term: BM25 puts its entry first and hybrid keeps it in the top 3; the
    // embedding prefers the entries worded like the question and misses it.
    let q = "What does error code WZQV mean?";
    let [dense, bm25, hybrid] = by_each_mode(&mut c, q).await;
    eprintln!(
        "dense {:?}\nbm25 {:?}\nhybrid {:?}",
        scores(&dense),
        scores(&bm25),
        scores(&hybrid)
    );
    assert_eq!(doc_ids(&bm25)[0], "e4");
    assert!(doc_ids(&hybrid).contains(&"e4".to_string()));
    assert!(
        !doc_ids(&dense).contains(&"e4".to_string()),
        "dense misses the code"
    );
    // Every result carries the scores of the retrievers that found it.
    assert!(
        bm25.iter()
            .all(|h| h.bm25_score == Some(h.score) && h.dense_score.is_none())
    );
    assert!(
        dense
            .iter()
            .all(|h| h.dense_score == Some(h.score) && h.bm25_score.is_none())
    );
    assert!(
        hybrid
            .iter()
            .any(|h| h.bm25_score.is_some() && h.dense_score.is_some())
    );
    // The default mode of a collection with a text index is hybrid.
    let default = search(&mut c, "kb", q, pb::SearchMode::Unspecified, 3)
        .await
        .unwrap();
    assert_eq!(scores(&default), scores(&hybrid));

    // A paraphrase sharing no word with its passage: dense and hybrid find it, BM25 cannot.
    let q = "a cat sleeping on a carpet";
    let [dense, bm25, hybrid] = by_each_mode(&mut c, q).await;
    assert_eq!(doc_ids(&dense)[0], "cat");
    assert!(!doc_ids(&bm25).contains(&"cat".to_string()));
    assert_eq!(doc_ids(&hybrid)[0], "cat");

    // Scores survive a flush (postings written to segment files) and a restart (files reopened).
    let before = cooling(&mut c).await;
    assert_eq!(before.len(), 3, "entries holding cooling, fan or stopped");
    c.collections
        .flush(pb::FlushRequest { name: "kb".into() })
        .await
        .unwrap();
    let flushed = cooling(&mut c).await;
    assert_eq!(scores(&flushed), scores(&before));
    server.stop();
    let server = ServerProcess::start(&dir, &[]);
    let mut c = server.client().await;
    let reopened = cooling(&mut c).await;
    assert_eq!(scores(&reopened), scores(&before));

    // A deleted document leaves the postings (and the statistics: the others' scores change).
    c.documents
        .delete(pb::DeleteDocumentRequest {
            collection: "kb".into(),
            id: "e1".into(),
        })
        .await
        .unwrap();
    let after = cooling(&mut c).await;
    assert_eq!(after.len(), 2);
    assert!(!doc_ids(&after).contains(&"e1".to_string()));
    let was = scores(&before)
        .into_iter()
        .find(|(d, _)| d == "e2")
        .unwrap()
        .1;
    let now = scores(&after)
        .into_iter()
        .find(|(d, _)| d == "e2")
        .unwrap()
        .1;
    assert!(
        (was - now).abs() > 1e-4,
        "statistics follow the delete: {was} vs {now}"
    );
    // ...also after compaction rewrote the segment.
    c.collections
        .compact(pb::CompactRequest { name: "kb".into() })
        .await
        .unwrap();
    let compacted = cooling(&mut c).await;
    assert_eq!(scores(&compacted), scores(&after));
    // The collection's disk bytes are its segment files', text index files included.
    let info = c
        .collections
        .describe(pb::DescribeCollectionRequest { name: "kb".into() })
        .await
        .unwrap()
        .into_inner();
    let (mut files, mut text_files) = (0u64, 0u64);
    for seg in segment_dirs(&dir) {
        for f in std::fs::read_dir(&seg).unwrap() {
            let f = f.unwrap();
            let len = f.metadata().unwrap().len();
            files += len;
            if f.file_name().to_string_lossy().starts_with("text-") {
                text_files += len;
            }
        }
    }
    assert!(text_files > 0, "the sealed segment has its text index file");
    assert_eq!(info.disk_bytes, files);

    // Filters apply to BM25 and hybrid.
    let only = |id: &str| pb::Filter {
        must: vec![pb::Condition {
            kind: Some(pb::condition::Kind::Field(pb::FieldCondition {
                key: "doc_id".into(),
                test: Some(pb::field_condition::Test::Match(pb::MatchValue {
                    kind: Some(pb::match_value::Kind::Keyword(id.into())),
                })),
            })),
        }],
        ..Default::default()
    };
    for mode in [pb::SearchMode::Bm25, pb::SearchMode::Hybrid] {
        let hits = c
            .documents
            .search_text(pb::SearchTextRequest {
                collection: "kb".into(),
                query: "cooling fan stopped".into(),
                k: 5,
                mode: mode as i32,
                filter: Some(only("e3")),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .hits;
        assert_eq!(doc_ids(&hits), ["e3"], "{mode:?}");
    }
    server.remove();
}

#[tokio::test]
async fn bm25_without_a_model_ask_uses_hybrid_and_bad_inputs() {
    let dir = temp_dir("hybrid-bad");
    let server = ServerProcess::start(&dir, &[]);
    let mut c = server.client().await;

    // A plain vector collection with a text field: BM25 needs no embedding model.
    c.collections
        .create(pb::CreateCollectionRequest {
            name: "plain".into(),
            dim: 3,
            metric: pb::Metric::Cosine as i32,
            ..Default::default()
        })
        .await
        .unwrap();
    let bodies = [
        "red apples and green apples",
        "green pears",
        "a red bicycle",
    ];
    let points = bodies
        .iter()
        .enumerate()
        .map(|(i, b)| pb::Point {
            id: Some(pb::PointId {
                kind: Some(pb::point_id::Kind::Num(i as u64)),
            }),
            vector: vec![1.0, i as f32, 0.5],
            payload_json: serde_json::json!({ "body": b }).to_string(),
        })
        .collect();
    c.points
        .upsert(pb::UpsertRequest {
            collection: "plain".into(),
            points,
        })
        .await
        .unwrap();
    let index =
        |field: &str, ty: pb::FieldType, text: Option<(f32, f32)>| pb::CreateFieldIndexRequest {
            collection: "plain".into(),
            field: field.into(),
            r#type: ty as i32,
            text: text.map(|(k1, b)| pb::TextIndexParams { k1, b }),
        };
    let info = c
        .collections
        .create_field_index(index("body", pb::FieldType::Text, Some((2.0, 0.5))))
        .await
        .unwrap()
        .into_inner();
    let f = info
        .field_indexes
        .iter()
        .find(|f| f.field == "body")
        .unwrap();
    assert_eq!(f.text.as_ref().map(|t| (t.k1, t.b)), Some((2.0, 0.5)));
    let bm25 = |query: &str, field: &str| pb::SearchTextRequest {
        collection: "plain".into(),
        query: query.into(),
        k: 5,
        mode: pb::SearchMode::Bm25 as i32,
        hybrid: Some(pb::HybridParams {
            text_field: field.into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let hits = c
        .documents
        .search_text(bm25("red apples", ""))
        .await
        .unwrap()
        .into_inner()
        .hits;
    let ids: Vec<_> = hits.iter().map(|h| h.id.clone().unwrap().kind).collect();
    assert_eq!(
        ids,
        [
            Some(pb::point_id::Kind::Num(0)),
            Some(pb::point_id::Kind::Num(2))
        ],
        "both words beat one"
    );

    // Bad inputs, each with its code; nothing stored changes.
    let code =
        |r: Result<tonic::Response<pb::SearchResponse>, tonic::Status>| r.unwrap_err().code();
    assert_eq!(
        code(c.documents.search_text(bm25("red", "nope")).await),
        tonic::Code::FailedPrecondition
    );
    let mut dense = bm25("red", "");
    dense.mode = pb::SearchMode::Dense as i32;
    assert_eq!(
        code(c.documents.search_text(dense).await),
        tonic::Code::FailedPrecondition,
        "no model"
    );
    let mut r = bm25("red", "");
    r.mode = 9;
    assert_eq!(
        code(c.documents.search_text(r).await),
        tonic::Code::InvalidArgument
    );
    let mut r = bm25("red", "");
    r.k = 0;
    assert_eq!(
        code(c.documents.search_text(r).await),
        tonic::Code::InvalidArgument
    );
    let mut r = bm25("red", "");
    r.k = 1_000_000;
    assert_eq!(
        code(c.documents.search_text(r).await),
        tonic::Code::InvalidArgument
    );
    let mut r = bm25("red", "");
    r.hybrid = Some(pb::HybridParams {
        fusion: pb::Fusion::Weighted as i32,
        dense_weight: 1.5,
        ..Default::default()
    });
    assert_eq!(
        code(c.documents.search_text(r).await),
        tonic::Code::InvalidArgument
    );
    let mut r = bm25("red", "");
    r.hybrid = Some(pb::HybridParams {
        candidates: 20_000,
        ..Default::default()
    });
    assert_eq!(
        code(c.documents.search_text(r).await),
        tonic::Code::InvalidArgument
    );
    let mut r = bm25("red", "");
    r.collection = "missing".into();
    assert_eq!(
        code(c.documents.search_text(r).await),
        tonic::Code::NotFound
    );
    let mut r = bm25("red", "");
    r.query = "  ".into();
    assert_eq!(
        code(c.documents.search_text(r).await),
        tonic::Code::InvalidArgument
    );
    let idx_code =
        |r: Result<tonic::Response<pb::CollectionInfo>, tonic::Status>| r.unwrap_err().code();
    for bad in [
        index("body", pb::FieldType::Text, Some((50.0, 0.5))),
        index("body", pb::FieldType::Text, Some((1.2, 2.0))),
        index("body", pb::FieldType::Text, Some((1.0, 0.5))),
        index("other", pb::FieldType::Keyword, Some((1.0, 0.5))),
        index("", pb::FieldType::Text, None),
    ] {
        assert_eq!(
            idx_code(c.collections.create_field_index(bad).await),
            tonic::Code::InvalidArgument
        );
    }
    // The same index again is fine.
    c.collections
        .create_field_index(index("body", pb::FieldType::Text, Some((2.0, 0.5))))
        .await
        .unwrap();
    let again = c
        .documents
        .search_text(bm25("red apples", ""))
        .await
        .unwrap()
        .into_inner()
        .hits;
    assert_eq!(again, hits);

    // A document collection without a text index: BM25 is refused, dense is the default.
    create_text_collection(&mut c, "kb", MINILM).await.unwrap();
    ingest(
        &mut c,
        pb::IngestRequest {
            collection: "kb".into(),
            documents: documents(CORPUS),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let q = "What does error code WZQV mean?";
    let err = search(&mut c, "kb", q, pb::SearchMode::Bm25, 3)
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    assert!(err.message().contains("no text index"), "{}", err.message());
    let default = search(&mut c, "kb", q, pb::SearchMode::Unspecified, 3)
        .await
        .unwrap();
    assert!(
        default
            .iter()
            .all(|h| h.dense_score.is_some() && h.bm25_score.is_none())
    );

    // Once indexed (existing chunks included), Ask retrieves by hybrid and cites the entry
    // holding the code.
    text_index(&mut c, "kb").await.unwrap();
    let mut stream = c
        .generation
        .ask(pb::AskRequest {
            collection: "kb".into(),
            question: q.into(),
            k: 3,
            max_tokens: 16,
            no_cache: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut last = None;
    while let Some(m) = stream.message().await.unwrap() {
        last = Some(m);
    }
    let last = last.unwrap();
    let cited: Vec<&str> = last.citations.iter().map(|c| c.doc_id.as_str()).collect();
    assert!(cited.contains(&"e4"), "context {cited:?}");
    server.remove();
}
