//! The frozen HNSW graph: flat arrays read by searches, and their byte layout.
//!
//! ```text
//! level0 : (n, 1 + m0) u32   row = [count, neighbour ids..., padding]   m0 = 2m
//! upper  : blocks of (1 + m) u32, one per (node, level ≥ 1), same row shape
//! upper_offsets : (n) u32    block index of the node's level-1 row, u32::MAX if none;
//!                            level L of the node is block upper_offsets[i] + L - 1
//! levels : (n) u8
//! bytes  : "HNSWGRF1" | m u32 | n u32 | entry u32 | top u8 | 3 zero bytes | levels (n, padded
//!          to 4) | level0 | upper_offsets | upper block count u32 | upper   (all little-endian)
//! ```

use super::OrdF32;
use super::visited::VisitedPool;
use crate::distance::Metric;
use crate::topk::Neighbor;
use crate::{PointFilter, Vectors};
use std::cmp::Reverse;
use std::collections::BinaryHeap;

const MAGIC: &[u8; 8] = b"HNSWGRF1";

/// Asks the CPU to start loading a vector into cache.
#[inline(always)]
pub(super) fn prefetch(v: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is only a hint: it never faults and has no effect on memory, and the
    // pointer comes from a live slice.
    unsafe {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        _mm_prefetch(v.as_ptr() as *const i8, _MM_HINT_T0);
        if v.len() > 16 {
            _mm_prefetch(v.as_ptr().add(16) as *const i8, _MM_HINT_T0);
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = v;
}

#[cfg(not(target_endian = "little"))]
compile_error!("graph arrays are read in place as little-endian u32");

/// Bytes shared with their owner, such as a mapped file.
pub type SharedBytes = std::sync::Arc<dyn AsRef<[u8]> + Send + Sync>;

/// u32 words, owned or read in place from shared bytes.
pub enum Words {
    /// In memory.
    Owned(Vec<u32>),
    /// `len` words at byte `start` of `bytes`.
    Shared {
        /// The bytes.
        bytes: SharedBytes,
        /// First byte.
        start: usize,
        /// Number of words.
        len: usize,
    },
}

impl Words {
    fn shared(bytes: SharedBytes, start: usize, len: usize) -> Result<Words, GraphError> {
        let all: &[u8] = (*bytes).as_ref();
        let raw = all
            .get(start..start + len * 4)
            .ok_or_else(|| GraphError("array outside the bytes".into()))?;
        bytemuck::try_cast_slice::<u8, u32>(raw)
            .map_err(|e| GraphError(format!("array not aligned: {e}")))?;
        Ok(Words::Shared { bytes, start, len })
    }
}

impl std::ops::Deref for Words {
    type Target = [u32];
    fn deref(&self) -> &[u32] {
        match self {
            Words::Owned(v) => v,
            Words::Shared { bytes, start, len } => {
                let all: &[u8] = (**bytes).as_ref();
                bytemuck::cast_slice(&all[*start..*start + *len * 4])
            }
        }
    }
}

impl std::fmt::Debug for Words {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Words::Owned(v) => write!(f, "Owned({} words)", v.len()),
            Words::Shared { len, .. } => write!(f, "Shared({len} words)"),
        }
    }
}

/// A graph that no longer changes.
#[derive(Debug)]
pub struct HnswGraph {
    m: usize,
    entry: u32,
    top: u8,
    levels: Vec<u8>,
    level0: Words,
    upper_offsets: Words,
    upper: Words,
    pool: VisitedPool,
}

/// Why graph bytes were refused.
#[derive(Debug, thiserror::Error)]
#[error("HNSW graph bytes are invalid: {0}")]
pub struct GraphError(pub String);

impl HnswGraph {
    /// Freezes neighbour lists given by `links(node, level)` into flat arrays.
    pub fn freeze(
        m: usize,
        entry: u32,
        top: u8,
        levels: &[u8],
        links: impl Fn(usize, usize) -> Vec<u32>,
    ) -> HnswGraph {
        let n = levels.len();
        let (s0, s) = (2 * m + 1, m + 1);
        let mut level0 = vec![0u32; n * s0];
        let mut upper_offsets = vec![u32::MAX; n];
        let mut upper = Vec::new();
        for i in 0..n {
            let l0 = links(i, 0);
            let row = &mut level0[i * s0..(i + 1) * s0];
            row[0] = l0.len().min(2 * m) as u32;
            for (k, x) in l0.iter().take(2 * m).enumerate() {
                row[1 + k] = *x;
            }
            if levels[i] > 0 {
                upper_offsets[i] = (upper.len() / s) as u32;
                for lev in 1..=levels[i] as usize {
                    let l = links(i, lev);
                    let mut row = vec![0u32; s];
                    row[0] = l.len().min(m) as u32;
                    for (k, x) in l.iter().take(m).enumerate() {
                        row[1 + k] = *x;
                    }
                    upper.extend(row);
                }
            }
        }
        HnswGraph {
            m,
            entry,
            top,
            levels: levels.to_vec(),
            level0: Words::Owned(level0),
            upper_offsets: Words::Owned(upper_offsets),
            upper: Words::Owned(upper),
            pool: VisitedPool::default(),
        }
    }

    /// Links per node on level 0.
    pub fn m0(&self) -> usize {
        2 * self.m
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.levels.len()
    }

    /// True for a graph of no nodes.
    pub fn is_empty(&self) -> bool {
        self.levels.is_empty()
    }

    /// Bytes held by the arrays.
    pub fn memory_bytes(&self) -> usize {
        self.levels.len() + 4 * (self.level0.len() + self.upper_offsets.len() + self.upper.len())
    }

    /// The neighbours of `node` on `level`.
    #[inline]
    fn neighbours(&self, node: u32, level: usize) -> &[u32] {
        if level == 0 {
            let s0 = 2 * self.m + 1;
            let row = &self.level0[node as usize * s0..(node as usize + 1) * s0];
            &row[1..1 + row[0] as usize]
        } else {
            let s = self.m + 1;
            let block = self.upper_offsets[node as usize] as usize + level - 1;
            let row = &self.upper[block * s..(block + 1) * s];
            &row[1..1 + row[0] as usize]
        }
    }

    /// The `k` closest admitted nodes to `query`, with a beam of `ef` on level 0.
    /// Traversal passes through nodes the filter rejects; only admitted ones become results.
    pub fn search(
        &self,
        vectors: Vectors<'_>,
        metric: Metric,
        query: &[f32],
        k: usize,
        ef: usize,
        filter: &PointFilter<'_>,
    ) -> Vec<Neighbor> {
        self.search_by(
            |i| metric.distance_inline(query, vectors.get(i)),
            |i| prefetch(vectors.get(i)),
            k,
            ef,
            filter,
        )
    }

    /// [`HnswGraph::search`] with the distance to the query of node `i` given by `dist(i)`
    /// (exact or on codes), and `prefetch(i)` starting to load what `dist(i)` will read.
    pub fn search_by(
        &self,
        dist: impl Fn(u32) -> f32,
        prefetch: impl Fn(u32),
        k: usize,
        ef: usize,
        filter: &PointFilter<'_>,
    ) -> Vec<Neighbor> {
        if self.is_empty() || k == 0 {
            return Vec::new();
        }
        let mut ep = self.entry;
        let mut ep_d = dist(ep);
        for lev in (1..=self.top as usize).rev() {
            let mut changed = true;
            while changed {
                changed = false;
                for &nb in self.neighbours(ep, lev) {
                    let d = dist(nb);
                    if d < ep_d {
                        ep_d = d;
                        ep = nb;
                        changed = true;
                    }
                }
            }
        }
        let ef = ef.max(k);
        let mut scratch = self.pool.take(self.len());
        let super::visited::Scratch {
            visited,
            candidates,
            results,
        } = &mut scratch;
        visited.insert(ep);
        candidates.push(Reverse((OrdF32(ep_d), ep)));
        if filter.admits(ep) {
            results.push((OrdF32(ep_d), ep));
        }
        // The bound that ends the search: the worst kept result once `ef` are kept.
        let bound = |r: &BinaryHeap<(OrdF32, u32)>| {
            if r.len() >= ef {
                r.peek().map_or(f32::INFINITY, |x| x.0.0)
            } else {
                f32::INFINITY
            }
        };
        while let Some(Reverse((OrdF32(d), c))) = candidates.pop() {
            if d > bound(results) {
                break;
            }
            let nbs = self.neighbours(c, 0);
            // Start loading every unvisited neighbour's vector before scoring any: the loads
            // overlap instead of queueing one behind the other.
            for &nb in nbs {
                if !visited.contains(nb) {
                    prefetch(nb);
                }
            }
            for &nb in nbs {
                if !visited.insert(nb) {
                    continue;
                }
                let dn = dist(nb);
                if dn < bound(results) {
                    candidates.push(Reverse((OrdF32(dn), nb)));
                    if filter.admits(nb) {
                        results.push((OrdF32(dn), nb));
                        if results.len() > ef {
                            results.pop();
                        }
                    }
                }
            }
        }
        let mut out: Vec<Neighbor> = results
            .drain()
            .map(|(d, key)| Neighbor { distance: d.0, key })
            .collect();
        self.pool.give_back(scratch);
        out.sort();
        out.truncate(k);
        out
    }

    /// The graph as bytes (layout in the module header).
    pub fn to_bytes(&self) -> Vec<u8> {
        let n = self.len();
        let mut out = Vec::with_capacity(
            24 + n + 4 * (self.level0.len() + self.upper_offsets.len() + self.upper.len() + 1),
        );
        out.extend_from_slice(MAGIC);
        for x in [self.m as u32, n as u32, self.entry] {
            out.extend_from_slice(&x.to_le_bytes());
        }
        out.extend_from_slice(&[self.top, 0, 0, 0]);
        out.extend_from_slice(&self.levels);
        out.resize(out.len() + (4 - n % 4) % 4, 0);
        let words = |out: &mut Vec<u8>, v: &[u32]| {
            v.iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes()))
        };
        words(&mut out, &self.level0);
        words(&mut out, &self.upper_offsets);
        out.extend_from_slice(&((self.upper.len() / (self.m + 1)) as u32).to_le_bytes());
        words(&mut out, &self.upper);
        out
    }

    /// Reads a graph written by [`HnswGraph::to_bytes`], checking every id and count; the
    /// arrays are copied out of `raw`.
    pub fn from_bytes(raw: &[u8], n_vectors: usize) -> Result<HnswGraph, GraphError> {
        Self::parse(raw, n_vectors, None)
    }

    /// Like [`HnswGraph::from_bytes`] for the graph at `bytes[start..start + len]`, but the
    /// arrays are searched where they lie (a mapped file) instead of being copied. `start`
    /// must keep them 4-byte aligned.
    pub fn from_shared(
        bytes: SharedBytes,
        start: usize,
        len: usize,
        n_vectors: usize,
    ) -> Result<HnswGraph, GraphError> {
        let all: &[u8] = (*bytes).as_ref();
        let raw = all
            .get(start..start + len)
            .ok_or_else(|| GraphError("range outside the bytes".into()))?;
        Self::parse(raw, n_vectors, Some((bytes.clone(), start)))
    }

    fn parse(
        raw: &[u8],
        n_vectors: usize,
        shared: Option<(SharedBytes, usize)>,
    ) -> Result<HnswGraph, GraphError> {
        let bad = |s: &str| GraphError(s.to_string());
        let mut pos = 0usize;
        let mut take = |len: usize| -> Result<std::ops::Range<usize>, GraphError> {
            let end = pos
                .checked_add(len)
                .filter(|e| *e <= raw.len())
                .ok_or_else(|| bad("truncated"))?;
            let r = pos..end;
            pos = end;
            Ok(r)
        };
        let u32_at = |b: &[u8]| u32::from_le_bytes(b.try_into().expect("4 bytes"));
        if &raw[take(8)?] != MAGIC {
            return Err(bad("bad magic"));
        }
        let m = u32_at(&raw[take(4)?]) as usize;
        let n = u32_at(&raw[take(4)?]) as usize;
        let entry = u32_at(&raw[take(4)?]);
        let top = raw[take(4)?][0];
        if m == 0 || m > 1024 || n != n_vectors || (n > 0 && entry as usize >= n) || top > 15 {
            return Err(bad("header out of range"));
        }
        let levels = raw[take(n)?].to_vec();
        take((4 - n % 4) % 4)?;
        let (s0, s) = (2 * m + 1, m + 1);
        let level0 = take(n.checked_mul(s0 * 4).ok_or_else(|| bad("size overflow"))?)?;
        let upper_offsets = take(n * 4)?;
        let blocks = u32_at(&raw[take(4)?]) as usize;
        let upper = take(
            blocks
                .checked_mul(s * 4)
                .ok_or_else(|| bad("size overflow"))?,
        )?;
        if pos != raw.len() {
            return Err(bad("stray bytes"));
        }
        let words = |r: std::ops::Range<usize>| match &shared {
            Some((bytes, base)) => Words::shared(bytes.clone(), base + r.start, r.len() / 4),
            None => Ok(Words::Owned(raw[r].chunks_exact(4).map(u32_at).collect())),
        };
        let g = HnswGraph {
            m,
            entry,
            top,
            levels,
            level0: words(level0)?,
            upper_offsets: words(upper_offsets)?,
            upper: words(upper)?,
            pool: VisitedPool::default(),
        };
        g.validate(blocks)?;
        Ok(g)
    }

    fn validate(&self, blocks: usize) -> Result<(), GraphError> {
        let n = self.len() as u32;
        let bad = |s: String| Err(GraphError(s));
        if n > 0 && self.levels[self.entry as usize] != self.top {
            return bad("entry point is not on the top level".into());
        }
        for i in 0..n {
            let l = self.levels[i as usize] as usize;
            if l > self.top as usize {
                return bad(format!("node {i} is above the top level"));
            }
            let off = self.upper_offsets[i as usize];
            if (l == 0) != (off == u32::MAX) || (l > 0 && off as usize + l > blocks) {
                return bad(format!("node {i} has a bad upper offset"));
            }
            let s0 = 2 * self.m + 1;
            if self.level0[i as usize * s0] as usize > 2 * self.m {
                return bad(format!("node {i} has too many neighbours"));
            }
            for lev in 1..=l {
                let row = (off as usize + lev - 1) * (self.m + 1);
                if self.upper[row] as usize > self.m {
                    return bad(format!("node {i} has too many neighbours on level {lev}"));
                }
            }
            for lev in 0..=l {
                if self
                    .neighbours(i, lev)
                    .iter()
                    .any(|&x| x >= n || self.levels[x as usize] < lev as u8)
                {
                    return bad(format!(
                        "node {i} links to a node that does not exist on level {lev}"
                    ));
                }
            }
        }
        Ok(())
    }
}
