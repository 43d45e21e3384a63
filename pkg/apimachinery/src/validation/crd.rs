//! CustomResourceDefinition validation (apiextensions validation): group,
//! names, scope, versions, and the `<plural>.<group>` object name.

use std::collections::HashSet;

use serde_json::Value;

use super::field::{arr, get, index, str_at, Errs};
use super::names::{is_dns1035_label, is_dns1123_subdomain};

/// Validates a CRD (create and update).
pub(crate) fn crd(o: &Value, old: Option<&Value>, e: &mut Errs) {
    let spec = get(o, &["spec"]).unwrap_or(&Value::Null);
    let group = str_at(spec, &["group"]);
    if group.is_empty() {
        e.required("spec.group", "");
    } else {
        let errs = is_dns1123_subdomain(group);
        if !errs.is_empty() {
            e.invalid("spec.group", group, &errs.join(","));
        } else if !group.contains('.') {
            e.invalid(
                "spec.group",
                group,
                "should be a domain with at least one dot",
            );
        }
    }
    let scope = str_at(spec, &["scope"]);
    match scope {
        "" => e.required("spec.scope", ""),
        "Cluster" | "Namespaced" => {}
        other => e.not_supported("spec.scope", other, &["Cluster", "Namespaced"]),
    }
    names(spec, e);
    let plural = str_at(spec, &["names", "plural"]);
    let name = str_at(o, &["metadata", "name"]);
    if name != format!("{plural}.{group}") {
        e.invalid(
            "metadata.name",
            name,
            "must be spec.names.plural+\".\"+spec.group",
        );
    }
    let versions = arr(spec, &["versions"]);
    let flag = |v: &Value, f: &str| get(v, &[f]).and_then(Value::as_bool) == Some(true);
    let storage = versions.iter().filter(|v| flag(v, "storage")).count();
    if storage != 1 {
        e.invalid(
            "spec.versions",
            versions.to_vec(),
            "must have exactly one version marked as storage version",
        );
    }
    if !versions.iter().any(|v| flag(v, "served")) {
        e.invalid(
            "spec.versions",
            versions.to_vec(),
            "must have at least one version marked as served",
        );
    }
    let mut seen = HashSet::new();
    for (i, v) in versions.iter().enumerate() {
        let p = format!("{}.name", index("spec.versions", i));
        let vn = str_at(v, &["name"]);
        e.each(&p, vn, is_dns1035_label(vn));
        if !seen.insert(vn) {
            e.invalid(&p, vn, "must be unique");
        }
    }
    if let Some(old) = old {
        e.immutable(
            "spec.scope",
            get(spec, &["scope"]),
            get(old, &["spec", "scope"]),
        );
        e.immutable(
            "spec.names.plural",
            get(spec, &["names", "plural"]),
            get(old, &["spec", "names", "plural"]),
        );
        e.immutable(
            "spec.group",
            get(spec, &["group"]),
            get(old, &["spec", "group"]),
        );
    }
}

fn names(spec: &Value, e: &mut Errs) {
    let n = |f: &str| str_at(spec, &["names", f]);
    for f in ["plural", "singular"] {
        let v = n(f);
        let errs = is_dns1035_label(v);
        if !v.is_empty() && !errs.is_empty() {
            e.invalid(&format!("spec.names.{f}"), v, &errs.join(","));
        }
    }
    for f in ["kind", "listKind"] {
        let v = n(f);
        let errs = is_dns1035_label(&v.to_lowercase());
        if !v.is_empty() && !errs.is_empty() {
            e.invalid(
                &format!("spec.names.{f}"),
                v,
                &format!(
                    "may have mixed case, but should otherwise match: {}",
                    errs.join(",")
                ),
            );
        }
    }
    if !n("kind").is_empty() && n("kind") == n("listKind") {
        e.invalid(
            "spec.names.listKind",
            n("listKind"),
            "kind and listKind may not be the same",
        );
    }
    for f in ["plural", "kind", "listKind"] {
        if n(f).is_empty() {
            e.required(&format!("spec.names.{f}"), "");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn widget() -> Value {
        json!({"metadata": {"name": "widgets.example.com"}, "spec": {"group": "example.com", "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
            "versions": [{"name": "v1", "served": true, "storage": true}]}})
    }

    #[test]
    fn valid_and_invalid() {
        let mut e = Errs::default();
        crd(&widget(), None, &mut e);
        assert!(e.0.is_empty(), "{:?}", e.0);
        let mut w = widget();
        w["metadata"]["name"] = json!("gadgets.example.com");
        w["spec"]["versions"] = json!([{"name": "v1", "served": false, "storage": false}]);
        w["spec"]["scope"] = json!("Global");
        crd(&w, None, &mut e);
        let fields: Vec<&str> = e.0.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "spec.scope",
                "metadata.name",
                "spec.versions",
                "spec.versions"
            ]
        );
        assert_eq!(
            e.0[1].message,
            "Invalid value: \"gadgets.example.com\": must be spec.names.plural+\".\"+spec.group"
        );
    }
}
