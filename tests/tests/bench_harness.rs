//! `quiver-bench` end to end against a real server for a few seconds: `dataset` writes a set
//! and its exact ground truth, `ingest` upserts and checks the count, `search` drives
//! concurrent clients and reports recall (1.0 on a flat collection: its search is exact), then
//! sends on a fixed schedule (`--rate`, open loop), and `sweep` draws recall against QPS, in
//! process and against the server, as PNG and SVG.

use quiver_tests::{ServerProcess, run_json, temp_dir};
use serde_json::Value;

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
            "--npy",
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
            "--json",
            dir.join("ingest.json").to_str().unwrap(),
        ],
    );
    assert_eq!(r["n"], 4000, "{r}");
    let written: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("ingest.json")).unwrap()).unwrap();
    assert_eq!(written, r, "--json writes the printed report");
    assert!(r["vectors_per_s"].as_f64().unwrap() > 0.0);
    let ms = |q: &str| r[q].as_f64().unwrap();
    assert!(ms("batch_ms_p50") <= ms("batch_ms_p95") && ms("batch_ms_p95") <= ms("batch_ms_p99"));

    assert!(r["indexed_s"].as_f64().unwrap() >= 0.0);
    assert_eq!(r["indexed_fraction"], 1.0, "{r}");

    // A vector file (.npy, written by dataset --npy) into a kept HNSW collection.
    let npy = format!("{p}.base.npy");
    let r = run_json(
        "quiver-bench",
        &[
            "ingest",
            "--addr",
            a,
            "--base",
            &npy,
            "--hnsw",
            "--keep",
            "--collection",
            "bnpy",
        ],
    );
    assert_eq!(
        (r["n"].clone(), r["dim"].clone(), r["index"].clone()),
        (3000.into(), 16.into(), "hnsw".into()),
        "{r}"
    );
    assert_eq!(r["indexed_fraction"], 1.0, "{r}");
    let info = run_json(
        "quiver",
        &["--addr", a, "--json", "collection", "describe", "bnpy"],
    );
    assert_eq!(info["points"], 3000, "kept: {info}");
    assert_eq!(info["index_state"], "ready", "{info}");

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

    // Open loop: 200 searches/s, due every 5 ms whether or not the last has returned. The
    // schedule alone fixes how many fall due in the measured 2 s after 0.5 s of warm-up (ids
    // 100..500): each is sent or dropped, however fast the server is.
    let o = run_json(
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
            "--rate",
            "200",
            "--clients",
            "2",
            "--duration-secs",
            "2",
            "--warmup-secs",
            "0.5",
        ],
    );
    assert_eq!(o["mode"], "open-loop", "{o}");
    let count = |key: &str| o[key].as_u64().unwrap_or_else(|| panic!("{key}: {o}"));
    assert_eq!(count("sent") + count("dropped"), 400, "{o}");
    assert_eq!(
        count("ok") + count("unfinished"),
        count("sent"),
        "every sent search answered or counted unfinished: {o}"
    );
    assert!(count("ok") > 0, "{o}");
    assert_eq!(o["errors"], serde_json::json!({}), "{o}");
    assert!(
        (o["recall_at_k"].as_f64().unwrap() - 1.0).abs() < 1e-9,
        "flat search is exact: {o}"
    );
    let l = &o["latency_ms"];
    assert!(
        l["p50"].as_f64().unwrap() <= l["p99.9"].as_f64().unwrap(),
        "{o}"
    );

    // Sweep: in process on the files (HNSW at two beams) and against the server's flat
    // collection (exact at any ef), drawn as PNG and SVG.
    let plots = dir.join("plots");
    let w = run_json(
        "quiver-bench",
        &[
            "sweep",
            "--base",
            &base,
            "--queries",
            &q,
            "--gt",
            &gt,
            "--ef",
            "8,64",
            "--addr",
            a,
            "--collection",
            "b",
            "--duration-secs",
            "0.5",
            "--name",
            "tiny",
            "--out-dir",
            plots.to_str().unwrap(),
            "--json",
            dir.join("sweep.json").to_str().unwrap(),
        ],
    );
    assert_eq!(w["points"], 4, "{w}");
    let png = std::fs::read(plots.join("tiny.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "a PNG file");
    let svg = std::fs::read_to_string(plots.join("tiny.svg")).unwrap();
    assert!(
        svg.contains("<svg") && svg.contains("quiver-server"),
        "{svg}"
    );
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("sweep.json")).unwrap()).unwrap();
    let rows = report["rows"].as_array().unwrap();
    let served: Vec<&Value> = rows
        .iter()
        .filter(|r| r["engine"] == "quiver-server")
        .collect();
    assert_eq!(served.len(), 2, "{report}");
    for r in served {
        assert!(
            (r["recall_at_k"].as_f64().unwrap() - 1.0).abs() < 1e-9,
            "{r}"
        );
    }
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
