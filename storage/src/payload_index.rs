//! Per-segment payload indexes: a roaring bitmap of offsets per keyword value, and numbers kept
//! sorted (a B-tree of value → bitmap) for ranges. Built in memory from payloads when a segment
//! is opened or a field index is created; the payloads themselves live in RocksDB.
//!
//! [`PayloadIndex::filter_bitmap`] turns a filter into the bitmap of matching offsets when every
//! field the filter reads is indexed with a type that serves it ([`PayloadIndex::can_serve`]);
//! otherwise the caller evaluates the filter point by point.

use crate::filter::{Condition, Filter, keyword_key, value_key, values_at};
use crate::text::{MemText, TextIndex};
use crate::types::{FieldType, PointId};
use roaring::RoaringBitmap;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};

/// Maps an f64 to a u64 whose unsigned order is the float's order.
fn ordered_bits(x: f64) -> u64 {
    let b = x.to_bits();
    if b >> 63 == 1 { !b } else { b | (1 << 63) }
}

fn from_ordered_bits(b: u64) -> f64 {
    f64::from_bits(if b >> 63 == 1 { b & !(1 << 63) } else { !b })
}

#[derive(Debug, Clone)]
enum Values {
    Keyword(HashMap<String, RoaringBitmap>),
    Numeric(BTreeMap<u64, RoaringBitmap>),
}

/// The index of one payload field inside one segment.
#[derive(Debug, Clone)]
pub struct FieldIndex {
    values: Values,
    /// Offsets where the field holds at least one non-null value.
    present: RoaringBitmap,
}

impl FieldIndex {
    fn new(ty: FieldType) -> Self {
        let values = match ty {
            FieldType::Keyword => Values::Keyword(HashMap::new()),
            FieldType::Numeric => Values::Numeric(BTreeMap::new()),
            FieldType::Text => unreachable!("text fields are kept in PayloadIndex::text"),
        };
        FieldIndex {
            values,
            present: RoaringBitmap::new(),
        }
    }

    fn add(&mut self, offset: u32, key: &str, payload: &Value) {
        for v in values_at(payload, key) {
            self.present.insert(offset);
            match &mut self.values {
                Values::Keyword(map) => {
                    if let Some(k) = value_key(v) {
                        map.entry(k).or_default().insert(offset);
                    }
                }
                Values::Numeric(map) => {
                    if let Some(x) = v.as_f64() {
                        map.entry(ordered_bits(x)).or_default().insert(offset);
                    }
                }
            }
        }
    }
}

/// Adds a point's strings at `key` (a string, or the strings of an array) to a text index still
/// in memory; a frozen one is complete already.
fn add_text(t: &mut TextIndex, offset: u32, key: &str, payload: &Value) {
    if let TextIndex::Mem(m) = t {
        for v in values_at(payload, key) {
            if let Some(s) = v.as_str() {
                m.add(offset, s);
            }
        }
    }
}

/// All indexed fields of one segment.
#[derive(Debug, Clone, Default)]
pub struct PayloadIndex {
    fields: HashMap<String, FieldIndex>,
    /// Full-text fields: an inverted index each (`crate::text`).
    text: BTreeMap<String, TextIndex>,
}

impl PayloadIndex {
    /// An empty index over these fields.
    pub fn new(fields: &[(String, FieldType)]) -> Self {
        let mut idx = PayloadIndex::default();
        for (k, t) in fields {
            idx.add_field(k, *t);
        }
        idx
    }

    /// True if no field is indexed.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty() && self.text.is_empty()
    }

    /// True if some index still needs the payloads of the segment's points to be filled
    /// (keyword and numeric indexes always do; a text index unless read from its file).
    pub fn needs_payloads(&self) -> bool {
        !self.fields.is_empty() || self.text.values().any(|t| matches!(t, TextIndex::Mem(_)))
    }

    /// Adds an empty index for a field (fill it with [`PayloadIndex::add_point`]).
    pub fn add_field(&mut self, key: &str, ty: FieldType) {
        match ty {
            FieldType::Text => {
                self.text.insert(key.to_string(), TextIndex::default());
            }
            FieldType::Keyword | FieldType::Numeric => {
                self.fields.insert(key.to_string(), FieldIndex::new(ty));
            }
        }
    }

    /// Indexes every indexed field of the point at `offset`.
    pub fn add_point(&mut self, offset: u32, payload: &Value) {
        for (key, f) in &mut self.fields {
            f.add(offset, key, payload);
        }
        for (key, t) in &mut self.text {
            add_text(t, offset, key, payload);
        }
    }

    /// Indexes one field of the point at `offset`.
    pub fn add_point_field(&mut self, key: &str, offset: u32, payload: &Value) {
        if let Some(f) = self.fields.get_mut(key) {
            f.add(offset, key, payload);
        }
        if let Some(t) = self.text.get_mut(key) {
            add_text(t, offset, key, payload);
        }
    }

    /// The text index of `field`, if it is text-indexed.
    pub fn text(&self, field: &str) -> Option<&TextIndex> {
        self.text.get(field)
    }

    /// Text indexes still in memory, to be written to files once the segment is sealed.
    pub fn mem_texts(&self) -> impl Iterator<Item = (&str, &MemText)> {
        self.text.iter().filter_map(|(k, t)| match t {
            TextIndex::Mem(m) => Some((k.as_str(), m)),
            TextIndex::Frozen(_) => None,
        })
    }

    /// Replaces a field's text index (with its frozen form).
    pub fn set_text(&mut self, field: &str, index: TextIndex) {
        self.text.insert(field.to_string(), index);
    }

    /// Bytes held by the text indexes (heap, or mapped files).
    pub fn text_memory_bytes(&self) -> usize {
        self.text.values().map(TextIndex::memory_bytes).sum()
    }

    /// Bytes of the text index files (the frozen indexes).
    pub fn text_file_bytes(&self) -> u64 {
        self.text
            .values()
            .map(|t| match t {
                TextIndex::Frozen(f) => f.file_bytes() as u64,
                TextIndex::Mem(_) => 0,
            })
            .sum()
    }

    fn serves(&self, c: &Condition) -> bool {
        let kind = |key: &str| self.fields.get(key).map(|f| &f.values);
        match c {
            Condition::Match { key, .. } | Condition::MatchAny { key, .. } => {
                matches!(kind(key), Some(Values::Keyword(_)))
            }
            Condition::Range { key, .. } => matches!(kind(key), Some(Values::Numeric(_))),
            Condition::IsNull { key } => kind(key).is_some(),
            Condition::HasId(_) => true,
            Condition::Nested(f) => self.can_serve(f),
        }
    }

    /// True if every condition of `filter` can be answered from this index alone.
    pub fn can_serve(&self, filter: &Filter) -> bool {
        let mut ok = true;
        filter.visit_leaves(&mut |c| ok &= self.serves(c));
        ok
    }

    /// The offsets in `0..len` that match `filter`; `has_id` finds an id's live offset here.
    /// Only call when [`PayloadIndex::can_serve`] is true.
    pub fn filter_bitmap(
        &self,
        filter: &Filter,
        len: u32,
        has_id: &dyn Fn(&PointId) -> Option<u32>,
    ) -> RoaringBitmap {
        let universe = || {
            let mut b = RoaringBitmap::new();
            b.insert_range(0..len);
            b
        };
        let mut acc = universe();
        for c in &filter.must {
            acc &= self.condition_bitmap(c, len, has_id);
        }
        if !filter.should.is_empty() {
            let mut any = RoaringBitmap::new();
            for c in &filter.should {
                any |= self.condition_bitmap(c, len, has_id);
            }
            acc &= any;
        }
        for c in &filter.must_not {
            acc -= self.condition_bitmap(c, len, has_id);
        }
        acc
    }

    fn condition_bitmap(
        &self,
        c: &Condition,
        len: u32,
        has_id: &dyn Fn(&PointId) -> Option<u32>,
    ) -> RoaringBitmap {
        let field = |key: &str| self.fields.get(key).expect("can_serve checked the field");
        match c {
            Condition::Match { key, value } => match &field(key).values {
                Values::Keyword(map) => map.get(&keyword_key(value)).cloned().unwrap_or_default(),
                Values::Numeric(_) => unreachable!("can_serve checked the type"),
            },
            Condition::MatchAny { key, values } => match &field(key).values {
                Values::Keyword(map) => values
                    .iter()
                    .filter_map(|v| map.get(&keyword_key(v)))
                    .fold(RoaringBitmap::new(), |a, b| a | b),
                Values::Numeric(_) => unreachable!("can_serve checked the type"),
            },
            Condition::Range { key, range } => match &field(key).values {
                Values::Numeric(map) => {
                    let lo = range
                        .gt
                        .into_iter()
                        .chain(range.gte)
                        .fold(f64::NEG_INFINITY, f64::max);
                    let hi = range
                        .lt
                        .into_iter()
                        .chain(range.lte)
                        .fold(f64::INFINITY, f64::min);
                    if lo > hi {
                        return RoaringBitmap::new();
                    }
                    map.range(ordered_bits(lo)..=ordered_bits(hi))
                        .filter(|(k, _)| range.contains(from_ordered_bits(**k)))
                        .fold(RoaringBitmap::new(), |a, (_, b)| a | b)
                }
                Values::Keyword(_) => unreachable!("can_serve checked the type"),
            },
            Condition::IsNull { key } => {
                let mut all = RoaringBitmap::new();
                all.insert_range(0..len);
                all - &field(key).present
            }
            Condition::HasId(ids) => ids.iter().filter_map(has_id).collect(),
            Condition::Nested(f) => self.filter_bitmap(f, len, has_id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::{MatchValue, Range};
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn ordered_bits_keep_order() {
        let xs = [-1e300, -2.5, -0.0, 0.0, 1e-9, 3.0, f64::INFINITY];
        for w in xs.windows(2) {
            assert!(ordered_bits(w[0]) <= ordered_bits(w[1]));
            assert_eq!(from_ordered_bits(ordered_bits(w[0])), w[0]);
        }
    }

    fn payload(i: u32) -> Value {
        let tags: Vec<String> = (0..i % 3).map(|t| format!("t{t}")).collect();
        if i % 5 == 0 {
            json!({"n": null})
        } else {
            let color = ["red", "green", "blue"][i as usize % 3];
            json!({"color": color, "n": (i % 17) as f64 - 8.0, "tags": tags, "flag": i % 2 == 0})
        }
    }

    fn arb_condition() -> impl Strategy<Value = Condition> {
        prop_oneof![
            prop_oneof![Just("red"), Just("green"), Just("nope")].prop_map(|v| Condition::Match {
                key: "color".into(),
                value: MatchValue::Keyword(v.into())
            }),
            prop_oneof![Just("t0"), Just("t1")].prop_map(|v| Condition::MatchAny {
                key: "tags".into(),
                values: vec![MatchValue::Keyword(v.into())]
            }),
            any::<bool>().prop_map(|b| Condition::Match {
                key: "flag".into(),
                value: MatchValue::Boolean(b)
            }),
            (-10.0f64..10.0, 0.0f64..10.0).prop_map(|(lo, w)| Condition::Range {
                key: "n".into(),
                range: Range {
                    gte: Some(lo),
                    lt: Some(lo + w),
                    ..Default::default()
                },
            }),
            Just(Condition::IsNull {
                key: "color".into()
            }),
            (0u64..60).prop_map(|i| Condition::HasId(vec![PointId::Num(i)])),
        ]
    }

    proptest! {
        /// The bitmap path and the per-point path agree on every filter.
        #[test]
        fn bitmaps_agree_with_point_matching(
            must in proptest::collection::vec(arb_condition(), 0..3),
            should in proptest::collection::vec(arb_condition(), 0..3),
            must_not in proptest::collection::vec(arb_condition(), 0..2),
        ) {
            let fields = vec![
                ("color".to_string(), FieldType::Keyword),
                ("tags".to_string(), FieldType::Keyword),
                ("flag".to_string(), FieldType::Keyword),
                ("n".to_string(), FieldType::Numeric),
            ];
            let mut idx = PayloadIndex::new(&fields);
            let n = 50u32;
            for i in 0..n {
                idx.add_point(i, &payload(i));
            }
            let f = Filter { must, should, must_not };
            prop_assert!(idx.can_serve(&f));
            let has_id = |id: &PointId| match id { PointId::Num(x) if *x < n as u64 => Some(*x as u32), _ => None };
            let bm = idx.filter_bitmap(&f, n, &has_id);
            for i in 0..n {
                let want = f.matches(&PointId::Num(i as u64), &payload(i));
                prop_assert_eq!(bm.contains(i), want, "offset {}", i);
            }
        }
    }
}
