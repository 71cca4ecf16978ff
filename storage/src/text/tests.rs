//! BM25 on a hand-computed example, frozen files against the in-memory index, damage.

use super::*;

fn three_docs() -> MemText {
    let mut m = MemText::default();
    m.add(0, "Apple banana, apple.");
    m.add(1, "The banana and the cherry");
    m.add(2, "cherry cherry cherry date");
    m
}

fn run(index: &TextIndex, deleted: &RoaringBitmap, q: &str) -> Vec<(u32, f32, u32)> {
    let seg = [TextSegment {
        index,
        deleted,
        allowed: None,
    }];
    bm25_top_k(&seg, &query_terms(q), Bm25Params::default(), 10)
        .into_iter()
        .map(|h| (h.offset, h.score, h.matched_terms))
        .collect()
}

fn close(got: &[(u32, f32, u32)], want: &[(u32, f32)]) {
    assert_eq!(got.len(), want.len(), "{got:?}");
    for (g, w) in got.iter().zip(want) {
        assert_eq!(g.0, w.0, "{got:?}");
        assert!((g.1 - w.1).abs() < 1e-5, "{got:?} vs {want:?}");
    }
}

/// Worked by hand (k1 1.2, b 0.75; N 3, lengths 3, 2, 4, avgdl 3):
/// "apple": df 1, idf ln(1 + 2.5/1.5) = 0.980829; doc 0 tf 2: 0.980829 · 2 · 2.2 / (2 + 1.2).
/// "banana cherry": idf ln(1.6) = 0.470004 each; doc 1: 2 · 0.470004 · 2.2 / (1 + 0.9);
/// doc 2: 0.470004 · 3 · 2.2 / (3 + 1.5); doc 0: 0.470004 · 2.2 / (1 + 1.2).
fn check_hand_computed(index: &TextIndex) {
    let none = RoaringBitmap::new();
    close(&run(index, &none, "apple"), &[(0, 1.348_640_2)]);
    let got = run(index, &none, "Banana? CHERRY!");
    close(
        &got,
        &[(1, 1.088_429_5), (2, 0.689_338_66), (0, 0.470_003_63)],
    );
    assert_eq!(got[0].2, 2, "doc 1 holds both terms");
    assert!(run(index, &none, "durian").is_empty());
    assert!(
        run(index, &none, "the and of").is_empty(),
        "stop words only"
    );
    // Deleting doc 0 changes the statistics: N 2, avgdl 3, banana's df 1, idf ln 2.
    let dead: RoaringBitmap = [0u32].into_iter().collect();
    close(&run(index, &dead, "banana"), &[(1, 0.802_591_5)]);
}

#[test]
fn bm25_matches_the_hand_computed_example() {
    check_hand_computed(&TextIndex::Mem(three_docs()));
}

fn tmpdir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("quiver-text-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn the_frozen_file_scores_like_memory_and_damage_is_detected() {
    let dir = tmpdir("frozen");
    let id = SegmentId(7);
    let frozen = persist(&dir, id, 4, 5, "body", three_docs().to_bytes("body", 5)).unwrap();
    check_hand_computed(&TextIndex::Frozen(std::sync::Arc::new(frozen)));
    assert!(
        open(&dir, id, 4, 5, "other").unwrap().is_none(),
        "other field: no file"
    );
    // Another segment, point count or dimension is refused.
    assert!(open(&dir, SegmentId(8), 4, 5, "body").is_err());
    assert!(open(&dir, id, 4, 6, "body").is_err());
    let path = dir.join(file_name("body"));
    let good = std::fs::read(&path).unwrap();
    for at in [0, 70, good.len() / 2, good.len() - 9, good.len() - 1] {
        let mut bad = good.clone();
        bad[at] ^= 0x40;
        std::fs::write(&path, &bad).unwrap();
        let e = open(&dir, id, 4, 5, "body").unwrap_err();
        assert!(e.to_string().contains("text-"), "{e}");
    }
    std::fs::write(&path, &good[..good.len() - 3]).unwrap();
    assert!(open(&dir, id, 4, 5, "body").is_err());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn segments_share_statistics_and_filters_apply() {
    // The same three points split over two segments score as in one.
    let mut a = MemText::default();
    a.add(0, "Apple banana, apple.");
    a.add(1, "The banana and the cherry");
    let mut b = MemText::default();
    b.add(0, "cherry cherry cherry date");
    let (a, b) = (TextIndex::Mem(a), TextIndex::Mem(b));
    let none = RoaringBitmap::new();
    let only_first: RoaringBitmap = [0u32].into_iter().collect();
    let segs = [
        TextSegment {
            index: &a,
            deleted: &none,
            allowed: None,
        },
        TextSegment {
            index: &b,
            deleted: &none,
            allowed: None,
        },
    ];
    let hits = bm25_top_k(
        &segs,
        &query_terms("banana cherry"),
        Bm25Params::default(),
        2,
    );
    assert_eq!(hits.len(), 2);
    assert_eq!((hits[0].segment, hits[0].offset), (0, 1));
    assert!((hits[0].score - 1.088_429_5).abs() < 1e-5);
    assert_eq!((hits[1].segment, hits[1].offset), (1, 0));
    assert!((hits[1].score - 0.689_338_66).abs() < 1e-5);
    // A filter hides points but not their statistics.
    let segs = [
        TextSegment {
            index: &a,
            deleted: &none,
            allowed: Some(&only_first),
        },
        TextSegment {
            index: &b,
            deleted: &none,
            allowed: Some(&RoaringBitmap::new()),
        },
    ];
    let hits = bm25_top_k(
        &segs,
        &query_terms("banana cherry"),
        Bm25Params::default(),
        5,
    );
    assert_eq!(hits.len(), 1);
    assert!((hits[0].score - 0.470_003_63).abs() < 1e-5);
}
