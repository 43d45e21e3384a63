//! Daemon set [Serial] and ControllerRevision [Serial]: a DaemonSet runs one
//! pod on every node it should run on, follows node selectors, replaces
//! deleted and failed pods, rolls out and back, keeps its history in
//! ControllerRevisions, and serves list, delete-collection and status.
//!
//! Every DaemonSet is labelled with a name unique to the test, so listing
//! across namespaces finds only the test's own. Node labels with the
//! `daemonset-` prefix are cleared before and after each test, as upstream.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{anyhow, bail, ensure, Context as _, Result};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Toleration};
use kube::api::{
    DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use serde_json::{json, Map, Value};

use super::{
    conflict, finish, node_label, node_name, not_found, patch_node_labels, ready_schedulable_nodes,
};
use crate::conformance;
use crate::ctx::{from_json, phase, ready, suffix, wait_for, Ctx};
use crate::Test;

pub(super) fn tests() -> Vec<Test> {
    vec![
        conformance!("DaemonSet-Creation", simple_daemon),
        conformance!("DaemonSet-NodeSelection", complex_daemon),
        conformance!("DaemonSet-FailedPodCreation", failed_pod),
        conformance!("DaemonSet-RollingUpdate", rolling_update),
        conformance!("DaemonSet-Rollback", rollback),
        conformance!(
            "DaemonSet, list and delete a collection of DaemonSets",
            list_delete_collection
        ),
        conformance!("DaemonSet, status sub-resource", status_subresource),
        conformance!(
            "ControllerRevision, resource lifecycle",
            controller_revision_lifecycle
        ),
    ]
}

const NAME_LABEL: &str = "daemonset-name";
const COLOR_LABEL: &str = "daemonset-color";
const LABEL_PREFIX: &str = "daemonset-";
const HASH_LABEL: &str = "controller-revision-hash";

/// Upstream's e2edaemonset.NewDaemonSet: one container "app" on port 9376;
/// `meta_labels` also labels the DaemonSet itself (newDaemonSetWithLabel).
fn new_daemon_set(name: &str, image: &str, label: &Value, meta_labels: bool) -> Value {
    let mut ds = json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": name},
        "spec": {
            "selector": {"matchLabels": label},
            "template": {
                "metadata": {"labels": label},
                "spec": {
                    "securityContext": {},
                    "containers": [{
                        "name": "app",
                        "image": image,
                        "ports": [{"containerPort": 9376}],
                        "securityContext": {},
                    }],
                },
            },
        },
    });
    if meta_labels {
        ds["metadata"]["labels"] = label.clone();
    }
    ds
}

/// The label selector string of `{k: v}` labels.
fn selector(label: &Value) -> String {
    label
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

fn uid_of(ds: &DaemonSet) -> String {
    ds.metadata.uid.clone().unwrap_or_default()
}

fn pod_name(p: &Pod) -> String {
    p.metadata.name.clone().unwrap_or_default()
}

fn controlled_by(p: &Pod, uid: &str) -> bool {
    p.metadata.owner_references.as_ref().is_some_and(|os| {
        os.iter()
            .any(|o| o.controller == Some(true) && o.uid == uid)
    })
}

fn image_of(p: &Pod) -> String {
    p.spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .and_then(|c| c.image.clone())
        .unwrap_or_default()
}

/// Available with minReadySeconds 0: Ready.
fn available(p: &Pod) -> bool {
    phase(p) == "Running" && ready(p)
}

// ------------------------------------------------------- test scaffolding

/// Removes every `daemonset-` label from the ready nodes (upstream's
/// clearDaemonSetNodeLabels).
async fn clear_node_labels(c: &Ctx) -> Result<()> {
    for n in ready_schedulable_nodes(c).await? {
        set_daemon_set_node_labels(c, &node_name(&n), &[]).await?;
    }
    Ok(())
}

/// Upstream's setDaemonSetNodeLabels: the node's `daemonset-` labels become
/// exactly `labels`.
async fn set_daemon_set_node_labels(c: &Ctx, node: &str, labels: &[(&str, &str)]) -> Result<Node> {
    let n: Node = c.all::<Node>().get(node).await?;
    let mut edits: Vec<(String, Option<String>)> = n
        .metadata
        .labels
        .clone()
        .unwrap_or_default()
        .into_keys()
        .filter(|k| k.starts_with(LABEL_PREFIX) && !labels.iter().any(|(lk, _)| lk == k))
        .map(|k| (k, None))
        .collect();
    edits.extend(
        labels
            .iter()
            .map(|(k, v)| (k.to_string(), Some(v.to_string()))),
    );
    if edits.is_empty() {
        return Ok(n);
    }
    let n = patch_node_labels(c, node, &edits).await?;
    let have = n
        .metadata
        .labels
        .clone()
        .unwrap_or_default()
        .into_keys()
        .filter(|k| k.starts_with(LABEL_PREFIX))
        .count();
    ensure!(
        have == labels.len(),
        "could not set daemon set test labels as expected: node {node} has {have} daemonset- labels, want {}",
        labels.len()
    );
    Ok(n)
}

/// Runs `body` as upstream's Daemon set suite does: the namespace's
/// node-selector annotation emptied and node labels cleared first; the
/// DaemonSets deleted (their pods reaped) and node labels cleared after.
async fn with_daemon_suite<F, Fut>(c: Ctx, body: F) -> Result<()>
where
    F: FnOnce(Ctx) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let res = async {
        c.all::<Namespace>()
            .patch(
                &c.ns,
                &PatchParams::default(),
                &Patch::Strategic(json!({"metadata": {"annotations": {
                    "scheduler.alpha.kubernetes.io/node-selector": ""
                }}})),
            )
            .await
            .context("empty the namespace's node-selector annotation")?;
        clear_node_labels(&c).await?;
        body(c.clone()).await
    }
    .await;
    let cleanup = async {
        let mut errs = Vec::new();
        if let Err(e) = delete_daemon_sets(&c).await {
            errs.push(format!("{e:#}"));
        }
        if let Err(e) = clear_node_labels(&c).await {
            errs.push(format!("{e:#}"));
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(anyhow!("{}", errs.join("; ")))
        }
    }
    .await;
    finish(res, cleanup)
}

/// Deletes the namespace's DaemonSets and waits until none of their pods
/// is available any more (upstream's AfterEach).
async fn delete_daemon_sets(c: &Ctx) -> Result<()> {
    let api = c.api::<DaemonSet>();
    for ds in api.list(&ListParams::default()).await?.items {
        let name = ds.metadata.name.clone().unwrap_or_default();
        match api.delete(&name, &DeleteParams::background()).await {
            Ok(_) => {}
            Err(e) if not_found(&e) => {}
            Err(e) => return Err(e).with_context(|| format!("delete DaemonSet {name}")),
        }
        wait_on_nodes(c, &ds, &[], "its pods to be reaped")
            .await
            .context("error waiting for daemon pod to be reaped")?;
    }
    Ok(())
}

// ------------------------------------------------------------ checks

/// Whether toleration `t` tolerates a taint (key, value, effect).
fn tolerates(t: &Toleration, key: &str, value: &str, effect: &str) -> bool {
    let effect_ok = t
        .effect
        .as_deref()
        .is_none_or(|e| e.is_empty() || e == effect);
    let op = t.operator.as_deref().unwrap_or("Equal");
    let key_ok = match t.key.as_deref() {
        None | Some("") => op == "Exists",
        Some(k) => k == key,
    };
    let value_ok = op == "Exists" || t.value.as_deref().unwrap_or("") == value;
    effect_ok && key_ok && value_ok
}

/// The tolerations the DaemonSet controller adds to every daemon pod.
fn daemon_default_tolerations() -> Vec<Toleration> {
    [
        ("node.kubernetes.io/not-ready", "NoExecute"),
        ("node.kubernetes.io/unreachable", "NoExecute"),
        ("node.kubernetes.io/disk-pressure", "NoSchedule"),
        ("node.kubernetes.io/memory-pressure", "NoSchedule"),
        ("node.kubernetes.io/pid-pressure", "NoSchedule"),
        ("node.kubernetes.io/unschedulable", "NoSchedule"),
    ]
    .into_iter()
    .map(|(k, e)| Toleration {
        key: Some(k.into()),
        operator: Some("Exists".into()),
        effect: Some(e.into()),
        ..Default::default()
    })
    .collect()
}

/// Upstream's NodeShouldRunDaemonPod, for what these tests use: the node
/// matches the template's nodeSelector and every NoSchedule/NoExecute taint
/// is tolerated.
fn should_run(node: &Node, ds: &DaemonSet) -> bool {
    let spec = ds
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.clone())
        .unwrap_or_default();
    let labels = node.metadata.labels.clone().unwrap_or_default();
    let selected = spec
        .node_selector
        .unwrap_or_default()
        .iter()
        .all(|(k, v)| labels.get(k) == Some(v));
    let mut tols = spec.tolerations.unwrap_or_default();
    tols.extend(daemon_default_tolerations());
    let tolerated = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default()
        .iter()
        .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
        .all(|t| {
            tols.iter()
                .any(|x| tolerates(x, &t.key, t.value.as_deref().unwrap_or(""), &t.effect))
        });
    selected && tolerated
}

/// Upstream's SchedulableNodes: the nodes the DaemonSet should run on.
async fn schedulable_nodes(c: &Ctx, ds: &DaemonSet) -> Result<Vec<String>> {
    Ok(c.all::<Node>()
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .filter(|n| should_run(n, ds))
        .map(node_name)
        .collect())
}

/// Upstream's checkDaemonPodStateOnNodes with IsPodAvailable: exactly one
/// available daemon pod on each of `nodes` and none elsewhere.
async fn on_exactly(c: &Ctx, ds: &DaemonSet, nodes: &[String]) -> Result<bool> {
    let uid = uid_of(ds);
    let pods = c.pods().list(&ListParams::default()).await?.items;
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    for p in &pods {
        if !controlled_by(p, &uid) || p.metadata.deletion_timestamp.is_some() || !available(p) {
            continue;
        }
        let n = p
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default();
        *per_node.entry(n).or_default() += 1;
    }
    if nodes
        .iter()
        .any(|n| per_node.get(n).copied().unwrap_or(0) != 1)
    {
        bail!("available daemon pods per node: {per_node:?}, want one on each of {nodes:?}");
    }
    if per_node.len() != nodes.len() {
        bail!("available daemon pods per node: {per_node:?}, want only {nodes:?}");
    }
    Ok(true)
}

/// Waits until the DaemonSet runs exactly on `nodes`.
async fn wait_on_nodes(c: &Ctx, ds: &DaemonSet, nodes: &[String], what: &str) -> Result<()> {
    let name = ds.metadata.name.clone().unwrap_or_default();
    wait_for(
        &format!("daemon set {name}: {what}"),
        c.env.pod_start,
        || async { Ok(on_exactly(c, ds, nodes).await?.then_some(())) },
    )
    .await
}

/// Upstream's checkRunningOnAllNodes.
async fn wait_on_all_nodes(c: &Ctx, ds: &DaemonSet, what: &str) -> Result<()> {
    let name = ds.metadata.name.clone().unwrap_or_default();
    wait_for(
        &format!("daemon set {name}: {what}"),
        c.env.pod_start,
        || async {
            let nodes = schedulable_nodes(c, ds).await?;
            Ok(on_exactly(c, ds, &nodes).await?.then_some(()))
        },
    )
    .await
}

/// Upstream's CheckDaemonStatus: desired, current and ready counts agree
/// (given a little time for the status to catch up with the pods).
async fn check_daemon_status(c: &Ctx, name: &str) -> Result<()> {
    let api = c.api::<DaemonSet>();
    wait_for(
        &format!("daemon set {name} status to count every pod ready"),
        Duration::from_secs(30),
        || async {
            let s = api.get(name).await?.status.unwrap_or_default();
            let (d, cur, r) = (
                s.desired_number_scheduled,
                s.current_number_scheduled,
                s.number_ready,
            );
            if d == cur && cur == r {
                Ok(Some(()))
            } else {
                bail!("error in daemon status. DesiredScheduled: {d}, CurrentScheduled: {cur}, Ready: {r}")
            }
        },
    )
    .await
}

/// Upstream's listDaemonPods: the pods with the label, at least one.
async fn list_daemon_pods(c: &Ctx, sel: &str) -> Result<Vec<Pod>> {
    let l = c
        .pods()
        .list(&ListParams::default().labels(sel))
        .await?
        .items;
    ensure!(!l.is_empty(), "no daemon pods match {sel}");
    Ok(l)
}

/// Creates the DaemonSet and waits until it runs everywhere with a
/// consistent status.
async fn create_and_wait(c: &Ctx, ds: Value) -> Result<DaemonSet> {
    let ds: DaemonSet = c.create(ds).await.context("create the DaemonSet")?;
    wait_on_all_nodes(c, &ds, "pods launch on every node")
        .await
        .context("error waiting for daemon pod to start")?;
    check_daemon_status(c, &ds.metadata.name.clone().unwrap_or_default()).await?;
    Ok(ds)
}

// ------------------------------------------------------------ history

/// JSON without nulls, empty objects and empty lists, and without the
/// `$patch` directive, for comparing templates semantically.
fn normalize(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut o = Map::new();
            for (k, x) in m {
                if k == "$patch" {
                    continue;
                }
                let n = normalize(x);
                let empty = n.is_null()
                    || n.as_object().is_some_and(|o| o.is_empty())
                    || n.as_array().is_some_and(|a| a.is_empty());
                if !empty {
                    o.insert(k.clone(), n);
                }
            }
            Value::Object(o)
        }
        Value::Array(a) => Value::Array(a.iter().map(normalize).collect()),
        x => x.clone(),
    }
}

/// Upstream's daemon.Match: the revision records the DaemonSet's template.
fn history_matches(rev: &ControllerRevision, ds: &DaemonSet) -> Result<bool> {
    let data = rev
        .data
        .as_ref()
        .map(|d| d.0.clone())
        .unwrap_or(Value::Null);
    let recorded = &data["spec"]["template"];
    let template =
        serde_json::to_value(&ds.spec.as_ref().context("DaemonSet has no spec")?.template)?;
    Ok(normalize(recorded) == normalize(&template))
}

/// Upstream's waitForHistoryCreated.
async fn wait_history(c: &Ctx, sel: &str, n: usize) -> Result<()> {
    let api = c.api::<ControllerRevision>();
    wait_for(
        &format!("{n} controllerrevisions matching {sel}"),
        c.env.pod_start,
        || async {
            let l = api.list(&ListParams::default().labels(sel)).await?.items;
            if l.len() == n {
                Ok(Some(()))
            } else {
                bail!("{}/{n} controllerrevisions created", l.len())
            }
        },
    )
    .await
    .context("error waiting for controllerrevisions to be created")
}

/// Upstream's curHistory: exactly one revision matches the DaemonSet.
async fn cur_history(c: &Ctx, sel: &str, ds: &DaemonSet) -> Result<ControllerRevision> {
    let l = c
        .api::<ControllerRevision>()
        .list(&ListParams::default().labels(sel))
        .await?
        .items;
    ensure!(!l.is_empty(), "no controllerrevisions match {sel}");
    let mut found = Vec::new();
    for h in l {
        let hash = h
            .metadata
            .labels
            .as_ref()
            .and_then(|m| m.get(HASH_LABEL))
            .cloned()
            .unwrap_or_default();
        ensure!(
            !hash.is_empty(),
            "controllerrevision {:?} has no {HASH_LABEL} label",
            h.metadata.name
        );
        if history_matches(&h, ds)? {
            found.push(h);
        }
    }
    ensure!(
        found.len() == 1,
        "{} controllerrevisions match the DaemonSet's current template, want 1",
        found.len()
    );
    Ok(found.remove(0))
}

fn hash_label(h: &ControllerRevision) -> String {
    h.metadata
        .labels
        .as_ref()
        .and_then(|m| m.get(HASH_LABEL))
        .cloned()
        .unwrap_or_default()
}

/// Upstream's checkDaemonSetPodsLabels: live daemon pods carry `hash`.
fn check_pods_hash(pods: &[Pod], hash: &str) -> Result<()> {
    for p in pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
    {
        let h = p
            .metadata
            .labels
            .as_ref()
            .and_then(|m| m.get(HASH_LABEL))
            .cloned()
            .unwrap_or_default();
        ensure!(
            !h.is_empty(),
            "pod {} has no {HASH_LABEL} label",
            pod_name(p)
        );
        ensure!(
            hash.is_empty() || h == hash,
            "unexpected hash for pod {}: {h}, want {hash}",
            pod_name(p)
        );
    }
    Ok(())
}

/// Upstream's checkDaemonPodsImageAndAvailability as a poll: `Some(Err)`
/// when more than `max_unavailable` pods are unavailable (a failure, not
/// a reason to wait), `Some(Ok)` once every node runs `image`.
async fn image_and_availability(
    c: &Ctx,
    ds: &DaemonSet,
    image: &str,
    max_unavailable: usize,
) -> Result<Option<Result<()>>> {
    let uid = uid_of(ds);
    let pods = c.pods().list(&ListParams::default()).await?.items;
    let mut unavailable = 0;
    let mut updated: BTreeMap<String, usize> = BTreeMap::new();
    for p in &pods {
        if p.metadata.deletion_timestamp.is_some() || !controlled_by(p, &uid) {
            continue;
        }
        if image_of(p) == image {
            let n = p
                .spec
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .unwrap_or_default();
            *updated.entry(n).or_default() += 1;
        }
        if !available(p) {
            unavailable += 1;
        }
    }
    if unavailable > max_unavailable {
        return Ok(Some(Err(anyhow!(
            "number of unavailable pods: {unavailable} is greater than maxUnavailable: {max_unavailable}"
        ))));
    }
    for n in schedulable_nodes(c, ds).await? {
        if updated.get(&n).copied().unwrap_or(0) == 0 {
            return Ok(None);
        }
    }
    Ok(Some(Ok(())))
}

async fn wait_image_and_availability(
    c: &Ctx,
    ds: &DaemonSet,
    image: &str,
    max_unavailable: usize,
) -> Result<()> {
    wait_for(
        &format!("every daemon pod to run {image}"),
        c.env.pod_start,
        || image_and_availability(c, ds, image, max_unavailable),
    )
    .await?
}

/// The strategic-merge patch setting container `name`'s image.
fn image_patch(name: &str, image: &str) -> Value {
    json!({"spec": {"template": {"spec": {"containers": [{"name": name, "image": image}]}}}})
}

/// Upstream's updateDaemonSetWithRetries: get, change, update until no conflict.
async fn update_daemon_set(
    c: &Ctx,
    name: &str,
    change: impl Fn(&mut DaemonSet),
) -> Result<DaemonSet> {
    let api = c.api::<DaemonSet>();
    for _ in 0..20 {
        let mut ds = api.get(name).await?;
        change(&mut ds);
        match api.replace(name, &PostParams::default(), &ds).await {
            Ok(d) => return Ok(d),
            Err(e) if conflict(&e) => continue,
            Err(e) => return Err(e).with_context(|| format!("update DaemonSet {name}")),
        }
    }
    bail!("couldn't apply the update to DaemonSet {name}: every attempt conflicted")
}

fn set_image(ds: &mut DaemonSet, image: &str) {
    if let Some(c) = ds
        .spec
        .as_mut()
        .and_then(|s| s.template.spec.as_mut())
        .and_then(|s| s.containers.first_mut())
    {
        c.image = Some(image.to_string());
    }
}

// ------------------------------------------------------------ tests

fn ds_label(name: &str) -> Value {
    json!({ NAME_LABEL: name })
}

async fn simple_daemon(c: Ctx) -> Result<()> {
    with_daemon_suite(c, |c| async move {
        let name = c.name("daemon-set");
        let label = ds_label(&name);
        let ds = create_and_wait(
            &c,
            new_daemon_set(&name, &c.env.images.httpd, &label, false),
        )
        .await?;
        let pods = list_daemon_pods(&c, &selector(&label)).await?;
        let victim = pod_name(&pods[0]);
        c.pods()
            .delete(&victim, &DeleteParams::default())
            .await
            .with_context(|| format!("delete daemon pod {victim}"))?;
        wait_on_all_nodes(&c, &ds, "the deleted daemon pod to be revived")
            .await
            .context("error waiting for daemon pod to revive")
    })
    .await
}

async fn complex_daemon(c: Ctx) -> Result<()> {
    with_daemon_suite(c, |c| async move {
        let name = c.name("daemon-set");
        let label = ds_label(&name);
        let mut ds = new_daemon_set(&name, &c.env.images.httpd, &label, false);
        ds["spec"]["template"]["spec"]["nodeSelector"] = json!({ COLOR_LABEL: "blue" });
        let ds: DaemonSet = c.create(ds).await.context("create the DaemonSet")?;
        wait_on_nodes(&c, &ds, &[], "no daemon pods before any node is blue")
            .await
            .context("error waiting for daemon pods to be running on no nodes")?;

        let node = node_name(
            ready_schedulable_nodes(&c)
                .await?
                .first()
                .context("no ready schedulable node")?,
        );
        let blue = set_daemon_set_node_labels(&c, &node, &[(COLOR_LABEL, "blue")])
            .await
            .context("error setting labels on node")?;
        ensure!(
            node_label(&blue, COLOR_LABEL).as_deref() == Some("blue"),
            "node {node} is not labelled blue"
        );
        wait_on_nodes(
            &c,
            &ds,
            std::slice::from_ref(&node),
            "a daemon pod on the blue node",
        )
        .await
        .context("error waiting for daemon pods to be running on new nodes")?;
        check_daemon_status(&c, &name).await?;

        let green = set_daemon_set_node_labels(&c, &node, &[(COLOR_LABEL, "green")])
            .await
            .context("error removing labels on node")?;
        wait_on_nodes(&c, &ds, &[], "no daemon pods once the node is green")
            .await
            .context("error waiting for daemon pod to not be running on nodes")?;

        let color = node_label(&green, COLOR_LABEL).unwrap_or_default();
        let patch = json!({"spec": {
            "template": {"spec": {"nodeSelector": { COLOR_LABEL: color }}},
            "updateStrategy": {"type": "RollingUpdate"},
        }});
        let ds = c
            .api::<DaemonSet>()
            .patch(&name, &PatchParams::default(), &Patch::Strategic(&patch))
            .await
            .context("error patching daemon set")?;
        wait_on_nodes(
            &c,
            &ds,
            std::slice::from_ref(&node),
            "a daemon pod on the green node",
        )
        .await
        .context("error waiting for daemon pods to be running on new nodes")?;
        check_daemon_status(&c, &name).await
    })
    .await
}

async fn failed_pod(c: Ctx) -> Result<()> {
    with_daemon_suite(c, |c| async move {
        let name = c.name("daemon-set");
        let label = ds_label(&name);
        let ds = create_and_wait(
            &c,
            new_daemon_set(&name, &c.env.images.httpd, &label, false),
        )
        .await?;
        let pods = list_daemon_pods(&c, &selector(&label)).await?;
        let mut victim = pods[0].clone();
        let victim_name = pod_name(&victim);
        victim.metadata.resource_version = None;
        victim.status.get_or_insert_with(Default::default).phase = Some("Failed".into());
        c.pods()
            .replace_status(&victim_name, &PostParams::default(), &victim)
            .await
            .context("error failing a daemon pod")?;
        wait_on_all_nodes(&c, &ds, "the failed daemon pod to be replaced")
            .await
            .context("error waiting for daemon pod to revive")?;
        let pods = c.pods();
        wait_for(
            &format!("the failed daemon pod {victim_name} to be deleted"),
            c.env.pod_start,
            || async { Ok(pods.get_opt(&victim_name).await?.is_none().then_some(())) },
        )
        .await
        .context("error waiting for the failed daemon pod to be completely deleted")
    })
    .await
}

async fn rolling_update(c: Ctx) -> Result<()> {
    with_daemon_suite(c, |c| async move {
        let name = c.name("daemon-set");
        let label = ds_label(&name);
        let sel = selector(&label);
        let mut ds = new_daemon_set(&name, &c.env.images.httpd, &label, false);
        ds["spec"]["updateStrategy"] = json!({"type": "RollingUpdate"});
        create_and_wait(&c, ds).await?;

        let ds = c.api::<DaemonSet>().get(&name).await?;
        wait_history(&c, &sel, 1).await?;
        let cur = cur_history(&c, &sel, &ds).await?;
        ensure!(
            cur.revision == 1,
            "first revision is {}, want 1",
            cur.revision
        );
        check_pods_hash(&list_daemon_pods(&c, &sel).await?, &hash_label(&cur))?;

        let new_image = c.env.images.agnhost.clone();
        let ds = c
            .api::<DaemonSet>()
            .patch(
                &name,
                &PatchParams::default(),
                &Patch::Strategic(image_patch("app", &new_image)),
            )
            .await
            .context("update the daemon pods' image")?;
        wait_image_and_availability(&c, &ds, &new_image, 1).await?;
        wait_on_all_nodes(&c, &ds, "updated pods on every node")
            .await
            .context("error waiting for daemon pod to start")?;

        let ds = c.api::<DaemonSet>().get(&name).await?;
        wait_history(&c, &sel, 2).await?;
        let cur = cur_history(&c, &sel, &ds).await?;
        ensure!(
            cur.revision == 2,
            "current revision is {}, want 2",
            cur.revision
        );
        check_pods_hash(&list_daemon_pods(&c, &sel).await?, &hash_label(&cur))
    })
    .await
}

async fn rollback(c: Ctx) -> Result<()> {
    with_daemon_suite(c, |c| async move {
        let nodes = ready_schedulable_nodes(&c).await?.len();
        let name = c.name("daemon-set");
        let label = ds_label(&name);
        let sel = selector(&label);
        let image = c.env.images.httpd.clone();
        let mut ds = new_daemon_set(&name, &image, &label, false);
        ds["spec"]["updateStrategy"] = json!({"type": "RollingUpdate"});
        create_and_wait(&c, ds).await?;

        // An image that does not exist, so the rollout cannot finish.
        let new_image = "rkube.local/e2e/foo:non-existent";
        update_daemon_set(&c, &name, |d| set_image(d, new_image)).await?;
        let pods_api = c.pods();
        wait_for("a daemon pod with the new image", c.env.pod_start, || async {
            let l = pods_api.list(&ListParams::default().labels(&sel)).await?.items;
            Ok(l.iter().any(|p| image_of(p) == new_image).then_some(()))
        })
        .await?;

        let (mut existing, mut new) = (Vec::new(), Vec::new());
        for p in list_daemon_pods(&c, &sel).await? {
            // A pod that has ended and is being deleted is gone for the
            // DaemonSet controller (which then creates the replacement); it
            // may linger in the list for a moment.
            let ended = phase(&p) == "Failed" || phase(&p) == "Succeeded";
            if ended && p.metadata.deletion_timestamp.is_some() {
                continue;
            }
            match image_of(&p) {
                i if i == image => existing.push(p),
                i if i == new_image => new.push(pod_name(&p)),
                i => bail!("unexpected pod {} found, image = {i}", pod_name(&p)),
            }
        }
        if nodes < 2 {
            let old: Vec<String> = existing
                .iter()
                .map(|p| {
                    let state = if p.metadata.deletion_timestamp.is_some() {
                        "terminating"
                    } else {
                        "live"
                    };
                    format!("{} ({state})", pod_name(p))
                })
                .collect();
            ensure!(
                existing.is_empty(),
                "on a single node no pod of the old image should remain once a new one exists, found {old:?} beside {new:?}"
            );
        } else {
            ensure!(!existing.is_empty(), "no pod of the old image remains mid-rollout");
        }
        ensure!(!new.is_empty(), "no pod of the new image was created");

        let rolled_back = update_daemon_set(&c, &name, |d| set_image(d, &image)).await?;
        wait_image_and_availability(&c, &rolled_back, &image, 1)
            .await
            .context("make sure DaemonSet rollback is complete")?;
        let now: Vec<String> = list_daemon_pods(&c, &sel).await?.iter().map(pod_name).collect();
        for p in existing.iter().map(pod_name) {
            ensure!(now.contains(&p), "unexpected pod {p} be restarted");
        }
        Ok(())
    })
    .await
}

async fn list_delete_collection(c: Ctx) -> Result<()> {
    with_daemon_suite(c, |c| async move {
        let name = c.name("daemon-set");
        let label = ds_label(&name);
        let sel = selector(&label);
        create_and_wait(&c, new_daemon_set(&name, &c.env.images.httpd, &label, true)).await?;
        let everywhere = c.all::<DaemonSet>();
        let l = everywhere
            .list(&ListParams::default().labels(&sel))
            .await
            .context("failed to list Daemon Sets")?;
        ensure!(
            l.items.len() == 1,
            "filtered list wasn't found: {} DaemonSets match {sel}",
            l.items.len()
        );
        let dp = DeleteParams {
            grace_period_seconds: Some(1),
            ..Default::default()
        };
        c.api::<DaemonSet>()
            .delete_collection(&dp, &ListParams::default().labels(&sel))
            .await
            .context("failed to delete DaemonSets")?;
        let l = everywhere
            .list(&ListParams::default().labels(&sel))
            .await
            .context("failed to list DaemonSets")?;
        ensure!(
            l.items.is_empty(),
            "filtered list should have no daemonset, has {}",
            l.items.len()
        );
        Ok(())
    })
    .await
}

/// Watches DaemonSets matching `sel` from `rv` until one named `name`
/// satisfies `found`.
async fn watch_until(
    c: &Ctx,
    sel: &str,
    rv: &str,
    name: &str,
    what: &str,
    found: impl Fn(&DaemonSet) -> bool,
) -> Result<()> {
    let api = c.api::<DaemonSet>();
    let mut w = api
        .watch(&WatchParams::default().labels(sel), rv)
        .await
        .context("watch DaemonSets")?
        .boxed();
    let look = async {
        while let Some(ev) = w.try_next().await? {
            match ev {
                WatchEvent::Added(ds) | WatchEvent::Modified(ds)
                    if ds.metadata.name.as_deref() == Some(name) && found(&ds) =>
                {
                    return Ok(());
                }
                WatchEvent::Error(e) => bail!("watch error: {e:?}"),
                _ => {}
            }
        }
        bail!("the watch ended before {what}")
    };
    tokio::time::timeout(c.env.pod_start, look)
        .await
        .map_err(|_| anyhow!("timed out watching for {what}"))?
        .with_context(|| format!("failed to locate daemon set {name}: {what}"))
}

fn has_condition(
    ds: &DaemonSet,
    f: impl Fn(&k8s_openapi::api::apps::v1::DaemonSetCondition) -> bool,
) -> bool {
    ds.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(f))
}

async fn status_subresource(c: Ctx) -> Result<()> {
    with_daemon_suite(c, |c| async move {
        let name = c.name("daemon-set");
        let label = ds_label(&name);
        let sel = selector(&label);
        let api = c.api::<DaemonSet>();
        let list = c
            .all::<DaemonSet>()
            .list(&ListParams::default().labels(&sel))
            .await
            .context("failed to list Daemon Sets")?;
        let rv = list.metadata.resource_version.clone().unwrap_or_default();
        create_and_wait(&c, new_daemon_set(&name, &c.env.images.httpd, &label, true)).await?;

        api.get_status(&name)
            .await
            .with_context(|| format!("failed to fetch the status of daemon set {name}"))?;

        let mut done = false;
        for _ in 0..5 {
            let mut ds = api
                .get(&name)
                .await
                .context("unable to retrieve daemon set")?;
            ds.status
                .get_or_insert_with(Default::default)
                .conditions
                .get_or_insert_with(Vec::new)
                .push(k8s_openapi::api::apps::v1::DaemonSetCondition {
                    type_: "StatusUpdate".into(),
                    status: "True".into(),
                    reason: Some("E2E".into()),
                    message: Some("Set from e2e test".into()),
                    ..Default::default()
                });
            match api.replace_status(&name, &PostParams::default(), &ds).await {
                Ok(_) => {
                    done = true;
                    break;
                }
                Err(e) if conflict(&e) => continue,
                Err(e) => return Err(e).context("failed to update status"),
            }
        }
        ensure!(done, "failed to update status: every attempt conflicted");
        watch_until(&c, &sel, &rv, &name, "the updated status", |ds| {
            has_condition(ds, |c| {
                c.type_ == "StatusUpdate"
                    && c.reason.as_deref() == Some("E2E")
                    && c.message.as_deref() == Some("Set from e2e test")
            })
        })
        .await?;

        let patch =
            json!({"status": {"conditions": [{"type": "StatusPatched", "status": "True"}]}});
        api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .context("failed to patch daemon set status")?;
        watch_until(&c, &sel, &rv, &name, "the patched status", |ds| {
            has_condition(ds, |c| c.type_ == "StatusPatched")
        })
        .await
    })
    .await
}

// ------------------------------------------------------ ControllerRevision

/// FNV-1a (32 bits) of `data`.
fn fnv32a(data: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in data {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// A revision hash in the controllers' alphabet (rand.SafeEncodeString of
/// the decimal FNV hash), computed here over the template's JSON.
fn template_hash(template: &Value) -> String {
    const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let h = fnv32a(template.to_string().as_bytes()).to_string();
    h.bytes()
        .map(|b| ALPHANUMS[usize::from(b) % ALPHANUMS.len()] as char)
        .collect()
}

async fn wait_revision_count(c: &Ctx, sel: &str, n: usize) -> Result<()> {
    let api = c.api::<ControllerRevision>();
    wait_for(
        &format!("{n} ControllerRevisions matching {sel}"),
        Duration::from_secs(60),
        || async {
            let l = api.list(&ListParams::default().labels(sel)).await?.items;
            if l.len() == n {
                Ok(Some(()))
            } else {
                bail!("found {} ControllerRevisions", l.len())
            }
        },
    )
    .await
    .context("failed to count required ControllerRevisions")
}

async fn controller_revision_lifecycle(c: Ctx) -> Result<()> {
    with_daemon_suite(c, |c| async move {
        let name = format!("e2e-{}-daemon-set", suffix());
        let label = ds_label(&name);
        let sel = selector(&label);
        let revs = c.api::<ControllerRevision>();
        create_and_wait(&c, new_daemon_set(&name, &c.env.images.httpd, &label, true)).await?;

        let l = c
            .all::<DaemonSet>()
            .list(&ListParams::default().labels(&sel))
            .await
            .context("failed to list Daemon Sets")?;
        ensure!(
            l.items.len() == 1,
            "filtered list wasn't found: {} DaemonSets",
            l.items.len()
        );
        let ds = c.api::<DaemonSet>().get(&name).await?;

        // Listing across all namespaces (listAppsV1ControllerRevisionForAllNamespaces).
        let all = c
            .all::<ControllerRevision>()
            .list(&ListParams::default().labels(&sel))
            .await
            .context("failed to list ControllerRevisions")?;
        ensure!(
            all.items.len() == 1,
            "expected 1 ControllerRevision matching {sel}, found {}",
            all.items.len()
        );
        let rev = &all.items[0];
        let owner = rev
            .metadata
            .owner_references
            .as_ref()
            .and_then(|o| o.first())
            .context("the ControllerRevision has no owner")?;
        ensure!(
            owner.kind == "DaemonSet" && Some(&owner.uid) == ds.metadata.uid.as_ref(),
            "the ControllerRevision's owner is {} {} ({}), not the DaemonSet",
            owner.kind,
            owner.name,
            owner.uid
        );
        let rev_name = rev.metadata.name.clone().unwrap_or_default();
        let initial = revs
            .get(&rev_name)
            .await
            .context("failed to lookup ControllerRevision")?;

        let patched = revs
            .patch(
                &rev_name,
                &PatchParams::default(),
                &Patch::Strategic(json!({"metadata": {"labels": { rev_name.clone(): "patched" }}})),
            )
            .await
            .with_context(|| format!("failed to patch ControllerRevision {rev_name}"))?;
        let l = patched.metadata.labels.clone().unwrap_or_default();
        ensure!(
            l.get(&rev_name).map(String::as_str) == Some("patched"),
            "did not find 'patched' label for this ControllerRevision; labels: {l:?}"
        );

        // A new revision for the template with grace period 1, holding the
        // initial revision's data.
        let mut template = serde_json::to_value(&ds.spec.as_ref().context("no spec")?.template)?;
        template["spec"]["terminationGracePeriodSeconds"] = json!(1);
        let hash = template_hash(&template);
        let new_name = format!("{name}-{hash}");
        let mut new_labels = ds
            .spec
            .as_ref()
            .and_then(|s| s.template.metadata.as_ref())
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        new_labels.insert(HASH_LABEL.into(), hash.clone());
        let new_rev: ControllerRevision = from_json(json!({
            "apiVersion": "apps/v1", "kind": "ControllerRevision",
            "metadata": {
                "name": new_name,
                "labels": new_labels,
                "annotations": ds.metadata.annotations,
                "ownerReferences": [{
                    "apiVersion": "apps/v1", "kind": "DaemonSet",
                    "name": name, "uid": ds.metadata.uid,
                    "controller": true, "blockOwnerDeletion": true,
                }],
            },
            "data": initial.data,
            "revision": initial.revision + 1,
        }))?;
        revs.create(&PostParams::default(), &new_rev)
            .await
            .context("failed to create ControllerRevision")?;
        wait_revision_count(&c, &sel, 2).await?;

        revs.delete(&rev_name, &DeleteParams::default())
            .await
            .context("failed to delete ControllerRevision")?;
        wait_revision_count(&c, &sel, 1).await?;

        let current = revs
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .next()
            .context("no ControllerRevision left")?;
        let cur_name = current.metadata.name.clone().unwrap_or_default();
        let mut updated = None;
        for _ in 0..5 {
            let mut r = revs
                .get(&cur_name)
                .await
                .context("unable to get ControllerRevision")?;
            r.metadata
                .labels
                .get_or_insert_with(Default::default)
                .insert(cur_name.clone(), "updated".into());
            match revs.replace(&cur_name, &PostParams::default(), &r).await {
                Ok(r) => {
                    updated = Some(r);
                    break;
                }
                Err(e) if conflict(&e) => continue,
                Err(e) => return Err(e).context("failed to update ControllerRevision"),
            }
        }
        let updated = updated.context("failed to update ControllerRevision: conflicts")?;
        let l = updated.metadata.labels.clone().unwrap_or_default();
        ensure!(
            l.get(&cur_name).map(String::as_str) == Some("updated"),
            "did not find 'updated' label for this ControllerRevision; labels: {l:?}"
        );

        // Another revision by changing the DaemonSet's template.
        let patch = json!({"spec": {"template": {"spec": {"terminationGracePeriodSeconds": 1}}},
            "updateStrategy": {"type": "RollingUpdate"}});
        c.api::<DaemonSet>()
            .patch(&name, &PatchParams::default(), &Patch::Strategic(&patch))
            .await
            .context("error patching daemon set")?;
        wait_revision_count(&c, &sel, 2).await?;

        let updated_sel = format!("{cur_name}=updated");
        revs.delete_collection(
            &DeleteParams::default(),
            &ListParams::default().labels(&updated_sel),
        )
        .await
        .context("failed to delete ControllerRevision")?;
        wait_revision_count(&c, &sel, 1).await?;

        let l = revs
            .list(&ListParams::default())
            .await
            .context("failed to list ControllerRevision")?;
        let last = l.items.first().context("no ControllerRevision left")?;
        ensure!(
            last.revision == 3,
            "failed to find the expected revision for the Controller: {} has revision {}, want 3",
            last.metadata.name.clone().unwrap_or_default(),
            last.revision
        );
        Ok(())
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_compare_without_nulls_and_patch_directives() {
        let a = json!({"metadata": {"creationTimestamp": null, "labels": {"a": "b"}},
            "spec": {"containers": [{"name": "app", "resources": {}}]}, "$patch": "replace"});
        let b =
            json!({"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "app"}]}});
        assert_eq!(normalize(&a), normalize(&b));
    }

    #[test]
    fn hashes_use_the_safe_alphabet() {
        let h = template_hash(&json!({"a": 1}));
        assert!(!h.is_empty());
        assert!(h.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)));
    }

    #[test]
    fn tolerations_match_taints() {
        let t = Toleration {
            key: Some("k".into()),
            operator: Some("Exists".into()),
            effect: Some("NoSchedule".into()),
            ..Default::default()
        };
        assert!(tolerates(&t, "k", "v", "NoSchedule"));
        assert!(!tolerates(&t, "k", "v", "NoExecute"));
        assert!(!tolerates(&t, "x", "v", "NoSchedule"));
    }
}
