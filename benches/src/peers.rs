//! `peers`: Quiver's in-process sweep and the Python peer scripts of `benches/peers/` on the
//! same files, then ONE comparison table — for each peer and recall target, the best QPS each
//! engine reaches at or above it and Quiver's ratio — written between the markers
//! `<!-- peers:NAME:begin -->` and `<!-- peers:NAME:end -->` of `benches/RESULTS.md` (appended
//! the first time, replaced on every re-run), the recall/QPS plot written beside it, and a JSON
//! report.
//!
//! | peer group | script | engines |
//! |---|---|---|
//! | HNSW libraries, in-process | `hnsw_peers.py` | hnswlib, faiss, usearch |
//! | databases, embedded | `db_peers.py` | chroma, milvus (Milvus Lite) |
//! | IVF-PQ | `ivfpq_peers.py` | faiss-ivfpq, faiss-ivfpq-refine |
//!
//! A group that fails (not installed, crashed) is reported with its error and the others go on.

use crate::plot::Point;
use crate::report::{table, thousands};
use crate::sweep::{Family, SweepArgs, in_process_args, point, read_rows, run_self};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Options of `peers`.
#[derive(clap::Args, Debug, Clone)]
pub struct PeersArgs {
    /// Quiver's sweep (also names the files and the section: --name).
    #[command(flatten)]
    pub sweep: SweepArgs,
    /// What the set is, for the section's heading.
    #[arg(long, default_value = "")]
    pub title: String,
    /// Peers of the HNSW family (hnswlib, faiss, usearch, chroma, milvus).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "hnswlib,faiss,usearch,chroma,milvus"
    )]
    pub engines: Vec<String>,
    /// Where the peer scripts are.
    #[arg(long, default_value = "benches/peers")]
    pub peers_dir: PathBuf,
    /// Databases (db_peers.py): search only the first N queries (0: all), for engines too
    /// slow for the whole set at every ef; the table says so.
    #[arg(long, default_value_t = 0)]
    pub db_max_queries: usize,
    /// Measure nothing: take the rows (and load) of this earlier --json report and write the
    /// table, section and plot again.
    #[arg(long)]
    pub reuse: Option<PathBuf>,
    /// The Python that runs them.
    #[arg(long, default_value = "python3")]
    pub python: String,
    /// The Markdown file whose marked section is replaced.
    #[arg(long, default_value = "benches/RESULTS.md")]
    pub results_md: PathBuf,
}

/// Recall targets of the comparison table.
pub const TARGETS: [f64; 4] = [0.8, 0.9, 0.95, 0.99];

/// The fastest point of `engine` with recall at least `target`.
pub fn best<'a>(points: &'a [Point], engine: &str, target: f64) -> Option<&'a Point> {
    points
        .iter()
        .filter(|p| p.engine == engine && p.recall >= target)
        .max_by(|a, b| a.qps.total_cmp(&b.qps))
}

/// Runs one peer script with `args` and its `--json` into a temporary file; its stdout goes to
/// our stderr. Returns its rows, or the reason it gave none.
fn run_script(a: &PeersArgs, script: &str, args: &[String]) -> Result<Vec<Value>, String> {
    let json =
        std::env::temp_dir().join(format!("quiver-peers-{}-{script}.json", std::process::id()));
    let _ = std::fs::remove_file(&json);
    let mut cmd = Command::new(&a.python);
    cmd.arg(a.peers_dir.join(script))
        .args(args)
        .arg("--json")
        .arg(&json)
        .stdout(std::io::stderr())
        .stderr(Stdio::piped());
    eprintln!("peers: {script} {}", args.join(" "));
    let out = cmd
        .output()
        .map_err(|e| format!("{} {script}: {e}", a.python))?;
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    eprint!("{err}");
    let rows = read_rows(&json).unwrap_or_default();
    let _ = std::fs::remove_file(&json);
    if !out.status.success() && rows.is_empty() {
        let last: Vec<&str> = err.lines().rev().take(2).collect();
        return Err(format!(
            "{script} exited {}: {}",
            out.status,
            last.into_iter().rev().collect::<Vec<_>>().join(" / ")
        ));
    }
    Ok(rows)
}

/// The files and knobs shared by the scripts, as their arguments.
fn common_args(s: &SweepArgs, base: &Path) -> Vec<String> {
    let p = |x: &Path| x.display().to_string();
    vec![
        "--base".into(),
        p(base),
        "--queries".into(),
        p(&s.queries),
        "--gt".into(),
        p(&s.gt),
    ]
}

fn list(v: &[usize]) -> String {
    v.iter().map(usize::to_string).collect::<Vec<_>>().join(",")
}

/// Quiver's engines that a peer is compared with: like with like for IVF-PQ (exact re-ranking
/// or not), every Quiver engine otherwise.
pub fn counterparts<'a>(quiver: &[&'a str], peer: &str) -> Vec<&'a str> {
    if quiver.len() < 2 {
        return quiver.to_vec();
    }
    let reranks = peer.contains("refine") || peer.contains("rerank");
    quiver
        .iter()
        .copied()
        .filter(|q| q.contains("rerank") == reranks)
        .collect()
}

/// The comparison table: one row per (peer, recall target) that either engine reaches.
pub fn comparison(points: &[Point], quiver: &[&str], peers: &[(String, String)]) -> String {
    let cell = |p: Option<&Point>| {
        p.map_or("not reached".into(), |p| {
            format!("{} ({}: {:.3})", thousands(p.qps), p.label, p.recall)
        })
    };
    let mut rows = Vec::new();
    for (engine, version) in peers {
        for &t in &TARGETS {
            let q = counterparts(quiver, engine)
                .into_iter()
                .filter_map(|e| best(points, e, t))
                .max_by(|a, b| a.qps.total_cmp(&b.qps));
            let p = best(points, engine, t);
            if q.is_none() && p.is_none() {
                continue;
            }
            let ratio = match (q, p) {
                (Some(q), Some(p)) => format!("**{:.2}×**", q.qps / p.qps),
                (Some(_), None) => "peer does not reach it".into(),
                (None, Some(_)) => "Quiver does not reach it".into(),
                _ => "–".into(),
            };
            rows.push(vec![
                format!("{engine} {version}"),
                format!("≥ {t}"),
                cell(q),
                cell(p),
                ratio,
            ]);
        }
    }
    table(
        &[
            "peer",
            "recall@10",
            "Quiver QPS (knobs: recall)",
            "peer QPS (knobs: recall)",
            "Quiver / peer",
        ],
        &rows,
    )
}

/// Replaces the text between `NAME`'s markers in `doc` with `body`, or appends a marked section.
pub fn replace_section(doc: &str, name: &str, body: &str) -> String {
    let begin = format!("<!-- peers:{name}:begin -->");
    let end = format!("<!-- peers:{name}:end -->");
    let block = format!("{begin}\n{}\n{end}", body.trim_end());
    match (doc.find(&begin), doc.find(&end)) {
        (Some(b), Some(e)) if e > b => format!("{}{block}{}", &doc[..b], &doc[e + end.len()..]),
        _ => format!("{}\n\n{block}\n", doc.trim_end()),
    }
}

/// Today's date (UTC) as YYYY-MM-DD.
pub fn today() -> String {
    let days = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400) as i64;
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The command as it is written into the results: file names under `OUT/`, no directories.
fn command_line(a: &PeersArgs) -> String {
    let name = |p: &Path| {
        format!(
            "OUT/{}",
            p.file_name().map_or("?".into(), |f| f.to_string_lossy())
        )
    };
    let s = &a.sweep;
    let mut c = format!(
        "quiver-bench peers --index {} --name {} --base {} --queries {} --gt {}",
        format!("{:?}", s.index).to_lowercase(),
        s.name,
        s.base.as_deref().map_or("?".into(), name),
        name(&s.queries),
        name(&s.gt)
    );
    match s.index {
        Family::Hnsw => {
            c += &format!(
                " \\\n  --m {} --ef-construction {} --ef {} --engines {}{}",
                s.m,
                s.ef_construction,
                list(&s.ef),
                a.engines.join(","),
                if a.db_max_queries > 0 {
                    format!(" --db-max-queries {}", a.db_max_queries)
                } else {
                    String::new()
                }
            )
        }
        Family::Ivfpq => {
            c += &format!(
                " \\\n  --nlist {} --pq-m {} --nprobe {} --rerank {}",
                s.nlist,
                s.pq_m,
                list(&s.nprobe),
                list(&s.rerank)
            )
        }
    }
    c
}

/// What a run measured: every engine's rows, the groups that failed, the load around it.
struct Measured {
    rows: Vec<Value>,
    failures: Vec<(String, String)>,
    load_before: String,
    load_after: String,
}

/// Runs Quiver's sweep, then each peer group.
fn measure(a: &PeersArgs) -> anyhow::Result<Measured> {
    let s = &a.sweep;
    let base = s
        .base
        .clone()
        .ok_or_else(|| anyhow::anyhow!("peers needs --base"))?;
    let load_before = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut rows = run_self(&in_process_args(s, &base))?;
    let mut failures: Vec<(String, String)> = Vec::new();
    let files = common_args(s, &base);
    let mut groups: Vec<(&str, Vec<String>)> = Vec::new();
    match s.index {
        Family::Hnsw => {
            let knobs = vec![
                "--m".to_string(),
                s.m.to_string(),
                "--ef-construction".into(),
                s.ef_construction.to_string(),
                "--ef".into(),
                list(&s.ef),
            ];
            for (script, known) in [
                ("hnsw_peers.py", &["hnswlib", "faiss", "usearch"][..]),
                ("db_peers.py", &["chroma", "milvus"][..]),
            ] {
                let chosen: Vec<&str> = a
                    .engines
                    .iter()
                    .map(String::as_str)
                    .filter(|e| known.contains(e))
                    .collect();
                if !chosen.is_empty() {
                    let mut args = files.clone();
                    args.extend(knobs.clone());
                    args.extend(["--engines".to_string(), chosen.join(",")]);
                    if script == "db_peers.py" && a.db_max_queries > 0 {
                        args.extend(["--max-queries".to_string(), a.db_max_queries.to_string()]);
                    }
                    groups.push((script, args));
                }
            }
        }
        Family::Ivfpq => {
            let mut args = files.clone();
            args.extend([
                "--nlist".to_string(),
                s.nlist.to_string(),
                "--m".into(),
                s.pq_m.to_string(),
                "--nprobe".into(),
                list(&s.nprobe),
                "--rerank".into(),
                list(&s.rerank),
            ]);
            groups.push(("ivfpq_peers.py", args));
        }
    }
    for (script, args) in groups {
        match run_script(a, script, &args) {
            Ok(r) => rows.extend(r),
            Err(e) => failures.push((script.to_string(), e)),
        }
    }
    Ok(Measured {
        rows,
        failures,
        load_before,
        load_after: std::fs::read_to_string("/proc/loadavg").unwrap_or_default(),
    })
}

/// Runs everything (or, with --reuse, takes the rows of an earlier report) and returns the
/// report.
pub fn run(a: &PeersArgs) -> anyhow::Result<Value> {
    let s = &a.sweep;
    let Measured {
        rows,
        failures,
        load_before,
        load_after,
    } = match &a.reuse {
        None => measure(a)?,
        Some(p) => {
            let r: Value = serde_json::from_str(&std::fs::read_to_string(p)?)?;
            let text = |k: &str| r[k].as_str().unwrap_or("").to_string();
            Measured {
                rows: r["rows"].as_array().cloned().unwrap_or_default(),
                failures: serde_json::from_value(r["failures"].clone()).unwrap_or_default(),
                load_before: text("load_before"),
                load_after: text("load_after"),
            }
        }
    };
    let points: Vec<Point> = rows.iter().filter_map(point).collect();
    let quiver: Vec<&str> = match s.index {
        Family::Hnsw => vec!["quiver"],
        Family::Ivfpq => vec!["quiver-ivfpq", "quiver-ivfpq-rerank"],
    };
    let mut peers: Vec<(String, String)> = Vec::new();
    for r in &rows {
        let e = r["engine"].as_str().unwrap_or("?");
        if !quiver.contains(&e) && !peers.iter().any(|(p, _)| p == e) {
            let mut version = r["version"].as_str().unwrap_or("").to_string();
            if let Some(q) = r["queries"].as_u64() {
                version += &format!(" (first {q} queries)");
            }
            peers.push((e.to_string(), version));
        }
    }
    let cmp = comparison(&points, &quiver, &peers);
    eprintln!("{}", crate::sweep::points_table(&points));
    eprintln!("{cmp}");
    let plots = crate::plot::recall_qps(
        &format!("{}: recall@10 vs QPS", s.name),
        &points,
        &s.out_dir.join(&s.name),
    )?;
    let mut build = Vec::new();
    for e in quiver
        .iter()
        .copied()
        .chain(peers.iter().map(|(p, _)| p.as_str()))
    {
        if let Some(b) = rows
            .iter()
            .find(|r| r["engine"] == e)
            .and_then(|r| r["build_s"].as_f64().or(r["train_s"].as_f64()))
        {
            build.push(format!("{e} {b:.1} s"));
        }
    }
    let load = |l: &str| l.split_whitespace().take(3).collect::<Vec<_>>().join(" ");
    let rel = |p: &Path| {
        p.file_name()
            .map_or("?".into(), |f| f.to_string_lossy().to_string())
    };
    let mut body = format!(
        "## Peers side by side: {} ({})\n\n{}\nOne search thread per engine, k = 10; databases are \
         called one query per request through their Python clients. The engines run one after \
         another; load average (1, 5, 15 min) before the run {}, after it {}, on {} cores: on a \
         shared machine, ratios move with the load.\n\n```sh\n{}\n```\n\n{}\nBuild (or train) \
         time: {}.\n",
        s.name,
        today(),
        if a.title.is_empty() {
            String::new()
        } else {
            format!("{}\n", a.title)
        },
        load(&load_before),
        load(&load_after),
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        command_line(a),
        cmp,
        build.join(", ")
    );
    for (script, e) in &failures {
        body += &format!("\nNot measured: {script}: {e}\n");
    }
    body += &format!(
        "\n![recall vs QPS, {}](results/{}) ([SVG](results/{}))\n",
        s.name,
        rel(&plots[0]),
        rel(&plots[1])
    );
    let doc = std::fs::read_to_string(&a.results_md).unwrap_or_default();
    std::fs::write(&a.results_md, replace_section(&doc, &s.name, &body))?;
    Ok(
        json!({"bench": "peers", "name": s.name, "date": today(), "failures": failures,
              "load_before": load_before, "load_after": load_after,
              "plots": plots, "comparison_markdown": cmp, "rows": rows}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_are_replaced_not_repeated() {
        let doc = "# R\n\ntext\n";
        let once = replace_section(doc, "x", "first");
        assert!(once.contains("<!-- peers:x:begin -->\nfirst\n<!-- peers:x:end -->"));
        let twice = replace_section(&once, "x", "second");
        assert!(twice.contains("second") && !twice.contains("first"));
        assert_eq!(twice.matches("peers:x:begin").count(), 1);
        let other = replace_section(&twice, "y", "third");
        assert!(other.contains("second") && other.contains("third"));
    }

    #[test]
    fn best_point_at_a_recall_target() {
        let p = |e: &str, recall, qps| Point {
            engine: e.into(),
            label: String::new(),
            recall,
            qps,
        };
        let pts = vec![
            p("a", 0.85, 900.0),
            p("a", 0.95, 400.0),
            p("b", 0.91, 300.0),
        ];
        assert_eq!(best(&pts, "a", 0.9).unwrap().qps, 400.0);
        assert_eq!(best(&pts, "a", 0.8).unwrap().qps, 900.0);
        assert!(best(&pts, "b", 0.95).is_none());
        let t = comparison(&pts, &["a"], &[("b".into(), "1.0".into())]);
        assert!(t.contains("**1.33×**"), "{t}");
        assert!(t.contains("peer does not reach it"), "{t}");
    }

    #[test]
    fn ivfpq_peers_meet_their_like() {
        let q = ["quiver-ivfpq", "quiver-ivfpq-rerank"];
        assert_eq!(counterparts(&q, "faiss-ivfpq"), vec!["quiver-ivfpq"]);
        assert_eq!(
            counterparts(&q, "faiss-ivfpq-refine"),
            vec!["quiver-ivfpq-rerank"]
        );
        assert_eq!(counterparts(&["quiver"], "hnswlib"), vec!["quiver"]);
    }

    #[test]
    fn dates() {
        assert_eq!(today().len(), 10);
    }
}
