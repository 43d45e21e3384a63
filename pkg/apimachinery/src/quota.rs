//! ResourceQuota evaluation, shared by the quota admission (reject a create
//! that would exceed a quota) and the ResourceQuota controller (status.used):
//! what one object counts against a quota, which quotas an object falls
//! under (scopes), the "must specify" constraints on pods, and upstream's
//! "exceeded quota" message.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as ApiQuantity;
use serde_json::Value;

use crate::quantity::Quantity;

/// Resource name → quantity.
pub type ResourceList = BTreeMap<String, Quantity>;

/// Parses a `hard`/`used` map; malformed entries are skipped.
pub fn parse_list(v: Option<&Value>) -> ResourceList {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), Quantity::from_json(v)?)))
                .collect()
        })
        .unwrap_or_default()
}

/// A resource list as JSON (canonical quantity strings).
pub fn to_json(list: &ResourceList) -> Value {
    Value::Object(
        list.iter()
            .map(|(k, v)| (k.clone(), Value::String(v.to_string())))
            .collect(),
    )
}

/// Adds `b` into `a` (keys of `b` missing in `a` are copied).
pub fn add_into(a: &mut ResourceList, b: &ResourceList) {
    for (k, v) in b {
        let e = a.entry(k.clone()).or_insert(Quantity {
            nanos: 0,
            format: v.format,
        });
        *e = *e + *v;
    }
}

/// The quota resource name counting objects of `plural` in `group`
/// (`count/pods`, `count/deployments.apps`).
pub fn count_name(group: &str, plural: &str) -> String {
    if group.is_empty() {
        format!("count/{plural}")
    } else {
        format!("count/{plural}.{group}")
    }
}

fn is_terminal_pod(pod: &Value) -> bool {
    matches!(
        pod.pointer("/status/phase").and_then(Value::as_str),
        Some("Succeeded" | "Failed")
    )
}

/// Usage of one container's (or a pod's summed) requests and limits, as
/// upstream's podComputeUsageHelper names them.
fn compute_usage(requests: &ResourceList, limits: &ResourceList) -> ResourceList {
    let mut out = ResourceList::new();
    for (k, v) in requests {
        match k.as_str() {
            "cpu" | "memory" | "ephemeral-storage" => {
                out.insert(k.clone(), *v);
                out.insert(format!("requests.{k}"), *v);
            }
            h if h.starts_with("hugepages-") => {
                out.insert(format!("requests.{h}"), *v);
            }
            _ => {}
        }
    }
    for (k, v) in limits {
        if matches!(k.as_str(), "cpu" | "memory" | "ephemeral-storage") {
            out.insert(format!("limits.{k}"), *v);
        }
    }
    out
}

fn container_lists(c: &Value) -> (ResourceList, ResourceList) {
    (
        parse_list(c.pointer("/resources/requests")),
        parse_list(c.pointer("/resources/limits")),
    )
}

fn max_into(a: &mut ResourceList, b: &ResourceList) {
    for (k, v) in b {
        match a.get(k) {
            Some(cur) if cur >= v => {}
            _ => {
                a.insert(k.clone(), *v);
            }
        }
    }
}

/// A pod's effective requests and limits: the sum over containers, at
/// least each init container's, plus the pod overhead.
pub fn pod_requests_limits(pod: &Value) -> (ResourceList, ResourceList) {
    let spec = pod.get("spec");
    let list = |f: &str| {
        spec.and_then(|s| s.get(f))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let (mut req, mut lim) = (ResourceList::new(), ResourceList::new());
    for c in list("containers") {
        let (r, l) = container_lists(&c);
        add_into(&mut req, &r);
        add_into(&mut lim, &l);
    }
    for c in list("initContainers") {
        let (r, l) = container_lists(&c);
        max_into(&mut req, &r);
        max_into(&mut lim, &l);
    }
    let overhead = parse_list(spec.and_then(|s| s.get("overhead")));
    if !overhead.is_empty() {
        add_into(&mut req, &overhead);
        for (k, v) in &overhead {
            if let Some(l) = lim.get_mut(k) {
                *l = *l + *v;
            }
        }
    }
    (req, lim)
}

/// What one object of `plural` in `group` counts against quotas. Terminal
/// pods count nothing.
pub fn object_usage(group: &str, plural: &str, obj: &Value) -> ResourceList {
    let mut out = ResourceList::new();
    let one = Quantity::count(1);
    if group.is_empty() && plural == "pods" && is_terminal_pod(obj) {
        return out;
    }
    out.insert(count_name(group, plural), one);
    if !group.is_empty() {
        return out;
    }
    match plural {
        "pods" => {
            out.insert("pods".into(), one);
            let (req, lim) = pod_requests_limits(obj);
            out.extend(compute_usage(&req, &lim));
        }
        "services" => {
            out.insert("services".into(), one);
            let ty = obj.pointer("/spec/type").and_then(Value::as_str);
            let ports = obj
                .pointer("/spec/ports")
                .and_then(Value::as_array)
                .map(Vec::len)
                .unwrap_or(0) as i64;
            match ty {
                Some("NodePort") => {
                    out.insert("services.nodeports".into(), Quantity::count(ports));
                }
                Some("LoadBalancer") => {
                    out.insert("services.loadbalancers".into(), one);
                    out.insert("services.nodeports".into(), Quantity::count(ports));
                }
                _ => {}
            }
        }
        "persistentvolumeclaims" => {
            out.insert("persistentvolumeclaims".into(), one);
            let storage = obj
                .pointer("/spec/resources/requests/storage")
                .and_then(Quantity::from_json);
            let class = obj
                .pointer("/spec/storageClassName")
                .and_then(Value::as_str)
                .filter(|c| !c.is_empty());
            if let Some(class) = class {
                out.insert(
                    format!("{class}.storageclass.storage.k8s.io/persistentvolumeclaims"),
                    one,
                );
            }
            if let Some(s) = storage {
                out.insert("requests.storage".into(), s);
                if let Some(class) = class {
                    out.insert(
                        format!("{class}.storageclass.storage.k8s.io/requests.storage"),
                        s,
                    );
                }
            }
        }
        "configmaps" | "secrets" | "replicationcontrollers" | "resourcequotas" => {
            out.insert(plural.to_string(), one);
        }
        _ => {}
    }
    out
}

/// True when a resource name of a quota applies to objects of `plural`/`group`.
pub fn matches_resource(group: &str, plural: &str, name: &str) -> bool {
    if name == count_name(group, plural) {
        return true;
    }
    if !group.is_empty() {
        return false;
    }
    match plural {
        "pods" => {
            matches!(name, "pods" | "cpu" | "memory" | "ephemeral-storage")
                || (name.starts_with("requests.") && name != "requests.storage")
                || name.starts_with("limits.")
                || name.starts_with("hugepages-")
        }
        "services" => name.starts_with("services"),
        "persistentvolumeclaims" => {
            name == "persistentvolumeclaims"
                || name == "requests.storage"
                || name.contains(".storageclass.storage.k8s.io/")
        }
        p => name == p,
    }
}

/// A pod's quality-of-service class (`status.qosClass`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QosClass {
    /// Every container has cpu and memory limits, and requests equal to them.
    Guaranteed,
    /// Some cpu or memory request or limit, but not Guaranteed.
    Burstable,
    /// No cpu or memory request or limit at all.
    BestEffort,
}

impl QosClass {
    /// The `status.qosClass` string.
    pub fn as_str(self) -> &'static str {
        match self {
            QosClass::Guaranteed => "Guaranteed",
            QosClass::Burstable => "Burstable",
            QosClass::BestEffort => "BestEffort",
        }
    }
}

/// The QoS class of a pod whose init and app containers have these
/// (requests, limits), as upstream's `GetPodQOS` computes it: only positive
/// cpu and memory quantities count, and a request left out defaults to its
/// limit (as admission defaulting does).
pub fn qos_of(containers: impl IntoIterator<Item = (ResourceList, ResourceList)>) -> QosClass {
    let positive = |q: Option<&Quantity>| q.copied().filter(|q| *q > Quantity::ZERO);
    let mut any = false;
    let mut guaranteed = true;
    for (req, lim) in containers {
        for res in ["cpu", "memory"] {
            let l = positive(lim.get(res));
            let r = if req.contains_key(res) {
                positive(req.get(res))
            } else {
                l
            };
            any |= r.is_some() || l.is_some();
            guaranteed &= l.is_some() && r == l;
        }
    }
    if !any {
        QosClass::BestEffort
    } else if guaranteed {
        QosClass::Guaranteed
    } else {
        QosClass::Burstable
    }
}

/// The (requests, limits) of a pod's init and app containers.
fn pod_container_lists(pod: &Value) -> Vec<(ResourceList, ResourceList)> {
    ["initContainers", "containers"]
        .iter()
        .filter_map(|f| pod.pointer(&format!("/spec/{f}")).and_then(Value::as_array))
        .flatten()
        .map(container_lists)
        .collect()
}

/// A pod's QoS class.
pub fn pod_qos(pod: &Value) -> QosClass {
    qos_of(pod_container_lists(pod))
}

/// A typed resource map; malformed entries are skipped.
fn typed_list(m: Option<&BTreeMap<String, ApiQuantity>>) -> ResourceList {
    m.into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), Quantity::parse(&v.0)?)))
        .collect()
}

/// A typed pod's QoS class (the node agent's view).
pub fn typed_pod_qos(pod: &Pod) -> QosClass {
    let spec = pod.spec.as_ref();
    let containers = spec
        .and_then(|s| s.init_containers.as_ref())
        .into_iter()
        .flatten()
        .chain(spec.map(|s| &s.containers).into_iter().flatten());
    qos_of(containers.map(|c| {
        let r = c.resources.as_ref();
        (
            typed_list(r.and_then(|r| r.requests.as_ref())),
            typed_list(r.and_then(|r| r.limits.as_ref())),
        )
    }))
}

/// A pod's QoS class name (Guaranteed, Burstable, BestEffort).
pub fn qos_class(pod: &Value) -> &'static str {
    pod_qos(pod).as_str()
}

fn scope_matches(scope: &str, op: &str, values: &[&str], pod: &Value) -> bool {
    let terminating = pod
        .pointer("/spec/activeDeadlineSeconds")
        .and_then(Value::as_i64)
        .is_some_and(|d| d >= 0);
    match scope {
        "Terminating" => terminating,
        "NotTerminating" => !terminating,
        "BestEffort" => pod_qos(pod) == QosClass::BestEffort,
        "NotBestEffort" => pod_qos(pod) != QosClass::BestEffort,
        "PriorityClass" => {
            let pc = pod
                .pointer("/spec/priorityClassName")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty());
            match op {
                "In" => pc.is_some_and(|p| values.contains(&p)),
                "NotIn" => pc.is_none_or(|p| !values.contains(&p)),
                "Exists" => pc.is_some(),
                "DoesNotExist" => pc.is_none(),
                _ => false,
            }
        }
        "CrossNamespacePodAffinity" => false,
        _ => false,
    }
}

/// True when `quota`'s scopes (and scopeSelector) select the object; an
/// unscoped quota selects everything, a scoped one only pods.
pub fn quota_selects(quota: &Value, group: &str, plural: &str, obj: &Value) -> bool {
    let scopes: Vec<&str> = quota
        .pointer("/spec/scopes")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let exprs = quota
        .pointer("/spec/scopeSelector/matchExpressions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if scopes.is_empty() && exprs.is_empty() {
        return true;
    }
    if !(group.is_empty() && plural == "pods") {
        return false;
    }
    scopes.iter().all(|s| scope_matches(s, "Exists", &[], obj))
        && exprs.iter().all(|e| {
            let values: Vec<&str> = e
                .get("values")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            scope_matches(
                e.get("scopeName").and_then(Value::as_str).unwrap_or(""),
                e.get("operator").and_then(Value::as_str).unwrap_or(""),
                &values,
                obj,
            )
        })
}

/// Upstream's pod constraint: when a quota limits cpu or memory, every
/// container must set the matching request/limit. Returns the "must
/// specify ..." text, or None.
pub fn pod_constraints(hard: &ResourceList, pod: &Value) -> Option<String> {
    const VALIDATED: [&str; 6] = [
        "cpu",
        "memory",
        "requests.cpu",
        "requests.memory",
        "limits.cpu",
        "limits.memory",
    ];
    let required: BTreeSet<&str> = hard
        .keys()
        .map(String::as_str)
        .filter(|k| VALIDATED.contains(k))
        .collect();
    if required.is_empty() {
        return None;
    }
    let mut missing: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for f in ["containers", "initContainers"] {
        let list = pod
            .pointer(&format!("/spec/{f}"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for c in list {
            let (r, l) = container_lists(&c);
            let usage = compute_usage(&r, &l);
            let name = c.get("name").and_then(Value::as_str).unwrap_or("");
            for req in &required {
                if !usage.contains_key(*req) {
                    missing.entry(req).or_default().insert(name.to_string());
                }
            }
        }
    }
    if missing.is_empty() {
        return None;
    }
    let parts: Vec<String> = missing
        .iter()
        .map(|(r, names)| {
            format!(
                "{r} for: {}",
                names.iter().cloned().collect::<Vec<_>>().join(",")
            )
        })
        .collect();
    Some(format!("must specify {}", parts.join("; ")))
}

fn pretty(list: &ResourceList) -> String {
    list.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Checks one quota: `hard` limits, `used` current usage (of the
/// resources `requested` names), `requested` the new object's usage. Returns
/// upstream's "exceeded quota" text when the sum exceeds a hard limit.
pub fn check(
    quota_name: &str,
    hard: &ResourceList,
    used: &ResourceList,
    requested: &ResourceList,
) -> Option<String> {
    let requested: ResourceList = requested
        .iter()
        .filter(|(k, _)| hard.contains_key(*k))
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    let exceeded: Vec<&String> = requested
        .iter()
        .filter(|(k, v)| {
            let u = used.get(*k).copied().unwrap_or(Quantity::ZERO);
            let h = hard[*k];
            u + **v > h
        })
        .map(|(k, _)| k)
        .collect();
    if exceeded.is_empty() {
        return None;
    }
    let mask = |l: &ResourceList, zero: bool| -> ResourceList {
        exceeded
            .iter()
            .filter_map(|k| {
                let v = l.get(*k).copied().or(zero.then_some(Quantity::ZERO))?;
                Some(((*k).clone(), v))
            })
            .collect()
    };
    Some(format!(
        "exceeded quota: {quota_name}, requested: {}, used: {}, limited: {}",
        pretty(&mask(&requested, false)),
        pretty(&mask(used, true)),
        pretty(&mask(hard, false)),
    ))
}

/// The usage of `objects` (of one resource type) selected by `quota`,
/// restricted to the resource names in `names` (all when None).
pub fn usage_of(
    quota: &Value,
    group: &str,
    plural: &str,
    objects: &[Value],
    names: Option<&BTreeSet<String>>,
) -> ResourceList {
    let mut used = ResourceList::new();
    for o in objects {
        if !quota_selects(quota, group, plural, o) {
            continue;
        }
        let mut u = object_usage(group, plural, o);
        if let Some(names) = names {
            u.retain(|k, _| names.contains(k));
        }
        add_into(&mut used, &u);
    }
    used
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn list(v: Value) -> ResourceList {
        parse_list(Some(&v))
    }

    #[test]
    fn qos_compares_quantities_not_strings() {
        let pod = |req: &str, lim: &str| {
            json!({"spec": {"containers": [{"name": "a", "resources": {
                "requests": {"cpu": req, "memory": "64Mi"},
                "limits": {"cpu": lim, "memory": "67108864"}}}]}})
        };
        for (req, lim, class) in [
            ("1000m", "1", QosClass::Guaranteed),
            ("500m", "1", QosClass::Burstable),
        ] {
            let v = pod(req, lim);
            assert_eq!(qos_class(&v), class.as_str());
            // The node agent's typed view agrees.
            let typed: Pod = serde_json::from_value(v).unwrap();
            assert_eq!(typed_pod_qos(&typed), class);
        }
        assert_eq!(
            qos_class(&json!({"spec": {"containers": [{"name": "a"}]}})),
            "BestEffort"
        );
    }

    #[test]
    fn qos_follows_upstream() {
        let pod = |containers: Value| json!({"spec": {"containers": containers}});
        let res = |v: Value| json!({"name": "a", "resources": v});
        // Limits only: requests default to them.
        let limits = res(json!({"limits": {"cpu": "1", "memory": "1Gi"}}));
        assert_eq!(pod_qos(&pod(json!([limits]))), QosClass::Guaranteed);
        // A memory limit alone is not enough.
        let mem = res(json!({"limits": {"memory": "1Gi"}}));
        assert_eq!(pod_qos(&pod(json!([mem]))), QosClass::Burstable);
        // Zero quantities do not count.
        let zero = res(json!({"requests": {"cpu": "0"}, "limits": {"memory": "0"}}));
        assert_eq!(pod_qos(&pod(json!([zero]))), QosClass::BestEffort);
        let zero_req = res(json!({"requests": {"cpu": "0"}, "limits": {"cpu": "1"}}));
        assert_eq!(pod_qos(&pod(json!([zero_req]))), QosClass::Burstable);
        // Every container must qualify, init containers included.
        let p = json!({"spec": {"containers": [limits], "initContainers": [{"name": "i"}]}});
        assert_eq!(pod_qos(&p), QosClass::Burstable);
        assert!(scope_matches("BestEffort", "", &[], &pod(json!([zero]))));
        // Extended resources do not matter.
        let gpu = res(json!({"limits": {"cpu": "1", "memory": "1Gi", "x/gpu": "1"}}));
        assert_eq!(pod_qos(&pod(json!([gpu]))), QosClass::Guaranteed);
    }

    #[test]
    fn pod_usage_sums_containers_and_init_max() {
        let pod = json!({"spec": {
            "containers": [
                {"name": "a", "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "200m"}}},
                {"name": "b", "resources": {"requests": {"cpu": "300m"}}}],
            "initContainers": [{"name": "i", "resources": {"requests": {"cpu": "1"}}}]}});
        let u = object_usage("", "pods", &pod);
        assert_eq!(u["pods"].to_string(), "1");
        assert_eq!(u["count/pods"].to_string(), "1");
        assert_eq!(u["requests.cpu"].to_string(), "1");
        assert_eq!(u["cpu"].to_string(), "1");
        assert_eq!(u["requests.memory"].to_string(), "64Mi");
        assert_eq!(u["limits.cpu"].to_string(), "200m");
        assert!(!u.contains_key("limits.memory"));
        let done = json!({"spec": {"containers": []}, "status": {"phase": "Succeeded"}});
        assert!(object_usage("", "pods", &done).is_empty());
    }

    #[test]
    fn exceeded_message() {
        let hard = list(json!({"pods": "2", "requests.cpu": "1"}));
        let used = list(json!({"pods": "2"}));
        let req = list(json!({"pods": "1", "count/pods": "1"}));
        assert_eq!(
            check("q", &hard, &used, &req).unwrap(),
            "exceeded quota: q, requested: pods=1, used: pods=2, limited: pods=2"
        );
        let used = list(json!({"pods": "1"}));
        assert!(check("q", &hard, &used, &req).is_none());
        let hard = list(json!({"requests.memory": "1Gi"}));
        let used = list(json!({"requests.memory": "768Mi"}));
        let req = list(json!({"requests.memory": "512Mi"}));
        assert_eq!(
            check("mem", &hard, &used, &req).unwrap(),
            "exceeded quota: mem, requested: requests.memory=512Mi, used: requests.memory=768Mi, limited: requests.memory=1Gi"
        );
    }

    #[test]
    fn must_specify() {
        let hard = list(json!({"limits.cpu": "2", "limits.memory": "1Gi", "pods": "5"}));
        let pod = json!({"spec": {"containers": [{"name": "b"}, {"name": "a", "resources": {"limits": {"cpu": "1"}}}]}});
        assert_eq!(
            pod_constraints(&hard, &pod).unwrap(),
            "must specify limits.cpu for: b; limits.memory for: a,b"
        );
        assert!(pod_constraints(&list(json!({"pods": "1"})), &pod).is_none());
    }

    #[test]
    fn scopes_and_resources() {
        let q = json!({"spec": {"scopes": ["BestEffort"]}});
        let be = json!({"spec": {"containers": [{"name": "a"}]}});
        let bu = json!({"spec": {"containers": [{"name": "a", "resources": {"requests": {"cpu": "1"}}}]}});
        assert!(quota_selects(&q, "", "pods", &be));
        assert!(!quota_selects(&q, "", "pods", &bu));
        assert!(!quota_selects(&q, "", "configmaps", &json!({})));
        let pcq = json!({"spec": {"scopeSelector": {"matchExpressions": [
            {"scopeName": "PriorityClass", "operator": "In", "values": ["high"]}]}}});
        assert!(!quota_selects(&pcq, "", "pods", &be));
        assert!(quota_selects(
            &pcq,
            "",
            "pods",
            &json!({"spec": {"priorityClassName": "high"}})
        ));
        assert!(matches_resource("", "pods", "requests.cpu"));
        assert!(!matches_resource("", "pods", "requests.storage"));
        assert!(matches_resource(
            "apps",
            "deployments",
            "count/deployments.apps"
        ));
        assert!(!matches_resource("", "configmaps", "pods"));
        let pvc = json!({"spec": {"storageClassName": "standard", "resources": {"requests": {"storage": "1Gi"}}}});
        let u = object_usage("", "persistentvolumeclaims", &pvc);
        assert_eq!(u["requests.storage"].to_string(), "1Gi");
        assert_eq!(
            u["standard.storageclass.storage.k8s.io/requests.storage"].to_string(),
            "1Gi"
        );
    }
}
