//! `quiver-bench ask`: Ask latency against a running server, one question at a time: time to
//! the first answer text (client-side), total time, and the model's generation rate.

use crate::search::percentile;
use anyhow::Context;
use quiver_client::{Client, pb};
use serde_json::json;
use std::path::Path;
use std::time::Instant;

pub async fn run(
    addr: &str,
    collection: &str,
    questions: &Path,
    max_tokens: u32,
    rounds: usize,
    no_prompt_lookup: bool,
) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(questions)
        .with_context(|| format!("reading {}", questions.display()))?;
    let qs: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    anyhow::ensure!(!qs.is_empty(), "{} has no questions", questions.display());
    let mut c = Client::connect(addr).await?;
    let (mut first, mut total, mut rates) = (Vec::new(), Vec::new(), Vec::new());
    let (mut answered, mut no_context) = (0, 0);
    let (mut passes, mut accepted, mut tokens) = (0u64, 0u64, 0u64);
    // Every answer's tokens after the first, over every answer's decoding time.
    let (mut decode_tokens, mut decode_secs) = (0u64, 0f64);
    for round in 0..rounds.max(1) + 1 {
        for q in &qs {
            let req = pb::AskRequest {
                collection: collection.into(),
                question: q.to_string(),
                max_tokens,
                no_prompt_lookup,
                // Every pass must generate: the cache would answer repeats.
                no_cache: true,
                ..Default::default()
            };
            let t = Instant::now();
            let mut s = c.generation.ask(req).await?.into_inner();
            let mut first_ms = None;
            let mut last = None;
            while let Some(m) = s.message().await? {
                if first_ms.is_none() && !m.text.is_empty() {
                    first_ms = Some(t.elapsed().as_secs_f64() * 1e3);
                }
                if m.done {
                    last = Some(m);
                }
            }
            let total_ms = t.elapsed().as_secs_f64() * 1e3;
            // The first round warms caches and is not counted.
            if round == 0 {
                continue;
            }
            let last = last.context("an answer ended without its last message")?;
            if last.stop_reason == "no_context" {
                no_context += 1;
                continue;
            }
            answered += 1;
            first.push(first_ms.unwrap_or(total_ms));
            total.push(total_ms);
            let tm = last.timings.unwrap_or_default();
            passes += tm.forward_passes as u64;
            accepted += tm.draft_tokens_accepted as u64;
            tokens += tm.completion_tokens as u64;
            let decode_s = (tm.generate_ms - tm.prompt_ms) / 1e3;
            if tm.completion_tokens > 1 && decode_s > 0.0 {
                rates.push((tm.completion_tokens - 1) as f64 / decode_s);
                decode_tokens += tm.completion_tokens as u64 - 1;
                decode_secs += decode_s;
            }
        }
    }
    anyhow::ensure!(answered > 0, "no question found context in {collection}");
    for v in [&mut first, &mut total, &mut rates] {
        v.sort_by(f64::total_cmp);
    }
    println!(
        "{}",
        json!({
            "bench": "ask", "collection": collection, "questions": qs.len(), "rounds": rounds,
            "answered": answered, "no_context": no_context, "max_tokens": max_tokens,
            "first_text_ms_p50": percentile(&first, 50.0), "first_text_ms_p95": percentile(&first, 95.0),
            "total_ms_p50": percentile(&total, 50.0), "total_ms_p95": percentile(&total, 95.0),
            "generate_tokens_per_s_p50": percentile(&rates, 50.0),
            "generate_tokens_per_s_all": decode_tokens as f64 / decode_secs.max(f64::MIN_POSITIVE),
            "prompt_lookup": !no_prompt_lookup, "completion_tokens": tokens,
            "forward_passes": passes, "draft_tokens_accepted": accepted,
        })
    );
    Ok(())
}
