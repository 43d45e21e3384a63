//! Strategic merge patch (`application/strategic-merge-patch+json`), a port of
//! the semantics of k8s.io/apimachinery `strategicpatch.StrategicMergePatch`:
//! maps merge recursively and `null` deletes a key; lists merge according to
//! the field's patch strategy (by merge key, as a set of primitives, or
//! replaced); the directives `$patch: replace|delete|merge`, `$retainKeys`,
//! `$setElementOrder/<field>` and `$deleteFromPrimitiveList/<field>` are
//! honoured.

use serde_json::{Map, Value};

use super::schema::{self, Field, ListKind, Ty};
use super::PatchError;

const PATCH: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ORDER: &str = "$setElementOrder/";
const DELETE_PRIMITIVE: &str = "$deleteFromPrimitiveList/";

/// Applies `patch` to `doc`, both JSON objects, with `root` as the schema.
pub(crate) fn patch(doc: &Value, patch: &Value, root: Ty) -> Result<Value, PatchError> {
    let (Value::Object(doc), Value::Object(patch)) = (doc, patch) else {
        return Err(PatchError::Invalid(
            "strategic merge patch: document and patch must be JSON objects".into(),
        ));
    };
    Ok(Value::Object(
        merge_map(doc.clone(), patch, root)?.unwrap_or_default(),
    ))
}

fn invalid(msg: impl Into<String>) -> PatchError {
    PatchError::Invalid(msg.into())
}

/// Merges `patch` into `orig`; None means the map itself was deleted.
fn merge_map(
    mut orig: Map<String, Value>,
    patch: &Map<String, Value>,
    ty: Ty,
) -> Result<Option<Map<String, Value>>, PatchError> {
    match patch.get(PATCH) {
        None => {}
        Some(Value::String(d)) if d == "merge" => {}
        Some(Value::String(d)) if d == "delete" => return Ok(None),
        Some(Value::String(d)) if d == "replace" => {
            let mut rest = patch.clone();
            rest.shift_remove(PATCH);
            return merge_map(Map::new(), &rest, ty);
        }
        Some(other) => return Err(invalid(format!("unknown patch type: {other}"))),
    }
    if let Some(retain) = patch.get(RETAIN_KEYS) {
        let keys = string_list(retain, RETAIN_KEYS)?;
        for (k, v) in patch {
            if !k.starts_with('$') && !v.is_null() && !keys.contains(&k.as_str()) {
                return Err(invalid(format!(
                    "the key {k:?} is not present in the {RETAIN_KEYS} list {retain}"
                )));
            }
        }
        orig.retain(|k, _| keys.contains(&k.as_str()));
    }
    for (k, v) in patch {
        let Some(name) = k.strip_prefix(DELETE_PRIMITIVE) else {
            continue;
        };
        let Value::Array(del) = v else {
            return Err(invalid(format!("{k}: expected a list, got {v}")));
        };
        if let Some(Value::Array(items)) = orig.get_mut(name) {
            items.retain(|i| !del.contains(i));
        }
    }
    for (k, v) in patch {
        if k.starts_with('$') {
            continue;
        }
        if v.is_null() {
            orig.shift_remove(k);
            continue;
        }
        let fl = schema::field(ty, k);
        match merge_value(orig.get(k), v, fl)? {
            Some(new) => {
                orig.insert(k.clone(), new);
            }
            None => {
                orig.shift_remove(k);
            }
        }
    }
    for (k, v) in patch {
        let Some(name) = k.strip_prefix(SET_ORDER) else {
            continue;
        };
        let Value::Array(order) = v else {
            return Err(invalid(format!("{k}: expected a list, got {v}")));
        };
        if let Some(Value::Array(items)) = orig.get_mut(name) {
            set_element_order(items, order, schema::field(ty, name).list);
        }
    }
    Ok(Some(orig))
}

fn string_list<'a>(v: &'a Value, what: &str) -> Result<Vec<&'a str>, PatchError> {
    v.as_array()
        .and_then(|a| a.iter().map(Value::as_str).collect::<Option<Vec<_>>>())
        .ok_or_else(|| invalid(format!("{what}: expected a list of strings, got {v}")))
}

/// Merges one patch value into the original value of a field.
fn merge_value(
    orig: Option<&Value>,
    patch: &Value,
    fl: Field,
) -> Result<Option<Value>, PatchError> {
    Ok(match patch {
        Value::Object(p) => {
            let base = match orig {
                Some(Value::Object(o)) => o.clone(),
                _ => Map::new(),
            };
            merge_map(base, p, fl.ty)?.map(Value::Object)
        }
        Value::Array(p) => {
            let base = match orig {
                Some(Value::Array(o)) => o.clone(),
                _ => Vec::new(),
            };
            Some(Value::Array(merge_list(base, p, fl)?))
        }
        other => Some(other.clone()),
    })
}

fn directive(item: &Value) -> Option<&str> {
    item.get(PATCH).and_then(Value::as_str)
}

fn merge_list(mut orig: Vec<Value>, patch: &[Value], fl: Field) -> Result<Vec<Value>, PatchError> {
    let replace = patch.iter().any(|i| directive(i) == Some("replace"));
    match fl.list {
        ListKind::Atomic => Ok(patch.to_vec()),
        ListKind::Set => {
            let items = patch.iter().filter(|i| directive(i).is_none());
            if replace {
                return Ok(items.cloned().collect());
            }
            for item in items {
                if !orig.contains(item) {
                    orig.push(item.clone());
                }
            }
            Ok(orig)
        }
        ListKind::Keyed(key) => {
            if replace {
                let mut out = Vec::new();
                for item in patch.iter().filter(|i| directive(i) != Some("replace")) {
                    if let Some(v) = merge_value(None, item, fl)? {
                        out.push(v);
                    }
                }
                return Ok(out);
            }
            for item in patch {
                let Value::Object(p) = item else {
                    return Err(invalid(format!(
                        "list item {item} must be a map with merge key {key:?}"
                    )));
                };
                let Some(kv) = p.get(key) else {
                    return Err(invalid(format!(
                        "map: {item} does not contain declared merge key: {key}"
                    )));
                };
                if directive(item) == Some("delete") {
                    orig.retain(|o| o.get(key) != Some(kv));
                    continue;
                }
                match orig.iter().position(|o| o.get(key) == Some(kv)) {
                    Some(i) => {
                        let base = orig[i].as_object().cloned().unwrap_or_default();
                        match merge_map(base, p, fl.ty)? {
                            Some(m) => orig[i] = Value::Object(m),
                            None => {
                                orig.remove(i);
                            }
                        }
                    }
                    None => {
                        if let Some(m) = merge_map(Map::new(), p, fl.ty)? {
                            orig.push(Value::Object(m));
                        }
                    }
                }
            }
            Ok(orig)
        }
    }
}

/// Reorders the items named in `order` to follow it; the slots of other
/// items (present only on the server) are kept.
fn set_element_order(items: &mut [Value], order: &[Value], list: ListKind) {
    let ident = |v: &Value| -> Option<Value> {
        match list {
            ListKind::Keyed(key) => v.get(key).cloned(),
            _ => Some(v.clone()),
        }
    };
    let rank = |v: &Value| -> Option<usize> {
        let id = ident(v)?;
        order.iter().position(|o| ident(o).as_ref() == Some(&id))
    };
    let slots: Vec<usize> = (0..items.len())
        .filter(|&i| rank(&items[i]).is_some())
        .collect();
    let mut ordered: Vec<Value> = slots.iter().map(|&i| items[i].clone()).collect();
    ordered.sort_by_key(|v| rank(v).unwrap_or(usize::MAX));
    for (slot, v) in slots.into_iter().zip(ordered) {
        items[slot] = v;
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::patch::{strategic_merge_patch, PatchError};

    fn deployment() -> serde_json::Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web", "tier": "fe"}, "finalizers": ["a"]},
            "spec": {
                "replicas": 1,
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}},
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {
                        "containers": [
                            {"name": "nginx", "image": "nginx:1.25",
                             "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                             "ports": [{"containerPort": 80, "protocol": "TCP"}]},
                            {"name": "sidecar", "image": "busybox", "args": ["sleep", "1d"]}
                        ],
                        "tolerations": [{"key": "k", "operator": "Exists"}]
                    }
                }
            }
        })
    }

    fn smp(doc: &serde_json::Value, p: serde_json::Value) -> serde_json::Value {
        strategic_merge_patch(doc, &p, "apps/v1", "Deployment").unwrap()
    }

    fn containers(d: &serde_json::Value) -> &Vec<serde_json::Value> {
        d["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
    }

    #[test]
    fn containers_merge_by_name() {
        let out = smp(
            &deployment(),
            json!({"spec": {"template": {"spec": {"containers": [
                {"name": "nginx", "image": "nginx:1.27"},
                {"name": "new", "image": "redis"}
            ]}}}}),
        );
        let c = containers(&out);
        assert_eq!(c.len(), 3);
        assert_eq!(c[0]["image"], "nginx:1.27");
        assert_eq!(c[0]["env"][1]["value"], "2", "untouched fields kept");
        assert_eq!(c[1]["name"], "sidecar");
        assert_eq!(c[2]["name"], "new");
    }

    #[test]
    fn env_merges_by_name_and_null_deletes() {
        let out = smp(
            &deployment(),
            json!({"spec": {"replicas": null, "template": {"spec": {"containers": [
                {"name": "nginx", "env": [{"name": "B", "value": "20"}, {"name": "C", "value": "3"}]}
            ]}}}}),
        );
        assert!(out["spec"].get("replicas").is_none());
        let env = &containers(&out)[0]["env"];
        assert_eq!(
            env,
            &json!([{"name": "A", "value": "1"}, {"name": "B", "value": "20"}, {"name": "C", "value": "3"}])
        );
    }

    #[test]
    fn patch_delete_removes_container() {
        let out = smp(
            &deployment(),
            json!({"spec": {"template": {"spec": {"containers": [
                {"name": "sidecar", "$patch": "delete"}
            ]}}}}),
        );
        let c = containers(&out);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0]["name"], "nginx");
    }

    #[test]
    fn patch_replace_in_list_and_map() {
        let out = smp(
            &deployment(),
            json!({"spec": {"template": {"spec": {"containers": [
                {"$patch": "replace"}, {"name": "only", "image": "x"}
            ]}}}}),
        );
        assert_eq!(
            containers(&out),
            &vec![json!({"name": "only", "image": "x"})]
        );
        let out = smp(
            &deployment(),
            json!({"metadata": {"labels": {"$patch": "replace", "x": "y"}}}),
        );
        assert_eq!(out["metadata"]["labels"], json!({"x": "y"}));
        let out = smp(
            &deployment(),
            json!({"spec": {"strategy": {"$patch": "delete"}}}),
        );
        assert!(out["spec"].get("strategy").is_none());
    }

    #[test]
    fn retain_keys_clears_other_fields() {
        let out = smp(
            &deployment(),
            json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}),
        );
        assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));
        let err = strategic_merge_patch(
            &deployment(),
            &json!({"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {}}}}),
            "apps/v1",
            "Deployment",
        );
        assert!(matches!(err, Err(PatchError::Invalid(_))));
    }

    #[test]
    fn set_element_order_reorders() {
        let out = smp(
            &deployment(),
            json!({"spec": {"template": {"spec": {
                "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "nginx"}],
                "containers": [{"name": "nginx", "image": "nginx:2"}]
            }}}}),
        );
        let names: Vec<_> = containers(&out).iter().map(|c| c["name"].clone()).collect();
        assert_eq!(names, vec![json!("sidecar"), json!("nginx")]);
        assert_eq!(containers(&out)[1]["image"], "nginx:2");
    }

    #[test]
    fn primitive_lists() {
        // finalizers merge as a set; args (atomic) are replaced
        let out = smp(
            &deployment(),
            json!({"metadata": {"finalizers": ["b", "a"]},
                   "spec": {"template": {"spec": {"containers": [{"name": "sidecar", "args": ["x"]}]}}}}),
        );
        assert_eq!(out["metadata"]["finalizers"], json!(["a", "b"]));
        assert_eq!(containers(&out)[1]["args"], json!(["x"]));
        let out = smp(
            &out,
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}),
        );
        assert_eq!(out["metadata"]["finalizers"], json!(["b"]));
    }

    #[test]
    fn tolerations_are_replaced() {
        let out = smp(
            &deployment(),
            json!({"spec": {"template": {"spec": {"tolerations": [{"key": "z", "operator": "Exists"}]}}}}),
        );
        assert_eq!(
            out["spec"]["template"]["spec"]["tolerations"],
            json!([{"key": "z", "operator": "Exists"}])
        );
    }

    #[test]
    fn missing_merge_key_is_invalid() {
        let err = strategic_merge_patch(
            &deployment(),
            &json!({"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}}),
            "apps/v1",
            "Deployment",
        )
        .unwrap_err();
        assert!(err.to_string().contains("merge key: name"), "{err}");
    }

    #[test]
    fn service_ports_merge_by_port() {
        let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
            "spec": {"selector": {"app": "a"}, "ports": [
                {"name": "http", "port": 80, "targetPort": 8080},
                {"name": "https", "port": 443}]}});
        let out = strategic_merge_patch(
            &svc,
            &json!({"spec": {"ports": [{"port": 80, "targetPort": 9090}, {"port": 53, "protocol": "UDP"}]}}),
            "v1",
            "Service",
        )
        .unwrap();
        assert_eq!(
            out["spec"]["ports"],
            json!([{"name": "http", "port": 80, "targetPort": 9090}, {"name": "https", "port": 443},
                   {"port": 53, "protocol": "UDP"}])
        );
    }

    #[test]
    fn pod_status_conditions_merge_by_type() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "status": {"conditions": [{"type": "Ready", "status": "False"}, {"type": "Initialized", "status": "True"}]}});
        let out = strategic_merge_patch(
            &pod,
            &json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}}),
            "v1",
            "Pod",
        )
        .unwrap();
        assert_eq!(
            out["status"]["conditions"][0],
            json!({"type": "Ready", "status": "True"})
        );
        assert_eq!(out["status"]["conditions"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn custom_resources_are_unsupported() {
        let err = strategic_merge_patch(&json!({}), &json!({}), "example.com/v1", "Widget");
        assert!(matches!(err, Err(PatchError::Unsupported { .. })));
    }
}
