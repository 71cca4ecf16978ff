//! `quiver-bench embed`: embedding throughput of a running server (texts/s, tokens/s), and, with
//! `--out`, a real-text vector set: the embeddings of a text file's lines as `.fvecs`, the last
//! `--queries` lines held out as queries, and their exact top-100 by cosine as `.ivecs`.

use crate::dataset;
use anyhow::Context;
use quiver_client::{Client, pb};
use quiver_index::Metric;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

/// What to run.
pub struct EmbedArgs {
    pub addr: String,
    pub metrics_addr: Option<String>,
    pub texts: PathBuf,
    pub limit: usize,
    pub clients: usize,
    pub batch: usize,
    pub out: Option<PathBuf>,
    pub queries: usize,
}

/// Reads `quiver_embed_tokens_total` from the metrics endpoint.
fn tokens_total(metrics_addr: &str) -> anyhow::Result<u64> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(metrics_addr)
        .with_context(|| format!("connecting to metrics at {metrics_addr}"))?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")?;
    let mut body = String::new();
    s.read_to_string(&mut body)?;
    body.lines()
        .find_map(|l| l.strip_prefix("quiver_embed_tokens_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
        .context("the server exports no quiver_embed_tokens_total")
}

pub async fn run(a: EmbedArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&a.texts)
        .with_context(|| format!("reading {}", a.texts.display()))?;
    let lines: Vec<String> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .take(a.limit)
        .map(str::to_string)
        .collect();
    anyhow::ensure!(!lines.is_empty(), "{} has no text lines", a.texts.display());
    let client = Client::connect(&a.addr).await?;
    // Warm-up: one batch.
    let mut c = client.clone();
    c.documents
        .embed(pb::EmbedRequest {
            texts: lines.iter().take(a.batch).cloned().collect(),
        })
        .await?;
    let tokens_before = a.metrics_addr.as_deref().map(tokens_total).transpose()?;
    let batches: Arc<Vec<Vec<String>>> =
        Arc::new(lines.chunks(a.batch.max(1)).map(|c| c.to_vec()).collect());
    let next = Arc::new(AtomicUsize::new(0));
    let t = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..a.clients.max(1) {
        let (mut c, batches, next) = (client.clone(), batches.clone(), next.clone());
        tasks.spawn(async move {
            let mut got = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= batches.len() {
                    return Ok::<_, anyhow::Error>(got);
                }
                let r = c
                    .documents
                    .embed(pb::EmbedRequest {
                        texts: batches[i].clone(),
                    })
                    .await?;
                got.push((i, r.into_inner().vectors));
            }
        });
    }
    let mut per_batch = vec![Vec::new(); batches.len()];
    while let Some(r) = tasks.join_next().await {
        for (i, v) in r?? {
            per_batch[i] = v;
        }
    }
    let secs = t.elapsed().as_secs_f64();
    let tokens = match (tokens_before, a.metrics_addr.as_deref()) {
        (Some(b), Some(m)) => Some(tokens_total(m)? - b),
        _ => None,
    };
    let report = json!({
        "bench": "embed", "texts": lines.len(), "clients": a.clients, "batch": a.batch,
        "seconds": secs, "texts_per_s": lines.len() as f64 / secs,
        "tokens": tokens, "tokens_per_s": tokens.map(|t| t as f64 / secs),
    });
    println!("{report}");
    if let Some(prefix) = &a.out {
        let vectors: Vec<Vec<f32>> = per_batch.into_iter().flatten().map(|v| v.values).collect();
        write_set(prefix, &vectors, a.queries)?;
    }
    Ok(())
}

fn with_suffix(prefix: &Path, suffix: &str) -> PathBuf {
    let mut s = prefix.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Writes PREFIX.base.fvecs, PREFIX.query.fvecs (the last `queries` rows) and PREFIX.gt.ivecs.
fn write_set(prefix: &Path, vectors: &[Vec<f32>], queries: usize) -> anyhow::Result<()> {
    let dim = vectors[0].len();
    let split = vectors.len().saturating_sub(queries);
    let base: Vec<f32> = vectors[..split].concat();
    let qs: Vec<f32> = vectors[split..].concat();
    let gt = dataset::ground_truth(&base, &qs, dim, 100.min(split), Metric::Cosine);
    quiver_client::vecfile::write_fvecs(&with_suffix(prefix, ".base.fvecs"), &base, dim)?;
    quiver_client::vecfile::write_fvecs(&with_suffix(prefix, ".query.fvecs"), &qs, dim)?;
    dataset::write_ivecs(&with_suffix(prefix, ".gt.ivecs"), &gt)?;
    eprintln!(
        "wrote {} base and {} query vectors of dimension {dim} with exact top-100 (cosine) to {}.*",
        split,
        vectors.len() - split,
        prefix.display()
    );
    Ok(())
}
