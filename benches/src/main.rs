//! `quiver-bench`: measurements that go into `benches/RESULTS.md`.
//!
//! | subcommand | what it measures                                                          |
//! |------------|---------------------------------------------------------------------------|
//! | `flat`     | in-process flat search, one thread, beside this machine's memory bandwidth |
//! | `ingest`   | durable upsert throughput over gRPC against a running server               |
//! | `dataset`  | seeded clustered `.fvecs` sets and exact ground truth (`.ivecs`)            |
//! | `hnsw`     | in-process HNSW build time, then QPS and recall@10 over an ef sweep         |
//! | `ivfpq`    | in-process IVF-PQ train and add times, then QPS and recall@10 over a sweep  |
//! |            | of nprobe × rerank                                                        |
//! | `search`   | gRPC search load: N clients for a fixed time, or a fixed rate (`--rate`,    |
//! |            | open loop); QPS, latency, errors, recall                                  |
//! | `sweep`    | recall vs QPS over ef or nprobe × rerank, in-process and/or on a server,  |
//! |            | as a table and a PNG/SVG plot with any peers' curves                      |
//! | `peers`    | the peer scripts and Quiver's sweep on the same files: one comparison     |
//! |            | table into a marked section of RESULTS.md, a plot, a JSON report          |
//! | `embed`    | embedding throughput of a server; with `--out`, a real-text vector set      |
//! | `ask`      | RAG latency of a server: first answer text, total, generation tokens/s      |
//! | `bm25`     | BM25 query latency over gRPC on a text file's lines loaded as points       |
//!
//! Every loop is bounded by a count or a time; Ctrl-C ends `search` and `ingest` early with a
//! partial report. Nothing but loopback is contacted.

mod bm25;
mod dataset;
mod embed;
mod hnsw;
mod ingest;
mod ivfpq;
mod openloop;
mod peers;
mod plot;
mod rag;
mod report;
mod search;
mod sweep;

use clap::{Parser, Subcommand};
use quiver_index::{FlatIndex, Metric, PointFilter, VectorIndexRead, Vectors};
use rand::{Rng, SeedableRng, rngs::StdRng};
use serde_json::json;
use std::time::Instant;

#[derive(Parser)]
#[command(
    name = "quiver-bench",
    version,
    about = "Quiver's load and throughput harness"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Write a seeded clustered base set, a query set and their exact top-100 (l2).
    Dataset {
        /// Output prefix: PREFIX.base.fvecs, PREFIX.query.fvecs, PREFIX.gt.ivecs.
        #[arg(long)]
        out: std::path::PathBuf,
        #[arg(long, default_value_t = 1_000_000)]
        n: usize,
        #[arg(long, default_value_t = 128)]
        dim: usize,
        #[arg(long, default_value_t = 1000)]
        queries: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Also write the base and query vectors as PREFIX.base.npy and PREFIX.query.npy.
        #[arg(long)]
        npy: bool,
    },
    /// Embed a text file's lines through a running server: texts/s and tokens/s; with --out,
    /// also write them as a vector set (base, held-out queries, exact top-100).
    Embed {
        #[arg(long, default_value = "127.0.0.1:50051")]
        addr: String,
        /// The server's metrics address, to count tokens (quiver_embed_tokens_total).
        #[arg(long)]
        metrics_addr: Option<String>,
        /// One text per line.
        #[arg(long)]
        texts: std::path::PathBuf,
        #[arg(long, default_value_t = 10_000)]
        limit: usize,
        /// Requests in flight at once.
        #[arg(long, default_value_t = 4)]
        clients: usize,
        /// Texts per request.
        #[arg(long, default_value_t = 64)]
        batch: usize,
        /// Output prefix for PREFIX.base.fvecs, PREFIX.query.fvecs, PREFIX.gt.ivecs.
        #[arg(long)]
        out: Option<std::path::PathBuf>,
        /// Lines held out as queries (with --out).
        #[arg(long, default_value_t = 1000)]
        queries: usize,
    },
    /// BM25 query latency over gRPC: a text file's lines loaded as points with a text index,
    /// then one search at a time with the first words of other lines as queries.
    Bm25 {
        #[arg(long, default_value = "127.0.0.1:50051")]
        addr: String,
        #[arg(long, default_value = "bm25bench")]
        collection: String,
        /// One text per line.
        #[arg(long)]
        texts: std::path::PathBuf,
        /// Lines loaded as points.
        #[arg(long, default_value_t = 100_000)]
        n: usize,
        #[arg(long, default_value_t = 1000)]
        queries: usize,
        /// Words per query.
        #[arg(long, default_value_t = 4)]
        words: usize,
        #[arg(long, default_value_t = 10)]
        k: u32,
        /// Write the report as JSON here.
        #[arg(long)]
        json: Option<std::path::PathBuf>,
    },
    /// Ask a running server each question of a file (one per line), one at a time.
    Ask {
        #[arg(long, default_value = "127.0.0.1:50051")]
        addr: String,
        #[arg(long)]
        collection: String,
        #[arg(long)]
        questions: std::path::PathBuf,
        #[arg(long, default_value_t = 64)]
        max_tokens: u32,
        /// Measured passes over the questions (after one warm-up pass).
        #[arg(long, default_value_t = 1)]
        rounds: usize,
        /// Plain greedy decoding (no prompt-lookup drafts), for comparison.
        #[arg(long)]
        no_prompt_lookup: bool,
    },
    /// Search a running server for a fixed time: concurrent clients in a closed loop, or
    /// searches sent at a fixed rate (--rate, open loop).
    Search {
        #[arg(long, default_value = "127.0.0.1:50051")]
        addr: String,
        #[arg(long)]
        collection: String,
        #[arg(long)]
        queries: std::path::PathBuf,
        /// Ground truth (.ivecs) for recall; ids are the row numbers of the imported base file.
        #[arg(long)]
        gt: Option<std::path::PathBuf>,
        #[arg(short, long, default_value_t = 10)]
        k: u32,
        /// HNSW beam (0: the server's default).
        #[arg(long, default_value_t = 0)]
        ef: u32,
        #[arg(long, default_value_t = 1)]
        clients: usize,
        #[arg(long, default_value_t = 10.0)]
        duration_secs: f64,
        #[arg(long, default_value_t = 2.0)]
        warmup_secs: f64,
        /// IVF-PQ lists probed (0: the server's default).
        #[arg(long, default_value_t = 0)]
        nprobe: u32,
        /// IVF-PQ candidates re-ranked exactly (0: the server's default).
        #[arg(long, default_value_t = 0)]
        rerank: u32,
        /// Open loop: searches per second on a fixed schedule, latency from the scheduled time.
        #[arg(long)]
        rate: Option<f64>,
        /// Open loop: requests in flight at most; searches due beyond it are dropped (counted).
        #[arg(long, default_value_t = 256)]
        max_in_flight: usize,
        /// Also write the report to this file.
        #[arg(long)]
        json: Option<std::path::PathBuf>,
    },
    /// Recall against QPS over ef (HNSW) or nprobe × rerank (IVF-PQ), in-process and/or on a
    /// server; a table, and a PNG and SVG plot in --out-dir with any --peers curves.
    Sweep {
        #[command(flatten)]
        args: sweep::SweepArgs,
        /// Also write the report to this file.
        #[arg(long)]
        json: Option<std::path::PathBuf>,
    },
    /// Run the peer scripts (benches/peers) and Quiver's sweep on the same files; write one
    /// comparison table into RESULTS.md's marked section, the plot, and a JSON report.
    Peers {
        #[command(flatten)]
        args: peers::PeersArgs,
        /// Also write the report to this file.
        #[arg(long)]
        json: Option<std::path::PathBuf>,
    },
    /// HNSW in-process: build on every core, then search on one thread for each ef.
    Hnsw {
        #[arg(long)]
        base: std::path::PathBuf,
        #[arg(long)]
        queries: std::path::PathBuf,
        #[arg(long)]
        gt: std::path::PathBuf,
        #[arg(long, default_value_t = 16)]
        m: usize,
        #[arg(long, default_value_t = 100)]
        ef_construction: usize,
        /// Comma-separated search beams.
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "10,16,24,32,48,64,96,128,256"
        )]
        ef: Vec<usize>,
        /// Then compare filtered graph search with exact bitmap scans (at the first ef).
        #[arg(long)]
        filter_sweep: bool,
        /// `int8`: also sweep the same graph walked on 8-bit codes, re-ranked on the floats.
        #[arg(long)]
        quantize: Option<hnsw::Quantize>,
        /// Runs of each ef (floats and codes alternating); the best QPS is reported, since a
        /// shared machine only ever slows a run down.
        #[arg(long, default_value_t = 1)]
        repeat: usize,
    },
    /// IVF-PQ in-process: train and add on every core, then search on one thread for each
    /// (nprobe, rerank).
    Ivfpq {
        #[arg(long)]
        base: std::path::PathBuf,
        #[arg(long)]
        queries: std::path::PathBuf,
        #[arg(long)]
        gt: std::path::PathBuf,
        #[arg(long, default_value_t = 1024)]
        nlist: usize,
        /// Sub-spaces (bytes per code).
        #[arg(long, default_value_t = 16)]
        m: usize,
        /// Comma-separated lists to probe.
        #[arg(long, value_delimiter = ',', default_value = "1,2,4,8,16,32,64,128")]
        nprobe: Vec<usize>,
        /// Comma-separated candidates re-ranked exactly (0: none).
        #[arg(long, value_delimiter = ',', default_value = "0,10,20,50,100,200")]
        rerank: Vec<usize>,
        /// Then compare filtered search with exact bitmap scans (first nprobe, last rerank).
        #[arg(long)]
        filter_sweep: bool,
        /// Passes over the queries per (nprobe, rerank); the fastest is reported.
        #[arg(long, default_value_t = 3)]
        repeat: usize,
    },
    /// Flat search on one thread, against memcpy and a plain read pass over the same bytes.
    Flat {
        #[arg(long, default_value_t = 100_000)]
        n: usize,
        #[arg(long, default_value_t = 384)]
        dim: usize,
        #[arg(long, default_value_t = 30)]
        queries: usize,
        #[arg(long, default_value = "cosine")]
        metric: String,
    },
    /// Durable upserts over gRPC into a new collection of a running server.
    Ingest {
        #[arg(long, default_value = "127.0.0.1:50051")]
        addr: String,
        #[arg(long, default_value_t = 200_000)]
        n: usize,
        #[arg(long, default_value_t = 128)]
        dim: usize,
        #[arg(long, default_value_t = 1000)]
        batch: usize,
        /// Requests in flight at once.
        #[arg(long, default_value_t = 4)]
        parallel: usize,
        #[arg(long, default_value = "bench_ingest")]
        collection: String,
        /// Also write the report to this file.
        #[arg(long)]
        json: Option<std::path::PathBuf>,
        /// Upsert this vector file (.fvecs or .npy) instead of --n random vectors.
        #[arg(long)]
        base: Option<std::path::PathBuf>,
        /// Index the collection with HNSW (default parameters) instead of flat.
        #[arg(long)]
        hnsw: bool,
        /// Keep the collection at the end (for `search` afterwards).
        #[arg(long)]
        keep: bool,
    },
}

fn random(seed: u64, len: usize) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..len).map(|_| rng.random_range(-1.0..1.0)).collect()
}

/// Best of `reps` runs of `f`, in seconds.
fn best_of(reps: usize, mut f: impl FnMut()) -> f64 {
    (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

/// Reads every float once with the SIMD dot kernel against a small buffer of ones that stays in
/// cache: the read bandwidth one thread gets from memory.
fn read_pass(data: &[f32]) -> f32 {
    use simsimd::SpatialSimilarity;
    const CHUNK: usize = 4096;
    let ones = [1f32; CHUNK];
    let mut total = 0f64;
    for c in data.chunks(CHUNK) {
        total += <f32 as SpatialSimilarity>::dot(c, &ones[..c.len()]).expect("same length");
    }
    total as f32
}

fn flat(n: usize, dim: usize, queries: usize, metric: &str) -> anyhow::Result<()> {
    let metric = match metric {
        "cosine" => Metric::Cosine,
        "dot" => Metric::Dot,
        "l2" => Metric::L2,
        m => anyhow::bail!("unknown metric {m}"),
    };
    let data = random(1, n * dim);
    let qs = random(2, queries * dim);
    let bytes = (n * dim * 4) as f64;
    // Memory bandwidth on one thread, two ways: memcpy of the same bytes, and a read-only SIMD
    // pass over them.
    let mut dst = vec![0f32; data.len()];
    let copy = best_of(5, || dst.copy_from_slice(&data));
    let mut sink = 0f32;
    let read = best_of(5, || sink += read_pass(&data));
    std::hint::black_box((sink, &dst));
    let vectors = Vectors::new(&data, dim);
    let filter = PointFilter::default();
    let t = Instant::now();
    let mut lat = Vec::with_capacity(queries);
    for q in qs.chunks_exact(dim) {
        let s = Instant::now();
        std::hint::black_box(FlatIndex.search(vectors, metric, q, 10, &filter));
        lat.push(s.elapsed().as_secs_f64());
    }
    let total = t.elapsed().as_secs_f64();
    lat.sort_by(f64::total_cmp);
    let scan = bytes * queries as f64 / total;
    let report = json!({
        "bench": "flat", "n": n, "dim": dim, "metric": metric.name(), "queries": queries, "threads": 1,
        "qps": queries as f64 / total,
        "latency_ms_p50": lat[lat.len() / 2] * 1e3,
        "scan_gb_s": scan / 1e9,
        // memcpy reads and writes each byte: its traffic is twice the bytes copied.
        "memcpy_copied_gb_s": bytes / copy / 1e9,
        "memcpy_traffic_gb_s": 2.0 * bytes / copy / 1e9,
        "read_pass_gb_s": bytes / read / 1e9,
        "scan_over_memcpy_traffic": scan / (2.0 * bytes / copy),
        "scan_over_read_pass": scan / (bytes / read),
        "scan_over_best_bandwidth": scan / (bytes / read).max(2.0 * bytes / copy),
    });
    println!("{report}");
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().cmd {
        Cmd::Bm25 {
            addr,
            collection,
            texts,
            n,
            queries,
            words,
            k,
            json,
        } => {
            bm25::run(bm25::Bm25Args {
                addr,
                collection,
                texts,
                n,
                queries,
                words,
                k,
                json,
            })
            .await
        }
        Cmd::Ask {
            addr,
            collection,
            questions,
            max_tokens,
            rounds,
            no_prompt_lookup,
        } => {
            rag::run(
                &addr,
                &collection,
                &questions,
                max_tokens,
                rounds,
                no_prompt_lookup,
            )
            .await
        }
        Cmd::Embed {
            addr,
            metrics_addr,
            texts,
            limit,
            clients,
            batch,
            out,
            queries,
        } => {
            embed::run(embed::EmbedArgs {
                addr,
                metrics_addr,
                texts,
                limit,
                clients,
                batch,
                out,
                queries,
            })
            .await
        }
        Cmd::Dataset {
            out,
            n,
            dim,
            queries,
            seed,
            npy,
        } => {
            let t = Instant::now();
            let base = dataset::clustered(n, dim, seed);
            let qs = dataset::clustered(queries, dim, seed.wrapping_add(1_000_003));
            let with = |ext: &str| std::path::PathBuf::from(format!("{}.{ext}", out.display()));
            quiver_client::vecfile::write_fvecs(&with("base.fvecs"), &base, dim)?;
            quiver_client::vecfile::write_fvecs(&with("query.fvecs"), &qs, dim)?;
            if npy {
                quiver_client::vecfile::write_npy(&with("base.npy"), &base, dim)?;
                quiver_client::vecfile::write_npy(&with("query.npy"), &qs, dim)?;
            }
            let gt = dataset::ground_truth(&base, &qs, dim, 100, Metric::L2);
            dataset::write_ivecs(&with("gt.ivecs"), &gt)?;
            println!(
                "{}",
                json!({"dataset": out, "n": n, "dim": dim, "queries": queries, "seed": seed, "seconds": t.elapsed().as_secs_f64()})
            );
            Ok(())
        }
        Cmd::Search {
            addr,
            collection,
            queries,
            gt,
            k,
            ef,
            clients,
            duration_secs,
            warmup_secs,
            nprobe,
            rerank,
            rate,
            max_in_flight,
            json,
        } => {
            let load = search::Load {
                addr: &addr,
                collection: &collection,
                queries: &queries,
                gt: gt.as_deref(),
                k,
                ef,
                nprobe,
                rerank,
                clients: clients.max(1),
                duration: std::time::Duration::from_secs_f64(duration_secs),
                warmup: std::time::Duration::from_secs_f64(warmup_secs),
                rate,
                max_in_flight,
            };
            let r = search::run(&load, report::stop_on_ctrl_c()).await?;
            eprintln!("{}", search::summary(&r));
            report::write_json(json.as_deref(), &r)?;
            println!("{r}");
            Ok(())
        }
        Cmd::Sweep { args, json } => {
            let r = sweep::run(&args, report::stop_on_ctrl_c()).await?;
            report::write_json(json.as_deref(), &r)?;
            println!(
                "{}",
                json!({"bench": "sweep", "plots": r["plots"], "points": r["rows"].as_array().map_or(0, Vec::len)})
            );
            Ok(())
        }
        Cmd::Peers { args, json } => {
            let r = peers::run(&args)?;
            report::write_json(json.as_deref(), &r)?;
            println!(
                "{}",
                json!({"bench": "peers", "plots": r["plots"], "failures": r["failures"]})
            );
            Ok(())
        }
        Cmd::Hnsw {
            base,
            queries,
            gt,
            m,
            ef_construction,
            ef,
            filter_sweep,
            quantize,
            repeat,
        } => hnsw::run(
            &base,
            &queries,
            &gt,
            m,
            ef_construction,
            &ef,
            filter_sweep,
            quantize,
            repeat,
        ),
        Cmd::Ivfpq {
            base,
            queries,
            gt,
            nlist,
            m,
            nprobe,
            rerank,
            filter_sweep,
            repeat,
        } => ivfpq::run(
            &base,
            &queries,
            &gt,
            &ivfpq::Sweep {
                nlist,
                m,
                nprobe: &nprobe,
                rerank: &rerank,
                filter_sweep,
                repeat,
            },
        )
        .map(|_| ()),
        Cmd::Flat {
            n,
            dim,
            queries,
            metric,
        } => flat(n, dim, queries, &metric),
        Cmd::Ingest {
            addr,
            n,
            dim,
            batch,
            parallel,
            collection,
            json,
            base,
            hnsw,
            keep,
        } => {
            let r = ingest::run(
                &ingest::Ingest {
                    addr: &addr,
                    n,
                    dim,
                    batch,
                    parallel,
                    collection: &collection,
                    base: base.as_deref(),
                    hnsw,
                    keep,
                },
                report::stop_on_ctrl_c(),
            )
            .await?;
            report::write_json(json.as_deref(), &r)?;
            println!("{r}");
            Ok(())
        }
    }
}
