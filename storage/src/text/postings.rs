//! One segment's inverted index over one text field: postings `(offset, term frequency)` per
//! term, and each point's length in tokens. Built in memory ([`MemText`]) while a segment takes
//! writes, then frozen into the file format below and read back from mmap ([`FrozenText`]).
//!
//! Body of `text-{crc32 of the field name, 8 hex digits}.bin` (after the segment file header,
//! whose count is the segment's point count; every section starts 4-byte aligned):
//!
//! ```text
//! field_len u32 | field UTF-8 | zero padding to 4
//! n_terms u32 | n_postings u32 | total_len u64 | docs u32 | zero u32
//! doc_len      : count × u32               tokens of each point (0: field absent or empty)
//! term_start   : (n_terms + 1) × u32       byte ranges in term_bytes, terms sorted bytewise
//! post_start   : (n_terms + 1) × u32       ranges in postings, in entries
//! postings     : n_postings × (offset u32, tf u32), offsets ascending within a term
//! term_bytes   : the terms' UTF-8, back to back
//! ```

use super::tokenize::for_each_token;
use crate::error::{Result, StorageError};
use memmap2::Mmap;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The postings of one term: `(offset, tf)` pairs, offsets ascending. Layout: (n, 2) u32.
pub type Postings<'a> = &'a [[u32; 2]];

/// An inverted index being built, in memory.
#[derive(Debug, Clone, Default)]
pub struct MemText {
    terms: HashMap<String, Vec<[u32; 2]>>,
    /// Tokens per offset; offsets past the end have none.
    doc_len: Vec<u32>,
    total_len: u64,
    docs: u32,
}

impl MemText {
    /// Adds the tokens of `text` for the point at `offset`. Offsets must come in ascending
    /// order (they do: a segment only appends); a point's texts (an array field) add up.
    pub fn add(&mut self, offset: u32, text: &str) {
        let mut counts: HashMap<String, u32> = HashMap::new();
        let mut n = 0u32;
        for_each_token(text, |t| {
            n += 1;
            match counts.get_mut(t) {
                Some(c) => *c += 1,
                None => {
                    counts.insert(t.to_string(), 1);
                }
            }
        });
        if n == 0 {
            return;
        }
        let o = offset as usize;
        if self.doc_len.len() <= o {
            self.doc_len.resize(o + 1, 0);
        }
        if self.doc_len[o] == 0 {
            self.docs += 1;
        }
        self.doc_len[o] += n;
        self.total_len += u64::from(n);
        for (term, tf) in counts {
            let list = self.terms.entry(term).or_default();
            match list.last_mut() {
                Some(last) if last[0] == offset => last[1] += tf,
                _ => list.push([offset, tf]),
            }
        }
    }

    /// Approximate heap bytes.
    pub fn memory_bytes(&self) -> usize {
        self.terms
            .iter()
            .map(|(t, p)| t.len() + 48 + p.capacity() * 8)
            .sum::<usize>()
            + self.doc_len.capacity() * 4
    }

    /// The file body for a segment of `count` points (see the module docs).
    pub fn to_bytes(&self, field: &str, count: usize) -> Vec<u8> {
        let mut terms: Vec<(&String, &Vec<[u32; 2]>)> = self.terms.iter().collect();
        terms.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        let n_postings: usize = terms.iter().map(|(_, p)| p.len()).sum();
        let mut out = Vec::with_capacity(32 + field.len() + count * 4 + n_postings * 8);
        let u32s = |out: &mut Vec<u8>, v: u32| out.extend_from_slice(&v.to_le_bytes());
        u32s(&mut out, field.len() as u32);
        out.extend_from_slice(field.as_bytes());
        while out.len() % 4 != 0 {
            out.push(0);
        }
        u32s(&mut out, terms.len() as u32);
        u32s(&mut out, n_postings as u32);
        out.extend_from_slice(&self.total_len.to_le_bytes());
        u32s(&mut out, self.docs);
        u32s(&mut out, 0);
        for o in 0..count {
            u32s(&mut out, self.doc_len.get(o).copied().unwrap_or(0));
        }
        let mut at = 0u32;
        u32s(&mut out, 0);
        for (t, _) in &terms {
            at += t.len() as u32;
            u32s(&mut out, at);
        }
        let mut at = 0u32;
        u32s(&mut out, 0);
        for (_, p) in &terms {
            at += p.len() as u32;
            u32s(&mut out, at);
        }
        for (_, p) in &terms {
            for [o, tf] in p.iter() {
                u32s(&mut out, *o);
                u32s(&mut out, *tf);
            }
        }
        for (t, _) in &terms {
            out.extend_from_slice(t.as_bytes());
        }
        out
    }
}

/// A frozen inverted index, read from its file through mmap. Every range was checked at open.
#[derive(Debug)]
pub struct FrozenText {
    map: Mmap,
    doc_len: (usize, usize),
    term_start: (usize, usize),
    post_start: (usize, usize),
    postings: (usize, usize),
    term_bytes: (usize, usize),
    total_len: u64,
    docs: u32,
}

fn u32_slice(raw: &[u8]) -> &[u32] {
    bytemuck::cast_slice(raw)
}

impl FrozenText {
    /// Checks and indexes the body of a text file. `body` is `map[body_at..body_end]`.
    pub(crate) fn open(
        map: Mmap,
        body_at: usize,
        body_end: usize,
        path: &Path,
        field: &str,
        count: usize,
    ) -> Result<Self> {
        let bad = |reason: &str| StorageError::Corrupted {
            path: PathBuf::from(path),
            reason: reason.to_string(),
        };
        let mut at = body_at;
        let take = |at: &mut usize, n: usize| -> Result<(usize, usize)> {
            let end = at
                .checked_add(n)
                .filter(|e| *e <= body_end)
                .ok_or_else(|| bad("a section runs past the end of the file"))?;
            let r = (*at, end);
            *at = end;
            Ok(r)
        };
        let word = |map: &Mmap, r: (usize, usize)| {
            u32::from_le_bytes(map[r.0..r.0 + 4].try_into().expect("4 bytes"))
        };
        let flen = word(&map, take(&mut at, 4)?) as usize;
        let fname = take(&mut at, flen)?;
        if &map[fname.0..fname.1] != field.as_bytes() {
            return Err(bad("the file indexes another field"));
        }
        take(&mut at, (4 - flen % 4) % 4)?;
        let n_terms = word(&map, take(&mut at, 4)?) as usize;
        let n_postings = word(&map, take(&mut at, 4)?) as usize;
        let tl = take(&mut at, 8)?;
        let total_len = u64::from_le_bytes(map[tl.0..tl.1].try_into().expect("8 bytes"));
        let docs = word(&map, take(&mut at, 4)?);
        take(&mut at, 4)?;
        let too_big = || bad("a count overflows");
        let doc_len = take(&mut at, count.checked_mul(4).ok_or_else(too_big)?)?;
        let term_start = take(&mut at, (n_terms + 1).checked_mul(4).ok_or_else(too_big)?)?;
        let post_start = take(&mut at, (n_terms + 1).checked_mul(4).ok_or_else(too_big)?)?;
        let postings = take(&mut at, n_postings.checked_mul(8).ok_or_else(too_big)?)?;
        let term_bytes = (at, body_end);
        let t = FrozenText {
            map,
            doc_len,
            term_start,
            post_start,
            postings,
            term_bytes,
            total_len,
            docs,
        };
        // Every later access indexes these arrays without checks: validate them once.
        let ts = t.words(t.term_start);
        let ps = t.words(t.post_start);
        let monotone = |s: &[u32], last: usize| {
            s.first() == Some(&0)
                && s.windows(2).all(|w| w[0] <= w[1])
                && s.last().copied() == Some(last as u32)
        };
        if !monotone(ts, term_bytes.1 - term_bytes.0) || !monotone(ps, n_postings) {
            return Err(bad("term or posting ranges are out of order"));
        }
        let tb = &t.map[term_bytes.0..term_bytes.1];
        for i in 0..n_terms {
            let term = &tb[ts[i] as usize..ts[i + 1] as usize];
            if std::str::from_utf8(term).is_err() {
                return Err(bad("a term is not UTF-8"));
            }
            if i > 0 && tb[ts[i - 1] as usize..ts[i] as usize] >= *term {
                return Err(bad("terms are not sorted"));
            }
        }
        let dl = t.words(t.doc_len);
        let sum: u64 = dl.iter().map(|x| u64::from(*x)).sum();
        let nz = dl.iter().filter(|x| **x > 0).count();
        if sum != total_len || nz != docs as usize {
            return Err(bad("document lengths do not add up"));
        }
        for i in 0..n_terms {
            let p = t.postings_at(i);
            if p.iter().any(|[o, tf]| *o as usize >= count || *tf == 0)
                || p.windows(2).any(|w| w[0][0] >= w[1][0])
            {
                return Err(bad("a posting list is out of range or out of order"));
            }
        }
        Ok(t)
    }

    fn words(&self, r: (usize, usize)) -> &[u32] {
        u32_slice(&self.map[r.0..r.1])
    }

    fn postings_at(&self, i: usize) -> Postings<'_> {
        let ps = self.words(self.post_start);
        let all: &[[u32; 2]] = bytemuck::cast_slice(&self.map[self.postings.0..self.postings.1]);
        &all[ps[i] as usize..ps[i + 1] as usize]
    }

    /// Mapped bytes.
    pub fn file_bytes(&self) -> usize {
        self.map.len()
    }
}

/// One segment's text index over one field, building or frozen.
#[derive(Debug, Clone)]
pub enum TextIndex {
    /// In memory; takes new points.
    Mem(MemText),
    /// Read from its file; immutable.
    Frozen(std::sync::Arc<FrozenText>),
}

impl Default for TextIndex {
    fn default() -> Self {
        TextIndex::Mem(MemText::default())
    }
}

impl TextIndex {
    /// The postings of `term`, if any point holds it.
    pub fn postings(&self, term: &str) -> Option<Postings<'_>> {
        match self {
            TextIndex::Mem(m) => m.terms.get(term).map(|v| &v[..]),
            TextIndex::Frozen(f) => {
                let ts = f.words(f.term_start);
                let tb = &f.map[f.term_bytes.0..f.term_bytes.1];
                let n = ts.len() - 1;
                let (mut lo, mut hi) = (0usize, n);
                while lo < hi {
                    let mid = (lo + hi) / 2;
                    let t = &tb[ts[mid] as usize..ts[mid + 1] as usize];
                    match t.cmp(term.as_bytes()) {
                        std::cmp::Ordering::Less => lo = mid + 1,
                        std::cmp::Ordering::Greater => hi = mid,
                        std::cmp::Ordering::Equal => return Some(f.postings_at(mid)),
                    }
                }
                None
            }
        }
    }

    /// Tokens of the point at `offset` (0 when it has none).
    pub fn doc_len(&self, offset: u32) -> u32 {
        match self {
            TextIndex::Mem(m) => m.doc_len.get(offset as usize).copied().unwrap_or(0),
            TextIndex::Frozen(f) => f
                .words(f.doc_len)
                .get(offset as usize)
                .copied()
                .unwrap_or(0),
        }
    }

    /// Points holding at least one token, and their tokens in all (deleted ones included).
    pub fn totals(&self) -> (u64, u64) {
        match self {
            TextIndex::Mem(m) => (u64::from(m.docs), m.total_len),
            TextIndex::Frozen(f) => (u64::from(f.docs), f.total_len),
        }
    }

    /// Heap bytes (in memory) or mapped bytes (frozen).
    pub fn memory_bytes(&self) -> usize {
        match self {
            TextIndex::Mem(m) => m.memory_bytes(),
            TextIndex::Frozen(f) => f.file_bytes(),
        }
    }
}
