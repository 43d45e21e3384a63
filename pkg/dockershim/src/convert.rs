//! CRI configs as Docker `containers/create` bodies (no I/O): the pause
//! container of a sandbox and app containers joining its namespaces,
//! with hostname, resources, security context, mounts and devices.

use std::collections::HashMap;

use bollard::models::{
    ContainerCreateBody, DeviceMapping, HostConfig, HostConfigLogConfig, Mount, MountBindOptions,
    MountBindOptionsPropagationEnum, MountTypeEnum,
};
use rkube_cri::api as cri;
use rkube_runtime_spec::SandboxFiles;

/// CRI NamespaceMode values.
pub(crate) const NS_POD: i32 = 0;
pub(crate) const NS_NODE: i32 = 2;
pub(crate) const NS_TARGET: i32 = 3;

/// CRI SecurityProfile types.
const PROFILE_UNCONFINED: i32 = 1;
const PROFILE_LOCALHOST: i32 = 2;

/// The namespace options of a sandbox config.
pub(crate) fn ns_options(config: &cri::PodSandboxConfig) -> cri::NamespaceOption {
    config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.clone())
        .unwrap_or_default()
}

/// Docker's json-file logs, bounded: the CRI log file is the record.
fn log_config() -> HostConfigLogConfig {
    HostConfigLogConfig {
        typ: Some("json-file".into()),
        config: Some(HashMap::from([
            ("max-size".to_string(), "10m".to_string()),
            ("max-file".to_string(), "2".to_string()),
        ])),
    }
}

fn handler(h: &str) -> Option<String> {
    (!h.is_empty()).then(|| h.to_string())
}

/// The pause container of a sandbox: no docker network (CNI wires its
/// namespace), a shareable IPC namespace, the pod's cgroup parent.
pub(crate) fn sandbox_body(
    config: &cri::PodSandboxConfig,
    image: &str,
    runtime: &str,
    cgroup_parent: &str,
    labels: HashMap<String, String>,
) -> ContainerCreateBody {
    let ns = ns_options(config);
    let host_net = ns.network == NS_NODE;
    let sysctls: HashMap<String, String> = config
        .linux
        .as_ref()
        .map(|l| l.sysctls.clone())
        .unwrap_or_default()
        .into_iter()
        // dockerd refuses net.* sysctls in the host's network namespace.
        .filter(|(k, _)| !(host_net && k.starts_with("net.")))
        .collect();
    ContainerCreateBody {
        image: Some(image.to_string()),
        hostname: (!host_net && !config.hostname.is_empty()).then(|| config.hostname.clone()),
        labels: Some(labels),
        host_config: Some(HostConfig {
            network_mode: Some(if host_net { "host" } else { "none" }.into()),
            ipc_mode: Some(
                if ns.ipc == NS_NODE {
                    "host"
                } else {
                    "shareable"
                }
                .into(),
            ),
            pid_mode: (ns.pid == NS_NODE).then(|| "host".to_string()),
            cgroup_parent: (!cgroup_parent.is_empty()).then(|| cgroup_parent.to_string()),
            oom_score_adj: Some(rkube_runtime_spec::clamp_oom(-998)),
            runtime: handler(runtime),
            log_config: Some(log_config()),
            sysctls: (!sysctls.is_empty()).then_some(sysctls),
            security_opt: Some(vec!["no-new-privileges".into()]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// What an app container needs besides its own config.
pub(crate) struct ContainerInput<'a> {
    /// The pause container's ID.
    pub sandbox_id: &'a str,
    /// The sandbox's config.
    pub sandbox: &'a cri::PodSandboxConfig,
    /// The container's config.
    pub config: &'a cri::ContainerConfig,
    /// The image to run (name or ID).
    pub image: &'a str,
    /// Runtime handler of the sandbox.
    pub runtime: &'a str,
    /// The sandbox's cgroup parent.
    pub cgroup_parent: &'a str,
    /// The sandbox's /etc files.
    pub files: &'a SandboxFiles,
    /// Docker labels.
    pub labels: HashMap<String, String>,
    /// Seccomp profile contents of a Localhost profile, read by the caller.
    pub seccomp_localhost: Option<String>,
    /// Whether the kernel has AppArmor enabled.
    pub apparmor: bool,
}

fn propagation(p: i32) -> MountBindOptionsPropagationEnum {
    match p {
        1 => MountBindOptionsPropagationEnum::RSLAVE,
        2 => MountBindOptionsPropagationEnum::RSHARED,
        _ => MountBindOptionsPropagationEnum::RPRIVATE,
    }
}

fn bind(target: &str, source: &str, read_only: bool, prop: i32) -> Mount {
    Mount {
        target: Some(target.to_string()),
        source: Some(source.to_string()),
        typ: Some(MountTypeEnum::BIND),
        read_only: Some(read_only),
        bind_options: Some(MountBindOptions {
            propagation: Some(propagation(prop)),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// `user[:group]` for Docker from the security context.
fn user(sc: &cri::LinuxContainerSecurityContext) -> Option<String> {
    let user = match (&sc.run_as_user, sc.run_as_username.as_str()) {
        (Some(u), _) => u.value.to_string(),
        (None, name) if !name.is_empty() => name.to_string(),
        _ => return None,
    };
    Some(match &sc.run_as_group {
        Some(g) => format!("{user}:{}", g.value),
        None => user,
    })
}

/// Docker's `--security-opt` values for a container.
fn security_opts(sc: &cri::LinuxContainerSecurityContext, input: &ContainerInput) -> Vec<String> {
    let mut opts = Vec::new();
    if sc.no_new_privs {
        opts.push("no-new-privileges".to_string());
    }
    match sc.seccomp.as_ref().map(|p| p.profile_type) {
        Some(PROFILE_UNCONFINED) => opts.push("seccomp=unconfined".into()),
        Some(PROFILE_LOCALHOST) => {
            if let Some(json) = &input.seccomp_localhost {
                opts.push(format!("seccomp={json}"));
            }
        }
        // RuntimeDefault: dockerd's default profile.
        _ => {}
    }
    if input.apparmor {
        match sc.apparmor.as_ref() {
            Some(p) if p.profile_type == PROFILE_UNCONFINED => {
                opts.push("apparmor=unconfined".into())
            }
            Some(p) if p.profile_type == PROFILE_LOCALHOST && !p.localhost_ref.is_empty() => {
                opts.push(format!("apparmor={}", p.localhost_ref))
            }
            _ => {}
        }
    }
    opts
}

/// An app container joining the sandbox's namespaces.
pub(crate) fn container_body(input: &ContainerInput) -> ContainerCreateBody {
    let c = input.config;
    let linux = c.linux.clone().unwrap_or_default();
    let sc = linux.security_context.clone().unwrap_or_default();
    let res = linux.resources.clone().unwrap_or_default();
    let sb_ns = ns_options(input.sandbox);
    let ns = sc.namespace_options.clone().unwrap_or_default();
    let join = format!("container:{}", input.sandbox_id);
    let pid_mode = match ns.pid {
        NS_POD => Some(join.clone()),
        NS_NODE => Some("host".to_string()),
        NS_TARGET if !ns.target_id.is_empty() => Some(format!("container:{}", ns.target_id)),
        _ => None,
    };
    let covered = |dst: &str| c.mounts.iter().any(|m| m.container_path == dst);
    let mut mounts = Vec::new();
    if sb_ns.network != NS_NODE {
        for (dst, src) in [
            ("/etc/hosts", &input.files.hosts),
            ("/etc/resolv.conf", &input.files.resolv_conf),
            ("/etc/hostname", &input.files.hostname),
        ] {
            if !covered(dst) {
                mounts.push(bind(dst, &src.to_string_lossy(), false, 0));
            }
        }
    }
    for m in &c.mounts {
        mounts.push(bind(
            &m.container_path,
            &m.host_path,
            m.readonly,
            m.propagation,
        ));
    }
    let devices: Vec<DeviceMapping> = c
        .devices
        .iter()
        .map(|d| DeviceMapping {
            path_on_host: Some(d.host_path.clone()),
            path_in_container: Some(d.container_path.clone()),
            cgroup_permissions: Some(if d.permissions.is_empty() {
                "rwm".into()
            } else {
                d.permissions.clone()
            }),
        })
        .collect();
    let caps = sc.capabilities.clone().unwrap_or_default();
    let memory = (res.memory_limit_in_bytes > 0).then_some(res.memory_limit_in_bytes);
    let non_empty = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
    ContainerCreateBody {
        image: Some(input.image.to_string()),
        entrypoint: non_empty(&c.command),
        cmd: non_empty(&c.args),
        env: Some(
            c.envs
                .iter()
                .map(|e| format!("{}={}", e.key, e.value))
                .collect(),
        ),
        working_dir: (!c.working_dir.is_empty()).then(|| c.working_dir.clone()),
        user: user(&sc),
        tty: Some(c.tty),
        open_stdin: Some(c.stdin),
        stdin_once: Some(c.stdin_once),
        attach_stdin: Some(c.stdin),
        labels: Some(input.labels.clone()),
        host_config: Some(HostConfig {
            network_mode: Some(join.clone()),
            ipc_mode: Some(if sb_ns.ipc == NS_NODE {
                "host".to_string()
            } else {
                join.clone()
            }),
            pid_mode,
            cgroup_parent: (!input.cgroup_parent.is_empty())
                .then(|| input.cgroup_parent.to_string()),
            runtime: handler(input.runtime),
            log_config: Some(log_config()),
            mounts: Some(mounts),
            devices: (!devices.is_empty()).then_some(devices),
            cap_add: non_empty(&caps.add_capabilities),
            cap_drop: non_empty(&caps.drop_capabilities),
            privileged: Some(sc.privileged),
            readonly_rootfs: Some(sc.readonly_rootfs),
            group_add: (!sc.supplemental_groups.is_empty())
                .then(|| sc.supplemental_groups.iter().map(i64::to_string).collect()),
            security_opt: Some(security_opts(&sc, input)),
            masked_paths: (!sc.privileged && !sc.masked_paths.is_empty())
                .then(|| sc.masked_paths.clone()),
            readonly_paths: (!sc.privileged && !sc.readonly_paths.is_empty())
                .then(|| sc.readonly_paths.clone()),
            cpu_period: (res.cpu_period > 0).then_some(res.cpu_period),
            cpu_quota: (res.cpu_quota > 0).then_some(res.cpu_quota),
            cpu_shares: (res.cpu_shares > 0).then_some(res.cpu_shares),
            cpuset_cpus: (!res.cpuset_cpus.is_empty()).then(|| res.cpuset_cpus.clone()),
            cpuset_mems: (!res.cpuset_mems.is_empty()).then(|| res.cpuset_mems.clone()),
            memory,
            // No swap beyond the limit, as Kubernetes expects.
            memory_swap: memory,
            oom_score_adj: Some(rkube_runtime_spec::clamp_oom(res.oom_score_adj)),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Docker's resource update for UpdateContainerResources.
pub(crate) fn update_body(
    res: &cri::LinuxContainerResources,
) -> bollard::models::ContainerUpdateBody {
    let memory = (res.memory_limit_in_bytes > 0).then_some(res.memory_limit_in_bytes);
    bollard::models::ContainerUpdateBody {
        cpu_period: (res.cpu_period > 0).then_some(res.cpu_period),
        cpu_quota: (res.cpu_quota > 0).then_some(res.cpu_quota),
        cpu_shares: (res.cpu_shares > 0).then_some(res.cpu_shares),
        cpuset_cpus: (!res.cpuset_cpus.is_empty()).then(|| res.cpuset_cpus.clone()),
        cpuset_mems: (!res.cpuset_mems.is_empty()).then(|| res.cpuset_mems.clone()),
        memory,
        memory_swap: memory,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files() -> SandboxFiles {
        SandboxFiles {
            hosts: "/sb/hosts".into(),
            resolv_conf: "/sb/resolv.conf".into(),
            hostname: "/sb/hostname".into(),
            shm: "/sb/shm".into(),
        }
    }

    #[test]
    fn pause_has_no_docker_network_and_shares_ipc() {
        let config = cri::PodSandboxConfig {
            hostname: "web-0".into(),
            ..Default::default()
        };
        let b = sandbox_body(&config, "pause", "", "/rkube/podu1", HashMap::new());
        let h = b.host_config.unwrap();
        assert_eq!(b.hostname.as_deref(), Some("web-0"));
        assert_eq!(h.network_mode.as_deref(), Some("none"));
        assert_eq!(h.ipc_mode.as_deref(), Some("shareable"));
        assert_eq!(
            h.oom_score_adj,
            Some(0),
            "negative oom_score_adj is clamped"
        );
        assert_eq!(h.runtime, None);
    }

    #[test]
    fn app_container_joins_the_sandbox() {
        let sandbox = cri::PodSandboxConfig::default();
        let config = cri::ContainerConfig {
            command: vec!["sh".into(), "-c".into()],
            args: vec!["echo hi".into()],
            envs: vec![cri::KeyValue {
                key: "A".into(),
                value: "b=c".into(),
            }],
            mounts: vec![cri::Mount {
                container_path: "/etc/hosts".into(),
                host_path: "/pod/etc-hosts".into(),
                ..Default::default()
            }],
            linux: Some(cri::LinuxContainerConfig {
                resources: Some(cri::LinuxContainerResources {
                    memory_limit_in_bytes: 64 << 20,
                    cpu_quota: 50_000,
                    cpu_period: 100_000,
                    oom_score_adj: -997,
                    ..Default::default()
                }),
                security_context: Some(cri::LinuxContainerSecurityContext {
                    run_as_user: Some(cri::Int64Value { value: 1000 }),
                    run_as_group: Some(cri::Int64Value { value: 3000 }),
                    namespace_options: Some(cri::NamespaceOption {
                        pid: NS_POD,
                        ..Default::default()
                    }),
                    seccomp: Some(cri::SecurityProfile {
                        profile_type: PROFILE_UNCONFINED,
                        ..Default::default()
                    }),
                    capabilities: Some(cri::Capability {
                        add_capabilities: vec!["NET_ADMIN".into()],
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
            }),
            ..Default::default()
        };
        let files = files();
        let b = container_body(&ContainerInput {
            sandbox_id: "sb1",
            sandbox: &sandbox,
            config: &config,
            image: "busybox",
            runtime: "crun",
            cgroup_parent: "/rkube/podu1",
            files: &files,
            labels: HashMap::new(),
            seccomp_localhost: None,
            apparmor: false,
        });
        assert_eq!(b.entrypoint, Some(vec!["sh".into(), "-c".into()]));
        assert_eq!(b.cmd, Some(vec!["echo hi".into()]));
        assert_eq!(b.env, Some(vec!["A=b=c".into()]));
        assert_eq!(b.user.as_deref(), Some("1000:3000"));
        let h = b.host_config.unwrap();
        assert_eq!(h.network_mode.as_deref(), Some("container:sb1"));
        assert_eq!(h.ipc_mode.as_deref(), Some("container:sb1"));
        assert_eq!(h.pid_mode.as_deref(), Some("container:sb1"));
        assert_eq!(h.runtime.as_deref(), Some("crun"));
        assert_eq!(h.memory, Some(64 << 20));
        assert_eq!(h.memory_swap, Some(64 << 20));
        assert_eq!(h.oom_score_adj, Some(0));
        assert_eq!(h.cap_add, Some(vec!["NET_ADMIN".into()]));
        assert!(h
            .security_opt
            .unwrap()
            .contains(&"seccomp=unconfined".to_string()));
        let mounts = h.mounts.unwrap();
        let targets: Vec<_> = mounts.iter().map(|m| m.target.clone().unwrap()).collect();
        // The CRI mount of /etc/hosts wins over the sandbox's file.
        assert_eq!(
            targets,
            ["/etc/resolv.conf", "/etc/hostname", "/etc/hosts"].map(String::from)
        );
        assert_eq!(mounts[2].source.as_deref(), Some("/pod/etc-hosts"));
    }

    #[test]
    fn image_defaults_stay_when_command_and_args_are_empty() {
        let sandbox = cri::PodSandboxConfig::default();
        let config = cri::ContainerConfig::default();
        let files = files();
        let b = container_body(&ContainerInput {
            sandbox_id: "sb1",
            sandbox: &sandbox,
            config: &config,
            image: "busybox",
            runtime: "",
            cgroup_parent: "",
            files: &files,
            labels: HashMap::new(),
            seccomp_localhost: None,
            apparmor: false,
        });
        assert_eq!((b.entrypoint, b.cmd), (None, None));
        let h = b.host_config.unwrap();
        // CRI's zero NamespaceMode is POD: without namespace options the
        // container shares the sandbox's PID namespace (kubelet asks for
        // CONTAINER when the pod does not share its process namespace).
        assert_eq!(h.pid_mode.as_deref(), Some("container:sb1"));
        assert_eq!(h.memory, None);
    }
}
