//! The gRPC service `quiver.v1.Generation`: Generate (prompt or chat → streamed text) and Ask
//! (question → retrieve from a document collection → grounded, cited answer).
//!
//! The model is a [`GenBackend`]: the built-in SmolLM2, or an OpenAI-compatible chat endpoint
//! (`generate/backend.rs`, `generate/openai.rs`); this file builds chat messages, never token ids.
//! As many generations run at once as the back-end allows (the built-in model: one; a remote
//! endpoint: a few); up to `MAX_WAITING` more wait, and further callers get RESOURCE_EXHAUSTED
//! at once. The model runs on the blocking pool and streams text through a channel; when the
//! client goes away the channel closes and generation stops.

use crate::convert;
use crate::generate::backend::{ChatInput, GenBackend};
use crate::generate::tokenizer::Message;
use crate::generate::{GenOutcome, GenParams};
use crate::retrieve::{HybridSettings, Mode, TextQuery};
use crate::service::{OwnedSearch, Service, blocking};
use crate::status::{invalid, model_status};
use quiver_proto::v1 as pb;
use quiver_proto::v1::generation_server::Generation;
use serde_json::Value;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;
use tokio::sync::{Semaphore, mpsc};
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

/// Callers that may wait for the model while it is busy.
const MAX_WAITING: usize = 16;
/// Most context chunks an Ask may request.
const MAX_ASK_K: u32 = 8;
/// Cosine similarity below which a chunk is not context for an answer. all-MiniLM-L6-v2 gives
/// unrelated sentence pairs scores near 0 (the golden pairs: -0.05) and paraphrases 0.5 and up.
const DEFAULT_MIN_SCORE: f32 = 0.3;
/// The answer when no chunk is relevant enough.
pub const NO_CONTEXT_ANSWER: &str =
    "I don't know: no passage in this collection matches the question.";

/// The generation back-end and its queue.
pub struct GenSlot {
    /// The back-end, or why it is not available.
    pub model: Result<Arc<dyn GenBackend>, String>,
    turn: Semaphore,
    waiting: AtomicUsize,
    cache: AnswerCache,
}

/// Cosine similarity of two questions' embeddings above which one's answer serves the other.
const CACHE_SIMILARITY: f32 = 0.95;
/// Answers remembered, over all collections (oldest dropped first).
const CACHE_ENTRIES: usize = 1024;

/// A remembered greedy answer, valid while its collection has not changed.
struct CachedAnswer {
    collection: u64,
    version: u64,
    settings: String,
    question: Vec<f32>,
    text: String,
    last: pb::AskResponse,
}

/// The semantic answer cache: greedy Asks on an unchanged collection, with the same settings
/// and a question embedding within `CACHE_SIMILARITY`, get the earlier answer.
#[derive(Default)]
struct AnswerCache {
    entries: std::sync::Mutex<std::collections::VecDeque<CachedAnswer>>,
}

impl AnswerCache {
    fn lookup(
        &self,
        collection: u64,
        version: u64,
        settings: &str,
        q: &[f32],
    ) -> Option<(String, pb::AskResponse)> {
        let mut e = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        // Answers from before the collection's last write are stale: drop them.
        e.retain(|c| c.collection != collection || c.version == version);
        e.iter()
            .filter(|c| c.collection == collection && c.settings == settings)
            .map(|c| (crate::embed::cosine(&c.question, q), c))
            .filter(|(s, _)| *s >= CACHE_SIMILARITY)
            .max_by(|a, b| a.0.total_cmp(&b.0))
            .map(|(_, c)| (c.text.clone(), c.last.clone()))
    }

    fn insert(&self, entry: CachedAnswer) {
        let mut e = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if e.len() >= CACHE_ENTRIES {
            e.pop_front();
        }
        e.push_back(entry);
    }
}

impl GenSlot {
    /// Wraps a back-end (or the reason it is missing); as many requests run at once as it
    /// allows.
    pub fn new(model: Result<Arc<dyn GenBackend>, String>) -> GenSlot {
        let runs = model.as_ref().map_or(1, |m| m.concurrency().max(1));
        GenSlot {
            model,
            turn: Semaphore::new(runs),
            waiting: AtomicUsize::new(0),
            cache: AnswerCache::default(),
        }
    }

    fn model(&self) -> Result<Arc<dyn GenBackend>, Status> {
        self.model.clone().map_err(Status::failed_precondition)
    }

    /// Waits for the model's turn, or refuses when too many wait already.
    async fn turn(&self) -> Result<tokio::sync::SemaphorePermit<'_>, Status> {
        if self.waiting.fetch_add(1, Ordering::SeqCst) >= MAX_WAITING {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            return Err(Status::resource_exhausted(format!(
                "the generation queue is full ({MAX_WAITING} requests wait); retry later"
            )));
        }
        let permit = self.turn.acquire().await;
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        permit.map_err(|_| Status::unavailable("the generation model has stopped"))
    }
}

#[allow(clippy::too_many_arguments)]
fn params(
    lookup: bool,
    max_tokens: u32,
    default_max: usize,
    temperature: f32,
    top_p: f32,
    top_k: u32,
    stop: Vec<String>,
    seed: u64,
) -> Result<GenParams, Status> {
    if !temperature.is_finite() || !(0.0..=5.0).contains(&temperature) {
        return Err(invalid(format!(
            "temperature {temperature} is out of range (0 to 5)"
        )));
    }
    if !top_p.is_finite() || !(0.0..=1.0).contains(&top_p) {
        return Err(invalid(format!("top_p {top_p} is out of range (0 to 1)")));
    }
    if stop.iter().any(String::is_empty) || stop.len() > 16 {
        return Err(invalid("stop sequences must be non-empty, at most 16"));
    }
    Ok(GenParams {
        max_tokens: if max_tokens == 0 {
            default_max
        } else {
            max_tokens as usize
        },
        temperature: temperature as f64,
        top_p: top_p as f64,
        top_k: top_k as usize,
        stop,
        seed,
        prompt_lookup: lookup,
    })
}

type GenStream = Pin<Box<dyn Stream<Item = Result<pb::GenerateResponse, Status>> + Send>>;
type AskStream = Pin<Box<dyn Stream<Item = Result<pb::AskResponse, Status>> + Send>>;

/// Waits for the model's turn, then runs it on the blocking pool; each piece of text goes
/// through `piece` to the response stream.
async fn run_model<T: Send + 'static>(
    slot: &GenSlot,
    model: Arc<dyn GenBackend>,
    input: ChatInput,
    p: GenParams,
    tx: mpsc::Sender<Result<T, Status>>,
    piece: fn(&str) -> T,
) -> Result<GenOutcome, Status> {
    let _turn = slot.turn().await?;
    tokio::task::spawn_blocking(move || {
        model.generate(&input, &p, &mut |s| tx.blocking_send(Ok(piece(s))).is_ok())
    })
    .await
    .map_err(|e| Status::internal(format!("generation task failed: {e}")))?
    .map_err(model_status)
}

#[tonic::async_trait]
impl Generation for Service {
    type GenerateStream = GenStream;
    type AskStream = AskStream;

    async fn generate(
        &self,
        req: Request<pb::GenerateRequest>,
    ) -> Result<Response<Self::GenerateStream>, Status> {
        let r = req.into_inner();
        let model = self.generation.model()?;
        let input = if !r.messages.is_empty() {
            let mut msgs = Vec::new();
            for m in r.messages {
                if !matches!(m.role.as_str(), "system" | "user" | "assistant") {
                    return Err(invalid(format!(
                        "role {:?} must be system, user or assistant",
                        m.role
                    )));
                }
                msgs.push(Message {
                    role: m.role,
                    content: m.content,
                });
            }
            ChatInput::Messages(msgs)
        } else if r.prompt.trim().is_empty() {
            return Err(invalid("give a prompt or messages"));
        } else if r.raw {
            ChatInput::Raw(r.prompt)
        } else {
            ChatInput::Messages(vec![Message {
                role: "user".into(),
                content: r.prompt,
            }])
        };
        let p = params(
            !r.no_prompt_lookup,
            r.max_tokens,
            256,
            r.temperature,
            r.top_p,
            r.top_k,
            r.stop,
            r.seed,
        )?;
        model.check(&input, &p).map_err(model_status)?;
        let name = model.name().to_string();
        let (tx, rx) = mpsc::channel(64);
        let svc = self.clone();
        tokio::spawn(async move {
            let piece = |s: &str| pb::GenerateResponse {
                text: s.to_string(),
                ..Default::default()
            };
            let out = run_model(&svc.generation, model, input, p, tx.clone(), piece).await;
            let last = out.map(|o| pb::GenerateResponse {
                model: name,
                done: true,
                stop_reason: o.reason.name().into(),
                prompt_tokens: o.prompt_tokens as u32,
                completion_tokens: o.completion_tokens as u32,
                tokens_per_second: rate(&o),
                first_token_ms: o.first_token_secs * 1e3,
                forward_passes: o.passes as u32,
                draft_tokens_accepted: o.accepted as u32,
                ..Default::default()
            });
            let _ = tx.send(last).await;
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn ask(&self, req: Request<pb::AskRequest>) -> Result<Response<Self::AskStream>, Status> {
        let wait = self.queue_wait(req.metadata());
        let r = req.into_inner();
        if r.question.trim().is_empty() {
            return Err(invalid("the question is empty"));
        }
        if r.k > MAX_ASK_K {
            return Err(invalid(format!(
                "k {} is above {MAX_ASK_K} context chunks",
                r.k
            )));
        }
        let model = self.generation.model()?;
        let p = params(
            !r.no_prompt_lookup,
            r.max_tokens,
            200,
            r.temperature,
            0.0,
            0,
            Vec::new(),
            r.seed,
        )?;
        let t0 = Instant::now();
        let (c, w) = self.text_collection(&r.collection)?;
        let vector = self
            .embed_texts(&w, vec![r.question.clone()], wait)
            .await?
            .pop()
            .unwrap_or_default();
        let (coll_id, version) = (c.id.0, c.last_seq());
        let mode = Mode::resolve(r.mode, c.has_text_index())?;
        let settings = format!(
            "{}|{}|{}|{:?}|{mode:?}|{:?}",
            r.k, r.min_score, p.max_tokens, r.filter, r.hybrid
        );
        let cacheable = p.temperature == 0.0 && !r.no_cache;
        if cacheable {
            let hit = self
                .generation
                .cache
                .lookup(coll_id, version, &settings, &vector);
            if let Some((text, mut last)) = hit {
                last.cached = true;
                last.timings = Some(pb::AskTimings {
                    retrieve_ms: t0.elapsed().as_secs_f64() * 1e3,
                    ..Default::default()
                });
                let answer = pb::AskResponse {
                    text,
                    ..Default::default()
                };
                let stream = tokio_stream::iter(vec![Ok(answer), Ok(last)]);
                return Ok(Response::new(Box::pin(stream)));
            }
        }
        let question_vector = vector.clone();
        let k = if r.k == 0 { 4 } else { r.k };
        let filter = convert::opt_filter(r.filter.as_ref())?;
        let dense = OwnedSearch::from_pb(pb::SearchRequest {
            collection: r.collection,
            vector,
            k,
            filter: r.filter,
            with_payload: true,
            ..Default::default()
        })?;
        let q = TextQuery {
            mode,
            text: r.question.clone(),
            dense,
            filter,
            k: k as usize,
            hybrid: HybridSettings::from_pb(r.hybrid.as_ref())?,
            with_vector: false,
        };
        let hits = blocking(move || q.run(&c)).await?;
        let retrieve_ms = t0.elapsed().as_secs_f64() * 1e3;
        let min_score = if r.min_score == 0.0 {
            DEFAULT_MIN_SCORE
        } else {
            r.min_score
        };
        let terms_needed = terms_needed(&r.question);
        let citations: Vec<pb::Citation> = hits
            .into_iter()
            .filter(|h| {
                min_score < 0.0
                    || h.dense.is_some_and(|s| s >= min_score)
                    || terms_needed.is_some_and(|n| h.matched_terms >= n)
            })
            .enumerate()
            .map(|(i, h)| {
                let hit = convert::scored_pb(h.record);
                let payload: Value = serde_json::from_str(&hit.payload_json).unwrap_or_default();
                pb::Citation {
                    number: i as u32 + 1,
                    doc_id: payload["doc_id"].as_str().unwrap_or_default().to_string(),
                    chunk: payload["chunk"].as_u64().unwrap_or_default() as u32,
                    score: hit.score,
                    text: payload["text"].as_str().unwrap_or_default().to_string(),
                    cited: false,
                }
            })
            .collect();
        if citations.is_empty() {
            // Nothing relevant was found: say so rather than let the model guess.
            let answer = pb::AskResponse {
                text: NO_CONTEXT_ANSWER.into(),
                ..Default::default()
            };
            let last = pb::AskResponse {
                done: true,
                stop_reason: "no_context".into(),
                timings: Some(pb::AskTimings {
                    retrieve_ms,
                    ..Default::default()
                }),
                ..Default::default()
            };
            let stream = tokio_stream::iter(vec![Ok(answer), Ok(last)]);
            return Ok(Response::new(Box::pin(stream)));
        }
        let input = ChatInput::Messages(ask_messages(&r.question, &citations));
        model.check(&input, &p).map_err(model_status)?;
        let name = model.name().to_string();
        let (tx, rx) = mpsc::channel(64);
        let svc = self.clone();
        tokio::spawn(async move {
            let piece = |s: &str| pb::AskResponse {
                text: s.to_string(),
                ..Default::default()
            };
            let out = run_model(&svc.generation, model, input, p, tx.clone(), piece).await;
            let last = out.map(|o| {
                let answer = o.text.clone();
                let mut citations = citations;
                for c in &mut citations {
                    c.cited = o.text.contains(&format!("[{}]", c.number));
                }
                let last = pb::AskResponse {
                    done: true,
                    model: name,
                    citations,
                    stop_reason: o.reason.name().into(),
                    timings: Some(pb::AskTimings {
                        retrieve_ms,
                        prompt_ms: o.first_token_secs * 1e3,
                        generate_ms: o.secs * 1e3,
                        first_token_ms: retrieve_ms + o.first_token_secs * 1e3,
                        prompt_tokens: o.prompt_tokens as u32,
                        completion_tokens: o.completion_tokens as u32,
                        forward_passes: o.passes as u32,
                        draft_tokens_accepted: o.accepted as u32,
                    }),
                    ..Default::default()
                };
                (answer, last)
            });
            let last = last.map(|(answer, last)| {
                let complete = matches!(last.stop_reason.as_str(), "end_of_turn" | "length");
                // An empty answer is never worth serving again.
                if cacheable && complete && !answer.trim().is_empty() {
                    svc.generation.cache.insert(CachedAnswer {
                        collection: coll_id,
                        version,
                        settings,
                        question: question_vector,
                        text: answer,
                        last: last.clone(),
                    });
                }
                last
            });
            let _ = tx.send(last).await;
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}

/// How many of a question's distinct terms a chunk found by BM25 alone must hold to be given
/// to the model: two thirds, rounded up (`None` when the question has no terms).
fn terms_needed(question: &str) -> Option<u32> {
    let n = quiver_storage::text::query_terms(question).len() as u32;
    (n > 0).then(|| (2 * n).div_ceil(3))
}

fn rate(o: &GenOutcome) -> f64 {
    let decode = o.secs - o.first_token_secs;
    if o.completion_tokens > 1 && decode > 0.0 {
        (o.completion_tokens - 1) as f64 / decode
    } else {
        0.0
    }
}

/// The instructions given with the retrieved context.
pub const ASK_SYSTEM: &str = "You answer questions using only the numbered context passages. \
Quote the facts you use and cite their numbers like [1]. If the passages do not contain the \
answer, say: I don't know.";

/// The chat of an Ask: the rules as the system turn, then the numbered passages and the
/// question as the user turn.
pub fn ask_messages(question: &str, context: &[pb::Citation]) -> Vec<Message> {
    let mut user = String::from("Context:\n");
    for c in context {
        user.push_str(&format!("[{}] {}\n", c.number, c.text.trim()));
    }
    user.push_str(&format!("\nQuestion: {}", question.trim()));
    vec![
        Message {
            role: "system".into(),
            content: ASK_SYSTEM.into(),
        },
        Message {
            role: "user".into(),
            content: user,
        },
    ]
}
