//! Search scratch: a visited set (one `u16` mark per node and a generation counter, so a search
//! starts with one increment instead of clearing the array, cleared only when the counter
//! wraps) and the two heaps of a beam search. Pooled, so searches allocate nothing once warm.

use super::OrdF32;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Mutex;

/// Marks of one search.
#[derive(Debug)]
pub struct Visited {
    marks: Vec<u16>,
    generation: u16,
}

impl Visited {
    fn new(n: usize) -> Self {
        Visited {
            marks: vec![0; n],
            generation: 0,
        }
    }

    /// Starts a new search over `n` nodes.
    pub fn reset(&mut self, n: usize) {
        if self.marks.len() < n {
            self.marks.resize(n, 0);
        }
        self.generation = self.generation.wrapping_add(1);
        if self.generation == 0 {
            self.marks.fill(0);
            self.generation = 1;
        }
    }

    /// True if `node` is marked in this search.
    #[inline]
    pub fn contains(&self, node: u32) -> bool {
        self.marks[node as usize] == self.generation
    }

    /// Marks `node`; returns true if it was not marked yet in this search.
    #[inline]
    pub fn insert(&mut self, node: u32) -> bool {
        let m = &mut self.marks[node as usize];
        if *m == self.generation {
            false
        } else {
            *m = self.generation;
            true
        }
    }
}

/// Everything one beam search writes to.
#[derive(Debug)]
pub struct Scratch {
    /// Nodes seen.
    pub visited: Visited,
    /// Nodes to expand, closest first.
    pub candidates: BinaryHeap<Reverse<(OrdF32, u32)>>,
    /// The best nodes so far, worst on top.
    pub results: BinaryHeap<(OrdF32, u32)>,
}

/// A pool of scratch spaces shared by the searches of one graph.
#[derive(Debug, Default)]
pub struct VisitedPool {
    free: Mutex<Vec<Scratch>>,
}

impl VisitedPool {
    /// Scratch for a search over `n` nodes, taken from the pool when one is free, emptied.
    pub fn take(&self, n: usize) -> Scratch {
        let mut s = self
            .free
            .lock()
            .expect("pool lock")
            .pop()
            .unwrap_or_else(|| Scratch {
                visited: Visited::new(n),
                candidates: BinaryHeap::new(),
                results: BinaryHeap::new(),
            });
        s.visited.reset(n);
        s.candidates.clear();
        s.results.clear();
        s
    }

    /// Returns scratch to the pool.
    pub fn give_back(&self, s: Scratch) {
        let mut free = self.free.lock().expect("pool lock");
        if free.len() < 64 {
            free.push(s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generations_isolate_searches_even_across_wraparound() {
        let pool = VisitedPool::default();
        let mut s = pool.take(10);
        let v = &mut s.visited;
        assert!(v.insert(3));
        assert!(!v.insert(3));
        for _ in 0..70_000 {
            v.reset(10);
            assert!(v.insert(3), "a new generation forgets earlier marks");
        }
        pool.give_back(s);
        let mut w = pool.take(20);
        assert!(w.visited.insert(19));
    }
}
