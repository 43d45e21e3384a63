//! OCI runtime specs (`config.json`) for CRI pod sandboxes and containers,
//! as CRI-O and containerd's CRI plugin generate them: the pause container
//! holds the pod's namespaces, app containers join them; process args and
//! env follow the Kubernetes rules over the image config; default
//! capabilities, masked paths and devices; the sandbox's /etc files and
//! /dev/shm; CRI mounts and resources. Specs are built as JSON and checked
//! by deserializing into oci-spec's [`Spec`].
//!
//! Seccomp: no RuntimeDefault profile is shipped, so containers run
//! unconfined; AppArmor and SELinux options are ignored.

use std::path::{Path, PathBuf};

use rkube_cri::api as cri;
use serde_json::{json, Value};

mod files;
mod sandbox;
mod user;

pub use files::{
    mount_rootfs, release_sandbox_files, render_hosts, render_resolv, unmount, write_sandbox_files,
    SandboxFiles,
};
pub use oci_spec::image::Config as ImageConfig;
pub use oci_spec::runtime::Spec;
pub use sandbox::{cni_attachment, sandbox_cgroup};
pub use user::{resolve_user, User};

/// Errors building specs. Messages say what to fix.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The user or group cannot be resolved.
    #[error("{0}")]
    User(String),
    /// The container config is not usable.
    #[error("invalid container config: {0}")]
    Config(String),
    /// A file system operation failed.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// What was attempted.
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(
        action: &'static str,
        path: impl AsRef<Path>,
    ) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.as_ref().to_path_buf();
        move |source| Error::Io {
            action,
            path,
            source,
        }
    }
}

/// How a container gets one of its namespaces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NsMode {
    /// The host's (no namespace in the spec).
    Host,
    /// A new one.
    New,
    /// Join the namespace file at this path.
    Path(PathBuf),
}

/// The namespaces of a container.
#[derive(Clone, Debug)]
pub struct Namespaces {
    /// Network.
    pub net: NsMode,
    /// IPC.
    pub ipc: NsMode,
    /// UTS (hostname).
    pub uts: NsMode,
    /// PID.
    pub pid: NsMode,
}

/// Input of [`sandbox_spec`].
pub struct SandboxInput<'a> {
    /// The pod's sandbox config.
    pub config: &'a cri::PodSandboxConfig,
    /// The pause image's root file system.
    pub rootfs: &'a Path,
    /// The pause image's config.
    pub image: &'a ImageConfig,
    /// Network namespace (a pinned path, or host).
    pub netns: NsMode,
    /// Cgroup of the pause container.
    pub cgroups_path: String,
    /// The sandbox's files.
    pub files: &'a SandboxFiles,
}

/// Input of [`container_spec`].
pub struct ContainerInput<'a> {
    /// The container's config.
    pub config: &'a cri::ContainerConfig,
    /// Its sandbox's config.
    pub sandbox: &'a cri::PodSandboxConfig,
    /// The image's config.
    pub image: &'a ImageConfig,
    /// The container's root file system (overlay merged dir).
    pub rootfs: &'a Path,
    /// Namespaces to join or create.
    pub namespaces: Namespaces,
    /// The sandbox's files.
    pub files: &'a SandboxFiles,
    /// Cgroup of the container.
    pub cgroups_path: String,
}

/// The capabilities containers get by default (containerd's set).
pub const DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Every capability (for privileged containers and "ALL").
pub const ALL_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
];

const MASKED: &[&str] = &[
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
];
const READONLY: &[&str] = &[
    "/proc/asound",
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];
const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// This host (and many others) forbid a negative oom_score_adj for
/// containers: runc then fails with "can't get final child's PID from
/// pipe: EOF". Clamp at 0.
pub fn clamp_oom(v: i64) -> i64 {
    v.clamp(0, 1000)
}

fn cap_name(c: &str) -> String {
    let up = c.trim().to_ascii_uppercase();
    if up.starts_with("CAP_") {
        up
    } else {
        format!("CAP_{up}")
    }
}

/// The effective capability set from the CRI capability options.
pub fn capabilities(privileged: bool, caps: Option<&cri::Capability>) -> Result<Vec<String>> {
    if privileged {
        return Ok(ALL_CAPS.iter().map(|s| s.to_string()).collect());
    }
    let mut set: Vec<String> = DEFAULT_CAPS.iter().map(|s| s.to_string()).collect();
    let Some(c) = caps else { return Ok(set) };
    let check = |n: &String| -> Result<()> {
        if ALL_CAPS.contains(&n.as_str()) {
            Ok(())
        } else {
            Err(Error::Config(format!("unknown capability {n:?}")))
        }
    };
    let all = |v: &[String]| v.iter().any(|x| x.trim().eq_ignore_ascii_case("ALL"));
    // As containerd: "ALL" first (add, then drop), so that individual names
    // still apply on top: add ALL + drop X = everything but X.
    if all(&c.add_capabilities) {
        set = ALL_CAPS.iter().map(|s| s.to_string()).collect();
    }
    if all(&c.drop_capabilities) {
        set.clear();
    }
    for a in &c.add_capabilities {
        if !a.trim().eq_ignore_ascii_case("ALL") {
            let n = cap_name(a);
            check(&n)?;
            if !set.contains(&n) {
                set.push(n);
            }
        }
    }
    for d in &c.drop_capabilities {
        if !d.trim().eq_ignore_ascii_case("ALL") {
            let n = cap_name(d);
            check(&n)?;
            set.retain(|x| x != &n);
        }
    }
    Ok(set)
}

/// OCI resources from CRI container resources.
pub fn linux_resources(r: &cri::LinuxContainerResources) -> oci_spec::runtime::LinuxResources {
    serde_json::from_value(resources_json(Some(r))).unwrap_or_default()
}

fn resources_json(r: Option<&cri::LinuxContainerResources>) -> Value {
    let mut res = json!({});
    let Some(r) = r else { return res };
    let mut cpu = json!({});
    if r.cpu_shares > 0 {
        cpu["shares"] = json!(r.cpu_shares);
    }
    if r.cpu_quota > 0 {
        cpu["quota"] = json!(r.cpu_quota);
    }
    if r.cpu_period > 0 {
        cpu["period"] = json!(r.cpu_period);
    }
    if !r.cpuset_cpus.is_empty() {
        cpu["cpus"] = json!(r.cpuset_cpus);
    }
    if !r.cpuset_mems.is_empty() {
        cpu["mems"] = json!(r.cpuset_mems);
    }
    if cpu.as_object().is_some_and(|o| !o.is_empty()) {
        res["cpu"] = cpu;
    }
    if r.memory_limit_in_bytes > 0 {
        let mut mem = json!({ "limit": r.memory_limit_in_bytes });
        if r.memory_swap_limit_in_bytes > 0 {
            mem["swap"] = json!(r.memory_swap_limit_in_bytes);
        }
        res["memory"] = mem;
    }
    if !r.hugepage_limits.is_empty() {
        res["hugepageLimits"] = json!(r
            .hugepage_limits
            .iter()
            .map(|h| json!({"pageSize": h.page_size, "limit": h.limit}))
            .collect::<Vec<_>>());
    }
    if !r.unified.is_empty() {
        res["unified"] = json!(r.unified);
    }
    res
}

fn ns_entries(ns: &[(&str, &NsMode)]) -> Vec<Value> {
    ns.iter()
        .filter_map(|(kind, mode)| match mode {
            NsMode::Host => None,
            NsMode::New => Some(json!({ "type": kind })),
            NsMode::Path(p) => Some(json!({ "type": kind, "path": p })),
        })
        .collect()
}

/// The default mounts; `shm` is the sandbox's shm dir (None: host IPC).
fn base_mounts(shm: Option<&Path>, sys_ro: bool) -> Vec<Value> {
    let mut m = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", if sys_ro { "ro" } else { "rw" }]}),
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", if sys_ro { "ro" } else { "rw" }]}),
    ];
    match shm {
        Some(p) => m.push(json!({"destination": "/dev/shm", "type": "bind", "source": p, "options": ["rbind", "nosuid", "noexec", "nodev", "rw"]})),
        // Host IPC: the host's /dev/shm, as containerd and CRI-O do.
        None => m.push(json!({"destination": "/dev/shm", "type": "bind", "source": "/dev/shm", "options": ["rbind", "nosuid", "noexec", "nodev", "rw"]})),
    }
    m
}

fn device_rules(privileged: bool) -> Value {
    if privileged {
        return json!([{ "allow": true, "access": "rwm" }]);
    }
    let mut rules = vec![json!({ "allow": false, "access": "rwm" })];
    for (t, maj, min) in [
        ("c", 1, 3),
        ("c", 1, 5),
        ("c", 1, 7),
        ("c", 1, 8),
        ("c", 1, 9),
        ("c", 5, 0),
        ("c", 5, 1),
        ("c", 5, 2),
    ] {
        rules
            .push(json!({ "allow": true, "type": t, "major": maj, "minor": min, "access": "rwm" }));
    }
    rules.push(json!({ "allow": true, "type": "c", "major": 136, "access": "rwm" }));
    rules.push(json!({ "allow": true, "type": "c", "access": "m" }));
    rules.push(json!({ "allow": true, "type": "b", "access": "m" }));
    Value::Array(rules)
}

fn finish(v: Value) -> Result<Spec> {
    serde_json::from_value(v)
        .map_err(|e| Error::Config(format!("generated spec is not valid: {e}")))
}

fn image_args(image: &ImageConfig) -> Vec<String> {
    let mut a = image.entrypoint().clone().unwrap_or_default();
    a.extend(image.cmd().clone().unwrap_or_default());
    a
}

/// The pause container's spec.
pub fn sandbox_spec(input: &SandboxInput) -> Result<Spec> {
    let c = input.config;
    let linux = c.linux.as_ref();
    let sc = linux.and_then(|l| l.security_context.as_ref());
    let opts = sc
        .and_then(|s| s.namespace_options.clone())
        .unwrap_or_default();
    let args = image_args(input.image);
    if args.is_empty() {
        return Err(Error::Config("the pause image has no entrypoint".into()));
    }
    let host_net = input.netns == NsMode::Host;
    let ipc = if opts.ipc == 2 {
        NsMode::Host
    } else {
        NsMode::New
    };
    let uts = if host_net { NsMode::Host } else { NsMode::New };
    let pid = if opts.pid == 2 {
        NsMode::Host
    } else {
        NsMode::New
    };
    let caps: Vec<String> = DEFAULT_CAPS.iter().map(|s| s.to_string()).collect();
    let mut env = input.image.env().clone().unwrap_or_default();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(0, DEFAULT_PATH.to_string());
    }
    let cwd = input
        .image
        .working_dir()
        .clone()
        .filter(|w| !w.is_empty())
        .unwrap_or_else(|| "/".into());
    // The pause process runs as the sandbox security context's user, or root.
    let uid = sc
        .and_then(|s| s.run_as_user.as_ref())
        .map_or(0, |u| u.value);
    let gid = sc
        .and_then(|s| s.run_as_group.as_ref())
        .map_or(0, |g| g.value);
    let mut gids = vec![gid];
    for g in sc
        .map(|s| s.supplemental_groups.as_slice())
        .unwrap_or_default()
    {
        if !gids.contains(g) {
            gids.push(*g);
        }
    }
    let mut spec = json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": uid, "gid": gid, "additionalGids": gids},
            "args": args,
            "env": env,
            "cwd": cwd,
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "noNewPrivileges": true,
            // containerd gives the pause container -998; this host (like
            // many) forbids negative scores (runc: "can't get final child's
            // PID from pipe: EOF"), so it gets the clamped value 0.
            "oomScoreAdj": clamp_oom(-998),
        },
        "root": {"path": input.rootfs, "readonly": true},
        "mounts": base_mounts(if ipc == NsMode::Host { None } else { Some(&input.files.shm) }, true),
        "annotations": c.annotations,
        "linux": {
            "namespaces": ns_entries(&[("pid", &pid), ("ipc", &ipc), ("uts", &uts), ("mount", &NsMode::New), ("network", &input.netns)]),
            "cgroupsPath": input.cgroups_path,
            "resources": {"devices": device_rules(false)},
            "sysctl": linux.map(|l| l.sysctls.clone()).unwrap_or_default(),
            "maskedPaths": MASKED,
            "readonlyPaths": READONLY,
        },
    });
    if !host_net && !c.hostname.is_empty() {
        spec["hostname"] = json!(c.hostname);
    }
    finish(spec)
}

/// An app container's spec.
pub fn container_spec(input: &ContainerInput) -> Result<Spec> {
    let c = input.config;
    let lc = c.linux.as_ref();
    let sc = lc.and_then(|l| l.security_context.as_ref());
    let privileged = sc.is_some_and(|s| s.privileged);
    // Args by the Kubernetes rules.
    let args: Vec<String> = if !c.command.is_empty() {
        c.command.iter().chain(&c.args).cloned().collect()
    } else {
        let mut a = input.image.entrypoint().clone().unwrap_or_default();
        if c.args.is_empty() {
            a.extend(input.image.cmd().clone().unwrap_or_default());
        } else {
            a.extend(c.args.iter().cloned());
        }
        a
    };
    if args.is_empty() {
        return Err(Error::Config("no command specified: the image has no entrypoint or cmd and the container sets no command".into()));
    }
    // Env: image, then CRI overrides by key.
    let mut env: Vec<(String, String)> = Vec::new();
    let mut set = |k: &str, v: &str| {
        if let Some(e) = env.iter_mut().find(|e| e.0 == k) {
            e.1 = v.to_string();
        } else {
            env.push((k.to_string(), v.to_string()));
        }
    };
    for e in input.image.env().clone().unwrap_or_default() {
        let (k, v) = e.split_once('=').unwrap_or((&e, ""));
        set(k, v);
    }
    for kv in &c.envs {
        set(&kv.key, &kv.value);
    }
    if !env.iter().any(|e| e.0 == "PATH") {
        env.insert(
            0,
            ("PATH".into(), DEFAULT_PATH["PATH=".len()..].to_string()),
        );
    }
    // The pod's hostname; a host-network pod has none and gets the node's.
    let hostname = if input.sandbox.hostname.is_empty() {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .unwrap_or_default()
            .trim()
            .to_string()
    } else {
        input.sandbox.hostname.clone()
    };
    if !env.iter().any(|e| e.0 == "HOSTNAME") && !hostname.is_empty() {
        env.push(("HOSTNAME".into(), hostname));
    }
    let env: Vec<String> = env.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
    let cwd = if !c.working_dir.is_empty() {
        c.working_dir.clone()
    } else {
        input
            .image
            .working_dir()
            .clone()
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| "/".into())
    };
    let user = resolve_user(input.rootfs, input.image.user().as_deref(), sc)?;
    let caps = capabilities(privileged, sc.and_then(|s| s.capabilities.as_ref()))?;
    let mut res = resources_json(lc.and_then(|l| l.resources.as_ref()));
    let oom = clamp_oom(
        lc.and_then(|l| l.resources.as_ref())
            .map(|r| r.oom_score_adj)
            .unwrap_or(0),
    );
    res["devices"] = device_rules(privileged);
    // Mounts: defaults, sandbox files (unless a CRI mount covers them), CRI mounts.
    let shm = match input.namespaces.ipc {
        NsMode::Host => None,
        _ => Some(input.files.shm.as_path()),
    };
    let mut mounts = base_mounts(shm, !privileged);
    let covered = |dst: &str| c.mounts.iter().any(|m| m.container_path == dst);
    for (dst, src) in [
        ("/etc/hosts", &input.files.hosts),
        ("/etc/resolv.conf", &input.files.resolv_conf),
        ("/etc/hostname", &input.files.hostname),
    ] {
        if !covered(dst) {
            mounts.push(json!({"destination": dst, "type": "bind", "source": src, "options": ["rbind", "rprivate", "rw"]}));
        }
    }
    let mut propagation = None;
    for m in &c.mounts {
        if m.container_path.is_empty() || m.host_path.is_empty() {
            return Err(Error::Config(
                "a mount needs container_path and host_path".into(),
            ));
        }
        let host = Path::new(&m.host_path);
        if !host.exists() {
            std::fs::create_dir_all(host).map_err(Error::io("create mount source", host))?;
        }
        let prop = match m.propagation {
            1 => {
                propagation.get_or_insert("rslave");
                "rslave"
            }
            2 => {
                propagation = Some("rshared");
                "rshared"
            }
            _ => "rprivate",
        };
        mounts.retain(|x| x["destination"] != json!(m.container_path));
        mounts.push(json!({
            "destination": m.container_path,
            "type": "bind",
            "source": m.host_path,
            "options": ["rbind", prop, if m.readonly { "ro" } else { "rw" }],
        }));
    }
    let terminal = c.tty;
    let mut spec = json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": terminal,
            "user": {"uid": user.uid, "gid": user.gid, "additionalGids": user.additional_gids},
            "args": args,
            "env": env,
            "cwd": cwd,
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "noNewPrivileges": sc.is_some_and(|s| s.no_new_privs),
            "oomScoreAdj": oom,
        },
        "root": {"path": input.rootfs, "readonly": sc.is_some_and(|s| s.readonly_rootfs)},
        "mounts": mounts,
        "annotations": c.annotations,
        "linux": {
            "namespaces": ns_entries(&[
                ("pid", &input.namespaces.pid),
                ("ipc", &input.namespaces.ipc),
                ("uts", &input.namespaces.uts),
                ("mount", &NsMode::New),
                ("network", &input.namespaces.net),
            ]),
            "cgroupsPath": input.cgroups_path,
            "resources": res,
        },
    });
    if let Some(p) = propagation {
        spec["linux"]["rootfsPropagation"] = json!(p);
    }
    // A container with its own UTS namespace (not joining the sandbox's)
    // still gets the pod's hostname.
    if input.namespaces.uts == NsMode::New && !input.sandbox.hostname.is_empty() {
        spec["hostname"] = json!(input.sandbox.hostname);
    }
    if !privileged {
        spec["linux"]["maskedPaths"] = json!(MASKED);
        spec["linux"]["readonlyPaths"] = json!(READONLY);
    } else {
        spec["linux"]["devices"] = json!(host_devices());
    }
    finish(spec)
}

/// Character and block devices of the host's /dev (privileged containers).
fn host_devices() -> Vec<Value> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::from("/dev")];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            let Ok(m) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            let ft = m.file_type();
            if ft.is_dir() {
                if !matches!(p.to_str(), Some("/dev/pts" | "/dev/shm" | "/dev/mqueue")) {
                    stack.push(p);
                }
                continue;
            }
            let kind = if ft.is_char_device() {
                "c"
            } else if ft.is_block_device() {
                "b"
            } else {
                continue;
            };
            if p == Path::new("/dev/console") || p == Path::new("/dev/ptmx") {
                continue;
            }
            let rdev = m.rdev();
            out.push(json!({
                "path": p,
                "type": kind,
                "major": nix::sys::stat::major(rdev),
                "minor": nix::sys::stat::minor(rdev),
                "fileMode": m.mode() & 0o777,
                "uid": m.uid(),
                "gid": m.gid(),
            }));
        }
    }
    out
}

/// Writes `spec` as `bundle_dir/config.json` atomically.
pub fn write_bundle(bundle_dir: &Path, spec: &Spec) -> Result<PathBuf> {
    std::fs::create_dir_all(bundle_dir).map_err(Error::io("create directory", bundle_dir))?;
    let path = bundle_dir.join("config.json");
    let tmp = bundle_dir.join(".config.json.tmp");
    let data = serde_json::to_vec_pretty(spec).map_err(|e| Error::Config(e.to_string()))?;
    std::fs::write(&tmp, data).map_err(Error::io("write", &tmp))?;
    std::fs::rename(&tmp, &path).map_err(Error::io("write", &path))?;
    Ok(path)
}

#[cfg(test)]
mod tests;
