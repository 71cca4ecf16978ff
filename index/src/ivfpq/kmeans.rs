//! k-means (Lloyd's algorithm) for the coarse quantizer and the PQ sub-quantizers.
//!
//! ```text
//! k-means++ seeds on a subsample ─► repeat up to `max_iters`:
//!     assign every point on all threads (kernels::Centroids::nearest)
//!     stop when no point moved or the objective fell by less than `TOLERANCE`
//!     new centroid = mean of its points (clusters split across threads, f64 sums)
//!     empty cluster ─► split the largest: the empty one moves to a random member of it
//! ```
//!
//! The result does not depend on the number of threads: assignments are per point, and every
//! sum is taken in a fixed order. A given seed gives the same centroids every time on a given
//! instruction set (`kernels::Isa`; their roundings can settle a near tie differently).

use super::kernels::Centroids;
use rand::{Rng, SeedableRng, rngs::StdRng};
use std::sync::atomic::{AtomicBool, Ordering};

/// Relative fall of the objective below which the iterations stop.
const TOLERANCE: f64 = 1e-4;
/// k-means++ seeds are drawn from at most this many points per centroid: the seeding is
/// sequential (each draw needs the distances to every earlier seed), so it runs on a
/// subsample, and the Lloyd iterations that follow see every point.
const SEED_POINTS_PER_CENTROID: usize = 8;
/// Points assigned per task.
const CHUNK: usize = 256;

/// What a k-means run produced.
#[derive(Debug)]
pub(crate) struct KMeans {
    /// `(k, dim)`.
    pub centroids: Vec<f32>,
    /// Lloyd iterations run.
    pub iterations: usize,
    /// Mean squared distance of a point to its centroid at the last assignment.
    pub mse: f64,
}

/// Clusters the rows of `data` `(n, dim)` into `k` centroids. With fewer than `k` points every
/// point becomes a centroid and the rest repeat them. `None` when `cancel` was raised.
pub(crate) fn kmeans(
    data: &[f32],
    dim: usize,
    k: usize,
    max_iters: usize,
    seed: u64,
    threads: usize,
    cancel: Option<&AtomicBool>,
) -> Option<KMeans> {
    let n = data.len() / dim;
    assert!(k > 0 && dim > 0);
    if n <= k {
        let centroids = (0..k)
            .flat_map(|c| {
                if n == 0 {
                    vec![0.0; dim]
                } else {
                    data[(c % n) * dim..(c % n + 1) * dim].to_vec()
                }
            })
            .collect();
        return Some(KMeans {
            centroids,
            iterations: 0,
            mse: 0.0,
        });
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let mut centroids = plus_plus(data, dim, k, &mut rng);
    let mut assign = vec![u32::MAX; n];
    let mut dist = vec![0f32; n];
    let mut prev_obj = f64::INFINITY;
    let (mut iterations, mut mse) = (0, 0.0);
    for _ in 0..max_iters.max(1) {
        if cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
            return None;
        }
        let old = assign.clone();
        assign_all(
            &Centroids::new(centroids, dim),
            data,
            &mut assign,
            &mut dist,
            threads,
        );
        iterations += 1;
        let obj: f64 = dist.iter().map(|&d| d as f64).sum();
        mse = obj / n as f64;
        let moved = old.iter().zip(&assign).filter(|(a, b)| a != b).count();
        centroids = update(data, dim, k, &assign, threads);
        split_empty(&mut centroids, data, dim, k, &assign, &mut rng);
        if moved == 0 || (prev_obj.is_finite() && prev_obj - obj <= TOLERANCE * prev_obj) {
            break;
        }
        prev_obj = obj;
    }
    Some(KMeans {
        centroids,
        iterations,
        mse,
    })
}

/// Nearest centroid and squared distance of every row of `data`, on `threads` threads.
pub(crate) fn assign_all(
    cs: &Centroids,
    data: &[f32],
    assign: &mut [u32],
    dist: &mut [f32],
    threads: usize,
) {
    let dim = cs.dim();
    let n = data.len() / dim;
    let per = n.div_ceil(threads.max(1)).div_ceil(CHUNK) * CHUNK;
    if threads <= 1 || n <= CHUNK {
        for ((rows, a), d) in data
            .chunks(CHUNK * dim)
            .zip(assign.chunks_mut(CHUNK))
            .zip(dist.chunks_mut(CHUNK))
        {
            cs.nearest(rows, a, d);
        }
        return;
    }
    std::thread::scope(|s| {
        for ((rows, a), d) in data
            .chunks(per * dim)
            .zip(assign.chunks_mut(per))
            .zip(dist.chunks_mut(per))
        {
            s.spawn(move || {
                for ((r, a), d) in rows
                    .chunks(CHUNK * dim)
                    .zip(a.chunks_mut(CHUNK))
                    .zip(d.chunks_mut(CHUNK))
                {
                    cs.nearest(r, a, d);
                }
            });
        }
    });
}

/// k-means++ (Arthur & Vassilvitskii, 2007) on a subsample: the first seed uniformly, each next
/// one with probability proportional to its squared distance to the nearest seed so far.
fn plus_plus(data: &[f32], dim: usize, k: usize, rng: &mut StdRng) -> Vec<f32> {
    let n = data.len() / dim;
    let s = n.min(k * SEED_POINTS_PER_CENTROID);
    // A uniform subsample without replacement (partial Fisher-Yates over the row numbers),
    // copied into one block: every draw reads all of it, and scattered rows of a large set
    // made each read a cache miss.
    let mut order: Vec<u32> = (0..n as u32).collect();
    for i in 0..s {
        let j = rng.random_range(i..n);
        order.swap(i, j);
    }
    let mut rows = Vec::with_capacity(s * dim);
    for &r in &order[..s] {
        rows.extend_from_slice(&data[r as usize * dim..(r as usize + 1) * dim]);
    }
    // The sample as "centroids": one inner-product kernel call gives ⟨x, c⟩ for every sample
    // point x against a new seed c, and ‖x - c‖² = ‖x‖² + ‖c‖² - 2⟨x, c⟩.
    let sample = Centroids::new(rows, dim);
    let mut dots = vec![0f32; s.div_ceil(16) * 16];
    let mut d2 = vec![f32::INFINITY; s];
    let mut centroids = Vec::with_capacity(k * dim);
    let mut pick = rng.random_range(0..s);
    loop {
        let c = sample.row(pick);
        centroids.extend_from_slice(c);
        if centroids.len() == k * dim {
            return centroids;
        }
        let cc: f32 = c.iter().map(|x| x * x).sum();
        sample.dots(c, &mut dots);
        let mut total = 0f64;
        for (i, (d, dot)) in d2.iter_mut().zip(&dots).enumerate() {
            *d = d.min((sample.norm(i) + cc - 2.0 * dot).max(0.0));
            total += *d as f64;
        }
        pick = if total > 0.0 {
            let mut r = rng.random_range(0.0..total);
            d2.iter()
                .position(|&d| {
                    r -= d as f64;
                    r < 0.0
                })
                .unwrap_or(s - 1)
        } else {
            rng.random_range(0..s)
        };
    }
}

/// Means of the clusters of `assign`, in f64, on `threads` threads. Each thread owns a range
/// of clusters and streams through the points in order, summing those of its clusters, so
/// every mean is summed in point order whatever the thread count, and rows are read forwards.
/// Empty clusters get zeros.
fn update(data: &[f32], dim: usize, k: usize, assign: &[u32], threads: usize) -> Vec<f32> {
    let mut out = vec![0f32; k * dim];
    let per = k.div_ceil(threads.max(1));
    std::thread::scope(|s| {
        for (t, rows) in out.chunks_mut(per * dim).enumerate() {
            s.spawn(move || {
                let (lo, len) = (t * per, rows.len() / dim);
                let mut sum = vec![0f64; len * dim];
                let mut count = vec![0usize; len];
                for (x, &a) in data.chunks_exact(dim).zip(assign) {
                    let c = (a as usize).wrapping_sub(lo);
                    if c >= len {
                        continue;
                    }
                    count[c] += 1;
                    for (s, v) in sum[c * dim..(c + 1) * dim].iter_mut().zip(x) {
                        *s += *v as f64;
                    }
                }
                for ((row, sum), &n) in rows
                    .chunks_exact_mut(dim)
                    .zip(sum.chunks_exact(dim))
                    .zip(&count)
                {
                    if n > 0 {
                        for (o, s) in row.iter_mut().zip(sum) {
                            *o = (*s / n as f64) as f32;
                        }
                    }
                }
            });
        }
    });
    out
}

/// Gives every empty cluster a centroid by splitting the largest cluster: the empty centroid
/// moves to a random member of it, and the next assignment divides the members between the two.
fn split_empty(
    centroids: &mut [f32],
    data: &[f32],
    dim: usize,
    k: usize,
    assign: &[u32],
    rng: &mut StdRng,
) {
    let mut count = vec![0usize; k];
    for &a in assign {
        count[a as usize] += 1;
    }
    for e in 0..k {
        if count[e] > 0 {
            continue;
        }
        let (big, &size) = count
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(&a.0)))
            .expect("k > 0");
        if size < 2 {
            return;
        }
        // The `pick`-th member of `big`, by point order.
        let pick = rng.random_range(0..size);
        let member = assign
            .iter()
            .enumerate()
            .filter(|(_, a)| **a as usize == big)
            .nth(pick)
            .map(|(i, _)| i)
            .expect("the cluster has `size` members");
        centroids[e * dim..(e + 1) * dim].copy_from_slice(&data[member * dim..(member + 1) * dim]);
        count[e] = size / 2;
        count[big] = size - size / 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `per` points around each of `k` centres far apart: (n, dim) data and the true labels.
    fn blobs(k: usize, per: usize, dim: usize, seed: u64) -> (Vec<f32>, Vec<usize>) {
        let mut rng = StdRng::seed_from_u64(seed);
        let centres: Vec<f32> = (0..k * dim)
            .map(|_| rng.random_range(-50.0..50.0))
            .collect();
        let (mut data, mut labels) = (Vec::new(), Vec::new());
        for i in 0..k * per {
            let c = i % k;
            labels.push(c);
            data.extend((0..dim).map(|d| centres[c * dim + d] + rng.random_range(-1.0..1.0)));
        }
        (data, labels)
    }

    #[test]
    fn recovers_well_separated_clusters() {
        let (k, dim) = (12, 8);
        let (data, labels) = blobs(k, 200, dim, 3);
        let km = kmeans(&data, dim, k, 25, 7, 2, None).unwrap();
        let cs = Centroids::new(km.centroids, dim);
        let n = labels.len();
        let (mut got, mut d) = (vec![0u32; n], vec![0f32; n]);
        assign_all(&cs, &data, &mut got, &mut d, 2);
        // The found clusters are the true ones up to a renaming: one-to-one both ways.
        let mut map = vec![None; k];
        for (t, g) in labels.iter().zip(&got) {
            match map[*t] {
                None => map[*t] = Some(*g),
                Some(m) => assert_eq!(m, *g, "a true cluster was split"),
            }
        }
        let mut seen: Vec<u32> = map.iter().map(|m| m.unwrap()).collect();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), k, "two true clusters were merged");
        // Uniform noise of ±1 in 8 coordinates: a mean squared distance of 8 / 3 to the centre.
        assert!(
            km.mse < 3.0,
            "{} after {} iterations",
            km.mse,
            km.iterations
        );
    }

    #[test]
    fn same_seed_same_centroids_whatever_the_threads() {
        let (data, _) = blobs(20, 60, 5, 4);
        let a = kmeans(&data, 5, 16, 10, 1, 1, None).unwrap();
        let b = kmeans(&data, 5, 16, 10, 1, 1, None).unwrap();
        let c = kmeans(&data, 5, 16, 10, 1, 3, None).unwrap();
        assert_eq!(a.centroids, b.centroids);
        assert_eq!(a.centroids, c.centroids);
        let d = kmeans(&data, 5, 16, 10, 2, 1, None).unwrap();
        assert_ne!(a.centroids, d.centroids, "another seed, other seeds");
    }

    #[test]
    fn empty_clusters_are_split_and_few_points_are_copied() {
        // 40 points on only 3 distinct positions and 8 clusters: most would stay empty.
        let data: Vec<f32> = (0..40).flat_map(|i| [(i % 3) as f32, 0.0]).collect();
        let km = kmeans(&data, 2, 8, 10, 5, 2, None).unwrap();
        assert!(km.centroids.iter().all(|x| x.is_finite()));
        assert!(km.mse < 1e-9);
        let few = kmeans(&data[..6], 2, 5, 10, 5, 2, None).unwrap();
        assert_eq!(few.centroids.len(), 10);
        assert_eq!(&few.centroids[6..10], &data[..4]);
        let none = kmeans(&[], 3, 4, 10, 5, 2, None).unwrap();
        assert_eq!(none.centroids, vec![0.0; 12]);
        let cancel = AtomicBool::new(true);
        assert!(kmeans(&data, 2, 4, 10, 5, 2, Some(&cancel)).is_none());
    }
}
