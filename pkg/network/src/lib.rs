//! Pod networking for rkube. Pods get their network from CNI plugins: a
//! runtime (containerd's CRI plugin today, rkube's own runtime later) reads a
//! network configuration list from a conf directory and runs the plugin
//! binaries from a bin directory for every sandbox. This crate writes that
//! configuration ([`conf`]: a `bridge` on `rkube0` with `host-local` IPAM,
//! `portmap` for hostPort and `firewall` for hosts whose FORWARD policy is
//! DROP) and checks that Debian's containernetworking-plugins are installed
//! ([`plugins`]). rkube's bundled runtime runs the plugins itself
//! ([`cni`]) in pinned network namespaces ([`netns`]).

use std::path::PathBuf;

pub mod cni;
pub mod conf;
pub mod netns;
pub mod plugins;

pub use cni::{AddResult, Attachment, Cni, PortMapping};
pub use conf::{write_conflist, CniOptions, NetworkConfigList};
pub use plugins::check_plugins;

/// Errors of pod network set-up. Messages say what to fix.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The pod subnet is not an IPv4 CIDR this node can use.
    #[error("invalid pod subnet {subnet:?}: {reason}; use an IPv4 CIDR such as 10.244.0.0/24")]
    InvalidSubnet {
        /// The rejected value.
        subnet: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The bridge name is not a valid Linux interface name.
    #[error("invalid bridge name {0:?}: use 1 to 15 letters, digits, '-', '_' or '.'")]
    InvalidBridge(String),
    /// Required CNI plugin binaries are missing.
    #[error("CNI plugins {missing} not found in {dir}; install them with `apt-get install containernetworking-plugins`")]
    MissingPlugins {
        /// The bin directory searched.
        dir: PathBuf,
        /// Comma-separated names of the missing plugins.
        missing: String,
    },
    /// A CNI plugin failed.
    #[error("CNI plugin {plugin} {command} failed: {detail}")]
    Plugin {
        /// Plugin type.
        plugin: String,
        /// ADD, DEL or CHECK.
        command: String,
        /// The plugin's error message.
        detail: String,
    },
    /// No network configuration list.
    #[error("no CNI network configuration (*.conflist) in {0}")]
    NoNetwork(PathBuf),
    /// A conflist cannot be parsed.
    #[error("invalid CNI configuration {path}: {reason}")]
    BadConf {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// CHECK of a sandbox that has no cached ADD result.
    #[error("sandbox {container_id} is not attached to the network (no cached CNI result at {cache}); run ADD first")]
    NotAttached {
        /// The sandbox ID.
        container_id: String,
        /// The cache file looked for.
        cache: PathBuf,
    },
    /// A file system operation failed.
    #[error("cannot {action} {path}")]
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
    /// Wraps an I/O error with what was attempted and on which path.
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io {
            action,
            path,
            source,
        }
    }
}
