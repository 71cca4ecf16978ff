//! Quiver's gRPC API, package `quiver.v1`: generated from `proto/quiver.proto` by tonic and prost.
//!
//! | item              | what it is                                                       |
//! |-------------------|------------------------------------------------------------------|
//! | [`v1`]            | messages, `collections_client`/`_server`, `points_client`/`_server` |
//! | [`FILE_DESCRIPTOR_SET`] | the encoded descriptors, for gRPC server reflection        |

/// The generated messages and services of package `quiver.v1`.
#[allow(missing_docs, clippy::all)]
pub mod v1 {
    tonic::include_proto!("quiver.v1");
}

/// The encoded `FileDescriptorSet` of every Quiver proto file, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("quiver_descriptor");
