//! The storage engine in-process: writes, flush, compaction, reopen, drop, and refusal of a
//! collection whose segment file is damaged.

use quiver_storage::*;
use serde_json::json;
use std::sync::Arc;

fn dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("quiver-engine-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn open(d: &std::path::Path) -> Arc<Storage> {
    Storage::open(StorageOptions {
        data_dir: d.to_path_buf(),
        limits: Limits::default(),
    })
    .unwrap()
}

fn config(name: &str, threshold: usize) -> CollectionConfig {
    CollectionConfig {
        name: name.into(),
        dim: 3,
        metric: Metric::L2,
        index: IndexSpec::Flat,
        durability: Durability::Sync,
        flush_threshold: threshold,
        field_indexes: vec![],
        embedding_model: None,
        bm25: Default::default(),
    }
}

fn vec_of(i: u64) -> Vec<f32> {
    vec![i as f32, (i % 7) as f32, 1.0]
}

fn put(s: &Storage, c: &Arc<Collection>, ids: std::ops::Range<u64>) {
    let points = ids
        .map(|i| {
            (
                PointId::Num(i),
                vec_of(i),
                Some(json!({"i": i, "odd": i % 2 == 1}).to_string()),
            )
        })
        .collect();
    let batch = c.prepare_upsert(points).unwrap();
    s.upsert(c, batch).unwrap();
}

#[test]
fn flush_compact_reopen_and_drop() {
    let d = dir("cycle");
    {
        let s = open(&d);
        let c = s.create_collection(config("a", 100)).unwrap();
        for chunk in 0..10 {
            put(&s, &c, chunk * 50..chunk * 50 + 50);
        }
        s.flush(&c).unwrap();
        let st = c.stats();
        assert_eq!(st.points, 500);
        assert!(st.segments >= 1, "{st:?}");
        assert_eq!(st.unflushed_points, 0);
        // One flush started by the writer when the mutable segment filled, one asked for.
        assert!(s.stats.flushes.load(std::sync::atomic::Ordering::Relaxed) >= 2);
        // Overwrite and delete across segments, then compact.
        put(&s, &c, 0..10);
        s.delete(&c, (100..200).map(PointId::Num).collect())
            .unwrap();
        s.compact(&c).unwrap();
        let st = c.stats();
        assert_eq!(st.points, 400);
        assert_eq!(st.segments, 1);
        s.create_field_index(&c, "odd", FieldType::Keyword, None)
            .unwrap();
        s.shutdown();
    }
    {
        let s = open(&d);
        let c = s.collection("a").unwrap();
        assert_eq!(c.count(None).unwrap(), 400);
        let odd = Filter {
            must: vec![Condition::Match {
                key: "odd".into(),
                value: MatchValue::Boolean(true),
            }],
            ..Default::default()
        };
        assert_eq!(c.count(Some(&odd)).unwrap(), 200);
        let got = c
            .get(
                &[PointId::Num(5), PointId::Num(150), PointId::Num(450)],
                true,
                true,
            )
            .unwrap();
        assert_eq!(got.len(), 2, "point 150 was deleted");
        assert_eq!(got[0].vector.as_deref(), Some(&vec_of(5)[..]));
        assert_eq!(got[1].payload, Some(json!({"i": 450, "odd": false})));
        let hits = c
            .search(&SearchRequest {
                vector: &vec_of(300),
                k: 1,
                filter: None,
                exact: false,
                ef: None,
                nprobe: None,
                rerank: None,
                with_payload: false,
                with_vector: false,
            })
            .unwrap();
        assert_eq!(hits[0].id, PointId::Num(300));
        s.drop_collection("a").unwrap();
        assert!(matches!(
            s.collection("a"),
            Err(StorageError::CollectionNotFound { .. })
        ));
        s.shutdown();
    }
    let s = open(&d);
    assert!(s.collections().is_empty());
    assert_eq!(std::fs::read_dir(d.join("collections")).unwrap().count(), 0);
    s.shutdown();
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn damaged_segment_refuses_only_its_collection() {
    let d = dir("damage");
    {
        let s = open(&d);
        for name in ["good", "bad"] {
            let c = s.create_collection(config(name, 1000)).unwrap();
            put(&s, &c, 0..100);
            s.flush(&c).unwrap();
        }
        s.shutdown();
    }
    // Flip one byte in the middle of a vectors file of "bad" (collection id 2, segment 0).
    let file = d.join("collections/2/segments/0/vectors.bin");
    let mut raw = std::fs::read(&file).unwrap();
    let mid = raw.len() / 2;
    raw[mid] ^= 0x40;
    std::fs::write(&file, raw).unwrap();
    let s = open(&d);
    assert_eq!(s.collection("good").unwrap().count(None).unwrap(), 100);
    match s.collection("bad") {
        Err(StorageError::CollectionUnavailable { reason, .. }) => {
            assert!(reason.contains("vectors.bin"), "{reason}")
        }
        other => panic!("damaged collection served: {:?}", other.map(|c| c.name())),
    }
    // It can still be dropped.
    s.drop_collection("bad").unwrap();
    s.shutdown();
    let _ = std::fs::remove_dir_all(&d);
}
