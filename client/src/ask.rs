//! `quiver ask` (RAG: a grounded answer with citations) and `quiver generate`.

use super::opt_filter;
use clap::Args;
use quiver_client::{Client, pb};
use serde_json::json;
use std::io::Write;

/// Arguments of `quiver ask`.
#[derive(Args)]
pub struct AskArgs {
    /// A document collection (created with --model).
    collection: String,
    question: String,
    /// Context chunks to retrieve (0: the server's default, 4).
    #[arg(short, long, default_value_t = 0)]
    k: u32,
    /// Filter on the chunks, as JSON.
    #[arg(long)]
    filter: Option<String>,
    /// Most tokens of the answer (0: 200).
    #[arg(long, default_value_t = 0)]
    max_tokens: u32,
    /// 0 for greedy (deterministic) answers.
    #[arg(long, default_value_t = 0.0)]
    temperature: f32,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Chunks below this cosine similarity are not context (0: the server's 0.3; -1: keep all).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    min_score: f32,
    /// Do not answer from the semantic cache.
    #[arg(long)]
    no_cache: bool,
    /// Plain greedy decoding, without drafting tokens by prompt lookup (same answer).
    #[arg(long)]
    no_prompt_lookup: bool,
    #[command(flatten)]
    retrieval: crate::docs::RetrievalArgs,
}

/// Arguments of `quiver generate`.
#[derive(Args)]
pub struct GenerateArgs {
    prompt: String,
    #[arg(long, default_value_t = 0)]
    max_tokens: u32,
    #[arg(long, default_value_t = 0.0)]
    temperature: f32,
    #[arg(long, default_value_t = 0.0)]
    top_p: f32,
    #[arg(long, default_value_t = 0)]
    top_k: u32,
    /// A text that ends the answer (repeatable).
    #[arg(long)]
    stop: Vec<String>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Send the prompt as is, without the chat template.
    #[arg(long)]
    raw: bool,
    /// Plain greedy decoding, without drafting tokens by prompt lookup (same output).
    #[arg(long)]
    no_prompt_lookup: bool,
}

fn print_piece(s: &str, quiet: bool) {
    if !quiet {
        print!("{s}");
        let _ = std::io::stdout().flush();
    }
}

/// `quiver ask`: streams the answer, then the sources.
pub async fn ask(mut client: Client, a: AskArgs, as_json: bool) -> anyhow::Result<()> {
    let req = pb::AskRequest {
        collection: a.collection,
        question: a.question,
        k: a.k,
        filter: opt_filter(&a.filter)?,
        max_tokens: a.max_tokens,
        temperature: a.temperature,
        seed: a.seed,
        min_score: a.min_score,
        no_cache: a.no_cache,
        no_prompt_lookup: a.no_prompt_lookup,
        mode: crate::docs::ModeArg::to_pb(a.retrieval.mode),
        hybrid: Some(a.retrieval.hybrid_pb()),
    };
    let mut stream = client.generation.ask(req).await?.into_inner();
    let mut answer = String::new();
    let mut last = None;
    while let Some(m) = stream.message().await? {
        print_piece(&m.text, as_json);
        answer.push_str(&m.text);
        if m.done {
            last = Some(m);
        }
    }
    let last = last.ok_or_else(|| anyhow::anyhow!("the answer ended before its last message"))?;
    let t = last.timings.unwrap_or_default();
    if as_json {
        let cites: Vec<_> = last
            .citations
            .iter()
            .map(|c| json!({"number": c.number, "doc_id": c.doc_id, "chunk": c.chunk, "score": c.score, "cited": c.cited, "text": c.text}))
            .collect();
        println!(
            "{}",
            json!({"answer": answer, "citations": cites, "stop_reason": last.stop_reason, "cached": last.cached, "model": last.model,
                   "timings": {"retrieve_ms": t.retrieve_ms, "prompt_ms": t.prompt_ms, "generate_ms": t.generate_ms,
                               "first_token_ms": t.first_token_ms, "prompt_tokens": t.prompt_tokens, "completion_tokens": t.completion_tokens,
                               "forward_passes": t.forward_passes, "draft_tokens_accepted": t.draft_tokens_accepted}})
        );
        return Ok(());
    }
    println!(
        "\n\nSources{}:",
        if last.cached {
            " (answer from the cache)"
        } else {
            ""
        }
    );
    for c in &last.citations {
        let text: String = c.text.split_whitespace().collect::<Vec<_>>().join(" ");
        let short: String = text.chars().take(100).collect();
        println!(
            "  [{}]{} {} (chunk {}, score {:.3}): {}{}",
            c.number,
            if c.cited { "*" } else { " " },
            c.doc_id,
            c.chunk,
            c.score,
            short,
            if short.len() < text.len() { "…" } else { "" }
        );
    }
    println!(
        "(* cited in the answer) retrieve {:.0} ms, first token {:.0} ms, total {:.0} ms, {} tokens",
        t.retrieve_ms,
        t.first_token_ms,
        t.retrieve_ms + t.generate_ms,
        t.completion_tokens
    );
    Ok(())
}

/// `quiver generate`.
pub async fn generate(mut client: Client, a: GenerateArgs, as_json: bool) -> anyhow::Result<()> {
    let req = pb::GenerateRequest {
        prompt: a.prompt,
        max_tokens: a.max_tokens,
        temperature: a.temperature,
        top_p: a.top_p,
        top_k: a.top_k,
        stop: a.stop,
        seed: a.seed,
        raw: a.raw,
        no_prompt_lookup: a.no_prompt_lookup,
        ..Default::default()
    };
    let mut stream = client.generation.generate(req).await?.into_inner();
    let mut text = String::new();
    while let Some(m) = stream.message().await? {
        print_piece(&m.text, as_json);
        text.push_str(&m.text);
        if m.done {
            if as_json {
                println!(
                    "{}",
                    json!({"text": text, "stop_reason": m.stop_reason, "model": m.model, "prompt_tokens": m.prompt_tokens,
                           "completion_tokens": m.completion_tokens, "tokens_per_second": m.tokens_per_second,
                           "first_token_ms": m.first_token_ms, "forward_passes": m.forward_passes,
                           "draft_tokens_accepted": m.draft_tokens_accepted})
                );
            } else {
                println!(
                    "\n({} tokens, {:.1} tokens/s, first token {:.0} ms, {})",
                    m.completion_tokens, m.tokens_per_second, m.first_token_ms, m.stop_reason
                );
            }
        }
    }
    Ok(())
}
