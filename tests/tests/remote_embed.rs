//! The OpenAI-compatible embeddings back-end. No such service runs on this machine, so the
//! test serves one itself on loopback: a small HTTP endpoint answering `POST /v1/embeddings`
//! with hashed bag-of-words vectors (a stand-in for a remote model, not a model). The server is
//! real; documents and text search go through it end to end.

use quiver_client::pb;
use quiver_tests::{ServerProcess, create_text_collection, documents, ingest, temp_dir};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const DIM: usize = 64;

/// Words hashed into buckets, normalised.
fn bag_of_words(text: &str) -> Vec<f32> {
    let mut v = vec![0f32; DIM];
    for w in text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        let h = w
            .to_lowercase()
            .bytes()
            .fold(2166136261u32, |h, b| (h ^ b as u32).wrapping_mul(16777619));
        v[h as usize % DIM] += 1.0;
    }
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if n == 0.0 {
        v[0] = 1.0;
    } else {
        v.iter_mut().for_each(|x| *x /= n);
    }
    v
}

/// Serves `POST /v1/embeddings` on a free loopback port; counts requests and checks the key.
async fn fake_endpoint(requests: Arc<AtomicUsize>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            let requests = requests.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                loop {
                    let n = s.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .map_or(0, |v| v.trim().parse().unwrap());
                    if buf.len() < end + 4 + len {
                        continue;
                    }
                    requests.fetch_add(1, Ordering::SeqCst);
                    let body: Value = serde_json::from_slice(&buf[end + 4..end + 4 + len]).unwrap();
                    let (status, answer) = if !head.contains("authorization: bearer test-key") {
                        ("401 Unauthorized", json!({"error": "no key"}))
                    } else {
                        let data: Vec<Value> = body["input"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .enumerate()
                            .map(|(i, t)| json!({"index": i, "embedding": bag_of_words(t.as_str().unwrap())}))
                            .collect();
                        (
                            "200 OK",
                            json!({"object": "list", "data": data, "model": body["model"]}),
                        )
                    };
                    let text = answer.to_string();
                    let reply = format!(
                        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{text}",
                        text.len()
                    );
                    s.write_all(reply.as_bytes()).await.unwrap();
                    buf.clear();
                }
            });
        }
    });
    format!("http://{addr}/v1")
}

#[tokio::test]
async fn documents_and_text_search_through_an_openai_compatible_endpoint() {
    let requests = Arc::new(AtomicUsize::new(0));
    let url = fake_endpoint(requests.clone()).await;
    let dir = temp_dir("remote-embed");
    let server = {
        let url = url.clone();
        // The key goes to the server process only; start blocks, the fake endpoint must run.
        tokio::task::spawn_blocking(move || {
            ServerProcess::start_with_env(
                &dir,
                &["--embed-url", &url, "--embed-model", "bag-of-words"],
                &[("QUIVER_EMBED_API_KEY", "test-key")],
            )
        })
        .await
        .unwrap()
    };
    assert!(
        requests.load(Ordering::SeqCst) >= 1,
        "the server probed the dimension at start"
    );
    let mut c = server.client().await;
    let info = create_text_collection(&mut c, "kb", "bag-of-words")
        .await
        .unwrap();
    assert_eq!(
        info.dim, DIM as u32,
        "the dimension comes from the remote model"
    );
    let docs = documents(&[
        (
            "volcano",
            "Etna is a volcano in Sicily with lava flows and ash.",
        ),
        (
            "bread",
            "Sourdough bread rises with a starter of wild yeast.",
        ),
        ("chess", "The king castles towards a rook in chess."),
    ]);
    let req = pb::IngestRequest {
        collection: "kb".into(),
        documents: docs,
        ..Default::default()
    };
    let last = ingest(&mut c, req).await.unwrap();
    assert!(last.done && last.chunks == 3, "{last:?}");
    let hits = c
        .documents
        .search_text(pb::SearchTextRequest {
            collection: "kb".into(),
            query: "lava and ash of a volcano".into(),
            k: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .hits;
    let p: Value = serde_json::from_str(&hits[0].payload_json).unwrap();
    assert_eq!(p["doc_id"], "volcano");
    // The built-in model is not this server's: collections naming it are refused.
    let err = create_text_collection(&mut c, "other", "all-minilm-l6-v2")
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    server.remove();
}
