//! State `Completed`: the pod has finished for good (Succeeded or Failed).
//! Its final status is written at once, then what may still run (native
//! sidecars) is stopped with the grace period and the sandbox is stopped
//! (its IP released); the containers and their logs stay until the pod is
//! deleted, which moves the worker to `Terminating`.

use std::time::Duration;

use rkube_cri::api as cri;

use super::common::{self, RUNNING};
use super::{Step, Worker};

/// One step of the state.
pub(super) async fn step(w: &mut Worker) -> Step {
    if w.completed {
        return Step::Stay(Duration::from_secs(60));
    }
    common::invalidate(w);
    let Some(obs) = common::observe(w).await else {
        return Step::Stay(Duration::from_secs(2));
    };
    let running: Vec<String> = obs
        .containers
        .iter()
        .filter(|c| c.state == RUNNING)
        .map(|c| c.id.clone())
        .collect();
    let sandboxes: Vec<(String, i32)> = obs
        .sandboxes
        .iter()
        .map(|s| (s.id.clone(), s.state))
        .collect();
    w.terminal = true;
    common::sync_status(w).await;
    if !running.is_empty() {
        let grace = common::grace_seconds(&w.pod);
        let cri = w.agent.cri.clone();
        futures::future::join_all(running.into_iter().map(|id| {
            let mut rt = cri.runtime.clone();
            async move {
                let _ = rt
                    .stop_container(cri::StopContainerRequest {
                        container_id: id,
                        timeout: grace,
                    })
                    .await;
            }
        }))
        .await;
        common::invalidate(w);
        common::sync_status(w).await;
    }
    let mut rt = w.agent.cri.runtime.clone();
    for (id, state) in sandboxes {
        if state == common::SANDBOX_READY {
            let _ = rt
                .stop_pod_sandbox(cri::StopPodSandboxRequest { pod_sandbox_id: id })
                .await;
        }
    }
    tracing::info!("{}: completed", w.key());
    w.sandbox_ready = false;
    w.completed = true;
    Step::Stay(Duration::from_secs(60))
}
