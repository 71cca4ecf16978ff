//! Parallel HNSW construction (Malkov & Yashunin, 2018): every node's neighbour lists sit
//! behind their own lock, threads take nodes from a shared counter and insert them, and the
//! result is frozen into flat arrays (`graph.rs`). With one thread the build is deterministic
//! for a given seed.

use super::graph::HnswGraph;
use super::visited::VisitedPool;
use super::{HnswParams, OrdF32};
use crate::Vectors;
use crate::distance::Metric;
use std::cmp::Reverse;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Mutex, RwLock};

/// Neighbour lists while the graph is built. Level 0, read on every step of every search, is
/// one flat table of rows `[count | LOCK bit, ids...]` (stride `2m + 1`), each row locked by a
/// bit of its own count word: one cache line or two per read, no pointer to chase. The few
/// upper-level lists sit behind ordinary locks.
struct Links {
    stride: usize,
    level0: Vec<AtomicU32>,
    /// Per node, its lists on levels 1..=level (empty for most nodes).
    upper: Vec<Vec<Mutex<Vec<u32>>>>,
}

const LOCK: u32 = 1 << 31;

impl Links {
    fn new(levels: &[u8], m: usize) -> Links {
        let stride = 2 * m + 1;
        Links {
            stride,
            level0: (0..levels.len() * stride)
                .map(|_| AtomicU32::new(0))
                .collect(),
            upper: levels
                .iter()
                .map(|&l| {
                    (0..l)
                        .map(|_| Mutex::new(Vec::with_capacity(m + 1)))
                        .collect()
                })
                .collect(),
        }
    }

    /// Spins until the row's lock bit is ours; returns the row's start and its count.
    fn lock0(&self, node: u32) -> (usize, usize) {
        let base = node as usize * self.stride;
        let head = &self.level0[base];
        loop {
            let c = head.load(Ordering::Relaxed);
            if c & LOCK == 0
                && head
                    .compare_exchange_weak(c, c | LOCK, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                return (base, c as usize);
            }
            std::hint::spin_loop();
        }
    }

    /// Writes `ids` into a locked row and releases it.
    fn store0(&self, base: usize, ids: &[u32]) {
        assert!(ids.len() < self.stride, "a level-0 list is over its cap");
        for (k, id) in ids.iter().enumerate() {
            self.level0[base + 1 + k].store(*id, Ordering::Relaxed);
        }
        self.level0[base].store(ids.len() as u32, Ordering::Release);
    }

    /// The node's list on `level` into `buf` (cleared first).
    fn read(&self, node: u32, level: usize, buf: &mut Vec<u32>) {
        buf.clear();
        if level == 0 {
            let (base, n) = self.lock0(node);
            buf.extend((1..=n).map(|k| self.level0[base + k].load(Ordering::Relaxed)));
            self.level0[base].store(n as u32, Ordering::Release);
        } else if let Some(l) = self.upper[node as usize].get(level - 1) {
            buf.extend_from_slice(&l.lock().expect("link lock"));
        }
    }

    /// Replaces the node's list on `level`.
    fn set(&self, node: u32, level: usize, ids: &[u32]) {
        if level == 0 {
            let (base, _) = self.lock0(node);
            self.store0(base, ids);
        } else {
            *self.upper[node as usize][level - 1]
                .lock()
                .expect("link lock") = ids.to_vec();
        }
    }

    /// Runs `f` on the node's list on `level` with the list locked.
    fn update(
        &self,
        node: u32,
        level: usize,
        scratch: &mut Vec<u32>,
        f: impl FnOnce(&mut Vec<u32>),
    ) {
        if level == 0 {
            let (base, n) = self.lock0(node);
            scratch.clear();
            scratch.extend((1..=n).map(|k| self.level0[base + k].load(Ordering::Relaxed)));
            f(scratch);
            self.store0(base, scratch);
        } else {
            f(&mut self.upper[node as usize][level - 1]
                .lock()
                .expect("link lock"));
        }
    }
}

struct Builder<'a> {
    vectors: Vectors<'a>,
    metric: Metric,
    params: HnswParams,
    links: Links,
    n: usize,
    /// (entry point, its level).
    entry: RwLock<(u32, u8)>,
    pool: VisitedPool,
}

/// Level of each node: `floor(-ln(U) · mL)` with `mL = 1 / ln(m)` ("mL" in the paper), from a
/// seeded generator so that builds repeat.
fn levels(n: usize, m: usize, seed: u64) -> Vec<u8> {
    let ml = 1.0 / (m.max(2) as f64).ln();
    let mut state = seed ^ 0x9E37_79B9_7F4A_7C15;
    (0..n)
        .map(|_| {
            // splitmix64
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            let u = ((z >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
            ((-u.ln() * ml).floor() as u32).min(15) as u8
        })
        .collect()
}

impl Builder<'_> {
    #[inline]
    fn dist(&self, a: u32, b: u32) -> f32 {
        self.metric
            .distance_inline(self.vectors.get(a), self.vectors.get(b))
    }

    fn cap(&self, level: usize) -> usize {
        if level == 0 {
            self.params.m * 2
        } else {
            self.params.m
        }
    }

    /// Beam search on one level from `entry`; returns up to `ef` nodes, closest first.
    fn search_layer(
        &self,
        q: u32,
        entry: (f32, u32),
        ef: usize,
        level: usize,
        buf: &mut Vec<u32>,
    ) -> Vec<(f32, u32)> {
        let mut scratch = self.pool.take(self.n);
        let super::visited::Scratch {
            visited,
            candidates,
            results,
        } = &mut scratch;
        visited.insert(entry.1);
        candidates.push(Reverse((OrdF32(entry.0), entry.1)));
        results.push((OrdF32(entry.0), entry.1));
        while let Some(Reverse((OrdF32(d), c))) = candidates.pop() {
            if results.len() >= ef && d > results.peek().map_or(f32::INFINITY, |r| r.0.0) {
                break;
            }
            self.links.read(c, level, buf);
            // Start loading every unvisited neighbour's vector before scoring any.
            for &nb in buf.iter() {
                if !visited.contains(nb) {
                    super::graph::prefetch(self.vectors.get(nb));
                }
            }
            for &nb in buf.iter() {
                if !visited.insert(nb) {
                    continue;
                }
                let dn = self.dist(q, nb);
                if results.len() < ef || dn < results.peek().map_or(f32::INFINITY, |r| r.0.0) {
                    candidates.push(Reverse((OrdF32(dn), nb)));
                    results.push((OrdF32(dn), nb));
                    if results.len() > ef {
                        results.pop();
                    }
                }
            }
        }
        let mut out: Vec<(f32, u32)> = results.drain().map(|(d, i)| (d.0, i)).collect();
        self.pool.give_back(scratch);
        out.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        out
    }

    /// The neighbour-selection heuristic (Algorithm 4 of the paper): take candidates closest
    /// first, keeping one only if it is closer to the base than to every one kept so far.
    fn select(&self, candidates: &[(f32, u32)], m: usize) -> Vec<u32> {
        if candidates.len() <= m {
            // Room for all of them: pruning would only throw links away.
            return candidates.iter().map(|c| c.1).collect();
        }
        let mut kept: Vec<u32> = Vec::with_capacity(m);
        for &(d, c) in candidates {
            if kept.len() >= m {
                break;
            }
            if kept.iter().all(|&k| self.dist(c, k) > d) {
                kept.push(c);
            }
        }
        kept
    }

    fn insert(&self, q: u32, level: u8, buf: &mut Vec<u32>) {
        let (mut ep, top) = *self.entry.read().expect("entry lock");
        let mut ep_d = self.dist(q, ep);
        // Greedy descent through the levels above the node's own.
        let mut lev = top as usize;
        while lev > level as usize {
            let mut changed = true;
            while changed {
                changed = false;
                self.links.read(ep, lev, buf);
                for &nb in buf.iter() {
                    let d = self.dist(q, nb);
                    if d < ep_d {
                        ep_d = d;
                        ep = nb;
                        changed = true;
                    }
                }
            }
            lev -= 1;
        }
        // First every level's neighbours, then the node's own lists, and only then the links
        // that make it reachable: a node other threads can reach always has all its lists, and
        // no back-link another thread adds to it can be overwritten.
        let mut plan: Vec<(usize, Vec<u32>)> = Vec::with_capacity(level as usize + 1);
        for lev in (0..=(level as usize).min(top as usize)).rev() {
            let found = self.search_layer(q, (ep_d, ep), self.params.ef_construction, lev, buf);
            plan.push((lev, self.select(&found, self.params.m.min(self.cap(lev)))));
            if let Some(&(d, c)) = found.first() {
                ep = c;
                ep_d = d;
            }
        }
        for (lev, chosen) in &plan {
            self.links.set(q, *lev, chosen);
        }
        for (lev, chosen) in &plan {
            let cap = self.cap(*lev);
            for &nb in chosen {
                self.links.update(nb, *lev, buf, |l| {
                    if l.contains(&q) {
                        return;
                    }
                    l.push(q);
                    if l.len() > cap {
                        let mut scored: Vec<(f32, u32)> =
                            l.iter().map(|&x| (self.dist(nb, x), x)).collect();
                        scored.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                        *l = self.select(&scored, cap);
                    }
                });
            }
        }
        if level > top {
            let mut e = self.entry.write().expect("entry lock");
            if level > e.1 {
                *e = (q, level);
            }
        }
    }
}

/// Builds the graph of `vectors` on `threads` threads (at least one).
pub fn build(
    vectors: Vectors<'_>,
    metric: Metric,
    params: HnswParams,
    threads: usize,
) -> HnswGraph {
    let n = vectors.len();
    let lv = levels(n, params.m, params.seed);
    if n == 0 {
        return HnswGraph::freeze(params.m, 0, 0, &lv, |_, _| Vec::new());
    }
    let b = Builder {
        vectors,
        metric,
        params,
        links: Links::new(&lv, params.m),
        n,
        entry: RwLock::new((0, lv[0])),
        pool: VisitedPool::default(),
    };
    let next = AtomicUsize::new(1);
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| {
                let mut buf = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    b.insert(i as u32, lv[i], &mut buf);
                }
            });
        }
    });
    let (entry, top) = *b.entry.read().expect("entry lock");
    HnswGraph::freeze(params.m, entry, top, &lv, |node, level| {
        let mut out = Vec::new();
        b.links.read(node as u32, level, &mut out);
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_follow_the_geometric_law() {
        let lv = levels(100_000, 16, 1);
        let above0 = lv.iter().filter(|&&l| l >= 1).count() as f64 / 1e5;
        // P(level ≥ 1) = 1/m.
        assert!((above0 - 1.0 / 16.0).abs() < 0.01, "{above0}");
        assert_eq!(lv, levels(100_000, 16, 1), "seeded");
    }
}
