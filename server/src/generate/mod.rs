//! Text generation: SmolLM2-135M-Instruct (Llama architecture) from its GGUF file, every weight
//! dequantized to f32 at load (the Q4_1 arithmetic makes this small model's greedy answers go
//! wrong), run by our decoder (`llama.rs`) with a KV cache per request; greedy or sampled
//! decoding with stop sequences, and prompt-lookup decoding for greedy answers.
//!
//! Prompt lookup: the newest tokens are looked up earlier in the prompt and the answer; the
//! tokens that followed the place matching most of them are a draft (longer behind a longer
//! match), checked in one forward pass together with the newest token. The longest prefix of
//! the draft that greedy decoding would have produced is kept, plus the model's own next token;
//! the rest leaves the KV cache. The output is the greedy output, bitwise: every kernel computes
//! a token's values in the same order whether the pass holds one token or several (`kernel.rs`,
//! tested in `llama.rs`).
//!
//! | file | what |
//! |---|---|
//! | `mod.rs` | the generator: sampling, stop sequences, prompt-lookup drafts and verification |
//! | `llama.rs` | the decoder: f32 weights, KV cache, forward pass over a token slice |
//! | `kernel.rs` | skinny matrix product, attention scores and sums (AVX-512 + scalar twins) |
//! | `softmax.rs` | the attention softmax and its exponential (AVX-512 + scalar twin) |
//! | `tokenizer.rs` | the GGUF tokenizer and the chat template |
//! | `backend.rs` | `GenBackend`: this model (`BuiltIn`) or a remote one, as the service sees them |
//! | `openai.rs` | the remote back-end: an OpenAI-compatible `/v1/chat/completions` endpoint |
//!
//! One generation runs at a time on this model (it holds one KV cache); `rag.rs`'s callers
//! queue for it with a bound.

pub mod backend;
pub mod kernel;
pub mod llama;
pub mod openai;
pub mod softmax;
pub mod tokenizer;

use crate::embed::ModelError;
use candle_core::quantized::gguf_file;
use candle_core::{Device, Tensor};
use candle_transformers::generation::{LogitsProcessor, Sampling};
use llama::{Llama, argmax_rows};
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;
use tokenizer::ChatTokenizer;

/// The model's name.
pub const NAME: &str = "smollm2-135m-instruct";
/// Its folder under the models folder.
pub const FOLDER: &str = "smollm2-135m-instruct";
/// Its file.
pub const FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// How to decode.
#[derive(Debug, Clone)]
pub struct GenParams {
    /// Most new tokens.
    pub max_tokens: usize,
    /// 0 for greedy decoding.
    pub temperature: f64,
    /// Nucleus sampling mass (0 or 1: off).
    pub top_p: f64,
    /// Sample among the k most likely (0: off).
    pub top_k: usize,
    /// Texts that end the answer (not included in it).
    pub stop: Vec<String>,
    /// Seed of the sampler.
    pub seed: u64,
    /// Draft tokens by prompt lookup (greedy decoding only; same output, fewer passes).
    pub prompt_lookup: bool,
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The model ended its turn.
    EndOfTurn,
    /// `max_tokens` reached.
    Length,
    /// A stop sequence appeared.
    StopSequence,
    /// The receiver went away.
    Cancelled,
}

impl StopReason {
    /// Wire name.
    pub fn name(self) -> &'static str {
        match self {
            StopReason::EndOfTurn => "end_of_turn",
            StopReason::Length => "length",
            StopReason::StopSequence => "stop_sequence",
            StopReason::Cancelled => "cancelled",
        }
    }
}

/// What a generation did.
#[derive(Debug, Clone)]
pub struct GenOutcome {
    /// Tokens of the prompt.
    pub prompt_tokens: usize,
    /// Tokens generated.
    pub completion_tokens: usize,
    /// Seconds to process the prompt and produce the first token.
    pub first_token_secs: f64,
    /// Seconds in all.
    pub secs: f64,
    /// Why it ended.
    pub reason: StopReason,
    /// The whole answer.
    pub text: String,
    /// Forward passes after the prompt's.
    pub passes: usize,
    /// Draft tokens accepted (prompt lookup).
    pub accepted: usize,
}

/// The loaded model.
pub struct Generator {
    model: Mutex<Llama>,
    /// Its tokenizer.
    pub tokenizer: ChatTokenizer,
    /// Longest prompt plus answer (kept here: asking the model would wait for its lock).
    context: usize,
}

/// Longest run of newest tokens compared with an earlier place of the prompt or answer.
const MATCH: usize = 24;

/// Draft tokens taken after an earlier place whose last `k` tokens equal the newest `k`.
///
/// A pass streams the weights once (`kernel.rs`), but each draft token still adds its own
/// arithmetic and its attention over the whole context: after a 900-token prompt, 0.17 to 0.34
/// of a one-token pass on one thread, 0.1 to 0.26 on two (the ignored test `pass_cost` in
/// `llama.rs`, quiet machine). A draft token pays when it is accepted more often than that.
/// Replaying 100 logged Ask answers (benches/RESULTS.md), the chance that a draft's j-th token
/// is accepted grows with the length of the match: after a single matching token the first
/// draft token is right 22% of the time, after two 51% (the fourth 24%), after six or more
/// about 90% (the eighth 50%, the twelfth 38%). Hence no draft on one token, and longer drafts
/// behind longer matches; of the tables replayed this one lost least as a draft token's cost
/// grows (0.15 to 0.3 of a pass).
fn draft_len(k: usize) -> usize {
    match k {
        0 | 1 => 0,
        2 => 2,
        3 => 4,
        4 | 5 => 6,
        _ => 10,
    }
}

/// The tokens that followed the earlier place of `history` matching most of its newest tokens
/// (the latest such place on ties), as many as the match earns (`draft_len`), at most `max`.
fn draft(history: &[u32], max: usize) -> Vec<u32> {
    let len = history.len();
    let Some(&last) = history.last() else {
        return Vec::new();
    };
    let (mut best, mut best_k) = (0, 0);
    for i in (0..len - 1).rev() {
        if history[i] != last {
            continue;
        }
        let k = (0..MATCH.min(i + 1))
            .take_while(|&j| history[i - j] == history[len - 1 - j])
            .count();
        if k > best_k {
            (best, best_k) = (i, k);
            if k == MATCH {
                break;
            }
        }
    }
    let n = draft_len(best_k).min(max);
    history[best + 1..(best + 1 + n).min(len)].to_vec()
}

/// The answer as it grows: tokens, text, what was handed out, stop checks.
struct Answer<'a> {
    g: &'a Generator,
    p: &'a GenParams,
    out: Vec<u32>,
    text: String,
    emitted: usize,
    hold: usize,
}

impl Answer<'_> {
    /// Takes one generated token; `Some(reason)` when generation ends with it.
    fn push(
        &mut self,
        t: u32,
        emit: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Option<StopReason>, ModelError> {
        if t == self.g.tokenizer.im_end || t == self.g.tokenizer.eos {
            return Ok(Some(StopReason::EndOfTurn));
        }
        self.out.push(t);
        self.text = self.g.tokenizer.decode(&self.out)?;
        if let Some(at) = self
            .p
            .stop
            .iter()
            .filter_map(|s| self.text.find(s.as_str()))
            .min()
        {
            self.text.truncate(at);
            return Ok(Some(StopReason::StopSequence));
        }
        // Hand out what is settled: no half character, nothing a stop sequence may claim.
        if !self.text.ends_with('\u{FFFD}') {
            let mut safe = self.text.len().saturating_sub(self.hold.saturating_sub(1));
            while !self.text.is_char_boundary(safe) {
                safe -= 1;
            }
            if safe > self.emitted {
                if !emit(&self.text[self.emitted..safe]) {
                    return Ok(Some(StopReason::Cancelled));
                }
                self.emitted = safe;
            }
        }
        if self.out.len() >= self.p.max_tokens {
            return Ok(Some(StopReason::Length));
        }
        Ok(None)
    }
}

impl Generator {
    /// Loads the GGUF file in `dir`, dequantizing every weight to f32.
    pub fn load(dir: &Path) -> Result<Generator, ModelError> {
        let path = dir.join(FILE);
        if !path.is_file() {
            return Err(ModelError::missing(NAME, &path));
        }
        let damaged = |e: String| ModelError::damaged(NAME, &path, e);
        let mut file = std::fs::File::open(&path).map_err(|e| damaged(e.to_string()))?;
        let content = gguf_file::Content::read(&mut file).map_err(|e| damaged(e.to_string()))?;
        let tokenizer = ChatTokenizer::from_gguf(&content).map_err(damaged)?;
        let model = Llama::load(&content, &mut file).map_err(|e| damaged(e.to_string()))?;
        Ok(Generator {
            context: model.context(),
            model: Mutex::new(model),
            tokenizer,
        })
    }

    /// Longest prompt plus answer, in tokens.
    pub fn context(&self) -> usize {
        self.context
    }

    /// Generates from `prompt` (token ids), handing each new piece of text to `emit`; `emit`
    /// returning false stops (the caller left).
    pub fn generate(
        &self,
        prompt: &[u32],
        p: &GenParams,
        emit: &mut dyn FnMut(&str) -> bool,
    ) -> Result<GenOutcome, ModelError> {
        if prompt.is_empty() {
            return Err(ModelError::Invalid("the prompt is empty".into()));
        }
        let mut model = self.model.lock().unwrap_or_else(|e| e.into_inner());
        if prompt.len() + p.max_tokens > model.context() {
            return Err(ModelError::Invalid(format!(
                "prompt ({} tokens) plus max_tokens ({}) exceed the model's context of {} tokens",
                prompt.len(),
                p.max_tokens,
                model.context()
            )));
        }
        let t0 = Instant::now();
        let inference = |e: candle_core::Error| ModelError::Inference(e.to_string());
        let greedy = p.temperature <= 0.0;
        let sampling = if greedy {
            Sampling::ArgMax
        } else {
            let t = p.temperature;
            match (p.top_k, p.top_p > 0.0 && p.top_p < 1.0) {
                (0, false) => Sampling::All { temperature: t },
                (k, false) => Sampling::TopK { k, temperature: t },
                (0, true) => Sampling::TopP {
                    p: p.top_p,
                    temperature: t,
                },
                (k, true) => Sampling::TopKThenTopP {
                    k,
                    p: p.top_p,
                    temperature: t,
                },
            }
        };
        let mut sampler = LogitsProcessor::from_sampling(p.seed, sampling);
        model.clear();
        let vocab = model.vocab();
        let sample = |sampler: &mut LogitsProcessor, row: Vec<f32>| {
            let row = Tensor::from_vec(row, vocab, &Device::Cpu)?;
            sampler.sample(&row)
        };
        let logits = model.forward(prompt, 1).map_err(inference)?;
        let mut pending = vec![sample(&mut sampler, logits).map_err(inference)?];
        let first_token_secs = t0.elapsed().as_secs_f64();
        let mut a = Answer {
            g: self,
            p,
            out: Vec::new(),
            text: String::new(),
            emitted: 0,
            hold: p.stop.iter().map(String::len).max().unwrap_or(0),
        };
        let lookup = greedy && p.prompt_lookup;
        let (mut passes, mut accepted) = (0, 0);
        let reason = 'decode: loop {
            for t in pending.drain(..) {
                if let Some(r) = a.push(t, emit)? {
                    break 'decode r;
                }
            }
            // The cache holds the prompt and every answer token but the newest.
            let newest = *a.out.last().expect("a token was taken");
            let guess = if lookup {
                let history: Vec<u32> = prompt.iter().chain(&a.out).copied().collect();
                draft(&history, p.max_tokens - a.out.len())
            } else {
                Vec::new()
            };
            let mut input = Vec::with_capacity(1 + guess.len());
            input.push(newest);
            input.extend_from_slice(&guess);
            let before = model.len();
            let logits = model.forward(&input, input.len()).map_err(inference)?;
            passes += 1;
            if guess.is_empty() {
                pending.push(sample(&mut sampler, logits).map_err(inference)?);
            } else {
                let best = argmax_rows(&logits, vocab);
                let ok = guess.iter().zip(&best).take_while(|(g, b)| g == b).count();
                model.truncate(before + 1 + ok);
                accepted += ok;
                pending.extend_from_slice(&guess[..ok]);
                pending.push(best[ok]);
            }
        };
        if reason != StopReason::Cancelled {
            let text = a.text.trim_end_matches('\u{FFFD}');
            if text.len() > a.emitted {
                emit(&text[a.emitted..]);
            }
        }
        Ok(GenOutcome {
            prompt_tokens: prompt.len(),
            completion_tokens: a.out.len(),
            first_token_secs,
            secs: t0.elapsed().as_secs_f64(),
            reason,
            text: a.text,
            passes,
            accepted,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::draft;

    #[test]
    fn drafts_follow_the_latest_earlier_match() {
        // ... 5 6 7 | ... 5 6 7 8 9 | 5 6 7  → the latest earlier "5 6 7" is followed by 8 9 5.
        let h = [1, 5, 6, 7, 2, 5, 6, 7, 8, 9, 5, 6, 7];
        assert_eq!(draft(&h, 3), vec![8, 9, 5]);
        // A three-token match earns four.
        assert_eq!(draft(&h, 10), vec![8, 9, 5, 6]);
        // A two-token match earns two draft tokens at most.
        assert_eq!(draft(&[4, 9, 1, 8, 3, 4, 9], 10), vec![1, 8]);
        assert_eq!(draft(&[4, 9, 1, 8, 4, 9], 1), vec![1]);
        assert_eq!(draft(&[4, 9, 1, 8, 4, 9], 2), vec![1, 8]);
        // The place matching more tokens wins over a later one matching fewer.
        let h = [3, 4, 9, 1, 8, 8, 8, 8, 8, 8, 8, 8, 5, 4, 9, 2, 3, 4, 9];
        assert_eq!(draft(&h, 4), vec![1, 8, 8, 8]);
        assert!(
            draft(&[4, 9, 1, 2, 9], 2).is_empty(),
            "a single token is no match"
        );
        assert!(draft(&[1, 2, 3], 5).is_empty());
        assert!(draft(&[7], 5).is_empty());
    }
}
