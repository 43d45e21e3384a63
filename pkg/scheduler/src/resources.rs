//! Resource arithmetic: what a pod requests and what a node offers.
//!
//! A pod's effective request follows upstream's `PodRequests`: the sum over
//! app containers plus restartable init containers (sidecars), then the
//! element-wise maximum with each ordinary init container (which runs
//! alongside the sidecars started before it), plus `spec.overhead`. Values are
//! milli-units (see [`Quantity::milli_value`]); unparsable quantities count as
//! zero (the API server validates them).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Node, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as ApiQuantity;
use rkube_apimachinery::quantity::Quantity;

/// Resource name → amount in milli-units.
pub type ResourceList = BTreeMap<String, i128>;

/// CPU resource name.
pub const CPU: &str = "cpu";
/// Memory resource name.
pub const MEMORY: &str = "memory";
/// Ephemeral storage resource name.
pub const EPHEMERAL_STORAGE: &str = "ephemeral-storage";
/// Pod-count resource name.
pub const PODS: &str = "pods";

/// CPU assumed for a container with no CPU request when scoring (100m).
pub const DEFAULT_MILLI_CPU: i128 = 100;
/// Memory assumed for a container with no memory request when scoring (200 MiB).
pub const DEFAULT_MEMORY: i128 = 200 * 1024 * 1024 * 1000;

/// Converts an API resource map into milli-units.
pub fn to_list(map: Option<&BTreeMap<String, ApiQuantity>>) -> ResourceList {
    map.into_iter()
        .flatten()
        .map(|(k, v)| {
            (
                k.clone(),
                Quantity::parse(&v.0).map_or(0, |q| q.milli_value()),
            )
        })
        .collect()
}

/// Adds `b` into `a`.
pub fn add(a: &mut ResourceList, b: &ResourceList) {
    for (k, v) in b {
        *a.entry(k.clone()).or_insert(0) += v;
    }
}

/// Raises every entry of `a` to at least the one in `b`.
pub fn max_into(a: &mut ResourceList, b: &ResourceList) {
    for (k, v) in b {
        let e = a.entry(k.clone()).or_insert(0);
        if *v > *e {
            *e = *v;
        }
    }
}

fn container_requests(c: &Container) -> ResourceList {
    to_list(c.resources.as_ref().and_then(|r| r.requests.as_ref()))
}

fn is_sidecar(c: &Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
}

/// The pod's effective resource requests, as upstream computes them.
pub fn pod_requests(pod: &Pod) -> ResourceList {
    pod_requests_with(pod, container_requests)
}

/// The pod's requests with upstream's scoring defaults (100m CPU and 200 MiB
/// memory for each container that requests none).
pub fn pod_nonzero_requests(pod: &Pod) -> ResourceList {
    pod_requests_with(pod, |c| {
        let mut r = container_requests(c);
        r.entry(CPU.into()).or_insert(DEFAULT_MILLI_CPU);
        r.entry(MEMORY.into()).or_insert(DEFAULT_MEMORY);
        r
    })
}

fn pod_requests_with(
    pod: &Pod,
    per_container: impl Fn(&Container) -> ResourceList,
) -> ResourceList {
    let Some(spec) = pod.spec.as_ref() else {
        return ResourceList::new();
    };
    let mut reqs = ResourceList::new();
    for c in &spec.containers {
        add(&mut reqs, &per_container(c));
    }
    let mut sidecars = ResourceList::new();
    let mut init_max = ResourceList::new();
    for c in spec.init_containers.iter().flatten() {
        let r = per_container(c);
        if is_sidecar(c) {
            add(&mut reqs, &r);
            add(&mut sidecars, &r);
            max_into(&mut init_max, &sidecars);
        } else {
            let mut with_sidecars = r;
            add(&mut with_sidecars, &sidecars);
            max_into(&mut init_max, &with_sidecars);
        }
    }
    max_into(&mut reqs, &init_max);
    add(&mut reqs, &to_list(spec.overhead.as_ref()));
    reqs
}

/// The node's allocatable resources (capacity when allocatable is absent).
pub fn allocatable(node: &Node) -> ResourceList {
    let status = node.status.as_ref();
    let map = status
        .and_then(|s| s.allocatable.as_ref())
        .or_else(|| status.and_then(|s| s.capacity.as_ref()));
    to_list(map)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    pub(crate) fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": spec})).unwrap()
    }

    fn req(cpu: &str, mem: &str) -> serde_json::Value {
        json!({"requests": {"cpu": cpu, "memory": mem}})
    }

    #[test]
    fn sums_app_containers() {
        let p = pod(json!({"containers": [
            {"name": "a", "resources": req("100m", "1Mi")},
            {"name": "b", "resources": req("0.5", "1Mi")},
            {"name": "c"},
        ]}));
        let r = pod_requests(&p);
        assert_eq!(r[CPU], 600);
        assert_eq!(r[MEMORY], 2 * 1024 * 1024 * 1000);
    }

    #[test]
    fn init_containers_take_the_max() {
        let p = pod(json!({
            "initContainers": [{"name": "i", "resources": req("2", "1Mi")}],
            "containers": [{"name": "a", "resources": req("1", "3Mi")}],
        }));
        let r = pod_requests(&p);
        assert_eq!(r[CPU], 2000);
        assert_eq!(r[MEMORY], 3 * 1024 * 1024 * 1000);
    }

    #[test]
    fn sidecars_add_and_overhead_adds() {
        let p = pod(json!({
            "initContainers": [
                {"name": "side", "restartPolicy": "Always", "resources": req("500m", "0")},
                {"name": "i", "resources": req("1", "0")},
            ],
            "containers": [{"name": "a", "resources": req("200m", "0")}],
            "overhead": {"cpu": "10m"},
        }));
        // app 200m + sidecar 500m = 700m; init 1 + running sidecar 500m = 1500m.
        assert_eq!(pod_requests(&p)[CPU], 1510);
    }

    #[test]
    fn extended_resources_are_kept() {
        let p = pod(
            json!({"containers": [{"name": "a", "resources": {"requests": {"example.com/gpu": "2"}}}]}),
        );
        assert_eq!(pod_requests(&p)["example.com/gpu"], 2000);
    }

    #[test]
    fn nonzero_defaults_fill_missing_requests() {
        let p = pod(
            json!({"containers": [{"name": "a"}, {"name": "b", "resources": req("1", "1Mi")}]}),
        );
        let r = pod_nonzero_requests(&p);
        assert_eq!(r[CPU], 1100);
        assert_eq!(r[MEMORY], DEFAULT_MEMORY + 1024 * 1024 * 1000);
    }

    #[test]
    fn allocatable_falls_back_to_capacity() {
        let n: Node = serde_json::from_value(
            json!({"metadata": {"name": "n"}, "status": {"capacity": {"cpu": "2", "pods": "110"}}}),
        )
        .unwrap();
        let a = allocatable(&n);
        assert_eq!(a[CPU], 2000);
        assert_eq!(a[PODS], 110_000);
    }
}
