//! A Llama decoder for the generation model, written for verification-style decoding: one
//! forward pass over several new tokens returns the logits of every one of them, and the KV
//! cache can be cut back to any length (to drop rejected draft tokens).
//!
//! Weights come from the GGUF file, every tensor dequantized to f32 (by candle, at load); the
//! forward pass is ours (`kernel.rs` for every product). Each token's arithmetic — norms, the
//! products, rotation, attention over the positions before it — is the same whether the pass
//! holds that token alone or with others, so its logits are bitwise the same: a verification
//! pass over draft tokens decides exactly as one-token greedy steps would.
//!
//! GGUF stores the query and key projections permuted for interleaved rotary embeddings (pairs
//! 2i, 2i+1), so rotation here is the interleaved form.

use super::kernel::{Matrix, matmul, scores, weighted_sum};
use super::softmax::softmax;
use candle_core::quantized::gguf_file;
use candle_core::{Device, Result, Tensor};
use std::io::{Read, Seek};

/// Shapes from the GGUF metadata.
#[derive(Debug, Clone)]
struct Shape {
    dim: usize,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    ffn: usize,
    layers: usize,
    eps: f32,
    context: usize,
}

impl Shape {
    fn kv_dim(&self) -> usize {
        self.kv_heads * self.head_dim
    }
}

struct Layer {
    attn_norm: Vec<f32>,
    /// q, k and v stacked: (dim + 2 · kv_dim, dim).
    qkv: Matrix,
    /// (dim, dim).
    o: Matrix,
    ffn_norm: Vec<f32>,
    /// gate and up stacked: (2 · ffn, dim).
    gate_up: Matrix,
    /// (dim, ffn).
    down: Matrix,
    /// Keys of the positions seen so far, rotated. Layout: (len, kv_heads, head_dim).
    keys: Vec<f32>,
    /// Their values. Layout: (len, kv_heads, head_dim).
    values: Vec<f32>,
}

/// The model with its KV cache.
pub struct Llama {
    /// Layout: (vocab, dim).
    embed: Vec<f32>,
    layers: Vec<Layer>,
    norm: Vec<f32>,
    /// (vocab, dim).
    output: Matrix,
    /// cos and sin of position · frequency. Layout: (context, head_dim / 2).
    cos: Vec<f32>,
    sin: Vec<f32>,
    shape: Shape,
    /// Positions held in the cache.
    len: usize,
}

fn md_u32(ct: &gguf_file::Content, key: &str) -> Result<usize> {
    match ct.metadata.get(key) {
        Some(v) => Ok(v.to_u32()? as usize),
        None => candle_core::bail!("no {key} in the GGUF metadata"),
    }
}

/// Tokens per chunk of a long prompt (keeps the activations in cache; the result is the same).
const CHUNK: usize = 64;

impl Llama {
    /// Reads and dequantizes every weight.
    pub fn load<R: Read + Seek>(ct: &gguf_file::Content, r: &mut R) -> Result<Llama> {
        let device = Device::Cpu;
        let heads = md_u32(ct, "llama.attention.head_count")?;
        let dim = md_u32(ct, "llama.embedding_length")?;
        let shape = Shape {
            dim,
            heads,
            kv_heads: md_u32(ct, "llama.attention.head_count_kv")?,
            head_dim: dim / heads,
            ffn: md_u32(ct, "llama.feed_forward_length")?,
            layers: md_u32(ct, "llama.block_count")?,
            eps: match ct.metadata.get("llama.attention.layer_norm_rms_epsilon") {
                Some(v) => v.to_f32()?,
                None => 1e-5,
            },
            context: md_u32(ct, "llama.context_length").unwrap_or(2048),
        };
        let rope_base = match ct.metadata.get("llama.rope.freq_base") {
            Some(v) => v.to_f32()?,
            None => 10_000.0,
        };
        let mut t =
            |name: &str| -> Result<Tensor> { ct.tensor(r, name, &device)?.dequantize(&device) };
        let vec = |t: Tensor| -> Result<Vec<f32>> { t.flatten_all()?.to_vec1::<f32>() };
        let matrix = |t: Tensor| -> Result<Matrix> {
            let (rows, cols) = t.dims2()?;
            Ok(Matrix::new(t.flatten_all()?.to_vec1::<f32>()?, rows, cols))
        };
        let embed = t("token_embd.weight")?;
        let norm = vec(t("output_norm.weight")?)?;
        let output = match ct.tensor_infos.contains_key("output.weight") {
            true => matrix(t("output.weight")?)?,
            false => matrix(embed.clone())?,
        };
        let embed = vec(embed)?;
        let mut layers = Vec::with_capacity(shape.layers);
        for i in 0..shape.layers {
            let mut w = |n: &str| t(&format!("blk.{i}.{n}.weight"));
            let qkv = Matrix::stack(vec![
                matrix(w("attn_q")?)?,
                matrix(w("attn_k")?)?,
                matrix(w("attn_v")?)?,
            ]);
            let gate_up = Matrix::stack(vec![matrix(w("ffn_gate")?)?, matrix(w("ffn_up")?)?]);
            layers.push(Layer {
                attn_norm: vec(w("attn_norm")?)?,
                qkv,
                o: matrix(w("attn_output")?)?,
                ffn_norm: vec(w("ffn_norm")?)?,
                gate_up,
                down: matrix(w("ffn_down")?)?,
                keys: Vec::new(),
                values: Vec::new(),
            });
        }
        // Rotation angles per position and frequency.
        let half = shape.head_dim / 2;
        let inv: Vec<f32> = (0..half)
            .map(|i| 1.0 / rope_base.powf(2.0 * i as f32 / shape.head_dim as f32))
            .collect();
        let angles = (0..shape.context).flat_map(|p| inv.iter().map(move |f| p as f32 * f));
        let (cos, sin) = angles.map(|a| (a.cos(), a.sin())).unzip();
        Ok(Llama {
            embed,
            layers,
            norm,
            output,
            cos,
            sin,
            shape,
            len: 0,
        })
    }

    /// Longest sequence the rotation table covers.
    pub fn context(&self) -> usize {
        self.shape.context
    }

    /// Entries of a logits row.
    pub fn vocab(&self) -> usize {
        self.output.rows()
    }

    /// Positions in the cache.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Forgets everything (a new request).
    pub fn clear(&mut self) {
        self.truncate(0);
    }

    /// Keeps only the first `len` cached positions.
    pub fn truncate(&mut self, len: usize) {
        if len >= self.len {
            return;
        }
        let kv = self.shape.kv_dim();
        for l in &mut self.layers {
            l.keys.truncate(len * kv);
            l.values.truncate(len * kv);
        }
        self.len = len;
    }

    /// Runs `tokens` after the cached positions; returns the logits of the last `want` of them,
    /// one row of `vocab()` values each: (want, vocab).
    pub fn forward(&mut self, tokens: &[u32], want: usize) -> Result<Vec<f32>> {
        let n = tokens.len();
        if self.len + n > self.shape.context {
            candle_core::bail!("sequence of {} tokens exceeds the context", self.len + n);
        }
        if want > n {
            candle_core::bail!("{want} logits rows asked of a pass over {n} tokens");
        }
        let vocab = self.vocab();
        if let Some(&t) = tokens.iter().find(|&&t| t as usize >= vocab) {
            candle_core::bail!("token {t} is outside the vocabulary");
        }
        let mut logits = vec![0f32; want * vocab];
        let mut done = 0;
        while done < n {
            let part = &tokens[done..(done + CHUNK).min(n)];
            let x = self.layers_pass(part);
            // Rows of this chunk among the last `want`.
            let first = (n - want).max(done);
            let end = done + part.len();
            if first < end {
                let dim = self.shape.dim;
                let rows = end - first;
                let h: Vec<f32> = x[(first - done) * dim..]
                    .chunks(dim)
                    .flat_map(|r| rms_norm(r, &self.norm, self.shape.eps))
                    .collect();
                let at = (first - (n - want)) * vocab;
                matmul(&self.output, &h, rows, &mut logits[at..at + rows * vocab]);
            }
            done = end;
        }
        Ok(logits)
    }

    /// Runs `tokens` through every layer, appending to the cache; returns the last hidden
    /// states: (tokens.len(), dim).
    fn layers_pass(&mut self, tokens: &[u32]) -> Vec<f32> {
        let s = self.shape.clone();
        let (m, dim, kv, hd) = (tokens.len(), s.dim, s.kv_dim(), s.head_dim);
        let start = self.len;
        let mut x: Vec<f32> = tokens
            .iter()
            .flat_map(|&t| &self.embed[t as usize * dim..(t as usize + 1) * dim])
            .copied()
            .collect();
        let qkv_w = dim + 2 * kv;
        let group = group_of(&s);
        let mut h = vec![0f32; m * dim];
        let mut qkv = vec![0f32; m * qkv_w];
        let mut y = vec![0f32; m * dim];
        let mut proj = vec![0f32; m * dim];
        let mut gu = vec![0f32; m * 2 * s.ffn];
        let mut ff = vec![0f32; m * s.ffn];
        let mut sc = Vec::with_capacity(group_of(&s) * (start + m));
        let scale = 1.0 / (hd as f32).sqrt();
        for l in &mut self.layers {
            for (hr, xr) in h.chunks_mut(dim).zip(x.chunks(dim)) {
                hr.copy_from_slice(&rms_norm(xr, &l.attn_norm, s.eps));
            }
            matmul(&l.qkv, &h, m, &mut qkv);
            for (i, row) in qkv.chunks_mut(qkv_w).enumerate() {
                let pos = start + i;
                let (q, kvr) = row.split_at_mut(dim);
                let (k, v) = kvr.split_at_mut(kv);
                let (cos, sin) = (&self.cos[pos * hd / 2..], &self.sin[pos * hd / 2..]);
                q.chunks_mut(hd).for_each(|head| rope(head, cos, sin));
                k.chunks_mut(hd).for_each(|head| rope(head, cos, sin));
                l.keys.extend_from_slice(k);
                l.values.extend_from_slice(v);
            }
            // Attention: token i sees positions 0..=start + i; the query heads of a group share
            // a key/value head.
            for i in 0..m {
                let seen = start + i + 1;
                sc.resize(group * seen, 0.0);
                for g in 0..s.kv_heads {
                    let q = &qkv[i * qkv_w + g * group * hd..i * qkv_w + (g + 1) * group * hd];
                    scores(q, hd, &l.keys[g * hd..], kv, seen, &mut sc);
                    for row in sc.chunks_mut(seen) {
                        softmax(row, scale);
                    }
                    let head = g * group;
                    let out = &mut y[i * dim + head * hd..i * dim + (head + group) * hd];
                    weighted_sum(&sc, seen, &l.values[g * hd..], kv, hd, out);
                }
            }
            matmul(&l.o, &y, m, &mut proj);
            x.iter_mut().zip(&proj).for_each(|(a, b)| *a += b);
            for (hr, xr) in h.chunks_mut(dim).zip(x.chunks(dim)) {
                hr.copy_from_slice(&rms_norm(xr, &l.ffn_norm, s.eps));
            }
            matmul(&l.gate_up, &h, m, &mut gu);
            for (f, g) in ff.chunks_mut(s.ffn).zip(gu.chunks(2 * s.ffn)) {
                let (gate, up) = g.split_at(s.ffn);
                for ((f, g), u) in f.iter_mut().zip(gate).zip(up) {
                    *f = g / (1.0 + (-g).exp()) * u;
                }
            }
            matmul(&l.down, &ff, m, &mut proj);
            x.iter_mut().zip(&proj).for_each(|(a, b)| *a += b);
        }
        self.len = start + m;
        x
    }
}

/// Query heads per key/value head.
fn group_of(s: &Shape) -> usize {
    s.heads / s.kv_heads
}

/// `x / rms(x) · w`.
fn rms_norm(x: &[f32], w: &[f32], eps: f32) -> Vec<f32> {
    let mean = x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32;
    let r = 1.0 / (mean + eps).sqrt();
    x.iter().zip(w).map(|(v, w)| v * r * w).collect()
}

/// Interleaved rotation of one head: pairs (2i, 2i + 1) by angle i of the position.
fn rope(head: &mut [f32], cos: &[f32], sin: &[f32]) {
    for (i, pair) in head.chunks_exact_mut(2).enumerate() {
        let (a, b) = (pair[0], pair[1]);
        pair[0] = a * cos[i] - b * sin[i];
        pair[1] = a * sin[i] + b * cos[i];
    }
}

/// Index of the largest value of each row of `logits` (rows of `vocab` values); the first one
/// on ties.
pub fn argmax_rows(logits: &[f32], vocab: usize) -> Vec<u32> {
    logits
        .chunks(vocab)
        .map(|row| {
            let mut best = 0;
            for (i, v) in row.iter().enumerate() {
                if *v > row[best] {
                    best = i;
                }
            }
            best as u32
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::time::Instant;

    /// The installed model (scripts/models.sh).
    fn model() -> Llama {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../models")
            .join(super::super::FOLDER)
            .join(super::super::FILE);
        let mut f = std::fs::File::open(&path).expect("run ./scripts/models.sh");
        let ct = gguf_file::Content::read(&mut f).unwrap();
        Llama::load(&ct, &mut f).unwrap()
    }

    /// Some token ids (any ids will do for the arithmetic).
    fn tokens(n: usize, seed: u32) -> Vec<u32> {
        (0..n as u32)
            .map(|i| (i * 7919 + seed * 104_729) % 49_000 + 100)
            .collect()
    }

    #[test]
    fn a_token_gets_the_same_logits_alone_or_in_a_pass_of_many() {
        let mut m = model();
        let vocab = m.vocab();
        // More prompt tokens than a chunk, so the prompt runs in several chunks.
        let prompt = tokens(CHUNK + 9, 1);
        let next = tokens(11, 2);
        let last = m.forward(&prompt, 1).unwrap();
        // Token by token.
        let mut one = Vec::new();
        for t in &next {
            one.extend(m.forward(&[*t], 1).unwrap());
        }
        // All at once, after cutting the cache back.
        m.truncate(prompt.len());
        let many = m.forward(&next, next.len()).unwrap();
        assert_eq!(one.len(), many.len());
        assert!(
            one.iter()
                .zip(&many)
                .all(|(a, b)| a.to_bits() == b.to_bits())
        );
        // The prompt in one chunk-split pass equals the prompt fed in two pieces.
        m.clear();
        m.forward(&prompt[..5], 0).unwrap();
        let again = m.forward(&prompt[5..], 1).unwrap();
        assert!(
            last.iter()
                .zip(&again)
                .all(|(a, b)| a.to_bits() == b.to_bits())
        );
        assert_eq!(argmax_rows(&last, vocab).len(), 1);
        assert!(last.iter().all(|v| v.is_finite()));
    }

    /// Cost of a pass over m tokens after a 900-token prompt (a measurement, not a test:
    /// `cargo test --release -p quiver-server pass_cost -- --ignored --nocapture`).
    #[test]
    #[ignore]
    fn pass_cost() {
        let mut m = model();
        let prompt = tokens(900, 3);
        let t0 = Instant::now();
        m.forward(&prompt, 1).unwrap();
        println!(
            "prefill 900 tokens: {:.0} ms",
            t0.elapsed().as_secs_f64() * 1e3
        );
        for n in [1, 2, 3, 4, 5, 6, 8, 10, 12, 16] {
            let next = tokens(n, 4);
            let reps = 10;
            let t0 = Instant::now();
            for _ in 0..reps {
                m.truncate(prompt.len());
                m.forward(&next, n).unwrap();
            }
            let ms = t0.elapsed().as_secs_f64() * 1e3 / reps as f64;
            println!("pass over {n:2} tokens: {ms:.1} ms");
        }
    }
}
