//! Pods Extended, Pods Set QOS Class: the API server records a pod's QoS
//! class in its status when the pod is created.

use anyhow::{ensure, Result};
use serde_json::json;

use crate::conformance;
use crate::ctx::{pod, Ctx};
use crate::Test;

pub(super) fn tests() -> Vec<Test> {
    vec![conformance!("Pods, QOS", qos_guaranteed)]
}

/// Requests equal to limits for cpu and memory: Guaranteed, as soon as the
/// pod is created (before it runs).
async fn qos_guaranteed(c: Ctx) -> Result<()> {
    let name = c.name("pod-qos-class");
    let res = json!({"cpu": "100m", "memory": "100Mi"});
    let p = c
        .create_pod(pod(
            &name,
            json!({"containers": [{
                "name": "agnhost",
                "image": c.env.images.agnhost,
                "args": ["pause"],
                "resources": {"limits": res, "requests": res},
            }]}),
        ))
        .await?;
    let got = c.pods().get(&name).await?;
    for (what, pod) in [("create response", &p), ("read back", &got)] {
        let class = pod.status.as_ref().and_then(|s| s.qos_class.as_deref());
        ensure!(
            class == Some("Guaranteed"),
            "{what}: qosClass {class:?}, want Guaranteed"
        );
    }
    Ok(())
}
