//! Quiver's storage engine: collections, the RocksDB write-ahead log, segments, payloads,
//! flush, compaction and recovery. Knows nothing of gRPC or async.
//!
//! ```text
//! write: validate ─► writer thread ─► RocksDB batch {WAL record, payloads} (synced) ─► mutable segment
//! flush: mutable full ─► freeze ─► segment files (tmp, fsync, rename) ─► manifest + WAL truncation (one batch)
//! read : filter ─► bitmap per segment ─► index search per segment ─► merge top-k ─► payloads
//! start: manifests ─► open segments (checksums) ─► deletion bitmaps ─► replay WAL after flushed seq
//! ```
//!
//! | file               | what it holds                                                   |
//! |--------------------|-----------------------------------------------------------------|
//! | `engine.rs`        | [`Storage`]: open and recovery, writer (group commit), maintenance |
//! | `collection/`      | [`Collection`]: state, reads, flush, compaction, manifest         |
//! | `segment/`         | mutable and sealed segments, the segment file format, index files |
//! | `wal.rs`           | WAL record encoding                                              |
//! | `snapshot.rs`      | one-file snapshots at a consistent point, and restore            |
//! | `db.rs`            | RocksDB column families                                          |
//! | `codec.rs`         | binary readers and writers, RocksDB key layouts                  |
//! | `filter.rs`        | the filter tree and its evaluation on one point                  |
//! | `payload_index.rs` | keyword and numeric payload indexes as roaring bitmaps           |
//! | `text/`            | full-text (BM25) indexes: tokenizer, postings files, scoring      |
//! | `types.rs`         | ids, sequence numbers, collection settings, limits               |
//! | `error.rs`         | [`StorageError`]                                                 |

#![warn(missing_docs)]
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod codec;
pub mod collection;
pub mod db;
pub mod engine;
pub mod error;
pub mod filter;
pub mod payload_index;
pub mod segment;
pub mod snapshot;
pub mod text;
pub mod types;
pub mod wal;

pub use collection::{
    Collection, CollectionStats, Record, SearchRequest, TextRecord, TextSearchRequest, UpsertBatch,
};
pub use engine::{EngineStats, Storage, StorageOptions, WriteOutcome};
pub use error::{Result, StorageError};
pub use filter::{Condition, Filter, MatchValue, Range};
pub use quiver_index::Metric;
pub use snapshot::SnapshotInfo;
pub use types::{CollectionConfig, Durability, FieldType, IndexSpec, Limits, PointId, SeqNo};
