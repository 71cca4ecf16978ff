//! Model-based property test: random sequences of upsert, delete, flush, compact and restart
//! on the real engine (RocksDB, segment files) are compared with a plain `HashMap` after every
//! step, BM25 scores over a text index included. `QUIVER_MODEL_CASES` sets the number of
//! sequences (default 64).

use proptest::prelude::*;
use quiver_storage::*;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

#[derive(Debug, Clone)]
enum Op {
    /// (id, vector seed, with payload)
    Upsert(Vec<(u64, u16, bool)>),
    Delete(Vec<u64>),
    Flush,
    Compact,
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => prop::collection::vec((0u64..40, any::<u16>(), any::<bool>()), 1..12).prop_map(Op::Upsert),
        3 => prop::collection::vec(0u64..40, 1..8).prop_map(Op::Delete),
        1 => Just(Op::Flush),
        1 => Just(Op::Compact),
        1 => Just(Op::Restart),
    ]
}

fn vector(seed: u16) -> Vec<f32> {
    (0..4)
        .map(|d| ((seed as u32 * 7 + d * 13) % 101) as f32 - 50.0)
        .collect()
}

const WORDS: [&str; 5] = ["alpha", "beta", "gamma", "delta", "omega"];

/// Three words drawn from the seed (repeats happen), "the" (a stop word) between them.
fn text(seed: u16) -> String {
    let s = seed as usize;
    format!(
        "{} the {} {}",
        WORDS[s % 5],
        WORDS[s / 5 % 5],
        WORDS[s / 25 % 3]
    )
}

fn payload(id: u64, seed: u16) -> Value {
    let mut p = json!({"id": id, "seed": seed, "even": seed % 2 == 0});
    if seed % 4 != 0 {
        p["text"] = json!(text(seed));
    }
    p
}

/// BM25 (k1 1.2, b 0.75) of `query` over the model's "text" fields, computed from scratch.
fn model_bm25(
    model: &HashMap<u64, (Vec<f32>, Option<Value>)>,
    query: &[&str],
) -> BTreeMap<u64, f64> {
    let docs: Vec<(u64, Vec<String>)> = model
        .iter()
        .filter_map(|(id, (_, p))| {
            let t = p.as_ref()?["text"].as_str()?;
            Some((
                *id,
                t.split(' ')
                    .filter(|w| *w != "the")
                    .map(str::to_string)
                    .collect(),
            ))
        })
        .collect();
    let n = docs.len() as f64;
    let avgdl = docs.iter().map(|(_, d)| d.len()).sum::<usize>() as f64 / n;
    let mut out = BTreeMap::new();
    for q in query {
        let df = docs
            .iter()
            .filter(|(_, d)| d.iter().any(|w| w == q))
            .count() as f64;
        let idf = (1.0 + (n - df + 0.5) / (df + 0.5)).ln();
        for (id, d) in &docs {
            let tf = d.iter().filter(|w| w == q).count() as f64;
            if tf > 0.0 {
                let norm = 1.2 * (1.0 - 0.75 + 0.75 * d.len() as f64 / avgdl);
                *out.entry(*id).or_insert(0.0) += idf * tf * 2.2 / (tf + norm);
            }
        }
    }
    out
}

fn open(dir: &std::path::Path) -> Arc<Storage> {
    Storage::open(StorageOptions {
        data_dir: dir.to_path_buf(),
        limits: Limits::default(),
    })
    .expect("open")
}

fn check(
    c: &Collection,
    model: &HashMap<u64, (Vec<f32>, Option<Value>)>,
) -> Result<(), TestCaseError> {
    prop_assert_eq!(c.count(None).unwrap(), model.len() as u64);
    let ids: Vec<PointId> = (0..40).map(PointId::Num).collect();
    let got: BTreeMap<u64, Record> = c
        .get(&ids, true, true)
        .unwrap()
        .into_iter()
        .map(|r| match r.id {
            PointId::Num(n) => (n, r),
            other => panic!("unexpected id {other:?}"),
        })
        .collect();
    prop_assert_eq!(got.len(), model.len());
    for (id, (v, p)) in model {
        let r = got
            .get(id)
            .ok_or_else(|| TestCaseError::fail(format!("point {id} missing")))?;
        prop_assert_eq!(r.vector.as_ref(), Some(v));
        prop_assert_eq!(&r.payload, p);
    }
    // Scroll sees exactly the model's ids, in order.
    let (page, next) = c.scroll(None, None, 100, false, false).unwrap();
    prop_assert!(next.is_none());
    let mut want: Vec<u64> = model.keys().copied().collect();
    want.sort();
    let seen: Vec<u64> = page
        .iter()
        .map(|r| match r.id {
            PointId::Num(n) => n,
            _ => unreachable!(),
        })
        .collect();
    prop_assert_eq!(seen, want);
    // A filter on the payload agrees with the model.
    let even = Filter {
        must: vec![Condition::Match {
            key: "even".into(),
            value: MatchValue::Boolean(true),
        }],
        ..Default::default()
    };
    let want_even = model
        .values()
        .filter(|(_, p)| p.as_ref().is_some_and(|p| p["even"] == json!(true)))
        .count() as u64;
    prop_assert_eq!(c.count(Some(&even)).unwrap(), want_even);
    // BM25 over the text index equals BM25 computed from the model's live points.
    for query in [&["alpha"][..], &["beta", "omega"][..]] {
        let want = model_bm25(model, query);
        let got = c
            .search_text(&TextSearchRequest {
                query: &query.join(" the "),
                field: None,
                k: 100,
                filter: None,
                with_payload: false,
            })
            .unwrap();
        prop_assert_eq!(got.len(), want.len(), "query {:?}", query);
        for t in got {
            let PointId::Num(id) = t.record.id else {
                unreachable!()
            };
            let w = want
                .get(&id)
                .ok_or_else(|| TestCaseError::fail(format!("{id} should not match")))?;
            let g = f64::from(t.record.score.unwrap());
            prop_assert!(
                (g - w).abs() < 1e-4 * w.max(1.0),
                "point {}: {} vs {}",
                id,
                g,
                w
            );
        }
    }
    // The nearest point to a stored vector is at distance zero.
    if let Some((_, (v, _))) = model.iter().next() {
        let hits = c
            .search(&SearchRequest {
                vector: v,
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
        prop_assert_eq!(hits.len(), 1);
        prop_assert!(hits[0].score.unwrap() < 1e-4);
    }
    Ok(())
}

fn cases() -> u32 {
    std::env::var("QUIVER_MODEL_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(64)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn engine_matches_a_hashmap(ops in prop::collection::vec(op(), 1..40)) {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!("quiver-model-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed)));
        let _ = std::fs::remove_dir_all(&dir);
        let mut s = open(&dir);
        let mut c = s
            .create_collection(CollectionConfig {
                name: "m".into(),
                dim: 4,
                metric: Metric::L2,
                index: IndexSpec::Flat,
                durability: Durability::Sync,
                flush_threshold: 9,
                field_indexes: vec![],
                embedding_model: None,
                bm25: Default::default(),
            })
            .unwrap();
        s.create_field_index(&c, "even", FieldType::Keyword, None).unwrap();
        s.create_field_index(&c, "text", FieldType::Text, None).unwrap();
        let mut model: HashMap<u64, (Vec<f32>, Option<Value>)> = HashMap::new();
        for op in ops {
            match op {
                Op::Upsert(points) => {
                    let mut dedup: BTreeMap<u64, (u16, bool)> = BTreeMap::new();
                    for (id, seed, with) in points {
                        dedup.insert(id, (seed, with));
                    }
                    let batch: Vec<_> = dedup
                        .iter()
                        .map(|(id, (seed, with))| (PointId::Num(*id), vector(*seed), with.then(|| payload(*id, *seed).to_string())))
                        .collect();
                    let prepared = c.prepare_upsert(batch).unwrap();
                    s.upsert(&c, prepared).unwrap();
                    for (id, (seed, with)) in dedup {
                        model.insert(id, (vector(seed), with.then(|| payload(id, seed))));
                    }
                }
                Op::Delete(ids) => {
                    let out = s.delete(&c, ids.iter().map(|i| PointId::Num(*i)).collect()).unwrap();
                    let mut unique = ids.clone();
                    unique.sort();
                    unique.dedup();
                    let present = unique.iter().filter(|i| model.contains_key(i)).count() as u64;
                    prop_assert_eq!(out.affected, present);
                    for i in ids {
                        model.remove(&i);
                    }
                }
                Op::Flush => s.flush(&c).unwrap(),
                Op::Compact => s.compact(&c).unwrap(),
                Op::Restart => {
                    s.shutdown();
                    drop(c);
                    drop(s);
                    s = open(&dir);
                    c = s.collection("m").unwrap();
                }
            }
            check(&c, &model)?;
        }
        s.shutdown();
        drop(c);
        drop(s);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
