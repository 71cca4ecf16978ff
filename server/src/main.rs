//! `quiver-server`: Quiver's server binary. The pieces live in the library (`lib.rs`); this file
//! parses the command line, opens storage and runs the gRPC and metrics listeners.

use quiver_server::{auth, config, deadline, embed, generate, metrics, rag, service};

use anyhow::Context;
use clap::{Parser, Subcommand};
use config::{Config, Overrides};
use quiver_proto::v1::collections_server::CollectionsServer;
use quiver_proto::v1::documents_server::DocumentsServer;
use quiver_proto::v1::generation_server::GenerationServer;
use quiver_proto::v1::points_server::PointsServer;
use quiver_storage::{Storage, StorageOptions};
use std::io::Write;
use std::sync::Arc;

/// Quiver: a vector database server.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    overrides: Overrides,
}

#[derive(Subcommand)]
enum Command {
    /// Serve gRPC (the default).
    Serve,
    /// Verify every collection's files offline (checksums, WAL records); exit 1 if any is damaged.
    Check,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = Config::load(&cli.overrides)?;
    // Several embedding threads each run whole batches, so candle's own kernels run on one
    // thread each: measured 1.27x the texts/s of one model thread with candle on every core
    // (benches/RESULTS.md), as small per-op thread hand-offs go away and element-wise ops
    // run in parallel too. An explicit RAYON_NUM_THREADS wins.
    if config.embedding.threads > 1 && std::env::var_os("RAYON_NUM_THREADS").is_none() {
        // SAFETY: no other thread exists yet (the runtime and workers start below).
        unsafe { std::env::set_var("RAYON_NUM_THREADS", "1") };
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&config.log)
                .context("parsing the log filter")?,
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(config),
        Command::Check => check(config),
    }
}

fn open_storage(config: &Config) -> anyhow::Result<Arc<Storage>> {
    Storage::open(StorageOptions {
        data_dir: config.data_dir.clone(),
        limits: config.limits.clone(),
    })
    .with_context(|| format!("opening data folder {}", config.data_dir.display()))
}

fn check(config: Config) -> anyhow::Result<()> {
    let storage = open_storage(&config)?;
    for c in storage.collections() {
        let st = c.stats();
        println!(
            "ok      {} ({} points, {} segments)",
            c.name(),
            st.points,
            st.segments
        );
    }
    let failed = storage.failed_collections();
    for (name, reason) in &failed {
        println!("DAMAGED {name}: {reason}");
    }
    storage.shutdown();
    if failed.is_empty() {
        Ok(())
    } else {
        anyhow::bail!("{} damaged collection(s)", failed.len())
    }
}

/// Turns tonic's OUT_OF_RANGE for an oversized message into RESOURCE_EXHAUSTED, the code
/// Quiver documents for every request over a limit.
fn oversized_is_resource_exhausted(
    mut resp: http::Response<tonic::body::Body>,
) -> http::Response<tonic::body::Body> {
    let h = resp.headers();
    let oversized = h.get("grpc-status").is_some_and(|v| v == "11")
        && h.get("grpc-message")
            .and_then(|m| m.to_str().ok())
            .is_some_and(|m| {
                m.contains("message%20length%20too%20large")
                    || m.contains("message length too large")
            });
    if oversized {
        resp.headers_mut()
            .insert("grpc-status", http::HeaderValue::from_static("8"));
    }
    resp
}

fn serve(config: Config) -> anyhow::Result<()> {
    let storage = open_storage(&config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(run(config, storage.clone()));
    storage.shutdown();
    tracing::info!("stopped");
    result
}

async fn run(config: Config, storage: Arc<Storage>) -> anyhow::Result<()> {
    let metrics = metrics::Metrics::new();
    let listener = tokio::net::TcpListener::bind(config.grpc_addr)
        .await
        .with_context(|| format!("binding gRPC to {}", config.grpc_addr))?;
    let grpc_addr = listener.local_addr()?;
    let metrics_addr = match config.metrics_addr {
        Some(addr) => {
            let l = metrics::bind(addr)
                .await
                .with_context(|| format!("binding metrics to {addr}"))?;
            let bound = l.local_addr()?;
            tokio::spawn(metrics::serve(l, metrics.clone(), storage.clone()));
            Some(bound)
        }
        None => None,
    };
    let embed = start_embedder(&config, &metrics);
    if let Err(why) = &embed {
        tracing::warn!("documents and text search are unavailable: {why}");
    }
    let generation = start_generator(&config);
    if let Err(why) = &generation {
        tracing::warn!("generation and Ask are unavailable: {why}");
    }
    let svc = service::Service {
        storage: storage.clone(),
        metrics,
        flush_threshold: config.flush_threshold,
        embed,
        request_timeout: config.request_timeout,
        generation: Arc::new(rag::GenSlot::new(generation)),
    };
    let limit = config.max_message_bytes;
    let collections = CollectionsServer::new(svc.clone())
        .max_decoding_message_size(limit)
        .max_encoding_message_size(limit);
    let points = PointsServer::new(svc.clone())
        .max_decoding_message_size(limit)
        .max_encoding_message_size(limit);
    let generation_svc = GenerationServer::new(svc.clone())
        .max_decoding_message_size(limit)
        .max_encoding_message_size(limit);
    let documents = DocumentsServer::new(svc)
        .max_decoding_message_size(limit)
        .max_encoding_message_size(limit);
    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<CollectionsServer<service::Service>>()
        .await;
    health_reporter
        .set_serving::<PointsServer<service::Service>>()
        .await;
    health_reporter
        .set_serving::<DocumentsServer<service::Service>>()
        .await;
    health_reporter
        .set_serving::<GenerationServer<service::Service>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(quiver_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .context("building the reflection service")?;

    tracing::info!(%grpc_addr, data_dir = %config.data_dir.display(), tls = config.tls.is_some(), api_keys = config.keys.is_some(), "serving");
    {
        let mut out = std::io::stdout().lock();
        let m = metrics_addr.map_or("off".to_string(), |a| a.to_string());
        writeln!(out, "quiver-server listening grpc={grpc_addr} metrics={m}")?;
        out.flush()?;
    }
    // Small replies must not wait for Nagle's algorithm (40 ms stalls per request otherwise).
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let mut builder = tonic::transport::Server::builder();
    if let Some((cert, key)) = &config.tls {
        let identity = tonic::transport::Identity::from_pem(cert, key);
        builder = builder
            .tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))
            .context("TLS configuration")?;
    }
    let server = tokio::spawn(
        builder
            .concurrency_limit_per_connection(config.max_concurrent_requests)
            .layer(tower::util::MapResponseLayer::new(
                oversized_is_resource_exhausted,
            ))
            .layer(auth::AuthLayer::new(config.keys.clone()))
            .layer(deadline::DeadlineLayer::new(config.request_timeout))
            .add_service(health)
            .add_service(reflection)
            .add_service(collections)
            .add_service(points)
            .add_service(documents)
            .add_service(generation_svc)
            .serve_with_incoming_shutdown(incoming, async {
                let _ = stop_rx.await;
            }),
    );
    shutdown_signal().await;
    let _ = stop_tx.send(());
    // Requests under way get a grace period; idle client connections do not hold the stop up.
    match tokio::time::timeout(SHUTDOWN_GRACE, server).await {
        Ok(joined) => joined.context("gRPC server task")?.context("gRPC server")?,
        Err(_) => tracing::info!("closing connections still open after the grace period"),
    }
    Ok(())
}

/// Loads the embedding model (built-in or remote) and starts its worker; the error says how to
/// fix it, and the server runs on without documents and text search.
fn start_embedder(
    config: &Config,
    metrics: &metrics::Metrics,
) -> Result<Arc<embed::EmbedWorker>, String> {
    use quiver_server::embed::{Embedder, minilm, openai};
    let e = &config.embedding;
    let model: Arc<dyn Embedder> = if e.url.is_empty() {
        let t = std::time::Instant::now();
        let m = minilm::MiniLm::load(&config.models_dir.join(minilm::FOLDER))
            .map_err(|e| e.to_string())?;
        tracing::info!(
            model = minilm::NAME,
            secs = t.elapsed().as_secs_f64(),
            "embedding model loaded"
        );
        Arc::new(m)
    } else {
        let name = if e.model.is_empty() {
            "default"
        } else {
            &e.model
        };
        Arc::new(
            openai::OpenAiEmbedder::connect(&e.url, name, e.api_key.clone(), e.max_tokens)
                .map_err(|e| e.to_string())?,
        )
    };
    let wm = embed::worker::WorkerMetrics::new();
    metrics.register(wm.collectors());
    let cfg = embed::WorkerConfig {
        threads: e.threads,
        max_batch: e.max_batch,
        max_wait: std::time::Duration::from_millis(e.max_wait_ms),
        queue: e.queue,
    };
    Ok(Arc::new(embed::EmbedWorker::start(model, cfg, wm)))
}

/// The generation back-end: a remote OpenAI-compatible chat endpoint when `[generation] url` is
/// set (nothing is sent until the first request, and the built-in model is not loaded), else the
/// built-in model; the error says how to install it.
fn start_generator(config: &Config) -> Result<Arc<dyn generate::backend::GenBackend>, String> {
    use generate::backend::BuiltIn;
    use generate::openai::OpenAiChat;
    if let Some(g) = &config.generation {
        let chat = OpenAiChat::new(&g.url, &g.model, g.api_key.clone(), g.timeout);
        tracing::info!(
            model = %g.model,
            endpoint = chat.endpoint(),
            api_key = g.api_key.is_some(),
            "generation: remote OpenAI-compatible endpoint"
        );
        return Ok(Arc::new(chat));
    }
    let t = std::time::Instant::now();
    let g = generate::Generator::load(&config.models_dir.join(generate::FOLDER))
        .map_err(|e| e.to_string())?;
    tracing::info!(
        model = generate::NAME,
        secs = t.elapsed().as_secs_f64(),
        "generation model loaded"
    );
    Ok(Arc::new(BuiltIn::new(g)))
}

/// How long requests under way may take to finish after a stop signal.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(3);

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutting down");
}
