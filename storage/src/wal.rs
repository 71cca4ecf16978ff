//! Write-ahead log records. The log itself is RocksDB's `wal` column family (see `codec.rs` for
//! keys); RocksDB's own log, synced on commit, is what makes a record durable.
//!
//! Record layout (little-endian):
//!
//! ```text
//! crc32 u32 (of everything after it) | version u8 = 1 | op u8 | body
//! op 1 = upsert: count u32 | dim u32 | count × (point id | dim × f32)
//! op 2 = delete: count u32 | count × point id
//! ```
//! Payloads are not in the record: they are written to the payload column family in the same
//! atomic RocksDB batch.

use crate::codec::{Reader, put_f32s, put_point_id};
use crate::error::{Result, StorageError};
use crate::types::PointId;

const VERSION: u8 = 1;
const OP_UPSERT: u8 = 1;
const OP_DELETE: u8 = 2;

/// One logged write.
#[derive(Debug, Clone, PartialEq)]
pub enum WalOp {
    /// Insert or replace points. Layout of `vectors`: `(ids.len(), dim)`.
    Upsert {
        /// The points' ids.
        ids: Vec<PointId>,
        /// Their vectors back to back.
        vectors: Vec<f32>,
        /// The dimension of each vector.
        dim: usize,
    },
    /// Delete points.
    Delete {
        /// The ids to delete; unknown ones are ignored.
        ids: Vec<PointId>,
    },
}

/// Encodes an upsert record from borrowed parts. Layout of `vectors`: `(ids.len(), dim)`.
pub fn encode_upsert(ids: &[PointId], vectors: &[f32], dim: usize) -> Vec<u8> {
    let mut body = Vec::with_capacity(10 + vectors.len() * 4 + ids.len() * 9);
    body.extend_from_slice(&[VERSION, OP_UPSERT]);
    body.extend_from_slice(&(ids.len() as u32).to_le_bytes());
    body.extend_from_slice(&(dim as u32).to_le_bytes());
    for (id, v) in ids.iter().zip(vectors.chunks_exact(dim)) {
        put_point_id(&mut body, id);
        put_f32s(&mut body, v);
    }
    seal(body)
}

/// Encodes a delete record.
pub fn encode_delete(ids: &[PointId]) -> Vec<u8> {
    let mut body = vec![VERSION, OP_DELETE];
    body.extend_from_slice(&(ids.len() as u32).to_le_bytes());
    for id in ids {
        put_point_id(&mut body, id);
    }
    seal(body)
}

/// Prefixes the body with its checksum.
fn seal(body: Vec<u8>) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 4);
    out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

impl WalOp {
    /// Encodes the record with its checksum.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            WalOp::Upsert { ids, vectors, dim } => encode_upsert(ids, vectors, *dim),
            WalOp::Delete { ids } => encode_delete(ids),
        }
    }

    /// Decodes a record, checking its checksum and every length against the bytes present.
    pub fn decode(raw: &[u8]) -> Result<WalOp> {
        let mut r = Reader::new(raw);
        let crc = r.u32("checksum")?;
        let body = &raw[4..];
        if crc32fast::hash(body) != crc {
            return Err(StorageError::Codec {
                reason: "WAL record checksum mismatch".into(),
            });
        }
        let mut r = Reader::new(body);
        let version = r.u8("version")?;
        if version != VERSION {
            return Err(StorageError::Codec {
                reason: format!("unknown WAL record version {version}"),
            });
        }
        let op = match r.u8("op")? {
            OP_UPSERT => {
                let count = r.u32("count")? as usize;
                let dim = r.u32("dimension")? as usize;
                // Each point needs at least 5 bytes for its id (tag and length) plus its vector.
                let per_point = 5usize.saturating_add(dim.saturating_mul(4));
                if dim == 0 || count.saturating_mul(per_point) > r.remaining() {
                    return Err(StorageError::Codec {
                        reason: format!("upsert of {count} × {dim} does not fit the record"),
                    });
                }
                let mut ids = Vec::with_capacity(count);
                let mut vectors = Vec::with_capacity(count * dim);
                for _ in 0..count {
                    ids.push(r.point_id()?);
                    vectors.extend(r.f32s(dim, "vector")?);
                }
                WalOp::Upsert { ids, vectors, dim }
            }
            OP_DELETE => {
                let count = r.u32("count")? as usize;
                if count.saturating_mul(5) > r.remaining() {
                    return Err(StorageError::Codec {
                        reason: format!("delete of {count} ids does not fit the record"),
                    });
                }
                let ids = (0..count).map(|_| r.point_id()).collect::<Result<_>>()?;
                WalOp::Delete { ids }
            }
            op => {
                return Err(StorageError::Codec {
                    reason: format!("unknown WAL op {op}"),
                });
            }
        };
        if r.remaining() != 0 {
            return Err(StorageError::Codec {
                reason: format!("{} stray bytes after the WAL record", r.remaining()),
            });
        }
        Ok(op)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip() {
        let ops = [
            WalOp::Upsert {
                ids: vec![PointId::Num(1), PointId::Text("a".into())],
                vectors: vec![1.0, 2.0, 3.0, 4.0],
                dim: 2,
            },
            WalOp::Delete {
                ids: vec![PointId::Num(3)],
            },
        ];
        for op in ops {
            assert_eq!(WalOp::decode(&op.encode()).unwrap(), op);
        }
    }

    proptest! {
        #[test]
        fn garbage_never_panics(raw in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = WalOp::decode(&raw);
        }

        #[test]
        fn any_flipped_byte_is_detected(pos in 0usize..40, bit in 0u8..8) {
            let op = WalOp::Upsert { ids: vec![PointId::Num(5)], vectors: vec![0.5; 6], dim: 6 };
            let mut raw = op.encode();
            let pos = pos % raw.len();
            raw[pos] ^= 1 << bit;
            prop_assert!(WalOp::decode(&raw).is_err());
        }
    }
}
