//! The built-in embedding model: all-MiniLM-L6-v2 (a 6-layer BERT, 384-d) on our own encoder
//! (`bert.rs`), CPU.
//!
//! Texts are tokenised with the model's own `tokenizer.json` (WordPiece, lower-cased), cut at
//! 256 tokens (the length the model was trained with; the file itself says 128), packed end to
//! end without padding, and run through the encoder, which attends within each text only. The
//! sentence vector is the mean of the token vectors, L2-normalised, as sentence-transformers
//! computes it.

use super::bert::{Bert, BertConfig, Scratch};
use super::{Embedder, ModelError};
use std::cell::RefCell;
use std::path::Path;
use tokenizers::{Tokenizer, TruncationParams};

/// The model's name in collection configs.
pub const NAME: &str = "all-minilm-l6-v2";
/// The folder under the models folder that holds its files.
pub const FOLDER: &str = "all-minilm-l6-v2";
/// Longest input, in tokens, including [CLS] and [SEP].
pub const MAX_TOKENS: usize = 256;
const DIM: usize = 384;

/// all-MiniLM-L6-v2, loaded.
pub struct MiniLm {
    model: Bert,
    /// Cuts inputs at MAX_TOKENS.
    tokenizer: Tokenizer,
    /// The same without the cut, to measure texts (chunking must see true lengths).
    counter: Tokenizer,
}

impl MiniLm {
    /// Loads the model from `dir` (config.json, model.safetensors, tokenizer.json).
    pub fn load(dir: &Path) -> Result<MiniLm, ModelError> {
        let file = |name: &str| {
            let p = dir.join(name);
            if p.is_file() {
                Ok(p)
            } else {
                Err(ModelError::missing(NAME, &p))
            }
        };
        let (config_path, weights_path, tokenizer_path) = (
            file("config.json")?,
            file("model.safetensors")?,
            file("tokenizer.json")?,
        );
        let damaged = |p: &Path, e: String| ModelError::damaged(NAME, p, e);
        let config: BertConfig = std::fs::read(&config_path)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
            .map_err(|e| damaged(&config_path, e))?;
        let mut tokenizer = Tokenizer::from_file(&tokenizer_path)
            .map_err(|e| damaged(&tokenizer_path, e.to_string()))?;
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: MAX_TOKENS,
                ..Default::default()
            }))
            .map_err(|e| damaged(&tokenizer_path, e.to_string()))?;
        tokenizer.with_padding(None);
        let mut counter = tokenizer.clone();
        counter
            .with_truncation(None)
            .map_err(|e| damaged(&tokenizer_path, e.to_string()))?;
        if config.hidden_size != DIM {
            return Err(damaged(
                &config_path,
                format!("hidden size {} is not {DIM}", config.hidden_size),
            ));
        }
        if config.max_position_embeddings < MAX_TOKENS {
            return Err(damaged(
                &config_path,
                format!(
                    "{} positions, under {MAX_TOKENS}",
                    config.max_position_embeddings
                ),
            ));
        }
        let model = Bert::load(&weights_path, config).map_err(|e| damaged(&weights_path, e))?;
        Ok(MiniLm {
            model,
            tokenizer,
            counter,
        })
    }

    /// Token ids of each text, cut at the model's limit when `cut`.
    fn encode(&self, texts: &[String], cut: bool) -> Result<Vec<Vec<u32>>, ModelError> {
        let tokenizer = if cut { &self.tokenizer } else { &self.counter };
        texts
            .iter()
            .map(|t| {
                tokenizer
                    .encode(t.as_str(), true)
                    .map(|e| e.get_ids().to_vec())
                    .map_err(|e| ModelError::Inference(format!("tokenizer: {e}")))
            })
            .collect()
    }
}

impl Embedder for MiniLm {
    fn name(&self) -> &str {
        NAME
    }

    fn dim(&self) -> usize {
        DIM
    }

    fn max_tokens(&self) -> usize {
        MAX_TOKENS
    }

    fn count_tokens(&self, texts: &[String]) -> Result<Vec<usize>, ModelError> {
        Ok(self.encode(texts, false)?.iter().map(Vec::len).collect())
    }

    fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, ModelError> {
        let ids = self.encode(texts, true)?;
        // Packed passes of about TOKENS_PER_PASS tokens (no padding, so order does not matter
        // for cost; the scratch buffers stay the same size from pass to pass).
        let mut out = Vec::with_capacity(ids.len());
        SCRATCH.with_borrow_mut(|scratch| {
            let mut start = 0;
            while start < ids.len() {
                let mut end = start;
                let mut tokens = 0;
                while end < ids.len()
                    && (end == start || tokens + ids[end].len() <= TOKENS_PER_PASS)
                {
                    tokens += ids[end].len();
                    end += 1;
                }
                out.extend(
                    self.model
                        .embed(&ids[start..end], scratch)
                        .map_err(ModelError::Inference)?,
                );
                start = end;
            }
            Ok(out)
        })
    }
}

/// Tokens run through the encoder at once (a text longer than this runs alone).
const TOKENS_PER_PASS: usize = 2048;

thread_local! {
    /// Each model thread's buffers, kept between calls.
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}
