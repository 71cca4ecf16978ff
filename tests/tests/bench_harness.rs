//! `quiver-bench` end to end against a real server for a few seconds: `dataset` writes a set
//! and its exact ground truth, `ingest` upserts and checks the count, and `search` drives
//! concurrent clients and reports recall (1.0 on a flat collection: its search is exact).

use quiver_tests::{ServerProcess, sibling_bin, temp_dir};
use serde_json::Value;
use std::process::Command;

fn run_json(bin: &str, args: &[&str]) -> Value {
    let out = Command::new(sibling_bin(bin))
        .args(args)
        .output()
        .expect("running the binary");
    assert!(
        out.status.success(),
        "{bin} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or_default().to_string();
    serde_json::from_str(&last)
        .unwrap_or_else(|e| panic!("{bin} {args:?} printed no JSON ({e}): {stdout}"))
}

#[tokio::test]
async fn dataset_ingest_and_search_against_a_server() {
    let dir = temp_dir("bench");
    let server = ServerProcess::start(&dir.join("data"), &[]);
    let a = server.addr.as_str();
    let prefix = dir.join("d");
    let p = prefix.to_str().unwrap();
    let d = run_json(
        "quiver-bench",
        &[
            "dataset",
            "--out",
            p,
            "--n",
            "3000",
            "--dim",
            "16",
            "--queries",
            "40",
        ],
    );
    assert_eq!(d["n"], 3000);

    let r = run_json(
        "quiver-bench",
        &[
            "ingest",
            "--addr",
            a,
            "--n",
            "4000",
            "--dim",
            "24",
            "--batch",
            "500",
            "--parallel",
            "2",
        ],
    );
    assert_eq!(r["n"], 4000, "{r}");
    assert!(r["vectors_per_s"].as_f64().unwrap() > 0.0);
    assert!(r["batch_ms_p50"].as_f64().unwrap() <= r["batch_ms_p99"].as_f64().unwrap());

    let base = format!("{p}.base.fvecs");
    for args in [
        vec!["collection", "create", "b", "--dim", "16", "--metric", "l2"],
        vec!["import", "b", base.as_str()],
        vec!["collection", "flush", "b"],
    ] {
        let mut all = vec!["--addr", a, "--json"];
        all.extend(args);
        run_json("quiver", &all);
    }
    let q = format!("{p}.query.fvecs");
    let gt = format!("{p}.gt.ivecs");
    let s = run_json(
        "quiver-bench",
        &[
            "search",
            "--addr",
            a,
            "--collection",
            "b",
            "--queries",
            &q,
            "--gt",
            &gt,
            "--clients",
            "2",
            "--duration-secs",
            "2",
            "--warmup-secs",
            "0.5",
        ],
    );
    assert!(s["ok"].as_u64().unwrap() > 0, "{s}");
    assert_eq!(s["errors"], serde_json::json!({}), "{s}");
    assert!(
        (s["recall_at_k"].as_f64().unwrap() - 1.0).abs() < 1e-9,
        "flat search is exact: {s}"
    );
    let l = &s["latency_ms"];
    assert!(l["p50"].as_f64().unwrap() <= l["p99"].as_f64().unwrap());
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
