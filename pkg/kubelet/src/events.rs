//! Pod events as the kubelet records them (Pulling, Pulled, Created,
//! Started, Killing, BackOff, Failed, Unhealthy, ...), with source
//! component "kubelet" and host = node name. A repeat of the same event
//! bumps the count of the first one instead of creating another.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Patch, PatchParams, PostParams};
use kube::Api;
use serde_json::{json, Value};

/// Normal or Warning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// type Normal.
    Normal,
    /// type Warning.
    Warning,
}

/// The `fieldPath` of a container of the pod (`spec.containers{name}`,
/// `spec.initContainers{name}` or `spec.ephemeralContainers{name}`).
pub fn field_path(pod: &Pod, container: &str) -> String {
    let spec = pod.spec.clone().unwrap_or_default();
    let list = if spec
        .init_containers
        .iter()
        .flatten()
        .any(|c| c.name == container)
    {
        "initContainers"
    } else if spec
        .ephemeral_containers
        .iter()
        .flatten()
        .any(|c| c.name == container)
    {
        "ephemeralContainers"
    } else {
        "containers"
    };
    format!("spec.{list}{{{container}}}")
}

/// The Event object.
#[allow(clippy::too_many_arguments)]
pub fn event_object(
    pod: &Pod,
    container: Option<&str>,
    kind: Kind,
    reason: &str,
    message: &str,
    node: &str,
    name: &str,
    now: &str,
) -> Value {
    let mut involved = json!({
        "kind": "Pod", "apiVersion": "v1",
        "namespace": pod.metadata.namespace, "name": pod.metadata.name, "uid": pod.metadata.uid,
    });
    if let Some(c) = container {
        involved["fieldPath"] = json!(field_path(pod, c));
    }
    json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": name, "namespace": pod.metadata.namespace},
        "involvedObject": involved,
        "reason": reason, "message": message,
        "type": if kind == Kind::Warning { "Warning" } else { "Normal" },
        "source": {"component": "kubelet", "host": node},
        "reportingComponent": "kubelet", "reportingInstance": node,
        "firstTimestamp": now, "lastTimestamp": now, "count": 1,
    })
}

/// Records events, remembering recent ones to bump their count.
pub(crate) struct Recorder {
    client: kube::Client,
    node: String,
    seen: std::sync::Mutex<HashMap<String, (String, i32)>>,
}

impl Recorder {
    pub fn new(client: kube::Client, node: String) -> Self {
        Recorder {
            client,
            node,
            seen: Default::default(),
        }
    }

    /// Records an event about `pod` (and one of its containers).
    pub async fn emit(
        &self,
        pod: &Pod,
        container: Option<&str>,
        kind: Kind,
        reason: &str,
        message: &str,
    ) {
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let key = format!(
            "{}/{}/{reason}/{message}",
            pod.metadata.uid.as_deref().unwrap_or(""),
            container.unwrap_or("")
        );
        let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
        let api: Api<Event> = Api::namespaced(self.client.clone(), &ns);
        let repeat = {
            let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            if seen.len() > 4096 {
                seen.clear();
            }
            seen.get_mut(&key).map(|(name, count)| {
                *count += 1;
                (name.clone(), *count)
            })
        };
        if let Some((name, count)) = repeat {
            let patch = json!({"count": count, "lastTimestamp": now});
            if api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .is_ok()
            {
                return;
            }
        }
        let nanos = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0);
        let name = format!(
            "{}.{:x}",
            pod.metadata.name.as_deref().unwrap_or("pod"),
            nanos
        );
        let obj = event_object(
            pod, container, kind, reason, message, &self.node, &name, &now,
        );
        let Ok(ev) = serde_json::from_value::<Event>(obj) else {
            return;
        };
        match api.create(&PostParams::default(), &ev).await {
            Ok(_) => {
                self.seen
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(key, (name, 1));
            }
            Err(e) => tracing::debug!("event {reason} for {ns}/{name}: {e}"),
        }
    }

    /// Forgets the events of a pod that is gone.
    pub fn forget(&self, uid: &str) {
        let prefix = format!("{uid}/");
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|k, _| !k.starts_with(&prefix));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_fields() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "d", "uid": "u"},
            "spec": {"initContainers": [{"name": "i"}], "containers": [{"name": "c"}]}}))
        .unwrap();
        let e = event_object(
            &pod,
            Some("i"),
            Kind::Warning,
            "BackOff",
            "m",
            "node1",
            "p.1",
            "2024-01-01T00:00:00Z",
        );
        assert_eq!(e["involvedObject"]["fieldPath"], "spec.initContainers{i}");
        assert_eq!(e["source"]["component"], "kubelet");
        assert_eq!(e["source"]["host"], "node1");
        assert_eq!(e["type"], "Warning");
        assert_eq!(field_path(&pod, "c"), "spec.containers{c}");
        serde_json::from_value::<Event>(e).unwrap();
    }
}
