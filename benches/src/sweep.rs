//! `sweep`: recall against QPS over the knob of one index family — ef for HNSW, nprobe × rerank
//! for IVF-PQ — in-process on `.fvecs` files (through this binary's own `hnsw` / `ivfpq`
//! subcommands, run as a child so their figures are exactly theirs) and/or against a running
//! server (one closed-loop client per point). Prints a table, writes the curves as PNG and SVG
//! (`plot.rs`) beside any peers' curves read from the JSON the peer scripts write, and returns
//! one JSON report.

use crate::plot::{self, Point};
use crate::report::{table, thousands};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

/// The index family swept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Family {
    /// ef of the graph search.
    Hnsw,
    /// nprobe × rerank.
    Ivfpq,
}

/// The knobs of a sweep and where its points come from.
#[derive(clap::Args, Debug, Clone)]
pub struct SweepArgs {
    /// Index family to sweep.
    #[arg(long, value_enum, default_value = "hnsw")]
    pub index: Family,
    /// Base vectors (.fvecs): sweep in-process.
    #[arg(long)]
    pub base: Option<PathBuf>,
    /// Query vectors (.fvecs).
    #[arg(long)]
    pub queries: PathBuf,
    /// Ground truth (.ivecs).
    #[arg(long)]
    pub gt: PathBuf,
    /// HNSW: comma-separated beams.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "16,24,32,48,64,96,128,256"
    )]
    pub ef: Vec<usize>,
    /// HNSW: links per node.
    #[arg(long, default_value_t = 16)]
    pub m: usize,
    /// HNSW: build beam.
    #[arg(long, default_value_t = 100)]
    pub ef_construction: usize,
    /// IVF-PQ: inverted lists.
    #[arg(long, default_value_t = 1024)]
    pub nlist: usize,
    /// IVF-PQ: sub-spaces (bytes per code).
    #[arg(long, default_value_t = 16)]
    pub pq_m: usize,
    /// IVF-PQ: comma-separated lists probed.
    #[arg(long, value_delimiter = ',', default_value = "4,8,16,32,64")]
    pub nprobe: Vec<usize>,
    /// IVF-PQ: comma-separated candidates re-ranked exactly.
    #[arg(long, value_delimiter = ',', default_value = "0,20,50")]
    pub rerank: Vec<usize>,
    /// Also sweep this running server (needs --collection, built with the same base file).
    #[arg(long)]
    pub addr: Option<String>,
    /// The server's collection.
    #[arg(long)]
    pub collection: Option<String>,
    /// Server sweep: measured seconds per point.
    #[arg(long, default_value_t = 3.0)]
    pub duration_secs: f64,
    /// Peers' rows (JSON arrays from the peer scripts' --json) drawn on the same plot.
    #[arg(long)]
    pub peers: Vec<PathBuf>,
    /// Plot title and file name stem.
    #[arg(long, default_value = "sweep")]
    pub name: String,
    /// Directory for NAME.png and NAME.svg.
    #[arg(long, default_value = "benches/results")]
    pub out_dir: PathBuf,
}

/// A measured row (any engine's) as a plot point: `engine`, `recall_at_10` (or `recall_at_k`),
/// `qps_1_thread` (or `qps`), labelled by its knobs; `None` for rows that are no sweep point.
pub fn point(row: &Value) -> Option<Point> {
    let recall = row["recall_at_10"]
        .as_f64()
        .or(row["recall_at_k"].as_f64())?;
    let qps = row["qps_1_thread"].as_f64().or(row["qps"].as_f64())?;
    let label = match (
        row["nprobe"].as_u64().filter(|&p| p > 0),
        row["ef"].as_u64(),
    ) {
        (Some(p), _) => format!("nprobe {p} / rerank {}", row["rerank"]),
        (None, Some(ef)) => format!("ef {ef}"),
        (None, None) => String::new(),
    };
    Some(Point {
        engine: row["engine"].as_str().unwrap_or("?").to_string(),
        label,
        recall,
        qps,
    })
}

/// Runs this binary with `args` and returns its stdout's JSON rows that are sweep points (its
/// progress bars go to the terminal as usual).
pub fn run_self(args: &[String]) -> anyhow::Result<Vec<Value>> {
    let out = Command::new(std::env::current_exe()?)
        .args(args)
        .stderr(Stdio::inherit())
        .output()?;
    anyhow::ensure!(out.status.success(), "quiver-bench {args:?} failed");
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|r| point(r).is_some())
        .collect())
}

/// The arguments of the in-process subcommand for `a`.
pub fn in_process_args(a: &SweepArgs, base: &Path) -> Vec<String> {
    let list = |v: &[usize]| v.iter().map(usize::to_string).collect::<Vec<_>>().join(",");
    let files = [
        "--base".to_string(),
        base.display().to_string(),
        "--queries".into(),
        a.queries.display().to_string(),
        "--gt".into(),
        a.gt.display().to_string(),
    ];
    let knobs = match a.index {
        Family::Hnsw => vec![
            "hnsw".to_string(),
            "--m".into(),
            a.m.to_string(),
            "--ef-construction".into(),
            a.ef_construction.to_string(),
            "--ef".into(),
            list(&a.ef),
        ],
        Family::Ivfpq => vec![
            "ivfpq".to_string(),
            "--nlist".into(),
            a.nlist.to_string(),
            "--m".into(),
            a.pq_m.to_string(),
            "--nprobe".into(),
            list(&a.nprobe),
            "--rerank".into(),
            list(&a.rerank),
        ],
    };
    knobs.into_iter().chain(files).collect()
}

/// Reads rows from a peer script's JSON (an array, or one object per line).
pub fn read_rows(path: &Path) -> anyhow::Result<Vec<Value>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
    Ok(match serde_json::from_str::<Value>(&text) {
        Ok(Value::Array(rows)) => rows,
        Ok(row) => vec![row],
        Err(_) => text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect(),
    })
}

/// The server sweep: one closed-loop client per knob setting.
async fn server_rows(
    a: &SweepArgs,
    addr: &str,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<Vec<Value>> {
    let collection = a
        .collection
        .as_deref()
        .ok_or_else(|| anyhow::anyhow!("--addr needs --collection"))?;
    let settings: Vec<(usize, usize, usize)> = match a.index {
        Family::Hnsw => a.ef.iter().map(|&ef| (ef, 0, 0)).collect(),
        Family::Ivfpq => a
            .nprobe
            .iter()
            .flat_map(|&p| a.rerank.iter().map(move |&r| (0, p, r)))
            .collect(),
    };
    let mut rows = Vec::new();
    for (ef, nprobe, rerank) in settings {
        let load = crate::search::Load {
            addr,
            collection,
            queries: &a.queries,
            gt: Some(&a.gt),
            k: 10,
            ef: ef as u32,
            nprobe: nprobe as u32,
            // The server reads 0 as its default; the sweep's 0 means none, so ask for k.
            rerank: if a.index == Family::Ivfpq {
                rerank.max(10) as u32
            } else {
                0
            },
            clients: 1,
            duration: Duration::from_secs_f64(a.duration_secs),
            warmup: Duration::from_secs_f64(0.5),
            rate: None,
            max_in_flight: 1,
        };
        let mut r = crate::search::run(&load, stop.clone()).await?;
        r["engine"] = json!("quiver-server");
        println!("{r}");
        rows.push(r);
        if crate::report::stop_flag_set(&stop) {
            break;
        }
    }
    Ok(rows)
}

/// The rows' points as a table for people, by engine then recall.
pub fn points_table(points: &[Point]) -> String {
    let mut sorted: Vec<&Point> = points.iter().collect();
    sorted.sort_by(|a, b| a.engine.cmp(&b.engine).then(a.recall.total_cmp(&b.recall)));
    let rows: Vec<Vec<String>> = sorted
        .iter()
        .map(|p| {
            vec![
                p.engine.clone(),
                p.label.clone(),
                format!("{:.3}", p.recall),
                thousands(p.qps),
            ]
        })
        .collect();
    table(&["engine", "knobs", "recall@10", "QPS"], &rows)
}

/// Runs the sweep and returns its report.
pub async fn run(a: &SweepArgs, stop: Arc<AtomicBool>) -> anyhow::Result<Value> {
    anyhow::ensure!(
        a.base.is_some() || a.addr.is_some(),
        "give --base (in-process), --addr with --collection (server), or both"
    );
    let mut rows = Vec::new();
    if let Some(base) = &a.base {
        rows.extend(run_self(&in_process_args(a, base))?);
    }
    if let Some(addr) = &a.addr {
        rows.extend(server_rows(a, addr, stop).await?);
    }
    for p in &a.peers {
        rows.extend(read_rows(p)?);
    }
    let points: Vec<Point> = rows.iter().filter_map(point).collect();
    eprintln!("{}", points_table(&points));
    let plots = plot::recall_qps(
        &format!("{}: recall@10 vs QPS", a.name),
        &points,
        &a.out_dir.join(&a.name),
    )?;
    Ok(
        json!({"bench": "sweep", "name": a.name, "index": format!("{:?}", a.index),
              "plots": plots, "rows": rows}),
    )
}
