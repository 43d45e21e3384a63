//! containerd's configuration as rkube writes it under a profile.
//!
//! Everything containerd keeps lives in the profile's `containerd/`
//! directory (`root/` for images and snapshots, `state/` for tasks and the
//! runc state, `certs.d/` for registry hosts, `containerd.sock` for gRPC),
//! so several profiles and a system containerd never share anything.
//! Plugins that cannot work here or would reach out are disabled; the CRI
//! plugin gets rkube's pause image, the CNI directories, a stream server on
//! loopback, `restrict_oom_score_adj` (hosts that forbid lowering
//! oom_score_adj would otherwise fail every sandbox), and the cgroup driver
//! that matches the host ([`HostInfo`]).

use std::path::{Path, PathBuf};

use rkube_host::Mirror;

use crate::registry::quote;
use crate::{Error, Result};

/// Longest usable unix socket path (`sun_path` is 108 bytes with the NUL).
pub const MAX_SOCKET_PATH: usize = 107;

/// Suffix containerd appends to the gRPC address for its ttrpc socket.
pub const TTRPC_SUFFIX: &str = ".ttrpc";

/// Longest CRI log line before containerd splits it (kubelet's default).
pub const MAX_LOG_LINE: u32 = 16 * 1024;

/// Plugins disabled in the profile's containerd: snapshotters this host
/// cannot use, `opt` (which would write to /opt/containerd) and tracing.
pub const DISABLED_PLUGINS: &[&str] = &[
    "io.containerd.snapshotter.v1.aufs",
    "io.containerd.snapshotter.v1.btrfs",
    "io.containerd.snapshotter.v1.devmapper",
    "io.containerd.snapshotter.v1.zfs",
    "io.containerd.internal.v1.opt",
    "io.containerd.tracing.processor.v1.otlp",
];

/// How container cgroups are managed; the node agent must use the same.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CgroupDriver {
    /// Plain cgroupfs directories (cgroup parents like `/kubepods/...`).
    Cgroupfs,
    /// systemd slices (cgroup parents like `kubepods.slice`).
    Systemd,
}

impl CgroupDriver {
    /// The kubelet's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            CgroupDriver::Cgroupfs => "cgroupfs",
            CgroupDriver::Systemd => "systemd",
        }
    }
}

/// What the host offers that the configuration depends on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostInfo {
    /// The unified cgroup v2 hierarchy is mounted at /sys/fs/cgroup.
    pub cgroup_v2: bool,
    /// systemd is the init system.
    pub systemd: bool,
}

impl HostInfo {
    /// Looks at this host.
    pub fn detect() -> Self {
        Self::detect_in(Path::new("/"))
    }

    /// Looks at a host whose root file system is at `root` (for tests).
    pub fn detect_in(root: &Path) -> Self {
        Self {
            cgroup_v2: root.join("sys/fs/cgroup/cgroup.controllers").exists(),
            // sd_booted(): systemd creates this directory when it is init.
            systemd: root.join("run/systemd/system").is_dir(),
        }
    }

    /// The driver containerd and the node agent should use: systemd when it
    /// is init (it owns the cgroup tree then), cgroupfs otherwise, on both
    /// cgroup v1 and v2.
    pub fn cgroup_driver(&self) -> CgroupDriver {
        if self.systemd {
            CgroupDriver::Systemd
        } else {
            CgroupDriver::Cgroupfs
        }
    }
}

/// Settings of a profile's containerd.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerdOptions {
    /// `profiles/<p>/containerd`: config, root, state, socket.
    pub dir: PathBuf,
    /// Image every pod sandbox runs (rkube's pause image).
    pub sandbox_image: String,
    /// CNI plugin binaries.
    pub cni_bin_dir: PathBuf,
    /// CNI configuration directory (holds rkube's conflist).
    pub cni_conf_dir: PathBuf,
    /// Registry mirrors written to `certs.d`.
    pub registry_mirrors: Vec<Mirror>,
    /// Cgroup driver; `None` picks the host's ([`HostInfo::cgroup_driver`]).
    pub cgroup_driver: Option<CgroupDriver>,
}

impl ContainerdOptions {
    /// Options for `dir` with the other fields at rkube's defaults
    /// (CNI from Debian's /usr/lib/cni and `dir/../cni/net.d`).
    pub fn new(dir: impl Into<PathBuf>, sandbox_image: impl Into<String>) -> Self {
        let dir = dir.into();
        let profile = dir
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| dir.clone());
        Self {
            sandbox_image: sandbox_image.into(),
            cni_bin_dir: PathBuf::from("/usr/lib/cni"),
            cni_conf_dir: profile.join("cni").join("net.d"),
            registry_mirrors: Vec::new(),
            cgroup_driver: None,
            dir,
        }
    }

    /// `config.toml`.
    pub fn config_file(&self) -> PathBuf {
        self.dir.join("config.toml")
    }

    /// containerd's persistent root (images, snapshots, metadata).
    pub fn root_dir(&self) -> PathBuf {
        self.dir.join("root")
    }

    /// containerd's state directory (tasks, fifos).
    pub fn state_dir(&self) -> PathBuf {
        self.dir.join("state")
    }

    /// runc's state directory (one subdirectory per namespace).
    pub fn runc_root(&self) -> PathBuf {
        self.state_dir().join("runc")
    }

    /// Registry hosts directory.
    pub fn certs_dir(&self) -> PathBuf {
        self.dir.join("certs.d")
    }

    /// The gRPC (and CRI) socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.join("containerd.sock")
    }

    /// The profile directory holding `containerd.pid` and `containerd.log`.
    pub fn profile_dir(&self) -> PathBuf {
        self.dir
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| self.dir.clone())
    }

    /// `profiles/<p>/containerd.pid` (the launcher's stop signals every `*.pid`).
    pub fn pid_file(&self) -> PathBuf {
        self.profile_dir().join("containerd.pid")
    }

    /// `profiles/<p>/containerd.log`.
    pub fn log_file(&self) -> PathBuf {
        self.profile_dir().join("containerd.log")
    }

    /// Checks that the gRPC socket and its ttrpc sibling fit in `sun_path`.
    pub fn check_socket_paths(&self) -> Result<()> {
        check_socket_path(&self.socket(), TTRPC_SUFFIX.len())
    }

    /// Renders `config.toml` (version 2) for a host like `host`.
    pub fn render(&self, host: &HostInfo) -> String {
        let q = |p: &Path| quote(&p.to_string_lossy());
        let driver = self.cgroup_driver.unwrap_or_else(|| host.cgroup_driver());
        let socket = self.socket();
        let ttrpc = format!("{}{TTRPC_SUFFIX}", socket.to_string_lossy());
        let disabled: Vec<String> = DISABLED_PLUGINS.iter().map(|p| quote(p)).collect();
        let cri = "plugins.\"io.containerd.grpc.v1.cri\"";
        format!(
            r#"# Written by rkube at every start of this profile; edits are overwritten.
# Host: cgroup {cgroup}, {init} init; cgroup driver {driver}.
version = 2
root = {root}
state = {state}
oom_score = 0
disabled_plugins = [{disabled}]

[grpc]
  address = {socket}

[ttrpc]
  address = {ttrpc}

[debug]
  level = "info"

[{cri}]
  sandbox_image = {sandbox}
  restrict_oom_score_adj = true
  enable_selinux = false
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  max_container_log_line_size = {max_log}
  tolerate_missing_hugetlb_controller = true
  disable_hugetlb_controller = true

[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[{cri}.containerd.runtimes.runc.options]
  SystemdCgroup = {systemd}
  Root = {runc_root}

[{cri}.cni]
  bin_dir = {cni_bin}
  conf_dir = {cni_conf}
  max_conf_num = 1

[{cri}.registry]
  config_path = {certs}
"#,
            cgroup = if host.cgroup_v2 { "v2" } else { "v1" },
            init = if host.systemd {
                "systemd"
            } else {
                "non-systemd"
            },
            driver = driver.as_str(),
            root = q(&self.root_dir()),
            state = q(&self.state_dir()),
            disabled = disabled.join(", "),
            socket = q(&socket),
            ttrpc = quote(&ttrpc),
            sandbox = quote(&self.sandbox_image),
            max_log = MAX_LOG_LINE,
            systemd = driver == CgroupDriver::Systemd,
            runc_root = q(&self.runc_root()),
            cni_bin = q(&self.cni_bin_dir),
            cni_conf = q(&self.cni_conf_dir),
            certs = q(&self.certs_dir()),
        )
    }

    /// Creates the directories and writes `config.toml` and `certs.d`.
    pub fn write(&self, host: &HostInfo) -> Result<()> {
        self.check_socket_paths()?;
        for d in [
            self.dir.clone(),
            self.root_dir(),
            self.state_dir(),
            self.cni_conf_dir.clone(),
        ] {
            std::fs::create_dir_all(&d).map_err(Error::io("create directory", &d))?;
        }
        crate::registry::write_hosts_dir(&self.certs_dir(), &self.registry_mirrors)?;
        let file = self.config_file();
        let tmp = self.dir.join(".config.toml.tmp");
        std::fs::write(&tmp, self.render(host)).map_err(Error::io("write", &tmp))?;
        std::fs::rename(&tmp, &file).map_err(Error::io("write", &file))
    }
}

/// Checks that `path` (plus `extra` bytes of suffix a server adds) is an
/// absolute path that fits in a unix socket address.
pub fn check_socket_path(path: &Path, extra: usize) -> Result<()> {
    if !path.is_absolute() {
        return Err(Error::RelativeSocket(path.to_path_buf()));
    }
    let len = path.as_os_str().len();
    let max = MAX_SOCKET_PATH - extra;
    if len > max {
        return Err(Error::SocketPathTooLong {
            path: path.to_path_buf(),
            len,
            max,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1: HostInfo = HostInfo {
        cgroup_v2: false,
        systemd: false,
    };

    fn opts() -> ContainerdOptions {
        ContainerdOptions::new(
            "/home/u/.rkube/profiles/dev/containerd",
            "rkube.local/pause:1",
        )
    }

    #[test]
    fn renders_profile_paths_and_cri_settings() {
        let text = opts().render(&V1);
        let d = "/home/u/.rkube/profiles/dev/containerd";
        for want in [
            "version = 2".to_string(),
            format!("root = \"{d}/root\""),
            format!("state = \"{d}/state\""),
            format!("address = \"{d}/containerd.sock\""),
            format!("address = \"{d}/containerd.sock.ttrpc\""),
            "sandbox_image = \"rkube.local/pause:1\"".into(),
            "restrict_oom_score_adj = true".into(),
            "stream_server_address = \"127.0.0.1\"".into(),
            "stream_server_port = \"0\"".into(),
            "max_container_log_line_size = 16384".into(),
            "runtime_type = \"io.containerd.runc.v2\"".into(),
            "SystemdCgroup = false".into(),
            format!("Root = \"{d}/state/runc\""),
            "bin_dir = \"/usr/lib/cni\"".into(),
            "conf_dir = \"/home/u/.rkube/profiles/dev/cni/net.d\"".into(),
            format!("config_path = \"{d}/certs.d\""),
            "\"io.containerd.snapshotter.v1.btrfs\"".into(),
        ] {
            assert!(text.contains(&want), "missing {want} in\n{text}");
        }
    }

    #[test]
    fn cgroup_driver_follows_the_host_unless_set() {
        let systemd = HostInfo {
            cgroup_v2: true,
            systemd: true,
        };
        assert_eq!(V1.cgroup_driver(), CgroupDriver::Cgroupfs);
        assert_eq!(systemd.cgroup_driver(), CgroupDriver::Systemd);
        assert!(opts().render(&systemd).contains("SystemdCgroup = true"));
        let mut o = opts();
        o.cgroup_driver = Some(CgroupDriver::Cgroupfs);
        assert!(o.render(&systemd).contains("SystemdCgroup = false"));
    }

    #[test]
    fn detects_host_from_a_fake_root() {
        let root = tempfile::tempdir().unwrap();
        assert_eq!(HostInfo::detect_in(root.path()), V1);
        std::fs::create_dir_all(root.path().join("run/systemd/system")).unwrap();
        std::fs::create_dir_all(root.path().join("sys/fs/cgroup")).unwrap();
        std::fs::write(
            root.path().join("sys/fs/cgroup/cgroup.controllers"),
            "cpu\n",
        )
        .unwrap();
        let h = HostInfo::detect_in(root.path());
        assert!(h.cgroup_v2 && h.systemd);
    }

    #[test]
    fn quotes_odd_paths() {
        let o = ContainerdOptions::new("/tmp/a \"b\"\\c/containerd", "p");
        let text = o.render(&V1);
        assert!(
            text.contains(r#"root = "/tmp/a \"b\"\\c/containerd/root""#),
            "{text}"
        );
    }

    #[test]
    fn socket_paths_must_fit() {
        check_socket_path(Path::new("/tmp/rkc/containerd.sock"), 6).unwrap();
        let long = format!("/{}/containerd.sock", "x".repeat(90));
        let err = check_socket_path(Path::new(&long), 6).unwrap_err();
        assert!(
            matches!(err, Error::SocketPathTooLong { max: 101, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("shorter RKUBE_HOME"));
        check_socket_path(Path::new(&long), 0).unwrap();
        assert!(matches!(
            check_socket_path(Path::new("rel.sock"), 0),
            Err(Error::RelativeSocket(_))
        ));
    }

    #[test]
    fn write_creates_layout() {
        let tmp = tempfile::tempdir().unwrap();
        let mut o = ContainerdOptions::new(tmp.path().join("containerd"), "p");
        o.registry_mirrors.push(Mirror {
            host: "docker.io".into(),
            endpoints: vec!["http://127.0.0.1:5000".into()],
            mirror_only: true,
        });
        o.write(&V1).unwrap();
        assert!(o.config_file().is_file());
        assert!(o.root_dir().is_dir() && o.state_dir().is_dir());
        assert!(o.certs_dir().join("docker.io/hosts.toml").is_file());
        assert!(o.cni_conf_dir.is_dir());
        assert_eq!(o.pid_file(), tmp.path().join("containerd.pid"));
    }
}
