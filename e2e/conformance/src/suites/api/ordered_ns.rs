//! OrderedNamespaceDeletion: deleting a namespace deletes its pods before
//! its other objects.

use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, ServiceAccount};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

use super::poll;
use crate::conformance;
use crate::ctx::{from_json, phase, wait_for, Ctx};
use crate::Test;

pub(super) fn tests() -> Vec<Test> {
    vec![conformance!("Ordered Namespace Deletion", pods_first)]
}

/// How long a namespace's deletion may take here (upstream allows 10 min).
const DELETION: Duration = Duration::from_secs(120);

/// Poll interval of the namespace checks (upstream's).
const EVERY: Duration = Duration::from_secs(2);

const FINALIZER: &str = "e2e.example.com/finalizer";

async fn pods_first(c: Ctx) -> Result<()> {
    let nss: Api<Namespace> = c.all();
    let ns_name = c.name("nsdeletetest");
    let ns: Namespace =
        from_json(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns_name}}))?;
    nss.create(&PostParams::default(), &ns)
        .await
        .with_context(|| format!("failed to create namespace {ns_name}"))?;
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), &ns_name);
    let res = ordered(&c, &nss, &ns_name, &pods).await;
    if res.is_err() {
        // Leave nothing behind: drop the pod's finalizer, delete the namespace.
        let p = json!({"metadata": {"finalizers": null}});
        let _ = pods
            .patch("test-pod", &PatchParams::default(), &Patch::Merge(&p))
            .await;
        let _ = nss.delete(&ns_name, &DeleteParams::default()).await;
    }
    res
}

async fn ordered(c: &Ctx, nss: &Api<Namespace>, ns_name: &str, pods: &Api<Pod>) -> Result<()> {
    let sas: Api<ServiceAccount> = Api::namespaced(c.client.clone(), ns_name);
    wait_for(
        "the default service account",
        Duration::from_secs(60),
        || {
            let sas = sas.clone();
            async move { Ok(sas.get_opt("default").await?.map(|_| ())) }
        },
    )
    .await?;

    let pod: Pod = from_json(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "test-pod", "finalizers": [FINALIZER]},
        "spec": {"containers": [{"name": "nginx", "image": c.env.images.pause}]},
    }))?;
    pods.create(&PostParams::default(), &pod)
        .await
        .context("failed to create pod test-pod")?;
    wait_for("pod test-pod running", c.env.pod_start, || {
        let pods = pods.clone();
        async move {
            let p = pods.get("test-pod").await?;
            match phase(&p) {
                "Running" => Ok(Some(())),
                "Failed" | "Succeeded" => bail!("pod test-pod ended: {:?}", p.status),
                _ => Ok(None),
            }
        }
    })
    .await?;

    let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), ns_name);
    let cm: ConfigMap = from_json(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "test-configmap"},
        "data": {"key": "value"},
    }))?;
    cms.create(&PostParams::default(), &cm)
        .await
        .context("failed to create configmap test-configmap")?;

    nss.delete(ns_name, &DeleteParams::default())
        .await
        .with_context(|| format!("failed to delete namespace {ns_name}"))?;

    // The namespace controller has processed the namespace once it reports
    // the NamespaceDeletionContentFailure condition.
    poll(
        "the namespace controller to process the namespace",
        EVERY,
        DELETION,
        || {
            let nss = nss.clone();
            async move {
                let Some(ns) = nss.get_opt(ns_name).await? else {
                    bail!("namespace {ns_name} was deleted unexpectedly");
                };
                let st = ns.status.unwrap_or_default();
                if st.phase.as_deref() != Some("Terminating") {
                    return Ok(None);
                }
                let processed = st
                    .conditions
                    .unwrap_or_default()
                    .iter()
                    .any(|c| c.type_ == "NamespaceDeletionContentFailure");
                Ok(processed.then_some(()))
            }
        },
    )
    .await?;

    // The pod is being deleted while the configmap still exists.
    poll(
        "the pod to be deleted before the configmap",
        EVERY,
        DELETION,
        || {
            let (cms, pods) = (cms.clone(), pods.clone());
            async move {
                if cms.get_opt("test-configmap").await?.is_none() {
                    bail!("configmap test-configmap should still exist in namespace {ns_name}");
                }
                let Some(p) = pods.get_opt("test-pod").await? else {
                    bail!("pod test-pod is gone from namespace {ns_name}");
                };
                Ok(p.metadata.deletion_timestamp.is_some().then_some(()))
            }
        },
    )
    .await?;

    // Remove the finalizer (retrying on conflict).
    let mut done = false;
    for _ in 0..5 {
        let mut p = pods.get("test-pod").await?;
        p.metadata.finalizers = Some(vec![]);
        match pods.replace("test-pod", &PostParams::default(), &p).await {
            Ok(_) => {
                done = true;
                break;
            }
            Err(kube::Error::Api(e)) if e.code == 409 => continue,
            Err(e) => return Err(e).context("failed to remove the pod's finalizer"),
        }
    }
    if !done {
        bail!("removing the pod's finalizer kept conflicting");
    }

    wait_for("pod test-pod gone", c.env.pod_start, || {
        let pods = pods.clone();
        async move { Ok(pods.get_opt("test-pod").await?.is_none().then_some(())) }
    })
    .await?;
    wait_for("the namespace to be removed", DELETION, || {
        let nss = nss.clone();
        async move { Ok(nss.get_opt(ns_name).await?.is_none().then_some(())) }
    })
    .await
}
