//! Pod events as the kubelet records them (Pulled, Created, Started,
//! Killing, BackOff, Failed, Unhealthy), deduplicated by bumping `count`.

use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Patch, PatchParams, PostParams};
use kube::Api;
use serde_json::json;

use super::Agent;

/// Records an event about `pod` (and optionally one of its containers).
pub(crate) async fn emit(
    agent: &Agent,
    pod: &Pod,
    container: Option<&str>,
    warning: bool,
    reason: &str,
    message: &str,
) {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let pod_name = pod.metadata.name.clone().unwrap_or_default();
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let suffix = container.map(|c| format!("-{c}")).unwrap_or_default();
    let name = format!(
        "{pod_name}.{}{}",
        reason.to_lowercase(),
        suffix.to_lowercase()
    );
    let api: Api<Event> = Api::namespaced(agent.cfg.client.clone(), &ns);
    let mut involved =
        json!({"kind": "Pod", "namespace": ns, "name": pod_name, "uid": uid, "apiVersion": "v1"});
    if let Some(c) = container {
        involved["fieldPath"] = json!(format!("spec.containers{{{c}}}"));
    }
    let ev = json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": name, "namespace": ns},
        "involvedObject": involved,
        "reason": reason, "message": message,
        "type": if warning { "Warning" } else { "Normal" },
        "source": {"component": "kubelet", "host": agent.cfg.node_name},
        "reportingComponent": "kubelet", "reportingInstance": agent.cfg.node_name,
        "firstTimestamp": now, "lastTimestamp": now, "count": 1,
    });
    let Ok(obj) = serde_json::from_value::<Event>(ev) else {
        return;
    };
    match api.create(&PostParams::default(), &obj).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {
            if let Ok(Some(cur)) = api.get_opt(&name).await {
                let count = cur.count.unwrap_or(1) + 1;
                let _ = api
                    .patch(
                        &name,
                        &PatchParams::default(),
                        &Patch::Merge(
                            json!({"count": count, "lastTimestamp": now, "message": message}),
                        ),
                    )
                    .await;
            }
        }
        Err(e) => tracing::debug!("event {name}: {e}"),
    }
}
