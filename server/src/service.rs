//! The gRPC services `quiver.v1.Collections` and `quiver.v1.Points`. Each handler converts the
//! request, runs the storage call on the blocking pool, and maps errors with `status::to_status`.

use crate::convert;
use crate::metrics::Metrics;
use crate::status::{invalid, to_status};
use quiver_proto::v1 as pb;
use quiver_proto::v1::collections_server::Collections;
use quiver_proto::v1::points_server::Points;
use quiver_storage::{Collection, SearchRequest, Storage, StorageError};
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// State shared by both services.
#[derive(Clone)]
pub struct Service {
    /// The storage engine.
    pub storage: Arc<Storage>,
    /// Request metrics.
    pub metrics: Arc<Metrics>,
    /// Default flush threshold for new collections.
    pub flush_threshold: usize,
    /// The embedding worker, or why it is not running (a message naming the fix).
    pub embed: Result<Arc<crate::embed::EmbedWorker>, String>,
    /// Longest a request waits for room in a model's queue.
    pub request_timeout: std::time::Duration,
    /// The generation model and its queue.
    pub generation: Arc<crate::rag::GenSlot>,
}

/// Runs a storage call on the blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Status::internal(format!("storage task failed: {e}")))?
        .map_err(to_status)
}

impl Service {
    pub(crate) fn collection(&self, name: &str) -> Result<Arc<Collection>, Status> {
        if name.is_empty() {
            return Err(invalid("collection name is empty"));
        }
        self.storage.collection(name).map_err(to_status)
    }
}

#[tonic::async_trait]
impl Collections for Service {
    async fn create(
        &self,
        req: Request<pb::CreateCollectionRequest>,
    ) -> Result<Response<pb::CollectionInfo>, Status> {
        self.metrics
            .observe("Collections/Create", async {
                let mut cfg = convert::collection_config(req.get_ref(), self.flush_threshold)?;
                if let Some(model) = &cfg.embedding_model {
                    let w = self.embedder()?;
                    let (name, dim) = (w.model().name(), w.model().dim());
                    if model != name {
                        return Err(Status::failed_precondition(format!(
                            "embedding model {model:?} is not available; this server runs {name:?}"
                        )));
                    }
                    if cfg.dim == 0 {
                        cfg.dim = dim;
                    } else if cfg.dim != dim {
                        return Err(invalid(format!(
                            "dim {} does not match embedding model {name} ({dim}); leave dim at 0",
                            cfg.dim
                        )));
                    }
                }
                let storage = self.storage.clone();
                let c = blocking(move || {
                    let text = cfg.embedding_model.is_some();
                    let c = storage.create_collection(cfg)?;
                    if text {
                        use quiver_storage::FieldType;
                        storage.create_field_index(
                            &c,
                            crate::documents::DOC_ID_FIELD,
                            FieldType::Keyword,
                            None,
                        )?;
                    }
                    Ok(c)
                })
                .await?;
                Ok(Response::new(convert::collection_info(&c)))
            })
            .await
    }

    async fn drop(
        &self,
        req: Request<pb::DropCollectionRequest>,
    ) -> Result<Response<pb::DropCollectionResponse>, Status> {
        self.metrics
            .observe("Collections/Drop", async {
                let name = req.into_inner().name;
                if name.is_empty() {
                    return Err(invalid("collection name is empty"));
                }
                let storage = self.storage.clone();
                blocking(move || storage.drop_collection(&name)).await?;
                Ok(Response::new(pb::DropCollectionResponse {}))
            })
            .await
    }

    async fn list(
        &self,
        _req: Request<pb::ListCollectionsRequest>,
    ) -> Result<Response<pb::ListCollectionsResponse>, Status> {
        self.metrics
            .observe("Collections/List", async {
                let collections = self
                    .storage
                    .collections()
                    .iter()
                    .map(|c| convert::collection_info(c))
                    .collect();
                Ok(Response::new(pb::ListCollectionsResponse { collections }))
            })
            .await
    }

    async fn describe(
        &self,
        req: Request<pb::DescribeCollectionRequest>,
    ) -> Result<Response<pb::CollectionInfo>, Status> {
        self.metrics
            .observe("Collections/Describe", async {
                let c = self.collection(&req.get_ref().name)?;
                Ok(Response::new(convert::collection_info(&c)))
            })
            .await
    }

    async fn create_field_index(
        &self,
        req: Request<pb::CreateFieldIndexRequest>,
    ) -> Result<Response<pb::CollectionInfo>, Status> {
        self.metrics
            .observe("Collections/CreateFieldIndex", async {
                let r = req.into_inner();
                let c = self.collection(&r.collection)?;
                let ty = convert::field_type(r.r#type)?;
                let bm25 = convert::bm25_params(ty, r.text.as_ref())?;
                let (storage, c2) = (self.storage.clone(), c.clone());
                blocking(move || storage.create_field_index(&c2, &r.field, ty, bm25)).await?;
                Ok(Response::new(convert::collection_info(&c)))
            })
            .await
    }

    async fn flush(
        &self,
        req: Request<pb::FlushRequest>,
    ) -> Result<Response<pb::CollectionInfo>, Status> {
        self.metrics
            .observe("Collections/Flush", async {
                let c = self.collection(&req.get_ref().name)?;
                let (storage, c2) = (self.storage.clone(), c.clone());
                blocking(move || storage.flush(&c2)).await?;
                Ok(Response::new(convert::collection_info(&c)))
            })
            .await
    }

    async fn compact(
        &self,
        req: Request<pb::CompactRequest>,
    ) -> Result<Response<pb::CollectionInfo>, Status> {
        self.metrics
            .observe("Collections/Compact", async {
                let c = self.collection(&req.get_ref().name)?;
                let (storage, c2) = (self.storage.clone(), c.clone());
                blocking(move || storage.compact(&c2)).await?;
                Ok(Response::new(convert::collection_info(&c)))
            })
            .await
    }

    type CreateSnapshotStream = crate::snapshots::ChunkStream;

    async fn create_snapshot(
        &self,
        req: Request<pb::CreateSnapshotRequest>,
    ) -> Result<Response<Self::CreateSnapshotStream>, Status> {
        self.metrics
            .observe(
                "Collections/CreateSnapshot",
                crate::snapshots::create(self, req.into_inner()),
            )
            .await
    }

    async fn restore_snapshot(
        &self,
        req: Request<tonic::Streaming<pb::RestoreSnapshotChunk>>,
    ) -> Result<Response<pb::CollectionInfo>, Status> {
        self.metrics
            .observe(
                "Collections/RestoreSnapshot",
                crate::snapshots::restore(self, req.into_inner()),
            )
            .await
    }
}

/// Sets its flag when dropped: work on the blocking pool checks it and stops once the request
/// it serves is gone.
#[derive(Default)]
struct CancelOnDrop(Arc<std::sync::atomic::AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// An owned search, movable to the blocking pool.
pub(crate) struct OwnedSearch {
    vector: Vec<f32>,
    k: usize,
    filter: Option<quiver_storage::Filter>,
    exact: bool,
    ef: Option<usize>,
    nprobe: Option<usize>,
    rerank: Option<usize>,
    with_payload: bool,
    with_vector: bool,
}

/// Largest search beam a request may ask for.
const MAX_EF: u32 = 4096;
/// Most IVF-PQ lists a request may probe (the most a collection may have).
const MAX_NPROBE: u32 = quiver_storage::types::MAX_NLIST as u32;
/// Most IVF-PQ candidates a request may re-rank.
const MAX_RERANK: u32 = 10_000;

impl OwnedSearch {
    pub(crate) fn from_pb(r: pb::SearchRequest) -> Result<OwnedSearch, Status> {
        let ef = r.params.as_ref().map_or(0, |p| p.ef);
        if ef > MAX_EF {
            return Err(invalid(format!(
                "ef {ef} is out of range (0 for the default, up to {MAX_EF})"
            )));
        }
        // nprobe and rerank are checked whatever the index, and ignored by collections
        // without an ivf_pq index (as ef is by those without hnsw).
        let nprobe = r.params.as_ref().map_or(0, |p| p.nprobe);
        if nprobe > MAX_NPROBE {
            return Err(invalid(format!(
                "nprobe {nprobe} is out of range (0 for the default, up to {MAX_NPROBE})"
            )));
        }
        if r.rerank > MAX_RERANK {
            return Err(invalid(format!(
                "rerank {} is out of range (0 for the default, up to {MAX_RERANK})",
                r.rerank
            )));
        }
        Ok(OwnedSearch {
            ef: (ef > 0).then_some(ef as usize),
            nprobe: (nprobe > 0).then_some(nprobe as usize),
            rerank: (r.rerank > 0).then_some(r.rerank as usize),
            filter: convert::opt_filter(r.filter.as_ref())?,
            vector: r.vector,
            k: r.k as usize,
            exact: r.exact,
            with_payload: r.with_payload,
            with_vector: r.with_vector,
        })
    }

    /// Sets the number of results.
    pub(crate) fn set_k(&mut self, k: usize) {
        self.k = k;
    }

    pub(crate) fn borrow(&self) -> SearchRequest<'_> {
        SearchRequest {
            vector: &self.vector,
            k: self.k,
            filter: self.filter.as_ref(),
            exact: self.exact,
            ef: self.ef,
            nprobe: self.nprobe,
            rerank: self.rerank,
            with_payload: self.with_payload,
            with_vector: self.with_vector,
        }
    }
}

#[tonic::async_trait]
impl Points for Service {
    async fn upsert(
        &self,
        req: Request<pb::UpsertRequest>,
    ) -> Result<Response<pb::WriteResponse>, Status> {
        self.metrics
            .observe("Points/Upsert", async {
                let r = req.into_inner();
                let c = self.collection(&r.collection)?;
                let points = r
                    .points
                    .into_iter()
                    .map(|p| {
                        let id = convert::point_id(p.id.as_ref())?;
                        Ok((id, p.vector, Some(p.payload_json)))
                    })
                    .collect::<Result<Vec<_>, Status>>()?;
                let storage = self.storage.clone();
                let out = blocking(move || {
                    let batch = c.prepare_upsert(points)?;
                    storage.upsert(&c, batch)
                })
                .await?;
                Ok(Response::new(pb::WriteResponse {
                    seq: out.seq.0,
                    affected: out.affected,
                }))
            })
            .await
    }

    async fn delete(
        &self,
        req: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::WriteResponse>, Status> {
        self.metrics
            .observe("Points/Delete", async {
                let r = req.into_inner();
                let c = self.collection(&r.collection)?;
                let storage = self.storage.clone();
                let out = match r.selector {
                    Some(pb::delete_request::Selector::Ids(list)) => {
                        let ids = convert::point_ids(&list.ids)?;
                        blocking(move || {
                            c.check_ids(&ids)?;
                            storage.delete(&c, ids)
                        })
                        .await?
                    }
                    Some(pb::delete_request::Selector::Filter(f)) => {
                        let f = convert::filter(&f)?;
                        blocking(move || {
                            let ids = c.matching_ids(&f)?;
                            storage.delete(&c, ids)
                        })
                        .await?
                    }
                    None => return Err(invalid("delete needs ids or a filter")),
                };
                Ok(Response::new(pb::WriteResponse {
                    seq: out.seq.0,
                    affected: out.affected,
                }))
            })
            .await
    }

    async fn get(&self, req: Request<pb::GetRequest>) -> Result<Response<pb::GetResponse>, Status> {
        self.metrics
            .observe("Points/Get", async {
                let r = req.into_inner();
                let c = self.collection(&r.collection)?;
                let ids = convert::point_ids(&r.ids)?;
                let records = blocking(move || c.get(&ids, r.with_vector, r.with_payload)).await?;
                Ok(Response::new(pb::GetResponse {
                    records: records.into_iter().map(convert::record_pb).collect(),
                }))
            })
            .await
    }

    async fn search(
        &self,
        req: Request<pb::SearchRequest>,
    ) -> Result<Response<pb::SearchResponse>, Status> {
        self.metrics
            .observe("Points/Search", async {
                let r = req.into_inner();
                let c = self.collection(&r.collection)?;
                let s = OwnedSearch::from_pb(r)?;
                let hits = blocking(move || c.search(&s.borrow())).await?;
                Ok(Response::new(pb::SearchResponse {
                    hits: hits.into_iter().map(convert::scored_pb).collect(),
                }))
            })
            .await
    }

    async fn search_batch(
        &self,
        req: Request<pb::SearchBatchRequest>,
    ) -> Result<Response<pb::SearchBatchResponse>, Status> {
        self.metrics
            .observe("Points/SearchBatch", async {
                let r = req.into_inner();
                let c = self.collection(&r.collection)?;
                let limit = self.storage.limits().max_batch;
                if r.searches.len() > limit {
                    return Err(to_status(StorageError::BatchTooLarge {
                        size: r.searches.len(),
                        limit,
                    }));
                }
                if r.searches.is_empty() {
                    return Err(to_status(StorageError::Empty {
                        what: "search batch",
                    }));
                }
                let searches = r
                    .searches
                    .into_iter()
                    .map(OwnedSearch::from_pb)
                    .collect::<Result<Vec<_>, _>>()?;
                // Dropped when the request is (deadline, client gone): the batch then stops.
                let cancel = CancelOnDrop::default();
                let flag = cancel.0.clone();
                let results = blocking(move || {
                    let borrowed: Vec<_> = searches.iter().map(OwnedSearch::borrow).collect();
                    c.search_batch_until(&borrowed, &flag)
                })
                .await?;
                drop(cancel);
                Ok(Response::new(pb::SearchBatchResponse {
                    results: results
                        .into_iter()
                        .map(|hits| pb::SearchResponse {
                            hits: hits.into_iter().map(convert::scored_pb).collect(),
                        })
                        .collect(),
                }))
            })
            .await
    }

    async fn scroll(
        &self,
        req: Request<pb::ScrollRequest>,
    ) -> Result<Response<pb::ScrollResponse>, Status> {
        self.metrics
            .observe("Points/Scroll", async {
                let r = req.into_inner();
                let c = self.collection(&r.collection)?;
                let filter = convert::opt_filter(r.filter.as_ref())?;
                let offset = r
                    .offset
                    .as_ref()
                    .map(|o| convert::point_id(Some(o)))
                    .transpose()?;
                let limit = if r.limit == 0 { 100 } else { r.limit as usize };
                let (records, next) = blocking(move || {
                    c.scroll(
                        filter.as_ref(),
                        offset.as_ref(),
                        limit,
                        r.with_vector,
                        r.with_payload,
                    )
                })
                .await?;
                Ok(Response::new(pb::ScrollResponse {
                    records: records.into_iter().map(convert::record_pb).collect(),
                    next_offset: next.as_ref().map(convert::point_id_pb),
                }))
            })
            .await
    }

    async fn count(
        &self,
        req: Request<pb::CountRequest>,
    ) -> Result<Response<pb::CountResponse>, Status> {
        self.metrics
            .observe("Points/Count", async {
                let r = req.into_inner();
                let c = self.collection(&r.collection)?;
                let filter = convert::opt_filter(r.filter.as_ref())?;
                let count = blocking(move || c.count(filter.as_ref())).await?;
                Ok(Response::new(pb::CountResponse { count }))
            })
            .await
    }
}
