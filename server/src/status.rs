//! The one map from storage errors to gRPC status codes. Exhaustive on purpose: a new error
//! variant does not compile until it is given a code here.

use quiver_storage::StorageError;
use tonic::{Code, Status};

/// The gRPC status for a storage error, with its message.
pub fn to_status(e: StorageError) -> Status {
    use StorageError as E;
    let code = match &e {
        E::CollectionNotFound { .. } => Code::NotFound,
        E::CollectionExists { .. } => Code::AlreadyExists,
        E::CollectionUnavailable { .. } | E::Corrupted { .. } => Code::DataLoss,
        E::WrongDimension { .. }
        | E::NonFiniteValue { .. }
        | E::ZeroVector { .. }
        | E::InvalidId { .. }
        | E::DuplicateId { .. }
        | E::Empty { .. }
        | E::InvalidPayload { .. }
        | E::InvalidFilter { .. }
        | E::InvalidK { .. }
        | E::InvalidConfig { .. } => Code::InvalidArgument,
        E::BatchTooLarge { .. } | E::PayloadTooLarge { .. } => Code::ResourceExhausted,
        E::Unimplemented { .. } => Code::Unimplemented,
        E::NoTextIndex { .. } => Code::FailedPrecondition,
        E::Codec { .. } | E::Io { .. } | E::IndexBuild(_) => Code::Internal,
        E::Rocks(_) | E::ShuttingDown => Code::Unavailable,
        E::Cancelled => Code::DeadlineExceeded,
    };
    if matches!(code, Code::Internal | Code::Unavailable | Code::DataLoss) {
        tracing::error!(error = %e, "request failed");
    }
    Status::new(code, e.to_string())
}

/// The gRPC status for a model error (embedding or generation).
pub fn model_status(e: crate::embed::ModelError) -> Status {
    use crate::embed::ModelError as E;
    let code = match &e {
        E::Missing { .. } | E::Damaged { .. } => Code::FailedPrecondition,
        E::Inference(_) => Code::Internal,
        E::Busy(_) => Code::ResourceExhausted,
        E::Stopped(_) | E::Remote(_) => Code::Unavailable,
        E::RemoteStatus { status, .. } => match status {
            // The server's key, a wrong URL or a model the endpoint does not serve: the
            // server's configuration, not the caller's credentials or request.
            401 | 403 | 404 => Code::FailedPrecondition,
            408 => Code::Unavailable,
            429 => Code::ResourceExhausted,
            400..=499 => Code::InvalidArgument,
            _ => Code::Unavailable,
        },
        E::RemoteMalformed { .. } => Code::Internal,
        E::Invalid(_) => Code::InvalidArgument,
    };
    if matches!(
        code,
        Code::Internal | Code::Unavailable | Code::FailedPrecondition
    ) {
        tracing::error!(error = %e, "model call failed");
    }
    Status::new(code, e.to_string())
}

/// An INVALID_ARGUMENT status.
pub fn invalid(msg: impl Into<String>) -> Status {
    Status::invalid_argument(msg.into())
}
