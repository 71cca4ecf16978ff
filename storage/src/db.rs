//! The RocksDB instance: column families, options, and payload reads.
//!
//! | column family | contents                                          |
//! |---------------|---------------------------------------------------|
//! | `default`     | manifests, deletion bitmaps, counters (`codec.rs`) |
//! | `wal`         | write-ahead log records (`wal.rs`)                 |
//! | `payload`     | one JSON payload per live point                    |

use crate::codec::payload_key;
use crate::error::{Result, StorageError};
use crate::types::{CollectionId, PointId};
use rocksdb::{
    ColumnFamily, ColumnFamilyDescriptor, DB, DBCompressionType, Options, WriteBatch, WriteOptions,
};
use serde_json::Value;
use std::path::Path;

const WAL_CF: &str = "wal";
const PAYLOAD_CF: &str = "payload";

/// RocksDB with Quiver's column families.
pub struct Db {
    rocks: DB,
}

impl Db {
    /// Opens (or creates) the database in `path`. RocksDB replays its own log here; a torn last
    /// record is dropped (point-in-time recovery), so what was synced is what comes back.
    pub fn open(path: &Path) -> Result<Db> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_wal_recovery_mode(rocksdb::DBRecoveryMode::PointInTime);
        opts.increase_parallelism(2);
        opts.set_max_total_wal_size(512 << 20);
        let mut wal = Options::default();
        // Vectors do not compress; the records are deleted soon after they are flushed.
        wal.set_compression_type(DBCompressionType::None);
        wal.set_write_buffer_size(128 << 20);
        let mut payload = Options::default();
        payload.set_compression_type(DBCompressionType::Lz4);
        let cfs = vec![
            ColumnFamilyDescriptor::new(WAL_CF, wal),
            ColumnFamilyDescriptor::new(PAYLOAD_CF, payload),
        ];
        let rocks = DB::open_cf_descriptors(&opts, path, cfs)?;
        Ok(Db { rocks })
    }

    /// The raw handle.
    pub fn rocks(&self) -> &DB {
        &self.rocks
    }

    /// The WAL column family.
    pub fn wal(&self) -> &ColumnFamily {
        self.rocks.cf_handle(WAL_CF).expect("created at open")
    }

    /// The payload column family.
    pub fn payload(&self) -> &ColumnFamily {
        self.rocks.cf_handle(PAYLOAD_CF).expect("created at open")
    }

    /// Writes a batch atomically; `sync` waits for fsync of RocksDB's log.
    pub fn write(&self, batch: WriteBatch, sync: bool) -> Result<()> {
        let mut wo = WriteOptions::default();
        wo.set_sync(sync);
        self.rocks.write_opt(batch, &wo)?;
        Ok(())
    }

    /// The payloads of these points, `None` where a point has none.
    pub fn payloads<'a>(
        &self,
        collection: CollectionId,
        ids: impl IntoIterator<Item = &'a PointId>,
    ) -> Result<Vec<Option<Value>>> {
        let keys: Vec<Vec<u8>> = ids
            .into_iter()
            .map(|id| payload_key(collection, id))
            .collect();
        let cf = self.payload();
        self.rocks
            .multi_get_cf(keys.iter().map(|k| (cf, k.as_slice())))
            .into_iter()
            .map(|r| match r? {
                None => Ok(None),
                Some(raw) => {
                    serde_json::from_slice(&raw)
                        .map(Some)
                        .map_err(|e| StorageError::Codec {
                            reason: format!("stored payload is not JSON: {e}"),
                        })
                }
            })
            .collect()
    }

    /// An integer RocksDB property summed over the WAL column family (for metrics).
    pub fn wal_bytes(&self) -> u64 {
        let cf = self.wal();
        [
            "rocksdb.total-sst-files-size",
            "rocksdb.cur-size-all-mem-tables",
        ]
        .iter()
        .filter_map(|p| self.rocks.property_int_value_cf(cf, *p).ok().flatten())
        .sum()
    }
}
