//! Payload filters: the condition tree, its validation, and its evaluation on one point.
//!
//! A filter is evaluated two ways that must agree:
//! - per point, with [`Filter::matches`] on the point's id and payload JSON;
//! - per segment, as a bitmap from payload indexes (`payload_index.rs`), when every field it
//!   names is indexed with a fitting type.
//!
//! Values are compared by type: the keyword `"5"` does not match the integer `5`. An array
//! matches when any of its elements does. Dots in a key reach into nested objects.

use crate::error::{Result, StorageError};
use crate::types::{Limits, PointId};
use serde_json::Value;

/// A value for an exact match.
#[derive(Debug, Clone, PartialEq)]
pub enum MatchValue {
    /// A string.
    Keyword(String),
    /// An integer.
    Integer(i64),
    /// A boolean.
    Boolean(bool),
}

/// Bounds of a numeric range; `None` is open.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Range {
    /// Strictly greater than.
    pub gt: Option<f64>,
    /// Greater than or equal.
    pub gte: Option<f64>,
    /// Strictly less than.
    pub lt: Option<f64>,
    /// Less than or equal.
    pub lte: Option<f64>,
}

impl Range {
    /// True if `x` is inside every bound.
    pub fn contains(&self, x: f64) -> bool {
        self.gt.is_none_or(|b| x > b)
            && self.gte.is_none_or(|b| x >= b)
            && self.lt.is_none_or(|b| x < b)
            && self.lte.is_none_or(|b| x <= b)
    }
}

/// One test in a filter.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// The field equals the value.
    Match {
        /// Payload key.
        key: String,
        /// The value.
        value: MatchValue,
    },
    /// The field equals one of the values.
    MatchAny {
        /// Payload key.
        key: String,
        /// The values.
        values: Vec<MatchValue>,
    },
    /// The field is a number inside the range.
    Range {
        /// Payload key.
        key: String,
        /// The bounds.
        range: Range,
    },
    /// The point's id is one of these.
    HasId(Vec<PointId>),
    /// The field is absent, null or an empty array.
    IsNull {
        /// Payload key.
        key: String,
    },
    /// A nested filter.
    Nested(Box<Filter>),
}

/// `must` all, `should` at least one (when any are given), `must_not` none.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Filter {
    /// All must match.
    pub must: Vec<Condition>,
    /// At least one must match, if the list is not empty.
    pub should: Vec<Condition>,
    /// None may match.
    pub must_not: Vec<Condition>,
}

fn invalid(reason: impl Into<String>) -> StorageError {
    StorageError::InvalidFilter {
        reason: reason.into(),
    }
}

impl Filter {
    /// Checks depth, size, keys, bounds and ids against `limits`.
    pub fn validate(&self, limits: &Limits) -> Result<()> {
        let mut count = 0;
        self.validate_at(1, limits, &mut count)
    }

    fn validate_at(&self, depth: usize, limits: &Limits, count: &mut usize) -> Result<()> {
        if depth > limits.max_filter_depth {
            return Err(invalid(format!(
                "nested deeper than {} levels",
                limits.max_filter_depth
            )));
        }
        for c in self.must.iter().chain(&self.should).chain(&self.must_not) {
            *count += 1;
            if *count > limits.max_filter_conditions {
                return Err(invalid(format!(
                    "more than {} conditions",
                    limits.max_filter_conditions
                )));
            }
            match c {
                Condition::Match { key, .. } | Condition::IsNull { key } => check_key(key)?,
                Condition::MatchAny { key, values } => {
                    check_key(key)?;
                    if values.is_empty() {
                        return Err(invalid(format!("match_any on '{key}' has no values")));
                    }
                }
                Condition::Range { key, range } => {
                    check_key(key)?;
                    let bounds = [range.gt, range.gte, range.lt, range.lte];
                    if bounds.iter().all(Option::is_none) {
                        return Err(invalid(format!("range on '{key}' has no bound")));
                    }
                    if bounds.iter().flatten().any(|b| b.is_nan()) {
                        return Err(invalid(format!("range on '{key}' has a NaN bound")));
                    }
                }
                Condition::HasId(ids) => {
                    if ids.is_empty() {
                        return Err(invalid("has_id lists no ids"));
                    }
                    for id in ids {
                        id.validate().map_err(|e| invalid(e.to_string()))?;
                    }
                }
                Condition::Nested(f) => f.validate_at(depth + 1, limits, count)?,
            }
        }
        Ok(())
    }

    /// True if the point with this id and payload passes the filter.
    pub fn matches(&self, id: &PointId, payload: &Value) -> bool {
        self.must.iter().all(|c| c.matches(id, payload))
            && (self.should.is_empty() || self.should.iter().any(|c| c.matches(id, payload)))
            && !self.must_not.iter().any(|c| c.matches(id, payload))
    }

    /// Calls `f` on every leaf condition, those of nested filters included.
    pub fn visit_leaves(&self, f: &mut impl FnMut(&Condition)) {
        for c in self.must.iter().chain(&self.should).chain(&self.must_not) {
            match c {
                Condition::Nested(inner) => inner.visit_leaves(f),
                other => f(other),
            }
        }
    }
}

fn check_key(key: &str) -> Result<()> {
    if key.is_empty() || key.split('.').any(str::is_empty) {
        return Err(invalid(format!(
            "key {key:?} is empty or has an empty part"
        )));
    }
    Ok(())
}

impl Condition {
    /// True if the point passes this one condition.
    pub fn matches(&self, id: &PointId, payload: &Value) -> bool {
        match self {
            Condition::Match { key, value } => {
                let want = keyword_key(value);
                values_at(payload, key).any(|v| value_key(v).as_deref() == Some(want.as_str()))
            }
            Condition::MatchAny { key, values } => {
                let want: Vec<String> = values.iter().map(keyword_key).collect();
                values_at(payload, key)
                    .filter_map(value_key)
                    .any(|k| want.contains(&k))
            }
            Condition::Range { key, range } => values_at(payload, key)
                .filter_map(Value::as_f64)
                .any(|x| range.contains(x)),
            Condition::HasId(ids) => ids.contains(id),
            Condition::IsNull { key } => values_at(payload, key).next().is_none(),
            Condition::Nested(f) => f.matches(id, payload),
        }
    }
}

/// The value at a dotted path, or `None`.
pub fn get_path<'a>(payload: &'a Value, key: &str) -> Option<&'a Value> {
    key.split('.').try_fold(payload, |v, part| v.get(part))
}

/// The non-null values at a path: the value itself, or each element of an array.
pub fn values_at<'a>(payload: &'a Value, key: &str) -> impl Iterator<Item = &'a Value> {
    let v = get_path(payload, key);
    let (one, many) = match v {
        Some(Value::Array(a)) => (None, a.as_slice()),
        Some(Value::Null) | None => (None, &[][..]),
        Some(other) => (Some(other), &[][..]),
    };
    one.into_iter().chain(many.iter()).filter(|v| !v.is_null())
}

/// The canonical, type-tagged key of a match value (shared with the keyword index).
pub fn keyword_key(v: &MatchValue) -> String {
    match v {
        MatchValue::Keyword(s) => format!("s:{s}"),
        MatchValue::Integer(i) => format!("i:{i}"),
        MatchValue::Boolean(b) => format!("b:{b}"),
    }
}

/// The canonical key of a payload value, if it is one a keyword match can equal.
pub fn value_key(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(format!("s:{s}")),
        Value::Bool(b) => Some(format!("b:{b}")),
        Value::Number(n) => n.as_i64().map(|i| format!("i:{i}")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn kw(key: &str, v: &str) -> Condition {
        Condition::Match {
            key: key.into(),
            value: MatchValue::Keyword(v.into()),
        }
    }

    #[test]
    fn must_should_must_not() {
        let p = json!({"color": "red", "size": 3, "tags": ["a", "b"], "meta": {"lang": "en"}});
        let id = PointId::Num(1);
        let f = Filter {
            must: vec![kw("color", "red"), kw("meta.lang", "en")],
            should: vec![kw("tags", "z"), kw("tags", "b")],
            must_not: vec![Condition::Range {
                key: "size".into(),
                range: Range {
                    gt: Some(5.0),
                    ..Default::default()
                },
            }],
        };
        assert!(f.matches(&id, &p));
        let f2 = Filter {
            must: vec![Condition::Match {
                key: "size".into(),
                value: MatchValue::Keyword("3".into()),
            }],
            ..Default::default()
        };
        assert!(!f2.matches(&id, &p), "types are not coerced");
        let null = Filter {
            must: vec![Condition::IsNull {
                key: "missing".into(),
            }],
            ..Default::default()
        };
        assert!(null.matches(&id, &p));
        assert!(null.matches(&id, &json!({"missing": []})));
        assert!(!null.matches(&id, &json!({"missing": 0})));
    }

    #[test]
    fn validation_rejects_bad_filters() {
        let limits = Limits::default();
        let no_bound = Filter {
            must: vec![Condition::Range {
                key: "x".into(),
                range: Range::default(),
            }],
            ..Default::default()
        };
        assert!(no_bound.validate(&limits).is_err());
        let empty_key = Filter {
            must: vec![kw("a..b", "x")],
            ..Default::default()
        };
        assert!(empty_key.validate(&limits).is_err());
        let mut deep = Filter::default();
        for _ in 0..20 {
            deep = Filter {
                must: vec![Condition::Nested(Box::new(deep))],
                ..Default::default()
            };
        }
        assert!(deep.validate(&limits).is_err());
    }
}
