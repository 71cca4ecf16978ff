//! `quiver collection …`: create (flat, hnsw or ivf-pq), list, describe, index a field, flush,
//! compact, drop; and the settings-and-statistics view every one of them prints.

use super::table;
use clap::{Subcommand, ValueEnum};
use quiver_client::{Client, pb};
use serde_json::{Value, json};

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum MetricArg {
    Cosine,
    Dot,
    L2,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum IndexArg {
    Flat,
    Hnsw,
    /// IVF-PQ (`--nlist`, `--pq-m`).
    IvfPq,
}

/// How an HNSW index encodes the vectors it walks.
#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum QuantizeArg {
    /// The f32 vectors themselves.
    None,
    /// One byte per dimension; the final candidates re-ranked on the f32 vectors.
    Int8,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum DurabilityArg {
    Sync,
    Async,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum FieldTypeArg {
    Keyword,
    Numeric,
    /// Full text for BM25 and hybrid search.
    Text,
}

#[derive(Subcommand)]
pub(crate) enum CollectionCmd {
    /// Create a collection.
    Create {
        name: String,
        /// Vector dimension (may be left out with --model).
        #[arg(long, default_value_t = 0)]
        dim: u32,
        /// Embedding model for documents and text search (e.g. all-minilm-l6-v2).
        #[arg(long)]
        model: Option<String>,
        /// Also index the chunk text (payload field "text") for BM25 and hybrid search (the same
        /// as `collection index NAME text --type text` afterwards).
        #[arg(long)]
        text_index: bool,
        #[arg(long, value_enum, default_value = "cosine")]
        metric: MetricArg,
        #[arg(long, value_enum, default_value = "sync")]
        durability: DurabilityArg,
        /// Points in the mutable segment before a flush (0: server default).
        #[arg(long, default_value_t = 0)]
        flush_threshold: u32,
        /// Index of immutable segments.
        #[arg(long, value_enum, default_value = "flat")]
        index: IndexArg,
        /// HNSW links per node (0: default 16).
        #[arg(long, default_value_t = 0)]
        m: u32,
        /// HNSW build beam (0: default 100).
        #[arg(long, default_value_t = 0)]
        ef_construction: u32,
        /// HNSW: walk 8-bit codes of the vectors, re-ranking the final candidates exactly.
        #[arg(long, value_enum, default_value = "none")]
        quantize: QuantizeArg,
        /// IVF-PQ inverted lists (0: default 256). Segments under 4 points a list (at least
        /// 256) are searched exactly.
        #[arg(long, default_value_t = 0)]
        nlist: u32,
        /// IVF-PQ sub-spaces, bytes per code; divides --dim (0: the largest divisor up to 16).
        #[arg(long, default_value_t = 0)]
        pq_m: u32,
    },
    /// List collections.
    List,
    /// Show a collection's settings and statistics.
    Describe { name: String },
    /// Index a payload field for filters.
    Index {
        name: String,
        field: String,
        #[arg(long = "type", value_enum)]
        field_type: FieldTypeArg,
        /// Text: BM25's term-frequency saturation (0: 1.2).
        #[arg(long, default_value_t = 0.0)]
        k1: f32,
        /// Text: BM25's length normalisation, 0 to 1 (0: 0.75).
        #[arg(long, default_value_t = 0.0)]
        b: f32,
    },
    /// Write the mutable segment to segment files now.
    Flush { name: String },
    /// Merge segments and drop deleted points now.
    Compact { name: String },
    /// Drop a collection and all its data.
    Drop { name: String },
}

pub(crate) fn metric_name(m: i32) -> &'static str {
    match pb::Metric::try_from(m) {
        Ok(pb::Metric::Cosine) => "cosine",
        Ok(pb::Metric::Dot) => "dot",
        Ok(pb::Metric::L2) => "l2",
        _ => "?",
    }
}

/// One word for where the collection's index stands: `flat` (no index), `building` (a flush
/// or compaction is building a segment's index), `pending` (points not yet in any indexed
/// segment, searched exactly) or `ready`.
fn index_state(c: &pb::CollectionInfo) -> &'static str {
    match c.index.as_ref().and_then(|i| i.kind.as_ref()) {
        None | Some(pb::index_spec::Kind::Flat(_)) => "flat",
        _ if c.building_segments > 0 => "building",
        _ if c.unflushed_points > 0 => "pending",
        _ => "ready",
    }
}

fn field_json(f: &pb::FieldIndexInfo) -> Value {
    let ty = match pb::FieldType::try_from(f.r#type) {
        Ok(pb::FieldType::Numeric) => "numeric",
        Ok(pb::FieldType::Text) => "text",
        _ => "keyword",
    };
    match &f.text {
        Some(t) => json!({"field": f.field, "type": ty, "k1": t.k1, "b": t.b}),
        None => json!({"field": f.field, "type": ty}),
    }
}

fn info_json(c: &pb::CollectionInfo) -> Value {
    json!({
        "name": c.name, "dim": c.dim, "metric": metric_name(c.metric),
        "durability": if c.durability == pb::Durability::Async as i32 { "async" } else { "sync" },
        "flush_threshold": c.flush_threshold, "points": c.points, "segments": c.segments,
        "disk_bytes": c.disk_bytes, "indexed_fraction": c.indexed_fraction,
        "unflushed_points": c.unflushed_points,
        "index_memory_bytes": c.index_memory_bytes,
        "exact_segments": c.exact_segments,
        "indexed_segments": c.indexed_segments,
        "building_segments": c.building_segments,
        "index_state": index_state(c),
        "embedding_model": c.embedding_model,
        "index": match c.index.as_ref().and_then(|i| i.kind.as_ref()) {
            Some(pb::index_spec::Kind::Hnsw(h)) => json!({"hnsw": {"m": h.m, "ef_construction": h.ef_construction, "quantize_int8": h.quantize_int8}}),
            Some(pb::index_spec::Kind::IvfPq(p)) => json!({"ivf_pq": {"nlist": p.nlist, "m": p.m, "nbits": p.nbits}}),
            _ => json!("flat"),
        },
        "field_indexes": c.field_indexes.iter().map(field_json).collect::<Vec<_>>(),
    })
}

pub(crate) fn print_info(c: &pb::CollectionInfo, as_json: bool) {
    let v = info_json(c);
    if as_json {
        println!("{v}");
        return;
    }
    let rows = v
        .as_object()
        .expect("object")
        .iter()
        .map(|(k, v)| {
            vec![
                k.clone(),
                match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                },
            ]
        })
        .collect();
    table(&["field", "value"], rows);
}

pub(crate) async fn collection(
    client: &mut Client,
    cmd: CollectionCmd,
    as_json: bool,
) -> anyhow::Result<()> {
    match cmd {
        CollectionCmd::Create {
            name,
            dim,
            model,
            text_index,
            metric,
            durability,
            flush_threshold,
            index,
            m,
            ef_construction,
            quantize,
            nlist,
            pq_m,
        } => {
            let index = match index {
                IndexArg::Flat => pb::index_spec::Kind::Flat(pb::FlatIndexSpec {}),
                IndexArg::Hnsw => pb::index_spec::Kind::Hnsw(pb::HnswIndexSpec {
                    m,
                    ef_construction,
                    quantize_int8: matches!(quantize, QuantizeArg::Int8),
                }),
                IndexArg::IvfPq => pb::index_spec::Kind::IvfPq(pb::IvfPqIndexSpec {
                    nlist,
                    m: pq_m,
                    nbits: 0,
                }),
            };
            let metric = match metric {
                MetricArg::Cosine => pb::Metric::Cosine,
                MetricArg::Dot => pb::Metric::Dot,
                MetricArg::L2 => pb::Metric::L2,
            };
            let durability = match durability {
                DurabilityArg::Sync => pb::Durability::Sync,
                DurabilityArg::Async => pb::Durability::Async,
            };
            let req = pb::CreateCollectionRequest {
                name,
                dim,
                metric: metric as i32,
                index: Some(pb::IndexSpec { kind: Some(index) }),
                durability: durability as i32,
                flush_threshold,
                embedding_model: model.unwrap_or_default(),
            };
            let mut info = client.collections.create(req).await?.into_inner();
            if text_index {
                let req = pb::CreateFieldIndexRequest {
                    collection: info.name.clone(),
                    field: "text".into(),
                    r#type: pb::FieldType::Text as i32,
                    text: None,
                };
                info = client
                    .collections
                    .create_field_index(req)
                    .await?
                    .into_inner();
            }
            print_info(&info, as_json);
        }
        CollectionCmd::List => {
            let list = client
                .collections
                .list(pb::ListCollectionsRequest {})
                .await?
                .into_inner()
                .collections;
            if as_json {
                println!("{}", Value::Array(list.iter().map(info_json).collect()));
            } else {
                let rows = list
                    .iter()
                    .map(|c| {
                        vec![
                            c.name.clone(),
                            c.dim.to_string(),
                            metric_name(c.metric).into(),
                            c.points.to_string(),
                            c.segments.to_string(),
                        ]
                    })
                    .collect();
                table(&["name", "dim", "metric", "points", "segments"], rows);
            }
        }
        CollectionCmd::Describe { name } => print_info(&client.describe(&name).await?, as_json),
        CollectionCmd::Index {
            name,
            field,
            field_type,
            k1,
            b,
        } => {
            let t = match field_type {
                FieldTypeArg::Keyword => pb::FieldType::Keyword,
                FieldTypeArg::Numeric => pb::FieldType::Numeric,
                FieldTypeArg::Text => pb::FieldType::Text,
            };
            let req = pb::CreateFieldIndexRequest {
                collection: name,
                field,
                r#type: t as i32,
                text: (k1 != 0.0 || b != 0.0).then_some(pb::TextIndexParams { k1, b }),
            };
            print_info(
                &client
                    .collections
                    .create_field_index(req)
                    .await?
                    .into_inner(),
                as_json,
            );
        }
        CollectionCmd::Flush { name } => print_info(
            &client
                .collections
                .flush(pb::FlushRequest { name })
                .await?
                .into_inner(),
            as_json,
        ),
        CollectionCmd::Compact { name } => print_info(
            &client
                .collections
                .compact(pb::CompactRequest { name })
                .await?
                .into_inner(),
            as_json,
        ),
        CollectionCmd::Drop { name } => {
            client
                .collections
                .drop(pb::DropCollectionRequest { name: name.clone() })
                .await?;
            if as_json {
                println!("{}", json!({"dropped": name}))
            } else {
                println!("dropped {name}")
            }
        }
    }
    Ok(())
}
