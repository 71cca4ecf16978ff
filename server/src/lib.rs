//! `quiver-server`: Quiver's server, as a library (services, config, auth, metrics) and the
//! binary in `main.rs`.
//!
//! ```text
//! main ─► Config::load (defaults ◄ TOML ◄ QUIVER_* ◄ flags) ─► Storage::open (recovery)
//!      ─► tonic: Collections, Points, grpc.health.v1, reflection   (gRPC listener)
//!      ─► metrics::serve                                            (HTTP listener)
//!      ─► SIGTERM / Ctrl-C: stop accepting, finish requests, Storage::shutdown
//! ```
//!
//! | file         | what it holds                                  |
//! |--------------|------------------------------------------------|
//! | `config.rs`  | configuration layers and validation             |
//! | `auth.rs`    | API keys (admin, read-only) as a tower layer    |
//! | `deadline.rs`| request deadlines → DEADLINE_EXCEEDED            |
//! | `service.rs` | the Collections and Points services             |
//! | `documents.rs` | the Documents service: ingest, search by text |
//! | `embed/`     | embedding back-ends and the batching worker     |
//! | `chunk.rs`   | documents → chunks measured in model tokens     |
//! | `generate/`  | back-end trait; SmolLM2 from GGUF; OpenAI chat  |
//! | `rag.rs`     | the Generation service: Generate and Ask        |
//! | `snapshots.rs` | streaming snapshots out and restoring them in |
//! | `convert.rs` | wire ↔ storage types                            |
//! | `status.rs`  | storage errors → gRPC status codes (one place)  |
//! | `metrics.rs` | Prometheus metrics and their HTTP endpoint      |

pub mod auth;
pub mod chunk;
pub mod config;
pub mod convert;
pub mod deadline;
pub mod documents;
pub mod embed;
pub mod generate;
pub mod metrics;
pub mod rag;
pub mod retrieve;
pub mod service;
pub mod snapshots;
pub mod status;
