//! The Node object: registration (create, or update of an existing one),
//! capacity and allocatable, addresses, nodeInfo, and the conditions, where
//! Ready follows the runtime's CRI Status (RuntimeReady and NetworkReady)
//! polled every 5 s. Status is posted at least every 10 s and at once on a
//! change of readiness. The message texts follow the kubelet's.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Node;
use kube::api::{Patch, PatchParams, PostParams};
use kube::Api;
use rkube_cri::api as cri;
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::context::Agent;

/// Kubelet version reported in nodeInfo.
pub const KUBELET_VERSION: &str = "v1.33.0-rkube.1";
/// How often the runtime's status is polled.
pub const RUNTIME_POLL: Duration = Duration::from_secs(5);
/// Longest time between two status posts.
pub const STATUS_EVERY: Duration = Duration::from_secs(10);

/// What the runtime says about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Readiness {
    /// Node Ready.
    pub ready: bool,
    /// The NotReady message ("" when ready).
    pub message: String,
}

/// Readiness from the CRI Status call: `Err` = the runtime did not answer.
pub fn readiness(status: Result<&[cri::RuntimeCondition], &str>) -> Readiness {
    let conds = match status {
        Ok(c) => c,
        Err(_) => {
            return Readiness {
                ready: false,
                message: "container runtime is down".into(),
            }
        }
    };
    let get = |t: &str| conds.iter().find(|c| c.r#type == t);
    let describe = |t: &str| match get(t) {
        Some(c) => format!("{t}=false reason:{} message:{}", c.reason, c.message),
        None => format!("{t}=false reason: message:condition missing"),
    };
    if !get("RuntimeReady").is_some_and(|c| c.status) {
        return Readiness {
            ready: false,
            message: format!("container runtime not ready: {}", describe("RuntimeReady")),
        };
    }
    if !get("NetworkReady").is_some_and(|c| c.status) {
        return Readiness {
            ready: false,
            message: format!(
                "container runtime network not ready: {}",
                describe("NetworkReady")
            ),
        };
    }
    Readiness {
        ready: true,
        message: String::new(),
    }
}

/// Host facts for the Node object (read once, except capacity).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostFacts {
    /// CPU cores.
    pub cpus: usize,
    /// Memory in KiB.
    pub memory_kib: u64,
    /// Size of the filesystem of the root dir, bytes.
    pub disk_bytes: u64,
    /// uname release.
    pub kernel: String,
    /// /etc/os-release PRETTY_NAME.
    pub os_image: String,
    /// amd64, arm64, ...
    pub arch: String,
    /// /etc/machine-id.
    pub machine_id: String,
    /// DMI product uuid (if readable).
    pub system_uuid: String,
    /// Boot id.
    pub boot_id: String,
}

fn read_trim(p: &str) -> String {
    std::fs::read_to_string(p)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// MemTotal of a /proc/meminfo text, in KiB.
pub fn meminfo_kib(text: &str) -> u64 {
    text.lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

/// PRETTY_NAME of an os-release text.
pub fn pretty_name(text: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_else(|| "Linux".into())
}

/// The Kubernetes name of this machine's architecture.
pub fn arch() -> String {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        a => a,
    }
    .to_string()
}

impl HostFacts {
    /// Reads them from the host.
    pub fn read(root_dir: &std::path::Path) -> Self {
        HostFacts {
            cpus: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            memory_kib: meminfo_kib(&read_trim("/proc/meminfo")),
            disk_bytes: nix::sys::statvfs::statvfs(root_dir)
                .map(|s| s.blocks() * s.fragment_size())
                .unwrap_or(0),
            kernel: nix::sys::utsname::uname()
                .map(|u| u.release().to_string_lossy().into_owned())
                .unwrap_or_default(),
            os_image: pretty_name(&read_trim("/etc/os-release")),
            arch: arch(),
            machine_id: read_trim("/etc/machine-id"),
            system_uuid: read_trim("/sys/class/dmi/id/product_uuid"),
            boot_id: read_trim("/proc/sys/kernel/random/boot_id"),
        }
    }
}

/// The Node object for registration.
pub fn node_object(name: &str, arch: &str, port: u16) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": node_labels(name, arch)},
        "spec": {},
        "status": {"daemonEndpoints": {"kubeletEndpoint": {"Port": port}}}
    })
}

/// The labels the node agent sets on its Node.
pub fn node_labels(name: &str, arch: &str) -> Value {
    json!({
        "kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": arch,
        "beta.kubernetes.io/os": "linux", "beta.kubernetes.io/arch": arch,
        "node-role.kubernetes.io/control-plane": "",
    })
}

/// Inputs of the status patch besides the host facts.
pub struct NodeStatusInput<'a> {
    /// Node name.
    pub name: &'a str,
    /// Node IP.
    pub ip: &'a str,
    /// Max pods.
    pub max_pods: u32,
    /// The node agent's server port.
    pub port: u16,
    /// Runtime readiness.
    pub readiness: &'a Readiness,
    /// `<name>://<version>` from CRI Version.
    pub runtime_version: &'a str,
    /// The Node as last read (for transition times).
    pub prev: Option<&'a Node>,
    /// Now (RFC 3339).
    pub now: &'a str,
}

/// The merge patch of the Node's status.
pub fn status_patch(h: &HostFacts, i: &NodeStatusInput<'_>) -> Value {
    let prev_cond = |t: &str| {
        i.prev
            .and_then(|n| n.status.as_ref())
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == t))
            .map(|c| {
                (
                    c.status.clone(),
                    c.last_transition_time
                        .as_ref()
                        .map(|t| t.0.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()),
                )
            })
    };
    let cond = |t: &str, status: &str, reason: &str, message: &str| {
        let transition = match prev_cond(t) {
            Some((s, Some(at))) if s == status => at,
            _ => i.now.to_string(),
        };
        json!({"type": t, "status": status, "reason": reason, "message": message,
               "lastHeartbeatTime": i.now, "lastTransitionTime": transition})
    };
    let ready = if i.readiness.ready {
        cond(
            "Ready",
            "True",
            "KubeletReady",
            "kubelet is posting ready status",
        )
    } else {
        cond("Ready", "False", "KubeletNotReady", &i.readiness.message)
    };
    let capacity = json!({
        "cpu": h.cpus.to_string(), "memory": format!("{}Ki", h.memory_kib),
        "ephemeral-storage": h.disk_bytes.to_string(), "pods": i.max_pods.to_string(),
    });
    json!({"status": {
        "capacity": capacity, "allocatable": capacity,
        "conditions": [
            cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
            cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            cond("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
            ready,
        ],
        "addresses": [{"type": "InternalIP", "address": i.ip}, {"type": "Hostname", "address": i.name}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": i.port}},
        "nodeInfo": {
            "machineID": h.machine_id, "systemUUID": h.system_uuid, "bootID": h.boot_id,
            "kernelVersion": h.kernel, "osImage": h.os_image, "operatingSystem": "linux",
            "architecture": h.arch, "containerRuntimeVersion": i.runtime_version,
            "kubeletVersion": KUBELET_VERSION, "kubeProxyVersion": KUBELET_VERSION,
        },
    }})
}

/// Asks the runtime: readiness, and (`<name>://<version>`, name).
async fn probe_runtime(agent: &Agent) -> (Readiness, Option<(String, String)>) {
    let mut rt = agent.cri.runtime.clone();
    let version = tokio::time::timeout(
        Duration::from_secs(4),
        rt.version(cri::VersionRequest {
            version: "v1".into(),
        }),
    )
    .await
    .ok()
    .and_then(|r| r.ok())
    .map(|v| {
        let v = v.into_inner();
        (
            format!("{}://{}", v.runtime_name, v.runtime_version),
            v.runtime_name,
        )
    });
    let status = tokio::time::timeout(
        Duration::from_secs(4),
        rt.status(cri::StatusRequest { verbose: false }),
    )
    .await;
    let r = match status {
        Ok(Ok(s)) => {
            let conds = s
                .into_inner()
                .status
                .map(|s| s.conditions)
                .unwrap_or_default();
            readiness(Ok(&conds))
        }
        Ok(Err(e)) => readiness(Err(e.message())),
        Err(_) => readiness(Err("timeout")),
    };
    (r, version)
}

/// Registers the node, then keeps its status (and the Lease) fresh until
/// shutdown.
pub(crate) async fn run(agent: Arc<Agent>, port: u16, mut shutdown: watch::Receiver<bool>) {
    let nodes: Api<Node> = Api::all(agent.cfg.client.clone());
    let name = agent.cfg.node_name.clone();
    let mut facts = HostFacts::read(&agent.cfg.root_dir);
    let mut registered = false;
    let mut last: Option<Readiness> = None;
    let mut last_post: Option<Instant> = None;
    let mut runtime_version = String::new();
    let mut lease = crate::lease::LeaseKeeper::new(agent.cfg.client.clone(), &name);
    loop {
        if *shutdown.borrow() {
            return;
        }
        if !registered {
            match register(&nodes, &name, &facts.arch, port).await {
                Ok(()) => registered = true,
                Err(e) => tracing::warn!("registering node {name}: {e}"),
            }
        }
        let (r, version) = probe_runtime(&agent).await;
        if let Some((v, rt_name)) = version {
            runtime_version = v;
            agent.set_runtime_name(&rt_name);
        }
        let changed = last.as_ref() != Some(&r);
        if registered && (changed || last_post.is_none_or(|t| t.elapsed() >= STATUS_EVERY)) {
            if changed {
                tracing::info!(
                    "node {name}: {}",
                    if r.ready { "Ready" } else { &r.message }
                );
            }
            facts.disk_bytes = HostFacts::read(&agent.cfg.root_dir).disk_bytes;
            let prev = nodes.get_opt(&name).await.ok().flatten();
            let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
            let ip = agent.cfg.node_ip.to_string();
            let patch = status_patch(
                &facts,
                &NodeStatusInput {
                    name: &name,
                    ip: &ip,
                    max_pods: agent.cfg.max_pods,
                    port,
                    readiness: &r,
                    runtime_version: &runtime_version,
                    prev: prev.as_ref(),
                    now: &now,
                },
            );
            match nodes
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {
                    last = Some(r.clone());
                    last_post = Some(Instant::now());
                }
                Err(kube::Error::Api(e)) if e.code == 404 => registered = false,
                Err(e) => tracing::warn!("node status: {e}"),
            }
            if let Some(uid) = prev.and_then(|n| n.metadata.uid) {
                lease.set_owner(uid);
            }
        }
        if registered {
            lease.tick().await;
        }
        tokio::select! {
            _ = tokio::time::sleep(RUNTIME_POLL) => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// Creates the Node, or updates the labels of an existing one.
async fn register(nodes: &Api<Node>, name: &str, arch: &str, port: u16) -> Result<(), kube::Error> {
    let obj = node_object(name, arch, port);
    let node: Node = serde_json::from_value(obj).map_err(kube::Error::SerdeError)?;
    match nodes.create(&PostParams::default(), &node).await {
        Ok(_) => {
            tracing::info!("registered node {name}");
            Ok(())
        }
        Err(kube::Error::Api(e)) if e.code == 409 => {
            nodes
                .patch(
                    name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"metadata": {"labels": node_labels(name, arch)}})),
                )
                .await?;
            Ok(())
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(t: &str, ok: bool, reason: &str, msg: &str) -> cri::RuntimeCondition {
        cri::RuntimeCondition {
            r#type: t.into(),
            status: ok,
            reason: reason.into(),
            message: msg.into(),
        }
    }

    #[test]
    fn readiness_messages() {
        assert_eq!(readiness(Err("x")).message, "container runtime is down");
        let ok = [
            c("RuntimeReady", true, "", ""),
            c("NetworkReady", true, "", ""),
        ];
        assert!(readiness(Ok(&ok)).ready);
        let net = [
            c("RuntimeReady", true, "", ""),
            c(
                "NetworkReady",
                false,
                "NetworkPluginNotReady",
                "cni plugin not initialized",
            ),
        ];
        let r = readiness(Ok(&net));
        assert!(!r.ready);
        assert_eq!(
            r.message,
            "container runtime network not ready: NetworkReady=false \
             reason:NetworkPluginNotReady message:cni plugin not initialized"
        );
        let rt = [
            c("RuntimeReady", false, "R", "m"),
            c("NetworkReady", true, "", ""),
        ];
        assert_eq!(
            readiness(Ok(&rt)).message,
            "container runtime not ready: RuntimeReady=false reason:R message:m"
        );
    }

    #[test]
    fn parse_host_files() {
        assert_eq!(
            meminfo_kib("MemTotal:       16318532 kB\nMemFree: 1 kB\n"),
            16318532
        );
        assert_eq!(
            pretty_name("NAME=x\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n"),
            "Debian GNU/Linux 12 (bookworm)"
        );
    }

    #[test]
    fn status_patch_contents() {
        let h = HostFacts {
            cpus: 2,
            memory_kib: 1000,
            disk_bytes: 5,
            arch: "amd64".into(),
            ..Default::default()
        };
        let prev: Node = serde_json::from_value(json!({"metadata": {"name": "n"}, "status": {"conditions": [
            {"type": "Ready", "status": "True", "lastTransitionTime": "2020-01-01T00:00:00Z"},
            {"type": "MemoryPressure", "status": "True", "lastTransitionTime": "2020-01-01T00:00:00Z"}]}}))
        .unwrap();
        let r = Readiness {
            ready: true,
            message: String::new(),
        };
        let p = status_patch(
            &h,
            &NodeStatusInput {
                name: "n",
                ip: "10.0.0.1",
                max_pods: 110,
                port: 10250,
                readiness: &r,
                runtime_version: "containerd://1.6.20",
                prev: Some(&prev),
                now: "2024-01-01T00:00:00Z",
            },
        );
        let s = &p["status"];
        assert_eq!(s["capacity"]["memory"], "1000Ki");
        assert_eq!(s["capacity"]["pods"], "110");
        assert_eq!(s["allocatable"]["cpu"], "2");
        assert_eq!(s["daemonEndpoints"]["kubeletEndpoint"]["Port"], 10250);
        assert_eq!(
            s["nodeInfo"]["containerRuntimeVersion"],
            "containerd://1.6.20"
        );
        assert_eq!(s["nodeInfo"]["kubeletVersion"], KUBELET_VERSION);
        let cond = |t: &str| {
            s["conditions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["type"] == t)
                .unwrap()
                .clone()
        };
        assert_eq!(cond("Ready")["reason"], "KubeletReady");
        assert_eq!(cond("Ready")["message"], "kubelet is posting ready status");
        assert_eq!(cond("Ready")["lastTransitionTime"], "2020-01-01T00:00:00Z");
        assert_eq!(cond("Ready")["lastHeartbeatTime"], "2024-01-01T00:00:00Z");
        assert_eq!(
            cond("MemoryPressure")["lastTransitionTime"],
            "2024-01-01T00:00:00Z"
        );
        assert_eq!(cond("DiskPressure")["reason"], "KubeletHasNoDiskPressure");
        assert_eq!(s["addresses"][0]["address"], "10.0.0.1");
    }
}
