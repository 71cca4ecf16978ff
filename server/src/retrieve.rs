//! Retrieval for text queries, shared by `SearchText` and `Ask`: dense (the embedded query's
//! nearest chunks), BM25 over the collection's text index, or both fused.
//!
//! ```text
//! query ─┬─ embed ─► vector search (candidates) ──┐
//!        └─ tokenize ─► BM25 (candidates) ────────┴─► fuse (RRF or weighted) ─► top k
//! ```
//!
//! Reciprocal rank fusion scores a point `Σ 1 / (rrf_k + rank)` over the lists it appears in
//! (rank from 1; Cormack et al., 2009, use `rrf_k` 60). The weighted sum min-max normalises each
//! list's scores over its own candidates, then adds `w · dense + (1 - w) · bm25`; a point missing
//! from a list gets 0 from it.

use crate::service::OwnedSearch;
use quiver_proto::v1 as pb;
use quiver_storage::{Collection, Metric, PointId, Record, StorageError, TextSearchRequest};
use std::collections::HashMap;
use tonic::Status;

use crate::status::invalid;

/// Which retriever ranks the results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Nearest vectors.
    Dense,
    /// BM25 over the text index.
    Bm25,
    /// Both, fused.
    Hybrid,
}

impl Mode {
    /// The mode a request asks for; unspecified means hybrid when the collection has a text
    /// index, dense otherwise.
    pub fn resolve(mode: i32, has_text_index: bool) -> Result<Mode, Status> {
        match pb::SearchMode::try_from(mode) {
            Ok(pb::SearchMode::Unspecified) if has_text_index => Ok(Mode::Hybrid),
            Ok(pb::SearchMode::Unspecified) | Ok(pb::SearchMode::Dense) => Ok(Mode::Dense),
            Ok(pb::SearchMode::Bm25) => Ok(Mode::Bm25),
            Ok(pb::SearchMode::Hybrid) => Ok(Mode::Hybrid),
            Err(_) => Err(invalid(format!("unknown search mode {mode}"))),
        }
    }

    /// True if the query must be embedded.
    pub fn needs_vector(self) -> bool {
        self != Mode::Bm25
    }
}

/// How two rankings become one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fusion {
    /// Reciprocal rank fusion with this constant.
    Rrf {
        /// `rrf_k`.
        k: f32,
    },
    /// Weighted sum of min-max normalised scores.
    Weighted {
        /// The dense side's weight, 0 to 1.
        dense_weight: f32,
    },
}

/// Most candidates a retriever may contribute.
const MAX_CANDIDATES: u32 = 10_000;

/// Hybrid settings from the wire, checked.
#[derive(Debug, Clone)]
pub struct HybridSettings {
    /// The fusion.
    pub fusion: Fusion,
    /// Candidates per retriever; `None`: max(4 k, 50).
    pub candidates: Option<usize>,
    /// The text-indexed field; `None`: the collection's only one, or `text`.
    pub text_field: Option<String>,
}

impl HybridSettings {
    /// Checks a request's hybrid parameters.
    pub fn from_pb(h: Option<&pb::HybridParams>) -> Result<HybridSettings, Status> {
        let d = pb::HybridParams::default();
        let h = h.unwrap_or(&d);
        let fusion = match pb::Fusion::try_from(h.fusion) {
            Ok(pb::Fusion::Unspecified) | Ok(pb::Fusion::Rrf) => Fusion::Rrf {
                k: if h.rrf_k == 0 { 60.0 } else { h.rrf_k as f32 },
            },
            Ok(pb::Fusion::Weighted) => {
                let w = h.dense_weight;
                if !(w.is_finite() && (0.0..=1.0).contains(&w)) {
                    return Err(invalid(format!("dense_weight {w} is not between 0 and 1")));
                }
                Fusion::Weighted {
                    dense_weight: if w == 0.0 { 0.5 } else { w },
                }
            }
            Err(_) => return Err(invalid(format!("unknown fusion {}", h.fusion))),
        };
        if h.candidates > MAX_CANDIDATES {
            return Err(invalid(format!(
                "candidates {} is out of range (0 for the default, up to {MAX_CANDIDATES})",
                h.candidates
            )));
        }
        Ok(HybridSettings {
            fusion,
            candidates: (h.candidates > 0).then_some(h.candidates as usize),
            text_field: (!h.text_field.is_empty()).then(|| h.text_field.clone()),
        })
    }
}

/// One retrieved point.
#[derive(Debug, Clone)]
pub struct Hit {
    /// The point; its score is the mode's (fused for hybrid).
    pub record: Record,
    /// Its dense score, when the dense side found it.
    pub dense: Option<f32>,
    /// Its BM25 score, when BM25 found it.
    pub bm25: Option<f32>,
    /// Distinct query terms it holds (BM25 side; 0 otherwise).
    pub matched_terms: u32,
}

/// A text query, ready to run on a blocking thread.
pub(crate) struct TextQuery {
    /// Retriever(s).
    pub(crate) mode: Mode,
    /// The query text, for BM25.
    pub(crate) text: String,
    /// The dense search (vector, filter, knobs), with `k` the final k; unused for BM25 mode.
    pub(crate) dense: OwnedSearch,
    /// Filter for the BM25 side (the same as the dense side's).
    pub(crate) filter: Option<quiver_storage::Filter>,
    /// Final number of results.
    pub(crate) k: usize,
    /// Hybrid settings.
    pub(crate) hybrid: HybridSettings,
    /// Return vectors too.
    pub(crate) with_vector: bool,
}

impl TextQuery {
    /// Runs the query. Blocking: call from a blocking thread.
    pub(crate) fn run(mut self, c: &Collection) -> Result<Vec<Hit>, StorageError> {
        if self.k == 0 || self.k > MAX_CANDIDATES as usize {
            return Err(StorageError::InvalidK {
                k: self.k,
                limit: MAX_CANDIDATES as usize,
            });
        }
        let pool = match self.mode {
            Mode::Hybrid => self
                .hybrid
                .candidates
                .unwrap_or((4 * self.k).max(50))
                .max(self.k),
            Mode::Dense | Mode::Bm25 => self.k,
        };
        let dense = if self.mode.needs_vector() {
            self.dense.set_k(pool);
            c.search(&self.dense.borrow())?
        } else {
            Vec::new()
        };
        let text = if self.mode != Mode::Dense {
            c.search_text(&TextSearchRequest {
                query: &self.text,
                field: self.hybrid.text_field.as_deref(),
                k: pool,
                filter: self.filter.as_ref(),
                with_payload: true,
            })?
        } else {
            Vec::new()
        };
        let higher_is_better = c.config().metric != Metric::L2;
        let mut hits: Vec<Hit> = match self.mode {
            Mode::Dense => dense
                .into_iter()
                .map(|r| Hit {
                    dense: r.score,
                    bm25: None,
                    matched_terms: 0,
                    record: r,
                })
                .collect(),
            Mode::Bm25 => text
                .into_iter()
                .map(|t| Hit {
                    dense: None,
                    bm25: t.record.score,
                    matched_terms: t.matched_terms,
                    record: t.record,
                })
                .collect(),
            Mode::Hybrid => {
                let d: Vec<(PointId, f32)> = dense
                    .iter()
                    .map(|r| (r.id.clone(), r.score.unwrap_or_default()))
                    .collect();
                let b: Vec<(PointId, f32)> = text
                    .iter()
                    .map(|t| (t.record.id.clone(), t.record.score.unwrap_or_default()))
                    .collect();
                let fused = fuse(&d, &b, self.hybrid.fusion, higher_is_better, self.k);
                let mut by_id: HashMap<PointId, Hit> = HashMap::new();
                for r in dense {
                    by_id.insert(
                        r.id.clone(),
                        Hit {
                            dense: r.score,
                            bm25: None,
                            matched_terms: 0,
                            record: r,
                        },
                    );
                }
                for t in text {
                    let e = by_id.entry(t.record.id.clone()).or_insert_with(|| Hit {
                        dense: None,
                        bm25: None,
                        matched_terms: 0,
                        record: t.record.clone(),
                    });
                    e.bm25 = t.record.score;
                    e.matched_terms = t.matched_terms;
                }
                fused
                    .into_iter()
                    .filter_map(|(id, score)| {
                        let mut h = by_id.remove(&id)?;
                        h.record.score = Some(score);
                        Some(h)
                    })
                    .collect()
            }
        };
        if self.with_vector {
            let missing: Vec<PointId> = hits
                .iter()
                .filter(|h| h.record.vector.is_none())
                .map(|h| h.record.id.clone())
                .collect();
            if !missing.is_empty() {
                let got: HashMap<PointId, Vec<f32>> = c
                    .get(&missing, true, false)?
                    .into_iter()
                    .filter_map(|r| Some((r.id, r.vector?)))
                    .collect();
                for h in &mut hits {
                    if h.record.vector.is_none() {
                        h.record.vector = got.get(&h.record.id).cloned();
                    }
                }
            }
        }
        Ok(hits)
    }
}

/// Fuses a dense and a BM25 ranking (each best first) into the best `k`, best first. Ties keep
/// the order of first appearance (dense list first).
pub fn fuse(
    dense: &[(PointId, f32)],
    bm25: &[(PointId, f32)],
    fusion: Fusion,
    dense_higher_is_better: bool,
    k: usize,
) -> Vec<(PointId, f32)> {
    let mut order: Vec<PointId> = Vec::new();
    let mut score: HashMap<PointId, f32> = HashMap::new();
    let mut add = |id: &PointId, s: f32| match score.get_mut(id) {
        Some(v) => *v += s,
        None => {
            order.push(id.clone());
            score.insert(id.clone(), s);
        }
    };
    match fusion {
        Fusion::Rrf { k: c } => {
            for list in [dense, bm25] {
                for (rank, (id, _)) in list.iter().enumerate() {
                    add(id, 1.0 / (c + rank as f32 + 1.0));
                }
            }
        }
        Fusion::Weighted { dense_weight } => {
            let lists = [
                (dense, dense_weight, dense_higher_is_better),
                (bm25, 1.0 - dense_weight, true),
            ];
            for (list, w, higher) in lists {
                let lo = list.iter().map(|x| x.1).fold(f32::INFINITY, f32::min);
                let hi = list.iter().map(|x| x.1).fold(f32::NEG_INFINITY, f32::max);
                for (id, s) in list {
                    let norm = if hi > lo {
                        if higher {
                            (s - lo) / (hi - lo)
                        } else {
                            (hi - s) / (hi - lo)
                        }
                    } else {
                        1.0
                    };
                    add(id, w * norm);
                }
            }
        }
    }
    let mut out: Vec<(PointId, f32)> = order
        .into_iter()
        .map(|id| {
            let s = score[&id];
            (id, s)
        })
        .collect();
    // Stable: equal scores keep their first-appearance order.
    out.sort_by(|a, b| b.1.total_cmp(&a.1));
    out.truncate(k);
    out
}

/// The hit on the wire.
pub fn hit_pb(h: Hit) -> pb::ScoredPoint {
    let mut p = crate::convert::scored_pb(h.record);
    p.dense_score = h.dense;
    p.bm25_score = h.bm25;
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[(PointId, f32)]) -> Vec<u64> {
        v.iter()
            .map(|(id, _)| match id {
                PointId::Num(n) => *n,
                PointId::Text(_) => unreachable!(),
            })
            .collect()
    }

    fn list(v: &[(u64, f32)]) -> Vec<(PointId, f32)> {
        v.iter().map(|(i, s)| (PointId::Num(*i), *s)).collect()
    }

    #[test]
    fn rrf_by_hand() {
        // dense: 1, 2, 3; bm25: 3, 4, 1. With k 60:
        // 1: 1/61 + 1/63, 3: 1/63 + 1/61 (same), 2: 1/62, 4: 1/62.
        let d = list(&[(1, 0.9), (2, 0.8), (3, 0.7)]);
        let b = list(&[(3, 12.0), (4, 9.0), (1, 1.0)]);
        let f = fuse(&d, &b, Fusion::Rrf { k: 60.0 }, true, 10);
        assert_eq!(ids(&f), [1, 3, 2, 4]);
        assert!((f[0].1 - (1.0 / 61.0 + 1.0 / 63.0)).abs() < 1e-7);
        assert!((f[2].1 - 1.0 / 62.0).abs() < 1e-7);
        assert_eq!(ids(&fuse(&d, &b, Fusion::Rrf { k: 60.0 }, true, 2)), [1, 3]);
    }

    #[test]
    fn weighted_by_hand() {
        // dense normalised: 1 → 1, 2 → 0.5, 3 → 0; bm25: 3 → 1, 4 → 0.
        // w 0.5: 1 → 0.5, 2 → 0.25, 3 → 0.5, 4 → 0. w 0.8: 1 → 0.8, 3 → 0.2, 2 → 0.4.
        let d = list(&[(1, 0.9), (2, 0.8), (3, 0.7)]);
        let b = list(&[(3, 12.0), (4, 2.0)]);
        let f = fuse(&d, &b, Fusion::Weighted { dense_weight: 0.5 }, true, 10);
        assert_eq!(ids(&f), [1, 3, 2, 4]);
        assert!((f[0].1 - 0.5).abs() < 1e-6 && (f[2].1 - 0.25).abs() < 1e-6);
        let f = fuse(&d, &b, Fusion::Weighted { dense_weight: 0.8 }, true, 10);
        assert_eq!(ids(&f), [1, 2, 3, 4]);
        // Distances (l2): smaller is better.
        let d = list(&[(1, 0.1), (2, 0.2), (3, 0.3)]);
        let f = fuse(&d, &[], Fusion::Weighted { dense_weight: 1.0 }, false, 10);
        assert_eq!(ids(&f), [1, 2, 3]);
        assert!((f[0].1 - 1.0).abs() < 1e-6 && f[2].1.abs() < 1e-6);
    }

    #[test]
    fn modes_resolve() {
        assert_eq!(Mode::resolve(0, true).unwrap(), Mode::Hybrid);
        assert_eq!(Mode::resolve(0, false).unwrap(), Mode::Dense);
        assert_eq!(Mode::resolve(2, false).unwrap(), Mode::Bm25);
        assert!(Mode::resolve(9, true).is_err());
        assert!(
            HybridSettings::from_pb(Some(&pb::HybridParams {
                fusion: pb::Fusion::Weighted as i32,
                dense_weight: 1.5,
                ..Default::default()
            }))
            .is_err()
        );
    }
}
