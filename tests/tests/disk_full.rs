//! A full disk: writes fail with a clear status (never a silent loss), reads keep working, and
//! after space is freed and the server restarts every acknowledged write is there.
//!
//! Needs root to mount a small tmpfs (CI runs as root). Without root it says so and passes
//! nothing off as checked: the output reads "SKIPPED (not root)".

use quiver_client::{ClientError, num_id, pb};
use quiver_tests::{ServerProcess, temp_dir};
use std::process::Command;
use tonic::Code;

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn point(i: u64) -> pb::Point {
    pb::Point {
        id: Some(num_id(i)),
        vector: (0..128).map(|d| ((i + d) % 97) as f32).collect(),
        payload_json: format!("{{\"i\":{i}}}"),
    }
}

#[tokio::test]
async fn full_disk_fails_writes_loudly_and_loses_nothing() {
    if !is_root() {
        println!("SKIPPED (not root): mounting a small tmpfs needs root");
        return;
    }
    let dir = temp_dir("full");
    let mnt = dir.join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=48m", "tmpfs"])
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(ok.success(), "mount failed although running as root");
    let _guard = Mount(mnt.clone());
    let data = mnt.join("data");
    let mut server = ServerProcess::start(&data, &["--flush-threshold", "5000"]);
    let mut c = server.client().await;
    c.create_collection("f", 128, pb::Metric::L2).await.unwrap();
    let mut acked = 0u64;
    let mut failure = None;
    for b in 0..400u64 {
        match c
            .upsert("f", (b * 500..b * 500 + 500).map(point).collect())
            .await
        {
            Ok(_) => acked = b * 500 + 500,
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    let e = failure.expect("48 MB filled up without an error");
    match &e {
        ClientError::Status(s) => {
            assert!(
                matches!(s.code(), Code::Unavailable | Code::Internal),
                "{s:?}"
            );
            assert!(
                s.message().to_lowercase().contains("space"),
                "the message says why: {}",
                s.message()
            );
        }
        other => panic!("{other}"),
    }
    assert!(acked > 0, "nothing was written before the disk filled");
    // Reads still work and show exactly the acknowledged writes.
    assert_eq!(c.count("f", None).await.unwrap(), acked);
    // Free space, restart: everything acknowledged is there.
    server.kill9();
    let ok = Command::new("mount")
        .args(["-o", "remount,size=512m"])
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(ok.success());
    let server = ServerProcess::start(&data, &["--flush-threshold", "5000"]);
    let mut c = server.client().await;
    assert_eq!(c.count("f", None).await.unwrap(), acked);
    let req = pb::GetRequest {
        collection: "f".into(),
        ids: (0..acked).step_by(97).map(num_id).collect(),
        with_vector: true,
        with_payload: false,
    };
    for r in c.points.get(req).await.unwrap().into_inner().records {
        let i = match r.id.unwrap().kind.unwrap() {
            pb::point_id::Kind::Num(i) => i,
            _ => unreachable!(),
        };
        assert_eq!(r.vector, point(i).vector);
    }
    // And writes work again.
    c.upsert("f", vec![point(10_000_000)]).await.unwrap();
    drop(server);
    drop(_guard);
    let _ = std::fs::remove_dir_all(&dir);
}
