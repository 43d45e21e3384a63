//! The Node object and its Lease: capacity, conditions (Ready follows the
//! runtime's CRI Status), addresses, nodeInfo and the heartbeat.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Patch, PatchParams, PostParams};
use kube::Api;
use serde_json::{json, Value};
use tokio::sync::watch;

use super::Agent;

/// Kubelet version reported in nodeInfo.
pub const KUBELET_VERSION: &str = "v1.33.0-rkube.1";

fn read_trim(p: &str) -> String {
    std::fs::read_to_string(p)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn mem_kib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn disk_bytes(path: &std::path::Path) -> u64 {
    nix::sys::statvfs::statvfs(path)
        .map(|s| s.blocks() * s.fragment_size())
        .unwrap_or(0)
}

fn os_image() -> String {
    std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("PRETTY_NAME=")).map(|l| {
                l.trim_start_matches("PRETTY_NAME=")
                    .trim_matches('"')
                    .to_string()
            })
        })
        .unwrap_or_else(|| "Linux".into())
}

/// Runtime readiness from CRI Status: (ready, message).
async fn runtime_ready(agent: &Agent) -> (bool, String, String) {
    let mut rt = agent.cri.runtime.clone();
    let version = match rt
        .version(rkube_cri::api::VersionRequest {
            version: "v1".into(),
        })
        .await
    {
        Ok(v) => {
            let v = v.into_inner();
            *agent.runtime_name.lock().await = v.runtime_name.clone();
            format!("{}://{}", v.runtime_name, v.runtime_version)
        }
        Err(e) => {
            return (
                false,
                format!("container runtime is down: {}", e.message()),
                String::new(),
            )
        }
    };
    match rt
        .status(rkube_cri::api::StatusRequest { verbose: false })
        .await
    {
        Ok(s) => {
            let conds = s
                .into_inner()
                .status
                .map(|s| s.conditions)
                .unwrap_or_default();
            let mut bad = Vec::new();
            for want in ["RuntimeReady", "NetworkReady"] {
                match conds.iter().find(|c| c.r#type == want) {
                    Some(c) if c.status => {}
                    Some(c) => bad.push(format!(
                        "{want}=false reason:{} message:{}",
                        c.reason, c.message
                    )),
                    None => bad.push(format!("{want} missing")),
                }
            }
            if bad.is_empty() {
                (true, String::new(), version)
            } else {
                (
                    false,
                    format!("container runtime network not ready: {}", bad.join(", ")),
                    version,
                )
            }
        }
        Err(e) => (
            false,
            format!("container runtime status check failed: {}", e.message()),
            version,
        ),
    }
}

fn node_object(agent: &Agent, port: u16) -> Value {
    let cfg = &agent.cfg;
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        a => a,
    };
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": cfg.node_name, "labels": {
            "kubernetes.io/hostname": cfg.node_name, "kubernetes.io/os": "linux", "kubernetes.io/arch": arch,
            "beta.kubernetes.io/os": "linux", "beta.kubernetes.io/arch": arch,
            "node-role.kubernetes.io/control-plane": ""}},
        "spec": {"podCIDR": "10.244.0.0/24", "podCIDRs": ["10.244.0.0/24"]},
        "status": {"daemonEndpoints": {"kubeletEndpoint": {"Port": port}}}
    })
}

fn status_patch(
    agent: &Agent,
    port: u16,
    ready: bool,
    msg: &str,
    runtime_version: &str,
    prev: Option<&Node>,
) -> Value {
    let cfg = &agent.cfg;
    let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let mem = format!("{}Ki", mem_kib());
    let disk = disk_bytes(&cfg.root_dir).to_string();
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        a => a,
    };
    let prev_cond = |t: &str| -> Option<(String, String)> {
        prev.and_then(|n| n.status.as_ref())
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == t))
            .map(|c| {
                (
                    c.status.clone(),
                    c.last_transition_time
                        .as_ref()
                        .map(|t| t.0.to_string())
                        .unwrap_or_default(),
                )
            })
    };
    let cond = |t: &str, status: &str, reason: &str, message: &str| {
        let transition = match prev_cond(t) {
            Some((s, at)) if s == status && !at.is_empty() => at,
            _ => now.clone(),
        };
        json!({"type": t, "status": status, "reason": reason, "message": message,
               "lastHeartbeatTime": now, "lastTransitionTime": transition})
    };
    let (rs, rr, rm) = if ready {
        (
            "True",
            "KubeletReady",
            "kubelet is posting ready status".to_string(),
        )
    } else {
        ("False", "KubeletNotReady", msg.to_string())
    };
    let uname = nix::sys::utsname::uname().ok();
    let kernel = uname
        .as_ref()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    let capacity = json!({"cpu": cpus.to_string(), "memory": mem, "ephemeral-storage": disk, "pods": cfg.max_pods.to_string()});
    json!({"status": {
        "capacity": capacity, "allocatable": capacity,
        "conditions": [
            cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
            cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            cond("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
            cond("Ready", rs, rr, &rm),
        ],
        "addresses": [{"type": "InternalIP", "address": cfg.node_ip.to_string()}, {"type": "Hostname", "address": cfg.node_name}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
        "nodeInfo": {
            "machineID": read_trim("/etc/machine-id"),
            "systemUUID": read_trim("/sys/class/dmi/id/product_uuid"),
            "bootID": read_trim("/proc/sys/kernel/random/boot_id"),
            "kernelVersion": kernel, "osImage": os_image(), "operatingSystem": "linux", "architecture": arch,
            "containerRuntimeVersion": runtime_version, "kubeletVersion": KUBELET_VERSION, "kubeProxyVersion": KUBELET_VERSION,
        },
    }})
}

/// Registers the node, then posts status every 10 s (sooner on a change of
/// runtime readiness) and renews the Lease.
pub(crate) async fn run(agent: Arc<Agent>, port: u16, shutdown: watch::Receiver<bool>) {
    let nodes: Api<Node> = Api::all(agent.cfg.client.clone());
    let name = agent.cfg.node_name.clone();
    let mut last_ready: Option<bool> = None;
    let mut last_post = std::time::Instant::now() - Duration::from_secs(60);
    let mut last_lease = std::time::Instant::now() - Duration::from_secs(60);
    loop {
        if *shutdown.borrow() {
            return;
        }
        let existing = nodes.get_opt(&name).await.ok().flatten();
        if existing.is_none() {
            let obj: Node = match serde_json::from_value(node_object(&agent, port)) {
                Ok(n) => n,
                Err(e) => {
                    tracing::error!("node object: {e}");
                    return;
                }
            };
            if let Err(e) = nodes.create(&PostParams::default(), &obj).await {
                tracing::warn!("registering node {name}: {e}");
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
            tracing::info!("registered node {name}");
        }
        let (ready, msg, version) = runtime_ready(&agent).await;
        if last_ready != Some(ready) || last_post.elapsed() >= Duration::from_secs(10) {
            let patch = status_patch(&agent, port, ready, &msg, &version, existing.as_ref());
            match nodes
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {
                    last_ready = Some(ready);
                    last_post = std::time::Instant::now();
                }
                Err(e) => tracing::warn!("node status: {e}"),
            }
        }
        if last_lease.elapsed() >= Duration::from_secs(10) {
            if let Err(e) = renew_lease(&agent, existing.as_ref()).await {
                tracing::warn!("node lease: {e}");
            } else {
                last_lease = std::time::Instant::now();
            }
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

async fn renew_lease(agent: &Agent, node: Option<&Node>) -> Result<(), kube::Error> {
    let leases: Api<Lease> = Api::namespaced(agent.cfg.client.clone(), "kube-node-lease");
    let name = &agent.cfg.node_name;
    let now = chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string();
    let mut obj = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": name, "namespace": "kube-node-lease"},
        "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": now}});
    if let Some(uid) = node.and_then(|n| n.metadata.uid.clone()) {
        obj["metadata"]["ownerReferences"] =
            json!([{"apiVersion": "v1", "kind": "Node", "name": name, "uid": uid}]);
    }
    match leases.get_opt(name).await? {
        None => {
            let l: Lease = serde_json::from_value(obj).map_err(kube::Error::SerdeError)?;
            leases.create(&PostParams::default(), &l).await?;
        }
        Some(_) => {
            leases
                .patch(
                    name,
                    &PatchParams::default(),
                    &Patch::Merge(&json!({"spec": {"renewTime": now, "holderIdentity": name}})),
                )
                .await?;
        }
    }
    Ok(())
}
