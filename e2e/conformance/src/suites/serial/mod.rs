//! The [Serial] and [Disruptive] conformance tests: namespaces, the garbage
//! collector with many pods, DaemonSets and ControllerRevisions, taint-based
//! eviction, scheduler predicates and preemption, and the emptyDir wrapper
//! race. Many of them change the node (labels, taints, extended resources)
//! or cluster-scoped objects (namespaces, PriorityClasses); each restores
//! what it changed before it returns, also when it fails.

use crate::ctx::node_ready;
use std::time::Duration;

use anyhow::{anyhow, bail, ensure, Context as _, Result};
use k8s_openapi::api::core::v1::{Event, Node, Pod, Taint};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use serde_json::{json, Value};

use crate::ctx::{phase, pod, wait_for, Ctx};
use crate::Test;

mod daemon;
mod gc;
mod namespaces;
mod predicates;
mod preemption;
mod taints;
mod wrapper;

/// The tests of this module.
pub fn tests() -> Vec<Test> {
    let mut v = Vec::new();
    v.extend(daemon::tests());
    v.extend(gc::tests());
    v.extend(namespaces::tests());
    v.extend(predicates::tests());
    v.extend(preemption::tests());
    v.extend(taints::tests());
    v.extend(wrapper::tests());
    v
}

/// The bounded wait for something that never comes (a scheduling failure
/// event, a pod that must stay pending), so a missing feature fails fast.
const SHORT_WAIT: Duration = Duration::from_secs(60);

/// A random UUID-shaped string (upstream names things with uuid.NewUUID).
fn uuid() -> String {
    use rand::Rng;
    let mut r = rand::rng();
    let hex = |n: usize, r: &mut rand::rngs::ThreadRng| -> String {
        (0..n)
            .map(|_| char::from_digit(r.random_range(0..16), 16).unwrap_or('0'))
            .collect()
    };
    format!(
        "{}-{}-{}-{}-{}",
        hex(8, &mut r),
        hex(4, &mut r),
        hex(4, &mut r),
        hex(4, &mut r),
        hex(12, &mut r)
    )
}

/// Upstream's getUniqLabel: `{key-N: value-N}` with a unique N.
fn suffix_label(key: &str, value: &str) -> Value {
    let n = crate::ctx::suffix();
    let mut m = serde_json::Map::new();
    m.insert(format!("{key}-{n}"), Value::String(format!("{value}-{n}")));
    Value::Object(m)
}

/// `base` with the top-level keys of `extra` added or replaced.
fn merge(mut base: Value, extra: Value) -> Value {
    if let (Some(b), Value::Object(e)) = (base.as_object_mut(), extra) {
        for (k, v) in e {
            b.insert(k, v);
        }
    }
    base
}

/// The outcome of a test body followed by its cleanup: the body's error
/// wins; a failed cleanup fails an otherwise passing test.
fn finish<T>(res: Result<T>, cleanup: Result<()>) -> Result<T> {
    match (res, cleanup) {
        (Ok(v), Ok(())) => Ok(v),
        (Ok(_), Err(e)) => Err(e.context("cleanup")),
        (Err(e), Ok(())) => Err(e),
        (Err(e), Err(ce)) => Err(anyhow!("{e:#} (and the cleanup failed: {ce:#})")),
    }
}

/// Whether the API error is a 404.
fn not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// Whether the API error is a 409 (conflict or already exists).
fn conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

/// Nodes API.
fn nodes(c: &Ctx) -> Api<Node> {
    c.all()
}

/// Upstream's GetReadySchedulableNodes: ready, not cordoned, and without
/// NoSchedule/NoExecute taints.
async fn ready_schedulable_nodes(c: &Ctx) -> Result<Vec<Node>> {
    let all = nodes(c).list(&ListParams::default()).await?.items;
    let ok: Vec<Node> = all
        .into_iter()
        .filter(|n| {
            let spec = n.spec.clone().unwrap_or_default();
            let untainted = spec
                .taints
                .unwrap_or_default()
                .iter()
                .all(|t| t.effect != "NoSchedule" && t.effect != "NoExecute");
            node_ready(n) && spec.unschedulable != Some(true) && untainted
        })
        .collect();
    ensure!(!ok.is_empty(), "there is no ready schedulable node");
    Ok(ok)
}

/// Name of a node object.
fn node_name(n: &Node) -> String {
    n.metadata.name.clone().unwrap_or_default()
}

/// Label `key` of node object `n`.
fn node_label(n: &Node, key: &str) -> Option<String> {
    n.metadata.labels.as_ref()?.get(key).cloned()
}

/// Upstream's initPausePod: a pause container named after the pod, grace
/// period 1, plus the pod spec fields in `spec`.
fn pause_pod(c: &Ctx, name: &str, labels: Value, spec: Value) -> Value {
    let mut p = pod(
        name,
        merge(
            json!({"containers": [{"name": name, "image": c.env.images.pause}]}),
            spec,
        ),
    );
    p["metadata"]["labels"] = labels;
    p
}

/// The spec fragment of a container's `resources` with equal requests and limits.
fn resources(res: Value) -> Value {
    json!({"requests": res, "limits": res})
}

/// Sets the pod's first container's resources.
fn with_resources(mut p: Value, res: Value) -> Value {
    p["spec"]["containers"][0]["resources"] = resources(res);
    p
}

/// A required node affinity on field `metadata.name` (upstream pins pods
/// to a node this way instead of setting spec.nodeName).
fn node_name_affinity(node: &str) -> Value {
    json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchFields": [
            {"key": "metadata.name", "operator": "In", "values": [node]}
        ]}]
    }}})
}

/// Waits until pod `name` of namespace `ns` is Running.
async fn wait_running_in(c: &Ctx, ns: &str, name: &str) -> Result<Pod> {
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), ns);
    wait_for(&format!("pod {ns}/{name} to run"), c.env.pod_start, || {
        let pods = pods.clone();
        async move {
            let p = pods.get(name).await?;
            if phase(&p) == "Failed" || phase(&p) == "Succeeded" {
                bail!("pod {name} ended: phase {}", phase(&p));
            }
            Ok((phase(&p) == "Running").then_some(p))
        }
    })
    .await
}

/// Upstream's WaitForPodNotPending: the pod leaves the Pending phase.
async fn wait_not_pending(c: &Ctx, name: &str) -> Result<Pod> {
    let pods = c.pods();
    wait_for(
        &format!("pod {name} to leave Pending"),
        c.env.pod_start,
        || {
            let pods = pods.clone();
            async move {
                let p = pods.get(name).await?;
                Ok((phase(&p) != "Pending" && !phase(&p).is_empty()).then_some(p))
            }
        },
    )
    .await
}

/// Upstream's GetNodeThatCanRunPod: runs pod `name` without constraints,
/// deletes it and returns the node it ran on.
async fn node_that_can_run_pod(c: &Ctx, name: &str) -> Result<String> {
    c.create_pod(pause_pod(c, name, json!({}), json!({})))
        .await?;
    let p = wait_running_in(c, &c.ns, name).await?;
    c.pods()
        .delete(name, &DeleteParams::default().grace_period(0))
        .await
        .with_context(|| format!("delete pod {name}"))?;
    let node = p.spec.and_then(|s| s.node_name).unwrap_or_default();
    ensure!(!node.is_empty(), "running pod {name} has no spec.nodeName");
    Ok(node)
}

/// Sets (`Some`) or removes (`None`) labels of node `node` and returns it.
async fn patch_node_labels(
    c: &Ctx,
    node: &str,
    labels: &[(String, Option<String>)],
) -> Result<Node> {
    let mut m = serde_json::Map::new();
    for (k, v) in labels {
        m.insert(
            k.clone(),
            v.clone().map(Value::String).unwrap_or(Value::Null),
        );
    }
    nodes(c)
        .patch(
            node,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": m}})),
        )
        .await
        .with_context(|| format!("patch the labels of node {node}"))
}

/// Upstream's AddOrUpdateLabelOnNode + ExpectNodeHasLabel.
async fn add_node_label(c: &Ctx, node: &str, key: &str, value: &str) -> Result<()> {
    let n = patch_node_labels(c, node, &[(key.to_string(), Some(value.to_string()))]).await?;
    ensure!(
        node_label(&n, key).as_deref() == Some(value),
        "node {node} does not have label {key}={value} after adding it: {:?}",
        n.metadata.labels
    );
    Ok(())
}

/// Upstream's RemoveLabelOffNode: the label is gone afterwards.
async fn remove_node_label(c: &Ctx, node: &str, key: &str) -> Result<()> {
    let n = patch_node_labels(c, node, &[(key.to_string(), None)]).await?;
    ensure!(
        node_label(&n, key).is_none(),
        "node {node} still has label {key} after removing it"
    );
    Ok(())
}

fn same_taint(a: &Taint, b: &Taint) -> bool {
    a.key == b.key && a.effect == b.effect
}

/// Replaces the node's taints with `edit(taints)`, retrying on conflicts.
async fn edit_taints(c: &Ctx, node: &str, edit: impl Fn(&mut Vec<Taint>)) -> Result<Node> {
    let api = nodes(c);
    let mut last = None;
    for _ in 0..10 {
        let n = api.get(node).await?;
        let mut taints = n.spec.clone().and_then(|s| s.taints).unwrap_or_default();
        edit(&mut taints);
        let taints = if taints.is_empty() {
            Value::Null
        } else {
            serde_json::to_value(&taints)?
        };
        let patch = json!({
            "metadata": {"resourceVersion": n.metadata.resource_version},
            "spec": {"taints": taints},
        });
        match api
            .patch(node, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(n) => return Ok(n),
            Err(e) if conflict(&e) => last = Some(e),
            Err(e) => return Err(e).with_context(|| format!("patch the taints of node {node}")),
        }
    }
    Err(anyhow!(
        "patch the taints of node {node}: still conflicting: {last:?}"
    ))
}

fn has_taint(n: &Node, t: &Taint) -> bool {
    n.spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .is_some_and(|ts| ts.iter().any(|x| same_taint(x, t) && x.value == t.value))
}

/// Upstream's AddOrUpdateTaintOnNode + ExpectNodeHasTaint.
async fn add_taint(c: &Ctx, node: &str, taint: &Taint) -> Result<()> {
    let n = edit_taints(c, node, |ts| {
        ts.retain(|x| !same_taint(x, taint));
        ts.push(taint.clone());
    })
    .await?;
    ensure!(
        has_taint(&n, taint),
        "node {node} does not have taint {}={:?}:{} after adding it",
        taint.key,
        taint.value,
        taint.effect
    );
    Ok(())
}

/// Upstream's RemoveTaintOffNode: the taint is gone afterwards.
async fn remove_taint(c: &Ctx, node: &str, taint: &Taint) -> Result<()> {
    let n = edit_taints(c, node, |ts| ts.retain(|x| !same_taint(x, taint))).await?;
    ensure!(
        !has_taint(&n, taint),
        "node {node} still has taint {} after removing it",
        taint.key
    );
    Ok(())
}

/// Upstream's AddExtendedResource: the node advertises `amount` of `res`
/// (capacity and allocatable, through the status subresource).
async fn add_extended_resource(c: &Ctx, node: &str, res: &str, amount: &str) -> Result<()> {
    let patch = json!({"status": {"capacity": {res: amount}, "allocatable": {res: amount}}});
    nodes(c)
        .patch_status(node, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .with_context(|| format!("add extended resource {res} to node {node}"))?;
    Ok(())
}

/// Upstream's RemoveExtendedResource.
async fn remove_extended_resource(c: &Ctx, node: &str, res: &str) -> Result<()> {
    let patch = json!({"status": {"capacity": {res: null}, "allocatable": {res: null}}});
    nodes(c)
        .patch_status(node, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .with_context(|| format!("remove extended resource {res} from node {node}"))?;
    Ok(())
}

/// Upstream's WaitForSchedulerAfterAction(..., false): a Warning
/// FailedScheduling event about pod `name` appears.
async fn wait_scheduling_failed(c: &Ctx, name: &str) -> Result<()> {
    let events = c.api::<Event>();
    wait_for(
        &format!("a FailedScheduling event for pod {name}"),
        SHORT_WAIT,
        || {
            let events = events.clone();
            async move {
                let l = events.list(&ListParams::default()).await?;
                let found = l.items.iter().any(|e| {
                    let about = e.involved_object.name.as_deref() == Some(name)
                        || e.metadata
                            .name
                            .as_deref()
                            .is_some_and(|n| n.starts_with(name));
                    about
                        && e.type_.as_deref() == Some("Warning")
                        && e.reason.as_deref() == Some("FailedScheduling")
                });
                Ok(found.then_some(()))
            }
        },
    )
    .await
}

/// Upstream's verifyResult: of the namespace's pods, `scheduled` are bound
/// to a ready node (with PodScheduled=True) and `pending` are not bound.
async fn verify_result(c: &Ctx, scheduled: usize, pending: usize) -> Result<()> {
    let workers: Vec<String> = ready_schedulable_nodes(c)
        .await?
        .iter()
        .map(node_name)
        .collect();
    let pods = c.pods().list(&ListParams::default()).await?.items;
    let (mut s, mut p) = (Vec::new(), Vec::new());
    for pd in &pods {
        let name = pd.metadata.name.clone().unwrap_or_default();
        let node = pd.spec.as_ref().and_then(|s| s.node_name.clone());
        match node {
            Some(n) if workers.contains(&n) => {
                let cond = pd
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .and_then(|cs| cs.iter().find(|c| c.type_ == "PodScheduled"));
                match cond {
                    None => bail!("scheduled pod {name} has no PodScheduled condition"),
                    Some(c) if c.status != "True" => {
                        bail!("scheduled pod {name} has PodScheduled={}", c.status)
                    }
                    Some(_) => s.push(name),
                }
            }
            Some(n) if !n.is_empty() => {}
            _ => p.push(name),
        }
    }
    ensure!(
        p.len() == pending,
        "expected {pending} pods not scheduled, found {}: {p:?}",
        p.len()
    );
    ensure!(
        s.len() == scheduled,
        "expected {scheduled} scheduled pods, found {}: {s:?}",
        s.len()
    );
    Ok(())
}

/// Upstream's WaitForStableCluster: no pod of the cluster that has not
/// ended waits to be scheduled.
async fn wait_stable_cluster(c: &Ctx) -> Result<()> {
    let pods = c.all::<Pod>();
    wait_for(
        "all pods of the cluster to be scheduled",
        c.env.pod_start,
        || {
            let pods = pods.clone();
            async move {
                let l = pods.list(&ListParams::default()).await?;
                let waiting: Vec<String> = l
                    .items
                    .iter()
                    .filter(|p| {
                        p.metadata.deletion_timestamp.is_none()
                            && phase(p) != "Succeeded"
                            && phase(p) != "Failed"
                            && p.spec
                                .as_ref()
                                .and_then(|s| s.node_name.as_deref())
                                .unwrap_or("")
                                .is_empty()
                    })
                    .map(|p| {
                        format!(
                            "{}/{}",
                            p.metadata.namespace.as_deref().unwrap_or(""),
                            p.metadata.name.as_deref().unwrap_or("")
                        )
                    })
                    .collect();
                if waiting.is_empty() {
                    Ok(Some(()))
                } else {
                    bail!("unscheduled pods: {waiting:?}")
                }
            }
        },
    )
    .await
}

/// Milli-units of a CPU quantity ("2", "500m", "0.5").
fn cpu_milli(q: &str) -> Result<i64> {
    let q = q.trim();
    if let Some(m) = q.strip_suffix('m') {
        return m
            .parse::<i64>()
            .with_context(|| format!("cpu quantity {q:?}"));
    }
    let v: f64 = q.parse().with_context(|| format!("cpu quantity {q:?}"))?;
    Ok((v * 1000.0).round() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_quantities_parse() {
        assert_eq!(cpu_milli("2").unwrap(), 2000);
        assert_eq!(cpu_milli("250m").unwrap(), 250);
        assert_eq!(cpu_milli("0.5").unwrap(), 500);
        assert!(cpu_milli("x").is_err());
    }

    #[test]
    fn uuids_look_like_uuids() {
        let u = uuid();
        assert_eq!(u.len(), 36);
        assert_eq!(u.matches('-').count(), 4);
    }

    #[test]
    fn finish_keeps_the_first_error() {
        let r: Result<()> = finish(Err(anyhow!("body")), Err(anyhow!("clean")));
        let s = format!("{:#}", r.unwrap_err());
        assert!(s.starts_with("body") && s.contains("clean"), "{s}");
        assert!(finish(Ok(1), Ok(())).is_ok());
        assert!(finish(Ok(1), Err(anyhow!("clean"))).is_err());
    }
}
