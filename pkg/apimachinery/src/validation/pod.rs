//! Pod and pod-template validation (pkg/apis/core/validation): containers,
//! ports, env, volume mounts, resources, probes, volumes, policies and
//! tolerations, plus the pod update rule that only images, deadlines,
//! tolerations (additions) and scheduling gates (removals) may change.

use std::collections::HashSet;

use serde_json::Value;

use super::field::{arr, child, get, index, key, obj, quantity_str, sem_eq, str_at, Errs};
use super::meta::{annotations, labels};
use super::names::*;
use crate::quantity::Quantity;

/// What kind of spec is being validated.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum SpecOf {
    /// A Pod: images are required.
    Pod,
    /// A template inside a workload: images may be filled in later.
    Template,
}

const VOLUME_SOURCES_WITH_NAME: &[&str] = &["name"];

/// Validates a pod template (`metadata` labels/annotations and `spec`) at `p`.
pub(crate) fn pod_template(t: Option<&Value>, p: &str, e: &mut Errs) {
    let Some(t) = t else {
        e.required(p, "");
        return;
    };
    labels(
        obj(t, &["metadata", "labels"]),
        &format!("{p}.metadata.labels"),
        e,
    );
    annotations(
        obj(t, &["metadata", "annotations"]),
        &format!("{p}.metadata.annotations"),
        e,
    );
    pod_spec(
        get(t, &["spec"]).unwrap_or(&Value::Null),
        &child(p, "spec"),
        SpecOf::Template,
        e,
    );
}

/// Validates a PodSpec at path `p`.
pub(crate) fn pod_spec(spec: &Value, p: &str, of: SpecOf, e: &mut Errs) {
    let volumes = volumes(arr(spec, &["volumes"]), &child(p, "volumes"), e);
    let containers = arr(spec, &["containers"]);
    if containers.is_empty() {
        e.required(&child(p, "containers"), "");
    }
    let mut names = HashSet::new();
    for (list, field) in [
        (arr(spec, &["initContainers"]), "initContainers"),
        (containers, "containers"),
    ] {
        for (i, c) in list.iter().enumerate() {
            container(
                c,
                &index(&child(p, field), i),
                of,
                field == "initContainers",
                &volumes,
                &mut names,
                e,
            );
        }
    }
    let restart = str_at(spec, &["restartPolicy"]);
    match restart {
        "" => e.required(&child(p, "restartPolicy"), ""),
        "Always" | "OnFailure" | "Never" => {}
        other => e.not_supported(
            &child(p, "restartPolicy"),
            other,
            &["Always", "OnFailure", "Never"],
        ),
    }
    let dns = str_at(spec, &["dnsPolicy"]);
    if !matches!(
        dns,
        "" | "ClusterFirst" | "ClusterFirstWithHostNet" | "Default" | "None"
    ) {
        e.not_supported(
            &child(p, "dnsPolicy"),
            dns,
            &["ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"],
        );
    }
    e.nonnegative(
        &child(p, "terminationGracePeriodSeconds"),
        get(spec, &["terminationGracePeriodSeconds"]),
    );
    if let Some(ads) = get(spec, &["activeDeadlineSeconds"]).and_then(Value::as_i64) {
        if !(1..=i64::from(i32::MAX)).contains(&ads) {
            e.invalid(
                &child(p, "activeDeadlineSeconds"),
                ads,
                &inclusive_range_error(1, i32::MAX.into()),
            );
        }
    }
    labels(obj(spec, &["nodeSelector"]), &child(p, "nodeSelector"), e);
    let sa = str_at(spec, &["serviceAccountName"]);
    if !sa.is_empty() {
        e.each(
            &child(p, "serviceAccountName"),
            sa,
            is_dns1123_subdomain(sa),
        );
    }
    for f in ["hostname", "subdomain"] {
        let v = str_at(spec, &[f]);
        if !v.is_empty() {
            e.each(&child(p, f), v, is_dns1123_label(v));
        }
    }
    tolerations(arr(spec, &["tolerations"]), &child(p, "tolerations"), e);
}

/// Validates volumes; returns their names.
fn volumes(list: &[Value], p: &str, e: &mut Errs) -> HashSet<String> {
    let mut names = HashSet::new();
    for (i, v) in list.iter().enumerate() {
        let vp = index(p, i);
        let name = str_at(v, &["name"]);
        if name.is_empty() {
            e.required(&child(&vp, "name"), "");
        } else {
            e.each(&child(&vp, "name"), name, is_dns1123_label(name));
            if !names.insert(name.to_string()) {
                e.duplicate(&child(&vp, "name"), name);
            }
        }
        let sources: Vec<&String> = v
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(k, val)| !VOLUME_SOURCES_WITH_NAME.contains(&k.as_str()) && !val.is_null())
            .map(|(k, _)| k)
            .collect();
        match sources.as_slice() {
            [] => e.required(&vp, "must specify a volume type"),
            [_] => {}
            [_, second, ..] => e.forbidden(
                &child(&vp, second),
                "may not specify more than 1 volume type",
            ),
        }
        let required = [
            ("persistentVolumeClaim", "claimName"),
            ("hostPath", "path"),
            ("nfs", "path"),
            ("nfs", "server"),
        ];
        for (src, f) in required {
            if let Some(s) = get(v, &[src]) {
                if str_at(s, &[f]).is_empty() {
                    e.required(&format!("{vp}.{src}.{f}"), "");
                }
            }
        }
    }
    names
}

#[allow(clippy::too_many_arguments)]
fn container(
    c: &Value,
    p: &str,
    of: SpecOf,
    init: bool,
    volumes: &HashSet<String>,
    names: &mut HashSet<String>,
    e: &mut Errs,
) {
    let name = str_at(c, &["name"]);
    if name.is_empty() {
        e.required(&child(p, "name"), "");
    } else {
        e.each(&child(p, "name"), name, is_dns1123_label(name));
        if !names.insert(name.to_string()) {
            e.duplicate(&child(p, "name"), name);
        }
    }
    let image = str_at(c, &["image"]);
    if image.is_empty() && of == SpecOf::Pod {
        e.required(&child(p, "image"), "");
    } else if image.trim() != image {
        e.invalid(
            &child(p, "image"),
            image,
            "must not have leading or trailing whitespace",
        );
    }
    let pull = str_at(c, &["imagePullPolicy"]);
    if !matches!(pull, "" | "Always" | "IfNotPresent" | "Never") {
        e.not_supported(
            &child(p, "imagePullPolicy"),
            pull,
            &["Always", "IfNotPresent", "Never"],
        );
    }
    let tmp = str_at(c, &["terminationMessagePolicy"]);
    if !matches!(tmp, "" | "File" | "FallbackToLogsOnError") {
        e.not_supported(
            &child(p, "terminationMessagePolicy"),
            tmp,
            &["File", "FallbackToLogsOnError"],
        );
    }
    ports(arr(c, &["ports"]), &child(p, "ports"), e);
    env(arr(c, &["env"]), &child(p, "env"), e);
    mounts(
        arr(c, &["volumeMounts"]),
        &child(p, "volumeMounts"),
        volumes,
        e,
    );
    resources(get(c, &["resources"]), &child(p, "resources"), e);
    let sidecar = str_at(c, &["restartPolicy"]) == "Always";
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(pr) = get(c, &[probe]) {
            if init && !sidecar {
                e.forbidden(
                    &child(p, probe),
                    "may not be set for init containers without restartPolicy=Always",
                );
            } else {
                self::probe(pr, &child(p, probe), probe != "readinessProbe", e);
            }
        }
    }
}

fn ports(list: &[Value], p: &str, e: &mut Errs) {
    let mut names = HashSet::new();
    for (i, port) in list.iter().enumerate() {
        let pp = index(p, i);
        let name = str_at(port, &["name"]);
        if !name.is_empty() {
            e.each(&child(&pp, "name"), name, is_valid_port_name(name));
            if !names.insert(name) {
                e.duplicate(&child(&pp, "name"), name);
            }
        }
        match get(port, &["containerPort"]).and_then(Value::as_i64) {
            None | Some(0) => e.required(&child(&pp, "containerPort"), ""),
            Some(n) => {
                for m in is_valid_port_num(n) {
                    e.invalid(&child(&pp, "containerPort"), n, &m);
                }
            }
        }
        if let Some(n) = get(port, &["hostPort"])
            .and_then(Value::as_i64)
            .filter(|n| *n != 0)
        {
            for m in is_valid_port_num(n) {
                e.invalid(&child(&pp, "hostPort"), n, &m);
            }
        }
        protocol(port, &pp, e);
    }
}

/// `protocol` required and one of TCP/UDP/SCTP.
pub(crate) fn protocol(port: &Value, p: &str, e: &mut Errs) {
    match str_at(port, &["protocol"]) {
        "" => e.required(&child(p, "protocol"), ""),
        "TCP" | "UDP" | "SCTP" => {}
        other => e.not_supported(&child(p, "protocol"), other, &["SCTP", "TCP", "UDP"]),
    }
}

fn env(list: &[Value], p: &str, e: &mut Errs) {
    for (i, ev) in list.iter().enumerate() {
        let ep = index(p, i);
        let name = str_at(ev, &["name"]);
        if name.is_empty() {
            e.required(&child(&ep, "name"), "");
        } else {
            e.each(&child(&ep, "name"), name, is_env_var_name(name));
        }
        if let Some(from) = get(ev, &["valueFrom"]) {
            if !str_at(ev, &["value"]).is_empty() {
                e.invalid(
                    &child(&ep, "valueFrom"),
                    "",
                    "may not be specified when `value` is not empty",
                );
            }
            let n = [
                "fieldRef",
                "resourceFieldRef",
                "configMapKeyRef",
                "secretKeyRef",
            ]
            .iter()
            .filter(|k| get(from, &[k]).is_some())
            .count();
            if n == 0 {
                e.invalid(
                    &child(&ep, "valueFrom"),
                    "",
                    "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`",
                );
            } else if n > 1 {
                e.invalid(
                    &child(&ep, "valueFrom"),
                    "",
                    "may not have more than one field specified at a time",
                );
            }
        }
    }
}

fn mounts(list: &[Value], p: &str, volumes: &HashSet<String>, e: &mut Errs) {
    let mut paths = HashSet::new();
    for (i, m) in list.iter().enumerate() {
        let mp = index(p, i);
        let name = str_at(m, &["name"]);
        if name.is_empty() {
            e.required(&child(&mp, "name"), "");
        } else if !volumes.contains(name) {
            e.not_found(&child(&mp, "name"), name);
        }
        let path = str_at(m, &["mountPath"]);
        if path.is_empty() {
            e.required(&child(&mp, "mountPath"), "");
        } else if !paths.insert(path) {
            e.invalid(&child(&mp, "mountPath"), path, "must be unique");
        }
    }
}

fn resources(r: Option<&Value>, p: &str, e: &mut Errs) {
    let Some(r) = r else { return };
    let mut parsed = |section: &str| -> Vec<(String, String, Option<Quantity>)> {
        let sp = child(p, section);
        obj(r, &[section])
            .into_iter()
            .flatten()
            .map(|(k, v)| {
                let s = quantity_str(v);
                let q = Quantity::parse(&s);
                match q {
                    None => e.invalid(
                        &key(&sp, k),
                        s.as_str(),
                        "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
                    ),
                    Some(n) if n < Quantity::ZERO => e.invalid(&key(&sp, k), s.as_str(), "must be greater than or equal to 0"),
                    _ => {}
                }
                (k.clone(), s, q)
            })
            .collect()
    };
    let limits = parsed("limits");
    let requests = parsed("requests");
    for (k, s, q) in &requests {
        let limit = limits.iter().find(|(lk, ..)| lk == k);
        if let (Some(q), Some((_, ls, Some(l)))) = (q, limit) {
            if q > l {
                e.invalid(
                    &key(&child(p, "requests"), k),
                    s.as_str(),
                    &format!("must be less than or equal to {k} limit of {ls}"),
                );
            }
        }
    }
}

fn probe(pr: &Value, p: &str, success_must_be_one: bool, e: &mut Errs) {
    let handlers = ["exec", "httpGet", "tcpSocket", "grpc"];
    let set: Vec<&&str> = handlers
        .iter()
        .filter(|h| get(pr, &[h]).is_some())
        .collect();
    match set.as_slice() {
        [] => e.required(p, "must specify a handler type"),
        [_] => {}
        [_, second, ..] => e.forbidden(
            &child(p, second),
            "may not specify more than 1 handler type",
        ),
    }
    for f in [
        "initialDelaySeconds",
        "timeoutSeconds",
        "periodSeconds",
        "successThreshold",
        "failureThreshold",
    ] {
        e.nonnegative(&child(p, f), get(pr, &[f]));
    }
    if success_must_be_one {
        if let Some(n) = get(pr, &["successThreshold"])
            .and_then(Value::as_i64)
            .filter(|n| *n != 1)
        {
            e.invalid(&child(p, "successThreshold"), n, "must be 1");
        }
    }
}

fn tolerations(list: &[Value], p: &str, e: &mut Errs) {
    for (i, t) in list.iter().enumerate() {
        let tp = index(p, i);
        let k = str_at(t, &["key"]);
        if !k.is_empty() {
            e.each(&child(&tp, "key"), k, is_qualified_name(k));
        }
        match str_at(t, &["operator"]) {
            "" | "Equal" => {
                if k.is_empty() {
                    e.invalid(&child(&tp, "operator"), str_at(t, &["operator"]), "operator must be Exists when `key` is empty, which means \"match all values and all keys\"");
                }
            }
            "Exists" => {
                if !str_at(t, &["value"]).is_empty() {
                    e.invalid(
                        &child(&tp, "operator"),
                        str_at(t, &["value"]),
                        "value must be empty when `operator` is 'Exists'",
                    );
                }
            }
            other => e.not_supported(&child(&tp, "operator"), other, &["Equal", "Exists"]),
        }
        let effect = str_at(t, &["effect"]);
        if !matches!(effect, "" | "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
            e.not_supported(
                &child(&tp, "effect"),
                effect,
                &["NoExecute", "NoSchedule", "PreferNoSchedule"],
            );
        }
        if get(t, &["tolerationSeconds"]).is_some() && effect != "NoExecute" {
            e.invalid(
                &child(&tp, "effect"),
                effect,
                "effect must be 'NoExecute' when `tolerationSeconds` is set",
            );
        }
    }
}

const POD_UPDATE_MSG: &str = "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

/// The pod spec update rule (ValidatePodUpdate).
pub(crate) fn pod_update(new: &Value, old: &Value, e: &mut Errs) {
    let (ns, os) = (
        get(new, &["spec"]).unwrap_or(&Value::Null),
        get(old, &["spec"]).unwrap_or(&Value::Null),
    );
    for field in ["containers", "initContainers"] {
        let (nc, oc) = (arr(ns, &[field]), arr(os, &[field]));
        if nc.len() != oc.len() {
            e.forbidden(
                &format!("spec.{field}"),
                "pod updates may not add or remove containers",
            );
            return;
        }
        for (i, c) in nc.iter().enumerate() {
            if str_at(c, &["image"]).is_empty() {
                e.required(&format!("spec.{field}[{i}].image"), "");
            }
        }
    }
    match (
        get(ns, &["activeDeadlineSeconds"]),
        get(os, &["activeDeadlineSeconds"]),
    ) {
        (Some(n), Some(o)) if n.as_i64() > o.as_i64() => {
            e.invalid(
                "spec.activeDeadlineSeconds",
                n.clone(),
                "must be less than or equal to previous value",
            );
            return;
        }
        (None, Some(_)) => {
            e.invalid(
                "spec.activeDeadlineSeconds",
                Value::Null,
                "must not update from a positive integer to nil value",
            );
            return;
        }
        _ => {}
    }
    // Munge the updatable fields to their old values, then compare.
    let mut munged = ns.clone();
    for field in ["containers", "initContainers"] {
        let old_list = arr(os, &[field]);
        if let Some(list) = munged.get_mut(field).and_then(Value::as_array_mut) {
            for (c, o) in list.iter_mut().zip(old_list) {
                c["image"] = o.get("image").cloned().unwrap_or(Value::Null);
            }
        }
    }
    let Some(m) = munged.as_object_mut() else {
        return;
    };
    match os.get("activeDeadlineSeconds") {
        Some(v) => m.insert("activeDeadlineSeconds".into(), v.clone()),
        None => m.remove("activeDeadlineSeconds"),
    };
    let old_grace = get(os, &["terminationGracePeriodSeconds"]).and_then(Value::as_i64);
    if old_grace.is_some_and(|g| g < 0)
        && get(ns, &["terminationGracePeriodSeconds"]).and_then(Value::as_i64) == Some(1)
    {
        m.insert(
            "terminationGracePeriodSeconds".into(),
            os["terminationGracePeriodSeconds"].clone(),
        );
    }
    let (nt, ot) = (arr(ns, &["tolerations"]), arr(os, &["tolerations"]));
    if ot
        .iter()
        .all(|t| nt.iter().any(|n| sem_eq(Some(n), Some(t))))
    {
        m.insert("tolerations".into(), Value::Array(ot.to_vec()));
    }
    let (ng, og) = (arr(ns, &["schedulingGates"]), arr(os, &["schedulingGates"]));
    if ng.iter().all(|g| og.contains(g)) {
        m.insert("schedulingGates".into(), Value::Array(og.to_vec()));
    }
    if !sem_eq(Some(&munged), Some(os)) {
        e.forbidden("spec", POD_UPDATE_MSG);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(spec: Value) -> Vec<(String, String)> {
        let mut e = Errs::default();
        pod_spec(&spec, "spec", SpecOf::Pod, &mut e);
        e.0.into_iter().map(|c| (c.field, c.message)).collect()
    }

    fn ok_spec() -> Value {
        json!({"restartPolicy": "Always", "containers": [{"name": "app", "image": "nginx",
            "ports": [{"name": "http", "containerPort": 80, "protocol": "TCP"}],
            "volumeMounts": [{"name": "data", "mountPath": "/data"}],
            "resources": {"requests": {"cpu": "100m"}, "limits": {"cpu": "1"}}}],
            "volumes": [{"name": "data", "emptyDir": {}}]})
    }

    #[test]
    fn valid_spec() {
        assert_eq!(check(ok_spec()), vec![]);
    }

    #[test]
    fn common_mistakes() {
        assert_eq!(
            check(json!({"restartPolicy": "Always"})),
            vec![("spec.containers".into(), "Required value".into())]
        );
        let dup = json!({"restartPolicy": "Always", "initContainers": [{"name": "a", "image": "x"}],
            "containers": [{"name": "a", "image": "x"}]});
        assert_eq!(
            check(dup),
            vec![(
                "spec.containers[0].name".into(),
                "Duplicate value: \"a\"".into()
            )]
        );
        let mut s = ok_spec();
        s["containers"][0]["image"] = json!("");
        s["containers"][0]["ports"][0]["containerPort"] = json!(70000);
        s["containers"][0]["volumeMounts"][0]["name"] = json!("nope");
        s["containers"][0]["resources"]["requests"]["cpu"] = json!("2");
        s["restartPolicy"] = json!("Sometimes");
        s["volumes"][0]["configMap"] = json!({"name": "c"});
        let got = check(s);
        let fields: Vec<&str> = got.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(
            fields,
            [
                "spec.volumes[0].configMap",
                "spec.containers[0].image",
                "spec.containers[0].ports[0].containerPort",
                "spec.containers[0].volumeMounts[0].name",
                "spec.containers[0].resources.requests[cpu]",
                "spec.restartPolicy",
            ]
        );
        assert_eq!(
            got[4].1,
            "Invalid value: \"2\": must be less than or equal to cpu limit of 1"
        );
        assert_eq!(got[5].1, "Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\"");
    }

    #[test]
    fn update_rules() {
        let old = json!({"spec": ok_spec()});
        let mut new = old.clone();
        new["spec"]["containers"][0]["image"] = json!("nginx:1.27");
        new["spec"]["tolerations"] = json!([{"key": "k", "operator": "Exists"}]);
        let mut e = Errs::default();
        pod_update(&new, &old, &mut e);
        assert!(e.0.is_empty());
        new["spec"]["containers"][0]["ports"][0]["containerPort"] = json!(81);
        pod_update(&new, &old, &mut e);
        assert_eq!(e.0[0].field, "spec");
        assert!(e.0[0].message.starts_with(
            "Forbidden: pod updates may not change fields other than `spec.containers[*].image`"
        ));
    }
}
