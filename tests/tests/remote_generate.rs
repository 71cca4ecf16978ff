//! The OpenAI-compatible generation back-end (`--gen-url`, `[generation]`), end to end. No chat
//! model service runs on this machine, so the test serves a stand-in `POST /v1/chat/completions`
//! on loopback (std `TcpListener`, one thread per connection): it records every request, checks
//! the Bearer key, and streams a deterministic answer as server-sent events in several chunks,
//! with `usage` computed from the request. It is a mock of the remote endpoint only, not a
//! model. Everything else is real: the `quiver-server` process, RocksDB, the built-in embedding
//! model (retrieval for Ask), the gRPC stream, the semantic answer cache.

use quiver_client::{Client, pb};
use quiver_tests::{
    ServerProcess, create_text_collection, documents, ingest, server_bin, temp_dir,
};
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tonic::Code;

/// The key the stand-in accepts.
const KEY: &str = "gen-test-key";
/// The model name the server is configured with.
const MODEL: &str = "stand-in-chat";
/// The stand-in's answer to a plain chat, one SSE chunk each.
const PIECES: [&str; 5] = ["The ", "capital ", "of France ", "is ", "Paris."];

/// One request the stand-in received: its head (request line and headers, lower-cased) and body.
#[derive(Clone, Debug)]
struct Seen {
    head: String,
    body: Value,
}

/// The stand-in endpoint: its base URL (`…/v1`) and what it received.
struct StandIn {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl StandIn {
    fn start() -> StandIn {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/v1", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for s in listener.incoming().map_while(Result::ok) {
                let log = log.clone();
                std::thread::spawn(move || serve(s, &log));
            }
        });
        StandIn { url, seen }
    }

    fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    fn last(&self) -> Seen {
        self.seen
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("a request")
    }
}

/// Reads one HTTP request with a Content-Length body: (head lower-cased, body).
fn read_request(s: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map(|v| v.trim().parse().unwrap())
                .expect("the server sends a Content-Length");
            if buf.len() >= end + 4 + len {
                return Some((head, buf[end + 4..end + 4 + len].to_vec()));
            }
        }
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn reply_json(s: &mut TcpStream, status: &str, body: Value) {
    let text = body.to_string();
    let _ = write!(
        s,
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
        text.len()
    );
}

/// Words of every message, the stand-in's "prompt tokens".
fn words(body: &Value) -> usize {
    body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap().split_whitespace().count())
        .sum()
}

/// The stand-in's answer: for an Ask prompt, "According to [1], " and the first numbered
/// passage, word by word; for any other chat, `PIECES`.
fn answer(body: &Value) -> Vec<String> {
    let msgs = body["messages"].as_array().unwrap();
    let user = msgs.last().unwrap()["content"].as_str().unwrap();
    match user.lines().find_map(|l| l.strip_prefix("[1] ")) {
        Some(passage) => format!("According to [1], {passage}")
            .split_inclusive(' ')
            .map(str::to_string)
            .collect(),
        None => PIECES.iter().map(|p| p.to_string()).collect(),
    }
}

fn serve(mut s: TcpStream, log: &Mutex<Vec<Seen>>) {
    let Some((head, body)) = read_request(&mut s) else {
        return;
    };
    let body: Value = serde_json::from_slice(&body).expect("the request body is JSON");
    log.lock().unwrap().push(Seen {
        head: head.clone(),
        body: body.clone(),
    });
    if !head.starts_with("post /v1/chat/completions ") {
        return reply_json(
            &mut s,
            "404 Not Found",
            json!({"error": {"message": "no route"}}),
        );
    }
    if !head.contains(&format!("authorization: bearer {KEY}")) {
        let e = json!({"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}});
        return reply_json(&mut s, "401 Unauthorized", e);
    }
    let _ = write!(
        s,
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\nconnection: close\r\n\r\n"
    );
    let user = body["messages"].as_array().unwrap().last().unwrap()["content"]
        .as_str()
        .unwrap()
        .to_string();
    if user.contains("MALFORMED") {
        let _ = s.write_all(b"data: {\"choices\": [\n\n");
        return;
    }
    let pieces = answer(&body);
    let max = body["max_tokens"].as_u64().unwrap() as usize;
    let n = pieces.len().min(max);
    let mut events = vec![
        ": a comment line, as some servers send".to_string(),
        json!({"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}]}).to_string(),
    ];
    for p in &pieces[..n] {
        events.push(json!({"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": p}, "finish_reason": null}]}).to_string());
    }
    let finish = if n < pieces.len() { "length" } else { "stop" };
    events.push(json!({"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]}).to_string());
    events.push(json!({"object": "chat.completion.chunk", "choices": [], "usage": {"prompt_tokens": words(&body), "completion_tokens": n, "total_tokens": words(&body) + n}}).to_string());
    events.push("[DONE]".into());
    for e in events {
        let line = if e.starts_with(':') {
            format!("{e}\n\n")
        } else {
            format!("data: {e}\n\n")
        };
        if s.write_all(line.as_bytes()).is_err() {
            return;
        }
        let _ = s.flush();
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The streamed messages' texts (empty ones left out) and the last message.
async fn generate(
    c: &mut Client,
    req: pb::GenerateRequest,
) -> Result<(Vec<String>, pb::GenerateResponse), tonic::Status> {
    let mut s = c.generation.generate(req).await?.into_inner();
    let mut pieces = Vec::new();
    while let Some(m) = s.message().await? {
        if m.done {
            return Ok((pieces, m));
        }
        pieces.push(m.text);
    }
    panic!("the stream ended without its last message");
}

async fn ask(
    c: &mut Client,
    req: pb::AskRequest,
) -> Result<(String, pb::AskResponse), tonic::Status> {
    let mut s = c.generation.ask(req).await?.into_inner();
    let mut text = String::new();
    while let Some(m) = s.message().await? {
        text.push_str(&m.text);
        if m.done {
            return Ok((text, m));
        }
    }
    panic!("the stream ended without its last message");
}

fn chat(prompt: &str, max_tokens: u32) -> pb::GenerateRequest {
    pb::GenerateRequest {
        prompt: prompt.into(),
        max_tokens,
        ..Default::default()
    }
}

fn start_server(name: &str, url: &str, key: &str) -> ServerProcess {
    ServerProcess::start_with_env(
        &temp_dir(name),
        &["--gen-url", url, "--gen-model", MODEL],
        &[("QUIVER_GEN_API_KEY", key)],
    )
}

const DOCS: &[(&str, &str)] = &[
    (
        "volcano",
        "Mount Etna is an active volcano on the east coast of Sicily; its lava flows reach the sea.",
    ),
    (
        "bread",
        "Sourdough bread rises slowly with a starter of wild yeast and lactic acid bacteria.",
    ),
    (
        "chess",
        "In chess the king castles towards a rook, moving two squares along the back rank.",
    ),
];

#[tokio::test]
async fn generate_and_ask_through_an_openai_compatible_endpoint() {
    let stand_in = StandIn::start();
    let server = start_server("remote-gen", &stand_in.url, KEY);
    let logs = server.logs();
    assert!(
        logs.contains("remote OpenAI-compatible endpoint") && logs.contains(MODEL),
        "the log names the remote model: {logs}"
    );
    assert!(
        !logs.contains("generation model loaded"),
        "the built-in model is not loaded when a URL is set"
    );
    let mut c = server.client().await;

    // Generate: the pieces arrive in order, one message each; the last message carries the
    // stop reason and the endpoint's token counts.
    let req = pb::GenerateRequest {
        temperature: 0.5,
        stop: vec!["\n\n".into()],
        seed: 42,
        ..chat("What is the capital of France?", 40)
    };
    let (pieces, last) = generate(&mut c, req).await.unwrap();
    assert_eq!(pieces, PIECES);
    assert_eq!(last.stop_reason, "end_of_turn");
    assert_eq!(last.model, MODEL);
    let seen = stand_in.last();
    assert_eq!(
        (last.prompt_tokens as usize, last.completion_tokens as usize),
        (words(&seen.body), PIECES.len()),
        "token counts are the endpoint's usage"
    );
    assert_eq!((last.forward_passes, last.draft_tokens_accepted), (0, 0));
    assert!(last.first_token_ms > 0.0, "{last:?}");
    // What the endpoint was sent.
    assert!(
        seen.head.starts_with("post /v1/chat/completions "),
        "{}",
        seen.head
    );
    assert!(
        seen.head.contains(&format!("authorization: bearer {KEY}")),
        "the Bearer key from QUIVER_GEN_API_KEY"
    );
    let b = &seen.body;
    assert_eq!(b["model"], MODEL);
    assert_eq!(
        b["messages"],
        json!([{"role": "user", "content": "What is the capital of France?"}])
    );
    assert_eq!(b["max_tokens"], 40);
    assert_eq!(b["temperature"].as_f64(), Some(0.5));
    assert_eq!(b["stop"], json!(["\n\n"]));
    assert_eq!(b["seed"], 42);
    assert_eq!(b["stream"], true);
    assert!(b.get("top_p").is_none() && b.get("top_k").is_none(), "{b}");

    // Chat messages go as they are; max_tokens cuts the answer: finish_reason "length".
    let req = pb::GenerateRequest {
        messages: vec![
            pb::ChatMessage {
                role: "system".into(),
                content: "Be brief.".into(),
            },
            pb::ChatMessage {
                role: "user".into(),
                content: "Capital of France?".into(),
            },
        ],
        max_tokens: 3,
        ..Default::default()
    };
    let (pieces, last) = generate(&mut c, req).await.unwrap();
    assert_eq!(pieces, PIECES[..3]);
    assert_eq!(
        (last.stop_reason.as_str(), last.completion_tokens),
        ("length", 3)
    );
    let b = stand_in.last().body;
    assert_eq!(
        b["messages"][0],
        json!({"role": "system", "content": "Be brief."})
    );
    assert_eq!(b["max_tokens"], 3);

    // A raw prompt has no form in the chat API: refused before anything is sent.
    let before = stand_in.count();
    let err = generate(
        &mut c,
        pb::GenerateRequest {
            raw: true,
            ..chat("<|im_start|>user\nHi<|im_end|>\n", 10)
        },
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("raw"), "{}", err.message());
    assert_eq!(stand_in.count(), before, "nothing was sent");

    // An answer that is not server-sent JSON: INTERNAL with a message; the server goes on.
    let err = generate(&mut c, chat("MALFORMED please", 10))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Internal, "{err:?}");
    assert!(
        err.message().contains("unusable answer"),
        "{}",
        err.message()
    );

    // Ask: retrieval by the real embedding model, the numbered passages in the prompt, the
    // endpoint's answer streamed back, citations.
    create_text_collection(&mut c, "kb", "all-minilm-l6-v2")
        .await
        .unwrap();
    let req = pb::IngestRequest {
        collection: "kb".into(),
        documents: documents(DOCS),
        ..Default::default()
    };
    assert!(ingest(&mut c, req).await.unwrap().done);
    let question = pb::AskRequest {
        collection: "kb".into(),
        question: "Which volcano has lava flows that reach the sea?".into(),
        ..Default::default()
    };
    let before = stand_in.count();
    let (text, last) = ask(&mut c, question.clone()).await.unwrap();
    assert_eq!(stand_in.count(), before + 1);
    let b = stand_in.last().body;
    let msgs = b["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 2, "{b}");
    assert_eq!(msgs[0]["role"], "system");
    assert!(
        msgs[0]["content"]
            .as_str()
            .unwrap()
            .contains("numbered context passages")
    );
    let user = msgs[1]["content"].as_str().unwrap();
    assert!(
        user.starts_with("Context:\n[1] Mount Etna is an active volcano"),
        "{user}"
    );
    assert!(user.ends_with("Question: Which volcano has lava flows that reach the sea?"));
    assert_eq!(b["max_tokens"], 200, "Ask's default answer length");
    assert_eq!(b["temperature"].as_f64(), Some(0.0));
    assert_eq!(text, format!("According to [1], {}", DOCS[0].1));
    assert!(!last.cached);
    assert_eq!(last.model, MODEL);
    assert_eq!(last.stop_reason, "end_of_turn");
    assert_eq!(last.citations[0].doc_id, "volcano");
    assert_eq!(last.citations[0].number, 1);
    assert!(last.citations[0].cited, "the answer cites [1]");
    assert!(
        last.citations[1..].iter().all(|c| !c.cited),
        "{:?}",
        last.citations
    );
    let t = last.timings.unwrap();
    assert_eq!(t.prompt_tokens as usize, words(&b));
    assert_eq!(t.completion_tokens as usize, answer(&b).len());
    assert!(t.retrieve_ms > 0.0 && t.generate_ms > 0.0, "{t:?}");

    // The semantic cache: the same question again is answered from it, without the endpoint;
    // no_cache calls the endpoint again.
    let (again, last) = ask(&mut c, question.clone()).await.unwrap();
    assert!(last.cached, "{last:?}");
    assert_eq!(again, text);
    assert_eq!(
        stand_in.count(),
        before + 1,
        "the endpoint was not called again"
    );
    let (_, last) = ask(
        &mut c,
        pb::AskRequest {
            no_cache: true,
            ..question
        },
    )
    .await
    .unwrap();
    assert!(!last.cached);
    assert_eq!(stand_in.count(), before + 2);
    assert!(
        !server.logs().contains(KEY),
        "the key never reaches the log"
    );
    server.remove();
}

#[tokio::test]
async fn endpoint_failures_are_clear_statuses() {
    // A wrong key: the endpoint's 401 and its message.
    let stand_in = StandIn::start();
    let server = start_server("remote-gen-401", &stand_in.url, "wrong-key");
    let mut c = server.client().await;
    let err = generate(&mut c, chat("Hello?", 10)).await.unwrap_err();
    // The server's configuration, not the caller's credentials: FAILED_PRECONDITION; the
    // endpoint's words (they may echo part of the key) go to the server log only.
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(
        err.message().contains("401") && err.message().contains("QUIVER_GEN_API_KEY"),
        "{}",
        err.message()
    );
    assert!(!err.message().contains("Incorrect API key provided"));
    assert!(server.logs().contains("Incorrect API key provided"));
    assert!(!server.logs().contains("wrong-key") && !err.message().contains("wrong-key"));
    assert_eq!(stand_in.count(), 1);
    server.remove();

    // A URL with nothing behind it: UNAVAILABLE naming the endpoint; the server stays up and
    // answers the same way again.
    let dead = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let url = format!("http://{dead}/v1");
    let server = start_server("remote-gen-down", &url, KEY);
    let mut c = server.client().await;
    for _ in 0..2 {
        let err = generate(&mut c, chat("Hello?", 10)).await.unwrap_err();
        assert_eq!(err.code(), Code::Unavailable, "{err:?}");
        assert!(
            err.message().contains(&format!("{url}/chat/completions")),
            "{}",
            err.message()
        );
    }
    server.remove();

    // A URL without a model is refused at start, with the setting to fix.
    let dir = temp_dir("remote-gen-no-model");
    let out = std::process::Command::new(server_bin())
        .args(["--data-dir", dir.to_str().unwrap(), "--gen-url", &url])
        .args(["--grpc-addr", "127.0.0.1:0", "--metrics-addr", "off"])
        .env_remove("QUIVER_GEN_MODEL")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("generation.model"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}
