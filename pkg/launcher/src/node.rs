//! Start steps of the node side: CNI configuration, the container runtime
//! (through its [`backend`]), rkube's pause image, then the scheduler and
//! the node agent, which reach the cluster only through `kube::Client`
//! with their own certificates.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::backend;
use crate::context::Context;
use crate::{Error, Result};

/// Writes the CNI network configuration (bridge + host-local + portmap).
pub fn network(ctx: &mut Context) -> Result<()> {
    if ctx.config.disable_agent || ctx.config.cri_socket.is_some() {
        return Ok(());
    }
    let opts = rkube_network::CniOptions::for_profile(ctx.profile.dir());
    rkube_network::check_plugins(&opts.cni_bin_dir).map_err(|e| Error::Node(e.to_string()))?;
    rkube_network::write_conflist(&ctx.profile.cni_conf_dir(), &opts)
        .map_err(|e| Error::Node(e.to_string()))?;
    Ok(())
}

/// Starts (or adopts) the profile's container runtime.
pub async fn runtime(ctx: &mut Context) -> Result<()> {
    if ctx.config.disable_agent {
        return Ok(());
    }
    let node = |e: backend::Error| Error::Node(e.to_string());
    let mut backend = backend::for_profile(&ctx.profile, &ctx.config).map_err(node)?;
    backend.start().await.map_err(node)?;
    ctx.backend = Some(backend);
    Ok(())
}

/// Imports rkube's pause image into the runtime unless it is there.
pub async fn pause_image(ctx: &mut Context) -> Result<()> {
    let Some(backend) = &ctx.backend else {
        return Ok(());
    };
    backend
        .ensure_pause_image(ctx.profile.dir())
        .await
        .map_err(|e| Error::Node(e.to_string()))
}

async fn client_for(ctx: &Context, cert: &str, key: &str) -> Result<kube::Client> {
    let pki = ctx
        .pki
        .as_ref()
        .ok_or_else(|| Error::Node("certificates not ready".into()))?;
    let ca_path = pki.ca_cert_path();
    let ca = std::fs::read_to_string(&ca_path).map_err(Error::io("read", &ca_path))?;
    let yaml = rkube_pki::kubeconfig::render("node", &ctx.server_url(), &ca, cert, key);
    let kc = kube::config::Kubeconfig::from_yaml(&yaml).map_err(|e| Error::Node(e.to_string()))?;
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .map_err(|e| Error::Node(e.to_string()))?;
    kube::Client::try_from(cfg).map_err(|e| Error::Node(e.to_string()))
}

/// The host's address that pods and the API server use to reach the node.
pub fn node_ip() -> IpAddr {
    local_ip_address::local_ip().unwrap_or(IpAddr::from([127, 0, 0, 1]))
}

/// Starts the scheduler in this process.
pub async fn scheduler(ctx: &mut Context) -> Result<()> {
    if ctx.config.disable_agent {
        return Ok(());
    }
    let pki = ctx
        .pki
        .as_ref()
        .ok_or_else(|| Error::Node("certificates not ready".into()))?;
    let (cert, key) =
        rkube_pki::issue_client_cert(pki, "system:kube-scheduler", &[], 365).map_err(Error::Pki)?;
    let client = client_for(ctx, &cert, &key).await?;
    let rx = ctx.agents_shutdown.subscribe();
    ctx.agents.push(tokio::spawn(async move {
        let cfg = rkube_scheduler::SchedulerConfig::default();
        if let Err(e) = rkube_scheduler::run(client, cfg, rx).await {
            tracing::error!("scheduler stopped: {e}");
        }
    }));
    Ok(())
}

/// Starts the controller manager in this process (also with
/// `--disable-agent`: namespace deletion and garbage collection need it).
pub async fn controller_manager(ctx: &mut Context) -> Result<()> {
    let pki = ctx
        .pki
        .as_ref()
        .ok_or_else(|| Error::Node("certificates not ready".into()))?;
    let (cert, key) = rkube_pki::issue_client_cert(pki, "system:kube-controller-manager", &[], 365)
        .map_err(Error::Pki)?;
    let ca_path = pki.ca_cert_path();
    let root_ca_pem = std::fs::read_to_string(&ca_path).map_err(Error::io("read", &ca_path))?;
    let client = client_for(ctx, &cert, &key).await?;
    let cfg = rkube_controllers::Config {
        root_ca_pem,
        volume_dir: ctx.profile.data_dir().join("volumes"),
        ..Default::default()
    };
    let enabled = rkube_controllers::select(&ctx.config.controllers)
        .map_err(|e| Error::Node(format!("--controllers: {e}")))?;
    if enabled.is_empty() {
        return Ok(());
    }
    let tasks = rkube_controllers::start(client, cfg, ctx.agents_shutdown.subscribe(), &enabled)
        .await
        .map_err(|e| Error::Node(format!("controller manager: {e}")))?;
    ctx.agents.extend(tasks);
    Ok(())
}

/// Starts the node agent in this process.
pub async fn node_agent(ctx: &mut Context) -> Result<()> {
    let Some(sock) = ctx.backend.as_ref().map(|b| b.cri_socket()) else {
        return Ok(());
    };
    let pki = ctx
        .pki
        .as_ref()
        .ok_or_else(|| Error::Node("certificates not ready".into()))?;
    let read = |p: PathBuf| std::fs::read(&p).map_err(Error::io("read", &p));
    let cert = String::from_utf8_lossy(&read(pki.node_cert_path())?).into_owned();
    let key = String::from_utf8_lossy(&read(pki.node_key_path())?).into_owned();
    let ca = String::from_utf8_lossy(&read(pki.ca_cert_path())?).into_owned();
    let serving_cert_pem = read(pki.node_serving_cert_path())?;
    let serving_key_pem = read(pki.node_serving_key_path())?;
    let client = client_for(ctx, &cert, &key).await?;
    let ip = node_ip();
    let cfg = rkube_kubelet::NodeAgentConfig {
        node_name: ctx.config.node_name.clone(),
        client,
        cri_socket: sock,
        root_dir: ctx.profile.dir().join("kubelet"),
        max_pods: ctx.config.max_pods,
        cluster_dns: Vec::new(),
        cluster_domain: "cluster.local".into(),
        node_ip: ip,
        api_host: ip.to_string(),
        api_port: ctx.config.apiserver_port,
        cluster_ca_pem: ca,
        serving_cert_pem,
        serving_key_pem,
        server_port: 0,
        cgroup_parent: None,
    };
    let rx = ctx.agents_shutdown.subscribe();
    ctx.agents.push(tokio::spawn(async move {
        if let Err(e) = rkube_kubelet::run(cfg, rx).await {
            tracing::error!("node agent stopped: {e}");
        }
    }));
    Ok(())
}

/// Waits until the node reports Ready and the kubelet endpoint it publishes
/// accepts connections (used by `start` for its last line). The endpoint
/// check matters after a crash: the Node still carries the killed daemon's
/// Ready condition and its old kubelet port until the new agent posts.
pub async fn wait_node_ready(client: &kube::Client, node: &str, timeout: Duration) -> bool {
    use k8s_openapi::api::core::v1::Node;
    let api: kube::Api<Node> = kube::Api::all(client.clone());
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if let Ok(Some(n)) = api.get_opt(node).await {
            if let Some(addr) = ready_endpoint(&n) {
                let connect = tokio::net::TcpStream::connect(addr);
                if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(1), connect).await {
                    return true;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

/// The kubelet endpoint (InternalIP, else loopback, and the published port)
/// of a Node whose Ready condition is True.
fn ready_endpoint(n: &k8s_openapi::api::core::v1::Node) -> Option<std::net::SocketAddr> {
    let status = n.status.as_ref()?;
    let ready = status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    if !ready {
        return None;
    }
    let port = status
        .daemon_endpoints
        .as_ref()?
        .kubelet_endpoint
        .as_ref()?
        .port;
    let ip = status
        .addresses
        .iter()
        .flatten()
        .find(|a| a.type_ == "InternalIP")
        .and_then(|a| a.address.parse().ok())
        .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));
    Some(std::net::SocketAddr::new(ip, u16::try_from(port).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(v: serde_json::Value) -> k8s_openapi::api::core::v1::Node {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn ready_endpoint_needs_ready_and_a_published_port() {
        let status = |ready: &str| {
            serde_json::json!({"status": {
                "conditions": [{"type": "Ready", "status": ready}],
                "addresses": [{"type": "Hostname", "address": "rkube"},
                              {"type": "InternalIP", "address": "10.0.0.5"}],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": 40123}}}})
        };
        assert_eq!(
            ready_endpoint(&node(status("True"))),
            Some("10.0.0.5:40123".parse().unwrap())
        );
        assert_eq!(ready_endpoint(&node(status("False"))), None);
        let no_port = node(serde_json::json!({"status": {
            "conditions": [{"type": "Ready", "status": "True"}]}}));
        assert_eq!(ready_endpoint(&no_port), None);
        let no_ip = node(serde_json::json!({"status": {
            "conditions": [{"type": "Ready", "status": "True"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}}}}));
        assert_eq!(
            ready_endpoint(&no_ip),
            Some("127.0.0.1:10250".parse().unwrap())
        );
    }
}
