//! Filter conversion: any bytes decoded as a wire filter either convert and validate, or are
//! refused cleanly; a valid filter gives the same answer through the payload index (bitmaps)
//! as point by point.
#![no_main]
use libfuzzer_sys::fuzz_target;
use prost::Message;
use quiver_proto::v1 as pb;
use quiver_storage::payload_index::PayloadIndex;
use quiver_storage::{FieldType, Limits, PointId};
use serde_json::json;

fuzz_target!(|data: &[u8]| {
    let Ok(wire) = pb::Filter::decode(data) else { return };
    let Ok(filter) = quiver_server::convert::filter(&wire) else { return };
    if filter.validate(&Limits::default()).is_err() {
        return;
    }
    let payloads = [
        json!({"a": "x", "n": 1.5, "t": ["x", "y"], "b": true}),
        json!({"a": "y", "n": -3, "t": [], "b": false}),
        json!({"a": 7, "n": null}),
        json!({}),
        json!({"a": {"b": "x"}, "n": [1, 2, 3]}),
    ];
    let fields = vec![
        ("a".to_string(), FieldType::Keyword),
        ("t".to_string(), FieldType::Keyword),
        ("b".to_string(), FieldType::Keyword),
        ("a.b".to_string(), FieldType::Keyword),
        ("n".to_string(), FieldType::Numeric),
    ];
    let mut index = PayloadIndex::new(&fields);
    for (i, p) in payloads.iter().enumerate() {
        index.add_point(i as u32, p);
    }
    let ids: Vec<PointId> = (0..payloads.len() as u64).map(PointId::Num).collect();
    let point_by_point: Vec<bool> = ids.iter().zip(&payloads).map(|(id, p)| filter.matches(id, p)).collect();
    if index.can_serve(&filter) {
        let has_id = |id: &PointId| ids.iter().position(|x| x == id).map(|p| p as u32);
        let bm = index.filter_bitmap(&filter, payloads.len() as u32, &has_id);
        for (i, want) in point_by_point.iter().enumerate() {
            assert_eq!(bm.contains(i as u32), *want, "bitmap and point evaluation disagree on point {i}");
        }
    }
});
