//! Start steps of the node side: CNI configuration, the container runtime
//! (containerd started by rkube, or an existing CRI socket), rkube's pause
//! image, then the scheduler and the node agent, which reach the cluster
//! only through `kube::Client` with their own certificates.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use rkube_host::Mirror;
use rkube_runtime::{Containerd, ContainerdOptions};

use crate::pipeline::Context;
use crate::profile::{ContainerRuntime, Profile, ProfileConfig};
use crate::{Error, Result};

/// Directory of the profile's containerd.
pub fn containerd_dir(profile: &Profile) -> PathBuf {
    profile.dir().join("containerd")
}

/// The CNI configuration directory of a profile.
pub fn cni_conf_dir(profile: &Profile) -> PathBuf {
    profile.dir().join("cni").join("net.d")
}

/// The containerd backend of a profile, with the profile's registry
/// mirrors and plain-HTTP registries when its settings are given.
pub fn containerd(profile: &Profile) -> Containerd {
    containerd_with(profile, &[], &[])
}

fn containerd_with(profile: &Profile, mirrors: &[Mirror], insecure: &[String]) -> Containerd {
    let mut opts = ContainerdOptions::new(containerd_dir(profile), rkube_image::PAUSE_IMAGE);
    opts.cni_conf_dir = cni_conf_dir(profile);
    opts.registry_mirrors = mirrors.to_vec();
    for host in insecure {
        if !mirrors.iter().any(|m| &m.host == host) {
            opts.registry_mirrors
                .push(rkube_host::registry::insecure_host(host));
        }
    }
    Containerd::new(opts)
}

/// Settings of the profile's bundled runtime (`--container-runtime=cri-o`).
pub fn crio_config(profile: &Profile, config: &ProfileConfig) -> Result<rkube_crio::CrioConfig> {
    let mut c = rkube_crio::CrioConfig::for_profile(profile.dir(), &config.oci_runtime)
        .map_err(|e| Error::Node(e.to_string()))?;
    c.cni_conf_dir = cni_conf_dir(profile);
    c.pause_image = rkube_image::PAUSE_IMAGE.to_string();
    c.registries = rkube_imagestore::Registries {
        mirrors: config.mirrors().map_err(Error::Node)?,
        insecure: config.insecure_registries.clone(),
    };
    Ok(c)
}

/// Directory of the profile's bundled runtime.
pub fn crio_dir(profile: &Profile) -> PathBuf {
    profile.dir().join("crio")
}

/// Removes every pod of the bundled runtime through CRI (containers are
/// killed, CNI releases the addresses), then its mounts and directory. The
/// runtime is served on a side socket for that, as the daemon is stopped.
pub async fn delete_crio(profile: &Profile) -> Result<()> {
    let config = profile
        .load_config()?
        .unwrap_or_else(ProfileConfig::new_default);
    let dir = crio_dir(profile);
    match crio_config(profile, &config) {
        Ok(mut cfg) => {
            cfg.socket = profile.dir().join("crio-delete.sock");
            match rkube_crio::serve(cfg).await {
                Ok(running) => {
                    let socket = running.socket().to_path_buf();
                    match tokio::time::timeout(
                        Duration::from_secs(60),
                        rkube_runtime::cri::remove_all_sandboxes(&socket),
                    )
                    .await
                    {
                        Ok(Ok(n)) => tracing::info!(pods = n, "removed pod sandboxes"),
                        Ok(Err(e)) => tracing::warn!("removing pod sandboxes: {e}"),
                        Err(_) => tracing::warn!("removing pod sandboxes timed out"),
                    }
                    running.shutdown().await;
                    let _ = std::fs::remove_file(&socket);
                }
                Err(e) => tracing::warn!("cannot serve the bundled runtime to remove pods: {e}"),
            }
        }
        Err(e) => tracing::warn!("{e}"),
    }
    rkube_host::mount::unmount_under(&dir).map_err(|e| Error::Node(e.to_string()))?;
    match std::fs::remove_dir_all(&dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io("remove", &dir)(e)),
        _ => Ok(()),
    }
}

/// The image store of the profile's bundled runtime (shared on disk with
/// the running daemon; `rkube image load` writes into it directly).
pub fn crio_images(profile: &Profile) -> Result<rkube_imagestore::ImageStore> {
    rkube_imagestore::ImageStore::open(&crio_dir(profile).join("images"))
        .map_err(|e| Error::Node(e.to_string()))
}

/// Writes the CNI network configuration (bridge + host-local + portmap).
pub fn network(ctx: &mut Context) -> Result<()> {
    if ctx.config.disable_agent || ctx.config.cri_socket.is_some() {
        return Ok(());
    }
    let opts = rkube_network::CniOptions::for_profile(ctx.profile.dir());
    rkube_network::check_plugins(&opts.cni_bin_dir).map_err(|e| Error::Node(e.to_string()))?;
    rkube_network::write_conflist(&cni_conf_dir(&ctx.profile), &opts)
        .map_err(|e| Error::Node(e.to_string()))?;
    Ok(())
}

/// Starts (or reuses) the container runtime and records its CRI socket.
pub async fn runtime(ctx: &mut Context) -> Result<()> {
    if ctx.config.disable_agent {
        return Ok(());
    }
    if let Some(endpoint) = &ctx.config.cri_socket {
        let path = rkube_cri::socket_path(endpoint).map_err(|e| Error::Node(e.to_string()))?;
        ctx.cri_socket = Some(path);
        return Ok(());
    }
    match ctx.config.container_runtime {
        ContainerRuntime::Containerd => {
            Containerd::check_host().map_err(|e| Error::Node(e.to_string()))?;
            let mirrors = ctx.config.mirrors().map_err(Error::Node)?;
            let c = containerd_with(&ctx.profile, &mirrors, &ctx.config.insecure_registries);
            c.start().await.map_err(|e| Error::Node(e.to_string()))?;
            ctx.cri_socket = Some(c.socket());
            Ok(())
        }
        ContainerRuntime::CriO => {
            let cfg = crio_config(&ctx.profile, &ctx.config)?;
            let running = rkube_crio::serve(cfg)
                .await
                .map_err(|e| Error::Node(e.to_string()))?;
            ctx.cri_socket = Some(running.socket().to_path_buf());
            ctx.crio = Some(running);
            Ok(())
        }
        other => Err(Error::Node(format!(
            "the {other} container runtime is not available in this build yet; use --container-runtime=containerd or --cri-socket unix:///path/to/cri.sock"
        ))),
    }
}

/// Imports rkube's pause image into the runtime unless it is there.
pub async fn pause_image(ctx: &mut Context) -> Result<()> {
    let Some(sock) = ctx.cri_socket.clone() else {
        return Ok(());
    };
    if ctx.config.cri_socket.is_some() {
        // An external runtime brings its own sandbox image configuration.
        return Ok(());
    }
    let clients = rkube_cri::connect(&sock).map_err(|e| Error::Node(e.to_string()))?;
    let mut image = clients.image.clone();
    let present = image
        .image_status(rkube_cri::api::ImageStatusRequest {
            image: Some(rkube_cri::api::ImageSpec {
                image: rkube_image::PAUSE_IMAGE.to_string(),
                ..Default::default()
            }),
            verbose: false,
        })
        .await
        .map(|r| r.into_inner().image.is_some())
        .unwrap_or(false);
    if present {
        return Ok(());
    }
    let archive = ctx.profile.dir().join("pause.tar");
    rkube_image::write_pause_archive(&archive).map_err(|e| Error::Node(e.to_string()))?;
    match ctx.config.container_runtime {
        ContainerRuntime::Containerd => {
            containerd(&ctx.profile)
                .import_image(&archive)
                .await
                .map_err(|e| Error::Node(e.to_string()))?;
        }
        ContainerRuntime::CriO => {
            crio_images(&ctx.profile)?
                .import_archive(&archive)
                .map_err(|e| Error::Node(e.to_string()))?;
        }
        ContainerRuntime::Docker => {}
    }
    let _ = std::fs::remove_file(&archive);
    Ok(())
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

/// Starts the node agent in this process.
pub async fn node_agent(ctx: &mut Context) -> Result<()> {
    let Some(sock) = ctx.cri_socket.clone() else {
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
