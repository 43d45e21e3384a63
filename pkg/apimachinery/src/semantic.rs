//! Semantic equality of JSON objects, as Go's `apiequality.Semantic`
//! compares API objects: an unset field, null, an empty list and an empty
//! map are all the same.

use serde_json::Value;

/// `v` without nulls, empty arrays and empty objects (recursively), so
/// that unset and empty compare equal.
pub fn normalized(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), normalized(v)))
                .filter(|(_, v)| !is_empty(v))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(normalized).collect()),
        other => other.clone(),
    }
}

/// Null, an empty array or an empty object.
pub fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(m) => m.is_empty(),
        _ => false,
    }
}

/// Semantic equality of two optional values (absent is empty).
pub fn sem_eq(a: Option<&Value>, b: Option<&Value>) -> bool {
    let n = |v: Option<&Value>| v.map(normalized).unwrap_or(Value::Null);
    let (a, b) = (n(a), n(b));
    a == b || (is_empty(&a) && is_empty(&b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unset_and_empty_are_equal() {
        assert!(sem_eq(
            Some(&json!({"a": [], "b": 1})),
            Some(&json!({"b": 1}))
        ));
        assert!(sem_eq(None, Some(&json!({}))));
        assert!(!sem_eq(Some(&json!(1)), None));
        assert_eq!(
            normalized(&json!({"a": {"b": null, "c": [{}]}, "d": {}})),
            json!({"a": {"c": [{}]}})
        );
    }
}
