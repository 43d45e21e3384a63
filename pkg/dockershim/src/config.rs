//! The dockershim's settings: where it keeps its files, which dockerd it
//! talks to, the CNI configuration and the registries.

use std::path::{Path, PathBuf};

/// Settings of a dockershim.
#[derive(Clone, Debug)]
pub struct ShimConfig {
    /// Root of the shim's files (`<profile>/docker/shim`): pinned network
    /// namespaces and each sandbox's /etc files.
    pub root: PathBuf,
    /// CRI socket served to the node agent.
    pub socket: PathBuf,
    /// dockerd's API socket.
    pub docker_socket: PathBuf,
    /// CNI configuration directory (holds rkube's conflist).
    pub cni_conf_dir: PathBuf,
    /// CNI plugin binaries.
    pub cni_bin_dir: PathBuf,
    /// Image of every sandbox (rkube's pause image).
    pub pause_image: String,
    /// Registry mirrors and plain-HTTP registries, applied by the shim to
    /// CRI pulls (dockerd's own `registry-mirrors` cover docker.io only).
    pub registries: rkube_imagestore::Registries,
    /// RuntimeClass handlers dockerd knows (`runc`, and `crun` when it is
    /// installed); the empty handler is dockerd's default runtime.
    pub handlers: Vec<String>,
}

impl ShimConfig {
    /// Settings for the shim of the dockerd whose directory is `dir`.
    pub fn new(dir: &Path, docker_socket: &Path) -> Self {
        Self {
            root: dir.join("shim"),
            socket: dir.join("dockershim.sock"),
            docker_socket: docker_socket.to_path_buf(),
            cni_conf_dir: PathBuf::from("/etc/cni/net.d"),
            cni_bin_dir: PathBuf::from("/usr/lib/cni"),
            pause_image: String::new(),
            registries: Default::default(),
            handlers: vec!["runc".into()],
        }
    }

    /// Where sandbox network namespaces are pinned.
    pub(crate) fn netns_dir(&self) -> PathBuf {
        self.root.join("netns")
    }

    /// The directory of a sandbox's files.
    pub(crate) fn sandbox_dir(&self, id: &str) -> PathBuf {
        self.root.join("sandboxes").join(id)
    }

    /// The CNI result cache.
    pub(crate) fn cni_cache_dir(&self) -> PathBuf {
        self.root.join("cni")
    }
}
