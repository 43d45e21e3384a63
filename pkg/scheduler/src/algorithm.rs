//! One scheduling decision: which pods are ours to place, and where one goes.
//!
//! Pure over k8s-openapi types: [`is_pending`] selects pods, [`schedule`]
//! runs the filters on every node and picks the feasible node with the best
//! least-allocated score (ties go to the first node by name).

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{Node, Pod};

use crate::filters::{feasible, is_terminated};
use crate::fit_error::FitError;
use crate::score::least_allocated;

/// Scheduler name a pod without `spec.schedulerName` belongs to.
pub const DEFAULT_SCHEDULER: &str = "default-scheduler";

/// Whether `pod` waits for this scheduler: no node yet, our scheduler name,
/// not being deleted, not finished.
pub fn is_pending(pod: &Pod, scheduler_name: &str) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return false;
    };
    spec.node_name.as_deref().unwrap_or("").is_empty()
        && spec
            .scheduler_name
            .as_deref()
            .filter(|s| !s.is_empty())
            .unwrap_or(DEFAULT_SCHEDULER)
            == scheduler_name
        && pod.metadata.deletion_timestamp.is_none()
        && !is_terminated(pod)
}

/// Picks a node for `pod`. `pods_by_node` holds, per node name, the pods bound
/// or assumed bound there.
pub fn schedule<'a>(
    pod: &Pod,
    nodes: &[&'a Node],
    pods_by_node: &HashMap<String, Vec<&Pod>>,
) -> Result<&'a Node, FitError> {
    let mut sorted: Vec<&'a Node> = nodes.to_vec();
    sorted.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let mut best: Option<(i64, &'a Node)> = None;
    let mut node_reasons = Vec::new();
    for node in sorted {
        let name = node.metadata.name.clone().unwrap_or_default();
        let on_node = pods_by_node.get(&name).map(Vec::as_slice).unwrap_or(&[]);
        match feasible(pod, node, on_node) {
            Ok(()) => {
                let score = least_allocated(pod, node, on_node);
                if best.is_none_or(|(s, _)| score > s) {
                    best = Some((score, node));
                }
            }
            Err(reasons) => node_reasons.push((name, reasons)),
        }
    }
    best.map(|(_, n)| n).ok_or_else(|| FitError {
        num_nodes: nodes.len(),
        node_reasons,
        preemption_never: pod
            .spec
            .as_ref()
            .and_then(|s| s.preemption_policy.as_deref())
            == Some("Never"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, cpu: &str) -> Node {
        serde_json::from_value(json!({"metadata": {"name": name}, "status": {
            "allocatable": {"cpu": cpu, "memory": "1Gi", "pods": "10"},
            "conditions": [{"type": "Ready", "status": "True"}]}}))
        .unwrap()
    }

    fn pod(spec: serde_json::Value) -> Pod {
        let mut p = json!({"metadata": {"name": "p", "uid": "u"}, "spec": {"containers": [{"name": "c",
            "resources": {"requests": {"cpu": "1"}}}]}});
        for (k, v) in spec.as_object().unwrap() {
            p["spec"][k] = v.clone();
        }
        serde_json::from_value(p).unwrap()
    }

    #[test]
    fn pending_selection() {
        assert!(is_pending(&pod(json!({})), "default-scheduler"));
        assert!(!is_pending(&pod(json!({})), "other"));
        assert!(is_pending(&pod(json!({"schedulerName": "other"})), "other"));
        assert!(!is_pending(
            &pod(json!({"nodeName": "n"})),
            "default-scheduler"
        ));
        let mut deleting = pod(json!({}));
        deleting.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            ));
        assert!(!is_pending(&deleting, "default-scheduler"));
        let mut done = pod(json!({}));
        done.status = Some(serde_json::from_value(json!({"phase": "Succeeded"})).unwrap());
        assert!(!is_pending(&done, "default-scheduler"));
    }

    #[test]
    fn picks_least_allocated_feasible_node() {
        let (a, b, c) = (node("a", "2"), node("b", "8"), node("c", "500m"));
        let chosen = schedule(&pod(json!({})), &[&a, &b, &c], &HashMap::new()).unwrap();
        assert_eq!(chosen.metadata.name.as_deref(), Some("b"));
    }

    #[test]
    fn accounts_for_pods_on_nodes() {
        let (a, b) = (node("a", "2"), node("b", "2"));
        let busy = pod(json!({}));
        let mut other = busy.clone();
        other.metadata.uid = Some("u2".into());
        let on: HashMap<String, Vec<&Pod>> = [("a".to_string(), vec![&other])].into();
        let chosen = schedule(&pod(json!({})), &[&a, &b], &on).unwrap();
        assert_eq!(chosen.metadata.name.as_deref(), Some("b"));
    }

    #[test]
    fn reports_every_node() {
        let (a, b) = (node("a", "500m"), node("b", "500m"));
        let e = schedule(&pod(json!({})), &[&a, &b], &HashMap::new()).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("0/2 nodes are available: 2 Insufficient cpu."),
            "{e}"
        );
        let none = schedule(&pod(json!({})), &[], &HashMap::new()).unwrap_err();
        assert_eq!(none.to_string(), "no nodes available to schedule pods");
    }
}
