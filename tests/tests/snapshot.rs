//! Snapshots through the CLI while writes go on: the file holds a consistent point (whole
//! batches, a prefix of the write stream), restores into a new collection with its payloads
//! and field indexes, and a damaged file is refused without leaving a collection behind.

use quiver_client::{filter, num_id, pb};
use quiver_tests::{ServerProcess, sibling_bin, temp_dir};
use serde_json::{Value, json};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

fn point(i: u64) -> pb::Point {
    let vector = (0..8).map(|d| ((i * 17 + d) % 101) as f32 / 10.0).collect();
    pb::Point {
        id: Some(num_id(i)),
        vector,
        payload_json: json!({"tag": format!("t{}", i % 3), "i": i}).to_string(),
    }
}

fn quiver(addr: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(sibling_bin("quiver"))
        .arg("--addr")
        .arg(addr)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[tokio::test]
async fn snapshot_while_writing_and_restore() {
    let dir = temp_dir("snap");
    let server = ServerProcess::start(&dir.join("data"), &["--flush-threshold", "500"]);
    let mut c = server.client().await;
    c.create_collection("src", 8, pb::Metric::L2).await.unwrap();
    let req = pb::CreateFieldIndexRequest {
        collection: "src".into(),
        field: "tag".into(),
        r#type: pb::FieldType::Keyword as i32,
        ..Default::default()
    };
    c.collections.create_field_index(req).await.unwrap();
    for b in 0..30u64 {
        c.upsert("src", (b * 100..b * 100 + 100).map(point).collect())
            .await
            .unwrap();
    }
    let sel = pb::delete_request::Selector::Ids(pb::PointIdList {
        ids: (0..100).map(num_id).collect(),
    });
    c.points
        .delete(pb::DeleteRequest {
            collection: "src".into(),
            selector: Some(sel),
        })
        .await
        .unwrap();

    // Keep writing whole batches while the snapshot is taken.
    let stop = Arc::new(AtomicBool::new(false));
    let (mut w, stop2) = (c.clone(), stop.clone());
    let writer = tokio::spawn(async move {
        let mut b = 30u64;
        while !stop2.load(Ordering::Relaxed) {
            w.upsert("src", (b * 100..b * 100 + 100).map(point).collect())
                .await
                .unwrap();
            b += 1;
        }
        b
    });
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let file = dir.join("src.qsnap");
    let (ok, out) = quiver(
        &server.addr,
        &[
            "snapshot",
            "create",
            "src",
            "--output",
            file.to_str().unwrap(),
        ],
    );
    assert!(ok, "{out}");
    stop.store(true, Ordering::Relaxed);
    let batches = writer.await.unwrap();
    assert!(batches > 30, "the writer made progress during the test");

    let (ok, out) = quiver(
        &server.addr,
        &[
            "--json",
            "snapshot",
            "restore",
            file.to_str().unwrap(),
            "--name",
            "copy",
        ],
    );
    assert!(ok, "{out}");
    let info = c.describe("copy").await.unwrap();
    assert_eq!(info.field_indexes.len(), 1, "field indexes come along");
    let n = info.points;
    assert!(
        n >= 2900,
        "the snapshot holds at least what was written before it ({n})"
    );
    assert_eq!(n % 100, 0, "a snapshot holds whole batches only ({n})");
    // The restored ids are exactly 100..100+n: a prefix of the write stream.
    let want: Vec<u64> = (100..100 + n).collect();
    let mut got = Vec::new();
    let mut offset = None;
    loop {
        let req = pb::ScrollRequest {
            collection: "copy".into(),
            limit: 1000,
            offset,
            with_vector: true,
            with_payload: true,
            ..Default::default()
        };
        let page = c.points.scroll(req).await.unwrap().into_inner();
        for r in page.records {
            let i = match r.id.unwrap().kind.unwrap() {
                pb::point_id::Kind::Num(i) => i,
                _ => unreachable!(),
            };
            let p = point(i);
            assert_eq!(r.vector, p.vector, "point {i}");
            assert_eq!(
                serde_json::from_str::<Value>(&r.payload_json).unwrap(),
                serde_json::from_str::<Value>(&p.payload_json).unwrap()
            );
            got.push(i);
        }
        match page.next_offset {
            Some(o) => offset = Some(o),
            None => break,
        }
    }
    assert_eq!(got, want);
    let t1 = filter::parse_str(r#"{"must":[{"key":"tag","match":"t1"}]}"#).unwrap();
    assert_eq!(
        c.count("copy", Some(t1)).await.unwrap(),
        want.iter().filter(|i| *i % 3 == 1).count() as u64
    );

    // A damaged snapshot is refused and leaves nothing behind.
    let mut raw = std::fs::read(&file).unwrap();
    let mid = raw.len() / 2;
    raw[mid] ^= 1;
    let bad = dir.join("bad.qsnap");
    std::fs::write(&bad, raw).unwrap();
    let (ok, out) = quiver(
        &server.addr,
        &[
            "snapshot",
            "restore",
            bad.to_str().unwrap(),
            "--name",
            "bad",
        ],
    );
    assert!(!ok && out.contains("checksum"), "{out}");
    assert!(c.describe("bad").await.is_err());
    // Restoring over an existing name is refused.
    let (ok, out) = quiver(
        &server.addr,
        &[
            "snapshot",
            "restore",
            file.to_str().unwrap(),
            "--name",
            "src",
        ],
    );
    assert!(!ok && out.contains("already exists"), "{out}");
    // No temporary files are left in the data folder.
    let left: Vec<_> = std::fs::read_dir(dir.join("data/snapshots"))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "{left:?}");
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
