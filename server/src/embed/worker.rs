//! The embedding worker: the model runs on dedicated threads fed by a bounded crossbeam channel.
//!
//! A thread takes the first waiting job, then keeps taking jobs until the batch holds
//! `max_batch` texts or `max_wait` has passed, runs the model once over all their texts, and
//! answers each job with its own vectors in order. A caller whose job finds the queue full waits
//! up to its deadline for room, then gets `ModelError::Busy`: memory stays bounded by
//! `queue` jobs, and no accepted job is dropped.

use super::{Embedder, ModelError};
use crossbeam::channel::{
    self, Receiver, RecvTimeoutError, SendTimeoutError, Sender, TrySendError,
};
use prometheus::{Histogram, HistogramOpts, IntCounter, IntGauge};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// How the worker batches.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Model threads, each running whole batches (default: one per core; then candle's kernels
    /// run single-threaded inside each).
    pub threads: usize,
    /// Most texts in one model call.
    pub max_batch: usize,
    /// Longest a batch waits for more texts once it has one.
    pub max_wait: Duration,
    /// Jobs waiting at most.
    pub queue: usize,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            max_batch: 256,
            max_wait: Duration::from_millis(2),
            queue: 1024,
        }
    }
}

struct Job {
    texts: Vec<String>,
    reply: oneshot::Sender<Result<Vec<Vec<f32>>, ModelError>>,
}

/// Exported figures of the worker.
#[derive(Clone)]
pub struct WorkerMetrics {
    /// Jobs waiting in the queue.
    pub queue_depth: IntGauge,
    /// Texts per model call.
    pub batch_size: Histogram,
    /// Texts embedded.
    pub texts: IntCounter,
    /// Tokens embedded (special tokens included).
    pub tokens: IntCounter,
    /// Jobs refused because the queue stayed full.
    pub rejected: IntCounter,
}

impl WorkerMetrics {
    /// Creates the metrics (register them with `collectors`).
    pub fn new() -> WorkerMetrics {
        let gauge = |n: &str, h: &str| IntGauge::new(n, h).expect("valid metric");
        let counter = |n: &str, h: &str| IntCounter::new(n, h).expect("valid metric");
        WorkerMetrics {
            queue_depth: gauge("quiver_embed_queue_depth", "embedding jobs waiting"),
            batch_size: Histogram::with_opts(
                HistogramOpts::new("quiver_embed_batch_size", "texts per embedding model call")
                    .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0]),
            )
            .expect("valid metric"),
            texts: counter("quiver_embed_texts_total", "texts embedded"),
            tokens: counter("quiver_embed_tokens_total", "tokens embedded"),
            rejected: counter(
                "quiver_embed_rejected_total",
                "embedding jobs refused because the queue stayed full",
            ),
        }
    }

    /// The collectors, for a registry.
    pub fn collectors(&self) -> Vec<Box<dyn prometheus::core::Collector>> {
        vec![
            Box::new(self.queue_depth.clone()),
            Box::new(self.batch_size.clone()),
            Box::new(self.texts.clone()),
            Box::new(self.tokens.clone()),
            Box::new(self.rejected.clone()),
        ]
    }
}

impl Default for WorkerMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The running worker.
pub struct EmbedWorker {
    tx: Option<Sender<Job>>,
    model: Arc<dyn Embedder>,
    threads: Vec<JoinHandle<()>>,
    metrics: WorkerMetrics,
    max_batch: usize,
}

impl EmbedWorker {
    /// Starts the model threads.
    pub fn start(
        model: Arc<dyn Embedder>,
        config: WorkerConfig,
        metrics: WorkerMetrics,
    ) -> EmbedWorker {
        let (tx, rx) = channel::bounded::<Job>(config.queue.max(1));
        let idle = Arc::new(AtomicUsize::new(config.threads.max(1)));
        let threads = (0..config.threads.max(1))
            .map(|i| {
                let (rx, model, metrics, cfg, idle) = (
                    rx.clone(),
                    model.clone(),
                    metrics.clone(),
                    config.clone(),
                    idle.clone(),
                );
                std::thread::Builder::new()
                    .name(format!("quiver-embed-{i}"))
                    .spawn(move || run(rx, &*model, &metrics, &cfg, &idle))
                    .expect("spawning an embedding thread")
            })
            .collect();
        EmbedWorker {
            tx: Some(tx),
            model,
            threads,
            metrics,
            max_batch: config.max_batch.max(1),
        }
    }

    /// The model behind the worker.
    pub fn model(&self) -> &Arc<dyn Embedder> {
        &self.model
    }

    /// Embeds texts, waiting up to `wait` for room in the queue. A request is split into one
    /// job per model thread (at most `max_batch` texts each), so a lone caller keeps every
    /// thread busy; the answer keeps the input order.
    pub async fn embed(
        &self,
        texts: Vec<String>,
        wait: Duration,
    ) -> Result<Vec<Vec<f32>>, ModelError> {
        let until = Instant::now() + wait;
        let per_job = texts
            .len()
            .div_ceil(self.threads.len().max(1))
            .clamp(1, self.max_batch);
        let mut replies = Vec::new();
        let mut texts = texts.into_iter().peekable();
        while texts.peek().is_some() {
            let part: Vec<String> = texts.by_ref().take(per_job).collect();
            replies.push(self.submit(part, until).await?);
        }
        let mut out = Vec::new();
        for r in replies {
            out.extend(r.await.map_err(|_| ModelError::Stopped("embedding"))??);
        }
        Ok(out)
    }

    async fn submit(
        &self,
        texts: Vec<String>,
        until: Instant,
    ) -> Result<oneshot::Receiver<Result<Vec<Vec<f32>>, ModelError>>, ModelError> {
        let tx = self.tx.as_ref().ok_or(ModelError::Stopped("embedding"))?;
        let (reply, answer) = oneshot::channel();
        let job = Job { texts, reply };
        match tx.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Disconnected(_)) => return Err(ModelError::Stopped("embedding")),
            Err(TrySendError::Full(job)) => {
                let tx = tx.clone();
                let wait = until.saturating_duration_since(Instant::now());
                let sent = tokio::task::spawn_blocking(move || tx.send_timeout(job, wait))
                    .await
                    .map_err(|_| ModelError::Stopped("embedding"))?;
                match sent {
                    Ok(()) => {}
                    Err(SendTimeoutError::Timeout(_)) => {
                        self.metrics.rejected.inc();
                        return Err(ModelError::Busy("embedding"));
                    }
                    Err(SendTimeoutError::Disconnected(_)) => {
                        return Err(ModelError::Stopped("embedding"));
                    }
                }
            }
        }
        self.metrics.queue_depth.set(tx.len() as i64);
        Ok(answer)
    }
}

impl Drop for EmbedWorker {
    fn drop(&mut self) {
        self.tx.take();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// One model thread. `idle` counts the threads waiting for work: a thread stops gathering jobs
/// into its batch as soon as another thread is idle, so queued jobs spread over the threads
/// instead of piling into one batch.
fn run(
    rx: Receiver<Job>,
    model: &dyn Embedder,
    metrics: &WorkerMetrics,
    cfg: &WorkerConfig,
    idle: &AtomicUsize,
) {
    while let Ok(first) = rx.recv() {
        idle.fetch_sub(1, Ordering::SeqCst);
        let mut jobs = vec![first];
        let mut n = jobs[0].texts.len();
        let until = Instant::now() + cfg.max_wait;
        while n < cfg.max_batch && idle.load(Ordering::SeqCst) == 0 {
            match rx.recv_deadline(until) {
                Ok(job) => {
                    n += job.texts.len();
                    jobs.push(job);
                }
                Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        metrics.queue_depth.set(rx.len() as i64);
        let _back = IdleAgain(idle);
        // Callers that gave up (deadline passed, connection closed) need no work.
        jobs.retain(|j| !j.reply.is_closed());
        if jobs.is_empty() {
            continue;
        }
        let texts: Vec<String> = jobs.iter().flat_map(|j| j.texts.iter().cloned()).collect();
        match model.embed(&texts) {
            Ok(vectors) => {
                record(model, metrics, &texts);
                let mut vectors = vectors.into_iter();
                for job in jobs {
                    let mine: Vec<Vec<f32>> = vectors.by_ref().take(job.texts.len()).collect();
                    let _ = job.reply.send(Ok(mine));
                }
            }
            // One bad job must not fail the others batched with it: answer each on its own.
            Err(_) if jobs.len() > 1 => {
                for job in jobs {
                    let r = model.embed(&job.texts);
                    if r.is_ok() {
                        record(model, metrics, &job.texts);
                    }
                    let _ = job.reply.send(r);
                }
            }
            Err(e) => {
                for job in jobs {
                    let _ = job.reply.send(Err(ModelError::Inference(e.to_string())));
                }
            }
        }
    }
}

/// Counts its thread as idle again when the batch is done (also on `continue`).
struct IdleAgain<'a>(&'a AtomicUsize);

impl Drop for IdleAgain<'_> {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn record(model: &dyn Embedder, metrics: &WorkerMetrics, texts: &[String]) {
    metrics.batch_size.observe(texts.len() as f64);
    metrics.texts.inc_by(texts.len() as u64);
    if let Ok(tokens) = model.count_tokens(texts) {
        let cap = model.max_tokens();
        metrics
            .tokens
            .inc_by(tokens.iter().map(|&n| n.min(cap)).sum::<usize>() as u64);
    }
}
