//! Full-text reads: BM25 over a text-indexed payload field, and writing a segment's text
//! indexes to files once the segment is sealed.

use super::{Collection, Slot};
use crate::error::{Result, StorageError};
use crate::filter::Filter;
use crate::payload_index::PayloadIndex;
use crate::text::{self, Bm25Params, TextIndex, TextSegment};
use crate::types::{FieldType, SegmentId};
use std::path::Path;
use std::sync::Arc;

use super::read::Record;

/// One BM25 search.
#[derive(Debug, Clone)]
pub struct TextSearchRequest<'a> {
    /// The query text (tokenised like the documents).
    pub query: &'a str,
    /// The text-indexed field; `None`: the collection's only text index, or `text`.
    pub field: Option<&'a str>,
    /// How many results.
    pub k: usize,
    /// Only points matching this.
    pub filter: Option<&'a Filter>,
    /// Return payloads.
    pub with_payload: bool,
}

/// A BM25 result: the point (score: BM25, higher is better) and how many of the query's
/// distinct terms it holds.
#[derive(Debug, Clone, PartialEq)]
pub struct TextRecord {
    /// The point.
    pub record: Record,
    /// Query terms (distinct) found in the point's text.
    pub matched_terms: u32,
}

impl Collection {
    /// The text-indexed field a request means, and its BM25 constants.
    pub fn text_field(&self, field: Option<&str>) -> Result<(String, Bm25Params)> {
        let c = self.config.read();
        let texts: Vec<&String> = c
            .field_indexes
            .iter()
            .filter(|(_, t)| *t == FieldType::Text)
            .map(|(f, _)| f)
            .collect();
        let chosen = match field {
            Some(f) => texts.iter().find(|t| t.as_str() == f).copied(),
            None if texts.len() == 1 => Some(texts[0]),
            None => texts.iter().find(|t| t.as_str() == "text").copied(),
        };
        match chosen {
            Some(f) => Ok((f.clone(), c.bm25.get(f).copied().unwrap_or_default())),
            None => Err(StorageError::NoTextIndex {
                collection: c.name.clone(),
                which: match field {
                    Some(f) => format!(" on field '{f}'"),
                    None if texts.is_empty() => String::new(),
                    None => " named 'text' (name the field: it has several)".into(),
                },
            }),
        }
    }

    /// True if some field has a text index.
    pub fn has_text_index(&self) -> bool {
        self.config
            .read()
            .field_indexes
            .iter()
            .any(|(_, t)| *t == FieldType::Text)
    }

    /// The best `k` points for a text query by BM25, best first. A query made only of stop words
    /// finds nothing.
    pub fn search_text(&self, r: &TextSearchRequest<'_>) -> Result<Vec<TextRecord>> {
        let (field, params) = self.text_field(r.field)?;
        self.check_k(r.k)?;
        if let Some(f) = r.filter {
            self.check_filter(f)?;
        }
        let terms = text::query_terms(r.query);
        let found = {
            let s = self.state.read();
            let views = s.views();
            let mut allowed = Vec::with_capacity(views.len());
            for v in &views {
                allowed.push(match r.filter {
                    Some(f) => Some(self.filter_bitmap(&s, v, f)?),
                    None => None,
                });
            }
            let empty = TextIndex::default();
            let segs: Vec<TextSegment<'_>> = views
                .iter()
                .zip(&allowed)
                .map(|(v, a)| TextSegment {
                    // A segment frozen before the index existed got it from create_field_index.
                    index: v.payload_index.text(&field).unwrap_or(&empty),
                    deleted: v.deleted,
                    allowed: a.as_ref(),
                })
                .collect();
            text::bm25_top_k(&segs, &terms, params, r.k)
                .into_iter()
                .map(|h| {
                    let rec = Record {
                        id: views[h.segment].ids[h.offset as usize].clone(),
                        score: Some(h.score),
                        vector: None,
                        payload: None,
                    };
                    (rec, h.matched_terms)
                })
                .collect::<Vec<_>>()
        };
        let (records, matched): (Vec<Record>, Vec<u32>) = found.into_iter().unzip();
        let records = self.attach_payloads(records, r.with_payload)?;
        Ok(records
            .into_iter()
            .zip(matched)
            .map(|(record, matched_terms)| TextRecord {
                record,
                matched_terms,
            })
            .collect())
    }
}

/// The bodies of a segment's in-memory text indexes, to be written once it has a folder.
pub(super) fn mem_bodies(pidx: &PayloadIndex, count: usize) -> Vec<(String, Vec<u8>)> {
    pidx.mem_texts()
        .map(|(f, m)| (f.to_string(), m.to_bytes(f, count)))
        .collect()
}

/// Writes text index bodies into segment folder `dir` and returns their frozen forms.
pub(super) fn write_bodies(
    dir: &Path,
    id: SegmentId,
    dim: usize,
    count: usize,
    bodies: Vec<(String, Vec<u8>)>,
) -> Result<Vec<(String, TextIndex)>> {
    bodies
        .into_iter()
        .map(|(f, body)| {
            let frozen = text::persist(dir, id, dim, count, &f, body)?;
            Ok((f, TextIndex::Frozen(Arc::new(frozen))))
        })
        .collect()
}

/// Writes a sealed slot's in-memory text indexes to its folder and swaps in the frozen forms.
pub(super) fn seal_texts(slot: &mut Slot) -> Result<()> {
    let Some((dir, _)) = slot.data.disk.clone() else {
        return Ok(());
    };
    let count = slot.data.len();
    let bodies = mem_bodies(&slot.payload_index, count);
    for (f, t) in write_bodies(&dir, slot.data.id, slot.data.dim, count, bodies)? {
        slot.payload_index.set_text(&f, t);
    }
    Ok(())
}
