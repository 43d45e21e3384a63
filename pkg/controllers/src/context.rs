//! What every controller gets: the client, the manager's settings, events
//! (core/v1, as client-go's recorder writes them, so `kubectl describe` and
//! `kubectl get events` show them), and per-key exponential requeue
//! back-off.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, PostParams};
use kube::runtime::controller::Action;

use crate::Error;

/// Controller manager settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// PEM of the cluster CA, published as `kube-root-ca.crt` in every namespace.
    pub root_ca_pem: String,
    /// Directory under which the hostPath provisioner creates volumes.
    pub volume_dir: PathBuf,
    /// How long a node may miss heartbeats before it is marked Unknown.
    pub node_monitor_grace: Duration,
    /// Terminated pods kept before pod GC deletes the oldest.
    pub terminated_pod_gc_threshold: usize,
    /// Periodic resync of every controller (upstream's min-resync-period).
    pub resync: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            root_ca_pem: String::new(),
            volume_dir: PathBuf::from("/tmp/rkube-volumes"),
            node_monitor_grace: Duration::from_secs(40),
            terminated_pod_gc_threshold: 12500,
            resync: Duration::from_secs(300),
        }
    }
}

/// Shared by the reconcilers of one controller.
pub struct Context {
    /// Client authenticated as the controller manager.
    pub client: kube::Client,
    /// Settings.
    pub config: Arc<Config>,
    /// Controller name, e.g. `deployment-controller` (the events' reporter).
    pub name: &'static str,
    backoff: Mutex<HashMap<String, u32>>,
}

impl Context {
    /// A context for the controller `name`.
    pub fn new(client: kube::Client, config: Arc<Config>, name: &'static str) -> Arc<Self> {
        Arc::new(Self {
            client,
            config,
            name,
            backoff: Mutex::new(HashMap::new()),
        })
    }

    /// Records an event about `obj` (failures are logged, never returned).
    /// `type_` is `Normal` or `Warning`.
    pub async fn event(&self, obj: &ObjectReference, type_: &str, reason: &str, note: String) {
        let ev = new_event(obj, self.name, type_, reason, note);
        let ns = ev.metadata.namespace.clone().unwrap_or_default();
        let api: Api<Event> = Api::namespaced(self.client.clone(), &ns);
        if let Err(e) = api.create(&PostParams::default(), &ev).await {
            tracing::debug!(controller = self.name, "event {reason}: {e}");
        }
    }

    /// A Normal event.
    pub async fn normal(&self, obj: &ObjectReference, reason: &str, note: String) {
        self.event(obj, "Normal", reason, note).await
    }

    /// A Warning event.
    pub async fn warning(&self, obj: &ObjectReference, reason: &str, note: String) {
        self.event(obj, "Warning", reason, note).await
    }

    /// Forgets the failure count of `key` after a successful reconcile.
    pub fn succeeded(&self, key: &str) {
        self.backoff
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }

    /// The next requeue delay of `key` after a failure: 5 ms doubling up to
    /// 1000 s, as client-go's default controller rate limiter.
    pub fn failed(&self, key: &str) -> Duration {
        let mut map = self.backoff.lock().unwrap_or_else(|e| e.into_inner());
        let n = map.entry(key.to_string()).or_insert(0);
        *n = n.saturating_add(1);
        backoff_delay(*n)
    }

    /// Error policy: logs and requeues with per-key exponential back-off.
    pub fn error_action(&self, key: &str, err: &Error) -> Action {
        let delay = self.failed(key);
        if err.is_conflict() {
            tracing::debug!(controller = self.name, %key, "conflict, retrying: {err}");
        } else {
            tracing::warn!(controller = self.name, %key, ?delay, "reconcile failed: {err}");
        }
        Action::requeue(delay)
    }
}

/// A core/v1 Event about `obj` from `component`, named as client-go names
/// them (`<object>.<unique hex>`), in the object's namespace (`default` for
/// cluster-scoped objects).
pub fn new_event(
    obj: &ObjectReference,
    component: &str,
    type_: &str,
    reason: &str,
    message: String,
) -> Event {
    let now = k8s_openapi::jiff::Timestamp::now();
    let ns = obj
        .namespace
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "default".to_string());
    let unique = format!(
        "{:x}{:04x}",
        now.as_nanosecond() as u64,
        rand::random::<u16>()
    );
    Event {
        metadata: ObjectMeta {
            name: Some(format!(
                "{}.{unique}",
                obj.name.as_deref().unwrap_or("object")
            )),
            namespace: Some(ns),
            ..Default::default()
        },
        involved_object: obj.clone(),
        reason: Some(reason.to_string()),
        message: Some(message),
        type_: Some(type_.to_string()),
        source: Some(EventSource {
            component: Some(component.to_string()),
            host: None,
        }),
        reporting_component: Some(component.to_string()),
        reporting_instance: Some(component.to_string()),
        first_timestamp: Some(Time(now)),
        last_timestamp: Some(Time(now)),
        count: Some(1),
        ..Default::default()
    }
}

/// 5 ms · 2^(n-1), capped at 1000 s.
pub fn backoff_delay(failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(20);
    Duration::from_millis(5u64 << exp).min(Duration::from_secs(1000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_named_per_object_and_unique() {
        let obj = ObjectReference {
            kind: Some("ReplicaSet".into()),
            name: Some("web-abc".into()),
            namespace: Some("apps".into()),
            ..Default::default()
        };
        let a = new_event(
            &obj,
            "replicaset-controller",
            "Normal",
            "SuccessfulCreate",
            "Created pod: web-abc-1".into(),
        );
        let b = new_event(
            &obj,
            "replicaset-controller",
            "Normal",
            "SuccessfulCreate",
            "Created pod: web-abc-2".into(),
        );
        assert_ne!(a.metadata.name, b.metadata.name);
        assert!(a.metadata.name.as_deref().unwrap().starts_with("web-abc."));
        assert_eq!(a.metadata.namespace.as_deref(), Some("apps"));
        assert_eq!(
            a.source.unwrap().component.as_deref(),
            Some("replicaset-controller")
        );
        let node = ObjectReference {
            kind: Some("Node".into()),
            name: Some("n".into()),
            ..Default::default()
        };
        let e = new_event(&node, "c", "Warning", "R", "m".into());
        assert_eq!(e.metadata.namespace.as_deref(), Some("default"));
    }

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff_delay(1), Duration::from_millis(5));
        assert_eq!(backoff_delay(2), Duration::from_millis(10));
        assert_eq!(backoff_delay(5), Duration::from_millis(80));
        assert_eq!(backoff_delay(40), Duration::from_secs(1000));
    }
}
