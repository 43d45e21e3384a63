//! The scheduling cycle over a snapshot of the watch caches.
//!
//! Each cycle takes every pending pod (highest priority, then oldest first),
//! skips those parked as unschedulable that are not yet due, places the rest
//! one after another against a node view that includes the pods placed
//! earlier in the cycle, then binds concurrently and reports failures. Bound
//! pods stay "assumed" on their node until the watch shows `spec.nodeName`
//! (or 30 s pass), so a pod is never bound twice and its resources count at
//! once. API writes go through [`Writer`] so the cycle is testable offline.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Event, Node, Pod};
use k8s_openapi::jiff::Timestamp;
use serde_json::Value;

use crate::algorithm::{is_pending, schedule};
use crate::filters::is_terminated;
use crate::report;
use crate::retry::Unschedulable;

/// How long a bound pod counts on its node before the watch confirms it.
pub const ASSUME_TTL: Duration = Duration::from_secs(30);
/// Concurrent API writes per cycle.
const PARALLEL_WRITES: usize = 16;

/// The API writes the scheduler makes.
pub trait Writer: Sync {
    /// POST pods/binding.
    fn bind(&self, pod: &Pod, node: &str) -> impl Future<Output = Result<(), kube::Error>> + Send;
    /// Strategic-merge patch of pods/status.
    fn patch_pod_status(
        &self,
        pod: &Pod,
        patch: &Value,
    ) -> impl Future<Output = Result<(), kube::Error>> + Send;
    /// Creates an event.
    fn create_event(&self, event: &Event) -> impl Future<Output = Result<(), kube::Error>> + Send;
    /// Merge-patches an event.
    fn patch_event(
        &self,
        ns: &str,
        name: &str,
        patch: &Value,
    ) -> impl Future<Output = Result<(), kube::Error>> + Send;
}

#[derive(Debug, Clone)]
struct Assumed {
    node: String,
    at: Instant,
}

#[derive(Debug, Clone)]
struct EventRecord {
    namespace: String,
    name: String,
    message: String,
    count: i32,
}

/// Scheduler state carried between cycles.
pub struct Scheduler<W> {
    writer: W,
    name: String,
    resync: Duration,
    assumed: HashMap<String, Assumed>,
    unschedulable: Unschedulable,
    events: HashMap<String, EventRecord>,
}

/// What one cycle did (for logs and tests).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// (namespace/name, node) of successful bindings.
    pub bound: Vec<(String, String)>,
    /// (namespace/name, message) of pods that fit nowhere.
    pub unschedulable: Vec<(String, String)>,
    /// When the next cycle is due even without watch events.
    pub next_due: Option<Instant>,
}

fn key(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or(""),
        pod.metadata.name.as_deref().unwrap_or("")
    )
}

fn uid(pod: &Pod) -> String {
    pod.metadata.uid.clone().unwrap_or_else(|| key(pod))
}

fn node_name(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or("")
}

fn hash_json<T: serde::Serialize>(h: &mut DefaultHasher, v: &T) {
    serde_json::to_string(v).unwrap_or_default().hash(h);
}

/// Fingerprint of everything node-side that filters look at.
fn cluster_fingerprint(nodes: &[&Node], bound: &HashMap<String, Vec<&Pod>>) -> u64 {
    let mut h = DefaultHasher::new();
    let mut nodes = nodes.to_vec();
    nodes.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    for n in nodes {
        n.metadata.name.hash(&mut h);
        hash_json(&mut h, &n.metadata.labels);
        hash_json(&mut h, &n.spec);
        let status = n.status.as_ref();
        hash_json(&mut h, &status.and_then(|s| s.allocatable.as_ref()));
        let ready = status
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
            .map(|c| c.status.clone());
        ready.hash(&mut h);
    }
    let mut placed: Vec<(String, String)> = bound
        .iter()
        .flat_map(|(n, ps)| ps.iter().map(move |p| (n.clone(), uid(p))))
        .collect();
    placed.sort();
    placed.hash(&mut h);
    h.finish()
}

fn pod_fingerprint(cluster: u64, pod: &Pod) -> u64 {
    let mut h = DefaultHasher::new();
    cluster.hash(&mut h);
    hash_json(&mut h, &pod.spec);
    h.finish()
}

fn priority_order(a: &Pod, b: &Pod) -> std::cmp::Ordering {
    let prio = |p: &Pod| p.spec.as_ref().and_then(|s| s.priority).unwrap_or(0);
    let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
    prio(b)
        .cmp(&prio(a))
        .then_with(|| created(a).cmp(&created(b)))
        .then_with(|| key(a).cmp(&key(b)))
}

impl<W: Writer> Scheduler<W> {
    /// A scheduler acting as `name`, retrying parked pods at least every `resync`.
    pub fn new(writer: W, name: impl Into<String>, resync: Duration) -> Self {
        Self {
            writer,
            name: name.into(),
            resync,
            assumed: HashMap::new(),
            unschedulable: Unschedulable::default(),
            events: HashMap::new(),
        }
    }

    /// Runs one cycle over the given snapshot.
    pub async fn cycle(&mut self, pods: &[Arc<Pod>], nodes: &[Arc<Node>], now: Instant) -> Outcome {
        let by_arc: HashMap<String, &Arc<Pod>> = pods.iter().map(|p| (uid(p), p)).collect();
        let by_uid: HashMap<String, &Pod> = pods.iter().map(|p| (uid(p), p.as_ref())).collect();
        // Drop assumptions the watch has confirmed, or that went stale.
        self.assumed.retain(|u, a| {
            by_uid
                .get(u)
                .is_some_and(|p| node_name(p).is_empty() && !is_terminated(p))
                && now.saturating_duration_since(a.at) < ASSUME_TTL
        });
        let mut bound: HashMap<String, Vec<&Pod>> = HashMap::new();
        for p in pods.iter().map(Arc::as_ref) {
            if is_terminated(p) {
                continue;
            }
            let n = node_name(p);
            if !n.is_empty() {
                bound.entry(n.to_string()).or_default().push(p);
            } else if let Some(a) = self.assumed.get(&uid(p)) {
                bound.entry(a.node.clone()).or_default().push(p);
            }
        }
        let mut pending: Vec<&Pod> = pods
            .iter()
            .map(Arc::as_ref)
            .filter(|p| is_pending(p, &self.name) && !self.assumed.contains_key(&uid(p)))
            .collect();
        pending.sort_by(|a, b| priority_order(a, b));
        let pending_uids: HashSet<String> = pending.iter().map(|p| uid(p)).collect();
        self.unschedulable.retain(|u| pending_uids.contains(u));
        self.events.retain(|u, _| pending_uids.contains(u));

        let node_refs: Vec<&Node> = nodes.iter().map(Arc::as_ref).collect();
        let cluster_fp = cluster_fingerprint(&node_refs, &bound);
        let mut fingerprints: HashMap<String, u64> = HashMap::new();
        let mut binds: Vec<(Arc<Pod>, String)> = Vec::new();
        let mut failures: Vec<(Arc<Pod>, String)> = Vec::new();
        for pod in pending {
            let u = uid(pod);
            let fp = pod_fingerprint(cluster_fp, pod);
            fingerprints.insert(u.clone(), fp);
            if !self.unschedulable.due(&u, fp, now, self.resync) {
                continue;
            }
            match schedule(pod, &node_refs, &bound) {
                Ok(node) => {
                    let node = node.metadata.name.clone().unwrap_or_default();
                    self.assumed.insert(
                        u.clone(),
                        Assumed {
                            node: node.clone(),
                            at: now,
                        },
                    );
                    bound.entry(node.clone()).or_default().push(pod);
                    binds.push((by_arc[&u].clone(), node));
                }
                Err(e) => {
                    self.unschedulable.failed(&u, fp, now);
                    failures.push((by_arc[&u].clone(), e.to_string()));
                }
            }
        }

        let mut outcome = Outcome::default();
        let writer = &self.writer;
        let results: Vec<_> = futures::stream::iter(binds)
            .map(|(pod, node)| async move {
                let r = writer.bind(&pod, &node).await;
                (pod, node, r)
            })
            .buffer_unordered(PARALLEL_WRITES)
            .collect()
            .await;
        for (pod, node, result) in results {
            let u = uid(&pod);
            match result {
                Ok(()) => {
                    tracing::info!(pod = %key(&pod), %node, "bound pod");
                    self.unschedulable.forget(&u);
                    self.events.remove(&u);
                    outcome.bound.push((key(&pod), node));
                }
                Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => {
                    // Already bound elsewhere or gone: the watch will tell.
                    tracing::debug!(pod = %key(&pod), error = %e.message, "binding refused");
                    self.assumed.remove(&u);
                }
                Err(e) => {
                    tracing::warn!(pod = %key(&pod), %node, error = %e, "binding failed; will retry");
                    self.assumed.remove(&u);
                    // A fingerprint no snapshot produces: retry after back-off.
                    self.unschedulable.failed(&u, 0, now);
                }
            }
        }

        let wall = Timestamp::now();
        let plans: Vec<_> = failures
            .iter()
            .map(|(pod, msg)| {
                let u = uid(pod);
                let event = match self.events.get(&u) {
                    Some(r) if &r.message == msg => EventPlan::Repeat(r.clone()),
                    _ => EventPlan::New(Box::new(report::failed_scheduling_event(
                        pod, msg, &self.name, wall,
                    ))),
                };
                (
                    pod.clone(),
                    msg.clone(),
                    report::unschedulable_patch(pod, msg, wall),
                    event,
                )
            })
            .collect();
        let name = &self.name;
        let records: Vec<_> = futures::stream::iter(plans)
            .map(|(pod, msg, patch, event)| async move {
                tracing::info!(pod = %key(&pod), message = %msg, "pod is unschedulable");
                if let Some(patch) = patch {
                    if let Err(e) = writer.patch_pod_status(&pod, &patch).await {
                        tracing::warn!(pod = %key(&pod), error = %e, "cannot set PodScheduled=False");
                    }
                }
                let record = record_event(writer, &pod, &msg, name, event, wall).await;
                (uid(&pod), key(&pod), msg, record)
            })
            .buffer_unordered(PARALLEL_WRITES)
            .collect()
            .await;
        for (u, k, msg, record) in records {
            if let Some(r) = record {
                self.events.insert(u, r);
            }
            outcome.unschedulable.push((k, msg));
        }

        let assumed_expiry = self.assumed.values().map(|a| a.at + ASSUME_TTL).min();
        let parked = self
            .unschedulable
            .next_due(self.resync, |u| fingerprints.get(u).copied());
        outcome.next_due = [assumed_expiry, parked].into_iter().flatten().min();
        outcome
    }
}

enum EventPlan {
    New(Box<Event>),
    Repeat(EventRecord),
}

async fn record_event<W: Writer>(
    writer: &W,
    pod: &Pod,
    msg: &str,
    component: &str,
    plan: EventPlan,
    now: Timestamp,
) -> Option<EventRecord> {
    let event = match plan {
        EventPlan::Repeat(mut r) => {
            r.count += 1;
            match writer
                .patch_event(
                    &r.namespace,
                    &r.name,
                    &report::event_repeat_patch(r.count, now),
                )
                .await
            {
                Ok(()) => return Some(r),
                Err(e) => {
                    tracing::debug!(error = %e, "cannot update event; creating a new one");
                    report::failed_scheduling_event(pod, msg, component, now)
                }
            }
        }
        EventPlan::New(e) => *e,
    };
    match writer.create_event(&event).await {
        Ok(()) => Some(EventRecord {
            namespace: event.metadata.namespace.clone().unwrap_or_default(),
            name: event.metadata.name.clone().unwrap_or_default(),
            message: msg.to_string(),
            count: 1,
        }),
        Err(e) => {
            tracing::warn!(pod = %key(pod), error = %e, "cannot record FailedScheduling event");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Fake {
        calls: Mutex<Vec<String>>,
        fail_bind: Mutex<Option<u16>>,
    }

    impl Fake {
        fn take(&self) -> Vec<String> {
            let mut v = std::mem::take(&mut *self.calls.lock().unwrap());
            v.sort();
            v
        }
    }

    fn api_err(code: u16) -> kube::Error {
        kube::Error::Api(
            kube::core::Status::failure("boom", "Conflict")
                .with_code(code)
                .boxed(),
        )
    }

    impl Writer for &Fake {
        async fn bind(&self, pod: &Pod, node: &str) -> Result<(), kube::Error> {
            self.calls
                .lock()
                .unwrap()
                .push(format!("bind {} {node}", key(pod)));
            match *self.fail_bind.lock().unwrap() {
                Some(code) => Err(api_err(code)),
                None => Ok(()),
            }
        }
        async fn patch_pod_status(&self, pod: &Pod, patch: &Value) -> Result<(), kube::Error> {
            let c = &patch["status"]["conditions"][0];
            self.calls
                .lock()
                .unwrap()
                .push(format!("status {} {}", key(pod), c["reason"]));
            Ok(())
        }
        async fn create_event(&self, event: &Event) -> Result<(), kube::Error> {
            let m = event.message.clone().unwrap_or_default();
            self.calls.lock().unwrap().push(format!("event {m}"));
            Ok(())
        }
        async fn patch_event(
            &self,
            _ns: &str,
            _name: &str,
            patch: &Value,
        ) -> Result<(), kube::Error> {
            self.calls
                .lock()
                .unwrap()
                .push(format!("event-count {}", patch["count"]));
            Ok(())
        }
    }

    fn node(labels: Value) -> Arc<Node> {
        Arc::new(
            serde_json::from_value(
                json!({"metadata": {"name": "n1", "labels": labels}, "status": {
                "allocatable": {"cpu": "1", "memory": "1Gi", "pods": "110"},
                "conditions": [{"type": "Ready", "status": "True"}]}}),
            )
            .unwrap(),
        )
    }

    fn pod(name: &str, spec: Value) -> Arc<Pod> {
        let mut p = json!({"metadata": {"name": name, "namespace": "default", "uid": name},
            "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "600m"}}}]}});
        for (k, v) in spec.as_object().unwrap() {
            p["spec"][k] = v.clone();
        }
        Arc::new(serde_json::from_value(p).unwrap())
    }

    const RESYNC: Duration = Duration::from_secs(30);

    #[tokio::test]
    async fn binds_and_assumes_within_a_cycle() {
        let fake = Fake::default();
        let mut s = Scheduler::new(&fake, "default-scheduler", RESYNC);
        let t0 = Instant::now();
        let pods = vec![pod("a", json!({})), pod("b", json!({}))];
        let out = s.cycle(&pods, &[node(json!({}))], t0).await;
        // Only one 600m pod fits on a 1-CPU node: the second sees the first assumed.
        assert_eq!(out.bound, [("default/a".to_string(), "n1".to_string())]);
        assert_eq!(out.unschedulable.len(), 1);
        assert!(out.unschedulable[0]
            .1
            .starts_with("0/1 nodes are available: 1 Insufficient cpu."));
        assert_eq!(
            fake.take(),
            [
                "bind default/a n1".to_string(),
                format!("event {}", out.unschedulable[0].1),
                "status default/b \"Unschedulable\"".to_string(),
            ]
        );
        // The watch has not caught up yet: a is still assumed, nothing is rebound.
        let out = s
            .cycle(&pods, &[node(json!({}))], t0 + Duration::from_millis(10))
            .await;
        assert!(out.bound.is_empty() && out.unschedulable.is_empty());
        assert!(fake.take().is_empty());
    }

    #[tokio::test]
    async fn no_hot_loop_and_retry_on_change() {
        let fake = Fake::default();
        let mut s = Scheduler::new(&fake, "default-scheduler", RESYNC);
        let t0 = Instant::now();
        let pods = vec![pod("p", json!({"nodeSelector": {"disk": "ssd"}}))];
        let out = s.cycle(&pods, &[node(json!({}))], t0).await;
        assert_eq!(out.unschedulable.len(), 1);
        assert_eq!(out.next_due, Some(t0 + RESYNC));
        assert_eq!(fake.take().len(), 2);
        // Same cluster (e.g. our own status write came back): nothing happens.
        let out = s
            .cycle(&pods, &[node(json!({}))], t0 + Duration::from_secs(5))
            .await;
        assert!(out.unschedulable.is_empty());
        assert!(fake.take().is_empty());
        // The node is labelled, but the back-off (1 s) has passed: bound.
        let out = s
            .cycle(
                &pods,
                &[node(json!({"disk": "ssd"}))],
                t0 + Duration::from_secs(6),
            )
            .await;
        assert_eq!(out.bound.len(), 1);
    }

    #[tokio::test]
    async fn backoff_delays_retry_after_change() {
        let fake = Fake::default();
        let mut s = Scheduler::new(&fake, "default-scheduler", RESYNC);
        let t0 = Instant::now();
        let pods = vec![pod("p", json!({"nodeSelector": {"disk": "ssd"}}))];
        s.cycle(&pods, &[node(json!({}))], t0).await;
        fake.take();
        let out = s
            .cycle(
                &pods,
                &[node(json!({"other": "x"}))],
                t0 + Duration::from_millis(100),
            )
            .await;
        assert!(out.unschedulable.is_empty());
        assert_eq!(out.next_due, Some(t0 + Duration::from_secs(1)));
        // Retried after back-off with the same message: the existing event's
        // count goes up instead of a new event being created.
        let out = s
            .cycle(
                &pods,
                &[node(json!({"other": "x"}))],
                t0 + Duration::from_secs(1),
            )
            .await;
        assert_eq!(out.unschedulable.len(), 1);
        assert!(fake.take().contains(&"event-count 2".to_string()));
    }

    #[tokio::test]
    async fn resync_retries_without_change() {
        let fake = Fake::default();
        let mut s = Scheduler::new(&fake, "default-scheduler", RESYNC);
        let t0 = Instant::now();
        let pods = vec![pod("p", json!({"nodeSelector": {"disk": "ssd"}}))];
        s.cycle(&pods, &[node(json!({}))], t0).await;
        let out = s.cycle(&pods, &[node(json!({}))], t0 + RESYNC).await;
        assert_eq!(out.unschedulable.len(), 1);
    }

    #[tokio::test]
    async fn skips_foreign_bound_and_deleting_pods() {
        let fake = Fake::default();
        let mut s = Scheduler::new(&fake, "default-scheduler", RESYNC);
        let mut deleting = (*pod("d", json!({}))).clone();
        deleting.metadata.deletion_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Timestamp::UNIX_EPOCH),
        );
        let pods = vec![
            pod("other", json!({"schedulerName": "custom"})),
            pod("bound", json!({"nodeName": "n1"})),
            Arc::new(deleting),
            pod("mine", json!({})),
        ];
        let out = s.cycle(&pods, &[node(json!({}))], Instant::now()).await;
        // "bound" uses 600m already, so "mine" does not fit.
        assert!(out.bound.is_empty());
        assert_eq!(out.unschedulable.len(), 1);
        assert_eq!(out.unschedulable[0].0, "default/mine");
    }

    #[tokio::test]
    async fn failed_bind_is_retried_after_backoff() {
        let fake = Fake::default();
        *fake.fail_bind.lock().unwrap() = Some(500);
        let mut s = Scheduler::new(&fake, "default-scheduler", RESYNC);
        let t0 = Instant::now();
        let pods = vec![pod("p", json!({}))];
        let out = s.cycle(&pods, &[node(json!({}))], t0).await;
        assert!(out.bound.is_empty());
        assert_eq!(out.next_due, Some(t0 + Duration::from_secs(1)));
        *fake.fail_bind.lock().unwrap() = None;
        let out = s
            .cycle(&pods, &[node(json!({}))], t0 + Duration::from_secs(1))
            .await;
        assert_eq!(out.bound.len(), 1);
    }

    #[tokio::test]
    async fn higher_priority_goes_first() {
        let fake = Fake::default();
        let mut s = Scheduler::new(&fake, "default-scheduler", RESYNC);
        let pods = vec![
            pod("low", json!({})),
            pod("high", json!({"priority": 1000})),
        ];
        let out = s.cycle(&pods, &[node(json!({}))], Instant::now()).await;
        assert_eq!(out.bound[0].0, "default/high");
    }
}
