//! Snapshot streaming: `CreateSnapshot` writes the snapshot to a temporary file in the data
//! folder's `snapshots/` and streams it out in 1 MiB chunks; `RestoreSnapshot` receives chunks
//! into a temporary file, then restores it into a new collection. Temporary files are removed
//! whatever happens.

use crate::convert;
use crate::service::{Service, blocking};
use quiver_proto::v1 as pb;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Response, Status, Streaming};

/// The stream `CreateSnapshot` answers with.
pub type ChunkStream = ReceiverStream<Result<pb::SnapshotChunk, Status>>;

const CHUNK: usize = 1 << 20;

/// A file removed when dropped.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn temp_path(svc: &Service, what: &str) -> Result<TempFile, Status> {
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = svc.storage.data_dir().join("snapshots");
    std::fs::create_dir_all(&dir)
        .map_err(|e| Status::internal(format!("creating {}: {e}", dir.display())))?;
    let n = N.fetch_add(1, Ordering::Relaxed);
    Ok(TempFile(dir.join(format!(
        "{what}-{}-{n}.qsnap.tmp",
        std::process::id()
    ))))
}

/// Takes a snapshot and streams it.
pub async fn create(
    svc: &Service,
    r: pb::CreateSnapshotRequest,
) -> Result<Response<ChunkStream>, Status> {
    let c = svc.collection(&r.name)?;
    let tmp = temp_path(svc, "out")?;
    let (storage, path) = (svc.storage.clone(), tmp.0.clone());
    let info = blocking(move || storage.snapshot(&c, &path)).await?;
    tracing::info!(collection = %r.name, points = info.points, bytes = info.bytes, "snapshot taken");
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        let _cleanup = tmp;
        let mut f = match tokio::fs::File::open(&_cleanup.0).await {
            Ok(f) => f,
            Err(e) => {
                let _ = tx
                    .send(Err(Status::internal(format!("reading the snapshot: {e}"))))
                    .await;
                return;
            }
        };
        loop {
            let mut buf = vec![0u8; CHUNK];
            let mut filled = 0;
            while filled < CHUNK {
                match f.read(&mut buf[filled..]).await {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) => {
                        let _ = tx
                            .send(Err(Status::internal(format!("reading the snapshot: {e}"))))
                            .await;
                        return;
                    }
                }
            }
            if filled == 0 {
                return;
            }
            buf.truncate(filled);
            if tx.send(Ok(pb::SnapshotChunk { data: buf })).await.is_err() {
                return; // the client went away
            }
        }
    });
    Ok(Response::new(ReceiverStream::new(rx)))
}

/// Receives a snapshot and restores it into a new collection.
pub async fn restore(
    svc: &Service,
    mut stream: Streaming<pb::RestoreSnapshotChunk>,
) -> Result<Response<pb::CollectionInfo>, Status> {
    let tmp = temp_path(svc, "in")?;
    let mut f = tokio::fs::File::create(&tmp.0)
        .await
        .map_err(|e| Status::internal(format!("creating {}: {e}", tmp.0.display())))?;
    let mut name: Option<String> = None;
    while let Some(msg) = stream.message().await? {
        if name.is_none() {
            if msg.collection.is_empty() {
                return Err(Status::invalid_argument(
                    "the first chunk must name the new collection",
                ));
            }
            name = Some(msg.collection);
        }
        f.write_all(&msg.data)
            .await
            .map_err(|e| Status::internal(format!("writing {}: {e}", tmp.0.display())))?;
    }
    f.sync_all()
        .await
        .map_err(|e| Status::internal(format!("syncing {}: {e}", tmp.0.display())))?;
    drop(f);
    let name = name.ok_or_else(|| Status::invalid_argument("no snapshot data was sent"))?;
    let (storage, path) = (svc.storage.clone(), tmp.0.clone());
    let c = blocking(move || storage.restore(&name, &path)).await?;
    drop(tmp);
    Ok(Response::new(convert::collection_info(&c)))
}
