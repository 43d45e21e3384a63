//! The node agent: registers the Node and its Lease, then keeps every pod
//! bound to this node in sync with the container runtime over CRI. The sync
//! is level-triggered: each pass reads the runtime's sandboxes and containers
//! (labelled with the pod uid and container name, so state survives restarts
//! of rkube) and does the next step toward the pod spec.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::watcher;
use kube::Api;
use tokio::sync::{watch, Mutex};

mod events;
mod node;
mod pod;
mod status;

pub use status::{compute_phase, PodPhaseInput};

/// Settings of the node agent.
#[derive(Clone)]
pub struct NodeAgentConfig {
    /// Node name.
    pub node_name: String,
    /// Client authenticated as `system:node:<name>`.
    pub client: kube::Client,
    /// CRI socket of the runtime.
    pub cri_socket: PathBuf,
    /// State directory (pods/, logs/).
    pub root_dir: PathBuf,
    /// Pod capacity.
    pub max_pods: u32,
    /// Cluster DNS servers (empty: pods use the host's resolv.conf).
    pub cluster_dns: Vec<String>,
    /// Cluster domain.
    pub cluster_domain: String,
    /// The node's address.
    pub node_ip: IpAddr,
    /// API server host for in-pod clients.
    pub api_host: String,
    /// API server port for in-pod clients.
    pub api_port: u16,
    /// Cluster CA (PEM).
    pub cluster_ca_pem: String,
    /// Serving certificate of the node agent's HTTPS server.
    pub serving_cert_pem: Vec<u8>,
    /// Its key.
    pub serving_key_pem: Vec<u8>,
    /// Port of the HTTPS server (0 picks one).
    pub server_port: u16,
    /// cgroup parent of pod sandboxes.
    pub cgroup_parent: Option<String>,
}

/// Errors that stop the node agent.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The CRI socket could not be used.
    #[error("cri: {0}")]
    Cri(#[from] rkube_cri::Error),
    /// The streaming server could not start.
    #[error("node agent server: {0}")]
    Server(#[from] crate::server::Error),
    /// The API server refused a request.
    #[error("kubernetes api: {0}")]
    Kube(#[from] kube::Error),
}

/// Shared state of the agent.
pub(crate) struct Agent {
    pub cfg: NodeAgentConfig,
    pub cri: rkube_cri::Clients,
    pub volumes: crate::volumes::VolumeManager,
    pub pods: Mutex<HashMap<String, Arc<pod::Shared>>>,
    pub runtime_name: Mutex<String>,
}

/// Runs the node agent until `shutdown` flips to true.
pub async fn run(cfg: NodeAgentConfig, mut shutdown: watch::Receiver<bool>) -> Result<(), Error> {
    let cri = rkube_cri::connect(&cfg.cri_socket)?;
    let server_addr = crate::server::start(
        crate::server::ServerConfig {
            node_name: cfg.node_name.clone(),
            cri: cri.clone(),
            log_root: cfg.root_dir.join("logs"),
            serving_cert_pem: cfg.serving_cert_pem.clone(),
            serving_key_pem: cfg.serving_key_pem.clone(),
            client_ca_pem: cfg.cluster_ca_pem.clone().into_bytes(),
            bind: std::net::SocketAddr::new(IpAddr::from([0, 0, 0, 0]), cfg.server_port),
        },
        shutdown.clone(),
    )
    .await?;
    let volumes = crate::volumes::VolumeManager::new(
        cfg.root_dir.clone(),
        cfg.client.clone(),
        cfg.cluster_ca_pem.clone(),
    )
    .with_cluster_domain(cfg.cluster_domain.clone());
    let agent = Arc::new(Agent {
        cfg: cfg.clone(),
        cri,
        volumes,
        pods: Mutex::new(HashMap::new()),
        runtime_name: Mutex::new(String::new()),
    });
    let node_task = tokio::spawn(node::run(
        agent.clone(),
        server_addr.port(),
        shutdown.clone(),
    ));
    let pods_task = tokio::spawn(pod_loop(agent.clone(), shutdown.clone()));
    let _ = shutdown.wait_for(|s| *s).await;
    node_task.abort();
    pods_task.abort();
    Ok(())
}

/// Watches this node's pods and keeps one worker per pod.
async fn pod_loop(agent: Arc<Agent>, shutdown: watch::Receiver<bool>) {
    let api: Api<Pod> = Api::all(agent.cfg.client.clone());
    let wc = watcher::Config::default().fields(&format!("spec.nodeName={}", agent.cfg.node_name));
    let store: Arc<Mutex<BTreeMap<String, Pod>>> = Arc::new(Mutex::new(BTreeMap::new()));
    // Garbage collection of sandboxes whose pods are gone runs once the
    // first full list has been seen.
    let listed = Arc::new(tokio::sync::Notify::new());
    {
        let agent = agent.clone();
        let store = store.clone();
        let listed = listed.clone();
        tokio::spawn(async move {
            listed.notified().await;
            loop {
                let live: Vec<String> = store.lock().await.keys().cloned().collect();
                pod::collect_orphans(&agent, &live).await;
                tokio::time::sleep(Duration::from_secs(10)).await;
            }
        });
    }
    let mut stream = watcher(api, wc).boxed();
    let mut init: BTreeMap<String, Pod> = BTreeMap::new();
    while let Some(ev) = stream.next().await {
        if *shutdown.borrow() {
            return;
        }
        let ev = match ev {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!("pod watch: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        match ev {
            watcher::Event::Init => init.clear(),
            watcher::Event::InitApply(p) => {
                if let Some(uid) = p.metadata.uid.clone() {
                    init.insert(uid, p);
                }
            }
            watcher::Event::InitDone => {
                let pods = std::mem::take(&mut init);
                *store.lock().await = pods.clone();
                for p in pods.into_values() {
                    dispatch(&agent, p).await;
                }
                listed.notify_one();
            }
            watcher::Event::Apply(p) => {
                if let Some(uid) = p.metadata.uid.clone() {
                    store.lock().await.insert(uid, p.clone());
                }
                dispatch(&agent, p).await;
            }
            watcher::Event::Delete(p) => {
                if let Some(uid) = p.metadata.uid.clone() {
                    store.lock().await.remove(&uid);
                    if let Some(w) = agent.pods.lock().await.get(&uid) {
                        w.gone.store(true, std::sync::atomic::Ordering::SeqCst);
                        w.wake.notify_one();
                    }
                }
            }
        }
    }
}

/// Hands a pod update to its worker, starting one for a new pod.
async fn dispatch(agent: &Arc<Agent>, pod: Pod) {
    let Some(uid) = pod.metadata.uid.clone() else {
        return;
    };
    let mut pods = agent.pods.lock().await;
    if let Some(w) = pods.get(&uid) {
        *w.pod.lock().unwrap_or_else(|e| e.into_inner()) = pod;
        w.wake.notify_one();
        return;
    }
    let shared = Arc::new(pod::Shared::new(pod));
    pods.insert(uid.clone(), shared.clone());
    drop(pods);
    tokio::spawn(pod::run_worker(agent.clone(), uid, shared));
}
