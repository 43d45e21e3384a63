//! The DaemonSet controller, as upstream's pkg/controller/daemon: one pod
//! on every eligible node (nodeSelector, required node affinity, taints
//! against the pod's tolerations plus the tolerations upstream adds to
//! daemon pods), each pod pinned to its node by a `metadata.name`
//! matchFields node affinity and bound by the scheduler; failed pods are
//! replaced, extra pods removed, RollingUpdate (maxUnavailable, maxSurge)
//! and OnDelete updates tracked with ControllerRevisions and the
//! `controller-revision-hash` / `pod-template-generation` labels, and the
//! status counts kubectl shows. Node changes requeue every DaemonSet.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod,
    PodSpec, PodTemplateSpec, Toleration,
};
use k8s_openapi::jiff::Timestamp;
use kube::api::{ListParams, Patch, PatchParams};
use kube::core::Selector;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

use crate::history::{self, HASH_LABEL};
use crate::intstr::scaled_value;
use crate::owner::{self, Claim};
use crate::{hash, pods, status, Context, Error, Result, Shutdown};
use rkube_apimachinery::scheduling::{find_untolerated, fits_node_affinity};

/// Pod label holding the DaemonSet's template generation.
pub const TEMPLATE_GENERATION_LABEL: &str = "pod-template-generation";
/// DaemonSet annotation the API server keeps the template generation in.
pub const TEMPLATE_GENERATION_ANNOTATION: &str = "deprecated.daemonset.template.generation";

/// Runs the controller until shutdown.
pub async fn run(ctx: Arc<Context>, shutdown: Shutdown) -> Result<()> {
    let client = ctx.client.clone();
    let controller = Controller::new(
        Api::<DaemonSet>::all(client.clone()),
        watcher::Config::default(),
    );
    let store = controller.store();
    controller
        .owns(Api::<Pod>::all(client.clone()), watcher::Config::default())
        .owns(
            Api::<ControllerRevision>::all(client.clone()),
            watcher::Config::default(),
        )
        .watches(
            Api::<Node>::all(client),
            watcher::Config::default(),
            move |_node| {
                store
                    .state()
                    .iter()
                    .map(|ds| ObjectRef::from_obj(&**ds))
                    .collect::<Vec<_>>()
            },
        )
        .graceful_shutdown_on(shutdown.signal())
        .run(reconcile, error_policy, ctx)
        .for_each(|_| futures::future::ready(()))
        .await;
    Ok(())
}

fn error_policy(ds: Arc<DaemonSet>, err: &Error, ctx: Arc<Context>) -> Action {
    ctx.error_action(&crate::key(&*ds), err)
}

async fn reconcile(ds: Arc<DaemonSet>, ctx: Arc<Context>) -> Result<Action> {
    let key = crate::key(&*ds);
    let action = sync(&ds, &ctx).await?;
    ctx.succeeded(&key);
    Ok(action)
}

// ---------------------------------------------------------------------------
// Pure decision logic.

fn toleration(key: &str, effect: &str) -> Toleration {
    Toleration {
        key: Some(key.into()),
        operator: Some("Exists".into()),
        effect: Some(effect.into()),
        ..Default::default()
    }
}

/// The tolerations upstream adds to every daemon pod
/// (AddOrUpdateDaemonPodTolerations).
pub fn daemon_tolerations(host_network: bool) -> Vec<Toleration> {
    let mut t = vec![
        toleration("node.kubernetes.io/not-ready", "NoExecute"),
        toleration("node.kubernetes.io/unreachable", "NoExecute"),
        toleration("node.kubernetes.io/disk-pressure", "NoSchedule"),
        toleration("node.kubernetes.io/memory-pressure", "NoSchedule"),
        toleration("node.kubernetes.io/pid-pressure", "NoSchedule"),
        toleration("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    if host_network {
        t.push(toleration(
            "node.kubernetes.io/network-unavailable",
            "NoSchedule",
        ));
    }
    t
}

/// Adds the daemon tolerations to `spec`, replacing equal ones.
pub fn add_daemon_tolerations(spec: &mut PodSpec) {
    let add = daemon_tolerations(spec.host_network == Some(true));
    let list = spec.tolerations.get_or_insert_with(Vec::new);
    for t in add {
        let same = |x: &Toleration| {
            x.key == t.key && x.operator == t.operator && x.value == t.value && x.effect == t.effect
        };
        if let Some(i) = list.iter().position(same) {
            list[i] = t;
        } else {
            list.push(t);
        }
    }
}

/// (should run, should continue running) of a daemon pod from `template`
/// on `node`, as upstream's NodeShouldRunDaemonPod: name and affinity must
/// fit; untolerated NoSchedule/NoExecute taints forbid new pods, and only
/// untolerated NoExecute taints evict running ones.
pub fn node_should_run(template: &PodTemplateSpec, node: &Node) -> (bool, bool) {
    let mut spec = template.spec.clone().unwrap_or_default();
    let node_name = node.metadata.name.as_deref().unwrap_or("");
    if spec
        .node_name
        .as_deref()
        .is_some_and(|n| !n.is_empty() && n != node_name)
    {
        return (false, false);
    }
    if !fits_node_affinity(&spec, node) {
        return (false, false);
    }
    add_daemon_tolerations(&mut spec);
    let tolerations = spec.tolerations.unwrap_or_default();
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or(&[]);
    if find_untolerated(taints, &tolerations, &["NoSchedule", "NoExecute"]).is_some() {
        let evicted = find_untolerated(taints, &tolerations, &["NoExecute"]).is_some();
        return (false, !evicted);
    }
    (true, true)
}

/// Replaces the required node affinity with one term selecting `node`
/// by `metadata.name` (upstream's ReplaceDaemonSetPodNodeNameNodeAffinity).
pub fn pin_to_node(affinity: Option<Affinity>, node: &str) -> Affinity {
    let selector = NodeSelector {
        node_selector_terms: vec![NodeSelectorTerm {
            match_expressions: None,
            match_fields: Some(vec![NodeSelectorRequirement {
                key: "metadata.name".into(),
                operator: "In".into(),
                values: Some(vec![node.into()]),
            }]),
        }],
    };
    let mut affinity = affinity.unwrap_or_default();
    let na = affinity
        .node_affinity
        .get_or_insert_with(NodeAffinity::default);
    na.required_during_scheduling_ignored_during_execution = Some(selector);
    affinity
}

/// The node a daemon pod is for: its nodeName, or the single node its
/// `metadata.name` matchFields affinity names (upstream's GetTargetNodeName).
pub fn target_node(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if let Some(n) = spec.node_name.as_ref().filter(|n| !n.is_empty()) {
        return Some(n.clone());
    }
    let terms = &spec
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    terms
        .iter()
        .flat_map(|t| t.match_fields.iter().flatten())
        .find(|r| r.key == "metadata.name" && r.operator == "In")
        .and_then(|r| match r.values.as_deref() {
            Some([one]) => Some(one.clone()),
            _ => None,
        })
}

/// The template generation of a DaemonSet (its annotation, else its
/// metadata.generation).
pub fn template_generation(ds: &DaemonSet) -> Option<i64> {
    ds.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(TEMPLATE_GENERATION_ANNOTATION))
        .and_then(|v| v.parse().ok())
        .or(ds.metadata.generation)
}

/// Whether `pod` runs the current template: its hash label equals `hash`,
/// or (without one) its template generation equals `generation`.
pub fn is_updated(pod: &Pod, hash: &str, generation: Option<i64>) -> bool {
    let labels = pod.metadata.labels.as_ref();
    match labels.and_then(|l| l.get(HASH_LABEL)) {
        Some(h) => h == hash,
        None => {
            let g = labels
                .and_then(|l| l.get(TEMPLATE_GENERATION_LABEL))
                .and_then(|g| g.parse::<i64>().ok());
            g.is_some() && g == generation
        }
    }
}

/// One daemon pod as the planners see it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DaemonPod {
    /// Pod name.
    pub name: String,
    /// Runs the current template.
    pub updated: bool,
    /// Ready condition True.
    pub ready: bool,
    /// Ready for minReadySeconds.
    pub available: bool,
    /// Phase Failed.
    pub failed: bool,
    /// Terminal and being deleted (ignored entirely).
    pub gone: bool,
    /// Being deleted.
    pub deleting: bool,
    /// Creation time (seconds), for picking the oldest.
    pub created: i64,
}

/// What to do on one node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodePlan {
    /// Create a daemon pod here.
    pub create: bool,
    /// Delete these pods.
    pub delete: Vec<String>,
    /// Of `delete`, the failed pods (for the FailedDaemonPod event).
    pub failed: Vec<String>,
}

/// Upstream's podsShouldBeOnNode: create a missing pod, replace failed
/// pods, keep one running pod (two while a surge replacement becomes
/// available), and remove every pod from a node it must leave.
pub fn plan_node(
    should_run: bool,
    should_continue: bool,
    pods: &[DaemonPod],
    surge: bool,
) -> NodePlan {
    let mut plan = NodePlan::default();
    let pods: Vec<&DaemonPod> = pods.iter().filter(|p| !p.gone).collect();
    if should_run && pods.is_empty() {
        plan.create = true;
        return plan;
    }
    if !should_continue {
        plan.delete = pods
            .iter()
            .filter(|p| !p.deleting)
            .map(|p| p.name.clone())
            .collect();
        return plan;
    }
    let mut running: Vec<&DaemonPod> = Vec::new();
    for p in &pods {
        if p.deleting {
            continue;
        }
        if p.failed {
            plan.delete.push(p.name.clone());
            plan.failed.push(p.name.clone());
        } else {
            running.push(p);
        }
    }
    // Oldest first; ties: ready before not.
    running.sort_by(|a, b| {
        a.created
            .cmp(&b.created)
            .then(b.ready.cmp(&a.ready))
            .then(a.name.cmp(&b.name))
    });
    if !surge {
        for p in running.iter().skip(1) {
            plan.delete.push(p.name.clone());
        }
        return plan;
    }
    let mut oldest_new: Option<&DaemonPod> = None;
    let mut oldest_old: Option<&DaemonPod> = None;
    for p in running {
        let slot = if p.updated {
            &mut oldest_new
        } else {
            &mut oldest_old
        };
        if slot.is_none() {
            *slot = Some(p);
        } else {
            plan.delete.push(p.name.clone());
        }
    }
    if let (Some(new), Some(old)) = (oldest_new, oldest_old) {
        if !old.ready || new.available {
            plan.delete.push(old.name.clone());
        }
    }
    plan
}

/// The pods of one node for the rolling update.
#[derive(Debug, Clone, Default)]
pub struct NodePods {
    /// Node name.
    pub node: String,
    /// Its live (not deleting) daemon pods.
    pub pods: Vec<DaemonPod>,
}

/// Upstream's rollingUpdate: which old pods to delete and on which nodes
/// to create surge pods, given maxSurge and maxUnavailable (scaled).
pub fn plan_rolling(
    nodes: &[NodePods],
    max_surge: i32,
    max_unavailable: i32,
) -> (Vec<String>, Vec<String>) {
    let max_surge = usize::try_from(max_surge.max(0)).unwrap_or(0);
    let max_unavailable = usize::try_from(max_unavailable.max(0)).unwrap_or(0);
    let split = |n: &NodePods| -> Option<(Option<DaemonPod>, Option<DaemonPod>)> {
        let live: Vec<&DaemonPod> = n.pods.iter().filter(|p| !p.deleting && !p.gone).collect();
        let new: Vec<&&DaemonPod> = live.iter().filter(|p| p.updated).collect();
        let old: Vec<&&DaemonPod> = live.iter().filter(|p| !p.updated).collect();
        if new.len() > 1 || old.len() > 1 {
            return None;
        }
        Some((
            new.first().map(|p| (**p).clone()),
            old.first().map(|p| (**p).clone()),
        ))
    };
    if max_surge == 0 {
        let mut unavailable = 0usize;
        let mut allowed: Vec<String> = Vec::new();
        let mut candidates: Vec<String> = Vec::new();
        for n in nodes {
            match split(n) {
                None => unavailable += 1,
                Some((None, None)) | Some((Some(_), Some(_))) => unavailable += 1,
                Some((Some(new), None)) => {
                    if !new.available {
                        unavailable += 1;
                    }
                }
                Some((None, Some(old))) => {
                    if !old.available {
                        allowed.push(old.name);
                        unavailable += 1;
                    } else if unavailable < max_unavailable {
                        candidates.push(old.name);
                    }
                }
            }
        }
        let remaining = max_unavailable
            .saturating_sub(unavailable)
            .min(candidates.len());
        allowed.extend(candidates.into_iter().take(remaining));
        return (allowed, Vec::new());
    }
    let mut surging = 0usize;
    let mut delete = Vec::new();
    let mut allowed_nodes = Vec::new();
    let mut candidate_nodes = Vec::new();
    for n in nodes {
        match split(n) {
            None | Some((_, None)) => {}
            Some((None, Some(old))) => {
                if !old.available {
                    allowed_nodes.push(n.node.clone());
                } else if surging < max_surge {
                    candidate_nodes.push(n.node.clone());
                }
            }
            Some((Some(new), Some(old))) => {
                if new.available {
                    delete.push(old.name);
                } else {
                    surging += 1;
                }
            }
        }
    }
    let remaining = max_surge.saturating_sub(surging).min(candidate_nodes.len());
    allowed_nodes.extend(candidate_nodes.into_iter().take(remaining));
    (delete, allowed_nodes)
}

/// (maxSurge, maxUnavailable) scaled against `desired` nodes; both zero
/// means maxUnavailable 1 (upstream's updatedDesiredNodeCounts).
pub fn surge_and_unavailable(ds: &DaemonSet, desired: i32) -> (i32, i32) {
    let ru = ds
        .spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|u| u.rolling_update.as_ref());
    let surge = ru
        .and_then(|r| r.max_surge.as_ref())
        .map(|v| scaled_value(v, desired, true).unwrap_or(0))
        .unwrap_or(0);
    let unavailable = ru
        .and_then(|r| r.max_unavailable.as_ref())
        .map(|v| scaled_value(v, desired, true).unwrap_or(0))
        .unwrap_or(1);
    if surge == 0 && unavailable == 0 {
        (0, 1)
    } else {
        (surge, unavailable)
    }
}

/// Status counts (upstream's updateDaemonSetStatus) from each node's
/// (should run, pods not gone) with the oldest pod deciding readiness.
pub fn status_counts(nodes: &[(bool, Vec<DaemonPod>)]) -> DaemonSetStatus {
    let mut st = DaemonSetStatus::default();
    let (mut available, mut updated) = (0, 0);
    for (should_run, pods) in nodes {
        let scheduled = !pods.is_empty();
        if *should_run {
            st.desired_number_scheduled += 1;
            if !scheduled {
                continue;
            }
            st.current_number_scheduled += 1;
            let mut sorted: Vec<&DaemonPod> = pods.iter().collect();
            sorted.sort_by(|a, b| a.created.cmp(&b.created).then(b.ready.cmp(&a.ready)));
            let p = sorted[0];
            if p.ready {
                st.number_ready += 1;
                if p.available {
                    available += 1;
                }
            }
            if p.updated {
                updated += 1;
            }
        } else if scheduled {
            st.number_misscheduled += 1;
        }
    }
    st.number_available = Some(available);
    st.number_unavailable = Some(st.desired_number_scheduled - available);
    st.updated_number_scheduled = Some(updated);
    st
}

fn daemon_pod(
    pod: &Pod,
    hash: &str,
    generation: Option<i64>,
    min_ready: i32,
    now: Timestamp,
) -> DaemonPod {
    let phase = pods::phase(pod);
    let deleting = pod.metadata.deletion_timestamp.is_some();
    let terminal = phase == "Failed" || phase == "Succeeded";
    DaemonPod {
        name: pod.name_any(),
        updated: is_updated(pod, hash, generation),
        ready: pods::is_ready(pod),
        available: pods::is_available(pod, min_ready, now),
        failed: phase == "Failed",
        gone: terminal && deleting,
        deleting,
        created: pod
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.as_second())
            .unwrap_or(0),
    }
}

/// A daemon pod for `node` from `template`, labelled with the revision hash
/// and template generation, with the daemon tolerations, pinned to the node.
pub fn new_pod(ds: &DaemonSet, template: &PodTemplateSpec, node: &str, hash: &str) -> Pod {
    let ns = ds.metadata.namespace.clone().unwrap_or_default();
    let name = ds.metadata.name.clone().unwrap_or_default();
    let prefix: String = format!("{name}-").chars().take(58).collect();
    let mut pod = pods::from_template(
        template,
        &ns,
        owner::new_controller_ref(ds),
        None,
        Some(prefix),
    );
    let labels = pod.metadata.labels.get_or_insert_with(BTreeMap::new);
    labels.insert(HASH_LABEL.into(), hash.into());
    if let Some(g) = template_generation(ds) {
        labels.insert(TEMPLATE_GENERATION_LABEL.into(), g.to_string());
    }
    let spec = pod.spec.get_or_insert_with(Default::default);
    add_daemon_tolerations(spec);
    spec.affinity = Some(pin_to_node(spec.affinity.take(), node));
    pod
}

// ---------------------------------------------------------------------------
// I/O.

async fn sync(ds: &DaemonSet, ctx: &Context) -> Result<Action> {
    let client = &ctx.client;
    let ns = ds.metadata.namespace.clone().unwrap_or_default();
    let name = ds.metadata.name.clone().unwrap_or_default();
    if ds.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let spec = ds
        .spec
        .as_ref()
        .ok_or_else(|| Error::Invalid(format!("daemonset {ns}/{name} has no spec")))?;
    let empty_selector = spec
        .selector
        .match_labels
        .as_ref()
        .is_none_or(|m| m.is_empty())
        && spec
            .selector
            .match_expressions
            .as_ref()
            .is_none_or(|m| m.is_empty());
    if empty_selector {
        ctx.warning(
            &ds.object_ref(&()),
            "SelectingAll",
            "This daemon set is selecting all pods. A non-empty selector is required.".into(),
        )
        .await;
        return Ok(Action::await_change());
    }
    let sel = pods::selector(&spec.selector)?;
    let ds_ref = owner::new_controller_ref(ds);
    let uid = ds.metadata.uid.clone().unwrap_or_default();
    let pod_api: Api<Pod> = Api::namespaced(client.clone(), &ns);

    // Revisions: the current one (reused or created), duplicates removed.
    let mut revs = history::list_owned(client, &ns, &sel, &ds_ref, false).await?;
    let status = ds.status.clone().unwrap_or_default();
    let mut collision = status.collision_count;
    let data = history::template_patch(&spec.template);
    let template = spec.template.clone();
    let cur = history::ensure(
        client,
        &history::Parent {
            reference: &ds_ref,
            namespace: &ns,
            template_labels: spec
                .template
                .metadata
                .as_ref()
                .and_then(|m| m.labels.as_ref()),
            annotations: ds.metadata.annotations.as_ref(),
        },
        data.clone(),
        |c| hash::object_hash(&template, c),
        &mut collision,
        &mut revs,
    )
    .await?;
    let cur_name = cur.metadata.name.clone().unwrap_or_default();
    let hash = history::hash_of(&cur).unwrap_or_default().to_string();
    let dups: Vec<ControllerRevision> = revs
        .iter()
        .filter(|r| r.metadata.name.as_ref() != Some(&cur_name) && history::equal_data(r, &data))
        .cloned()
        .collect();

    // Pods: claim by selector (adopt orphans, release non-matching).
    let mut owned: Vec<Pod> = Vec::new();
    for pod in pods::list(client, &ns, &Selector::default()).await? {
        let matches = pods::matches(&sel, pod.metadata.labels.as_ref());
        match owner::claim(&pod.metadata, &uid, matches) {
            Claim::Owned => owned.push(pod),
            Claim::Adopt => match owner::adopt(&pod_api, &pod, &ds_ref).await {
                Ok(Some(p)) => owned.push(p),
                Ok(None) => {}
                Err(e) => tracing::debug!("{e}"),
            },
            Claim::Release => {
                if let Err(e) = owner::release(&pod_api, &pod, &uid).await {
                    tracing::debug!("{e}");
                }
            }
            _ => {}
        }
    }
    // Relabel pods of duplicate revisions to the kept one, then drop them.
    for dup in &dups {
        let Some(dup_hash) = history::hash_of(dup) else {
            continue;
        };
        for pod in owned.iter_mut() {
            let has = pod.metadata.labels.as_ref().and_then(|l| l.get(HASH_LABEL));
            if has.map(String::as_str) == Some(dup_hash) {
                let pname = pod.name_any();
                let patch = json!({"metadata": {"labels": {HASH_LABEL: hash}}});
                *pod = pod_api
                    .patch(&pname, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .map_err(Error::kube(format!("relabel pod {ns}/{pname}")))?;
            }
        }
    }
    let dup_names: Vec<String> = dups
        .iter()
        .filter_map(|r| r.metadata.name.clone())
        .collect();
    history::delete(client, &ns, &dup_names).await?;
    revs.retain(|r| {
        !r.metadata
            .name
            .as_ref()
            .is_some_and(|n| dup_names.contains(n))
    });

    let nodes = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map_err(Error::kube("list nodes"))?
        .items;
    let generation = template_generation(ds);
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let rolling = spec
        .update_strategy
        .as_ref()
        .and_then(|u| u.type_.as_deref())
        .unwrap_or("RollingUpdate")
        == "RollingUpdate";

    let acted = manage(
        ctx, ds, &pod_api, &nodes, &owned, &hash, generation, min_ready, rolling,
    )
    .await?;

    if !acted && rolling {
        let now = Timestamp::now();
        let by_node = group_by_node(&owned);
        let mut node_pods = Vec::new();
        let mut desired = 0;
        for node in &nodes {
            let (should_run, should_continue) = node_should_run(&spec.template, node);
            if should_run {
                desired += 1;
            }
            if !should_continue {
                continue;
            }
            let nname = node.metadata.name.clone().unwrap_or_default();
            let pods = by_node
                .get(&nname)
                .into_iter()
                .flatten()
                .map(|p| daemon_pod(p, &hash, generation, min_ready, now))
                .collect();
            node_pods.push(NodePods { node: nname, pods });
        }
        let (surge, unavailable) = surge_and_unavailable(ds, desired);
        let (delete, create) = plan_rolling(&node_pods, surge, unavailable);
        for pname in delete {
            delete_pod(ctx, ds, &pod_api, &pname).await?;
        }
        for node in create {
            create_pod(
                ctx,
                ds,
                &pod_api,
                &new_pod(ds, &spec.template, &node, &hash),
            )
            .await?;
        }
    }

    // Status from a fresh look.
    let fresh: Vec<Pod> = pods::list(client, &ns, &sel)
        .await?
        .into_iter()
        .filter(|p| owner::is_controlled_by(&p.metadata, &uid))
        .collect();
    let now = Timestamp::now();
    let by_node = group_by_node(&fresh);
    let per_node: Vec<(bool, Vec<DaemonPod>)> = nodes
        .iter()
        .map(|node| {
            let nname = node.metadata.name.clone().unwrap_or_default();
            let pods = by_node
                .get(&nname)
                .into_iter()
                .flatten()
                .map(|p| daemon_pod(p, &hash, generation, min_ready, now))
                .filter(|p| !p.gone)
                .collect();
            (node_should_run(&spec.template, node).0, pods)
        })
        .collect();
    let mut new_status = status_counts(&per_node);
    new_status.observed_generation = ds.metadata.generation;
    new_status.collision_count = collision;
    new_status.conditions = status.conditions.clone();
    if new_status != status {
        let api: Api<DaemonSet> = Api::namespaced(client.clone(), &ns);
        status::write(&api, &name, &format!("{ns}/{name}"), &new_status).await?;
    }

    // History: keep revisions pods still run, at most the limit of others.
    let live: BTreeSet<String> = fresh
        .iter()
        .filter_map(|p| {
            p.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(HASH_LABEL))
                .cloned()
        })
        .chain(std::iter::once(hash.clone()))
        .collect();
    let limit = spec
        .revision_history_limit
        .unwrap_or(history::DEFAULT_HISTORY_LIMIT);
    let doomed = history::to_truncate(
        &revs,
        |r| {
            history::hash_of(r).is_some_and(|h| live.contains(h))
                || r.metadata.name.as_ref() == Some(&cur_name)
        },
        limit,
    );
    history::delete(client, &ns, &doomed).await?;

    let pending_available = per_node
        .iter()
        .flat_map(|(_, p)| p.iter())
        .any(|p| p.ready && !p.available);
    Ok(if min_ready > 0 && pending_available {
        Action::requeue(Duration::from_secs(u64::try_from(min_ready).unwrap_or(1)))
    } else {
        Action::requeue(ctx.config.resync)
    })
}

fn group_by_node(pods: &[Pod]) -> BTreeMap<String, Vec<&Pod>> {
    let mut map: BTreeMap<String, Vec<&Pod>> = BTreeMap::new();
    for p in pods {
        if let Some(n) = target_node(p) {
            map.entry(n).or_default().push(p);
        }
    }
    map
}

/// Creates and deletes pods so every eligible node has one; true when it
/// did anything (the rolling update then waits for the next round).
#[allow(clippy::too_many_arguments)]
async fn manage(
    ctx: &Context,
    ds: &DaemonSet,
    pod_api: &Api<Pod>,
    nodes: &[Node],
    owned: &[Pod],
    hash: &str,
    generation: Option<i64>,
    min_ready: i32,
    rolling: bool,
) -> Result<bool> {
    let Some(spec) = ds.spec.as_ref() else {
        return Ok(false);
    };
    let now = Timestamp::now();
    let surge = rolling && surge_and_unavailable(ds, i32::try_from(nodes.len()).unwrap_or(0)).0 > 0;
    let by_node = group_by_node(owned);
    let mut create_on = Vec::new();
    let mut delete = Vec::new();
    let node_names: BTreeSet<String> = nodes
        .iter()
        .filter_map(|n| n.metadata.name.clone())
        .collect();
    for node in nodes {
        let nname = node.metadata.name.clone().unwrap_or_default();
        let (should_run, should_continue) = node_should_run(&spec.template, node);
        let pods: Vec<DaemonPod> = by_node
            .get(&nname)
            .into_iter()
            .flatten()
            .map(|p| daemon_pod(p, hash, generation, min_ready, now))
            .collect();
        let plan = plan_node(should_run, should_continue, &pods, surge);
        for f in &plan.failed {
            ctx.warning(
                &ds.object_ref(&()),
                "FailedDaemonPod",
                format!(
                    "Found failed daemon pod {}/{f} on node {nname}, will try to kill it",
                    ds.metadata.namespace.as_deref().unwrap_or("")
                ),
            )
            .await;
        }
        if plan.create {
            create_on.push(nname);
        }
        delete.extend(plan.delete);
    }
    // Unscheduled pods for nodes that no longer exist.
    for p in owned {
        let unscheduled = p
            .spec
            .as_ref()
            .is_none_or(|s| s.node_name.as_deref().unwrap_or("").is_empty());
        if unscheduled && p.metadata.deletion_timestamp.is_none() {
            if let Some(n) = target_node(p) {
                if !node_names.contains(&n) {
                    delete.push(p.name_any());
                }
            }
        }
    }
    let acted = !create_on.is_empty() || !delete.is_empty();
    for node in create_on {
        create_pod(ctx, ds, pod_api, &new_pod(ds, &spec.template, &node, hash)).await?;
    }
    for pname in delete {
        delete_pod(ctx, ds, pod_api, &pname).await?;
    }
    Ok(acted)
}

async fn create_pod(ctx: &Context, ds: &DaemonSet, api: &Api<Pod>, pod: &Pod) -> Result<()> {
    let action = format!(
        "create pod for daemonset {}",
        ds.metadata.name.as_deref().unwrap_or("")
    );
    pods::create(ctx, &ds.object_ref(&()), api, pod, action)
        .await
        .map(drop)
}

async fn delete_pod(ctx: &Context, ds: &DaemonSet, api: &Api<Pod>, pname: &str) -> Result<()> {
    pods::delete(ctx, &ds.object_ref(&()), api, pname).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(v: serde_json::Value) -> Node {
        serde_json::from_value(v).unwrap()
    }

    fn template(v: serde_json::Value) -> PodTemplateSpec {
        serde_json::from_value(json!({
            "metadata": {"labels": {"app": "agent"}},
            "spec": v,
        }))
        .unwrap()
    }

    fn dp(name: &str, updated: bool, ready: bool, created: i64) -> DaemonPod {
        DaemonPod {
            name: name.into(),
            updated,
            ready,
            available: ready,
            created,
            ..Default::default()
        }
    }

    #[test]
    fn surge_and_unavailable_scaling() {
        let ds = |ru: serde_json::Value| -> DaemonSet {
            serde_json::from_value(json!({
                "metadata": {"name": "agent"},
                "spec": {
                    "selector": {},
                    "template": {},
                    "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": ru},
                },
            }))
            .unwrap()
        };
        // Both round up; none given means maxUnavailable 1.
        assert_eq!(surge_and_unavailable(&ds(json!({})), 10), (0, 1));
        assert_eq!(
            surge_and_unavailable(&ds(json!({"maxSurge": "25%", "maxUnavailable": 0})), 10),
            (3, 0)
        );
        assert_eq!(
            surge_and_unavailable(&ds(json!({"maxUnavailable": "25%"})), 10),
            (0, 3)
        );
        assert_eq!(
            surge_and_unavailable(&ds(json!({"maxSurge": 0, "maxUnavailable": "0%"})), 10),
            (0, 1)
        );
    }

    #[test]
    fn eligibility_by_selector_and_affinity() {
        let n = node(json!({"metadata": {"name": "n1", "labels": {"disk": "ssd", "zone": "a"}}}));
        let plain = template(json!({"containers": [{"name": "c", "image": "i"}]}));
        assert_eq!(node_should_run(&plain, &n), (true, true));
        let sel = template(json!({"nodeSelector": {"disk": "hdd"}, "containers": []}));
        assert_eq!(node_should_run(&sel, &n), (false, false));
        let aff = |op: &str, key: &str, field: bool| {
            let req = json!({"key": key, "operator": op, "values": ["ssd", "n1"]});
            let term = if field {
                json!({"matchFields": [req]})
            } else {
                json!({"matchExpressions": [req]})
            };
            template(json!({"containers": [], "affinity": {"nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]}}}}))
        };
        assert!(node_should_run(&aff("In", "disk", false), &n).0);
        assert!(!node_should_run(&aff("NotIn", "disk", false), &n).0);
        assert!(node_should_run(&aff("In", "metadata.name", true), &n).0);
        assert!(!node_should_run(&aff("NotIn", "metadata.name", true), &n).0);
        let named = template(json!({"nodeName": "other", "containers": []}));
        assert_eq!(node_should_run(&named, &n), (false, false));
    }

    #[test]
    fn eligibility_by_taints() {
        let tainted = |key: &str, effect: &str| {
            node(
                json!({"metadata": {"name": "n"}, "spec": {"taints": [{"key": key, "effect": effect}]}}),
            )
        };
        let plain = template(json!({"containers": []}));
        // Daemon tolerations cover node conditions.
        assert_eq!(
            node_should_run(
                &plain,
                &tainted("node.kubernetes.io/not-ready", "NoExecute")
            ),
            (true, true)
        );
        assert_eq!(
            node_should_run(
                &plain,
                &tainted("node.kubernetes.io/unschedulable", "NoSchedule")
            ),
            (true, true)
        );
        assert_eq!(
            node_should_run(
                &plain,
                &tainted("node.kubernetes.io/disk-pressure", "NoSchedule")
            ),
            (true, true)
        );
        // network-unavailable only for hostNetwork pods.
        let nu = tainted("node.kubernetes.io/network-unavailable", "NoSchedule");
        assert_eq!(node_should_run(&plain, &nu), (false, true));
        let hostnet = template(json!({"hostNetwork": true, "containers": []}));
        assert_eq!(node_should_run(&hostnet, &nu), (true, true));
        // Untolerated NoSchedule: no new pod, existing continue; NoExecute: neither.
        assert_eq!(
            node_should_run(&plain, &tainted("dedicated", "NoSchedule")),
            (false, true)
        );
        assert_eq!(
            node_should_run(&plain, &tainted("dedicated", "NoExecute")),
            (false, false)
        );
        assert_eq!(
            node_should_run(&plain, &tainted("dedicated", "PreferNoSchedule")),
            (true, true)
        );
        let tol = template(
            json!({"containers": [], "tolerations": [{"key": "dedicated", "operator": "Exists"}]}),
        );
        assert_eq!(
            node_should_run(&tol, &tainted("dedicated", "NoExecute")),
            (true, true)
        );
        let all = template(json!({"containers": [], "tolerations": [{"operator": "Exists"}]}));
        assert_eq!(
            node_should_run(&all, &tainted("x", "NoExecute")),
            (true, true)
        );
    }

    #[test]
    fn pods_are_pinned_and_tolerant() {
        let ds: DaemonSet = serde_json::from_value(json!({
            "metadata": {"name": "agent", "namespace": "kube-system", "uid": "u", "generation": 3},
            "spec": {"selector": {"matchLabels": {"app": "agent"}},
                     "template": {"metadata": {"labels": {"app": "agent"}},
                                  "spec": {"containers": [{"name": "c", "image": "i"}],
                                           "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 5}]}}}
        }))
        .unwrap();
        let spec = ds.spec.as_ref().unwrap();
        let pod = new_pod(&ds, &spec.template, "n1", "h1");
        assert_eq!(pod.metadata.generate_name.as_deref(), Some("agent-"));
        let l = pod.metadata.labels.as_ref().unwrap();
        assert_eq!(l[HASH_LABEL], "h1");
        assert_eq!(l[TEMPLATE_GENERATION_LABEL], "3");
        assert_eq!(target_node(&pod).as_deref(), Some("n1"));
        let tols = pod.spec.as_ref().unwrap().tolerations.as_ref().unwrap();
        // The user's not-ready toleration is replaced (seconds dropped), as upstream.
        assert_eq!(tols.len(), 6);
        assert!(tols.iter().all(|t| t.toleration_seconds.is_none()));
        assert!(is_updated(&pod, "h1", Some(3)));
        assert!(!is_updated(&pod, "h2", Some(3)));
    }

    #[test]
    fn per_node_decisions() {
        assert_eq!(
            plan_node(true, true, &[], false),
            NodePlan {
                create: true,
                ..Default::default()
            }
        );
        assert_eq!(plan_node(false, false, &[], false), NodePlan::default());
        // Must leave the node.
        let p = plan_node(false, false, &[dp("a", true, true, 1)], false);
        assert_eq!(p.delete, vec!["a"]);
        // Failed pod is deleted (and recreated on a later round).
        let mut f = dp("a", true, false, 1);
        f.failed = true;
        let p = plan_node(true, true, &[f], false);
        assert_eq!(
            (p.delete.clone(), p.failed.clone(), p.create),
            (vec!["a".to_string()], vec!["a".to_string()], false)
        );
        // Extra pods: keep the oldest.
        let p = plan_node(
            true,
            true,
            &[dp("b", true, true, 2), dp("a", true, true, 1)],
            false,
        );
        assert_eq!(p.delete, vec!["b"]);
        // Surge: the old pod goes once the new one is available.
        let pods = [dp("old", false, true, 1), dp("new", true, false, 2)];
        assert!(plan_node(true, true, &pods, true).delete.is_empty());
        let pods = [dp("old", false, true, 1), dp("new", true, true, 2)];
        assert_eq!(plan_node(true, true, &pods, true).delete, vec!["old"]);
    }

    #[test]
    fn rolling_update_picking() {
        let n = |name: &str, pods: Vec<DaemonPod>| NodePods {
            node: name.into(),
            pods,
        };
        let nodes = vec![
            n("a", vec![dp("pa", false, true, 1)]),
            n("b", vec![dp("pb", false, true, 1)]),
            n("c", vec![dp("pc", false, true, 1)]),
        ];
        // maxUnavailable 1: one old pod at a time.
        assert_eq!(plan_rolling(&nodes, 0, 1), (vec!["pa".to_string()], vec![]));
        assert_eq!(plan_rolling(&nodes, 0, 2).0.len(), 2);
        // A new pod not yet available uses up the budget.
        let mut busy = nodes.clone();
        busy[0] = n("a", vec![dp("pa2", true, false, 2)]);
        assert!(plan_rolling(&busy, 0, 1).0.is_empty());
        // Unavailable old pods are always replaced.
        let mut sick = nodes.clone();
        sick[2] = n("c", vec![dp("pc", false, false, 1)]);
        assert_eq!(plan_rolling(&sick, 0, 1).0, vec!["pc".to_string()]);
        // maxSurge 1: create on one node first, delete old once new is available.
        assert_eq!(plan_rolling(&nodes, 1, 0), (vec![], vec!["a".to_string()]));
        let mut surged = nodes.clone();
        surged[0] = n(
            "a",
            vec![dp("pa", false, true, 1), dp("pa2", true, true, 2)],
        );
        assert_eq!(
            plan_rolling(&surged, 1, 0),
            (vec!["pa".to_string()], vec!["b".to_string()])
        );
    }

    #[test]
    fn status_counting() {
        let nodes = vec![
            (true, vec![dp("a", true, true, 1)]),
            (true, vec![dp("b", false, false, 1)]),
            (true, vec![]),
            (false, vec![dp("d", true, true, 1)]),
        ];
        let st = status_counts(&nodes);
        assert_eq!(st.desired_number_scheduled, 3);
        assert_eq!(st.current_number_scheduled, 2);
        assert_eq!(st.number_ready, 1);
        assert_eq!(st.number_available, Some(1));
        assert_eq!(st.number_unavailable, Some(2));
        assert_eq!(st.number_misscheduled, 1);
        assert_eq!(st.updated_number_scheduled, Some(1));
    }
}
