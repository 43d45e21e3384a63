//! rkube's bundled CRI runtime (`rkube start --container-runtime=cri-o`):
//! a CRI v1 server built the way CRI-O is, from real parts. Every
//! container runs under conmon (exit code, CRI log file, attach socket;
//! it outlives rkube) with runc or crun, pods get their network from the
//! CNI plugins of the profile's conflist, images live in an on-disk store
//! and are pulled with the OCI distribution API. State is kept on disk
//! under the runtime's root, so a restarted rkube rebuilds its view
//! ([`recover`]) and running containers keep their IDs.
//!
//! [`serve`] runs the RuntimeService and ImageService on a unix socket
//! plus the streaming server for exec/attach/port-forward.

use std::path::{Path, PathBuf};

pub mod config;
mod container;
mod images;
pub mod recover;
mod sandbox;
mod server;
mod service;
mod state;
mod stats;
mod stream;

pub use config::{CrioConfig, Handler};
pub use server::{serve, Running};

/// The runtime name reported by Version (and so in the node's
/// `containerRuntimeVersion` as `rkube-cri-o://<version>`).
pub const RUNTIME_NAME: &str = "rkube-cri-o";

/// Errors of the bundled runtime. Messages say what to fix. The CRI
/// services return them as gRPC statuses through the one
/// `From<Error> for tonic::Status` below.
#[derive(Debug, thiserror::Error)]
pub enum Error {
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
    /// Required host programs are missing.
    #[error("{0} not found; install it with `apt-get install {1}`")]
    Missing(String, &'static str),
    /// The CRI socket could not be served.
    #[error("cannot serve CRI on {path}: {message}")]
    Serve {
        /// Socket path.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// Stored state could not be read.
    #[error("corrupt state in {path}: {message}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The image store failed.
    #[error(transparent)]
    Images(#[from] rkube_imagestore::Error),
    /// Pulling an image failed.
    #[error("{0}")]
    Pull(#[source] rkube_imagestore::Error),
    /// The streaming server failed.
    #[error("streaming server: {0}")]
    Streaming(String),
    /// A request is malformed or names an unknown runtime handler.
    #[error("{0}")]
    InvalidArgument(String),
    /// A sandbox, container or image does not exist.
    #[error("{0}")]
    NotFound(String),
    /// A sandbox or container with that name exists already.
    #[error("{0}")]
    AlreadyExists(String),
    /// The object is not in a state that allows the call.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The call did not finish in time.
    #[error("{0}")]
    DeadlineExceeded(String),
    /// A part of the runtime is not ready (the streaming server).
    #[error("{0}")]
    Unavailable(String),
    /// The call is not supported.
    #[error("{0}")]
    Unimplemented(String),
    /// The OCI runtime, conmon or a CNI plugin failed.
    #[error("{0}")]
    Runtime(String),
    /// Anything else that went wrong inside the runtime.
    #[error("{0}")]
    Internal(String),
}

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Wraps an I/O error with what was attempted and on which path.
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

    /// An unexpected failure inside the runtime.
    pub(crate) fn internal(e: impl std::fmt::Display) -> Error {
        Error::Internal(e.to_string())
    }
}

impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        let message = e.to_string();
        match e {
            Error::InvalidArgument(_)
            | Error::Pull(rkube_imagestore::Error::InvalidReference { .. }) => {
                tonic::Status::invalid_argument(message)
            }
            Error::NotFound(_) => tonic::Status::not_found(message),
            Error::AlreadyExists(_) => tonic::Status::already_exists(message),
            Error::FailedPrecondition(_) => tonic::Status::failed_precondition(message),
            Error::DeadlineExceeded(_) => tonic::Status::deadline_exceeded(message),
            Error::Unavailable(_) => tonic::Status::unavailable(message),
            Error::Unimplemented(_) => tonic::Status::unimplemented(message),
            Error::Runtime(_) | Error::Pull(_) => tonic::Status::unknown(message),
            Error::Io { .. }
            | Error::Missing(..)
            | Error::Serve { .. }
            | Error::Corrupt { .. }
            | Error::Images(_)
            | Error::Streaming(_)
            | Error::Internal(_) => tonic::Status::internal(message),
        }
    }
}

/// A new random 64-hex-digit ID, as CRI-O and containerd use.
pub(crate) fn new_id() -> String {
    let bytes: [u8; 32] = rand::random();
    hex::encode(bytes)
}

/// Nanoseconds since the Unix epoch.
pub(crate) fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn errors_map_to_grpc_codes() {
        let code = |e: Error| tonic::Status::from(e).code();
        assert_eq!(code(Error::NotFound("x".into())), Code::NotFound);
        assert_eq!(
            code(Error::InvalidArgument("x".into())),
            Code::InvalidArgument
        );
        assert_eq!(
            code(Error::FailedPrecondition("x".into())),
            Code::FailedPrecondition
        );
        assert_eq!(code(Error::Runtime("x".into())), Code::Unknown);
        assert_eq!(code(Error::Internal("x".into())), Code::Internal);
        let io = Error::io("read", "/x")(std::io::Error::other("boom"));
        let status = tonic::Status::from(io);
        assert_eq!(status.code(), Code::Internal);
        assert_eq!(status.message(), "cannot read /x: boom");
    }
}
