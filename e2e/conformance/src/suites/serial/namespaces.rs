//! Namespaces [Serial]: deleting a namespace removes its pods and services;
//! patching, updating, status and finalize subresources of a namespace.

use std::time::Duration;

use anyhow::{bail, ensure, Context as _, Result};
use k8s_openapi::api::core::v1::{Namespace, NamespaceCondition, Pod, Service, ServiceAccount};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

use super::{conflict, finish, not_found, uuid};
use crate::conformance;
use crate::ctx::{from_json, suffix, wait_for, Ctx};
use crate::Test;

pub(super) fn tests() -> Vec<Test> {
    vec![
        conformance!("namespace-deletion-removes-pods", pods_removed),
        conformance!("namespace-deletion-removes-services", services_removed),
        conformance!("Namespace patching", patch_namespace),
        conformance!(
            "Namespace, apply changes to a namespace status",
            namespace_status
        ),
        conformance!("Namespace, apply update to a namespace", update_namespace),
        conformance!(
            "Namespace, apply finalizer to a namespace",
            finalizer_namespace
        ),
    ]
}

fn namespaces(c: &Ctx) -> Api<Namespace> {
    c.all()
}

/// Creates namespace `name` (labelled as the runner labels its own).
async fn create_namespace(c: &Ctx, name: &str) -> Result<Namespace> {
    let ns: Namespace = from_json(json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": name, "labels": {"e2e-framework": "rkube-conformance"}},
    }))?;
    namespaces(c)
        .create(&PostParams::default(), &ns)
        .await
        .with_context(|| format!("create namespace {name}"))
}

/// Waits for the default ServiceAccount of namespace `ns`.
async fn wait_default_sa(c: &Ctx, ns: &str) -> Result<()> {
    let sas: Api<ServiceAccount> = Api::namespaced(c.client.clone(), ns);
    wait_for(
        &format!("the default ServiceAccount of namespace {ns}"),
        Duration::from_secs(60),
        || {
            let sas = sas.clone();
            async move { Ok(sas.get_opt("default").await?.map(|_| ())) }
        },
    )
    .await
}

/// Deletes namespace `name`; a missing namespace is fine.
async fn delete_namespace(c: &Ctx, name: &str) -> Result<()> {
    match namespaces(c).delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(e) if not_found(&e) => Ok(()),
        Err(e) => Err(e).with_context(|| format!("delete namespace {name}")),
    }
}

/// Waits until namespace `name` is gone (404).
async fn wait_namespace_gone(c: &Ctx, name: &str, timeout: Duration) -> Result<()> {
    let api = namespaces(c);
    wait_for(&format!("namespace {name} to be removed"), timeout, || {
        let api = api.clone();
        async move {
            match api.get_opt(name).await? {
                None => Ok(Some(())),
                Some(ns) => {
                    let phase = ns.status.and_then(|s| s.phase).unwrap_or_default();
                    bail!("namespace {name} still exists (phase {phase:?})")
                }
            }
        }
    })
    .await
}

/// Upstream's ensurePodsAreRemovedWhenNamespaceIsDeleted.
async fn pods_removed(c: Ctx) -> Result<()> {
    let ns = format!("nsdeletetest-{}", suffix());
    let res = pods_removed_in(&c, &ns).await;
    finish(res, delete_namespace(&c, &ns).await)
}

async fn pods_removed_in(c: &Ctx, ns: &str) -> Result<()> {
    create_namespace(c, ns).await?;
    wait_default_sa(c, ns).await?;
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), ns);
    let p: Pod = from_json(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "test-pod"},
        "spec": {"containers": [{"name": "nginx", "image": c.env.images.pause}]},
    }))?;
    let p = pods
        .create(&PostParams::default(), &p)
        .await
        .context("create pod test-pod")?;
    super::wait_running_in(c, ns, "test-pod").await?;
    namespaces(c)
        .delete(ns, &DeleteParams::default())
        .await
        .with_context(|| format!("delete namespace {ns}"))?;
    // 60 s plus the pod's grace period, as upstream.
    let grace = p
        .spec
        .as_ref()
        .and_then(|s| s.termination_grace_period_seconds)
        .unwrap_or(30)
        .max(0) as u64;
    wait_namespace_gone(c, ns, Duration::from_secs(60 + grace)).await?;
    create_namespace(c, ns).await?;
    match pods.get("test-pod").await {
        Err(e) if not_found(&e) => Ok(()),
        Err(e) => Err(e).context("get test-pod in the recreated namespace"),
        Ok(_) => bail!("pod test-pod exists in the recreated namespace {ns}"),
    }
}

/// Upstream's ensureServicesAreRemovedWhenNamespaceIsDeleted.
async fn services_removed(c: Ctx) -> Result<()> {
    let ns = format!("nsdeletetest-{}", suffix());
    let res = services_removed_in(&c, &ns).await;
    finish(res, delete_namespace(&c, &ns).await)
}

async fn services_removed_in(c: &Ctx, ns: &str) -> Result<()> {
    create_namespace(c, ns).await?;
    wait_default_sa(c, ns).await?;
    let svcs: Api<Service> = Api::namespaced(c.client.clone(), ns);
    let s: Service = from_json(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "test-service"},
        "spec": {
            "selector": {"foo": "bar", "baz": "blah"},
            "ports": [{"port": 80, "targetPort": 80}],
        },
    }))?;
    svcs.create(&PostParams::default(), &s)
        .await
        .context("create service test-service")?;
    namespaces(c)
        .delete(ns, &DeleteParams::default())
        .await
        .with_context(|| format!("delete namespace {ns}"))?;
    wait_namespace_gone(c, ns, Duration::from_secs(60)).await?;
    create_namespace(c, ns).await?;
    match svcs.get("test-service").await {
        Err(e) if not_found(&e) => Ok(()),
        Err(e) => Err(e).context("get test-service in the recreated namespace"),
        Ok(_) => bail!("service test-service exists in the recreated namespace {ns}"),
    }
}

/// A resource version as a number (upstream's CompareResourceVersion
/// compares them as integers).
fn rv_number(ns: &Namespace) -> Result<u64> {
    let rv = ns.metadata.resource_version.clone().unwrap_or_default();
    ensure!(!rv.is_empty(), "namespace has no resourceVersion");
    rv.parse()
        .with_context(|| format!("resourceVersion {rv:?} is not a number"))
}

async fn patch_namespace(c: Ctx) -> Result<()> {
    let ns = format!("nspatchtest-{}", uuid());
    let res = patch_namespace_in(&c, &ns).await;
    finish(res, delete_namespace(&c, &ns).await)
}

async fn patch_namespace_in(c: &Ctx, ns: &str) -> Result<()> {
    let created = create_namespace(c, ns).await?;
    let before = rv_number(&created)?;
    let patched = namespaces(c)
        .patch(
            ns,
            &PatchParams::default(),
            &Patch::Strategic(json!({"metadata": {"labels": {"testLabel": "testValue"}}})),
        )
        .await
        .context("failed to patch Namespace")?;
    let after = rv_number(&patched)?;
    ensure!(
        before < after,
        "patched object should have a larger resource version ({after} after {before})"
    );
    let got = namespaces(c)
        .get(ns)
        .await
        .context("failed to get Namespace")?;
    let label = got
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get("testLabel"))
        .cloned();
    ensure!(
        label.as_deref() == Some("testValue"),
        "namespace not patched: label testLabel is {label:?}"
    );
    Ok(())
}

fn last_condition(ns: &Namespace) -> Option<NamespaceCondition> {
    ns.status.as_ref()?.conditions.as_ref()?.last().cloned()
}

async fn namespace_status(c: Ctx) -> Result<()> {
    let api = namespaces(&c);
    let ns = c.ns.clone();
    let st = api
        .get_status(&ns)
        .await
        .with_context(|| format!("failed to fetch the status of namespace {ns}"))?;
    let phase = st.status.and_then(|s| s.phase).unwrap_or_default();
    ensure!(
        phase == "Active",
        "the phase returned was {phase:?}, expected Active"
    );

    let patch = json!({
        "metadata": {"annotations": {"e2e-patched-ns-status": ns}},
        "status": {"conditions": [{
            "type": "StatusPatch", "status": "True",
            "reason": "E2E", "message": "Patched by an e2e test",
        }]},
    });
    let patched = api
        .patch_status(&ns, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .context("failed to patch the namespace status")?;
    let ann = patched
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("e2e-patched-ns-status"))
        .cloned();
    ensure!(
        ann.as_deref() == Some(ns.as_str()),
        "patched object should have the applied annotation, has {ann:?}"
    );
    let cond = last_condition(&patched).context("patched namespace has no conditions")?;
    ensure!(
        cond.reason.as_deref() == Some("E2E"),
        "the Reason returned was {:?}",
        cond.reason
    );
    ensure!(
        cond.message.as_deref() == Some("Patched by an e2e test"),
        "the Message returned was {:?}",
        cond.message
    );

    let mut updated = None;
    for _ in 0..5 {
        let mut cur = api.get_status(&ns).await?;
        let status = cur.status.get_or_insert_with(Default::default);
        status
            .conditions
            .get_or_insert_with(Vec::new)
            .push(NamespaceCondition {
                type_: "StatusUpdate".into(),
                status: "True".into(),
                reason: Some("E2E".into()),
                message: Some("Updated by an e2e test".into()),
                ..Default::default()
            });
        match api.replace_status(&ns, &PostParams::default(), &cur).await {
            Ok(n) => {
                updated = Some(n);
                break;
            }
            Err(e) if conflict(&e) => continue,
            Err(e) => return Err(e).context("failed to update the namespace status"),
        }
    }
    let updated = updated.context("failed to update the namespace status: conflicts")?;
    let cond = last_condition(&updated).context("updated namespace has no conditions")?;
    ensure!(
        cond.type_ == "StatusUpdate",
        "updated object should have the applied condition, got {:?}",
        updated.status.and_then(|s| s.conditions)
    );
    ensure!(
        cond.message.as_deref() == Some("Updated by an e2e test"),
        "the Message returned was {:?}",
        cond.message
    );
    Ok(())
}

async fn update_namespace(c: Ctx) -> Result<()> {
    let api = namespaces(&c);
    let ns = c.ns.clone();
    for _ in 0..5 {
        let mut cur = api.get(&ns).await.context("unable to get the Namespace")?;
        cur.metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert(ns.clone(), "updated".into());
        match api.replace(&ns, &PostParams::default(), &cur).await {
            Ok(n) => {
                let v = n.metadata.labels.as_ref().and_then(|l| l.get(&ns)).cloned();
                ensure!(
                    v.as_deref() == Some("updated"),
                    "failed to update namespace {ns}: labels are {:?}",
                    n.metadata.labels
                );
                return Ok(());
            }
            Err(e) if conflict(&e) => continue,
            Err(e) => return Err(e).context("failed to update the Namespace"),
        }
    }
    bail!("failed to update namespace {ns}: every attempt conflicted")
}

const FAKE_FINALIZER: &str = "e2e.example.com/fakeFinalizer";

/// PUT /api/v1/namespaces/{name}/finalize with `edit` applied to spec.finalizers.
async fn finalize(c: &Ctx, ns: &str, edit: impl Fn(&mut Vec<String>)) -> Result<Namespace> {
    let api = namespaces(c);
    for _ in 0..5 {
        let mut cur = api.get(ns).await?;
        let spec = cur.spec.get_or_insert_with(Default::default);
        edit(spec.finalizers.get_or_insert_with(Vec::new));
        match api
            .replace_subresource("finalize", ns, &PostParams::default(), &cur)
            .await
        {
            Ok(n) => return Ok(n),
            Err(e) if conflict(&e) => continue,
            Err(e) => return Err(e).context("PUT the finalize subresource"),
        }
    }
    bail!("finalize namespace {ns}: every attempt conflicted")
}

fn finalizers(ns: &Namespace) -> Vec<String> {
    ns.spec
        .as_ref()
        .and_then(|s| s.finalizers.clone())
        .unwrap_or_default()
}

async fn finalizer_namespace(c: Ctx) -> Result<()> {
    let ns = format!("e2e-ns-{}", suffix());
    let res = finalizer_namespace_in(&c, &ns).await;
    // Take the fake finalizer off before deleting, or the namespace
    // would stay Terminating for ever.
    let cleanup = async {
        let _ = finalize(&c, &ns, |f| f.retain(|x| x != FAKE_FINALIZER)).await;
        delete_namespace(&c, &ns).await
    }
    .await;
    finish(res, cleanup)
}

async fn finalizer_namespace_in(c: &Ctx, ns: &str) -> Result<()> {
    create_namespace(c, ns).await?;
    let added = finalize(c, ns, |f| f.push(FAKE_FINALIZER.into()))
        .await
        .context("failed to add the finalizer to the namespace")?;
    ensure!(
        finalizers(&added).iter().any(|f| f == FAKE_FINALIZER),
        "finalizer {FAKE_FINALIZER} was not found: namespace has {:?}",
        finalizers(&added)
    );
    let removed = finalize(c, ns, |f| f.retain(|x| x != FAKE_FINALIZER))
        .await
        .context("failed to remove the finalizer from the namespace")?;
    ensure!(
        !finalizers(&removed).iter().any(|f| f == FAKE_FINALIZER),
        "finalizer {FAKE_FINALIZER} was found after removing it: namespace has {:?}",
        finalizers(&removed)
    );
    Ok(())
}
