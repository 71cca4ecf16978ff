//! An OpenAI-compatible chat endpoint (`POST {url}/chat/completions`) as a generation back-end:
//! llama.cpp's server, vLLM, Ollama, or OpenAI itself (`[generation] url`, `model`, `api_key`).
//!
//! ```text
//! GenBackend::generate ─► JSON {model, messages, max_tokens, temperature, top_p?, top_k?,
//!                               stop?, seed, stream: true, stream_options.include_usage}
//!   ─► server-sent events: `data: {chunk}` … `data: [DONE]`
//!   ─► each choices[0].delta.content to emit as it arrives (emit false: the connection is dropped)
//!   ─► GenOutcome: usage's token counts, first-content time, finish_reason as the stop reason
//! ```
//!
//! What differs from the built-in model, on purpose:
//! - Raw prompts (`GenerateRequest.raw`) have no form in the chat API: INVALID_ARGUMENT.
//! - `top_p` is sent only when it restricts (0 < top_p < 1); `top_k` is not in the OpenAI API and
//!   is sent only when a caller sets it (llama.cpp, vLLM and Ollama read it; OpenAI refuses the
//!   request, which then fails with its message as INVALID_ARGUMENT).
//! - Prompt lookup does not apply: forward passes and accepted draft tokens are reported as 0.
//! - The remote context length is unknown here, so nothing is checked against one; an endpoint
//!   refusing a too-long prompt answers HTTP 400, passed on as INVALID_ARGUMENT with its text.
//! - Token counts come from the endpoint's `usage` (asked for with `stream_options`). Without
//!   one, they are estimates: prompt tokens as words × 4/3 plus 4 a message, completion tokens
//!   as the number of content deltas (servers mostly send one token a delta).
//! - `finish_reason` "length" is `length`; "stop" is `end_of_turn`, or `stop_sequence` when the
//!   endpoint names which of the request's stop strings matched (vLLM's `stop_reason`); OpenAI
//!   reports a matched stop sequence as "stop" too, so there the two are not told apart. Other
//!   reasons (content_filter, tool_calls) end the turn.
//! - An endpoint that ignores `stream` and answers one JSON completion is read whole.
//!
//! Errors (mapped to gRPC codes in `status.rs`): not reachable, timed out or cut off mid-stream:
//! `ModelError::Remote` (UNAVAILABLE, naming the endpoint); an HTTP error status, or an error
//! reported inside a 200 answer with an HTTP-like `code` (an `error:` field, `event: error`, an
//! `error` chunk): `ModelError::RemoteStatus` with the endpoint's own message (401, 403 and 404
//! FAILED_PRECONDITION: the server's configuration, and for 401/403 the endpoint's words go to
//! the log only, as they may echo part of the key; 429 RESOURCE_EXHAUSTED, other 4xx
//! INVALID_ARGUMENT, 5xx UNAVAILABLE); an answer that is not the API's JSON or SSE, or `[DONE]`
//! before any answer: `ModelError::RemoteMalformed` (INTERNAL). An event cut off by the end of
//! the stream is dropped; an answer that had its `finish_reason` survives a failed connection.

use super::backend::{ChatInput, GenBackend};
use super::tokenizer::Message;
use super::{GenOutcome, GenParams, StopReason};
use crate::auth::Secret;
use crate::embed::ModelError;
use serde::Deserialize;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read};
use std::time::{Duration, Instant};

/// Longest wait for a connection to the endpoint.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Generations sent to the endpoint at once (it batches them; the built-in model runs one).
const CONCURRENCY: usize = 8;
/// Longest server-sent event accepted, bytes.
const MAX_EVENT_BYTES: u64 = 1 << 20;
/// Most bytes of an error body kept in a message.
const ERROR_HEAD: usize = 300;

/// A remote chat model.
pub struct OpenAiChat {
    agent: ureq::Agent,
    endpoint: String,
    model: String,
    api_key: Option<Secret>,
}

/// One streamed chunk (`chat.completion.chunk`), or a whole completion when not streamed.
#[derive(Deserialize)]
struct Chunk {
    choices: Option<Vec<Choice>>,
    usage: Option<Usage>,
    error: Option<Value>,
}

#[derive(Deserialize)]
struct Choice {
    /// Streamed: the new text.
    delta: Option<Content>,
    /// Not streamed: the whole answer.
    message: Option<Content>,
    finish_reason: Option<String>,
    /// vLLM: the stop string (or token id) that ended the answer.
    stop_reason: Option<Value>,
}

#[derive(Deserialize)]
struct Content {
    content: Option<String>,
}

#[derive(Deserialize)]
struct Usage {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
}

impl OpenAiChat {
    /// A client for the API at `url` (its base, e.g. `http://127.0.0.1:8080/v1`). Nothing is
    /// sent until the first generation: an endpoint that is down at start does not stop the
    /// server, its requests fail with UNAVAILABLE until it is up.
    pub fn new(url: &str, model: &str, api_key: Option<Secret>, timeout: Duration) -> OpenAiChat {
        let agent = ureq::Agent::config_builder()
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .build()
            .new_agent();
        OpenAiChat {
            agent,
            endpoint: format!("{}/chat/completions", url.trim_end_matches('/')),
            model: model.to_string(),
            api_key,
        }
    }

    /// The URL requests go to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn malformed(&self, reason: String) -> ModelError {
        ModelError::RemoteMalformed {
            endpoint: self.endpoint.clone(),
            reason,
        }
    }

    /// An error the endpoint reported in its answer (HTTP 200): with an HTTP-like `code`, as
    /// that status; otherwise as the endpoint being unavailable.
    fn stream_error(&self, err: &Value) -> ModelError {
        let inner = err.get("error").unwrap_or(err);
        let code = inner
            .get("code")
            .and_then(Value::as_u64)
            .filter(|c| (400..600).contains(c));
        match code {
            Some(status) => ModelError::RemoteStatus {
                endpoint: self.endpoint.clone(),
                status: status as u16,
                message: error_text(inner),
            },
            None => ModelError::Remote(format!(
                "{} reported an error mid-answer: {}",
                self.endpoint,
                error_text(inner)
            )),
        }
    }

    /// Reads a streamed answer, handing each content delta to `emit`.
    fn read_stream(
        &self,
        body: impl Read,
        p: &GenParams,
        t0: Instant,
        emit: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Progress, ModelError> {
        let mut events = SseReader::new(BufReader::new(body));
        let mut g = Progress::new(t0);
        loop {
            let ev = match events.next_event() {
                Ok(Some(ev)) => ev,
                Ok(None) => break,
                // A complete answer whose connection then failed is still the answer.
                Err(SseError::Io(_)) if g.reason.is_some() => break,
                Err(SseError::Io(e)) => {
                    return Err(ModelError::Remote(format!(
                        "{}: reading the answer stream: {e}",
                        self.endpoint
                    )));
                }
                Err(SseError::Bad(why)) => return Err(self.malformed(why)),
            };
            if ev.error {
                // `event: error` or an `error:` field (llama.cpp's server sent errors so).
                let err = serde_json::from_str(&ev.data).unwrap_or(Value::String(ev.data));
                return Err(self.stream_error(&err));
            }
            let data = ev.data;
            if data.trim() == "[DONE]" {
                if g.reason.is_none() && g.text.is_empty() {
                    return Err(self.malformed("[DONE] before any answer".into()));
                }
                g.done = true;
                break;
            }
            let chunk: Chunk = serde_json::from_str(&data)
                .map_err(|e| self.malformed(format!("event {:?}: {e}", head(&data))))?;
            if let Some(err) = chunk.error {
                return Err(self.stream_error(&err));
            }
            if !g.take(chunk, p, emit) {
                g.reason = Some(StopReason::Cancelled);
                return Ok(g);
            }
        }
        if !g.done && g.reason.is_none() {
            return Err(ModelError::Remote(format!(
                "{}: the answer stream ended early (no finish_reason, no [DONE])",
                self.endpoint
            )));
        }
        Ok(g)
    }
}

/// An answer as its chunks arrive.
struct Progress {
    t0: Instant,
    text: String,
    deltas: usize,
    first: Option<f64>,
    reason: Option<StopReason>,
    usage: Option<Usage>,
    done: bool,
}

impl Progress {
    fn new(t0: Instant) -> Progress {
        Progress {
            t0,
            text: String::new(),
            deltas: 0,
            first: None,
            reason: None,
            usage: None,
            done: false,
        }
    }

    /// Takes one chunk (only the first choice counts: one answer is asked for); false when
    /// `emit` asks to stop.
    fn take(&mut self, chunk: Chunk, p: &GenParams, emit: &mut dyn FnMut(&str) -> bool) -> bool {
        if chunk.usage.is_some() {
            self.usage = chunk.usage;
        }
        let Some(c) = chunk.choices.and_then(|c| c.into_iter().next()) else {
            return true;
        };
        if let Some(f) = &c.finish_reason {
            self.reason = Some(stop_reason(f, c.stop_reason.as_ref(), &p.stop));
        }
        let piece = c.delta.or(c.message).and_then(|d| d.content);
        match piece {
            Some(s) if !s.is_empty() => {
                self.first.get_or_insert(self.t0.elapsed().as_secs_f64());
                self.deltas += 1;
                self.text.push_str(&s);
                emit(&s)
            }
            _ => true,
        }
    }

    fn outcome(self, messages: &[Message]) -> GenOutcome {
        let secs = self.t0.elapsed().as_secs_f64();
        let usage = self.usage.as_ref();
        GenOutcome {
            prompt_tokens: usage
                .and_then(|u| u.prompt_tokens)
                .map_or_else(|| estimate_prompt_tokens(messages), |n| n as usize),
            completion_tokens: usage
                .and_then(|u| u.completion_tokens)
                .map_or(self.deltas, |n| n as usize),
            first_token_secs: self.first.unwrap_or(secs),
            secs,
            reason: self.reason.unwrap_or(StopReason::EndOfTurn),
            text: self.text,
            passes: 0,
            accepted: 0,
        }
    }
}

impl GenBackend for OpenAiChat {
    fn name(&self) -> &str {
        &self.model
    }

    fn concurrency(&self) -> usize {
        CONCURRENCY
    }

    fn check(&self, input: &ChatInput, _p: &GenParams) -> Result<(), ModelError> {
        match input {
            ChatInput::Messages(_) => Ok(()),
            ChatInput::Raw(_) => Err(ModelError::Invalid(format!(
                "raw prompts cannot go to the chat endpoint {} (model {}): send chat messages, \
                 or a prompt without raw",
                self.endpoint, self.model
            ))),
        }
    }

    fn generate(
        &self,
        input: &ChatInput,
        p: &GenParams,
        emit: &mut dyn FnMut(&str) -> bool,
    ) -> Result<GenOutcome, ModelError> {
        self.check(input, p)?;
        let ChatInput::Messages(messages) = input else {
            unreachable!("check refuses raw prompts");
        };
        let body = request_body(&self.model, messages, p);
        let t0 = Instant::now();
        let mut req = self
            .agent
            .post(&self.endpoint)
            .header("Accept", "text/event-stream");
        if let Some(k) = &self.api_key {
            req = req.header("Authorization", &format!("Bearer {}", k.0));
        }
        let mut resp = req.send_json(&body).map_err(|e| {
            ModelError::Remote(format!(
                "cannot reach the generation endpoint {}: {e}",
                self.endpoint
            ))
        })?;
        let status = resp.status().as_u16();
        if !(200..300).contains(&status) {
            let text = resp
                .body_mut()
                .with_config()
                .limit(64 << 10)
                .read_to_string()
                .unwrap_or_default();
            let mut message = error_message(&text);
            if matches!(status, 401 | 403) {
                // The endpoint's words may echo part of the key: they go to the log only.
                tracing::warn!(
                    endpoint = %self.endpoint,
                    status,
                    %message,
                    "the generation endpoint refused the server's key"
                );
                message = "the endpoint refused the server's key ([generation] api_key or \
                           QUIVER_GEN_API_KEY; its answer is in the server log)"
                    .into();
            }
            return Err(ModelError::RemoteStatus {
                endpoint: self.endpoint.clone(),
                status,
                message,
            });
        }
        let streamed = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_none_or(|v| v.starts_with("text/event-stream"));
        let progress = if streamed {
            self.read_stream(resp.body_mut().as_reader(), p, t0, emit)?
        } else {
            // One JSON completion: the endpoint did not stream.
            let text = resp.body_mut().read_to_string().map_err(|e| {
                ModelError::Remote(format!("{}: reading the answer: {e}", self.endpoint))
            })?;
            let chunk: Chunk = serde_json::from_str(&text)
                .map_err(|e| self.malformed(format!("answer {:?}: {e}", head(&text))))?;
            if let Some(err) = chunk.error {
                return Err(self.stream_error(&err));
            }
            if chunk.choices.as_ref().is_none_or(Vec::is_empty) {
                return Err(self.malformed(format!("answer without choices: {:?}", head(&text))));
            }
            let mut g = Progress::new(t0);
            if !g.take(chunk, p, emit) {
                g.reason = Some(StopReason::Cancelled);
            }
            g
        };
        Ok(progress.outcome(messages))
    }
}

/// A float as the caller wrote it: the API takes f32s, and 0.8f32 widened to f64 would be sent
/// as 0.800000011920929.
fn short_float(x: f64) -> f64 {
    (x as f32).to_string().parse().unwrap_or(x)
}

/// The request's JSON.
fn request_body(model: &str, messages: &[Message], p: &GenParams) -> Value {
    let messages: Vec<Value> = messages
        .iter()
        .map(|m| json!({"role": m.role, "content": m.content}))
        .collect();
    let mut b = json!({
        "model": model,
        "messages": messages,
        "max_tokens": p.max_tokens,
        "temperature": short_float(p.temperature),
        "seed": p.seed,
        "stream": true,
        "stream_options": {"include_usage": true},
    });
    if p.top_p > 0.0 && p.top_p < 1.0 {
        b["top_p"] = json!(short_float(p.top_p));
    }
    if p.top_k > 0 {
        b["top_k"] = json!(p.top_k);
    }
    if !p.stop.is_empty() {
        b["stop"] = json!(p.stop);
    }
    b
}

/// Our stop reason for an OpenAI `finish_reason`.
fn stop_reason(finish: &str, matched: Option<&Value>, stops: &[String]) -> StopReason {
    match finish {
        "length" => StopReason::Length,
        "stop"
            if matched
                .and_then(Value::as_str)
                .is_some_and(|m| stops.iter().any(|s| s == m)) =>
        {
            StopReason::StopSequence
        }
        _ => StopReason::EndOfTurn,
    }
}

/// Prompt tokens when the endpoint gives no `usage`: words × 4/3, plus 4 a message for the
/// chat template's markers. An estimate, not the remote tokenizer's count.
fn estimate_prompt_tokens(messages: &[Message]) -> usize {
    messages
        .iter()
        .map(|m| (m.content.split_whitespace().count() * 4).div_ceil(3) + 4)
        .sum()
}

/// The first characters of a text, for messages.
fn head(text: &str) -> String {
    text.chars().take(ERROR_HEAD).collect()
}

/// The message inside an error value: `{"message": …}`, a string, or the JSON itself.
fn error_text(err: &Value) -> String {
    match err {
        Value::String(s) => s.clone(),
        Value::Object(o) => o
            .get("message")
            .and_then(Value::as_str)
            .map_or_else(|| err.to_string(), str::to_string),
        other => other.to_string(),
    }
}

/// The endpoint's own words from an error body: OpenAI's `{"error": {"message": …}}`, the
/// `{"error": "…"}` or `{"message": …}` of other servers, or the body's first characters.
fn error_message(body: &str) -> String {
    let text = match serde_json::from_str::<Value>(body) {
        Ok(v) if v.get("error").is_some() => error_text(&v["error"]),
        Ok(v) if v.get("message").is_some() => error_text(&v),
        _ => body.trim().to_string(),
    };
    if text.is_empty() {
        "(no message)".into()
    } else {
        head(&text)
    }
}

/// Why reading server-sent events failed.
#[derive(Debug)]
enum SseError {
    /// The connection failed or timed out.
    Io(std::io::Error),
    /// The bytes are not server-sent events.
    Bad(String),
}

/// One server-sent event: its data, and whether it reports an error (`event: error`, or an
/// `error:` field whose value then counts as data).
struct Event {
    data: String,
    error: bool,
}

/// The `data` of server-sent events, one event at a time (the WHATWG event-stream format:
/// `field: value` lines, an empty line ends an event, several `data` lines are joined by
/// newlines, lines starting with `:` are comments; other fields are not used here).
struct SseReader<R> {
    inner: R,
    line: Vec<u8>,
}

impl<R: BufRead> SseReader<R> {
    fn new(inner: R) -> SseReader<R> {
        SseReader {
            inner,
            line: Vec::new(),
        }
    }

    /// The next event; `None` at the end of the stream.
    fn next_event(&mut self) -> Result<Option<Event>, SseError> {
        let mut data: Option<String> = None;
        let mut error = false;
        let event = |data: Option<String>, error: bool| data.map(|data| Event { data, error });
        loop {
            self.line.clear();
            let n = (&mut self.inner)
                .take(MAX_EVENT_BYTES)
                .read_until(b'\n', &mut self.line)
                .map_err(SseError::Io)?;
            if n == 0 {
                // End of stream: an event without its closing empty line is dropped (as the
                // format says), but for a bare [DONE].
                return Ok(event(data.filter(|d| d.trim() == "[DONE]"), error));
            }
            if self.line.last() != Some(&b'\n') && n as u64 == MAX_EVENT_BYTES {
                return Err(SseError::Bad(format!(
                    "a line longer than {MAX_EVENT_BYTES} bytes"
                )));
            }
            let line = std::str::from_utf8(&self.line)
                .map_err(|e| SseError::Bad(format!("not UTF-8: {e}")))?
                .trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                if data.is_some() {
                    return Ok(event(data, error));
                }
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            if field == "event" && value == "error" {
                error = true;
            }
            if field == "error" {
                error = true;
            }
            if field == "data" || field == "error" {
                match &mut data {
                    Some(d) => {
                        if d.len() as u64 + value.len() as u64 > MAX_EVENT_BYTES {
                            return Err(SseError::Bad(format!(
                                "an event longer than {MAX_EVENT_BYTES} bytes"
                            )));
                        }
                        d.push('\n');
                        d.push_str(value);
                    }
                    None => data = Some(value.to_string()),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(text: &str) -> Vec<String> {
        let mut r = SseReader::new(text.as_bytes());
        let mut out = Vec::new();
        while let Some(ev) = r.next_event().unwrap() {
            out.push(ev.data);
        }
        out
    }

    fn params() -> GenParams {
        GenParams {
            max_tokens: 32,
            temperature: 0.8f32 as f64,
            top_p: 0.0,
            top_k: 0,
            stop: Vec::new(),
            seed: 7,
            prompt_lookup: true,
        }
    }

    #[test]
    fn server_sent_events_are_split_and_joined_as_the_format_says() {
        let text = ": keep-alive\r\n\r\nevent: message\r\ndata: {\"a\":1}\r\n\r\n\
                    data:{\"b\":\ndata: 2}\n\n\n\ndata: [DONE]";
        assert_eq!(events(text), ["{\"a\":1}", "{\"b\":\n2}", "[DONE]"]);
        assert!(events(": only a comment\n\n").is_empty());
        let bad = [0xffu8, b'\n'];
        let mut r = SseReader::new(&bad[..]);
        assert!(matches!(r.next_event(), Err(SseError::Bad(_))));
    }

    #[test]
    fn the_request_carries_what_the_api_reads() {
        let msgs = [Message {
            role: "user".into(),
            content: "Hi".into(),
        }];
        let b = request_body("m", &msgs, &params());
        assert_eq!(b["model"], "m");
        assert_eq!(b["messages"][0]["content"], "Hi");
        assert_eq!(b["max_tokens"], 32);
        assert_eq!(b["temperature"].to_string(), "0.8");
        assert_eq!(b["seed"], 7);
        assert_eq!(b["stream"], true);
        for absent in ["top_p", "top_k", "stop"] {
            assert!(b.get(absent).is_none(), "{absent} is sent only when set");
        }
        let p = GenParams {
            top_p: 0.9f32 as f64,
            top_k: 40,
            stop: vec!["\n\n".into()],
            ..params()
        };
        let b = request_body("m", &msgs, &p);
        assert_eq!(b["top_p"].to_string(), "0.9");
        assert_eq!(b["top_k"], 40);
        assert_eq!(b["stop"][0], "\n\n");
    }

    #[test]
    fn finish_reasons_map_to_stop_reasons() {
        let stops = vec!["END".to_string()];
        assert_eq!(stop_reason("length", None, &stops), StopReason::Length);
        assert_eq!(stop_reason("stop", None, &stops), StopReason::EndOfTurn);
        let end = json!("END");
        assert_eq!(
            stop_reason("stop", Some(&end), &stops),
            StopReason::StopSequence
        );
        assert_eq!(
            stop_reason("stop", Some(&json!(2)), &stops),
            StopReason::EndOfTurn,
            "a token id is the end of the turn"
        );
        assert_eq!(
            stop_reason("content_filter", None, &stops),
            StopReason::EndOfTurn
        );
    }

    #[test]
    fn error_bodies_give_the_endpoint_s_message() {
        assert_eq!(
            error_message(r#"{"error":{"message":"bad key","type":"auth"}}"#),
            "bad key"
        );
        assert_eq!(error_message(r#"{"error":"no model"}"#), "no model");
        assert_eq!(error_message(r#"{"message":"busy"}"#), "busy");
        assert_eq!(error_message("  plain text\n"), "plain text");
        assert_eq!(error_message(""), "(no message)");
        assert_eq!(error_message(&"x".repeat(1000)).len(), ERROR_HEAD);
    }

    #[test]
    fn a_stream_is_read_into_pieces_counts_and_a_reason() {
        let chat = OpenAiChat::new("http://127.0.0.1:9/v1", "m", None, Duration::from_secs(1));
        let stream = "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\"}}]}\n\n\
            data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\n\
            data: {\"choices\":[{\"delta\":{\"content\":\"lo\"},\"finish_reason\":\"length\"}]}\n\n\
            data: {\"choices\":[],\"usage\":{\"prompt_tokens\":11,\"completion_tokens\":2}}\n\n\
            data: [DONE]\n\n";
        let mut pieces = Vec::new();
        let g = chat
            .read_stream(stream.as_bytes(), &params(), Instant::now(), &mut |s| {
                pieces.push(s.to_string());
                true
            })
            .unwrap();
        let o = g.outcome(&[]);
        assert_eq!(pieces, ["Hel", "lo"]);
        assert_eq!((o.text.as_str(), o.reason), ("Hello", StopReason::Length));
        assert_eq!((o.prompt_tokens, o.completion_tokens), (11, 2));
        // Without `usage`: completion tokens are the deltas, prompt tokens an estimate.
        let bare =
            "data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"},\"finish_reason\":\"stop\"}]}\n\n";
        let g = chat
            .read_stream(bare.as_bytes(), &params(), Instant::now(), &mut |_| true)
            .unwrap();
        let msg = Message {
            role: "user".into(),
            content: "three short words".into(),
        };
        let o = g.outcome(&[msg]);
        assert_eq!((o.prompt_tokens, o.completion_tokens), (4 + 4, 1));
        assert_eq!(
            o.reason,
            StopReason::EndOfTurn,
            "finish_reason without [DONE] ends it"
        );
        // Cancelled by the receiver after the first piece.
        let g = chat
            .read_stream(stream.as_bytes(), &params(), Instant::now(), &mut |_| false)
            .unwrap();
        assert_eq!(g.reason, Some(StopReason::Cancelled));
        // Cut off before any end: UNAVAILABLE-kind error; nonsense: malformed.
        let cut = "data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\n";
        let err = chat
            .read_stream(cut.as_bytes(), &params(), Instant::now(), &mut |_| true)
            .err()
            .unwrap();
        assert!(matches!(err, ModelError::Remote(_)), "{err}");
        let err = chat
            .read_stream(
                &b"data: {nope\n\n"[..],
                &params(),
                Instant::now(),
                &mut |_| true,
            )
            .err()
            .unwrap();
        assert!(matches!(err, ModelError::RemoteMalformed { .. }), "{err}");
    }

    #[test]
    fn errors_inside_a_stream_are_errors_not_empty_answers() {
        let chat = OpenAiChat::new("http://127.0.0.1:9/v1", "m", None, Duration::from_secs(1));
        let read = |text: &str| {
            chat.read_stream(text.as_bytes(), &params(), Instant::now(), &mut |_| true)
                .err()
                .expect("an error")
        };
        let status = |e: &ModelError| match e {
            ModelError::RemoteStatus {
                status, message, ..
            } => Some((*status, message.clone())),
            _ => None,
        };
        // llama.cpp's `error:` field, then [DONE]; `event: error`; an error chunk.
        let e =
            read("error: {\"code\":400,\"message\":\"exceeds the context\"}\n\ndata: [DONE]\n\n");
        assert_eq!(status(&e), Some((400, "exceeds the context".into())), "{e}");
        let e = read("event: error\ndata: {\"code\":429,\"message\":\"busy\"}\n\n");
        assert_eq!(status(&e), Some((429, "busy".into())), "{e}");
        let e = read("data: {\"error\":{\"code\":400,\"message\":\"bad\"}}\n\n");
        assert_eq!(status(&e), Some((400, "bad".into())), "{e}");
        let e = read("data: {\"error\":{\"message\":\"lost the GPU\"}}\n\n");
        assert!(
            matches!(&e, ModelError::Remote(m) if m.contains("lost the GPU")),
            "{e}"
        );
        // [DONE] before any answer; an event cut off by the end of the stream.
        let e = read("data: [DONE]\n\n");
        assert!(matches!(e, ModelError::RemoteMalformed { .. }), "{e}");
        let e = read("data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"},\"finish_reas");
        assert!(matches!(e, ModelError::Remote(_)), "{e}");
    }
}
