//! A bounded top-k collector: keeps the `k` smallest distances seen, in a max-heap.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// One candidate: a distance and the caller's key for the vector (segment offset or similar).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Neighbor {
    /// Lower is closer (see `distance::Metric`).
    pub distance: f32,
    /// The caller's key for the vector, usually its offset inside a segment.
    pub key: u32,
}

impl Eq for Neighbor {}

impl Ord for Neighbor {
    fn cmp(&self, other: &Self) -> Ordering {
        self.distance
            .total_cmp(&other.distance)
            .then(self.key.cmp(&other.key))
    }
}

impl PartialOrd for Neighbor {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Keeps the `k` closest candidates pushed into it.
#[derive(Debug)]
pub struct TopK {
    k: usize,
    heap: BinaryHeap<Neighbor>,
}

impl TopK {
    /// An empty collector for `k` results.
    pub fn new(k: usize) -> Self {
        TopK {
            k,
            heap: BinaryHeap::with_capacity(k + 1),
        }
    }

    /// The distance a candidate must beat to enter, or infinity while not full.
    #[inline]
    pub fn threshold(&self) -> f32 {
        if self.heap.len() < self.k {
            f32::INFINITY
        } else {
            self.heap.peek().map_or(f32::INFINITY, |n| n.distance)
        }
    }

    /// Offers a candidate; it is kept if it is among the `k` closest so far.
    #[inline]
    pub fn push(&mut self, distance: f32, key: u32) {
        if self.k == 0 {
            return;
        }
        if self.heap.len() < self.k {
            self.heap.push(Neighbor { distance, key });
        } else if distance < self.threshold() {
            self.heap.pop();
            self.heap.push(Neighbor { distance, key });
        }
    }

    /// The kept candidates, closest first.
    pub fn into_sorted_vec(self) -> Vec<Neighbor> {
        self.heap.into_sorted_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_smallest_k_in_order() {
        let mut t = TopK::new(3);
        for (i, d) in [5.0, 1.0, 4.0, 2.0, 3.0, 0.5].iter().enumerate() {
            t.push(*d, i as u32);
        }
        let got: Vec<f32> = t.into_sorted_vec().iter().map(|n| n.distance).collect();
        assert_eq!(got, vec![0.5, 1.0, 2.0]);
    }

    #[test]
    fn zero_k_keeps_nothing() {
        let mut t = TopK::new(0);
        t.push(1.0, 1);
        assert!(t.into_sorted_vec().is_empty());
    }
}
