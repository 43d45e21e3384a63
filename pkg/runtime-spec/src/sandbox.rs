//! What a CRI sandbox config asks of the host besides its OCI spec, the
//! same for every runtime backend: the CNI attachment (names, namespace,
//! host ports) and the pod's cgroup.

use std::path::PathBuf;

use rkube_cri::api as cri;
use rkube_network::cni::{Attachment, PortMapping};

/// The CNI attachment of sandbox `id` whose network namespace is pinned at
/// `netns`: interface eth0, the pod's identity, and its host ports.
pub fn cni_attachment(id: &str, netns: PathBuf, config: &cri::PodSandboxConfig) -> Attachment {
    let m = config.metadata.clone().unwrap_or_default();
    Attachment {
        container_id: id.to_string(),
        netns,
        ifname: "eth0".into(),
        pod_namespace: m.namespace,
        pod_name: m.name,
        pod_uid: m.uid,
        port_mappings: config
            .port_mappings
            .iter()
            .filter(|p| p.host_port > 0)
            .map(|p| PortMapping {
                host_port: p.host_port as u16,
                container_port: p.container_port as u16,
                protocol: match p.protocol {
                    1 => "udp",
                    2 => "sctp",
                    _ => "tcp",
                }
                .to_string(),
                host_ip: p.host_ip.clone(),
            })
            .collect(),
    }
}

/// The cgroup of a sandbox, below which its containers go: the config's
/// cgroup parent (or `/rkube`) and `pod<uid>`.
pub fn sandbox_cgroup(config: &cri::PodSandboxConfig, id: &str) -> String {
    let parent = config
        .linux
        .as_ref()
        .map(|l| l.cgroup_parent.trim_end_matches('/').to_string())
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "/rkube".to_string());
    let uid = config
        .metadata
        .as_ref()
        .map(|m| m.uid.as_str())
        .unwrap_or(id);
    format!("{parent}/pod{}", uid.replace('-', "_"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_ports_only() {
        let config = cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata {
                name: "web".into(),
                namespace: "default".into(),
                uid: "u1".into(),
                attempt: 0,
            }),
            port_mappings: vec![
                cri::PortMapping {
                    protocol: 1,
                    container_port: 53,
                    host_port: 5353,
                    host_ip: String::new(),
                },
                cri::PortMapping {
                    protocol: 0,
                    container_port: 80,
                    host_port: 0,
                    host_ip: String::new(),
                },
            ],
            ..Default::default()
        };
        let a = cni_attachment("sb1", "/run/ns".into(), &config);
        assert_eq!((a.pod_name.as_str(), a.pod_uid.as_str()), ("web", "u1"));
        assert_eq!(a.port_mappings.len(), 1);
        assert_eq!(a.port_mappings[0].protocol, "udp");
        assert_eq!(a.port_mappings[0].host_port, 5353);
        assert_eq!(sandbox_cgroup(&config, "sb1"), "/rkube/podu1");
    }
}
