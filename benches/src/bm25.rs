//! `quiver-bench bm25`: BM25 query latency over gRPC at a given corpus size. Loads the lines of a
//! text file as points of a plain collection (a 4-d placeholder vector each, the line as payload
//! field `text`), indexes `text` for BM25, flushes, then times `SearchText` in bm25 mode, one
//! request at a time, for queries taken from other lines of the file (the first words of their
//! text after any "term: " prefix).

use crate::report::{progress, table, write_json};
use crate::search::{latency_json, percentile};
use quiver_client::{Client, pb};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Arguments of `quiver-bench bm25`.
pub struct Bm25Args {
    /// Server address.
    pub addr: String,
    /// Collection to create (dropped first if it exists).
    pub collection: String,
    /// One text per line.
    pub texts: PathBuf,
    /// Lines loaded as points.
    pub n: usize,
    /// Queries timed (taken from lines after the loaded ones).
    pub queries: usize,
    /// Words per query.
    pub words: usize,
    /// Results per query.
    pub k: u32,
    /// JSON report path.
    pub json: Option<PathBuf>,
}

fn point(i: usize, text: &str) -> pb::Point {
    pb::Point {
        id: Some(pb::PointId {
            kind: Some(pb::point_id::Kind::Num(i as u64)),
        }),
        vector: vec![1.0, (i % 7) as f32, (i % 11) as f32, 0.5],
        payload_json: json!({ "text": text }).to_string(),
    }
}

/// Runs the benchmark.
pub async fn run(a: Bm25Args) -> anyhow::Result<()> {
    let all = std::fs::read_to_string(&a.texts)?;
    let lines: Vec<&str> = all.lines().filter(|l| !l.trim().is_empty()).collect();
    anyhow::ensure!(
        lines.len() > a.n,
        "{} has {} lines; need more than --n {} (the rest give queries)",
        a.texts.display(),
        lines.len(),
        a.n
    );
    let mut c = Client::connect(&a.addr).await?;
    let _ = c
        .collections
        .drop(pb::DropCollectionRequest {
            name: a.collection.clone(),
        })
        .await;
    c.collections
        .create(pb::CreateCollectionRequest {
            name: a.collection.clone(),
            dim: 4,
            metric: pb::Metric::Cosine as i32,
            flush_threshold: (a.n as u32).saturating_add(1),
            ..Default::default()
        })
        .await?;
    c.collections
        .create_field_index(pb::CreateFieldIndexRequest {
            collection: a.collection.clone(),
            field: "text".into(),
            r#type: pb::FieldType::Text as i32,
            text: None,
        })
        .await?;
    let bar = progress(a.n as u64, "load");
    let t = Instant::now();
    for (b, chunk) in lines[..a.n].chunks(1000).enumerate() {
        let points = chunk
            .iter()
            .enumerate()
            .map(|(i, l)| point(b * 1000 + i, l))
            .collect();
        c.points
            .upsert(pb::UpsertRequest {
                collection: a.collection.clone(),
                points,
            })
            .await?;
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    let load_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let info = c
        .collections
        .flush(pb::FlushRequest {
            name: a.collection.clone(),
        })
        .await?
        .into_inner();
    let flush_s = t.elapsed().as_secs_f64();
    let queries: Vec<String> = lines[a.n..]
        .iter()
        .take(a.queries)
        .map(|l| {
            // A WordNet line is "lemma, lemma: gloss": query with the gloss's first words.
            let gloss = l.split_once(": ").map_or(*l, |(_, g)| g);
            gloss
                .split_whitespace()
                .take(a.words)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    let search = |q: &str| pb::SearchTextRequest {
        collection: a.collection.clone(),
        query: q.to_string(),
        k: a.k,
        mode: pb::SearchMode::Bm25 as i32,
        ..Default::default()
    };
    // Warm-up: every query once (page cache, allocator).
    for q in &queries {
        c.documents.search_text(search(q)).await?;
    }
    let mut ms = Vec::with_capacity(queries.len());
    let mut hits = 0usize;
    let t = Instant::now();
    for q in &queries {
        let s = Instant::now();
        hits += c
            .documents
            .search_text(search(q))
            .await?
            .into_inner()
            .hits
            .len();
        ms.push(s.elapsed().as_secs_f64() * 1e3);
    }
    let wall = t.elapsed().as_secs_f64();
    ms.sort_by(|x, y| x.total_cmp(y));
    let report = json!({
        "points": a.n, "queries": queries.len(), "words": a.words, "k": a.k,
        "load_s": load_s, "flush_s": flush_s, "segments": info.segments,
        "index_memory_bytes": info.index_memory_bytes,
        "qps": queries.len() as f64 / wall, "mean_hits": hits as f64 / queries.len() as f64,
        "latency_ms": latency_json(&ms),
    });
    println!(
        "{}",
        table(
            &[
                "points",
                "queries",
                "QPS",
                "p50 ms",
                "p95 ms",
                "p99 ms",
                "mean hits"
            ],
            &[vec![
                a.n.to_string(),
                queries.len().to_string(),
                format!("{:.0}", queries.len() as f64 / wall),
                format!("{:.2}", percentile(&ms, 50.0)),
                format!("{:.2}", percentile(&ms, 95.0)),
                format!("{:.2}", percentile(&ms, 99.0)),
                format!("{:.1}", hits as f64 / queries.len() as f64),
            ]]
        )
    );
    println!(
        "loaded in {load_s:.1} s, flushed (postings written) in {flush_s:.1} s, text index {:.1} MB",
        info.index_memory_bytes as f64 / 1e6
    );
    write_json(a.json.as_deref().map(Path::new), &report)
}
