//! The generation back-end: one trait, [`GenBackend`], with two implementations: the built-in
//! SmolLM2 on our own decoder ([`BuiltIn`], wrapping [`Generator`]) and any OpenAI-compatible
//! `/v1/chat/completions` endpoint ([`super::openai::OpenAiChat`], `[generation] url`).
//! `rag.rs` holds an `Arc<dyn GenBackend>` and never sees token ids: the built-in back-end
//! applies the chat template and tokenizes, a remote endpoint does both on its side.
//!
//! ```text
//! rag.rs ─► GenBackend::check     (before the queue: bad requests fail at once)
//!        ─► queue turn ─► GenBackend::generate (blocking pool) ─► emit(piece) ─► gRPC stream
//!              ├─ BuiltIn:    chat template ─► tokenizer ─► Generator::generate (prompt lookup)
//!              └─ OpenAiChat: messages as JSON ─► POST {url}/chat/completions, SSE deltas
//! ```
//!
//! The contract both keep: `emit` gets each new piece of answer text in order and returning
//! false stops generation (the reason is then `Cancelled`); the [`GenOutcome`] carries token
//! counts, first-token time and why generation stopped.

use super::tokenizer::{Message, chat_prompt};
use super::{GenOutcome, GenParams, Generator, NAME};
use crate::embed::ModelError;

/// What to generate from.
#[derive(Debug, Clone)]
pub enum ChatInput {
    /// A chat (system, user and assistant turns); the back-end applies its own template.
    Messages(Vec<Message>),
    /// Text handed to the model as is, without a chat template. Only the built-in model takes
    /// it: a chat endpoint has no raw-prompt form (INVALID_ARGUMENT there).
    Raw(String),
}

/// A model that answers chats, streaming its text.
pub trait GenBackend: Send + Sync {
    /// The model's name, as reported to clients (`model` on the last Generate and Ask message).
    fn name(&self) -> &str;
    /// Generations that may run at once (the built-in model holds one KV cache: 1).
    fn concurrency(&self) -> usize;
    /// Refuses, before the request queues, what this back-end cannot run: a prompt too long
    /// for the built-in model's context, a raw prompt for a chat endpoint.
    fn check(&self, input: &ChatInput, p: &GenParams) -> Result<(), ModelError>;
    /// Generates an answer to `input`, handing each new piece of text to `emit` as it comes;
    /// `emit` returning false stops (the caller left).
    fn generate(
        &self,
        input: &ChatInput,
        p: &GenParams,
        emit: &mut dyn FnMut(&str) -> bool,
    ) -> Result<GenOutcome, ModelError>;
}

/// The built-in SmolLM2-135M-Instruct: ChatML template, our tokenizer, our decoder, prompt
/// lookup. Token counts are the model's own.
pub struct BuiltIn {
    model: Generator,
}

impl BuiltIn {
    /// Wraps a loaded model.
    pub fn new(model: Generator) -> BuiltIn {
        BuiltIn { model }
    }

    /// The model underneath.
    pub fn generator(&self) -> &Generator {
        &self.model
    }

    /// The prompt's token ids, checked against the context with room for `max_tokens`.
    fn prompt_ids(&self, input: &ChatInput, p: &GenParams) -> Result<Vec<u32>, ModelError> {
        let ids = match input {
            ChatInput::Messages(m) => self.model.tokenizer.encode(&chat_prompt(m))?,
            ChatInput::Raw(text) => self.model.tokenizer.encode(text)?,
        };
        if ids.len() + p.max_tokens > self.model.context() {
            return Err(ModelError::Invalid(format!(
                "prompt ({} tokens) plus max_tokens ({}) exceed the model's context of {}",
                ids.len(),
                p.max_tokens,
                self.model.context()
            )));
        }
        Ok(ids)
    }
}

impl GenBackend for BuiltIn {
    fn name(&self) -> &str {
        NAME
    }

    fn concurrency(&self) -> usize {
        1
    }

    fn check(&self, input: &ChatInput, p: &GenParams) -> Result<(), ModelError> {
        self.prompt_ids(input, p).map(drop)
    }

    fn generate(
        &self,
        input: &ChatInput,
        p: &GenParams,
        emit: &mut dyn FnMut(&str) -> bool,
    ) -> Result<GenOutcome, ModelError> {
        // Tokenized again here (a millisecond on an Ask prompt): `check` runs on the request's
        // task, this on the blocking pool after the queue, and nothing is kept in between.
        let ids = self.prompt_ids(input, p)?;
        self.model.generate(&ids, p, emit)
    }
}
