//! RuntimeClass: pods requesting an existing RuntimeClass are scheduled and
//! get its overhead.

use anyhow::{ensure, Context as _, Result};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::node::v1::RuntimeClass;
use kube::api::{DeleteParams, PostParams};
use serde_json::{json, Value};

use super::{condition, wait_pod_until};
use crate::conformance;
use crate::ctx::{from_json, Ctx};
use crate::Test;

pub(super) fn tests() -> Vec<Test> {
    vec![
        conformance!(
            "Can schedule a pod requesting existing RuntimeClass.",
            without_overhead
        ),
        conformance!(
            "RuntimeClass Overhead field must be respected.",
            with_overhead
        ),
    ]
}

/// Creates a RuntimeClass (cluster-scoped, unique name) for a handler
/// named after the namespace; returns its name.
async fn create_runtime_class(c: &Ctx, overhead: Option<Value>) -> Result<String> {
    let name = c.name(&format!("{}-preconfigured-handler", c.ns));
    let mut rc = json!({
        "apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass",
        "metadata": {"name": name},
        "handler": format!("{}-handler", c.ns),
    });
    if let Some(o) = overhead {
        rc["overhead"] = json!({"podFixed": o});
    }
    let rc: RuntimeClass = from_json(rc)?;
    c.all::<RuntimeClass>()
        .create(&PostParams::default(), &rc)
        .await
        .context("create RuntimeClass")?;
    Ok(name)
}

/// Upstream's NewRuntimeClassPod, created; waits until it is scheduled.
async fn schedule_pod(c: &Ctx, rc: &str) -> Result<Pod> {
    let p = c
        .create_pod(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"generateName": "test-runtimeclass-"},
            "spec": {
                "runtimeClassName": rc,
                "restartPolicy": "Never",
                "automountServiceAccountToken": false,
                "containers": [{"name": "test", "image": c.env.images.busybox, "command": ["true"]}],
            },
        }))
        .await?;
    let name = p.metadata.name.unwrap_or_default();
    let pods = c.pods().list(&Default::default()).await?;
    ensure!(
        pods.items.len() == 1,
        "{} pods in the namespace, want 1",
        pods.items.len()
    );
    wait_pod_until(c, &name, "scheduled", c.env.pod_start, |p| {
        Ok(condition(p, "PodScheduled").is_some_and(|(s, _)| s == "True"))
    })
    .await
}

async fn delete_rc(c: &Ctx, name: &str) {
    let _ = c
        .all::<RuntimeClass>()
        .delete(name, &DeleteParams::default())
        .await;
}

async fn without_overhead(c: Ctx) -> Result<()> {
    let rc = create_runtime_class(&c, None).await?;
    let r = async {
        let p = schedule_pod(&c, &rc).await?;
        let o = p.spec.and_then(|s| s.overhead).unwrap_or_default();
        ensure!(
            o.is_empty(),
            "pod has overhead {o:?} although its RuntimeClass has none"
        );
        Ok(())
    }
    .await;
    delete_rc(&c, &rc).await;
    r
}

async fn with_overhead(c: Ctx) -> Result<()> {
    let rc = create_runtime_class(&c, Some(json!({"cpu": "10m", "memory": "1Mi"}))).await?;
    let r = async {
        let p = schedule_pod(&c, &rc).await?;
        let o = p.spec.and_then(|s| s.overhead).unwrap_or_default();
        let cpu = o.get("cpu").map(|q| q.0.as_str());
        let mem = o.get("memory").map(|q| q.0.as_str());
        ensure!(cpu == Some("10m"), "pod overhead cpu is {cpu:?}, want 10m");
        ensure!(
            mem == Some("1Mi"),
            "pod overhead memory is {mem:?}, want 1Mi"
        );
        Ok(())
    }
    .await;
    delete_rc(&c, &rc).await;
    r
}
