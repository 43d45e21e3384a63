//! Field-error plumbing shared by the validators: building `Cause`s with
//! upstream's message shapes (`field.Invalid`, `field.Required`, ...), field
//! paths, read helpers over `serde_json::Value`, semantic equality, label
//! selectors and resource quantities.

use serde_json::{Map, Value};

pub(crate) use crate::semantic::{normalized, sem_eq};
use crate::Cause;

/// Collected field errors.
#[derive(Default)]
pub(crate) struct Errs(pub Vec<Cause>);

/// Renders a bad value as Go's `ErrorBody` does: strings quoted, numbers and
/// booleans bare, everything else as JSON.
pub(crate) fn render(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

impl Errs {
    fn push(&mut self, reason: &str, field: &str, message: String) {
        self.0.push(Cause {
            reason: reason.into(),
            message,
            field: field.into(),
        });
    }

    fn with_detail(mut s: String, detail: &str) -> String {
        if !detail.is_empty() {
            s.push_str(": ");
            s.push_str(detail);
        }
        s
    }

    /// `Invalid value: <v>: <detail>`.
    pub fn invalid(&mut self, field: &str, value: impl Into<Value>, detail: &str) {
        let s = format!("Invalid value: {}", render(&value.into()));
        self.push("FieldValueInvalid", field, Self::with_detail(s, detail));
    }

    /// `Required value[: <detail>]`.
    pub fn required(&mut self, field: &str, detail: &str) {
        self.push(
            "FieldValueRequired",
            field,
            Self::with_detail("Required value".into(), detail),
        );
    }

    /// `Forbidden: <detail>`.
    pub fn forbidden(&mut self, field: &str, detail: &str) {
        self.push(
            "FieldValueForbidden",
            field,
            Self::with_detail("Forbidden".into(), detail),
        );
    }

    /// `Duplicate value: <v>`.
    pub fn duplicate(&mut self, field: &str, value: impl Into<Value>) {
        self.push(
            "FieldValueDuplicate",
            field,
            format!("Duplicate value: {}", render(&value.into())),
        );
    }

    /// `Not found: <v>`.
    pub fn not_found(&mut self, field: &str, value: impl Into<Value>) {
        self.push(
            "FieldValueNotFound",
            field,
            format!("Not found: {}", render(&value.into())),
        );
    }

    /// `Unsupported value: <v>: supported values: "a", "b"`.
    pub fn not_supported(&mut self, field: &str, value: impl Into<Value>, supported: &[&str]) {
        let list: Vec<String> = supported.iter().map(|s| render(&Value::from(*s))).collect();
        let s = format!("Unsupported value: {}", render(&value.into()));
        let detail = if list.is_empty() {
            String::new()
        } else {
            format!("supported values: {}", list.join(", "))
        };
        self.push(
            "FieldValueNotSupported",
            field,
            Self::with_detail(s, &detail),
        );
    }

    /// `Too long: may not be more than N bytes`.
    pub fn too_long(&mut self, field: &str, max: usize) {
        let unit = if max == 1 { "byte" } else { "bytes" };
        self.push(
            "FieldValueTooLong",
            field,
            format!("Too long: may not be more than {max} {unit}"),
        );
    }

    /// One `Invalid` per message of a string check.
    pub fn each(&mut self, field: &str, value: &str, msgs: Vec<String>) {
        for m in msgs {
            self.invalid(field, value, &m);
        }
    }

    /// `field is immutable` when the new and old values differ semantically.
    pub fn immutable(&mut self, field: &str, new: Option<&Value>, old: Option<&Value>) {
        if !sem_eq(new, old) {
            self.invalid(
                field,
                new.cloned().unwrap_or(Value::Null),
                "field is immutable",
            );
        }
    }

    /// `must be greater than or equal to 0` for a negative integer field.
    pub fn nonnegative(&mut self, field: &str, v: Option<&Value>) {
        if let Some(n) = v.and_then(Value::as_i64).filter(|n| *n < 0) {
            self.invalid(field, n, "must be greater than or equal to 0");
        }
    }
}

/// `p.c`.
pub(crate) fn child(p: &str, c: &str) -> String {
    if p.is_empty() {
        c.to_string()
    } else {
        format!("{p}.{c}")
    }
}

/// `p[i]`.
pub(crate) fn index(p: &str, i: usize) -> String {
    format!("{p}[{i}]")
}

/// `p[k]`.
pub(crate) fn key(p: &str, k: &str) -> String {
    format!("{p}[{k}]")
}

/// The value at a path of object keys; null counts as absent.
pub(crate) fn get<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter()
        .try_fold(v, |v, k| v.get(k))
        .filter(|v| !v.is_null())
}

/// The string at a path, "" when absent.
pub(crate) fn str_at<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    get(v, path).and_then(Value::as_str).unwrap_or("")
}

/// The array at a path, empty when absent.
pub(crate) fn arr<'a>(v: &'a Value, path: &[&str]) -> &'a [Value] {
    get(v, path)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// The object at a path.
pub(crate) fn obj<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Map<String, Value>> {
    get(v, path).and_then(Value::as_object)
}

/// Whether a label selector has neither matchLabels nor matchExpressions.
pub(crate) fn selector_is_empty(sel: &Value) -> bool {
    obj(sel, &["matchLabels"]).is_none_or(Map::is_empty)
        && arr(sel, &["matchExpressions"]).is_empty()
}

/// Whether a metav1.LabelSelector matches a label set.
pub(crate) fn selector_matches(sel: &Value, labels: Option<&Map<String, Value>>) -> bool {
    let label = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
    let match_labels = obj(sel, &["matchLabels"]).into_iter().flatten();
    let labels_ok = match_labels
        .into_iter()
        .all(|(k, v)| label(k) == v.as_str());
    labels_ok
        && arr(sel, &["matchExpressions"]).iter().all(|req| {
            let k = str_at(req, &["key"]);
            let values: Vec<&str> = arr(req, &["values"])
                .iter()
                .filter_map(Value::as_str)
                .collect();
            match (str_at(req, &["operator"]), label(k)) {
                ("In", Some(v)) => values.contains(&v),
                ("NotIn", v) => v.is_none_or(|v| !values.contains(&v)),
                ("Exists", v) => v.is_some(),
                ("DoesNotExist", v) => v.is_none(),
                _ => false,
            }
        })
}

/// A quantity field's value as a string (quantities may be JSON numbers).
pub(crate) fn quantity_str(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn messages() {
        let mut e = Errs::default();
        e.invalid("metadata.name", "A", "bad");
        e.required("spec.containers", "");
        e.not_supported("spec.restartPolicy", "x", &["Always", "Never"]);
        e.invalid("spec.replicas", -1, "must be greater than or equal to 0");
        e.too_long("data", 1048576);
        let msgs: Vec<&str> = e.0.iter().map(|c| c.message.as_str()).collect();
        assert_eq!(
            msgs,
            [
                "Invalid value: \"A\": bad",
                "Required value",
                "Unsupported value: \"x\": supported values: \"Always\", \"Never\"",
                "Invalid value: -1: must be greater than or equal to 0",
                "Too long: may not be more than 1048576 bytes",
            ]
        );
    }

    #[test]
    fn selectors() {
        let l = json!({"app": "web", "tier": "fe"});
        let l = l.as_object();
        assert!(selector_matches(&json!({"matchLabels": {"app": "web"}}), l));
        assert!(!selector_matches(&json!({"matchLabels": {"app": "db"}}), l));
        let sel = json!({"matchExpressions": [
            {"key": "tier", "operator": "In", "values": ["fe", "be"]},
            {"key": "x", "operator": "DoesNotExist"}]});
        assert!(selector_matches(&sel, l));
        assert!(selector_is_empty(&json!({})));
    }

    #[test]
    fn semantic_equality() {
        assert!(sem_eq(
            Some(&json!({"a": [], "b": 1})),
            Some(&json!({"b": 1}))
        ));
        assert!(sem_eq(None, Some(&json!({}))));
        assert!(!sem_eq(Some(&json!(1)), None));
    }
}
