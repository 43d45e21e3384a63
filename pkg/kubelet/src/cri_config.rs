//! Pure builders of the CRI messages the node agent sends: the
//! `PodSandboxConfig` of a pod (metadata, hostname, DNS, port mappings, log
//! directory, labels, Linux namespaces and security context) and the
//! `ContainerConfig` of one container run (command/args with `$(VAR)`
//! expansion, env, mounts, resources as cgroup values, security context),
//! plus the pod's QoS class and OOM score. The inputs that come from the
//! host (resolv.conf, memory size) are passed in, so everything here is
//! unit-tested against expected messages.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use rkube_apimachinery::quantity::Quantity as ExactQuantity;
use rkube_cri::api as cri;

/// QoS class of a pod.
pub use rkube_apimachinery::quota::QosClass as Qos;

/// Label: pod name.
pub const LABEL_POD_NAME: &str = "io.kubernetes.pod.name";
/// Label: pod namespace.
pub const LABEL_POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
/// Label: pod uid (how the agent finds a pod's sandboxes and containers).
pub const LABEL_POD_UID: &str = "io.kubernetes.pod.uid";
/// Label: container name.
pub const LABEL_CONTAINER_NAME: &str = "io.kubernetes.container.name";
/// Annotation: the container's restart count (kept across agent restarts).
pub const ANN_RESTART_COUNT: &str = "io.kubernetes.container.restartCount";
/// Annotation: hash of the container spec.
pub const ANN_HASH: &str = "io.kubernetes.container.hash";
/// Annotation: terminationMessagePath inside the container.
pub const ANN_TERMINATION_PATH: &str = "io.kubernetes.container.terminationMessagePath";
/// Annotation: terminationMessagePolicy.
pub const ANN_TERMINATION_POLICY: &str = "io.kubernetes.container.terminationMessagePolicy";
/// Annotation: where the termination message file is on the host.
pub const ANN_TERMINATION_HOST_PATH: &str = "io.kubernetes.container.terminationMessageHostPath";
/// Annotation: the pod's termination grace period.
pub const ANN_GRACE: &str = "io.kubernetes.pod.terminationGracePeriod";

/// Paths masked in every non-privileged container (upstream defaults).
pub const DEFAULT_MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];
/// Paths mounted read-only in every non-privileged container.
pub const DEFAULT_READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Node facts the builders need.
#[derive(Clone, Debug, Default)]
pub struct NodeFacts {
    /// `<root>/logs`: parent of the sandbox log directories.
    pub log_root: PathBuf,
    /// cgroup parent of sandboxes.
    pub cgroup_parent: Option<String>,
    /// Cluster DNS servers (empty: ClusterFirst falls back to the host's).
    pub cluster_dns: Vec<String>,
    /// Cluster domain.
    pub cluster_domain: String,
    /// Contents of the host's /etc/resolv.conf.
    pub host_resolv_conf: String,
    /// Machine memory in bytes (for the Burstable OOM score).
    pub memory_bytes: i64,
}

/// `(namespace, name, uid)` of a pod.
pub fn pod_key(pod: &Pod) -> (String, String, String) {
    (
        pod.metadata.namespace.clone().unwrap_or_default(),
        pod.metadata.name.clone().unwrap_or_default(),
        pod.metadata.uid.clone().unwrap_or_default(),
    )
}

/// The pod's log directory: `<log_root>/<ns>_<name>_<uid>`.
pub fn pod_log_dir(log_root: &Path, pod: &Pod) -> PathBuf {
    let (ns, name, uid) = pod_key(pod);
    log_root.join(format!("{ns}_{name}_{uid}"))
}

fn spec(pod: &Pod) -> PodSpec {
    pod.spec.clone().unwrap_or_default()
}

/// The labels every sandbox and container of the pod carries.
pub fn pod_labels(pod: &Pod) -> HashMap<String, String> {
    let (ns, name, uid) = pod_key(pod);
    HashMap::from([
        (LABEL_POD_NAME.to_string(), name),
        (LABEL_POD_NAMESPACE.to_string(), ns),
        (LABEL_POD_UID.to_string(), uid),
    ])
}

/// Parses resolv.conf text into a CRI DNS config.
pub fn parse_resolv_conf(text: &str) -> cri::DnsConfig {
    let mut d = cri::DnsConfig::default();
    for line in text.lines() {
        let mut it = line.split_whitespace();
        match it.next() {
            Some("nameserver") => d.servers.extend(it.next().map(String::from)),
            Some("search") => d.searches = it.map(String::from).collect(),
            Some("options") => d.options.extend(it.map(String::from)),
            _ => {}
        }
    }
    d
}

/// The DNS config for the pod's dnsPolicy: ClusterFirst(WithHostNet) uses
/// the cluster DNS when there is one, else (like "Default") the host's
/// resolv.conf; None uses only dnsConfig; dnsConfig is merged in otherwise.
pub fn dns_config(node: &NodeFacts, pod: &Pod) -> cri::DnsConfig {
    let s = spec(pod);
    let (ns, _, _) = pod_key(pod);
    let host_net = s.host_network == Some(true);
    let policy = s.dns_policy.as_deref().unwrap_or("ClusterFirst");
    let cluster = !node.cluster_dns.is_empty()
        && match policy {
            "ClusterFirst" => !host_net,
            "ClusterFirstWithHostNet" => true,
            _ => false,
        };
    let mut d = if policy == "None" {
        cri::DnsConfig::default()
    } else if cluster {
        let dom = &node.cluster_domain;
        cri::DnsConfig {
            servers: node.cluster_dns.clone(),
            searches: vec![format!("{ns}.svc.{dom}"), format!("svc.{dom}"), dom.clone()],
            options: vec!["ndots:5".into()],
        }
    } else {
        parse_resolv_conf(&node.host_resolv_conf)
    };
    if let Some(c) = &s.dns_config {
        for n in c.nameservers.iter().flatten() {
            if !d.servers.contains(n) {
                d.servers.push(n.clone());
            }
        }
        for n in c.searches.iter().flatten() {
            if !d.searches.contains(n) {
                d.searches.push(n.clone());
            }
        }
        for o in c.options.iter().flatten() {
            let name = o.name.clone().unwrap_or_default();
            d.options
                .retain(|x| x.split(':').next() != Some(name.as_str()));
            d.options.push(match &o.value {
                Some(v) => format!("{name}:{v}"),
                None => name,
            });
        }
    }
    d
}

/// Port mappings from the containers' hostPorts.
pub fn port_mappings(pod: &Pod) -> Vec<cri::PortMapping> {
    let s = spec(pod);
    let mut out = Vec::new();
    for c in &s.containers {
        for p in c.ports.iter().flatten() {
            let Some(host_port) = p.host_port.filter(|h| *h > 0) else {
                continue;
            };
            out.push(cri::PortMapping {
                protocol: match p.protocol.as_deref() {
                    Some("UDP") => cri::Protocol::Udp as i32,
                    Some("SCTP") => cri::Protocol::Sctp as i32,
                    _ => cri::Protocol::Tcp as i32,
                },
                container_port: p.container_port,
                host_port,
                host_ip: p.host_ip.clone().unwrap_or_default(),
            });
        }
    }
    out
}

fn ns_mode(node: bool, pod: bool) -> i32 {
    if node {
        cri::NamespaceMode::Node as i32
    } else if pod {
        cri::NamespaceMode::Pod as i32
    } else {
        cri::NamespaceMode::Container as i32
    }
}

/// The pod's namespace options (network POD or NODE; pid CONTAINER, POD
/// with shareProcessNamespace, NODE with hostPID; ipc POD or NODE).
pub fn namespace_options(pod: &Pod) -> cri::NamespaceOption {
    let s = spec(pod);
    cri::NamespaceOption {
        network: ns_mode(s.host_network == Some(true), true),
        pid: ns_mode(
            s.host_pid == Some(true),
            s.share_process_namespace == Some(true),
        ),
        ipc: ns_mode(s.host_ipc == Some(true), true),
        ..Default::default()
    }
}

fn all_containers(s: &PodSpec) -> impl Iterator<Item = &Container> {
    s.init_containers
        .iter()
        .flatten()
        .chain(s.containers.iter())
}

fn seccomp(p: Option<&k8s_openapi::api::core::v1::SeccompProfile>) -> cri::SecurityProfile {
    match p {
        Some(p) if p.type_ == "RuntimeDefault" => cri::SecurityProfile {
            profile_type: cri::security_profile::ProfileType::RuntimeDefault as i32,
            localhost_ref: String::new(),
        },
        Some(p) if p.type_ == "Localhost" => cri::SecurityProfile {
            profile_type: cri::security_profile::ProfileType::Localhost as i32,
            localhost_ref: p.localhost_profile.clone().unwrap_or_default(),
        },
        _ => cri::SecurityProfile {
            profile_type: cri::security_profile::ProfileType::Unconfined as i32,
            localhost_ref: String::new(),
        },
    }
}

/// The sandbox hostname: spec.hostname or the pod name (63 chars at most);
/// empty for hostNetwork pods (they keep the node's).
pub fn hostname(pod: &Pod) -> String {
    let s = spec(pod);
    if s.host_network == Some(true) {
        return String::new();
    }
    let (_, name, _) = pod_key(pod);
    let h = s.hostname.clone().filter(|h| !h.is_empty()).unwrap_or(name);
    h.chars()
        .take(63)
        .collect::<String>()
        .trim_end_matches(['-', '.'])
        .to_string()
}

/// The pod's `PodSandboxConfig` (attempt = how many sandboxes came before).
pub fn sandbox_config(node: &NodeFacts, pod: &Pod, attempt: u32) -> cri::PodSandboxConfig {
    let (ns, name, uid) = pod_key(pod);
    let s = spec(pod);
    let mut labels: HashMap<String, String> = pod
        .metadata
        .labels
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    labels.extend(pod_labels(pod));
    let annotations = pod
        .metadata
        .annotations
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    let psc = s.security_context.clone().unwrap_or_default();
    let privileged = all_containers(&s)
        .any(|c| c.security_context.as_ref().and_then(|s| s.privileged) == Some(true));
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name,
            uid,
            namespace: ns,
            attempt,
        }),
        hostname: hostname(pod),
        log_directory: pod_log_dir(&node.log_root, pod)
            .to_string_lossy()
            .into_owned(),
        dns_config: Some(dns_config(node, pod)),
        port_mappings: port_mappings(pod),
        labels,
        annotations,
        linux: Some(cri::LinuxPodSandboxConfig {
            cgroup_parent: node.cgroup_parent.clone().unwrap_or_default(),
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(namespace_options(pod)),
                run_as_user: psc.run_as_user.map(|value| cri::Int64Value { value }),
                run_as_group: psc.run_as_group.map(|value| cri::Int64Value { value }),
                supplemental_groups: psc.supplemental_groups.clone().unwrap_or_default(),
                privileged,
                seccomp: Some(seccomp(psc.seccomp_profile.as_ref())),
                ..Default::default()
            }),
            sysctls: psc
                .sysctls
                .unwrap_or_default()
                .into_iter()
                .map(|s| (s.name, s.value))
                .collect(),
            ..Default::default()
        }),
        windows: None,
    }
}

/// A quantity in milli-units (cpu).
pub fn milli(q: Option<&Quantity>) -> Option<i64> {
    ExactQuantity::parse(&q?.0).map(|q| q.milli_value() as i64)
}

/// A quantity in whole units (bytes).
pub fn units(q: Option<&Quantity>) -> Option<i64> {
    ExactQuantity::parse(&q?.0).map(|q| q.value() as i64)
}

/// The pod's QoS class, by the one rule the API server also uses.
pub fn qos(pod: &Pod) -> Qos {
    rkube_apimachinery::quota::typed_pod_qos(pod)
}

/// The OOM score adjustment upstream gives a container (Guaranteed -997,
/// BestEffort 1000, Burstable scaled by its memory request), clamped at 0:
/// this host forbids negative values.
pub fn oom_score_adj(pod: &Pod, c: &Container, memory_bytes: i64) -> i64 {
    let upstream = match qos(pod) {
        Qos::Guaranteed => -997,
        Qos::BestEffort => 1000,
        Qos::Burstable => {
            let req = c
                .resources
                .as_ref()
                .and_then(|r| r.requests.as_ref())
                .and_then(|r| units(r.get("memory")))
                .unwrap_or(0);
            let adj = 1000 - (1000 * req) / memory_bytes.max(1);
            if adj < 3 {
                3
            } else if adj >= 1000 {
                999
            } else {
                adj
            }
        }
    };
    upstream.max(0)
}

/// CRI Linux resources of a container: cpu shares from the request
/// (milliCPU*1024/1000, at least 2), quota/period from the limit, memory
/// limit, OOM score.
pub fn linux_resources(
    pod: &Pod,
    c: &Container,
    memory_bytes: i64,
) -> cri::LinuxContainerResources {
    let r = c.resources.clone().unwrap_or_default();
    let req = r.requests.unwrap_or_default();
    let lim = r.limits.unwrap_or_default();
    let cpu_req = milli(req.get("cpu")).or_else(|| milli(lim.get("cpu")));
    let shares = cpu_req.map(|m| m * 1024 / 1000).unwrap_or(0).max(2);
    let (quota, period) = match milli(lim.get("cpu")) {
        Some(m) if m > 0 => ((m * 100_000 / 1000).max(1000), 100_000),
        _ => (0, 0),
    };
    cri::LinuxContainerResources {
        cpu_period: period,
        cpu_quota: quota,
        cpu_shares: shares,
        memory_limit_in_bytes: units(lim.get("memory")).unwrap_or(0),
        oom_score_adj: oom_score_adj(pod, c, memory_bytes),
        ..Default::default()
    }
}

/// The container's Linux security context (container settings over the
/// pod's). The default masked and read-only /proc paths are sent unless the
/// container is privileged or asks for `procMount: Unmasked`.
pub fn security_context(pod: &Pod, c: &Container) -> cri::LinuxContainerSecurityContext {
    let s = spec(pod);
    let psc = s.security_context.clone().unwrap_or_default();
    let sc = c.security_context.clone().unwrap_or_default();
    let privileged = sc.privileged == Some(true);
    let caps = sc.capabilities.clone().unwrap_or_default();
    let unmasked = sc.proc_mount.as_deref() == Some("Unmasked");
    let paths = |list: &[&str]| -> Vec<String> {
        if privileged || unmasked {
            Vec::new()
        } else {
            list.iter().map(|s| s.to_string()).collect()
        }
    };
    let run_as_user = sc.run_as_user.or(psc.run_as_user);
    cri::LinuxContainerSecurityContext {
        capabilities: Some(cri::Capability {
            add_capabilities: caps.add.unwrap_or_default(),
            drop_capabilities: caps.drop.unwrap_or_default(),
            ..Default::default()
        }),
        privileged,
        namespace_options: Some(namespace_options(pod)),
        run_as_user: run_as_user.map(|value| cri::Int64Value { value }),
        run_as_group: sc
            .run_as_group
            .or(psc.run_as_group)
            .map(|value| cri::Int64Value { value }),
        readonly_rootfs: sc.read_only_root_filesystem == Some(true),
        supplemental_groups: psc.supplemental_groups.clone().unwrap_or_default(),
        no_new_privs: sc.allow_privilege_escalation == Some(false),
        masked_paths: paths(DEFAULT_MASKED_PATHS),
        readonly_paths: paths(DEFAULT_READONLY_PATHS),
        seccomp: Some(seccomp(
            sc.seccomp_profile.as_ref().or(psc.seccomp_profile.as_ref()),
        )),
        ..Default::default()
    }
}

/// A stable hash of the container spec (FNV-1a of its JSON), hex.
pub fn container_hash(c: &Container) -> String {
    let json = serde_json::to_vec(c).unwrap_or_default();
    let mut h: u64 = 0xcbf29ce484222325;
    for b in json {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{:x}", h as u32)
}

/// What a container run needs besides the pod and the spec.
#[derive(Clone, Debug, Default)]
pub struct ContainerRun {
    /// Restart count (CRI attempt).
    pub attempt: u32,
    /// The environment (from `env::container_env`).
    pub envs: Vec<cri::KeyValue>,
    /// The mounts (from `VolumeManager::mounts_for`).
    pub mounts: Vec<cri::Mount>,
    /// Host path of the termination-message file.
    pub termination_host_path: Option<PathBuf>,
    /// Machine memory, for the OOM score.
    pub memory_bytes: i64,
}

/// The `ContainerConfig` of one run of `c`.
pub fn container_config(pod: &Pod, c: &Container, run: &ContainerRun) -> cri::ContainerConfig {
    let vars: HashMap<&str, &str> = run
        .envs
        .iter()
        .map(|kv| (kv.key.as_str(), kv.value.as_str()))
        .collect();
    let expand = |v: &Option<Vec<String>>| -> Vec<String> {
        v.iter()
            .flatten()
            .map(|s| crate::env::expand(s, |k| vars.get(k).map(|v| v.to_string())))
            .collect()
    };
    let mut labels = pod_labels(pod);
    labels.insert(LABEL_CONTAINER_NAME.into(), c.name.clone());
    let mut annotations: BTreeMap<String, String> = BTreeMap::from([
        (ANN_RESTART_COUNT.into(), run.attempt.to_string()),
        (ANN_HASH.into(), container_hash(c)),
        (
            ANN_TERMINATION_PATH.into(),
            c.termination_message_path
                .clone()
                .unwrap_or_else(|| "/dev/termination-log".into()),
        ),
        (
            ANN_TERMINATION_POLICY.into(),
            c.termination_message_policy
                .clone()
                .unwrap_or_else(|| "File".into()),
        ),
        (
            ANN_GRACE.into(),
            pod.spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds)
                .unwrap_or(30)
                .to_string(),
        ),
    ]);
    if let Some(p) = &run.termination_host_path {
        annotations.insert(
            ANN_TERMINATION_HOST_PATH.into(),
            p.to_string_lossy().into_owned(),
        );
    }
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: c.name.clone(),
            attempt: run.attempt,
        }),
        image: Some(cri::ImageSpec {
            image: c.image.clone().unwrap_or_default(),
            ..Default::default()
        }),
        command: expand(&c.command),
        args: expand(&c.args),
        working_dir: c.working_dir.clone().unwrap_or_default(),
        envs: run.envs.clone(),
        mounts: run.mounts.clone(),
        labels,
        annotations: annotations.into_iter().collect(),
        log_path: format!("{}/{}.log", c.name, run.attempt),
        stdin: c.stdin == Some(true),
        stdin_once: c.stdin_once == Some(true),
        tty: c.tty == Some(true),
        linux: Some(cri::LinuxContainerConfig {
            resources: Some(linux_resources(pod, c, run.memory_bytes)),
            security_context: Some(security_context(pod, c)),
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "ns1", "uid": "u-1", "labels": {"app": "web"},
                         "annotations": {"a": "b"}},
            "spec": spec,
        }))
        .unwrap()
    }

    fn node() -> NodeFacts {
        NodeFacts {
            log_root: "/r/logs".into(),
            cgroup_parent: Some("/rkube".into()),
            cluster_dns: vec![],
            cluster_domain: "cluster.local".into(),
            host_resolv_conf: "# c\nnameserver 10.0.0.2\nsearch example.com\noptions edns0\n"
                .into(),
            memory_bytes: 8 << 30,
        }
    }

    #[test]
    fn sandbox_config_matches_expected() {
        let p = pod(json!({
            "hostname": "h1", "shareProcessNamespace": true,
            "securityContext": {"runAsUser": 1000, "supplementalGroups": [5],
                                "sysctls": [{"name": "net.core.somaxconn", "value": "1024"}]},
            "containers": [{"name": "c", "image": "i",
                "ports": [{"containerPort": 80, "hostPort": 8080, "protocol": "TCP"},
                          {"containerPort": 53, "hostPort": 5353, "protocol": "UDP", "hostIP": "127.0.0.1"},
                          {"containerPort": 9}],
                "securityContext": {"privileged": true}}]
        }));
        let c = sandbox_config(&node(), &p, 2);
        let m = c.metadata.clone().unwrap();
        assert_eq!(
            (
                m.name.as_str(),
                m.namespace.as_str(),
                m.uid.as_str(),
                m.attempt
            ),
            ("web", "ns1", "u-1", 2)
        );
        assert_eq!(c.hostname, "h1");
        assert_eq!(c.log_directory, "/r/logs/ns1_web_u-1");
        assert_eq!(c.labels["app"], "web");
        assert_eq!(c.labels[LABEL_POD_UID], "u-1");
        assert_eq!(c.annotations["a"], "b");
        assert_eq!(
            c.port_mappings,
            vec![
                cri::PortMapping {
                    protocol: 0,
                    container_port: 80,
                    host_port: 8080,
                    host_ip: String::new()
                },
                cri::PortMapping {
                    protocol: cri::Protocol::Udp as i32,
                    container_port: 53,
                    host_port: 5353,
                    host_ip: "127.0.0.1".into()
                },
            ]
        );
        let dns = c.dns_config.clone().unwrap();
        assert_eq!(dns.servers, ["10.0.0.2"]);
        assert_eq!(dns.searches, ["example.com"]);
        let linux = c.linux.unwrap();
        assert_eq!(linux.cgroup_parent, "/rkube");
        assert_eq!(linux.sysctls["net.core.somaxconn"], "1024");
        let sc = linux.security_context.unwrap();
        assert!(sc.privileged);
        assert_eq!(sc.run_as_user, Some(cri::Int64Value { value: 1000 }));
        assert_eq!(sc.supplemental_groups, [5]);
        let nso = sc.namespace_options.unwrap();
        assert_eq!(nso.network, cri::NamespaceMode::Pod as i32);
        assert_eq!(nso.pid, cri::NamespaceMode::Pod as i32);
        assert_eq!(
            sc.seccomp.unwrap().profile_type,
            cri::security_profile::ProfileType::Unconfined as i32
        );
    }

    #[test]
    fn host_network_and_dns_policies() {
        let p = pod(json!({"hostNetwork": true, "containers": []}));
        let c = sandbox_config(&node(), &p, 0);
        assert_eq!(c.hostname, "");
        let nso = c
            .linux
            .unwrap()
            .security_context
            .unwrap()
            .namespace_options
            .unwrap();
        assert_eq!(nso.network, cri::NamespaceMode::Node as i32);
        assert_eq!(nso.pid, cri::NamespaceMode::Container as i32);

        let mut n = node();
        n.cluster_dns = vec!["10.96.0.10".into()];
        let d = dns_config(&n, &pod(json!({"containers": []})));
        assert_eq!(d.servers, ["10.96.0.10"]);
        assert_eq!(
            d.searches,
            [
                "ns1.svc.cluster.local",
                "svc.cluster.local",
                "cluster.local"
            ]
        );
        assert_eq!(d.options, ["ndots:5"]);
        // hostNetwork with ClusterFirst uses the host's.
        let d = dns_config(&n, &p);
        assert_eq!(d.servers, ["10.0.0.2"]);
        let d = dns_config(
            &n,
            &pod(json!({"dnsPolicy": "None", "containers": [],
                "dnsConfig": {"nameservers": ["1.1.1.1"], "searches": ["a"],
                              "options": [{"name": "ndots", "value": "2"}, {"name": "rotate"}]}})),
        );
        assert_eq!(d.servers, ["1.1.1.1"]);
        assert_eq!(d.searches, ["a"]);
        assert_eq!(d.options, ["ndots:2", "rotate"]);
        // No cluster DNS: ClusterFirst falls back to the host's.
        let d = dns_config(
            &node(),
            &pod(json!({"dnsPolicy": "ClusterFirst", "containers": []})),
        );
        assert_eq!(d.servers, ["10.0.0.2"]);
        assert_eq!(d.options, ["edns0"]);
    }

    #[test]
    fn qos_and_oom_score() {
        let c = |res: serde_json::Value| json!({"name": "c", "image": "i", "resources": res});
        let g = pod(json!({"containers": [c(json!({"limits": {"cpu": "1", "memory": "1Gi"}}))]}));
        let b = pod(json!({"containers": [c(json!({"requests": {"memory": "4Gi"}}))]}));
        let be = pod(json!({"containers": [c(json!({}))]}));
        assert_eq!(qos(&g), Qos::Guaranteed);
        assert_eq!(qos(&b), Qos::Burstable);
        assert_eq!(qos(&be), Qos::BestEffort);
        // Quantities, not strings, are compared (the API server's rule).
        let same = pod(json!({"containers": [c(json!({
            "requests": {"cpu": "1000m", "memory": "1Gi"},
            "limits": {"cpu": "1", "memory": "1024Mi"}}))]}));
        assert_eq!(qos(&same), Qos::Guaranteed);
        let cont = |p: &Pod| p.spec.as_ref().unwrap().containers[0].clone();
        let mem = 8i64 << 30;
        assert_eq!(oom_score_adj(&g, &cont(&g), mem), 0, "-997 clamped");
        assert_eq!(oom_score_adj(&be, &cont(&be), mem), 1000);
        assert_eq!(oom_score_adj(&b, &cont(&b), mem), 500);
    }

    #[test]
    fn container_config_matches_expected() {
        let p = pod(json!({"terminationGracePeriodSeconds": 5, "containers": [{
            "name": "app", "image": "busybox", "command": ["sh", "-c"], "args": ["echo $(MSG) $(NOPE)"],
            "workingDir": "/w", "tty": true, "stdin": true,
            "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}, "limits": {"cpu": "500m", "memory": "128Mi"}},
            "securityContext": {"runAsUser": 7, "readOnlyRootFilesystem": true, "allowPrivilegeEscalation": false,
                                "capabilities": {"add": ["NET_ADMIN"], "drop": ["ALL"]}},
        }]}));
        let c = p.spec.as_ref().unwrap().containers[0].clone();
        let run = ContainerRun {
            attempt: 3,
            envs: vec![cri::KeyValue {
                key: "MSG".into(),
                value: "hi".into(),
            }],
            mounts: vec![],
            termination_host_path: Some("/r/pods/u-1/containers/app/3".into()),
            memory_bytes: 1 << 30,
        };
        let cfg = container_config(&p, &c, &run);
        assert_eq!(cfg.metadata.as_ref().unwrap().attempt, 3);
        assert_eq!(cfg.command, ["sh", "-c"]);
        assert_eq!(cfg.args, ["echo hi $(NOPE)"]);
        assert_eq!(cfg.working_dir, "/w");
        assert_eq!(cfg.log_path, "app/3.log");
        assert!(cfg.tty && cfg.stdin && !cfg.stdin_once);
        assert_eq!(cfg.labels[LABEL_CONTAINER_NAME], "app");
        assert_eq!(cfg.labels[LABEL_POD_NAMESPACE], "ns1");
        assert!(
            !cfg.labels.contains_key("app"),
            "pod labels stay on the sandbox"
        );
        assert_eq!(cfg.annotations[ANN_RESTART_COUNT], "3");
        assert_eq!(
            cfg.annotations[ANN_TERMINATION_PATH],
            "/dev/termination-log"
        );
        assert_eq!(cfg.annotations[ANN_GRACE], "5");
        assert_eq!(
            cfg.annotations[ANN_TERMINATION_HOST_PATH],
            "/r/pods/u-1/containers/app/3"
        );
        let linux = cfg.linux.unwrap();
        let r = linux.resources.unwrap();
        assert_eq!(
            (r.cpu_shares, r.cpu_quota, r.cpu_period),
            (256, 50_000, 100_000)
        );
        assert_eq!(r.memory_limit_in_bytes, 128 << 20);
        assert!(r.oom_score_adj >= 0);
        let sc = linux.security_context.unwrap();
        assert_eq!(sc.run_as_user, Some(cri::Int64Value { value: 7 }));
        assert!(sc.readonly_rootfs && sc.no_new_privs && !sc.privileged);
        let caps = sc.capabilities.unwrap();
        assert_eq!(
            (caps.add_capabilities, caps.drop_capabilities),
            (vec!["NET_ADMIN".to_string()], vec!["ALL".to_string()])
        );
        assert_eq!(sc.masked_paths.len(), DEFAULT_MASKED_PATHS.len());
        assert_eq!(sc.readonly_paths, DEFAULT_READONLY_PATHS);
    }

    #[test]
    fn minimal_resources_and_privileged_paths() {
        let p = pod(
            json!({"containers": [{"name": "c", "image": "i", "securityContext": {"privileged": true}}]}),
        );
        let c = p.spec.as_ref().unwrap().containers[0].clone();
        let r = linux_resources(&p, &c, 1 << 30);
        assert_eq!(
            (
                r.cpu_shares,
                r.cpu_quota,
                r.cpu_period,
                r.memory_limit_in_bytes
            ),
            (2, 0, 0, 0)
        );
        let sc = security_context(&p, &c);
        assert!(sc.privileged && sc.masked_paths.is_empty() && sc.readonly_paths.is_empty());
    }
}
