//! Filters: can this pod run on this node?
//!
//! Pure functions over k8s-openapi types, run in upstream's plugin order
//! (NodeUnschedulable, NodeName, TaintToleration, NodeAffinity, NodePorts,
//! NodeResourcesFit); a node is rejected by the first filter that fails, with
//! that filter's reasons, so messages read like kube-scheduler's. A node whose
//! Ready condition is not True is treated as carrying the
//! `node.kubernetes.io/not-ready` (or `unreachable`) NoSchedule taint that the
//! node lifecycle controller would add, so pods tolerating it still fit.

use std::fmt;

use k8s_openapi::api::core::v1::{ContainerPort, Node, Pod, Taint, Toleration};
use rkube_apimachinery::scheduling::{find_untolerated, fits_node_affinity, tolerates};

use crate::resources::{self, ResourceList, CPU, EPHEMERAL_STORAGE, MEMORY, PODS};

/// Taint key for nodes whose Ready condition is False (or missing).
pub const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";
/// Taint key for nodes whose Ready condition is Unknown.
pub const TAINT_UNREACHABLE: &str = "node.kubernetes.io/unreachable";
/// Taint key implied by `spec.unschedulable`.
pub const TAINT_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";

/// Why a node cannot take a pod; `Display` gives upstream's wording.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// `spec.unschedulable` is set and not tolerated.
    NodeUnschedulable,
    /// The pod names another node.
    NodeName,
    /// A NoSchedule/NoExecute taint is not tolerated.
    UntoleratedTaint {
        /// Taint key.
        key: String,
        /// Taint value ("" when unset).
        value: String,
    },
    /// nodeSelector or required node affinity does not match.
    NodeAffinity,
    /// A requested hostPort is taken.
    NodePorts,
    /// The node already runs its allocatable number of pods.
    TooManyPods {
        /// True when the node allows no pods at all.
        unresolvable: bool,
    },
    /// Not enough of a resource is left.
    Insufficient {
        /// Resource name (`cpu`, `memory`, `example.com/gpu`, ...).
        resource: String,
        /// True when the request exceeds the node's whole allocatable amount.
        unresolvable: bool,
    },
}

impl Reason {
    /// Whether evicting other pods could never make the node fit (upstream's
    /// UnschedulableAndUnresolvable).
    pub fn unresolvable(&self) -> bool {
        match self {
            Reason::NodeUnschedulable
            | Reason::NodeName
            | Reason::UntoleratedTaint { .. }
            | Reason::NodeAffinity => true,
            Reason::NodePorts => false,
            Reason::TooManyPods { unresolvable } | Reason::Insufficient { unresolvable, .. } => {
                *unresolvable
            }
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::NodeUnschedulable => f.write_str("node(s) were unschedulable"),
            Reason::NodeName => f.write_str("node(s) didn't match the requested node name"),
            Reason::UntoleratedTaint { key, value } => {
                write!(f, "node(s) had untolerated taint {{{key}: {value}}}")
            }
            Reason::NodeAffinity => {
                f.write_str("node(s) didn't match Pod's node affinity/selector")
            }
            Reason::NodePorts => {
                f.write_str("node(s) didn't have free ports for the requested pod ports")
            }
            Reason::TooManyPods { .. } => f.write_str("Too many pods"),
            Reason::Insufficient { resource, .. } => write!(f, "Insufficient {resource}"),
        }
    }
}

/// Whether a pod has finished (its resources and ports are free again).
pub fn is_terminated(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded") | Some("Failed")
    )
}

/// Runs every filter; `pods_on_node` are the pods bound (or assumed bound) to
/// the node. Terminated pods and the pod itself among them are ignored.
pub fn feasible(pod: &Pod, node: &Node, pods_on_node: &[&Pod]) -> Result<(), Vec<Reason>> {
    let uid = pod.metadata.uid.as_deref();
    let others: Vec<&Pod> = pods_on_node
        .iter()
        .copied()
        .filter(|p| !is_terminated(p) && (uid.is_none() || p.metadata.uid.as_deref() != uid))
        .collect();
    let one = |r: Option<Reason>| r.map_or(Ok(()), |r| Err(vec![r]));
    one(node_unschedulable(pod, node))?;
    one(node_name(pod, node))?;
    one(taint_toleration(pod, node))?;
    one(node_affinity(pod, node))?;
    one(node_ports(pod, &others))?;
    let fit = resources_fit(pod, node, &others);
    if fit.is_empty() {
        Ok(())
    } else {
        Err(fit)
    }
}

fn tolerations(pod: &Pod) -> &[Toleration] {
    pod.spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or(&[])
}

/// NodeUnschedulable: `spec.unschedulable` unless the pod tolerates
/// `node.kubernetes.io/unschedulable:NoSchedule`.
pub fn node_unschedulable(pod: &Pod, node: &Node) -> Option<Reason> {
    if !node
        .spec
        .as_ref()
        .and_then(|s| s.unschedulable)
        .unwrap_or(false)
    {
        return None;
    }
    let taint = Taint {
        key: TAINT_UNSCHEDULABLE.into(),
        effect: "NoSchedule".into(),
        ..Default::default()
    };
    if tolerations(pod).iter().any(|t| tolerates(t, &taint)) {
        None
    } else {
        Some(Reason::NodeUnschedulable)
    }
}

/// NodeName: a preset `spec.nodeName` must be this node.
pub fn node_name(pod: &Pod, node: &Node) -> Option<Reason> {
    let want = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())?;
    (Some(want) != node.metadata.name.as_deref()).then_some(Reason::NodeName)
}

/// The node's taints plus the one implied by a Ready condition that is not True.
pub fn effective_taints(node: &Node) -> Vec<Taint> {
    let mut taints: Vec<Taint> = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .map(|c| c.status.as_str());
    let implied = match ready {
        Some("True") => None,
        Some("Unknown") => Some(TAINT_UNREACHABLE),
        _ => Some(TAINT_NOT_READY),
    };
    if let Some(key) = implied {
        if !taints
            .iter()
            .any(|t| t.key == TAINT_NOT_READY || t.key == TAINT_UNREACHABLE)
        {
            taints.push(Taint {
                key: key.into(),
                effect: "NoSchedule".into(),
                ..Default::default()
            });
        }
    }
    taints
}

/// TaintToleration: every NoSchedule/NoExecute taint must be tolerated.
pub fn taint_toleration(pod: &Pod, node: &Node) -> Option<Reason> {
    let taints = effective_taints(node);
    find_untolerated(&taints, tolerations(pod), &["NoSchedule", "NoExecute"]).map(|t| {
        Reason::UntoleratedTaint {
            key: t.key.clone(),
            value: t.value.clone().unwrap_or_default(),
        }
    })
}

/// NodeAffinity: `spec.nodeSelector` and required node affinity.
pub fn node_affinity(pod: &Pod, node: &Node) -> Option<Reason> {
    let spec = pod.spec.as_ref()?;
    (!fits_node_affinity(spec, node)).then_some(Reason::NodeAffinity)
}

/// Host ports a pod asks for: its containers' and sidecars' ports with a
/// hostPort, as (hostIP, protocol, hostPort) with defaults filled in.
pub fn host_ports(pod: &Pod) -> Vec<(String, String, i32)> {
    let Some(spec) = pod.spec.as_ref() else {
        return Vec::new();
    };
    let sidecars = spec
        .init_containers
        .iter()
        .flatten()
        .filter(|c| c.restart_policy.as_deref() == Some("Always"));
    spec.containers
        .iter()
        .chain(sidecars)
        .flat_map(|c| c.ports.iter().flatten())
        .filter(|p| p.host_port.unwrap_or(0) > 0)
        .map(port_key)
        .collect()
}

fn port_key(p: &ContainerPort) -> (String, String, i32) {
    let ip = p
        .host_ip
        .as_deref()
        .filter(|s| !s.is_empty())
        .unwrap_or("0.0.0.0");
    let proto = p
        .protocol
        .as_deref()
        .filter(|s| !s.is_empty())
        .unwrap_or("TCP");
    (ip.to_string(), proto.to_string(), p.host_port.unwrap_or(0))
}

/// NodePorts: no requested hostPort may clash with one in use on the node
/// (same port and protocol, and the same IP or either side 0.0.0.0).
pub fn node_ports(pod: &Pod, pods_on_node: &[&Pod]) -> Option<Reason> {
    let wanted = host_ports(pod);
    if wanted.is_empty() {
        return None;
    }
    let used: Vec<_> = pods_on_node.iter().flat_map(|p| host_ports(p)).collect();
    let clash = wanted.iter().any(|(ip, proto, port)| {
        used.iter().any(|(uip, uproto, uport)| {
            uport == port && uproto == proto && (uip == ip || uip == "0.0.0.0" || ip == "0.0.0.0")
        })
    });
    clash.then_some(Reason::NodePorts)
}

/// NodeResourcesFit: pod count, then every resource the pod requests against
/// what is left of the node's allocatable.
pub fn resources_fit(pod: &Pod, node: &Node, pods_on_node: &[&Pod]) -> Vec<Reason> {
    let alloc = resources::allocatable(node);
    let mut reasons = Vec::new();
    let allowed_pods = alloc.get(PODS).copied().unwrap_or(0) / 1000;
    if pods_on_node.len() as i128 + 1 > allowed_pods {
        reasons.push(Reason::TooManyPods {
            unresolvable: allowed_pods < 1,
        });
    }
    let want = resources::pod_requests(pod);
    let mut used = ResourceList::new();
    for p in pods_on_node {
        resources::add(&mut used, &resources::pod_requests(p));
    }
    // Upstream's order: cpu, memory, ephemeral-storage, then the rest by name.
    let mut names: Vec<&String> = want.keys().filter(|k| k.as_str() != PODS).collect();
    let rank = |n: &str| match n {
        CPU => 0,
        MEMORY => 1,
        EPHEMERAL_STORAGE => 2,
        _ => 3,
    };
    names.sort_by(|a, b| rank(a).cmp(&rank(b)).then(a.cmp(b)));
    for name in names {
        let req = want[name];
        if req <= 0 {
            continue;
        }
        let total = alloc.get(name).copied().unwrap_or(0);
        let free = total - used.get(name).copied().unwrap_or(0);
        if req > free {
            reasons.push(Reason::Insufficient {
                resource: name.clone(),
                unresolvable: req > total,
            });
        }
    }
    reasons
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    pub(crate) fn node(extra: Value) -> Node {
        let mut n = json!({
            "metadata": {"name": "n1", "labels": {"kubernetes.io/hostname": "n1", "zone": "a", "size": "5"}},
            "spec": {},
            "status": {
                "allocatable": {"cpu": "2", "memory": "4Gi", "ephemeral-storage": "10Gi", "pods": "3"},
                "conditions": [{"type": "Ready", "status": "True"}],
            },
        });
        merge(&mut n, extra);
        serde_json::from_value(n).unwrap()
    }

    pub(crate) fn pod(name: &str, spec: Value) -> Pod {
        let mut p = json!({"metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}")},
            "spec": {"containers": [{"name": "c", "image": "x"}]}});
        merge(&mut p["spec"], spec);
        serde_json::from_value(p).unwrap()
    }

    fn merge(a: &mut Value, b: Value) {
        match (a, b) {
            (Value::Object(a), Value::Object(b)) => {
                for (k, v) in b {
                    merge(a.entry(k).or_insert(Value::Null), v);
                }
            }
            (a, b) => *a = b,
        }
    }

    fn with_requests(name: &str, cpu: &str, mem: &str) -> Pod {
        pod(
            name,
            json!({"containers": [{"name": "c", "image": "x", "resources": {"requests": {"cpu": cpu, "memory": mem}}}]}),
        )
    }

    fn err(r: Result<(), Vec<Reason>>) -> Vec<String> {
        r.unwrap_err().iter().map(ToString::to_string).collect()
    }

    #[test]
    fn plain_pod_fits_ready_node() {
        assert_eq!(
            feasible(&pod("p", json!({})), &node(json!({})), &[]),
            Ok(())
        );
    }

    #[test]
    fn preset_node_name() {
        let n = node(json!({}));
        assert!(feasible(&pod("p", json!({"nodeName": "n1"})), &n, &[]).is_ok());
        assert_eq!(
            err(feasible(&pod("p", json!({"nodeName": "other"})), &n, &[])),
            ["node(s) didn't match the requested node name"]
        );
    }

    #[test]
    fn unschedulable_node_unless_tolerated() {
        let n = node(json!({"spec": {"unschedulable": true}}));
        assert_eq!(
            err(feasible(&pod("p", json!({})), &n, &[])),
            ["node(s) were unschedulable"]
        );
        let tol = json!({"tolerations": [{"key": TAINT_UNSCHEDULABLE, "operator": "Exists", "effect": "NoSchedule"}]});
        assert!(feasible(&pod("p", tol), &n, &[]).is_ok());
    }

    #[test]
    fn not_ready_node_is_implicitly_tainted() {
        let n = node(json!({"status": {"conditions": [{"type": "Ready", "status": "False"}]}}));
        assert_eq!(
            err(feasible(&pod("p", json!({})), &n, &[])),
            ["node(s) had untolerated taint {node.kubernetes.io/not-ready: }"]
        );
        let unknown =
            node(json!({"status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}}));
        assert_eq!(
            err(feasible(&pod("p", json!({})), &unknown, &[])),
            ["node(s) had untolerated taint {node.kubernetes.io/unreachable: }"]
        );
        let missing = node(json!({"status": {"conditions": []}}));
        assert!(feasible(&pod("p", json!({})), &missing, &[]).is_err());
        let tol = json!({"tolerations": [{"key": TAINT_NOT_READY, "operator": "Exists"}]});
        assert!(feasible(&pod("p", tol), &n, &[]).is_ok());
    }

    #[test]
    fn taints_and_tolerations() {
        let n = node(json!({"spec": {"taints": [
            {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"},
            {"key": "soft", "value": "x", "effect": "PreferNoSchedule"},
        ]}}));
        assert_eq!(
            err(feasible(&pod("p", json!({})), &n, &[])),
            ["node(s) had untolerated taint {dedicated: gpu}"]
        );
        for (tol, ok) in [
            (
                json!({"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}),
                true,
            ),
            (json!({"key": "dedicated", "value": "gpu"}), true),
            (json!({"key": "dedicated", "operator": "Exists"}), true),
            (json!({"operator": "Exists"}), true),
            (json!({"operator": "Exists", "effect": "NoSchedule"}), true),
            (json!({"operator": "Exists", "effect": "NoExecute"}), false),
            (
                json!({"key": "dedicated", "operator": "Equal", "value": "cpu"}),
                false,
            ),
            (json!({"key": "other", "operator": "Exists"}), false),
            (
                json!({"key": "dedicated", "operator": "Bogus", "value": "gpu"}),
                false,
            ),
        ] {
            let p = pod("p", json!({"tolerations": [tol.clone()]}));
            assert_eq!(feasible(&p, &n, &[]).is_ok(), ok, "{tol}");
        }
        let exec = node(json!({"spec": {"taints": [{"key": "k", "effect": "NoExecute"}]}}));
        assert_eq!(
            err(feasible(&pod("p", json!({})), &exec, &[])),
            ["node(s) had untolerated taint {k: }"]
        );
    }

    #[test]
    fn node_selector() {
        let n = node(json!({}));
        assert!(feasible(&pod("p", json!({"nodeSelector": {"zone": "a"}})), &n, &[]).is_ok());
        assert_eq!(
            err(feasible(
                &pod("p", json!({"nodeSelector": {"zone": "b"}})),
                &n,
                &[]
            )),
            ["node(s) didn't match Pod's node affinity/selector"]
        );
        assert!(feasible(&pod("p", json!({"nodeSelector": {"missing": ""}})), &n, &[]).is_err());
    }

    fn affinity(terms: Value) -> Pod {
        pod(
            "p",
            json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}}}),
        )
    }

    #[test]
    fn required_node_affinity_operators() {
        let n = node(json!({}));
        let cases = [
            (
                json!({"key": "zone", "operator": "In", "values": ["a", "b"]}),
                true,
            ),
            (
                json!({"key": "zone", "operator": "In", "values": ["b"]}),
                false,
            ),
            (
                json!({"key": "zone", "operator": "In", "values": []}),
                false,
            ),
            (
                json!({"key": "zone", "operator": "NotIn", "values": ["b"]}),
                true,
            ),
            (
                json!({"key": "zone", "operator": "NotIn", "values": ["a"]}),
                false,
            ),
            (
                json!({"key": "nope", "operator": "NotIn", "values": ["a"]}),
                true,
            ),
            (json!({"key": "zone", "operator": "Exists"}), true),
            (json!({"key": "nope", "operator": "Exists"}), false),
            (json!({"key": "nope", "operator": "DoesNotExist"}), true),
            (json!({"key": "zone", "operator": "DoesNotExist"}), false),
            (
                json!({"key": "size", "operator": "Gt", "values": ["4"]}),
                true,
            ),
            (
                json!({"key": "size", "operator": "Gt", "values": ["5"]}),
                false,
            ),
            (
                json!({"key": "size", "operator": "Lt", "values": ["6"]}),
                true,
            ),
            (
                json!({"key": "size", "operator": "Lt", "values": ["5"]}),
                false,
            ),
            (
                json!({"key": "zone", "operator": "Gt", "values": ["1"]}),
                false,
            ),
            (
                json!({"key": "size", "operator": "Gt", "values": ["1", "2"]}),
                false,
            ),
            (
                json!({"key": "zone", "operator": "Weird", "values": ["a"]}),
                false,
            ),
        ];
        for (expr, ok) in cases {
            let p = affinity(json!([{"matchExpressions": [expr.clone()]}]));
            assert_eq!(feasible(&p, &n, &[]).is_ok(), ok, "{expr}");
        }
    }

    #[test]
    fn node_affinity_terms_and_fields() {
        let n = node(json!({}));
        let field = |op: &str, v: &str| json!({"matchFields": [{"key": "metadata.name", "operator": op, "values": [v]}]});
        assert!(feasible(&affinity(json!([field("In", "n1")])), &n, &[]).is_ok());
        assert!(feasible(&affinity(json!([field("In", "n2")])), &n, &[]).is_err());
        assert!(feasible(&affinity(json!([field("NotIn", "n2")])), &n, &[]).is_ok());
        assert!(feasible(&affinity(json!([field("NotIn", "n1")])), &n, &[]).is_err());
        // Terms are ORed; requirements within a term are ANDed.
        let bad = json!({"matchExpressions": [{"key": "zone", "operator": "In", "values": ["z"]}]});
        assert!(feasible(&affinity(json!([bad.clone(), field("In", "n1")])), &n, &[]).is_ok());
        let anded = json!({"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}],
            "matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n2"]}]});
        assert!(feasible(&affinity(json!([anded])), &n, &[]).is_err());
        // An empty term and an empty term list match nothing.
        assert!(feasible(&affinity(json!([{}])), &n, &[]).is_err());
        assert!(feasible(&affinity(json!([])), &n, &[]).is_err());
        // nodeSelector and affinity must both match.
        let mut both = affinity(json!([field("In", "n1")]));
        both.spec.as_mut().unwrap().node_selector =
            Some([("zone".to_string(), "b".to_string())].into());
        assert_eq!(
            err(feasible(&both, &n, &[])),
            ["node(s) didn't match Pod's node affinity/selector"]
        );
    }

    fn with_port(name: &str, port: Value) -> Pod {
        pod(
            name,
            json!({"containers": [{"name": "c", "image": "x", "ports": [port]}]}),
        )
    }

    #[test]
    fn host_port_conflicts() {
        let n = node(json!({}));
        let used = with_port("a", json!({"containerPort": 80, "hostPort": 8080}));
        let cases = [
            (json!({"containerPort": 80, "hostPort": 8080}), false),
            (
                json!({"containerPort": 80, "hostPort": 8080, "protocol": "UDP"}),
                true,
            ),
            (json!({"containerPort": 80, "hostPort": 8081}), true),
            (
                json!({"containerPort": 80, "hostPort": 8080, "hostIP": "127.0.0.1"}),
                false,
            ),
            (json!({"containerPort": 8080}), true),
        ];
        for (port, ok) in cases {
            let p = with_port("p", port.clone());
            assert_eq!(feasible(&p, &n, &[&used]).is_ok(), ok, "{port}");
        }
        let specific = with_port(
            "b",
            json!({"containerPort": 80, "hostPort": 9090, "hostIP": "10.0.0.1"}),
        );
        for (ip, ok) in [("10.0.0.1", false), ("10.0.0.2", true), ("0.0.0.0", false)] {
            let p = with_port(
                "p",
                json!({"containerPort": 1, "hostPort": 9090, "hostIP": ip}),
            );
            assert_eq!(feasible(&p, &n, &[&specific]).is_ok(), ok, "{ip}");
        }
        let p = with_port("p", json!({"containerPort": 80, "hostPort": 8080}));
        assert_eq!(
            err(feasible(&p, &n, &[&used])),
            ["node(s) didn't have free ports for the requested pod ports"]
        );
        // A finished pod frees its port.
        let mut done = used.clone();
        done.status = Some(serde_json::from_value(json!({"phase": "Succeeded"})).unwrap());
        assert!(feasible(&p, &n, &[&done]).is_ok());
    }

    #[test]
    fn resources_fit_and_insufficient() {
        let n = node(json!({}));
        let a = with_requests("a", "1500m", "1Gi");
        assert!(feasible(&with_requests("p", "500m", "3Gi"), &n, &[&a]).is_ok());
        assert_eq!(
            err(feasible(&with_requests("p", "600m", "1Gi"), &n, &[&a])),
            ["Insufficient cpu"]
        );
        assert_eq!(
            err(feasible(&with_requests("p", "1", "3.5Gi"), &n, &[&a])),
            ["Insufficient cpu", "Insufficient memory"]
        );
        let r = feasible(&with_requests("p", "3", "1Mi"), &n, &[]).unwrap_err();
        assert!(r[0].unresolvable(), "more than the node has at all");
        let r = feasible(&with_requests("p", "1", "1Mi"), &n, &[&a]).unwrap_err();
        assert!(!r[0].unresolvable());
        // Terminated pods and the pod itself do not count.
        let mut done = a.clone();
        done.status = Some(serde_json::from_value(json!({"phase": "Failed"})).unwrap());
        assert!(feasible(&with_requests("p", "2", "1Mi"), &n, &[&done]).is_ok());
        let me = with_requests("p", "2", "1Mi");
        assert!(feasible(&me, &n, &[&me]).is_ok());
    }

    #[test]
    fn ephemeral_and_extended_resources() {
        let n = node(json!({"status": {"allocatable": {"example.com/gpu": "1"}}}));
        let gpu = |name: &str, k: &str, v: &str| {
            pod(
                name,
                json!({"containers": [{"name": "c", "image": "x", "resources": {"requests": {k: v}}}]}),
            )
        };
        assert!(feasible(&gpu("p", "example.com/gpu", "1"), &n, &[]).is_ok());
        let holder = gpu("h", "example.com/gpu", "1");
        assert_eq!(
            err(feasible(&gpu("p", "example.com/gpu", "1"), &n, &[&holder])),
            ["Insufficient example.com/gpu"]
        );
        assert_eq!(
            err(feasible(&gpu("p", "other.io/fpga", "1"), &n, &[])),
            ["Insufficient other.io/fpga"]
        );
        assert_eq!(
            err(feasible(&gpu("p", "ephemeral-storage", "11Gi"), &n, &[])),
            ["Insufficient ephemeral-storage"]
        );
    }

    #[test]
    fn too_many_pods() {
        let n = node(json!({}));
        let (a, b, c) = (
            pod("a", json!({})),
            pod("b", json!({})),
            pod("c", json!({})),
        );
        assert!(feasible(&pod("p", json!({})), &n, &[&a, &b]).is_ok());
        assert_eq!(
            err(feasible(&pod("p", json!({})), &n, &[&a, &b, &c])),
            ["Too many pods"]
        );
        let r = feasible(&with_requests("p", "3", "0"), &n, &[&a, &b, &c]).unwrap_err();
        assert_eq!(r.len(), 2);
        let zero = node(json!({"status": {"allocatable": {"pods": "0"}}}));
        assert!(feasible(&pod("p", json!({})), &zero, &[]).unwrap_err()[0].unresolvable());
    }

    #[test]
    fn first_failing_filter_wins() {
        let n = node(json!({"spec": {"taints": [{"key": "k", "effect": "NoSchedule"}]}}));
        let p = pod("p", json!({"nodeSelector": {"zone": "b"}}));
        assert_eq!(
            err(feasible(&p, &n, &[])),
            ["node(s) had untolerated taint {k: }"]
        );
    }
}
