//! `quiver eval`: retrieval and answer quality of a document collection on a question set.
//!
//! ```text
//! QUESTIONS.jsonl ──► SearchText (k, mode) ──► recall@k, MRR, nDCG@k      (per question, mean)
//!    {"question",      Ask (unless --retrieval-only) ──► answer, citations, first-text/total ms
//!     "doc_ids",        Embed [question, answer, its sentences, support chunks]
//!     "kind"?}            ──► faithfulness, answer relevance, "I don't know" share
//! ```
//!
//! | file               | what it holds                                                 |
//! |--------------------|---------------------------------------------------------------|
//! | `eval.rs`          | the command: reading questions, calling the server, reporting  |
//! | `eval/metrics.rs`  | the formulas, with unit tests computed by hand                  |
//!
//! Faithfulness of one answer: the share of its sentences whose embedding has cosine at least
//! `--threshold` (default 0.5) with one of the chunks it cites, or with any context chunk when
//! it cites none. Answer relevance: cosine of the answer's and the question's embeddings. Both
//! are averaged over the answers that do not decline ("I don't know"), whose share is reported
//! apart. Embeddings come from the server's Embed RPC. Ask runs with `no_cache` (a cached answer
//! would time nothing) and greedy decoding, one question at a time.

mod metrics;

use super::{payload_value, table};
use anyhow::{Context, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use quiver_client::{Client, pb};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Arguments of `quiver eval`.
#[derive(Args)]
pub struct EvalArgs {
    /// A document collection (created with --model) holding the documents the questions name.
    collection: String,
    /// A .jsonl file of {"question": "...", "doc_ids": ["...", ...], "kind": "..." (optional)}.
    questions: PathBuf,
    /// Chunks retrieved per question for recall@k, MRR and nDCG@k.
    #[arg(short, long, default_value_t = 10)]
    k: u32,
    #[command(flatten)]
    retrieval: crate::docs::RetrievalArgs,
    /// Only the retrieval metrics: do not Ask.
    #[arg(long)]
    retrieval_only: bool,
    /// Most tokens of each answer (0: the server's default, 200).
    #[arg(long, default_value_t = 0)]
    max_tokens: u32,
    /// Context chunks given to the model by Ask (0: the server's default, 4).
    #[arg(long, default_value_t = 0)]
    ask_k: u32,
    /// Cosine at or above which an answer sentence counts as supported by a chunk.
    #[arg(long, default_value_t = 0.5)]
    threshold: f64,
    /// Evaluate only the first N questions (0: all).
    #[arg(long, default_value_t = 0)]
    limit: usize,
}

/// One line of the question file.
struct Question {
    question: String,
    doc_ids: Vec<String>,
    kind: Option<String>,
}

fn read_questions(path: &Path) -> anyhow::Result<Vec<Question>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = || format!("{} line {}", path.display(), n + 1);
        let v: Value = serde_json::from_str(line).with_context(|| format!("{}: not JSON", at()))?;
        let Some(question) = v["question"].as_str().filter(|q| !q.trim().is_empty()) else {
            bail!("{}: needs a non-empty \"question\" string", at());
        };
        let doc_ids: Vec<String> = match &v["doc_ids"] {
            Value::Array(a) => a
                .iter()
                .map(|d| match d {
                    Value::String(s) => Ok(s.clone()),
                    Value::Number(x) => Ok(x.to_string()),
                    _ => bail!("{}: doc_ids holds strings or numbers", at()),
                })
                .collect::<anyhow::Result<_>>()?,
            _ => bail!("{}: needs a \"doc_ids\" list", at()),
        };
        if doc_ids.is_empty() {
            bail!("{}: \"doc_ids\" is empty", at());
        }
        out.push(Question {
            question: question.into(),
            doc_ids,
            kind: v["kind"].as_str().map(String::from),
        });
    }
    if out.is_empty() {
        bail!("{} holds no questions", path.display());
    }
    Ok(out)
}

/// Retrieval scores of one question.
#[derive(Default, Clone, Copy)]
struct Retrieval {
    recall: f64,
    rr: f64,
    ndcg: f64,
    ms: f64,
}

/// What one Ask gave.
struct Answer {
    text: String,
    first_text_ms: Option<f64>,
    total_ms: f64,
    declined: bool,
    /// `None` for declined answers and answers without a sentence.
    faithfulness: Option<f64>,
    relevance: Option<f64>,
    cited_any: bool,
}

/// Scores one question's search; also returns the distinct documents in rank order.
async fn retrieve(
    client: &mut Client,
    a: &EvalArgs,
    q: &Question,
) -> anyhow::Result<(Retrieval, Vec<String>)> {
    let req = pb::SearchTextRequest {
        collection: a.collection.clone(),
        query: q.question.clone(),
        k: a.k,
        mode: crate::docs::ModeArg::to_pb(a.retrieval.mode),
        hybrid: Some(a.retrieval.hybrid_pb()),
        ..Default::default()
    };
    let t = Instant::now();
    let hits = client.documents.search_text(req).await?.into_inner().hits;
    let ms = t.elapsed().as_secs_f64() * 1e3;
    let chunk_docs: Vec<String> = hits
        .iter()
        .map(|h| {
            payload_value(&h.payload_json)["doc_id"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    let ranked = metrics::distinct_in_order(chunk_docs.iter().map(String::as_str));
    let relevant: HashSet<&str> = q.doc_ids.iter().map(String::as_str).collect();
    let r = Retrieval {
        recall: metrics::recall(&ranked, &relevant),
        rr: metrics::reciprocal_rank(&ranked, &relevant),
        ndcg: metrics::ndcg(&ranked, &relevant, a.k as usize),
        ms,
    };
    Ok((r, ranked.into_iter().map(String::from).collect()))
}

async fn embed(client: &mut Client, texts: Vec<String>) -> anyhow::Result<Vec<Vec<f32>>> {
    let n = texts.len();
    let r = client
        .documents
        .embed(pb::EmbedRequest { texts })
        .await?
        .into_inner();
    if r.vectors.len() != n {
        bail!("Embed returned {} vectors for {n} texts", r.vectors.len());
    }
    Ok(r.vectors.into_iter().map(|v| v.values).collect())
}

async fn answer(client: &mut Client, a: &EvalArgs, q: &Question) -> anyhow::Result<Answer> {
    let req = pb::AskRequest {
        collection: a.collection.clone(),
        question: q.question.clone(),
        k: a.ask_k,
        max_tokens: a.max_tokens,
        no_cache: true,
        mode: crate::docs::ModeArg::to_pb(a.retrieval.mode),
        hybrid: Some(a.retrieval.hybrid_pb()),
        ..Default::default()
    };
    let t = Instant::now();
    let mut stream = client.generation.ask(req).await?.into_inner();
    let mut text = String::new();
    let mut first_text_ms = None;
    let mut last = None;
    while let Some(m) = stream.message().await? {
        if first_text_ms.is_none() && !m.text.is_empty() {
            first_text_ms = Some(t.elapsed().as_secs_f64() * 1e3);
        }
        text.push_str(&m.text);
        if m.done {
            last = Some(m);
        }
    }
    let total_ms = t.elapsed().as_secs_f64() * 1e3;
    let last = last.context("the answer ended before its last message")?;
    let declined = metrics::says_dont_know(&text);
    let cited: Vec<&pb::Citation> = last.citations.iter().filter(|c| c.cited).collect();
    let support: Vec<&pb::Citation> = if cited.is_empty() {
        last.citations.iter().collect()
    } else {
        cited.clone()
    };
    let sentences = metrics::sentences(&text);
    let (mut faithfulness, mut relevance) = (None, None);
    if !declined && !sentences.is_empty() {
        // One Embed call: question, answer, sentences, support chunks.
        let mut texts = vec![q.question.clone(), metrics::strip_citations(&text)];
        texts.extend(sentences.iter().cloned());
        texts.extend(support.iter().map(|c| c.text.clone()));
        let v = embed(client, texts).await?;
        let (head, rest) = v.split_at(2);
        let (sent_v, support_v) = rest.split_at(sentences.len());
        relevance = Some(metrics::cosine(&head[0], &head[1]));
        faithfulness = metrics::support_share(sent_v, support_v, a.threshold);
    }
    Ok(Answer {
        text,
        first_text_ms,
        total_ms,
        declined,
        faithfulness,
        relevance,
        cited_any: !cited.is_empty(),
    })
}

fn retrieval_json(rs: &[Retrieval]) -> Value {
    let col = |f: fn(&Retrieval) -> f64| rs.iter().map(f).collect::<Vec<f64>>();
    json!({
        "questions": rs.len(),
        "recall": metrics::mean(&col(|r| r.recall)),
        "mrr": metrics::mean(&col(|r| r.rr)),
        "ndcg": metrics::mean(&col(|r| r.ndcg)),
        "search_ms_p50": metrics::percentile(&col(|r| r.ms), 50.0),
        "search_ms_p95": metrics::percentile(&col(|r| r.ms), 95.0),
    })
}

fn answers_json(answers: &[Answer], threshold: f64) -> Value {
    let n = answers.len() as f64;
    let some = |f: fn(&Answer) -> Option<f64>| answers.iter().filter_map(f).collect::<Vec<f64>>();
    let first = some(|x| x.first_text_ms);
    let total = some(|x| Some(x.total_ms));
    json!({
        "answers": answers.len(),
        "threshold": threshold,
        "faithfulness": metrics::mean(&some(|x| x.faithfulness)),
        "answer_relevance": metrics::mean(&some(|x| x.relevance)),
        "scored_answers": some(|x| x.faithfulness).len(),
        "dont_know_share": answers.iter().filter(|x| x.declined).count() as f64 / n,
        "citing_share": answers.iter().filter(|x| x.cited_any).count() as f64 / n,
        "first_text_ms_p50": metrics::percentile(&first, 50.0),
        "first_text_ms_p95": metrics::percentile(&first, 95.0),
        "total_ms_p50": metrics::percentile(&total, 50.0),
        "total_ms_p95": metrics::percentile(&total, 95.0),
    })
}

fn fmt(v: &Value, digits: usize) -> String {
    v.as_f64()
        .map_or_else(|| "-".into(), |x| format!("{x:.digits$}"))
}

/// `quiver eval`.
pub async fn eval(mut client: Client, a: EvalArgs, as_json: bool) -> anyhow::Result<()> {
    let mut questions = read_questions(&a.questions)?;
    if a.limit > 0 {
        questions.truncate(a.limit);
    }
    if a.k == 0 {
        bail!("--k must be at least 1");
    }
    if !(-1.0..=1.0).contains(&a.threshold) {
        bail!("--threshold is a cosine, between -1 and 1");
    }
    let bar = if as_json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(questions.len() as u64)
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:40} {pos}/{len} questions  [{elapsed_precise}, eta {eta}]",
        )
        .expect("valid template"),
    );
    let mut retrievals = Vec::with_capacity(questions.len());
    let mut by_kind: BTreeMap<String, Vec<Retrieval>> = BTreeMap::new();
    let mut answers = Vec::new();
    let mut per_question = Vec::with_capacity(questions.len());
    let t = Instant::now();
    for q in &questions {
        let (r, ranked) = retrieve(&mut client, &a, q).await?;
        retrievals.push(r);
        if let Some(kind) = &q.kind {
            by_kind.entry(kind.clone()).or_default().push(r);
        }
        let mut row = json!({
            "question": q.question, "kind": q.kind, "doc_ids": q.doc_ids, "ranked_doc_ids": ranked,
            "recall": r.recall, "reciprocal_rank": r.rr, "ndcg": r.ndcg, "search_ms": r.ms,
        });
        if !a.retrieval_only {
            let x = answer(&mut client, &a, q).await?;
            row["answer"] = json!({
                "text": x.text, "dont_know": x.declined, "faithfulness": x.faithfulness,
                "relevance": x.relevance, "cited": x.cited_any,
                "first_text_ms": x.first_text_ms, "total_ms": x.total_ms,
            });
            answers.push(x);
        }
        per_question.push(row);
        bar.inc(1);
    }
    bar.finish_and_clear();
    let retrieval = retrieval_json(&retrievals);
    let kinds: BTreeMap<&String, Value> = by_kind
        .iter()
        .map(|(k, rs)| (k, retrieval_json(rs)))
        .collect();
    let ask = (!a.retrieval_only).then(|| answers_json(&answers, a.threshold));
    let report = json!({
        "collection": a.collection, "k": a.k, "mode": a.retrieval.describe(), "fusion": a.retrieval.fusion(),
        "questions": questions.len(), "seconds": t.elapsed().as_secs_f64(),
        "retrieval": retrieval, "by_kind": kinds, "ask": ask, "per_question": per_question,
    });
    if as_json {
        println!("{report}");
        return Ok(());
    }
    print_report(&report, a.k);
    Ok(())
}

fn print_report(r: &Value, k: u32) {
    println!(
        "{} questions on {}, k {k}, retrieval {}, {:.1} s",
        r["questions"],
        r["collection"].as_str().unwrap_or_default(),
        r["mode"].as_str().unwrap_or_default(),
        r["seconds"].as_f64().unwrap_or_default()
    );
    let mut rows = Vec::new();
    let mut add = |name: &str, x: &Value| {
        rows.push(vec![
            name.to_string(),
            x["questions"].to_string(),
            fmt(&x["recall"], 3),
            fmt(&x["mrr"], 3),
            fmt(&x["ndcg"], 3),
            fmt(&x["search_ms_p50"], 1),
            fmt(&x["search_ms_p95"], 1),
        ])
    };
    add("all", &r["retrieval"]);
    if let Some(kinds) = r["by_kind"].as_object() {
        for (kind, x) in kinds {
            add(kind, x);
        }
    }
    let recall = format!("recall@{k}");
    let ndcg = format!("nDCG@{k}");
    table(
        &[
            "questions",
            "n",
            &recall,
            "MRR",
            &ndcg,
            "search p50 ms",
            "p95 ms",
        ],
        rows,
    );
    let ask = &r["ask"];
    if ask.is_null() {
        return;
    }
    println!();
    let pct = |x: &Value| {
        x.as_f64()
            .map_or_else(|| "-".into(), |v| format!("{:.1}%", v * 100.0))
    };
    table(
        &["answers", "value"],
        vec![
            vec![
                format!(
                    "faithfulness (cosine >= {}, mean of {} answers)",
                    ask["threshold"], ask["scored_answers"]
                ),
                fmt(&ask["faithfulness"], 3),
            ],
            vec![
                "answer relevance (cosine to the question)".into(),
                fmt(&ask["answer_relevance"], 3),
            ],
            vec!["said \"I don't know\"".into(), pct(&ask["dont_know_share"])],
            vec!["cited a chunk".into(), pct(&ask["citing_share"])],
            vec![
                "first text p50 / p95 ms".into(),
                format!(
                    "{} / {}",
                    fmt(&ask["first_text_ms_p50"], 0),
                    fmt(&ask["first_text_ms_p95"], 0)
                ),
            ],
            vec![
                "total p50 / p95 ms".into(),
                format!(
                    "{} / {}",
                    fmt(&ask["total_ms_p50"], 0),
                    fmt(&ask["total_ms_p95"], 0)
                ),
            ],
        ],
    );
}
