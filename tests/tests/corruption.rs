//! Damaged files: a flipped byte in each kind of segment file, a deleted segment file, and a
//! RocksDB log cut in the middle of a record. The server starts, serves the healthy collection,
//! refuses the damaged one with DATA_LOSS naming the file, and `quiver-server check` reports it
//! offline.

use quiver_client::{num_id, pb};
use quiver_tests::{ServerProcess, server_bin, temp_dir, vectors};
use std::path::{Path, PathBuf};
use std::process::Command;
use tonic::Code;

const DIM: usize = 8;

/// Builds a data folder with two flushed collections, "healthy" (id 1) and "victim" (id 2).
async fn build(dir: &Path) -> Vec<Vec<f32>> {
    let data = vectors(11, 1200, DIM);
    let mut server = ServerProcess::start(dir, &[]);
    let mut c = server.client().await;
    for name in ["healthy", "victim"] {
        c.create_collection(name, DIM as u32, pb::Metric::L2)
            .await
            .unwrap();
        let points = data
            .iter()
            .enumerate()
            .map(|(i, v)| pb::Point {
                id: Some(num_id(i as u64)),
                vector: v.clone(),
                payload_json: String::new(),
            })
            .collect();
        c.upsert(name, points).await.unwrap();
        c.collections
            .flush(pb::FlushRequest { name: name.into() })
            .await
            .unwrap();
    }
    server.stop();
    data
}

fn copy_dir(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    assert!(
        Command::new("cp")
            .arg("-a")
            .arg(from)
            .arg(to)
            .status()
            .unwrap()
            .success()
    );
}

fn segment_file(data: &Path, collection: u64, file: &str) -> PathBuf {
    let segs = data
        .join("collections")
        .join(collection.to_string())
        .join("segments");
    let seg = std::fs::read_dir(&segs)
        .unwrap()
        .next()
        .expect("a flushed segment")
        .unwrap()
        .path();
    seg.join(file)
}

fn check(data: &Path) -> (bool, String) {
    let out = Command::new(server_bin())
        .args(["check", "--data-dir", data.to_str().unwrap()])
        .env("QUIVER_LOG", "error")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr),
    )
}

async fn assert_healthy_served(server: &ServerProcess, data: &[Vec<f32>]) {
    let mut c = server.client().await;
    assert_eq!(c.count("healthy", None).await.unwrap(), data.len() as u64);
    let hits = c
        .search(pb::SearchRequest {
            collection: "healthy".into(),
            vector: data[42].clone(),
            k: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(hits[0].id, Some(num_id(42)));
}

#[tokio::test]
async fn damaged_segment_files_refuse_only_their_collection() {
    let root = temp_dir("corrupt");
    let pristine = root.join("pristine");
    let data = build(&pristine).await;
    let (ok, report) = check(&pristine);
    assert!(ok, "a healthy folder fails the check: {report}");

    type Damage = fn(&Path);
    let cases: [(&str, &str, Damage); 4] = [
        ("flipped byte in vectors", "vectors.bin", |p| flip(p, 0.5)),
        ("flipped byte in ids", "ids.bin", |p| flip(p, 0.5)),
        ("flipped header byte", "vectors.bin", |p| flip(p, 0.01)),
        ("deleted ids file", "ids.bin", |p| {
            std::fs::remove_file(p).unwrap()
        }),
    ];
    for (what, file, damage) in cases {
        let dir = root.join("case");
        copy_dir(&pristine, &dir);
        damage(&segment_file(&dir, 2, file));
        let (ok, report) = check(&dir);
        assert!(!ok, "{what}: check passed");
        assert!(
            report.contains("DAMAGED victim") && report.contains(file),
            "{what}: {report}"
        );
        assert!(report.contains("ok      healthy"), "{what}: {report}");

        let server = ServerProcess::start(&dir, &[]);
        assert_healthy_served(&server, &data).await;
        let mut c = server.client().await;
        let err = c.describe("victim").await.unwrap_err();
        match err {
            quiver_client::ClientError::Status(s) => {
                assert_eq!(s.code(), Code::DataLoss, "{what}");
                assert!(s.message().contains(file), "{what}: {}", s.message());
            }
            other => panic!("{what}: {other}"),
        }
        let err = c
            .points
            .search(pb::SearchRequest {
                collection: "victim".into(),
                vector: data[0].clone(),
                k: 3,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(
            err.code(),
            Code::DataLoss,
            "{what}: searches are refused too"
        );
        let names: Vec<String> = c
            .collections
            .list(pb::ListCollectionsRequest {})
            .await
            .unwrap()
            .into_inner()
            .collections
            .into_iter()
            .map(|c| c.name)
            .collect();
        assert_eq!(names, vec!["healthy".to_string()]);
        // The damaged collection can be dropped, and its name reused.
        c.collections
            .drop(pb::DropCollectionRequest {
                name: "victim".into(),
            })
            .await
            .unwrap();
        c.create_collection("victim", DIM as u32, pb::Metric::L2)
            .await
            .unwrap();
        drop(server);
    }
    let _ = std::fs::remove_dir_all(&root);
}

fn flip(path: &Path, at: f64) {
    let mut raw = std::fs::read(path).unwrap();
    let i = ((raw.len() as f64 * at) as usize).min(raw.len() - 1);
    raw[i] ^= 0x5a;
    std::fs::write(path, raw).unwrap();
}

/// The newest RocksDB log file of a data folder.
fn newest_log(data: &Path) -> PathBuf {
    let mut logs: Vec<PathBuf> = std::fs::read_dir(data.join("rocksdb"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    logs.pop().expect("a RocksDB log file")
}

#[tokio::test]
async fn log_cut_mid_record_keeps_the_intact_prefix() {
    let dir = temp_dir("torn");
    let data = vectors(12, 400, DIM);
    let mut server = ServerProcess::start(&dir, &[]);
    let mut c = server.client().await;
    c.create_collection("t", DIM as u32, pb::Metric::L2)
        .await
        .unwrap();
    for (b, chunk) in data.chunks(100).enumerate() {
        let points = chunk
            .iter()
            .enumerate()
            .map(|(i, v)| pb::Point {
                id: Some(num_id((b * 100 + i) as u64)),
                vector: v.clone(),
                payload_json: String::new(),
            })
            .collect();
        c.upsert("t", points).await.unwrap();
    }
    server.kill9();
    let log = newest_log(&dir);
    let len = std::fs::metadata(&log).unwrap().len();
    assert!(len > 10_000, "the log holds the writes ({len} bytes)");
    // Cut inside the last record (each upsert record is over 3 KB).
    let f = std::fs::OpenOptions::new().write(true).open(&log).unwrap();
    f.set_len(len - 1000).unwrap();
    drop(f);

    let server = ServerProcess::start(&dir, &[]);
    let mut c = server.client().await;
    let n = c.count("t", None).await.unwrap();
    assert_eq!(
        n, 300,
        "the torn last batch is dropped whole, the three before it kept"
    );
    let req = pb::GetRequest {
        collection: "t".into(),
        ids: (0..400).map(num_id).collect(),
        with_vector: true,
        with_payload: false,
    };
    let got = c.points.get(req).await.unwrap().into_inner().records;
    assert_eq!(got.len(), 300);
    for r in got {
        let i = match r.id.unwrap().kind.unwrap() {
            pb::point_id::Kind::Num(n) => n as usize,
            _ => unreachable!(),
        };
        assert_eq!(r.vector, data[i], "point {i} came back with other values");
    }
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
