//! Text generation: SmolLM2-135M-Instruct (Llama architecture) from its GGUF file, run with
//! candle's quantized-llama model with every weight dequantized to f32 at load (the Q4_1
//! arithmetic makes this small model's greedy answers go wrong), a KV cache per request, and
//! greedy or sampled decoding with stop sequences.
//!
//! One generation runs at a time (the model holds one KV cache); `service.rs`'s callers queue
//! for it with a bound.

pub mod tokenizer;

use crate::embed::ModelError;
use candle_core::quantized::gguf_file;
use candle_core::{Device, Tensor};
use candle_transformers::generation::{LogitsProcessor, Sampling};
use candle_transformers::models::quantized_llama::{MAX_SEQ_LEN, ModelWeights};
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
}

/// The loaded model.
pub struct Generator {
    model: Mutex<ModelWeights>,
    /// Its tokenizer.
    pub tokenizer: ChatTokenizer,
    context: usize,
    device: Device,
}

impl Generator {
    /// Loads the GGUF file in `dir`, dequantizing every weight to f32. The process must have
    /// `CANDLE_DEQUANTIZE_ALL=1` in its environment before any model is loaded (main sets it).
    pub fn load(dir: &Path) -> Result<Generator, ModelError> {
        let path = dir.join(FILE);
        if !path.is_file() {
            return Err(ModelError::missing(NAME, &path));
        }
        let damaged = |e: String| ModelError::damaged(NAME, &path, e);
        let mut file = std::fs::File::open(&path).map_err(|e| damaged(e.to_string()))?;
        let content = gguf_file::Content::read(&mut file).map_err(|e| damaged(e.to_string()))?;
        let tokenizer = ChatTokenizer::from_gguf(&content).map_err(damaged)?;
        let context = content
            .metadata
            .get("llama.context_length")
            .and_then(|v| v.to_u32().ok())
            .map_or(2048, |v| v as usize)
            .min(MAX_SEQ_LEN);
        let device = Device::Cpu;
        let model = ModelWeights::from_gguf(content, &mut file, &device)
            .map_err(|e| damaged(e.to_string()))?;
        Ok(Generator {
            model: Mutex::new(model),
            tokenizer,
            context,
            device,
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
        if prompt.len() + p.max_tokens > self.context {
            return Err(ModelError::Invalid(format!(
                "prompt ({} tokens) plus max_tokens ({}) exceed the model's context of {} tokens",
                prompt.len(),
                p.max_tokens,
                self.context
            )));
        }
        let t0 = Instant::now();
        let inference = |e: candle_core::Error| ModelError::Inference(e.to_string());
        let sampling = if p.temperature <= 0.0 {
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
        let mut model = self.model.lock().unwrap_or_else(|e| e.into_inner());
        model.clear_kv_cache();
        let mut out: Vec<u32> = Vec::new();
        let mut emitted = 0usize; // bytes of the answer handed out
        let hold = p.stop.iter().map(String::len).max().unwrap_or(0);
        let mut text = String::new();
        let mut first_token_secs = 0.0;
        let mut reason = StopReason::Length;
        let mut input = Tensor::new(prompt, &self.device)
            .and_then(|t| t.unsqueeze(0))
            .map_err(inference)?;
        let mut pos = 0;
        while out.len() < p.max_tokens {
            let logits = model.forward(&input, pos).map_err(inference)?;
            pos += input.dim(1).map_err(inference)?;
            let logits = logits.squeeze(0).map_err(inference)?;
            let next = sampler.sample(&logits).map_err(inference)?;
            if out.is_empty() {
                first_token_secs = t0.elapsed().as_secs_f64();
            }
            if next == self.tokenizer.im_end || next == self.tokenizer.eos {
                reason = StopReason::EndOfTurn;
                break;
            }
            out.push(next);
            text = self.tokenizer.decode(&out)?;
            if let Some(at) = p.stop.iter().filter_map(|s| text.find(s.as_str())).min() {
                text.truncate(at);
                reason = StopReason::StopSequence;
                break;
            }
            // Hand out what is settled: no half character, nothing a stop sequence may claim.
            if !text.ends_with('\u{FFFD}') {
                let mut safe = text.len().saturating_sub(hold.saturating_sub(1));
                while !text.is_char_boundary(safe) {
                    safe -= 1;
                }
                if safe > emitted {
                    if !emit(&text[emitted..safe]) {
                        reason = StopReason::Cancelled;
                        break;
                    }
                    emitted = safe;
                }
            }
            input = Tensor::new(&[next], &self.device)
                .and_then(|t| t.unsqueeze(0))
                .map_err(inference)?;
        }
        if reason != StopReason::Cancelled {
            let text = text.trim_end_matches('\u{FFFD}');
            if text.len() > emitted {
                emit(&text[emitted..]);
            }
        }
        Ok(GenOutcome {
            prompt_tokens: prompt.len(),
            completion_tokens: out.len(),
            first_token_secs,
            secs: t0.elapsed().as_secs_f64(),
            reason,
            text,
        })
    }
}
