//! Tests of the whole index: quantization error, ADC against exact distances to the
//! reconstruction for every metric, recall against exact search (plain, filtered, with
//! deletions), determinism, and bytes that round-trip or are refused.

use super::*;
use crate::flat::exact_search;
use roaring::RoaringBitmap;

fn clustered(n: usize, dim: usize, seed: u64) -> Vec<f32> {
    crate::synthetic::clustered(n, dim, 50, 10, seed)
}

fn params(nlist: usize, m: usize) -> IvfPqParams {
    IvfPqParams {
        nlist,
        m,
        ..IvfPqParams::default()
    }
}

/// Where each vector sits: (list, position in the list).
fn positions(ix: &IvfPqIndex) -> Vec<(usize, usize)> {
    let mut at = vec![(0, 0); ix.len()];
    for l in 0..ix.nlist() {
        for (i, &id) in ix.list(l).iter().enumerate() {
            at[id as usize] = (l, i);
        }
    }
    at
}

fn recall(
    ix: &IvfPqIndex,
    v: Vectors<'_>,
    metric: Metric,
    queries: &[f32],
    filter: &PointFilter<'_>,
    sp: IvfPqSearchParams,
) -> f64 {
    recall_of(ix, v, metric, queries, filter, sp, false)
}

/// Recall@10 against exact search; `lists_only` bypasses the filtered-search planner.
fn recall_of(
    ix: &IvfPqIndex,
    v: Vectors<'_>,
    metric: Metric,
    queries: &[f32],
    filter: &PointFilter<'_>,
    sp: IvfPqSearchParams,
    lists_only: bool,
) -> f64 {
    let (mut hit, mut total) = (0, 0);
    for q in queries.chunks_exact(v.dim()) {
        let truth: Vec<u32> = exact_search(v, metric, q, 10, filter)
            .iter()
            .map(|n| n.key)
            .collect();
        let got = if lists_only {
            ix.search_lists(v, metric, q, 10, filter, sp)
        } else {
            ix.search_with(v, metric, q, 10, filter, sp)
        };
        for n in &got {
            assert!(
                filter.admits(n.key),
                "result {} does not pass the filter",
                n.key
            );
        }
        hit += got.iter().filter(|n| truth.contains(&n.key)).count();
        total += truth.len();
    }
    hit as f64 / total as f64
}

#[test]
fn residual_pq_beats_the_coarse_centroid_alone() {
    let (n, dim) = (5000, 32);
    let data = clustered(n, dim, 11);
    let v = Vectors::new(&data, dim);
    let ix = IvfPqIndex::build(v, Metric::L2, &params(64, 8), 2, None).unwrap();
    let (mut coarse_err, mut pq_err, mut energy) = (0f64, 0f64, 0f64);
    let mut rec = vec![0f32; dim];
    for (id, (l, i)) in positions(&ix).into_iter().enumerate() {
        let x = v.get(id as u32);
        ix.reconstruct(l, i, &mut rec);
        let c = ix.quantizer.coarse.row(l);
        coarse_err += Metric::L2.distance_scalar(x, c) as f64;
        pq_err += Metric::L2.distance_scalar(x, &rec) as f64;
        energy += x.iter().map(|a| (a * a) as f64).sum::<f64>();
    }
    eprintln!(
        "relative squared error: coarse centroid {:.4}, with PQ residual {:.4}",
        coarse_err / energy,
        pq_err / energy
    );
    assert!(pq_err < 0.25 * coarse_err, "{pq_err} vs {coarse_err}");
}

#[test]
fn adc_is_the_exact_distance_to_the_reconstruction_for_every_metric() {
    let (n, dim) = (3000, 24);
    let data = clustered(n, dim, 12);
    let queries = clustered(5, dim, 13);
    let v = Vectors::new(&data, dim);
    for metric in [Metric::L2, Metric::Dot, Metric::Cosine] {
        let ix = IvfPqIndex::build(v, metric, &params(32, 6), 2, None).unwrap();
        let at = positions(&ix);
        let mut rec = vec![0f32; dim];
        let all = IvfPqSearchParams {
            nprobe: Some(ix.nlist()),
            rerank: Some(0),
        };
        for q in queries.chunks_exact(dim) {
            let got = ix.search_with(v, metric, q, n, &PointFilter::default(), all);
            assert_eq!(got.len(), n, "every list probed, every entry scored");
            let qn: f32 = q.iter().map(|x| x * x).sum::<f32>().sqrt();
            for hit in got {
                let (l, i) = at[hit.key as usize];
                ix.reconstruct(l, i, &mut rec);
                let want = match metric {
                    Metric::L2 | Metric::Dot => metric.distance_scalar(q, &rec),
                    // The cosine form scores the unit query against the reconstruction of
                    // the unit vector: 1 - ⟨q̂, c + r⟩.
                    Metric::Cosine => {
                        1.0 - q.iter().zip(&rec).map(|(a, b)| a * b).sum::<f32>() / qn
                    }
                };
                let scale = match metric {
                    Metric::Cosine => 1.0,
                    _ => q.iter().map(|x| x * x).sum::<f32>().max(1.0),
                };
                assert!(
                    (hit.distance - want).abs() <= 1e-4 * scale,
                    "{metric:?}: ADC {} vs exact on the reconstruction {want}",
                    hit.distance
                );
            }
        }
    }
}

#[test]
fn recall_with_reranking_plain_filtered_and_with_deletions() {
    let (n, dim) = (20_000, 64);
    let data = clustered(n, dim, 1);
    let queries = clustered(200, dim, 2);
    let v = Vectors::new(&data, dim);
    let ix = IvfPqIndex::build(v, Metric::L2, &params(256, 16), 2, None).unwrap();
    let default = IvfPqSearchParams::default();
    let plain = PointFilter::default();
    let r = recall(&ix, v, Metric::L2, &queries, &plain, default);
    let no_rerank = IvfPqSearchParams {
        rerank: Some(0),
        ..default
    };
    let r0 = recall(&ix, v, Metric::L2, &queries, &plain, no_rerank);
    let allowed: RoaringBitmap = (0..n as u32)
        .filter(|i| i.wrapping_mul(2_654_435_761) % 10 == 0)
        .collect();
    let tenth = PointFilter {
        allowed: Some(&allowed),
        deleted: None,
    };
    // 2,000 admitted points: the planner scans them exactly; the lists are tried too.
    assert!(ix.prefers_exact(allowed.len(), default));
    let rf = recall(&ix, v, Metric::L2, &queries, &tenth, default);
    let rf_lists = recall_of(&ix, v, Metric::L2, &queries, &tenth, default, true);
    let deleted: RoaringBitmap = (0..n as u32).filter(|i| i % 10 < 3).collect();
    let del = PointFilter {
        allowed: None,
        deleted: Some(&deleted),
    };
    let rd = recall(&ix, v, Metric::L2, &queries, &del, default);
    eprintln!(
        "recall@10 at nprobe {DEFAULT_NPROBE} of 256 lists: rerank {DEFAULT_RERANK} {r:.3}, \
         no rerank {r0:.3}, 10% filter {rf:.3} (lists only {rf_lists:.3}), 30% deleted {rd:.3}"
    );
    assert!(r >= 0.9, "recall@10 {r}");
    assert!(
        rf >= 0.99,
        "recall@10 with a 10% filter, scanned exactly {rf}"
    );
    assert!(
        rf_lists >= 0.9,
        "recall@10 with a 10% filter, lists only {rf_lists}"
    );
    assert!(rd >= 0.9, "recall@10 with 30% deleted {rd}");
    assert!(r0 < r, "re-ranking helps: {r0} vs {r}");
    // The trait and IndexKind take the index's defaults.
    let q = &queries[..dim];
    let via_trait = VectorIndexRead::search(&ix, v, Metric::L2, q, 10, &plain);
    assert_eq!(
        via_trait,
        ix.search_with(v, Metric::L2, q, 10, &plain, default)
    );
}

#[test]
fn recall_for_dot_and_cosine() {
    let (n, dim) = (10_000, 32);
    let data = clustered(n, dim, 5);
    let queries = clustered(100, dim, 6);
    let v = Vectors::new(&data, dim);
    for metric in [Metric::Dot, Metric::Cosine] {
        let ix = IvfPqIndex::build(v, metric, &params(128, 8), 2, None).unwrap();
        let sp = IvfPqSearchParams::default();
        let r = recall(&ix, v, metric, &queries, &PointFilter::default(), sp);
        eprintln!("{metric:?} recall@10: {r:.3}");
        assert!(r >= 0.9, "{metric:?} recall@10 {r}");
    }
}

#[test]
fn more_probes_and_more_reranking_raise_recall() {
    let (n, dim) = (10_000, 32);
    let data = clustered(n, dim, 7);
    let queries = clustered(100, dim, 8);
    let v = Vectors::new(&data, dim);
    let ix = IvfPqIndex::build(v, Metric::L2, &params(256, 8), 2, None).unwrap();
    let r = |nprobe, rerank| {
        let sp = IvfPqSearchParams {
            nprobe: Some(nprobe),
            rerank: Some(rerank),
        };
        recall(&ix, v, Metric::L2, &queries, &PointFilter::default(), sp)
    };
    let by_probe = [r(1, 50), r(4, 50), r(32, 50)];
    let by_rerank = [r(32, 0), r(32, 20), r(32, 200)];
    eprintln!("recall@10 by nprobe 1/4/32: {by_probe:?}; by rerank 0/20/200: {by_rerank:?}");
    assert!(
        by_probe[0] <= by_probe[1] && by_probe[1] <= by_probe[2],
        "{by_probe:?}"
    );
    assert!(
        by_rerank[0] <= by_rerank[1] && by_rerank[1] <= by_rerank[2],
        "{by_rerank:?}"
    );
}

#[test]
fn bad_parameters_are_refused() {
    let data = clustered(100, 8, 1);
    let v = Vectors::new(&data, 8);
    let build = |p: IvfPqParams| IvfPqIndex::build(v, Metric::L2, &p, 1, None);
    assert!(matches!(
        build(IvfPqParams {
            nbits: 4,
            ..params(4, 2)
        }),
        Err(IvfPqError::UnsupportedNbits { nbits: 4 })
    ));
    assert!(matches!(
        build(params(4, 3)),
        Err(IvfPqError::BadSubspaces { m: 3, dim: 8 })
    ));
    assert!(matches!(
        build(params(0, 2)),
        Err(IvfPqError::BadNlist { nlist: 0 })
    ));
    let mut nan = data.clone();
    nan[8 * 7 + 2] = f32::NAN;
    let p = IvfPqParams {
        train_sample: Some(100),
        ..params(4, 2)
    };
    assert!(matches!(
        IvfPqIndex::build(Vectors::new(&nan, 8), Metric::L2, &p, 1, None),
        Err(IvfPqError::NonFinite { offset: 7 })
    ));
    let cancel = std::sync::atomic::AtomicBool::new(true);
    assert!(matches!(
        IvfPqIndex::build(v, Metric::L2, &params(4, 2), 1, Some(&cancel)),
        Err(IvfPqError::Cancelled)
    ));
    let q = IvfPqQuantizer::train(v, Metric::L2, &params(4, 2), 1, None).unwrap();
    let other = clustered(10, 16, 1);
    assert!(matches!(
        q.add(Vectors::new(&other, 16), 1, None),
        Err(IvfPqError::WrongDimension {
            expected: 8,
            got: 16
        })
    ));
}

#[test]
fn one_seed_one_index_whatever_the_threads() {
    let data = clustered(3000, 16, 3);
    let v = Vectors::new(&data, 16);
    let p = params(40, 4);
    let a = IvfPqIndex::build(v, Metric::Cosine, &p, 1, None)
        .unwrap()
        .to_bytes();
    let b = IvfPqIndex::build(v, Metric::Cosine, &p, 1, None)
        .unwrap()
        .to_bytes();
    let c = IvfPqIndex::build(v, Metric::Cosine, &p, 3, None)
        .unwrap()
        .to_bytes();
    assert!(a == b, "one thread, one seed: the same bytes");
    assert!(a == c, "the thread count does not change the index");
}

#[test]
fn tiny_and_empty_indexes() {
    let empty =
        IvfPqIndex::build(Vectors::new(&[], 4), Metric::L2, &params(8, 2), 2, None).unwrap();
    assert!(empty.is_empty());
    let none = empty.search_with(
        Vectors::new(&[], 4),
        Metric::L2,
        &[0.0; 4],
        3,
        &PointFilter::default(),
        IvfPqSearchParams::default(),
    );
    assert!(none.is_empty());
    let back = IvfPqIndex::from_bytes(&empty.to_bytes(), 0).unwrap();
    assert!(back.is_empty());
    // Fewer points than lists: the lists shrink to the points.
    let data = [1.0, 0.0, 0.0, 1.0, 0.5, 0.5];
    let v = Vectors::new(&data, 2);
    let ix = IvfPqIndex::build(v, Metric::L2, &params(8, 1), 2, None).unwrap();
    assert_eq!(ix.nlist(), 3);
    let got = ix.search_with(
        v,
        Metric::L2,
        &[0.9, 0.1],
        5,
        &PointFilter::default(),
        IvfPqSearchParams::default(),
    );
    assert_eq!(got.iter().map(|n| n.key).collect::<Vec<_>>(), vec![0, 2, 1]);
}

#[test]
fn bytes_round_trip_and_damage_is_refused() {
    let (n, dim) = (1500, 16);
    let data = clustered(n, dim, 9);
    let v = Vectors::new(&data, dim);
    let ix = IvfPqIndex::build(v, Metric::L2, &params(20, 4), 2, None).unwrap();
    let raw = ix.to_bytes();
    let back = IvfPqIndex::from_bytes(&raw, n).unwrap();
    assert!(back.to_bytes() == raw);
    assert_eq!(back.memory_bytes(), ix.memory_bytes());
    let sp = IvfPqSearchParams {
        nprobe: Some(5),
        rerank: Some(0),
    };
    for q in clustered(20, dim, 10).chunks_exact(dim) {
        let f = PointFilter::default();
        assert_eq!(
            back.search_with(v, Metric::L2, q, 10, &f, sp),
            ix.search_with(v, Metric::L2, q, 10, &f, sp)
        );
    }
    assert!(
        IvfPqIndex::from_bytes(&raw, n + 1).is_err(),
        "another segment size"
    );
    // Every truncation is refused.
    for cut in 0..raw.len() {
        assert!(
            IvfPqIndex::from_bytes(&raw[..cut], n).is_err(),
            "cut at {cut}"
        );
    }
    // Flipped bytes anywhere: an error or a usable index, never a panic.
    let header_and_sample = (0..64).chain((64..raw.len()).step_by(37));
    for at in header_and_sample {
        for bit in [0x01u8, 0x80] {
            let mut bad = raw.clone();
            bad[at] ^= bit;
            if let Ok(ix) = IvfPqIndex::from_bytes(&bad, n) {
                let q = &data[..dim];
                ix.search_with(v, Metric::L2, q, 5, &PointFilter::default(), sp);
            }
        }
    }
    // Targeted damage.
    let nlist = ix.nlist();
    let ids_at = 28 + nlist * dim * 4 + 256 * dim * 4 + (nlist + 1) * 4;
    let mut bad = raw.clone();
    bad[ids_at..ids_at + 4].copy_from_slice(&(n as u32 + 3).to_le_bytes());
    assert!(
        IvfPqIndex::from_bytes(&bad, n).is_err(),
        "id beyond the segment"
    );
    let mut bad = raw.clone();
    let second = bad[ids_at + 4..ids_at + 8].to_vec();
    bad[ids_at..ids_at + 4].copy_from_slice(&second);
    assert!(IvfPqIndex::from_bytes(&bad, n).is_err(), "duplicate id");
    let mut bad = raw.clone();
    bad[28..32].copy_from_slice(&f32::NAN.to_le_bytes());
    assert!(IvfPqIndex::from_bytes(&bad, n).is_err(), "NaN centroid");
    let mut bad = raw.clone();
    let offsets_at = ids_at - (nlist + 1) * 4;
    bad[offsets_at + 4..offsets_at + 8].copy_from_slice(&(n as u32 + 1).to_le_bytes());
    assert!(
        IvfPqIndex::from_bytes(&bad, n).is_err(),
        "offset beyond the entries"
    );
    let mut bad = raw.clone();
    bad[9] = 4;
    assert!(matches!(
        IvfPqIndex::from_bytes(&bad, n),
        Err(IvfPqError::UnsupportedNbits { nbits: 4 })
    ));
}

#[test]
fn index_kind_dispatches_to_ivfpq() {
    let data = clustered(2000, 16, 4);
    let v = Vectors::new(&data, 16);
    let ix = IvfPqIndex::build(v, Metric::L2, &params(16, 4), 2, None).unwrap();
    let mem = ix.memory_bytes();
    assert!(ix.bytes_per_vector() > 8.0);
    let kind = crate::IndexKind::IvfPq(Box::new(ix));
    assert_eq!(kind.memory_bytes(), mem);
    let q = &data[..16];
    let f = PointFilter::default();
    let got = kind.search(v, Metric::L2, q, 3, &f, crate::SearchParams::default());
    assert_eq!(
        got[0].key, 0,
        "a stored vector finds itself after re-ranking"
    );
    let exact = kind.search(
        v,
        Metric::L2,
        q,
        3,
        &f,
        crate::SearchParams {
            exact: true,
            ..Default::default()
        },
    );
    assert_eq!(got, exact);
}

#[test]
fn both_ways_of_choosing_lists_agree_with_a_full_sort() {
    let data = clustered(4000, 16, 14);
    let v = Vectors::new(&data, 16);
    for metric in [Metric::L2, Metric::Dot, Metric::Cosine] {
        let ix = IvfPqIndex::build(v, metric, &params(64, 4), 2, None).unwrap();
        for q in clustered(3, 16, 15).chunks_exact(16) {
            let mut s = search::Scratch::default();
            ix.probe(&mut s, q, 64);
            let all = s.probe.clone();
            assert!(all.windows(2).all(|w| w[0].0 <= w[1].0), "sorted");
            // 1..=8 take the short sorted buffer, the rest a selection.
            for nprobe in [1, 2, 5, 8, 9, 20, 63] {
                ix.probe(&mut s, q, nprobe);
                assert_eq!(s.probe, all[..nprobe], "{metric:?} nprobe {nprobe}");
            }
        }
    }
}
