//! Search: probe, tabulate, scan, filter, re-rank. Per-query buffers come from a pool, so a
//! warm search allocates only its top-k heap and its answer.
//!
//! ```text
//! query ─► (cosine: q / ‖q‖) ─► ⟨q, c⟩ for every centroid ─► the nprobe best lists, best first
//!       ─► table of -2⟨q_j, r_jk⟩ (l2) or -⟨q_j, r_jk⟩ (dot, cosine), m × 256, once
//!       ─► per list: coarse distance (+ each entry's norm term, l2) + table entries of its
//!          codes ─► a distance per entry ─► entries under the heap's bound
//!          that the filter admits enter the heap of max(k, rerank)
//!       ─► rerank > 0: exact distances of the heap's entries from the full vectors ─► top k
//! ```

use super::IvfPqIndex;
use super::IvfPqSearchParams;
use super::build::normalise;
use super::kernels::scan;
use super::pq::KSUB;
use crate::distance::Metric;
use crate::flat::exact_search;
use crate::topk::{Neighbor, TopK};
use crate::{PointFilter, Vectors};
use std::sync::Mutex;

/// Buffers of one search.
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    /// The query, normalised for cosine.
    q: Vec<f32>,
    /// `⟨q, c⟩` per centroid (padded to a block).
    coarse: Vec<f32>,
    /// (coarse distance, list) of the lists to probe.
    pub(super) probe: Vec<(f32, u32)>,
    /// `(m, 256)`: `⟨q_j, r_jk⟩`.
    inner: Vec<f32>,
    /// `(m, 256)`: the query's table, shared by every list.
    table: Vec<f32>,
    /// ADC distance per entry of the list being scanned.
    dist: Vec<f32>,
}

/// Scratch shared by the searches of one index.
#[derive(Debug, Default)]
pub(crate) struct ScratchPool {
    free: Mutex<Vec<Scratch>>,
}

impl ScratchPool {
    fn take(&self) -> Scratch {
        self.free
            .lock()
            .expect("pool lock")
            .pop()
            .unwrap_or_default()
    }

    fn give_back(&self, s: Scratch) {
        let mut free = self.free.lock().expect("pool lock");
        if free.len() < 64 {
            free.push(s);
        }
    }
}

/// Filtered-search planner: an exact scan of the filter's bitmap computes one full distance
/// (`dim` floats) per admitted point; IVF-PQ scans about `scanned = n · nprobe / nlist` codes of
/// `m` lookups each, plus its fixed costs (probe, tables, re-ranking). The exact scan is
/// preferred below `C · m · scanned / dim` admitted points. `C` is measured
/// (`quiver-bench ivfpq --filter-sweep`): on 200,000 × 128 with 1024 lists, m 16, nprobe 6,
/// rerank 20, the two cost the same near 1,300 admitted points (exact 23 ns a point; IVF-PQ
/// 29 µs a query), so `C = 8`. Below that the exact answer is also the better one: the lists
/// nearest the query hold few admitted points, and recall@10 there fell to 0.56 at 1,000
/// admitted (0.76 at 2,000, 0.89 at 10,000).
pub(crate) fn prefer_exact(
    admitted: u64,
    n: usize,
    nprobe: usize,
    nlist: usize,
    m: usize,
    dim: usize,
) -> bool {
    const C: f64 = 8.0;
    let scanned = n as f64 * nprobe as f64 / nlist.max(1) as f64;
    (admitted as f64) * (dim as f64) < C * m as f64 * scanned
}

/// Asks the CPU to start loading a vector into cache.
#[inline(always)]
fn prefetch(v: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is only a hint: it never faults and has no effect on memory, and the
    // pointer comes from a live slice.
    unsafe {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        _mm_prefetch(v.as_ptr() as *const i8, _MM_HINT_T0);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = v;
}

impl IvfPqIndex {
    /// The `k` closest admitted vectors to `query` with explicit knobs. `vectors` are the ones
    /// the index was built over (for re-ranking). A filter that admits few points is answered
    /// by an exact scan of its bitmap ([`IvfPqIndex::prefers_exact`]).
    pub fn search_with(
        &self,
        vectors: Vectors<'_>,
        metric: Metric,
        query: &[f32],
        k: usize,
        filter: &PointFilter<'_>,
        params: IvfPqSearchParams,
    ) -> Vec<Neighbor> {
        if filter
            .allowed
            .is_some_and(|a| self.prefers_exact(a.len(), params))
        {
            return exact_search(vectors, metric, query, k, filter);
        }
        self.search_lists(vectors, metric, query, k, filter, params)
    }

    /// True when the filtered-search planner answers a filter admitting `admitted` points
    /// with an exact scan rather than the lists.
    pub fn prefers_exact(&self, admitted: u64, params: IvfPqSearchParams) -> bool {
        let q = &self.quantizer;
        let nprobe = params.nprobe.unwrap_or(self.nprobe).clamp(1, q.nlist());
        prefer_exact(admitted, self.len(), nprobe, q.nlist(), q.m(), q.dim)
    }

    /// [`IvfPqIndex::search_with`] without the planner: always probes the lists. A metric or
    /// vector set other than the index's is answered by an exact scan.
    pub fn search_lists(
        &self,
        vectors: Vectors<'_>,
        metric: Metric,
        query: &[f32],
        k: usize,
        filter: &PointFilter<'_>,
        params: IvfPqSearchParams,
    ) -> Vec<Neighbor> {
        let q = &self.quantizer;
        let (n, nlist, m) = (self.len(), q.nlist(), q.m());
        if k == 0 || n == 0 {
            return Vec::new();
        }
        if metric != q.metric || vectors.len() != n || query.len() != q.dim {
            debug_assert!(
                false,
                "an IVF-PQ index searched with other vectors or metric"
            );
            return exact_search(vectors, metric, query, k, filter);
        }
        let nprobe = params.nprobe.unwrap_or(self.nprobe).clamp(1, nlist);
        let rerank = params.rerank.unwrap_or(self.rerank);
        let keep = if rerank > 0 { rerank.max(k) } else { k };
        let mut s = self.pool.take();
        self.probe(&mut s, query, nprobe);
        s.inner.resize(m * KSUB, 0.0);
        s.table.resize(m * KSUB, 0.0);
        q.pq.inner_tables(&s.q, &mut s.inner);
        // One table for every list: l2 adds each entry's norm term to it.
        let scale = if metric == Metric::L2 { -2.0 } else { -1.0 };
        for (t, x) in s.table.iter_mut().zip(&s.inner) {
            *t = scale * *x;
        }
        let plain = filter.allowed.is_none() && filter.deleted.is_none_or(|d| d.is_empty());
        let mut top = TopK::new(keep);
        let Scratch {
            q: qv,
            probe,
            table,
            dist,
            ..
        } = &mut s;
        for &(_, l) in probe.iter() {
            let (start, end) = (
                self.offsets[l as usize] as usize,
                self.offsets[l as usize + 1] as usize,
            );
            if start == end {
                continue;
            }
            let init = (metric == Metric::L2).then(|| &self.norm_terms[start..end]);
            let base = self.coarse_distance(qv, l as usize);
            dist.resize(end - start, 0.0);
            scan(table, &self.codes[start * m..end * m], init, base, dist);
            let mut bound = top.threshold();
            for (&d, &id) in dist.iter().zip(&self.ids[start..end]) {
                if d < bound && (plain || filter.admits(id)) {
                    top.push(d, id);
                    bound = top.threshold();
                }
            }
        }
        self.pool.give_back(s);
        let found = top.into_sorted_vec();
        if rerank == 0 {
            return found;
        }
        for c in &found {
            // Start loading every candidate before computing any distance: the misses overlap.
            for line in vectors.get(c.key).chunks(16) {
                prefetch(line);
            }
        }
        let mut exact = TopK::new(k);
        for c in &found {
            exact.push(metric.distance_inline(query, vectors.get(c.key)), c.key);
        }
        exact.into_sorted_vec()
    }

    /// The exact coarse distance of list `l` (its ADC base) from the prepared query `q`.
    fn coarse_distance(&self, q: &[f32], l: usize) -> f32 {
        let c = self.quantizer.coarse.row(l);
        match self.quantizer.metric {
            Metric::L2 => Metric::L2.distance_inline(q, c),
            Metric::Dot => Metric::Dot.distance_inline(q, c),
            Metric::Cosine => 1.0 + Metric::Dot.distance_inline(q, c),
        }
    }

    /// Fills `s.q` (the query, normalised for cosine) and `s.probe` (the `nprobe` lists with
    /// the lowest coarse distance by the half-precision centroids, lowest first).
    pub(super) fn probe(&self, s: &mut Scratch, query: &[f32], nprobe: usize) {
        let q = &self.quantizer;
        let nlist = q.nlist();
        s.q.clear();
        s.q.extend_from_slice(query);
        if q.metric == Metric::Cosine {
            normalise(&mut s.q);
        }
        s.coarse.resize(nlist.div_ceil(16) * 16, 0.0);
        // Lists are ranked on half-precision centroids; each probed list's base distance is
        // then computed in f32 (`coarse_distance`).
        q.probe.dots(&s.q, &mut s.coarse);
        let qq: f32 = s.q.iter().map(|x| x * x).sum();
        let coarse_distance = |l: usize, dot: f32| match q.metric {
            Metric::L2 => (qq + q.coarse.norm(l) - 2.0 * dot).max(0.0),
            Metric::Dot => -dot,
            Metric::Cosine => 1.0 - dot,
        };
        s.probe.clear();
        let by = |a: &(f32, u32), b: &(f32, u32)| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1));
        if nprobe * 8 <= nlist {
            // A short sorted buffer: most lists are turned away by one comparison.
            let mut worst = f32::INFINITY;
            for (l, &dot) in s.coarse[..nlist].iter().enumerate() {
                let d = coarse_distance(l, dot);
                if d < worst || s.probe.len() < nprobe {
                    // After equal distances: among equals the lower list comes first.
                    let at = s.probe.partition_point(|p| p.0 <= d);
                    s.probe.insert(at, (d, l as u32));
                    s.probe.truncate(nprobe);
                    if s.probe.len() == nprobe {
                        worst = s.probe[nprobe - 1].0;
                    }
                }
            }
            return;
        }
        s.probe.extend(
            s.coarse[..nlist]
                .iter()
                .enumerate()
                .map(|(l, &dot)| (coarse_distance(l, dot), l as u32)),
        );
        if nprobe < nlist {
            s.probe.select_nth_unstable_by(nprobe - 1, by);
            s.probe.truncate(nprobe);
        }
        s.probe.sort_unstable_by(by);
    }
}
