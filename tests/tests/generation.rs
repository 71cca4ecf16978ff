//! Generation and Ask against a real server with the real SmolLM2-135M-Instruct weights
//! (dequantized to f32): the greedy reference answer, determinism, stop sequences and
//! max_tokens, Ask citing the right document of a small corpus, "I don't know" without context,
//! bad inputs, and prompt-lookup decoding giving exactly the greedy answer (Generate and Ask).

use quiver_client::{Client, pb};
use quiver_tests::{ServerProcess, create_text_collection, documents, ingest, temp_dir};
use tonic::Code;

/// The text of a streamed answer and its last message.
async fn drain<T>(
    mut s: tonic::Streaming<T>,
    text: fn(&T) -> &str,
    done: fn(&T) -> bool,
) -> Result<(String, T), tonic::Status> {
    let mut all = String::new();
    while let Some(m) = s.message().await? {
        all.push_str(text(&m));
        if done(&m) {
            return Ok((all, m));
        }
    }
    panic!("the stream ended without its last message");
}

async fn generate(
    c: &mut Client,
    req: pb::GenerateRequest,
) -> Result<(String, pb::GenerateResponse), tonic::Status> {
    let s = c.generation.generate(req).await?.into_inner();
    drain(s, |m| &m.text, |m| m.done).await
}

async fn ask(
    c: &mut Client,
    req: pb::AskRequest,
) -> Result<(String, pb::AskResponse), tonic::Status> {
    let s = c.generation.ask(req).await?.into_inner();
    drain(s, |m| &m.text, |m| m.done).await
}

fn prompt(p: &str) -> pb::GenerateRequest {
    pb::GenerateRequest {
        prompt: p.into(),
        max_tokens: 40,
        ..Default::default()
    }
}

#[tokio::test]
async fn greedy_generation_gives_the_reference_answer_and_honours_limits() {
    let dir = temp_dir("gen");
    let server = ServerProcess::start(&dir, &[]);
    let mut c = server.client().await;
    let (text, last) = generate(&mut c, prompt("What is the capital of France?"))
        .await
        .unwrap();
    assert_eq!(text, "The capital of France is Paris.");
    assert_eq!(last.stop_reason, "end_of_turn");
    assert_eq!(
        last.prompt_tokens, 37,
        "the chat template's prompt, as in the reference fixture"
    );
    assert!(
        last.completion_tokens >= 7 && last.tokens_per_second > 0.0,
        "{last:?}"
    );
    // Greedy with a fixed seed is deterministic; so is sampling with a fixed seed.
    let again = generate(&mut c, prompt("What is the capital of France?"))
        .await
        .unwrap()
        .0;
    assert_eq!(again, text);
    let sampled = |seed| pb::GenerateRequest {
        temperature: 0.8,
        top_p: 0.9,
        seed,
        ..prompt("Write one sentence about the sea.")
    };
    let a = generate(&mut c, sampled(7)).await.unwrap().0;
    let b = generate(&mut c, sampled(7)).await.unwrap().0;
    assert_eq!(a, b);
    // A stop sequence ends the answer before it; max_tokens ends it by length.
    let (text, last) = generate(
        &mut c,
        pb::GenerateRequest {
            stop: vec!["Paris".into()],
            ..prompt("What is the capital of France?")
        },
    )
    .await
    .unwrap();
    assert_eq!(
        (text.as_str(), last.stop_reason.as_str()),
        ("The capital of France is ", "stop_sequence")
    );
    let (_, last) = generate(
        &mut c,
        pb::GenerateRequest {
            max_tokens: 3,
            ..prompt("Count to ten.")
        },
    )
    .await
    .unwrap();
    assert_eq!(
        (last.completion_tokens, last.stop_reason.as_str()),
        (3, "length")
    );
    // max_tokens 0 takes the default (256), it is not an error.
    let (text, _) = generate(
        &mut c,
        pb::GenerateRequest {
            max_tokens: 0,
            ..prompt("What is the capital of France?")
        },
    )
    .await
    .unwrap();
    assert_eq!(text, "The capital of France is Paris.");
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

const DOCS: &[(&str, &str)] = &[
    (
        "etna",
        "Mount Etna is an active stratovolcano on the east coast of Sicily, Italy. It is the tallest active volcano in Europe outside the Caucasus, about 3,357 metres high.",
    ),
    (
        "sourdough",
        "Sourdough bread rises with a culture of wild yeast and lactic acid bacteria called a starter. Bakers feed the starter with flour and water.",
    ),
    (
        "quiver",
        "Quiver stores vectors in a RocksDB write-ahead log and immutable segment files. The default port of the Quiver server is 50051.",
    ),
];

#[tokio::test]
async fn ask_answers_from_the_right_document_with_citations() {
    let dir = temp_dir("ask");
    let server = ServerProcess::start(&dir, &[]);
    let mut c = server.client().await;
    create_text_collection(&mut c, "kb", "all-minilm-l6-v2")
        .await
        .unwrap();
    let req = pb::IngestRequest {
        collection: "kb".into(),
        documents: documents(DOCS),
        ..Default::default()
    };
    assert!(ingest(&mut c, req).await.unwrap().done);
    let question = |q: &str| pb::AskRequest {
        collection: "kb".into(),
        question: q.into(),
        ..Default::default()
    };
    for (q, doc, fact) in [
        ("How tall is Mount Etna?", "etna", "3,357"),
        (
            "What is the default port of the Quiver server?",
            "quiver",
            "50051",
        ),
    ] {
        let (answer, last) = ask(&mut c, question(q)).await.unwrap();
        assert_eq!(last.citations[0].doc_id, doc, "{q}: {last:?}");
        assert_eq!(last.citations[0].number, 1);
        assert!(last.citations[0].text.contains(fact));
        assert!(
            answer.contains(fact),
            "{q}: the answer {answer:?} states {fact}"
        );
        let t = last.timings.unwrap();
        assert!(
            t.retrieve_ms > 0.0 && t.generate_ms > 0.0 && t.completion_tokens > 0,
            "{t:?}"
        );
        assert_eq!(last.stop_reason, "end_of_turn");
    }
    // The semantic cache: the same question (the embedding model is uncased) is answered from
    // it; a write to the collection invalidates it; no_cache skips it.
    let (first, last) = ask(&mut c, question("How tall is Mount Etna?"))
        .await
        .unwrap();
    assert!(last.cached, "asked before on the unchanged collection");
    let (again, last) = ask(&mut c, question("how tall is mount etna?"))
        .await
        .unwrap();
    assert!(last.cached);
    assert_eq!(again, first);
    assert_eq!(last.citations[0].doc_id, "etna");
    let (_, last) = ask(
        &mut c,
        pb::AskRequest {
            no_cache: true,
            ..question("How tall is Mount Etna?")
        },
    )
    .await
    .unwrap();
    assert!(!last.cached);
    let (_, last) = ask(
        &mut c,
        pb::AskRequest {
            max_tokens: 50,
            ..question("How tall is Mount Etna?")
        },
    )
    .await
    .unwrap();
    assert!(!last.cached, "other settings, other cache entry");
    c.upsert(
        "kb",
        vec![pb::Point {
            id: Some(quiver_client::num_id(99)),
            vector: vec![0.05; 384],
            payload_json: "{}".into(),
        }],
    )
    .await
    .unwrap();
    let (answer, last) = ask(&mut c, question("How tall is Mount Etna?"))
        .await
        .unwrap();
    assert!(!last.cached, "a write invalidates the cached answers");
    assert_eq!(answer, first, "greedy: the same answer, computed again");
    // A grounded answer through Ask: prompt lookup changes the passes, not the answer.
    for q in [
        "How tall is Mount Etna?",
        "What is the default port of the Quiver server?",
    ] {
        let req = |no_prompt_lookup| pb::AskRequest {
            no_cache: true,
            no_prompt_lookup,
            ..question(q)
        };
        let (plain, p) = ask(&mut c, req(true)).await.unwrap();
        let (fast, f) = ask(&mut c, req(false)).await.unwrap();
        assert_eq!(fast, plain, "{q}");
        let (p, f) = (p.timings.unwrap(), f.timings.unwrap());
        assert_eq!(f.completion_tokens, p.completion_tokens, "{q}");
        assert_eq!(
            p.draft_tokens_accepted, 0,
            "{q}: plain greedy drafts nothing"
        );
    }
    // Nothing relevant: no guess.
    let (answer, last) = ask(&mut c, question("Who won the football world cup in 1998?"))
        .await
        .unwrap();
    assert!(answer.starts_with("I don't know"), "{answer:?}");
    assert_eq!(last.stop_reason, "no_context");
    assert!(last.citations.is_empty());
    // Bad inputs.
    let bad = [
        ("empty question", question("  "), Code::InvalidArgument),
        (
            "unknown collection",
            pb::AskRequest {
                collection: "nope".into(),
                ..question("q?")
            },
            Code::NotFound,
        ),
        (
            "k too large",
            pb::AskRequest {
                k: 1000,
                ..question("q?")
            },
            Code::InvalidArgument,
        ),
        (
            "max_tokens huge",
            pb::AskRequest {
                max_tokens: 1_000_000,
                ..question("How tall is Mount Etna?")
            },
            Code::InvalidArgument,
        ),
        (
            "negative temperature",
            pb::AskRequest {
                temperature: -1.0,
                ..question("q?")
            },
            Code::InvalidArgument,
        ),
        (
            "NaN temperature",
            pb::AskRequest {
                temperature: f32::NAN,
                ..question("q?")
            },
            Code::InvalidArgument,
        ),
    ];
    for (what, req, code) in bad {
        let err = ask(&mut c, req).await.expect_err(what);
        assert_eq!(err.code(), code, "{what}: {err:?}");
    }
    let bad_gen = [
        ("empty prompt", prompt(""), Code::InvalidArgument),
        (
            "max_tokens huge",
            pb::GenerateRequest {
                max_tokens: 1_000_000,
                ..prompt("hi")
            },
            Code::InvalidArgument,
        ),
        (
            "bad role",
            pb::GenerateRequest {
                messages: vec![pb::ChatMessage {
                    role: "robot".into(),
                    content: "hi".into(),
                }],
                ..prompt("")
            },
            Code::InvalidArgument,
        ),
        (
            "top_p above 1",
            pb::GenerateRequest {
                top_p: 2.0,
                ..prompt("hi")
            },
            Code::InvalidArgument,
        ),
    ];
    for (what, req, code) in bad_gen {
        let err = generate(&mut c, req).await.expect_err(what);
        assert_eq!(err.code(), code, "{what}: {err:?}");
    }
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Grounded prompts: a passage and a question whose answer repeats words of it.
const GROUNDED: &[(&str, &str)] = &[
    (
        "Mount Etna is an active stratovolcano on the east coast of Sicily, Italy. It is the tallest active volcano in Europe outside the Caucasus, about 3,357 metres high.",
        "Describe Mount Etna using the passage.",
    ),
    (
        "Sourdough bread rises with a culture of wild yeast and lactic acid bacteria called a starter. Bakers feed the starter with flour and water, and a long cold fermentation gives the loaf its sour taste.",
        "How is sourdough bread made?",
    ),
    (
        "Quiver stores vectors in a RocksDB write-ahead log and immutable segment files. An acknowledged write survives a crash because the log is synced before the server answers.",
        "Why does an acknowledged write survive a crash in Quiver?",
    ),
    (
        "The Danube is the second-longest river in Europe. It flows through ten countries, from the Black Forest in Germany to the Black Sea, passing Vienna, Bratislava, Budapest and Belgrade.",
        "Which capitals does the Danube pass? Answer with the passage's words.",
    ),
];

#[tokio::test]
async fn prompt_lookup_output_equals_plain_greedy_output() {
    let dir = temp_dir("lookup");
    let server = ServerProcess::start(&dir, &[]);
    let mut c = server.client().await;
    let mut accepted = 0;
    for (passage, question) in GROUNDED {
        let req = |no_prompt_lookup| pb::GenerateRequest {
            prompt: format!("Passage: {passage}\n\nQuestion: {question}"),
            max_tokens: 80,
            no_prompt_lookup,
            ..Default::default()
        };
        let (plain, p) = generate(&mut c, req(true)).await.unwrap();
        let (fast, f) = generate(&mut c, req(false)).await.unwrap();
        assert_eq!(fast, plain, "{question}");
        assert_eq!(f.completion_tokens, p.completion_tokens);
        assert_eq!(p.draft_tokens_accepted, 0);
        assert!(
            f.forward_passes + f.draft_tokens_accepted >= f.completion_tokens.saturating_sub(1)
        );
        accepted += f.draft_tokens_accepted;
    }
    assert!(
        accepted > 0,
        "grounded answers repeat the passage: drafts are accepted"
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
