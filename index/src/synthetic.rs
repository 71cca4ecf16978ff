//! Seeded synthetic vectors for tests and benchmarks: clusters of low intrinsic dimension, like
//! real embeddings (uniform noise in many dimensions is not: there every point is about as far
//! from every other, and no index can do well).
//!
//! Each point is one of `centres` centres drawn from U(-2, 2)^dim, plus a `latent`-d offset
//! z ~ U(-1, 1)^latent mapped by a fixed random matrix (dim × latent, entries U(-0.5, 0.5)),
//! plus noise U(-0.05, 0.05) per coordinate. Centres and matrix come from a fixed seed, so sets
//! made with different `seed`s (a base set and its queries) share their clusters.

use rand::{Rng, SeedableRng, rngs::StdRng};

/// `n` clustered vectors, row-major `(n, dim)`.
pub fn clustered(n: usize, dim: usize, centres: usize, latent: usize, seed: u64) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(0xC1);
    let c: Vec<f32> = (0..centres * dim)
        .map(|_| rng.random_range(-2.0..2.0))
        .collect();
    let basis: Vec<f32> = (0..latent * dim)
        .map(|_| rng.random_range(-0.5..0.5))
        .collect();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = Vec::with_capacity(n * dim);
    let mut z = vec![0f32; latent];
    for _ in 0..n {
        let at = rng.random_range(0..centres) * dim;
        z.iter_mut().for_each(|x| *x = rng.random_range(-1.0..1.0));
        for d in 0..dim {
            let off: f32 = (0..latent).map(|j| basis[j * dim + d] * z[j]).sum();
            out.push(c[at + d] + off + rng.random_range(-0.05..0.05));
        }
    }
    out
}
