//! Node eligibility on k8s-openapi types: whether tolerations tolerate a
//! node's taints and whether a pod's nodeSelector and required node
//! affinity select a node (upstream's component-helpers
//! `scheduling/corev1`). Shared by the scheduler's filters and the
//! DaemonSet and node lifecycle controllers.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Node, NodeSelectorRequirement, NodeSelectorTerm, PodSpec, Taint, Toleration,
};

/// Whether one toleration tolerates one taint (upstream's `ToleratesTaint`):
/// an empty effect or key matches any; `Exists` ignores the value, `Equal`
/// (the default) compares it.
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    let effect = t.effect.as_deref().unwrap_or("");
    if !effect.is_empty() && effect != taint.effect {
        return false;
    }
    let key = t.key.as_deref().unwrap_or("");
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match t.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" | "" => t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        _ => false,
    }
}

/// The first of `taints` with one of `effects` that no toleration tolerates
/// (upstream's `FindMatchingUntoleratedTaint` with an effect filter).
pub fn find_untolerated<'a>(
    taints: &'a [Taint],
    tolerations: &[Toleration],
    effects: &[&str],
) -> Option<&'a Taint> {
    taints
        .iter()
        .filter(|t| effects.contains(&t.effect.as_str()))
        .find(|t| !tolerations.iter().any(|tol| tolerates(tol, t)))
}

/// Whether `spec`'s nodeSelector and required node affinity
/// (requiredDuringSchedulingIgnoredDuringExecution, terms ORed) select
/// `node`.
pub fn fits_node_affinity(spec: &PodSpec, node: &Node) -> bool {
    let empty = BTreeMap::new();
    let labels = node.metadata.labels.as_ref().unwrap_or(&empty);
    if let Some(sel) = &spec.node_selector {
        if sel.iter().any(|(k, v)| labels.get(k) != Some(v)) {
            return false;
        }
    }
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|na| {
            na.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    match required {
        Some(req) => {
            let name = node.metadata.name.as_deref().unwrap_or("");
            req.node_selector_terms
                .iter()
                .any(|t| term_matches(t, labels, name))
        }
        None => true,
    }
}

/// Whether one nodeSelectorTerm matches a node with `labels` and
/// `node_name` (its requirements are ANDed; a term with no requirements
/// matches nothing, and a malformed requirement matches nothing, as
/// upstream).
pub fn term_matches(
    term: &NodeSelectorTerm,
    labels: &BTreeMap<String, String>,
    node_name: &str,
) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or(&[]);
    let fields = term.match_fields.as_deref().unwrap_or(&[]);
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    exprs
        .iter()
        .all(|r| requirement_matches(r, labels.get(&r.key).map(String::as_str)))
        && fields.iter().all(|r| field_matches(r, node_name))
}

/// A matchExpressions requirement against the label `value` (None when
/// the node lacks the label).
fn requirement_matches(r: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = r.values.as_deref().unwrap_or(&[]);
    let int = |s: &str| s.parse::<i64>().ok();
    match r.operator.as_str() {
        "In" => !values.is_empty() && value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => !values.is_empty() && value.is_none_or(|v| !values.iter().any(|x| x == v)),
        "Exists" => values.is_empty() && value.is_some(),
        "DoesNotExist" => values.is_empty() && value.is_none(),
        "Gt" | "Lt" => {
            let [bound] = values else { return false };
            match (int(bound), value.and_then(int)) {
                (Some(b), Some(v)) => {
                    if r.operator == "Gt" {
                        v > b
                    } else {
                        v < b
                    }
                }
                _ => false,
            }
        }
        _ => false,
    }
}

/// A matchFields requirement: only `metadata.name` with In/NotIn.
fn field_matches(r: &NodeSelectorRequirement, node_name: &str) -> bool {
    if r.key != "metadata.name" {
        return false;
    }
    let values = r.values.as_deref().unwrap_or(&[]);
    match r.operator.as_str() {
        "In" => values.iter().any(|v| v == node_name),
        "NotIn" => !values.is_empty() && !values.iter().any(|v| v == node_name),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn taint(key: &str, value: &str, effect: &str) -> Taint {
        serde_json::from_value(json!({"key": key, "value": value, "effect": effect})).unwrap()
    }

    fn tol(v: Value) -> Toleration {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn toleration_matching() {
        let t = taint("k", "v", "NoSchedule");
        assert!(tolerates(&tol(json!({"key": "k", "value": "v"})), &t));
        assert!(tolerates(
            &tol(json!({"key": "k", "operator": "Exists"})),
            &t
        ));
        assert!(tolerates(&tol(json!({"operator": "Exists"})), &t));
        assert!(!tolerates(&tol(json!({"key": "k", "value": "w"})), &t));
        assert!(!tolerates(
            &tol(json!({"key": "k", "operator": "Exists", "effect": "NoExecute"})),
            &t
        ));
        assert!(!tolerates(
            &tol(json!({"key": "k", "operator": "Bogus"})),
            &t
        ));
        let taints = [
            t.clone(),
            taint("x", "", "NoExecute"),
            taint("p", "", "PreferNoSchedule"),
        ];
        let tols = [tol(json!({"key": "k", "operator": "Exists"}))];
        assert_eq!(
            find_untolerated(&taints, &tols, &["NoSchedule", "NoExecute"]).map(|t| t.key.as_str()),
            Some("x")
        );
        assert!(find_untolerated(&taints, &tols, &["NoSchedule"]).is_none());
    }

    #[test]
    fn node_affinity_matching() {
        let node: Node = serde_json::from_value(
            json!({"metadata": {"name": "n1", "labels": {"disk": "ssd", "cores": "8"}}}),
        )
        .unwrap();
        let spec = |v: Value| -> PodSpec { serde_json::from_value(v).unwrap() };
        let affinity = |terms: Value| {
            spec(json!({"containers": [], "affinity": {"nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}}}))
        };
        assert!(fits_node_affinity(&spec(json!({"containers": []})), &node));
        assert!(fits_node_affinity(
            &spec(json!({"containers": [], "nodeSelector": {"disk": "ssd"}})),
            &node
        ));
        assert!(!fits_node_affinity(
            &spec(json!({"containers": [], "nodeSelector": {"disk": "hdd"}})),
            &node
        ));
        let expr = |op: &str, values: Value| {
            affinity(
                json!([{"matchExpressions": [{"key": "cores", "operator": op, "values": values}]}]),
            )
        };
        assert!(fits_node_affinity(&expr("Gt", json!(["4"])), &node));
        assert!(!fits_node_affinity(&expr("Lt", json!(["4"])), &node));
        assert!(fits_node_affinity(&expr("In", json!(["8", "9"])), &node));
        assert!(!fits_node_affinity(&expr("NotIn", json!([])), &node));
        assert!(fits_node_affinity(&expr("Exists", json!([])), &node));
        assert!(!fits_node_affinity(&expr("Exists", json!(["8"])), &node));
        let field = |op: &str, name: &str| {
            affinity(
                json!([{"matchFields": [{"key": "metadata.name", "operator": op, "values": [name]}]}]),
            )
        };
        assert!(fits_node_affinity(&field("In", "n1"), &node));
        assert!(!fits_node_affinity(&field("NotIn", "n1"), &node));
        assert!(!fits_node_affinity(&affinity(json!([{}])), &node));
        assert!(fits_node_affinity(
            &affinity(json!([{}, {"matchFields": [
            {"key": "metadata.name", "operator": "In", "values": ["n1"]}]}])),
            &node
        ));
    }
}
