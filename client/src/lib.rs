//! A typed Rust client for Quiver, and helpers shared by the `quiver` CLI and `quiver-bench`.
//!
//! | file        | what it holds                                                  |
//! |-------------|----------------------------------------------------------------|
//! | `lib.rs`    | [`Client`]: connection and convenience calls                    |
//! | `filter.rs` | filters written as JSON (the CLI's syntax) → wire filters        |
//! | `vecfile.rs`| readers for `.fvecs`, `.npy` and `.jsonl` vector files           |

#![warn(missing_docs)]

pub mod filter;
pub mod vecfile;

pub use quiver_proto::v1 as pb;
use quiver_proto::v1::collections_client::CollectionsClient;
use quiver_proto::v1::documents_client::DocumentsClient;
use quiver_proto::v1::generation_client::GenerationClient;
use quiver_proto::v1::points_client::PointsClient;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

/// Largest message the client sends or accepts.
const MAX_MESSAGE: usize = 256 << 20;

/// Errors of the client library.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The address could not be reached.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The address.
        addr: String,
        /// Why.
        #[source]
        source: tonic::transport::Error,
    },
    /// The server answered with an error.
    #[error("{}: {}", .0.code().description(), .0.message())]
    Status(#[from] tonic::Status),
    /// Input the client could not use.
    #[error("{0}")]
    Input(String),
}

/// How to reach a server beyond its address.
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    /// API key sent as `x-api-key` with every call.
    pub api_key: Option<String>,
    /// PEM certificate of the authority that signed the server's certificate: connect with TLS.
    pub tls_ca: Option<Vec<u8>>,
    /// Name to verify the server's certificate against (default: the address's host).
    pub tls_domain: Option<String>,
}

/// Adds the API key to every request.
#[derive(Clone)]
pub struct ApiKey(Option<MetadataValue<Ascii>>);

impl Interceptor for ApiKey {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(k) = &self.0 {
            req.metadata_mut().insert("x-api-key", k.clone());
        }
        Ok(req)
    }
}

/// The channel every generated client of ours runs on.
pub type Chan = InterceptedService<Channel, ApiKey>;

/// A connection to a Quiver server. Cheap to clone: clones share the connection.
#[derive(Clone)]
pub struct Client {
    /// The Collections service.
    pub collections: CollectionsClient<Chan>,
    /// The Points service.
    pub points: PointsClient<Chan>,
    /// The Documents service.
    pub documents: DocumentsClient<Chan>,
    /// The Generation service.
    pub generation: GenerationClient<Chan>,
}

/// Adds `http://` when the address has no scheme.
pub fn normalize_addr(addr: &str) -> String {
    if addr.contains("://") {
        addr.to_string()
    } else {
        format!("http://{addr}")
    }
}

impl Client {
    /// Connects to `addr` (`host:port` or a URL) without a key or TLS.
    pub async fn connect(addr: &str) -> Result<Client, ClientError> {
        Client::connect_with(addr, &ConnectOptions::default()).await
    }

    /// Connects to `addr` with an API key and/or TLS.
    pub async fn connect_with(addr: &str, options: &ConnectOptions) -> Result<Client, ClientError> {
        let mut url = normalize_addr(addr);
        if options.tls_ca.is_some() {
            url = url.replacen("http://", "https://", 1);
        }
        let connect_err = |url: &str| {
            let addr = url.to_string();
            move |source| ClientError::Connect { addr, source }
        };
        let mut endpoint = Endpoint::from_shared(url.clone())
            .map_err(connect_err(&url))?
            .tcp_nodelay(true);
        if let Some(ca) = &options.tls_ca {
            let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca));
            if let Some(d) = &options.tls_domain {
                tls = tls.domain_name(d.clone());
            }
            endpoint = endpoint.tls_config(tls).map_err(connect_err(&url))?;
        }
        let channel = endpoint.connect().await.map_err(connect_err(&url))?;
        let key =
            match &options.api_key {
                Some(k) => Some(k.parse().map_err(|_| {
                    ClientError::Input("the API key must be printable ASCII".into())
                })?),
                None => None,
            };
        let chan = InterceptedService::new(channel, ApiKey(key));
        Ok(Client {
            collections: CollectionsClient::new(chan.clone())
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
            points: PointsClient::new(chan.clone())
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
            documents: DocumentsClient::new(chan.clone())
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
            generation: GenerationClient::new(chan)
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
        })
    }

    /// Creates a flat collection with default settings.
    pub async fn create_collection(
        &mut self,
        name: &str,
        dim: u32,
        metric: pb::Metric,
    ) -> Result<pb::CollectionInfo, ClientError> {
        let req = pb::CreateCollectionRequest {
            name: name.into(),
            dim,
            metric: metric as i32,
            ..Default::default()
        };
        Ok(self.collections.create(req).await?.into_inner())
    }

    /// Describes a collection.
    pub async fn describe(&mut self, name: &str) -> Result<pb::CollectionInfo, ClientError> {
        Ok(self
            .collections
            .describe(pb::DescribeCollectionRequest { name: name.into() })
            .await?
            .into_inner())
    }

    /// Upserts points; returns the write's sequence number.
    pub async fn upsert(
        &mut self,
        collection: &str,
        points: Vec<pb::Point>,
    ) -> Result<u64, ClientError> {
        let req = pb::UpsertRequest {
            collection: collection.into(),
            points,
        };
        Ok(self.points.upsert(req).await?.into_inner().seq)
    }

    /// Searches; returns the hits, closest first.
    pub async fn search(
        &mut self,
        req: pb::SearchRequest,
    ) -> Result<Vec<pb::ScoredPoint>, ClientError> {
        Ok(self.points.search(req).await?.into_inner().hits)
    }

    /// Counts points matching an optional filter.
    pub async fn count(
        &mut self,
        collection: &str,
        filter: Option<pb::Filter>,
    ) -> Result<u64, ClientError> {
        Ok(self
            .points
            .count(pb::CountRequest {
                collection: collection.into(),
                filter,
            })
            .await?
            .into_inner()
            .count)
    }
}

/// A numeric point id.
pub fn num_id(n: u64) -> pb::PointId {
    pb::PointId {
        kind: Some(pb::point_id::Kind::Num(n)),
    }
}

/// A string point id.
pub fn text_id(s: &str) -> pb::PointId {
    pb::PointId {
        kind: Some(pb::point_id::Kind::Text(s.into())),
    }
}

/// Parses an id typed by a person: all digits is a number, anything else a string.
pub fn parse_id(s: &str) -> pb::PointId {
    match s.parse::<u64>() {
        Ok(n) => num_id(n),
        Err(_) => text_id(s),
    }
}

/// Shows an id as a person would type it.
pub fn show_id(id: Option<&pb::PointId>) -> String {
    match id.and_then(|i| i.kind.as_ref()) {
        Some(pb::point_id::Kind::Num(n)) => n.to_string(),
        Some(pb::point_id::Kind::Text(s)) => s.clone(),
        None => "?".into(),
    }
}

/// An id as JSON: a number or a string.
pub fn id_json(id: Option<&pb::PointId>) -> serde_json::Value {
    match id.and_then(|i| i.kind.as_ref()) {
        Some(pb::point_id::Kind::Num(n)) => serde_json::json!(n),
        Some(pb::point_id::Kind::Text(s)) => serde_json::json!(s),
        None => serde_json::Value::Null,
    }
}
