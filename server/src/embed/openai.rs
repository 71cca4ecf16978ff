//! An OpenAI-compatible embeddings endpoint (`POST {url}/embeddings`) as an embedding back-end:
//! llama.cpp's server, vLLM, Ollama, text-embeddings-inference, or OpenAI itself.
//!
//! The dimension is learnt by embedding one probe text at start-up. Token counts for chunking
//! are estimated (words × 4/3), since the remote tokenizer is not at hand; `max_tokens` from the
//! config bounds the chunks.

use super::{Embedder, ModelError};
use crate::auth::Secret;
use serde::Deserialize;
use std::time::Duration;

/// A remote embedding model.
pub struct OpenAiEmbedder {
    agent: ureq::Agent,
    endpoint: String,
    model: String,
    api_key: Option<Secret>,
    dim: usize,
    max_tokens: usize,
}

#[derive(Deserialize)]
struct Response {
    data: Vec<Item>,
}

#[derive(Deserialize)]
struct Item {
    index: Option<usize>,
    embedding: Vec<f32>,
}

impl OpenAiEmbedder {
    /// Connects to `url` (the API base, e.g. `http://127.0.0.1:8080/v1`) and probes the dimension.
    pub fn connect(
        url: &str,
        model: &str,
        api_key: Option<Secret>,
        max_tokens: usize,
    ) -> Result<OpenAiEmbedder, ModelError> {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(120)))
            .http_status_as_error(false)
            .build()
            .new_agent();
        let mut e = OpenAiEmbedder {
            agent,
            endpoint: format!("{}/embeddings", url.trim_end_matches('/')),
            model: model.to_string(),
            api_key,
            dim: 0,
            max_tokens,
        };
        let probe = e.embed(&["dimension probe".to_string()])?;
        e.dim = probe[0].len();
        Ok(e)
    }
}

impl Embedder for OpenAiEmbedder {
    fn name(&self) -> &str {
        &self.model
    }

    fn dim(&self) -> usize {
        self.dim
    }

    fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    fn count_tokens(&self, texts: &[String]) -> Result<Vec<usize>, ModelError> {
        Ok(texts
            .iter()
            .map(|t| (t.split_whitespace().count() * 4).div_ceil(3) + 2)
            .collect())
    }

    fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, ModelError> {
        let body = serde_json::json!({ "model": self.model, "input": texts });
        let mut req = self.agent.post(&self.endpoint);
        if let Some(k) = &self.api_key {
            req = req.header("Authorization", &format!("Bearer {}", k.0));
        }
        let mut resp = req
            .send_json(&body)
            .map_err(|e| ModelError::Remote(format!("{}: {e}", self.endpoint)))?;
        let status = resp.status();
        let text = resp.body_mut().read_to_string().map_err(|e| {
            ModelError::Remote(format!("{}: reading the answer: {e}", self.endpoint))
        })?;
        if !status.is_success() {
            let head: String = text.chars().take(300).collect();
            return Err(ModelError::Remote(format!(
                "{} answered {status}: {head}",
                self.endpoint
            )));
        }
        let parsed: Response = serde_json::from_str(&text).map_err(|e| {
            ModelError::Remote(format!("{}: unexpected answer: {e}", self.endpoint))
        })?;
        if parsed.data.len() != texts.len() {
            return Err(ModelError::Remote(format!(
                "{}: {} vectors for {} texts",
                self.endpoint,
                parsed.data.len(),
                texts.len()
            )));
        }
        let mut out = vec![Vec::new(); texts.len()];
        for (pos, item) in parsed.data.into_iter().enumerate() {
            let i = item.index.unwrap_or(pos);
            if i >= out.len() || item.embedding.is_empty() {
                return Err(ModelError::Remote(format!(
                    "{}: bad vector index {i}",
                    self.endpoint
                )));
            }
            if self.dim != 0 && item.embedding.len() != self.dim {
                return Err(ModelError::Remote(format!(
                    "{}: vector of {} dimensions, expected {}",
                    self.endpoint,
                    item.embedding.len(),
                    self.dim
                )));
            }
            if item.embedding.iter().any(|x| !x.is_finite()) {
                return Err(ModelError::Remote(format!(
                    "{}: non-finite vector",
                    self.endpoint
                )));
            }
            out[i] = item.embedding;
        }
        Ok(out)
    }
}
