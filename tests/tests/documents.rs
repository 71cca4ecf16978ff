//! The embedding worker and the Documents service against a real server with the real
//! all-MiniLM-L6-v2 weights: golden vectors from the reference implementation, batch equal to
//! one by one, ingest → search-text on a small corpus with known answers, re-ingest replacing
//! chunks, delete, persistence across a restart, back-pressure, a missing model, bad inputs.

use quiver_client::{Client, pb};
use quiver_tests::{ServerProcess, create_text_collection, fixture, ingest, temp_dir};
use serde_json::Value;
use std::time::Duration;
use tonic::Code;

async fn embed(c: &mut Client, texts: &[&str]) -> Vec<Vec<f32>> {
    let r = c
        .documents
        .embed(pb::EmbedRequest {
            texts: texts.iter().map(|t| t.to_string()).collect(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.model, "all-minilm-l6-v2");
    assert_eq!(r.dim, 384);
    r.vectors.into_iter().map(|v| v.values).collect()
}

const MINILM: &str = "all-minilm-l6-v2";

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[tokio::test]
async fn golden_vectors_match_the_reference_and_batches_equal_singles() {
    let dir = temp_dir("golden");
    let server = ServerProcess::start(&dir, &[]);
    let mut c = server.client().await;
    let golden = std::fs::read_to_string(fixture("minilm-golden.jsonl")).unwrap();
    let rows: Vec<Value> = golden
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let texts: Vec<&str> = rows.iter().filter_map(|r| r["text"].as_str()).collect();
    assert!(texts.len() >= 7, "fixture has the text rows");
    let batch = embed(&mut c, &texts).await;
    for (text, row) in texts
        .iter()
        .zip(rows.iter().filter(|r| r["text"].is_string()))
    {
        let v = &batch[texts.iter().position(|t| t == text).unwrap()];
        let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-3, "{text:?}: norm {norm}");
        for (i, want) in row["first8"].as_array().unwrap().iter().enumerate() {
            let want = want.as_f64().unwrap() as f32;
            assert!(
                (v[i] - want).abs() < 1e-3,
                "{:?} dim {i}: got {}, reference {want}",
                &text[..text.len().min(40)],
                v[i]
            );
        }
        // The same text alone gives the same vector as inside the padded batch.
        let single = embed(&mut c, &[text]).await.pop().unwrap();
        let diff = single
            .iter()
            .zip(v)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(diff < 1e-5, "{text:?}: batch and single differ by {diff}");
    }
    for row in rows.iter().filter(|r| r["pair"].is_array()) {
        let pair: Vec<&str> = row["pair"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap())
            .collect();
        let v = embed(&mut c, &pair).await;
        let got = cosine(&v[0], &v[1]);
        let want = row["cosine"].as_f64().unwrap() as f32;
        assert!(
            (got - want).abs() < 1e-3,
            "{pair:?}: cosine {got}, reference {want}"
        );
    }
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A small corpus with one topic per document.
const CORPUS: &[(&str, &str)] = &[
    (
        "volcano",
        "Mount Etna is an active stratovolcano on the east coast of Sicily. Its eruptions send lava flows down the slopes and ash clouds over Catania. Volcanologists monitor the crater with seismometers.",
    ),
    (
        "bread",
        "Sourdough bread rises with a culture of wild yeast and lactic acid bacteria. Bakers feed the starter with flour and water, and a long cold fermentation gives the loaf its sour taste and open crumb.",
    ),
    (
        "chess",
        "In chess the king castles by moving two squares towards a rook, which jumps over to the other side. Castling is not allowed when the king is in check or has moved before.",
    ),
    (
        "rust",
        "Rust's borrow checker enforces that a value has either one mutable reference or any number of shared references. This rules out data races at compile time without a garbage collector.",
    ),
    (
        "whales",
        "Blue whales are the largest animals known to have lived. They feed almost only on krill, filtering tons of the small crustaceans through baleen plates every day during the summer.",
    ),
    (
        "tennis",
        "A tennis match at Wimbledon is played on grass. Players must win six games to take a set, and a tiebreak decides the set at six games all.",
    ),
];

/// Ingests `docs` into `collection` with the default chunking.
async fn ingest_docs(
    c: &mut Client,
    collection: &str,
    docs: Vec<pb::Document>,
) -> Result<pb::IngestProgress, tonic::Status> {
    let req = pb::IngestRequest {
        collection: collection.into(),
        documents: docs,
        ..Default::default()
    };
    ingest(c, req).await
}

fn doc(id: &str, text: &str) -> pb::Document {
    pb::Document {
        id: id.into(),
        text: text.into(),
        metadata_json: format!("{{\"source\": \"{id}.txt\"}}"),
    }
}

async fn top_doc(c: &mut Client, collection: &str, query: &str) -> (String, Value) {
    let hits = c
        .documents
        .search_text(pb::SearchTextRequest {
            collection: collection.into(),
            query: query.into(),
            k: 3,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .hits;
    let p: Value = serde_json::from_str(&hits[0].payload_json).unwrap();
    (p["doc_id"].as_str().unwrap().to_string(), p)
}

/// Paraphrased questions and the document that answers each.
const QUESTIONS: &[(&str, &str)] = &[
    ("which mountain in Italy erupts with lava?", "volcano"),
    ("how do you make a loaf with a starter culture?", "bread"),
    ("when may a player move the king next to the rook?", "chess"),
    (
        "how does a compiler prevent concurrent memory bugs?",
        "rust",
    ),
    ("what does the biggest sea mammal eat?", "whales"),
    ("how is a set decided in a grass court match?", "tennis"),
];

#[tokio::test]
async fn ingest_then_search_text_finds_the_answering_document_and_survives_restart() {
    let dir = temp_dir("docs");
    let mut server = ServerProcess::start(&dir, &[]);
    let mut c = server.client().await;
    let info = create_text_collection(&mut c, "kb", MINILM).await.unwrap();
    assert_eq!((info.dim, info.metric), (384, pb::Metric::Cosine as i32));
    assert_eq!(info.embedding_model, "all-minilm-l6-v2");
    let p = ingest_docs(
        &mut c,
        "kb",
        CORPUS.iter().map(|(id, t)| doc(id, t)).collect(),
    )
    .await
    .unwrap();
    assert!(p.done);
    assert_eq!(p.documents, CORPUS.len() as u64);
    assert_eq!(
        p.chunks,
        CORPUS.len() as u64,
        "each short document is one chunk"
    );
    for (q, want) in QUESTIONS {
        let (got, payload) = top_doc(&mut c, "kb", q).await;
        assert_eq!(&got, want, "query {q:?}");
        assert_eq!(payload["chunk"], 0);
        assert_eq!(payload["metadata"]["source"], format!("{want}.txt"));
        assert!(payload["text"].as_str().unwrap().len() > 50);
    }
    // A filter applies to text search: only the chess document may answer.
    let hits = c
        .documents
        .search_text(pb::SearchTextRequest {
            collection: "kb".into(),
            query: "which mountain in Italy erupts with lava?".into(),
            k: 5,
            filter: Some(
                quiver_client::filter::parse_str(
                    r#"{"must": [{"key": "doc_id", "match": "chess"}]}"#,
                )
                .unwrap(),
            ),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .hits;
    assert_eq!(hits.len(), 1);
    server.stop();
    let server = ServerProcess::start(&dir, &[]);
    let mut c = server.client().await;
    for (q, want) in QUESTIONS {
        assert_eq!(
            &top_doc(&mut c, "kb", q).await.0,
            want,
            "after restart: {q:?}"
        );
    }
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn reingest_replaces_chunks_and_delete_removes_them() {
    let dir = temp_dir("reingest");
    let server = ServerProcess::start(&dir, &[]);
    let mut c = server.client().await;
    create_text_collection(&mut c, "kb", MINILM).await.unwrap();
    let long: String = (0..40)
        .map(|i| {
            format!("Sentence number {i} talks about lighthouses and the keepers who tended them. ")
        })
        .collect();
    let small = pb::IngestRequest {
        collection: "kb".into(),
        documents: vec![doc("light", &long)],
        chunk_tokens: 64,
        overlap_tokens: 8,
    };
    let last = ingest(&mut c, small).await.unwrap();
    assert!(last.done && last.chunks > 5, "{last:?}");
    let get = |c: &mut Client| {
        let mut c = c.clone();
        async move {
            c.documents
                .get(pb::GetDocumentRequest {
                    collection: "kb".into(),
                    id: "light".into(),
                    with_vector: false,
                })
                .await
                .unwrap()
                .into_inner()
                .chunks
        }
    };
    let chunks = get(&mut c).await;
    assert_eq!(chunks.len() as u64, last.chunks);
    for (i, ch) in chunks.iter().enumerate() {
        let p: Value = serde_json::from_str(&ch.payload_json).unwrap();
        assert_eq!(p["chunk"], i);
        let text = p["text"].as_str().unwrap();
        assert!(
            text.starts_with("Sentence number"),
            "chunks start at sentence boundaries: {text:?}"
        );
        assert!(
            text.ends_with('.'),
            "chunks end at sentence boundaries: {text:?}"
        );
    }
    // Re-ingest with a short text: one chunk remains.
    ingest_docs(
        &mut c,
        "kb",
        vec![doc("light", "Lighthouses are now automated.")],
    )
    .await
    .unwrap();
    let chunks = get(&mut c).await;
    assert_eq!(chunks.len(), 1);
    assert!(chunks[0].payload_json.contains("now automated"));
    assert_eq!(c.count("kb", None).await.unwrap(), 1);
    // Delete the document.
    let out = c
        .documents
        .delete(pb::DeleteDocumentRequest {
            collection: "kb".into(),
            id: "light".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(out.affected, 1);
    assert!(get(&mut c).await.is_empty());
    assert_eq!(c.count("kb", None).await.unwrap(), 0);
    // Deleting it again, or an unknown document, affects nothing and is not an error.
    let again = c
        .documents
        .delete(pb::DeleteDocumentRequest {
            collection: "kb".into(),
            id: "light".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.affected, 0);
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn bad_document_requests_get_clear_statuses() {
    let dir = temp_dir("docbad");
    let server = ServerProcess::start(&dir, &[]);
    let mut c = server.client().await;
    c.create_collection("plain", 4, pb::Metric::Cosine)
        .await
        .unwrap();
    create_text_collection(&mut c, "kb", MINILM).await.unwrap();
    let wrong_dim = c
        .collections
        .create(pb::CreateCollectionRequest {
            name: "kb2".into(),
            dim: 128,
            embedding_model: "all-minilm-l6-v2".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(wrong_dim.code(), Code::InvalidArgument, "{wrong_dim:?}");
    let unknown_model = c
        .collections
        .create(pb::CreateCollectionRequest {
            name: "kb3".into(),
            embedding_model: "no-such-model".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        unknown_model.code(),
        Code::FailedPrecondition,
        "{unknown_model:?}"
    );
    let cases: Vec<(&str, &str, pb::Document, Code)> = vec![
        (
            "no model",
            "plain",
            doc("a", "text"),
            Code::FailedPrecondition,
        ),
        (
            "unknown collection",
            "nope",
            doc("a", "text"),
            Code::NotFound,
        ),
        ("id with #", "kb", doc("a#1", "text"), Code::InvalidArgument),
        ("empty id", "kb", doc("", "text"), Code::InvalidArgument),
        (
            "metadata not an object",
            "kb",
            pb::Document {
                id: "m".into(),
                text: "t".into(),
                metadata_json: "[1, 2]".into(),
            },
            Code::InvalidArgument,
        ),
        (
            "metadata not JSON",
            "kb",
            pb::Document {
                id: "m".into(),
                text: "t".into(),
                metadata_json: "{oops".into(),
            },
            Code::InvalidArgument,
        ),
    ];
    for (what, coll, d, code) in cases {
        let err = ingest_docs(&mut c, coll, vec![d]).await.expect_err(what);
        assert_eq!(err.code(), code, "{what}: {err:?}");
    }
    let search = |query: &str, k: u32, coll: &str| pb::SearchTextRequest {
        collection: coll.into(),
        query: query.into(),
        k,
        ..Default::default()
    };
    for (what, req, code) in [
        ("empty query", search("  ", 3, "kb"), Code::InvalidArgument),
        ("k zero", search("q", 0, "kb"), Code::InvalidArgument),
        (
            "k huge",
            search("q", 1_000_000, "kb"),
            Code::InvalidArgument,
        ),
        (
            "no model",
            search("q", 3, "plain"),
            Code::FailedPrecondition,
        ),
    ] {
        let err = c.documents.search_text(req).await.expect_err(what);
        assert_eq!(err.code(), code, "{what}: {err:?}");
    }
    let too_many = c
        .documents
        .embed(pb::EmbedRequest {
            texts: vec!["x".into(); 100_000],
        })
        .await
        .unwrap_err();
    assert_eq!(too_many.code(), Code::ResourceExhausted);
    // Nothing was stored by the failed requests.
    assert_eq!(c.count("kb", None).await.unwrap(), 0);
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_missing_model_names_the_install_command_and_vectors_still_work() {
    let dir = temp_dir("nomodel");
    let empty = temp_dir("nomodel-models");
    let server = ServerProcess::start(&dir, &["--models-dir", empty.to_str().unwrap()]);
    let mut c = server.client().await;
    let err = c
        .documents
        .embed(pb::EmbedRequest {
            texts: vec!["hi".into()],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(
        err.message().contains("./scripts/models.sh"),
        "{}",
        err.message()
    );
    let err = create_text_collection(&mut c, "kb", MINILM)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(
        server.logs().contains("scripts/models.sh"),
        "the log says how to install it"
    );
    c.create_collection("v", 4, pb::Metric::L2).await.unwrap();
    assert_eq!(c.count("v", None).await.unwrap(), 0);
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&empty);
}

#[tokio::test]
async fn a_flood_of_embedding_requests_gets_clean_refusals_and_the_server_stays_healthy() {
    let dir = temp_dir("flood");
    let server = ServerProcess::start(&dir, &["--embed-queue", "1", "--embed-max-batch", "4"]);
    let c = server.client().await;
    let text = "The quick brown fox jumps over the lazy dog near the river bank in the morning.";
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..48 {
        let mut c = c.clone();
        tasks.spawn(async move {
            let mut req = tonic::Request::new(pb::EmbedRequest {
                texts: vec![text.to_string(); 32],
            });
            // Long enough that the 10% between the queue-wait limit and the deadline absorbs scheduling
            // delays on a loaded machine.
            req.set_timeout(Duration::from_secs(2));
            c.documents
                .embed(req)
                .await
                .map(|r| r.into_inner().vectors.len())
        });
    }
    let (mut ok, mut refused) = (0, 0);
    while let Some(r) = tasks.join_next().await {
        match r.unwrap() {
            Ok(n) => {
                assert_eq!(n, 32);
                ok += 1;
            }
            Err(s) if s.code() == Code::ResourceExhausted => {
                assert!(s.message().contains("queue is full"), "{s:?}");
                refused += 1;
            }
            // The job got in but the deadline passed while it ran.
            Err(s) if matches!(s.code(), Code::DeadlineExceeded | Code::Cancelled) => {}
            Err(s) => panic!("unexpected status {s:?}"),
        }
    }
    assert!(refused > 0, "a full queue refuses work (ok {ok})");
    // Healthy afterwards: a request with room in the queue succeeds.
    let mut c = c.clone();
    let v = embed(&mut c, &["still alive"]).await;
    assert_eq!(v.len(), 1);
    let metrics = fetch_metrics(&server.metrics_addr).await;
    assert!(metrics.contains("quiver_embed_rejected_total"), "{metrics}");
    assert!(metrics.contains("quiver_embed_texts_total"));
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

/// GET /metrics over a plain TCP connection.
async fn fetch_metrics(addr: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}
