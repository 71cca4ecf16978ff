//! Conversions between the wire types (`quiver_proto::v1`) and storage types. Malformed wire
//! values (a missing oneof, an unknown enum) become INVALID_ARGUMENT here.

use crate::status::invalid;
use quiver_proto::v1 as pb;
use quiver_storage::{
    CollectionConfig, Condition, Durability, FieldType, Filter, IndexSpec, MatchValue, Metric,
    PointId, Range, Record,
};
use tonic::Status;

/// A wire id into a storage id.
pub fn point_id(id: Option<&pb::PointId>) -> Result<PointId, Status> {
    match id.and_then(|i| i.kind.as_ref()) {
        Some(pb::point_id::Kind::Num(n)) => Ok(PointId::Num(*n)),
        Some(pb::point_id::Kind::Text(s)) => Ok(PointId::Text(s.clone())),
        None => Err(invalid("point id is missing (set num or text)")),
    }
}

/// Wire ids into storage ids.
pub fn point_ids(ids: &[pb::PointId]) -> Result<Vec<PointId>, Status> {
    ids.iter().map(|i| point_id(Some(i))).collect()
}

/// A storage id onto the wire.
pub fn point_id_pb(id: &PointId) -> pb::PointId {
    let kind = match id {
        PointId::Num(n) => pb::point_id::Kind::Num(*n),
        PointId::Text(s) => pb::point_id::Kind::Text(s.clone()),
    };
    pb::PointId { kind: Some(kind) }
}

/// A stored record onto the wire.
pub fn record_pb(r: Record) -> pb::Record {
    pb::Record {
        id: Some(point_id_pb(&r.id)),
        vector: r.vector.unwrap_or_default(),
        payload_json: r.payload.map(|p| p.to_string()).unwrap_or_default(),
    }
}

/// A search hit onto the wire.
pub fn scored_pb(r: Record) -> pb::ScoredPoint {
    pb::ScoredPoint {
        id: Some(point_id_pb(&r.id)),
        score: r.score.unwrap_or_default(),
        payload_json: r.payload.map(|p| p.to_string()).unwrap_or_default(),
        vector: r.vector.unwrap_or_default(),
        dense_score: None,
        bm25_score: None,
    }
}

fn match_value(v: &pb::MatchValue) -> Result<MatchValue, Status> {
    match &v.kind {
        Some(pb::match_value::Kind::Keyword(s)) => Ok(MatchValue::Keyword(s.clone())),
        Some(pb::match_value::Kind::Integer(i)) => Ok(MatchValue::Integer(*i)),
        Some(pb::match_value::Kind::Boolean(b)) => Ok(MatchValue::Boolean(*b)),
        None => Err(invalid(
            "invalid filter: a match value has no keyword, integer or boolean",
        )),
    }
}

fn condition(c: &pb::Condition) -> Result<Condition, Status> {
    use pb::condition::Kind;
    use pb::field_condition::Test;
    match &c.kind {
        Some(Kind::Field(f)) => {
            let key = f.key.clone();
            match &f.test {
                Some(Test::Match(v)) => Ok(Condition::Match {
                    key,
                    value: match_value(v)?,
                }),
                Some(Test::MatchAny(a)) => Ok(Condition::MatchAny {
                    key,
                    values: a.values.iter().map(match_value).collect::<Result<_, _>>()?,
                }),
                Some(Test::Range(r)) => Ok(Condition::Range {
                    key,
                    range: Range {
                        gt: r.gt,
                        gte: r.gte,
                        lt: r.lt,
                        lte: r.lte,
                    },
                }),
                None => Err(invalid(format!(
                    "invalid filter: condition on '{}' has no match, match_any or range",
                    f.key
                ))),
            }
        }
        Some(Kind::HasId(h)) => Ok(Condition::HasId(point_ids(&h.ids)?)),
        Some(Kind::IsNull(n)) => Ok(Condition::IsNull { key: n.key.clone() }),
        Some(Kind::Filter(f)) => Ok(Condition::Nested(Box::new(filter(f)?))),
        None => Err(invalid("invalid filter: a condition is empty")),
    }
}

/// A wire filter into a storage filter (validated against limits later, by storage).
pub fn filter(f: &pb::Filter) -> Result<Filter, Status> {
    let list = |cs: &[pb::Condition]| cs.iter().map(condition).collect::<Result<Vec<_>, _>>();
    Ok(Filter {
        must: list(&f.must)?,
        should: list(&f.should)?,
        must_not: list(&f.must_not)?,
    })
}

/// An optional wire filter.
pub fn opt_filter(f: Option<&pb::Filter>) -> Result<Option<Filter>, Status> {
    f.map(filter).transpose()
}

/// A create request into collection settings.
pub fn collection_config(
    r: &pb::CreateCollectionRequest,
    default_threshold: usize,
) -> Result<CollectionConfig, Status> {
    let metric = match pb::Metric::try_from(r.metric) {
        Ok(pb::Metric::Cosine) => Metric::Cosine,
        Ok(pb::Metric::Dot) => Metric::Dot,
        Ok(pb::Metric::L2) => Metric::L2,
        Ok(pb::Metric::Unspecified) if !r.embedding_model.is_empty() => Metric::Cosine,
        Ok(pb::Metric::Unspecified) => {
            return Err(invalid("metric is required: cosine, dot or l2"));
        }
        Err(_) => return Err(invalid(format!("unknown metric {}", r.metric))),
    };
    let index = match r.index.as_ref().and_then(|i| i.kind.as_ref()) {
        None | Some(pb::index_spec::Kind::Flat(_)) => IndexSpec::Flat,
        Some(pb::index_spec::Kind::Hnsw(h)) => IndexSpec::Hnsw {
            m: if h.m == 0 { 16 } else { h.m as usize },
            ef_construction: if h.ef_construction == 0 {
                100
            } else {
                h.ef_construction as usize
            },
            quantize_int8: h.quantize_int8,
        },
        Some(pb::index_spec::Kind::IvfPq(p)) => IndexSpec::IvfPq {
            nlist: if p.nlist == 0 {
                DEFAULT_NLIST
            } else {
                p.nlist as usize
            },
            m: if p.m == 0 {
                default_pq_m(r.dim as usize)
            } else {
                p.m as usize
            },
            nbits: if p.nbits == 0 { 8 } else { p.nbits },
        },
    };
    let durability = match pb::Durability::try_from(r.durability) {
        Ok(pb::Durability::Unspecified | pb::Durability::Sync) => Durability::Sync,
        Ok(pb::Durability::Async) => Durability::Async,
        Err(_) => return Err(invalid(format!("unknown durability {}", r.durability))),
    };
    Ok(CollectionConfig {
        name: r.name.clone(),
        dim: r.dim as usize,
        metric,
        index,
        durability,
        flush_threshold: if r.flush_threshold == 0 {
            default_threshold
        } else {
            r.flush_threshold as usize
        },
        field_indexes: Vec::new(),
        embedding_model: (!r.embedding_model.is_empty()).then(|| r.embedding_model.clone()),
        bm25: Default::default(),
    })
}

/// IVF-PQ lists when a request says 0: about 80 points a list in a segment of the default
/// flush threshold (20,000), enough to train on (4 a list) from 1,024 points.
const DEFAULT_NLIST: usize = 256;

/// IVF-PQ sub-spaces when a request says 0: the largest divisor of `dim` up to 16 (16 bytes a
/// code at dimension 64 and above when it divides).
fn default_pq_m(dim: usize) -> usize {
    (1..=16.min(dim.max(1)))
        .rev()
        .find(|m| dim.is_multiple_of(*m))
        .unwrap_or(1)
}

/// A wire field type.
pub fn field_type(t: i32) -> Result<FieldType, Status> {
    match pb::FieldType::try_from(t) {
        Ok(pb::FieldType::Keyword) => Ok(FieldType::Keyword),
        Ok(pb::FieldType::Numeric) => Ok(FieldType::Numeric),
        Ok(pb::FieldType::Text) => Ok(FieldType::Text),
        _ => Err(invalid("field type must be keyword, numeric or text")),
    }
}

/// A text index's BM25 constants from the wire (`None`: the defaults; 0 means the default).
pub fn bm25_params(
    ty: FieldType,
    p: Option<&pb::TextIndexParams>,
) -> Result<Option<quiver_storage::text::Bm25Params>, Status> {
    let Some(p) = p else { return Ok(None) };
    if ty != FieldType::Text {
        return Err(invalid(
            "text index parameters apply to FIELD_TYPE_TEXT only",
        ));
    }
    let d = quiver_storage::text::Bm25Params::default();
    let pick = |v: f32, def: f32| if v == 0.0 { def } else { v };
    Ok(Some(quiver_storage::text::Bm25Params {
        k1: pick(p.k1, d.k1),
        b: pick(p.b, d.b),
    }))
}

/// Collection settings and statistics onto the wire.
pub fn collection_info(c: &quiver_storage::Collection) -> pb::CollectionInfo {
    let cfg = c.config();
    let st = c.stats();
    let metric = match cfg.metric {
        Metric::Cosine => pb::Metric::Cosine,
        Metric::Dot => pb::Metric::Dot,
        Metric::L2 => pb::Metric::L2,
    };
    let index = match cfg.index {
        IndexSpec::Flat => pb::index_spec::Kind::Flat(pb::FlatIndexSpec {}),
        IndexSpec::Hnsw {
            m,
            ef_construction,
            quantize_int8,
        } => pb::index_spec::Kind::Hnsw(pb::HnswIndexSpec {
            m: m as u32,
            ef_construction: ef_construction as u32,
            quantize_int8,
        }),
        IndexSpec::IvfPq { nlist, m, nbits } => pb::index_spec::Kind::IvfPq(pb::IvfPqIndexSpec {
            nlist: nlist as u32,
            m: m as u32,
            nbits,
        }),
    };
    let durability = match cfg.durability {
        Durability::Sync => pb::Durability::Sync,
        Durability::Async => pb::Durability::Async,
    };
    pb::CollectionInfo {
        name: cfg.name,
        dim: cfg.dim as u32,
        metric: metric as i32,
        index: Some(pb::IndexSpec { kind: Some(index) }),
        durability: durability as i32,
        flush_threshold: cfg.flush_threshold as u32,
        points: st.points,
        segments: st.segments as u32,
        disk_bytes: st.disk_bytes,
        indexed_fraction: st.indexed_fraction,
        field_indexes: cfg
            .field_indexes
            .iter()
            .map(|(f, t)| pb::FieldIndexInfo {
                field: f.clone(),
                r#type: match t {
                    FieldType::Keyword => pb::FieldType::Keyword as i32,
                    FieldType::Numeric => pb::FieldType::Numeric as i32,
                    FieldType::Text => pb::FieldType::Text as i32,
                },
                text: (*t == FieldType::Text).then(|| {
                    let p = cfg.bm25.get(f).copied().unwrap_or_default();
                    pb::TextIndexParams { k1: p.k1, b: p.b }
                }),
            })
            .collect(),
        unflushed_points: st.unflushed_points,
        index_memory_bytes: st.index_memory_bytes,
        embedding_model: cfg.embedding_model.unwrap_or_default(),
        exact_segments: st.exact_segments as u32,
        indexed_segments: st.indexed_segments as u32,
        building_segments: st.building_segments as u32,
    }
}
