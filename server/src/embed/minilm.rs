//! The built-in embedding model: all-MiniLM-L6-v2 (a 6-layer BERT, 384-d) on candle, CPU.
//!
//! Texts are tokenised with the model's own `tokenizer.json` (WordPiece, lower-cased), cut at
//! 256 tokens (the length the model was trained with; the file itself says 128), padded to the
//! longest text of the batch, and run through the encoder with an attention mask. The sentence
//! vector is the mean of the token vectors under the mask, L2-normalised, as
//! sentence-transformers computes it.

use super::{Embedder, ModelError};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
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
    model: BertModel,
    /// Cuts inputs at MAX_TOKENS.
    tokenizer: Tokenizer,
    /// The same without the cut, to measure texts (chunking must see true lengths).
    counter: Tokenizer,
    device: Device,
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
        let config: Config = std::fs::read(&config_path)
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
        let device = Device::Cpu;
        // SAFETY: the weights file is mmapped read-only; the models folder is ours and is not
        // rewritten while the server runs (the setup script writes a `.part` file and renames).
        let vb =
            unsafe { VarBuilder::from_mmaped_safetensors(&[&weights_path], DType::F32, &device) }
                .map_err(|e| damaged(&weights_path, e.to_string()))?;
        let model =
            BertModel::load(vb, &config).map_err(|e| damaged(&weights_path, e.to_string()))?;
        if config.hidden_size != DIM {
            return Err(damaged(
                &config_path,
                format!("hidden size {} is not {DIM}", config.hidden_size),
            ));
        }
        Ok(MiniLm {
            model,
            tokenizer,
            counter,
            device,
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

    /// Runs one padded batch.
    fn forward(&self, ids: &[Vec<u32>]) -> candle_core::Result<Vec<Vec<f32>>> {
        let b = ids.len();
        let len = ids.iter().map(Vec::len).max().unwrap_or(0).max(1);
        let mut flat = vec![0u32; b * len];
        let mut mask = vec![0f32; b * len];
        for (row, seq) in ids.iter().enumerate() {
            flat[row * len..row * len + seq.len()].copy_from_slice(seq);
            mask[row * len..row * len + seq.len()].fill(1.0);
        }
        let input = Tensor::from_vec(flat, (b, len), &self.device)?;
        let types = input.zeros_like()?;
        let mask = Tensor::from_vec(mask, (b, len), &self.device)?;
        let hidden = self.model.forward(&input, &types, Some(&mask))?; // (b, len, 384)
        let m = mask.unsqueeze(2)?; // (b, len, 1)
        let summed = hidden.broadcast_mul(&m)?.sum(1)?; // (b, 384)
        let counts = m.sum(1)?.clamp(1e-9, f32::MAX)?; // (b, 1)
        let mean = summed.broadcast_div(&counts)?;
        let norms = mean.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12, f32::MAX)?;
        mean.broadcast_div(&norms)?.to_vec2::<f32>()
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
        // Sort by length so each sub-batch pads little, then put the answers back in order.
        let mut order: Vec<usize> = (0..ids.len()).collect();
        order.sort_by_key(|&i| ids[i].len());
        let mut out = vec![Vec::new(); ids.len()];
        for group in order.chunks(SUB_BATCH) {
            let batch: Vec<Vec<u32>> = group.iter().map(|&i| ids[i].clone()).collect();
            let vectors = self
                .forward(&batch)
                .map_err(|e| ModelError::Inference(e.to_string()))?;
            for (&i, v) in group.iter().zip(vectors) {
                out[i] = v;
            }
        }
        Ok(out)
    }
}

/// Texts run through the encoder at once (after sorting by length).
const SUB_BATCH: usize = 32;
