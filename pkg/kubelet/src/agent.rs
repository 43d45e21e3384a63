//! The node agent's entry point: connects to the runtime over CRI, starts
//! the HTTPS server, registers the Node (see [`crate::node`]), and watches
//! the pods bound to this node (`spec.nodeName=<node>`), handing every pod
//! to its own worker ([`crate::pod`]). After the first full list it removes
//! what the runtime still runs for pods that no longer exist
//! ([`crate::gc`]), and does so again every minute.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::runtime::watcher;
use kube::Api;
use tokio::sync::watch;

pub use crate::context::NodeAgentConfig;
use crate::context::{Agent, Handle};
use crate::cri_config::NodeFacts;

/// Errors that stop the node agent.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The CRI socket could not be used.
    #[error("cri: {0}")]
    Cri(#[from] rkube_cri::Error),
    /// The streaming server could not start.
    #[error("node agent server: {0}")]
    Server(#[from] crate::server::Error),
    /// The root directory could not be created.
    #[error("creating {path}: {source}")]
    RootDir {
        /// The directory.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// Runs the node agent until `shutdown` flips to true. Containers keep
/// running when it stops; a later run adopts them.
pub async fn run(cfg: NodeAgentConfig, mut shutdown: watch::Receiver<bool>) -> Result<(), Error> {
    for d in [cfg.root_dir.join("pods"), cfg.root_dir.join("logs")] {
        std::fs::create_dir_all(&d).map_err(|source| Error::RootDir { path: d, source })?;
    }
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
    tracing::info!("node agent server listening on {server_addr}");
    let host = crate::node::HostFacts::read(&cfg.root_dir);
    let allocatable = BTreeMap::from([
        ("cpu".to_string(), Quantity(host.cpus.to_string())),
        (
            "memory".to_string(),
            Quantity(format!("{}Ki", host.memory_kib)),
        ),
        (
            "ephemeral-storage".to_string(),
            Quantity(host.disk_bytes.to_string()),
        ),
        ("pods".to_string(), Quantity(cfg.max_pods.to_string())),
    ]);
    let volumes = crate::volumes::VolumeManager::new(
        cfg.root_dir.clone(),
        cfg.client.clone(),
        cfg.cluster_ca_pem.clone(),
    )
    .with_cluster_domain(cfg.cluster_domain.clone());
    volumes.set_node_allocatable(allocatable.clone());
    let node = NodeFacts {
        log_root: cfg.root_dir.join("logs"),
        cgroup_parent: cfg.cgroup_parent.clone(),
        cluster_dns: cfg.cluster_dns.clone(),
        cluster_domain: cfg.cluster_domain.clone(),
        host_resolv_conf: std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
        memory_bytes: (host.memory_kib * 1024) as i64,
    };
    let agent = Arc::new(Agent::new(cfg, cri, volumes, node, allocatable));
    let node_task = tokio::spawn(crate::node::run(
        agent.clone(),
        server_addr.port(),
        shutdown.clone(),
    ));
    let pods_task = tokio::spawn(watch_pods(agent.clone()));
    let _ = shutdown.wait_for(|s| *s).await;
    node_task.abort();
    pods_task.abort();
    for h in agent.workers.lock().await.values() {
        h.stop();
    }
    Ok(())
}

/// Watches this node's pods and keeps one worker per pod.
async fn watch_pods(agent: Arc<Agent>) {
    let api: Api<Pod> = Api::all(agent.cfg.client.clone());
    let wc = watcher::Config::default().fields(&format!("spec.nodeName={}", agent.cfg.node_name));
    let live: Arc<std::sync::Mutex<BTreeMap<String, Pod>>> = Default::default();
    let mut gc_started = false;
    let mut init: BTreeMap<String, Pod> = BTreeMap::new();
    let mut stream = watcher(api, wc).boxed();
    while let Some(ev) = stream.next().await {
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
                let gone: Vec<String> = {
                    let mut l = live.lock().unwrap_or_else(|e| e.into_inner());
                    let gone = l
                        .keys()
                        .filter(|k| !pods.contains_key(*k))
                        .cloned()
                        .collect();
                    *l = pods.clone();
                    gone
                };
                for uid in gone {
                    if let Some(h) = agent.workers.lock().await.get(&uid) {
                        h.set_gone(None);
                    }
                }
                for p in pods.into_values() {
                    dispatch(&agent, p).await;
                }
                if !gc_started {
                    gc_started = true;
                    tokio::spawn(crate::gc::run(agent.clone(), live.clone()));
                }
            }
            watcher::Event::Apply(p) => {
                if let Some(uid) = p.metadata.uid.clone() {
                    live.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(uid, p.clone());
                }
                dispatch(&agent, p).await;
            }
            watcher::Event::Delete(p) => {
                if let Some(uid) = p.metadata.uid.clone() {
                    live.lock().unwrap_or_else(|e| e.into_inner()).remove(&uid);
                    // Without a worker (deleted before one ran) the GC
                    // cleans whatever the runtime may hold.
                    if let Some(h) = agent.workers.lock().await.get(&uid) {
                        h.set_gone(Some(p));
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
    let mut workers = agent.workers.lock().await;
    if let Some(h) = workers.get(&uid) {
        h.update(pod);
        return;
    }
    let handle = Arc::new(Handle::new(pod));
    workers.insert(uid.clone(), handle.clone());
    drop(workers);
    tokio::spawn(crate::pod::run(agent.clone(), uid, handle));
}
