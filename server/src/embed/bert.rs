//! Our BERT encoder forward pass (f32, CPU, one thread), for all-MiniLM-L6-v2.
//!
//! The texts of a batch are packed end to end, with no padding: every linear layer runs once
//! over all tokens of the batch (`T × hidden`), and attention runs per text over its own tokens
//! only, so a short text costs its own length whatever the batch holds. Per layer:
//!
//! ```text
//! x (T × 384) ─► fused QKV (T × 1152) ─► per text, per head: softmax(q·kᵀ/√32)·v ─► ctx (T × 384)
//!   ─► x = LN(x + ctx·Woᵀ + bo) ─► h = GELU(x·Wiᵀ + bi) (T × 1536) ─► x = LN(x + h·Wfᵀ + bf)
//! ```
//!
//! The output is the mean of each text's token vectors, L2-normalised (sentence-transformers'
//! pooling). The weights are read from the model's `model.safetensors` (BERT names without the
//! `bert.` prefix) and kept as `out × in` row-major arrays, as stored.

use super::kernels::{attend, gelu, layer_norm, matmul_add_bt};
use candle_core::{Device, Tensor};
use std::collections::HashMap;
use std::path::Path;

/// The shape of the encoder, from the model's `config.json`.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct BertConfig {
    /// Width of the token vectors (384).
    pub hidden_size: usize,
    /// Width of the feed-forward layer (1536).
    pub intermediate_size: usize,
    /// Attention heads per layer (12).
    pub num_attention_heads: usize,
    /// Encoder layers (6).
    pub num_hidden_layers: usize,
    /// Positions the model has embeddings for (512).
    pub max_position_embeddings: usize,
    /// Layer-norm epsilon (1e-12).
    pub layer_norm_eps: f64,
    /// Must be "gelu" (the exact, erf form): the only activation implemented.
    pub hidden_act: String,
}

struct Layer {
    /// Layout: (3 · hidden, hidden): query, key, value weights stacked, out × in.
    qkv_w: Vec<f32>,
    /// Layout: (3 · hidden,).
    qkv_b: Vec<f32>,
    /// Layout: (hidden, hidden).
    out_w: Vec<f32>,
    out_b: Vec<f32>,
    ln1_w: Vec<f32>,
    ln1_b: Vec<f32>,
    /// Layout: (intermediate, hidden).
    up_w: Vec<f32>,
    up_b: Vec<f32>,
    /// Layout: (hidden, intermediate).
    down_w: Vec<f32>,
    down_b: Vec<f32>,
    ln2_w: Vec<f32>,
    ln2_b: Vec<f32>,
}

/// The loaded encoder.
pub struct Bert {
    cfg: BertConfig,
    /// Layout: (vocab, hidden).
    word: Vec<f32>,
    /// Layout: (max_position_embeddings, hidden).
    position: Vec<f32>,
    /// Layout: (hidden,): token type 0 (every text here is a single segment).
    token_type: Vec<f32>,
    emb_ln_w: Vec<f32>,
    emb_ln_b: Vec<f32>,
    layers: Vec<Layer>,
}

/// Scratch buffers of one forward pass, grown as needed.
#[derive(Default)]
pub struct Scratch {
    x: Vec<f32>,
    qkv: Vec<f32>,
    ctx: Vec<f32>,
    h: Vec<f32>,
    scores: Vec<f32>,
}

impl Bert {
    /// Loads the weights from a safetensors file; an error names what is missing or misshapen.
    pub fn load(weights: &Path, cfg: BertConfig) -> Result<Bert, String> {
        if cfg.hidden_act != "gelu" {
            return Err(format!("activation {:?} is not supported", cfg.hidden_act));
        }
        if cfg.num_attention_heads == 0 || cfg.hidden_size % cfg.num_attention_heads != 0 {
            return Err("hidden size is not a multiple of the heads".into());
        }
        let tensors =
            candle_core::safetensors::load(weights, &Device::Cpu).map_err(|e| e.to_string())?;
        let mut w = Weights(tensors);
        let (hid, inter) = (cfg.hidden_size, cfg.intermediate_size);
        let word = w.take("embeddings.word_embeddings.weight", None)?;
        if word.len() % hid != 0 {
            return Err("word embeddings are not rows of the hidden size".into());
        }
        let position = w.take(
            "embeddings.position_embeddings.weight",
            Some(cfg.max_position_embeddings * hid),
        )?;
        let mut token_type = w.take("embeddings.token_type_embeddings.weight", None)?;
        if token_type.len() < hid {
            return Err("token type embeddings are shorter than one row".into());
        }
        token_type.truncate(hid);
        let emb_ln_w = w.take("embeddings.LayerNorm.weight", Some(hid))?;
        let emb_ln_b = w.take("embeddings.LayerNorm.bias", Some(hid))?;
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for i in 0..cfg.num_hidden_layers {
            let p = format!("encoder.layer.{i}.");
            let mut t = |name: &str, len: usize| w.take(&format!("{p}{name}"), Some(len));
            let mut qkv_w = t("attention.self.query.weight", hid * hid)?;
            qkv_w.extend(t("attention.self.key.weight", hid * hid)?);
            qkv_w.extend(t("attention.self.value.weight", hid * hid)?);
            let mut qkv_b = t("attention.self.query.bias", hid)?;
            qkv_b.extend(t("attention.self.key.bias", hid)?);
            qkv_b.extend(t("attention.self.value.bias", hid)?);
            layers.push(Layer {
                qkv_w,
                qkv_b,
                out_w: t("attention.output.dense.weight", hid * hid)?,
                out_b: t("attention.output.dense.bias", hid)?,
                ln1_w: t("attention.output.LayerNorm.weight", hid)?,
                ln1_b: t("attention.output.LayerNorm.bias", hid)?,
                up_w: t("intermediate.dense.weight", inter * hid)?,
                up_b: t("intermediate.dense.bias", inter)?,
                down_w: t("output.dense.weight", hid * inter)?,
                down_b: t("output.dense.bias", hid)?,
                ln2_w: t("output.LayerNorm.weight", hid)?,
                ln2_b: t("output.LayerNorm.bias", hid)?,
            });
        }
        Ok(Bert {
            cfg,
            word,
            position,
            token_type,
            emb_ln_w,
            emb_ln_b,
            layers,
        })
    }

    /// Vocabulary size (token ids must be below it).
    pub fn vocab(&self) -> usize {
        self.word.len() / self.cfg.hidden_size
    }

    /// Longest input in tokens.
    pub fn max_positions(&self) -> usize {
        self.cfg.max_position_embeddings
    }

    /// One unit vector per text: the mean of its final token vectors, L2-normalised. Every text
    /// must hold 1..=max_positions ids below `vocab()`.
    pub fn embed(&self, texts: &[Vec<u32>], s: &mut Scratch) -> Result<Vec<Vec<f32>>, String> {
        let hid = self.cfg.hidden_size;
        let inter = self.cfg.intermediate_size;
        let (vocab, max_pos) = (self.vocab(), self.max_positions());
        for t in texts {
            if t.is_empty() || t.len() > max_pos {
                return Err(format!(
                    "a text of {} tokens (1..={max_pos} allowed)",
                    t.len()
                ));
            }
            if let Some(&id) = t.iter().find(|&&id| id as usize >= vocab) {
                return Err(format!("token id {id} is outside the vocabulary ({vocab})"));
            }
        }
        let total: usize = texts.iter().map(Vec::len).sum();
        let eps = self.cfg.layer_norm_eps as f32;
        resize(&mut s.x, total * hid);
        let mut row = 0;
        for t in texts {
            for (pos, &id) in t.iter().enumerate() {
                let out = &mut s.x[row * hid..(row + 1) * hid];
                let word = &self.word[id as usize * hid..(id as usize + 1) * hid];
                let position = &self.position[pos * hid..(pos + 1) * hid];
                for (((o, w), p), ty) in
                    out.iter_mut().zip(word).zip(position).zip(&self.token_type)
                {
                    *o = w + p + ty;
                }
                row += 1;
            }
        }
        layer_norm(&mut s.x, &self.emb_ln_w, &self.emb_ln_b, eps);
        for layer in &self.layers {
            self.layer(layer, texts, total, s, eps, hid, inter);
        }
        let mut out = Vec::with_capacity(texts.len());
        let mut start = 0;
        for t in texts {
            let mut v = vec![0f32; hid];
            for r in start..start + t.len() {
                for (a, x) in v.iter_mut().zip(&s.x[r * hid..(r + 1) * hid]) {
                    *a += x;
                }
            }
            start += t.len();
            let inv_n = 1.0 / t.len() as f32;
            v.iter_mut().for_each(|a| *a *= inv_n);
            let norm = v.iter().map(|a| a * a).sum::<f32>().sqrt().max(1e-12);
            v.iter_mut().for_each(|a| *a /= norm);
            out.push(v);
        }
        Ok(out)
    }

    #[allow(clippy::too_many_arguments)]
    fn layer(
        &self,
        l: &Layer,
        texts: &[Vec<u32>],
        total: usize,
        s: &mut Scratch,
        eps: f32,
        hid: usize,
        inter: usize,
    ) {
        let heads = self.cfg.num_attention_heads;
        let w3 = 3 * hid;
        // Fused Q, K, V projection: qkv = x·Wqkvᵀ + b.
        fill_rows(&mut s.qkv, &l.qkv_b, total);
        matmul_add_bt(&mut s.qkv, &s.x, &l.qkv_w, total, hid, w3);
        // Attention, per text and head, over that text's tokens only.
        resize(&mut s.ctx, total * hid);
        let mut start = 0;
        for t in texts {
            let n = t.len();
            attend(
                &s.qkv[start * w3..(start + n) * w3],
                n,
                heads,
                &mut s.ctx[start * hid..(start + n) * hid],
                &mut s.scores,
            );
            start += n;
        }
        // x = LN(x + ctx·Woᵀ + bo): the residual and bias are the product's starting value.
        add_rows(&mut s.x, &l.out_b);
        matmul_add_bt(&mut s.x, &s.ctx, &l.out_w, total, hid, hid);
        layer_norm(&mut s.x, &l.ln1_w, &l.ln1_b, eps);
        // Feed-forward: h = GELU(x·Wiᵀ + bi); x = LN(x + h·Wfᵀ + bf).
        fill_rows(&mut s.h, &l.up_b, total);
        matmul_add_bt(&mut s.h, &s.x, &l.up_w, total, hid, inter);
        gelu(&mut s.h);
        add_rows(&mut s.x, &l.down_b);
        matmul_add_bt(&mut s.x, &s.h, &l.down_w, total, inter, hid);
        layer_norm(&mut s.x, &l.ln2_w, &l.ln2_b, eps);
    }
}

/// Sets `v` to `len` elements (their values are overwritten by the caller).
fn resize(v: &mut Vec<f32>, len: usize) {
    v.resize(len, 0.0);
}

/// `dst` ← `rows` copies of `row`.
fn fill_rows(dst: &mut Vec<f32>, row: &[f32], rows: usize) {
    dst.clear();
    for _ in 0..rows {
        dst.extend_from_slice(row);
    }
}

/// Adds `row` to every row of `x`.
fn add_rows(x: &mut [f32], row: &[f32]) {
    for r in x.chunks_exact_mut(row.len()) {
        for (a, b) in r.iter_mut().zip(row) {
            *a += b;
        }
    }
}

/// The tensors of a safetensors file, taken out one by one as f32 vectors.
struct Weights(HashMap<String, Tensor>);

impl Weights {
    fn take(&mut self, name: &str, len: Option<usize>) -> Result<Vec<f32>, String> {
        let t = self
            .0
            .remove(name)
            .ok_or_else(|| format!("tensor {name} is missing"))?;
        let v = t
            .flatten_all()
            .and_then(|t| t.to_dtype(candle_core::DType::F32))
            .and_then(|t| t.to_vec1::<f32>())
            .map_err(|e| format!("tensor {name}: {e}"))?;
        match len {
            Some(len) if v.len() != len => {
                Err(format!("tensor {name} has {} values, not {len}", v.len()))
            }
            _ => Ok(v),
        }
    }
}
