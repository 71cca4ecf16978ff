//! Visited sets for graph search: one `u16` mark per node and a generation counter, so a search
//! starts with one increment instead of clearing the array (cleared only when the counter
//! wraps). Pooled, so searches allocate nothing once warm.

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

/// A pool of visited sets shared by the searches of one graph.
#[derive(Debug, Default)]
pub struct VisitedPool {
    free: Mutex<Vec<Visited>>,
}

impl VisitedPool {
    /// A set for a search over `n` nodes, taken from the pool when one is free.
    pub fn take(&self, n: usize) -> Visited {
        let mut v = self
            .free
            .lock()
            .expect("pool lock")
            .pop()
            .unwrap_or_else(|| Visited::new(n));
        v.reset(n);
        v
    }

    /// Returns a set to the pool.
    pub fn give_back(&self, v: Visited) {
        let mut free = self.free.lock().expect("pool lock");
        if free.len() < 64 {
            free.push(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generations_isolate_searches_even_across_wraparound() {
        let pool = VisitedPool::default();
        let mut v = pool.take(10);
        assert!(v.insert(3));
        assert!(!v.insert(3));
        for _ in 0..70_000 {
            v.reset(10);
            assert!(v.insert(3), "a new generation forgets earlier marks");
        }
        pool.give_back(v);
        let mut w = pool.take(20);
        assert!(w.insert(19));
    }
}
