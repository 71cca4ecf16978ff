//! `quiver`: the command-line client. Tables for people by default, `--json` for scripts;
//! exits non-zero with the server's message on any error.

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use quiver_client::vecfile::VecReader;
use quiver_client::{Client, filter, id_json, parse_id, pb, show_id};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::Instant;
use tokio::task::JoinSet;

mod ask;
mod collections;
mod docs;
mod eval;

use collections::{CollectionCmd, collection, print_info};

#[derive(Parser)]
#[command(
    name = "quiver",
    version,
    about = "Command-line client for the Quiver vector database"
)]
struct Cli {
    /// Server address.
    #[arg(
        long,
        global = true,
        env = "QUIVER_ADDR",
        default_value = "127.0.0.1:50051"
    )]
    addr: String,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    /// API key, when the server requires one.
    #[arg(long, global = true, env = "QUIVER_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Connect with TLS, trusting this CA certificate (PEM).
    #[arg(long, global = true, env = "QUIVER_TLS_CA")]
    tls_ca: Option<PathBuf>,
    /// Server name to verify the certificate against.
    #[arg(long, global = true, env = "QUIVER_TLS_DOMAIN")]
    tls_domain: Option<String>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create, list, describe, index, flush, compact or drop collections.
    #[command(subcommand)]
    Collection(CollectionCmd),
    /// Ingest documents (a folder of .txt/.md files, one file, or .jsonl with id/text/metadata).
    Ingest(docs::IngestArgs),
    /// Search a document collection by text.
    SearchText(docs::SearchTextArgs),
    /// Answer a question from a document collection, with citations (RAG).
    Ask(ask::AskArgs),
    /// Generate text with the server's language model.
    Generate(ask::GenerateArgs),
    /// Measure retrieval (recall@k, MRR, nDCG@k) and answers (faithfulness, relevance, latency)
    /// on a .jsonl question set with known answer documents.
    Eval(eval::EvalArgs),
    /// Import vectors from a .fvecs, .npy or .jsonl file.
    Import {
        collection: String,
        file: PathBuf,
        /// Points per upsert request.
        #[arg(long, default_value_t = 1000)]
        batch: usize,
        /// Upsert requests in flight at once.
        #[arg(long, default_value_t = 4)]
        parallel: usize,
        /// Id of the first row, for files without ids.
        #[arg(long, default_value_t = 0)]
        start_id: u64,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
    },
    /// Find the nearest points to a vector.
    Search {
        collection: String,
        /// The query as a JSON list of numbers.
        #[arg(long, conflicts_with = "vector_file")]
        vector: Option<String>,
        /// Take the query from row `--row` of a vector file.
        #[arg(long)]
        vector_file: Option<PathBuf>,
        /// Row of --vector-file.
        #[arg(long, default_value_t = 0)]
        row: usize,
        #[arg(short, long, default_value_t = 10)]
        k: u32,
        /// A JSON filter (see `quiver help filter`).
        #[arg(long)]
        filter: Option<String>,
        /// Brute force whatever the index.
        #[arg(long)]
        exact: bool,
        /// HNSW search beam (0: default).
        #[arg(long, default_value_t = 0)]
        ef: u32,
        /// IVF-PQ lists probed per segment (0: default 16).
        #[arg(long, default_value_t = 0)]
        nprobe: u32,
        /// IVF-PQ candidates re-ranked exactly (0: default 50).
        #[arg(long, default_value_t = 0)]
        rerank: u32,
        #[arg(long)]
        with_payload: bool,
        #[arg(long)]
        with_vector: bool,
    },
    /// Read points by id.
    Get {
        collection: String,
        #[arg(required = true)]
        ids: Vec<String>,
        #[arg(long)]
        with_vector: bool,
    },
    /// Delete points by id or by filter.
    Delete {
        collection: String,
        ids: Vec<String>,
        #[arg(long)]
        filter: Option<String>,
    },
    /// Count points, optionally matching a filter.
    Count {
        collection: String,
        #[arg(long)]
        filter: Option<String>,
    },
    /// Snapshot a collection to a local file, or restore one into a new collection.
    #[command(subcommand)]
    Snapshot(SnapshotCmd),
    /// Page through points in id order.
    Scroll {
        collection: String,
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// Start at this id.
        #[arg(long)]
        offset: Option<String>,
        #[arg(long)]
        filter: Option<String>,
        #[arg(long)]
        with_vector: bool,
    },
}

#[derive(Subcommand)]
enum SnapshotCmd {
    /// Take a snapshot (a consistent point, while writes go on) and save it to a file.
    Create {
        collection: String,
        #[arg(long, short)]
        output: PathBuf,
    },
    /// Restore a snapshot file into a new collection.
    Restore {
        file: PathBuf,
        /// Name of the new collection.
        #[arg(long)]
        name: String,
    },
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli).await {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn opt_filter(f: &Option<String>) -> anyhow::Result<Option<pb::Filter>> {
    Ok(f.as_deref().map(filter::parse_str).transpose()?)
}

fn payload_value(s: &str) -> Value {
    if s.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(s).unwrap_or(Value::String(s.into()))
    }
}

/// Prints rows as an aligned table.
fn table(headers: &[&str], rows: Vec<Vec<String>>) {
    let mut w: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let s: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<width$}", width = w[i]))
            .collect();
        println!("{}", s.join("  ").trim_end());
    };
    line(headers.iter().map(|h| h.to_string()).collect());
    line(w.iter().map(|n| "-".repeat(*n)).collect());
    for r in rows {
        line(r);
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let tls_ca = match &cli.tls_ca {
        Some(p) => Some(std::fs::read(p).with_context(|| format!("reading {}", p.display()))?),
        None => None,
    };
    let options = quiver_client::ConnectOptions {
        api_key: cli.api_key.clone(),
        tls_ca,
        tls_domain: cli.tls_domain.clone(),
    };
    let mut client = Client::connect_with(&cli.addr, &options).await?;
    let as_json = cli.json;
    match cli.command {
        Cmd::Collection(c) => collection(&mut client, c, as_json).await,
        Cmd::Ingest(a) => docs::ingest(client, a, as_json).await,
        Cmd::SearchText(a) => docs::search_text(client, a, as_json).await,
        Cmd::Ask(a) => ask::ask(client, a, as_json).await,
        Cmd::Generate(a) => ask::generate(client, a, as_json).await,
        Cmd::Eval(a) => eval::eval(client, a, as_json).await,
        Cmd::Import {
            collection,
            file,
            batch,
            parallel,
            start_id,
            quiet,
        } => {
            import(
                client,
                &collection,
                &file,
                batch,
                parallel.max(1),
                start_id,
                quiet || as_json,
                as_json,
            )
            .await
        }
        Cmd::Search {
            collection,
            vector,
            vector_file,
            row,
            k,
            filter,
            exact,
            ef,
            nprobe,
            rerank,
            with_payload,
            with_vector,
        } => {
            let vector: Vec<f32> = match (vector, vector_file) {
                (Some(v), _) => {
                    serde_json::from_str(&v).context("--vector must be a JSON list of numbers")?
                }
                (None, Some(path)) => {
                    VecReader::open(&path)?
                        .nth(row)
                        .with_context(|| format!("{} has no row {row}", path.display()))??
                        .vector
                }
                (None, None) => bail!("give the query with --vector or --vector-file"),
            };
            let req = pb::SearchRequest {
                collection,
                vector,
                k,
                filter: opt_filter(&filter)?,
                with_payload,
                with_vector,
                exact,
                params: (ef > 0 || nprobe > 0).then_some(pb::SearchParams { ef, nprobe }),
                rerank,
            };
            let t = Instant::now();
            let hits = client.search(req).await?;
            let ms = t.elapsed().as_secs_f64() * 1e3;
            if as_json {
                let v: Vec<Value> = hits
                    .iter()
                    .map(|h| json!({"id": id_json(h.id.as_ref()), "score": h.score, "payload": payload_value(&h.payload_json), "vector": if with_vector { json!(h.vector) } else { Value::Null }}))
                    .collect();
                println!("{}", json!({"hits": v, "ms": ms}));
            } else {
                let rows = hits
                    .iter()
                    .enumerate()
                    .map(|(i, h)| {
                        vec![
                            (i + 1).to_string(),
                            show_id(h.id.as_ref()),
                            format!("{:.6}", h.score),
                            h.payload_json.clone(),
                        ]
                    })
                    .collect();
                table(&["#", "id", "score", "payload"], rows);
                println!("{} hits in {ms:.1} ms", hits.len());
            }
            Ok(())
        }
        Cmd::Get {
            collection,
            ids,
            with_vector,
        } => {
            let req = pb::GetRequest {
                collection,
                ids: ids.iter().map(|s| parse_id(s)).collect(),
                with_vector,
                with_payload: true,
            };
            let records = client.points.get(req).await?.into_inner().records;
            print_records(&records, with_vector, as_json);
            Ok(())
        }
        Cmd::Delete {
            collection,
            ids,
            filter,
        } => {
            let selector = match (ids.is_empty(), filter) {
                (false, None) => pb::delete_request::Selector::Ids(pb::PointIdList {
                    ids: ids.iter().map(|s| parse_id(s)).collect(),
                }),
                (true, Some(f)) => pb::delete_request::Selector::Filter(filter::parse_str(&f)?),
                _ => bail!("give either ids or --filter"),
            };
            let r = client
                .points
                .delete(pb::DeleteRequest {
                    collection,
                    selector: Some(selector),
                })
                .await?
                .into_inner();
            if as_json {
                println!("{}", json!({"deleted": r.affected, "seq": r.seq}));
            } else {
                println!("deleted {} point(s)", r.affected);
            }
            Ok(())
        }
        Cmd::Snapshot(cmd) => snapshot(&mut client, cmd, as_json).await,
        Cmd::Count { collection, filter } => {
            let n = client.count(&collection, opt_filter(&filter)?).await?;
            if as_json {
                println!("{}", json!({"count": n}))
            } else {
                println!("{n}")
            }
            Ok(())
        }
        Cmd::Scroll {
            collection,
            limit,
            offset,
            filter,
            with_vector,
        } => {
            let req = pb::ScrollRequest {
                collection,
                filter: opt_filter(&filter)?,
                limit,
                offset: offset.as_deref().map(parse_id),
                with_vector,
                with_payload: true,
            };
            let r = client.points.scroll(req).await?.into_inner();
            print_records(&r.records, with_vector, as_json);
            if !as_json {
                if let Some(n) = r.next_offset {
                    println!("next page: --offset {}", show_id(Some(&n)));
                }
            }
            Ok(())
        }
    }
}

fn print_records(records: &[pb::Record], with_vector: bool, as_json: bool) {
    if as_json {
        let v: Vec<Value> = records
            .iter()
            .map(|r| json!({"id": id_json(r.id.as_ref()), "payload": payload_value(&r.payload_json), "vector": if with_vector { json!(r.vector) } else { Value::Null }}))
            .collect();
        println!("{}", Value::Array(v));
        return;
    }
    let rows = records
        .iter()
        .map(|r| {
            let mut row = vec![show_id(r.id.as_ref()), r.payload_json.clone()];
            if with_vector {
                row.push(format!("{:?}", r.vector));
            }
            row
        })
        .collect();
    if with_vector {
        table(&["id", "payload", "vector"], rows);
    } else {
        table(&["id", "payload"], rows);
    }
}

#[allow(clippy::too_many_arguments)]
async fn import(
    client: Client,
    collection: &str,
    file: &PathBuf,
    batch: usize,
    parallel: usize,
    start_id: u64,
    quiet: bool,
    as_json: bool,
) -> anyhow::Result<()> {
    let reader = VecReader::open(file)?;
    let bar = if quiet {
        ProgressBar::hidden()
    } else {
        match reader.rows {
            Some(n) => ProgressBar::new(n),
            None => ProgressBar::no_length(),
        }
    };
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} vectors ({per_sec}, eta {eta})")
            .expect("valid template"),
    );
    let t = Instant::now();
    let mut inflight: JoinSet<anyhow::Result<usize>> = JoinSet::new();
    let mut done = 0u64;
    let mut row = 0u64;
    let mut reader = reader;
    loop {
        let mut chunk = Vec::with_capacity(batch);
        for r in reader.by_ref().take(batch) {
            let r = r?;
            chunk.push(pb::Point {
                id: Some(r.id.unwrap_or_else(|| quiver_client::num_id(start_id + row))),
                vector: r.vector,
                payload_json: r.payload_json,
            });
            row += 1;
        }
        if chunk.is_empty() {
            break;
        }
        while inflight.len() >= parallel {
            done += inflight.join_next().await.expect("not empty")?? as u64;
            bar.set_position(done);
        }
        let mut c = client.clone();
        let coll = collection.to_string();
        inflight.spawn(async move {
            let n = chunk.len();
            c.upsert(&coll, chunk).await?;
            Ok(n)
        });
    }
    while let Some(r) = inflight.join_next().await {
        done += r?? as u64;
        bar.set_position(done);
    }
    bar.finish_and_clear();
    let secs = t.elapsed().as_secs_f64();
    let rate = done as f64 / secs.max(1e-9);
    if as_json {
        println!(
            "{}",
            json!({"imported": done, "seconds": secs, "vectors_per_second": rate})
        );
    } else {
        println!("imported {done} vectors in {secs:.1} s ({rate:.0} vectors/s)");
    }
    Ok(())
}

async fn snapshot(client: &mut Client, cmd: SnapshotCmd, as_json: bool) -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    match cmd {
        SnapshotCmd::Create { collection, output } => {
            let t = Instant::now();
            let mut stream = client
                .collections
                .create_snapshot(pb::CreateSnapshotRequest {
                    name: collection.clone(),
                })
                .await?
                .into_inner();
            let part = output.with_extension("part");
            let mut f = tokio::fs::File::create(&part)
                .await
                .with_context(|| format!("creating {}", part.display()))?;
            let mut bytes = 0u64;
            while let Some(chunk) = stream.message().await? {
                bytes += chunk.data.len() as u64;
                f.write_all(&chunk.data).await?;
            }
            f.sync_all().await?;
            tokio::fs::rename(&part, &output).await?;
            let secs = t.elapsed().as_secs_f64();
            if as_json {
                println!(
                    "{}",
                    json!({"collection": collection, "file": output, "bytes": bytes, "seconds": secs})
                );
            } else {
                println!(
                    "snapshot of {collection}: {} ({bytes} bytes, {secs:.1} s)",
                    output.display()
                );
            }
        }
        SnapshotCmd::Restore { file, name } => {
            let mut f = tokio::fs::File::open(&file)
                .await
                .with_context(|| format!("opening {}", file.display()))?;
            // Chunks are read as they are sent: the file is never held in memory whole.
            let (tx, rx) = tokio::sync::mpsc::channel(4);
            let reader = tokio::spawn(async move {
                let mut first = true;
                loop {
                    let mut buf = vec![0u8; 1 << 20];
                    let n = f.read(&mut buf).await?;
                    if n == 0 {
                        return anyhow::Ok(());
                    }
                    buf.truncate(n);
                    let collection = if first { name.clone() } else { String::new() };
                    first = false;
                    if tx
                        .send(pb::RestoreSnapshotChunk {
                            collection,
                            data: buf,
                        })
                        .await
                        .is_err()
                    {
                        return Ok(());
                    }
                }
            });
            let chunks = tokio_stream::wrappers::ReceiverStream::new(rx);
            let info = client
                .collections
                .restore_snapshot(chunks)
                .await?
                .into_inner();
            reader.await??;
            print_info(&info, as_json);
        }
    }
    Ok(())
}
