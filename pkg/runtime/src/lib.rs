//! Container runtimes the node agent talks to over CRI. rkube can run
//! Debian's containerd as a child daemon of a profile ([`Containerd`]: it
//! writes containerd's configuration under the profile, starts it detached
//! so pods survive a restart of rkube, waits for its CRI service, imports
//! local images and stops it), or point at a CRI runtime that already runs
//! ([`external`]). Either way the node agent only needs the socket.
//! Processes, pid files, mounts and mirror settings come from `rkube_host`.

use std::path::PathBuf;

pub mod config;
pub mod containerd;
pub mod cri;
pub mod images;
pub mod programs;
pub mod registry;

pub use config::{CgroupDriver, ContainerdOptions, HostInfo};
pub use containerd::Containerd;
pub use cri::{external, External};
pub use images::{normalize_reference, ImageSummary};
pub use programs::check_host;

/// Errors of the runtime backends. Messages say what to fix.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Host binaries are missing.
    #[error("{missing} not found in PATH; install them with `apt-get install {packages}`")]
    MissingBinaries {
        /// Comma-separated missing programs.
        missing: String,
        /// Debian packages that provide them.
        packages: String,
    },
    /// A unix socket path does not fit in `sockaddr_un`.
    #[error("socket path {path} is {len} bytes long, but unix socket paths must be at most {max} bytes; use a shorter RKUBE_HOME or profile name")]
    SocketPathTooLong {
        /// The path.
        path: PathBuf,
        /// Its length in bytes.
        len: usize,
        /// The limit for this path.
        max: usize,
    },
    /// A socket path is relative.
    #[error("socket path {0} must be absolute")]
    RelativeSocket(PathBuf),
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
    /// containerd exited while starting.
    #[error("containerd exited ({status}) while starting; last lines of {log}:\n{tail}")]
    Exited {
        /// Exit status.
        status: String,
        /// Its log file.
        log: PathBuf,
        /// The end of its log.
        tail: String,
    },
    /// containerd's CRI service did not answer in time.
    #[error(
        "containerd's CRI service did not answer within {secs}s; last lines of {log}:\n{tail}"
    )]
    NotReady {
        /// Seconds waited.
        secs: u64,
        /// Its log file.
        log: PathBuf,
        /// The end of its log.
        tail: String,
    },
    /// The CRI endpoint cannot be used.
    #[error(transparent)]
    Connect(#[from] rkube_cri::Error),
    /// A CRI call failed.
    #[error("CRI {call} failed: {}", .source.message())]
    Rpc {
        /// The call, e.g. "ListImages".
        call: &'static str,
        /// The gRPC status.
        #[source]
        source: Box<tonic::Status>,
    },
    /// A CRI runtime is not answering on its socket.
    #[error("no CRI runtime answers on {socket}; is it running?")]
    Unavailable {
        /// The socket.
        socket: PathBuf,
    },
    /// `ctr` failed.
    #[error("`ctr {args}` failed ({status}): {stderr}")]
    Ctr {
        /// Its arguments (after the address and namespace).
        args: String,
        /// Exit status.
        status: String,
        /// What it printed on stderr.
        stderr: String,
    },
    /// An image archive held no named image.
    #[error("{0} holds no named image; tag the image before saving it (docker save NAME:TAG, or an OCI ref name)")]
    NoImages(PathBuf),
    /// The path is neither an image archive nor an OCI layout directory.
    #[error("{0} is not an image archive or OCI layout directory (no oci-layout file)")]
    NotAnImage(PathBuf),
    /// The image is not in the runtime.
    #[error("image {0:?} not found")]
    ImageNotFound(String),
    /// A host operation (pid file, process, mount, mirror setting) failed.
    #[error(transparent)]
    Host(#[from] rkube_host::Error),
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

    /// Wraps a failed CRI call.
    pub(crate) fn rpc(call: &'static str) -> impl FnOnce(tonic::Status) -> Error {
        move |s| Error::Rpc {
            call,
            source: Box::new(s),
        }
    }
}
