//! The storage crate's one error type. The server maps each variant to a gRPC status in one place.

use std::path::PathBuf;

/// Everything that can go wrong in storage, with the facts needed to act on it.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// No collection by that name.
    #[error("collection '{name}' does not exist")]
    CollectionNotFound {
        /// The name asked for.
        name: String,
    },
    /// The name is taken.
    #[error("collection '{name}' already exists")]
    CollectionExists {
        /// The name asked for.
        name: String,
    },
    /// The collection's files are damaged; it is refused rather than served wrong.
    #[error("collection '{name}' is unavailable: {reason}")]
    CollectionUnavailable {
        /// The collection.
        name: String,
        /// What was found, naming the file.
        reason: String,
    },
    /// A vector of the wrong length.
    #[error("vector {index} has dimension {got}, the collection expects {expected}")]
    WrongDimension {
        /// Position of the vector in the request.
        index: usize,
        /// The collection's dimension.
        expected: usize,
        /// The vector's length.
        got: usize,
    },
    /// NaN or infinity in a vector.
    #[error("vector {index} holds a NaN or infinite value at position {position}")]
    NonFiniteValue {
        /// Position of the vector in the request.
        index: usize,
        /// Position of the bad value inside the vector.
        position: usize,
    },
    /// A zero vector in a cosine collection has no direction.
    #[error("vector {index} is all zeros, which has no direction under the cosine metric")]
    ZeroVector {
        /// Position of the vector in the request.
        index: usize,
    },
    /// An id that is empty, too long or otherwise malformed.
    #[error("invalid point id: {reason}")]
    InvalidId {
        /// What is wrong with it.
        reason: String,
    },
    /// The same id twice in one batch.
    #[error("point id {id} appears more than once in the batch")]
    DuplicateId {
        /// The repeated id.
        id: String,
    },
    /// A request with nothing in it.
    #[error("{what} is empty")]
    Empty {
        /// What was empty.
        what: &'static str,
    },
    /// A batch over the limit.
    #[error("batch of {size} exceeds the limit of {limit}")]
    BatchTooLarge {
        /// The batch's size.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// A payload over the limit.
    #[error("payload of point {index} is {size} bytes, over the limit of {limit}")]
    PayloadTooLarge {
        /// Position of the point in the request.
        index: usize,
        /// The payload's size in bytes.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// A payload that is not a JSON object.
    #[error("payload of point {index} is not a JSON object: {reason}")]
    InvalidPayload {
        /// Position of the point in the request.
        index: usize,
        /// The parser's complaint.
        reason: String,
    },
    /// A filter that cannot be evaluated.
    #[error("invalid filter: {reason}")]
    InvalidFilter {
        /// What is wrong with it.
        reason: String,
    },
    /// `k` of zero or above the limit.
    #[error("k = {k} is out of range (1..={limit})")]
    InvalidK {
        /// The k asked for.
        k: usize,
        /// The configured limit.
        limit: usize,
    },
    /// Collection settings that do not make sense.
    #[error("invalid collection settings: {reason}")]
    InvalidConfig {
        /// What is wrong.
        reason: String,
    },
    /// A text search on a collection without a suitable text index.
    #[error(
        "collection '{collection}' has no text index{which}; create one with a field index of type text (`quiver collection index {collection} FIELD --type text`)"
    )]
    NoTextIndex {
        /// The collection.
        collection: String,
        /// Which index was missing, as a phrase (" on field 'x'"), or empty.
        which: String,
    },
    /// A feature that is specified but not built yet.
    #[error("not implemented yet: {what}")]
    Unimplemented {
        /// The missing feature.
        what: String,
    },
    /// Training or building a segment's index failed (the segment is not flushed; the
    /// maintenance thread retries).
    #[error("building the segment index failed: {0}")]
    IndexBuild(#[from] quiver_index::ivfpq::IvfPqError),
    /// A file whose bytes are not what was written.
    #[error("corrupted file {path}: {reason}")]
    Corrupted {
        /// The damaged file.
        path: PathBuf,
        /// What the check found.
        reason: String,
    },
    /// A log or stored record that does not decode.
    #[error("undecodable record: {reason}")]
    Codec {
        /// What the decoder found.
        reason: String,
    },
    /// A file-system error, with the path it happened on.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// RocksDB refused a read or a write (disk full, fsync failure, ...).
    #[error("RocksDB: {0}")]
    Rocks(#[from] rocksdb::Error),
    /// The caller gave up (its deadline passed) before the work was done.
    #[error("cancelled: the request's deadline passed")]
    Cancelled,
    /// The storage engine is shutting down and takes no more work.
    #[error("storage is shutting down")]
    ShuttingDown,
}

/// Shorthand for results in this crate.
pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// Attaches a path to an I/O error.
pub(crate) fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> StorageError {
    let path = path.into();
    move |source| StorageError::Io { path, source }
}
