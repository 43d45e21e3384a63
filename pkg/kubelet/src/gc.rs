//! Clean-up of what no pod owns any more: sandboxes and containers in the
//! runtime labelled with the uid of a pod that is neither bound here nor
//! handled by a worker (it was deleted while the agent was down), and their
//! volume and log directories. Runs after the first full pod list, then
//! every minute. Live pods are never touched: their workers adopt what is
//! still running.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use rkube_cri::api as cri;

use crate::context::Agent;
use crate::cri_config::{LABEL_POD_NAME, LABEL_POD_NAMESPACE, LABEL_POD_UID};

/// How often the clean-up runs.
pub const EVERY: Duration = Duration::from_secs(60);

/// The pod uids among `found` that belong to no live pod and no worker.
pub fn orphans<'a>(
    found: impl IntoIterator<Item = &'a str>,
    live: &HashSet<String>,
    workers: &HashSet<String>,
) -> Vec<String> {
    let mut out: Vec<String> = found
        .into_iter()
        .filter(|u| !u.is_empty() && !live.contains(*u) && !workers.contains(*u))
        .map(String::from)
        .collect();
    out.sort();
    out.dedup();
    out
}

pub(crate) async fn run(agent: Arc<Agent>, live: Arc<std::sync::Mutex<BTreeMap<String, Pod>>>) {
    loop {
        let live_uids: HashSet<String> = live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect();
        collect(&agent, &live_uids).await;
        tokio::time::sleep(EVERY).await;
    }
}

async fn collect(agent: &Agent, live: &HashSet<String>) {
    let mut rt = agent.cri.runtime.clone();
    let Ok(sandboxes) = rt
        .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
        .await
        .map(|r| r.into_inner().items)
    else {
        return;
    };
    let containers = rt
        .list_containers(cri::ListContainersRequest { filter: None })
        .await
        .map(|r| r.into_inner().containers)
        .unwrap_or_default();
    let workers: HashSet<String> = agent.workers.lock().await.keys().cloned().collect();
    let uid_of = |l: &std::collections::HashMap<String, String>| {
        l.get(LABEL_POD_UID).cloned().unwrap_or_default()
    };
    let found: Vec<String> = sandboxes
        .iter()
        .map(|s| uid_of(&s.labels))
        .chain(containers.iter().map(|c| uid_of(&c.labels)))
        .collect();
    for uid in orphans(found.iter().map(String::as_str), live, &workers) {
        tracing::info!("removing what the runtime holds for vanished pod {uid}");
        for c in containers.iter().filter(|c| uid_of(&c.labels) == uid) {
            let _ = rt
                .stop_container(cri::StopContainerRequest {
                    container_id: c.id.clone(),
                    timeout: 0,
                })
                .await;
            let _ = rt
                .remove_container(cri::RemoveContainerRequest {
                    container_id: c.id.clone(),
                })
                .await;
        }
        for sb in sandboxes.iter().filter(|s| uid_of(&s.labels) == uid) {
            let _ = rt
                .stop_pod_sandbox(cri::StopPodSandboxRequest {
                    pod_sandbox_id: sb.id.clone(),
                })
                .await;
            let _ = rt
                .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                    pod_sandbox_id: sb.id.clone(),
                })
                .await;
            let l = &sb.labels;
            if let (Some(ns), Some(name)) = (l.get(LABEL_POD_NAMESPACE), l.get(LABEL_POD_NAME)) {
                let dir = agent.node.log_root.join(format!("{ns}_{name}_{uid}"));
                let _ = std::fs::remove_dir_all(dir);
            }
        }
        if let Err(e) = agent.volumes.teardown(&uid).await {
            tracing::warn!("removing volumes of vanished pod {uid}: {e}");
        }
    }
    // Volume directories of pods the runtime no longer knows either.
    if let Ok(rd) = std::fs::read_dir(agent.cfg.root_dir.join("pods")) {
        let dirs: Vec<String> = rd
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(String::from))
            .collect();
        for uid in orphans(dirs.iter().map(String::as_str), live, &workers) {
            let _ = agent.volumes.teardown(&uid).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orphan_selection() {
        let live: HashSet<String> = ["a".to_string()].into();
        let workers: HashSet<String> = ["b".to_string()].into();
        assert_eq!(
            orphans(["a", "b", "c", "c", "", "d"], &live, &workers),
            ["c", "d"]
        );
    }
}
