//! ObjectMeta validation shared by every kind, custom resources included:
//! name/generateName per a [`NameRule`], namespace presence, labels,
//! annotations (keys and the 256KiB total), finalizers, and the immutable
//! identity fields on update. Also label-selector validation.

use serde_json::{Map, Value};

use super::field::{arr, child, get, obj, str_at, Errs};
use super::names::*;
use crate::Cause;

/// How an object's name is validated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameRule {
    /// RFC 1123 subdomain (most kinds, custom resources).
    Dns1123Subdomain,
    /// RFC 1123 label (Namespace).
    Dns1123Label,
    /// RFC 1035 label (Service).
    Dns1035Label,
    /// Any path segment: not "." or "..", no '/' or '%' (RBAC and similar).
    PathSegment,
    /// An IP address in canonical form (networking.k8s.io IPAddress).
    CanonicalIp,
}

/// Upstream's IPAddress name check: a valid IP written canonically.
fn is_canonical_ip(name: &str) -> Vec<String> {
    match name.parse::<std::net::IpAddr>() {
        Ok(ip) if ip.to_string() == name => Vec::new(),
        Ok(ip) => vec![format!("must be in canonical form (\"{ip}\")")],
        Err(_) => vec!["must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)".into()],
    }
}

/// Upstream's limit on the summed size of annotation keys and values.
pub const TOTAL_ANNOTATION_SIZE_LIMIT: usize = 256 * 1024;

/// Upstream's `maskTrailingDash`, applied to generateName prefixes.
fn mask_trailing_dash(s: &str) -> String {
    if s.len() > 1 && s.ends_with('-') {
        format!("{}a", &s[..s.len() - 2])
    } else {
        s.to_string()
    }
}

impl NameRule {
    /// The failure messages for a name (or, with `prefix`, a generateName).
    pub fn check(self, name: &str, prefix: bool) -> Vec<String> {
        let masked;
        let name = if prefix && !matches!(self, NameRule::PathSegment | NameRule::CanonicalIp) {
            masked = mask_trailing_dash(name);
            masked.as_str()
        } else {
            name
        };
        match self {
            NameRule::Dns1123Subdomain => is_dns1123_subdomain(name),
            NameRule::Dns1123Label => is_dns1123_label(name),
            NameRule::Dns1035Label => is_dns1035_label(name),
            NameRule::PathSegment => is_valid_path_segment_name(name, prefix),
            NameRule::CanonicalIp => is_canonical_ip(name),
        }
    }
}

/// Validates `metadata` of any object (create or update).
pub fn validate_object_meta(obj: &Value, namespaced: bool, name_rule: NameRule) -> Vec<Cause> {
    let mut e = Errs::default();
    object_meta(
        obj.get("metadata").unwrap_or(&Value::Null),
        "metadata",
        namespaced,
        name_rule,
        &mut e,
    );
    e.0
}

pub(crate) fn object_meta(meta: &Value, p: &str, namespaced: bool, rule: NameRule, e: &mut Errs) {
    let generate = str_at(meta, &["generateName"]);
    if !generate.is_empty() {
        e.each(
            &child(p, "generateName"),
            generate,
            rule.check(generate, true),
        );
    }
    let name = str_at(meta, &["name"]);
    // The server generates a name from generateName before storing.
    if name.is_empty() && generate.is_empty() {
        e.required(&child(p, "name"), "name or generateName is required");
    } else if !name.is_empty() {
        e.each(&child(p, "name"), name, rule.check(name, false));
    }
    let ns = str_at(meta, &["namespace"]);
    match (namespaced, ns.is_empty()) {
        (true, true) => e.required(&child(p, "namespace"), ""),
        (true, false) => e.each(&child(p, "namespace"), ns, is_dns1123_label(ns)),
        (false, false) => e.forbidden(&child(p, "namespace"), "not allowed on this type"),
        (false, true) => {}
    }
    e.nonnegative(&child(p, "generation"), get(meta, &["generation"]));
    labels(obj(meta, &["labels"]), &child(p, "labels"), e);
    annotations(obj(meta, &["annotations"]), &child(p, "annotations"), e);
    for f in arr(meta, &["finalizers"]).iter().filter_map(Value::as_str) {
        e.each(&child(p, "finalizers"), f, is_qualified_name(f));
    }
}

/// Identity fields that may not change on update.
pub(crate) fn object_meta_update(new: &Value, old: &Value, e: &mut Errs) {
    for f in ["name", "namespace", "uid", "creationTimestamp"] {
        let (n, o) = (get(new, &["metadata", f]), get(old, &["metadata", f]));
        // An absent uid/creationTimestamp on the new object is filled by the server.
        if n.is_some() || matches!(f, "name" | "namespace") {
            e.immutable(&format!("metadata.{f}"), n, o);
        }
    }
}

/// Label keys must be qualified names; values valid label values.
pub(crate) fn labels(l: Option<&Map<String, Value>>, p: &str, e: &mut Errs) {
    for (k, v) in l.into_iter().flatten() {
        e.each(p, k, is_qualified_name(k));
        let v = v.as_str().unwrap_or("");
        e.each(p, v, is_valid_label_value(v));
    }
}

/// Annotation keys must be qualified names (case-insensitively); total size capped.
pub(crate) fn annotations(a: Option<&Map<String, Value>>, p: &str, e: &mut Errs) {
    let mut total = 0;
    for (k, v) in a.into_iter().flatten() {
        e.each(p, k, is_qualified_name(&k.to_lowercase()));
        total += k.len() + v.as_str().map_or(0, str::len);
    }
    if total > TOTAL_ANNOTATION_SIZE_LIMIT {
        e.too_long(p, TOTAL_ANNOTATION_SIZE_LIMIT);
    }
}

/// metav1.LabelSelector: matchLabels as labels, matchExpressions well-formed.
pub(crate) fn label_selector(sel: &Value, p: &str, e: &mut Errs) {
    labels(obj(sel, &["matchLabels"]), &child(p, "matchLabels"), e);
    for (i, req) in arr(sel, &["matchExpressions"]).iter().enumerate() {
        let rp = format!("{p}.matchExpressions[{i}]");
        let values = arr(req, &["values"]);
        match str_at(req, &["operator"]) {
            "In" | "NotIn" if values.is_empty() => e.required(
                &child(&rp, "values"),
                "must be specified when `operator` is 'In' or 'NotIn'",
            ),
            "Exists" | "DoesNotExist" if !values.is_empty() => e.forbidden(
                &child(&rp, "values"),
                "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
            ),
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            op => e.invalid(&child(&rp, "operator"), op, "not a valid selector operator"),
        }
        let k = str_at(req, &["key"]);
        e.each(&child(&rp, "key"), k, is_qualified_name(k));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bad_name_and_missing_namespace() {
        let causes = validate_object_meta(
            &json!({"metadata": {"name": "Bad_Name"}}),
            true,
            NameRule::Dns1123Subdomain,
        );
        assert_eq!(causes.len(), 2);
        assert_eq!(causes[0].field, "metadata.name");
        assert_eq!(causes[0].reason, "FieldValueInvalid");
        assert!(causes[0]
            .message
            .starts_with("Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain"));
        assert_eq!(
            (causes[1].field.as_str(), causes[1].message.as_str()),
            ("metadata.namespace", "Required value")
        );
    }

    #[test]
    fn generate_name_and_scope() {
        let ok = json!({"metadata": {"generateName": "web-", "namespace": "default"}});
        assert!(validate_object_meta(&ok, true, NameRule::Dns1123Subdomain).is_empty());
        let c = validate_object_meta(&json!({"metadata": {}}), false, NameRule::Dns1123Label);
        assert_eq!(
            c[0].message,
            "Required value: name or generateName is required"
        );
        let c = validate_object_meta(
            &json!({"metadata": {"name": "x", "namespace": "a"}}),
            false,
            NameRule::PathSegment,
        );
        assert_eq!(c[0].message, "Forbidden: not allowed on this type");
        assert!(validate_object_meta(
            &json!({"metadata": {"name": "system:node"}}),
            false,
            NameRule::PathSegment
        )
        .is_empty());
    }

    #[test]
    fn labels_annotations() {
        let big = "x".repeat(TOTAL_ANNOTATION_SIZE_LIMIT);
        let o = json!({"metadata": {"name": "a", "labels": {"app": "-bad", "a/b/c": "x"}, "annotations": {"k": big}}});
        let c = validate_object_meta(&o, false, NameRule::Dns1123Subdomain);
        let fields: Vec<&str> = c.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(
            fields,
            ["metadata.labels", "metadata.labels", "metadata.annotations"]
        );
        assert_eq!(c[2].reason, "FieldValueTooLong");
    }
}
