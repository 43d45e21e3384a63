//! State `Sandbox`: prepares the pod's volumes, then adopts its newest
//! ready sandbox (a restart of the agent must not restart healthy pods) or
//! runs a new one (RunPodSandbox with the runtime handler of the pod's
//! RuntimeClass), learns the pod IP and writes the pod's hosts file.
//! A sandbox that failed to start sends the pod to `BackOff`.

use std::time::{Duration, Instant};

use k8s_openapi::api::node::v1::RuntimeClass;
use kube::Api;
use rkube_cri::api as cri;

use super::common::{self, event, SANDBOX_READY};
use super::{Resume, State, Step, Worker};
use crate::cri_config;
use crate::events::Kind;
use crate::status::Waiting;

/// Back-off key of sandbox creation.
const KEY: &str = "sandbox";

fn all_names(w: &Worker) -> Vec<String> {
    let spec = w.pod.spec.clone().unwrap_or_default();
    spec.init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter())
        .map(|c| c.name.clone())
        .collect()
}

fn wait_all(w: &mut Worker, reason: &str, msg: &str) {
    for n in all_names(w) {
        w.waiting.insert(n, Waiting::new(reason, msg));
    }
}

async fn runtime_handler(w: &Worker) -> Result<String, String> {
    let Some(rc) = w
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.runtime_class_name.clone())
    else {
        return Ok(String::new());
    };
    let api: Api<RuntimeClass> = Api::all(w.agent.cfg.client.clone());
    match api.get_opt(&rc).await {
        Ok(Some(r)) => Ok(r.handler),
        Ok(None) => Err(format!("runtimeclass.node.k8s.io \"{rc}\" not found")),
        Err(e) => Err(e.to_string()),
    }
}

/// One step of the state.
pub(super) async fn step(w: &mut Worker) -> Step {
    if w.volumes.is_none() {
        match w.agent.volumes.setup(&w.pod).await {
            Ok(v) => {
                w.volumes = Some(v);
                w.volumes_refreshed = Some(Instant::now());
            }
            Err(e) => {
                let msg = e.to_string();
                if w.waiting.values().next().map(|x| x.message.as_str()) != Some(msg.as_str()) {
                    event(w, None, Kind::Warning, "FailedMount", msg.clone());
                }
                wait_all(w, "ContainerCreating", &msg);
                return Step::Stay(Duration::from_secs(2));
            }
        }
    }
    common::invalidate(w);
    let Some(obs) = common::observe(w).await else {
        return Step::Stay(Duration::from_secs(2));
    };
    let adopted = obs.ready_sandbox().map(|s| s.id.clone());
    let stale: Vec<String> = obs
        .sandboxes
        .iter()
        .filter(|s| Some(&s.id) != adopted.as_ref() && s.state == SANDBOX_READY)
        .map(|s| s.id.clone())
        .collect();
    let attempt = obs
        .sandboxes
        .iter()
        .filter_map(|s| s.metadata.as_ref().map(|m| m.attempt + 1))
        .max()
        .unwrap_or(0);
    let mut rt = w.agent.cri.runtime.clone();
    // Older ready sandboxes than the adopted one have no business running.
    for id in stale {
        let _ = rt
            .stop_pod_sandbox(cri::StopPodSandboxRequest { pod_sandbox_id: id })
            .await;
    }
    let id = match adopted {
        Some(id) => {
            tracing::debug!("{}: adopting sandbox {id}", w.key());
            id
        }
        None => {
            let handler = match runtime_handler(w).await {
                Ok(h) => h,
                Err(msg) => {
                    event(
                        w,
                        None,
                        Kind::Warning,
                        "FailedCreatePodSandBox",
                        msg.clone(),
                    );
                    wait_all(w, "ContainerCreating", &msg);
                    return Step::Stay(Duration::from_secs(5));
                }
            };
            let config = cri_config::sandbox_config(&w.agent.node, &w.pod, attempt);
            let _ = std::fs::create_dir_all(&config.log_directory);
            match rt
                .run_pod_sandbox(cri::RunPodSandboxRequest {
                    config: Some(config),
                    runtime_handler: handler,
                })
                .await
            {
                Ok(r) => {
                    w.backoff.reset(KEY);
                    // A new sandbox: probes and waiting reasons start over.
                    w.probes.clear();
                    w.waiting.clear();
                    r.into_inner().pod_sandbox_id
                }
                Err(e) => {
                    let msg = format!("Failed to create pod sandbox: {}", e.message());
                    tracing::warn!("{}: {msg}", w.key());
                    event(
                        w,
                        None,
                        Kind::Warning,
                        "FailedCreatePodSandBox",
                        msg.clone(),
                    );
                    wait_all(w, "ContainerCreating", &msg);
                    let delay = w.backoff.next(KEY, Instant::now());
                    return Step::Go(State::BackOff {
                        resume: Resume::Sandbox,
                        until: Instant::now() + delay,
                    });
                }
            }
        }
    };
    let host_network = w.pod.spec.as_ref().and_then(|s| s.host_network) == Some(true);
    w.pod_ip = if host_network {
        w.agent.cfg.node_ip.to_string()
    } else {
        rt.pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: id.clone(),
            verbose: false,
        })
        .await
        .ok()
        .and_then(|r| r.into_inner().status)
        .and_then(|s| s.network)
        .map(|n| n.ip)
        .unwrap_or_default()
    };
    if let Err(e) = w.agent.volumes.etc_hosts(&w.pod, &w.pod_ip) {
        tracing::warn!("{}: hosts file: {e}", w.key());
    }
    w.sandbox = Some(id);
    common::invalidate(w);
    Step::Go(State::Init)
}
