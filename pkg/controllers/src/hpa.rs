//! The HorizontalPodAutoscaler controller (autoscaling/v2): every sync it
//! reads the target's scale subresource, keeps the replica count within
//! minReplicas..maxReplicas, and otherwise asks the metrics for a desired
//! count. No metrics API (metrics.k8s.io, custom/external metrics) is
//! served yet, so [`metric_replicas`] reports each metric unavailable with
//! upstream's reasons and messages and the HPA stays at its size; a later
//! metrics source plugs in there.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::autoscaling::v2::{
    HorizontalPodAutoscaler, HorizontalPodAutoscalerCondition, HorizontalPodAutoscalerStatus,
    MetricSpec, MetricStatus,
};
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::{watcher, Controller};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

use crate::disruption::REPEATS;
use crate::{pods, status, Context, Error, Result, Shutdown};

/// Upstream's --horizontal-pod-autoscaler-sync-period.
pub const SYNC_PERIOD: Duration = Duration::from_secs(15);

/// Runs the controller until shutdown.
pub async fn run(ctx: Arc<Context>, shutdown: Shutdown) -> Result<()> {
    let api: Api<HorizontalPodAutoscaler> = Api::all(ctx.client.clone());
    Controller::new(api, watcher::Config::default())
        .graceful_shutdown_on(shutdown.signal())
        .run(
            reconcile,
            |obj: Arc<HorizontalPodAutoscaler>, err: &Error, ctx: Arc<Context>| {
                let _ = ctx.error_action(&crate::key(&*obj), err);
                Action::requeue(SYNC_PERIOD)
            },
            ctx,
        )
        .for_each(|_| futures::future::ready(()))
        .await;
    Ok(())
}

/// Why a metric gave no value: the condition reason and the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricFailure {
    /// e.g. FailedGetResourceMetric.
    pub reason: &'static str,
    /// The error text.
    pub message: String,
}

const RESOURCE_API_MISSING: &str = "unable to fetch metrics from resource metrics API: the server could not find the requested resource (get pods.metrics.k8s.io)";

/// The replica count one metric asks for. No metrics API is served yet,
/// so every metric fails as upstream's client does without one.
pub fn metric_replicas(
    metric: &MetricSpec,
    _current: i32,
) -> std::result::Result<(i32, MetricStatus), MetricFailure> {
    match metric.type_.as_str() {
        "Resource" => {
            let name = metric
                .resource
                .as_ref()
                .map(|r| r.name.as_str())
                .unwrap_or("");
            Err(MetricFailure {
                reason: "FailedGetResourceMetric",
                message: format!(
                    "failed to get {name} resource metric value: failed to get {name} utilization: unable to get metrics for resource {name}: {RESOURCE_API_MISSING}"
                ),
            })
        }
        "ContainerResource" => {
            let (name, container) = metric
                .container_resource
                .as_ref()
                .map(|r| (r.name.as_str(), r.container.as_str()))
                .unwrap_or(("", ""));
            Err(MetricFailure {
                reason: "FailedGetContainerResourceMetric",
                message: format!(
                    "failed to get {name} resource metric value: failed to get {name} utilization: unable to get metrics for resource {name} of container {container}: {RESOURCE_API_MISSING}"
                ),
            })
        }
        "Pods" => {
            let name = metric
                .pods
                .as_ref()
                .map(|p| p.metric.name.as_str())
                .unwrap_or("");
            Err(MetricFailure {
                reason: "FailedGetPodsMetric",
                message: format!(
                    "failed to get pods metric value: unable to get metric {name}: unable to fetch metrics from custom metrics API: no custom metrics API (custom.metrics.k8s.io) registered"
                ),
            })
        }
        "Object" => {
            let name = metric
                .object
                .as_ref()
                .map(|o| o.metric.name.as_str())
                .unwrap_or("");
            Err(MetricFailure {
                reason: "FailedGetObjectMetric",
                message: format!(
                    "failed to get object metric value: unable to get metric {name}: unable to fetch metrics from custom metrics API: no custom metrics API (custom.metrics.k8s.io) registered"
                ),
            })
        }
        "External" => {
            let name = metric
                .external
                .as_ref()
                .map(|e| e.metric.name.as_str())
                .unwrap_or("");
            Err(MetricFailure {
                reason: "FailedGetExternalMetric",
                message: format!(
                    "failed to get external metric value: unable to get external metric {name}: unable to fetch metrics from external metrics API: no external metrics API (external.metrics.k8s.io) registered"
                ),
            })
        }
        other => Err(MetricFailure {
            reason: "InvalidMetricSourceType",
            message: format!("unknown metric source type {other:?}"),
        }),
    }
}

/// The metrics of `hpa`, with upstream's default (cpu at 80% utilization)
/// when none are given.
pub fn metrics_of(hpa: &HorizontalPodAutoscaler) -> Vec<MetricSpec> {
    let m = hpa
        .spec
        .as_ref()
        .and_then(|s| s.metrics.clone())
        .unwrap_or_default();
    if !m.is_empty() {
        return m;
    }
    serde_json::from_value(json!([{"type": "Resource", "resource": {"name": "cpu",
        "target": {"type": "Utilization", "averageUtilization": 80}}}]))
    .unwrap_or_default()
}

/// The replica count asked by all metrics (the largest), or the failure
/// upstream reports when every metric failed (the last failure names the
/// ScalingActive condition).
pub fn compute_replicas(
    metrics: &[MetricSpec],
    current: i32,
) -> std::result::Result<(i32, Vec<MetricStatus>), (MetricFailure, String)> {
    let mut best: Option<i32> = None;
    let mut statuses = Vec::new();
    let mut failures: Vec<MetricFailure> = Vec::new();
    for m in metrics {
        match metric_replicas(m, current) {
            Ok((n, st)) => {
                best = Some(best.map_or(n, |b| b.max(n)));
                statuses.push(st);
            }
            Err(f) => failures.push(f),
        }
    }
    match (best, failures.first(), failures.last()) {
        (Some(n), _, _) => Ok((n, statuses)),
        (None, Some(first), Some(last)) => Err((
            last.clone(),
            format!(
                "invalid metrics ({} invalid out of {}), first error is: {}",
                failures.len(),
                metrics.len(),
                first.message
            ),
        )),
        _ => Ok((current, statuses)),
    }
}

/// What the bounds say before metrics: Some((desired, reason)) when the
/// current count is outside min..max, or scaling is disabled (target at 0).
#[derive(Debug, PartialEq, Eq)]
pub enum Bounds {
    /// The target is scaled to zero with minReplicas > 0: do nothing.
    Disabled,
    /// Rescale to this count for this reason.
    Rescale(i32, &'static str),
    /// Within bounds: the metrics decide.
    Within,
}

/// Upstream's checks before computing metrics.
pub fn bounds(spec_replicas: i32, min: i32, max: i32) -> Bounds {
    if spec_replicas == 0 && min != 0 {
        Bounds::Disabled
    } else if spec_replicas > max {
        Bounds::Rescale(max, "Current number of replicas above Spec.MaxReplicas")
    } else if spec_replicas < min {
        Bounds::Rescale(min, "Current number of replicas below Spec.MinReplicas")
    } else {
        Bounds::Within
    }
}

/// `desired` clamped to min..max with the ScalingLimited condition.
pub fn normalize(
    desired: i32,
    min: i32,
    max: i32,
) -> (i32, &'static str, &'static str, &'static str) {
    if desired < min {
        (
            min,
            "True",
            "TooFewReplicas",
            "the desired replica count is less than the minimum replica count",
        )
    } else if desired > max {
        (
            max,
            "True",
            "TooManyReplicas",
            "the desired replica count is more than the maximum replica count",
        )
    } else {
        (
            desired,
            "False",
            "DesiredWithinRange",
            "the desired count is within the acceptable range",
        )
    }
}

fn set_condition(
    status: &mut HorizontalPodAutoscalerStatus,
    type_: &str,
    st: &str,
    reason: &str,
    message: String,
) {
    let conds = status.conditions.get_or_insert_with(Vec::new);
    let now = Some(pods::now());
    match conds.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => {
            if c.status != st {
                c.last_transition_time = now;
            }
            c.status = st.into();
            c.reason = Some(reason.into());
            c.message = Some(message);
        }
        None => conds.push(HorizontalPodAutoscalerCondition {
            type_: type_.into(),
            status: st.into(),
            reason: Some(reason.into()),
            message: Some(message),
            last_transition_time: now,
        }),
    }
}

async fn target_api(
    ctx: &Context,
    ns: &str,
    api_version: &str,
    kind: &str,
) -> Result<Api<DynamicObject>> {
    let (group, version) = match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    };
    let gvk = GroupVersionKind::gvk(group, version, kind);
    let (ar, _): (ApiResource, _) = kube::discovery::pinned_kind(&ctx.client, &gvk)
        .await
        .map_err(Error::kube(format!(
            "no matches for kind \"{kind}\" in group \"{group}\""
        )))?;
    Ok(Api::namespaced_with(ctx.client.clone(), ns, &ar))
}

async fn reconcile(obj: Arc<HorizontalPodAutoscaler>, ctx: Arc<Context>) -> Result<Action> {
    let key = crate::key(&*obj);
    let ns = obj.namespace().unwrap_or_default();
    let name = obj.name_any();
    let api: Api<HorizontalPodAutoscaler> = Api::namespaced(ctx.client.clone(), &ns);
    let Some(hpa) = api
        .get_opt(&name)
        .await
        .map_err(Error::kube(format!("get horizontalpodautoscaler {key}")))?
    else {
        return Ok(Action::await_change());
    };
    let objref = hpa.object_ref(&());
    let spec = hpa.spec.clone().unwrap_or_default();
    let target = spec.scale_target_ref.clone();
    let reference = format!("{}/{}", target.kind, target.name);
    let original = hpa.status.clone().unwrap_or_default();
    let mut status = original.clone();
    let min = spec.min_replicas.unwrap_or(1);
    let max = spec.max_replicas;

    let scale = match target_api(
        &ctx,
        &ns,
        target.api_version.as_deref().unwrap_or(""),
        &target.kind,
    )
    .await
    {
        Ok(tapi) => tapi
            .get_scale(&target.name)
            .await
            .map_err(Error::kube(format!("get scale of {reference}")))
            .map(|s| (tapi, s)),
        Err(e) => Err(e),
    };
    let (tapi, scale) = match scale {
        Ok(v) => v,
        Err(e) => {
            let msg = e.api_message();
            if REPEATS.first(&key, "FailedGetScale", &msg) {
                ctx.warning(&objref, "FailedGetScale", msg.clone()).await;
            }
            set_condition(
                &mut status,
                "AbleToScale",
                "False",
                "FailedGetScale",
                format!("the HPA controller was unable to get the target's current scale: {msg}"),
            );
            status.current_metrics = None;
            write_status(&api, &name, &original, &status, &key).await?;
            ctx.succeeded(&key);
            return Ok(Action::requeue(SYNC_PERIOD));
        }
    };
    set_condition(
        &mut status,
        "AbleToScale",
        "True",
        "SucceededGetScale",
        "the HPA controller was able to get the target's current scale".into(),
    );
    let current = scale.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);

    let (desired, reason) = match bounds(current, min, max) {
        Bounds::Disabled => {
            set_condition(
                &mut status,
                "ScalingActive",
                "False",
                "ScalingDisabled",
                "scaling is disabled since the replica count of the target is zero".into(),
            );
            (0, None)
        }
        Bounds::Rescale(n, why) => (n, Some(why)),
        Bounds::Within => match compute_replicas(&metrics_of(&hpa), current) {
            Err((failure, summary)) => {
                if REPEATS.first(&key, failure.reason, &failure.message) {
                    ctx.warning(&objref, failure.reason, failure.message.clone())
                        .await;
                }
                set_condition(
                    &mut status,
                    "ScalingActive",
                    "False",
                    failure.reason,
                    format!(
                        "the HPA was unable to compute the replica count: {}",
                        failure.message
                    ),
                );
                status.current_replicas = Some(current);
                status.current_metrics = None;
                if REPEATS.first(&key, "FailedComputeMetricsReplicas", &summary) {
                    ctx.warning(&objref, "FailedComputeMetricsReplicas", summary)
                        .await;
                }
                write_status(&api, &name, &original, &status, &key).await?;
                ctx.succeeded(&key);
                return Ok(Action::requeue(SYNC_PERIOD));
            }
            Ok((n, metrics)) => {
                set_condition(
                    &mut status,
                    "ScalingActive",
                    "True",
                    "ValidMetricFound",
                    "the HPA was able to successfully calculate a replica count from metrics"
                        .into(),
                );
                let (n, limited, why, msg) = normalize(n, min, max);
                set_condition(&mut status, "ScalingLimited", limited, why, msg.into());
                status.current_metrics = Some(metrics);
                let reason = (n != current).then_some(if n > current {
                    "metric above target"
                } else {
                    "All metrics below target"
                });
                (n, reason)
            }
        },
    };
    let rescale = reason.is_some() && desired != current;
    if let (true, Some(why)) = (rescale, reason) {
        let patch = json!({"spec": {"replicas": desired}});
        if let Err(e) = tapi
            .patch_scale(&target.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            let msg = e.to_string();
            ctx.warning(
                &objref,
                "FailedRescale",
                format!("New size: {desired}; reason: {why}; error: {msg}"),
            )
            .await;
            set_condition(
                &mut status,
                "AbleToScale",
                "False",
                "FailedUpdateScale",
                format!("the HPA controller was unable to update the target scale: {msg}"),
            );
            write_status(&api, &name, &original, &status, &key).await?;
            return Err(Error::kube(format!("rescale {reference}"))(e));
        }
        set_condition(
            &mut status,
            "AbleToScale",
            "True",
            "SucceededRescale",
            format!("the HPA controller was able to update the target scale to {desired}"),
        );
        ctx.normal(
            &objref,
            "SuccessfulRescale",
            format!("New size: {desired}; reason: {why}"),
        )
        .await;
        status.last_scale_time = Some(pods::now());
    }
    status.current_replicas = Some(current);
    status.desired_replicas = desired;
    write_status(&api, &name, &original, &status, &key).await?;
    ctx.succeeded(&key);
    Ok(Action::requeue(SYNC_PERIOD))
}

async fn write_status(
    api: &Api<HorizontalPodAutoscaler>,
    name: &str,
    original: &HorizontalPodAutoscalerStatus,
    status: &HorizontalPodAutoscalerStatus,
    key: &str,
) -> Result<()> {
    if original == status {
        return Ok(());
    }
    let mut st = serde_json::to_value(status).map_err(|e| Error::Invalid(e.to_string()))?;
    if status.current_metrics.is_none() {
        st["currentMetrics"] = serde_json::Value::Null;
    }
    status::write(api, name, key, &st).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_first() {
        assert_eq!(bounds(0, 1, 5), Bounds::Disabled);
        assert_eq!(bounds(0, 0, 5), Bounds::Within);
        assert_eq!(
            bounds(7, 1, 5),
            Bounds::Rescale(5, "Current number of replicas above Spec.MaxReplicas")
        );
        assert_eq!(
            bounds(1, 2, 5),
            Bounds::Rescale(2, "Current number of replicas below Spec.MinReplicas")
        );
        assert_eq!(bounds(3, 2, 5), Bounds::Within);
        assert_eq!(normalize(1, 2, 5).0, 2);
        assert_eq!(normalize(9, 2, 5).2, "TooManyReplicas");
        assert_eq!(normalize(3, 2, 5).1, "False");
    }

    #[test]
    fn metrics_unavailable() {
        let hpa = HorizontalPodAutoscaler::default();
        let m = metrics_of(&hpa);
        assert_eq!(m.len(), 1);
        let (f, summary) = compute_replicas(&m, 2).unwrap_err();
        assert_eq!(f.reason, "FailedGetResourceMetric");
        assert!(f
            .message
            .starts_with("failed to get cpu resource metric value: failed to get cpu utilization"));
        assert!(summary.starts_with(
            "invalid metrics (1 invalid out of 1), first error is: failed to get cpu"
        ));
        assert_eq!(compute_replicas(&[], 3).unwrap().0, 3);
    }
}
