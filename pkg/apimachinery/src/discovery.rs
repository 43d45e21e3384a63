//! API discovery documents: the legacy `/api`, `/api/v1`, `/apis`,
//! `/apis/<group>` and `/apis/<group>/<version>` documents (meta/v1
//! `APIVersions`, `APIGroupList`, `APIGroup`, `APIResourceList`) and the
//! aggregated discovery list (`apidiscovery.k8s.io/v2` `APIGroupDiscoveryList`)
//! that kubectl asks for first. All are built from the resource table.

use std::cmp::Ordering;

use base64::Engine as _;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::resource::ResourceInfo;

/// `/api`: the legacy core versions and the server address.
pub fn api_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}
        ],
    })
}

/// `/apis`: every named group (core excluded) with its versions, preferred first.
pub fn api_group_list(resources: &[ResourceInfo]) -> Value {
    let groups: Vec<Value> = group_names(resources)
        .into_iter()
        .filter(|g| !g.is_empty())
        .filter_map(|g| group_doc(resources, &g))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `/apis/<group>`: one group with its versions, or None when not served.
pub fn api_group(resources: &[ResourceInfo], group: &str) -> Option<Value> {
    if group.is_empty() {
        return None;
    }
    let mut doc = group_doc(resources, group)?;
    let obj = doc.as_object_mut()?;
    let mut out = Map::new();
    out.insert("kind".into(), "APIGroup".into());
    out.insert("apiVersion".into(), "v1".into());
    out.append(obj);
    Some(Value::Object(out))
}

/// `/api/v1` or `/apis/<group>/<version>`: the resources of one group-version,
/// subresources included as `"<plural>/<sub>"` entries; None when not served.
pub fn api_resource_list(resources: &[ResourceInfo], group: &str, version: &str) -> Option<Value> {
    let served: Vec<&ResourceInfo> = resources
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .collect();
    if served.is_empty() {
        return None;
    }
    let mut list = Vec::new();
    for r in served {
        let mut e = Map::new();
        e.insert("name".into(), r.plural.clone().into());
        e.insert("singularName".into(), r.singular.clone().into());
        e.insert("namespaced".into(), r.namespaced.into());
        e.insert("kind".into(), r.kind.clone().into());
        e.insert("verbs".into(), json!(r.verbs));
        if !r.short_names.is_empty() {
            e.insert("shortNames".into(), json!(r.short_names));
        }
        if !r.categories.is_empty() {
            e.insert("categories".into(), json!(r.categories));
        }
        if is_stored(r) {
            e.insert("storageVersionHash".into(), storage_version_hash(r).into());
        }
        list.push(Value::Object(e));
        for sub in &r.subresources {
            let (g, v, kind) = subresource_kind(r, sub);
            let mut e = Map::new();
            e.insert("name".into(), format!("{}/{sub}", r.plural).into());
            e.insert("singularName".into(), "".into());
            e.insert("namespaced".into(), r.namespaced.into());
            if g != r.group || v != r.version {
                e.insert("group".into(), g.into());
                e.insert("version".into(), v.into());
            }
            e.insert("kind".into(), kind.into());
            e.insert("verbs".into(), json!(subresource_verbs(sub)));
            list.push(Value::Object(e));
        }
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": gv,
        "resources": list,
    }))
}

/// Aggregated discovery (`APIGroupDiscoveryList`): `legacy` selects the `/api`
/// document (the core group, named ""), otherwise `/apis` (all named groups).
/// `api_version` is `apidiscovery.k8s.io/v2` or `.../v2beta1` (same shape).
pub fn aggregated(resources: &[ResourceInfo], legacy: bool, api_version: &str) -> Value {
    let items: Vec<Value> = group_names(resources)
        .into_iter()
        .filter(|g| g.is_empty() == legacy)
        .map(|g| {
            let versions: Vec<Value> = group_versions(resources, &g)
                .into_iter()
                .map(|v| {
                    let res: Vec<Value> = resources
                        .iter()
                        .filter(|r| r.group == g && r.version == v)
                        .map(resource_discovery)
                        .collect();
                    json!({"version": v, "resources": res, "freshness": "Current"})
                })
                .collect();
            json!({"metadata": {"name": g, "creationTimestamp": null}, "versions": versions})
        })
        .collect();
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": api_version,
        "metadata": {},
        "items": items,
    })
}

fn resource_discovery(r: &ResourceInfo) -> Value {
    let mut e = Map::new();
    e.insert("resource".into(), r.plural.clone().into());
    e.insert(
        "responseKind".into(),
        json!({"group": r.group, "version": r.version, "kind": r.kind}),
    );
    e.insert(
        "scope".into(),
        if r.namespaced {
            "Namespaced"
        } else {
            "Cluster"
        }
        .into(),
    );
    e.insert("singularResource".into(), r.singular.clone().into());
    e.insert("verbs".into(), json!(r.verbs));
    if !r.short_names.is_empty() {
        e.insert("shortNames".into(), json!(r.short_names));
    }
    if !r.categories.is_empty() {
        e.insert("categories".into(), json!(r.categories));
    }
    if !r.subresources.is_empty() {
        let subs: Vec<Value> = r
            .subresources
            .iter()
            .map(|sub| {
                let (g, v, kind) = subresource_kind(r, sub);
                json!({
                    "subresource": sub,
                    "responseKind": {"group": g, "version": v, "kind": kind},
                    "verbs": subresource_verbs(sub),
                })
            })
            .collect();
        e.insert("subresources".into(), Value::Array(subs));
    }
    Value::Object(e)
}

/// Whether the resource is persisted (virtual create-only resources such as
/// reviews and bindings are not, and carry no storage version hash).
fn is_stored(r: &ResourceInfo) -> bool {
    r.verbs.iter().any(|v| v == "get")
}

/// kube-apiserver's storage version hash: base64 of the first 8 bytes of
/// sha256("<group>/<version>/<kind>").
pub fn storage_version_hash(r: &ResourceInfo) -> String {
    let digest = Sha256::digest(format!("{}/{}/{}", r.group, r.version, r.kind).as_bytes());
    base64::engine::general_purpose::STANDARD.encode(&digest[..8])
}

/// Verbs of a subresource, as kube-apiserver reports them.
pub fn subresource_verbs(sub: &str) -> &'static [&'static str] {
    match sub {
        "binding" | "eviction" | "token" => &["create"],
        "log" => &["get"],
        "exec" | "attach" | "portforward" => &["create", "get"],
        "proxy" => &["create", "delete", "get", "patch", "update"],
        "finalize" => &["update"],
        // status, scale, ephemeralcontainers, resize and anything else.
        _ => &["get", "patch", "update"],
    }
}

/// (group, version, kind) a subresource accepts and returns.
pub fn subresource_kind(r: &ResourceInfo, sub: &str) -> (String, String, String) {
    let own = |kind: &str| (r.group.clone(), r.version.clone(), kind.to_string());
    let other = |g: &str, v: &str, k: &str| (g.to_string(), v.to_string(), k.to_string());
    match sub {
        "scale" => other("autoscaling", "v1", "Scale"),
        "eviction" => other("policy", "v1", "Eviction"),
        "token" => other("authentication.k8s.io", "v1", "TokenRequest"),
        "binding" => other("", "v1", "Binding"),
        "exec" => own("PodExecOptions"),
        "attach" => own("PodAttachOptions"),
        "portforward" => own("PodPortForwardOptions"),
        "proxy" => own(&format!("{}ProxyOptions", r.kind)),
        _ => own(&r.kind),
    }
}

/// Group names in order of first appearance ("" for core).
fn group_names(resources: &[ResourceInfo]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for r in resources {
        if !out.contains(&r.group) {
            out.push(r.group.clone());
        }
    }
    out
}

/// Served versions of a group, most preferred first.
pub fn group_versions(resources: &[ResourceInfo], group: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for r in resources.iter().filter(|r| r.group == group) {
        if !out.contains(&r.version) {
            out.push(r.version.clone());
        }
    }
    out.sort_by(|a, b| compare_versions(a, b));
    out
}

fn group_doc(resources: &[ResourceInfo], group: &str) -> Option<Value> {
    let versions: Vec<Value> = group_versions(resources, group)
        .into_iter()
        .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
        .collect();
    let preferred = versions.first()?.clone();
    Some(json!({"name": group, "versions": versions, "preferredVersion": preferred}))
}

/// Kubernetes version priority: GA before beta before alpha, higher numbers
/// first; versions not of the `v<N>[(alpha|beta)<M>]` form sort last, by name.
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    fn parse(v: &str) -> Option<(u64, u8, u64)> {
        let rest = v.strip_prefix('v')?;
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        let major: u64 = rest[..digits].parse().ok()?;
        let tail = &rest[digits..];
        if tail.is_empty() {
            return Some((major, 2, 0));
        }
        let (level, num) = if let Some(n) = tail.strip_prefix("beta") {
            (1, n)
        } else if let Some(n) = tail.strip_prefix("alpha") {
            (0, n)
        } else {
            return None;
        };
        Some((major, level, num.parse().ok()?))
    }
    match (parse(a), parse(b)) {
        (Some((ma, la, na)), Some((mb, lb, nb))) => lb.cmp(&la).then(mb.cmp(&ma)).then(nb.cmp(&na)),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => a.cmp(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::builtin_resources;

    #[test]
    fn legacy_documents() {
        let all = builtin_resources();
        let v = api_versions("10.0.0.1:6443");
        assert_eq!(
            v["serverAddressByClientCIDRs"][0]["serverAddress"],
            "10.0.0.1:6443"
        );
        let list = api_resource_list(&all, "", "v1").unwrap();
        assert_eq!(list["groupVersion"], "v1");
        let res = list["resources"].as_array().unwrap();
        let pods = res.iter().find(|r| r["name"] == "pods").unwrap();
        assert_eq!(pods["shortNames"], json!(["po"]));
        assert_eq!(pods["storageVersionHash"], "xPOwRZ+Yhw8=");
        let exec = res.iter().find(|r| r["name"] == "pods/exec").unwrap();
        assert_eq!(exec["verbs"], json!(["create", "get"]));
        assert_eq!(exec["kind"], "PodExecOptions");
        let evict = res.iter().find(|r| r["name"] == "pods/eviction").unwrap();
        assert_eq!(
            (&evict["group"], &evict["version"]),
            (&json!("policy"), &json!("v1"))
        );
        let bindings = res.iter().find(|r| r["name"] == "bindings").unwrap();
        assert_eq!(bindings["verbs"], json!(["create"]));
        assert!(bindings.get("storageVersionHash").is_none());
        assert!(api_resource_list(&all, "nope", "v1").is_none());
    }

    #[test]
    fn groups() {
        let all = builtin_resources();
        let list = api_group_list(&all);
        assert_eq!(list["kind"], "APIGroupList");
        let groups = list["groups"].as_array().unwrap();
        assert!(groups.iter().all(|g| g["name"] != ""));
        let apps = api_group(&all, "apps").unwrap();
        assert_eq!(apps["kind"], "APIGroup");
        assert_eq!(apps["preferredVersion"]["groupVersion"], "apps/v1");
        assert!(api_group(&all, "").is_none());
        let scale = api_resource_list(&all, "apps", "v1").unwrap()["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "deployments/scale")
            .cloned()
            .unwrap();
        assert_eq!(scale["group"], "autoscaling");
        assert_eq!(scale["kind"], "Scale");
    }

    #[test]
    fn aggregated_shape() {
        let all = builtin_resources();
        let core = aggregated(&all, true, "apidiscovery.k8s.io/v2");
        assert_eq!(core["kind"], "APIGroupDiscoveryList");
        let items = core["items"].as_array().unwrap();
        assert_eq!(items.len(), 1);
        assert_eq!(items[0]["metadata"]["name"], "");
        let v1 = &items[0]["versions"][0];
        assert_eq!(v1["freshness"], "Current");
        let pods = v1["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["resource"] == "pods")
            .unwrap();
        assert_eq!(pods["scope"], "Namespaced");
        assert_eq!(
            pods["responseKind"],
            json!({"group": "", "version": "v1", "kind": "Pod"})
        );
        let status = pods["subresources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["subresource"] == "status");
        assert_eq!(status.unwrap()["verbs"], json!(["get", "patch", "update"]));

        let apis = aggregated(&all, false, "apidiscovery.k8s.io/v2beta1");
        assert_eq!(apis["apiVersion"], "apidiscovery.k8s.io/v2beta1");
        let names: Vec<&str> = apis["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["metadata"]["name"].as_str().unwrap())
            .collect();
        assert!(names.contains(&"apps") && !names.contains(&""));
    }

    #[test]
    fn version_priority() {
        let mut v = vec!["v1alpha1", "v2", "v1beta1", "foo", "v1", "v1beta2", "v10"];
        v.sort_by(|a, b| compare_versions(a, b));
        assert_eq!(
            v,
            ["v10", "v2", "v1", "v1beta2", "v1beta1", "v1alpha1", "foo"]
        );
    }
}
