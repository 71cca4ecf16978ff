//! Little binary helpers: a bounds-checked reader, a writer, and the RocksDB key layouts.
//!
//! Keys are big-endian so that RocksDB's byte order is numeric order:
//!
//! ```text
//! wal CF      : collection_id u64 BE | seq u64 BE                 -> WAL record (wal.rs)
//! payload CF  : collection_id u64 BE | point key                  -> payload JSON text
//! default CF  : "manifest/" collection_id u64 BE                  -> manifest JSON
//!               "deleted/" collection_id u64 BE | segment u64 BE  -> roaring bitmap bytes
//!               "next_collection_id"                              -> u64 BE
//! point key   : 0x00 | u64 BE   (numeric id)
//!               0x01 | UTF-8 bytes (string id)
//! ```

use crate::error::{Result, StorageError};
use crate::types::{CollectionId, PointId, SegmentId, SeqNo};

/// Reads little-endian values from a byte slice, failing cleanly past its end.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

fn short(what: &str) -> StorageError {
    StorageError::Codec {
        reason: format!("record ends inside {what}"),
    }
}

impl<'a> Reader<'a> {
    /// A reader at the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// The next `n` bytes.
    pub fn bytes(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        if self.remaining() < n {
            return Err(short(what));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// One byte.
    pub fn u8(&mut self, what: &str) -> Result<u8> {
        Ok(self.bytes(1, what)?[0])
    }

    /// A little-endian u32.
    pub fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(
            self.bytes(4, what)?.try_into().expect("4 bytes"),
        ))
    }

    /// A little-endian u64.
    pub fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(
            self.bytes(8, what)?.try_into().expect("8 bytes"),
        ))
    }

    /// `n` little-endian f32 values.
    pub fn f32s(&mut self, n: usize, what: &str) -> Result<Vec<f32>> {
        let raw = self.bytes(n.checked_mul(4).ok_or_else(|| short(what))?, what)?;
        Ok(raw
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect())
    }

    /// A point id as written by [`put_point_id`].
    pub fn point_id(&mut self) -> Result<PointId> {
        match self.u8("point id tag")? {
            0 => Ok(PointId::Num(self.u64("numeric id")?)),
            1 => {
                let n = self.u32("string id length")? as usize;
                let raw = self.bytes(n, "string id")?;
                let s = std::str::from_utf8(raw).map_err(|e| StorageError::Codec {
                    reason: format!("string id is not UTF-8: {e}"),
                })?;
                Ok(PointId::Text(s.to_string()))
            }
            t => Err(StorageError::Codec {
                reason: format!("unknown point id tag {t}"),
            }),
        }
    }
}

/// Appends a point id: a tag byte, then a u64 or a length-prefixed string.
pub fn put_point_id(out: &mut Vec<u8>, id: &PointId) {
    match id {
        PointId::Num(n) => {
            out.push(0);
            out.extend_from_slice(&n.to_le_bytes());
        }
        PointId::Text(s) => {
            out.push(1);
            out.extend_from_slice(&(s.len() as u32).to_le_bytes());
            out.extend_from_slice(s.as_bytes());
        }
    }
}

/// Appends f32 values, little-endian.
pub fn put_f32s(out: &mut Vec<u8>, v: &[f32]) {
    out.reserve(v.len() * 4);
    for x in v {
        out.extend_from_slice(&x.to_le_bytes());
    }
}

/// The WAL key of a write.
pub fn wal_key(c: CollectionId, seq: SeqNo) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&c.0.to_be_bytes());
    k[8..].copy_from_slice(&seq.0.to_be_bytes());
    k
}

/// Splits a WAL key into its collection and sequence number.
pub fn parse_wal_key(k: &[u8]) -> Result<(CollectionId, SeqNo)> {
    if k.len() != 16 {
        return Err(StorageError::Codec {
            reason: format!("WAL key of {} bytes", k.len()),
        });
    }
    let c = u64::from_be_bytes(k[..8].try_into().expect("8 bytes"));
    let s = u64::from_be_bytes(k[8..].try_into().expect("8 bytes"));
    Ok((CollectionId(c), SeqNo(s)))
}

/// The prefix under which every key of a collection sits (WAL and payload CFs).
pub fn collection_prefix(c: CollectionId) -> [u8; 8] {
    c.0.to_be_bytes()
}

/// The payload key of a point.
pub fn payload_key(c: CollectionId, id: &PointId) -> Vec<u8> {
    let mut k = Vec::with_capacity(17);
    k.extend_from_slice(&c.0.to_be_bytes());
    match id {
        PointId::Num(n) => {
            k.push(0);
            k.extend_from_slice(&n.to_be_bytes());
        }
        PointId::Text(s) => {
            k.push(1);
            k.extend_from_slice(s.as_bytes());
        }
    }
    k
}

/// The manifest key of a collection.
pub fn manifest_key(c: CollectionId) -> Vec<u8> {
    let mut k = b"manifest/".to_vec();
    k.extend_from_slice(&c.0.to_be_bytes());
    k
}

/// Prefix of all manifest keys.
pub const MANIFEST_PREFIX: &[u8] = b"manifest/";

/// The key of a segment's persisted deletion bitmap.
pub fn deleted_key(c: CollectionId, s: SegmentId) -> Vec<u8> {
    let mut k = deleted_prefix(c);
    k.extend_from_slice(&s.0.to_be_bytes());
    k
}

/// Prefix of a collection's deletion bitmap keys.
pub fn deleted_prefix(c: CollectionId) -> Vec<u8> {
    let mut k = b"deleted/".to_vec();
    k.extend_from_slice(&c.0.to_be_bytes());
    k
}

/// Key of the counter of collection ids.
pub const NEXT_COLLECTION_ID_KEY: &[u8] = b"next_collection_id";

/// The key just past every key starting with `prefix` (for range deletes and scans).
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0xff; prefix.len() + 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn point_ids_round_trip_and_truncation_fails_cleanly() {
        let ids = [PointId::Num(u64::MAX), PointId::Text("é-uuid".into())];
        let mut buf = Vec::new();
        for id in &ids {
            put_point_id(&mut buf, id);
        }
        let mut r = Reader::new(&buf);
        assert_eq!(r.point_id().unwrap(), ids[0]);
        assert_eq!(r.point_id().unwrap(), ids[1]);
        for cut in 0..buf.len() {
            let mut r = Reader::new(&buf[..cut]);
            let ok = r.point_id().and_then(|_| r.point_id());
            assert!(ok.is_err(), "cut at {cut} decoded");
        }
    }

    #[test]
    fn keys_sort_numerically() {
        let c = CollectionId(1);
        assert!(wal_key(c, SeqNo(255)) < wal_key(c, SeqNo(256)));
        assert!(payload_key(c, &PointId::Num(9)) < payload_key(c, &PointId::Num(10)));
        assert_eq!(prefix_end(&[1, 0xff]), vec![2]);
        assert_eq!(parse_wal_key(&wal_key(c, SeqNo(7))).unwrap(), (c, SeqNo(7)));
    }
}
