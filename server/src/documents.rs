//! The gRPC service `quiver.v1.Documents`: raw text in, chunked and embedded by the server's
//! embedding model, stored as points of a collection that names the model.
//!
//! A chunk is a point with id `"<doc id>#<chunk>"` and payload `{text, doc_id, chunk, metadata}`;
//! `doc_id` has a keyword index (made with the collection), so a document's chunks are one
//! bitmap away. Re-ingesting a document overwrites chunks 0..n and then deletes the old chunks
//! numbered n and above: the document is never absent in between. A crash between the two writes
//! leaves stale trailing chunks, which the next ingest of that document removes.

use crate::chunk::{self, ChunkParams};
use crate::convert;
use crate::embed::EmbedWorker;
use crate::retrieve::{HybridSettings, Mode, TextQuery};
use crate::service::{OwnedSearch, Service, blocking};
use crate::status::{invalid, model_status};
use quiver_proto::v1 as pb;
use quiver_proto::v1::documents_server::Documents;
use quiver_storage::{Collection, PointId, Storage};
use serde_json::{Value, json};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

/// Longest document id, bytes.
const MAX_DOC_ID_BYTES: usize = 256;

/// The payload field holding a chunk's document id (keyword-indexed).
pub const DOC_ID_FIELD: &str = "doc_id";

impl Service {
    /// The embedding worker, or FAILED_PRECONDITION saying how to install the model.
    pub(crate) fn embedder(&self) -> Result<&Arc<EmbedWorker>, Status> {
        match &self.embed {
            Ok(w) => Ok(w),
            Err(msg) => Err(Status::failed_precondition(msg.clone())),
        }
    }

    /// A collection that takes documents, and the worker for its model.
    pub(crate) fn text_collection(
        &self,
        name: &str,
    ) -> Result<(Arc<Collection>, Arc<EmbedWorker>), Status> {
        let c = self.collection(name)?;
        let Some(model) = c.config().embedding_model else {
            return Err(Status::failed_precondition(format!(
                "collection {name} has no embedding model; create it with one (e.g. --model all-minilm-l6-v2) to store documents"
            )));
        };
        let w = self.embedder()?;
        if w.model().name() != model {
            return Err(Status::failed_precondition(format!(
                "collection {name} uses embedding model {model}, but this server runs {}",
                w.model().name()
            )));
        }
        Ok((c, w.clone()))
    }

    pub(crate) async fn embed_texts(
        &self,
        w: &EmbedWorker,
        texts: Vec<String>,
        wait: Duration,
    ) -> Result<Vec<Vec<f32>>, Status> {
        w.embed(texts, wait).await.map_err(model_status)
    }

    /// How long a request may wait for room in the model's queue: most of its deadline, so
    /// that a full queue answers RESOURCE_EXHAUSTED before the deadline passes.
    pub(crate) fn queue_wait(&self, md: &tonic::metadata::MetadataMap) -> Duration {
        let asked = md
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(crate::deadline::parse_grpc_timeout);
        let limit = asked.map_or(self.request_timeout, |a| a.min(self.request_timeout));
        limit * 9 / 10
    }
}

fn doc_filter(doc: &str, from_chunk: Option<usize>) -> pb::Filter {
    let field = |key: &str, test| pb::Condition {
        kind: Some(pb::condition::Kind::Field(pb::FieldCondition {
            key: key.into(),
            test: Some(test),
        })),
    };
    let mut must = vec![field(
        DOC_ID_FIELD,
        pb::field_condition::Test::Match(pb::MatchValue {
            kind: Some(pb::match_value::Kind::Keyword(doc.into())),
        }),
    )];
    if let Some(n) = from_chunk {
        must.push(field(
            "chunk",
            pb::field_condition::Test::Range(pb::Range {
                gte: Some(n as f64),
                ..Default::default()
            }),
        ));
    }
    pb::Filter {
        must,
        ..Default::default()
    }
}

fn check_doc_id(id: &str) -> Result<(), Status> {
    if id.is_empty() || id.len() > MAX_DOC_ID_BYTES || id.contains('#') {
        return Err(invalid(format!(
            "document id {id:?} must be 1 to {MAX_DOC_ID_BYTES} bytes without '#'"
        )));
    }
    Ok(())
}

/// A document checked and chunked.
struct Prepared {
    id: String,
    metadata: Value,
    chunks: Vec<chunk::Chunk>,
}

fn prepare(doc: pb::Document, params: ChunkParams, w: &EmbedWorker) -> Result<Prepared, Status> {
    check_doc_id(&doc.id)?;
    let metadata = if doc.metadata_json.trim().is_empty() {
        Value::Object(Default::default())
    } else {
        match serde_json::from_str::<Value>(&doc.metadata_json) {
            Ok(v @ Value::Object(_)) => v,
            Ok(_) => {
                return Err(invalid(format!(
                    "document {}: metadata must be a JSON object",
                    doc.id
                )));
            }
            Err(e) => {
                return Err(invalid(format!(
                    "document {}: metadata is not JSON: {e}",
                    doc.id
                )));
            }
        }
    };
    let chunks = chunk::chunk(&doc.text, params, &**w.model()).map_err(model_status)?;
    Ok(Prepared {
        id: doc.id,
        metadata,
        chunks,
    })
}

/// Writes one document's embedded chunks, then removes its chunks from an earlier ingest.
fn store(
    storage: &Storage,
    c: &Arc<Collection>,
    doc: &Prepared,
    vectors: Vec<Vec<f32>>,
    max_batch: usize,
) -> Result<(), Status> {
    let points: Vec<_> = doc
        .chunks
        .iter()
        .zip(vectors)
        .enumerate()
        .map(|(i, (ch, v))| {
            let payload = json!({
                "text": ch.text,
                "doc_id": doc.id,
                "chunk": i,
                "metadata": doc.metadata,
            });
            (
                PointId::Text(format!("{}#{i}", doc.id)),
                v,
                Some(payload.to_string()),
            )
        })
        .collect();
    let mut points = points.into_iter().peekable();
    while points.peek().is_some() {
        let part: Vec<_> = points.by_ref().take(max_batch).collect();
        let batch = c.prepare_upsert(part).map_err(crate::status::to_status)?;
        storage.upsert(c, batch).map_err(crate::status::to_status)?;
    }
    let stale = convert::filter(&doc_filter(&doc.id, Some(doc.chunks.len())))?;
    let ids = c.matching_ids(&stale).map_err(crate::status::to_status)?;
    if !ids.is_empty() {
        storage.delete(c, ids).map_err(crate::status::to_status)?;
    }
    Ok(())
}

type ProgressStream = Pin<Box<dyn Stream<Item = Result<pb::IngestProgress, Status>> + Send>>;

#[tonic::async_trait]
impl Documents for Service {
    type IngestStream = ProgressStream;

    async fn ingest(
        &self,
        req: Request<Streaming<pb::IngestRequest>>,
    ) -> Result<Response<Self::IngestStream>, Status> {
        let mut input = req.into_inner();
        let Some(first) = input.next().await.transpose()? else {
            return Err(invalid("ingest stream is empty"));
        };
        let (c, w) = self.text_collection(&first.collection)?;
        let params = match (first.chunk_tokens, first.overlap_tokens) {
            (0, 0) => ChunkParams::default(),
            (0, o) => ChunkParams {
                overlap: o as usize,
                ..Default::default()
            },
            (s, o) => ChunkParams {
                size: s as usize,
                overlap: o as usize,
            },
        };
        if params.overlap >= params.size {
            return Err(invalid("overlap_tokens must be smaller than chunk_tokens"));
        }
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let svc = self.clone();
        tokio::spawn(async move {
            let mut progress = pb::IngestProgress::default();
            let mut next = Some(first);
            loop {
                let msg = match next.take() {
                    Some(m) => m,
                    None => match input.next().await {
                        None => break,
                        Some(Ok(m)) => m,
                        Some(Err(e)) => {
                            let _ = tx.send(Err(e)).await;
                            return;
                        }
                    },
                };
                let r = svc
                    .ingest_batch(&c, &w, params, msg.documents, &mut progress)
                    .await;
                let failed = r.is_err();
                let _ = tx.send(r.map(|()| progress.clone())).await;
                if failed {
                    return;
                }
            }
            progress.done = true;
            let _ = tx.send(Ok(progress)).await;
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn delete(
        &self,
        req: Request<pb::DeleteDocumentRequest>,
    ) -> Result<Response<pb::WriteResponse>, Status> {
        self.metrics
            .observe("Documents/Delete", async {
                let r = req.into_inner();
                check_doc_id(&r.id)?;
                let c = self.collection(&r.collection)?;
                let f = convert::filter(&doc_filter(&r.id, None))?;
                let storage = self.storage.clone();
                // Deleting a document that has no chunks is not an error: nothing is written.
                let out = blocking(move || {
                    let ids = c.matching_ids(&f)?;
                    if ids.is_empty() {
                        return Ok(None);
                    }
                    storage.delete(&c, ids).map(Some)
                })
                .await?;
                Ok(Response::new(out.map_or_else(
                    pb::WriteResponse::default,
                    |o| pb::WriteResponse {
                        seq: o.seq.0,
                        affected: o.affected,
                    },
                )))
            })
            .await
    }

    async fn get(
        &self,
        req: Request<pb::GetDocumentRequest>,
    ) -> Result<Response<pb::GetDocumentResponse>, Status> {
        self.metrics
            .observe("Documents/Get", async {
                let r = req.into_inner();
                check_doc_id(&r.id)?;
                let c = self.collection(&r.collection)?;
                let f = convert::filter(&doc_filter(&r.id, None))?;
                let mut records = blocking(move || {
                    let ids = c.matching_ids(&f)?;
                    if ids.is_empty() {
                        return Ok(Vec::new());
                    }
                    c.get(&ids, r.with_vector, true)
                })
                .await?;
                let pos = |r: &quiver_storage::Record| {
                    r.payload
                        .as_ref()
                        .and_then(|p| p["chunk"].as_u64())
                        .unwrap_or(u64::MAX)
                };
                records.sort_by_key(pos);
                Ok(Response::new(pb::GetDocumentResponse {
                    chunks: records.into_iter().map(convert::record_pb).collect(),
                }))
            })
            .await
    }

    async fn search_text(
        &self,
        req: Request<pb::SearchTextRequest>,
    ) -> Result<Response<pb::SearchResponse>, Status> {
        self.metrics
            .observe("Documents/SearchText", async {
                let wait = self.queue_wait(req.metadata());
                let r = req.into_inner();
                if r.query.trim().is_empty() {
                    return Err(invalid("query is empty"));
                }
                let c = self.collection(&r.collection)?;
                let mode = Mode::resolve(r.mode, c.has_text_index())?;
                let hybrid = HybridSettings::from_pb(r.hybrid.as_ref())?;
                let vector = if mode.needs_vector() {
                    let (_, w) = self.text_collection(&r.collection)?;
                    self.embed_texts(&w, vec![r.query.clone()], wait)
                        .await?
                        .pop()
                        .unwrap_or_default()
                } else {
                    Vec::new()
                };
                let dense = OwnedSearch::from_pb(pb::SearchRequest {
                    collection: r.collection,
                    vector,
                    k: r.k,
                    filter: r.filter.clone(),
                    with_payload: true,
                    with_vector: r.with_vector,
                    exact: false,
                    params: r.params,
                    rerank: 0,
                })?;
                let q = TextQuery {
                    mode,
                    text: r.query,
                    dense,
                    filter: convert::opt_filter(r.filter.as_ref())?,
                    k: r.k as usize,
                    hybrid,
                    with_vector: r.with_vector,
                };
                let hits = blocking(move || q.run(&c)).await?;
                Ok(Response::new(pb::SearchResponse {
                    hits: hits.into_iter().map(crate::retrieve::hit_pb).collect(),
                }))
            })
            .await
    }

    async fn embed(
        &self,
        req: Request<pb::EmbedRequest>,
    ) -> Result<Response<pb::EmbedResponse>, Status> {
        self.metrics
            .observe("Documents/Embed", async {
                let wait = self.queue_wait(req.metadata());
                let r = req.into_inner();
                if r.texts.len() > self.storage.limits().max_batch {
                    return Err(Status::resource_exhausted(format!(
                        "{} texts in one request; the limit is {}",
                        r.texts.len(),
                        self.storage.limits().max_batch
                    )));
                }
                let w = self.embedder()?.clone();
                let vectors = self.embed_texts(&w, r.texts, wait).await?;
                Ok(Response::new(pb::EmbedResponse {
                    vectors: vectors
                        .into_iter()
                        .map(|values| pb::Vector { values })
                        .collect(),
                    model: w.model().name().to_string(),
                    dim: w.model().dim() as u32,
                }))
            })
            .await
    }
}

impl Service {
    /// Chunks, embeds and stores one message's documents.
    async fn ingest_batch(
        &self,
        c: &Arc<Collection>,
        w: &Arc<EmbedWorker>,
        params: ChunkParams,
        docs: Vec<pb::Document>,
        progress: &mut pb::IngestProgress,
    ) -> Result<(), Status> {
        let w2 = w.clone();
        let prepared = tokio::task::spawn_blocking(move || {
            docs.into_iter()
                .map(|d| prepare(d, params, &w2))
                .collect::<Result<Vec<_>, Status>>()
        })
        .await
        .map_err(|e| Status::internal(format!("chunking task failed: {e}")))??;
        let texts: Vec<String> = prepared
            .iter()
            .flat_map(|p| p.chunks.iter().map(|c| c.text.clone()))
            .collect();
        let tokens: u64 = prepared
            .iter()
            .flat_map(|p| &p.chunks)
            .map(|c| c.tokens as u64 + 2)
            .sum();
        // An ingest stream has no overall deadline; each batch may wait the request timeout.
        let mut vectors = self
            .embed_texts(w, texts, self.request_timeout)
            .await?
            .into_iter();
        let max_batch = self.storage.limits().max_batch;
        let per_doc: Vec<(Prepared, Vec<Vec<f32>>)> = prepared
            .into_iter()
            .map(|p| {
                let v: Vec<Vec<f32>> = vectors.by_ref().take(p.chunks.len()).collect();
                (p, v)
            })
            .collect();
        let (storage, c2) = (self.storage.clone(), c.clone());
        let (docs, chunks) = tokio::task::spawn_blocking(move || {
            let (mut docs, mut chunks) = (0u64, 0u64);
            for (p, v) in per_doc {
                store(&storage, &c2, &p, v, max_batch)?;
                docs += 1;
                chunks += p.chunks.len() as u64;
            }
            Ok::<_, Status>((docs, chunks))
        })
        .await
        .map_err(|e| Status::internal(format!("storage task failed: {e}")))??;
        progress.documents += docs;
        progress.chunks += chunks;
        progress.tokens += tokens;
        Ok(())
    }
}
