//! Reads: search, get, scroll and count, and turning a filter into a bitmap per segment.

use super::{Collection, State};
use crate::error::{Result, StorageError};
use crate::filter::Filter;
use crate::payload_index::PayloadIndex;
use crate::types::{PointId, SegmentId};
use quiver_index::{IndexKind, Metric, PointFilter, SearchParams, TopK, Vectors};
use roaring::RoaringBitmap;
use serde_json::Value;
use std::sync::atomic::{AtomicBool, Ordering};

/// One search.
#[derive(Debug, Clone)]
pub struct SearchRequest<'a> {
    /// The query vector.
    pub vector: &'a [f32],
    /// How many results.
    pub k: usize,
    /// Only points matching this.
    pub filter: Option<&'a Filter>,
    /// Brute force whatever the index.
    pub exact: bool,
    /// HNSW beam width; `None` takes the default.
    pub ef: Option<usize>,
    /// IVF-PQ lists probed in each segment; `None` takes the default. Segments without an
    /// IVF-PQ index ignore it.
    pub nprobe: Option<usize>,
    /// IVF-PQ candidates re-ranked exactly in each segment; `None` takes the default.
    pub rerank: Option<usize>,
    /// Return payloads.
    pub with_payload: bool,
    /// Return vectors.
    pub with_vector: bool,
}

/// A point as returned by reads.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Its id.
    pub id: PointId,
    /// Its score for a search (see `quiver_index::distance`), `None` for other reads.
    pub score: Option<f32>,
    /// Its vector, if asked for.
    pub vector: Option<Vec<f32>>,
    /// Its payload, if asked for and present.
    pub payload: Option<Value>,
}

/// A read-only view of one segment, mutable or not.
pub(super) struct SegView<'a> {
    pub(super) id: SegmentId,
    vectors: Vectors<'a>,
    pub(super) ids: &'a [PointId],
    pub(super) deleted: &'a RoaringBitmap,
    pub(super) payload_index: &'a PayloadIndex,
    index: Option<&'a IndexKind>,
}

impl State {
    pub(super) fn views(&self) -> Vec<SegView<'_>> {
        let mut v: Vec<SegView<'_>> = self
            .slots
            .values()
            .map(|s| SegView {
                id: s.data.id,
                vectors: s.data.vectors(),
                ids: &s.data.ids,
                deleted: &s.deleted,
                payload_index: &s.payload_index,
                index: Some(&s.data.index),
            })
            .collect();
        v.push(SegView {
            id: self.mutable.id,
            vectors: self.mutable.vectors(),
            ids: &self.mutable.ids,
            deleted: &self.mutable.deleted,
            payload_index: &self.mutable.payload_index,
            index: None,
        });
        v
    }

    fn view(&self, id: SegmentId) -> Option<SegView<'_>> {
        self.views().into_iter().find(|v| v.id == id)
    }
}

impl Collection {
    pub(super) fn check_k(&self, k: usize) -> Result<()> {
        if k == 0 || k > self.limits.max_k {
            return Err(StorageError::InvalidK {
                k,
                limit: self.limits.max_k,
            });
        }
        Ok(())
    }

    /// The offsets of `view` that match `filter` (deletions not removed).
    pub(super) fn filter_bitmap(
        &self,
        s: &State,
        view: &SegView<'_>,
        filter: &Filter,
    ) -> Result<RoaringBitmap> {
        let len = view.ids.len() as u32;
        if view.payload_index.can_serve(filter) {
            let has_id = |id: &PointId| {
                s.id_map
                    .get(id)
                    .filter(|l| l.segment == view.id)
                    .map(|l| l.offset)
            };
            return Ok(view.payload_index.filter_bitmap(filter, len, &has_id));
        }
        // Unindexed fields: read the live points' payloads and test each.
        let live: Vec<u32> = (0..len).filter(|o| !view.deleted.contains(*o)).collect();
        let mut out = RoaringBitmap::new();
        let null = Value::Null;
        for chunk in live.chunks(4096) {
            let payloads = self
                .db
                .payloads(self.id, chunk.iter().map(|o| &view.ids[*o as usize]))?;
            for (o, p) in chunk.iter().zip(&payloads) {
                if filter.matches(&view.ids[*o as usize], p.as_ref().unwrap_or(&null)) {
                    out.insert(*o);
                }
            }
        }
        Ok(out)
    }

    /// Runs several searches under one read lock; each result list is closest first.
    pub fn search_batch(&self, requests: &[SearchRequest<'_>]) -> Result<Vec<Vec<Record>>> {
        self.search_batch_until(requests, &AtomicBool::new(false))
    }

    /// [`Collection::search_batch`] that stops with [`StorageError::Cancelled`] once `cancel`
    /// is set (the caller's deadline passed). The read lock is taken per query, so a long batch
    /// never holds writers, or readers queued behind them, for its whole run.
    pub fn search_batch_until(
        &self,
        requests: &[SearchRequest<'_>],
        cancel: &AtomicBool,
    ) -> Result<Vec<Vec<Record>>> {
        let metric = self.config.read().metric;
        for (i, r) in requests.iter().enumerate() {
            self.check_vector(i, r.vector)?;
            self.check_k(r.k)?;
            if let Some(f) = r.filter {
                self.check_filter(f)?;
            }
        }
        let mut found = Vec::with_capacity(requests.len());
        for r in requests {
            if cancel.load(Ordering::Relaxed) {
                return Err(StorageError::Cancelled);
            }
            let s = self.state.read();
            let views = s.views();
            found.push(self.search_locked(&s, &views, metric, r)?);
        }
        found
            .into_iter()
            .zip(requests)
            .map(|(hits, r)| self.attach_payloads(hits, r.with_payload))
            .collect()
    }

    /// One search; results closest first.
    pub fn search(&self, request: &SearchRequest<'_>) -> Result<Vec<Record>> {
        Ok(self
            .search_batch(std::slice::from_ref(request))?
            .pop()
            .expect("one result per request"))
    }

    fn search_locked(
        &self,
        s: &State,
        views: &[SegView<'_>],
        metric: Metric,
        r: &SearchRequest<'_>,
    ) -> Result<Vec<Record>> {
        // Candidates from every segment, merged in one heap keyed by (view, offset).
        let mut top = TopK::new(r.k);
        let mut keys: Vec<(usize, u32)> = Vec::new();
        for (vi, view) in views.iter().enumerate() {
            let allowed = match r.filter {
                Some(f) => Some(self.filter_bitmap(s, view, f)?),
                None => None,
            };
            let pf = PointFilter {
                allowed: allowed.as_ref(),
                deleted: Some(view.deleted),
            };
            let hits = match view.index {
                Some(index) => {
                    let params = SearchParams {
                        exact: r.exact,
                        ef: r.ef,
                        nprobe: r.nprobe,
                        rerank: r.rerank,
                    };
                    index.search(view.vectors, metric, r.vector, r.k, &pf, params)
                }
                None => quiver_index::flat::exact_search(view.vectors, metric, r.vector, r.k, &pf),
            };
            for h in hits {
                top.push(h.distance, keys.len() as u32);
                keys.push((vi, h.key));
            }
        }
        Ok(top
            .into_sorted_vec()
            .into_iter()
            .map(|n| {
                let (vi, offset) = keys[n.key as usize];
                let view = &views[vi];
                Record {
                    id: view.ids[offset as usize].clone(),
                    score: Some(metric.score(n.distance)),
                    vector: r.with_vector.then(|| view.vectors.get(offset).to_vec()),
                    payload: None,
                }
            })
            .collect())
    }

    pub(super) fn attach_payloads(
        &self,
        mut records: Vec<Record>,
        with_payload: bool,
    ) -> Result<Vec<Record>> {
        if with_payload && !records.is_empty() {
            let payloads = self.db.payloads(self.id, records.iter().map(|r| &r.id))?;
            for (r, p) in records.iter_mut().zip(payloads) {
                r.payload = p;
            }
        }
        Ok(records)
    }

    /// The points with these ids that exist, in the order asked.
    pub fn get(
        &self,
        ids: &[PointId],
        with_vector: bool,
        with_payload: bool,
    ) -> Result<Vec<Record>> {
        self.check_ids(ids)?;
        let records: Vec<Record> = {
            let s = self.state.read();
            ids.iter()
                .filter_map(|id| {
                    let loc = s.id_map.get(id)?;
                    let view = s
                        .view(loc.segment)
                        .expect("id map points at a live segment");
                    Some(Record {
                        id: id.clone(),
                        score: None,
                        vector: with_vector.then(|| view.vectors.get(loc.offset).to_vec()),
                        payload: None,
                    })
                })
                .collect()
        };
        self.attach_payloads(records, with_payload)
    }

    /// A page of up to `limit` points in id order starting at `offset`, and the first id of
    /// the next page.
    pub fn scroll(
        &self,
        filter: Option<&Filter>,
        offset: Option<&PointId>,
        limit: usize,
        with_vector: bool,
        with_payload: bool,
    ) -> Result<(Vec<Record>, Option<PointId>)> {
        self.check_k(limit)?;
        if let Some(f) = filter {
            self.check_filter(f)?;
        }
        if let Some(o) = offset {
            o.validate()?;
        }
        let mut out = Vec::with_capacity(limit);
        let mut next = None;
        {
            let s = self.state.read();
            let range = match offset {
                Some(o) => s.id_map.range(o.clone()..),
                None => s.id_map.range(..),
            };
            let null = Value::Null;
            // Ids are taken in chunks so that filter payloads are read with one multi-get each.
            let mut iter = range.peekable();
            'outer: while iter.peek().is_some() {
                let chunk: Vec<_> = iter.by_ref().take(256).collect();
                let payloads = match filter {
                    Some(_) => self.db.payloads(self.id, chunk.iter().map(|(id, _)| *id))?,
                    None => Vec::new(),
                };
                for (i, (id, loc)) in chunk.iter().enumerate() {
                    if let Some(f) = filter {
                        if !f.matches(id, payloads[i].as_ref().unwrap_or(&null)) {
                            continue;
                        }
                    }
                    if out.len() == limit {
                        next = Some((*id).clone());
                        break 'outer;
                    }
                    let view = s
                        .view(loc.segment)
                        .expect("id map points at a live segment");
                    out.push(Record {
                        id: (*id).clone(),
                        score: None,
                        vector: with_vector.then(|| view.vectors.get(loc.offset).to_vec()),
                        payload: None,
                    });
                }
            }
        }
        Ok((self.attach_payloads(out, with_payload)?, next))
    }

    /// Live points, or live points matching `filter`.
    pub fn count(&self, filter: Option<&Filter>) -> Result<u64> {
        let s = self.state.read();
        let Some(f) = filter else {
            return Ok(s.id_map.len() as u64);
        };
        self.check_filter(f)?;
        let mut n = 0;
        for view in s.views() {
            n += (self.filter_bitmap(&s, &view, f)? - view.deleted).len();
        }
        Ok(n)
    }

    /// Ids of the live points matching `filter` (for delete by filter).
    pub fn matching_ids(&self, filter: &Filter) -> Result<Vec<PointId>> {
        self.check_filter(filter)?;
        let s = self.state.read();
        let mut out = Vec::new();
        for view in s.views() {
            let bm = self.filter_bitmap(&s, &view, filter)? - view.deleted;
            out.extend(bm.iter().map(|o| view.ids[o as usize].clone()));
        }
        Ok(out)
    }
}
