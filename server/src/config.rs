//! Configuration in layers: built-in defaults, then a TOML file, then `QUIVER_*` environment
//! variables, then command-line flags (clap reads both of the last two, flags winning), validated
//! once into [`Config`].

use crate::auth::{Keys, Secret};
use anyhow::{Context, bail};
use clap::Args;
use quiver_storage::Limits;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The TOML file's shape; every field may be left out.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConfigFile {
    /// Where data lives.
    pub data_dir: PathBuf,
    /// gRPC listen address.
    pub grpc_addr: String,
    /// Prometheus metrics listen address; empty turns metrics off.
    pub metrics_addr: String,
    /// Log filter (tracing's env-filter syntax).
    pub log: String,
    /// Points in a mutable segment before it is flushed, for collections that do not set it.
    pub flush_threshold: usize,
    /// Request limits.
    pub limits: LimitsFile,
    /// The admin API key; when set, every call needs a key.
    pub api_key: Option<String>,
    /// A key that may only read (needs `api_key` too).
    pub read_only_api_key: Option<String>,
    /// TLS certificate chain (PEM); with `tls_key`, gRPC is served over TLS only.
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    pub tls_key: Option<PathBuf>,
    /// Where the built-in models' files live (see scripts/models.sh).
    pub models_dir: PathBuf,
    /// The embedding back-end and its worker.
    pub embedding: EmbeddingFile,
    /// The generation back-end.
    pub generation: GenerationFile,
}

/// `[generation]`: the built-in model, or an OpenAI-compatible `/v1/chat/completions` endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GenerationFile {
    /// Base URL of an OpenAI-compatible API (e.g. `http://127.0.0.1:8080/v1`); empty uses the
    /// built-in SmolLM2-135M-Instruct (and only then is it loaded).
    pub url: String,
    /// Model name sent to the remote API; required with `url`.
    pub model: String,
    /// Bearer token for the remote API (or QUIVER_GEN_API_KEY).
    pub api_key: Option<crate::auth::Secret>,
    /// Longest one remote answer may take, connection to last token, seconds.
    pub timeout_secs: u64,
}

impl Default for GenerationFile {
    fn default() -> Self {
        GenerationFile {
            url: String::new(),
            model: String::new(),
            api_key: None,
            timeout_secs: 300,
        }
    }
}

/// A remote generation back-end, validated.
#[derive(Debug, Clone)]
pub struct RemoteGeneration {
    /// Base URL of the API (`…/v1`).
    pub url: String,
    /// Model name sent with each request.
    pub model: String,
    /// Bearer token, if any.
    pub api_key: Option<Secret>,
    /// Longest one answer may take.
    pub timeout: Duration,
}

impl GenerationFile {
    /// `None` for the built-in model; the remote settings, checked, otherwise.
    fn validate(self) -> anyhow::Result<Option<RemoteGeneration>> {
        let url = self.url.trim().to_string();
        if url.is_empty() {
            if !self.model.is_empty() {
                bail!(
                    "generation.model ({:?}) names a remote model: set generation.url \
                     (--gen-url, QUIVER_GEN_URL) too, or leave the model out for the built-in one",
                    self.model
                );
            }
            return Ok(None);
        }
        let Some(rest) = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"))
        else {
            bail!("generation.url {url:?} must start with http:// or https://");
        };
        // The URL shows in error messages and logs: no credentials in it.
        if rest
            .split(['/', '?', '#'])
            .next()
            .is_some_and(|a| a.contains('@'))
        {
            bail!(
                "generation.url must not hold credentials (user:password@host): give the key \
                 as generation.api_key or QUIVER_GEN_API_KEY"
            );
        }
        if self.model.trim().is_empty() {
            bail!(
                "generation.url is set but generation.model is not: name the model the endpoint \
                 serves (--gen-model, QUIVER_GEN_MODEL)"
            );
        }
        if self.timeout_secs == 0 {
            bail!("generation.timeout_secs must be at least 1");
        }
        Ok(Some(RemoteGeneration {
            url,
            model: self.model.trim().to_string(),
            api_key: self.api_key.filter(|k| !k.0.is_empty()),
            timeout: Duration::from_secs(self.timeout_secs),
        }))
    }
}

/// `[embedding]`: the built-in model, or an OpenAI-compatible `/v1/embeddings` endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmbeddingFile {
    /// Base URL of an OpenAI-compatible API (e.g. `http://127.0.0.1:8080/v1`); empty uses the
    /// built-in all-MiniLM-L6-v2.
    pub url: String,
    /// Model name sent to the remote API (and the name collections use for it).
    pub model: String,
    /// Bearer token for the remote API (or QUIVER_EMBED_API_KEY).
    pub api_key: Option<crate::auth::Secret>,
    /// Longest input of the remote model, in tokens (estimated as words × 4/3 for chunking).
    pub max_tokens: usize,
    /// Model threads.
    pub threads: usize,
    /// Most texts per model call.
    pub max_batch: usize,
    /// Longest wait for a batch to fill, milliseconds.
    pub max_wait_ms: u64,
    /// Jobs that may wait; more wait for room until their deadline, then RESOURCE_EXHAUSTED.
    pub queue: usize,
}

impl Default for EmbeddingFile {
    fn default() -> Self {
        let w = crate::embed::WorkerConfig::default();
        EmbeddingFile {
            url: String::new(),
            model: String::new(),
            api_key: None,
            max_tokens: 512,
            threads: w.threads,
            max_batch: w.max_batch,
            max_wait_ms: w.max_wait.as_millis() as u64,
            queue: w.queue,
        }
    }
}

/// Limits as written in the TOML file.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsFile {
    /// Largest gRPC message, bytes.
    pub max_message_bytes: usize,
    /// Points per upsert, ids per get or delete, searches per batch.
    pub max_batch: usize,
    /// Bytes of one payload.
    pub max_payload_bytes: usize,
    /// Largest k, and largest scroll page.
    pub max_k: usize,
    /// Deepest filter nesting.
    pub max_filter_depth: usize,
    /// Most conditions in one filter.
    pub max_filter_conditions: usize,
    /// Requests served at once per connection.
    pub max_concurrent_requests: usize,
    /// Longest a request may run, seconds.
    pub request_timeout_secs: u64,
}

impl Default for ConfigFile {
    fn default() -> Self {
        ConfigFile {
            data_dir: PathBuf::from("./data"),
            grpc_addr: "127.0.0.1:50051".into(),
            metrics_addr: "127.0.0.1:9091".into(),
            log: "info".into(),
            flush_threshold: 20_000,
            limits: LimitsFile::default(),
            api_key: None,
            read_only_api_key: None,
            tls_cert: None,
            tls_key: None,
            models_dir: PathBuf::from("./models"),
            embedding: EmbeddingFile::default(),
            generation: GenerationFile::default(),
        }
    }
}

impl Default for LimitsFile {
    fn default() -> Self {
        let l = Limits::default();
        LimitsFile {
            max_message_bytes: 64 << 20,
            max_batch: l.max_batch,
            max_payload_bytes: l.max_payload_bytes,
            max_k: l.max_k,
            max_filter_depth: l.max_filter_depth,
            max_filter_conditions: l.max_filter_conditions,
            max_concurrent_requests: 256,
            request_timeout_secs: 300,
        }
    }
}

/// Flags, each also readable from a `QUIVER_*` variable.
#[derive(Debug, Clone, Args, Default)]
pub struct Overrides {
    /// TOML configuration file.
    #[arg(long, global = true, env = "QUIVER_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data folder.
    #[arg(long, global = true, env = "QUIVER_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// gRPC listen address (port 0 picks a free port; the chosen one is printed).
    #[arg(long, global = true, env = "QUIVER_GRPC_ADDR")]
    pub grpc_addr: Option<String>,
    /// Prometheus metrics listen address; "off" turns metrics off.
    #[arg(long, global = true, env = "QUIVER_METRICS_ADDR")]
    pub metrics_addr: Option<String>,
    /// Log filter, e.g. "info" or "quiver_storage=debug".
    #[arg(long, global = true, env = "QUIVER_LOG")]
    pub log: Option<String>,
    /// Default points per mutable segment before a flush.
    #[arg(long, global = true, env = "QUIVER_FLUSH_THRESHOLD")]
    pub flush_threshold: Option<usize>,
    /// Largest gRPC message, bytes.
    #[arg(long, global = true, env = "QUIVER_MAX_MESSAGE_BYTES")]
    pub max_message_bytes: Option<usize>,
    /// Points per upsert, ids per get or delete, searches per batch.
    #[arg(long, global = true, env = "QUIVER_MAX_BATCH")]
    pub max_batch: Option<usize>,
    /// Bytes of one payload.
    #[arg(long, global = true, env = "QUIVER_MAX_PAYLOAD_BYTES")]
    pub max_payload_bytes: Option<usize>,
    /// Largest k.
    #[arg(long, global = true, env = "QUIVER_MAX_K")]
    pub max_k: Option<usize>,
    /// Longest a request may run, seconds (a client's shorter deadline wins).
    #[arg(long, global = true, env = "QUIVER_REQUEST_TIMEOUT_SECS")]
    pub request_timeout_secs: Option<u64>,
    /// Admin API key (prefer the environment variable: flags show in process lists).
    #[arg(long, global = true, env = "QUIVER_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Read-only API key.
    #[arg(
        long,
        global = true,
        env = "QUIVER_READ_ONLY_API_KEY",
        hide_env_values = true
    )]
    pub read_only_api_key: Option<String>,
    /// TLS certificate chain, PEM.
    #[arg(long, global = true, env = "QUIVER_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key, PEM.
    #[arg(long, global = true, env = "QUIVER_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Folder of the built-in models (installed by scripts/models.sh).
    #[arg(long, global = true, env = "QUIVER_MODELS_DIR")]
    pub models_dir: Option<PathBuf>,
    /// Embedding model threads (default: one per core).
    #[arg(long, global = true, env = "QUIVER_EMBED_THREADS")]
    pub embed_threads: Option<usize>,
    /// Jobs the embedding queue holds before callers wait.
    #[arg(long, global = true, env = "QUIVER_EMBED_QUEUE")]
    pub embed_queue: Option<usize>,
    /// Most texts per embedding model call.
    #[arg(long, global = true, env = "QUIVER_EMBED_MAX_BATCH")]
    pub embed_max_batch: Option<usize>,
    /// OpenAI-compatible embeddings endpoint (base URL ending in /v1); unset uses the built-in model.
    #[arg(long, global = true, env = "QUIVER_EMBED_URL")]
    pub embed_url: Option<String>,
    /// Model name for the remote embeddings endpoint.
    #[arg(long, global = true, env = "QUIVER_EMBED_MODEL")]
    pub embed_model: Option<String>,
    /// OpenAI-compatible chat endpoint (base URL ending in /v1) for Generate and Ask; unset uses
    /// the built-in model.
    #[arg(long, global = true, env = "QUIVER_GEN_URL")]
    pub gen_url: Option<String>,
    /// Model name for the remote chat endpoint (required with --gen-url).
    #[arg(long, global = true, env = "QUIVER_GEN_MODEL")]
    pub gen_model: Option<String>,
    /// Longest one remote answer may take, seconds.
    #[arg(long, global = true, env = "QUIVER_GEN_TIMEOUT_SECS")]
    pub gen_timeout_secs: Option<u64>,
}

/// The validated configuration the server runs with.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where data lives.
    pub data_dir: PathBuf,
    /// gRPC listen address.
    pub grpc_addr: SocketAddr,
    /// Metrics listen address, if on.
    pub metrics_addr: Option<SocketAddr>,
    /// Log filter.
    pub log: String,
    /// Default flush threshold.
    pub flush_threshold: usize,
    /// Storage limits.
    pub limits: Limits,
    /// Largest gRPC message.
    pub max_message_bytes: usize,
    /// Requests served at once per connection.
    pub max_concurrent_requests: usize,
    /// Longest a request may run.
    pub request_timeout: Duration,
    /// API keys, if any.
    pub keys: Option<Keys>,
    /// TLS certificate and key (PEM contents), if any.
    pub tls: Option<(Vec<u8>, Vec<u8>)>,
    /// Folder of the built-in models.
    pub models_dir: PathBuf,
    /// Embedding back-end settings.
    pub embedding: EmbeddingFile,
    /// The remote generation back-end; `None` runs the built-in model.
    pub generation: Option<RemoteGeneration>,
}

impl Config {
    /// Builds the configuration from the layers.
    pub fn load(o: &Overrides) -> anyhow::Result<Config> {
        let mut f = match &o.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading config file {}", path.display()))?;
                toml::from_str::<ConfigFile>(&text)
                    .with_context(|| format!("parsing config file {}", path.display()))?
            }
            None => ConfigFile::default(),
        };
        macro_rules! set {
            ($($dst:expr => $src:expr),* $(,)?) => { $( if let Some(v) = $src.clone() { $dst = v; } )* };
        }
        set! {
            f.data_dir => o.data_dir,
            f.grpc_addr => o.grpc_addr,
            f.metrics_addr => o.metrics_addr,
            f.log => o.log,
            f.flush_threshold => o.flush_threshold,
            f.limits.max_message_bytes => o.max_message_bytes,
            f.limits.max_batch => o.max_batch,
            f.limits.max_payload_bytes => o.max_payload_bytes,
            f.limits.max_k => o.max_k,
            f.limits.request_timeout_secs => o.request_timeout_secs,
            f.models_dir => o.models_dir,
            f.embedding.queue => o.embed_queue,
            f.embedding.threads => o.embed_threads,
            f.embedding.max_batch => o.embed_max_batch,
            f.embedding.url => o.embed_url,
            f.embedding.model => o.embed_model,
            f.generation.url => o.gen_url,
            f.generation.model => o.gen_model,
            f.generation.timeout_secs => o.gen_timeout_secs,
        }
        if let Ok(k) = std::env::var("QUIVER_EMBED_API_KEY") {
            f.embedding.api_key = Some(crate::auth::Secret(k));
        }
        if let Ok(k) = std::env::var("QUIVER_GEN_API_KEY") {
            f.generation.api_key = Some(crate::auth::Secret(k));
        }
        if o.api_key.is_some() {
            f.api_key = o.api_key.clone();
        }
        if o.read_only_api_key.is_some() {
            f.read_only_api_key = o.read_only_api_key.clone();
        }
        if o.tls_cert.is_some() {
            f.tls_cert = o.tls_cert.clone();
        }
        if o.tls_key.is_some() {
            f.tls_key = o.tls_key.clone();
        }
        let keys = match (
            f.api_key.filter(|k| !k.is_empty()),
            f.read_only_api_key.filter(|k| !k.is_empty()),
        ) {
            (None, None) => None,
            (None, Some(_)) => bail!("read_only_api_key needs api_key as well"),
            (Some(a), r) => {
                if r.as_ref() == Some(&a) {
                    bail!("api_key and read_only_api_key must differ");
                }
                Some(Keys {
                    admin: Secret(a),
                    read_only: r.map(Secret),
                })
            }
        };
        let tls = match (&f.tls_cert, &f.tls_key) {
            (None, None) => None,
            (Some(c), Some(k)) => Some((
                std::fs::read(c)
                    .with_context(|| format!("reading TLS certificate {}", c.display()))?,
                std::fs::read(k).with_context(|| format!("reading TLS key {}", k.display()))?,
            )),
            _ => bail!("tls_cert and tls_key go together"),
        };
        let grpc_addr = f
            .grpc_addr
            .parse()
            .with_context(|| format!("grpc_addr {:?} is not an address", f.grpc_addr))?;
        let metrics_addr = match f.metrics_addr.as_str() {
            "" | "off" => None,
            a => Some(
                a.parse()
                    .with_context(|| format!("metrics_addr {a:?} is not an address"))?,
            ),
        };
        let l = &f.limits;
        for (name, v) in [
            ("flush_threshold", f.flush_threshold),
            ("max_message_bytes", l.max_message_bytes),
            ("max_batch", l.max_batch),
            ("max_payload_bytes", l.max_payload_bytes),
            ("max_k", l.max_k),
            ("max_filter_depth", l.max_filter_depth),
            ("max_filter_conditions", l.max_filter_conditions),
            ("max_concurrent_requests", l.max_concurrent_requests),
            ("embedding.threads", f.embedding.threads),
            ("embedding.max_batch", f.embedding.max_batch),
            ("embedding.queue", f.embedding.queue),
            ("embedding.max_tokens", f.embedding.max_tokens),
        ] {
            if v == 0 {
                bail!("{name} must be at least 1");
            }
        }
        let generation = f.generation.validate()?;
        Ok(Config {
            data_dir: f.data_dir,
            grpc_addr,
            metrics_addr,
            log: f.log,
            flush_threshold: f.flush_threshold,
            limits: Limits {
                max_batch: l.max_batch,
                max_payload_bytes: l.max_payload_bytes,
                max_k: l.max_k,
                max_filter_depth: l.max_filter_depth,
                max_filter_conditions: l.max_filter_conditions,
            },
            max_message_bytes: l.max_message_bytes,
            max_concurrent_requests: l.max_concurrent_requests,
            request_timeout: Duration::from_secs(l.request_timeout_secs.max(1)),
            keys,
            tls,
            models_dir: f.models_dir,
            embedding: f.embedding,
            generation,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_apply_in_order() {
        let dir = std::env::temp_dir().join(format!("quiver-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("q.toml");
        std::fs::write(
            &path,
            "grpc_addr = \"127.0.0.1:7000\"\nflush_threshold = 5\n[limits]\nmax_k = 50\n",
        )
        .unwrap();
        let o = Overrides {
            config: Some(path),
            flush_threshold: Some(9),
            ..Default::default()
        };
        let c = Config::load(&o).unwrap();
        assert_eq!(c.grpc_addr.port(), 7000, "file over default");
        assert_eq!(c.flush_threshold, 9, "flag over file");
        assert_eq!(c.limits.max_k, 50);
        assert_eq!(c.data_dir, PathBuf::from("./data"), "default kept");
        std::fs::write(dir.join("bad.toml"), "nonsense_key = 1\n").unwrap();
        let bad = Overrides {
            config: Some(dir.join("bad.toml")),
            ..Default::default()
        };
        assert!(Config::load(&bad).is_err(), "unknown keys are refused");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_generation_url_needs_a_model() {
        let built_in = Config::load(&Overrides::default()).unwrap();
        assert!(built_in.generation.is_none());
        let o = Overrides {
            gen_url: Some("http://127.0.0.1:8080/v1".into()),
            ..Default::default()
        };
        let err = Config::load(&o).unwrap_err().to_string();
        assert!(err.contains("generation.model"), "{err}");
        let o = Overrides {
            gen_model: Some("qwen".into()),
            gen_timeout_secs: Some(7),
            ..o
        };
        let g = Config::load(&o).unwrap().generation.unwrap();
        assert_eq!((g.model.as_str(), g.timeout.as_secs()), ("qwen", 7));
        let o = Overrides {
            gen_url: Some("127.0.0.1:8080/v1".into()),
            ..o
        };
        assert!(Config::load(&o).is_err(), "a URL without its scheme");
        let o = Overrides {
            gen_url: Some("https://me:secret@example.com/v1".into()),
            ..o
        };
        let err = Config::load(&o).unwrap_err().to_string();
        assert!(
            err.contains("credentials") && !err.contains("secret"),
            "{err}"
        );
        let o = Overrides {
            gen_url: Some("https://example.com/v1?who=a@b".into()),
            ..o
        };
        assert!(
            Config::load(&o).is_ok(),
            "an @ after the host is no credential"
        );
        let o = Overrides { gen_url: None, ..o };
        let err = Config::load(&o).unwrap_err().to_string();
        assert!(
            err.contains("generation.url"),
            "a model without a URL: {err}"
        );
    }
}
