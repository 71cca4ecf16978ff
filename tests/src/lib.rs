//! Helpers for the end-to-end tests: start a real `quiver-server` process on loopback, find its
//! ports, stop it politely or kill it with SIGKILL, and make temporary data folders.
//!
//! The server binary is `$QUIVER_SERVER_BIN`, or `quiver-server` beside the test executable's
//! folder (cargo builds it there for `cargo test --workspace`).

use quiver_client::Client;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// A server process under test.
pub struct ServerProcess {
    child: Option<Child>,
    /// gRPC address, `127.0.0.1:port`.
    pub addr: String,
    /// Metrics address, `127.0.0.1:port`.
    pub metrics_addr: String,
    /// Its data folder.
    pub data_dir: PathBuf,
    /// Where its stderr (logs) goes.
    pub log_path: PathBuf,
}

/// Path of a binary built by cargo next to the test executable.
pub fn sibling_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> → target/<profile>/<name>
    exe.parent()
        .and_then(Path::parent)
        .expect("target folder")
        .join(name)
}

/// Runs the `quiver` CLI against the server at `addr`.
pub fn quiver(addr: &str, args: &[&str]) -> Output {
    Command::new(sibling_bin("quiver"))
        .arg("--addr")
        .arg(addr)
        .args(args)
        .output()
        .expect("running quiver")
}

/// Runs a binary built beside the tests, checks that it succeeded, and returns the JSON it
/// printed: all of stdout, or else its last line (after any table).
pub fn run_json(bin: &str, args: &[&str]) -> serde_json::Value {
    let out = Command::new(sibling_bin(bin))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {bin}: {e}"));
    assert!(
        out.status.success(),
        "{bin} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(&stdout)
        .or_else(|_| serde_json::from_str(stdout.lines().last().unwrap_or_default()))
        .unwrap_or_else(|e| panic!("{bin} {args:?} printed no JSON ({e}): {stdout}"))
}

/// `quiver --addr ADDR --json ARGS…`, which must succeed; its JSON.
pub fn quiver_json(addr: &str, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--addr", addr, "--json"];
    all.extend_from_slice(args);
    run_json("quiver", &all)
}

/// The server binary to test.
pub fn server_bin() -> PathBuf {
    std::env::var_os("QUIVER_SERVER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| sibling_bin("quiver-server"))
}

/// A fresh, empty folder for one test.
pub fn temp_dir(name: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let d = std::env::temp_dir().join(format!(
        "quiver-e2e-{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("creating a temp folder");
    d
}

/// The project's models folder (filled by scripts/models.sh, which the test command runs).
pub fn models_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models")
}

/// Creates a collection whose documents the server embeds with `model`.
pub async fn create_text_collection(
    c: &mut Client,
    name: &str,
    model: &str,
) -> Result<quiver_client::pb::CollectionInfo, tonic::Status> {
    let req = quiver_client::pb::CreateCollectionRequest {
        name: name.into(),
        embedding_model: model.into(),
        ..Default::default()
    };
    c.collections.create(req).await.map(|r| r.into_inner())
}

/// Sends one ingest request and reads the progress stream to its end: the last message.
pub async fn ingest(
    c: &mut Client,
    req: quiver_client::pb::IngestRequest,
) -> Result<quiver_client::pb::IngestProgress, tonic::Status> {
    let mut stream = c
        .documents
        .ingest(tokio_stream::iter(vec![req]))
        .await?
        .into_inner();
    let mut last = None;
    while let Some(p) = stream.message().await? {
        last = Some(p);
    }
    Ok(last.expect("progress messages"))
}

/// Documents from (id, text) pairs, without metadata.
pub fn documents(docs: &[(&str, &str)]) -> Vec<quiver_client::pb::Document> {
    docs.iter()
        .map(|(id, text)| quiver_client::pb::Document {
            id: id.to_string(),
            text: text.to_string(),
            metadata_json: String::new(),
        })
        .collect()
}

/// A file under tests/fixtures.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

impl ServerProcess {
    /// Starts a server on free loopback ports over `data_dir`, with extra flags; waits until it
    /// listens.
    pub fn start(data_dir: &Path, extra: &[&str]) -> ServerProcess {
        ServerProcess::start_with_env(data_dir, extra, &[])
    }

    /// As `start`, with extra environment variables for the server process.
    pub fn start_with_env(data_dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> ServerProcess {
        let bin = server_bin();
        assert!(
            bin.exists(),
            "server binary {} is missing: build the workspace first",
            bin.display()
        );
        let log_path = data_dir.with_extension("log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .expect("log file");
        let mut child = Command::new(&bin)
            .args(["--data-dir", data_dir.to_str().expect("UTF-8 path")])
            .args([
                "--grpc-addr",
                "127.0.0.1:0",
                "--metrics-addr",
                "127.0.0.1:0",
            ])
            .args(extra)
            .env("QUIVER_LOG", "info")
            .env("QUIVER_MODELS_DIR", models_dir())
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("spawning quiver-server");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with("quiver-server listening") {
                    let _ = tx.send(line);
                }
            }
        });
        let line = match rx.recv_timeout(Duration::from_secs(300)) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                let logs = std::fs::read_to_string(&log_path).unwrap_or_default();
                panic!("quiver-server did not start; its log:\n{logs}");
            }
        };
        let field = |name: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(name))
                .expect("listening line names the address")
                .to_string()
        };
        ServerProcess {
            addr: field("grpc="),
            metrics_addr: field("metrics="),
            child: Some(child),
            data_dir: data_dir.to_path_buf(),
            log_path,
        }
    }

    /// A client connected to this server.
    pub async fn client(&self) -> Client {
        Client::connect(&self.addr)
            .await
            .expect("connecting to the test server")
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Kills the process with SIGKILL: no shutdown code runs.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().expect("SIGKILL");
            c.wait().expect("reaping the server");
        }
    }

    /// Kills the process and removes its data folder: the end of a test that passed.
    pub fn remove(mut self) {
        self.kill9();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }

    /// Stops the process with SIGTERM and waits for a clean exit.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let ok = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status()
                .expect("running kill");
            assert!(ok.success());
            let status = c.wait().expect("waiting for the server");
            assert!(status.success(), "server exited with {status}");
        }
    }

    /// The server's log so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        // The log stays behind only when the test failed (it names the log's path).
        if !std::thread::panicking() {
            let _ = std::fs::remove_file(&self.log_path);
        }
    }
}

/// A seeded generator of test vectors (clustered, so neighbours are meaningful).
pub fn vectors(seed: u64, n: usize, dim: usize) -> Vec<Vec<f32>> {
    use rand::{Rng, SeedableRng, rngs::StdRng};
    let mut rng = StdRng::seed_from_u64(seed);
    let centers: Vec<Vec<f32>> = (0..16)
        .map(|_| (0..dim).map(|_| rng.random_range(-1.0..1.0)).collect())
        .collect();
    (0..n)
        .map(|_| {
            let c = &centers[rng.random_range(0..centers.len())];
            c.iter().map(|x| x + rng.random_range(-0.3..0.3)).collect()
        })
        .collect()
}

/// Clustered vectors of low intrinsic dimension, like real embeddings: 50 centres, each point
/// a centre plus a 10-d latent offset mapped into `dim` dimensions, plus a little noise.
pub fn embedding_like(seed: u64, n: usize, dim: usize) -> Vec<Vec<f32>> {
    use rand::{Rng, SeedableRng, rngs::StdRng};
    let mut rng = StdRng::seed_from_u64(7);
    let latent = 10;
    let centres: Vec<Vec<f32>> = (0..50)
        .map(|_| (0..dim).map(|_| rng.random_range(-2.0..2.0)).collect())
        .collect();
    let basis: Vec<f32> = (0..latent * dim)
        .map(|_| rng.random_range(-0.5..0.5))
        .collect();
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let c = &centres[rng.random_range(0..centres.len())];
            let z: Vec<f32> = (0..latent).map(|_| rng.random_range(-1.0..1.0)).collect();
            (0..dim)
                .map(|d| {
                    c[d] + (0..latent).map(|j| basis[j * dim + d] * z[j]).sum::<f32>()
                        + rng.random_range(-0.05..0.05)
                })
                .collect()
        })
        .collect()
}

/// Exact distances the slow way, for comparing with the server: (lower is closer).
pub fn distance(metric: &str, a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    match metric {
        "cosine" => {
            let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
            let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
            1.0 - dot / (na * nb)
        }
        "dot" => -dot,
        "l2" => a
            .iter()
            .zip(b)
            .map(|(x, y)| (*x as f64 - *y as f64).powi(2))
            .sum(),
        m => panic!("unknown metric {m}"),
    }
}
