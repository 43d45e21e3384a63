//! State `Terminating`: graceful deletion. The grace period is the pod's
//! deletionGracePeriodSeconds (else terminationGracePeriodSeconds, 30 s),
//! counted from when the worker first saw the deletion. Every running
//! container gets its preStop hook (bounded by the grace period) and then
//! StopContainer with the grace that remains; then the sandboxes are
//! stopped and removed, the volumes torn down, the logs removed, and the
//! pod object is deleted with gracePeriodSeconds=0 and a uid precondition
//! (the API server keeps a bound pod until its node agent does this).

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, Preconditions};
use kube::Api;
use rkube_cri::api as cri;

use super::common::{self, event, RUNNING};
use super::{State, Step, Worker};
use crate::cri_config;
use crate::events::Kind;

/// The grace period of a pod being deleted, in seconds.
pub fn deletion_grace(pod: &Pod) -> i64 {
    pod.metadata
        .deletion_grace_period_seconds
        .unwrap_or_else(|| common::grace_seconds(pod))
        .max(0)
}

/// One step of the state.
pub(super) async fn step(w: &mut Worker) -> Step {
    let since = *w.deleting_since.get_or_insert_with(Instant::now);
    let deadline = since + Duration::from_secs(deletion_grace(&w.pod) as u64);
    common::invalidate(w);
    let Some(obs) = common::observe(w).await else {
        // The runtime is away: try again (the object waits for us).
        return Step::Stay(Duration::from_secs(2));
    };
    let running: Vec<cri::ContainerStatus> = obs
        .containers
        .iter()
        .filter(|c| c.state == RUNNING)
        .cloned()
        .collect();
    let sandboxes: Vec<String> = obs.sandboxes.iter().map(|s| s.id.clone()).collect();
    let spec = w.pod.spec.clone().unwrap_or_default();
    let mut stops = Vec::new();
    for c in running {
        let name = crate::status::container_name(&c).to_string();
        let container = spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
            .find(|s| s.name == name)
            .cloned();
        event(
            w,
            Some(&name),
            Kind::Normal,
            "Killing",
            format!("Stopping container {name}"),
        );
        let cri = w.agent.cri.clone();
        let pod_ip = w.pod_ip.clone();
        let key = w.key();
        stops.push(async move {
            if let Some(spec) = &container {
                if let Some(h) = spec.lifecycle.as_ref().and_then(|l| l.pre_stop.as_ref()) {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if let Err(msg) =
                        crate::hooks::run_handler(&cri, h, spec, &c.id, &pod_ip, left).await
                    {
                        tracing::info!("{key}: preStop hook of {name} failed: {msg}");
                    }
                }
            }
            let left = deadline.saturating_duration_since(Instant::now()).as_secs() as i64;
            let mut rt = cri.runtime.clone();
            if let Err(e) = rt
                .stop_container(cri::StopContainerRequest {
                    container_id: c.id.clone(),
                    timeout: left,
                })
                .await
            {
                tracing::warn!("{key}: stopping {name}: {}", e.message());
            }
        });
    }
    futures::future::join_all(stops).await;
    common::invalidate(w);
    w.terminal = true;
    if !w.gone {
        common::sync_status(w).await;
    }
    let mut rt = w.agent.cri.runtime.clone();
    for id in sandboxes {
        let _ = rt
            .stop_pod_sandbox(cri::StopPodSandboxRequest {
                pod_sandbox_id: id.clone(),
            })
            .await;
        if let Err(e) = rt
            .remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: id })
            .await
        {
            tracing::warn!("{}: removing sandbox: {}", w.key(), e.message());
            return Step::Stay(Duration::from_secs(2));
        }
    }
    if let Err(e) = w.agent.volumes.teardown(&w.uid).await {
        tracing::warn!("{}: removing volumes: {e}", w.key());
    }
    let _ = std::fs::remove_dir_all(cri_config::pod_log_dir(&w.agent.node.log_root, &w.pod));
    if !w.gone {
        let (ns, name, uid) = cri_config::pod_key(&w.pod);
        let api: Api<Pod> = Api::namespaced(w.agent.cfg.client.clone(), &ns);
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(uid),
                resource_version: None,
            }),
            ..Default::default()
        };
        match api.delete(&name, &dp).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
            Err(e) => {
                tracing::warn!("{}: deleting the pod object: {e}", w.key());
                return Step::Stay(Duration::from_secs(2));
            }
        }
    }
    tracing::info!("{}: removed", w.key());
    Step::Go(State::Done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn grace() {
        let p = |v| serde_json::from_value::<Pod>(v).unwrap();
        assert_eq!(deletion_grace(&p(json!({"metadata": {}}))), 30);
        assert_eq!(
            deletion_grace(&p(
                json!({"metadata": {}, "spec": {"containers": [], "terminationGracePeriodSeconds": 5}})
            )),
            5
        );
        assert_eq!(
            deletion_grace(&p(json!({"metadata": {"deletionGracePeriodSeconds": 2},
                "spec": {"containers": [], "terminationGracePeriodSeconds": 5}}))),
            2
        );
    }
}
