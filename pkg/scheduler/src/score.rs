//! Scoring: least-allocated, as upstream's default NodeResourcesFit strategy.
//!
//! For CPU and memory (equal weights) the score is the share of allocatable
//! that would still be free after placing the pod, 0–100, averaged. Requests
//! use upstream's non-zero defaults so pods without requests still spread.

use k8s_openapi::api::core::v1::{Node, Pod};

use crate::filters::is_terminated;
use crate::resources::{self, ResourceList, CPU, MEMORY};

/// Score of `node` for `pod` given the pods already on it; higher is better.
pub fn least_allocated(pod: &Pod, node: &Node, pods_on_node: &[&Pod]) -> i64 {
    let alloc = resources::allocatable(node);
    let mut requested: ResourceList = resources::pod_nonzero_requests(pod);
    for p in pods_on_node.iter().filter(|p| !is_terminated(p)) {
        resources::add(&mut requested, &resources::pod_nonzero_requests(p));
    }
    let one = |name: &str| -> i64 {
        let cap = alloc.get(name).copied().unwrap_or(0);
        let req = requested.get(name).copied().unwrap_or(0);
        if cap <= 0 || req > cap {
            return 0;
        }
        ((cap - req) * 100 / cap) as i64
    };
    (one(CPU) + one(MEMORY)) / 2
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(cpu: &str, mem: &str) -> Node {
        serde_json::from_value(json!({"metadata": {"name": "n"}, "status": {"allocatable": {"cpu": cpu, "memory": mem}}}))
            .unwrap()
    }

    fn pod(cpu: &str, mem: &str) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": {"containers": [
            {"name": "c", "resources": {"requests": {"cpu": cpu, "memory": mem}}}]}}))
        .unwrap()
    }

    #[test]
    fn emptier_node_scores_higher() {
        let p = pod("1", "1Gi");
        let n = node("4", "4Gi");
        let busy = pod("2", "2Gi");
        assert_eq!(least_allocated(&p, &n, &[]), 75);
        assert_eq!(least_allocated(&p, &n, &[&busy]), 25);
        assert!(least_allocated(&p, &node("8", "8Gi"), &[]) > least_allocated(&p, &n, &[]));
    }

    #[test]
    fn overcommitted_or_empty_node_scores_zero() {
        assert_eq!(least_allocated(&pod("8", "8Gi"), &node("4", "4Gi"), &[]), 0);
        assert_eq!(least_allocated(&pod("1", "1Gi"), &node("0", "0"), &[]), 0);
    }
}
