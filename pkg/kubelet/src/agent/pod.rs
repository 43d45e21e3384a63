//! One worker per pod: sandbox, images, init containers in order, app
//! containers with restart policy and back-off, probes and hooks, graceful
//! termination, and the pod status written back through the API.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Pod};
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::Api;
use rkube_cri::api as cri;
use serde_json::{json, Value};
use tokio::sync::Notify;

use super::events::emit;
use super::status;
use super::Agent;
use crate::probes::{ContainerProbes, ProbeEvent};

/// The latest pod object of a worker, updated by the watch.
pub(crate) struct Shared {
    pub pod: std::sync::Mutex<Pod>,
    pub gone: AtomicBool,
    pub wake: Notify,
}

impl Shared {
    pub fn new(pod: Pod) -> Self {
        Self {
            pod: std::sync::Mutex::new(pod),
            gone: AtomicBool::new(false),
            wake: Notify::new(),
        }
    }
}

/// Back-off of one container: 10 s doubling to 5 min, reset after 10 min
/// of running.
#[derive(Clone, Debug, Default)]
pub(crate) struct Backoff {
    pub delay: Duration,
    pub until: Option<Instant>,
}

impl Backoff {
    pub fn ready(&self, now: Instant) -> bool {
        self.until.is_none_or(|u| now >= u)
    }

    pub fn bump(&mut self, now: Instant) {
        self.delay = if self.delay.is_zero() {
            Duration::from_secs(10)
        } else {
            (self.delay * 2).min(Duration::from_secs(300))
        };
        self.until = Some(now + self.delay);
    }
}

/// Worker-local state (not persisted: rebuilt from CRI after a restart).
#[derive(Default)]
pub(crate) struct State {
    pub vols: Option<crate::volumes::PodVolumes>,
    pub backoff: HashMap<String, Backoff>,
    pub waiting: HashMap<String, (String, String)>,
    pub probes: HashMap<String, (String, ContainerProbes)>,
    pub pod_ip: String,
    pub last_status: Option<Value>,
    pub deleting_since: Option<Instant>,
    pub refreshed: Option<Instant>,
    pub post_start_done: HashMap<String, bool>,
}

pub(crate) async fn run_worker(agent: Arc<Agent>, uid: String, shared: Arc<Shared>) {
    let mut st = State::default();
    loop {
        let pod = shared.pod.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let gone = shared.gone.load(Ordering::SeqCst);
        let finished = sync(&agent, &mut st, &pod, gone).await;
        if finished {
            agent.pods.lock().await.remove(&uid);
            return;
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), shared.wake.notified()).await;
    }
}

fn labels_of(pod: &Pod) -> (String, String, String) {
    (
        pod.metadata.namespace.clone().unwrap_or_default(),
        pod.metadata.name.clone().unwrap_or_default(),
        pod.metadata.uid.clone().unwrap_or_default(),
    )
}

pub(crate) async fn list_sandboxes(agent: &Agent, uid: Option<&str>) -> Vec<cri::PodSandbox> {
    let mut rt = agent.cri.runtime.clone();
    let mut filter = cri::PodSandboxFilter::default();
    if let Some(uid) = uid {
        filter
            .label_selector
            .insert("io.kubernetes.pod.uid".into(), uid.into());
    }
    rt.list_pod_sandbox(cri::ListPodSandboxRequest {
        filter: Some(filter),
    })
    .await
    .map(|r| r.into_inner().items)
    .unwrap_or_default()
}

async fn list_containers(agent: &Agent, uid: &str) -> Vec<cri::ContainerStatus> {
    let mut rt = agent.cri.runtime.clone();
    let mut filter = cri::ContainerFilter::default();
    filter
        .label_selector
        .insert("io.kubernetes.pod.uid".into(), uid.into());
    let list = rt
        .list_containers(cri::ListContainersRequest {
            filter: Some(filter),
        })
        .await
        .map(|r| r.into_inner().containers)
        .unwrap_or_default();
    let mut out = Vec::new();
    for c in list {
        if let Ok(s) = rt
            .container_status(cri::ContainerStatusRequest {
                container_id: c.id.clone(),
                verbose: false,
            })
            .await
        {
            if let Some(mut s) = s.into_inner().status {
                s.labels.insert("_sandbox".into(), c.pod_sandbox_id.clone());
                out.push(s);
            }
        }
    }
    out
}

fn attempt(c: &cri::ContainerStatus) -> u32 {
    c.metadata.as_ref().map(|m| m.attempt).unwrap_or(0)
}

fn cname(c: &cri::ContainerStatus) -> &str {
    c.metadata.as_ref().map(|m| m.name.as_str()).unwrap_or("")
}

/// The newest and the previous container of `name`.
fn latest<'a>(
    all: &'a [cri::ContainerStatus],
    name: &str,
) -> (
    Option<&'a cri::ContainerStatus>,
    Option<&'a cri::ContainerStatus>,
) {
    let mut v: Vec<&cri::ContainerStatus> = all.iter().filter(|c| cname(c) == name).collect();
    v.sort_by_key(|c| (attempt(c), c.created_at));
    let last = v.pop();
    (last, v.pop())
}

const RUNNING: i32 = cri::ContainerState::ContainerRunning as i32;
const EXITED: i32 = cri::ContainerState::ContainerExited as i32;
const CREATED: i32 = cri::ContainerState::ContainerCreated as i32;

fn restart_policy(pod: &Pod) -> String {
    pod.spec
        .as_ref()
        .and_then(|s| s.restart_policy.clone())
        .unwrap_or_else(|| "Always".into())
}

/// One pass toward the pod's desired state. Returns true when the worker is done.
async fn sync(agent: &Arc<Agent>, st: &mut State, pod: &Pod, gone: bool) -> bool {
    let (ns, name, uid) = labels_of(pod);
    let sandboxes = list_sandboxes(agent, Some(&uid)).await;
    if gone || pod.metadata.deletion_timestamp.is_some() {
        terminate(agent, st, pod, &sandboxes).await;
        if !gone {
            let api: Api<Pod> = Api::namespaced(agent.cfg.client.clone(), &ns);
            let dp = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions {
                    uid: Some(uid.clone()),
                    resource_version: None,
                }),
                ..Default::default()
            };
            match api.delete(&name, &dp).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
                Err(e) => {
                    tracing::warn!("deleting pod {ns}/{name}: {e}");
                    return false;
                }
            }
        }
        return true;
    }
    let spec = pod.spec.clone().unwrap_or_default();
    // Terminal pods keep their status; their sandbox is stopped.
    let phase = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_default();
    if phase == "Succeeded" || phase == "Failed" {
        for sb in &sandboxes {
            if sb.state == cri::PodSandboxState::SandboxReady as i32 {
                let mut rt = agent.cri.runtime.clone();
                let _ = rt
                    .stop_pod_sandbox(cri::StopPodSandboxRequest {
                        pod_sandbox_id: sb.id.clone(),
                    })
                    .await;
            }
        }
        return false;
    }
    // Volumes.
    if st.vols.is_none() {
        match agent.volumes.setup(pod).await {
            Ok(v) => st.vols = Some(v),
            Err(e) => {
                for c in spec
                    .init_containers
                    .iter()
                    .flatten()
                    .chain(spec.containers.iter())
                {
                    st.waiting
                        .insert(c.name.clone(), ("ContainerCreating".into(), e.to_string()));
                }
                write_status(agent, st, pod, &[], None).await;
                return false;
            }
        }
    } else if st
        .refreshed
        .is_none_or(|t| t.elapsed() > Duration::from_secs(10))
    {
        if let Some(v) = &st.vols {
            if let Err(e) = agent.volumes.refresh(pod, v).await {
                tracing::debug!("refreshing volumes of {ns}/{name}: {e}");
            }
        }
        st.refreshed = Some(Instant::now());
    }
    // Sandbox.
    let ready = sandboxes
        .iter()
        .filter(|s| s.state == cri::PodSandboxState::SandboxReady as i32)
        .max_by_key(|s| s.created_at)
        .cloned();
    let sandbox_id = match ready {
        Some(sb) => sb.id,
        None => {
            // A dead sandbox: clean it away and start over (containers restart).
            for sb in &sandboxes {
                let mut rt = agent.cri.runtime.clone();
                let _ = rt
                    .stop_pod_sandbox(cri::StopPodSandboxRequest {
                        pod_sandbox_id: sb.id.clone(),
                    })
                    .await;
                let _ = rt
                    .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                        pod_sandbox_id: sb.id.clone(),
                    })
                    .await;
            }
            st.probes.clear();
            st.post_start_done.clear();
            let cfg = sandbox_config(agent, pod, sandboxes.len() as u32);
            let handler = runtime_handler(agent, pod).await;
            let mut rt = agent.cri.runtime.clone();
            match rt
                .run_pod_sandbox(cri::RunPodSandboxRequest {
                    config: Some(cfg),
                    runtime_handler: handler,
                })
                .await
            {
                Ok(r) => r.into_inner().pod_sandbox_id,
                Err(e) => {
                    let msg = format!("Failed to create pod sandbox: {}", e.message());
                    tracing::warn!("{ns}/{name}: {msg}");
                    for c in spec
                        .init_containers
                        .iter()
                        .flatten()
                        .chain(spec.containers.iter())
                    {
                        st.waiting
                            .insert(c.name.clone(), ("ContainerCreating".into(), msg.clone()));
                    }
                    write_status(agent, st, pod, &[], None).await;
                    return false;
                }
            }
        }
    };
    if st.pod_ip.is_empty() {
        let mut rt = agent.cri.runtime.clone();
        if let Ok(s) = rt
            .pod_sandbox_status(cri::PodSandboxStatusRequest {
                pod_sandbox_id: sandbox_id.clone(),
                verbose: false,
            })
            .await
        {
            st.pod_ip = s
                .into_inner()
                .status
                .and_then(|s| s.network)
                .map(|n| n.ip)
                .unwrap_or_default();
        }
        if spec.host_network == Some(true) {
            st.pod_ip = agent.cfg.node_ip.to_string();
        }
        let _ = agent.volumes.etc_hosts(pod, &st.pod_ip);
    }
    let all: Vec<cri::ContainerStatus> = list_containers(agent, &uid)
        .await
        .into_iter()
        .filter(|c| c.labels.get("_sandbox") == Some(&sandbox_id))
        .collect();
    let policy = restart_policy(pod);
    let now = Instant::now();
    // Init containers, in order.
    let mut init_done = true;
    let mut init_failed = false;
    for c in spec.init_containers.iter().flatten() {
        let (last, _) = latest(&all, &c.name);
        match last {
            Some(l) if l.state == EXITED && l.exit_code == 0 => continue,
            Some(l) if l.state == RUNNING || l.state == CREATED => {
                if l.state == CREATED {
                    let mut rt = agent.cri.runtime.clone();
                    let _ = rt
                        .start_container(cri::StartContainerRequest {
                            container_id: l.id.clone(),
                        })
                        .await;
                }
                init_done = false;
                break;
            }
            Some(l) => {
                init_done = false;
                if policy == "Never" {
                    init_failed = true;
                    break;
                }
                let b = st.backoff.entry(c.name.clone()).or_default();
                if b.ready(now) {
                    b.bump(now);
                    st.waiting.remove(&c.name);
                    start_container(agent, st, pod, c, &sandbox_id, attempt(l) + 1).await;
                } else {
                    st.waiting.insert(
                        c.name.clone(),
                        ("CrashLoopBackOff".into(), backoff_message(b, &c.name, pod)),
                    );
                }
                break;
            }
            None => {
                init_done = false;
                start_container(agent, st, pod, c, &sandbox_id, 0).await;
                break;
            }
        }
    }
    // Ephemeral containers (kubectl debug): started once, never restarted.
    for c in ephemeral_containers(pod) {
        if latest(&all, &c.name).0.is_none() && !st.waiting.contains_key(&c.name) {
            start_container(agent, st, pod, &c, &sandbox_id, 0).await;
        }
    }
    if init_done && !init_failed {
        for c in &spec.containers {
            let (last, _) = latest(&all, &c.name);
            match last {
                None => {
                    start_container(agent, st, pod, c, &sandbox_id, 0).await;
                }
                Some(l) if l.state == CREATED => {
                    let mut rt = agent.cri.runtime.clone();
                    let _ = rt
                        .start_container(cri::StartContainerRequest {
                            container_id: l.id.clone(),
                        })
                        .await;
                }
                Some(l) if l.state == RUNNING => {
                    run_probes(agent, st, pod, c, l).await;
                    if let Some(b) = st.backoff.get_mut(&c.name) {
                        let ran = (chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0)
                            - l.started_at)
                            / 1_000_000_000;
                        if ran > 600 {
                            *b = Backoff::default();
                        }
                    }
                }
                Some(l) => {
                    let restart = match policy.as_str() {
                        "Always" => true,
                        "OnFailure" => l.exit_code != 0,
                        _ => false,
                    };
                    if !restart {
                        continue;
                    }
                    let b = st.backoff.entry(c.name.clone()).or_default();
                    if b.ready(now) {
                        b.bump(now);
                        st.waiting.remove(&c.name);
                        start_container(agent, st, pod, c, &sandbox_id, attempt(l) + 1).await;
                    } else {
                        let first = st.waiting.get(&c.name).map(|w| w.0.as_str())
                            != Some("CrashLoopBackOff");
                        st.waiting.insert(
                            c.name.clone(),
                            ("CrashLoopBackOff".into(), backoff_message(b, &c.name, pod)),
                        );
                        if first {
                            emit(
                                agent,
                                pod,
                                Some(&c.name),
                                true,
                                "BackOff",
                                "Back-off restarting failed container",
                            )
                            .await;
                        }
                    }
                }
            }
        }
    }
    let all: Vec<cri::ContainerStatus> = list_containers(agent, &uid)
        .await
        .into_iter()
        .filter(|c| c.labels.get("_sandbox") == Some(&sandbox_id))
        .collect();
    write_status(agent, st, pod, &all, Some(init_failed)).await;
    false
}

/// The pod's ephemeral containers as plain containers.
fn ephemeral_containers(pod: &Pod) -> Vec<Container> {
    pod.spec
        .as_ref()
        .and_then(|s| s.ephemeral_containers.clone())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|e| serde_json::to_value(e).ok())
        .filter_map(|mut v| {
            if let Some(m) = v.as_object_mut() {
                m.remove("targetContainerName");
            }
            serde_json::from_value::<Container>(v).ok()
        })
        .collect()
}

fn backoff_message(b: &Backoff, name: &str, pod: &Pod) -> String {
    let (ns, pname, uid) = labels_of(pod);
    format!(
        "back-off {}s restarting failed container={name} pod={pname}_{ns}({uid})",
        b.delay.as_secs()
    )
}

async fn runtime_handler(agent: &Agent, pod: &Pod) -> String {
    let Some(rc) = pod.spec.as_ref().and_then(|s| s.runtime_class_name.clone()) else {
        return String::new();
    };
    let api: Api<k8s_openapi::api::node::v1::RuntimeClass> = Api::all(agent.cfg.client.clone());
    api.get_opt(&rc)
        .await
        .ok()
        .flatten()
        .map(|r| r.handler)
        .unwrap_or_default()
}

fn host_dns() -> cri::DnsConfig {
    let mut d = cri::DnsConfig::default();
    if let Ok(text) = std::fs::read_to_string("/etc/resolv.conf") {
        for line in text.lines() {
            let mut it = line.split_whitespace();
            match it.next() {
                Some("nameserver") => d.servers.extend(it.map(String::from)),
                Some("search") => d.searches = it.map(String::from).collect(),
                Some("options") => d.options.extend(it.map(String::from)),
                _ => {}
            }
        }
    }
    d
}

fn sandbox_config(agent: &Agent, pod: &Pod, attempt: u32) -> cri::PodSandboxConfig {
    let (ns, name, uid) = labels_of(pod);
    let spec = pod.spec.clone().unwrap_or_default();
    let mut labels: HashMap<String, String> = pod
        .metadata
        .labels
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    labels.insert("io.kubernetes.pod.name".into(), name.clone());
    labels.insert("io.kubernetes.pod.namespace".into(), ns.clone());
    labels.insert("io.kubernetes.pod.uid".into(), uid.clone());
    let annotations: HashMap<String, String> = pod
        .metadata
        .annotations
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    let host_network = spec.host_network == Some(true);
    let dns = match spec.dns_policy.as_deref() {
        Some("None") => {
            let c = spec.dns_config.clone().unwrap_or_default();
            cri::DnsConfig {
                servers: c.nameservers.unwrap_or_default(),
                searches: c.searches.unwrap_or_default(),
                options: c
                    .options
                    .unwrap_or_default()
                    .into_iter()
                    .map(|o| match o.value {
                        Some(v) => format!("{}:{v}", o.name.unwrap_or_default()),
                        None => o.name.unwrap_or_default(),
                    })
                    .collect(),
            }
        }
        Some("ClusterFirst") | None if !agent.cfg.cluster_dns.is_empty() && !host_network => {
            cri::DnsConfig {
                servers: agent.cfg.cluster_dns.clone(),
                searches: vec![
                    format!("{ns}.svc.{}", agent.cfg.cluster_domain),
                    format!("svc.{}", agent.cfg.cluster_domain),
                    agent.cfg.cluster_domain.clone(),
                ],
                options: vec!["ndots:5".into()],
            }
        }
        _ => host_dns(),
    };
    let mut ports = Vec::new();
    for c in &spec.containers {
        for p in c.ports.iter().flatten() {
            if let Some(hp) = p.host_port.filter(|h| *h > 0) {
                ports.push(cri::PortMapping {
                    protocol: match p.protocol.as_deref() {
                        Some("UDP") => cri::Protocol::Udp as i32,
                        Some("SCTP") => cri::Protocol::Sctp as i32,
                        _ => cri::Protocol::Tcp as i32,
                    },
                    container_port: p.container_port,
                    host_port: hp,
                    host_ip: p.host_ip.clone().unwrap_or_default(),
                });
            }
        }
    }
    let psc = spec.security_context.clone().unwrap_or_default();
    let privileged = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .any(|c| c.security_context.as_ref().and_then(|s| s.privileged) == Some(true));
    let ns_opts = cri::NamespaceOption {
        network: if host_network {
            cri::NamespaceMode::Node as i32
        } else {
            cri::NamespaceMode::Pod as i32
        },
        pid: if spec.host_pid == Some(true) {
            cri::NamespaceMode::Node as i32
        } else if spec.share_process_namespace == Some(true) {
            cri::NamespaceMode::Pod as i32
        } else {
            cri::NamespaceMode::Container as i32
        },
        ipc: if spec.host_ipc == Some(true) {
            cri::NamespaceMode::Node as i32
        } else {
            cri::NamespaceMode::Pod as i32
        },
        ..Default::default()
    };
    let hostname = spec
        .hostname
        .clone()
        .unwrap_or_else(|| name.chars().take(63).collect());
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name,
            uid: uid.clone(),
            namespace: ns.clone(),
            attempt,
        }),
        hostname: if host_network {
            String::new()
        } else {
            hostname
        },
        log_directory: agent
            .cfg
            .root_dir
            .join("logs")
            .join(format!(
                "{}_{}_{}",
                ns,
                pod.metadata.name.clone().unwrap_or_default(),
                uid
            ))
            .to_string_lossy()
            .into_owned(),
        dns_config: Some(dns),
        port_mappings: ports,
        labels,
        annotations,
        linux: Some(cri::LinuxPodSandboxConfig {
            cgroup_parent: agent.cfg.cgroup_parent.clone().unwrap_or_default(),
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(ns_opts),
                run_as_user: psc.run_as_user.map(|v| cri::Int64Value { value: v }),
                run_as_group: psc.run_as_group.map(|v| cri::Int64Value { value: v }),
                supplemental_groups: psc.supplemental_groups.clone().unwrap_or_default(),
                privileged,
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

const MASKED: &[&str] = &[
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
const READONLY: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

fn quantity_milli(
    q: Option<&k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
) -> Option<i64> {
    let q = q?;
    crate::env::parse_quantity(&q.0)
        .ok()
        .map(|n| crate::env::milli_value(n) as i64)
}

fn quantity_value(
    q: Option<&k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
) -> Option<i64> {
    let q = q?;
    crate::env::parse_quantity(&q.0)
        .ok()
        .map(|n| crate::env::value(n) as i64)
}

fn linux_resources(pod: &Pod, c: &Container) -> cri::LinuxContainerResources {
    let req = c
        .resources
        .as_ref()
        .and_then(|r| r.requests.clone())
        .unwrap_or_default();
    let lim = c
        .resources
        .as_ref()
        .and_then(|r| r.limits.clone())
        .unwrap_or_default();
    let cpu_req = quantity_milli(req.get("cpu")).or(quantity_milli(lim.get("cpu")));
    let shares = cpu_req.map(|m| (m * 1024 / 1000).max(2)).unwrap_or(2);
    let quota = quantity_milli(lim.get("cpu"))
        .map(|m| (m * 100_000 / 1000).max(1000))
        .unwrap_or(0);
    let mem_limit = quantity_value(lim.get("memory")).unwrap_or(0);
    // Upstream's OOM score, clamped at 0: this host forbids negative values.
    let qos = pod
        .status
        .as_ref()
        .and_then(|s| s.qos_class.clone())
        .unwrap_or_default();
    let oom = match qos.as_str() {
        "BestEffort" => 1000,
        "Guaranteed" => 0,
        _ => {
            let cap = std::fs::read_to_string("/proc/meminfo")
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find(|l| l.starts_with("MemTotal:"))
                        .and_then(|l| l.split_whitespace().nth(1)?.parse::<i64>().ok())
                })
                .unwrap_or(1)
                * 1024;
            let mreq = quantity_value(req.get("memory")).unwrap_or(0);
            (1000 - 1000 * mreq / cap.max(1)).clamp(3, 999)
        }
    };
    cri::LinuxContainerResources {
        cpu_period: if quota > 0 { 100_000 } else { 0 },
        cpu_quota: quota,
        cpu_shares: shares,
        memory_limit_in_bytes: mem_limit,
        oom_score_adj: oom.max(0),
        ..Default::default()
    }
}

fn security(pod: &Pod, c: &Container) -> cri::LinuxContainerSecurityContext {
    let psc = pod
        .spec
        .as_ref()
        .and_then(|s| s.security_context.clone())
        .unwrap_or_default();
    let sc = c.security_context.clone().unwrap_or_default();
    let privileged = sc.privileged == Some(true);
    let caps = sc.capabilities.clone().unwrap_or_default();
    cri::LinuxContainerSecurityContext {
        capabilities: Some(cri::Capability {
            add_capabilities: caps.add.unwrap_or_default(),
            drop_capabilities: caps.drop.unwrap_or_default(),
            ..Default::default()
        }),
        privileged,
        namespace_options: Some(cri::NamespaceOption {
            network: if pod.spec.as_ref().and_then(|s| s.host_network) == Some(true) {
                cri::NamespaceMode::Node as i32
            } else {
                cri::NamespaceMode::Pod as i32
            },
            pid: if pod.spec.as_ref().and_then(|s| s.share_process_namespace) == Some(true) {
                cri::NamespaceMode::Pod as i32
            } else {
                cri::NamespaceMode::Container as i32
            },
            ipc: cri::NamespaceMode::Pod as i32,
            ..Default::default()
        }),
        run_as_user: sc
            .run_as_user
            .or(psc.run_as_user)
            .map(|v| cri::Int64Value { value: v }),
        run_as_group: sc
            .run_as_group
            .or(psc.run_as_group)
            .map(|v| cri::Int64Value { value: v }),
        readonly_rootfs: sc.read_only_root_filesystem == Some(true),
        supplemental_groups: psc.supplemental_groups.unwrap_or_default(),
        no_new_privs: sc.allow_privilege_escalation == Some(false),
        masked_paths: if privileged {
            vec![]
        } else {
            MASKED.iter().map(|s| s.to_string()).collect()
        },
        readonly_paths: if privileged {
            vec![]
        } else {
            READONLY.iter().map(|s| s.to_string()).collect()
        },
        ..Default::default()
    }
}

async fn pull_secrets(agent: &Agent, pod: &Pod, image: &str) -> Option<cri::AuthConfig> {
    use base64::Engine;
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let host = image
        .split('/')
        .next()
        .filter(|h| h.contains('.') || h.contains(':'))
        .unwrap_or("docker.io");
    let api: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(agent.cfg.client.clone(), &ns);
    for s in pod.spec.as_ref()?.image_pull_secrets.iter().flatten() {
        let Ok(Some(secret)) = api.get_opt(&s.name).await else {
            continue;
        };
        let data = secret.data.unwrap_or_default();
        let raw = data
            .get(".dockerconfigjson")
            .or_else(|| data.get(".dockercfg"))?;
        let v: Value = serde_json::from_slice(&raw.0).ok()?;
        let auths = v.get("auths").unwrap_or(&v);
        for (reg, a) in auths.as_object()? {
            let reg_host = reg
                .trim_start_matches("https://")
                .trim_start_matches("http://")
                .split('/')
                .next()
                .unwrap_or("");
            let matches =
                reg_host == host || (host == "docker.io" && reg_host.contains("docker.io"));
            if !matches {
                continue;
            }
            let mut ac = cri::AuthConfig::default();
            if let Some(u) = a.get("username").and_then(Value::as_str) {
                ac.username = u.into();
            }
            if let Some(p) = a.get("password").and_then(Value::as_str) {
                ac.password = p.into();
            }
            if let Some(au) = a.get("auth").and_then(Value::as_str) {
                ac.auth = au.into();
                if ac.username.is_empty() {
                    if let Ok(dec) = base64::engine::general_purpose::STANDARD.decode(au) {
                        let dec = String::from_utf8_lossy(&dec).into_owned();
                        if let Some((u, p)) = dec.split_once(':') {
                            ac.username = u.into();
                            ac.password = p.into();
                        }
                    }
                }
            }
            ac.server_address = reg_host.into();
            return Some(ac);
        }
    }
    None
}

/// Ensures the image, builds the config, creates and starts one container.
async fn start_container(
    agent: &Agent,
    st: &mut State,
    pod: &Pod,
    c: &Container,
    sandbox_id: &str,
    attempt_no: u32,
) {
    let (ns, name, uid) = labels_of(pod);
    let image = c.image.clone().unwrap_or_default();
    let policy = c
        .image_pull_policy
        .clone()
        .unwrap_or_else(|| "IfNotPresent".into());
    let mut img = agent.cri.image.clone();
    let present = img
        .image_status(cri::ImageStatusRequest {
            image: Some(cri::ImageSpec {
                image: image.clone(),
                ..Default::default()
            }),
            verbose: false,
        })
        .await
        .map(|r| r.into_inner().image.is_some())
        .unwrap_or(false);
    if !present && policy == "Never" {
        st.waiting.insert(
            c.name.clone(),
            (
                "ErrImageNeverPull".into(),
                format!("Container image \"{image}\" is not present with pull policy of Never"),
            ),
        );
        return;
    }
    if !present || policy == "Always" {
        let key = format!("pull:{}", c.name);
        let b = st.backoff.entry(key.clone()).or_default();
        if !b.ready(Instant::now()) {
            st.waiting.insert(
                c.name.clone(),
                (
                    "ImagePullBackOff".into(),
                    format!("Back-off pulling image \"{image}\""),
                ),
            );
            return;
        }
        let auth = pull_secrets(agent, pod, &image).await;
        let sandbox_config = sandbox_config(agent, pod, 0);
        match img
            .pull_image(cri::PullImageRequest {
                image: Some(cri::ImageSpec {
                    image: image.clone(),
                    ..Default::default()
                }),
                auth,
                sandbox_config: Some(sandbox_config),
            })
            .await
        {
            Ok(_) => {
                st.backoff.remove(&key);
                emit(
                    agent,
                    pod,
                    Some(&c.name),
                    false,
                    "Pulled",
                    &format!("Successfully pulled image \"{image}\""),
                )
                .await;
            }
            Err(e) => {
                emit(
                    agent,
                    pod,
                    Some(&c.name),
                    true,
                    "Failed",
                    &format!("Failed to pull image \"{image}\": {}", e.message()),
                )
                .await;
                st.backoff.entry(key).or_default().bump(Instant::now());
                st.waiting.insert(
                    c.name.clone(),
                    (
                        "ErrImagePull".into(),
                        format!("failed to pull image \"{image}\": {}", e.message()),
                    ),
                );
                return;
            }
        }
    }
    let env_ctx = crate::env::EnvContext {
        api_host: agent.cfg.api_host.clone(),
        api_port: agent.cfg.api_port,
        node_allocatable: Default::default(),
        pod_ip: st.pod_ip.clone(),
        host_ip: agent.cfg.node_ip.to_string(),
    };
    let envs = match crate::env::container_env(&agent.cfg.client, pod, c, &env_ctx).await {
        Ok(e) => e,
        Err(e) => {
            st.waiting.insert(
                c.name.clone(),
                ("CreateContainerConfigError".into(), e.to_string()),
            );
            return;
        }
    };
    let vols = st.vols.clone().unwrap_or_default();
    let term = agent
        .volumes
        .termination_log(&uid, &c.name, attempt_no as i32)
        .unwrap_or_default();
    let mounts = match agent.volumes.mounts_for(pod, &vols, c, &term) {
        Ok(m) => m,
        Err(e) => {
            st.waiting.insert(
                c.name.clone(),
                ("CreateContainerConfigError".into(), e.to_string()),
            );
            return;
        }
    };
    let expand = |v: &[String]| -> Vec<String> {
        let map: HashMap<String, String> = envs
            .iter()
            .map(|kv| (kv.key.clone(), kv.value.clone()))
            .collect();
        v.iter()
            .map(|s| crate::env::expand(s, |k| map.get(k).cloned()))
            .collect()
    };
    let mut labels = HashMap::new();
    labels.insert("io.kubernetes.pod.name".to_string(), name.clone());
    labels.insert("io.kubernetes.pod.namespace".to_string(), ns.clone());
    labels.insert("io.kubernetes.pod.uid".to_string(), uid.clone());
    labels.insert("io.kubernetes.container.name".to_string(), c.name.clone());
    let mut annotations = HashMap::new();
    annotations.insert(
        "io.kubernetes.container.restartCount".to_string(),
        attempt_no.to_string(),
    );
    annotations.insert(
        "io.kubernetes.container.terminationMessagePath".to_string(),
        c.termination_message_path
            .clone()
            .unwrap_or_else(|| "/dev/termination-log".into()),
    );
    annotations.insert(
        "io.kubernetes.container.terminationMessageHostPath".to_string(),
        term.to_string_lossy().into_owned(),
    );
    let config = cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: c.name.clone(),
            attempt: attempt_no,
        }),
        image: Some(cri::ImageSpec {
            image: image.clone(),
            ..Default::default()
        }),
        command: expand(&c.command.clone().unwrap_or_default()),
        args: expand(&c.args.clone().unwrap_or_default()),
        working_dir: c.working_dir.clone().unwrap_or_default(),
        envs,
        mounts,
        labels,
        annotations,
        log_path: format!("{}/{}.log", c.name, attempt_no),
        stdin: c.stdin == Some(true),
        stdin_once: c.stdin_once == Some(true),
        tty: c.tty == Some(true),
        linux: Some(cri::LinuxContainerConfig {
            resources: Some(linux_resources(pod, c)),
            security_context: Some(security(pod, c)),
        }),
        ..Default::default()
    };
    let mut rt = agent.cri.runtime.clone();
    let sandbox_config = sandbox_config(agent, pod, 0);
    let id = match rt
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: sandbox_id.to_string(),
            config: Some(config),
            sandbox_config: Some(sandbox_config),
        })
        .await
    {
        Ok(r) => r.into_inner().container_id,
        Err(e) => {
            emit(
                agent,
                pod,
                Some(&c.name),
                true,
                "Failed",
                &format!("Error: {}", e.message()),
            )
            .await;
            st.waiting.insert(
                c.name.clone(),
                ("CreateContainerError".into(), e.message().to_string()),
            );
            return;
        }
    };
    emit(
        agent,
        pod,
        Some(&c.name),
        false,
        "Created",
        &format!("Created container {}", c.name),
    )
    .await;
    if let Err(e) = rt
        .start_container(cri::StartContainerRequest {
            container_id: id.clone(),
        })
        .await
    {
        st.waiting.insert(
            c.name.clone(),
            ("RunContainerError".into(), e.message().to_string()),
        );
        return;
    }
    st.waiting.remove(&c.name);
    emit(
        agent,
        pod,
        Some(&c.name),
        false,
        "Started",
        &format!("Started container {}", c.name),
    )
    .await;
    if let Some(h) = c.lifecycle.as_ref().and_then(|l| l.post_start.as_ref()) {
        if let Err(msg) =
            crate::hooks::run_handler(&agent.cri, h, c, &id, &st.pod_ip, Duration::from_secs(30))
                .await
        {
            tracing::warn!("{ns}/{name} {}: postStart hook failed: {msg}", c.name);
            let _ = rt
                .stop_container(cri::StopContainerRequest {
                    container_id: id.clone(),
                    timeout: 2,
                })
                .await;
            st.waiting
                .insert(c.name.clone(), ("PostStartHookError".into(), msg));
        }
    }
}

async fn run_probes(
    agent: &Agent,
    st: &mut State,
    pod: &Pod,
    c: &Container,
    l: &cri::ContainerStatus,
) {
    let entry = st.probes.entry(c.name.clone());
    let (id, probes) = entry.or_insert_with(|| {
        (
            l.id.clone(),
            ContainerProbes::for_container(&agent.cri, c, &l.id, &st.pod_ip, Instant::now()),
        )
    });
    if *id != l.id {
        *id = l.id.clone();
        *probes = ContainerProbes::for_container(&agent.cri, c, &l.id, &st.pod_ip, Instant::now());
    }
    for ev in probes.tick(Instant::now()).await {
        if let ProbeEvent::Restart {
            message,
            grace_seconds,
            ..
        } = ev
        {
            let (ns, name, _) = labels_of(pod);
            tracing::info!(
                "{ns}/{name} {}: probe failed, restarting: {message}",
                c.name
            );
            emit(
                agent,
                pod,
                Some(&c.name),
                true,
                "Unhealthy",
                &format!("Probe failed: {message}"),
            )
            .await;
            emit(
                agent,
                pod,
                Some(&c.name),
                false,
                "Killing",
                &format!("Container {} failed its probe, will be restarted", c.name),
            )
            .await;
            let grace = grace_seconds
                .or(pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.termination_grace_period_seconds))
                .unwrap_or(30);
            let mut rt = agent.cri.runtime.clone();
            let _ = rt
                .stop_container(cri::StopContainerRequest {
                    container_id: l.id.clone(),
                    timeout: grace,
                })
                .await;
        }
    }
}

/// Stops everything of a pod being deleted: preStop hooks, containers with
/// the grace period, sandboxes, volumes.
async fn terminate(agent: &Agent, st: &mut State, pod: &Pod, sandboxes: &[cri::PodSandbox]) {
    let (_, _, uid) = labels_of(pod);
    let since = *st.deleting_since.get_or_insert_with(Instant::now);
    let grace = pod
        .metadata
        .deletion_grace_period_seconds
        .or(pod
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds))
        .unwrap_or(30)
        .max(0);
    let all = list_containers(agent, &uid).await;
    let specs: Vec<Container> = pod
        .spec
        .as_ref()
        .map(|s| s.containers.clone())
        .unwrap_or_default();
    let running: Vec<&cri::ContainerStatus> = all.iter().filter(|c| c.state == RUNNING).collect();
    let mut tasks = Vec::new();
    for c in running {
        let spec = specs.iter().find(|s| s.name == cname(c)).cloned();
        let cri = agent.cri.clone();
        let id = c.id.clone();
        let ip = st.pod_ip.clone();
        tasks.push(async move {
            let deadline = since + Duration::from_secs(grace as u64);
            if let Some(spec) = &spec {
                if let Some(h) = spec.lifecycle.as_ref().and_then(|l| l.pre_stop.as_ref()) {
                    let left = deadline.saturating_duration_since(Instant::now());
                    let _ = crate::hooks::run_handler(&cri, h, spec, &id, &ip, left).await;
                }
            }
            let left = deadline.saturating_duration_since(Instant::now()).as_secs() as i64;
            let mut rt = cri.runtime.clone();
            let _ = rt
                .stop_container(cri::StopContainerRequest {
                    container_id: id,
                    timeout: left.max(0),
                })
                .await;
        });
    }
    futures::future::join_all(tasks).await;
    let mut rt = agent.cri.runtime.clone();
    for sb in sandboxes {
        let _ = rt
            .stop_pod_sandbox(cri::StopPodSandboxRequest {
                pod_sandbox_id: sb.id.clone(),
            })
            .await;
        let _ = rt
            .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                pod_sandbox_id: sb.id.clone(),
            })
            .await;
    }
    let _ = agent.volumes.teardown(&uid).await;
}

/// Removes sandboxes of pods that no longer exist on this node.
pub(crate) async fn collect_orphans(agent: &Agent, live: &[String]) {
    let workers: Vec<String> = agent.pods.lock().await.keys().cloned().collect();
    let mut rt = agent.cri.runtime.clone();
    for sb in list_sandboxes(agent, None).await {
        let Some(uid) = sb.labels.get("io.kubernetes.pod.uid") else {
            continue;
        };
        if live.contains(uid) || workers.contains(uid) {
            continue;
        }
        tracing::info!("removing sandbox {} of vanished pod {uid}", sb.id);
        let _ = rt
            .stop_pod_sandbox(cri::StopPodSandboxRequest {
                pod_sandbox_id: sb.id.clone(),
            })
            .await;
        let _ = rt
            .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                pod_sandbox_id: sb.id.clone(),
            })
            .await;
        let _ = agent.volumes.teardown(uid).await;
    }
}

/// Computes the pod status and writes it when it changed.
async fn write_status(
    agent: &Agent,
    st: &mut State,
    pod: &Pod,
    all: &[cri::ContainerStatus],
    init_failed: Option<bool>,
) {
    let runtime = agent.runtime_name.lock().await.clone();
    let runtime = if runtime.is_empty() {
        "containerd".to_string()
    } else {
        runtime
    };
    let ready_of = |name: &str| -> (bool, bool) {
        st.probes
            .get(name)
            .map(|(_, p)| (p.started(), p.ready()))
            .unwrap_or((true, true))
    };
    let spec = pod.spec.clone().unwrap_or_default();
    let mut statuses = Vec::new();
    for c in &spec.containers {
        let (last, prev) = latest(all, &c.name);
        let (started, ready) = ready_of(&c.name);
        statuses.push(status::container_status(
            c,
            last,
            prev,
            st.waiting.get(&c.name),
            &runtime,
            started,
            ready,
            "ContainerCreating",
        ));
    }
    let mut init_statuses = Vec::new();
    for c in spec.init_containers.iter().flatten() {
        let (last, prev) = latest(all, &c.name);
        init_statuses.push(status::container_status(
            c,
            last,
            prev,
            st.waiting.get(&c.name),
            &runtime,
            true,
            false,
            "PodInitializing",
        ));
    }
    let mut eph_statuses = Vec::new();
    for c in ephemeral_containers(pod) {
        let (last, prev) = latest(all, &c.name);
        eph_statuses.push(status::container_status(
            &c,
            last,
            prev,
            st.waiting.get(&c.name),
            &runtime,
            true,
            false,
            "ContainerCreating",
        ));
    }
    let mut body = status::pod_status(
        pod,
        &statuses,
        &init_statuses,
        &st.pod_ip,
        &agent.cfg.node_ip.to_string(),
        init_failed.unwrap_or(false),
        !all.is_empty() || !st.pod_ip.is_empty(),
    );
    if !eph_statuses.is_empty() {
        body["ephemeralContainerStatuses"] = json!(eph_statuses);
    }
    if st.last_status.as_ref() == Some(&body) {
        return;
    }
    let (ns, name, _) = labels_of(pod);
    let api: Api<Pod> = Api::namespaced(agent.cfg.client.clone(), &ns);
    match api
        .patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": body.clone()})),
        )
        .await
    {
        Ok(_) => st.last_status = Some(body),
        Err(e) => tracing::debug!("status of {ns}/{name}: {e}"),
    }
}
