//! Validation of core/v1 kinds other than pods: Service, ConfigMap, Secret,
//! Namespace-free checks for PersistentVolumeClaim, and coordination Lease.

use std::collections::HashSet;

use serde_json::{Map, Value};

use super::field::{arr, child, get, index, key, obj, str_at, Errs};
use super::names::*;
use super::pod::protocol;

/// Upstream's cap on ConfigMap and Secret payloads.
pub const MAX_DATA_SIZE: usize = 1024 * 1024;

/// Service spec, and on update the clusterIP rule.
pub(crate) fn service(o: &Value, old: Option<&Value>, e: &mut Errs) {
    let spec = get(o, &["spec"]).unwrap_or(&Value::Null);
    let ty = str_at(spec, &["type"]);
    let ty = if ty.is_empty() { "ClusterIP" } else { ty };
    if !matches!(
        ty,
        "ClusterIP" | "ExternalName" | "LoadBalancer" | "NodePort"
    ) {
        e.not_supported(
            "spec.type",
            ty,
            &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"],
        );
    }
    let headless = str_at(spec, &["clusterIP"]) == "None";
    let ports = arr(spec, &["ports"]);
    if ports.is_empty() && !headless && ty != "ExternalName" {
        e.required("spec.ports", "");
    }
    if ty == "ExternalName" {
        let name = str_at(spec, &["externalName"]);
        if name.is_empty() {
            e.required("spec.externalName", "");
        } else {
            let trimmed = name.strip_suffix('.').unwrap_or(name);
            e.each("spec.externalName", name, is_dns1123_subdomain(trimmed));
        }
    }
    let require_name = ports.len() > 1;
    let mut names = HashSet::new();
    let mut seen = HashSet::new();
    for (i, sp) in ports.iter().enumerate() {
        let pp = index("spec.ports", i);
        let name = str_at(sp, &["name"]);
        if require_name && name.is_empty() {
            e.required(&child(&pp, "name"), "");
        } else if !name.is_empty() {
            e.each(&child(&pp, "name"), name, is_dns1123_label(name));
            if !names.insert(name) {
                e.duplicate(&child(&pp, "name"), name);
            }
        }
        let port = get(sp, &["port"]).and_then(Value::as_i64).unwrap_or(0);
        for m in is_valid_port_num(port) {
            e.invalid(&child(&pp, "port"), port, &m);
        }
        protocol(sp, &pp, e);
        match get(sp, &["targetPort"]) {
            Some(Value::Number(n)) => {
                let n = n.as_i64().unwrap_or(0);
                for m in is_valid_port_num(n) {
                    e.invalid(&child(&pp, "targetPort"), n, &m);
                }
            }
            Some(Value::String(s)) => e.each(&child(&pp, "targetPort"), s, is_valid_port_name(s)),
            _ => {}
        }
        if get(sp, &["nodePort"])
            .and_then(Value::as_i64)
            .is_some_and(|n| n != 0)
            && ty == "ClusterIP"
        {
            e.forbidden(
                &child(&pp, "nodePort"),
                "may not be used when `type` is 'ClusterIP'",
            );
        }
        let key = (port, str_at(sp, &["protocol"]).to_string());
        if !seen.insert(key.clone()) {
            e.duplicate(&pp, serde_json::json!({"port": key.0, "protocol": key.1}));
        }
    }
    for (i, f) in arr(spec, &["ipFamilies"]).iter().enumerate() {
        let f = f.as_str().unwrap_or("");
        if !matches!(f, "IPv4" | "IPv6") {
            e.not_supported(&index("spec.ipFamilies", i), f, &["IPv4", "IPv6"]);
        }
    }
    let pol = str_at(spec, &["ipFamilyPolicy"]);
    if !matches!(
        pol,
        "" | "SingleStack" | "PreferDualStack" | "RequireDualStack"
    ) {
        e.not_supported(
            "spec.ipFamilyPolicy",
            pol,
            &["PreferDualStack", "RequireDualStack", "SingleStack"],
        );
    }
    let sa = str_at(spec, &["sessionAffinity"]);
    if !matches!(sa, "" | "None" | "ClientIP") {
        e.not_supported("spec.sessionAffinity", sa, &["ClientIP", "None"]);
    }
    for (f, vals) in [
        ("externalTrafficPolicy", ["Cluster", "Local"]),
        ("internalTrafficPolicy", ["Cluster", "Local"]),
    ] {
        let v = str_at(spec, &[f]);
        if !v.is_empty() && !vals.contains(&v) {
            e.not_supported(&format!("spec.{f}"), v, &vals);
        }
    }
    super::meta::labels(obj(spec, &["selector"]), "spec.selector", e);

    let Some(old) = old else { return };
    let old_ty = str_at(old, &["spec", "type"]);
    let (new_ip, old_ip) = (
        str_at(spec, &["clusterIP"]),
        str_at(old, &["spec", "clusterIP"]),
    );
    if ty != "ExternalName"
        && old_ty != "ExternalName"
        && !old_ip.is_empty()
        && !new_ip.is_empty()
        && new_ip != old_ip
    {
        let ips = get(spec, &["clusterIPs"])
            .cloned()
            .unwrap_or_else(|| serde_json::json!([new_ip]));
        e.invalid("spec.clusterIPs[0]", ips, "may not change once set");
    }
}

fn data_keys(m: Option<&Map<String, Value>>, p: &str, e: &mut Errs) -> usize {
    let mut total = 0;
    for (k, v) in m.into_iter().flatten() {
        e.each(&key(p, k), k, is_config_map_key(k));
        total += v.as_str().map_or(0, str::len);
    }
    total
}

/// Decoded size of a base64 string.
fn b64_len(s: &str) -> usize {
    let pad = s.bytes().rev().take_while(|b| *b == b'=').count();
    (s.len() / 4 * 3).saturating_sub(pad) + (s.len() % 4).saturating_sub(1)
}

fn immutable_data(o: &Value, old: Option<&Value>, fields: &[&str], e: &mut Errs) {
    let Some(old) = old else { return };
    if get(old, &["immutable"]).and_then(Value::as_bool) != Some(true) {
        return;
    }
    if get(o, &["immutable"]).and_then(Value::as_bool) != Some(true) {
        e.forbidden("immutable", "field is immutable when `immutable` is set");
    }
    for f in fields {
        if get(o, &[f]) != get(old, &[f]) {
            e.forbidden(f, "field is immutable when `immutable` is set");
        }
    }
}

/// ConfigMap keys, size and immutability.
pub(crate) fn config_map(o: &Value, old: Option<&Value>, e: &mut Errs) {
    let data = obj(o, &["data"]);
    let binary = obj(o, &["binaryData"]);
    let mut total = data_keys(data, "data", e);
    for (k, v) in binary.into_iter().flatten() {
        e.each(&key("binaryData", k), k, is_config_map_key(k));
        total += v.as_str().map_or(0, b64_len);
    }
    for k in data.into_iter().flatten().map(|(k, _)| k) {
        if binary.is_some_and(|b| b.contains_key(k)) {
            e.invalid(
                &key("data", k),
                k.as_str(),
                "duplicate of key present in binaryData",
            );
        }
    }
    if total > MAX_DATA_SIZE {
        e.too_long("", MAX_DATA_SIZE);
    }
    immutable_data(o, old, &["data", "binaryData"], e);
}

/// Secret keys, size, type-specific required keys, immutability.
pub(crate) fn secret(o: &Value, old: Option<&Value>, e: &mut Errs) {
    let mut total = 0;
    for (k, v) in obj(o, &["data"]).into_iter().flatten() {
        e.each(&key("data", k), k, is_config_map_key(k));
        total += v.as_str().map_or(0, b64_len);
    }
    total += data_keys(obj(o, &["stringData"]), "data", e);
    if total > MAX_DATA_SIZE {
        e.too_long("data", MAX_DATA_SIZE);
    }
    let has = |k: &str| {
        obj(o, &["data"]).is_some_and(|d| d.contains_key(k))
            || obj(o, &["stringData"]).is_some_and(|d| d.contains_key(k))
    };
    let ty = str_at(o, &["type"]);
    let required: &[&str] = match ty {
        "kubernetes.io/dockerconfigjson" => &[".dockerconfigjson"],
        "kubernetes.io/dockercfg" => &[".dockercfg"],
        "kubernetes.io/tls" => &["tls.crt", "tls.key"],
        "kubernetes.io/ssh-auth" => &["ssh-privatekey"],
        _ => &[],
    };
    for k in required {
        if !has(k) {
            e.required(&key("data", k), "");
        }
    }
    if ty == "kubernetes.io/service-account-token"
        && str_at(
            o,
            &[
                "metadata",
                "annotations",
                "kubernetes.io/service-account.name",
            ],
        )
        .is_empty()
    {
        e.required(
            "metadata.annotations[kubernetes.io/service-account.name]",
            "",
        );
    }
    if ty == "kubernetes.io/basic-auth" && !has("username") && !has("password") {
        e.required("data[username]", "");
        e.required("data[password]", "");
    }
    if let Some(old) = old {
        e.immutable("type", get(o, &["type"]), get(old, &["type"]));
    }
    immutable_data(o, old, &["data"], e);
}

/// PersistentVolumeClaim: access modes and a storage request.
pub(crate) fn pvc(o: &Value, old: Option<&Value>, e: &mut Errs) {
    let spec = get(o, &["spec"]).unwrap_or(&Value::Null);
    let modes = arr(spec, &["accessModes"]);
    if modes.is_empty() {
        e.required("spec.accessModes", "at least 1 access mode is required");
    }
    let supported = [
        "ReadOnlyMany",
        "ReadWriteMany",
        "ReadWriteOnce",
        "ReadWriteOncePod",
    ];
    for m in modes.iter().map(|m| m.as_str().unwrap_or("")) {
        if !supported.contains(&m) {
            e.not_supported("spec.accessModes", m, &supported);
        }
    }
    if get(spec, &["resources", "requests", "storage"]).is_none() {
        e.required("spec.resources[storage]", "");
    }
    let vm = str_at(spec, &["volumeMode"]);
    if !matches!(vm, "" | "Filesystem" | "Block") {
        e.not_supported("spec.volumeMode", vm, &["Block", "Filesystem"]);
    }
    if let Some(old) = old {
        let strip = |v: &Value| {
            let mut s = super::field::normalized(get(v, &["spec"]).unwrap_or(&Value::Null));
            if let Some(m) = s.as_object_mut() {
                m.remove("resources");
                m.remove("volumeAttributesClassName");
                // Binding fills volumeName once.
                if get(old, &["spec", "volumeName"]).is_none() {
                    m.remove("volumeName");
                }
            }
            s
        };
        if strip(o) != strip(old) {
            e.forbidden("spec", "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims");
        }
    }
}

/// coordination.k8s.io Lease.
pub(crate) fn lease(o: &Value, e: &mut Errs) {
    if let Some(n) = get(o, &["spec", "leaseDurationSeconds"])
        .and_then(Value::as_i64)
        .filter(|n| *n <= 0)
    {
        e.invalid("spec.leaseDurationSeconds", n, "must be greater than 0");
    }
    e.nonnegative(
        "spec.leaseTransitions",
        get(o, &["spec", "leaseTransitions"]),
    );
}

/// core/v1 Event: the involved object's namespace must match.
pub(crate) fn event(o: &Value, e: &mut Errs) {
    let ns = str_at(o, &["metadata", "namespace"]);
    let ins = str_at(o, &["involvedObject", "namespace"]);
    if !ins.is_empty() && ins != ns {
        e.invalid(
            "involvedObject.namespace",
            ins,
            "does not match event.namespace",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn service_rules() {
        let ok = json!({"spec": {"type": "ClusterIP", "ports": [{"port": 80, "protocol": "TCP", "targetPort": 8080}]}});
        let mut e = Errs::default();
        service(&ok, None, &mut e);
        assert!(e.0.is_empty());
        let bad = json!({"spec": {"type": "Fancy", "ports": [{"port": 0, "protocol": "ICMP"}, {"port": 81, "protocol": "TCP"}]}});
        service(&bad, None, &mut e);
        let fields: Vec<&str> = e.0.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "spec.type",
                "spec.ports[0].name",
                "spec.ports[0].port",
                "spec.ports[0].protocol",
                "spec.ports[1].name"
            ]
        );
        let mut e = Errs::default();
        service(&json!({"spec": {"clusterIP": "None"}}), None, &mut e);
        assert!(e.0.is_empty());
        let mut old = ok.clone();
        old["spec"]["clusterIP"] = json!("10.96.0.5");
        let mut new = ok.clone();
        new["spec"]["clusterIP"] = json!("10.96.0.6");
        service(&new, Some(&old), &mut e);
        assert_eq!(
            e.0[0].message,
            "Invalid value: [\"10.96.0.6\"]: may not change once set"
        );
    }

    #[test]
    fn configmap_and_secret() {
        let mut e = Errs::default();
        config_map(&json!({"data": {"a b": "x", "ok.key": "y"}}), None, &mut e);
        assert_eq!(e.0[0].field, "data[a b]");
        assert!(e.0[0].message.contains(
            "a valid config key must consist of alphanumeric characters, '-', '_' or '.'"
        ));
        let mut e = Errs::default();
        config_map(
            &json!({"data": {"k": "x".repeat(MAX_DATA_SIZE + 1)}}),
            None,
            &mut e,
        );
        assert_eq!(e.0[0].reason, "FieldValueTooLong");
        let old = json!({"immutable": true, "data": {"k": "1"}});
        let mut e = Errs::default();
        config_map(
            &json!({"immutable": true, "data": {"k": "2"}}),
            Some(&old),
            &mut e,
        );
        assert_eq!(
            e.0[0].message,
            "Forbidden: field is immutable when `immutable` is set"
        );
        let mut e = Errs::default();
        secret(
            &json!({"type": "kubernetes.io/tls", "data": {"tls.crt": "eA=="}}),
            Some(&json!({"type": "Opaque"})),
            &mut e,
        );
        let fields: Vec<&str> = e.0.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(fields, ["data[tls.key]", "type"]);
        assert_eq!(b64_len("eA=="), 1);
        assert_eq!(b64_len("YWJj"), 3);
    }
}
