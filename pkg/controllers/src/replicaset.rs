//! The ReplicaSet (apps/v1) and ReplicationController (core/v1) controllers,
//! as upstream's pkg/controller/replicaset: keep `spec.replicas` active pods
//! matching the selector, adopting orphans and releasing pods that stopped
//! matching (through ownerReferences), creating in slow-start batches and
//! deleting the least valuable pods first, and reporting replicas,
//! fullyLabeledReplicas, readyReplicas, availableReplicas, observedGeneration
//! and the ReplicaFailure condition.
//!
//! Both kinds share one reconcile through [`Replicated`], which gives a
//! common view of either object.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec, ReplicationController};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};
use k8s_openapi::jiff::Timestamp;
use k8s_openapi::NamespaceResourceScope;
use kube::core::Selector;
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{watcher, Controller};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::json;

use crate::owner::{self, Claim};
use crate::pods;
use crate::{status, Context, Error, Result, Shutdown};

/// At most this many pods are created or deleted by one sync (upstream's
/// BurstReplicas).
pub const BURST_REPLICAS: usize = 500;

/// Annotation with which users rank pods for deletion.
pub const POD_DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";

/// Runs the ReplicaSet controller until shutdown.
pub async fn run(ctx: Arc<Context>, shutdown: Shutdown) -> Result<()> {
    run_kind::<ReplicaSet>(ctx, shutdown).await
}

/// Runs the ReplicationController controller until shutdown.
pub async fn run_rc(ctx: Arc<Context>, shutdown: Shutdown) -> Result<()> {
    run_kind::<ReplicationController>(ctx, shutdown).await
}

/// What the reconcile needs from a ReplicaSet or a ReplicationController.
#[derive(Debug, Clone)]
pub struct View {
    /// Desired replicas (default 1).
    pub replicas: i32,
    /// The pod selector.
    pub selector: Selector,
    /// The pod template.
    pub template: PodTemplateSpec,
    /// Seconds a pod must be ready to count as available.
    pub min_ready_seconds: i32,
}

/// A condition of either kind's status.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Condition type, e.g. `ReplicaFailure`.
    #[serde(rename = "type")]
    pub type_: String,
    /// True, False or Unknown.
    pub status: String,
    /// Machine-readable reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Human-readable message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When the status last changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
}

/// The status both kinds report.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CommonStatus {
    /// Active pods owned.
    pub replicas: i32,
    /// Of those, the ones carrying every template label.
    pub fully_labeled_replicas: i32,
    /// Of those, the ready ones.
    pub ready_replicas: i32,
    /// Of those, ready for at least minReadySeconds.
    pub available_replicas: i32,
    /// The generation this status was computed for.
    pub observed_generation: i64,
    /// Conditions (only ReplicaFailure is ever set).
    pub conditions: Vec<Condition>,
}

impl CommonStatus {
    /// The `status` written for this status (conditions null when none).
    pub fn patch(&self) -> serde_json::Value {
        json!({
            "replicas": self.replicas,
            "fullyLabeledReplicas": self.fully_labeled_replicas,
            "readyReplicas": self.ready_replicas,
            "availableReplicas": self.available_replicas,
            "observedGeneration": self.observed_generation,
            "conditions": if self.conditions.is_empty() { serde_json::Value::Null } else { json!(self.conditions) },
        })
    }
}

/// A ReplicaSet or a ReplicationController.
pub trait Replicated:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + DeserializeOwned
    + Serialize
    + Debug
    + Send
    + Sync
    + 'static
{
    /// The spec as a common view.
    fn view(&self) -> Result<View>;
    /// The current status as a common view.
    fn common_status(&self) -> CommonStatus;
}

/// The [`CommonStatus`] of a ReplicaSetStatus or
/// ReplicationControllerStatus (same fields, different types).
macro_rules! common_status {
    ($status:expr) => {{
        let s = $status;
        CommonStatus {
            replicas: s.map(|s| s.replicas).unwrap_or(0),
            fully_labeled_replicas: s.and_then(|s| s.fully_labeled_replicas).unwrap_or(0),
            ready_replicas: s.and_then(|s| s.ready_replicas).unwrap_or(0),
            available_replicas: s.and_then(|s| s.available_replicas).unwrap_or(0),
            observed_generation: s.and_then(|s| s.observed_generation).unwrap_or(0),
            conditions: s
                .and_then(|s| s.conditions.as_ref())
                .map(|cs| {
                    cs.iter()
                        .map(|c| Condition {
                            type_: c.type_.clone(),
                            status: c.status.clone(),
                            reason: c.reason.clone(),
                            message: c.message.clone(),
                            last_transition_time: c.last_transition_time.clone(),
                        })
                        .collect()
                })
                .unwrap_or_default(),
        }
    }};
}

impl Replicated for ReplicaSet {
    fn view(&self) -> Result<View> {
        let spec = self
            .spec
            .as_ref()
            .ok_or_else(|| Error::Invalid("replicaset has no spec".into()))?;
        Ok(View {
            replicas: spec.replicas.unwrap_or(1),
            selector: pods::selector(&spec.selector)?,
            template: spec.template.clone().unwrap_or_default(),
            min_ready_seconds: spec.min_ready_seconds.unwrap_or(0),
        })
    }

    fn common_status(&self) -> CommonStatus {
        common_status!(self.status.as_ref())
    }
}

impl Replicated for ReplicationController {
    fn view(&self) -> Result<View> {
        let spec = self
            .spec
            .as_ref()
            .ok_or_else(|| Error::Invalid("replicationcontroller has no spec".into()))?;
        let template = spec.template.clone().unwrap_or_default();
        // An RC without a selector selects its template's labels.
        let labels = match &spec.selector {
            Some(s) if !s.is_empty() => s.clone(),
            _ => template
                .metadata
                .as_ref()
                .and_then(|m| m.labels.clone())
                .unwrap_or_default(),
        };
        let sel = LabelSelector {
            match_labels: Some(labels),
            match_expressions: None,
        };
        Ok(View {
            replicas: spec.replicas.unwrap_or(1),
            selector: pods::selector(&sel)?,
            template,
            min_ready_seconds: spec.min_ready_seconds.unwrap_or(0),
        })
    }

    fn common_status(&self) -> CommonStatus {
        common_status!(self.status.as_ref())
    }
}

async fn run_kind<K: Replicated>(ctx: Arc<Context>, shutdown: Shutdown) -> Result<()> {
    let api: Api<K> = Api::all(ctx.client.clone());
    let pod_api: Api<Pod> = Api::all(ctx.client.clone());
    let controller = Controller::new(api, watcher::Config::default());
    let store = controller.store();
    controller
        .watches(pod_api, watcher::Config::default(), move |pod| {
            owners_of_pod::<K>(&store, &pod)
        })
        .graceful_shutdown_on(shutdown.signal())
        .run(
            |obj: Arc<K>, ctx: Arc<Context>| reconcile(obj, ctx),
            |obj: Arc<K>, err: &Error, ctx: Arc<Context>| ctx.error_action(&crate::key(&*obj), err),
            ctx,
        )
        .for_each(|_| futures::future::ready(()))
        .await;
    Ok(())
}

/// The owners to sync when `pod` changes: its controller if it is of kind
/// `K`, or (for an orphan) every `K` in its namespace whose selector
/// matches it, which may adopt it.
fn owners_of_pod<K: Replicated>(store: &Store<K>, pod: &Pod) -> Vec<ObjectRef<K>> {
    let ns = pod.namespace().unwrap_or_default();
    match owner::controller_ref(&pod.metadata) {
        Some(r) if r.kind == K::kind(&()) => vec![ObjectRef::new(&r.name).within(&ns)],
        Some(_) => Vec::new(),
        None => {
            if pod.metadata.deletion_timestamp.is_some() {
                return Vec::new();
            }
            store
                .state()
                .iter()
                .filter(|o| o.namespace().as_deref() == Some(ns.as_str()))
                .filter(|o| {
                    o.view()
                        .is_ok_and(|v| pods::matches(&v.selector, pod.metadata.labels.as_ref()))
                })
                .map(|o| ObjectRef::from_obj(&**o))
                .collect()
        }
    }
}

async fn reconcile<K: Replicated>(obj: Arc<K>, ctx: Arc<Context>) -> Result<Action> {
    let key = crate::key(&*obj);
    let ns = obj.namespace().unwrap_or_default();
    let name = obj.name_any();
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &ns);
    // Act on the live object, never on a lagging cache.
    let Some(obj) = api
        .get_opt(&name)
        .await
        .map_err(Error::kube(format!("get {} {key}", K::kind(&()))))?
    else {
        return Ok(Action::await_change());
    };
    let uid = obj.meta().uid.clone().unwrap_or_default();
    let view = obj.view()?;
    let deleting = obj.meta().deletion_timestamp.is_some();
    let objref = obj.object_ref(&());

    let all = pods::list(&ctx.client, &ns, &Selector::default()).await?;
    let pod_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let owner_ref = owner::new_controller_ref(&obj);
    let mut owned = Vec::new();
    for pod in all.into_iter().filter(pods::is_active) {
        let matching = pods::matches(&view.selector, pod.metadata.labels.as_ref());
        match owner::claim(&pod.metadata, &uid, matching) {
            Claim::Owned => owned.push(pod),
            Claim::Adopt if !deleting => {
                if let Some(p) = owner::adopt(&pod_api, &pod, &owner_ref).await? {
                    owned.push(p);
                }
            }
            Claim::Release => owner::release(&pod_api, &pod, &uid).await?,
            Claim::Adopt | Claim::Ignore => {}
        }
    }

    let manage_err = if deleting {
        None
    } else {
        manage(&ctx, &obj, &objref, &view, &owned).await.err()
    };

    let now = Timestamp::now();
    let current = obj.common_status();
    let desired = calculate_status(
        &view,
        &owned,
        obj.meta().generation.unwrap_or(0),
        &current,
        manage_err
            .as_ref()
            .map(|(create, e)| (*create, e.api_message())),
        now,
    );
    if desired != current {
        status::write(&api, &name, &key, &desired.patch()).await?;
    }
    if let Some((_, e)) = manage_err {
        return Err(e);
    }
    ctx.succeeded(&key);
    if view.min_ready_seconds > 0 && desired.ready_replicas != desired.available_replicas {
        return Ok(Action::requeue(Duration::from_secs(
            u64::try_from(view.min_ready_seconds).unwrap_or(1).max(1),
        )));
    }
    Ok(Action::requeue(ctx.config.resync))
}

/// Creates or deletes pods so that `owned` reaches the desired count. The
/// error says whether it came from creating (true) or deleting.
async fn manage<K: Replicated>(
    ctx: &Context,
    obj: &K,
    objref: &k8s_openapi::api::core::v1::ObjectReference,
    view: &View,
    owned: &[Pod],
) -> std::result::Result<(), (bool, Error)> {
    let ns_owned = obj.namespace().unwrap_or_default();
    let ns: &str = &ns_owned;
    let name = obj.name_any();
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let diff = replica_diff(owned.len(), view.replicas);
    if diff < 0 {
        let count = usize::try_from(-diff).unwrap_or(0).min(BURST_REPLICAS);
        let owner_ref = owner::new_controller_ref(obj);
        let (_, err) = slow_start(count, || {
            let api = api.clone();
            let pod = pods::from_template(
                &view.template,
                ns,
                owner_ref.clone(),
                None,
                Some(pod_prefix(&name)),
            );
            async move {
                pods::create(ctx, objref, &api, &pod, format!("create pod in {ns}"))
                    .await
                    .map(drop)
            }
        })
        .await;
        if let Some(e) = err {
            return Err((true, e));
        }
    } else if diff > 0 {
        let count = usize::try_from(diff).unwrap_or(0).min(BURST_REPLICAS);
        let victims = pods_to_delete(owned, count, Timestamp::now());
        let results = futures::future::join_all(victims.into_iter().map(|p| {
            let api = api.clone();
            let pname = p.name_any();
            async move { pods::delete(ctx, objref, &api, &pname).await }
        }))
        .await;
        if let Some(e) = results.into_iter().find_map(|r| r.err()) {
            return Err((false, e));
        }
    }
    Ok(())
}

/// The generateName prefix of an owner's pods: `<name>-` (upstream cuts
/// names that would make the prefix invalid).
pub fn pod_prefix(name: &str) -> String {
    let mut base: String = name.chars().take(57).collect();
    base.push('-');
    base
}

/// Active pods minus desired replicas: negative means create, positive
/// delete.
pub fn replica_diff(active: usize, replicas: i32) -> i64 {
    i64::try_from(active).unwrap_or(i64::MAX) - i64::from(replicas.max(0))
}

/// Batch sizes of upstream's slowStartBatch for `count` calls: 1, 2, 4, ...
/// each capped at what remains.
pub fn slow_start_batches(count: usize) -> Vec<usize> {
    let mut out = Vec::new();
    let mut remaining = count;
    let mut batch = remaining.min(1);
    while batch > 0 {
        out.push(batch);
        remaining -= batch;
        batch = (batch * 2).min(remaining);
    }
    out
}

/// Runs `f` `count` times in growing concurrent batches, stopping after the
/// first batch with an error. Returns the successes and the first error.
pub async fn slow_start<F, Fut>(count: usize, mut f: F) -> (usize, Option<Error>)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let mut successes = 0;
    for batch in slow_start_batches(count) {
        let results = futures::future::join_all((0..batch).map(|_| f())).await;
        let mut first = None;
        for r in results {
            match r {
                Ok(()) => successes += 1,
                Err(e) => {
                    if first.is_none() {
                        first = Some(e);
                    }
                }
            }
        }
        if first.is_some() {
            return (successes, first);
        }
    }
    (successes, None)
}

fn phase_ordinal(pod: &Pod) -> u8 {
    match pods::phase(pod) {
        "Pending" => 0,
        "Unknown" => 1,
        "Running" => 2,
        _ => 0,
    }
}

fn deletion_cost(pod: &Pod) -> i32 {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(POD_DELETION_COST))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn max_restarts(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map(|cs| cs.iter().map(|c| c.restart_count).max().unwrap_or(0))
        .unwrap_or(0)
}

fn node_name(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or("")
}

/// Orders `t1` before `t2` when it is later, or unset (upstream's
/// afterOrZero): newer first.
fn after_or_zero(t1: Option<Timestamp>, t2: Option<Timestamp>) -> Ordering {
    match (t1, t2) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(a), Some(b)) => b.cmp(&a),
    }
}

/// floor(log2(now − t in nanoseconds)), or −1 when t is not in the past
/// (upstream's logarithmic bucketing of timestamps).
fn log_bucket(t: Timestamp, now: Timestamp) -> i64 {
    let d = now.as_nanosecond() - t.as_nanosecond();
    if d <= 0 {
        -1
    } else {
        i64::from(127 - d.leading_zeros()) // d < 2^127
    }
}

/// Compares two timestamps, more recent first, by logarithmic buckets of
/// their age, breaking ties by uid (LogarithmicScaleDown, GA in 1.31).
fn compare_times(
    ta: Option<Timestamp>,
    tb: Option<Timestamp>,
    a: &Pod,
    b: &Pod,
    now: Option<Timestamp>,
) -> Ordering {
    match (ta, tb, now) {
        (Some(x), Some(y), Some(now)) if x != y => {
            let diff = log_bucket(x, now) - log_bucket(y, now);
            if diff == 0 {
                a.metadata.uid.cmp(&b.metadata.uid)
            } else {
                diff.cmp(&0)
            }
        }
        _ => after_or_zero(ta, tb),
    }
}

/// Upstream's ActivePodsWithRanks ordering: the pod to delete first sorts
/// first. `rank_a`/`rank_b` count the owner's pods sharing each pod's node
/// (doubled-up pods go first); with `now`, ready and creation times compare
/// by logarithmic buckets of their age as upstream does.
pub fn deletion_order(
    a: &Pod,
    rank_a: usize,
    b: &Pod,
    rank_b: usize,
    now: Option<Timestamp>,
) -> Ordering {
    // 1. Unassigned < assigned.
    let (na, nb) = (node_name(a), node_name(b));
    if na != nb && (na.is_empty() || nb.is_empty()) {
        return if na.is_empty() {
            Ordering::Less
        } else {
            Ordering::Greater
        };
    }
    // 2. Pending < Unknown < Running.
    let o = phase_ordinal(a).cmp(&phase_ordinal(b));
    if o != Ordering::Equal {
        return o;
    }
    // 3. Not ready < ready.
    let (ra, rb) = (pods::is_ready(a), pods::is_ready(b));
    if ra != rb {
        return if ra {
            Ordering::Greater
        } else {
            Ordering::Less
        };
    }
    // 4. Lower deletion cost first.
    let o = deletion_cost(a).cmp(&deletion_cost(b));
    if o != Ordering::Equal {
        return o;
    }
    // 5. Doubled up < not doubled up.
    let o = rank_b.cmp(&rank_a);
    if o != Ordering::Equal {
        return o;
    }
    // 6. Ready for less time first.
    if ra && rb {
        let (ta, tb) = (pods::ready_since(a), pods::ready_since(b));
        if ta != tb {
            return compare_times(ta, tb, a, b, now);
        }
    }
    // 7. More restarts first.
    let o = max_restarts(b).cmp(&max_restarts(a));
    if o != Ordering::Equal {
        return o;
    }
    // 8. Newer first.
    let (ta, tb) = (
        a.metadata.creation_timestamp.as_ref().map(|t| t.0),
        b.metadata.creation_timestamp.as_ref().map(|t| t.0),
    );
    if ta == tb {
        return Ordering::Equal;
    }
    compare_times(ta, tb, a, b, now)
}

/// The `count` pods to delete first, by [`deletion_order`].
pub fn pods_to_delete(owned: &[Pod], count: usize, now: Timestamp) -> Vec<Pod> {
    let mut per_node: BTreeMap<&str, usize> = BTreeMap::new();
    for p in owned {
        *per_node.entry(node_name(p)).or_insert(0) += 1;
    }
    let rank = |p: &Pod| {
        if node_name(p).is_empty() {
            0
        } else {
            per_node.get(node_name(p)).copied().unwrap_or(0)
        }
    };
    let mut ranked: Vec<(&Pod, usize)> = owned.iter().map(|p| (p, rank(p))).collect();
    ranked.sort_by(|(a, ra), (b, rb)| deletion_order(a, *ra, b, *rb, Some(now)));
    ranked
        .into_iter()
        .take(count)
        .map(|(p, _)| p.clone())
        .collect()
}

/// The status upstream's calculateStatus reports for `owned` pods, with the
/// ReplicaFailure condition set from a manage error (`(is_create, msg)`) or
/// cleared after a clean sync.
pub fn calculate_status(
    view: &View,
    owned: &[Pod],
    generation: i64,
    current: &CommonStatus,
    manage_err: Option<(bool, String)>,
    now: Timestamp,
) -> CommonStatus {
    let template_labels = view
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let count = |f: &dyn Fn(&Pod) -> bool| {
        i32::try_from(owned.iter().filter(|p| f(p)).count()).unwrap_or(i32::MAX)
    };
    let fully_labeled = count(&|p: &Pod| {
        let labels = p.metadata.labels.clone().unwrap_or_default();
        template_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
    });
    let ready = count(&|p: &Pod| pods::is_ready(p));
    let available = count(&|p: &Pod| pods::is_available(p, view.min_ready_seconds, now));
    let mut conditions = current.conditions.clone();
    let has_failure = conditions.iter().any(|c| c.type_ == "ReplicaFailure");
    match manage_err {
        Some((is_create, msg)) if !has_failure => conditions.push(Condition {
            type_: "ReplicaFailure".into(),
            status: "True".into(),
            reason: Some(
                if is_create {
                    "FailedCreate"
                } else {
                    "FailedDelete"
                }
                .into(),
            ),
            message: Some(msg),
            last_transition_time: Some(Time(now)),
        }),
        None if has_failure => conditions.retain(|c| c.type_ != "ReplicaFailure"),
        _ => {}
    }
    CommonStatus {
        replicas: i32::try_from(owned.len()).unwrap_or(i32::MAX),
        fully_labeled_replicas: fully_labeled,
        ready_replicas: ready,
        available_replicas: available,
        observed_generation: generation,
        conditions,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ContainerStatus, PodCondition, PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + s).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    fn pod(
        name: &str,
        node: &str,
        phase: &str,
        ready_at: Option<i64>,
        restarts: i32,
        created: i64,
    ) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                creation_timestamp: Some(Time(ts(created))),
                labels: Some(BTreeMap::from([("app".to_string(), "web".to_string())])),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: (!node.is_empty()).then(|| node.to_string()),
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: Some(phase.into()),
                conditions: ready_at.map(|t| {
                    vec![PodCondition {
                        type_: "Ready".into(),
                        status: "True".into(),
                        last_transition_time: Some(Time(ts(t))),
                        ..Default::default()
                    }]
                }),
                container_statuses: Some(vec![ContainerStatus {
                    restart_count: restarts,
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        }
    }

    fn names(p: &[Pod]) -> Vec<String> {
        p.iter().map(|p| p.name_any()).collect()
    }

    #[test]
    fn diff_signs() {
        assert_eq!(replica_diff(0, 3), -3);
        assert_eq!(replica_diff(5, 3), 2);
        assert_eq!(replica_diff(3, 3), 0);
        assert_eq!(replica_diff(2, -1), 2);
    }

    #[test]
    fn slow_start_doubles_and_caps() {
        assert_eq!(slow_start_batches(0), Vec::<usize>::new());
        assert_eq!(slow_start_batches(1), vec![1]);
        assert_eq!(slow_start_batches(3), vec![1, 2]);
        assert_eq!(slow_start_batches(10), vec![1, 2, 4, 3]);
        assert_eq!(slow_start_batches(16), vec![1, 2, 4, 8, 1]);
    }

    #[tokio::test]
    async fn slow_start_stops_on_first_failing_batch() {
        let calls = std::sync::atomic::AtomicUsize::new(0);
        let (ok, err) = slow_start(10, || {
            let n = calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async move {
                if n == 2 {
                    Err(Error::Invalid("quota".into()))
                } else {
                    Ok(())
                }
            }
        })
        .await;
        // Batches 1 and 2 ran (3 calls), the third of them failed; no batch of 4.
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 3);
        assert_eq!(ok, 2);
        assert!(err.is_some());
    }

    #[test]
    fn deletion_ranking() {
        let owned = vec![
            pod("running-ready-old", "n1", "Running", Some(10), 0, 0),
            pod("unscheduled", "", "Pending", None, 0, 0),
            pod("pending", "n1", "Pending", None, 0, 0),
            pod("running-notready", "n1", "Running", None, 0, 0),
            pod("running-ready-new", "n1", "Running", Some(50), 0, 0),
            pod("unknown", "n1", "Unknown", None, 0, 0),
        ];
        let order = pods_to_delete(&owned, 6, ts(100));
        assert_eq!(
            names(&order),
            vec![
                "unscheduled",
                "pending",
                "unknown",
                "running-notready",
                "running-ready-new",
                "running-ready-old"
            ]
        );
        assert_eq!(
            names(&pods_to_delete(&owned, 2, ts(100))),
            vec!["unscheduled", "pending"]
        );
    }

    #[test]
    fn deletion_ranking_restarts_then_newer() {
        let owned = vec![
            pod("old", "n1", "Running", None, 0, -1000),
            pod("restarting", "n1", "Running", None, 5, 0),
            pod("new", "n1", "Running", None, 0, 30),
        ];
        assert_eq!(
            names(&pods_to_delete(&owned, 3, ts(100))),
            vec!["restarting", "new", "old"]
        );
    }

    #[test]
    fn ages_in_the_same_log_bucket_tie_break_by_uid() {
        // 70 s and 100 s old: both in bucket floor(log2(ns)) = 36.
        let mut a = pod("a", "n1", "Running", None, 0, 30);
        let mut b = pod("b", "n1", "Running", None, 0, 0);
        a.metadata.uid = Some("2".into());
        b.metadata.uid = Some("1".into());
        assert_eq!(
            names(&pods_to_delete(&[a.clone(), b.clone()], 2, ts(100))),
            vec!["b", "a"]
        );
        // Without a clock: plain newer first.
        assert_eq!(deletion_order(&a, 1, &b, 1, None), Ordering::Less);
        assert_eq!(log_bucket(ts(0), ts(100)), 36);
        assert_eq!(log_bucket(ts(100), ts(100)), -1);
    }

    #[test]
    fn deletion_cost_wins_over_age() {
        let mut cheap = pod("cheap-old", "n1", "Running", None, 0, 0);
        cheap.metadata.annotations = Some(BTreeMap::from([(
            POD_DELETION_COST.to_string(),
            "-5".to_string(),
        )]));
        let owned = vec![pod("new", "n1", "Running", None, 0, 30), cheap];
        assert_eq!(
            names(&pods_to_delete(&owned, 1, ts(100))),
            vec!["cheap-old"]
        );
    }

    fn view(min_ready: i32) -> View {
        View {
            replicas: 3,
            selector: Selector::default(),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(BTreeMap::from([
                        ("app".to_string(), "web".to_string()),
                        ("tier".to_string(), "fe".to_string()),
                    ])),
                    ..Default::default()
                }),
                spec: None,
            },
            min_ready_seconds: min_ready,
        }
    }

    #[test]
    fn status_counts_and_failure_condition() {
        let mut full = pod("a", "n1", "Running", Some(95), 0, 0);
        full.metadata
            .labels
            .as_mut()
            .map(|l| l.insert("tier".into(), "fe".into()));
        let owned = vec![
            full,
            pod("b", "n1", "Running", Some(0), 0, 0),
            pod("c", "", "Pending", None, 0, 0),
        ];
        let st = calculate_status(
            &view(10),
            &owned,
            4,
            &CommonStatus::default(),
            None,
            ts(100),
        );
        assert_eq!(
            (
                st.replicas,
                st.fully_labeled_replicas,
                st.ready_replicas,
                st.available_replicas,
                st.observed_generation
            ),
            (3, 1, 2, 1, 4)
        );
        assert!(st.conditions.is_empty());

        let failed = calculate_status(
            &view(0),
            &owned,
            4,
            &st,
            Some((true, "pods \"x\" is forbidden: exceeded quota".into())),
            ts(100),
        );
        assert_eq!(failed.conditions.len(), 1);
        assert_eq!(failed.conditions[0].reason.as_deref(), Some("FailedCreate"));
        // An existing failure is kept as is, then cleared by a clean sync.
        let again = calculate_status(
            &view(0),
            &owned,
            4,
            &failed,
            Some((true, "other".into())),
            ts(200),
        );
        assert_eq!(again.conditions, failed.conditions);
        let cleared = calculate_status(&view(0), &owned, 4, &failed, None, ts(300));
        assert!(cleared.conditions.is_empty());
    }

    #[test]
    fn rc_without_selector_uses_template_labels() {
        let rc = ReplicationController {
            spec: Some(k8s_openapi::api::core::v1::ReplicationControllerSpec {
                replicas: Some(2),
                template: Some(view(0).template),
                ..Default::default()
            }),
            ..Default::default()
        };
        let v = rc.view().expect("view");
        let labels = BTreeMap::from([
            ("app".to_string(), "web".to_string()),
            ("tier".to_string(), "fe".to_string()),
        ]);
        assert!(pods::matches(&v.selector, Some(&labels)));
        assert!(!pods::matches(&v.selector, Some(&BTreeMap::new())));
        assert_eq!(v.replicas, 2);
    }

    #[test]
    fn pod_events_map_to_owner_or_matching_sets() {
        use k8s_openapi::api::apps::v1::ReplicaSetSpec;
        let rs = |name: &str, app: &str| ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                selector: LabelSelector {
                    match_labels: Some(BTreeMap::from([("app".to_string(), app.to_string())])),
                    match_expressions: None,
                },
                ..Default::default()
            }),
            status: None,
        };
        let (store, mut writer) = kube::runtime::reflector::store::<ReplicaSet>();
        writer.apply_watcher_event(&watcher::Event::Apply(rs("web", "web")));
        writer.apply_watcher_event(&watcher::Event::Apply(rs("db", "db")));
        let mut orphan = pod("o", "", "Pending", None, 0, 0);
        orphan.metadata.namespace = Some("default".into());
        let refs = owners_of_pod::<ReplicaSet>(&store, &orphan);
        assert_eq!(
            refs.iter().map(|r| r.name.clone()).collect::<Vec<_>>(),
            vec!["web".to_string()]
        );
        let mut owned = orphan.clone();
        owned.metadata.owner_references = Some(vec![
            k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
                kind: "ReplicaSet".into(),
                name: "db".into(),
                controller: Some(true),
                ..Default::default()
            },
        ]);
        let refs = owners_of_pod::<ReplicaSet>(&store, &owned);
        assert_eq!(
            refs.iter().map(|r| r.name.clone()).collect::<Vec<_>>(),
            vec!["db".to_string()]
        );
        assert!(owners_of_pod::<ReplicationController>(
            &kube::runtime::reflector::store().0,
            &owned
        )
        .is_empty());
    }

    #[test]
    fn prefix() {
        assert_eq!(pod_prefix("web-5d4f8"), "web-5d4f8-");
    }
}
