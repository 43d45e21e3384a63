//! The namespace controller, as upstream's pkg/controller/namespace: when a
//! namespace is deleted (deletionTimestamp set, phase Terminating, the
//! `kubernetes` finalizer in spec.finalizers), it deletes all content of every
//! namespaced resource type served by discovery (custom resources too),
//! reports progress in the namespace conditions upstream maintains
//! (NamespaceDeletionDiscoveryFailure, NamespaceDeletionGroupVersionParsingFailure,
//! NamespaceDeletionContentFailure, NamespaceContentRemaining,
//! NamespaceFinalizersRemaining), looks again while content remains (pods
//! take their grace period, finalizers their controllers' time), and then
//! removes `kubernetes` from spec.finalizers through the `finalize`
//! subresource, after which the API server deletes the namespace.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, NamespaceCondition, Pod};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams, PropagationPolicy};
use kube::core::{DynamicObject, PartialObjectMeta};
use kube::discovery::verbs;
use kube::runtime::controller::Action;
use kube::runtime::{watcher, Controller};
use kube::{Api, ResourceExt};
use serde_json::json;

use crate::garbagecollector::{discover, Res};
use crate::pods::now;
use crate::{Context, Error, Result, Shutdown};

/// The finalizer the namespace controller removes.
pub const KUBERNETES_FINALIZER: &str = "kubernetes";
/// Seconds to wait for content held by finalizers (upstream's finalizerEstimateSeconds).
const FINALIZER_ESTIMATE_SECONDS: i64 = 15;

/// The condition types the deleter maintains, in upstream's order, with
/// their reason and message when all is well.
pub const CONDITIONS: [(&str, &str, &str); 5] = [
    (
        "NamespaceDeletionDiscoveryFailure",
        "ResourcesDiscovered",
        "All resources successfully discovered",
    ),
    (
        "NamespaceDeletionGroupVersionParsingFailure",
        "ParsedGroupVersions",
        "All legacy kube types successfully parsed",
    ),
    (
        "NamespaceDeletionContentFailure",
        "ContentDeleted",
        "All content successfully deleted, may be waiting on finalization",
    ),
    (
        "NamespaceContentRemaining",
        "ContentRemoved",
        "All content successfully removed",
    ),
    (
        "NamespaceFinalizersRemaining",
        "ContentHasNoFinalizers",
        "All content-preserving finalizers finished",
    ),
];

/// Runs the controller until shutdown.
pub async fn run(ctx: Arc<Context>, shutdown: Shutdown) -> Result<()> {
    let api: Api<Namespace> = Api::all(ctx.client.clone());
    Controller::new(api, watcher::Config::default())
        .graceful_shutdown_on(shutdown.signal())
        .run(
            reconcile,
            |ns, err, ctx: Arc<Context>| ctx.error_action(&crate::key(&*ns), err),
            ctx,
        )
        .for_each(|_| futures::future::ready(()))
        .await;
    Ok(())
}

/// What one pass over the namespace's content found.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Pass {
    /// Discovery failures (group-version, error).
    pub discovery_failures: Vec<(String, String)>,
    /// Group-versions that did not parse.
    pub parse_failures: Vec<String>,
    /// Per-resource deletion errors.
    pub content_errors: Vec<String>,
    /// Remaining objects per resource (`plural.group`).
    pub remaining: BTreeMap<String, usize>,
    /// Remaining objects per finalizer.
    pub finalizers: BTreeMap<String, usize>,
    /// Seconds until the content is expected to be gone.
    pub estimate: i64,
}

fn failing(type_: &str, reason: &str, message: String) -> NamespaceCondition {
    NamespaceCondition {
        type_: type_.into(),
        status: "True".into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_transition_time: None,
    }
}

/// The failing conditions of a pass (upstream's namespaceConditionUpdater).
pub fn failing_conditions(p: &Pass) -> Vec<NamespaceCondition> {
    let mut out = Vec::new();
    if !p.discovery_failures.is_empty() {
        let errs: Vec<String> = p
            .discovery_failures
            .iter()
            .map(|(gv, e)| format!("{gv}: {e}"))
            .collect();
        out.push(failing(
            "NamespaceDeletionDiscoveryFailure",
            "DiscoveryFailed",
            format!(
                "Discovery failed for some groups, {} failing: unable to retrieve the complete list of server APIs: {}",
                errs.len(),
                errs.join(", ")
            ),
        ));
    }
    if !p.parse_failures.is_empty() {
        out.push(failing(
            "NamespaceDeletionGroupVersionParsingFailure",
            "GroupVersionParsingFailed",
            p.parse_failures
                .iter()
                .map(|gv| format!("unexpected GroupVersion string: {gv}"))
                .collect::<Vec<_>>()
                .join(", "),
        ));
    }
    if !p.content_errors.is_empty() {
        let mut errs = p.content_errors.clone();
        errs.sort();
        out.push(failing(
            "NamespaceDeletionContentFailure",
            "ContentDeletionFailed",
            format!(
                "Failed to delete all resource types, {} remaining: {}",
                errs.len(),
                errs.join(", ")
            ),
        ));
    }
    let mut remaining: Vec<String> = p
        .remaining
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(r, n)| format!("{r} has {n} resource instances"))
        .collect();
    if !remaining.is_empty() {
        remaining.sort();
        out.push(failing(
            "NamespaceContentRemaining",
            "SomeResourcesRemain",
            format!("Some resources are remaining: {}", remaining.join(", ")),
        ));
    }
    let mut fins: Vec<String> = p
        .finalizers
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(f, n)| format!("{f} in {n} resource instances"))
        .collect();
    if !fins.is_empty() {
        fins.sort();
        out.push(failing(
            "NamespaceFinalizersRemaining",
            "SomeFinalizersRemain",
            format!(
                "Some content in the namespace has finalizers remaining: {}",
                fins.join(", ")
            ),
        ));
    }
    out
}

/// The namespace's conditions after a pass: every maintained type is set,
/// to its failing variant or its "ok" variant; a condition's
/// lastTransitionTime changes only when its status does. Other condition
/// types are kept.
pub fn merge_conditions(
    current: &[NamespaceCondition],
    failing: &[NamespaceCondition],
    now: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
) -> Vec<NamespaceCondition> {
    let mut out: Vec<NamespaceCondition> = current.to_vec();
    for (type_, ok_reason, ok_message) in CONDITIONS {
        let want = failing
            .iter()
            .find(|c| c.type_ == type_)
            .cloned()
            .unwrap_or(NamespaceCondition {
                type_: type_.into(),
                status: "False".into(),
                reason: Some(ok_reason.into()),
                message: Some(ok_message.into()),
                last_transition_time: None,
            });
        match out.iter_mut().find(|c| c.type_ == type_) {
            None => out.push(NamespaceCondition {
                last_transition_time: Some(now.clone()),
                ..want
            }),
            Some(old) => {
                if old.status != want.status {
                    old.last_transition_time = Some(now.clone());
                }
                old.status = want.status;
                old.reason = want.reason;
                old.message = want.message;
            }
        }
    }
    out
}

/// The resources whose content a namespace deletion removes.
pub fn deletable(res: &Res) -> bool {
    res.namespaced && res.supports(&[verbs::DELETE])
}

/// `spec.finalizers` without `kubernetes`.
pub fn finalized(ns: &Namespace) -> Vec<String> {
    ns.spec
        .as_ref()
        .and_then(|s| s.finalizers.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|f| f != KUBERNETES_FINALIZER)
        .collect()
}

fn has_kubernetes_finalizer(ns: &Namespace) -> bool {
    ns.spec
        .as_ref()
        .and_then(|s| s.finalizers.as_ref())
        .is_some_and(|f| f.iter().any(|x| x == KUBERNETES_FINALIZER))
}

/// How upstream prints a GroupVersionResource (`/v1, Resource=pods`).
fn gvr(res: &Res) -> String {
    format!(
        "{}/{}, Resource={}",
        res.ar.group, res.ar.version, res.ar.plural
    )
}

/// Seconds pods of the namespace still need to terminate.
async fn pod_estimate(ctx: &Context, ns: &str) -> Result<i64> {
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let pods = api
        .list(&ListParams::default())
        .await
        .map_err(Error::kube(format!("list pods in {ns}")))?;
    let mut est = 0;
    for p in pods.items {
        if matches!(crate::pods::phase(&p), "Succeeded" | "Failed") {
            continue;
        }
        let grace = p
            .metadata
            .deletion_grace_period_seconds
            .or_else(|| {
                p.spec
                    .as_ref()
                    .and_then(|s| s.termination_grace_period_seconds)
            })
            .unwrap_or(30);
        est = est.max(grace);
    }
    Ok(est)
}

/// Deletes the content of one resource and counts what remains.
async fn delete_content(ctx: &Context, ns: &str, res: &Res, pass: &mut Pass) -> Result<(), String> {
    let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), ns, &res.ar);
    let dp = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        ..Default::default()
    };
    let mut estimate = 0;
    if res.ar.plural == "pods" && res.ar.group.is_empty() {
        estimate = pod_estimate(ctx, ns).await.map_err(|e| e.to_string())?;
    }
    let mut per_object = !res.supports(&[verbs::DELETE_COLLECTION]);
    if !per_object {
        match api.delete_collection(&dp, &ListParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 405 || s.code == 404 => per_object = true,
            Err(e) => return Err(e.to_string()),
        }
    }
    if !res.supports(&[verbs::LIST]) {
        return Ok(());
    }
    let meta: Api<PartialObjectMeta<DynamicObject>> =
        Api::namespaced_with(ctx.client.clone(), ns, &res.ar);
    let mut items = meta
        .list(&ListParams::default())
        .await
        .map_err(|e| e.to_string())?
        .items;
    if per_object && !items.is_empty() {
        for it in &items {
            if it.metadata.deletion_timestamp.is_some() {
                continue;
            }
            match api.delete(&it.name_any(), &dp).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
                Err(e) => return Err(e.to_string()),
            }
        }
        items = meta
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?
            .items;
    }
    if items.is_empty() {
        return Ok(());
    }
    pass.remaining.insert(res.group_resource(), items.len());
    let mut with_finalizers = false;
    for it in &items {
        for f in it.metadata.finalizers.iter().flatten() {
            *pass.finalizers.entry(f.clone()).or_insert(0) += 1;
            with_finalizers = true;
        }
    }
    if estimate > 0 {
        pass.estimate = pass.estimate.max(estimate);
        return Ok(());
    }
    if with_finalizers {
        pass.estimate = pass.estimate.max(FINALIZER_ESTIMATE_SECONDS);
        return Ok(());
    }
    // Objects being deleted gracefully (e.g. by another controller) are
    // expected to go.
    if items
        .iter()
        .any(|it| it.metadata.deletion_timestamp.is_some())
    {
        pass.estimate = pass.estimate.max(1);
        return Ok(());
    }
    pass.estimate = pass.estimate.max(1);
    Err(format!(
        "unexpected items still remain in namespace: {ns} for gvr: {}",
        gvr(res)
    ))
}

/// One pass of deleting all content.
async fn delete_all_content(ctx: &Context, ns: &str) -> Result<Pass> {
    let found = discover(&ctx.client).await?;
    let mut pass = Pass {
        discovery_failures: found.failures,
        parse_failures: found.parse_failures,
        ..Default::default()
    };
    for res in found.resources.iter().filter(|r| deletable(r)) {
        if let Err(e) = delete_content(ctx, ns, res, &mut pass).await {
            pass.content_errors.push(e);
        }
    }
    Ok(pass)
}

async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Context>) -> Result<Action> {
    let key = crate::key(&*ns);
    if ns.metadata.deletion_timestamp.is_none() || !has_kubernetes_finalizer(&ns) {
        ctx.succeeded(&key);
        return Ok(Action::await_change());
    }
    let name = ns.name_any();
    let api: Api<Namespace> = Api::all(ctx.client.clone());
    let pass = delete_all_content(&ctx, &name).await?;

    // Conditions (and phase), written only when they changed.
    let current = ns
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let conds = merge_conditions(&current, &failing_conditions(&pass), &now());
    let phase = ns.status.as_ref().and_then(|s| s.phase.as_deref());
    if conds != current || phase != Some("Terminating") {
        let body = json!({ "status": { "phase": "Terminating", "conditions": conds } });
        match api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&body))
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => return Ok(Action::await_change()),
            Err(e) => return Err(Error::kube(format!("update namespace {name} status"))(e)),
        }
    }
    if !pass.content_errors.is_empty() || !pass.discovery_failures.is_empty() {
        // Retried with back-off, as upstream's rate-limited requeue.
        let delay = ctx.failed(&key).max(Duration::from_secs(1));
        return Ok(Action::requeue(delay));
    }
    if pass.estimate > 0 || !pass.remaining.is_empty() {
        let secs = (pass.estimate / 2).clamp(1, 5);
        ctx.succeeded(&key);
        return Ok(Action::requeue(Duration::from_secs(secs.unsigned_abs())));
    }

    // Finalize: remove `kubernetes` from spec.finalizers.
    let Some(mut latest) = api
        .get_opt(&name)
        .await
        .map_err(Error::kube(format!("get namespace {name}")))?
    else {
        return Ok(Action::await_change());
    };
    if has_kubernetes_finalizer(&latest) {
        let left = finalized(&latest);
        latest.spec.get_or_insert_with(Default::default).finalizers = Some(left);
        match api
            .replace_subresource("finalize", &name, &PostParams::default(), &latest)
            .await
        {
            Ok(_) => tracing::info!(namespace = %name, "namespace finalized"),
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(Error::kube(format!("finalize namespace {name}"))(e)),
        }
    }
    ctx.succeeded(&key);
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;

    fn t(s: i64) -> Time {
        Time(Timestamp::from_second(s).unwrap_or(Timestamp::UNIX_EPOCH))
    }

    #[test]
    fn all_ok_sets_every_condition_false() {
        let conds = merge_conditions(&[], &failing_conditions(&Pass::default()), &t(10));
        assert_eq!(conds.len(), 5);
        assert!(conds.iter().all(|c| c.status == "False"));
        let c = conds
            .iter()
            .find(|c| c.type_ == "NamespaceContentRemaining");
        assert_eq!(c.and_then(|c| c.reason.as_deref()), Some("ContentRemoved"));
        assert_eq!(
            c.and_then(|c| c.message.as_deref()),
            Some("All content successfully removed")
        );
    }

    #[test]
    fn remaining_content_and_finalizers_messages() {
        let mut p = Pass::default();
        p.remaining.insert("pods.".into(), 2);
        p.remaining.insert("widgets.example.com".into(), 1);
        p.finalizers.insert("example.com/hold".into(), 1);
        p.content_errors.push(
            "unexpected items still remain in namespace: x for gvr: /v1, Resource=configmaps"
                .into(),
        );
        let f = failing_conditions(&p);
        let msg = |ty: &str| {
            f.iter()
                .find(|c| c.type_ == ty)
                .and_then(|c| c.message.clone())
                .unwrap_or_default()
        };
        assert_eq!(
            msg("NamespaceContentRemaining"),
            "Some resources are remaining: pods. has 2 resource instances, widgets.example.com has 1 resource instances"
        );
        assert_eq!(
            msg("NamespaceFinalizersRemaining"),
            "Some content in the namespace has finalizers remaining: example.com/hold in 1 resource instances"
        );
        assert_eq!(
            msg("NamespaceDeletionContentFailure"),
            "Failed to delete all resource types, 1 remaining: unexpected items still remain in namespace: x for gvr: /v1, Resource=configmaps"
        );
        let reasons: Vec<_> = f.iter().filter_map(|c| c.reason.clone()).collect();
        assert_eq!(
            reasons,
            [
                "ContentDeletionFailed",
                "SomeResourcesRemain",
                "SomeFinalizersRemain"
            ]
        );
    }

    #[test]
    fn transition_time_changes_only_with_status() {
        let mut p = Pass::default();
        p.remaining.insert("pods.".into(), 2);
        let first = merge_conditions(&[], &failing_conditions(&p), &t(10));
        p.remaining.insert("pods.".into(), 1);
        let second = merge_conditions(&first, &failing_conditions(&p), &t(20));
        let c = second
            .iter()
            .find(|c| c.type_ == "NamespaceContentRemaining")
            .cloned()
            .unwrap_or_default();
        assert_eq!(c.last_transition_time, Some(t(10)));
        assert_eq!(
            c.message.as_deref(),
            Some("Some resources are remaining: pods. has 1 resource instances")
        );
        let third = merge_conditions(&second, &failing_conditions(&Pass::default()), &t(30));
        let c = third
            .iter()
            .find(|c| c.type_ == "NamespaceContentRemaining")
            .cloned()
            .unwrap_or_default();
        assert_eq!(c.last_transition_time, Some(t(30)));
        assert_eq!(c.status, "False");
        assert_eq!(third.len(), 5);
    }

    #[test]
    fn discovery_failure_message() {
        let p = Pass {
            discovery_failures: vec![("metrics.k8s.io/v1beta1".into(), "503".into())],
            ..Default::default()
        };
        let f = failing_conditions(&p);
        assert_eq!(f[0].type_, "NamespaceDeletionDiscoveryFailure");
        assert_eq!(f[0].reason.as_deref(), Some("DiscoveryFailed"));
        assert!(f[0]
            .message
            .as_deref()
            .is_some_and(|m| m.starts_with("Discovery failed for some groups, 1 failing: ")));
    }

    #[test]
    fn finalize_removes_only_kubernetes() {
        let ns = Namespace {
            spec: Some(k8s_openapi::api::core::v1::NamespaceSpec {
                finalizers: Some(vec!["kubernetes".into(), "example.com/x".into()]),
            }),
            ..Default::default()
        };
        assert!(has_kubernetes_finalizer(&ns));
        assert_eq!(finalized(&ns), vec!["example.com/x".to_string()]);
    }
}
