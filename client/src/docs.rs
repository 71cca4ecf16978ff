//! `quiver ingest` and `quiver search-text`: documents in, text queries out.

use super::{opt_filter, payload_value, table};
use anyhow::{Context, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use quiver_client::{Client, id_json, pb, show_id};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Arguments of `quiver ingest`.
#[derive(Args)]
pub struct IngestArgs {
    /// A collection created with an embedding model (`collection create NAME --model ...`).
    collection: String,
    /// A folder (its .txt and .md files, recursively), one text file, or a .jsonl file of
    /// {"id", "text", "metadata"} objects.
    path: PathBuf,
    /// Most tokens per chunk (0: the server's default, 200).
    #[arg(long, default_value_t = 0)]
    chunk_tokens: u32,
    /// Tokens shared by consecutive chunks (0: the server's default).
    #[arg(long, default_value_t = 0)]
    overlap_tokens: u32,
    /// Documents per request message.
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

/// Arguments of `quiver search-text`.
#[derive(Args)]
pub struct SearchTextArgs {
    collection: String,
    query: String,
    #[arg(short, long, default_value_t = 5)]
    k: u32,
    /// Filter as JSON (see `quiver search --help`).
    #[arg(long)]
    filter: Option<String>,
    #[command(flatten)]
    retrieval: RetrievalArgs,
}

/// How text is retrieved: `search-text` and `eval` share these flags.
#[derive(Args)]
pub struct RetrievalArgs {
    /// Retriever: dense vectors, BM25 over the text index, or both fused (default: hybrid when
    /// the collection has a text index, dense otherwise).
    #[arg(long, value_enum)]
    pub mode: Option<ModeArg>,
    /// Hybrid: reciprocal rank fusion, or a weighted sum of min-max normalised scores.
    #[arg(long, value_enum, default_value = "rrf")]
    pub fusion: FusionArg,
    /// Hybrid, rrf: the constant k in 1 / (k + rank) (0: 60).
    #[arg(long, default_value_t = 0)]
    pub rrf_k: u32,
    /// Hybrid, weighted: the dense side's weight, 0 to 1 (0: 0.5).
    #[arg(long, default_value_t = 0.0)]
    pub dense_weight: f32,
    /// Hybrid: candidates each retriever contributes (0: max(4 k, 50)).
    #[arg(long, default_value_t = 0)]
    pub candidates: u32,
    /// The text-indexed field (default: the collection's only one, or "text").
    #[arg(long)]
    pub field: Option<String>,
}

impl RetrievalArgs {
    /// The request's hybrid parameters.
    pub fn hybrid_pb(&self) -> pb::HybridParams {
        pb::HybridParams {
            fusion: match self.fusion {
                FusionArg::Rrf => pb::Fusion::Rrf,
                FusionArg::Weighted => pb::Fusion::Weighted,
            } as i32,
            rrf_k: self.rrf_k,
            dense_weight: self.dense_weight,
            candidates: self.candidates,
            text_field: self.field.clone().unwrap_or_default(),
        }
    }

    /// The mode's name for reports.
    pub fn describe(&self) -> &'static str {
        match self.mode {
            None => "server default",
            Some(ModeArg::Dense) => "dense",
            Some(ModeArg::Bm25) => "bm25",
            Some(ModeArg::Hybrid) => "hybrid",
        }
    }

    /// The hybrid fusion for reports ("rrf k 60", "weighted 0.5"; 0 shows the server default).
    pub fn fusion(&self) -> String {
        match self.fusion {
            FusionArg::Rrf => format!("rrf k {}", self.rrf_k),
            FusionArg::Weighted => format!("weighted {}", self.dense_weight),
        }
    }
}

/// Retrieval modes of `search-text` and `ask`.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum ModeArg {
    /// Nearest vectors of the embedded query.
    Dense,
    /// BM25 over the collection's text index.
    Bm25,
    /// Both, fused.
    Hybrid,
}

impl ModeArg {
    /// On the wire (`None`: the server's default).
    pub fn to_pb(m: Option<ModeArg>) -> i32 {
        (match m {
            None => pb::SearchMode::Unspecified,
            Some(ModeArg::Dense) => pb::SearchMode::Dense,
            Some(ModeArg::Bm25) => pb::SearchMode::Bm25,
            Some(ModeArg::Hybrid) => pb::SearchMode::Hybrid,
        }) as i32
    }
}

/// Hybrid fusions.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum FusionArg {
    /// Reciprocal rank fusion.
    Rrf,
    /// Weighted sum of normalised scores.
    Weighted,
}

/// Where documents come from.
enum Source {
    Files { root: PathBuf, files: Vec<PathBuf> },
    Jsonl(PathBuf),
}

fn text_files(dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.path());
    for e in entries {
        let p = e.path();
        if e.file_type()?.is_dir() {
            text_files(&p, out)?;
        } else if matches!(p.extension().and_then(|x| x.to_str()), Some("txt" | "md")) {
            out.push(p);
        }
    }
    Ok(())
}

fn source(path: &Path) -> anyhow::Result<(Source, u64)> {
    if path.is_dir() {
        let mut files = Vec::new();
        text_files(path, &mut files)?;
        let n = files.len() as u64;
        return Ok((
            Source::Files {
                root: path.to_path_buf(),
                files,
            },
            n,
        ));
    }
    if path.extension().and_then(|x| x.to_str()) == Some("jsonl") {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let n = text.lines().filter(|l| !l.trim().is_empty()).count() as u64;
        return Ok((Source::Jsonl(path.to_path_buf()), n));
    }
    if path.is_file() {
        let root = path.parent().map(Path::to_path_buf).unwrap_or_default();
        return Ok((
            Source::Files {
                root,
                files: vec![path.to_path_buf()],
            },
            1,
        ));
    }
    bail!(
        "{} is not a folder, a text file or a .jsonl file",
        path.display()
    )
}

/// Reads the documents and sends them in messages of `batch`.
async fn produce(
    src: Source,
    first: pb::IngestRequest,
    batch: usize,
    tx: tokio::sync::mpsc::Sender<pb::IngestRequest>,
) -> anyhow::Result<()> {
    // After the first message (which names the collection), `msg` is a default one.
    let mut msg = first;
    let send = |m: pb::IngestRequest| {
        let tx = tx.clone();
        async move {
            tx.send(m)
                .await
                .map_err(|_| anyhow::anyhow!("the server closed the stream"))
        }
    };
    let mut docs = Vec::new();
    match src {
        Source::Files { root, files } => {
            for f in files {
                let text = std::fs::read_to_string(&f)
                    .with_context(|| format!("reading {} as UTF-8 text", f.display()))?;
                let rel = f
                    .strip_prefix(&root)
                    .unwrap_or(&f)
                    .to_string_lossy()
                    .replace('#', "_");
                docs.push(pb::Document {
                    id: rel.clone(),
                    text,
                    metadata_json: json!({"path": rel}).to_string(),
                });
                if docs.len() >= batch {
                    msg.documents = std::mem::take(&mut docs);
                    send(std::mem::take(&mut msg)).await?;
                }
            }
        }
        Source::Jsonl(path) => {
            let text = std::fs::read_to_string(&path)?;
            for (n, line) in text
                .lines()
                .enumerate()
                .filter(|(_, l)| !l.trim().is_empty())
            {
                let v: Value = serde_json::from_str(line)
                    .with_context(|| format!("{} line {}: not JSON", path.display(), n + 1))?;
                let id = match &v["id"] {
                    Value::String(s) => s.clone(),
                    Value::Number(x) => x.to_string(),
                    _ => bail!("{} line {}: needs an \"id\"", path.display(), n + 1),
                };
                let Some(text) = v["text"].as_str() else {
                    bail!("{} line {}: needs a \"text\" string", path.display(), n + 1);
                };
                let metadata_json = match &v["metadata"] {
                    Value::Null => String::new(),
                    m => m.to_string(),
                };
                docs.push(pb::Document {
                    id,
                    text: text.into(),
                    metadata_json,
                });
                if docs.len() >= batch {
                    msg.documents = std::mem::take(&mut docs);
                    send(std::mem::take(&mut msg)).await?;
                }
            }
        }
    }
    if !docs.is_empty() || !msg.collection.is_empty() {
        msg.documents = docs;
        send(msg).await?;
    }
    Ok(())
}

/// `quiver ingest`.
pub async fn ingest(mut client: Client, a: IngestArgs, as_json: bool) -> anyhow::Result<()> {
    let (src, total) = source(&a.path)?;
    let first = pb::IngestRequest {
        collection: a.collection.clone(),
        documents: Vec::new(),
        chunk_tokens: a.chunk_tokens,
        overlap_tokens: a.overlap_tokens,
    };
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let producer = tokio::spawn(produce(src, first, a.batch.max(1), tx));
    let t = Instant::now();
    let bar = if a.quiet || as_json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(total)
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:40} {pos}/{len} documents  {msg}  [{elapsed_precise}, eta {eta}]",
        )
        .expect("valid template"),
    );
    let mut stream = client
        .documents
        .ingest(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await?
        .into_inner();
    let mut last = pb::IngestProgress::default();
    while let Some(p) = stream.message().await? {
        bar.set_position(p.documents);
        bar.set_message(format!("{} chunks", p.chunks));
        last = p;
    }
    bar.finish_and_clear();
    producer.await.context("reading documents")??;
    if !last.done {
        bail!("the server ended the ingest before confirming it");
    }
    let secs = t.elapsed().as_secs_f64();
    if as_json {
        println!(
            "{}",
            json!({"documents": last.documents, "chunks": last.chunks, "tokens": last.tokens, "seconds": secs})
        );
    } else {
        println!(
            "ingested {} documents as {} chunks ({} tokens) in {secs:.1} s: {:.1} documents/s, {:.1} chunks/s",
            last.documents,
            last.chunks,
            last.tokens,
            last.documents as f64 / secs,
            last.chunks as f64 / secs
        );
    }
    Ok(())
}

/// `quiver search-text`.
pub async fn search_text(
    mut client: Client,
    a: SearchTextArgs,
    as_json: bool,
) -> anyhow::Result<()> {
    let req = pb::SearchTextRequest {
        collection: a.collection,
        query: a.query,
        k: a.k,
        filter: opt_filter(&a.filter)?,
        mode: ModeArg::to_pb(a.retrieval.mode),
        hybrid: Some(a.retrieval.hybrid_pb()),
        ..Default::default()
    };
    let t = Instant::now();
    let hits = client.documents.search_text(req).await?.into_inner().hits;
    let ms = t.elapsed().as_secs_f64() * 1e3;
    if as_json {
        let v: Vec<Value> = hits
            .iter()
            .map(|h| json!({"id": id_json(h.id.as_ref()), "score": h.score, "dense_score": h.dense_score, "bm25_score": h.bm25_score, "payload": payload_value(&h.payload_json)}))
            .collect();
        println!("{}", json!({"hits": v, "ms": ms}));
        return Ok(());
    }
    let rows = hits
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let p = payload_value(&h.payload_json);
            let text: String = p["text"]
                .as_str()
                .unwrap_or("")
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            let short: String = text.chars().take(90).collect();
            vec![
                (i + 1).to_string(),
                show_id(h.id.as_ref()),
                format!("{:.4}", h.score),
                if short.len() < text.len() {
                    format!("{short}…")
                } else {
                    short
                },
            ]
        })
        .collect();
    table(&["#", "chunk", "score", "text"], rows);
    println!("{} hits in {ms:.1} ms", hits.len());
    Ok(())
}
