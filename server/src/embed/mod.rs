//! Embedding: the back-end trait, the built-in model, an OpenAI-compatible HTTP back-end, and
//! the worker that batches requests onto the model's own threads.
//!
//! | file | what it does |
//! |------|--------------|
//! | `minilm.rs` | all-MiniLM-L6-v2: tokenizer, packed passes through the encoder |
//! | `bert.rs` | our BERT forward pass: packed texts, fused QKV, per-text attention, pooling |
//! | `kernels.rs` | GELU (rational erf), softmax (polynomial exp), layer norm, `gemm` product |
//! | `openai.rs` | an OpenAI-compatible `/v1/embeddings` back-end |
//! | `worker.rs` | the batching worker and its metrics |
//!
//! ```text
//! handler ─► EmbedWorker::embed (bounded queue; waits up to the deadline, then Busy)
//!         ─► worker thread: gathers jobs until max_batch texts or max_wait ─► Embedder::embed
//!         ─► each job's answer, in its order, back on a oneshot channel
//! ```

pub mod bert;
pub mod kernels;
pub mod minilm;
pub mod openai;
pub mod worker;

use std::path::Path;

pub use worker::{EmbedWorker, WorkerConfig};

/// A model that turns texts into unit vectors.
pub trait Embedder: Send + Sync {
    /// Name used in collection configs.
    fn name(&self) -> &str;
    /// Vector dimension.
    fn dim(&self) -> usize;
    /// Longest input the model reads, in its tokens; chunks are cut below this.
    fn max_tokens(&self) -> usize;
    /// Length of each text in the model's tokens (special tokens included).
    fn count_tokens(&self, texts: &[String]) -> Result<Vec<usize>, ModelError>;
    /// One vector per text, in order.
    fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, ModelError>;
}

/// Errors of the model back-ends (embedding and generation).
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A model file is absent.
    #[error(
        "model {model} is not installed ({path} is missing); install it with ./scripts/models.sh"
    )]
    Missing {
        /// Model name.
        model: String,
        /// The file looked for.
        path: String,
    },
    /// A model file exists but cannot be read as the model.
    #[error("model {model} is damaged ({path}: {reason}); reinstall it with ./scripts/models.sh")]
    Damaged {
        /// Model name.
        model: String,
        /// The file.
        path: String,
        /// What was wrong.
        reason: String,
    },
    /// The model failed on an input.
    #[error("model inference failed: {0}")]
    Inference(String),
    /// The queue stayed full until the caller's deadline.
    #[error("the {0} queue is full; retry later")]
    Busy(&'static str),
    /// The worker has stopped (server shutting down).
    #[error("the {0} worker has stopped")]
    Stopped(&'static str),
    /// A remote back-end failed or answered something unusable.
    #[error("remote model endpoint: {0}")]
    Remote(String),
    /// A remote back-end refused the request with an HTTP error status.
    #[error("remote model endpoint {endpoint} answered HTTP {status}: {message}")]
    RemoteStatus {
        /// The URL called.
        endpoint: String,
        /// The HTTP status code.
        status: u16,
        /// The endpoint's own message (or the start of its answer).
        message: String,
    },
    /// A remote back-end answered in a form that is not its API's.
    #[error("remote model endpoint {endpoint} sent an unusable answer: {reason}")]
    RemoteMalformed {
        /// The URL called.
        endpoint: String,
        /// What was wrong.
        reason: String,
    },
    /// The request asks for something the model cannot do.
    #[error("{0}")]
    Invalid(String),
}

impl ModelError {
    pub(crate) fn missing(model: &str, path: &Path) -> ModelError {
        ModelError::Missing {
            model: model.into(),
            path: path.display().to_string(),
        }
    }

    pub(crate) fn damaged(model: &str, path: &Path, reason: String) -> ModelError {
        ModelError::Damaged {
            model: model.into(),
            path: path.display().to_string(),
            reason,
        }
    }
}

/// Cosine similarity of two vectors.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na * nb)
    }
}
