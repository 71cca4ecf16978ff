//! A Llama decoder for the generation model, written for verification-style decoding: one
//! forward pass over several new tokens returns the logits of every one of them, and the KV
//! cache can be cut back to any length (to drop rejected draft tokens).
//!
//! Weights come from the GGUF file, every tensor dequantized to f32. GGUF stores the query and
//! key projections permuted for interleaved rotary embeddings (pairs 2i, 2i+1), so rotation here
//! is the interleaved form.

use candle_core::quantized::gguf_file;
use candle_core::{D, DType, Device, IndexOp, Module, Result, Tensor};
use candle_nn::{Linear, RmsNorm};
use std::io::{Read, Seek};

/// Shapes from the GGUF metadata.
#[derive(Debug, Clone)]
struct Shape {
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    layers: usize,
    eps: f64,
    rope_base: f32,
    context: usize,
}

struct Layer {
    attn_norm: RmsNorm,
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    ffn_norm: RmsNorm,
    gate: Linear,
    up: Linear,
    down: Linear,
    /// Keys and values of the positions seen so far: (1, kv_heads, len, head_dim).
    cache: Option<(Tensor, Tensor)>,
}

/// The model with its KV cache.
pub struct Llama {
    embed: Tensor,
    layers: Vec<Layer>,
    norm: RmsNorm,
    output: Linear,
    cos: Tensor,
    sin: Tensor,
    shape: Shape,
    /// Positions held in the cache.
    len: usize,
    device: Device,
}

fn md_u32(ct: &gguf_file::Content, key: &str) -> Result<usize> {
    match ct.metadata.get(key) {
        Some(v) => Ok(v.to_u32()? as usize),
        None => candle_core::bail!("no {key} in the GGUF metadata"),
    }
}

impl Llama {
    /// Reads and dequantizes every weight.
    pub fn load<R: Read + Seek>(
        ct: &gguf_file::Content,
        r: &mut R,
        device: &Device,
    ) -> Result<Llama> {
        let heads = md_u32(ct, "llama.attention.head_count")?;
        let dim = md_u32(ct, "llama.embedding_length")?;
        let shape = Shape {
            heads,
            kv_heads: md_u32(ct, "llama.attention.head_count_kv")?,
            head_dim: dim / heads,
            layers: md_u32(ct, "llama.block_count")?,
            eps: match ct.metadata.get("llama.attention.layer_norm_rms_epsilon") {
                Some(v) => v.to_f32()? as f64,
                None => 1e-5,
            },
            rope_base: match ct.metadata.get("llama.rope.freq_base") {
                Some(v) => v.to_f32()?,
                None => 10_000.0,
            },
            context: md_u32(ct, "llama.context_length").unwrap_or(2048),
        };
        let mut t =
            |name: &str| -> Result<Tensor> { ct.tensor(r, name, device)?.dequantize(device) };
        let embed = t("token_embd.weight")?;
        let norm = RmsNorm::new(t("output_norm.weight")?, shape.eps);
        let output = match ct.tensor_infos.contains_key("output.weight") {
            true => Linear::new(t("output.weight")?, None),
            false => Linear::new(embed.clone(), None),
        };
        let mut layers = Vec::with_capacity(shape.layers);
        for i in 0..shape.layers {
            let mut w = |n: &str| t(&format!("blk.{i}.{n}.weight"));
            layers.push(Layer {
                attn_norm: RmsNorm::new(w("attn_norm")?, shape.eps),
                q: Linear::new(w("attn_q")?, None),
                k: Linear::new(w("attn_k")?, None),
                v: Linear::new(w("attn_v")?, None),
                o: Linear::new(w("attn_output")?, None),
                ffn_norm: RmsNorm::new(w("ffn_norm")?, shape.eps),
                gate: Linear::new(w("ffn_gate")?, None),
                up: Linear::new(w("ffn_up")?, None),
                down: Linear::new(w("ffn_down")?, None),
                cache: None,
            });
        }
        // Rotation angles per position and frequency.
        let half = shape.head_dim / 2;
        let inv: Vec<f32> = (0..half)
            .map(|i| 1.0 / shape.rope_base.powf(2.0 * i as f32 / shape.head_dim as f32))
            .collect();
        let inv = Tensor::from_vec(inv, (1, half), device)?;
        let pos = Tensor::arange(0u32, shape.context as u32, device)?
            .to_dtype(DType::F32)?
            .reshape((shape.context, 1))?;
        let angles = pos.matmul(&inv)?;
        Ok(Llama {
            embed,
            layers,
            norm,
            output,
            cos: angles.cos()?,
            sin: angles.sin()?,
            shape,
            len: 0,
            device: device.clone(),
        })
    }

    /// Longest sequence the rotation table covers.
    pub fn context(&self) -> usize {
        self.shape.context
    }

    /// Positions in the cache.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Forgets everything (a new request).
    pub fn clear(&mut self) {
        for l in &mut self.layers {
            l.cache = None;
        }
        self.len = 0;
    }

    /// Keeps only the first `len` cached positions.
    pub fn truncate(&mut self, len: usize) -> Result<()> {
        if len >= self.len {
            return Ok(());
        }
        for l in &mut self.layers {
            if let Some((k, v)) = &l.cache {
                l.cache = Some((k.narrow(2, 0, len)?, v.narrow(2, 0, len)?));
            }
        }
        self.len = len;
        Ok(())
    }

    /// Runs `tokens` after the cached positions; returns logits for each of them: (n, vocab).
    pub fn forward(&mut self, tokens: &[u32]) -> Result<Tensor> {
        let n = tokens.len();
        let start = self.len;
        if start + n > self.shape.context {
            candle_core::bail!("sequence of {} tokens exceeds the context", start + n);
        }
        let ids = Tensor::new(tokens, &self.device)?;
        let mut x = self.embed.index_select(&ids, 0)?.unsqueeze(0)?; // (1, n, dim)
        let cos = self.cos.narrow(0, start, n)?;
        let sin = self.sin.narrow(0, start, n)?;
        let mask = if n > 1 {
            Some(causal_mask(n, start, &self.device)?)
        } else {
            None
        };
        let s = self.shape.clone();
        for l in &mut self.layers {
            let h = l.attn_norm.forward(&x)?;
            let split = |t: Tensor, heads: usize| -> Result<Tensor> {
                t.reshape((1, n, heads, s.head_dim))?
                    .transpose(1, 2)?
                    .contiguous()
            };
            let q = candle_nn::rotary_emb::rope_i(&split(l.q.forward(&h)?, s.heads)?, &cos, &sin)?;
            let k =
                candle_nn::rotary_emb::rope_i(&split(l.k.forward(&h)?, s.kv_heads)?, &cos, &sin)?;
            let v = split(l.v.forward(&h)?, s.kv_heads)?;
            let (k, v) = match &l.cache {
                Some((kc, vc)) => (Tensor::cat(&[kc, &k], 2)?, Tensor::cat(&[vc, &v], 2)?),
                None => (k, v),
            };
            l.cache = Some((k.clone(), v.clone()));
            let group = s.heads / s.kv_heads;
            let k = repeat_heads(&k, group)?;
            let v = repeat_heads(&v, group)?;
            let mut att = (q.matmul(&k.t()?)? / (s.head_dim as f64).sqrt())?;
            if let Some(m) = &mask {
                att = att.broadcast_add(m)?;
            }
            let att = candle_nn::ops::softmax_last_dim(&att)?;
            let y = att
                .matmul(&v)?
                .transpose(1, 2)?
                .reshape((1, n, s.heads * s.head_dim))?;
            x = (x + l.o.forward(&y)?)?;
            let h = l.ffn_norm.forward(&x)?;
            let ff = (candle_nn::ops::silu(&l.gate.forward(&h)?)? * l.up.forward(&h)?)?;
            x = (x + l.down.forward(&ff)?)?;
        }
        self.len = start + n;
        let x = self.norm.forward(&x)?;
        self.output.forward(&x)?.i(0)
    }
}

/// Additive mask: position i of the new tokens sees the cache and new tokens 0..=i.
fn causal_mask(n: usize, start: usize, device: &Device) -> Result<Tensor> {
    let total = start + n;
    let m: Vec<f32> = (0..n)
        .flat_map(|i| {
            (0..total).map(move |j| {
                if j > start + i {
                    f32::NEG_INFINITY
                } else {
                    0.0
                }
            })
        })
        .collect();
    Tensor::from_vec(m, (n, total), device)
}

/// Repeats each key/value head `group` times so every query head has its own.
fn repeat_heads(x: &Tensor, group: usize) -> Result<Tensor> {
    if group == 1 {
        return Ok(x.clone());
    }
    let (b, h, len, d) = x.dims4()?;
    x.unsqueeze(2)?
        .broadcast_as((b, h, group, len, d))?
        .reshape((b, h * group, len, d))
}

/// Index of the largest value of each row of `logits` (n, vocab).
pub fn argmax_rows(logits: &Tensor) -> Result<Vec<u32>> {
    logits.argmax(D::Minus1)?.to_vec1::<u32>()
}
