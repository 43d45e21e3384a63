//! LimitRanger admission: defaults (`default`, `defaultRequest`) applied to
//! containers lacking requests/limits, then min/max/maxLimitRequestRatio
//! validation of containers, pods and PersistentVolumeClaims, with
//! upstream's messages.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use rkube_apimachinery::quantity::Quantity;
use rkube_apimachinery::quota::{parse_list, pod_requests_limits, ResourceList};

/// The annotation recording what the plugin set.
pub const ANNOTATION: &str = "kubernetes.io/limit-ranger";

fn items(lr: &Value) -> Vec<Value> {
    lr.pointer("/spec/limits")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn ty(item: &Value) -> &str {
    item.get("type").and_then(Value::as_str).unwrap_or("")
}

/// The container defaults of one limit item, as the API defaults a
/// LimitRange: `default` falls back to `max`, `defaultRequest` to
/// `default` then `min`.
fn container_defaults(item: &Value) -> (ResourceList, ResourceList) {
    let max = parse_list(item.get("max"));
    let min = parse_list(item.get("min"));
    let mut default = parse_list(item.get("default"));
    for (k, v) in &max {
        default.entry(k.clone()).or_insert(*v);
    }
    let mut request = parse_list(item.get("defaultRequest"));
    for (k, v) in default.iter().chain(min.iter()) {
        request.entry(k.clone()).or_insert(*v);
    }
    (request, default)
}

fn merge_container(
    c: &mut Value,
    req: &ResourceList,
    lim: &ResourceList,
    prefix: &str,
    notes: &mut Vec<String>,
) {
    let name = c
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if !c.get("resources").is_some_and(Value::is_object) {
        c["resources"] = json!({});
    }
    let mut set = |field: &str, defaults: &ResourceList| -> Vec<String> {
        let mut set = Vec::new();
        if defaults.is_empty() {
            return set;
        }
        let res = &mut c["resources"];
        if !res.get(field).is_some_and(Value::is_object) {
            res[field] = json!({});
        }
        for (k, v) in defaults {
            if res[field].get(k).is_none() {
                res[field][k] = json!(v.to_string());
                set.push(k.clone());
            }
        }
        if res[field].as_object().is_some_and(|m| m.is_empty()) {
            if let Some(m) = res.as_object_mut() {
                m.remove(field);
            }
        }
        set
    };
    let set_lim = set("limits", lim);
    let set_req = set("requests", req);
    if !set_req.is_empty() {
        notes.push(format!(
            "{} request for {prefix} {name}",
            set_req.join(", ")
        ));
    }
    if !set_lim.is_empty() {
        notes.push(format!("{} limit for {prefix} {name}", set_lim.join(", ")));
    }
}

/// Applies the Container defaults of `ranges` to the pod's containers and
/// records the annotation upstream sets.
pub fn default_pod(pod: &mut Value, ranges: &[Value]) {
    let mut notes = Vec::new();
    for lr in ranges {
        for item in items(lr) {
            if ty(&item) != "Container" {
                continue;
            }
            let (req, lim) = container_defaults(&item);
            if req.is_empty() && lim.is_empty() {
                continue;
            }
            for (field, prefix) in [
                ("containers", "container"),
                ("initContainers", "init container"),
            ] {
                if let Some(list) = pod
                    .pointer_mut(&format!("/spec/{field}"))
                    .and_then(Value::as_array_mut)
                {
                    for c in list {
                        merge_container(c, &req, &lim, prefix, &mut notes);
                    }
                }
            }
        }
    }
    if notes.is_empty() {
        return;
    }
    let meta = &mut pod["metadata"];
    if !meta.get("annotations").is_some_and(Value::is_object) {
        meta["annotations"] = json!({});
    }
    meta["annotations"][ANNOTATION] =
        json!(format!("LimitRanger plugin set: {}", notes.join("; ")));
}

fn min_constraint(
    kind: &str,
    res: &str,
    enforced: Quantity,
    req: &ResourceList,
    lim: &ResourceList,
) -> Option<String> {
    let Some(r) = req.get(res) else {
        return Some(format!(
            "minimum {res} usage per {kind} is {enforced}.  No request is specified"
        ));
    };
    if *r < enforced {
        return Some(format!(
            "minimum {res} usage per {kind} is {enforced}, but request is {r}"
        ));
    }
    match lim.get(res) {
        Some(l) if *l < enforced => Some(format!(
            "minimum {res} usage per {kind} is {enforced}, but limit is {l}"
        )),
        _ => None,
    }
}

fn max_constraint(
    kind: &str,
    res: &str,
    enforced: Quantity,
    req: &ResourceList,
    lim: &ResourceList,
) -> Option<String> {
    let Some(l) = lim.get(res) else {
        return Some(format!(
            "maximum {res} usage per {kind} is {enforced}.  No limit is specified"
        ));
    };
    if *l > enforced {
        return Some(format!(
            "maximum {res} usage per {kind} is {enforced}, but limit is {l}"
        ));
    }
    match req.get(res) {
        Some(r) if *r > enforced => Some(format!(
            "maximum {res} usage per {kind} is {enforced}, but request is {r}"
        )),
        _ => None,
    }
}

fn ratio_constraint(
    kind: &str,
    res: &str,
    enforced: Quantity,
    req: &ResourceList,
    lim: &ResourceList,
) -> Option<String> {
    let r = req.get(res).filter(|r| !r.is_zero());
    let Some(r) = r else {
        return Some(format!("{res} max limit to request ratio per {kind} is {enforced}, but no request is specified or request is 0"));
    };
    let l = lim.get(res).filter(|l| !l.is_zero());
    let Some(l) = l else {
        return Some(format!("{res} max limit to request ratio per {kind} is {enforced}, but no limit is specified or limit is 0"));
    };
    let ratio = l.milli_value() as f64 / r.milli_value() as f64;
    if ratio * 1000.0 > enforced.milli_value() as f64 {
        return Some(format!(
            "{res} max limit to request ratio per {kind} is {enforced}, but provided ratio is {ratio:.6}"
        ));
    }
    None
}

fn validate_lists(item: &Value, kind: &str, req: &ResourceList, lim: &ResourceList) -> Vec<String> {
    let mut errs = Vec::new();
    for (k, v) in parse_list(item.get("min")) {
        errs.extend(min_constraint(kind, &k, v, req, lim));
    }
    for (k, v) in parse_list(item.get("max")) {
        errs.extend(max_constraint(kind, &k, v, req, lim));
    }
    for (k, v) in parse_list(item.get("maxLimitRequestRatio")) {
        errs.extend(ratio_constraint(kind, &k, v, req, lim));
    }
    errs
}

/// Validates a (defaulted) pod against `ranges`; the error texts in order.
pub fn validate_pod(pod: &Value, ranges: &[Value]) -> Vec<String> {
    let mut errs = Vec::new();
    for lr in ranges {
        for item in items(lr) {
            match ty(&item) {
                "Container" => {
                    for field in ["containers", "initContainers"] {
                        let list = pod
                            .pointer(&format!("/spec/{field}"))
                            .and_then(Value::as_array)
                            .cloned()
                            .unwrap_or_default();
                        for c in list {
                            let req = parse_list(c.pointer("/resources/requests"));
                            let lim = parse_list(c.pointer("/resources/limits"));
                            errs.extend(validate_lists(&item, "Container", &req, &lim));
                        }
                    }
                }
                "Pod" => {
                    let (req, lim) = pod_requests_limits(pod);
                    errs.extend(validate_lists(&item, "Pod", &req, &lim));
                }
                _ => {}
            }
        }
    }
    errs
}

/// Validates a PersistentVolumeClaim's storage request against `ranges`.
pub fn validate_pvc(pvc: &Value, ranges: &[Value]) -> Vec<String> {
    let kind = "PersistentVolumeClaim";
    let req = parse_list(pvc.pointer("/spec/resources/requests"));
    let mut errs = Vec::new();
    for lr in ranges {
        for item in items(lr) {
            if ty(&item) != kind {
                continue;
            }
            for (k, v) in parse_list(item.get("min")) {
                errs.extend(min_constraint(kind, &k, v, &req, &BTreeMap::new()));
            }
            for (k, v) in parse_list(item.get("max")) {
                match req.get(&k) {
                    None => errs.push(format!(
                        "maximum {k} usage per {kind} is {v}.  No request is specified"
                    )),
                    Some(r) if *r > v => errs.push(format!(
                        "maximum {k} usage per {kind} is {v}, but request is {r}"
                    )),
                    _ => {}
                }
            }
        }
    }
    errs
}

/// Joins errors as Go's utilerrors aggregate prints them.
pub fn aggregate(errs: &[String]) -> String {
    match errs {
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lr(limits: Value) -> Value {
        json!({"spec": {"limits": limits}})
    }

    #[test]
    fn defaults_land_with_annotation() {
        let ranges = [lr(json!([{"type": "Container",
            "default": {"cpu": "500m", "memory": "256Mi"},
            "defaultRequest": {"cpu": "100m"}}]))];
        let mut pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [
            {"name": "a"},
            {"name": "b", "resources": {"limits": {"cpu": "1"}, "requests": {"cpu": "1"}}}]}});
        default_pod(&mut pod, &ranges);
        let a = &pod["spec"]["containers"][0]["resources"];
        assert_eq!(a["limits"], json!({"cpu": "500m", "memory": "256Mi"}));
        // defaultRequest memory falls back to default memory.
        assert_eq!(a["requests"], json!({"cpu": "100m", "memory": "256Mi"}));
        let b = &pod["spec"]["containers"][1]["resources"];
        assert_eq!(b["limits"], json!({"cpu": "1", "memory": "256Mi"}));
        assert_eq!(
            pod["metadata"]["annotations"][ANNOTATION],
            "LimitRanger plugin set: cpu, memory request for container a; cpu, memory limit for container a; memory request for container b; memory limit for container b"
        );
    }

    #[test]
    fn min_max_ratio_messages() {
        let ranges = [lr(
            json!([{"type": "Container", "min": {"cpu": "100m"}, "max": {"cpu": "2"},
            "maxLimitRequestRatio": {"cpu": "2"}}]),
        )];
        let pod = json!({"spec": {"containers": [{"name": "a", "resources": {
            "requests": {"cpu": "50m"}, "limits": {"cpu": "3"}}}]}});
        assert_eq!(
            validate_pod(&pod, &ranges),
            [
                "minimum cpu usage per Container is 100m, but request is 50m",
                "maximum cpu usage per Container is 2, but limit is 3",
                "cpu max limit to request ratio per Container is 2, but provided ratio is 60.000000",
            ]
        );
        let none = json!({"spec": {"containers": [{"name": "a"}]}});
        assert_eq!(
            validate_pod(&none, &ranges)[0],
            "minimum cpu usage per Container is 100m.  No request is specified"
        );
        let ok = json!({"spec": {"containers": [{"name": "a", "resources": {
            "requests": {"cpu": "500m"}, "limits": {"cpu": "1"}}}]}});
        assert!(validate_pod(&ok, &ranges).is_empty());
        assert_eq!(aggregate(&["a".into()]), "a");
        assert_eq!(aggregate(&["a".into(), "b".into()]), "[a, b]");
    }

    #[test]
    fn pvc_bounds() {
        let ranges = [lr(
            json!([{"type": "PersistentVolumeClaim", "min": {"storage": "1Gi"}, "max": {"storage": "10Gi"}}]),
        )];
        let small = json!({"spec": {"resources": {"requests": {"storage": "500Mi"}}}});
        assert_eq!(
            validate_pvc(&small, &ranges),
            ["minimum storage usage per PersistentVolumeClaim is 1Gi, but request is 500Mi"]
        );
        let big = json!({"spec": {"resources": {"requests": {"storage": "20Gi"}}}});
        assert_eq!(
            validate_pvc(&big, &ranges),
            ["maximum storage usage per PersistentVolumeClaim is 10Gi, but request is 20Gi"]
        );
    }
}
