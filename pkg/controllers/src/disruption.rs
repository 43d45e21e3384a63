//! The disruption controller: keeps each PodDisruptionBudget's status
//! (expectedPods, desiredHealthy from minAvailable/maxUnavailable as an
//! integer or a percentage of the owning controllers' scale, currentHealthy,
//! disruptionsAllowed, the DisruptionAllowed condition, observedGeneration)
//! and expires the `disruptedPods` entries the eviction subresource adds.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{watcher, Controller};
use kube::{Api, Resource, ResourceExt};

use crate::intstr::scaled_value;
use crate::{owner, pods, status, Context, Error, Result, Shutdown};

/// How long an evicted pod may stay before its `disruptedPods` entry
/// expires (upstream's DeletionTimeout).
pub const DELETION_TIMEOUT: Duration = Duration::from_secs(120);

/// Remembers the last note of each (object, reason) so that periodic
/// reconciles do not repeat an unchanged event (client-go's event
/// correlator folds such repeats into a count); shared by the quota,
/// disruption, volume and HPA controllers.
#[derive(Default)]
pub struct Repeats(std::sync::Mutex<std::collections::HashMap<String, String>>);

impl Repeats {
    /// True the first time `note` is seen for `key` and `reason` (or when
    /// it differs from the last one).
    pub fn first(&self, key: &str, reason: &str, note: &str) -> bool {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let k = format!("{key}\u{0}{reason}");
        if m.get(&k).map(String::as_str) == Some(note) {
            return false;
        }
        m.insert(k, note.to_string());
        true
    }

    /// Forgets `key` and `reason` (the condition cleared).
    pub fn clear(&self, key: &str, reason: &str) {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        m.remove(&format!("{key}\u{0}{reason}"));
    }
}

pub(crate) static REPEATS: std::sync::LazyLock<Repeats> =
    std::sync::LazyLock::new(Repeats::default);

/// Runs the controller until shutdown.
pub async fn run(ctx: Arc<Context>, shutdown: Shutdown) -> Result<()> {
    let api: Api<PodDisruptionBudget> = Api::all(ctx.client.clone());
    let pod_api: Api<Pod> = Api::all(ctx.client.clone());
    let controller = Controller::new(api, watcher::Config::default());
    let store = controller.store();
    controller
        .watches(pod_api, watcher::Config::default(), move |pod| {
            budgets_of_pod(&store, &pod)
        })
        .graceful_shutdown_on(shutdown.signal())
        .run(
            reconcile,
            |obj: Arc<PodDisruptionBudget>, err: &Error, ctx: Arc<Context>| {
                ctx.error_action(&crate::key(&*obj), err)
            },
            ctx,
        )
        .for_each(|_| futures::future::ready(()))
        .await;
    Ok(())
}

fn selector_matches(pdb: &PodDisruptionBudget, pod: &Pod) -> bool {
    // A null selector selects nothing; an empty one everything.
    let Some(sel) = pdb.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
        return false;
    };
    pods::selector(sel).is_ok_and(|s| pods::matches(&s, pod.metadata.labels.as_ref()))
}

fn budgets_of_pod(
    store: &Store<PodDisruptionBudget>,
    pod: &Pod,
) -> Vec<ObjectRef<PodDisruptionBudget>> {
    let ns = pod.namespace().unwrap_or_default();
    store
        .state()
        .iter()
        .filter(|b| b.namespace().as_deref() == Some(ns.as_str()))
        .filter(|b| selector_matches(b, pod))
        .map(|b| ObjectRef::from_obj(&**b))
        .collect()
}

/// (expectedPods, desiredHealthy) as upstream's getExpectedPodCount:
/// `expected_scale` is the summed scale of the pods' controllers (needed
/// for maxUnavailable and percentage minAvailable), `pod_count` the number
/// of selected pods.
pub fn expected_and_desired(
    min_available: Option<&IntOrString>,
    max_unavailable: Option<&IntOrString>,
    expected_scale: impl FnOnce() -> Result<i32>,
    pod_count: i32,
) -> Result<(i32, i32)> {
    if let Some(mu) = max_unavailable {
        let expected = expected_scale()?;
        let mu = scaled_value(mu, expected, true)?;
        return Ok((expected, (expected - mu).max(0)));
    }
    match min_available {
        Some(IntOrString::Int(i)) => Ok((pod_count, *i)),
        Some(v @ IntOrString::String(_)) => {
            let expected = expected_scale()?;
            Ok((expected, scaled_value(v, expected, true)?))
        }
        None => Ok((0, 0)),
    }
}

/// disruptionsAllowed from the counts.
pub fn disruptions_allowed(expected: i32, current: i32, desired: i32) -> i32 {
    let a = current - desired;
    if expected <= 0 || a <= 0 {
        0
    } else {
        a
    }
}

/// The `disruptedPods` entries still pending (pod present, not yet being
/// deleted, entry younger than the timeout) and the earliest expiry.
pub fn live_disrupted(
    disrupted: &BTreeMap<String, Time>,
    pods: &[Pod],
    now: Timestamp,
) -> (BTreeMap<String, Time>, Option<Timestamp>) {
    let mut out = BTreeMap::new();
    let mut recheck: Option<Timestamp> = None;
    let timeout = DELETION_TIMEOUT.as_secs() as i64;
    for pod in pods {
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let name = pod.name_any();
        let Some(t) = disrupted.get(&name) else {
            continue;
        };
        let expires = t.0.as_second() + timeout;
        if expires < now.as_second() {
            continue;
        }
        let exp = Timestamp::from_second(expires).unwrap_or(now);
        if recheck.is_none_or(|r| exp < r) {
            recheck = Some(exp);
        }
        out.insert(name, t.clone());
    }
    (out, recheck)
}

/// Ready pods not being deleted nor awaiting an eviction.
pub fn count_healthy(pods: &[Pod], disrupted: &BTreeMap<String, Time>) -> i32 {
    pods.iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| !disrupted.contains_key(&p.name_any()))
        .filter(|p| pods::is_ready(p))
        .count() as i32
}

/// The DisruptionAllowed condition list after a status change (keeps the
/// transition time when the status is unchanged).
pub fn with_condition(
    current: Option<&Vec<Condition>>,
    status: &str,
    reason: &str,
    message: &str,
    now: Time,
) -> Vec<Condition> {
    let mut out: Vec<Condition> = current.cloned().unwrap_or_default();
    match out.iter_mut().find(|c| c.type_ == "DisruptionAllowed") {
        Some(c) => {
            if c.status != status {
                c.last_transition_time = now;
            }
            c.status = status.into();
            c.reason = reason.into();
            c.message = message.into();
        }
        None => out.push(Condition {
            type_: "DisruptionAllowed".into(),
            status: status.into(),
            reason: reason.into(),
            message: message.into(),
            last_transition_time: now,
            observed_generation: None,
        }),
    }
    out
}

/// The summed scale of the controllers owning `pods` (Deployments through
/// their ReplicaSets, ReplicaSets, ReplicationControllers, StatefulSets).
async fn expected_scale(ctx: &Context, ns: &str, pods: &[Pod]) -> Result<i32> {
    let mut scales: BTreeMap<String, i32> = BTreeMap::new();
    let client = &ctx.client;
    for pod in pods {
        let Some(r) = owner::controller_ref(&pod.metadata) else {
            continue;
        };
        if scales.contains_key(&r.uid) {
            continue;
        }
        let found: Option<(String, i32)> = match r.kind.as_str() {
            "ReplicaSet" => {
                let rs = Api::<ReplicaSet>::namespaced(client.clone(), ns)
                    .get_opt(&r.name)
                    .await
                    .map_err(Error::kube(format!("get replicaset {ns}/{}", r.name)))?
                    .filter(|rs| rs.uid().as_deref() == Some(r.uid.as_str()));
                match rs {
                    None => None,
                    Some(rs) => match owner::controller_ref(&rs.metadata)
                        .filter(|o| o.kind == "Deployment")
                    {
                        Some(d) => Api::<Deployment>::namespaced(client.clone(), ns)
                            .get_opt(&d.name)
                            .await
                            .map_err(Error::kube(format!("get deployment {ns}/{}", d.name)))?
                            .filter(|dep| dep.uid().as_deref() == Some(d.uid.as_str()))
                            .map(|dep| {
                                (
                                    d.uid.clone(),
                                    dep.spec.and_then(|s| s.replicas).unwrap_or(1),
                                )
                            }),
                        None => {
                            Some((r.uid.clone(), rs.spec.and_then(|s| s.replicas).unwrap_or(1)))
                        }
                    },
                }
            }
            "ReplicationController" => Api::<ReplicationController>::namespaced(client.clone(), ns)
                .get_opt(&r.name)
                .await
                .map_err(Error::kube(format!(
                    "get replicationcontroller {ns}/{}",
                    r.name
                )))?
                .filter(|o| o.uid().as_deref() == Some(r.uid.as_str()))
                .map(|o| (r.uid.clone(), o.spec.and_then(|s| s.replicas).unwrap_or(1))),
            "StatefulSet" => Api::<StatefulSet>::namespaced(client.clone(), ns)
                .get_opt(&r.name)
                .await
                .map_err(Error::kube(format!("get statefulset {ns}/{}", r.name)))?
                .filter(|o| o.uid().as_deref() == Some(r.uid.as_str()))
                .map(|o| (r.uid.clone(), o.spec.and_then(|s| s.replicas).unwrap_or(1))),
            _ => None,
        };
        match found {
            Some((uid, n)) => {
                scales.insert(uid, n);
            }
            None => {
                return Err(Error::Invalid(format!(
                    "found no controllers for pod {:?}",
                    pod.name_any()
                )))
            }
        }
    }
    Ok(scales.values().sum())
}

async fn reconcile(obj: Arc<PodDisruptionBudget>, ctx: Arc<Context>) -> Result<Action> {
    let key = crate::key(&*obj);
    let ns = obj.namespace().unwrap_or_default();
    let name = obj.name_any();
    let api: Api<PodDisruptionBudget> = Api::namespaced(ctx.client.clone(), &ns);
    let Some(pdb) = api
        .get_opt(&name)
        .await
        .map_err(Error::kube(format!("get poddisruptionbudget {key}")))?
    else {
        return Ok(Action::await_change());
    };
    let spec = pdb.spec.clone().unwrap_or_default();
    let all = pods::list(&ctx.client, &ns, &kube::core::Selector::default()).await?;
    let selected: Vec<Pod> = all
        .into_iter()
        .filter(|p| selector_matches(&pdb, p))
        .collect();
    let now = Timestamp::now();
    let current = pdb.status.clone().unwrap_or_default();
    let generation = pdb.metadata.generation.unwrap_or(0);

    let counts = expected_and_desired(
        spec.min_available.as_ref(),
        spec.max_unavailable.as_ref(),
        || Ok(0),
        selected.len() as i32,
    );
    // The scale lookup is async: compute it when the budget needs it.
    let needs_scale = spec.max_unavailable.is_some()
        || matches!(spec.min_available, Some(IntOrString::String(_)));
    let counts = if needs_scale {
        let unmanaged = selected
            .iter()
            .any(|p| owner::controller_ref(&p.metadata).is_none());
        if !unmanaged {
            REPEATS.clear(&key, "UnmanagedPods");
        }
        if unmanaged {
            let sel = spec
                .selector
                .as_ref()
                .and_then(|s| pods::selector(s).ok())
                .map(|s| s.to_string())
                .unwrap_or_default();
            let note = format!(
                "Pods selected by this PodDisruptionBudget (selector: {sel}) were found to be unmanaged. As a result, the status of the PDB cannot be calculated correctly, which may result in undefined behavior. To account for these pods please set \".spec.minAvailable\" field of the PDB to an integer value."
            );
            if REPEATS.first(&key, "UnmanagedPods", &note) {
                ctx.warning(&pdb.object_ref(&()), "UnmanagedPods", note)
                    .await;
            }
        }
        match expected_scale(&ctx, &ns, &selected).await {
            Ok(scale) => expected_and_desired(
                spec.min_available.as_ref(),
                spec.max_unavailable.as_ref(),
                || Ok(scale),
                selected.len() as i32,
            ),
            Err(e) => Err(e),
        }
    } else {
        counts
    };

    let mut desired = current.clone();
    desired.observed_generation = Some(generation);
    let recheck = match counts {
        Err(e) => {
            // Fail safe: no disruptions while the budget cannot be computed.
            let msg = e.to_string();
            if current.disruptions_allowed != 0
                || !current.conditions.as_ref().is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c.type_ == "DisruptionAllowed" && c.reason == "SyncFailed")
                })
            {
                ctx.warning(
                    &pdb.object_ref(&()),
                    "CalculateExpectedPodCountFailed",
                    format!("Failed to calculate the number of expected pods: {msg}"),
                )
                .await;
            }
            desired.disruptions_allowed = 0;
            desired.conditions = Some(with_condition(
                current.conditions.as_ref(),
                "False",
                "SyncFailed",
                &msg,
                Time(now),
            ));
            None
        }
        Ok((expected, desired_healthy)) => {
            let disrupted = current.disrupted_pods.clone().unwrap_or_default();
            let (live, recheck) = live_disrupted(&disrupted, &selected, now);
            let healthy = count_healthy(&selected, &live);
            let allowed = disruptions_allowed(expected, healthy, desired_healthy);
            desired.expected_pods = expected;
            desired.desired_healthy = desired_healthy;
            desired.current_healthy = healthy;
            desired.disruptions_allowed = allowed;
            desired.disrupted_pods = if live.is_empty() { None } else { Some(live) };
            let (st, reason) = if allowed > 0 {
                ("True", "SufficientPods")
            } else {
                ("False", "InsufficientPods")
            };
            desired.conditions = Some(with_condition(
                current.conditions.as_ref(),
                st,
                reason,
                "",
                Time(now),
            ));
            recheck
        }
    };
    if !same_status(&desired, &current) {
        write_status(&api, &name, &desired, &key).await?;
    }
    ctx.succeeded(&key);
    let resync = ctx.config.resync;
    Ok(match recheck {
        Some(t) => {
            let secs = (t.as_second() - now.as_second()).max(1) as u64;
            Action::requeue(Duration::from_secs(secs).min(resync))
        }
        None => Action::requeue(resync),
    })
}

fn same_status(a: &PodDisruptionBudgetStatus, b: &PodDisruptionBudgetStatus) -> bool {
    let norm = |s: &PodDisruptionBudgetStatus| {
        let mut s = s.clone();
        if s.disrupted_pods.as_ref().is_some_and(BTreeMap::is_empty) {
            s.disrupted_pods = None;
        }
        s
    };
    norm(a) == norm(b)
}

async fn write_status(
    api: &Api<PodDisruptionBudget>,
    name: &str,
    status: &PodDisruptionBudgetStatus,
    key: &str,
) -> Result<()> {
    // disruptedPods is a map: a merge patch must null out removed entries,
    // so replace the whole status with a JSON merge that sets it explicitly.
    let mut st = serde_json::to_value(status).map_err(|e| Error::Invalid(e.to_string()))?;
    if status.disrupted_pods.is_none() {
        st["disruptedPods"] = serde_json::Value::Null;
    }
    status::write(api, name, key, &st).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn int(i: i32) -> IntOrString {
        IntOrString::Int(i)
    }
    fn pct(s: &str) -> IntOrString {
        IntOrString::String(s.into())
    }

    #[test]
    fn budget_math() {
        // minAvailable int: expected is the pod count.
        assert_eq!(
            expected_and_desired(Some(&int(2)), None, || Ok(9), 3).unwrap(),
            (3, 2)
        );
        // minAvailable percent of the scale, rounded up.
        assert_eq!(
            expected_and_desired(Some(&pct("50%")), None, || Ok(3), 3).unwrap(),
            (3, 2)
        );
        // maxUnavailable percent rounds up the unavailable count.
        assert_eq!(
            expected_and_desired(None, Some(&pct("25%")), || Ok(10), 10).unwrap(),
            (10, 7)
        );
        assert_eq!(
            expected_and_desired(None, Some(&int(1)), || Ok(3), 3).unwrap(),
            (3, 2)
        );
        assert_eq!(
            expected_and_desired(None, Some(&int(5)), || Ok(3), 3).unwrap(),
            (3, 0)
        );
        assert_eq!(
            expected_and_desired(None, None, || Ok(3), 3).unwrap(),
            (0, 0)
        );
        assert_eq!(disruptions_allowed(3, 3, 2), 1);
        assert_eq!(disruptions_allowed(3, 2, 2), 0);
        assert_eq!(disruptions_allowed(0, 2, 0), 0);
    }

    fn pod(name: &str, ready: bool) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            spec: None,
            status: Some(PodStatus {
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn healthy_and_disrupted() {
        let now = Timestamp::from_second(1_000_000).unwrap();
        let pods = [pod("a", true), pod("b", true), pod("c", false)];
        let mut d = BTreeMap::new();
        d.insert(
            "a".to_string(),
            Time(Timestamp::from_second(1_000_000 - 10).unwrap()),
        );
        d.insert(
            "b".to_string(),
            Time(Timestamp::from_second(1_000_000 - 500).unwrap()),
        );
        d.insert("gone".to_string(), Time(now));
        let (live, recheck) = live_disrupted(&d, &pods, now);
        assert_eq!(live.keys().collect::<Vec<_>>(), ["a"]);
        assert_eq!(recheck.unwrap().as_second(), 1_000_000 - 10 + 120);
        assert_eq!(count_healthy(&pods, &live), 1);
        assert_eq!(count_healthy(&pods, &BTreeMap::new()), 2);
    }

    #[test]
    fn repeats_fold() {
        let r = Repeats::default();
        assert!(r.first("ns/a", "X", "m1"));
        assert!(!r.first("ns/a", "X", "m1"));
        assert!(r.first("ns/a", "Y", "m1"));
        assert!(r.first("ns/a", "X", "m2"));
        r.clear("ns/a", "X");
        assert!(r.first("ns/a", "X", "m2"));
    }

    #[test]
    fn condition_transition() {
        let t0 = Time(Timestamp::from_second(10).unwrap());
        let t1 = Time(Timestamp::from_second(20).unwrap());
        let c = with_condition(None, "True", "SufficientPods", "", t0.clone());
        let same = with_condition(Some(&c), "True", "SufficientPods", "", t1.clone());
        assert_eq!(same[0].last_transition_time, t0);
        let flip = with_condition(Some(&c), "False", "InsufficientPods", "", t1.clone());
        assert_eq!(flip[0].last_transition_time, t1);
        assert_eq!(flip.len(), 1);
    }
}
