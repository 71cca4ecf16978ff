//! Datasets for benchmarks: seeded clustered vectors of low intrinsic dimension (like real
//! embeddings; generator in `quiver_index::synthetic`), written as `.fvecs`, and exact ground
//! truth (top-100 ids per query by l2, computed on every core) written as `.ivecs`.

use quiver_index::{Metric, PointFilter, Vectors};
use std::io::Write;
use std::path::Path;

/// `n` clustered vectors of dimension `dim` from `seed` (100 centres, 16-d latent offsets; see
/// `quiver_index::synthetic`).
pub fn clustered(n: usize, dim: usize, seed: u64) -> Vec<f32> {
    quiver_index::synthetic::clustered(n, dim, 100, 16, seed)
}

/// Exact top-`k` ids of each query by `metric`, on every core.
pub fn ground_truth(
    base: &[f32],
    queries: &[f32],
    dim: usize,
    k: usize,
    metric: Metric,
) -> Vec<Vec<u32>> {
    let v = Vectors::new(base, dim);
    let qs: Vec<&[f32]> = queries.chunks_exact(dim).collect();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per = qs.len().div_ceil(threads);
    let mut out = vec![Vec::new(); qs.len()];
    std::thread::scope(|s| {
        for (chunk, slot) in qs.chunks(per.max(1)).zip(out.chunks_mut(per.max(1))) {
            s.spawn(move || {
                for (q, o) in chunk.iter().zip(slot.iter_mut()) {
                    *o = quiver_index::flat::exact_search(v, metric, q, k, &PointFilter::default())
                        .iter()
                        .map(|n| n.key)
                        .collect();
                }
            });
        }
    });
    out
}

/// Writes ids as `.ivecs` (per row: i32 count, then the ids as i32).
pub fn write_ivecs(path: &Path, rows: &[Vec<u32>]) -> std::io::Result<()> {
    let mut w = std::io::BufWriter::new(std::fs::File::create(path)?);
    for r in rows {
        w.write_all(&(r.len() as i32).to_le_bytes())?;
        for x in r {
            w.write_all(&(*x as i32).to_le_bytes())?;
        }
    }
    w.flush()
}

/// Reads `.ivecs`.
pub fn read_ivecs(path: &Path) -> std::io::Result<Vec<Vec<u32>>> {
    let raw = std::fs::read(path)?;
    let mut out = Vec::new();
    let mut pos = 0;
    while pos + 4 <= raw.len() {
        let n = i32::from_le_bytes(raw[pos..pos + 4].try_into().expect("4 bytes")) as usize;
        pos += 4;
        let row = raw.get(pos..pos + 4 * n).ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, "truncated .ivecs")
        })?;
        out.push(
            row.chunks_exact(4)
                .map(|c| i32::from_le_bytes(c.try_into().expect("4 bytes")) as u32)
                .collect(),
        );
        pos += 4 * n;
    }
    Ok(out)
}

/// Recall@k of `got` against the first `k` ids of `truth`.
pub fn recall_at(k: usize, got: &[u32], truth: &[u32]) -> f64 {
    let t = &truth[..k.min(truth.len())];
    if t.is_empty() {
        return 1.0;
    }
    got.iter().take(k).filter(|g| t.contains(g)).count() as f64 / t.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recall_by_hand() {
        assert_eq!(recall_at(3, &[1, 2, 3], &[3, 2, 1, 9]), 1.0);
        assert_eq!(recall_at(4, &[1, 7, 8, 9], &[1, 2, 3, 4]), 0.25);
        assert_eq!(recall_at(2, &[5], &[5, 6]), 0.5);
    }

    #[test]
    fn ground_truth_matches_a_sort_and_ivecs_round_trip() {
        let base = clustered(500, 8, 1);
        let q = clustered(7, 8, 2);
        let gt = ground_truth(&base, &q, 8, 5, Metric::L2);
        for (qi, row) in gt.iter().enumerate() {
            let qv = &q[qi * 8..qi * 8 + 8];
            let mut all: Vec<(f32, u32)> = (0..500u32)
                .map(|i| {
                    (
                        Metric::L2.distance_scalar(qv, &base[i as usize * 8..i as usize * 8 + 8]),
                        i,
                    )
                })
                .collect();
            all.sort_by(|a, b| a.0.total_cmp(&b.0));
            assert_eq!(row, &all[..5].iter().map(|x| x.1).collect::<Vec<_>>());
        }
        let p = std::env::temp_dir().join(format!("gt-{}.ivecs", std::process::id()));
        write_ivecs(&p, &gt).unwrap();
        assert_eq!(read_ivecs(&p).unwrap(), gt);
        std::fs::remove_file(p).unwrap();
    }
}

/// Figures of one filter share of `filter_sweep`.
pub struct SweepPoint<'a> {
    /// The share of points the filter is set to keep.
    pub share: f64,
    /// The admitted ids.
    pub allowed: &'a quiver_index::RoaringBitmap,
    /// Exact scans of the bitmap per second.
    pub exact_qps: f64,
    /// Index searches under the filter per second.
    pub index_qps: f64,
    /// Recall@10 of the index search against the exact scan.
    pub recall: f64,
}

/// For filters keeping a share of points (a fixed pseudo-random subset per share), times an
/// exact scan of the filter's bitmap and `search` under the filter on 200 queries, and prints
/// what `report` makes of each share: where the two cross is a planner's switch point.
pub fn filter_sweep(
    v: Vectors<'_>,
    qs: &[f32],
    dim: usize,
    search: &dyn Fn(&[f32], &PointFilter<'_>) -> Vec<u32>,
    report: &dyn Fn(&SweepPoint<'_>) -> serde_json::Value,
) {
    use std::time::Instant;
    let n = v.len() as u32;
    let queries: Vec<&[f32]> = qs.chunks_exact(dim).take(200).collect();
    let nq = queries.len() as f64;
    for per_mille in [1u32, 2, 5, 10, 20, 50, 100, 200, 500] {
        // Multiplicative hashing of the id picks the subset.
        let allowed: quiver_index::RoaringBitmap = (0..n)
            .filter(|i| i.wrapping_mul(2_654_435_761) % 1000 < per_mille)
            .collect();
        let f = PointFilter {
            allowed: Some(&allowed),
            deleted: None,
        };
        let t = Instant::now();
        let exact: Vec<Vec<u32>> = queries
            .iter()
            .map(|q| {
                quiver_index::flat::exact_search(v, Metric::L2, q, 10, &f)
                    .iter()
                    .map(|n| n.key)
                    .collect()
            })
            .collect();
        let exact_s = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let got: Vec<Vec<u32>> = queries.iter().map(|q| search(q, &f)).collect();
        let index_s = t.elapsed().as_secs_f64();
        let recall = got
            .iter()
            .zip(&exact)
            .map(|(a, b)| recall_at(10, a, b))
            .sum::<f64>()
            / nq;
        let point = SweepPoint {
            share: per_mille as f64 / 1000.0,
            allowed: &allowed,
            exact_qps: nq / exact_s,
            index_qps: nq / index_s,
            recall,
        };
        println!("{}", report(&point));
    }
}
