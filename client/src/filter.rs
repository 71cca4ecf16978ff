//! Filters written as JSON, the syntax the CLI accepts:
//!
//! ```json
//! {"must": [{"key": "color", "match": "red"},
//!           {"key": "price", "range": {"gte": 1, "lt": 5}},
//!           {"key": "tags", "match_any": ["a", "b"]},
//!           {"has_id": [1, "doc-7"]},
//!           {"is_null": "author"},
//!           {"filter": {"should": [...]}}],
//!  "should": [...], "must_not": [...]}
//! ```
//! A match value is a JSON string (keyword), integer or boolean.

use crate::ClientError;
use crate::pb;
use serde_json::Value;

fn err(msg: impl Into<String>) -> ClientError {
    ClientError::Input(format!("filter: {}", msg.into()))
}

fn match_value(v: &Value) -> Result<pb::MatchValue, ClientError> {
    use pb::match_value::Kind;
    let kind = match v {
        Value::String(s) => Kind::Keyword(s.clone()),
        Value::Bool(b) => Kind::Boolean(*b),
        Value::Number(n) => Kind::Integer(
            n.as_i64()
                .ok_or_else(|| err(format!("{n} is not an integer")))?,
        ),
        other => {
            return Err(err(format!(
                "{other} cannot be matched (use a string, integer or boolean)"
            )));
        }
    };
    Ok(pb::MatchValue { kind: Some(kind) })
}

fn id(v: &Value) -> Result<pb::PointId, ClientError> {
    match v {
        Value::Number(n) => n
            .as_u64()
            .map(crate::num_id)
            .ok_or_else(|| err(format!("id {n} is not a u64"))),
        Value::String(s) => Ok(crate::text_id(s)),
        other => Err(err(format!("id {other} must be a number or a string"))),
    }
}

fn condition(v: &Value) -> Result<pb::Condition, ClientError> {
    use pb::condition::Kind;
    use pb::field_condition::Test;
    let obj = v
        .as_object()
        .ok_or_else(|| err(format!("condition {v} is not an object")))?;
    let kind = if let Some(ids) = obj.get("has_id") {
        let ids = ids.as_array().ok_or_else(|| err("has_id takes a list"))?;
        Kind::HasId(pb::HasIdCondition {
            ids: ids.iter().map(id).collect::<Result<_, _>>()?,
        })
    } else if let Some(key) = obj.get("is_null") {
        let key = key.as_str().ok_or_else(|| err("is_null takes a key"))?;
        Kind::IsNull(pb::IsNullCondition { key: key.into() })
    } else if let Some(f) = obj.get("filter") {
        Kind::Filter(parse(f)?)
    } else {
        let key = obj
            .get("key")
            .and_then(Value::as_str)
            .ok_or_else(|| err(format!("condition {v} has no key")))?;
        let test = if let Some(m) = obj.get("match") {
            Test::Match(match_value(m)?)
        } else if let Some(a) = obj.get("match_any") {
            let a = a.as_array().ok_or_else(|| err("match_any takes a list"))?;
            Test::MatchAny(pb::MatchAny {
                values: a.iter().map(match_value).collect::<Result<_, _>>()?,
            })
        } else if let Some(r) = obj.get("range") {
            let bound = |name: &str| -> Result<Option<f64>, ClientError> {
                match r.get(name) {
                    None | Some(Value::Null) => Ok(None),
                    Some(x) => x
                        .as_f64()
                        .map(Some)
                        .ok_or_else(|| err(format!("range bound {name} must be a number"))),
                }
            };
            Test::Range(pb::Range {
                gt: bound("gt")?,
                gte: bound("gte")?,
                lt: bound("lt")?,
                lte: bound("lte")?,
            })
        } else {
            return Err(err(format!(
                "condition on '{key}' needs match, match_any or range"
            )));
        };
        Kind::Field(pb::FieldCondition {
            key: key.into(),
            test: Some(test),
        })
    };
    Ok(pb::Condition { kind: Some(kind) })
}

/// Parses a JSON filter value.
pub fn parse(v: &Value) -> Result<pb::Filter, ClientError> {
    let obj = v
        .as_object()
        .ok_or_else(|| err("a filter is a JSON object"))?;
    for k in obj.keys() {
        if !matches!(k.as_str(), "must" | "should" | "must_not") {
            return Err(err(format!(
                "unknown key '{k}' (expected must, should, must_not)"
            )));
        }
    }
    let list = |name: &str| -> Result<Vec<pb::Condition>, ClientError> {
        match obj.get(name) {
            None => Ok(Vec::new()),
            Some(Value::Array(a)) => a.iter().map(condition).collect(),
            Some(_) => Err(err(format!("{name} takes a list"))),
        }
    };
    Ok(pb::Filter {
        must: list("must")?,
        should: list("should")?,
        must_not: list("must_not")?,
    })
}

/// Parses a filter from JSON text.
pub fn parse_str(s: &str) -> Result<pb::Filter, ClientError> {
    let v: Value = serde_json::from_str(s).map_err(|e| err(format!("not JSON: {e}")))?;
    parse(&v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_condition_kind() {
        let f = parse_str(
            r#"{"must":[{"key":"c","match":"red"},{"key":"p","range":{"gte":1,"lt":5}},
                {"key":"t","match_any":["a",2,true]},{"has_id":[1,"x"]},{"is_null":"a"},
                {"filter":{"should":[{"key":"c","match":1}]}}],"must_not":[{"key":"c","match":false}]}"#,
        )
        .unwrap();
        assert_eq!(f.must.len(), 6);
        assert_eq!(f.must_not.len(), 1);
        assert!(parse_str(r#"{"must":[{"key":"c"}]}"#).is_err());
        assert!(parse_str(r#"{"must":[{"key":"c","match":1.5}]}"#).is_err());
        assert!(parse_str(r#"{"mus":[]}"#).is_err());
    }
}
