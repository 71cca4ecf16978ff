//! `quiver eval` against a real server with the real embedding and language models: retrieval
//! metrics that must hold on a small corpus (a question quoting a document verbatim ranks it
//! first; an answer document the collection lacks is never found) under dense, BM25 and hybrid
//! retrieval, the Ask metrics present and in range, `--retrieval-only`, and a malformed question
//! file refused.

use quiver_client::pb;
use quiver_tests::{
    ServerProcess, create_text_collection, documents, ingest, quiver, quiver_json, temp_dir,
};
use serde_json::Value;
use std::path::Path;

const CORPUS: &[(&str, &str)] = &[
    (
        "volcano",
        "Mount Etna is an active stratovolcano on the east coast of Sicily. Its eruptions send lava flows down the slopes and ash clouds over Catania.",
    ),
    (
        "bread",
        "Sourdough bread rises with a culture of wild yeast and lactic acid bacteria. Bakers feed the starter with flour and water.",
    ),
    (
        "chess",
        "In chess the king castles by moving two squares towards a rook, which jumps over to the other side. Castling is not allowed when the king is in check.",
    ),
    (
        "whales",
        "Blue whales are the largest animals known to have lived. They feed almost only on krill, filtering the small crustaceans through baleen plates.",
    ),
    (
        "tennis",
        "A tennis match at Wimbledon is played on grass. Players must win six games to take a set, and a tiebreak decides the set at six games all.",
    ),
];

fn eval_json(addr: &str, collection: &str, questions: &Path, extra: &[&str]) -> Value {
    let mut args = vec!["eval", collection, questions.to_str().expect("UTF-8 path")];
    args.extend_from_slice(extra);
    quiver_json(addr, &args)
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

fn close(got: &Value, want: f64) {
    assert!((f(got) - want).abs() < 1e-9, "got {got}, want {want}");
}

/// The values the three questions must get whatever the retriever.
fn check_per_question(per: &[Value]) {
    for (q, (recall, rr, ndcg)) in per.iter().zip([
        (1.0, 1.0, 1.0),
        (0.5, 1.0, 1.0 / (1.0 + 1.0 / 3f64.log2())),
        (0.0, 0.0, 0.0),
    ]) {
        close(&q["recall"], recall);
        close(&q["reciprocal_rank"], rr);
        close(&q["ndcg"], ndcg);
        let ranked = q["ranked_doc_ids"].as_array().expect("ranked ids");
        assert!(!ranked.is_empty() && ranked.len() <= 3, "{ranked:?}");
    }
    assert_eq!(per[0]["ranked_doc_ids"][0], "volcano");
    assert_eq!(per[1]["ranked_doc_ids"][0], "chess");
}

#[tokio::test]
async fn eval_reports_retrieval_and_answer_metrics() {
    let dir = temp_dir("eval");
    let server = ServerProcess::start(&dir, &[]);
    let mut c = server.client().await;
    create_text_collection(&mut c, "docs", "all-minilm-l6-v2")
        .await
        .unwrap();
    let done = ingest(
        &mut c,
        pb::IngestRequest {
            collection: "docs".into(),
            documents: documents(CORPUS),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(done.done && done.documents == CORPUS.len() as u64);

    let questions = dir.join("questions.jsonl");
    let lines = [
        // Verbatim: the document itself ranks first.
        serde_json::json!({"question": CORPUS[0].1, "doc_ids": ["volcano"], "kind": "verbatim"}),
        // Verbatim, with a second answer document the collection does not hold: recall 1/2,
        // reciprocal rank 1, nDCG = 1 / (1 + 1/log2(3)).
        serde_json::json!({"question": CORPUS[2].1, "doc_ids": ["chess", "missing"], "kind": "verbatim"}),
        // Only a missing document: nothing can be found.
        serde_json::json!({"question": "How do whales feed?", "doc_ids": ["missing"], "kind": "absent"}),
    ];
    let text: Vec<String> = lines.iter().map(Value::to_string).collect();
    std::fs::write(&questions, text.join("\n") + "\n").unwrap();

    let r = eval_json(
        &server.addr,
        "docs",
        &questions,
        &["--k", "3", "--max-tokens", "12", "--mode", "dense"],
    );
    assert_eq!(r["questions"], 3);
    assert_eq!(r["mode"], "dense");
    let per = r["per_question"].as_array().expect("per_question");
    assert_eq!(per.len(), 3);
    check_per_question(per);
    // Means over the three questions, and per kind.
    let ret = &r["retrieval"];
    close(&ret["recall"], 1.5 / 3.0);
    close(&ret["mrr"], 2.0 / 3.0);
    close(&r["by_kind"]["verbatim"]["recall"], 0.75);
    close(&r["by_kind"]["absent"]["mrr"], 0.0);

    // Ask ran once per question; its metrics are present and in range.
    let ask = &r["ask"];
    assert_eq!(ask["answers"], 3);
    assert_eq!(ask["threshold"], 0.5);
    let scored = ask["scored_answers"].as_u64().expect("scored_answers");
    let declined = f(&ask["dont_know_share"]);
    assert!((0.0..=1.0).contains(&declined));
    assert!(
        (1..=3).contains(&scored),
        "the verbatim questions get answers: {r}"
    );
    for key in ["faithfulness", "answer_relevance", "citing_share"] {
        let x = f(&ask[key]);
        assert!((0.0..=1.0).contains(&x), "{key} = {x}");
    }
    let (p50, p95) = (f(&ask["first_text_ms_p50"]), f(&ask["first_text_ms_p95"]));
    let (t50, t95) = (f(&ask["total_ms_p50"]), f(&ask["total_ms_p95"]));
    assert!(0.0 < p50 && p50 <= p95 && p50 <= t50 && t50 <= t95 && p95 <= t95);
    for q in per {
        let a = &q["answer"];
        assert!(a["text"].is_string() && f(&a["total_ms"]) > 0.0, "{a}");
        if a["dont_know"] == false {
            let fa = f(&a["faithfulness"]);
            assert!((0.0..=1.0).contains(&fa), "{a}");
        }
    }

    // --retrieval-only: the same retrieval figures, no Ask.
    let only = eval_json(
        &server.addr,
        "docs",
        &questions,
        &["--k", "3", "--retrieval-only", "--mode", "dense"],
    );
    assert!(only["ask"].is_null());
    assert_eq!(only["retrieval"]["recall"], r["retrieval"]["recall"]);
    assert_eq!(only["retrieval"]["mrr"], r["retrieval"]["mrr"]);

    // BM25 and hybrid retrieval on a collection with a text index: the same values must hold.
    let out = quiver(
        &server.addr,
        &[
            "collection",
            "create",
            "docs_text",
            "--model",
            "all-minilm-l6-v2",
            "--text-index",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    ingest(
        &mut c,
        pb::IngestRequest {
            collection: "docs_text".into(),
            documents: documents(CORPUS),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    for mode in ["bm25", "hybrid", "dense"] {
        let r = eval_json(
            &server.addr,
            "docs_text",
            &questions,
            &["--k", "3", "--retrieval-only", "--mode", mode],
        );
        assert_eq!(r["mode"], mode);
        check_per_question(r["per_question"].as_array().expect("per_question"));
    }

    // A question without answer documents is refused, naming the line.
    std::fs::write(&questions, "{\"question\": \"q\", \"doc_ids\": []}\n").unwrap();
    let out = quiver(
        &server.addr,
        &[
            "eval",
            "docs",
            questions.to_str().unwrap(),
            "--retrieval-only",
        ],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 1") && err.contains("doc_ids"), "{err}");

    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
