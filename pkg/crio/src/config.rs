//! Settings of the bundled runtime: where it keeps state, which OCI
//! runtimes serve which RuntimeClass handlers, CNI and registry options.

use std::path::{Path, PathBuf};

use rkube_host::which;
use rkube_imagestore::Registries;

/// One RuntimeClass handler: an OCI runtime binary and its state root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Handler {
    /// Handler name as in a RuntimeClass (`runc`, `crun`).
    pub name: String,
    /// The OCI runtime binary.
    pub path: PathBuf,
}

/// Settings of the bundled runtime.
#[derive(Clone, Debug)]
pub struct CrioConfig {
    /// State root (`<profile>/crio`).
    pub root: PathBuf,
    /// CRI socket (`<profile>/crio.sock`).
    pub socket: PathBuf,
    /// conmon binary.
    pub conmon: PathBuf,
    /// Handlers by name; the empty RuntimeClass handler maps to `default_handler`.
    pub handlers: Vec<Handler>,
    /// Handler for pods without a RuntimeClass (`--oci-runtime`).
    pub default_handler: String,
    /// CNI configuration directory (holds rkube's conflist).
    pub cni_conf_dir: PathBuf,
    /// CNI plugin binaries.
    pub cni_bin_dir: PathBuf,
    /// Image of every sandbox (rkube's pause image).
    pub pause_image: String,
    /// Registry mirrors and plain-HTTP registries.
    pub registries: Registries,
}

impl CrioConfig {
    /// The state root of the runtime of a profile (`<profile>/crio`).
    pub fn root_in(profile_dir: &Path) -> PathBuf {
        profile_dir.join("crio")
    }

    /// The CRI socket of the runtime of a profile (`<profile>/crio.sock`).
    pub fn socket_in(profile_dir: &Path) -> PathBuf {
        profile_dir.join("crio.sock")
    }

    /// Defaults for a profile directory: state under `<profile>/crio`, the
    /// socket at `<profile>/crio.sock`, runc and crun as handlers when
    /// installed, `default_handler` for pods without a RuntimeClass.
    pub fn for_profile(profile_dir: &Path, default_handler: &str) -> crate::Result<Self> {
        let conmon =
            which("conmon").ok_or_else(|| crate::Error::Missing("conmon".into(), "conmon"))?;
        let handlers: Vec<Handler> = ["runc", "crun"]
            .iter()
            .filter_map(|n| {
                which(n).map(|path| Handler {
                    name: n.to_string(),
                    path,
                })
            })
            .collect();
        if !handlers.iter().any(|h| h.name == default_handler) {
            return Err(crate::Error::Missing(
                default_handler.to_string(),
                if default_handler == "crun" {
                    "crun"
                } else {
                    "runc"
                },
            ));
        }
        Ok(Self {
            root: Self::root_in(profile_dir),
            socket: Self::socket_in(profile_dir),
            conmon,
            handlers,
            default_handler: default_handler.to_string(),
            cni_conf_dir: profile_dir.join("cni").join("net.d"),
            cni_bin_dir: PathBuf::from("/usr/lib/cni"),
            pause_image: String::new(),
            registries: Registries::default(),
        })
    }

    /// The handler for a RuntimeClass handler name ("" = default).
    pub fn handler(&self, name: &str) -> Option<&Handler> {
        let name = if name.is_empty() {
            &self.default_handler
        } else {
            name
        };
        self.handlers.iter().find(|h| h.name == name)
    }

    /// Image store root.
    pub fn images_dir(&self) -> PathBuf {
        self.root.join("images")
    }
    /// Sandbox state directories.
    pub fn sandboxes_dir(&self) -> PathBuf {
        self.root.join("sandboxes")
    }
    /// Container state directories.
    pub fn containers_dir(&self) -> PathBuf {
        self.root.join("containers")
    }
    /// conmon's exit files.
    pub fn exits_dir(&self) -> PathBuf {
        self.root.join("exits")
    }
    /// conmon's attach sockets.
    pub fn attach_dir(&self) -> PathBuf {
        self.root.join("attach")
    }
    /// State root of the OCI runtime of `handler`.
    pub fn oci_root(&self, handler: &str) -> PathBuf {
        self.root.join("oci").join(handler)
    }
    /// Pinned network namespaces.
    pub fn netns_dir(&self) -> PathBuf {
        self.root.join("netns")
    }
    /// CNI result cache.
    pub fn cni_cache_dir(&self) -> PathBuf {
        self.root.join("cni-cache")
    }
}
