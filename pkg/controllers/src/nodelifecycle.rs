//! The node lifecycle controller: every few seconds it checks each node's
//! heartbeat (the Ready condition's lastHeartbeatTime and the node Lease in
//! `kube-node-lease`); a node silent for longer than the grace period gets
//! its conditions set to Unknown ("Kubelet stopped posting node status.")
//! and its pods marked not ready. The `node.kubernetes.io/unreachable`
//! (Ready Unknown) or `node.kubernetes.io/not-ready` (Ready False) taints
//! are kept in step with the Ready condition, NoSchedule and NoExecute, and
//! removed when the node recovers. Pods on a node with a NoExecute taint
//! they do not tolerate are deleted, those tolerating it for
//! `tolerationSeconds` once that time has passed (upstream's taint manager).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

use rkube_apimachinery::scheduling::tolerates;

use crate::{pods, Context, Error, Result, Shutdown};

/// How often nodes are checked (upstream's node-monitor-period).
pub const MONITOR_PERIOD: Duration = Duration::from_secs(5);
/// Grace for a node that never posted status (upstream's node-startup-grace-period).
pub const STARTUP_GRACE: Duration = Duration::from_secs(60);

/// Taint keys this controller manages.
pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
/// Taint key for Ready=False.
pub const NOT_READY: &str = "node.kubernetes.io/not-ready";

/// Runs the controller until shutdown.
pub async fn run(ctx: Arc<Context>, shutdown: Shutdown) -> Result<()> {
    let stop = shutdown.signal();
    tokio::pin!(stop);
    loop {
        if let Err(e) = sweep(&ctx).await {
            tracing::warn!(controller = ctx.name, "node sweep failed: {e}");
        }
        tokio::select! {
            _ = &mut stop => return Ok(()),
            _ = tokio::time::sleep(MONITOR_PERIOD) => {}
        }
    }
}

fn ready_condition(node: &Node) -> Option<&NodeCondition> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
}

/// What the heartbeat check decides for a node.
#[derive(Debug, PartialEq, Eq)]
pub enum Health {
    /// Heartbeats are fresh (or the node is already marked Unknown).
    Fresh,
    /// Silent too long: mark Unknown with this message.
    Stale(&'static str),
}

/// The heartbeat decision: the latest of the Ready heartbeat and the
/// lease renewal must be within `grace` of `now` (a node that never
/// posted status gets the startup grace from its creation).
pub fn health(
    node: &Node,
    lease_renew: Option<Timestamp>,
    now: Timestamp,
    grace: Duration,
) -> Health {
    let ready = ready_condition(node);
    if ready.is_some_and(|c| c.status == "Unknown") {
        // Already marked; the node agent's next status brings it back.
        return Health::Fresh;
    }
    let heartbeat = ready
        .and_then(|c| c.last_heartbeat_time.as_ref())
        .map(|t| t.0);
    let probe = match (heartbeat, lease_renew) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    match (ready, probe) {
        (None, _) => {
            let created = node
                .metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0)
                .unwrap_or(now);
            let since = lease_renew.unwrap_or(created).max(created);
            if now.as_second() - since.as_second() > (grace.max(STARTUP_GRACE)).as_secs() as i64 {
                Health::Stale("Kubelet never posted node status.")
            } else {
                Health::Fresh
            }
        }
        (Some(_), Some(p)) if now.as_second() - p.as_second() <= grace.as_secs() as i64 => {
            Health::Fresh
        }
        (Some(_), _) => Health::Stale("Kubelet stopped posting node status."),
    }
}

/// The conditions after marking the node Unknown: every condition the node
/// agent posts becomes Unknown (reason NodeStatusUnknown), keeping the
/// heartbeat time; a missing Ready is added.
pub fn unknown_conditions(node: &Node, message: &str, now: Timestamp) -> Vec<NodeCondition> {
    let mut conds = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    for t in ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"] {
        match conds.iter_mut().find(|c| c.type_ == t) {
            Some(c) => {
                if c.status != "Unknown" {
                    c.last_transition_time = Some(Time(now));
                }
                c.status = "Unknown".into();
                c.reason = Some("NodeStatusUnknown".into());
                c.message = Some(message.into());
            }
            None => conds.push(NodeCondition {
                type_: t.into(),
                status: "Unknown".into(),
                reason: Some("NodeStatusNeverUpdated".into()),
                message: Some(message.into()),
                last_heartbeat_time: node.metadata.creation_timestamp.clone(),
                last_transition_time: Some(Time(now)),
            }),
        }
    }
    conds
}

/// The node's taints with the managed ones set for `ready` ("True",
/// "False", "Unknown" or None): unreachable for Unknown, not-ready for
/// False, none otherwise. Existing managed taints keep their timeAdded.
pub fn desired_taints(
    current: &[Taint],
    ready: Option<&str>,
    no_execute: bool,
    now: Timestamp,
) -> Vec<Taint> {
    let want: &[&str] = match ready {
        Some("Unknown") => &[UNREACHABLE],
        Some("False") => &[NOT_READY],
        _ => &[],
    };
    let effects: &[&str] = if no_execute {
        &["NoSchedule", "NoExecute"]
    } else {
        &["NoSchedule"]
    };
    let managed = |t: &Taint| t.key == UNREACHABLE || t.key == NOT_READY;
    let mut out: Vec<Taint> = current
        .iter()
        .filter(|t| {
            !managed(t) || (want.contains(&t.key.as_str()) && effects.contains(&t.effect.as_str()))
        })
        .cloned()
        .collect();
    for key in want {
        for effect in effects.iter().copied() {
            if !out.iter().any(|t| t.key == *key && t.effect == effect) {
                out.push(Taint {
                    key: key.to_string(),
                    effect: effect.into(),
                    value: None,
                    time_added: (effect == "NoExecute").then_some(Time(now)),
                });
            }
        }
    }
    out
}

/// When a pod must be evicted because of the node's NoExecute taints:
/// None when it tolerates them all indefinitely, `Some(now)` when some
/// taint is not tolerated, else the earliest taint time plus its
/// tolerationSeconds.
pub fn eviction_time(
    tolerations: &[Toleration],
    taints: &[Taint],
    now: Timestamp,
) -> Option<Timestamp> {
    let mut at: Option<Timestamp> = None;
    for taint in taints.iter().filter(|t| t.effect == "NoExecute") {
        let matching: Vec<&Toleration> =
            tolerations.iter().filter(|t| tolerates(t, taint)).collect();
        if matching.is_empty() {
            return Some(now);
        }
        // The shortest tolerationSeconds among the matching tolerations;
        // any matching toleration without it tolerates forever.
        if matching.iter().any(|t| t.toleration_seconds.is_none()) {
            continue;
        }
        let secs = matching
            .iter()
            .filter_map(|t| t.toleration_seconds)
            .min()
            .unwrap_or(0)
            .max(0);
        let added = taint.time_added.as_ref().map(|t| t.0).unwrap_or(now);
        let when = Timestamp::from_second(added.as_second() + secs).unwrap_or(now);
        if at.is_none_or(|a| when < a) {
            at = Some(when);
        }
    }
    at
}

async fn sweep(ctx: &Context) -> Result<()> {
    let nodes_api: Api<Node> = Api::all(ctx.client.clone());
    let nodes = nodes_api
        .list(&ListParams::default())
        .await
        .map_err(Error::kube("list nodes"))?
        .items;
    let leases: BTreeMap<String, Timestamp> =
        Api::<Lease>::namespaced(ctx.client.clone(), "kube-node-lease")
            .list(&ListParams::default())
            .await
            .map_err(Error::kube("list node leases"))?
            .items
            .into_iter()
            .filter_map(|l| {
                let t = l.spec.as_ref()?.renew_time.as_ref()?.0;
                Some((l.name_any(), t))
            })
            .collect();
    let now = Timestamp::now();
    // Upstream's full-disruption mode: when every node is unhealthy the
    // cause is likely the control plane's view, not the nodes: keep only
    // the NoSchedule taints and evict nothing.
    let healthy = |n: &Node| {
        ready_condition(n).is_some_and(|c| c.status == "True")
            && health(
                n,
                leases.get(&n.name_any()).copied(),
                now,
                ctx.config.node_monitor_grace,
            ) == Health::Fresh
    };
    let no_execute = nodes.iter().any(healthy);
    if !no_execute && !nodes.is_empty() {
        tracing::debug!(
            controller = ctx.name,
            "Controller detected that all Nodes are not-Ready. Entering master disruption mode."
        );
    }
    for node in nodes {
        if let Err(e) = check_node(ctx, &nodes_api, node, &leases, no_execute, now).await {
            tracing::warn!(controller = ctx.name, "node check failed: {e}");
        }
    }
    Ok(())
}

async fn check_node(
    ctx: &Context,
    api: &Api<Node>,
    mut node: Node,
    leases: &BTreeMap<String, Timestamp>,
    no_execute: bool,
    now: Timestamp,
) -> Result<()> {
    let name = node.name_any();
    let lease = leases.get(&name).copied();
    if let Health::Stale(msg) = health(&node, lease, now, ctx.config.node_monitor_grace) {
        let conds = unknown_conditions(&node, msg, now);
        api.patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"conditions": conds}})),
        )
        .await
        .map_err(Error::kube(format!("update status of node {name}")))?;
        ctx.normal(
            &node.object_ref(&()),
            "NodeNotReady",
            format!("Node {name} status is now: NodeNotReady"),
        )
        .await;
        if let Some(st) = node.status.as_mut() {
            st.conditions = Some(conds);
        }
        mark_pods_not_ready(ctx, &name, now).await?;
    }
    let ready = ready_condition(&node).map(|c| c.status.clone());
    let current = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let desired = desired_taints(&current, ready.as_deref(), no_execute, now);
    if desired != current {
        let patch = json!({"spec": {"taints": desired}});
        api.patch(&name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .map_err(Error::kube(format!("update taints of node {name}")))?;
    }
    if desired.iter().any(|t| t.effect == "NoExecute") {
        evict_pods(ctx, &name, &desired, now).await?;
    }
    Ok(())
}

async fn node_pods(ctx: &Context, node: &str) -> Result<Vec<Pod>> {
    let lp = ListParams::default().fields(&format!("spec.nodeName={node}"));
    Ok(Api::<Pod>::all(ctx.client.clone())
        .list(&lp)
        .await
        .map_err(Error::kube(format!("list pods on node {node}")))?
        .items)
}

async fn mark_pods_not_ready(ctx: &Context, node: &str, now: Timestamp) -> Result<()> {
    for pod in node_pods(ctx, node).await? {
        if !pods::is_ready(&pod) || !pods::is_active(&pod) {
            continue;
        }
        let mut conds = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default();
        for c in conds.iter_mut().filter(|c| c.type_ == "Ready") {
            c.status = "False".into();
            c.last_transition_time = Some(Time(now));
        }
        let api: Api<Pod> =
            Api::namespaced(ctx.client.clone(), &pod.namespace().unwrap_or_default());
        if let Err(e) = api
            .patch_status(
                &pod.name_any(),
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"conditions": conds}})),
            )
            .await
        {
            tracing::debug!(controller = ctx.name, "mark pod not ready: {e}");
        }
    }
    Ok(())
}

async fn evict_pods(ctx: &Context, node: &str, taints: &[Taint], now: Timestamp) -> Result<()> {
    for pod in node_pods(ctx, node).await? {
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let tolerations = pod
            .spec
            .as_ref()
            .and_then(|s| s.tolerations.clone())
            .unwrap_or_default();
        // The toleration timer starts when both the taint and the pod exist.
        let created = pod.metadata.creation_timestamp.as_ref().map(|t| t.0);
        let taints: Vec<Taint> = taints
            .iter()
            .map(|t| {
                let mut t = t.clone();
                if let (Some(added), Some(c)) = (t.time_added.as_ref().map(|a| a.0), created) {
                    t.time_added = Some(Time(added.max(c)));
                }
                t
            })
            .collect();
        let Some(at) = eviction_time(&tolerations, &taints, now) else {
            continue;
        };
        if at > now {
            continue;
        }
        let ns = pod.namespace().unwrap_or_default();
        let name = pod.name_any();
        ctx.normal(
            &pod.object_ref(&()),
            "TaintManagerEviction",
            format!("Marking for deletion Pod {ns}/{name}"),
        )
        .await;
        let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
        let cond = json!({"status": {"conditions": [{"type": "DisruptionTarget", "status": "True",
            "reason": "DeletionByTaintManager", "message": "Taint manager: deleting due to NoExecute taint",
            "lastTransitionTime": Time(now)}]}});
        let _ = api
            .patch_status(&name, &PatchParams::default(), &Patch::Strategic(cond))
            .await;
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(Error::kube(format!("delete pod {ns}/{name}"))(e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::NodeStatus;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(1_000_000 + s).unwrap()
    }

    fn node(status: &str, heartbeat: i64) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some("n".into()),
                creation_timestamp: Some(Time(ts(-1000))),
                ..Default::default()
            },
            spec: None,
            status: Some(NodeStatus {
                conditions: Some(vec![NodeCondition {
                    type_: "Ready".into(),
                    status: status.into(),
                    last_heartbeat_time: Some(Time(ts(heartbeat))),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn grace_decisions() {
        let grace = Duration::from_secs(40);
        assert_eq!(
            health(&node("True", -10), None, ts(0), grace),
            Health::Fresh
        );
        assert_eq!(
            health(&node("True", -50), None, ts(0), grace),
            Health::Stale("Kubelet stopped posting node status.")
        );
        // A fresh lease keeps the node alive even with an old heartbeat.
        assert_eq!(
            health(&node("True", -50), Some(ts(-5)), ts(0), grace),
            Health::Fresh
        );
        assert_eq!(
            health(&node("Unknown", -500), None, ts(0), grace),
            Health::Fresh
        );
        let conds = unknown_conditions(
            &node("True", -50),
            "Kubelet stopped posting node status.",
            ts(0),
        );
        let ready = conds.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(ready.status, "Unknown");
        assert_eq!(ready.reason.as_deref(), Some("NodeStatusUnknown"));
        assert_eq!(ready.last_heartbeat_time, Some(Time(ts(-50))));
        assert_eq!(conds.len(), 4);
    }

    #[test]
    fn taints_follow_ready() {
        let t = desired_taints(&[], Some("Unknown"), true, ts(0));
        assert_eq!(t.len(), 2);
        assert!(t.iter().all(|t| t.key == UNREACHABLE));
        let t2 = desired_taints(&t, Some("False"), true, ts(5));
        assert!(t2.iter().all(|t| t.key == NOT_READY));
        let keep = desired_taints(&t, Some("Unknown"), true, ts(9));
        assert_eq!(keep, t);
        let other = Taint {
            key: "dedicated".into(),
            effect: "NoSchedule".into(),
            ..Default::default()
        };
        let mut with_other = t.clone();
        with_other.push(other.clone());
        assert_eq!(
            desired_taints(&with_other, Some("True"), true, ts(0)),
            vec![other]
        );
        // Full disruption: NoSchedule only, the NoExecute taint goes away.
        let fd = desired_taints(&t, Some("Unknown"), false, ts(9));
        assert_eq!(fd.len(), 1);
        assert_eq!(fd[0].effect, "NoSchedule");
    }

    #[test]
    fn eviction_times() {
        let taint = Taint {
            key: UNREACHABLE.into(),
            effect: "NoExecute".into(),
            time_added: Some(Time(ts(0))),
            value: None,
        };
        let tol = |secs: Option<i64>| Toleration {
            key: Some(UNREACHABLE.into()),
            operator: Some("Exists".into()),
            effect: Some("NoExecute".into()),
            toleration_seconds: secs,
            value: None,
        };
        assert_eq!(
            eviction_time(&[], std::slice::from_ref(&taint), ts(10)),
            Some(ts(10))
        );
        assert_eq!(
            eviction_time(&[tol(Some(300))], std::slice::from_ref(&taint), ts(10)),
            Some(ts(300))
        );
        assert_eq!(
            eviction_time(&[tol(None)], std::slice::from_ref(&taint), ts(10)),
            None
        );
        let all = Toleration {
            operator: Some("Exists".into()),
            ..Default::default()
        };
        assert_eq!(
            eviction_time(&[all], std::slice::from_ref(&taint), ts(10)),
            None
        );
    }
}
