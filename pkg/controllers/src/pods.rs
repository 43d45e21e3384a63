//! Pod facts every workload controller asks: ready, available, active,
//! selector matching, listing a namespace's pods by selector, building
//! a pod from a template for an owner, and creating and deleting pods with
//! upstream's events (RealPodControl).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ObjectReference, Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, ObjectMeta, OwnerReference, Time,
};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::core::{Selector, SelectorExt};
use kube::{Api, ResourceExt};

use crate::{Context, Error, Result};

/// The current time as a Kubernetes `Time`.
pub fn now() -> Time {
    Time(Timestamp::now())
}

/// A selector for matching; an invalid selector is an [`Error::Invalid`].
pub fn selector(sel: &LabelSelector) -> Result<Selector> {
    Selector::try_from(sel.clone()).map_err(|e| Error::Invalid(format!("invalid selector: {e}")))
}

/// True when `sel` selects `labels` (an empty selector selects everything).
pub fn matches(sel: &Selector, labels: Option<&BTreeMap<String, String>>) -> bool {
    let empty = BTreeMap::new();
    sel.matches(labels.unwrap_or(&empty))
}

/// The Ready condition is True.
pub fn is_ready(pod: &Pod) -> bool {
    ready_since(pod).is_some()
}

/// When the Ready condition last became True, if it is True.
pub fn ready_since(pod: &Pod) -> Option<Timestamp> {
    let conds = pod.status.as_ref()?.conditions.as_ref()?;
    let c = conds.iter().find(|c| c.type_ == "Ready")?;
    if c.status != "True" {
        return None;
    }
    Some(
        c.last_transition_time
            .as_ref()
            .map(|t| t.0)
            .unwrap_or(Timestamp::UNIX_EPOCH),
    )
}

/// Ready for at least `min_ready_seconds` at `now`.
pub fn is_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    match ready_since(pod) {
        None => false,
        Some(_) if min_ready_seconds <= 0 => true,
        Some(since) => {
            let ready_for = now.as_second() - since.as_second();
            ready_for >= i64::from(min_ready_seconds)
        }
    }
}

/// Not terminated and not being deleted (upstream's IsPodActive).
pub fn is_active(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    !matches!(phase, Some("Succeeded") | Some("Failed"))
        && pod.metadata.deletion_timestamp.is_none()
}

/// The pod's phase ("Pending" when unset).
pub fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

/// Pods of namespace `ns` whose labels match `sel`, read live from the API
/// server (so a reconcile never acts on a stale cache).
pub async fn list(client: &kube::Client, ns: &str, sel: &Selector) -> Result<Vec<Pod>> {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let lp = if sel.selects_all() {
        ListParams::default()
    } else {
        ListParams::default().labels_from(sel)
    };
    let list = api
        .list(&lp)
        .await
        .map_err(Error::kube(format!("list pods in {ns}")))?;
    Ok(list.items)
}

/// A pod from `template` in `ns`, owned by `owner`, named `name` or (when
/// `name` is None) generated from `generate_name`.
pub fn from_template(
    template: &PodTemplateSpec,
    ns: &str,
    owner: OwnerReference,
    name: Option<String>,
    generate_name: Option<String>,
) -> Pod {
    let tmeta = template.metadata.clone().unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            name,
            generate_name: if generate_name.is_some() {
                generate_name
            } else {
                None
            },
            namespace: Some(ns.to_string()),
            labels: tmeta.labels,
            annotations: tmeta.annotations,
            finalizers: tmeta.finalizers,
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: template.spec.clone(),
        status: None,
    }
}

/// Creates `pod` for the controller object `owner`, recording
/// SuccessfulCreate or FailedCreate on it (upstream's
/// RealPodControl.CreatePods); a failure is wrapped with `action`.
pub async fn create(
    ctx: &Context,
    owner: &ObjectReference,
    api: &Api<Pod>,
    pod: &Pod,
    action: impl Into<String>,
) -> Result<Pod> {
    match api.create(&PostParams::default(), pod).await {
        Ok(p) => {
            ctx.normal(
                owner,
                "SuccessfulCreate",
                format!("Created pod: {}", p.name_any()),
            )
            .await;
            Ok(p)
        }
        Err(e) => {
            let e = Error::kube(action)(e);
            ctx.warning(
                owner,
                "FailedCreate",
                format!("Error creating: {}", e.api_message()),
            )
            .await;
            Err(e)
        }
    }
}

/// Deletes the pod `name` of the controller object `owner`, recording
/// SuccessfulDelete or FailedDelete on it (upstream's
/// RealPodControl.DeletePod); a pod already gone is no error.
pub async fn delete(
    ctx: &Context,
    owner: &ObjectReference,
    api: &Api<Pod>,
    name: &str,
) -> Result<()> {
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => {
            ctx.normal(owner, "SuccessfulDelete", format!("Deleted pod: {name}"))
                .await;
            Ok(())
        }
        Err(e) => {
            let ns = owner.namespace.as_deref().unwrap_or_default();
            let e = Error::kube(format!("delete pod {ns}/{name}"))(e);
            if e.is_not_found() {
                return Ok(());
            }
            ctx.warning(
                owner,
                "FailedDelete",
                format!("Error deleting: {}", e.api_message()),
            )
            .await;
            Err(e)
        }
    }
}
