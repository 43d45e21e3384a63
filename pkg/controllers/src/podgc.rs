//! The pod garbage collector (upstream pkg/controller/podgc).
//!
//! Every 20 s it force-deletes (grace period 0), after marking them Failed
//! when they are not yet terminal:
//! - terminated pods above `terminated_pod_gc_threshold` (evicted first,
//!   then oldest; a threshold of 0 disables this),
//! - terminating pods on a NotReady node tainted
//!   `node.kubernetes.io/out-of-service`,
//! - pods bound to a node that has been missing for the 40 s quarantine
//!   (with condition DisruptionTarget, reason DeletionByPodGC),
//! - terminating pods never scheduled to a node.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod, PodCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, ResourceExt};

use crate::{pods, Context, Error, Result, Shutdown};

/// How often the collector runs.
pub const GC_PERIOD: Duration = Duration::from_secs(20);
/// How long a node must stay missing before its pods are deleted.
pub const QUARANTINE: Duration = Duration::from_secs(40);
const OUT_OF_SERVICE_TAINT: &str = "node.kubernetes.io/out-of-service";

fn node_name(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or("")
}

/// Upstream's isPodTerminated: any phase but Pending, Running and Unknown.
pub fn is_terminated(pod: &Pod) -> bool {
    !matches!(pods::phase(pod), "Pending" | "Running" | "Unknown")
}

fn is_evicted(pod: &Pod) -> bool {
    pod.status.as_ref().is_some_and(|s| {
        s.phase.as_deref() == Some("Failed") && s.reason.as_deref() == Some("Evicted")
    })
}

/// Terminated pods to delete so that at most `threshold` remain: evicted
/// first, then by creation time, then name. Returns indexes into `pods`.
pub fn terminated_over_threshold(all: &[Pod], threshold: usize) -> Vec<usize> {
    if threshold == 0 {
        return Vec::new();
    }
    let mut terminated: Vec<usize> = (0..all.len()).filter(|i| is_terminated(&all[*i])).collect();
    if terminated.len() <= threshold {
        return Vec::new();
    }
    terminated.sort_by(|a, b| {
        let (pa, pb) = (&all[*a], &all[*b]);
        let ka = (
            !is_evicted(pa),
            pa.metadata.creation_timestamp.as_ref().map(|t| t.0),
            pa.name_any(),
        );
        let kb = (
            !is_evicted(pb),
            pb.metadata.creation_timestamp.as_ref().map(|t| t.0),
            pb.name_any(),
        );
        ka.cmp(&kb)
    });
    let n = terminated.len() - threshold;
    terminated.truncate(n);
    terminated
}

/// Remembers since when each missing node has been missing.
#[derive(Debug, Default)]
pub struct Quarantine(HashMap<String, Instant>);

impl Quarantine {
    /// Records the nodes pods are bound to that do not exist, forgets those
    /// that came back, and returns the names missing for at least `QUARANTINE`
    /// (to be confirmed by a live read).
    pub fn update(
        &mut self,
        all: &[Pod],
        existing: &BTreeSet<String>,
        now: Instant,
    ) -> Vec<String> {
        let missing: BTreeSet<String> = all
            .iter()
            .map(node_name)
            .filter(|n| !n.is_empty() && !existing.contains(*n))
            .map(str::to_string)
            .collect();
        self.0.retain(|n, _| missing.contains(n));
        for n in &missing {
            self.0.entry(n.clone()).or_insert(now);
        }
        self.0
            .iter()
            .filter(|(_, since)| now.duration_since(**since) >= QUARANTINE)
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Forgets a node (e.g. its pods were deleted).
    pub fn forget(&mut self, name: &str) {
        self.0.remove(name);
    }
}

fn node_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "True")
}

fn out_of_service(node: &Node) -> bool {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .is_some_and(|t| t.iter().any(|t| t.key == OUT_OF_SERVICE_TAINT))
}

/// Runs the controller until shutdown.
pub async fn run(ctx: Arc<Context>, shutdown: Shutdown) -> Result<()> {
    let mut quarantine = Quarantine::default();
    loop {
        if let Err(e) = gc(&ctx, &mut quarantine).await {
            tracing::warn!(controller = ctx.name, "pod gc: {e}");
        }
        tokio::select! {
            _ = shutdown.signal() => return Ok(()),
            _ = tokio::time::sleep(GC_PERIOD) => {}
        }
    }
}

async fn gc(ctx: &Context, quarantine: &mut Quarantine) -> Result<()> {
    let pods_api: Api<Pod> = Api::all(ctx.client.clone());
    let nodes_api: Api<Node> = Api::all(ctx.client.clone());
    let all = pods_api
        .list(&ListParams::default())
        .await
        .map_err(Error::kube("list pods"))?
        .items;
    let nodes = nodes_api
        .list(&ListParams::default())
        .await
        .map_err(Error::kube("list nodes"))?
        .items;
    let existing: BTreeSet<String> = nodes.iter().map(|n| n.name_any()).collect();
    let mut done: BTreeSet<String> = BTreeSet::new();
    let uid = |p: &Pod| p.metadata.uid.clone().unwrap_or_default();

    for i in terminated_over_threshold(&all, ctx.config.terminated_pod_gc_threshold) {
        let p = &all[i];
        if done.insert(uid(p)) {
            log_err(mark_failed_and_delete(ctx, p, None).await);
        }
    }
    for p in all
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_some())
    {
        let Some(node) = nodes.iter().find(|n| n.name_any() == node_name(p)) else {
            continue;
        };
        if !node_ready(node) && out_of_service(node) && done.insert(uid(p)) {
            log_err(mark_failed_and_delete(ctx, p, None).await);
        }
    }
    for node in quarantine.update(&all, &existing, Instant::now()) {
        // Confirm with a live read before deleting anything.
        match nodes_api.get_opt(&node).await {
            Ok(Some(_)) => continue,
            Ok(None) => {}
            Err(e) => {
                tracing::debug!("get node {node}: {e}");
                continue;
            }
        }
        let cond = PodCondition {
            type_: "DisruptionTarget".into(),
            status: "True".into(),
            reason: Some("DeletionByPodGC".into()),
            message: Some("PodGC: node no longer exists".into()),
            last_transition_time: Some(pods::now()),
            ..Default::default()
        };
        for p in all.iter().filter(|p| node_name(p) == node) {
            if done.insert(uid(p)) {
                log_err(mark_failed_and_delete(ctx, p, Some(cond.clone())).await);
            }
        }
        quarantine.forget(&node);
    }
    for p in all
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_some() && node_name(p).is_empty())
    {
        if done.insert(uid(p)) {
            log_err(mark_failed_and_delete(ctx, p, None).await);
        }
    }
    Ok(())
}

fn log_err(r: Result<()>) {
    if let Err(e) = r {
        tracing::debug!("pod gc: {e}");
    }
}

/// Marks the pod Failed (with `cond`) unless it is terminal, then deletes
/// it with grace period 0.
async fn mark_failed_and_delete(
    ctx: &Context,
    pod: &Pod,
    cond: Option<PodCondition>,
) -> Result<()> {
    let ns = pod.namespace().unwrap_or_default();
    let name = pod.name_any();
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    tracing::info!(pod = %format!("{ns}/{name}"), "PodGC is force deleting Pod");
    if !matches!(pods::phase(pod), "Succeeded" | "Failed") {
        let mut conditions = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default();
        if let Some(c) = cond {
            match conditions.iter_mut().find(|x| x.type_ == c.type_) {
                Some(x) => {
                    if x.status != c.status {
                        x.last_transition_time = Some(Time(k8s_openapi::jiff::Timestamp::now()));
                    }
                    x.status = c.status;
                    x.reason = c.reason;
                    x.message = c.message;
                }
                None => conditions.push(c),
            }
        }
        let body = serde_json::json!({
            "metadata": {"uid": pod.metadata.uid},
            "status": {"phase": "Failed", "conditions": conditions},
        });
        match api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&body))
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
            Err(e) => return Err(Error::kube(format!("mark pod {ns}/{name} failed"))(e)),
        }
    }
    match api
        .delete(&name, &DeleteParams::default().grace_period(0))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(Error::kube(format!("delete pod {ns}/{name}"))(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use k8s_openapi::jiff::Timestamp;

    fn pod(name: &str, phase: &str, created: i64, node: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                uid: Some(name.into()),
                creation_timestamp: Some(Time(Timestamp::from_second(created).unwrap())),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: (!node.is_empty()).then(|| node.to_string()),
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: Some(phase.into()),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn terminated_oldest_first_evicted_before() {
        let mut evicted = pod("e", "Failed", 50, "n");
        evicted.status.as_mut().unwrap().reason = Some("Evicted".into());
        let all = vec![
            pod("a", "Succeeded", 30, "n"),
            pod("b", "Running", 1, "n"),
            pod("c", "Failed", 10, "n"),
            evicted,
            pod("d", "Succeeded", 20, "n"),
        ];
        let names = |ix: Vec<usize>| {
            ix.into_iter()
                .map(|i| all[i].name_any())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(terminated_over_threshold(&all, 2)), vec!["e", "c"]);
        assert!(terminated_over_threshold(&all, 4).is_empty());
        assert!(terminated_over_threshold(&all, 0).is_empty());
    }

    #[test]
    fn quarantine_waits_40s() {
        let all = vec![
            pod("a", "Running", 1, "gone"),
            pod("b", "Running", 1, "here"),
            pod("c", "Pending", 1, ""),
        ];
        let existing: BTreeSet<String> = ["here".to_string()].into_iter().collect();
        let mut q = Quarantine::default();
        let t0 = Instant::now();
        assert!(q.update(&all, &existing, t0).is_empty());
        assert!(q
            .update(&all, &existing, t0 + Duration::from_secs(20))
            .is_empty());
        assert_eq!(
            q.update(&all, &existing, t0 + Duration::from_secs(41)),
            vec!["gone".to_string()]
        );
        // The node came back: forgotten.
        let back: BTreeSet<String> = ["here".to_string(), "gone".to_string()]
            .into_iter()
            .collect();
        assert!(q
            .update(&all, &back, t0 + Duration::from_secs(42))
            .is_empty());
        assert!(q
            .update(&all, &existing, t0 + Duration::from_secs(43))
            .is_empty());
    }
}
