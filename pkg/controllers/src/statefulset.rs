//! The StatefulSet controller, as upstream's pkg/controller/statefulset:
//! pods with stable names `<set>-<ordinal>` and hostnames (subdomain = the
//! governing Service), PVCs `<claim>-<set>-<ordinal>` from the
//! volumeClaimTemplates created before their pod (with the PVC retention
//! policy expressed as ownerReferences), OrderedReady and Parallel pod
//! management, failed pods recreated, RollingUpdate (partition,
//! maxUnavailable) and OnDelete updates tracked with ControllerRevisions,
//! and the status counts/revisions kubectl shows.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, PodTemplateSpec, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::core::Selector;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

use crate::history::{self, HASH_LABEL};
use crate::intstr::scaled_value;
use crate::owner::{self, Claim};
use crate::{pods, status, Context, Error, Result, Shutdown};

/// Pod label holding the pod's name.
pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
/// Pod label holding the pod's ordinal.
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

/// Runs the controller until shutdown.
pub async fn run(ctx: Arc<Context>, shutdown: Shutdown) -> Result<()> {
    let client = ctx.client.clone();
    Controller::new(
        Api::<StatefulSet>::all(client.clone()),
        watcher::Config::default(),
    )
    .owns(Api::<Pod>::all(client.clone()), watcher::Config::default())
    .owns(
        Api::<ControllerRevision>::all(client),
        watcher::Config::default(),
    )
    .graceful_shutdown_on(shutdown.signal())
    .run(reconcile, error_policy, ctx)
    .for_each(|_| futures::future::ready(()))
    .await;
    Ok(())
}

fn error_policy(set: Arc<StatefulSet>, err: &Error, ctx: Arc<Context>) -> Action {
    ctx.error_action(&crate::key(&*set), err)
}

async fn reconcile(set: Arc<StatefulSet>, ctx: Arc<Context>) -> Result<Action> {
    let key = crate::key(&*set);
    let action = sync(&set, &ctx).await?;
    ctx.succeeded(&key);
    Ok(action)
}

// ---------------------------------------------------------------------------
// Pure decision logic.

/// The ordinal of `pod_name` when it is `<set>-<ordinal>`.
pub fn parse_ordinal(set_name: &str, pod_name: &str) -> Option<i32> {
    let rest = pod_name.strip_prefix(set_name)?.strip_prefix('-')?;
    if rest.is_empty() || !rest.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    rest.parse().ok()
}

/// `<set>-<ordinal>`.
pub fn pod_name(set_name: &str, ordinal: i32) -> String {
    format!("{set_name}-{ordinal}")
}

/// `<claim>-<set>-<ordinal>`.
pub fn claim_name(claim: &str, set_name: &str, ordinal: i32) -> String {
    format!("{claim}-{set_name}-{ordinal}")
}

/// `spec.ordinals.start` (0 when unset).
pub fn start_ordinal(set: &StatefulSet) -> i32 {
    set.spec
        .as_ref()
        .and_then(|s| s.ordinals.as_ref())
        .and_then(|o| o.start)
        .unwrap_or(0)
        .max(0)
}

fn replicas(set: &StatefulSet) -> i32 {
    set.spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1)
        .max(0)
}

fn set_name(set: &StatefulSet) -> &str {
    set.metadata.name.as_deref().unwrap_or("")
}

/// The PVCs of ordinal `ordinal`: each volumeClaimTemplate named
/// `<claim>-<set>-<ordinal>`, labelled with the template's labels plus the
/// set's selector matchLabels.
pub fn claims_for(set: &StatefulSet, ordinal: i32) -> Vec<PersistentVolumeClaim> {
    let Some(spec) = set.spec.as_ref() else {
        return Vec::new();
    };
    let ns = set.metadata.namespace.clone();
    spec.volume_claim_templates
        .iter()
        .flatten()
        .map(|t| {
            let tname = t.metadata.name.clone().unwrap_or_default();
            let mut labels = t.metadata.labels.clone().unwrap_or_default();
            if let Some(ml) = &spec.selector.match_labels {
                labels.extend(ml.clone());
            }
            PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some(claim_name(&tname, set_name(set), ordinal)),
                    namespace: ns.clone(),
                    labels: Some(labels),
                    annotations: t.metadata.annotations.clone(),
                    ..Default::default()
                },
                spec: t.spec.clone(),
                status: None,
            }
        })
        .collect()
}

/// The pod of ordinal `ordinal` from `template` (the template of the
/// revision `revision`): identity labels, hostname and subdomain, and the
/// claims mounted in place of same-named template volumes.
pub fn new_pod(set: &StatefulSet, template: &PodTemplateSpec, ordinal: i32, revision: &str) -> Pod {
    let name = pod_name(set_name(set), ordinal);
    let ns = set.metadata.namespace.clone().unwrap_or_default();
    let mut pod = pods::from_template(
        template,
        &ns,
        owner::new_controller_ref(set),
        Some(name.clone()),
        None,
    );
    let labels = pod.metadata.labels.get_or_insert_with(BTreeMap::new);
    labels.insert(POD_NAME_LABEL.into(), name.clone());
    labels.insert(POD_INDEX_LABEL.into(), ordinal.to_string());
    labels.insert(HASH_LABEL.into(), revision.into());
    let service = set.spec.as_ref().and_then(|s| s.service_name.clone());
    let claims = claims_for(set, ordinal);
    let templates: Vec<String> = set
        .spec
        .as_ref()
        .and_then(|s| s.volume_claim_templates.as_ref())
        .into_iter()
        .flatten()
        .map(|t| t.metadata.name.clone().unwrap_or_default())
        .collect();
    let spec = pod.spec.get_or_insert_with(Default::default);
    spec.hostname = Some(name);
    if let Some(svc) = service.filter(|s| !s.is_empty()) {
        spec.subdomain = Some(svc);
    }
    if !claims.is_empty() {
        let mut volumes: Vec<Volume> = templates
            .iter()
            .zip(&claims)
            .map(|(vname, claim)| Volume {
                name: vname.clone(),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: claim.metadata.name.clone().unwrap_or_default(),
                    read_only: None,
                }),
                ..Default::default()
            })
            .collect();
        for v in spec.volumes.take().unwrap_or_default() {
            if !templates.contains(&v.name) {
                volumes.push(v);
            }
        }
        spec.volumes = Some(volumes);
    }
    pod
}

/// The retention policy as (whenDeleted is Delete, whenScaled is Delete).
pub fn retention(set: &StatefulSet) -> (bool, bool) {
    let p = set
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_claim_retention_policy.as_ref());
    let del = |v: Option<&String>| v.is_some_and(|v| v == "Delete");
    (
        del(p.and_then(|p| p.when_deleted.as_ref())),
        del(p.and_then(|p| p.when_scaled.as_ref())),
    )
}

fn plain_ref(r: &OwnerReference) -> OwnerReference {
    OwnerReference {
        controller: None,
        block_owner_deletion: None,
        ..r.clone()
    }
}

/// The ownerReferences a claim should have under the retention policy
/// (upstream's updateClaimOwnerRefForSetAndPod): whenDeleted=Delete owns
/// the claim by the set, whenScaled=Delete owns a scaled-down pod's claim
/// by the pod. `None` when `current` is already right.
pub fn claim_owner_refs(
    current: &[OwnerReference],
    when_deleted: bool,
    when_scaled: bool,
    set_ref: &OwnerReference,
    pod_ref: &OwnerReference,
    scaled_down: bool,
) -> Option<Vec<OwnerReference>> {
    let (want_set, want_pod) = match (when_scaled, when_deleted) {
        (false, false) => (false, false),
        (false, true) => (true, false),
        (true, false) => (false, scaled_down),
        (true, true) => (!scaled_down, scaled_down),
    };
    let mut refs = current.to_vec();
    let mut changed = false;
    for (want, r) in [(want_set, set_ref), (want_pod, pod_ref)] {
        let has = refs.iter().any(|x| x.uid == r.uid);
        if want && !has {
            refs.push(plain_ref(r));
            changed = true;
        } else if !want && has {
            refs.retain(|x| x.uid != r.uid);
            changed = true;
        }
    }
    changed.then_some(refs)
}

/// What the planner needs to know about one pod.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodView {
    /// Its ordinal.
    pub ordinal: i32,
    /// Its `controller-revision-hash` label (a revision name).
    pub revision: String,
    /// Running with Ready True (and not terminating).
    pub healthy: bool,
    /// Running and available for minReadySeconds.
    pub available: bool,
    /// Has a deletionTimestamp.
    pub terminating: bool,
    /// Phase Failed or Succeeded.
    pub terminal: bool,
}

/// The set's shape as the planner sees it.
#[derive(Debug, Clone, Default)]
pub struct Shape {
    /// First ordinal.
    pub start: i32,
    /// Wanted replicas.
    pub replicas: i32,
    /// OrderedReady: one pod at a time, waiting for readiness.
    pub monotonic: bool,
    /// RollingUpdate's partition, or None for OnDelete.
    pub partition: Option<i32>,
    /// RollingUpdate's maxUnavailable when given (already scaled, >= 1).
    pub max_unavailable: Option<i32>,
    /// The update revision's name.
    pub update_revision: String,
}

/// One step the controller takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Create the pod (and its claims) of this ordinal.
    Create(i32),
    /// Delete a failed/succeeded pod so it is recreated.
    Recreate(i32),
    /// Delete a pod of an ordinal out of range (scale down).
    ScaleDown(i32),
    /// Delete a pod of an old revision (rolling update).
    Update(i32),
}

/// Decides this round's steps, as upstream's updateStatefulSet: create
/// missing and replace failed pods in ordinal order, then delete condemned
/// pods from the highest ordinal, then roll pods at or above the partition
/// from the highest ordinal. OrderedReady stops at the first step or at the
/// first pod that is not yet Running and Ready.
pub fn plan(shape: &Shape, pods: &[PodView]) -> Vec<Step> {
    let mut steps = Vec::new();
    let end = shape.start + shape.replicas;
    let by_ord: BTreeMap<i32, &PodView> = pods.iter().map(|p| (p.ordinal, p)).collect();
    let mut gone: BTreeSet<i32> = BTreeSet::new();
    for ord in shape.start..end {
        match by_ord.get(&ord) {
            None => {
                steps.push(Step::Create(ord));
                gone.insert(ord);
                if shape.monotonic {
                    return steps;
                }
            }
            Some(p) if p.terminal && !p.terminating => {
                steps.push(Step::Recreate(ord));
                gone.insert(ord);
                if shape.monotonic {
                    return steps;
                }
            }
            Some(p) if p.terminating || !p.available => {
                if shape.monotonic {
                    return steps;
                }
            }
            Some(_) => {}
        }
    }
    let mut condemned: Vec<&PodView> = pods
        .iter()
        .filter(|p| p.ordinal < shape.start || p.ordinal >= end)
        .collect();
    condemned.sort_by_key(|p| std::cmp::Reverse(p.ordinal));
    for p in condemned {
        if p.terminating {
            if shape.monotonic {
                return steps;
            }
            continue;
        }
        steps.push(Step::ScaleDown(p.ordinal));
        if shape.monotonic {
            return steps;
        }
    }
    let Some(partition) = shape.partition else {
        return steps;
    };
    let update_min = shape.start + partition.max(0);
    let in_range = |o: i32| by_ord.get(&o).filter(|_| !gone.contains(&o)).copied();
    match shape.max_unavailable {
        None => {
            for ord in (update_min..end).rev() {
                let Some(p) = in_range(ord) else {
                    return steps; // being (re)created: not healthy yet
                };
                if p.revision != shape.update_revision && !p.terminating {
                    steps.push(Step::Update(ord));
                    return steps;
                }
                if !p.healthy {
                    return steps;
                }
            }
        }
        Some(max) => {
            let unavailable = (shape.start..end)
                .filter(|o| !in_range(*o).is_some_and(|p| p.healthy && !p.terminating))
                .count();
            let budget = usize::try_from(max.max(1))
                .unwrap_or(1)
                .saturating_sub(unavailable);
            let targets = (update_min..end)
                .rev()
                .filter_map(in_range)
                .filter(|p| p.revision != shape.update_revision && !p.terminating)
                .take(budget);
            steps.extend(targets.map(|p| Step::Update(p.ordinal)));
        }
    }
    steps
}

/// The revision a new pod of `ordinal` is created from: below the
/// partition the current revision, else the update revision.
pub fn revision_for(shape: &Shape, ordinal: i32) -> bool {
    match shape.partition {
        Some(p) => ordinal >= shape.start + p,
        None => true,
    }
}

/// Status counts over the set's pods (upstream's computeReplicaStatus),
/// completing a rolling update when every pod is updated and ready.
pub fn status_counts(
    pods: &[PodView],
    current_revision: &str,
    update_revision: &str,
    rolling: bool,
) -> StatefulSetStatus {
    let mut st = StatefulSetStatus::default();
    let (mut ready, mut available, mut current, mut updated) = (0, 0, 0, 0);
    for p in pods {
        st.replicas += 1;
        if p.healthy {
            ready += 1;
        }
        if p.available && !p.terminating {
            available += 1;
        }
        if !p.terminating {
            if p.revision == current_revision {
                current += 1;
            }
            if p.revision == update_revision {
                updated += 1;
            }
        }
    }
    let mut current_rev = current_revision.to_string();
    if rolling && updated == st.replicas && ready == st.replicas {
        current = updated;
        current_rev = update_revision.to_string();
    }
    st.ready_replicas = Some(ready);
    st.available_replicas = Some(available);
    st.current_replicas = Some(current);
    st.updated_replicas = Some(updated);
    st.current_revision = Some(current_rev);
    st.update_revision = Some(update_revision.to_string());
    st
}

fn view(set_name: &str, pod: &Pod, min_ready: i32, now: Timestamp) -> Option<PodView> {
    let ordinal = parse_ordinal(set_name, pod.metadata.name.as_deref()?)?;
    let terminating = pod.metadata.deletion_timestamp.is_some();
    let running = pods::phase(pod) == "Running";
    let phase = pods::phase(pod);
    Some(PodView {
        ordinal,
        revision: pod
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(HASH_LABEL))
            .cloned()
            .unwrap_or_default(),
        healthy: running && pods::is_ready(pod) && !terminating,
        available: running && pods::is_available(pod, min_ready, now),
        terminating,
        terminal: phase == "Failed" || phase == "Succeeded",
    })
}

// ---------------------------------------------------------------------------
// I/O.

async fn sync(set: &StatefulSet, ctx: &Context) -> Result<Action> {
    let client = &ctx.client;
    let ns = set.metadata.namespace.clone().unwrap_or_default();
    let name = set_name(set).to_string();
    let spec = set
        .spec
        .as_ref()
        .ok_or_else(|| Error::Invalid(format!("statefulset {ns}/{name} has no spec")))?;
    let sel = pods::selector(&spec.selector)?;
    let set_ref = owner::new_controller_ref(set);
    let deleting = set.metadata.deletion_timestamp.is_some();
    let uid = set.metadata.uid.clone().unwrap_or_default();

    // Pods: ours, plus orphans we adopt; release those no longer matching.
    let pod_api: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let mut owned = Vec::new();
    for pod in pods::list(client, &ns, &Selector::default()).await? {
        let matches = pods::matches(&sel, pod.metadata.labels.as_ref());
        let pname = pod.name_any();
        match owner::claim(&pod.metadata, &uid, matches) {
            Claim::Owned => owned.push(pod),
            Claim::Adopt if !deleting && parse_ordinal(&name, &pname).is_some() => {
                match owner::adopt(&pod_api, &pod, &set_ref).await {
                    Ok(Some(p)) => owned.push(p),
                    Ok(None) => {}
                    Err(e) => tracing::debug!("{e}"),
                }
            }
            Claim::Release => {
                if let Err(e) = owner::release(&pod_api, &pod, &uid).await {
                    tracing::debug!("{e}");
                }
            }
            _ => {}
        }
    }

    // Revisions.
    let mut revs = history::list_owned(client, &ns, &sel, &set_ref, deleting).await?;
    let status = set.status.clone().unwrap_or_default();
    let mut collision = Some(status.collision_count.unwrap_or(0));
    let data = history::template_patch(&spec.template);
    let update_rev = history::ensure(
        client,
        &history::Parent {
            reference: &set_ref,
            namespace: &ns,
            template_labels: spec
                .template
                .metadata
                .as_ref()
                .and_then(|m| m.labels.as_ref()),
            annotations: set.metadata.annotations.as_ref(),
        },
        data.clone(),
        |c| history::hash_data(&data, c),
        &mut collision,
        &mut revs,
    )
    .await?;
    let update_name = update_rev.metadata.name.clone().unwrap_or_default();
    let current_rev = status
        .current_revision
        .as_ref()
        .and_then(|c| revs.iter().find(|r| r.metadata.name.as_ref() == Some(c)))
        .cloned()
        .unwrap_or_else(|| update_rev.clone());
    let current_name = current_rev.metadata.name.clone().unwrap_or_default();

    let strategy = spec.update_strategy.as_ref();
    let rolling = strategy
        .and_then(|s| s.type_.as_deref())
        .unwrap_or("RollingUpdate")
        == "RollingUpdate";
    let ru = strategy.and_then(|s| s.rolling_update.as_ref());
    let replicas_n = replicas(set);
    let shape = Shape {
        start: start_ordinal(set),
        replicas: replicas_n,
        monotonic: spec.pod_management_policy.as_deref() != Some("Parallel"),
        partition: rolling.then(|| ru.and_then(|r| r.partition).unwrap_or(0)),
        max_unavailable: ru
            .and_then(|r| r.max_unavailable.as_ref())
            .filter(|_| rolling)
            .map(|m| scaled_value(m, replicas_n, false).unwrap_or(0).max(1)),
        update_revision: update_name.clone(),
    };
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let now = Timestamp::now();
    let views: Vec<(PodView, &Pod)> = owned
        .iter()
        .filter_map(|p| view(&name, p, min_ready, now).map(|v| (v, p)))
        .collect();
    let pod_views: Vec<PodView> = views.iter().map(|(v, _)| v.clone()).collect();

    let mut requeue: Option<Duration> = None;
    if !deleting {
        // Keep identity labels and claims of existing pods right.
        let (when_deleted, when_scaled) = retention(set);
        let mut claims = list_claims(ctx, set).await?;
        for (v, pod) in &views {
            if v.terminating {
                continue;
            }
            ensure_identity(ctx, set, pod, v.ordinal).await?;
            let in_range = v.ordinal >= shape.start && v.ordinal < shape.start + shape.replicas;
            if in_range {
                ensure_claims(ctx, set, v.ordinal, Some(pod), &mut claims).await?;
            }
            let retention = (when_deleted, when_scaled, !in_range);
            update_claim_refs(ctx, set, v.ordinal, pod, retention, &mut claims).await?;
        }
        let current_template =
            history::template_of(&current_rev).unwrap_or_else(|| spec.template.clone());
        for step in plan(&shape, &pod_views) {
            match step {
                Step::Create(ord) => {
                    ensure_claims(ctx, set, ord, None, &mut claims).await?;
                    let (template, rev) = if revision_for(&shape, ord) {
                        (&spec.template, update_name.as_str())
                    } else {
                        (&current_template, current_name.as_str())
                    };
                    let pod = new_pod(set, template, ord, rev);
                    create_pod(ctx, set, &pod_api, &pod).await?;
                }
                Step::Recreate(ord) => {
                    let pname = pod_name(&name, ord);
                    ctx.warning(
                        &set.object_ref(&()),
                        "RecreatingFailedPod",
                        format!("StatefulSet {ns}/{name} is recreating failed Pod {pname}"),
                    )
                    .await;
                    delete_pod(ctx, set, &pod_api, &pname).await?;
                }
                Step::ScaleDown(ord) => {
                    if let Some((_, pod)) = views.iter().find(|(v, _)| v.ordinal == ord) {
                        update_claim_refs(
                            ctx,
                            set,
                            ord,
                            pod,
                            (when_deleted, when_scaled, true),
                            &mut claims,
                        )
                        .await?;
                    }
                    delete_pod(ctx, set, &pod_api, &pod_name(&name, ord)).await?;
                }
                Step::Update(ord) => {
                    delete_pod(ctx, set, &pod_api, &pod_name(&name, ord)).await?;
                }
            }
        }
        // A pod that is ready but not yet available needs a later look.
        if min_ready > 0 && pod_views.iter().any(|v| v.healthy && !v.available) {
            requeue = Some(Duration::from_secs(u64::try_from(min_ready).unwrap_or(1)));
        }
    }

    // Status from a fresh look at the pods.
    let fresh = pods::list(client, &ns, &sel).await?;
    let fresh_views: Vec<PodView> = fresh
        .iter()
        .filter(|p| owner::is_controlled_by(&p.metadata, &uid))
        .filter_map(|p| view(&name, p, min_ready, Timestamp::now()))
        .collect();
    let mut new_status = status_counts(&fresh_views, &current_name, &update_name, rolling);
    new_status.observed_generation = set.metadata.generation;
    new_status.collision_count = collision;
    new_status.conditions = status.conditions.clone();
    if new_status != status {
        let api: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
        status::write(&api, &name, &format!("{ns}/{name}"), &new_status).await?;
    }

    // History: keep revisions in use, at most revisionHistoryLimit others.
    let mut live: BTreeSet<String> = fresh_views.iter().map(|v| v.revision.clone()).collect();
    live.insert(update_name.clone());
    live.insert(new_status.current_revision.clone().unwrap_or_default());
    let limit = spec
        .revision_history_limit
        .unwrap_or(history::DEFAULT_HISTORY_LIMIT);
    let doomed = history::to_truncate(
        &revs,
        |r| r.metadata.name.as_ref().is_some_and(|n| live.contains(n)),
        limit,
    );
    history::delete(client, &ns, &doomed).await?;

    Ok(match requeue {
        Some(d) => Action::requeue(d),
        None => Action::requeue(ctx.config.resync),
    })
}

async fn create_pod(ctx: &Context, set: &StatefulSet, api: &Api<Pod>, pod: &Pod) -> Result<()> {
    let pname = pod.metadata.name.clone().unwrap_or_default();
    let sname = set_name(set);
    match api.create(&PostParams::default(), pod).await {
        Ok(_) => {
            ctx.normal(
                &set.object_ref(&()),
                "SuccessfulCreate",
                format!("create Pod {pname} in StatefulSet {sname} successful"),
            )
            .await;
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => {
            ctx.warning(
                &set.object_ref(&()),
                "FailedCreate",
                format!("create Pod {pname} in StatefulSet {sname} failed error: {e}"),
            )
            .await;
            Err(Error::kube(format!("create pod {pname}"))(e))
        }
    }
}

async fn delete_pod(ctx: &Context, set: &StatefulSet, api: &Api<Pod>, pname: &str) -> Result<()> {
    let sname = set_name(set);
    match api.delete(pname, &DeleteParams::default()).await {
        Ok(_) => {
            ctx.normal(
                &set.object_ref(&()),
                "SuccessfulDelete",
                format!("delete Pod {pname} in StatefulSet {sname} successful"),
            )
            .await;
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => {
            ctx.warning(
                &set.object_ref(&()),
                "FailedDelete",
                format!("delete Pod {pname} in StatefulSet {sname} failed error: {e}"),
            )
            .await;
            Err(Error::kube(format!("delete pod {pname}"))(e))
        }
    }
}

/// Adds missing identity labels to an existing pod.
async fn ensure_identity(ctx: &Context, set: &StatefulSet, pod: &Pod, ordinal: i32) -> Result<()> {
    let pname = pod.name_any();
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    let want = [
        (POD_NAME_LABEL, pname.clone()),
        (POD_INDEX_LABEL, ordinal.to_string()),
    ];
    let missing: BTreeMap<&str, String> = want
        .into_iter()
        .filter(|(k, v)| labels.get(*k) != Some(v))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let ns = set.metadata.namespace.clone().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let patch = json!({"metadata": {"labels": missing}});
    api.patch(&pname, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(Error::kube(format!("update identity of pod {ns}/{pname}")))?;
    Ok(())
}

/// Creates the missing claims of `ordinal` (before its pod exists).
async fn ensure_claims(
    ctx: &Context,
    set: &StatefulSet,
    ordinal: i32,
    pod: Option<&Pod>,
    known: &mut BTreeMap<String, PersistentVolumeClaim>,
) -> Result<()> {
    let ns = set.metadata.namespace.clone().unwrap_or_default();
    let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
    let sname = set_name(set);
    let pname = pod_name(sname, ordinal);
    for claim in claims_for(set, ordinal) {
        let cname = claim.metadata.name.clone().unwrap_or_default();
        match known.get(&cname) {
            Some(existing) => {
                if existing.metadata.deletion_timestamp.is_some() && pod.is_none() {
                    return Err(Error::Invalid(format!(
                        "pod {pname} cannot be created: its claim {cname} is being deleted"
                    )));
                }
            }
            None => {
                let mut claim = claim;
                let (when_deleted, _) = retention(set);
                if when_deleted {
                    claim.metadata.owner_references =
                        Some(vec![plain_ref(&owner::new_controller_ref(set))]);
                }
                match api.create(&PostParams::default(), &claim).await {
                    Ok(created) => {
                        known.insert(cname.clone(), created);
                        ctx.normal(
                            &set.object_ref(&()),
                            "SuccessfulCreate",
                            format!(
                                "create Claim {cname} Pod {pname} in StatefulSet {sname} success"
                            ),
                        )
                        .await
                    }
                    Err(kube::Error::Api(s)) if s.code == 409 => {}
                    Err(e) => {
                        ctx.warning(
                            &set.object_ref(&()),
                            "FailedCreate",
                            format!("create Claim {cname} for Pod {pname} in StatefulSet {sname} failed error: {e}"),
                        )
                        .await;
                        return Err(Error::kube(format!("create claim {ns}/{cname}"))(e));
                    }
                }
            }
        }
    }
    Ok(())
}

/// The claims of the set's namespace by name (none when the set has no
/// volumeClaimTemplates).
async fn list_claims(
    ctx: &Context,
    set: &StatefulSet,
) -> Result<BTreeMap<String, PersistentVolumeClaim>> {
    let has_templates = set
        .spec
        .as_ref()
        .and_then(|s| s.volume_claim_templates.as_ref())
        .is_some_and(|t| !t.is_empty());
    if !has_templates {
        return Ok(BTreeMap::new());
    }
    let ns = set.metadata.namespace.clone().unwrap_or_default();
    let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
    let list = api
        .list(&kube::api::ListParams::default())
        .await
        .map_err(Error::kube(format!("list claims in {ns}")))?;
    Ok(list
        .items
        .into_iter()
        .filter_map(|c| Some((c.metadata.name.clone()?, c)))
        .collect())
}

/// Sets the retention-policy ownerReferences on the claims of `pod`.
async fn update_claim_refs(
    ctx: &Context,
    set: &StatefulSet,
    ordinal: i32,
    pod: &Pod,
    (when_deleted, when_scaled, scaled_down): (bool, bool, bool),
    known: &mut BTreeMap<String, PersistentVolumeClaim>,
) -> Result<()> {
    let ns = set.metadata.namespace.clone().unwrap_or_default();
    let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
    let set_ref = owner::new_controller_ref(set);
    let pod_ref = owner::new_controller_ref(pod);
    for claim in claims_for(set, ordinal) {
        let cname = claim.metadata.name.clone().unwrap_or_default();
        let Some(existing) = known.get(&cname) else {
            continue;
        };
        let current = existing
            .metadata
            .owner_references
            .clone()
            .unwrap_or_default();
        if let Some(refs) = claim_owner_refs(
            &current,
            when_deleted,
            when_scaled,
            &set_ref,
            &pod_ref,
            scaled_down,
        ) {
            let patch = json!({"metadata": {"ownerReferences": refs, "resourceVersion": existing.metadata.resource_version}});
            let updated = api
                .patch(&cname, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(Error::kube(format!(
                    "update ownerReferences of claim {ns}/{cname}"
                )))?;
            known.insert(cname, updated);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(yaml: serde_json::Value) -> StatefulSet {
        serde_json::from_value(yaml).unwrap()
    }

    fn web() -> StatefulSet {
        set(json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "set-uid"},
            "spec": {
                "replicas": 2,
                "serviceName": "nginx",
                "selector": {"matchLabels": {"app": "nginx"}},
                "template": {
                    "metadata": {"labels": {"app": "nginx"}},
                    "spec": {
                        "containers": [{"name": "nginx", "image": "nginx",
                            "volumeMounts": [{"name": "www", "mountPath": "/usr/share/nginx/html"}]}],
                        "volumes": [{"name": "www", "emptyDir": {}}, {"name": "other", "emptyDir": {}}]
                    }
                },
                "volumeClaimTemplates": [{
                    "metadata": {"name": "www", "labels": {"tier": "data"}},
                    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
                }]
            }
        }))
    }

    fn pv(ordinal: i32, rev: &str, healthy: bool) -> PodView {
        PodView {
            ordinal,
            revision: rev.into(),
            healthy,
            available: healthy,
            terminating: false,
            terminal: false,
        }
    }

    fn shape(replicas: i32, monotonic: bool) -> Shape {
        Shape {
            start: 0,
            replicas,
            monotonic,
            partition: Some(0),
            max_unavailable: None,
            update_revision: "new".into(),
        }
    }

    #[test]
    fn ordinals_parse_only_own_pods() {
        assert_eq!(parse_ordinal("web", "web-0"), Some(0));
        assert_eq!(parse_ordinal("web", "web-12"), Some(12));
        assert_eq!(parse_ordinal("web", "web-x"), None);
        assert_eq!(parse_ordinal("web", "webby-1"), None);
        assert_eq!(parse_ordinal("web", "web-"), None);
        assert_eq!(parse_ordinal("web", "web-1-2"), None);
        assert_eq!(parse_ordinal("web-1", "web-1-2"), Some(2));
    }

    #[test]
    fn pod_identity_and_claims() {
        let s = web();
        let claims = claims_for(&s, 1);
        assert_eq!(claims.len(), 1);
        assert_eq!(claims[0].metadata.name.as_deref(), Some("www-web-1"));
        let labels = claims[0].metadata.labels.as_ref().unwrap();
        assert_eq!(labels["app"], "nginx");
        assert_eq!(labels["tier"], "data");

        let spec = s.spec.as_ref().unwrap();
        let pod = new_pod(&s, &spec.template, 1, "web-abc");
        assert_eq!(pod.metadata.name.as_deref(), Some("web-1"));
        let l = pod.metadata.labels.as_ref().unwrap();
        assert_eq!(l[POD_NAME_LABEL], "web-1");
        assert_eq!(l[POD_INDEX_LABEL], "1");
        assert_eq!(l[HASH_LABEL], "web-abc");
        assert_eq!(l["app"], "nginx");
        let ps = pod.spec.as_ref().unwrap();
        assert_eq!(ps.hostname.as_deref(), Some("web-1"));
        assert_eq!(ps.subdomain.as_deref(), Some("nginx"));
        let vols = ps.volumes.as_ref().unwrap();
        assert_eq!(vols.len(), 2);
        assert_eq!(vols[0].name, "www");
        assert_eq!(
            vols[0].persistent_volume_claim.as_ref().unwrap().claim_name,
            "www-web-1"
        );
        assert!(vols[0].empty_dir.is_none());
        assert_eq!(vols[1].name, "other");
        assert!(owner::is_controlled_by(&pod.metadata, "set-uid"));
    }

    #[test]
    fn retention_owner_refs() {
        let set_ref = OwnerReference {
            kind: "StatefulSet".into(),
            name: "web".into(),
            uid: "s".into(),
            controller: Some(true),
            ..Default::default()
        };
        let pod_ref = OwnerReference {
            kind: "Pod".into(),
            name: "web-1".into(),
            uid: "p".into(),
            ..Default::default()
        };
        let uids = |v: Option<Vec<OwnerReference>>| {
            v.map(|v| v.into_iter().map(|r| r.uid).collect::<Vec<_>>())
        };
        // Retain/Retain: nothing to add.
        assert_eq!(
            claim_owner_refs(&[], false, false, &set_ref, &pod_ref, false),
            None
        );
        // whenDeleted=Delete: owned by the set (not as controller).
        let r = claim_owner_refs(&[], true, false, &set_ref, &pod_ref, false).unwrap();
        assert_eq!(r[0].uid, "s");
        assert_eq!(r[0].controller, None);
        // whenScaled=Delete: only a scaled-down pod's claim is owned by it.
        assert_eq!(
            claim_owner_refs(&[], false, true, &set_ref, &pod_ref, false),
            None
        );
        assert_eq!(
            uids(claim_owner_refs(&[], false, true, &set_ref, &pod_ref, true)),
            Some(vec!["p".to_string()])
        );
        // Delete/Delete: set while in range, pod once scaled down.
        let by_set = claim_owner_refs(&[], true, true, &set_ref, &pod_ref, false).unwrap();
        assert_eq!(
            uids(claim_owner_refs(
                &by_set, true, true, &set_ref, &pod_ref, true
            )),
            Some(vec!["p".to_string()])
        );
        assert_eq!(
            claim_owner_refs(&by_set, true, true, &set_ref, &pod_ref, false),
            None
        );
        // Back to Retain removes our references.
        assert_eq!(
            uids(claim_owner_refs(
                &by_set, false, false, &set_ref, &pod_ref, false
            )),
            Some(vec![])
        );
    }

    #[test]
    fn ordered_ready_creates_one_at_a_time() {
        let s = shape(3, true);
        assert_eq!(plan(&s, &[]), vec![Step::Create(0)]);
        // web-0 exists but is not ready: wait.
        assert!(plan(&s, &[pv(0, "new", false)]).is_empty());
        assert_eq!(plan(&s, &[pv(0, "new", true)]), vec![Step::Create(1)]);
        // A deleted web-0 is recreated first, even when web-1 runs.
        assert_eq!(plan(&s, &[pv(1, "new", true)]), vec![Step::Create(0)]);
    }

    #[test]
    fn parallel_creates_all() {
        let s = shape(3, false);
        assert_eq!(
            plan(&s, &[pv(1, "new", false)]),
            vec![Step::Create(0), Step::Create(2)]
        );
    }

    #[test]
    fn failed_pods_are_recreated() {
        let s = shape(2, true);
        let mut failed = pv(0, "new", false);
        failed.terminal = true;
        assert_eq!(
            plan(&s, &[failed.clone(), pv(1, "new", true)]),
            vec![Step::Recreate(0)]
        );
        failed.terminating = true;
        assert!(plan(&s, &[failed, pv(1, "new", true)]).is_empty());
    }

    #[test]
    fn scale_down_from_highest_waiting() {
        let s = shape(1, true);
        let pods = [pv(0, "new", true), pv(1, "new", true), pv(2, "new", true)];
        assert_eq!(plan(&s, &pods), vec![Step::ScaleDown(2)]);
        let mut terminating = pv(2, "new", true);
        terminating.terminating = true;
        assert!(plan(
            &s,
            &[pv(0, "new", true), pv(1, "new", true), terminating.clone()]
        )
        .is_empty());
        // Parallel deletes every condemned pod not already going.
        let p = shape(1, false);
        assert_eq!(
            plan(&p, &pods),
            vec![Step::ScaleDown(2), Step::ScaleDown(1)]
        );
        assert_eq!(
            plan(&p, &[pv(0, "new", true), pv(1, "new", true), terminating]),
            vec![Step::ScaleDown(1)]
        );
    }

    #[test]
    fn rolling_update_respects_partition_highest_first() {
        let mut s = shape(3, true);
        let old = [pv(0, "old", true), pv(1, "old", true), pv(2, "old", true)];
        assert_eq!(plan(&s, &old), vec![Step::Update(2)]);
        // web-2 updated but not ready yet: wait.
        let mid = [pv(0, "old", true), pv(1, "old", true), pv(2, "new", false)];
        assert!(plan(&s, &mid).is_empty());
        let mid = [pv(0, "old", true), pv(1, "old", true), pv(2, "new", true)];
        assert_eq!(plan(&s, &mid), vec![Step::Update(1)]);
        // Partition 2: only web-2 is rolled.
        s.partition = Some(2);
        assert_eq!(plan(&s, &mid), Vec::<Step>::new());
        assert_eq!(plan(&s, &old), vec![Step::Update(2)]);
        assert!(revision_for(&s, 2));
        assert!(!revision_for(&s, 1));
        // OnDelete: nothing rolled.
        s.partition = None;
        assert!(plan(&s, &old).is_empty());
        assert!(revision_for(&s, 0));
    }

    #[test]
    fn rolling_update_max_unavailable() {
        let mut s = shape(4, false);
        s.max_unavailable = Some(2);
        let old: Vec<_> = (0..4).map(|i| pv(i, "old", true)).collect();
        assert_eq!(plan(&s, &old), vec![Step::Update(3), Step::Update(2)]);
        let mut one_down = old.clone();
        one_down[3] = pv(3, "new", false);
        assert_eq!(plan(&s, &one_down), vec![Step::Update(2)]);
    }

    #[test]
    fn status_counts_and_rollout_completion() {
        let pods = [pv(0, "old", true), pv(1, "new", false)];
        let st = status_counts(&pods, "old", "new", true);
        assert_eq!(st.replicas, 2);
        assert_eq!(st.ready_replicas, Some(1));
        assert_eq!(st.current_replicas, Some(1));
        assert_eq!(st.updated_replicas, Some(1));
        assert_eq!(st.current_revision.as_deref(), Some("old"));
        let pods = [pv(0, "new", true), pv(1, "new", true)];
        let st = status_counts(&pods, "old", "new", true);
        assert_eq!(st.current_revision.as_deref(), Some("new"));
        assert_eq!(st.current_replicas, Some(2));
        // OnDelete never completes by itself.
        let st = status_counts(&pods, "old", "new", false);
        assert_eq!(st.current_revision.as_deref(), Some("old"));
    }
}
