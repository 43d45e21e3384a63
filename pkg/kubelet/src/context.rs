//! What the node agent's parts share: its settings ([`NodeAgentConfig`]),
//! the [`Agent`] state every task holds (CRI clients, volumes, events, node
//! facts, the pod workers) and the [`Handle`] through which the pod watch
//! talks to each worker. Defined apart from [`crate::agent`], which wires
//! them, so that the node, pod and GC modules depend on this module only.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use tokio::sync::{Mutex, Notify};

use crate::cri_config::NodeFacts;
use crate::events::Recorder;
use crate::volumes::VolumeManager;

/// Settings of the node agent.
#[derive(Clone)]
pub struct NodeAgentConfig {
    /// Node name.
    pub node_name: String,
    /// Client authenticated as `system:node:<name>`.
    pub client: kube::Client,
    /// CRI socket of the runtime.
    pub cri_socket: PathBuf,
    /// State directory: `pods/` (volumes) and `logs/` (container logs,
    /// `<ns>_<pod>_<uid>/<container>/<restart>.log`).
    pub root_dir: PathBuf,
    /// Pod capacity (110).
    pub max_pods: u32,
    /// Cluster DNS servers (empty: pods use the host's resolv.conf).
    pub cluster_dns: Vec<String>,
    /// Cluster domain (cluster.local).
    pub cluster_domain: String,
    /// The node's address.
    pub node_ip: IpAddr,
    /// API server host for in-pod clients (KUBERNETES_SERVICE_HOST).
    pub api_host: String,
    /// API server port for in-pod clients (KUBERNETES_SERVICE_PORT).
    pub api_port: u16,
    /// Cluster CA (PEM): ca.crt of service-account volumes, and the CA of
    /// client certificates the server accepts.
    pub cluster_ca_pem: String,
    /// Serving certificate of the node agent's HTTPS server.
    pub serving_cert_pem: Vec<u8>,
    /// Its key.
    pub serving_key_pem: Vec<u8>,
    /// Port of the HTTPS server (0 picks one; it is published in
    /// Node.status.daemonEndpoints.kubeletEndpoint.Port).
    pub server_port: u16,
    /// cgroup parent of pod sandboxes.
    pub cgroup_parent: Option<String>,
}

/// What every part of the agent shares.
pub(crate) struct Agent {
    pub cfg: NodeAgentConfig,
    pub cri: rkube_cri::Clients,
    pub volumes: VolumeManager,
    pub events: Recorder,
    pub node: NodeFacts,
    pub allocatable: BTreeMap<String, Quantity>,
    pub workers: Mutex<HashMap<String, Arc<Handle>>>,
    runtime_name: std::sync::Mutex<String>,
}

impl Agent {
    /// The shared state of a starting agent: no workers yet.
    pub fn new(
        cfg: NodeAgentConfig,
        cri: rkube_cri::Clients,
        volumes: VolumeManager,
        node: NodeFacts,
        allocatable: BTreeMap<String, Quantity>,
    ) -> Self {
        Agent {
            events: Recorder::new(cfg.client.clone(), cfg.node_name.clone()),
            cfg,
            cri,
            volumes,
            node,
            allocatable,
            workers: Mutex::new(HashMap::new()),
            runtime_name: Default::default(),
        }
    }

    /// The runtime's name for container IDs (`containerd`).
    pub fn runtime_name(&self) -> String {
        let n = self
            .runtime_name
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if n.is_empty() {
            "containerd".into()
        } else {
            n
        }
    }

    /// Records the runtime's name (from CRI Version).
    pub fn set_runtime_name(&self, name: &str) {
        *self.runtime_name.lock().unwrap_or_else(|e| e.into_inner()) = name.to_string();
    }
}

/// The watch's side of a worker: the latest pod object and a wake-up.
pub(crate) struct Handle {
    pod: std::sync::Mutex<Pod>,
    gone: AtomicBool,
    stopped: AtomicBool,
    wake: Notify,
}

impl Handle {
    /// The handle of a new worker for `pod`.
    pub fn new(pod: Pod) -> Self {
        Handle {
            pod: std::sync::Mutex::new(pod),
            gone: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            wake: Notify::new(),
        }
    }

    /// A newer version of the pod.
    pub fn update(&self, pod: Pod) {
        *self.pod.lock().unwrap_or_else(|e| e.into_inner()) = pod;
        self.wake.notify_one();
    }

    /// The pod object is gone from the API (its last version, if known).
    pub fn set_gone(&self, last: Option<Pod>) {
        if let Some(p) = last {
            *self.pod.lock().unwrap_or_else(|e| e.into_inner()) = p;
        }
        self.gone.store(true, Ordering::SeqCst);
        self.wake.notify_one();
    }

    /// The agent shuts down: stop without touching the containers.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        self.wake.notify_one();
    }

    /// The latest pod object.
    pub fn pod(&self) -> Pod {
        self.pod.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The pod object is gone from the API.
    pub fn is_gone(&self) -> bool {
        self.gone.load(Ordering::SeqCst)
    }

    /// The agent is shutting down.
    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    /// Waits for the next update, deletion or stop.
    pub async fn woken(&self) {
        self.wake.notified().await
    }
}
